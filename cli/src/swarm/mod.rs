//! `pulselink swarm`: a fleet of simulated devices against a server the user names — how a
//! team load-tests its own server. Every device is a full client (identity from a template,
//! subscriptions, a durable outbox, reconnects); they connect spread over `--ramp`, emit at
//! `--rate` each, and the run ends after `--duration` with a JSON report and an exit status
//! that says whether every device stayed reachable and every acknowledged emit was answered.

mod device;
mod histogram;
mod notices;
mod tally;

use std::{io::IsTerminal, sync::Arc, time::Duration};

use futures_util::future::join_all;
use pulselink::{Client, State};
use serde_json::{Value, json};
use tokio::{sync::watch, time::Instant};

use self::{
    device::{Plan, fill},
    tally::{Reading, Tally},
};
use crate::connection::Connection;

/// Most devices one run simulates.
const MAX_CLIENTS: u64 = 1_000_000;

/// `pulselink swarm` options.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct Options {
    /// Devices to simulate, each with its own connection and identity.
    #[arg(long, default_value_t = 100)]
    clients: u64,
    /// Seconds over which the devices start, evenly spread (0: all at once).
    #[arg(long, default_value_t = 5.0)]
    ramp: f64,
    /// Seconds the run lasts after the ramp.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Each device's token, `{i}` replaced by its index (0-based): e.g. 'dev-{i}'. Sent as
    /// the auth object `{"token": …}`. Without it, --token (if any) for every device.
    #[arg(long, value_name = "TEMPLATE")]
    token_template: Option<String>,
    /// Subscription sent on every connect, as EVENT=JSON; `{i}` in the JSON is replaced by
    /// the device's index: e.g. `room:subscribe={"roomId":"r1"}`. Repeatable.
    #[arg(long = "subscribe", value_name = "EVENT=JSON")]
    subscriptions: Vec<String>,
    /// Telemetry each device emits, as EVENT=JSON (`{i}` replaced): e.g.
    /// `client:tick={"device":"{i}"}`. Needs --rate.
    #[arg(long, value_name = "EVENT=JSON", requires = "rate")]
    emit: Option<String>,
    /// Emits per second per device.
    #[arg(long, requires = "emit")]
    rate: Option<f64>,
    /// Ask for the server's acknowledgement of every emit and time its round trip.
    #[arg(long, requires = "emit")]
    ack: bool,
    /// Seconds to wait for an acknowledgement before counting the emit as failed.
    #[arg(long, default_value_t = 10.0, requires = "ack")]
    ack_timeout: f64,
    /// Write the JSON report here instead of stdout.
    #[arg(long, value_name = "FILE")]
    report: Option<std::path::PathBuf>,
}

/// The options, checked: every problem is said before anything connects.
#[derive(Debug)]
struct Checked {
    ramp: Duration,
    duration: Duration,
    plan: Plan,
}

