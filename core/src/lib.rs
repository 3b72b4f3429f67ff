//! Pulselink: a realtime client that keeps an app connected to a Socket.IO v4 server, or to a
//! server speaking JSON envelopes over a plain WebSocket ([`Protocol::Envelope`]).
//!
//! One engine task per [`Client`] owns the connection: handshake, heartbeat, reconnect with
//! jittered backoff, namespaces, acknowledgements, subscriptions replayed on every connect,
//! inbound de-duplication and connection state recovery. Emits go through a durable SQLite
//! outbox (on its own thread) before `emit` returns and leave it only once delivered. The app
//! talks to the engine through the cheap, cloneable [`Client`] handle. Frames run one way:
//! transport → codec (pure) → protocol (what a frame means) → engine → inbox filter → app; and
//! back: app → outbox → engine → protocol → codec → transport.
//!
//! ```no_run
//! # async fn demo() -> pulselink::Result<()> {
//! use pulselink::{Client, ClientConfig};
//! use serde_json::json;
//!
//! let config = ClientConfig::new("http://localhost:3000")?
//!     .with_store("/data/pulselink.db")
//!     .with_static_auth(json!({"token": "abc"}));
//! let client = Client::new(config)?;
//! let mut events = client.events();
//! client.connect().await?;
//! client.emit("session:feedback", json!({"rating": 5})).await?;
//! while let Some(ev) = events.recv().await {
//!     println!("{} {}", ev.name(), ev.args_json());
//! }
//! # Ok(()) }
//! ```

mod args;
pub mod backoff;
mod client;
pub mod codec;
pub mod config;
pub mod device;
mod engine;
pub mod error;
pub mod event;
mod hub;
pub mod inbox;
pub mod metrics;
mod notices;
pub mod outbox;
mod protocol;
pub mod ratelimit;
pub mod server_signals;
mod state_cell;
mod store;
mod time;
pub mod transport;

/// Log filter directives (for `tracing_subscriber::EnvFilter`) that keep credentials out of
/// logs when everything else is traced. Pulselink never logs tokens, auth payloads or header
/// values, but the WebSocket library underneath (tungstenite) dumps whole frames and the
/// handshake request at TRACE, and URLs at DEBUG. Append it to your filter:
/// `EnvFilter::new(format!("trace,{}", pulselink::TRACE_SAFE_FILTER))`. It sets that library
/// to INFO (an `EnvFilter` directive sets a level rather than capping one), where it only
/// warns about redirects, so it adds no noise to a quieter filter either.
pub const TRACE_SAFE_FILTER: &str = "tungstenite=info,tokio_tungstenite=info";

pub use args::{AckReply, Args};
pub use backoff::ReconnectPolicy;
pub use client::{
    Client, EventStream, ListenerHandle, Outbox, Presence, PresenceChange, PresenceConfig, Socket,
};
pub use codec::json::RawJson;
pub use config::{
    AuthProvider, AuthReason, AuthRequest, ClientConfig, Durability, EnvelopeOptions,
    MAX_READ_HOLD, NoProxy, Protocol, Proxy, ProxyConfig, ProxyKind, StaticAuth, StoreConfig,
    TlsOptions, Transports,
};
pub use device::{BackgroundFlush, BackgroundPolicy, Interface, NetworkPath};
pub use error::{Error, Result};
pub use event::{DisconnectReason, Event, Notice, State};
pub use hub::{Hub, SharedConfig};
pub use inbox::{DedupConfig, Freshness};
pub use metrics::{HubStats, Latency, Metrics, StateTimes};
pub use notices::HubNotice;
pub use outbox::{
    EmitOptions, KeyPlacement, LowLane, LowLaneHold, OutboxConfig, OutboxStats, Overflow,
    PendingEmit, Priority,
};
pub use ratelimit::RateLimit;
pub use server_signals::{AppHeartbeat, Budget, ErrorAction, PauseBackoff, ServerSignals};
pub use store::cipher::OutboxKey;
pub use transport::{
    proxy::ProxyFailure,
    tls::{certificate_pin, certificate_pins},
};
