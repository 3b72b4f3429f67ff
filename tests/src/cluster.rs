//! A real Socket.IO cluster on loopback, as its users run one: `redis-server`, several
//! official Socket.IO nodes (`tests/node/server.js`) joined by
//! `@socket.io/redis-streams-adapter` with connection state recovery on, and nginx in front.
//! `scripts/test.sh` installs `redis-server` and `nginx` from Debian packages.
//!
//! nginx listens three ways, one per [`Balance`]: round robin (WebSocket sessions need no
//! stickiness), `ip_hash` (the sticky sessions long-polling needs; every loopback client
//! hashes to the same node) and primary/backup (every client on node 0 while it is up, so a
//! failover test knows which node to stop).

use std::{path::PathBuf, process::Stdio, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    process::{Child, Command},
    sync::oneshot,
};

use crate::{NodeServer, ServerOptions, proxies::free_port, temp_dir};

/// How nginx spreads connections over the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Each new connection to the next node (no stickiness).
    RoundRobin,
    /// `ip_hash`: every request from one address to one node (sticky sessions).
    Sticky,
    /// Node 0, and the other nodes only while node 0 does not answer.
    Failover,
}

/// Options for [`Cluster::start_with`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// How many Socket.IO nodes.
    pub nodes: usize,
    /// Connection state recovery window in ms (`None`: off).
    pub recovery_ms: Option<u64>,
    /// File where every node records `tick` events (see [`ServerOptions::ledger`]).
    pub ledger: Option<PathBuf>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            nodes: 3,
            recovery_ms: Some(120_000),
            ledger: None,
        }
    }
}

/// A running cluster; everything stops when it is dropped.
pub struct Cluster {
    /// The Socket.IO nodes, named `n0`, `n1`, …
    pub nodes: Vec<NodeServer>,
    ports: [u16; 3],
    _redis: Process,
    _nginx: Process,
    _dir: PathBuf,
}

impl Cluster {
    /// Three nodes with recovery on (a two-minute window), behind nginx.
    pub async fn start() -> Self {
        Self::start_with(ClusterOptions::default()).await
    }

    /// Starts Redis, the nodes and nginx.
    pub async fn start_with(options: ClusterOptions) -> Self {
        let dir = temp_dir("cluster");
        let (redis, redis_port) = start_redis(&dir).await;
        let mut nodes = Vec::with_capacity(options.nodes);
        for i in 0..options.nodes {
            nodes.push(
                NodeServer::start_with(ServerOptions {
                    recovery_ms: options.recovery_ms,
                    ledger: options.ledger.clone(),
                    redis: Some(format!("redis://127.0.0.1:{redis_port}")),
                    name: Some(format!("n{i}")),
                    ..Default::default()
                })
                .await,
            );
        }
        let node_ports: Vec<u16> = nodes.iter().map(NodeServer::port).collect();
        let (nginx, ports) = start_nginx(&dir, &node_ports).await;
        Self {
            nodes,
            ports,
            _redis: redis,
            _nginx: nginx,
            _dir: dir,
        }
    }

    /// The balancer's URL for `balance`.
    pub fn url(&self, balance: Balance) -> String {
        let port = match balance {
            Balance::RoundRobin => self.ports[0],
            Balance::Sticky => self.ports[1],
            Balance::Failover => self.ports[2],
        };
        format!("http://127.0.0.1:{port}")
    }
}

/// A child process of the cluster, killed when dropped; its output is drained (a full pipe
/// would block it).
struct Process {
    _child: Child,
}

/// Reads `from` to its end, so a full pipe never blocks the process; the answer is `Ok` at
/// the first line containing `signal`, or `Err` with what was said if the output ends first.
fn drain(
    from: impl AsyncRead + Unpin + Send + 'static,
    signal: &'static str,
) -> oneshot::Receiver<Result<(), String>> {
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut tx = Some(tx);
        let mut said = String::new();
        let mut lines = BufReader::new(from).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.is_none() {
                continue;
            }
            if line.contains(signal) {
                let _ = tx.take().expect("not yet answered").send(Ok(()));
            } else {
                said.push_str(&line);
                said.push('\n');
            }
        }
        if let Some(tx) = tx {
            let _ = tx.send(Err(said));
        }
    });
    rx
}

/// Waits for a drained process's signal; `Err` when it ended, or said nothing, first.
async fn ready(signal: oneshot::Receiver<Result<(), String>>) -> Result<(), String> {
    match tokio::time::timeout(Duration::from_secs(20), signal).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err("output closed".into()),
        Err(_) => Err("not ready within 20 s".into()),
    }
}

/// Where a process says it is ready.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Says {
    Stdout,
    Stderr,
}

