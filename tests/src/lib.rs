//! Harness for Pulselink's integration tests: real servers started on loopback, no mocks.
//!
//! [`NodeServer`] runs the official Node `socket.io` server (`tests/node/server.js`) on a free
//! port and can kill, restart, pause (SIGSTOP) and resume it, so reconnect and heartbeat
//! behaviour is tested against the real peer. [`FaultProxy`] sits between the client and a
//! server and injects network faults while traffic flows. [`proxies::ProxyServer`] runs real
//! HTTP and SOCKS5 proxies (tinyproxy, Dante).

use std::{net::SocketAddr, path::PathBuf, process::Stdio, time::Duration};

pub mod cluster;
pub mod pki;
pub mod proxies;
pub mod proxy;

pub use pki::{Leaf, TestCa};
pub use proxy::{FaultProxy, Faults};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// Where the Node fixtures live.
pub fn node_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("node")
}

/// Options for the Node server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Engine.IO ping interval in ms.
    pub ping_interval: u64,
    /// Engine.IO ping timeout in ms.
    pub ping_timeout: u64,
    /// Connection state recovery window in ms (`None`: recovery off).
    pub recovery_ms: Option<u64>,
    /// File recording each `tick` once per idempotency key (see `server.js`).
    pub ledger: Option<PathBuf>,
    /// Engine.IO transports the server accepts, e.g. `"polling"` (`None`: both).
    pub transports: Option<&'static str>,
    /// Set a sticky-session cookie on the handshake, as a load balancer would.
    pub cookie: bool,
    /// Run the JSON-envelope server (`tests/node/envelope-server.js`) instead of Socket.IO.
    pub envelope: bool,
    /// Envelope server only: `tick` messages allowed per window of this many ms.
    pub rate_limit: Option<(u32, u64)>,
    /// Serve HTTPS/WSS with this certificate chain and key (PEM files); Socket.IO server only.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Answer each `room:subscribe` this many ms after it arrived (Socket.IO server only).
    pub sub_ack_delay_ms: u64,
    /// Join a cluster through the Redis streams adapter on this Redis (`redis://…`).
    pub redis: Option<String>,
    /// The node's name, answered on `node?`.
    pub name: Option<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            ping_interval: 25_000,
            ping_timeout: 20_000,
            recovery_ms: None,
            ledger: None,
            transports: None,
            cookie: false,
            envelope: false,
            rate_limit: None,
            tls: None,
            sub_ack_delay_ms: 0,
            redis: None,
            name: None,
        }
    }
}

/// What a heartbeat test allows beyond `interval + timeout` for a dead link to be noticed:
/// timer and scheduling slack on a loaded 2-CPU machine, a small fraction of either.
pub const HEARTBEAT_MARGIN: Duration = Duration::from_millis(150);

/// A running `tests/node/server.js`.
pub struct NodeServer {
    child: Option<Child>,
    port: u16,
    options: ServerOptions,
    /// While the server is down, its port stays bound (not listening: connecting is refused,
    /// as with no server), so a server another test starts meanwhile cannot take it and
    /// receive this test's clients.
    hold: Option<tokio::net::TcpSocket>,
}

impl NodeServer {
    /// Starts the server on a free port with default options.
    pub async fn start() -> Self {
        Self::start_with(ServerOptions::default()).await
    }

    /// Starts the server on a free port recording `tick` events in `ledger` (see
    /// [`ServerOptions::ledger`]).
    pub async fn start_with_ledger(ledger: &std::path::Path) -> Self {
        Self::start_with(ServerOptions {
            ledger: Some(ledger.to_owned()),
            ..Default::default()
        })
        .await
    }

    /// Starts the server on a free port.
    pub async fn start_with(options: ServerOptions) -> Self {
        let (child, port) = spawn(0, &options).await;
        Self {
            child: Some(child),
            port,
            options,
            hold: None,
        }
    }

