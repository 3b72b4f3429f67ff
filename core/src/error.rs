//! The one error type the SDK returns. Each variant says what went wrong and, where there is
//! one, what the app can do about it. No variant ever carries a token or an auth payload.

use std::time::Duration;

use crate::{codec::CodecError, transport::proxy::ProxyFailure};

/// Everything that can go wrong in a Pulselink call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The configuration is unusable; the message names the field.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The arguments of an emit are not a JSON array, or reference attachments that are absent.
    #[error("invalid arguments: {0}")]
    InvalidArgs(String),
    /// The outbox is at its limit (policy `Reject`); nothing queued was lost. Retry later,
    /// raise the limit, or choose `Overflow::DropOldest`.
    #[error("outbox is full ({entries} entries, {bytes} bytes waiting)")]
    OutboxFull {
        /// Entries waiting.
        entries: u64,
        /// Their bytes.
        bytes: u64,
    },
    /// The emit's TTL passed before it could be delivered.
    #[error("expired before it could be delivered")]
    Expired,
    /// The app removed the entry from the outbox (`Outbox::remove`, `Outbox::clear`) before
    /// it was acknowledged.
    #[error("removed from the outbox before it was acknowledged")]
    Removed,
    /// The disk is full: the emit was not stored. Free space; nothing stored was lost.
    #[error("disk full: {0}")]
    DiskFull(String),
    /// The store file is damaged; move it aside (or delete it) to start with an empty one.
    #[error("store is corrupt: {0}")]
    StoreCorrupt(String),
    /// The store failed otherwise (permissions, a newer schema, I/O).
    #[error("store: {0}")]
    Store(String),
    /// No acknowledgement arrived within the timeout. The event may still have been processed.
    #[error("no acknowledgement within {0:?}")]
    AckTimeout(Duration),
    /// The server answered the request with a failure (envelope `success: false` or an
    /// `error` carrying its request id); it will not be sent again.
    #[error("rejected by the server: {code}: {message}")]
    Rejected {
        /// The server's code, such as `INVALID_MESSAGE_FORMAT`.
        code: String,
        /// The server's message.
        message: String,
    },
    /// The connection dropped after the event was sent and before its acknowledgement arrived;
    /// the server may or may not have processed it.
    #[error("disconnected before the acknowledgement arrived")]
    Disconnected,
    /// The server refused the credentials for this namespace, also after a fresh token.
    #[error("unauthorized on {namespace}: {message}")]
    Unauthorized {
        /// The namespace that refused.
        namespace: String,
        /// The server's message, such as "Authentication failed".
        message: String,
    },
    /// `connect()` did not see the connection come up in time; the client keeps retrying in
    /// the background.
    #[error(
        "not connected within {waited:?}; still retrying in the background{}",
        last_failure.as_ref().map(|f| format!(" (last attempt: {f})")).unwrap_or_default()
    )]
    ConnectTimeout {
        /// How long `connect()` waited.
        waited: Duration,
        /// Why the latest attempt failed, if one did while waiting.
        last_failure: Option<Box<Error>>,
    },
    /// The reconnect policy gave up; call `connect()` to start again.
    #[error("gave up after {attempts} reconnect attempts")]
    GaveUp {
        /// Attempts made.
        attempts: u32,
    },
    /// The server ended the session (server-side `socket.disconnect()`); call `connect()` to
    /// come back.
    #[error("disconnected by the server")]
    ServerDisconnected,
    /// The client was closed; create a new one.
    #[error("client is closed")]
    Closed,
    /// The proxy did not open the way to the server; counts as a failed attempt for the
    /// reconnect policy. Credentials refused or missing need a new configuration.
    #[error("proxy {proxy} {failure}")]
    Proxy {
        /// The proxy as `scheme://host:port` (never its credentials).
        proxy: String,
        /// What it did.
        failure: ProxyFailure,
    },
    /// A connection attempt failed (refused, TLS, HTTP status, handshake).
    #[error("connection failed: {0}")]
    Connect(String),
    /// The server sent something that is not valid protocol.
    #[error("protocol error: {0}")]
    Protocol(#[from] CodecError),
}

impl Error {
    /// Whether only the WebSocket could have caused this proxy error (a `CONNECT` refused),
    /// so long-polling, which an HTTP proxy may forward without a tunnel, may still pass.
    pub(crate) fn websocket_only(&self) -> bool {
        matches!(
            self,
            Error::Proxy {
                failure: ProxyFailure::Refused { .. },
                ..
            }
        )
    }
}

/// Shorthand for results of Pulselink calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;
