//! What the protocols tell the engine, in terms that fit both: an event arrived (with its id
//! for de-duplication), a request was answered or refused, a namespace was joined, the link
//! proved alive, the server asked to slow down. Nothing here names a wire field or code.

use std::{sync::Arc, time::Duration};

use crate::{
    args::AckReply,
    codec::{CodecError, json::RawJson},
    ratelimit::Announced,
    server_signals::ErrorAction,
};

/// An application event, inbound or outbound: the same for every protocol.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EventData {
    /// The namespace (`/` for protocols without namespaces).
    pub(crate) namespace: Arc<str>,
    /// The event name (shared between events of the same name).
    pub(crate) name: Arc<str>,
    /// The arguments, a JSON array.
    pub(crate) args: RawJson,
    /// Binary attachments referenced by placeholders in `args`.
    pub(crate) attachments: Vec<Vec<u8>>,
}

/// What one inbound frame means.
#[derive(Debug)]
pub(crate) enum Input {
    /// Nothing for the engine (a noop, a binary packet still collecting attachments, a ping
    /// already answered).
    Nothing,
    /// An app event.
    Event(Inbound),
    /// The answer to a request the client made (an outbox entry or a subscription).
    Ack {
        /// The id the client chose.
        id: u64,
        /// The answer, or the server's refusal.
        reply: Result<AckReply, Rejection>,
    },
    /// The server accepted a namespace.
    Joined {
        /// The namespace.
        namespace: Arc<str>,
        /// The session id the server offers to restore later (connection state recovery).
        resumable: Option<String>,
    },
    /// The server refused a namespace's credentials, or revoked them mid-session.
    Refused {
        /// The namespace.
        namespace: Arc<str>,
        /// The server's code (the protocol names one when the server gave none).
        code: String,
        /// The server's message.
        message: String,
    },
    /// The server closed a namespace.
    Left {
        /// The namespace.
        namespace: Arc<str>,
    },
    /// The server closes the whole session.
    Closed,
    /// Proof the link works both ways (a ping from the server, a pong to ours).
    Alive,
    /// A message that failed validation: counted and reported, never fatal.
    Invalid(CodecError),
}

/// An inbound event and what the protocol knows about it.
#[derive(Debug)]
pub(crate) struct Inbound {
    /// The event.
    pub(crate) event: EventData,
    /// The id the server wants an acknowledgement for.
    pub(crate) ack: Option<u64>,
    /// The event's unique id, when the protocol carries one.
    pub(crate) id: Option<Arc<str>>,
    /// `id` is a position the server can resume the session from (connection state
    /// recovery), to be remembered and sent back on reconnect.
    pub(crate) resumes: bool,
    /// What the event asks of the client beyond reaching the app.
    pub(crate) signal: Option<Signal>,
}

/// A request of the server's, carried by an event the app also sees.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Signal {
    /// Send nothing for this long (the server's rate limit); `None`: as long as the
    /// configured backoff says.
    SlowDown(Option<Duration>),
    /// The credentials expired: fetch fresh ones and reconnect now.
    CredentialsExpired,
    /// The server reported an error with a code: the app hears of it, then the client does
    /// what the code asks.
    Error {
        /// The server's code.
        code: String,
        /// The server's message.
        message: String,
        /// What the code asks.
        action: ErrorAction,
        /// A pause the error named (its reset time), for [`ErrorAction::PauseOutbox`].
        pause: Option<Duration>,
    },
    /// The server announced the limits it enforces.
    Limits(Announced),
    /// The reply to the app heartbeat's ping.
    Pong,
}

/// A request the server answered with a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    /// The server's code.
    pub(crate) code: String,
    /// The server's message.
    pub(crate) message: String,
    /// What to do with the request.
    pub(crate) then: Then,
}

/// What becomes of a refused request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Then {
    /// Refused for good: sending it again would be refused again.
    Fail,
    /// Send it again later, after `pause` when the server named one.
    Retry {
        /// How long the server asked to wait.
        pause: Option<Duration>,
    },
}

/// How the link's liveness is proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeartbeatMode {
    /// The server pings every `interval`; silent for `interval + timeout` means dead.
    ServerPings {
        /// The server's ping interval.
        interval: Duration,
        /// Grace after a missed ping.
        timeout: Duration,
    },
    /// The client pings every `interval`; no pong within `timeout` means dead.
    ClientPings {
        /// The client's ping interval.
        interval: Duration,
        /// How long a pong may take.
        timeout: Duration,
    },
}

impl HeartbeatMode {
    /// The longest a healthy link can go without a proof of life.
    pub(crate) fn silence_limit(&self) -> Duration {
        match *self {
            HeartbeatMode::ServerPings { interval, timeout }
            | HeartbeatMode::ClientPings { interval, timeout } => interval + timeout,
        }
    }
}

/// A session the server may restore on reconnect (Socket.IO connection state recovery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resume {
    /// The server's id for the session.
    pub(crate) session: String,
    /// The id of the last event received from it, if any arrived.
    pub(crate) position: Option<String>,
}
