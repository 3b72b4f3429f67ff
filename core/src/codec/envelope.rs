//! The JSON-envelope protocol: one JSON object per WebSocket text frame,
//! `{"id","type","timestamp","data","metadata"?}`, responses adding `success` and `error`.
//!
//! Control messages (`auth_response`, `ping`/`pong`, `error`, `rate_limit_exceeded`) are
//! recognised by their `type` and may omit `id` and `timestamp`; every other message is an app
//! event and must carry all three, typed, or it is refused. `data` stays raw JSON text, as with
//! Socket.IO, so the app deserializes it once into its own types.
//!
//! What [`decode`] returns borrows the frame's text: a stream of events costs no copy of a
//! name, id or `data` here (strings with escapes are the exception: they are unescaped into
//! a copy).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Map, Value, value::RawValue};

use super::{CodecError, json::check_depth};

/// What one inbound frame says; its text is borrowed from the frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound<'a> {
    /// The answer to the `auth` message.
    AuthResponse {
        /// Whether the server accepted the credentials.
        success: bool,
        /// Why not, when it refused.
        error: Option<ErrorBody>,
    },
    /// The server checks the link; answer with a pong carrying `data`.
    Ping {
        /// `data` as raw JSON.
        data: &'a str,
    },
    /// The answer to our ping.
    Pong,
    /// A response to a request we sent with `metadata.requestId`.
    Response {
        /// The request id we sent, echoed.
        request_id: Cow<'a, str>,
        /// `success`, true when absent.
        success: bool,
        /// `data` as raw JSON.
        data: &'a str,
        /// Why it failed, when it did.
        error: Option<ErrorBody>,
    },
    /// `{"type":"error","data":{"code","message","details"?,"timestamp"}}`.
    Error {
        /// The error's code and message.
        body: ErrorBody,
        /// The request it answers, when the server said.
        request_id: Option<Cow<'a, str>>,
        /// `data` as raw JSON.
        data: &'a str,
    },
    /// An app event (also `rate_limit_exceeded` and other server notices with an id).
    Event {
        /// The envelope id: the server's unique id for this message, used for de-duplication.
        id: Option<Cow<'a, str>>,
        /// The envelope type: the event name.
        kind: Cow<'a, str>,
        /// `data` as raw JSON (`null` when absent).
        data: &'a str,
    },
}

/// An error's code and message, such as `AUTHENTICATION_FAILED` / "Invalid token".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    /// The machine-readable code.
    pub code: String,
    /// The human-readable message.
    pub message: String,
}

/// Envelope types that are protocol control, not app events.
pub const AUTH_RESPONSE: &str = "auth_response";
/// The server's error message type.
pub const ERROR: &str = "error";
/// The server's rate limit notice: delivered to the app and pauses the outbox.
pub const RATE_LIMIT_EXCEEDED: &str = "rate_limit_exceeded";

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    #[serde(rename = "type", default, borrow)]
    kind: Option<&'a RawValue>,
    #[serde(default, borrow)]
    timestamp: Option<&'a RawValue>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
    #[serde(default, borrow)]
    metadata: Option<&'a RawValue>,
    #[serde(default, borrow)]
    success: Option<&'a RawValue>,
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Metadata<'a> {
    #[serde(rename = "requestId", default, borrow)]
    request_id: Option<&'a RawValue>,
}

