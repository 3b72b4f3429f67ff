//! What the gateway tells its operator: a live line on a terminal, periodic log lines
//! otherwise, JSON lines for machines (`--json-status`).

use std::{
    io::{IsTerminal, Write},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use pulselink::{Client, Metrics};
use serde_json::{Value, json};

/// Counts kept by the input loop.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Lines read from every source.
    pub(crate) lines: AtomicU64,
    /// Readings committed to the outbox.
    pub(crate) accepted: AtomicU64,
    /// Lines refused (not JSON, no rule, too long).
    pub(crate) refused: AtomicU64,
    /// Readings dropped by a rule's minimum interval.
    pub(crate) throttled: AtomicU64,
    /// Readings the outbox refused (full, disk full).
    pub(crate) failed: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// How status is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// One line on stderr, rewritten in place.
    Terminal,
    /// A plain line on stderr now and then.
    Log,
    /// A JSON object per line on stdout.
    Json,
}

impl Mode {
    pub(crate) fn pick(json: bool) -> Self {
        if json {
            Mode::Json
        } else if std::io::stderr().is_terminal() {
            Mode::Terminal
        } else {
            Mode::Log
        }
    }

    fn interval(self) -> Duration {
        match self {
            Mode::Terminal => Duration::from_millis(500),
            Mode::Log | Mode::Json => Duration::from_secs(10),
        }
    }
}

/// Peak resident set size of this process in KiB (Linux), for the operator of a small box.
pub(crate) fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The status as JSON.
pub(crate) fn snapshot(c: &Counters, m: &Metrics) -> Value {
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let dropped = get(&c.refused)
        + get(&c.throttled)
        + get(&c.failed)
        + m.outbox.expired
        + m.outbox.dropped_overflow
        + m.outbox.failed;
    json!({
        "state": crate::states::describe(&m.state),
        "lines": get(&c.lines),
        "accepted": get(&c.accepted),
        "sent": m.events_sent,
        "delivered": m.outbox.delivered,
        "queued": m.outbox.pending,
        "queued_bytes": m.outbox.pending_bytes,
        "refused": get(&c.refused),
        "throttled": get(&c.throttled),
        "dropped": dropped,
        "ack_p50_ms": m.ack_latency.p50.as_secs_f64() * 1000.0,
        "peak_rss_kib": peak_rss_kib(),
    })
}

/// One human line.
pub(crate) fn describe(v: &Value) -> String {
    format!(
        "{} | in {} sent {} queued {} ({} B) dropped {} | ack p50 {:.1} ms",
        v["state"].as_str().unwrap_or("?"),
        v["accepted"],
        v["sent"],
        v["queued"],
        v["queued_bytes"],
        v["dropped"],
        v["ack_p50_ms"].as_f64().unwrap_or(0.0),
    )
}

/// Shows `v` in `mode`.
pub(crate) fn show(mode: Mode, v: &Value) {
    match mode {
        Mode::Terminal => {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K{}", describe(v));
            let _ = err.flush();
        }
        Mode::Log => eprintln!("status: {}", describe(v)),
        Mode::Json => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{v}");
            let _ = out.flush();
        }
    }
}

/// Reports every `every` (default per mode) until the client closes.
pub(crate) fn spawn(
    client: Client,
    counters: Arc<Counters>,
    mode: Mode,
    every: Option<Duration>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.unwrap_or(mode.interval()));
        tick.tick().await;
        loop {
            tick.tick().await;
            match client.metrics().await {
                Ok(m) => show(mode, &snapshot(&counters, &m)),
                Err(_) => return,
            }
        }
    })
}
