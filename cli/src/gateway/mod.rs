//! `pulselink gateway`: forwards device telemetry to the server through the durable outbox.
//!
//! Lines come from stdin, a UDP port or a followed file; the rules turn each into an emit
//! that is committed to the store (`Durability::Full` by default: the box may lose power)
//! before it counts as accepted. The outbox does the rest: reconnects, resends with the same
//! idempotency key, priorities, coalescing, TTL. When the input ends, or on SIGINT/SIGTERM, the
//! gateway drains what it can within the grace period and exits 0; what is not sent stays in
//! the store for the next start.

mod input;
mod rules;
mod status;

use std::{path::PathBuf, sync::Arc, time::Duration};

use futures_util::{StreamExt, stream::FuturesUnordered};
use pulselink::{Client, Durability, Error};
use tokio::sync::mpsc;

use self::{
    rules::{GatewayConfig, Refused, Router},
    status::{Counters, Mode},
};
use crate::connection::Connection;

/// Options of `pulselink gateway`.
#[derive(clap::Args)]
pub(crate) struct Options {
    /// Rules: event mapping, priority, coalescing, minimum interval, TTL (TOML).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The outbox file (created if missing). Default: pulselink-gateway.db in the working
    /// directory.
    #[arg(long, default_value = "pulselink-gateway.db")]
    store: PathBuf,
    /// `full` (survives power loss) or `normal` (survives a crash of the process).
    #[arg(long, default_value = "full")]
    durability: String,
    /// Read lines from UDP datagrams on 127.0.0.1:PORT instead of stdin.
    #[arg(long)]
    udp: Option<u16>,
    /// Follow a file or serial device as it grows instead of reading stdin.
    #[arg(long)]
    follow: Option<PathBuf>,
    /// Print status as JSON lines on stdout (and a final one on exit).
    #[arg(long)]
    json_status: bool,
    /// Milliseconds between status reports (default: 500 on a terminal, 10000 otherwise).
    #[arg(long)]
    status_interval: Option<u64>,
    /// Seconds allowed to drain the outbox when the input ends or on SIGINT/SIGTERM.
    #[arg(long, default_value_t = 10)]
    grace: u64,
}

/// Emits waiting for their commit at once: enough to fill a group commit, bounded memory.
const IN_FLIGHT: usize = 1024;

/// Runs the gateway until its input ends or it is told to stop.
pub(crate) async fn run(conn: Connection, opts: Options) -> pulselink::Result<()> {
    let rules = match &opts.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::InvalidConfig(format!("{}: {e}", path.display())))?;
            GatewayConfig::parse(&text)
                .map_err(|e| Error::InvalidConfig(format!("{}: {e}", path.display())))?
        }
        None => GatewayConfig::default(),
    };
    let subscriptions = rules.subscriptions.clone();
    let mut router = Router::new(rules);
    let mut config = conn.config(&[])?.with_store(&opts.store);
    config.store.durability = match opts.durability.as_str() {
        "full" => Durability::Full,
        "normal" => Durability::Normal,
        other => {
            return Err(Error::InvalidConfig(format!(
                "--durability must be full or normal, not {other:?}"
            )));
        }
    };
    let client = Client::new(config)?;
    crate::states::log_states(&client);
    for s in &subscriptions {
        let args = s.args().map_err(Error::InvalidConfig)?;
        client
            .subscribe(&s.event, args, s.unsubscribe.as_deref())
            .await?;
    }
    client.start()?;

    let (tx, mut rx) = mpsc::channel(IN_FLIGHT);
    let max = router.max_line();
    let _source = match (&opts.udp, &opts.follow) {
        (Some(_), Some(_)) => {
            return Err(Error::InvalidConfig(
                "choose one input: --udp or --follow".into(),
            ));
        }
        (Some(port), None) => input::udp(*port, max, tx)
            .await
            .map_err(|e| Error::InvalidConfig(format!("--udp {port}: {e}")))?,
        (None, Some(path)) => input::follow(path.clone(), max, tx)
            .await
            .map_err(|e| Error::InvalidConfig(format!("--follow {}: {e}", path.display())))?,
        (None, None) => input::stdin(max, tx),
    };

    let counters = Arc::new(Counters::default());
    let mode = Mode::pick(opts.json_status);
    let every = opts.status_interval.map(Duration::from_millis);
    let reporter = status::spawn(client.clone(), counters.clone(), mode, every);
    let mut pending = FuturesUnordered::new();
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            Some(done) = pending.next(), if !pending.is_empty() => {
                on_committed(done, &counters);
            }
            line = rx.recv(), if pending.len() < IN_FLIGHT => {
                let Some(line) = line else { break };
                Counters::add(&counters.lines);
                let text = match line.text {
                    Ok(t) => t,
                    Err(len) => {
                        refuse(&line.source, line.line_no, &Refused::TooLong(len), &counters);
                        continue;
                    }
                };
                match router.route(&text, tokio::time::Instant::now()) {
                    Ok(r) => {
                        let c = client.clone();
                        pending.push(async move { c.emit_with(&r.event, r.args, r.options).await });
                    }
                    Err(Refused::Throttled) => Counters::add(&counters.throttled),
                    Err(why) => refuse(&line.source, line.line_no, &why, &counters),
                }
            }
        }
    }
    // Readings read so far are committed before draining starts: none is half accepted.
    while let Some(done) = pending.next().await {
        on_committed(done, &counters);
    }
    let grace = Duration::from_secs(opts.grace);
    let drained = tokio::time::timeout(grace, client.outbox().drained()).await;
    reporter.abort();
    let m = client.metrics().await?;
    let summary = status::snapshot(&counters, &m);
    if mode == Mode::Terminal {
        eprintln!();
    }
    if drained.is_err() {
        eprintln!(
            "gateway: {} readings still queued after the {grace:?} grace period; they stay in {}",
            m.outbox.pending,
            opts.store.display()
        );
    }
    status::show(
        if mode == Mode::Json {
            Mode::Json
        } else {
            Mode::Log
        },
        &summary,
    );
    client.close().await;
    Ok(())
}

fn on_committed(done: pulselink::Result<u64>, counters: &Counters) {
    match done {
        Ok(_) => Counters::add(&counters.accepted),
        Err(e) => {
            Counters::add(&counters.failed);
            eprintln!("gateway: reading not stored: {e}");
        }
    }
}

fn refuse(source: &str, line_no: u64, why: &Refused, counters: &Counters) {
    Counters::add(&counters.refused);
    eprintln!("gateway: {source} line {line_no}: {why}");
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
