//! What flows between the app and the engine: inbound events, outbound arguments, states and
//! lifecycle notices.

use std::{fmt, sync::Arc, time::Duration};

use futures_channel::mpsc::UnboundedSender;
use serde::{Deserializer as _, de::DeserializeOwned};
use serde_json::Value;

use crate::{
    args::Args,
    error::{Error, Result},
    protocol::EventData,
};

/// An event received from the server (or, for `outgoing()` listeners, sent to it).
///
/// Cheap to clone (one reference count). Arguments stay as validated JSON text until the app
/// asks for them, so an app that deserializes into its own types parses each event once.
#[derive(Clone)]
pub struct Event {
    data: Arc<EventData>,
    acker: Option<Acker>,
    id: Option<Arc<str>>,
}

impl Event {
    pub(crate) fn new(data: EventData, acker: Option<Acker>, id: Option<Arc<str>>) -> Self {
        Self {
            data: Arc::new(data),
            acker,
            id,
        }
    }

    /// The event's unique id when the protocol carries one: the server's
    /// connection-state-recovery offset (Socket.IO), or the envelope `id`. It is what
    /// Pulselink de-duplicates by.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The namespace it arrived on, e.g. `/` or `/rooms/r1`.
    pub fn namespace(&self) -> &str {
        &self.data.namespace
    }

    /// The event name, e.g. `metric:recorded`.
    pub fn name(&self) -> &str {
        &self.data.name
    }

    /// The arguments after the name, as a JSON array text (binary attachments appear as
    /// `{"_placeholder":true,"num":N}`).
    pub fn args_json(&self) -> &str {
        self.data.args.get()
    }

    /// The arguments parsed into JSON values.
    pub fn args(&self) -> Result<Vec<Value>> {
        self.args_as()
    }

    /// The arguments deserialized into the app's own type, e.g. a tuple or a `Vec`.
    pub fn args_as<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_str(self.args_json()).map_err(|e| Error::InvalidArgs(e.to_string()))
    }

    /// The first argument deserialized into the app's own type, in one pass over the JSON.
    pub fn first_arg<T: DeserializeOwned>(&self) -> Result<T> {
        let mut de = serde_json::Deserializer::from_str(self.args_json());
        de.deserialize_seq(FirstElement(std::marker::PhantomData))
            .map_err(|e| Error::InvalidArgs(e.to_string()))
    }

    /// Binary attachments, in placeholder order.
    pub fn attachments(&self) -> &[Vec<u8>] {
        &self.data.attachments
    }

    /// Whether the server asked for an acknowledgement.
    pub fn wants_ack(&self) -> bool {
        self.acker.is_some()
    }

    /// Answers the server's acknowledgement request. Does nothing when none was asked for, or
    /// when the connection it arrived on is gone (the server forgot the request then).
    pub fn ack(&self, args: impl Into<Args>) -> Result<()> {
        let Some(acker) = &self.acker else {
            return Ok(());
        };
        let args = args.into();
        args.check()?;
        let _ = acker.tx.unbounded_send(Box::new(AckAnswer {
            namespace: self.data.namespace.clone(),
            id: acker.id,
            link: acker.link,
            args,
        }));
        Ok(())
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("namespace", &self.namespace())
            .field("name", &self.name())
            .field("args", &self.args_json())
            .field("attachments", &self.data.attachments.len())
            .field("wants_ack", &self.wants_ack())
            .finish()
    }
}

/// Deserializes the first element of a JSON array as `T` and skips the rest.
struct FirstElement<T>(std::marker::PhantomData<T>);

impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for FirstElement<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an argument list with at least one argument")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
        let first = seq
            .next_element::<T>()?
            .ok_or_else(|| serde::de::Error::custom("event has no arguments"))?;
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(first)
    }
}

/// Where an event's acknowledgement goes: the engine that received it.
#[derive(Clone)]
pub(crate) struct Acker {
    /// Answers are boxed: they are large and rare, and the engine's wake-up value that
    /// carries one stays small.
    pub(crate) tx: UnboundedSender<Box<AckAnswer>>,
    pub(crate) id: u64,
    /// The link the request came on; an answer on a later link is dropped.
    pub(crate) link: u64,
}

/// The app's answer to a server's acknowledgement request, on its way to the engine.
#[derive(Debug)]
pub(crate) struct AckAnswer {
    pub(crate) namespace: Arc<str>,
    pub(crate) id: u64,
    pub(crate) link: u64,
    pub(crate) args: Args,
}

