//! JSON envelopes over plain WebSocket: the client authenticates with an `auth` message,
//! pings on its own schedule, correlates answers by `metadata.requestId`, and the envelope
//! `id` of each inbound message is its de-duplication key.

use std::sync::Arc;

use serde_json::Value;
use tracing::debug;

use super::{
    input::{EventData, HeartbeatMode, Inbound, Input, Rejection},
    signals::{ERROR_EVENT, Signals},
};
use crate::{
    args::AckReply,
    codec::{
        CodecError,
        envelope::{self, ErrorBody},
        intern::intern,
        json::RawJson,
    },
    config::EnvelopeOptions,
    time::{format_rfc3339, now_ms},
    transport::{Frame, Utf8Bytes},
};

/// The only namespace: the envelope protocol has none, so everything is on `/`.
const ROOT: &str = "/";

/// Event names kept shared at most: a server that invents a name per message does not grow
/// the cache.
const NAMES: usize = 256;

/// The error code that means "these credentials are refused".
const AUTHENTICATION_FAILED: &str = "AUTHENTICATION_FAILED";

/// Socket.IO-style arguments from an envelope's `data`: `[data]`, sized once.
fn args_of(data: &str) -> String {
    let mut args = String::with_capacity(data.len() + 2);
    args.push('[');
    args.push_str(data);
    args.push(']');
    args
}

/// One WebSocket connection's envelope state.
#[derive(Debug)]
pub(crate) struct Envelope {
    options: EnvelopeOptions,
    max_payload: usize,
    signals: Signals,
    /// Random per connection, so ids of volatile messages differ across runs and clients.
    id_prefix: String,
    next_id: u64,
    root: Arc<str>,
    error_name: Arc<str>,
    /// Event names seen, shared by every event that carries one (see `intern`).
    names: Vec<Arc<str>>,
    /// Auth messages sent and not yet answered: each gets exactly one `auth_response`, so a
    /// late answer to an earlier one is not taken for the answer to the latest.
    auths_unanswered: u32,
    /// The server accepted the latest auth.
    authenticated: bool,
}

impl Envelope {
    pub(crate) fn new(options: EnvelopeOptions, max_payload: usize, signals: Signals) -> Self {
        Self {
            options,
            max_payload,
            signals: signals.for_envelope(),
            id_prefix: format!("{:016x}", fastrand::u64(..)),
            next_id: 0,
            root: Arc::from(ROOT),
            error_name: Arc::from(ERROR_EVENT),
            names: Vec::new(),
            auths_unanswered: 0,
            authenticated: false,
        }
    }

    fn fresh_id(&mut self) -> String {
        self.next_id += 1;
        format!("{}-{}", self.id_prefix, self.next_id)
    }

    pub(super) fn decode(&mut self, frame: Frame, out: &mut Vec<Frame>) -> Input {
        let Frame::Text(text) = frame else {
            return Input::Invalid(CodecError::UnexpectedFrame(
                "binary frame on the envelope protocol",
            ));
        };
        let inbound = match envelope::decode(&text) {
            Ok(m) => m,
            Err(e) => return Input::Invalid(e),
        };
        match inbound {
            envelope::Inbound::AuthResponse { success, error } => {
                if self.auths_unanswered == 0 {
                    debug!("auth_response without an auth message; ignored");
                    return Input::Nothing;
                }
                self.auths_unanswered -= 1;
                if self.auths_unanswered > 0 {
                    return Input::Nothing; // The answer to an earlier auth message.
                }
                self.authenticated = success;
                if success {
                    Input::Joined {
                        namespace: self.root.clone(),
                        resumable: None,
                    }
                } else {
                    Input::Refused {
                        namespace: self.root.clone(),
                        code: error
                            .as_ref()
                            .map_or_else(|| AUTHENTICATION_FAILED.to_owned(), |e| e.code.clone()),
                        message: describe(error.as_ref(), "authentication failed"),
                    }
                }
            }
            envelope::Inbound::Ping { data } => {
                out.push(self.message("pong", data, None));
                Input::Nothing
            }
            envelope::Inbound::Pong => Input::Alive,
            envelope::Inbound::Response {
                request_id,
                success,
                data,
                error,
            } => match request_id.parse::<u64>() {
                Ok(id) => Input::Ack {
                    id,
                    reply: if success {
                        Ok(AckReply {
                            args: RawJson::validated(args_of(data)),
                            attachments: Vec::new(),
                        })
                    } else {
                        Err(rejection(&self.signals, error, data))
                    },
                },
                Err(_) => {
                    debug!(
                        request_id = &*request_id,
                        "response to a request this client did not send"
                    );
                    Input::Nothing
                }
            },
            envelope::Inbound::Error {
                body,
                request_id,
                data,
            } => {
                if body.code == AUTHENTICATION_FAILED {
                    // While an auth message is being judged, or after a refusal, the
                    // `auth_response` is the verdict and this is the same news again. After
                    // acceptance it means the credentials were revoked mid-session.
                    if !self.authenticated || self.auths_unanswered > 0 {
                        return Input::Nothing;
                    }
                    self.authenticated = false;
                    return Input::Refused {
                        namespace: self.root.clone(),
                        message: describe(Some(&body), "authentication failed"),
                        code: body.code,
                    };
                }
                if let Some(id) = request_id.and_then(|r| r.parse::<u64>().ok()) {
                    return Input::Ack {
                        id,
                        reply: Err(rejection(&self.signals, Some(body), data)),
                    };
                }
                let args = args_of(data);
                let mut event = self.inbound(self.error_name.clone(), data, None);
                event.signal = Some(self.signals.error(body.code, body.message, &args));
                Input::Event(event)
            }
            envelope::Inbound::Event { id, kind, data } => {
                let name = intern(&mut self.names, &kind, NAMES);
                Input::Event(self.inbound(name, data, id.map(|id| Arc::from(&*id))))
            }
        }
    }

