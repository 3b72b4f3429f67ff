//! JSON envelopes over plain WebSocket: the client authenticates with an `auth` message,
//! pings on its own schedule, correlates answers by `metadata.requestId`, and the envelope
//! `id` of each inbound message is its de-duplication key.

use std::sync::Arc;

use serde_json::Value;
use tracing::debug;

use super::{HeartbeatMode, Input, Rejection};
use crate::{
    codec::{
        CodecError,
        envelope::{self, ErrorBody, Inbound},
        socketio::{EventPacket, RawJson},
    },
    config::EnvelopeOptions,
    event::AckReply,
    store::now_ms,
    transport::{Frame, Utf8Bytes},
};

/// The only namespace: the envelope protocol has none, so everything is on `/`.
const ROOT: &str = "/";

/// The auth error code that means "these credentials are refused".
const AUTHENTICATION_FAILED: &str = "AUTHENTICATION_FAILED";

/// One WebSocket connection's envelope state.
#[derive(Debug)]
pub(crate) struct Envelope {
    options: EnvelopeOptions,
    max_payload: usize,
    /// Random per connection, so ids of volatile messages differ across runs and clients.
    id_prefix: String,
    next_id: u64,
    root: Arc<str>,
    error_name: Arc<str>,
    /// Auth messages sent and not yet answered: each gets exactly one `auth_response`, so a
    /// late answer to an earlier one is not taken for the answer to the latest.
    auths_unanswered: u32,
    /// The server accepted the latest auth.
    authenticated: bool,
}

impl Envelope {
    pub(crate) fn new(options: EnvelopeOptions, max_payload: usize) -> Self {
        Self {
            options,
            max_payload,
            id_prefix: format!("{:016x}", fastrand::u64(..)),
            next_id: 0,
            root: Arc::from(ROOT),
            error_name: Arc::from(envelope::ERROR),
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
            Inbound::AuthResponse { success, error } => {
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
                        data: None,
                    }
                } else {
                    Input::Refused {
                        namespace: self.root.clone(),
                        message: describe(error.as_ref(), "authentication failed"),
                    }
                }
            }
            Inbound::Ping { data } => {
                out.push(self.message("pong", &data, None));
                Input::Nothing
            }
            Inbound::Pong => Input::Alive,
            Inbound::Response {
                request_id,
                success,
                data,
                error,
            } => match request_id.parse::<u64>() {
                Ok(id) => Input::Ack {
                    id,
                    reply: if success {
                        Ok(AckReply {
                            args: RawJson::validated(format!("[{data}]")),
                            attachments: Vec::new(),
                        })
                    } else {
                        Err(rejection(error, data))
                    },
                },
                Err(_) => {
                    debug!(request_id, "response to a request this client did not send");
                    Input::Nothing
                }
            },
            Inbound::Error {
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
                    };
                }
                if let Some(id) = request_id.and_then(|r| r.parse::<u64>().ok()) {
                    return Input::Ack {
                        id,
                        reply: Err(rejection(Some(body), data)),
                    };
                }
                Input::ServerError {
                    code: body.code,
                    message: body.message,
                    event: self.event(self.error_name.clone(), &data),
                }
            }
            Inbound::Event { id, kind, data } => Input::Event {
                packet: self.event(Arc::from(kind), &data),
                id,
            },
        }
    }

    fn event(&self, name: Arc<str>, data: &str) -> EventPacket {
        EventPacket {
            namespace: self.root.clone(),
            id: None,
            name,
            args: RawJson::validated(format!("[{data}]")),
            attachments: Vec::new(),
        }
    }

    fn message(&mut self, kind: &str, data: &str, request_id: Option<u64>) -> Frame {
        let id = self.fresh_id();
        let mut out = String::with_capacity(96 + kind.len() + data.len());
        let ts = envelope::format_timestamp(now_ms());
        envelope::encode_message(&mut out, &id, kind, &ts, data, request_id);
        Frame::Text(Utf8Bytes::from(out))
    }

    pub(super) fn push_event(
        &mut self,
        out: &mut Vec<Frame>,
        name: &str,
        args: &RawJson,
        ack: Option<u64>,
        attachments: &[Vec<u8>],
        key: Option<&str>,
    ) -> Result<(), CodecError> {
        if !attachments.is_empty() {
            return Err(CodecError::InvalidPayload(
                "binary attachments need the Socket.IO protocol",
            ));
        }
        let data = envelope::data_of(args.get())?;
        let id = match key {
            Some(k) => k.to_owned(),
            None => self.fresh_id(),
        };
        let mut text = String::with_capacity(96 + name.len() + data.len());
        let ts = envelope::format_timestamp(now_ms());
        envelope::encode_message(&mut text, &id, name, &ts, data, ack);
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
        let ts = envelope::format_timestamp(now_ms());
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

fn rejection(error: Option<ErrorBody>, data: String) -> Rejection {
    let body = error.unwrap_or(ErrorBody {
        code: "ERROR".into(),
        message: "the server reported a failure".into(),
    });
    Rejection {
        code: body.code,
        message: body.message,
        data,
    }
}