/// Decodes and validates one text frame.
pub fn decode(text: &str) -> Result<Inbound<'_>, CodecError> {
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err(CodecError::Empty);
    }
    check_depth(text)?;
    // Serde would also read a struct from a JSON array; an envelope is an object.
    if !trimmed.starts_with('{') {
        return Err(CodecError::InvalidPayload(
            "an envelope must be a JSON object",
        ));
    }
    let w: Wire<'_> = serde_json::from_str(text).map_err(|e| {
        if e.is_data() {
            CodecError::InvalidPayload("an envelope field has the wrong type")
        } else {
            CodecError::InvalidJson(e.to_string())
        }
    })?;
    let kind = match w.kind {
        Some(k) => string(k).ok_or(CodecError::InvalidPayload("type must be a string"))?,
        None => return Err(CodecError::InvalidPayload("type is missing")),
    };
    if kind.is_empty() {
        return Err(CodecError::InvalidPayload("type is empty"));
    }
    let data = w.data.map_or("null", |d| d.get());
    let success = match w.success {
        None => None,
        Some(s) => Some(
            serde_json::from_str::<bool>(s.get())
                .map_err(|_| CodecError::InvalidPayload("success must be a boolean"))?,
        ),
    };
    let error = w.error.map(error_body).transpose()?;
    let request_id = match w.metadata {
        None => None,
        Some(m) if m.get() == "null" => None,
        Some(m) => {
            let m: Metadata<'_> = serde_json::from_str(m.get())
                .map_err(|_| CodecError::InvalidPayload("metadata must be an object"))?;
            m.request_id.and_then(id_text)
        }
    };
    match &*kind {
        AUTH_RESPONSE => {
            return Ok(Inbound::AuthResponse {
                success: success.ok_or(CodecError::InvalidPayload(
                    "auth_response needs a boolean success",
                ))?,
                error,
            });
        }
        "ping" => return Ok(Inbound::Ping { data }),
        "pong" => return Ok(Inbound::Pong),
        ERROR => {
            let body = match error {
                Some(b) => b,
                None => w
                    .data
                    .map(error_body)
                    .transpose()?
                    .ok_or(CodecError::InvalidPayload("error without a code"))?,
            };
            return Ok(Inbound::Error {
                body,
                request_id,
                data,
            });
        }
        _ => {}
    }
    if let Some(request_id) = request_id
        && (success.is_some() || error.is_some())
    {
        return Ok(Inbound::Response {
            request_id,
            success: success.unwrap_or(error.is_none()),
            data,
            error,
        });
    }
    let id = match w.id {
        Some(i) => Some(id_text(i).ok_or(CodecError::InvalidPayload("id must be a string"))?),
        None if kind == RATE_LIMIT_EXCEEDED => None,
        None => return Err(CodecError::InvalidPayload("id is missing")),
    };
    if kind != RATE_LIMIT_EXCEEDED {
        let ts = w
            .timestamp
            .ok_or(CodecError::InvalidPayload("timestamp is missing"))?;
        let ts = string(ts).ok_or(CodecError::InvalidPayload("timestamp must be a string"))?;
        if crate::time::parse_rfc3339(&ts).is_none() {
            return Err(CodecError::InvalidPayload("timestamp is not ISO-8601"));
        }
    }
    Ok(Inbound::Event { id, kind, data })
}

/// A JSON string's contents: the text between the quotes when it holds no escape (the
/// parser has checked it: no raw control characters, quotes only escaped), else unescaped.
fn string(v: &RawValue) -> Option<Cow<'_, str>> {
    let t = v.get();
    let inner = t.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        serde_json::from_str::<String>(t).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(inner))
    }
}

/// An id: a non-empty string, or an integer (some servers number their messages).
fn id_text(v: &RawValue) -> Option<Cow<'_, str>> {
    let t = v.get();
    let id = if t.starts_with('"') {
        string(v)?
    } else if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        Cow::Borrowed(t)
    } else {
        return None;
    };
    (!id.is_empty()).then_some(id)
}

/// `{"code","message"}`, or a bare string taken as the message.
fn error_body(v: &RawValue) -> Result<ErrorBody, CodecError> {
    if let Some(message) = string(v) {
        return Ok(ErrorBody {
            code: "ERROR".into(),
            message: message.into_owned(),
        });
    }
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        code: Option<Value>,
        #[serde(default)]
        message: Option<Value>,
    }
    let b: Body = serde_json::from_str(v.get())
        .map_err(|_| CodecError::InvalidPayload("error must be an object or a string"))?;
    let text = |v: Option<Value>| match v {
        Some(Value::String(s)) => s,
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    Ok(ErrorBody {
        code: text(b.code),
        message: text(b.message),
    })
}

/// The `data` of an outbound message from Socket.IO-style arguments (a JSON array text): the
/// sole argument, `null` for none, the whole array for several.
pub fn data_of(args: &str) -> Result<&str, CodecError> {
    let list: Vec<&RawValue> =
        serde_json::from_str(args).map_err(|e| CodecError::InvalidJson(e.to_string()))?;
    Ok(match list.as_slice() {
        [] => "null",
        [one] => one.get(),
        _ => args,
    })
}

