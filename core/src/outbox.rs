//! The durable outbox as the app sees it: per-emit options, limits, and the entries waiting.
//!
//! Every emit (except volatile ones) is written to the store before `emit` returns and leaves
//! it only once delivered: acknowledged by the server when an ack was asked for, otherwise
//! written to a healthy connection. Each entry carries an idempotency key from its creation,
//! the same on every resend, so a server can drop a repeat.

use std::time::Duration;

use crate::ratelimit::RateLimit;

/// Send priority. A higher lane is flushed first (an alert before telemetry); order is kept
/// within a lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Priority {
    /// Bulk telemetry that may wait.
    Low = 0,
    /// The default.
    #[default]
    Normal = 1,
    /// Alerts and status changes that must go first.
    High = 2,
}

impl Priority {
    /// Every lane, highest first: the flush order.
    pub const DESCENDING: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    pub(crate) fn from_i64(v: i64) -> Self {
        match v {
            i64::MIN..=0 => Priority::Low,
            1 => Priority::Normal,
            _ => Priority::High,
        }
    }
}

/// When [`Priority::Low`] entries wait for the radio to be awake anyway.
///
/// Every radio wake-up costs a phone seconds of high-power state, so a low-priority telemetry
/// emit should not wake the radio on its own: held entries go out together with the next
/// traffic on the link (a heartbeat, an inbound event, a `Normal` or `High` emit), or once the
/// oldest has waited `max_delay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LowLane {
    /// When the lane is held.
    pub hold: LowLaneHold,
    /// The longest a held entry waits.
    pub max_delay: Duration,
}

impl Default for LowLane {
    /// Held always, for at most 60 s.
    fn default() -> Self {
        Self {
            hold: LowLaneHold::Always,
            max_delay: Duration::from_secs(60),
        }
    }
}

/// When the [`LowLane`] is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LowLaneHold {
    /// Always (the default).
    Always,
    /// Only while the network path is expensive or constrained
    /// ([`crate::NetworkPath::is_costly`]).
    OnCostlyPaths,
    /// Never: `Low` entries go as soon as their lane's turn comes.
    Never,
}

/// Options for one emit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmitOptions {
    /// Its lane.
    pub priority: Priority,
    /// Dropped (and counted as expired) if not delivered within this time.
    pub ttl: Option<Duration>,
    /// Keeps only the newest undelivered entry with this key on its namespace: for a
    /// high-rate metric such as heart rate, where only the latest value matters. Not allowed
    /// with `emit_with_ack` (the replaced emit's caller would never hear back).
    pub coalesce_key: Option<String>,
    /// Keep the entry until the server acknowledges it, without waiting for the answer:
    /// delivery that survives a server crash mid-stream (the server's handler must call its
    /// ack callback). Without it an entry is delivered once written to a healthy link.
    pub confirm: bool,
}

impl EmitOptions {
    /// Asks for delivery confirmed by the server's acknowledgement.
    pub fn confirm(mut self) -> Self {
        self.confirm = true;
        self
    }

    /// Sets the priority.
    pub fn priority(mut self, p: Priority) -> Self {
        self.priority = p;
        self
    }

    /// Sets a time to live.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Sets a coalescing key.
    pub fn coalesce(mut self, key: impl Into<String>) -> Self {
        self.coalesce_key = Some(key.into());
        self
    }
}

/// What `emit` does when the outbox is at its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Fail the new emit with [`crate::Error::OutboxFull`]; nothing queued is lost.
    #[default]
    Reject,
    /// Drop the oldest entry of the lowest lane to make room (counted, and announced with
    /// [`crate::Notice::OutboxOverflow`]).
    DropOldest,
}

/// Where an entry's idempotency key travels on the wire with Socket.IO. (With the envelope
/// protocol the key is the message's `id`, and the data is left as the app wrote it.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPlacement {
    /// As a field of the first argument when that is a JSON object (events whose first
    /// argument is not an object go without a key). The default, field `idempotencyKey`.
    Field(String),
    /// As an extra last argument `{"<name>": key}`.
    TrailingArg(String),
    /// Not sent.
    None,
}

impl Default for KeyPlacement {
    fn default() -> Self {
        KeyPlacement::Field("idempotencyKey".into())
    }
}

/// The outbox's limits and sending policies (where it is stored: [`crate::StoreConfig`]).
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// Most entries held.
    pub max_entries: u64,
    /// Most payload bytes held (arguments plus attachments).
    pub max_bytes: u64,
    /// What happens at a limit.
    pub overflow: Overflow,
    /// Where the idempotency key goes.
    pub key: KeyPlacement,
    /// Entries sent and awaiting their acknowledgement at once (the pipeline depth).
    pub max_in_flight: usize,
    /// How long an acknowledgement may take before the entry is sent again on the same
    /// connection (same key).
    pub ack_timeout: Duration,
    /// Sends of one entry before it is given up (counted as failed, announced with
    /// [`crate::Notice::EmitFailed`]).
    pub max_sends: u32,
    /// Client-side limits on entries sent (token buckets, all applied), e.g. 10 per second
    /// and 100 per minute. Entries wait in the outbox rather than being refused.
    pub rate_limits: Vec<RateLimit>,
    /// Server events that mean "slow down": sending pauses until the `resetTime` (or for
    /// `retryAfter` seconds) they carry, one second if they carry neither. An `error` event
    /// whose first argument has `"code": "RATE_LIMIT_EXCEEDED"` counts too.
    pub rate_limit_events: Vec<String>,
    /// The battery-aware schedule of the `Low` lane.
    pub low_lane: LowLane,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            max_entries: 1_000_000,
            max_bytes: 256 * 1024 * 1024,
            overflow: Overflow::Reject,
            key: KeyPlacement::default(),
            max_in_flight: 1024,
            ack_timeout: Duration::from_secs(30),
            max_sends: 5,
            rate_limits: Vec::new(),
            rate_limit_events: vec!["rate_limit_exceeded".into()],
            low_lane: LowLane::default(),
        }
    }
}

/// One entry waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEmit {
    /// Its id in the outbox (for [`crate::Outbox::remove`]).
    pub id: u64,
    /// The idempotency key sent with it.
    pub key: String,
    /// Namespace.
    pub namespace: String,
    /// Event name.
    pub event: String,
    /// Arguments as a JSON array text.
    pub args_json: String,
    /// Number of binary attachments.
    pub attachments: usize,
    /// Its lane.
    pub priority: Priority,
    /// Whether it waits for the server's acknowledgement.
    pub wants_ack: bool,
    /// When it was emitted, milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// When it expires, if it has a TTL.
    pub expires_ms: Option<i64>,
}

/// Counters and size of the outbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Entries waiting.
    pub pending: u64,
    /// Their payload bytes.
    pub pending_bytes: u64,
    /// Entries accepted since the client was created.
    pub accepted: u64,
    /// Entries delivered (acked, or written to a healthy connection).
    pub delivered: u64,
    /// Entries replaced by a newer one with the same coalescing key.
    pub coalesced: u64,
    /// Entries whose TTL passed before delivery.
    pub expired: u64,
    /// Entries dropped by the `DropOldest` overflow policy.
    pub dropped_overflow: u64,
    /// Emits refused by the `Reject` overflow policy.
    pub rejected: u64,
    /// Entries given up after `max_sends` or removed by the app.
    pub failed: u64,
    /// Entries written to the connection while their commit was in flight (the live path)
    /// instead of being read back from the store first: with a link up and nothing older
    /// waiting in their lane, every new entry goes this way.
    pub sent_live: u64,
}
