//! Subscriptions: events (with their payload) the server must receive on every connect, such
//! as `room:subscribe {"roomId":"r1"}`. Replayed when their namespace is joined, acks
//! awaited, before that namespace's outbox entries flow.

use std::{collections::HashMap, sync::Arc};

use tokio::time::Instant;
use tracing::warn;

use super::{Engine, session::Link};
use crate::{
    codec::socketio::RawJson, event::Notice, protocol::Rejection, store::StoredSubscription,
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
pub(super) struct Subscriptions {
    desired: Vec<StoredSubscription>,
    waiting: HashMap<u64, Waiting>,
    next_id: u64,
}

impl Subscriptions {
    pub(super) fn new(desired: Vec<StoredSubscription>) -> Self {
        Self {
            desired,
            waiting: HashMap::new(),
            next_id: FIRST_ID,
        }
    }

    /// Adds one; returns whether it is new.
    pub(super) fn add(&mut self, s: StoredSubscription) -> bool {
        let same = |d: &StoredSubscription| {
            d.namespace == s.namespace && d.event == s.event && d.args == s.args
        };
        match self.desired.iter_mut().find(|d| same(d)) {
            Some(d) => {
                *d = s;
                false
            }
            None => {
                self.desired.push(s);
                true
            }
        }
    }

    pub(super) fn remove(&mut self, s: &StoredSubscription) {
        self.desired
            .retain(|d| !(d.namespace == s.namespace && d.event == s.event && d.args == s.args));
    }

    /// The earliest acknowledgement deadline.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.waiting.values().map(|w| w.deadline).min()
    }

    /// Forgets what was awaited on a link that is gone.
    pub(super) fn link_lost(&mut self) {
        self.waiting.clear();
    }

    fn gating(&self, namespace: &str) -> bool {
        self.waiting
            .values()
            .any(|w| w.gating && &*w.namespace == namespace)
    }
}

impl Engine {
    /// Sends every subscription of namespace `i` (just joined). Returns whether the namespace
    /// is ready at once (nothing to replay).
    pub(super) fn replay_subscriptions(&mut self, i: usize, link: &mut Link) -> bool {
        let ns = self.namespaces[i].name.clone();
        let subs: Vec<StoredSubscription> = self
            .subs
            .desired
            .iter()
            .filter(|s| *s.namespace == *ns)
            .cloned()
            .collect();
        for s in &subs {
            self.send_subscription(s, true, link);
        }
        !self.subs.gating(&ns)
    }

    /// A subscription added while connected: sent now if its namespace is joined.
    pub(super) fn subscribe_now(&mut self, s: StoredSubscription, link: &mut Link) {
        let joined = self
            .namespaces
            .iter()
            .any(|n| *n.name == *s.namespace && n.ready);
        if self.subs.add(s.clone()) && joined {
            self.send_subscription(&s, false, link);
        }
    }

    fn send_subscription(&mut self, s: &StoredSubscription, gating: bool, link: &mut Link) {
        let id = self.subs.next_id;
        self.subs.next_id += 1;
        let args = RawJson::validated(s.args.clone());
        if let Err(e) = link.wire.push_event(
            &mut link.out,
            &s.namespace,
            &s.event,
            &args,
            Some(id),
            Vec::new(),
            None,
        ) {
            self.subscription_failed(&s.namespace, &s.event, e.to_string());
            return;
        }
        let waiting = Waiting {
            namespace: Arc::from(s.namespace.as_str()),
            event: s.event.clone(),
            deadline: Instant::now() + self.config.connect_timeout,
            gating,
        };
        self.subs.waiting.insert(id, waiting);
    }

    /// An acknowledgement (or a refusal) for a subscription; false when `id` is not one.
    pub(super) fn on_subscription_ack(&mut self, id: u64, refused: Option<&Rejection>) -> bool {
        let Some(w) = self.subs.waiting.remove(&id) else {
            return false;
        };
        if let Some(r) = refused {
            let error = format!("refused: {}: {}", r.code, r.message);
            self.subscription_failed(&w.namespace, &w.event, error);
        }
        if w.gating && !self.subs.gating(&w.namespace) {
            self.mark_ready(&w.namespace);
        }
        true
    }

    /// Reports subscriptions not acknowledged in time and lets their namespace flow anyway:
    /// a server that never acks must not hold the outbox forever.
    pub(super) fn check_subscriptions(&mut self) {
        let now = Instant::now();
        let overdue: Vec<u64> = self
            .subs
            .waiting
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in overdue {
            let Some(w) = self.subs.waiting.remove(&id) else {
                continue;
            };
            let error = format!(
                "no acknowledgement within {:?}",
                self.config.connect_timeout
            );
            self.subscription_failed(&w.namespace, &w.event, error);
            if w.gating && !self.subs.gating(&w.namespace) {
                self.mark_ready(&w.namespace);
            }
        }
    }

    fn subscription_failed(&mut self, namespace: &str, event: &str, error: String) {
        warn!(namespace, event, error, "subscription failed");
        self.counters.subscriptions_failed += 1;
        self.notify(Notice::SubscriptionFailed {
            namespace: namespace.to_owned(),
            event: event.to_owned(),
            error,
        });
    }

    /// Lets a namespace's outbox entries flow, starting from the oldest.
    pub(super) fn mark_ready(&mut self, namespace: &str) {
        if let Some(ns) = self.namespaces.iter_mut().find(|n| &*n.name == namespace) {
            ns.ready = true;
            self.flush.rewind();
        }
    }
}
