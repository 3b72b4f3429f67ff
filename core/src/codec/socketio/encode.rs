//! Encoding the packets a client sends, and the placeholder objects that stand for binary
//! attachments in a packet's JSON.

use serde_json::Value;

use crate::codec::json::{RawJson, array_inner, push_quoted};

/// Calls `f` with the `num` of every `{"_placeholder": true, ...}` object at any depth.
pub fn visit_placeholders(value: &Value, f: &mut impl FnMut(Option<u64>)) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| visit_placeholders(v, f)),
        Value::Object(map) => {
            if map.get("_placeholder") == Some(&Value::Bool(true)) {
                f(map.get("num").and_then(Value::as_u64));
            } else {
                map.values().for_each(|v| visit_placeholders(v, f));
            }
        }
        _ => {}
    }
}

/// The placeholder that stands for attachment `num` in a binary packet's JSON.
pub fn placeholder(num: usize) -> Value {
    serde_json::json!({ "_placeholder": true, "num": num })
}

fn push_header(out: &mut String, kind: u8, attachments: usize, namespace: &str, id: Option<u64>) {
    use std::fmt::Write;
    out.push(kind as char);
    if attachments > 0 {
        let _ = write!(out, "{attachments}-");
    }
    if namespace != "/" {
        out.push_str(namespace);
        out.push(',');
    }
    if let Some(id) = id {
        let _ = write!(out, "{id}");
    }
}

/// Appends a CONNECT packet for `namespace`, with the auth object when there is one.
pub fn encode_connect(out: &mut String, namespace: &str, auth: Option<&Value>) {
    push_header(out, b'0', 0, namespace, None);
    if let Some(auth) = auth {
        out.push_str(&auth.to_string());
    }
}

/// Appends a DISCONNECT packet for `namespace`.
pub fn encode_disconnect(out: &mut String, namespace: &str) {
    push_header(out, b'1', 0, namespace, None);
}

/// Appends an EVENT (or BINARY_EVENT when `attachments > 0`) packet.
///
/// `args` must be a JSON array; its elements follow the event name.
pub fn encode_event(
    out: &mut String,
    namespace: &str,
    name: &str,
    args: &RawJson,
    id: Option<u64>,
    attachments: usize,
) {
    encode_event_with(out, namespace, name, id, attachments, |out| {
        out.push_str(array_inner(args.get()));
    });
}

/// [`encode_event`] with the arguments' elements (without the array's brackets) appended by
/// `args`: how the outbox adds an entry's idempotency key on the way, with no copy of the
/// arguments of its own.
pub fn encode_event_with(
    out: &mut String,
    namespace: &str,
    name: &str,
    id: Option<u64>,
    attachments: usize,
    args: impl FnOnce(&mut String),
) {
    let kind = if attachments > 0 { b'5' } else { b'2' };
    push_header(out, kind, attachments, namespace, id);
    out.push('[');
    push_quoted(out, name);
    out.push(',');
    let before = out.len();
    args(out);
    if out.len() == before {
        out.pop();
    }
    out.push(']');
}

/// Appends an ACK (or BINARY_ACK) packet answering the server's event `id`.
pub fn encode_ack(out: &mut String, namespace: &str, id: u64, args: &RawJson, attachments: usize) {
    let kind = if attachments > 0 { b'6' } else { b'3' };
    push_header(out, kind, attachments, namespace, Some(id));
    out.push_str(args.get());
}
