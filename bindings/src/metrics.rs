//! A point-in-time view of a client, for logs and dashboards.

use crate::{event::State, outbox::OutboxStats};

/// Counters, the outbox and acknowledgement latency (see the core's `Metrics`).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Metrics {
    /// The state now.
    pub state: State,
    /// Successful connections, the first one included.
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
    /// Reconnects on which the server restored the session.
    pub recovered_sessions: u64,
    /// Subscriptions not acknowledged in time.
    pub subscriptions_failed: u64,
    /// Times the server said the rate limit was exceeded.
    pub rate_limit_pauses: u64,
    /// The outbox.
    pub outbox: OutboxStats,
    /// Acknowledgement latency over the most recent emits.
    pub ack_latency: Latency,
    /// Radio wake-ups: traffic after at least 2 s of silence (what the app's traffic costs
    /// a phone's battery).
    pub radio_wakeups: u64,
    /// How long the radio was kept awake, in milliseconds.
    pub radio_active_ms: u64,
    /// Times the engine read the link, each a wake-up of its thread (a stream the server
    /// pushes is read in batches, so this stays well under `events_received` then).
    pub inbound_reads: u64,
    /// Of those, reads that followed a hold: frames of a busy stream left to gather.
    pub held_reads: u64,
    /// Time spent in each state since the client was created.
    pub state_times: StateTimes,
}

/// Time spent in each state, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, uniffi::Record)]
pub struct StateTimes {
    /// `Connected`.
    pub connected_ms: u64,
    /// `Connecting` and `Reconnecting`.
    pub connecting_ms: u64,
    /// `Suspended`.
    pub suspended_ms: u64,
    /// `Offline`.
    pub offline_ms: u64,
    /// `Background`.
    pub background_ms: u64,
    /// `Idle` and `Unauthorized`.
    pub idle_ms: u64,
}

/// Latency summary, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, uniffi::Record)]
pub struct Latency {
    /// Samples summarised.
    pub samples: u64,
    /// Mean.
    pub avg_us: u64,
    /// Median.
    pub p50_us: u64,
    /// 95th percentile.
    pub p95_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
}

impl From<pulselink::Metrics> for Metrics {
    fn from(m: pulselink::Metrics) -> Self {
        let l = m.ack_latency;
        let us = |d: std::time::Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let t = m.state_times;
        Self {
            state: m.state.into(),
            connects: m.connects,
            reconnects: m.reconnects,
            events_sent: m.events_sent,
            events_received: m.events_received,
            duplicates_dropped: m.duplicates_dropped,
            stale_dropped: m.stale_dropped,
            invalid_dropped: m.invalid_dropped,
            recovered_sessions: m.recovered_sessions,
            subscriptions_failed: m.subscriptions_failed,
            rate_limit_pauses: m.rate_limit_pauses,
            outbox: m.outbox.into(),
            ack_latency: Latency {
                samples: l.samples as u64,
                avg_us: us(l.avg),
                p50_us: us(l.p50),
                p95_us: us(l.p95),
                p99_us: us(l.p99),
            },
            radio_wakeups: m.radio_wakeups,
            radio_active_ms: ms(m.radio_active),
            inbound_reads: m.inbound_reads,
            held_reads: m.held_reads,
            state_times: StateTimes {
                connected_ms: ms(t.connected),
                connecting_ms: ms(t.connecting),
                suspended_ms: ms(t.suspended),
                offline_ms: ms(t.offline),
                background_ms: ms(t.background),
                idle_ms: ms(t.idle),
            },
        }
    }
}
