//! Socket.IO v5 over Engine.IO v4: the server pings, namespaces join with CONNECT, answers
//! travel as ACK packets with the id the client chose, binary as attachment frames.
//!
//! Connection state recovery lives here too: a namespace whose CONNECT answer carries a `pid`
//! is resumable, the server appends its offset to every event it stores for it (a last string
//! argument, whatever the adapter's id format), and the CONNECT of a later link carries the
//! `pid` and the last offset back.

use std::sync::Arc;

use serde_json::Value;

use super::{
    input::{EventData, HeartbeatMode, Inbound, Input, Resume},
    signals::Signals,
};
use crate::{
    args::{AckReply, Args},
    codec::{
        CodecError,
        engineio::{self, Handshake},
        json::{
            RawJson, array_inner, push_quoted, push_with_field, push_with_last, split_last_string,
        },
        socketio::{self, Decoder, EventPacket, Packet},
    },
    outbox::KeyPlacement,
    transport::{Frame, Utf8Bytes},
};

/// What a refusal is called when the server's CONNECT_ERROR names no code.
const CONNECT_ERROR: &str = "CONNECT_ERROR";

/// One Engine.IO session's protocol state.
#[derive(Debug)]
pub(crate) struct SocketIo {
    /// The server's `open` packet.
    handshake: Handshake,
    decoder: Decoder,
    key: KeyPlacement,
    signals: Signals,
    /// Namespaces the server offered to restore (their CONNECT answer had a `pid`).
    /// A list, not a set: a client joins one namespace or a few, and a set's first entry
    /// allocates room for several.
    resumable: Vec<Arc<str>>,
}

/// A Socket.IO packet written by `encode`, as one Engine.IO message frame.
fn message(capacity: usize, encode: impl FnOnce(&mut String)) -> Frame {
    Frame::Text(Utf8Bytes::from(engineio::encode_message(capacity, encode)))
}

impl SocketIo {
    pub(crate) fn new(handshake: Handshake, key: KeyPlacement, signals: Signals) -> Self {
        Self {
            handshake,
            decoder: Decoder::new(),
            key,
            signals,
            resumable: Vec::new(),
        }
    }

