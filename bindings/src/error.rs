//! The one error enum foreign code sees.

/// Errors foreign code sees; each message says what happened and what to do.
///
/// Flat across the boundary: each variant is an exception type carrying this message (a
/// field named `message` would clash with Kotlin's `Throwable.message`).
#[derive(Debug, thiserror::Error, uniffi::Error)]
#[uniffi(flat_error)]
pub enum PulselinkError {
    /// The configuration is unusable.
    #[error("invalid configuration: {message}")]
    InvalidConfig {
        /// Which field and why.
        message: String,
    },
    /// Arguments are not a JSON array or reference missing attachments.
    #[error("invalid arguments: {message}")]
    InvalidArgs {
        /// What is wrong.
        message: String,
    },
    /// The outbox is at its limit; nothing queued was lost.
    #[error("{message}")]
    OutboxFull {
        /// Details.
        message: String,
    },
    /// The emit expired (its TTL passed) before it could be delivered.
    #[error("{message}")]
    Expired {
        /// Details.
        message: String,
    },
    /// The app removed the entry from the outbox before it was acknowledged.
    #[error("{message}")]
    Removed {
        /// Details.
        message: String,
    },
    /// The store failed: disk full, a damaged file, or another I/O error.
    #[error("{message}")]
    Storage {
        /// Details.
        message: String,
    },
    /// No acknowledgement arrived in time.
    #[error("{message}")]
    AckTimeout {
        /// Details.
        message: String,
    },
    /// The link dropped before the acknowledgement arrived.
    #[error("{message}")]
    Disconnected {
        /// Details.
        message: String,
    },
    /// The server refused the credentials.
    #[error("{message}")]
    Unauthorized {
        /// The server's message.
        message: String,
    },
    /// The server answered the request with a failure; it will not be sent again.
    #[error("{message}")]
    Rejected {
        /// The server's code and message.
        message: String,
    },
    /// The proxy did not open the way to the server (unreachable, credentials missing or
    /// refused, connection to the server refused); retries go on unless the reconnect policy
    /// is off. The message names the proxy, never its password.
    #[error("{message}")]
    Proxy {
        /// Details.
        message: String,
    },
    /// Not connected in time (still retrying), gave up, or the connection failed.
    #[error("{message}")]
    Connection {
        /// Details.
        message: String,
    },
    /// The client is closed.
    #[error("client is closed")]
    Closed,
    /// A bug in Pulselink (a panic caught at the boundary).
    #[error("internal error: {message}")]
    Internal {
        /// Details.
        message: String,
    },
}

impl From<pulselink::Error> for PulselinkError {
    fn from(e: pulselink::Error) -> Self {
        use pulselink::Error as E;
        let message = e.to_string();
        match e {
            E::InvalidConfig(_) => Self::InvalidConfig { message },
            E::InvalidArgs(_) => Self::InvalidArgs { message },
            E::OutboxFull { .. } => Self::OutboxFull { message },
            E::Expired => Self::Expired { message },
            E::Removed => Self::Removed { message },
            E::DiskFull(_) | E::StoreCorrupt(_) | E::Store(_) => Self::Storage { message },
            E::AckTimeout(_) => Self::AckTimeout { message },
            E::Disconnected => Self::Disconnected { message },
            E::Rejected { .. } => Self::Rejected { message },
            E::Unauthorized { message: m, .. } => Self::Unauthorized { message: m },
            E::Closed => Self::Closed,
            // A proxy that keeps refusing is the reason `connect()` timed out: say so by kind.
            E::Proxy { .. } => Self::Proxy { message },
            E::ConnectTimeout {
                last_failure: Some(ref f),
                ..
            } if matches!(**f, E::Proxy { .. }) => Self::Proxy { message },
            E::ConnectTimeout { .. }
            | E::GaveUp { .. }
            | E::ServerDisconnected
            | E::Connect(_)
            | E::Protocol(_) => Self::Connection { message },
        }
    }
}

impl PulselinkError {
    /// An invalid field of the foreign configuration.
    pub(crate) fn config(field: &str, why: impl std::fmt::Display) -> Self {
        Self::InvalidConfig {
            message: format!("{field}: {why}"),
        }
    }
}
