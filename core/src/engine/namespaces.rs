//! The namespaces the app wants to be in, and the auth state machine of each: credentials
//! asked for on every link, a refusal answered once with fresh credentials, a second refusal
//! final (`Unauthorized`), credentials revoked mid-session cured by reconnecting at once.
//!
//! A namespace is *ready* once joined and its subscriptions replayed: only then may its
//! outbox entries flow.

use std::sync::Arc;

use serde_json::Value;
use tracing::warn;

use super::actions::{Actions, After, Credentials, End};
use crate::{
    config::AuthReason,
    error::Error,
    event::{DisconnectReason, Notice},
    protocol::{Resume, Wire},
    transport::Frame,
};

/// Where a namespace stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    /// Waiting for credentials or the server's answer.
    Pending,
    /// Joined.
    Joined,
    /// Refused for good until the app calls `connect()` again.
    Unauthorized,
}

#[derive(Debug)]
struct Namespace {
    name: Arc<str>,
    status: Status,
    /// What the server said when it last refused these credentials, since the last success
    /// or `connect()`: the next attempt asks the provider for fresh ones, and a second
    /// refusal is final. Kept across links, because some servers close after refusing.
    refused: Option<String>,
    /// Fresh credentials sent after a refusal on a link that died before the server answered:
    /// tried first on the next link, so the provider is asked for a refresh once, not once
    /// per link.
    retry_credentials: Option<Option<Value>>,
    /// Joined and its subscriptions replayed: its outbox entries may flow.
    ready: bool,
}

impl Namespace {
    fn new(name: Arc<str>) -> Self {
        Self {
            name,
            status: Status::Pending,
            refused: None,
            retry_credentials: None,
            ready: false,
        }
    }
}

/// What a refusal means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not a namespace this client wants (a late answer after `leave`).
    Unknown,
    /// Fresh credentials were asked for; the namespace stays pending.
    Retrying,
    /// Joined credentials were revoked: the link ends and reconnects at once.
    Revoked,
    /// Refused for good. `main`: the client as a whole is unauthorized.
    Final { main: bool },
}

/// What the server closing a namespace means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Left {
    /// The main namespace: the server ended the session.
    Main,
    /// Another one: forgotten.
    Other,
    /// Not one this client is in.
    Unknown,
}

/// Every namespace and its auth state. See the module docs.
pub(crate) struct Namespaces {
    list: Vec<Namespace>,
    main: Arc<str>,
    /// An auth provider exists, so a refusal is worth one retry with fresh credentials.
    has_provider: bool,
    /// The server said the credentials expired: the next link asks for fresh ones.
    expired: Option<String>,
}

impl Namespaces {
    /// The configured namespaces; the first is the main one.
    pub(crate) fn new(names: &[Arc<str>], has_provider: bool) -> Self {
        let list: Vec<Namespace> = names.iter().cloned().map(Namespace::new).collect();
        let main = Self::main_of(names);
        Self {
            list,
            main,
            has_provider,
            expired: None,
        }
    }

    /// The main namespace of `names`: the first (`/` if there are none, which a checked
    /// configuration never has).
    pub(crate) fn main_of(names: &[Arc<str>]) -> Arc<str> {
        names.first().cloned().unwrap_or_else(|| Arc::from("/"))
    }

    /// The server said the credentials expired (or failed): the next link asks the provider
    /// for fresh ones, saying why, instead of reusing what it has.
    pub(crate) fn credentials_expired(&mut self, message: String) {
        for ns in &mut self.list {
            ns.retry_credentials = None;
        }
        self.expired = Some(message);
    }

    fn find(&mut self, name: &str) -> Option<&mut Namespace> {
        self.list.iter_mut().find(|n| &*n.name == name)
    }

    /// A fresh `connect()`: earlier refusals are forgotten.
    pub(crate) fn start_over(&mut self) {
        for ns in &mut self.list {
            ns.status = Status::Pending;
            ns.refused = None;
            ns.retry_credentials = None;
        }
    }

