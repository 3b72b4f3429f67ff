//! UniFFI surface of Pulselink: thin adapters over the `pulselink` core, no logic of its own.
//!
//! Foreign code gets a `Client` object (and a `Socket` per namespace) with async methods,
//! records for configuration, events, state and metrics, one error enum, and two ways to
//! receive: pull receivers (`EventReceiver.next_batch`) and foreign listeners called with
//! batches. Every call runs on a process-wide tokio runtime owned by this crate, so foreign
//! threads and foreign async runtimes can call in freely.

mod auth;
mod client;
mod config;
mod error;
mod event;
mod listener;
mod metrics;
mod outbox;
mod runtime;
mod stream;

pub use auth::{AuthError, AuthProvider, AuthRequest};
pub use client::{Client, Socket};
pub use config::{
    ClientConfig, DedupConfig, Durability, OutboxConfig, OutboxKey, Overflow, RateLimit,
    ReconnectConfig, TlsConfig, Transports, WireProtocol, certificate_pins,
};
pub use error::PulselinkError;
pub use event::{
    AckReply, AckResponder, DisconnectReason, Event, EventExtras, Notice, PackedEvents, State,
};
pub use listener::{EventListener, ListenerHandle, StateListener};
pub use metrics::{Latency, Metrics};
pub use outbox::{EmitOptions, Outbox, OutboxStats, PendingEmit, Priority};
pub use stream::{EventReceiver, NoticeReceiver};

uniffi::setup_scaffolding!("pulselink");
