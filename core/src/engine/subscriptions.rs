//! Subscriptions: events (with their payload) the server must receive on every connect, such
//! as `room:subscribe {"roomId":"r1"}`. Replayed when their namespace is joined, acks
//! awaited, before that namespace's outbox entries flow; one not acknowledged in time is
//! reported and the namespace flows anyway, so a server that never acks cannot hold the
//! outbox forever.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::time::Instant;
use tracing::warn;

use super::actions::Actions;
use crate::{
    codec::json::RawJson,
    event::Notice,
    protocol::{EventData, Rejection, Wire},
    store::StoredSubscription,
    time::Now,
};

/// Ack ids for subscriptions start here, far above any outbox sequence number, so one ack
/// id space serves both (JavaScript servers keep ids exact up to 2^53).
const FIRST_ID: u64 = 1 << 50;

/// A subscription sent and awaiting its acknowledgement.
struct Waiting {
    namespace: Arc<str>,
    event: String,
    deadline: Instant,
    /// Whether the namespace's outbox waits for it (a replay on connect).
    gating: bool,
}

/// The desired set and the acknowledgements awaited.
pub(crate) struct Subscriptions {
    desired: Vec<StoredSubscription>,
    waiting: HashMap<u64, Waiting>,
    next_id: u64,
    timeout: Duration,
    /// Subscriptions refused or not acknowledged in time.
    pub(crate) failed: u64,
}

impl Subscriptions {
    /// The persisted set; acks are awaited for `timeout`.
    pub(crate) fn new(desired: Vec<StoredSubscription>, timeout: Duration) -> Self {
        Self {
            desired,
            waiting: HashMap::new(),
            next_id: FIRST_ID,
            timeout,
            failed: 0,
        }
    }

    /// Sends every subscription of `namespace` (just joined). Returns whether the namespace
    /// is ready at once (nothing to wait for).
    pub(crate) fn replay(
        &mut self,
        namespace: &Arc<str>,
        now: Now,
        wire: &mut Wire,
        out: &mut Actions,
    ) -> bool {
        let subs: Vec<StoredSubscription> = self
            .desired
            .iter()
            .filter(|s| *s.namespace == **namespace)
            .cloned()
            .collect();
        for s in &subs {
            self.send(s, true, now, wire, out);
        }
        !self.gating(namespace)
    }

    /// Adds one (already persisted); sent now when `wire` is given (its namespace is ready).
    pub(crate) fn add(
        &mut self,
        s: StoredSubscription,
        now: Now,
        wire: Option<&mut Wire>,
        out: &mut Actions,
    ) {
        let same = |d: &StoredSubscription| {
            d.namespace == s.namespace && d.event == s.event && d.args == s.args
        };
        if let Some(d) = self.desired.iter_mut().find(|d| same(d)) {
            *d = s;
            return;
        }
        if let Some(wire) = wire {
            self.send(&s, false, now, wire, out);
        }
        // Grown one at a time: a client has a few subscriptions for its whole life, and a
        // doubling Vec would hold room for four from the first (a hub pays it per client).
        self.desired.reserve_exact(1);
        self.desired.push(s);
    }

    /// Forgets one (already removed from the store).
    pub(crate) fn remove(&mut self, s: &StoredSubscription) {
        self.desired
            .retain(|d| !(d.namespace == s.namespace && d.event == s.event && d.args == s.args));
    }

    fn send(
        &mut self,
        s: &StoredSubscription,
        gating: bool,
        now: Now,
        wire: &mut Wire,
        out: &mut Actions,
    ) {
        let id = self.next_id;
        self.next_id += 1;
        let event = EventData {
            namespace: Arc::from(s.namespace.as_str()),
            name: Arc::from(s.event.as_str()),
            args: RawJson::validated(s.args.clone()),
            attachments: Vec::new(),
        };
        if let Err(e) = wire.push_event(&mut out.frames, &event, Some(id), None) {
            self.fail(&s.namespace, &s.event, e.to_string(), out);
            return;
        }
        let waiting = Waiting {
            namespace: event.namespace,
            event: s.event.clone(),
            deadline: now.at + self.timeout,
            gating,
        };
        self.waiting.insert(id, waiting);
    }

