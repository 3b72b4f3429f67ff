//! Inbound admission: every app event passes here before any listener sees it. It is counted,
//! checked against the seen-id window (de-duplication) and the freshness limit, and what the
//! window learned is persisted once per batch of frames.

use super::actions::Actions;
use crate::{
    codec::CodecError,
    event::Notice,
    inbox::{DedupConfig, Freshness, Inbox, Verdict},
    protocol::EventData,
    store::Cmd as StoreCmd,
    time::Now,
};

/// The inbound filter and its counters.
pub(crate) struct Admission {
    filter: Inbox,
    /// Events delivered to the app.
    pub(crate) received: u64,
    /// Duplicates dropped.
    pub(crate) duplicates: u64,
    /// Events dropped as too old.
    pub(crate) stale: u64,
    /// Messages dropped as invalid.
    pub(crate) invalid: u64,
}

impl Admission {
    /// The filter the app configured, primed with ids persisted by an earlier run.
    pub(crate) fn new(
        dedup: Option<DedupConfig>,
        freshness: Option<Freshness>,
        seen: Vec<(String, i64)>,
    ) -> Self {
        Self {
            filter: Inbox::new(dedup, freshness, seen),
            received: 0,
            duplicates: 0,
            stale: 0,
            invalid: 0,
        }
    }

    /// Whether `event`, with the protocol's unique `id` if it carries one, goes to the app.
    pub(crate) fn admit(&mut self, now: Now, event: &EventData, id: Option<&str>) -> bool {
        if id.is_none() && !self.filter.is_active() {
            self.received += 1;
            return true; // The common case: nothing to check.
        }
        let verdict = self.filter.check(
            &event.namespace,
            &event.name,
            event.args.get(),
            id,
            now.wall_ms,
        );
        match verdict {
            Verdict::Deliver => {
                self.received += 1;
                true
            }
            Verdict::Duplicate => {
                self.duplicates += 1;
                false
            }
            Verdict::Stale => {
                self.stale += 1;
                false
            }
        }
    }

    /// A message that failed validation: counted and reported, its content never logged.
    pub(crate) fn invalid(&mut self, error: &CodecError, out: &mut Actions) {
        tracing::warn!(%error, "invalid inbound message dropped");
        self.invalid += 1;
        out.notify(Notice::InvalidMessage {
            error: error.to_string(),
        });
    }

    /// Writes the ids seen since the last call to the store.
    pub(crate) fn persist(&mut self, now: Now, out: &mut Actions) {
        let ids = self.filter.take_new();
        if !ids.is_empty() {
            let (window, min_ms) = self.filter.retention(now.wall_ms);
            out.store.push(StoreCmd::Seen {
                ids,
                window,
                min_ms,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use tokio::time::Instant;

    use super::*;
    use crate::codec::json::RawJson;

    fn event(args: &str) -> EventData {
        EventData {
            namespace: Arc::from("/"),
            name: Arc::from("chat:message"),
            args: RawJson::validated(args.into()),
            attachments: vec![],
        }
    }

    fn now() -> Now {
        Now {
            at: Instant::now(),
            wall_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn ids_and_timestamps_drop_repeats_and_old_news() {
        let dedup = DedupConfig::with_pointer("/messageId");
        let fresh = Freshness::new(Duration::from_secs(60));
        let mut a = Admission::new(Some(dedup), Some(fresh), vec![]);
        let m1 = event(r#"[{"messageId":"m1"}]"#);
        assert!(a.admit(now(), &m1, None));
        assert!(!a.admit(now(), &m1, None));
        let by_offset = event("[1]");
        assert!(a.admit(now(), &by_offset, Some("o1")));
        assert!(!a.admit(now(), &by_offset, Some("o1")), "same id");
        let old = event(r#"[{"messageId":"m2","timestamp":1699999000000}]"#);
        assert!(!a.admit(now(), &old, None));
        assert_eq!((a.received, a.duplicates, a.stale), (2, 2, 1));
        let mut out = Actions::default();
        a.persist(now(), &mut out);
        assert_eq!(out.store.len(), 1, "the new ids, once");
        let mut out = Actions::default();
        a.persist(now(), &mut out);
        assert!(out.store.is_empty(), "nothing new");
    }

    #[test]
    fn without_a_filter_every_event_is_admitted_and_nothing_persisted() {
        let mut a = Admission::new(None, None, vec![]);
        let e = event(r#"[{"messageId":"m1"}]"#);
        assert!(a.admit(now(), &e, None) && a.admit(now(), &e, None));
        let mut out = Actions::default();
        a.persist(now(), &mut out);
        assert!(out.store.is_empty());
        a.invalid(&CodecError::Empty, &mut out);
        assert_eq!(a.invalid, 1);
        assert_eq!(out.notices.len(), 1);
    }
}
