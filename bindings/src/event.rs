//! What flows to foreign code: events, acknowledgement replies, states and notices.

use std::sync::Arc;

use crate::error::PulselinkError;

/// An inbound event.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Event {
    /// Namespace it arrived on, e.g. `/`.
    pub namespace: String,
    /// Event name, e.g. `metric:recorded`.
    pub name: String,
    /// Arguments as a JSON array text; binary attachments appear as
    /// `{"_placeholder":true,"num":N}`.
    pub args_json: String,
    /// Binary attachments, in placeholder order.
    pub attachments: Vec<Vec<u8>>,
    /// The event's unique id when the protocol carries one: the server's
    /// connection-state-recovery offset (Socket.IO), or the envelope `id`.
    pub id: Option<String>,
    /// Present when the server asked for an acknowledgement: answer it with `send`.
    pub ack: Option<Arc<AckResponder>>,
}

impl From<pulselink::Event> for Event {
    fn from(e: pulselink::Event) -> Self {
        Self {
            namespace: e.namespace().to_owned(),
            name: e.name().to_owned(),
            args_json: e.args_json().to_owned(),
            attachments: e.attachments().to_vec(),
            id: e.id().map(str::to_owned),
            ack: e.wants_ack().then(|| Arc::new(AckResponder(e))),
        }
    }
}

/// A batch of events as one JSON text: `[[namespace, name, args, id], ...]`, where `args` is
/// the event's argument array and `id` is `null` when absent.
#[derive(Debug, uniffi::Record)]
pub struct PackedEvents {
    /// The rows, one per event, in arrival order.
    pub rows_json: String,
    /// The events that also carry binary attachments or an ack request, by row.
    pub extras: Vec<EventExtras>,
}

/// What a packed row cannot carry: attachments and the ack responder.
#[derive(Debug, uniffi::Record)]
pub struct EventExtras {
    /// Index of the row.
    pub row: u32,
    /// Binary attachments, in placeholder order.
    pub attachments: Vec<Vec<u8>>,
    /// Present when the server asked for an acknowledgement.
    pub ack: Option<Arc<AckResponder>>,
}

impl PackedEvents {
    pub(crate) fn pack(events: Vec<pulselink::Event>) -> Self {
        let mut rows = String::with_capacity(events.iter().map(|e| e.args_json().len() + 32).sum());
        let mut extras = Vec::new();
        rows.push('[');
        for (i, e) in events.into_iter().enumerate() {
            if i > 0 {
                rows.push(',');
            }
            rows.push('[');
            push_json_str(&mut rows, e.namespace());
            rows.push(',');
            push_json_str(&mut rows, e.name());
            rows.push(',');
            // Validated JSON already: copied, not re-encoded.
            rows.push_str(e.args_json());
            rows.push(',');
            match e.id() {
                Some(id) => push_json_str(&mut rows, id),
                None => rows.push_str("null"),
            }
            rows.push(']');
            if !e.attachments().is_empty() || e.wants_ack() {
                extras.push(EventExtras {
                    row: u32::try_from(i).unwrap_or(u32::MAX),
                    attachments: e.attachments().to_vec(),
                    ack: e.wants_ack().then(|| Arc::new(AckResponder(e))),
                });
            }
        }
        rows.push(']');
        Self {
            rows_json: rows,
            extras,
        }
    }
}

/// Appends `s` as a JSON string literal.
fn push_json_str(out: &mut String, s: &str) {
    // Serializing a str into a String cannot fail.
    if let Ok(quoted) = serde_json::to_string(s) {
        out.push_str(&quoted);
    }
}

/// Answers a server's acknowledgement request.
#[derive(Debug, uniffi::Object)]
pub struct AckResponder(pulselink::Event);

#[uniffi::export]
impl AckResponder {
    /// Sends the answer: a JSON array of arguments and the binary attachments its
    /// placeholders name. Does nothing when the connection the request came on is gone: the
    /// server has forgotten it then.
    #[uniffi::method(default(attachments = []))]
    pub fn send(&self, args_json: String, attachments: Vec<Vec<u8>>) -> Result<(), PulselinkError> {
        Ok(self
            .0
            .ack(pulselink::Args::from_parts(args_json, attachments)?)?)
    }
}

