//! Wire protocols: what frames mean to the engine, and the frames the engine's requests become.
//!
//! The engine speaks in protocol-neutral terms (an event arrived, an acknowledgement, a
//! namespace joined or refused, the link proved alive, the server asked to slow down) and asks
//! for frames (an event with its idempotency key, an auth message, a pong). [`Wire`] translates
//! both ways for the protocol the client is configured with, holding the little per-connection
//! state a protocol needs (Socket.IO's binary attachment decoder and resumable namespaces, the
//! envelope's id counter). Everything that names a wire field, an error code or an id format
//! lives below this folder; the codecs underneath stay pure, and this layer adds only the clock
//! and the ids. So the reliability machinery (reconnect, outbox, subscriptions,
//! de-duplication) is written once for both protocols.

mod envelope;
mod input;
mod signals;
mod socketio;

use serde_json::Value;

use self::{envelope::Envelope, socketio::SocketIo};
pub(crate) use self::{
    input::{EventData, HeartbeatMode, Inbound, Input, Rejection, Resume, Signal, Then},
    signals::Signals,
};
use crate::{
    args::Args,
    codec::{CodecError, engineio},
    config::{ClientConfig, Protocol},
    outbox::KeyPlacement,
    transport::Frame,
};

/// What a protocol needs from the client's configuration.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    protocol: Protocol,
    key: KeyPlacement,
    signals: Signals,
    max_payload: usize,
}

impl Options {
    pub(crate) fn new(config: &ClientConfig) -> Self {
        Self {
            protocol: config.protocol,
            key: config.outbox.key.clone(),
            signals: Signals::new(config),
            max_payload: config.max_inbound_bytes,
        }
    }
}

/// The first frame of a link, for protocols that open with one.
pub(crate) enum Opening {
    /// The session is open: this is its protocol.
    Open(Box<Wire>),
    /// Not the opening yet (a noop or ping some servers send first); keep reading.
    NotYet,
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
    /// The envelope protocol, which needs no opening frame; `None` for Socket.IO.
    pub(crate) fn without_opening(options: &Options) -> Option<Wire> {
        match options.protocol {
            Protocol::Envelope(e) => Some(Wire::Envelope(Envelope::new(
                e,
                options.max_payload,
                options.signals.clone(),
            ))),
            Protocol::SocketIo => None,
        }
    }

    /// Reads Engine.IO's `open` packet, the first frame of every Socket.IO transport.
    pub(crate) fn opening(frame: Frame, options: &Options) -> Result<Opening, CodecError> {
        let text = match frame {
            Frame::Text(t) => t,
            Frame::Binary(_) => {
                return Err(CodecError::UnexpectedFrame("binary frame before open"));
            }
        };
        match engineio::decode_text(&text)? {
            engineio::Packet::Open(h) => Ok(Opening::Open(Box::new(Wire::SocketIo(
                SocketIo::new(h, options.key.clone(), options.signals.clone()),
            )))),
            engineio::Packet::Noop | engineio::Packet::Ping(_) => Ok(Opening::NotYet),
            _ => Err(CodecError::UnexpectedFrame("expected the open packet")),
        }
    }

    /// What `frame` means; a Socket.IO decoding error is fatal to the link (nothing after it
    /// can be trusted, as socket.io-client also judges), except a packet whose only fault is
    /// JSON nested too deep, which is [`Input::Invalid`] like every envelope error (each
    /// envelope message stands alone).
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

    /// Appends the frames of an event; `ack` asks for an answer with that id and `key` is a
    /// durable emit's idempotency key, placed as the protocol and configuration say.
    pub(crate) fn push_event(
        &mut self,
        out: &mut Vec<Frame>,
        event: &EventData,
        ack: Option<u64>,
        key: Option<&str>,
    ) -> Result<(), CodecError> {
        match self {
            Wire::SocketIo(w) => w.push_event(out, event, ack, key),
            Wire::Envelope(w) => w.push_event(out, event, ack, key),
        }
    }

    /// The frame that joins `namespace` with `auth` (asking to restore `resume`), or why this
    /// protocol cannot.
    pub(crate) fn connect(
        &mut self,
        namespace: &str,
        auth: Option<Value>,
        resume: Option<&Resume>,
    ) -> Result<Frame, String> {
        match self {
            Wire::SocketIo(w) => Ok(w.connect(namespace, auth, resume)),
            Wire::Envelope(w) => w.auth(namespace, auth.as_ref()),
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
    pub(crate) fn push_ack(&self, out: &mut Vec<Frame>, namespace: &str, id: u64, args: Args) {
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

/// A Socket.IO wire for tests: the handshake of a server with the given heartbeat.
#[cfg(test)]
pub(crate) fn test_wire(ping_interval_ms: u64, ping_timeout_ms: u64) -> Wire {
    let open = format!(
        r#"0{{"sid":"s","upgrades":[],"pingInterval":{ping_interval_ms},"pingTimeout":{ping_timeout_ms},"maxPayload":100000}}"#
    );
    let frame = Frame::Text(crate::transport::Utf8Bytes::from(open));
    let config = ClientConfig::new("http://localhost:1").expect("a valid url");
    match Wire::opening(frame, &Options::new(&config)) {
        Ok(Opening::Open(w)) => *w,
        _ => unreachable!("a valid open packet"),
    }
}