    fn inbound(&self, name: Arc<str>, data: &str, id: Option<Arc<str>>) -> Inbound {
        let args = RawJson::validated(args_of(data));
        let signal = self.signals.of(&name, args.get());
        Inbound {
            event: EventData {
                namespace: self.root.clone(),
                name,
                args,
                attachments: Vec::new(),
            },
            ack: None,
            id,
            resumes: false,
            signal,
        }
    }

    fn message(&mut self, kind: &str, data: &str, request_id: Option<u64>) -> Frame {
        let id = self.fresh_id();
        let mut out = String::with_capacity(96 + kind.len() + data.len());
        let ts = format_rfc3339(now_ms());
        envelope::encode_message(&mut out, &id, kind, &ts, data, request_id);
        Frame::Text(Utf8Bytes::from(out))
    }

    /// Writes an event; a durable emit's idempotency `key` is its envelope id, so a resend
    /// carries the same id and the data stays as the app wrote it.
    pub(super) fn push_event(
        &mut self,
        out: &mut Vec<Frame>,
        event: &EventData,
        ack: Option<u64>,
        key: Option<&str>,
    ) -> Result<(), CodecError> {
        if !event.attachments.is_empty() {
            return Err(CodecError::InvalidPayload(
                "binary attachments need the Socket.IO protocol",
            ));
        }
        let data = envelope::data_of(event.args.get())?;
        let id = match key {
            Some(k) => k.to_owned(),
            None => self.fresh_id(),
        };
        let mut text = String::with_capacity(96 + event.name.len() + data.len());
        let ts = format_rfc3339(now_ms());
        envelope::encode_message(&mut text, &id, &event.name, &ts, data, ack);
        if text.len() > self.max_payload {
            return Err(CodecError::TooLarge {
                len: text.len(),
                max: self.max_payload,
            });
        }
        out.push(Frame::Text(Utf8Bytes::from(text)));
        Ok(())
    }

    pub(super) fn auth(&mut self, namespace: &str, auth: Option<&Value>) -> Result<Frame, String> {
        if namespace != ROOT {
            return Err("the envelope protocol has no namespaces".into());
        }
        self.auths_unanswered += 1;
        let id = self.fresh_id();
        let ts = format_rfc3339(now_ms());
        let text = envelope::encode_auth(&id, &ts, auth.and_then(Value::as_object));
        Ok(Frame::Text(Utf8Bytes::from(text)))
    }

    pub(super) fn ping(&mut self) -> Frame {
        self.message("ping", "null", None)
    }

    pub(super) fn heartbeat(&self) -> HeartbeatMode {
        HeartbeatMode::ClientPings {
            interval: self.options.ping_interval,
            timeout: self.options.ping_timeout,
        }
    }
}

fn describe(error: Option<&ErrorBody>, fallback: &str) -> String {
    match error {
        Some(e) if !e.message.is_empty() => e.message.clone(),
        Some(e) if !e.code.is_empty() => e.code.clone(),
        _ => fallback.to_owned(),
    }
}