    /// Adds a namespace; on a live link its credentials are asked for now.
    pub(crate) fn join(&mut self, name: Arc<str>, linked: bool, out: &mut Actions) {
        if self.list.iter().any(|n| n.name == name) {
            return;
        }
        if linked {
            out.credentials
                .push((name.clone(), Credentials::Ask(AuthReason::Connect)));
        }
        self.list.push(Namespace::new(name));
    }

    /// Removes a namespace, leaving it on the server if it was joined.
    pub(crate) fn leave(&mut self, name: &str, wire: Option<&Wire>, out: &mut Actions) {
        let Some(i) = self.list.iter().position(|n| &*n.name == name) else {
            return;
        };
        let ns = self.list.remove(i);
        if ns.status == Status::Joined
            && let Some(frame) = wire.and_then(|w| w.disconnect(name))
        {
            out.frames.push(frame);
        }
    }

    /// A link is up: asks for the credentials of every namespace waiting to join.
    pub(crate) fn link_up(&mut self, out: &mut Actions) {
        let expired = self.expired.take();
        for ns in &mut self.list {
            if ns.status != Status::Pending {
                continue;
            }
            let how = match ns.retry_credentials.take() {
                Some(creds) => Credentials::Reuse(creds),
                None => Credentials::Ask(match ns.refused.as_ref().or(expired.as_ref()) {
                    Some(message) => AuthReason::Refresh {
                        message: message.clone(),
                    },
                    None => AuthReason::Connect,
                }),
            };
            out.credentials.push((ns.name.clone(), how));
        }
    }

    /// Credentials arrived for `name`: the CONNECT (or auth message) goes out, asking to
    /// restore `resume` when there is a session to restore. A provider failure fails the
    /// attempt.
    pub(crate) fn credentials(
        &mut self,
        name: &str,
        result: Result<Option<Value>, String>,
        wire: &mut Wire,
        resume: Option<Resume>,
        attempt: u32,
        out: &mut Actions,
    ) {
        let Some(ns) = self.find(name).filter(|n| n.status == Status::Pending) else {
            return;
        };
        match result.and_then(auth_object) {
            Ok(auth) => {
                if ns.refused.is_some() {
                    ns.retry_credentials = Some(auth.clone());
                }
                match wire.connect(name, auth, resume.as_ref()) {
                    Ok(frame) => out.frames.push(frame),
                    // Defensive: the client refuses such namespaces before they get here.
                    Err(why) => {
                        self.list.retain(|n| &*n.name != name);
                        out.notify(Notice::ConnectError {
                            namespace: name.to_owned(),
                            message: why,
                            will_retry: false,
                        });
                    }
                }
            }
            Err(message) => {
                // Never log the credentials; the provider's own message is safe to show.
                warn!(namespace = %name, error = %message, "auth provider failed");
                let error = format!("auth provider: {message}");
                out.notify(Notice::ConnectFailed {
                    attempt,
                    error: Error::Connect(error.clone()),
                });
                out.end(End::lost(DisconnectReason::TransportError(error)));
            }
        }
    }

    /// The server accepted `name`. Returns whether it is the main namespace, `None` for a
    /// namespace this client does not want.
    pub(crate) fn joined(&mut self, name: &str) -> Option<bool> {
        let main = *name == *self.main;
        let ns = self.find(name)?;
        ns.status = Status::Joined;
        ns.refused = None;
        ns.retry_credentials = None;
        Some(main)
    }

