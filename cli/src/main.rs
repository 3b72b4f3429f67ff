//! `pulselink`: the command-line face of the SDK, for gateways, scripts and debugging.
//!
//! - `pulselink listen URL` prints inbound events as JSON lines;
//! - `pulselink emit URL EVENT JSON` sends one event (optionally waiting for its ack);
//! - `pulselink gateway URL` forwards telemetry lines durably over a bad uplink;
//! - `pulselink swarm URL` simulates a fleet of devices against a server (a load test);
//! - `pulselink demo` runs a server and a client in one process and shows a reconnect;
//! - `pulselink pin CERT.pem` prints the `--pin` value of each certificate in a file.

mod connection;
mod demo;
mod emit;
mod gateway;
mod listen;
mod states;
mod swarm;

use clap::{Parser, Subcommand};
use tracing_subscriber::{
    Layer as _,
    filter::{FilterExt as _, LevelFilter, Targets},
    layer::SubscriberExt,
    util::SubscriberInitExt,
};

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
    /// Simulate a fleet of devices against a server (a load test): --clients connections,
    /// each with its own identity, subscriptions and telemetry; a live status line on stderr,
    /// a JSON report at the end; exits 0 when every device was connected at the end and every
    /// acknowledged emit was answered, 3 when not.
    Swarm {
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        options: swarm::Options,
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

/// The swarm's exit status when it ran but not every device stayed reachable or every
/// acknowledged emit was answered (1 is an error, 2 clap's usage error).
const SWARM_UNMET: i32 = 3;

/// What `PULSELINK_LOG` asks to log: `target=level` directives and a default level
/// (`debug`, `pulselink=trace,info`), errors only when unset. `Targets` rather than
/// `EnvFilter`: the same directives without span filters, and without the regex engine that
/// was some 500 KB of this binary's code.
fn log_filter() -> Targets {
    let asked = std::env::var("PULSELINK_LOG").unwrap_or_default();
    let directives = asked
        .split(',')
        .filter(|d| !d.trim().is_empty())
        .collect::<Vec<_>>()
        .join(",");
    let mut filter = if directives.is_empty() {
        Targets::new()
    } else {
        directives.parse().unwrap_or_else(|e| {
            eprintln!("PULSELINK_LOG={asked:?} is not a log filter ({e}); logging errors only");
            Targets::new()
        })
    };
    if filter.default_level().is_none() {
        filter = filter.with_default(LevelFilter::ERROR);
    }
    filter
}

/// A cap on whatever `PULSELINK_LOG` asks: `TRACE_SAFE_FILTER`'s targets at INFO at most,
/// their modules included (`tungstenite::protocol=trace` asks for frame dumps too), so tokens
/// stay out of the logs.
fn trace_safe() -> Targets {
    let safe: Targets = pulselink::TRACE_SAFE_FILTER
        .parse()
        .expect("TRACE_SAFE_FILTER is target=level directives");
    Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(safe)
}

fn main() {
    // The filter on the layer, not on `fmt()`'s subscriber: that one caps everything at INFO
    // before any filter added to it is asked.
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(log_filter().and(trace_safe())),
        )
        .init();
    let cli = Cli::parse();
    // One thread serves one connection best; a fleet of them uses every core.
    let runtime = match cli.command {
        Command::Swarm { .. } => {
            swarm::prepare_process();
            tokio::runtime::Builder::new_multi_thread()
        }
        _ => tokio::runtime::Builder::new_current_thread(),
    }
    .enable_all()
    .build()
    .expect("the runtime starts");
    let code = runtime.block_on(run(cli.command));
    // Exit here rather than by dropping the runtime: a stdin read still blocked in the
    // runtime's blocking pool would otherwise hold the process until the next line arrives.
    std::process::exit(code)
}

async fn run(command: Command) -> i32 {
    let result = match command {
        Command::Listen {
            conn,
            namespaces,
            count,
            subscriptions,
        } => listen::run(conn, namespaces, count, subscriptions).await,
        Command::Emit { conn, request } => emit::run(conn, request).await,
        Command::Gateway { conn, options } => gateway::run(conn, options).await,
        Command::Swarm { conn, options } => match swarm::run(conn, options).await {
            Ok(true) => Ok(()),
            Ok(false) => return SWARM_UNMET,
            Err(e) => Err(e),
        },
        Command::Demo => demo::run().await,
        Command::Pin { file } => print_pins(&file),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}