/// The answer to `emit_with_ack`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct AckReply {
    /// The answer's arguments as a JSON array text.
    pub args_json: String,
    /// Binary attachments of the answer.
    pub attachments: Vec<Vec<u8>>,
}

impl From<pulselink::AckReply> for AckReply {
    fn from(r: pulselink::AckReply) -> Self {
        Self {
            args_json: r.args.get().to_owned(),
            attachments: r.attachments,
        }
    }
}

/// Connection state.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum State {
    /// Not connected, not trying.
    Idle,
    /// First attempt under way.
    Connecting,
    /// Connected: the main namespace is joined.
    Connected,
    /// Waiting for, or running, retry `attempt`.
    Reconnecting {
        /// 1-based attempt.
        attempt: u32,
        /// Wait before it, in milliseconds.
        delay_ms: u64,
    },
    /// Disconnected longer than `suspend_after`: attempts every `suspended_retry`; nothing
    /// fails meanwhile.
    Suspended {
        /// Wait before the next attempt, in milliseconds.
        delay_ms: u64,
    },
    /// The app said the network is down.
    Offline,
    /// The app is in the background and its policy closed the link; emits are stored.
    Background,
    /// Credentials refused, also after a fresh token; not retrying.
    Unauthorized {
        /// The server's message.
        message: String,
    },
    /// Closed for good.
    Closed,
}

