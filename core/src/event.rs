//! What flows between the app and the engine: inbound events, outbound arguments, states and
//! lifecycle notices.

use std::{fmt, sync::Arc, time::Duration};

use serde::{Deserializer as _, Serialize, de::DeserializeOwned};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::{
    codec::socketio::{self, EventPacket, RawJson},
    error::{Error, Result},
};

/// An event received from the server.
///
/// Cheap to clone (one reference count). Arguments stay as validated JSON text until the app
/// asks for them, so an app that deserializes into its own types parses each event once.
#[derive(Clone)]
pub struct Event {
    packet: Arc<EventPacket>,
    acker: Option<Acker>,
    offset: Option<Arc<str>>,
}

impl Event {
    pub(crate) fn new(packet: EventPacket, acker: Option<Acker>) -> Self {
        Self {
            packet: Arc::new(packet),
            acker,
            offset: None,
        }
    }

    pub(crate) fn with_offset(mut self, offset: Option<Arc<str>>) -> Self {
        self.offset = offset;
        self
    }

    /// The server's connection-state-recovery offset of this event (the id the server
    /// replays from and Pulselink de-duplicates by), when recovery is on for its namespace.
    pub fn offset(&self) -> Option<&str> {
        self.offset.as_deref()
    }

    /// The namespace it arrived on, e.g. `/` or `/rooms/r1`.
    pub fn namespace(&self) -> &str {
        &self.packet.namespace
    }

    /// The event name, e.g. `metric:recorded`.
    pub fn name(&self) -> &str {
        &self.packet.name
    }

    /// The arguments after the name, as a JSON array text (binary attachments appear as
    /// `{"_placeholder":true,"num":N}`).
    pub fn args_json(&self) -> &str {
        self.packet.args.get()
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
        &self.packet.attachments
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
        let _ = acker.tx.send(crate::engine::Control::Ack {
            namespace: self.packet.namespace.clone(),
            id: acker.id,
            session: acker.session,
            args,
        });
        Ok(())
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("namespace", &self.namespace())
            .field("name", &self.name())
            .field("args", &self.args_json())
            .field("attachments", &self.packet.attachments.len())
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

/// Sends an acknowledgement back through the engine that received the event.
#[derive(Clone)]
pub(crate) struct Acker {
    pub(crate) tx: mpsc::UnboundedSender<crate::engine::Control>,
    pub(crate) id: u64,
    /// The transport session the request came on; a reply on a later session is dropped.
    pub(crate) session: u64,
}

/// Arguments of an outgoing event or acknowledgement: a JSON array plus binary attachments.
///
/// Build from a single value (`json!({...}).into()`), from several
/// ([`Args::list`]), or with binary parts ([`Args::binary`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    pub(crate) json: RawJson,
    pub(crate) attachments: Vec<Vec<u8>>,
}

impl Args {
    /// No arguments.
    pub fn none() -> Self {
        Self::from_json_array("[]").unwrap_or_else(|_| unreachable!("[] is valid JSON"))
    }

    /// Several JSON arguments.
    pub fn list(values: impl IntoIterator<Item = Value>) -> Self {
        Self::from_value_array(Value::Array(values.into_iter().collect()))
    }

    /// Any serializable values as the argument list, e.g. `Args::serialize(&(a, b))` for two.
    pub fn serialize<T: Serialize + ?Sized>(args: &T) -> Result<Self> {
        let v = serde_json::to_value(args).map_err(|e| Error::InvalidArgs(e.to_string()))?;
        match v {
            Value::Array(_) => Ok(Self::from_value_array(v)),
            other => Ok(Self::list([other])),
        }
    }

    /// A JSON array text used as-is (no re-encoding), e.g. `[{"bpm":72}]`.
    pub fn from_json_array(text: impl Into<String>) -> Result<Self> {
        let json =
            RawJson::from_string(text.into()).map_err(|e| Error::InvalidArgs(e.to_string()))?;
        if !json.get().trim_start().starts_with('[') {
            return Err(Error::InvalidArgs("arguments must be a JSON array".into()));
        }
        Ok(Self {
            json,
            attachments: Vec::new(),
        })
    }

    /// Arguments that reference binary attachments with [`socketio::placeholder`] values at
    /// any depth.
    pub fn with_attachments(args: Value, attachments: Vec<Vec<u8>>) -> Result<Self> {
        if !args.is_array() {
            return Err(Error::InvalidArgs("arguments must be a JSON array".into()));
        }
        let mut a = Self::from_value_array(args);
        a.attachments = attachments;
        a.check()?;
        Ok(a)
    }

