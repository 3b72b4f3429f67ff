//! Socket.IO protocol v5 packets, carried in Engine.IO messages.
//!
//! `<type>[<attachments>-][<namespace>,][<ack id>][<JSON payload>]`, with binary attachments
//! sent as the following binary frames and referenced by `{"_placeholder":true,"num":N}` at any
//! depth of the payload. Decoding is the hot path of the SDK, so event arguments are validated
//! without building a JSON tree: the app gets them as raw JSON text and deserializes them into
//! its own types, once.

use std::sync::Arc;

use serde::{
    Deserialize, Deserializer,
    de::{SeqAccess, Visitor},
};
use serde_json::{Value, value::RawValue};

mod encode;

pub use self::encode::{
    encode_ack, encode_connect, encode_disconnect, encode_event, encode_event_with, placeholder,
    visit_placeholders,
};
use super::{
    CodecError,
    intern::intern,
    json::{RawJson, check_depth},
};

/// The bytes of one binary attachment.
pub type Bytes = Vec<u8>;

/// Most attachments one packet may announce; anything larger is a hostile or broken peer.
pub const MAX_ATTACHMENTS: usize = 1024;

/// The Socket.IO packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    /// Connect to a namespace (client) or connection accepted (server).
    Connect,
    /// Leave a namespace.
    Disconnect,
    /// An event with JSON arguments.
    Event,
    /// The answer to an event that asked for an acknowledgement.
    Ack,
    /// The server refused a namespace connection.
    ConnectError,
    /// An event with binary attachments.
    BinaryEvent,
    /// An acknowledgement with binary attachments.
    BinaryAck,
}

impl PacketType {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            b'0' => Self::Connect,
            b'1' => Self::Disconnect,
            b'2' => Self::Event,
            b'3' => Self::Ack,
            b'4' => Self::ConnectError,
            b'5' => Self::BinaryEvent,
            b'6' => Self::BinaryAck,
            _ => return None,
        })
    }

    fn is_binary(self) -> bool {
        matches!(self, Self::BinaryEvent | Self::BinaryAck)
    }
}

/// The header and undecoded payload of one packet, borrowed from its frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPacket<'a> {
    /// Packet type.
    pub kind: PacketType,
    /// Number of binary attachments that follow (binary packets only).
    pub attachments: usize,
    /// Namespace, `/` when the packet omits it.
    pub namespace: &'a str,
    /// Acknowledgement id.
    pub id: Option<u64>,
    /// The JSON payload text, empty when absent.
    pub data: &'a str,
}

/// Splits a packet into header and payload without looking at the JSON.
pub fn parse_header(text: &str) -> Result<RawPacket<'_>, CodecError> {
    let bytes = text.as_bytes();
    let Some(&first) = bytes.first() else {
        return Err(CodecError::Empty);
    };
    let kind = PacketType::from_byte(first)
        .ok_or_else(|| CodecError::UnknownType(text.chars().next().unwrap_or('\u{fffd}')))?;
    let mut i = 1;

    let mut attachments = 0;
    if kind.is_binary() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || i >= bytes.len() || bytes[i] != b'-' {
            return Err(CodecError::BadAttachmentCount);
        }
        attachments = text[start..i]
            .parse::<usize>()
            .map_err(|_| CodecError::BadAttachmentCount)?;
        if attachments > MAX_ATTACHMENTS {
            return Err(CodecError::BadAttachmentCount);
        }
        i += 1;
    }

    let mut namespace = "/";
    if bytes.get(i) == Some(&b'/') {
        let start = i;
        while i < bytes.len() && bytes[i] != b',' {
            i += 1;
        }
        namespace = &text[start..i];
        if i < bytes.len() {
            i += 1; // the comma
        }
    }

    let mut id = None;
    let start = i;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    if i > start {
        id = Some(
            text[start..i]
                .parse::<u64>()
                .map_err(|_| CodecError::BadAckId)?,
        );
    }

    Ok(RawPacket {
        kind,
        attachments,
        namespace,
        id,
        data: &text[i..],
    })
}

/// A namespace name, shared between every event decoded for it.
pub type Namespace = Arc<str>;

