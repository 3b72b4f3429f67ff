//! The options every command that talks to a server shares (URL, auth, protocol, transport,
//! trust), and the client configuration they describe.

use std::time::Duration;

use pulselink::{
    ClientConfig, EnvelopeOptions, NoProxy, Protocol, Proxy, ProxyConfig, ServerSignals, Transports,
};
use serde_json::json;

/// Connection options shared by the commands that talk to a server.
#[derive(clap::Args, Clone)]
pub(crate) struct Connection {
    /// Server URL, e.g. http://localhost:3000 (Socket.IO) or ws://localhost:8080/ws (envelope)
    url: String,
    /// Token sent as the auth object `{"token": T}` on every namespace CONNECT (Socket.IO), or
    /// in the first `auth` message (envelope).
    #[arg(long)]
    token: Option<String>,
    /// Wire protocol: socketio (Socket.IO v4 over Engine.IO) or envelope (JSON envelopes over a
    /// plain WebSocket at exactly URL).
    #[arg(long, default_value = "socketio", value_parser = parse_protocol)]
    protocol: Protocol,
    /// Engine.IO path on the server (Socket.IO only).
    #[arg(long, default_value = "/socket.io/")]
    path: String,
    /// Seconds to wait for the first connection.
    #[arg(long, default_value_t = 10)]
    connect_timeout: u64,
    /// Engine.IO transports: websocket-fallback (WebSocket, polling if that fails), websocket,
    /// polling or polling-upgrade (polling, then WebSocket if offered).
    #[arg(long, default_value = "websocket-fallback", value_parser = parse_transports)]
    transport: Transports,
    /// Proxy to reach the server through: http://[user:password@]host:port (CONNECT tunnel,
    /// plain forwarding for http:// polling), socks5://… or socks5h://… (the proxy resolves
    /// the name), or `none`. Without it the environment's HTTPS_PROXY / HTTP_PROXY /
    /// ALL_PROXY / NO_PROXY apply, as in curl.
    #[arg(long, value_name = "URL")]
    proxy: Option<String>,
    /// Hosts --proxy does not apply to, NO_PROXY style: example.com,10.0.0.0/8,*
    #[arg(long, value_name = "HOSTS", requires = "proxy")]
    noproxy: Option<String>,
    /// What the server's application signals mean: socketio (only RATE_LIMIT_EXCEEDED pauses)
    /// or seed (the seed platforms: ping/pong app heartbeat, AUTH_FAILED / RATE_LIMITED /
    /// CONNECTION_ERROR error codes, announced quotas and rates, per-event budgets).
    #[arg(long, default_value = "socketio", value_parser = parse_signals)]
    signals: Signals,
    /// Also trust the CA certificates in this PEM file for wss:// and https:// (a company
    /// CA, a development server's self-signed certificate). Repeatable.
    #[arg(long = "ca-file", value_name = "PEM")]
    ca_files: Vec<std::path::PathBuf>,
    /// Trust only the --ca-file certificates, not the built-in webpki roots.
    #[arg(long)]
    no_builtin_roots: bool,
    /// Accept the server only if it presents a certificate with this public key,
    /// `sha256/<base64>` (see `pulselink pin`). Repeatable: ship a backup pin.
    #[arg(long = "pin", value_name = "sha256/BASE64")]
    pins: Vec<String>,
}

fn parse_protocol(s: &str) -> Result<Protocol, String> {
    match s {
        "socketio" | "socket.io" => Ok(Protocol::SocketIo),
        "envelope" => Ok(Protocol::Envelope(EnvelopeOptions::default())),
        other => Err(format!("unknown protocol {other:?}: socketio or envelope")),
    }
}

/// A `--signals` preset.
#[derive(Clone, Copy)]
enum Signals {
    SocketIo,
    Seed,
}

fn parse_signals(s: &str) -> Result<Signals, String> {
    match s {
        "socketio" | "socket.io" => Ok(Signals::SocketIo),
        "seed" => Ok(Signals::Seed),
        other => Err(format!("unknown signals {other:?}: socketio or seed")),
    }
}

fn parse_transports(s: &str) -> Result<Transports, String> {
    match s {
        "websocket" => Ok(Transports::WebSocket),
        "polling" => Ok(Transports::Polling),
        "polling-upgrade" => Ok(Transports::PollingThenUpgrade),
        "websocket-fallback" => Ok(Transports::WebSocketThenFallback),
        other => Err(format!(
            "unknown transport {other:?}: websocket, polling, polling-upgrade or websocket-fallback"
        )),
    }
}

impl Connection {
    pub(crate) fn config(&self, namespaces: &[String]) -> pulselink::Result<ClientConfig> {
        let mut config = ClientConfig::new(&self.url)?;
        config.path = self.path.clone();
        config.connect_wait = Duration::from_secs(self.connect_timeout);
        config.transports = self.transport;
        config.protocol = self.protocol;
        config.signals = match self.signals {
            Signals::SocketIo => ServerSignals::default(),
            Signals::Seed => ServerSignals::seed_platforms(),
        };
        config.proxy = match self.proxy.as_deref() {
            None => ProxyConfig::Environment,
            Some("none") => ProxyConfig::Direct,
            Some(url) => ProxyConfig::Via {
                proxy: Proxy::parse(url)
                    .map_err(|e| pulselink::Error::InvalidConfig(format!("--proxy: {e}")))?,
                no_proxy: NoProxy::parse(self.noproxy.as_deref().unwrap_or_default()),
            },
        };
        if !namespaces.is_empty() {
            config = config.with_namespaces(namespaces.iter().cloned());
        }
        if let Some(token) = &self.token {
            config = config.with_static_auth(json!({ "token": token }));
        }
        for path in &self.ca_files {
            let pem = std::fs::read_to_string(path).map_err(|e| {
                pulselink::Error::InvalidConfig(format!("--ca-file {}: {e}", path.display()))
            })?;
            config.tls.ca_pem.push(pem);
        }
        config.tls.builtin_roots = !self.no_builtin_roots;
        config.tls.pins = self.pins.clone();
        config.validate()?;
        Ok(config)
    }
}