fn seconds(name: &str, v: f64, allow_zero: bool) -> Result<Duration, String> {
    if !v.is_finite() || v < 0.0 || (!allow_zero && v == 0.0) || v > 30.0 * 86_400.0 {
        let least = if allow_zero { "0" } else { "more than 0" };
        return Err(format!(
            "--{name} must be {least} and at most 30 days of seconds, got {v}"
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

fn split(option: &str, s: &str) -> Result<(String, String), String> {
    let (event, json) = s
        .split_once('=')
        .filter(|(e, _)| !e.is_empty())
        .ok_or_else(|| format!("--{option} expects EVENT=JSON, got {s:?}"))?;
    fill(json, 0).map_err(|e| format!("--{option}: {e}"))?;
    Ok((event.to_owned(), json.to_owned()))
}

impl Options {
    fn check(&self) -> Result<Checked, String> {
        if self.clients == 0 || self.clients > MAX_CLIENTS {
            return Err(format!(
                "--clients must be between 1 and {MAX_CLIENTS}, got {}",
                self.clients
            ));
        }
        let rate = self.rate.unwrap_or(0.0);
        if !rate.is_finite() || rate <= 0.0 && self.emit.is_some() || rate > 10_000.0 {
            return Err(format!(
                "--rate must be more than 0 and at most 10000 emits per second per device, got {rate}"
            ));
        }
        Ok(Checked {
            ramp: seconds("ramp", self.ramp, true)?,
            duration: seconds("duration", self.duration, false)?,
            plan: Plan {
                subscriptions: self
                    .subscriptions
                    .iter()
                    .map(|s| split("subscribe", s))
                    .collect::<Result<_, _>>()?,
                emit: self.emit.as_deref().map(|e| split("emit", e)).transpose()?,
                rate,
                ack: self
                    .ack
                    .then(|| seconds("ack-timeout", self.ack_timeout, false))
                    .transpose()?,
            },
        })
    }
}

/// Sets the process up for a fleet; called before the runtime's threads start.
///
/// glibc gives each thread that allocates an arena of its own, up to eight per core, and a
/// fleet's many small allocations, spread over the threads' arenas, leave each of them
/// partly used: with one arena per core, 2,000 idle subscribed devices held 14.7 KiB each
/// instead of 15.9. A thread keeps the arena it first got, hence before the threads exist.
pub(crate) fn prepare_process() {
    // A limit the user set (glibc reads MALLOC_ARENA_MAX at its first allocation) stands.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let arenas = libc::c_int::try_from(cores).unwrap_or(libc::c_int::MAX);
        // SAFETY: `mallopt` sets one of malloc's parameters; a refusal (0) leaves glibc's
        // default, which is only a larger footprint.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) };
    }
}

/// Runs the swarm; `Ok(true)` when every device was connected at the end and every
/// acknowledged emit was answered.
pub(crate) async fn run(conn: Connection, options: Options) -> pulselink::Result<bool> {
    let checked = options.check().map_err(pulselink::Error::InvalidConfig)?;
    // Before the hub and the devices exist: they are what each device costs.
    let rss_before = proc_status_kib("VmRSS:");
    let hub = pulselink::Hub::new()?;
    // One configuration for the fleet: devices differ only in their tokens.
    let shared = hub.share(conn.config(&[])?)?;
    let tally = Arc::new(Tally::new(
        hub.clone(),
        shared.config().main_namespace(),
        options.clients,
    ));
    let fleet = Arc::new(device::Fleet {
        hub: hub.clone(),
        shared,
        plan: checked.plan,
        tally: tally.clone(),
        token_template: options.token_template.clone(),
    });
    let (stop_tx, stop) = watch::channel(false);
    // Listening before the first client exists: none of its notices is missed.
    let (notices_done, done) = tokio::sync::oneshot::channel();
    let follower = tokio::spawn(notices::follow(hub.notices(), tally.clone(), done));
    let began = Instant::now();
    let n = options.clients;
    let end = began + checked.ramp + checked.duration;
    let status = tokio::spawn(show_status(tally.clone(), n));
    // Each device starts at its slot of the ramp, not before: a task waiting for its slot
    // would be memory held for nothing. A device's task returns its client once started (an
    // idle one) or once stopped (one with telemetry), and is reaped at once.
    let mut devices = tokio::task::JoinSet::new();
    let mut clients = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    let mut next = 0u64;
    let slot = |i: u64| began + checked.ramp.mul_f64(i as f64 / n as f64);
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        tokio::select! {
            biased;
            Some(done) = devices.join_next() => clients.extend(done.ok().flatten()),
            () = tokio::time::sleep_until(slot(next)), if next < n => {
                let now = Instant::now();
                while next < n && slot(next) <= now {
                    devices.spawn(device::run(next, fleet.clone(), stop.clone()));
                    next += 1;
                }
            }
            () = tokio::time::sleep_until(end) => break,
            _ = &mut interrupted => {
                eprintln!("\nswarm: interrupted; stopping");
                break;
            }
        }
    }
    // Measured while every device still holds its connection.
    let rss_connected = proc_status_kib("VmRSS:");
    let threads = proc_status_kib("Threads:");
    // The clients' own states, not only their notices: the figure divides by it.
    let holding = tally.reconcile();
    status.abort();
    // The last word: the whole run's rates.
    let whole = tally.reading();
    eprintln!(
        "\nswarm: {}",
        status_line(&tally, n, &whole, &Reading::default(), began.elapsed())
    );
    // Notices counted up to here: what the devices' closing brings is the run's end, not a
    // failure to report.
    let _ = notices_done.send(());
    let _ = follower.await;
    let _ = stop_tx.send(true);
    while let Some(done) = devices.join_next().await {
        clients.extend(done.ok().flatten());
    }
    let connected_at_end = clients
        .iter()
        .filter(|c| c.state() == State::Connected)
        .count() as u64;
    join_all(clients.iter().map(Client::close)).await;

    let mut report = tally.to_json();
    let counts = report.as_object_mut().expect("an object");
    let ack_failed = counts["ack_failed"].as_u64().unwrap_or(0);
    let ok = connected_at_end == n && ack_failed == 0;
    // Per connected device: one that never connected holds little.
    let per_client = match (rss_before, rss_connected, holding) {
        (Some(b), Some(c), held) if held > 0 => Some(c.saturating_sub(b) as f64 / held as f64),
        _ => None,
    };
    counts.insert("clients".into(), json!(n));
    counts.insert("connected_at_end".into(), json!(connected_at_end));
    counts.insert("ok".into(), json!(ok));
    counts.insert(
        "run".into(),
        json!({
            "ramp_s": checked.ramp.as_secs_f64(),
            "duration_s": checked.duration.as_secs_f64(),
            "elapsed_s": began.elapsed().as_secs_f64(),
            "rate_per_client": fleet.plan.rate,
            "acknowledged": fleet.plan.ack.is_some(),
        }),
    );
    counts.insert(
        "process".into(),
        json!({
            "rss_before_kib": rss_before,
            "rss_connected_kib": rss_connected,
            "connected_when_measured": holding,
            "rss_per_client_kib": per_client,
            "peak_rss_kib": proc_status_kib("VmHWM:"),
            "threads": threads,
        }),
    );
    write_report(&report, options.report.as_deref())?;
    Ok(ok)
}

fn write_report(report: &Value, to: Option<&std::path::Path>) -> pulselink::Result<()> {
    let text = serde_json::to_string_pretty(report).expect("JSON values serialize");
    match to {
        Some(path) => std::fs::write(path, text + "\n").map_err(|e| {
            pulselink::Error::InvalidConfig(format!("--report {}: {e}", path.display()))
        }),
        None => {
            println!("{text}");
            Ok(())
        }
    }
}

/// A `/proc/self/status` field in its unit (KiB for memory, a count for `Threads:`).
fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The live status line on stderr: rewritten in place on a terminal, a line every 5 s
/// otherwise.
async fn show_status(tally: Arc<Tally>, clients: u64) {
    let terminal = std::io::stderr().is_terminal();
    let every = if terminal {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(5)
    };
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await;
    let mut last = Reading::default();
    loop {
        ticks.tick().await;
        let now = tally.reading();
        let line = status_line(&tally, clients, &now, &last, every);
        if terminal {
            eprint!("\r\x1b[K{line}");
        } else {
            eprintln!("swarm: {line}");
        }
        last = now;
    }
}

/// Connected devices, rates since `last` (`secs` ago), ack percentiles, reconnects, errors.
fn status_line(
    tally: &Tally,
    clients: u64,
    now: &Reading,
    last: &Reading,
    secs: Duration,
) -> String {
    let acks = tally.acks();
    let ms = |p| {
        acks.percentile(p)
            .map_or("-".to_owned(), |us| format!("{:.1}", us as f64 / 1000.0))
    };
    let secs = secs.as_secs_f64().max(1e-3);
    let errors = if now.errors.is_empty() {
        "none".to_owned()
    } else {
        now.errors
            .iter()
            .map(|(k, c)| format!("{k} {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "connected {}/{clients} | in {:.0}/s out {:.0}/s | ack p50 {} ms p99 {} ms | \
         reconnects {} | errors: {errors}",
        now.connected,
        (now.events_in - last.events_in) as f64 / secs,
        (now.emitted - last.emitted) as f64 / secs,
        ms(0.5),
        ms(0.99),
        now.reconnects,
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        options: Options,
    }

    fn check(args: &[&str]) -> Result<Checked, String> {
        let cli = Cli::try_parse_from(std::iter::once("swarm").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.options.check()
    }

    #[test]
    fn options_are_checked_with_clear_messages() {
        let bad = [
            (&["--clients", "0"][..], "--clients must be between 1"),
            (&["--ramp=-1"], "--ramp must be 0"),
            (&["--duration", "0"], "--duration must be more than 0"),
            (
                &["--emit", "tick={}", "--rate", "0"],
                "--rate must be more than 0",
            ),
            (
                &["--emit", "tick", "--rate", "1"],
                "--emit expects EVENT=JSON",
            ),
            (&["--emit", "tick={\"d\":{i}", "--rate", "1"], "--emit: "),
            (&["--subscribe", "=1"], "--subscribe expects EVENT=JSON"),
            (&["--rate", "1"], "--emit"),
            (&["--ack"], "--emit"),
        ];
        for (args, says) in bad {
            let err = check(args).expect_err(&format!("{args:?} accepted"));
            assert!(err.contains(says), "{args:?}: {err}");
        }
        let ok = check(&[
            "--clients",
            "3",
            "--emit",
            "tick={\"device\":\"{i}\",\"n\":{i}}",
            "--rate",
            "2",
            "--ack",
            "--subscribe",
            "room:subscribe={\"roomId\":\"r{i}\"}",
        ])
        .unwrap();
        assert_eq!(ok.plan.rate, 2.0);
        assert_eq!(
            fill(&ok.plan.subscriptions[0].1, 7).unwrap(),
            json!({"roomId": "r7"})
        );
    }
}