/// A validated inbound packet.
#[derive(Debug, Clone, PartialEq)]
pub enum Packet {
    /// The server accepted a namespace; `data` holds `sid` (and `pid` with state recovery).
    Connect {
        /// The namespace.
        namespace: Namespace,
        /// The handshake object.
        data: Option<Value>,
    },
    /// The server closed a namespace.
    Disconnect {
        /// The namespace.
        namespace: Namespace,
    },
    /// An event from the server.
    Event(EventPacket),
    /// The server's answer to one of our events.
    Ack {
        /// The namespace.
        namespace: Namespace,
        /// The id we sent with the event.
        id: u64,
        /// The answer, a JSON array.
        args: RawJson,
        /// Binary attachments referenced by placeholders in `args`.
        attachments: Vec<Bytes>,
    },
    /// The server refused a namespace connection.
    ConnectError {
        /// The namespace.
        namespace: Namespace,
        /// The server's message, such as "Authentication failed".
        message: String,
        /// Extra data the server attached (`err.data`).
        data: Option<Value>,
    },
}

/// An event as it came off the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPacket {
    /// The namespace.
    pub namespace: Namespace,
    /// The ack id when the server asks for an acknowledgement.
    pub id: Option<u64>,
    /// Event name (shared between events of the same name).
    pub name: Arc<str>,
    /// The arguments after the name, as a JSON array.
    pub args: RawJson,
    /// Binary attachments referenced by placeholders in `args`.
    pub attachments: Vec<Bytes>,
}

/// Decodes a stream of Socket.IO packets, collecting binary attachments.
///
/// Stateful only to glue a binary packet's header to the frames that follow it; it performs
/// no I/O.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Boxed: binary packets are rare, and a decoder lives as long as its link.
    pending: Option<Box<PendingBinary>>,
    namespaces: Vec<Namespace>,
    names: Vec<Arc<str>>,
}

#[derive(Debug)]
struct PendingBinary {
    kind: PacketType,
    namespace: Namespace,
    id: Option<u64>,
    data: String,
    expected: usize,
    attachments: Vec<Bytes>,
}

impl Decoder {
    /// A decoder with no packet in progress.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a binary packet is waiting for more attachments.
    pub fn is_waiting_for_attachments(&self) -> bool {
        self.pending.is_some()
    }

    /// Decodes the Socket.IO packet in one Engine.IO text message.
    ///
    /// Returns `None` when the packet announces binary attachments still to come.
    pub fn feed_text(&mut self, text: &str) -> Result<Option<Packet>, CodecError> {
        if let Some(p) = self.pending.take() {
            return Err(CodecError::AttachmentMismatch {
                expected: p.expected,
                received: p.attachments.len(),
            });
        }
        let raw = parse_header(text)?;
        let namespace = self.intern(raw.namespace);
        if raw.kind.is_binary() && raw.attachments > 0 {
            // Validate the JSON now so a broken packet fails before we buffer attachments.
            validate_array(raw.data)?;
            self.pending = Some(Box::new(PendingBinary {
                kind: raw.kind,
                namespace,
                id: raw.id,
                data: raw.data.to_owned(),
                expected: raw.attachments,
                attachments: Vec::with_capacity(raw.attachments),
            }));
            return Ok(None);
        }
        build(
            raw.kind,
            namespace,
            raw.id,
            raw.data,
            Vec::new(),
            &mut self.names,
        )
        .map(Some)
    }

    /// Adds one binary attachment to the packet in progress.
    pub fn feed_binary(&mut self, data: Bytes) -> Result<Option<Packet>, CodecError> {
        let Some(p) = self.pending.as_mut() else {
            return Err(CodecError::UnexpectedBinary);
        };
        p.attachments.push(data);
        if p.attachments.len() < p.expected {
            return Ok(None);
        }
        let Some(p) = self.pending.take() else {
            return Err(CodecError::UnexpectedBinary);
        };
        check_placeholders(&p.data, p.expected)?;
        build(
            p.kind,
            p.namespace,
            p.id,
            &p.data,
            p.attachments,
            &mut self.names,
        )
        .map(Some)
    }