fn rejection(signals: &Signals, error: Option<ErrorBody>, data: &str) -> Rejection {
    let body = error.unwrap_or(ErrorBody {
        code: "ERROR".into(),
        message: "the server reported a failure".into(),
    });
    Rejection {
        then: signals.after_refusal(&body.code, &args_of(data)),
        code: body.code,
        message: body.message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::input::{Signal, Then};

    fn text(s: &str) -> Frame {
        Frame::Text(Utf8Bytes::from(s.to_owned()))
    }

    fn envelope() -> Envelope {
        let config = crate::config::ClientConfig::new("ws://localhost:1/ws").unwrap();
        Envelope::new(EnvelopeOptions::default(), 10_000, Signals::new(&config))
    }

    const TS: &str = "2026-11-22T18:05:00.123Z";

    fn event_name(input: &Input) -> Arc<str> {
        match input {
            Input::Event(inbound) => inbound.event.name.clone(),
            other => panic!("not an event: {other:?}"),
        }
    }

    #[test]
    fn event_names_are_shared_up_to_the_caches_bound() {
        let mut e = envelope();
        let mut event = |id: usize, kind: &str| {
            let frame = format!(r#"{{"id":"{id}","type":"{kind}","timestamp":"{TS}"}}"#);
            event_name(&e.decode(text(&frame), &mut Vec::new()))
        };
        let (a, b) = (event(1, "metric:recorded"), event(2, "metric:recorded"));
        assert_eq!(&*a, "metric:recorded");
        assert!(Arc::ptr_eq(&a, &b), "one copy of a repeated name");
        for i in 1..NAMES {
            event(10 + i, &format!("n{i}"));
        }
        // The cache is full: a new name is still delivered, in a copy of its own.
        let (c, d) = (event(1000, "late"), event(1001, "late"));
        assert_eq!(&*c, "late");
        assert!(!Arc::ptr_eq(&c, &d));
    }

    #[test]
    fn refusals_carry_the_code_and_revocation_counts_only_after_acceptance() {
        let mut e = envelope();
        let mut out = Vec::new();
        let _ = e.auth("/", None).unwrap();
        let refused = e.decode(
            text(r#"{"type":"auth_response","success":false,"error":{"code":"AUTHENTICATION_FAILED","message":"bad token"}}"#),
            &mut out,
        );
        assert!(
            matches!(&refused, Input::Refused { code, message, .. } if code == AUTHENTICATION_FAILED && message == "bad token"),
            "{refused:?}"
        );
        let late = format!(
            r#"{{"id":"x","type":"error","timestamp":"{TS}","data":{{"code":"AUTHENTICATION_FAILED","message":"m"}}}}"#
        );
        assert!(matches!(e.decode(text(&late), &mut out), Input::Nothing));
        let _ = e.auth("/", None).unwrap();
        let ok = e.decode(text(r#"{"type":"auth_response","success":true}"#), &mut out);
        assert!(matches!(ok, Input::Joined { .. }));
        assert!(matches!(
            e.decode(text(&late), &mut out),
            Input::Refused { .. }
        ));
    }

    #[test]
    fn rate_limits_become_signals_and_retries() {
        let mut e = envelope();
        let mut out = Vec::new();
        let limited = r#"{"type":"rate_limit_exceeded","data":{"retryAfter":2}}"#;
        match e.decode(text(limited), &mut out) {
            Input::Event(i) => assert_eq!(
                i.signal,
                Some(Signal::SlowDown(Some(std::time::Duration::from_secs(2))))
            ),
            other => panic!("{other:?}"),
        }
        let refused = format!(
            r#"{{"id":"r","type":"response","timestamp":"{TS}","data":null,"metadata":{{"requestId":"5"}},"success":false,"error":{{"code":"RATE_LIMIT_EXCEEDED","message":"slow"}}}}"#
        );
        match e.decode(text(&refused), &mut out) {
            Input::Ack {
                id: 5,
                reply: Err(r),
            } => {
                assert!(matches!(r.then, Then::Retry { pause: Some(_) }), "{r:?}")
            }
            other => panic!("{other:?}"),
        }
        let unavailable = format!(
            r#"{{"id":"u","type":"error","timestamp":"{TS}","data":{{"code":"SERVICE_UNAVAILABLE","message":"later"}}}}"#
        );
        match e.decode(text(&unavailable), &mut out) {
            Input::Event(i) => assert!(
                matches!(
                    i.signal,
                    Some(Signal::Error {
                        action: crate::server_signals::ErrorAction::Reconnect,
                        ..
                    })
                ),
                "{i:?}"
            ),
            other => panic!("{other:?}"),
        }
    }
}
