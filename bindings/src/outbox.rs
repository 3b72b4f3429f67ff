//! The durable outbox as foreign code sees it: emit options, entries, counters.

use std::time::Duration;

use crate::{error::PulselinkError, runtime::on_runtime};

/// Send priority; a higher lane is flushed first, order is kept within a lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Priority {
    /// Bulk telemetry that may wait.
    Low,
    /// The default.
    Normal,
    /// Alerts and status changes that must go first.
    High,
}

impl From<Priority> for pulselink::Priority {
    fn from(p: Priority) -> Self {
        match p {
            Priority::Low => Self::Low,
            Priority::Normal => Self::Normal,
            Priority::High => Self::High,
        }
    }
}

impl From<pulselink::Priority> for Priority {
    fn from(p: pulselink::Priority) -> Self {
        match p {
            pulselink::Priority::Low => Self::Low,
            pulselink::Priority::Normal => Self::Normal,
            pulselink::Priority::High => Self::High,
        }
    }
}

/// Options for one emit.
#[derive(Debug, Clone, Default, uniffi::Record)]
pub struct EmitOptions {
    /// Its lane (default normal).
    #[uniffi(default)]
    pub priority: Option<Priority>,
    /// Dropped (counted as expired) if not delivered within this many milliseconds.
    #[uniffi(default)]
    pub ttl_ms: Option<u64>,
    /// Keep only the newest undelivered entry with this key (e.g. the latest heart rate).
    #[uniffi(default)]
    pub coalesce_key: Option<String>,
    /// Keep the entry until the server acknowledges it, without waiting for the answer.
    #[uniffi(default)]
    pub confirm: bool,
}

impl From<EmitOptions> for pulselink::EmitOptions {
    fn from(o: EmitOptions) -> Self {
        Self {
            priority: o.priority.map(Into::into).unwrap_or_default(),
            ttl: o.ttl_ms.map(Duration::from_millis),
            coalesce_key: o.coalesce_key,
            confirm: o.confirm,
        }
    }
}

/// One entry waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PendingEmit {
    /// Its id (for `Outbox.remove`).
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
    pub attachments: u32,
    /// Its lane.
    pub priority: Priority,
    /// Whether it waits for the server's acknowledgement.
    pub wants_ack: bool,
    /// When it was emitted, milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// When it expires, if it has a TTL.
    pub expires_ms: Option<i64>,
}

impl From<pulselink::PendingEmit> for PendingEmit {
    fn from(p: pulselink::PendingEmit) -> Self {
        Self {
            id: p.id,
            key: p.key,
            namespace: p.namespace,
            event: p.event,
            args_json: p.args_json,
            attachments: u32::try_from(p.attachments).unwrap_or(u32::MAX),
            priority: p.priority.into(),
            wants_ack: p.wants_ack,
            created_ms: p.created_ms,
            expires_ms: p.expires_ms,
        }
    }
}

/// Size and counters of the outbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct OutboxStats {
    /// Entries waiting.
    pub pending: u64,
    /// Their payload bytes.
    pub pending_bytes: u64,
    /// Entries accepted since the client was created.
    pub accepted: u64,
    /// Entries delivered.
    pub delivered: u64,
    /// Entries replaced by a newer one with the same coalescing key.
    pub coalesced: u64,
    /// Entries whose TTL passed before delivery.
    pub expired: u64,
    /// Entries dropped by the `DropOldest` policy.
    pub dropped_overflow: u64,
    /// Emits refused by the `Reject` policy.
    pub rejected: u64,
    /// Entries given up after `max_sends` or removed by the app.
    pub failed: u64,
    /// Entries written to the connection while their commit was in flight (the live path).
    pub sent_live: u64,
}

impl From<pulselink::OutboxStats> for OutboxStats {
    fn from(s: pulselink::OutboxStats) -> Self {
        Self {
            pending: s.pending,
            pending_bytes: s.pending_bytes,
            accepted: s.accepted,
            delivered: s.delivered,
            coalesced: s.coalesced,
            expired: s.expired,
            dropped_overflow: s.dropped_overflow,
            rejected: s.rejected,
            failed: s.failed,
            sent_live: s.sent_live,
        }
    }
}

/// The durable outbox of a client: what waits, and the means to drop it.
#[derive(uniffi::Object)]
pub struct Outbox(pub(crate) pulselink::Outbox);

#[uniffi::export]
impl Outbox {
    /// Size and counters.
    pub async fn stats(&self) -> Result<OutboxStats, PulselinkError> {
        let o = self.0.clone();
        Ok(on_runtime(async move { o.stats().await }).await??.into())
    }

    /// Up to `limit` entries in the order they will be sent.
    pub async fn list(&self, limit: u32) -> Result<Vec<PendingEmit>, PulselinkError> {
        let o = self.0.clone();
        let list = on_runtime(async move { o.list(limit as usize).await }).await??;
        Ok(list.into_iter().map(Into::into).collect())
    }

    /// Removes entry `id` (counted as failed); false if it was already gone.
    pub async fn remove(&self, id: u64) -> Result<bool, PulselinkError> {
        let o = self.0.clone();
        Ok(on_runtime(async move { o.remove(id).await }).await??)
    }

    /// Removes every entry; returns how many.
    pub async fn clear(&self) -> Result<u64, PulselinkError> {
        let o = self.0.clone();
        Ok(on_runtime(async move { o.clear().await }).await??)
    }

    /// Waits until every entry is delivered or dropped.
    pub async fn drained(&self) -> Result<(), PulselinkError> {
        let o = self.0.clone();
        Ok(on_runtime(async move { o.drained().await }).await??)
    }
}
