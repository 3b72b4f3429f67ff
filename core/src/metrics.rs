//! Counters and acknowledgement latencies, as a snapshot the app can log or chart.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use crate::{event::State, outbox::OutboxStats};

/// A point-in-time view of a client (seed: connects, reconnects, events sent / received /
/// failed, duplicates, outbox depth, ack latency percentiles, state).
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    /// The state now.
    pub state: State,
    /// Successful connections (main namespace joined), the first one included.
    pub connects: u64,
    /// Of those, connections after a loss.
    pub reconnects: u64,
    /// Events written to the server (resends included).
    pub events_sent: u64,
    /// Events delivered to the app.
    pub events_received: u64,
    /// Inbound duplicates dropped.
    pub duplicates_dropped: u64,
    /// Inbound events dropped as too old.
    pub stale_dropped: u64,
    /// Inbound messages dropped because they failed validation (envelope protocol).
    pub invalid_dropped: u64,
    /// Inbound events the server sent again after a reconnect that recovered the session.
    pub recovered_sessions: u64,
    /// Subscriptions that were not acknowledged in time.
    pub subscriptions_failed: u64,
    /// Times the server said the rate limit was exceeded (sending paused).
    pub rate_limit_pauses: u64,
    /// The outbox.
    pub outbox: OutboxStats,
    /// Acknowledgement latency of emits, over the most recent ones.
    pub ack_latency: Latency,
    /// Radio wake-ups: traffic on the link (either way, connection attempts included) after
    /// at least [`RADIO_TAIL`] of silence. Each costs a phone seconds of high-power radio
    /// state, so this is what the app's traffic costs in battery.
    pub radio_wakeups: u64,
    /// How long the radio was kept awake: the union of [`RADIO_TAIL`] after every burst.
    pub radio_active: Duration,
    /// Times the engine read the link: batches of frames (or the link's end). A stream the
    /// server pushes is read in larger batches once held (see `ClientConfig::read_hold`), so
    /// this stays well under `events_received` then.
    pub inbound_reads: u64,
    /// Of `inbound_reads`, the first read after each hold.
    pub held_reads: u64,
    /// Time spent in each state since the client was created.
    pub state_times: StateTimes,
}

/// How long after the last packet a cellular radio is taken to stay in its high-power state.
/// Real tails are longer (several seconds on LTE), so wake-ups counted with this are a lower
/// bound on what the radio does.
pub const RADIO_TAIL: Duration = Duration::from_secs(2);

/// Time spent in each [`State`], since the client was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateTimes {
    /// `Connected`.
    pub connected: Duration,
    /// `Connecting` and `Reconnecting`.
    pub connecting: Duration,
    /// `Suspended`.
    pub suspended: Duration,
    /// `Offline`.
    pub offline: Duration,
    /// `Background`.
    pub background: Duration,
    /// `Idle` and `Unauthorized` (not trying).
    pub idle: Duration,
}

impl StateTimes {
    /// Adds `d` to `state`'s total (`Closed` is not timed).
    pub(crate) fn add(&mut self, state: &State, d: Duration) {
        let slot = match state {
            State::Connected => &mut self.connected,
            State::Connecting | State::Reconnecting { .. } => &mut self.connecting,
            State::Suspended { .. } => &mut self.suspended,
            State::Offline => &mut self.offline,
            State::Background => &mut self.background,
            State::Idle | State::Unauthorized { .. } => &mut self.idle,
            State::Closed => return,
        };
        *slot += d;
    }
}

/// Latency summary.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    /// Samples summarised.
    pub samples: usize,
    /// Mean.
    pub avg: Duration,
    /// Median.
    pub p50: Duration,
    /// 95th percentile.
    pub p95: Duration,
    /// 99th percentile.
    pub p99: Duration,
}