    /// The server refused `name`'s credentials.
    pub(crate) fn refused(
        &mut self,
        name: &str,
        code: String,
        message: String,
        out: &mut Actions,
    ) -> Refusal {
        let main = *name == *self.main;
        let has_provider = self.has_provider;
        let Some(ns) = self.find(name) else {
            return Refusal::Unknown;
        };
        if ns.status == Status::Joined {
            // Revoked mid-session: reconnect at once with fresh credentials; a refusal of
            // those is final.
            ns.refused = Some(message.clone());
            out.end(End::new(
                DisconnectReason::ServerError { code, message },
                After::ReconnectNow,
            ));
            return Refusal::Revoked;
        }
        ns.retry_credentials = None;
        let retry = ns.refused.is_none() && has_provider;
        out.notify(Notice::ConnectError {
            namespace: name.to_owned(),
            message: message.clone(),
            will_retry: retry,
        });
        if retry {
            ns.refused = Some(message.clone());
            let reason = AuthReason::Refresh { message };
            out.credentials
                .push((ns.name.clone(), Credentials::Ask(reason)));
            return Refusal::Retrying;
        }
        // Its outbox entries stay stored for when the app connects with better credentials.
        warn!(namespace = %name, "namespace refused");
        ns.status = Status::Unauthorized;
        Refusal::Final { main }
    }

    /// The server closed `name`.
    pub(crate) fn left(&mut self, name: &str, out: &mut Actions) -> Left {
        if *name == *self.main {
            return Left::Main;
        }
        let before = self.list.len();
        self.list.retain(|n| &*n.name != name);
        if self.list.len() == before {
            return Left::Unknown;
        }
        out.notify(Notice::ConnectError {
            namespace: name.to_owned(),
            message: "disconnected by the server".into(),
            will_retry: false,
        });
        Left::Other
    }

    /// The link is gone: every joined namespace must join again.
    pub(crate) fn link_lost(&mut self) {
        for ns in &mut self.list {
            if ns.status == Status::Joined {
                ns.status = Status::Pending;
            }
            ns.ready = false;
        }
    }

    /// Lets `name`'s outbox entries flow; false if it is not one of ours.
    pub(crate) fn mark_ready(&mut self, name: &str) -> bool {
        self.find(name).map(|n| n.ready = true).is_some()
    }

    /// Whether `name`'s outbox entries may flow.
    pub(crate) fn is_ready(&self, name: &str) -> bool {
        self.list.iter().any(|n| &*n.name == name && n.ready)
    }

    /// Whether any namespace's entries may flow.
    pub(crate) fn any_ready(&self) -> bool {
        self.list.iter().any(|n| n.ready)
    }

    /// Whether `name` is joined now (volatile emits go only there).
    pub(crate) fn is_joined(&self, name: &str) -> bool {
        self.list
            .iter()
            .any(|n| &*n.name == name && n.status == Status::Joined)
    }

    /// The frames that leave every joined namespace (a polite close).
    pub(crate) fn goodbyes(&self, wire: &Wire) -> Vec<Frame> {
        self.list
            .iter()
            .filter(|n| n.status == Status::Joined)
            .filter_map(|n| wire.disconnect(&n.name))
            .collect()
    }
}