    /// The port it listens on (kept across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>` (`https://` when serving TLS).
    pub fn url(&self) -> String {
        let scheme = if self.options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The envelope server's WebSocket URL, `ws://127.0.0.1:<port>/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    /// Kills the process (SIGKILL: no goodbye to clients) and waits for it to exit.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
            self.hold = hold_port(self.port);
        }
    }

    /// Shuts it down as a deploy does (SIGTERM: a cluster node closes every socket with
    /// "server shutting down", persisting sessions for recovery) and waits for it to exit.
    pub async fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Some(pid) = c.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
            // A shutdown that hangs is cut short: the test goes on with the node down.
            if tokio::time::timeout(Duration::from_secs(20), c.wait())
                .await
                .is_err()
            {
                let _ = c.kill().await;
            }
            self.hold = hold_port(self.port);
        }
    }

    /// Starts it again on the same port (killing it first if it still runs).
    pub async fn restart(&mut self) {
        self.kill().await;
        self.hold = None;
        let (child, _) = spawn(self.port, &self.options).await;
        self.child = Some(child);
    }

    /// Freezes the process (SIGSTOP): connections stay open but nothing is answered.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a paused process (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self
            .child
            .as_ref()
            .and_then(Child::id)
            .expect("server is running");
        let ok = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid} failed");
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            if let Some(pid) = c.id() {
                // A paused process must be thawed to die promptly.
                let _ = std::process::Command::new("kill")
                    .args(["-CONT", &pid.to_string()])
                    .status();
            }
            let _ = c.start_kill();
        }
    }
}

/// Binds `port` without listening. Best effort: a port taken in the meantime stays taken.
fn hold_port(port: u16) -> Option<tokio::net::TcpSocket> {
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    socket.set_reuseaddr(true).ok()?;
    socket.bind(SocketAddr::from(([127, 0, 0, 1], port))).ok()?;
    Some(socket)
}

async fn spawn(port: u16, options: &ServerOptions) -> (Child, u16) {
    let dir = node_dir();
    assert!(
        dir.join("node_modules/socket.io").exists(),
        "the Node test servers are not installed: run `npm ci --prefix tests/node` \
         (scripts/test.sh does this)"
    );
    // Port reuse right after a kill can race the kernel; retry briefly.
    for _ in 0..50 {
        let mut cmd = Command::new("node");
        let script = if options.envelope {
            "envelope-server.js"
        } else {
            "server.js"
        };
        cmd.arg(dir.join(script))
            .env("PORT", port.to_string())
            .env("PING_INTERVAL", options.ping_interval.to_string())
            .env("PING_TIMEOUT", options.ping_timeout.to_string());
        if let Some(ms) = options.recovery_ms {
            cmd.env("RECOVERY_MS", ms.to_string());
        }
        if options.cookie {
            cmd.env("COOKIE", "1");
        }
        if options.sub_ack_delay_ms > 0 {
            cmd.env("SUB_ACK_DELAY_MS", options.sub_ack_delay_ms.to_string());
        }
        if let Some(t) = options.transports {
            cmd.env("TRANSPORTS", t);
        }
        if let Some(r) = &options.redis {
            cmd.env("REDIS_URL", r);
        }
        if let Some(n) = &options.name {
            cmd.env("NODE_NAME", n);
        }
        if let Some((n, window)) = options.rate_limit {
            cmd.env("RATE_LIMIT", n.to_string())
                .env("RATE_WINDOW", window.to_string());
        }
        if let Some(l) = &options.ledger {
            cmd.env("LEDGER", l);
        }
        if let Some((cert, key)) = &options.tls {
            cmd.env("TLS_CERT", cert).env("TLS_KEY", key);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node is installed");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await;
        let line = first
            .ok()
            .and_then(Result::ok)
            .flatten()
            .unwrap_or_default();
        if let Some(p) = line.strip_prefix("listening ") {
            let port = p.trim().parse().expect("port number");
            return (child, port);
        }
        // EADDRINUSE or a slow start: try again.
        let _ = child.kill().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("node test server did not start on port {port}");
}

/// A reconnect policy for tests: 20 ms growing to 200 ms, so a reconnect costs little time
/// and the backoff still runs.
pub fn fast_reconnect() -> pulselink::ReconnectPolicy {
    pulselink::ReconnectPolicy {
        initial_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        ..pulselink::ReconnectPolicy::default()
    }
}

/// A fresh directory under the system temp dir for one test's files.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "pulselink-{name}-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A fresh temp dir with the paths of a server ledger and a store file in it:
/// `(dir, ledger, store)`.
pub fn scratch(name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = temp_dir(name);
    let ledger = dir.join("ledger");
    let store = dir.join("outbox.db");
    (dir, ledger, store)
}

/// One ledger line: a first delivery or a repeat the server dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerLine {
    /// The idempotency key.
    pub key: String,
    /// The tick's number.
    pub n: u64,
    /// Whether the server had already seen the key.
    pub dup: bool,
}

/// Reads the server's ledger (see `ServerOptions::ledger`); panics on a malformed line. A last
/// line without its newline is still being written and is left out.
pub fn read_ledger(path: &std::path::Path) -> Vec<LedgerLine> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // The server appends whole lines; one without its newline yet is still being written.
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .map(|l| {
            let mut parts: Vec<&str> = l.split(' ').collect();
            let dup = parts.first() == Some(&"dup");
            if dup {
                parts.remove(0);
            }
            let parsed = match parts[..] {
                [key, n] => n.parse().ok().map(|n| LedgerLine {
                    key: key.to_string(),
                    n,
                    dup,
                }),
                _ => None,
            };
            parsed.unwrap_or_else(|| panic!("malformed ledger line {l:?} in {}", path.display()))
        })
        .collect()
}