    /// An acknowledgement (or a refusal) for request `id`. `None` when `id` is not a
    /// subscription's; otherwise the namespace that became ready by it, if one did.
    pub(crate) fn ack(
        &mut self,
        id: u64,
        refused: Option<&Rejection>,
        out: &mut Actions,
    ) -> Option<Option<Arc<str>>> {
        let w = self.take_waiting(id)?;
        if let Some(r) = refused {
            let error = format!("refused: {}: {}", r.code, r.message);
            self.fail(&w.namespace, &w.event, error, out);
        }
        Some(self.released(w))
    }

    /// Reports subscriptions not acknowledged in time; returns the namespaces that may flow
    /// now.
    pub(crate) fn on_timeout(&mut self, now: Now, out: &mut Actions) -> Vec<Arc<str>> {
        let mut overdue: Vec<u64> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.deadline <= now.at)
            .map(|(id, _)| *id)
            .collect();
        overdue.sort_unstable();
        let mut ready = Vec::new();
        for id in overdue {
            let Some(w) = self.take_waiting(id) else {
                continue;
            };
            let error = format!("no acknowledgement within {:?}", self.timeout);
            self.fail(&w.namespace, &w.event, error, out);
            ready.extend(self.released(w));
        }
        ready
    }

    /// Removes what request `id` was waiting for. The table is freed once empty: it is
    /// used around a connect, and an idle client (a hub holds thousands) keeps no room.
    fn take_waiting(&mut self, id: u64) -> Option<Waiting> {
        let w = self.waiting.remove(&id);
        if self.waiting.is_empty() {
            self.waiting = HashMap::new();
        }
        w
    }

    /// The namespace `w` was holding back, if it was the last one to.
    fn released(&self, w: Waiting) -> Option<Arc<str>> {
        (w.gating && !self.gating(&w.namespace)).then_some(w.namespace)
    }

    /// Whether a subscription's acknowledgement is awaited.
    pub(crate) fn awaits_acks(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// The earliest acknowledgement deadline.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.waiting.values().map(|w| w.deadline).min()
    }

    /// Forgets what was awaited on a link that is gone.
    pub(crate) fn link_lost(&mut self) {
        self.waiting = HashMap::new();
    }

    fn gating(&self, namespace: &str) -> bool {
        self.waiting
            .values()
            .any(|w| w.gating && &*w.namespace == namespace)
    }

    fn fail(&mut self, namespace: &str, event: &str, error: String, out: &mut Actions) {
        warn!(namespace, event, error, "subscription failed");
        self.failed += 1;
        out.notify(Notice::SubscriptionFailed {
            namespace: namespace.to_owned(),
            event: event.to_owned(),
            error,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Then, test_wire};

    fn sub(event: &str, room: &str) -> StoredSubscription {
        StoredSubscription {
            namespace: "/".into(),
            event: event.into(),
            args: format!(r#"[{{"roomId":"{room}"}}]"#),
            unsubscribe: None,
        }
    }

    fn t0() -> Now {
        Now {
            at: Instant::now(),
            wall_ms: 0,
        }
    }

    fn ids_sent(out: &Actions) -> Vec<u64> {
        out.frames
            .iter()
            .map(|f| match f {
                crate::transport::Frame::Text(t) => {
                    let digits: String = t[2..].chars().take_while(char::is_ascii_digit).collect();
                    digits.parse().unwrap()
                }
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn the_namespace_is_ready_only_once_every_replayed_subscription_is_acked() {
        let root: Arc<str> = Arc::from("/");
        let mut s = Subscriptions::new(
            vec![sub("room:subscribe", "r1"), sub("room:subscribe", "r2")],
            Duration::from_secs(1),
        );
        let mut wire = test_wire(25_000, 20_000);
        let mut out = Actions::default();
        assert!(!s.replay(&root, t0(), &mut wire, &mut out));
        let ids = ids_sent(&out);
        assert_eq!(ids, [FIRST_ID, FIRST_ID + 1]);
        assert_eq!(s.ack(ids[0], None, &mut out), Some(None), "one still out");
        assert_eq!(s.ack(7, None, &mut out), None, "an outbox entry's ack");
        assert_eq!(s.ack(ids[1], None, &mut out), Some(Some(root.clone())));
        // Nothing to replay on an empty namespace: ready at once.
        let mut other = Subscriptions::new(vec![], Duration::from_secs(1));
        assert!(other.replay(&root, t0(), &mut wire, &mut Actions::default()));
    }

    #[test]
    fn an_idle_client_keeps_room_for_its_subscriptions_only() {
        let root: Arc<str> = Arc::from("/");
        let mut s = Subscriptions::new(vec![], Duration::from_secs(1));
        let mut wire = test_wire(25_000, 20_000);
        let mut out = Actions::default();
        s.add(sub("room:subscribe", "r1"), t0(), Some(&mut wire), &mut out);
        assert_eq!(s.desired.capacity(), 1, "no room kept for more");
        assert!(s.waiting.capacity() > 0, "its ack is awaited");
        let ids = ids_sent(&out);
        assert_eq!(s.ack(ids[0], None, &mut out), Some(None));
        assert_eq!(
            s.waiting.capacity(),
            0,
            "the table is freed once nothing is awaited"
        );
        // The same after a timeout, and when the link goes.
        assert!(!s.replay(&root, t0(), &mut wire, &mut out));
        s.on_timeout(
            Now {
                at: t0().at + Duration::from_secs(2),
                wall_ms: 0,
            },
            &mut out,
        );
        assert_eq!(s.waiting.capacity(), 0);
        assert!(!s.replay(&root, t0(), &mut wire, &mut out));
        s.link_lost();
        assert_eq!(s.waiting.capacity(), 0);
    }

    #[test]
    fn a_refused_or_silent_subscription_is_reported_and_releases_the_outbox() {
        let root: Arc<str> = Arc::from("/");
        let t = t0();
        let mut s = Subscriptions::new(
            vec![sub("room:subscribe", "r1"), sub("room:subscribe", "r2")],
            Duration::from_millis(500),
        );
        let mut wire = test_wire(25_000, 20_000);
        let mut out = Actions::default();
        s.replay(&root, t, &mut wire, &mut out);
        let ids = ids_sent(&out);
        let refusal = Rejection {
            code: "FORBIDDEN".into(),
            message: "no".into(),
            then: Then::Fail,
        };
        let mut out = Actions::default();
        assert_eq!(s.ack(ids[0], Some(&refusal), &mut out), Some(None));
        assert!(
            matches!(&out.notices[0], Notice::SubscriptionFailed { error, .. } if error.contains("FORBIDDEN"))
        );
        assert_eq!(s.poll_timeout(), Some(t.at + Duration::from_millis(500)));
        let early = Now {
            at: t.at + Duration::from_millis(499),
            ..t
        };
        assert!(s.on_timeout(early, &mut Actions::default()).is_empty());
        let late = Now {
            at: t.at + Duration::from_millis(500),
            ..t
        };
        assert_eq!(s.on_timeout(late, &mut Actions::default()), vec![root]);
        assert_eq!(s.failed, 2);
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn added_while_ready_is_sent_at_once_without_holding_the_outbox() {
        let mut s = Subscriptions::new(vec![], Duration::from_secs(1));
        let mut wire = test_wire(25_000, 20_000);
        let mut out = Actions::default();
        s.add(sub("room:subscribe", "r1"), t0(), Some(&mut wire), &mut out);
        let id = ids_sent(&out)[0];
        assert_eq!(s.ack(id, None, &mut out), Some(None), "not gating");
        let mut out = Actions::default();
        s.add(sub("room:subscribe", "r1"), t0(), Some(&mut wire), &mut out);
        assert!(out.frames.is_empty(), "already desired: not sent twice");
        s.remove(&sub("room:subscribe", "r1"));
        let mut out = Actions::default();
        assert!(s.replay(&Arc::from("/"), t0(), &mut wire, &mut out));
        assert!(out.frames.is_empty());
    }
}
