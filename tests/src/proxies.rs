//! Real proxy servers for the proxy tests, started on loopback from Debian packages:
//! `tinyproxy` (HTTP, `CONNECT` and plain forwarding, Basic credentials) and Dante's `danted`
//! (SOCKS5, user/password against the system's password file). `scripts/test.sh` installs
//! both and creates the SOCKS user.
//!
//! Each keeps a log of the connections it carried, so a test can prove its traffic went
//! through the proxy rather than straight to the server.

use std::{net::SocketAddr, path::PathBuf, process::Stdio, time::Duration};

use tokio::process::{Child, Command};

/// The user name and password tinyproxy asks for when started with credentials.
pub const HTTP_CREDENTIALS: (&str, &str) = ("ann", "pr0xy-s3cret");

/// The system user Dante checks SOCKS5 credentials against (`scripts/test.sh` creates it).
pub const SOCKS_CREDENTIALS: (&str, &str) = ("pl-proxy-test", "s0cks-s3cret");

/// Which proxy server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// tinyproxy.
    Http,
    /// danted.
    Socks5,
}

/// A running proxy server.
pub struct ProxyServer {
    kind: Kind,
    credentials: Option<(String, String)>,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl ProxyServer {
    /// Starts tinyproxy (HTTP) or danted (SOCKS5) on a free loopback port, asking for
    /// [`HTTP_CREDENTIALS`] / [`SOCKS_CREDENTIALS`] when `credentials` is set.
    pub async fn start(kind: Kind, credentials: bool) -> Self {
        let pair = match kind {
            Kind::Http => HTTP_CREDENTIALS,
            Kind::Socks5 => SOCKS_CREDENTIALS,
        };
        let credentials = credentials.then(|| (pair.0.to_owned(), pair.1.to_owned()));
        Self::start_with(kind, credentials).await
    }

    /// Starts tinyproxy asking for `user` and `password` (Dante checks the system's users,
    /// so its credentials are fixed: [`SOCKS_CREDENTIALS`]).
    pub async fn http_with(user: &str, password: &str) -> Self {
        Self::start_with(Kind::Http, Some((user.to_owned(), password.to_owned()))).await
    }

    async fn start_with(kind: Kind, credentials: Option<(String, String)>) -> Self {
        let dir = crate::temp_dir(match kind {
            Kind::Http => "tinyproxy",
            Kind::Socks5 => "danted",
        });
        let port = free_port();
        let mut me = Self {
            kind,
            credentials,
            port,
            dir,
            child: None,
        };
        me.spawn().await;
        me
    }

    /// The proxy URL without credentials (`http://127.0.0.1:P` or `socks5h://127.0.0.1:P`).
    pub fn url(&self) -> String {
        match self.kind {
            Kind::Http => format!("http://127.0.0.1:{}", self.port),
            Kind::Socks5 => format!("socks5h://127.0.0.1:{}", self.port),
        }
    }

    /// The proxy URL with `user:password@`.
    pub fn url_with(&self, user: &str, password: &str) -> String {
        self.url()
            .replacen("://", &format!("://{user}:{password}@"), 1)
    }

    /// The proxy URL with the credentials it asks for.
    pub fn url_with_credentials(&self) -> String {
        let (u, p) = self
            .credentials
            .as_ref()
            .expect("a proxy started with credentials");
        self.url_with(u, p)
    }

    /// The port it listens on (kept across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many connections to `127.0.0.1:server_port` the proxy has carried (tunnels and
    /// forwarded requests), from its log.
    pub fn carried(&self, server_port: u16) -> usize {
        let log = std::fs::read_to_string(self.dir.join("proxy.log")).unwrap_or_default();
        let needle = match self.kind {
            // "Request (file descriptor 5): CONNECT 127.0.0.1:PORT HTTP/1.1" or
            // "... GET http://127.0.0.1:PORT/socket.io/?... HTTP/1.1"
            Kind::Http => format!("127.0.0.1:{server_port}"),
            // "pass(1): tcp/connect [: 127.0.0.1.A 127.0.0.1.P -> 127.0.0.1.B 127.0.0.1.PORT"
            Kind::Socks5 => format!("127.0.0.1.{server_port}"),
        };
        log.lines()
            .filter(|l| {
                let connect = match self.kind {
                    Kind::Http => l.contains("Request (file descriptor"),
                    Kind::Socks5 => l.contains("tcp/connect ]") || l.contains("tcp/connect [:"),
                };
                connect && l.contains(&needle)
            })
            .count()
    }

    /// Kills the proxy and every process it forked (Dante serves tunnels from child
    /// processes), so every tunnel through it drops, and waits for it to exit.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_group(&c);
            let _ = c.kill().await;
        }
    }

    /// Starts it again on the same port.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.spawn().await;
    }

    async fn spawn(&mut self) {
        let log = self.dir.join("proxy.log");
        let conf = self.dir.join("proxy.conf");
        let (program, args, text) = match self.kind {
            Kind::Http => {
                let mut text = format!(
                    "Port {}\nListen 127.0.0.1\nTimeout 600\nMaxClients 200\nAllow 127.0.0.1\n\
                     LogLevel Connect\nLogFile \"{}\"\nDisableViaHeader Yes\n",
                    self.port,
                    log.display()
                );
                if let Some((u, p)) = &self.credentials {
                    text.push_str(&format!("BasicAuth {u} {p}\n"));
                }
                ("tinyproxy", vec!["-d".to_owned(), "-c".to_owned()], text)
            }
            Kind::Socks5 => {
                if self.credentials.is_some() {
                    let user = SOCKS_CREDENTIALS.0;
                    let known = std::process::Command::new("id")
                        .arg(user)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .is_ok_and(|s| s.success());
                    assert!(
                        known,
                        "the SOCKS5 test user {user} does not exist: run scripts/test.sh, which \
                         creates it (useradd + chpasswd), or create it with the password in \
                         tests/src/proxies.rs"
                    );
                }
                let method = if self.credentials.is_some() {
                    "username"
                } else {
                    "none"
                };
                let text = format!(
                    "logoutput: {}\ninternal: 127.0.0.1 port = {}\nexternal: 127.0.0.1\n\
                     socksmethod: {method}\nclientmethod: none\nuser.privileged: root\n\
                     user.unprivileged: nobody\n\
                     client pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 log: error }}\n\
                     socks pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 log: connect error }}\n",
                    log.display(),
                    self.port
                );
                ("danted", vec!["-f".to_owned()], text)
            }
        };
        std::fs::write(&conf, text).expect("write proxy config");
        let installed = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            installed,
            "{program} is not installed: apt-get install tinyproxy dante-server \
             (scripts/test.sh does this)"
        );
        // A port freed a moment ago may still be in use by the old process: retry briefly.
        for _ in 0..100 {
            let mut child = Command::new(program)
                .args(&args)
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                // Its own process group: killing the group reaches the children it forks.
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("{program} did not start: {e}"));
            let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
            for _ in 0..200 {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if tokio::net::TcpStream::connect(addr).await.is_ok() {
                    self.child = Some(child);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            kill_group(&child);
            let _ = child.kill().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{program} did not listen on port {}", self.port);
    }
}

impl Drop for ProxyServer {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            kill_group(c);
        }
    }
}

/// SIGKILL to the process group `child` leads.
fn kill_group(child: &Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stderr(Stdio::null())
            .status();
    }
}

/// A port that refuses connections for as long as the returned socket lives: bound, not
/// listening, so no other test can take it meanwhile (a proxy that is down).
pub fn refusing_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bind a loopback port");
    let port = socket.local_addr().expect("bound").port();
    (socket, port)
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
