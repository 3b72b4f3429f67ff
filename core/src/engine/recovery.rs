//! Connection state recovery: per namespace, the session the server offered to restore and
//! the id of the last event received from it, kept (and persisted) across links and restarts
//! so a reconnect can ask for what was missed.

use std::sync::Arc;

use super::actions::Actions;
use crate::{event::Notice, protocol::Resume, store::Cmd as StoreCmd};

#[derive(Debug, Clone)]
struct Session {
    resume: Resume,
    /// Changed since it was last written to the store.
    dirty: bool,
}

/// Every namespace's restorable session.
#[derive(Debug, Default)]
pub(crate) struct Recovery {
    /// A list, not a map: a client joins one namespace or a few, and a map's table has room
    /// for several from its first entry on (some 300 bytes per client of a hub).
    sessions: Vec<(Arc<str>, Session)>,
    /// Sessions the server restored.
    pub(crate) recovered: u64,
}

impl Recovery {
    /// Sessions persisted by an earlier run: `(namespace, session, position)`.
    pub(crate) fn new(persisted: Vec<(String, String, Option<String>)>) -> Self {
        let sessions = persisted
            .into_iter()
            .map(|(ns, session, position)| {
                let s = Session {
                    resume: Resume { session, position },
                    dirty: false,
                };
                (Arc::from(ns.as_str()), s)
            })
            .collect();
        Self {
            sessions,
            recovered: 0,
        }
    }

    /// The session to ask the server to restore when joining `namespace`.
    pub(crate) fn resume(&self, namespace: &str) -> Option<Resume> {
        self.get(namespace).map(|s| s.resume.clone())
    }

    /// `namespace` was joined, offering to restore `session` later (or not). Returns whether
    /// the server restored the previous session (its missed events follow).
    pub(crate) fn joined(
        &mut self,
        namespace: &Arc<str>,
        session: Option<String>,
        out: &mut Actions,
    ) -> bool {
        let previous = self
            .index(namespace)
            .map(|i| self.sessions.swap_remove(i).1);
        let recovered =
            matches!((&previous, &session), (Some(p), Some(new)) if p.resume.session == *new);
        if previous.is_some() && !recovered {
            // The server could not restore the session: events sent meanwhile are gone.
            out.notify(Notice::RecoveryFailed {
                namespace: namespace.to_string(),
            });
        }
        if recovered {
            self.recovered += 1;
        }
        match session {
            Some(session) => {
                let position = previous
                    .filter(|_| recovered)
                    .and_then(|p| p.resume.position);
                let s = Session {
                    resume: Resume { session, position },
                    dirty: true,
                };
                self.sessions.reserve_exact(1);
                self.sessions.push((namespace.clone(), s));
            }
            None if previous.is_some() => out.store.push(StoreCmd::Recovery {
                namespace: namespace.to_string(),
                session: None,
                position: None,
            }),
            None => {}
        }
        recovered
    }

    /// An event at resume `position` arrived on `namespace`.
    pub(crate) fn advanced(&mut self, namespace: &str, position: &str) {
        if let Some(i) = self.index(namespace) {
            let s = &mut self.sessions[i].1;
            // The position's string is reused: this runs for every event received.
            match &mut s.resume.position {
                Some(p) => p.replace_range(.., position),
                None => s.resume.position = Some(position.to_owned()),
            }
            s.dirty = true;
        }
    }

    fn get(&self, namespace: &str) -> Option<&Session> {
        self.index(namespace).map(|i| &self.sessions[i].1)
    }

    /// Where `namespace`'s session is in the list.
    fn index(&self, namespace: &str) -> Option<usize> {
        self.sessions.iter().position(|(ns, _)| **ns == *namespace)
    }

    /// Writes what changed to the store (once per batch of frames, not per event).
    pub(crate) fn persist(&mut self, out: &mut Actions) {
        for (ns, s) in self.sessions.iter_mut().filter(|(_, s)| s.dirty) {
            s.dirty = false;
            out.store.push(StoreCmd::Recovery {
                namespace: ns.to_string(),
                session: Some(s.resume.session.clone()),
                position: s.resume.position.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_resumed_from_the_last_offset_or_reported_lost() {
        let ns: Arc<str> = Arc::from("/");
        let mut r = Recovery::new(vec![]);
        assert!(!r.joined(&ns, Some("p1".into()), &mut Actions::default()));
        r.advanced("/", "o1");
        r.advanced("/", "o2");
        let mut out = Actions::default();
        r.persist(&mut out);
        assert_eq!(out.store.len(), 1, "one write for the batch");
        let resume = r.resume("/").unwrap();
        assert_eq!(
            (resume.session.as_str(), resume.position.as_deref()),
            ("p1", Some("o2"))
        );
        // Same pid back: restored, the offset kept.
        assert!(r.joined(&ns, Some("p1".into()), &mut Actions::default()));
        assert_eq!(r.recovered, 1);
        assert_eq!(r.resume("/").unwrap().position.as_deref(), Some("o2"));
        // A new pid: the session was lost, the app is told, the offset starts over.
        let mut out = Actions::default();
        assert!(!r.joined(&ns, Some("p2".into()), &mut out));
        assert_eq!(
            out.notices,
            vec![Notice::RecoveryFailed {
                namespace: "/".into()
            }]
        );
        assert_eq!(r.resume("/").unwrap().position, None);
        // No pid any more: forgotten, also in the store.
        let mut out = Actions::default();
        r.joined(&ns, None, &mut out);
        assert!(r.resume("/").is_none());
        assert_eq!(out.store.len(), 1);
    }

    #[test]
    fn each_namespace_keeps_its_own_session_and_offset() {
        let (main, chat): (Arc<str>, Arc<str>) = (Arc::from("/"), Arc::from("/chat"));
        let mut r = Recovery::new(vec![("/chat".into(), "c1".into(), Some("x".into()))]);
        assert!(!r.joined(&main, Some("m1".into()), &mut Actions::default()));
        assert!(r.joined(&chat, Some("c1".into()), &mut Actions::default()));
        r.advanced("/chat", "c-offset-2");
        r.advanced("/", "m-offset-1");
        r.advanced("/elsewhere", "ignored");
        let resume = |r: &Recovery, ns| {
            let s = r.resume(ns).unwrap();
            (s.session, s.position)
        };
        assert_eq!(resume(&r, "/"), ("m1".into(), Some("m-offset-1".into())));
        assert_eq!(
            resume(&r, "/chat"),
            ("c1".into(), Some("c-offset-2".into()))
        );
        assert!(r.resume("/elsewhere").is_none());
        let mut out = Actions::default();
        r.persist(&mut out);
        assert_eq!(out.store.len(), 2, "both changed");
        // One namespace forgotten, the other untouched.
        r.joined(&main, None, &mut Actions::default());
        assert!(r.resume("/").is_none());
        assert_eq!(
            resume(&r, "/chat"),
            ("c1".into(), Some("c-offset-2".into()))
        );
    }
}
