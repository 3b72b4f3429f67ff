//! `pulselink`: the command-line face of the SDK, for gateways, scripts and debugging.
//!
//! - `pulselink listen URL` prints inbound events as JSON lines;
//! - `pulselink emit URL EVENT JSON` sends one event (optionally waiting for its ack);
//! - `pulselink gateway URL` forwards telemetry lines durably over a bad uplink;
//! - `pulselink demo` runs a server and a client in one process and shows a reconnect;
//! - `pulselink pin CERT.pem` prints the `--pin` value of each certificate in a file.

mod connection;
mod demo;
mod emit;
mod gateway;
mod listen;
mod states;

use clap::{Parser, Subcommand};

use crate::connection::Connection;

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