/// Appends `{"id","type","timestamp","data"[,"metadata":{"requestId"}]}` to `out`; `data` must
/// be valid JSON text.
pub fn encode_message(
    out: &mut String,
    id: &str,
    kind: &str,
    timestamp: &str,
    data: &str,
    request_id: Option<u64>,
) {
    out.push_str("{\"id\":");
    push_string(out, id);
    out.push_str(",\"type\":");
    push_string(out, kind);
    out.push_str(",\"timestamp\":");
    push_string(out, timestamp);
    out.push_str(",\"data\":");
    out.push_str(data);
    if let Some(r) = request_id {
        out.push_str(",\"metadata\":{\"requestId\":\"");
        out.push_str(&r.to_string());
        out.push_str("\"}");
    }
    out.push('}');
}

/// The `auth` message: `{"type":"auth","id","timestamp", ...credentials}` where the
/// credentials object (`token`, `userId`, `sessionId`) is spread at the top level.
pub fn encode_auth(id: &str, timestamp: &str, credentials: Option<&Map<String, Value>>) -> String {
    let mut out = String::from("{\"type\":\"auth\",\"id\":");
    push_string(&mut out, id);
    out.push_str(",\"timestamp\":");
    push_string(&mut out, timestamp);
    for (k, v) in credentials.into_iter().flatten() {
        if matches!(k.as_str(), "type" | "id" | "timestamp") {
            continue;
        }
        out.push(',');
        push_string(&mut out, k);
        out.push(':');
        out.push_str(&v.to_string());
    }
    out.push('}');
    out
}

