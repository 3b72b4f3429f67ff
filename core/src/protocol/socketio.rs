//! Socket.IO v5 over Engine.IO v4: the server pings, namespaces join with CONNECT, answers
//! travel as ACK packets with the id the client chose, binary as attachment frames.

use serde_json::Value;

use super::{HeartbeatMode, Input};
use crate::{
    Args,
    codec::{
        CodecError,
        engineio::{self, Handshake},
        socketio::{self, Decoder, Packet, RawJson},
    },
    event::AckReply,
    transport::{Frame, Utf8Bytes},
};

/// One Engine.IO session's protocol state.
#[derive(Debug)]
pub(crate) struct SocketIo {
    /// The server's `open` packet.
    handshake: Handshake,
    decoder: Decoder,
}

/// A Socket.IO packet written by `encode`, as one Engine.IO message frame.
fn message(capacity: usize, encode: impl FnOnce(&mut String)) -> Frame {
    Frame::Text(Utf8Bytes::from(engineio::encode_message(capacity, encode)))
}

impl SocketIo {
    pub(crate) fn new(handshake: Handshake) -> Self {
        Self {
            handshake,
            decoder: Decoder::new(),
        }
    }

    pub(super) fn decode(
        &mut self,
        frame: Frame,
        out: &mut Vec<Frame>,
    ) -> Result<Input, CodecError> {
        let packet = match frame {
            Frame::Binary(b) => self.decoder.feed_binary(b.to_vec())?,
            Frame::Text(text) => match engineio::decode_text(&text)? {
                engineio::Packet::Message(m) => self.decoder.feed_text(m)?,
                engineio::Packet::Ping(data) => {
                    out.push(Frame::Text(Utf8Bytes::from(engineio::encode_pong(data))));
                    return Ok(Input::Alive);
                }
                engineio::Packet::Close => return Ok(Input::Closed),
                engineio::Packet::Open(_)
                | engineio::Packet::Pong(_)
                | engineio::Packet::Upgrade
                | engineio::Packet::Noop
                | engineio::Packet::Binary(_) => None,
            },
        };
        Ok(match packet {
            None => Input::Nothing,
            Some(Packet::Event(packet)) => Input::Event { packet, id: None },
            Some(Packet::Ack {
                id,
                args,
                attachments,
                ..
            }) => Input::Ack {
                id,
                reply: Ok(AckReply { args, attachments }),
            },
            Some(Packet::Connect { namespace, data }) => Input::Joined { namespace, data },
            Some(Packet::ConnectError {
                namespace, message, ..
            }) => Input::Refused { namespace, message },
            Some(Packet::Disconnect { namespace }) => Input::Left { namespace },
        })
    }

    pub(super) fn push_event(
        &self,
        out: &mut Vec<Frame>,
        namespace: &str,
        name: &str,
        args: &RawJson,
        ack: Option<u64>,
        attachments: Vec<Vec<u8>>,
    ) -> Result<(), CodecError> {
        let n = attachments.len();
        let text = engineio::encode_message(name.len() + args.get().len() + 16, |m| {
            socketio::encode_event(m, namespace, name, args, ack, n)
        });
        engineio::check_size(text.len(), self.handshake.max_payload)?;
        out.push(Frame::Text(Utf8Bytes::from(text)));
        out.extend(attachments.into_iter().map(|b| Frame::Binary(b.into())));
        Ok(())
    }

    pub(super) fn connect(&self, namespace: &str, auth: Option<&Value>) -> Frame {
        message(32, |m| socketio::encode_connect(m, namespace, auth))
    }

    pub(super) fn disconnect(namespace: &str) -> Frame {
        message(32, |m| socketio::encode_disconnect(m, namespace))
    }

    pub(super) fn push_ack(out: &mut Vec<Frame>, namespace: &str, id: u64, args: Args) {
        let n = args.attachments.len();
        out.push(message(32 + args.json.get().len(), |m| {
            socketio::encode_ack(m, namespace, id, &args.json, n)
        }));
        out.extend(
            args.attachments
                .into_iter()
                .map(|b| Frame::Binary(b.into())),
        );
    }

    pub(super) fn heartbeat(&self) -> HeartbeatMode {
        HeartbeatMode::ServerPings {
            interval: self.handshake.ping_interval,
            timeout: self.handshake.ping_timeout,
        }
    }
}