/// `value` as the JSON auth object of a CONNECT packet, if it is one.
fn auth_object(value: Option<Value>) -> Result<Option<Value>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => Ok(Some(v)),
        Some(_) => Err("auth provider must return a JSON object".into()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::protocol::test_wire;

    fn namespaces() -> Namespaces {
        Namespaces::new(&["/".into(), "/admin".into()], true)
    }

    #[test]
    fn a_link_asks_credentials_and_sends_connect_with_the_session_to_resume() {
        let mut n = namespaces();
        let mut out = Actions::default();
        n.link_up(&mut out);
        let asked: Vec<_> = out.credentials.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(asked, ["/", "/admin"]);
        let mut wire = test_wire(25_000, 20_000);
        let resume = Resume {
            session: "p".into(),
            position: None,
        };
        let mut out = Actions::default();
        n.credentials(
            "/",
            Ok(Some(json!({"token": "t"}))),
            &mut wire,
            Some(resume),
            0,
            &mut out,
        );
        assert_eq!(out.frames.len(), 1);
        assert_eq!(n.joined("/"), Some(true));
        assert_eq!(n.joined("/admin"), Some(false));
        assert_eq!(n.joined("/nope"), None);
    }

    #[test]
    fn a_refusal_twice_is_final_and_a_fresh_connect_forgets_it() {
        let mut n = namespaces();
        let mut out = Actions::default();
        assert_eq!(
            n.refused("/", "REFUSED".into(), "bad token".into(), &mut out),
            Refusal::Retrying
        );
        assert_eq!(
            out.credentials,
            vec![(
                Arc::from("/"),
                Credentials::Ask(AuthReason::Refresh {
                    message: "bad token".into()
                })
            )]
        );
        assert!(matches!(
            out.notices[0],
            Notice::ConnectError {
                will_retry: true,
                ..
            }
        ));
        let mut out = Actions::default();
        assert_eq!(
            n.refused("/", "REFUSED".into(), "still bad".into(), &mut out),
            Refusal::Final { main: true }
        );
        assert!(out.credentials.is_empty());
        n.start_over();
        assert_eq!(
            n.refused("/", "REFUSED".into(), "x".into(), &mut Actions::default()),
            Refusal::Retrying
        );
    }

    #[test]
    fn refreshed_credentials_are_reused_on_the_next_link_not_asked_again() {
        let mut n = namespaces();
        let mut wire = test_wire(25_000, 20_000);
        n.refused(
            "/",
            "REFUSED".into(),
            "expired".into(),
            &mut Actions::default(),
        );
        n.credentials(
            "/",
            Ok(Some(json!({"token": "fresh"}))),
            &mut wire,
            None,
            0,
            &mut Actions::default(),
        );
        // The link dies before the server answers.
        n.link_lost();
        let mut out = Actions::default();
        n.link_up(&mut out);
        assert_eq!(
            out.credentials[0],
            (
                Arc::from("/"),
                Credentials::Reuse(Some(json!({"token": "fresh"})))
            )
        );
    }

    #[test]
    fn revoked_credentials_reconnect_at_once_and_provider_errors_fail_the_attempt() {
        let mut n = namespaces();
        n.joined("/");
        let mut out = Actions::default();
        let r = n.refused(
            "/",
            "AUTHENTICATION_FAILED".into(),
            "revoked".into(),
            &mut out,
        );
        assert_eq!(r, Refusal::Revoked);
        let Some(super::super::actions::LinkAction::End(end)) = out.link else {
            panic!("the link must end")
        };
        assert_eq!(end.after, After::ReconnectNow);
        assert!(
            matches!(end.reason, DisconnectReason::ServerError { ref code, .. } if code == "AUTHENTICATION_FAILED")
        );
        let mut n = namespaces();
        let mut out = Actions::default();
        let mut wire = test_wire(25_000, 20_000);
        n.credentials(
            "/",
            Ok(Some(json!("a string"))),
            &mut wire,
            None,
            3,
            &mut out,
        );
        assert!(out.frames.is_empty());
        assert!(matches!(
            out.notices[0],
            Notice::ConnectFailed { attempt: 3, .. }
        ));
        assert!(matches!(
            out.link,
            Some(super::super::actions::LinkAction::End(_))
        ));
    }

    #[test]
    fn leaving_and_being_left() {
        let mut n = namespaces();
        let wire = test_wire(25_000, 20_000);
        n.joined("/admin");
        let mut out = Actions::default();
        n.leave("/admin", Some(&wire), &mut out);
        assert_eq!(
            out.frames.len(),
            1,
            "a joined namespace is left on the server"
        );
        assert_eq!(n.left("/admin", &mut Actions::default()), Left::Unknown);
        assert_eq!(n.left("/", &mut Actions::default()), Left::Main);
        n.join(Arc::from("/rooms"), false, &mut Actions::default());
        assert_eq!(n.left("/rooms", &mut Actions::default()), Left::Other);
        assert!(!n.is_ready("/"));
        n.mark_ready("/");
        assert!(n.is_ready("/") && n.any_ready());
        n.link_lost();
        assert!(!n.any_ready());
    }
}