fn push_string(out: &mut String, s: &str) {
    if s.bytes()
        .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f)
    {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&Value::from(s).to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: &str = "2026-11-22T18:05:00.123Z";

    #[test]
    fn decodes_an_app_event_with_raw_data() {
        let text = format!(
            r#"{{"id":"m1","type":"metric:recorded","timestamp":"{TS}","data":{{"bpm":142}}}}"#
        );
        let m = decode(&text).unwrap();
        assert_eq!(
            m,
            Inbound::Event {
                id: Some("m1".into()),
                kind: "metric:recorded".into(),
                data: r#"{"bpm":142}"#
            }
        );
    }

    /// An event's id, type and data, or a panic.
    fn event_parts(text: &str) -> (Cow<'_, str>, Cow<'_, str>, &str) {
        match decode(text).unwrap() {
            Inbound::Event {
                id: Some(id),
                kind,
                data,
            } => (id, kind, data),
            other => panic!("not an event with an id: {other:?}"),
        }
    }

    #[test]
    fn names_and_ids_are_borrowed_from_the_frame_unless_escaped() {
        let plain = format!(r#"{{"id":"m1","type":"a:b","timestamp":"{TS}","data":null}}"#);
        let (id, kind, data) = event_parts(&plain);
        assert!(matches!(
            (&id, &kind),
            (Cow::Borrowed("m1"), Cow::Borrowed("a:b"))
        ));
        assert_eq!(data, "null");
        let escaped = format!(r#"{{"id":"m\"1","type":"a\u0041","timestamp":"{TS}"}}"#);
        let (id, kind, data) = event_parts(&escaped);
        assert!(matches!((&id, &kind), (Cow::Owned(_), Cow::Owned(_))));
        assert_eq!((&*id, &*kind, data), ("m\"1", "aA", "null"));
        // An escape that is no character (a lone surrogate) is refused, not passed on.
        let surrogate = format!(r#"{{"id":"\ud800","type":"x","timestamp":"{TS}"}}"#);
        assert!(
            decode(&surrogate)
                .unwrap_err()
                .to_string()
                .contains("id must")
        );
        // A number is an id too, as written.
        let numbered = format!(r#"{{"id":17,"type":"x","timestamp":"{TS}"}}"#);
        assert!(matches!(
            decode(&numbered).unwrap(),
            Inbound::Event {
                id: Some(Cow::Borrowed("17")),
                ..
            }
        ));
    }

    #[test]
    fn refuses_events_without_typed_id_type_and_timestamp() {
        let cases = [
            (
                r#"{"type":"x","timestamp":"2026-01-01T00:00:00Z"}"#,
                "id is missing",
            ),
            (
                r#"{"id":{},"type":"x","timestamp":"2026-01-01T00:00:00Z"}"#,
                "id must",
            ),
            (
                r#"{"id":"a","timestamp":"2026-01-01T00:00:00Z"}"#,
                "type is missing",
            ),
            (r#"{"id":"a","type":7}"#, "type must"),
            (r#"{"id":"a","type":"x"}"#, "timestamp is missing"),
            (r#"{"id":"a","type":"x","timestamp":5}"#, "timestamp must"),
            (
                r#"{"id":"a","type":"x","timestamp":"yesterday"}"#,
                "ISO-8601",
            ),
            (r#"[1,2]"#, "JSON object"),
            (r#"{"id":"a","#, "invalid JSON"),
            (
                r#"{"id":"a","type":"x","timestamp":"2026-01-01T00:00:00Z","success":"yes"}"#,
                "boolean",
            ),
        ];
        for (text, why) in cases {
            let err = decode(text).unwrap_err().to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
        assert_eq!(decode("  "), Err(CodecError::Empty));
    }

    #[test]
    fn decodes_control_messages() {
        assert_eq!(
            decode(r#"{"type":"auth_response","success":true,"userId":"u1"}"#).unwrap(),
            Inbound::AuthResponse {
                success: true,
                error: None
            }
        );
        assert_eq!(
            decode(r#"{"type":"auth_response","success":false,"error":{"code":"AUTHENTICATION_FAILED","message":"Invalid token"}}"#).unwrap(),
            Inbound::AuthResponse {
                success: false,
                error: Some(ErrorBody {
                    code: "AUTHENTICATION_FAILED".into(),
                    message: "Invalid token".into()
                })
            }
        );
        assert_eq!(decode(r#"{"type":"pong"}"#).unwrap(), Inbound::Pong);
        assert_eq!(
            decode(r#"{"type":"ping","data":{"n":1}}"#).unwrap(),
            Inbound::Ping { data: r#"{"n":1}"# }
        );
        let e = decode(r#"{"type":"error","data":{"code":"SERVICE_UNAVAILABLE","message":"down","timestamp":"x"}}"#).unwrap();
        assert!(
            matches!(e, Inbound::Error { ref body, request_id: None, .. } if body.code == "SERVICE_UNAVAILABLE")
        );
        let r = decode(r#"{"type":"rate_limit_exceeded","data":{"limit":10,"window":1000,"resetTime":"2026-01-01T00:00:01Z"}}"#).unwrap();
        assert!(
            matches!(r, Inbound::Event { id: None, ref kind, .. } if kind == RATE_LIMIT_EXCEEDED)
        );
    }

    #[test]
    fn decodes_responses_by_request_id() {
        let text = format!(
            r#"{{"id":"r","type":"quiz:answer_submit","timestamp":"{TS}","success":true,"data":[1],"metadata":{{"requestId":"42"}}}}"#
        );
        let r = decode(&text).unwrap();
        assert_eq!(
            r,
            Inbound::Response {
                request_id: "42".into(),
                success: true,
                data: "[1]",
                error: None
            }
        );
        let r = decode(r#"{"type":"x","success":false,"error":{"code":"INVALID_MESSAGE_FORMAT","message":"no"},"metadata":{"requestId":7}}"#).unwrap();
        assert!(
            matches!(r, Inbound::Response { success: false, ref request_id, .. } if request_id == "7")
        );
    }

    #[test]
    fn encodes_messages_the_decoder_reads_back() {
        let mut out = String::new();
        encode_message(
            &mut out,
            "k\"1",
            "session:feedback",
            TS,
            r#"{"a":1}"#,
            Some(9),
        );
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["id"], "k\"1");
        assert_eq!(v["metadata"]["requestId"], "9");
        assert_eq!(v["data"]["a"], 1);
        let auth: Value = serde_json::from_str(&encode_auth(
            "a1",
            TS,
            serde_json::json!({"token":"T","userId":"u","type":"evil"}).as_object(),
        ))
        .unwrap();
        assert_eq!(auth["type"], "auth");
        assert_eq!(auth["token"], "T");
        assert_eq!(auth["userId"], "u");
    }

    #[test]
    fn data_is_the_sole_argument() {
        assert_eq!(data_of("[]").unwrap(), "null");
        assert_eq!(data_of(r#"[{"a":1}]"#).unwrap(), r#"{"a":1}"#);
        assert_eq!(data_of("[1,2]").unwrap(), "[1,2]");
        assert!(data_of("{").is_err());
    }
}
