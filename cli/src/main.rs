//! `pulselink`: the command-line face of the SDK, for gateways, scripts and debugging.
//!
//! - `pulselink listen URL` prints inbound events as JSON lines;
//! - `pulselink emit URL EVENT JSON` sends one event (optionally waiting for its ack);
//! - `pulselink gateway URL` forwards telemetry lines durably over a bad uplink;
//! - `pulselink demo` runs a server and a client in one process and shows a reconnect;
//! - `pulselink pin CERT.pem` prints the `--pin` value of each certificate in a file.

mod demo;
mod emit;
mod gateway;
mod listen;

use std::time::Duration;

use clap::{Parser, Subcommand};
use pulselink::{Client, ClientConfig, EnvelopeOptions, Notice, Protocol, State, Transports};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "pulselink",
    version,
    about = "Realtime client that keeps an app connected"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Connection options shared by the commands that talk to a server.
#[derive(clap::Args, Clone)]
struct Connection {
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
    /// Engine.IO transports: websocket, polling, polling-upgrade (polling, then WebSocket if
    /// offered) or websocket-fallback (WebSocket, polling if that fails).
    #[arg(long, default_value = "websocket", value_parser = parse_transports)]
    transport: Transports,
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

#[derive(Subcommand)]
enum Command {
    /// Print one JSON line per inbound event; state changes go to stderr.
    Listen {
        #[command(flatten)]
        conn: Connection,
        /// Namespace to join (repeatable; the first is the main one). Default "/".
        #[arg(long = "namespace")]
        namespaces: Vec<String>,
        /// Exit 0 after this many events.
        #[arg(long)]
        count: Option<u64>,
        /// Subscription sent on every connect, as EVENT=JSON: e.g.
        /// `room:subscribe={"roomId":"r1"}` (Socket.IO) or
        /// `subscribe={"eventTypes":["scores:updated"]}` (envelope). Repeatable.
        #[arg(long = "subscribe", value_parser = listen::parse_subscription)]
        subscriptions: Vec<listen::Subscription>,
    },
    /// Send one event; with --ack, wait for the acknowledgement and print it as JSON.
    Emit {
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        request: emit::Request,
    },
    /// Forward telemetry lines (stdin, --udp or --follow) durably: each reading is stored
    /// before it counts as accepted and sent once the link allows; drains and exits 0 when the
    /// input ends or on SIGINT/SIGTERM.
    Gateway {
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        options: gateway::Options,
    },
    /// Start a Socket.IO server in this process, connect to it, drop it, restart it, and show
    /// the client reconnecting. Needs nothing else; ends by itself.
    Demo,
    /// Print the `--pin` value (`sha256/` + base64 SHA-256 of the public key) of each
    /// certificate in a PEM file, one per line.
    Pin {
        /// PEM file with one or more certificates (e.g. the server's fullchain.pem).
        file: std::path::PathBuf,
    },
}

impl Connection {
    fn config(&self, namespaces: &[String]) -> pulselink::Result<ClientConfig> {
        let mut config = ClientConfig::new(&self.url)?;
        config.path = self.path.clone();
        config.connect_wait = Duration::from_secs(self.connect_timeout);
        config.transports = self.transport;
        config.protocol = self.protocol;
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

/// Prints state changes and notices to stderr until the client closes.
fn log_states(client: &Client) {
    let mut states = client.states();
    let mut notices = client.notices();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = states.changed() => {
                    if changed.is_err() { break; }
                    let s = states.borrow_and_update().clone();
                    eprintln!("state: {}", describe(&s));
                    if s == State::Closed { break; }
                }
                n = notices.recv() => match n {
                    Ok(Notice::ConnectFailed { error, .. }) => eprintln!("connect failed: {error}"),
                    Ok(Notice::ConnectError { namespace, message, will_retry }) => eprintln!(
                        "{namespace} refused: {message}{}",
                        if will_retry { " (retrying with fresh credentials)" } else { "" }
                    ),
                    Ok(Notice::Disconnected { reason }) => eprintln!("disconnected: {reason:?}"),
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => break,
                },
            }
        }
    });
}

fn describe(s: &State) -> String {
    match s {
        State::Reconnecting { attempt, delay } => {
            format!(
                "reconnecting (attempt {attempt} in {} ms)",
                delay.as_millis()
            )
        }
        State::Unauthorized { message } => format!("unauthorized: {message}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

fn print_pins(file: &std::path::Path) -> pulselink::Result<()> {
    let pem = std::fs::read_to_string(file)
        .map_err(|e| pulselink::Error::InvalidArgs(format!("{}: {e}", file.display())))?;
    for pin in pulselink::certificate_pins(&pem)? {
        println!("{pin}");
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    tracing_subscriber::fmt()
        // Even PULSELINK_LOG=trace keeps tokens out of the logs.
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
            "{},{}",
            std::env::var("PULSELINK_LOG").unwrap_or_default(),
            pulselink::TRACE_SAFE_FILTER
        )))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Listen {
            conn,
            namespaces,
            count,
            subscriptions,
        } => listen::run(conn, namespaces, count, subscriptions).await,
        Command::Emit { conn, request } => emit::run(conn, request).await,
        Command::Gateway { conn, options } => gateway::run(conn, options).await,
        Command::Demo => demo::run().await,
        Command::Pin { file } => print_pins(&file),
    };
    let code = match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    };
    // Exit here rather than by dropping the runtime: a stdin read still blocked in the
    // runtime's blocking pool would otherwise hold the process until the next line arrives.
    std::process::exit(code)
}