/// Starts what `make` builds (choosing its ports, returned beside the command) until the
/// process says `signal`; a port taken meanwhile costs a try with others.
async fn start_until<T>(
    name: &str,
    says: Says,
    signal: &'static str,
    mut make: impl FnMut() -> (Command, T),
) -> (Process, T) {
    let mut last = String::new();
    for _ in 0..20 {
        let (mut command, chosen) = make();
        match says {
            Says::Stdout => command.stdout(Stdio::piped()).stderr(Stdio::inherit()),
            Says::Stderr => command.stdout(Stdio::null()).stderr(Stdio::piped()),
        };
        let mut child = command
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} does not start: {e}"));
        let up = match says {
            Says::Stdout => drain(child.stdout.take().expect("piped"), signal),
            Says::Stderr => drain(child.stderr.take().expect("piped"), signal),
        };
        match ready(up).await {
            Ok(()) => return (Process { _child: child }, chosen),
            Err(said) => last = said,
        }
        let _ = child.kill().await;
    }
    panic!("{name} did not start: {last}");
}

/// `redis-server` on a free loopback port, nothing persisted; and that port.
async fn start_redis(dir: &std::path::Path) -> (Process, u16) {
    assert_installed("redis-server", "redis-server");
    start_until(
        "redis-server",
        Says::Stdout,
        "Ready to accept connections",
        || {
            let port = free_port();
            let mut command = Command::new("redis-server");
            command
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--save", "", "--appendonly", "no", "--loglevel", "notice"])
                .arg("--dir")
                .arg(dir);
            (command, port)
        },
    )
    .await
}

/// nginx in front of `nodes`, listening on three free ports: round robin, sticky, failover.
async fn start_nginx(dir: &std::path::Path, nodes: &[u16]) -> (Process, [u16; 3]) {
    assert_installed("nginx", "nginx");
    // Workers run as an unprivileged user when nginx starts as root: they write temp files here.
    set_mode(dir, 0o777);
    // Logged once the configuration is read and every listening socket is bound.
    start_until("nginx", Says::Stderr, "getrlimit(RLIMIT_NOFILE)", || {
        let ports = [free_port(), free_port(), free_port()];
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, nginx_conf(dir, nodes, ports)).expect("nginx.conf written");
        let mut command = Command::new("nginx");
        command
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf)
            // One process (no workers that would outlive a killed master).
            .args(["-g", "daemon off; master_process off;"]);
        (command, ports)
    })
    .await
}

/// The configuration the Socket.IO documentation gives for nginx, once per [`Balance`].
fn nginx_conf(dir: &std::path::Path, nodes: &[u16], ports: [u16; 3]) -> String {
    let dir = dir.display();
    let servers = |extra: &dyn Fn(usize) -> &'static str| {
        nodes
            .iter()
            .enumerate()
            .map(|(i, p)| format!("    server 127.0.0.1:{p}{};\n", extra(i)))
            .collect::<String>()
    };
    // `max_fails=0`: a refused connection sends the request to the next node, and no node is
    // ever marked down for a while, so a node that is back serves at once (with the default,
    // a burst of reconnects to a stopping node can mark every node down: "no live upstreams").
    let round = servers(&|_| " max_fails=0");
    let sticky = servers(&|_| " max_fails=0");
    let failover = servers(&|i| {
        if i == 0 {
            " max_fails=0"
        } else {
            " max_fails=0 backup"
        }
    });
    let site = |port: u16, upstream: &str| {
        format!(
            "  server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      \
             proxy_pass http://{upstream};\n      proxy_http_version 1.1;\n      \
             proxy_set_header Upgrade $http_upgrade;\n      \
             proxy_set_header Connection $connection_upgrade;\n      \
             proxy_set_header Host $host;\n      proxy_read_timeout 3600s;\n    }}\n  }}\n"
        )
    };
    format!(
        "pid {dir}/nginx.pid;\n\
         error_log stderr notice;\nevents {{ worker_connections 50000; }}\nhttp {{\n  \
         access_log off;\n  client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n  \
         fastcgi_temp_path {dir}/fastcgi;\n  uwsgi_temp_path {dir}/uwsgi;\n  \
         scgi_temp_path {dir}/scgi;\n  \
         map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}\n  \
         upstream round {{\n{round}  }}\n  upstream sticky {{\n    ip_hash;\n{sticky}  }}\n  \
         upstream failover {{\n{failover}  }}\n{}{}{}}}\n",
        site(ports[0], "round"),
        site(ports[1], "sticky"),
        site(ports[2], "failover"),
    )
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

/// A missing package is a failure that says how to install it.
fn assert_installed(program: &str, package: &str) {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{program} is needed for the cluster tests: apt-get install {package} \
         (scripts/test.sh installs it)"
    );
}