    fn intern(&mut self, ns: &str) -> Namespace {
        intern(&mut self.namespaces, ns, 64)
    }
}

fn build(
    kind: PacketType,
    namespace: Namespace,
    id: Option<u64>,
    data: &str,
    attachments: Vec<Bytes>,
    names: &mut Vec<Arc<str>>,
) -> Result<Packet, CodecError> {
    match kind {
        PacketType::Connect => {
            let data = parse_optional(data)?;
            if data.as_ref().is_some_and(|d| !d.is_object()) {
                return Err(CodecError::InvalidPayload(
                    "CONNECT payload must be an object",
                ));
            }
            Ok(Packet::Connect { namespace, data })
        }
        PacketType::Disconnect => Ok(Packet::Disconnect { namespace }),
        PacketType::Event | PacketType::BinaryEvent => {
            let (name, args) = split_event(data)?;
            let name = intern(names, &name, 256);
            Ok(Packet::Event(EventPacket {
                namespace,
                id,
                name,
                args,
                attachments,
            }))
        }
        PacketType::Ack | PacketType::BinaryAck => {
            let id = id.ok_or(CodecError::InvalidPayload("ACK without an id"))?;
            validate_array(data)?;
            let args = RawJson::validated(data.trim().to_owned());
            Ok(Packet::Ack {
                namespace,
                id,
                args,
                attachments,
            })
        }
        PacketType::ConnectError => {
            let (message, data) = match parse_optional(data)? {
                Some(Value::String(s)) => (s, None),
                Some(Value::Object(mut o)) => {
                    let message = match o.remove("message") {
                        Some(Value::String(s)) => s,
                        _ => String::from("connection refused"),
                    };
                    (message, o.remove("data"))
                }
                None => (String::from("connection refused"), None),
                Some(_) => {
                    return Err(CodecError::InvalidPayload(
                        "CONNECT_ERROR payload must be a string or an object",
                    ));
                }
            };
            Ok(Packet::ConnectError {
                namespace,
                message,
                data,
            })
        }
    }
}

fn parse_optional(data: &str) -> Result<Option<Value>, CodecError> {
    if data.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(data)
        .map(Some)
        .map_err(|e| CodecError::InvalidJson(e.to_string()))
}

fn validate_array(data: &str) -> Result<(), CodecError> {
    check_depth(data)?;
    let raw: &RawValue =
        serde_json::from_str(data).map_err(|e| CodecError::InvalidJson(e.to_string()))?;
    if raw.get().starts_with('[') {
        Ok(())
    } else {
        Err(CodecError::InvalidPayload("payload must be a JSON array"))
    }
}

/// The first, second and last elements of a JSON array, as slices of the input. Collecting
/// just these (instead of a `Vec`) validates the whole array without allocating.
struct ArrayShape<'a> {
    first: Option<&'a RawValue>,
    second: Option<&'a RawValue>,
    last: Option<&'a RawValue>,
}

impl<'de> Deserialize<'de> for ArrayShape<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ArrayShape<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut shape = ArrayShape {
                    first: None,
                    second: None,
                    last: None,
                };
                while let Some(v) = seq.next_element::<&'de RawValue>()? {
                    if shape.first.is_none() {
                        shape.first = Some(v);
                    } else if shape.second.is_none() {
                        shape.second = Some(v);
                    }
                    shape.last = Some(v);
                }
                Ok(shape)
            }
        }
        d.deserialize_seq(V)
    }
}

