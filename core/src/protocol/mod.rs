//! Wire protocols: what frames mean to the engine, and the frames the engine's requests become.
//!
//! The engine speaks in protocol-neutral terms (an event arrived, an acknowledgement, a
//! namespace joined or refused, the link proved alive) and asks for frames (an event, an auth
//! message, a pong). [`Wire`] translates both ways for the protocol the client is configured
//! with, holding the little per-connection state a protocol needs (Socket.IO's binary
//! attachment decoder, the envelope's id counter). The codecs underneath stay pure; this layer
//! adds only the clock and the ids. So the reliability machinery (reconnect, outbox,
//! subscriptions, de-duplication) is written once for both protocols.

mod envelope;
mod socketio;

use std::time::Duration;

use serde_json::Value;

pub(crate) use self::{envelope::Envelope, socketio::SocketIo};
use crate::{
    codec::{
        CodecError,
        socketio::{EventPacket, Namespace, RawJson},
    },
    event::AckReply,
    transport::Frame,
};

/// What one inbound frame means.
#[derive(Debug)]
pub(crate) enum Input {
    /// Nothing for the engine (a noop, a binary packet still collecting attachments, a ping
    /// already answered).
    Nothing,
    /// An app event, with the protocol's unique id for de-duplication when it carries one.
    Event {
        packet: EventPacket,
        id: Option<String>,
    },
    /// The answer to a request the client made (an outbox entry or a subscription).
    Ack {
        id: u64,
        reply: Result<AckReply, Rejection>,
    },
    /// The server accepted a namespace (with its handshake data: `pid` for recovery).
    Joined {
        namespace: Namespace,
        data: Option<Value>,
    },
    /// The server refused a namespace's credentials.
    Refused {
        namespace: Namespace,
        message: String,
    },
    /// The server closed a namespace.
    Left { namespace: Namespace },
    /// The server closes the whole session.
    Closed,
    /// Proof the link works both ways (a ping from the server, a pong to ours).
    Alive,
    /// A server error not tied to a request; delivered to the app as an `error` event too.
    ServerError {
        code: String,
        message: String,
        event: EventPacket,
    },
    /// A message that failed validation: counted and reported, never fatal.
    Invalid(CodecError),
}

/// A request the server answered with a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub(crate) code: String,
    pub(crate) message: String,
    /// The failure's data as raw JSON (a rate limit's `resetTime`).
    pub(crate) data: String,
}

/// Server error codes after which a reconnect (with backoff) is the cure.
pub(crate) const RECONNECT_CODES: &[&str] = &[
    "CONNECTION_TIMEOUT",
    "INTERNAL_SERVER_ERROR",
    "SERVICE_UNAVAILABLE",
];

/// The rate limit code: the request may go again after the pause.
pub(crate) const RATE_LIMITED: &str = "RATE_LIMIT_EXCEEDED";

impl Rejection {
    /// Whether the request should be sent again later rather than failed.
    pub(crate) fn is_retryable(&self) -> bool {
        self.code == RATE_LIMITED || RECONNECT_CODES.contains(&self.code.as_str())
    }
}

/// How the link's liveness is proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeartbeatMode {
    /// The server pings every `interval`; silent for `interval + timeout` means dead.
    ServerPings {
        interval: Duration,
        timeout: Duration,
    },
    /// The client pings every `interval`; no pong within `timeout` means dead.
    ClientPings {
        interval: Duration,
        timeout: Duration,
    },
}

/// The protocol of one connection.
#[derive(Debug)]
pub(crate) enum Wire {
    /// Socket.IO v5 over Engine.IO v4.
    SocketIo(SocketIo),
    /// JSON envelopes over plain WebSocket.
    Envelope(Envelope),
}

impl Wire {
    /// What `frame` means; a Socket.IO decoding error is fatal to the link (nothing after it
    /// can be trusted), an envelope one is [`Input::Invalid`] (each message stands alone).
    /// Replies the protocol owes at once (pongs) are appended to `out`.
    pub(crate) fn decode(
        &mut self,
        frame: Frame,
        out: &mut Vec<Frame>,
    ) -> Result<Input, CodecError> {
        match self {
            Wire::SocketIo(w) => w.decode(frame, out),
            Wire::Envelope(w) => Ok(w.decode(frame, out)),
        }
    }

    /// Appends the frames of an event; `ack` asks for an answer with that id and `key` is its
    /// idempotency key (the envelope id of a durable emit).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn push_event(
        &mut self,
        out: &mut Vec<Frame>,
        namespace: &str,
        name: &str,
        args: &RawJson,
        ack: Option<u64>,
        attachments: Vec<Vec<u8>>,
        key: Option<&str>,
    ) -> Result<(), CodecError> {
        match self {
            Wire::SocketIo(w) => w.push_event(out, namespace, name, args, ack, attachments),
            Wire::Envelope(w) => w.push_event(out, name, args, ack, &attachments, key),
        }
    }

    /// The frame that joins `namespace` with `auth`, or why this protocol cannot.
    pub(crate) fn connect(
        &mut self,
        namespace: &str,
        auth: Option<&Value>,
    ) -> Result<Frame, String> {
        match self {
            Wire::SocketIo(w) => Ok(w.connect(namespace, auth)),
            Wire::Envelope(w) => w.auth(namespace, auth),
        }
    }

    /// The frame that leaves `namespace`, if the protocol has one.
    pub(crate) fn disconnect(&self, namespace: &str) -> Option<Frame> {
        match self {
            Wire::SocketIo(_) => Some(SocketIo::disconnect(namespace)),
            Wire::Envelope(_) => None,
        }
    }

    /// Appends the answer to a server's acknowledgement request.
    pub(crate) fn push_ack(
        &self,
        out: &mut Vec<Frame>,
        namespace: &str,
        id: u64,
        args: crate::Args,
    ) {
        match self {
            Wire::SocketIo(_) => SocketIo::push_ack(out, namespace, id, args),
            // Envelope events never ask the client for an acknowledgement.
            Wire::Envelope(_) => {}
        }
    }

    /// The client's heartbeat ping, for protocols where the client pings.
    pub(crate) fn ping(&mut self) -> Option<Frame> {
        match self {
            Wire::SocketIo(_) => None,
            Wire::Envelope(w) => Some(w.ping()),
        }
    }

    /// How liveness is proven on this link.
    pub(crate) fn heartbeat(&self) -> HeartbeatMode {
        match self {
            Wire::SocketIo(w) => w.heartbeat(),
            Wire::Envelope(w) => w.heartbeat(),
        }
    }
}