    fn mark_resumable(&mut self, namespace: Arc<str>) {
        if !self.resumable.contains(&namespace) {
            self.resumable.reserve_exact(1);
            self.resumable.push(namespace);
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
                engineio::Packet::Message(m) => match self.decoder.feed_text(m) {
                    // Well framed and valid JSON, only nested deeper than we parse: this
                    // packet is dropped and counted, the link stays (nothing else is in doubt).
                    Err(e @ CodecError::TooDeep(_)) => return Ok(Input::Invalid(e)),
                    other => other?,
                },
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
            Some(Packet::Event(packet)) => Input::Event(self.inbound(packet)),
            Some(Packet::Ack {
                id,
                args,
                attachments,
                ..
            }) => Input::Ack {
                id,
                reply: Ok(AckReply { args, attachments }),
            },
            Some(Packet::Connect { namespace, data }) => {
                let pid = data
                    .as_ref()
                    .and_then(|d| d.get("pid"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                if pid.is_some() {
                    self.mark_resumable(namespace.clone());
                } else {
                    self.resumable.retain(|n| *n != namespace);
                }
                Input::Joined {
                    namespace,
                    resumable: pid,
                }
            }
            Some(Packet::ConnectError {
                namespace, message, ..
            }) => Input::Refused {
                namespace,
                code: CONNECT_ERROR.to_owned(),
                message,
            },
            Some(Packet::Disconnect { namespace }) => {
                self.resumable.retain(|n| *n != namespace);
                Input::Left { namespace }
            }
        })
    }

    /// An event with its recovery offset split off: the server stores (and appends an offset
    /// to) every event it sends a resumable namespace except those asking for an ack.
    fn inbound(&self, p: EventPacket) -> Inbound {
        let mut args = p.args;
        let mut id = None;
        if p.id.is_none()
            && self.resumable.contains(&p.namespace)
            && let Some((rest, offset)) = split_last_string(args.get())
        {
            args = RawJson::validated(rest);
            id = Some(Arc::from(offset));
        }
        let signal = self.signals.of(&p.name, args.get());
        Inbound {
            event: EventData {
                namespace: p.namespace,
                name: p.name,
                args,
                attachments: p.attachments,
            },
            ack: p.id,
            resumes: id.is_some(),
            id,
            signal,
        }
    }

    pub(super) fn push_event(
        &self,
        out: &mut Vec<Frame>,
        event: &EventData,
        ack: Option<u64>,
        key: Option<&str>,
    ) -> Result<(), CodecError> {
        let args = event.args.get();
        let n = event.attachments.len();
        let field = match &self.key {
            KeyPlacement::Field(f) | KeyPlacement::TrailingArg(f) => f.len(),
            KeyPlacement::None => 0,
        };
        let key_len = key.map_or(0, |k| k.len() + field + 8);
        let capacity = event.name.len() + args.len() + key_len + 16;
        let text = engineio::encode_message(capacity, |m| {
            socketio::encode_event_with(m, &event.namespace, &event.name, ack, n, |m| {
                self.push_args(m, args, key);
            })
        });
        engineio::check_size(text.len(), self.handshake.max_payload)?;
        out.push(Frame::Text(Utf8Bytes::from(text)));
        out.extend(
            event
                .attachments
                .iter()
                .map(|b| Frame::Binary(b.clone().into())),
        );
        Ok(())
    }

    /// Appends the elements of `args` carrying `key` where the configuration puts it
    /// (unchanged without a key, or when the first argument it goes into is not an object).
    fn push_args(&self, out: &mut String, args: &str, key: Option<&str>) {
        match (&self.key, key) {
            (KeyPlacement::Field(field), Some(key))
                if push_with_field(out, args, field, |o| push_quoted(o, key)) => {}
            (KeyPlacement::TrailingArg(field), Some(key)) => push_with_last(out, args, |o| {
                o.push('{');
                push_quoted(o, field);
                o.push(':');
                push_quoted(o, key);
                o.push('}');
            }),
            _ => out.push_str(array_inner(args)),
        }
    }

    pub(super) fn connect(
        &mut self,
        namespace: &str,
        mut auth: Option<Value>,
        resume: Option<&Resume>,
    ) -> Frame {
        if let Some(r) = resume {
            // A server that restores the session replays the missed events before its CONNECT
            // answer, each with its offset.
            self.mark_resumable(Arc::from(namespace));
            // Ask the server to restore the session (socket.io-client does the same).
            let obj = auth.get_or_insert_with(|| Value::Object(Default::default()));
            if let Value::Object(m) = obj {
                m.entry("pid").or_insert_with(|| r.session.clone().into());
                if let Some(o) = &r.position {
                    m.entry("offset").or_insert_with(|| o.clone().into());
                }
            }
        }
        message(32, |m| {
            socketio::encode_connect(m, namespace, auth.as_ref())
        })
    }

    pub(super) fn disconnect(namespace: &str) -> Frame {
        message(32, |m| socketio::encode_disconnect(m, namespace))
    }

    pub(super) fn push_ack(out: &mut Vec<Frame>, namespace: &str, id: u64, args: Args) {
        let n = args.attachments.len();
        let (json, attachments) = args.into_parts();
        let json = RawJson::validated(json);
        out.push(message(32 + json.get().len(), |m| {
            socketio::encode_ack(m, namespace, id, &json, n)
        }));
        out.extend(attachments.into_iter().map(|b| Frame::Binary(b.into())));
    }

    pub(super) fn heartbeat(&self) -> HeartbeatMode {
        HeartbeatMode::ServerPings {
            interval: self.handshake.ping_interval,
            timeout: self.handshake.ping_timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn wire(key: KeyPlacement) -> SocketIo {
        let open =
            r#"0{"sid":"s","upgrades":[],"pingInterval":300,"pingTimeout":200,"maxPayload":1000}"#;
        let engineio::Packet::Open(h) = engineio::decode_text(open).unwrap() else {
            panic!("not an open packet")
        };
        SocketIo::new(h, key, Signals::default())
    }

    fn text(s: &str) -> Frame {
        Frame::Text(Utf8Bytes::from(s.to_owned()))
    }

    fn event(w: &mut SocketIo, frame: &str) -> Inbound {
        match w.decode(text(frame), &mut Vec::new()).unwrap() {
            Input::Event(i) => i,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn offsets_are_split_off_only_on_resumable_namespaces() {
        let mut w = wire(KeyPlacement::default());
        let plain = event(&mut w, r#"42["tick",{"n":1},"1796171162297-0"]"#);
        assert_eq!(plain.event.args.get(), r#"[{"n":1},"1796171162297-0"]"#);
        assert!(plain.id.is_none());
        let joined = w.decode(text(r#"40{"sid":"a","pid":"p1"}"#), &mut Vec::new());
        assert!(matches!(joined, Ok(Input::Joined { resumable: Some(p), .. }) if p == "p1"));
        // A Redis-streams offset and an in-memory (yeast) one alike: the shape does not matter.
        for offset in ["1796171162297-0", "Q81-5fV.3"] {
            let e = event(&mut w, &format!(r#"42["tick",{{"n":1}},"{offset}"]"#));
            assert_eq!(e.event.args.get(), r#"[{"n":1}]"#);
            assert_eq!(e.id.as_deref(), Some(offset));
            assert!(e.resumes);
        }
        let asks = event(&mut w, r#"421["q","s"]"#);
        assert_eq!(
            asks.event.args.get(),
            r#"["s"]"#,
            "acked events are not stored"
        );
        let other_ns = event(&mut w, r#"42/rooms,["tick","x"]"#);
        assert_eq!(other_ns.event.args.get(), r#"["x"]"#);
        let _ = w.decode(text("41"), &mut Vec::new());
        assert!(event(&mut w, r#"42["tick","x"]"#).id.is_none(), "left");
    }

    #[test]
    fn the_key_goes_where_the_configuration_says() {
        let data = |args: &str| EventData {
            namespace: Arc::from("/"),
            name: Arc::from("e"),
            args: RawJson::validated(args.into()),
            attachments: vec![],
        };
        let sent = |w: &SocketIo, args: &str| {
            let mut out = Vec::new();
            w.push_event(&mut out, &data(args), Some(7), Some("c-1"))
                .unwrap();
            match &out[0] {
                Frame::Text(t) => t.to_string(),
                other => panic!("{other:?}"),
            }
        };
        let field = wire(KeyPlacement::default());
        assert_eq!(
            sent(&field, r#"[{"a":1}]"#),
            r#"427["e",{"idempotencyKey":"c-1","a":1}]"#
        );
        assert_eq!(sent(&field, "[1]"), r#"427["e",1]"#, "no object, no key");
        let trailing = wire(KeyPlacement::TrailingArg("k".into()));
        assert_eq!(sent(&trailing, "[1]"), r#"427["e",1,{"k":"c-1"}]"#);
        assert_eq!(sent(&trailing, "[]"), r#"427["e",{"k":"c-1"}]"#);
        assert_eq!(sent(&field, "[]"), r#"427["e"]"#, "no arguments, no comma");
        assert_eq!(sent(&field, "[ ]"), r#"427["e"]"#);
        assert_eq!(sent(&wire(KeyPlacement::None), "[1]"), r#"427["e",1]"#);
        let mut out = Vec::new();
        let big = data(&format!("[\"{}\"]", "x".repeat(2000)));
        assert!(matches!(
            field.push_event(&mut out, &big, None, None),
            Err(CodecError::TooLarge { .. })
        ));
    }

    #[test]
    fn connect_asks_to_resume_the_session_and_reads_replays_before_the_answer() {
        let mut w = wire(KeyPlacement::default());
        let resume = Resume {
            session: "p1".into(),
            position: Some("o9".into()),
        };
        let frame = w.connect("/", Some(serde_json::json!({"token": "t"})), Some(&resume));
        let Frame::Text(t) = frame else { panic!() };
        assert_eq!(&*t, r#"40{"offset":"o9","pid":"p1","token":"t"}"#);
        // socket.io sends the missed events first, then its CONNECT answer.
        let replay = event(&mut w, r#"42["tick",{"n":1},"o10"]"#);
        assert_eq!(replay.event.args.get(), r#"[{"n":1}]"#);
        assert_eq!(replay.id.as_deref(), Some("o10"));
        assert_eq!(
            w.heartbeat(),
            HeartbeatMode::ServerPings {
                interval: Duration::from_millis(300),
                timeout: Duration::from_millis(200)
            }
        );
    }
}
