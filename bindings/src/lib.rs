//! UniFFI surface of Pulselink: thin adapters over the `pulselink` core, no logic of its own.
//!
//! Foreign code gets a `Client` object (and a `Socket` per namespace; a `Hub` makes many
//! clients that share one store thread) with async methods,
//! records for configuration, events, state and metrics, one error enum, and one way to
//! receive: pull receivers each language's wrapper awaits in a loop (`EventReceiver`,
//! `NoticeReceiver`, `Client.next_state`) and, on Unix, answer queues a foreign event loop
//! watches (`Answers`), so no Rust thread ever calls into foreign code to deliver. The auth
//! provider is the one foreign trait, and it is async. Every call runs on a process-wide tokio
//! runtime owned by this crate, so foreign threads and foreign async runtimes can call in
//! freely.

#[cfg(unix)]
mod answers;
mod auth;
mod client;
mod config;
mod device;
mod error;
mod event;
mod hub;
mod metrics;
mod outbox;
mod presence;
mod runtime;
mod stream;

#[cfg(unix)]
pub use answers::{Answer, Answers, Outcome};
pub use auth::{AuthError, AuthProvider, AuthRequest};
pub use client::{Client, EMIT_WAIT, EmitStart, RunningEmit, Socket};
pub use config::{
    AppHeartbeat, Budget, ClientConfig, DedupConfig, Durability, ErrorAction, LowLaneHold,
    OutboxConfig, OutboxKey, Overflow, PauseBackoff, ProxyConfig, RateLimit, ReconnectConfig,
    ServerSignals, StoreConfig, TlsConfig, Transports, WireProtocol, certificate_pins,
};
pub use device::{BackgroundFlush, BackgroundPolicy, Interface, NetworkPath};
pub use error::PulselinkError;
pub use event::{
    AckReply, AckResponder, DisconnectReason, Event, EventExtras, HubNotice, Notice, PackedEvents,
    State,
};
pub use hub::{Hub, HubStats};
pub use metrics::{Latency, Metrics, StateTimes};
pub use outbox::{EmitOptions, Outbox, OutboxStats, PendingEmit, Priority};
pub use presence::{Presence, PresenceChange, PresenceConfig};
pub use runtime::shutdown_runtime;
pub use stream::{EventReceiver, HubNoticeReceiver, NoticeReceiver};

uniffi::setup_scaffolding!("pulselink");