/// The ledger once it holds at least `lines` lines, or panics after 20 s. The server appends
/// to it after reading a frame, which may be after the client that wrote the frame exited;
/// the file is another process's, so there is nothing to wait on but the file itself.
pub async fn ledger_with(path: &std::path::Path, lines: usize) -> Vec<LedgerLine> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ledger = read_ledger(path);
        if ledger.len() >= lines {
            return ledger;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the ledger has {} of {lines} lines: {ledger:?}",
            ledger.len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Asks the server with an acknowledged emit on the main namespace and returns the first
/// argument of its answer (`null` when it answered with none), or panics after 20 s.
pub async fn ask(
    client: &pulselink::Client,
    event: &str,
    args: impl Into<pulselink::Args>,
) -> serde_json::Value {
    let reply = client
        .emit_with_ack(event, args, Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{event}: {e}"));
    reply
        .values()
        .unwrap()
        .first()
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

/// The first notice `pick` maps to `Some`, or panics after `limit`.
pub async fn next_notice<T>(
    notices: &mut tokio::sync::broadcast::Receiver<pulselink::Notice>,
    limit: Duration,
    mut pick: impl FnMut(pulselink::Notice) -> Option<T>,
) -> T {
    let found = tokio::time::timeout(limit, async {
        loop {
            match notices.recv().await {
                Ok(n) => {
                    if let Some(v) = pick(n) {
                        return v;
                    }
                }
                Err(e) => panic!("notices: {e}"),
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("no matching notice within {limit:?}"))
}

/// Waits until `rx` shows a state matching `pred`, or panics after `limit`.
pub async fn wait_for_state(
    rx: &mut tokio::sync::watch::Receiver<pulselink::State>,
    limit: Duration,
    pred: impl Fn(&pulselink::State) -> bool,
) -> pulselink::State {
    let r = tokio::time::timeout(limit, async {
        rx.wait_for(|s| pred(s)).await.map(|s| s.clone())
    })
    .await;
    match r {
        Ok(Ok(s)) => s,
        _ => panic!(
            "state not reached within {limit:?}; last: {:?}",
            *rx.borrow()
        ),
    }
}

/// Receives the next event named `name` (skipping others), or panics after `limit`.
pub async fn next_named(
    events: &mut pulselink::EventStream,
    name: &str,
    limit: Duration,
) -> pulselink::Event {
    let found = tokio::time::timeout(limit, async {
        while let Some(ev) = events.recv().await {
            if ev.name() == name {
                return Some(ev);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(ev)) => ev,
        Ok(None) => panic!("event stream ended before {name:?}"),
        Err(_) => panic!("no {name:?} event within {limit:?}"),
    }
}

/// Waits for the next `Notice::Disconnected` and returns its reason, or panics after `limit`.
pub async fn next_disconnect(
    notices: &mut tokio::sync::broadcast::Receiver<pulselink::Notice>,
    limit: Duration,
) -> pulselink::DisconnectReason {
    let found = tokio::time::timeout(limit, async {
        loop {
            match notices.recv().await {
                Ok(pulselink::Notice::Disconnected { reason }) => return reason,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("notices ended: {e}"),
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("no disconnect within {limit:?}"))
}