impl From<pulselink::State> for State {
    fn from(s: pulselink::State) -> Self {
        use pulselink::State as S;
        match s {
            S::Idle => Self::Idle,
            S::Connecting => Self::Connecting,
            S::Connected => Self::Connected,
            S::Reconnecting { attempt, delay } => Self::Reconnecting {
                attempt,
                delay_ms: millis(delay),
            },
            S::Suspended { delay } => Self::Suspended {
                delay_ms: millis(delay),
            },
            S::Offline => Self::Offline,
            S::Background => Self::Background,
            S::Unauthorized { message } => Self::Unauthorized { message },
            S::Closed => Self::Closed,
        }
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum DisconnectReason {
    /// The server disconnected the main namespace.
    ServerDisconnect,
    /// The app called `disconnect()` or `close()`.
    ClientDisconnect,
    /// No heartbeat within ping interval + ping timeout.
    PingTimeout,
    /// The server's app-level heartbeat went unanswered.
    AppPingTimeout,
    /// The connection was closed.
    TransportClose,
    /// Reading or writing failed.
    TransportError {
        /// Details.
        message: String,
    },
    /// The server sent invalid protocol.
    ParseError {
        /// Details.
        message: String,
    },
    /// The server said the token expired; reconnecting with fresh credentials.
    TokenExpired,
    /// The app said the network went down.
    NetworkDown,
    /// The device moved to another network interface; replaced at once.
    NetworkChanged,
    /// The app went to the background and its policy closed the link.
    Background,
    /// The server reported an error a reconnect cures; retrying with backoff.
    ServerError {
        /// The server's code.
        code: String,
        /// The server's message.
        message: String,
    },
}

impl From<pulselink::DisconnectReason> for DisconnectReason {
    fn from(r: pulselink::DisconnectReason) -> Self {
        use pulselink::DisconnectReason as R;
        match r {
            R::ServerDisconnect => Self::ServerDisconnect,
            R::ClientDisconnect => Self::ClientDisconnect,
            R::PingTimeout => Self::PingTimeout,
            R::AppPingTimeout => Self::AppPingTimeout,
            R::TransportClose => Self::TransportClose,
            R::TransportError(message) => Self::TransportError { message },
            R::ParseError(message) => Self::ParseError { message },
            R::TokenExpired => Self::TokenExpired,
            R::NetworkDown => Self::NetworkDown,
            R::NetworkChanged => Self::NetworkChanged,
            R::Background => Self::Background,
            R::ServerError { code, message } => Self::ServerError { code, message },
        }
    }
}

/// Lifecycle notices for logs, UIs and metrics (see the core's `Notice` for details).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum Notice {
    /// A namespace was joined; `recovered` when the server restored the session.
    Connected {
        /// The namespace.
        namespace: String,
        /// Attempts it took since the last success.
        attempts: u32,
        /// The server restored the previous session: events missed while away follow.
        recovered: bool,
    },
    /// The server could not restore the session: events sent while away may be missed.
    RecoveryFailed {
        /// The namespace.
        namespace: String,
    },
    /// The connection ended.
    Disconnected {
        /// Why.
        reason: DisconnectReason,
    },
    /// A reconnect attempt starts.
    ReconnectAttempt {
        /// 1-based attempt number.
        attempt: u32,
    },
    /// A connection attempt failed.
    ConnectFailed {
        /// Attempt number (0 for the first connect).
        attempt: u32,
        /// What went wrong.
        error: String,
    },
    /// The reconnect policy gave up.
    ReconnectFailed {
        /// Attempts made.
        attempts: u32,
    },
    /// The server refused a namespace.
    ConnectError {
        /// The namespace.
        namespace: String,
        /// The server's message.
        message: String,
        /// Whether the client retries with fresh credentials.
        will_retry: bool,
    },
    /// A volatile event was dropped.
    EmitDropped {
        /// The namespace.
        namespace: String,
        /// The event name.
        event: String,
    },
    /// An outbox entry was given up.
    EmitFailed {
        /// The namespace.
        namespace: String,
        /// The event name.
        event: String,
        /// Why.
        error: String,
    },
    /// The outbox overflowed and dropped its oldest lowest-priority entries.
    OutboxOverflow {
        /// Entries dropped.
        dropped: u64,
    },
    /// The server reported an error not tied to a request.
    ServerError {
        /// The server's code.
        code: String,
        /// The server's message.
        message: String,
    },
    /// An inbound message failed validation and was dropped.
    InvalidMessage {
        /// What was wrong with it.
        error: String,
    },
    /// A subscription was not acknowledged; the outbox flushed anyway.
    SubscriptionFailed {
        /// The namespace.
        namespace: String,
        /// The subscription event.
        event: String,
        /// What went wrong.
        error: String,
    },
}

impl From<pulselink::Notice> for Notice {
    fn from(n: pulselink::Notice) -> Self {
        use pulselink::Notice as N;
        match n {
            N::Connected {
                namespace,
                attempts,
                recovered,
            } => Self::Connected {
                namespace,
                attempts,
                recovered,
            },
            N::RecoveryFailed { namespace } => Self::RecoveryFailed { namespace },
            N::Disconnected { reason } => Self::Disconnected {
                reason: reason.into(),
            },
            N::ReconnectAttempt { attempt } => Self::ReconnectAttempt { attempt },
            N::ConnectFailed { attempt, error } => Self::ConnectFailed {
                attempt,
                error: error.to_string(),
            },
            N::ReconnectFailed { attempts } => Self::ReconnectFailed { attempts },
            N::ConnectError {
                namespace,
                message,
                will_retry,
            } => Self::ConnectError {
                namespace,
                message,
                will_retry,
            },
            N::EmitDropped { namespace, event } => Self::EmitDropped { namespace, event },
            N::ServerError { code, message } => Self::ServerError { code, message },
            N::InvalidMessage { error } => Self::InvalidMessage { error },
            N::EmitFailed {
                namespace,
                event,
                error,
            } => Self::EmitFailed {
                namespace,
                event,
                error,
            },
            N::OutboxOverflow { dropped } => Self::OutboxOverflow { dropped },
            N::SubscriptionFailed {
                namespace,
                event,
                error,
            } => Self::SubscriptionFailed {
                namespace,
                event,
                error,
            },
        }
    }
}

/// Milliseconds of a duration, saturating.
pub(crate) fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A notice of one of a hub's clients.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct HubNotice {
    /// The client's number in its hub (`Client.hub_index`).
    pub client: u64,
    /// What happened.
    pub notice: Notice,
}

impl From<pulselink::HubNotice> for HubNotice {
    fn from(n: pulselink::HubNotice) -> Self {
        Self {
            client: n.client,
            notice: n.notice.into(),
        }
    }
}