/// Splits `["name", a, b]` into the name and the arguments array `[a, b]`.
fn split_event(data: &str) -> Result<(std::borrow::Cow<'_, str>, RawJson), CodecError> {
    check_depth(data)?;
    let shape: ArrayShape<'_> = serde_json::from_str(data).map_err(|e| {
        if e.is_data() {
            CodecError::InvalidPayload("EVENT payload must be a non-empty array")
        } else {
            CodecError::InvalidJson(e.to_string())
        }
    })?;
    let first = shape.first.ok_or(CodecError::InvalidPayload(
        "EVENT payload is an empty array",
    ))?;
    let text = first.get();
    let name = match text.as_bytes().first() {
        // Without escapes the name is the text between the quotes: no allocation.
        Some(b'"') if !text.contains('\\') => std::borrow::Cow::Borrowed(&text[1..text.len() - 1]),
        Some(b'"') => std::borrow::Cow::Owned(
            serde_json::from_str::<String>(text)
                .map_err(|e| CodecError::InvalidJson(e.to_string()))?,
        ),
        // socket.io-parser accepts numeric event names; keep their text.
        Some(b'0'..=b'9' | b'-') => std::borrow::Cow::Borrowed(text),
        _ => return Err(CodecError::InvalidPayload("event name must be a string")),
    };
    let args = match (shape.second, shape.last) {
        (Some(second), Some(last)) => {
            let start = offset_in(data, second.get());
            let end = offset_in(data, last.get()) + last.get().len();
            let inner = &data[start..end];
            let mut s = String::with_capacity(inner.len() + 2);
            s.push('[');
            s.push_str(inner);
            s.push(']');
            s
        }
        _ => String::from("[]"),
    };
    // The text was validated piece by piece above, so this cannot fail; map it anyway rather
    // than trust it.
    // Every element was validated by the pass above; the brackets and commas are ours.
    Ok((name, RawJson::validated(args)))
}

/// Byte offset of `part` inside `whole`; `part` must be a sub-slice of `whole`.
fn offset_in(whole: &str, part: &str) -> usize {
    part.as_ptr() as usize - whole.as_ptr() as usize
}