/// The connection state the app sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Not connected and not trying: before `connect()`, or after the policy gave up or the
    /// server ended the session.
    Idle,
    /// The first connection attempt is under way.
    Connecting,
    /// Connected: the main namespace is joined.
    Connected,
    /// Lost or failed; attempt number `attempt` starts after `delay` (and stays in this state
    /// while it runs).
    Reconnecting {
        /// 1-based attempt number.
        attempt: u32,
        /// Wait before this attempt.
        delay: Duration,
    },
    /// Disconnected for longer than the policy's `suspend_after`: attempts are spaced by
    /// `suspended_retry`. Nothing in the outbox fails meanwhile; a network-up hint or the
    /// app's return to the foreground connects at once.
    Suspended {
        /// Wait before the next attempt.
        delay: Duration,
    },
    /// The app said the network is down; nothing is attempted until it says it is back.
    Offline,
    /// The app is in the background and the [`crate::BackgroundPolicy`] closed the link:
    /// nothing is attempted until it is in the foreground again; emits are stored.
    Background,
    /// The server refused the credentials, also after a fresh token; not retrying.
    Unauthorized {
        /// The server's message.
        message: String,
    },
    /// `close()` was called; final.
    Closed,
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The server disconnected the main namespace (server-side `socket.disconnect()`).
    ServerDisconnect,
    /// The app called `disconnect()` or `close()`.
    ClientDisconnect,
    /// No heartbeat from the server within ping interval + ping timeout.
    PingTimeout,
    /// The server's app-level heartbeat ([`crate::AppHeartbeat`]) went unanswered: the
    /// transport was up, the app behind it was not.
    AppPingTimeout,
    /// The connection was closed (server restart, network loss with a FIN/RST).
    TransportClose,
    /// Reading or writing failed.
    TransportError(String),
    /// The server sent invalid protocol.
    ParseError(String),
    /// The server said the token expired; reconnecting with fresh credentials.
    TokenExpired,
    /// The app said the network went down.
    NetworkDown,
    /// The device moved to another network interface: the socket was bound to the old one,
    /// so it was presumed dead and replaced at once.
    NetworkChanged,
    /// The app went to the background and the [`crate::BackgroundPolicy`] closed the link.
    Background,
    /// The server reported an error whose code asks for a reconnect
    /// ([`crate::ErrorAction::Reconnect`]; the envelope protocol's `SERVICE_UNAVAILABLE`,
    /// `INTERNAL_SERVER_ERROR`, `CONNECTION_TIMEOUT` by default); retrying with backoff.
    ServerError {
        /// The server's code.
        code: String,
        /// The server's message.
        message: String,
    },
}

/// Lifecycle notices for logs, UIs and metrics. Delivered on a bounded broadcast channel; a
/// listener that falls far behind misses old notices (never events).
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// A namespace was joined (`recovered` is true when the server restored the session).
    Connected {
        /// The namespace.
        namespace: String,
        /// Attempts it took since the last success (0 for the first try).
        attempts: u32,
        /// The server restored the previous session: events sent while away follow.
        recovered: bool,
    },
    /// The server could not restore the previous session (connection state recovery): events
    /// sent while the client was away may be missed; resynchronise if that matters.
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
        /// What went wrong ([`Error::Proxy`] when a proxy refused).
        error: Error,
    },
    /// The reconnect policy gave up.
    ReconnectFailed {
        /// Attempts made.
        attempts: u32,
    },
    /// The server refused a namespace (CONNECT_ERROR).
    ConnectError {
        /// The namespace.
        namespace: String,
        /// The server's message.
        message: String,
        /// Whether the client will try again with fresh credentials.
        will_retry: bool,
    },
    /// A volatile event was dropped (not connected, or its namespace is not joined).
    EmitDropped {
        /// The namespace.
        namespace: String,
        /// The event name.
        event: String,
    },
    /// An outbox entry was given up: never acknowledged after `max_sends`, or larger than the
    /// server accepts.
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
    /// The server reported an error not tied to a request (also delivered as an `error`
    /// event).
    ServerError {
        /// The server's code, such as `SERVICE_UNAVAILABLE`.
        code: String,
        /// The server's message.
        message: String,
    },
    /// An inbound message failed validation and was dropped (counted in
    /// `Metrics::invalid_dropped`).
    InvalidMessage {
        /// What was wrong with it (never its content).
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::codec::socketio::{Decoder, Packet};

    fn event(text: &str) -> Event {
        match Decoder::new().feed_text(text).unwrap() {
            Some(Packet::Event(p)) => {
                let data = EventData {
                    namespace: p.namespace,
                    name: p.name,
                    args: p.args,
                    attachments: p.attachments,
                };
                Event::new(data, None, None)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn arguments_deserialize_on_demand() {
        let ev = event(r#"2["metric:recorded",{"bpm":72},"x"]"#);
        assert_eq!(ev.first_arg::<Value>().unwrap(), json!({"bpm": 72}));
        assert_eq!(ev.args().unwrap(), vec![json!({"bpm": 72}), json!("x")]);
        let (a, b): (Value, String) = ev.args_as().unwrap();
        assert_eq!((a, b), (json!({"bpm": 72}), "x".to_string()));
        assert!(matches!(ev.first_arg::<u32>(), Err(Error::InvalidArgs(_))));
        let empty = event(r#"2["ping"]"#);
        assert!(
            matches!(empty.first_arg::<Value>(), Err(Error::InvalidArgs(m)) if m.contains("no arguments"))
        );
        assert!(!empty.wants_ack());
        assert!(
            empty.ack(json!(1)).is_ok(),
            "acking an event that asked for none is a no-op"
        );
    }
}