    /// Appends a binary argument (sent as an attachment).
    pub fn binary(mut self, bytes: Vec<u8>) -> Self {
        let mut items: Vec<Value> = serde_json::from_str(self.json.get()).unwrap_or_default();
        items.push(socketio::placeholder(self.attachments.len()));
        self.attachments.push(bytes);
        let attachments = std::mem::take(&mut self.attachments);
        Self {
            attachments,
            ..Self::from_value_array(Value::Array(items))
        }
    }

    /// The JSON array text.
    pub fn json(&self) -> &str {
        self.json.get()
    }

    /// The attachments.
    pub fn attachments(&self) -> &[Vec<u8>] {
        &self.attachments
    }

    fn from_value_array(v: Value) -> Self {
        // Serializing a Value to a string cannot fail, and the text is valid JSON.
        // Serializing a Value cannot fail, and its text is valid JSON.
        let json = RawJson::from_string(v.to_string())
            .unwrap_or_else(|_| unreachable!("a JSON value always serializes"));
        Self {
            json,
            attachments: Vec::new(),
        }
    }

    /// Checks that placeholders and attachments agree.
    pub(crate) fn check(&self) -> Result<()> {
        if self.attachments.is_empty() {
            return Ok(());
        }
        let v: Value =
            serde_json::from_str(self.json.get()).map_err(|e| Error::InvalidArgs(e.to_string()))?;
        let mut seen = vec![false; self.attachments.len()];
        let mut ok = true;
        socketio::visit_placeholders(&v, &mut |num| match num {
            Some(n) if (n as usize) < seen.len() => seen[n as usize] = true,
            _ => ok = false,
        });
        if ok && seen.iter().all(|s| *s) {
            Ok(())
        } else {
            Err(Error::InvalidArgs(
                "every attachment needs exactly one valid placeholder".into(),
            ))
        }
    }
}

impl From<Value> for Args {
    /// One argument.
    fn from(v: Value) -> Self {
        Self::list([v])
    }
}

impl From<()> for Args {
    /// No arguments.
    fn from(_: ()) -> Self {
        Self::none()
    }
}

/// The answer to an `emit_with_ack`.
#[derive(Debug, Clone, PartialEq)]
pub struct AckReply {
    /// The answer's arguments as a JSON array text.
    pub args: RawJson,
    /// Binary attachments of the answer.
    pub attachments: Vec<Vec<u8>>,
}

impl AckReply {
    /// The answer parsed into JSON values.
    pub fn values(&self) -> Result<Vec<Value>> {
        serde_json::from_str(self.args.get()).map_err(|e| Error::InvalidArgs(e.to_string()))
    }

    /// The answer deserialized into the app's type.
    pub fn args_as<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_str(self.args.get()).map_err(|e| Error::InvalidArgs(e.to_string()))
    }
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
    /// The app said the network is down; nothing is attempted until it says it is back.
    Offline,
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
    /// The server reported an error that a reconnect cures (envelope `SERVICE_UNAVAILABLE`,
    /// `INTERNAL_SERVER_ERROR`, `CONNECTION_TIMEOUT`); retrying with backoff.
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
        /// What went wrong.
        error: String,
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
            Some(Packet::Event(p)) => Event::new(p, None),
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

    #[test]
    fn args_are_validated_when_built() {
        assert_eq!(Args::none().json(), "[]");
        assert_eq!(Args::from(json!({"a": 1})).json(), r#"[{"a":1}]"#);
        assert_eq!(Args::serialize(&(1, "b")).unwrap().json(), r#"[1,"b"]"#);
        assert!(Args::from_json_array("{}").is_err());
        assert!(Args::from_json_array("[1,").is_err());
        let bin = Args::list([json!("t")]).binary(vec![1]).binary(vec![2]);
        assert_eq!(
            bin.json(),
            r#"["t",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
        );
        assert!(bin.check().is_ok());
        let missing =
            Args::with_attachments(json!([{"_placeholder": true, "num": 1}]), vec![vec![1]]);
        assert!(missing.is_err(), "placeholder 1 with one attachment");
        let unused = Args::with_attachments(json!([1]), vec![vec![1]]);
        assert!(unused.is_err(), "an attachment without a placeholder");
    }
}