/// Checks that every placeholder points at an attachment that exists.
fn check_placeholders(data: &str, count: usize) -> Result<(), CodecError> {
    let value: Value =
        serde_json::from_str(data).map_err(|e| CodecError::InvalidJson(e.to_string()))?;
    let mut ok = true;
    visit_placeholders(&value, &mut |num| {
        ok &= num.is_some_and(|n| (n as usize) < count)
    });
    if ok {
        Ok(())
    } else {
        Err(CodecError::BadPlaceholder)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn decode(text: &str) -> Packet {
        Decoder::new().feed_text(text).unwrap().unwrap()
    }

    fn raw(s: &str) -> RawJson {
        RawJson::from_string(s.to_owned()).unwrap()
    }

    fn ns(s: &str) -> Namespace {
        Arc::from(s)
    }

    // Examples from the Socket.IO v5 protocol document.
    #[test]
    fn decodes_connect_packets() {
        assert_eq!(
            decode("0"),
            Packet::Connect {
                namespace: ns("/"),
                data: None
            }
        );
        assert_eq!(
            decode(r#"0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}"#),
            Packet::Connect {
                namespace: ns("/admin"),
                data: Some(json!({"sid": "oSO0OpakMV_3jnilAAAA"}))
            }
        );
        assert_eq!(
            decode(r#"0{"sid":"a","pid":"p1"}"#),
            Packet::Connect {
                namespace: ns("/"),
                data: Some(json!({"sid":"a","pid":"p1"}))
            }
        );
        assert_eq!(
            decode("1/admin,"),
            Packet::Disconnect {
                namespace: ns("/admin")
            }
        );
    }

    /// Found by the socketio fuzzer: a number with more digits than an f64 holds parsed one
    /// unit off in the last place, so it changed when sent back.
    #[test]
    fn a_number_in_a_payload_survives_a_round_trip_exactly() {
        let digits = format!("850{}", "6".repeat(112));
        let first = decode(&format!(r#"0{{"":{digits}}}"#));
        let Packet::Connect { data, .. } = &first else {
            panic!("{first:?}")
        };
        let mut text = String::new();
        encode_connect(&mut text, "/", data.as_ref());
        assert_eq!(decode(&text), first, "{text}");
    }

    #[test]
    fn decodes_connect_error() {
        assert_eq!(
            decode(r#"4{"message":"Not authorized"}"#),
            Packet::ConnectError {
                namespace: ns("/"),
                message: "Not authorized".into(),
                data: None
            }
        );
        assert_eq!(
            decode(r#"4/rooms/r1,{"message":"Authentication failed","data":{"code":401}}"#),
            Packet::ConnectError {
                namespace: ns("/rooms/r1"),
                message: "Authentication failed".into(),
                data: Some(json!({"code": 401}))
            }
        );
        assert!(
            matches!(decode(r#"4"Invalid namespace""#), Packet::ConnectError { message, .. } if message == "Invalid namespace")
        );
    }

    #[test]
    fn decodes_events_and_acks() {
        let Packet::Event(e) = decode(r#"2["foo"]"#) else {
            panic!()
        };
        assert_eq!((&*e.name, e.args.get(), e.id), ("foo", "[]", None));

        let Packet::Event(e) = decode(r#"2/admin,["bar"]"#) else {
            panic!()
        };
        assert_eq!((&*e.namespace, &*e.name), ("/admin", "bar"));

        let Packet::Event(e) = decode(r#"212["foo",{"a":1}, [2, "x"] ]"#) else {
            panic!()
        };
        assert_eq!(e.id, Some(12));
        assert_eq!(e.args.get(), r#"[{"a":1}, [2, "x"]]"#);

        let Packet::Event(e) = decode(r#"2["m\"q\u00e9",1]"#) else {
            panic!()
        };
        assert_eq!(&*e.name, "m\"qé");

        assert_eq!(
            decode(r#"3/admin,13["bar"]"#),
            Packet::Ack {
                namespace: ns("/admin"),
                id: 13,
                args: raw(r#"["bar"]"#),
                attachments: vec![]
            }
        );
    }

    #[test]
    fn decodes_binary_event_with_attachments_at_any_depth() {
        let mut d = Decoder::new();
        let header =
            r#"52-["baz",{"a":{"_placeholder":true,"num":0}},[1,{"_placeholder":true,"num":1}]]"#;
        assert_eq!(d.feed_text(header).unwrap(), None);
        assert!(d.is_waiting_for_attachments());
        assert_eq!(d.feed_binary(vec![1, 2]).unwrap(), None);
        let Some(Packet::Event(e)) = d.feed_binary(vec![3]).unwrap() else {
            panic!()
        };
        assert_eq!(&*e.name, "baz");
        assert_eq!(e.attachments, vec![vec![1, 2], vec![3]]);
        assert!(!d.is_waiting_for_attachments());

        let mut d = Decoder::new();
        assert_eq!(
            d.feed_text(r#"61-/admin,15[{"_placeholder":true,"num":0}]"#)
                .unwrap(),
            None
        );
        let Some(Packet::Ack {
            namespace,
            id,
            attachments,
            ..
        }) = d.feed_binary(vec![9]).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (&*namespace, id, attachments),
            ("/admin", 15, vec![vec![9]])
        );
    }

    #[test]
    fn rejects_malformed_packets() {
        let mut d = Decoder::new();
        assert_eq!(d.feed_text(""), Err(CodecError::Empty));
        assert_eq!(d.feed_text("9"), Err(CodecError::UnknownType('9')));
        assert_eq!(
            d.feed_text(r#"5["a"]"#),
            Err(CodecError::BadAttachmentCount)
        );
        assert_eq!(d.feed_text("51"), Err(CodecError::BadAttachmentCount));
        assert_eq!(
            d.feed_text("599999-[\"a\"]"),
            Err(CodecError::BadAttachmentCount)
        );
        assert_eq!(
            d.feed_text("299999999999999999999999[\"a\"]"),
            Err(CodecError::BadAckId)
        );
        assert!(matches!(
            d.feed_text(r#"2["a""#),
            Err(CodecError::InvalidJson(_))
        ));
        assert!(matches!(
            d.feed_text(r#"2{"a":1}"#),
            Err(CodecError::InvalidPayload(_))
        ));
        assert!(matches!(
            d.feed_text("2[]"),
            Err(CodecError::InvalidPayload(_))
        ));
        assert!(matches!(
            d.feed_text("2[{}]"),
            Err(CodecError::InvalidPayload(_))
        ));
        assert!(matches!(
            d.feed_text("2\"x\""),
            Err(CodecError::InvalidPayload(_))
        ));
        assert!(matches!(
            d.feed_text("3[1]"),
            Err(CodecError::InvalidPayload(_))
        ));
        assert!(matches!(
            d.feed_text("31{}"),
            Err(CodecError::InvalidPayload(_))
        ));
        assert!(matches!(
            d.feed_text("0[1]"),
            Err(CodecError::InvalidPayload(_))
        ));
        assert!(matches!(
            d.feed_text("4 12"),
            Err(CodecError::InvalidPayload(_))
        ));
        assert_eq!(d.feed_binary(vec![1]), Err(CodecError::UnexpectedBinary));
    }

    #[test]
    fn rejects_attachment_mismatches() {
        let mut d = Decoder::new();
        d.feed_text(r#"52-["a",{"_placeholder":true,"num":0}]"#)
            .unwrap();
        d.feed_binary(vec![1]).unwrap();
        // A text packet before the second attachment: the count did not match.
        assert_eq!(
            d.feed_text(r#"2["b"]"#),
            Err(CodecError::AttachmentMismatch {
                expected: 2,
                received: 1
            })
        );
        // The decoder recovers for the next packet.
        assert!(matches!(
            d.feed_text(r#"2["b"]"#),
            Ok(Some(Packet::Event(_)))
        ));

        d.feed_text(r#"51-["a",{"_placeholder":true,"num":3}]"#)
            .unwrap();
        assert_eq!(d.feed_binary(vec![1]), Err(CodecError::BadPlaceholder));
    }

    #[test]
    fn repeated_names_are_shared_and_the_cache_is_bounded() {
        let mut d = Decoder::new();
        let mut name = |text: &str| match d.feed_text(text).unwrap() {
            Some(Packet::Event(e)) => e.name,
            other => panic!("{other:?}"),
        };
        let a = name(r#"2["metric:recorded",1]"#);
        let b = name(r#"2["metric:recorded",2]"#);
        assert!(Arc::ptr_eq(&a, &b));
        for i in 0..1000 {
            assert_eq!(&*name(&format!(r#"2["e{i}"]"#)), format!("e{i}"));
        }
        assert!(d.names.len() <= 256);
    }

    #[test]
    fn encodes_client_packets() {
        let mut s = String::new();
        encode_connect(&mut s, "/", None);
        assert_eq!(s, "0");
        s.clear();
        encode_connect(&mut s, "/admin", Some(&json!({"token":"123"})));
        assert_eq!(s, r#"0/admin,{"token":"123"}"#);
        s.clear();
        encode_disconnect(&mut s, "/admin");
        assert_eq!(s, "1/admin,");
        s.clear();
        encode_event(&mut s, "/", "foo", &raw("[]"), None, 0);
        assert_eq!(s, r#"2["foo"]"#);
        s.clear();
        encode_event(
            &mut s,
            "/admin",
            "bar",
            &raw(r#"[1, {"a":"b"}]"#),
            Some(12),
            0,
        );
        assert_eq!(s, r#"2/admin,12["bar",1, {"a":"b"}]"#);
        s.clear();
        encode_event(
            &mut s,
            "/",
            "baz",
            &raw(r#"[{"_placeholder":true,"num":0}]"#),
            None,
            1,
        );
        assert_eq!(s, r#"51-["baz",{"_placeholder":true,"num":0}]"#);
        s.clear();
        encode_ack(&mut s, "/admin", 13, &raw(r#"["bar"]"#), 0);
        assert_eq!(s, r#"3/admin,13["bar"]"#);
    }

    #[test]
    fn encoded_events_decode_back() {
        let mut s = String::new();
        encode_event(
            &mut s,
            "/rooms/r1",
            "scores:updated",
            &raw(r#"[{"home":2},"x"]"#),
            Some(7),
            0,
        );
        let Packet::Event(e) = decode(&s) else {
            panic!()
        };
        assert_eq!(&*e.namespace, "/rooms/r1");
        assert_eq!(&*e.name, "scores:updated");
        assert_eq!(e.id, Some(7));
        assert_eq!(e.args.get(), r#"[{"home":2},"x"]"#);
    }
}