/// The engine's counters.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counters {
    pub(crate) connects: u64,
    pub(crate) reconnects: u64,
    pub(crate) sent: u64,
    pub(crate) received: u64,
    pub(crate) duplicates: u64,
    pub(crate) stale: u64,
    pub(crate) invalid: u64,
    pub(crate) recovered: u64,
    pub(crate) subscriptions_failed: u64,
    pub(crate) rate_limit_pauses: u64,
    pub(crate) latencies: Samples,
    pub(crate) radio_wakeups: u64,
    pub(crate) radio_active: Duration,
    pub(crate) inbound_reads: u64,
    pub(crate) held_reads: u64,
    pub(crate) state_times: StateTimes,
}

/// The most recent latency samples, in microseconds.
#[derive(Debug, Clone, Default)]
pub(crate) struct Samples(VecDeque<u32>);

/// Samples kept: enough for a stable p99, small enough to sort on demand.
const SAMPLES: usize = 4096;

impl Samples {
    pub(crate) fn record(&mut self, d: Duration) {
        if self.0.len() == SAMPLES {
            self.0.pop_front();
        }
        self.0.push_back(d.as_micros().min(u32::MAX as u128) as u32);
    }

    pub(crate) fn summary(&self) -> Latency {
        if self.0.is_empty() {
            return Latency::default();
        }
        let mut v: Vec<u32> = self.0.iter().copied().collect();
        v.sort_unstable();
        let at = |q: f64| {
            let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
            Duration::from_micros(v[i] as u64)
        };
        let sum: u64 = v.iter().map(|x| *x as u64).sum();
        Latency {
            samples: v.len(),
            avg: Duration::from_micros(sum / v.len() as u64),
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
        }
    }
}

/// Totals across the clients of one [`crate::Hub`], counted as they happen: read without a
/// round trip to any client's engine, and without a listener per client (a task and a
/// channel each, kilobytes a hub of thousands would pay only to count).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HubStats {
    /// Events delivered to the apps of the hub's clients (duplicates and stale ones dropped
    /// are not), since the hub was made.
    pub events_received: u64,
    /// Events written to servers by them, resends and volatile emits included.
    pub events_sent: u64,
}

/// A hub's totals, shared with its clients' engines.
#[derive(Debug, Default)]
pub(crate) struct HubCounters {
    received: AtomicU64,
    sent: AtomicU64,
}

impl HubCounters {
    /// The totals now.
    pub(crate) fn stats(&self) -> HubStats {
        HubStats {
            events_received: self.received.load(Ordering::Relaxed),
            events_sent: self.sent.load(Ordering::Relaxed),
        }
    }
}

/// One client's part in its hub's totals: its own counts as of the last time it added them.
#[derive(Debug)]
pub(crate) struct HubShare {
    counters: Arc<HubCounters>,
    received: u64,
    sent: u64,
}

impl HubShare {
    pub(crate) fn new(counters: Arc<HubCounters>) -> Self {
        Self {
            counters,
            received: 0,
            sent: 0,
        }
    }

    /// Adds what the client counted since the last call (its counters only grow).
    pub(crate) fn add(&mut self, received: u64, sent: u64) {
        let add = |total: &AtomicU64, added: &mut u64, now: u64| {
            if now > *added {
                total.fetch_add(now - *added, Ordering::Relaxed);
                *added = now;
            }
        };
        add(&self.counters.received, &mut self.received, received);
        add(&self.counters.sent, &mut self.sent, sent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_over_the_recent_window() {
        let mut s = Samples::default();
        assert_eq!(s.summary().samples, 0);
        for i in 1..=100 {
            s.record(Duration::from_micros(i));
        }
        let l = s.summary();
        assert_eq!(l.p50, Duration::from_micros(50));
        assert_eq!(l.p95, Duration::from_micros(95));
        assert_eq!(l.p99, Duration::from_micros(99));
        assert_eq!(l.avg, Duration::from_micros(50));
        for _ in 0..SAMPLES {
            s.record(Duration::from_micros(7));
        }
        assert_eq!(
            s.summary().p99,
            Duration::from_micros(7),
            "old samples age out"
        );
    }
}
