//! The inbound filter: drops events the app has already seen, and events too old to matter.
//!
//! Pure and synchronous: the engine asks it about each event and persists what it learned.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
    time::Duration,
};

use crate::codec::json::{lookup, scalar_text, timestamp_ms};

/// How inbound event ids are found and remembered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupConfig {
    /// JSON pointer into an event's first argument used when its name has no entry in
    /// `per_event`, e.g. `/eventId`. `None`: only events listed in `per_event` are checked.
    pub pointer: Option<String>,
    /// Pointers per event name, e.g. `metric:recorded` → `/metricId`.
    pub per_event: HashMap<String, String>,
    /// Ids remembered at most (oldest forgotten first).
    pub window: usize,
    /// How long an id is remembered.
    pub ttl: Duration,
}

impl Default for DedupConfig {
    fn default() -> Self {
        Self {
            pointer: None,
            per_event: HashMap::new(),
            window: 10_000,
            ttl: Duration::from_secs(24 * 3600),
        }
    }
}

impl DedupConfig {
    /// Checks every event's id at `pointer` (relative to its first argument).
    pub fn with_pointer(pointer: impl Into<String>) -> Self {
        Self {
            pointer: Some(pointer.into()),
            ..Self::default()
        }
    }

    /// Also checks events named `event` by the id at `pointer`.
    pub fn event(mut self, event: impl Into<String>, pointer: impl Into<String>) -> Self {
        self.per_event.insert(event.into(), pointer.into());
        self
    }
}

/// Drops events whose timestamp is older than `max_age` (seed: 5 minutes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freshness {
    /// JSON pointer to the timestamp in the first argument: an ISO-8601 / RFC 3339 string,
    /// or a number of milliseconds (seconds if below 10^11) since the epoch.
    pub pointer: String,
    /// Oldest acceptable age.
    pub max_age: Duration,
}

impl Freshness {
    /// `timestamp` at `/timestamp`, older than `max_age` dropped.
    pub fn new(max_age: Duration) -> Self {
        Self {
            pointer: "/timestamp".into(),
            max_age,
        }
    }
}

/// What to do with an inbound event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Deliver,
    Duplicate,
    Stale,
}

/// The window's key for an event: `parts` joined, in a string sized once.
fn key(parts: &[&str]) -> String {
    let mut key = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    parts.iter().for_each(|p| key.push_str(p));
    key
}

/// The seen-id window.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    /// Boxed, like `freshness`: most clients configure neither, and a hub holds thousands.
    dedup: Option<Box<DedupConfig>>,
    freshness: Option<Box<Freshness>>,
    /// Each id once, shared by the set and the order it was seen in.
    seen: HashSet<Arc<str>>,
    order: VecDeque<(Arc<str>, i64)>,
    /// Ids seen since the last [`Inbox::take_new`], to persist.
    new: Vec<(Arc<str>, i64)>,
    window: usize,
    ttl_ms: i64,
}

impl Inbox {
    /// A window from the configuration, primed with ids persisted by an earlier run.
    pub(crate) fn new(
        dedup: Option<DedupConfig>,
        freshness: Option<Freshness>,
        persisted: Vec<(String, i64)>,
    ) -> Self {
        let window = dedup.as_ref().map_or(10_000, |d| d.window.max(1));
        let ttl_ms = dedup
            .as_ref()
            .map_or(24 * 3600 * 1000, |d| d.ttl.as_millis() as i64);
        let mut inbox = Self {
            dedup: dedup.map(Box::new),
            freshness: freshness.map(Box::new),
            window,
            ttl_ms,
            ..Self::default()
        };
        for (id, at) in persisted {
            inbox.remember(Arc::from(id), at);
        }
        inbox.new.clear();
        inbox
    }

    /// Whether anything is checked at all (the fast path skips the filter otherwise).
    pub(crate) fn is_active(&self) -> bool {
        self.dedup.is_some() || self.freshness.is_some()
    }

    /// The persistence parameters: window size and the oldest time still remembered.
    pub(crate) fn retention(&self, now_ms: i64) -> (usize, i64) {
        (self.window, now_ms - self.ttl_ms)
    }

    /// Judges an event by its name and arguments; `offset` is its recovery offset, itself a
    /// unique id.
    pub(crate) fn check(
        &mut self,
        namespace: &str,
        name: &str,
        args: &str,
        offset: Option<&str>,
        now_ms: i64,
    ) -> Verdict {
        if let Some(f) = &self.freshness
            && let Some(ts) = lookup(args, &f.pointer).and_then(timestamp_ms)
            && now_ms - ts > f.max_age.as_millis() as i64
        {
            return Verdict::Stale;
        }
        let id = match offset {
            Some(o) => Some(key(&[namespace, "\u{0}@", o])),
            None => self.dedup.as_ref().and_then(|d| {
                let pointer = d.per_event.get(name).or(d.pointer.as_ref())?;
                let v = lookup(args, pointer)?;
                Some(key(&[namespace, "\u{0}", name, "\u{0}", &scalar_text(v)?]))
            }),
        };
        let Some(id) = id else {
            return Verdict::Deliver;
        };
        self.expire(now_ms);
        // One shared copy for the window, its order and the ids to persist, made before the
        // lookup: inserting is the lookup (one hash of the id, not two), and repeats are rare.
        let id: Arc<str> = Arc::from(id);
        if !self.remember(id.clone(), now_ms) {
            return Verdict::Duplicate;
        }
        self.new.push((id, now_ms));
        Verdict::Deliver
    }

    /// Ids first seen since the last call, for the store.
    pub(crate) fn take_new(&mut self) -> Vec<(Arc<str>, i64)> {
        std::mem::take(&mut self.new)
    }

    /// Adds `id` to the window, forgetting the oldest beyond its size; false if it was
    /// there already.
    fn remember(&mut self, id: Arc<str>, at: i64) -> bool {
        if !self.seen.insert(id.clone()) {
            return false;
        }
        // The first id takes room for itself alone: most clients of a hub see a few.
        if self.order.capacity() == 0 {
            self.order.reserve_exact(1);
        }
        self.order.push_back((id, at));
        while self.order.len() > self.window {
            if let Some((old, _)) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }

    fn expire(&mut self, now_ms: i64) {
        while let Some((_, at)) = self.order.front() {
            if now_ms - *at <= self.ttl_ms {
                break;
            }
            if let Some((old, _)) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_and_stale_events_are_caught() {
        let cfg = DedupConfig::with_pointer("/id").event("metric:recorded", "/metricId");
        let mut inbox = Inbox::new(
            Some(cfg),
            Some(Freshness::new(Duration::from_secs(300))),
            vec![],
        );
        let now = 1_700_000_000_000;
        let ev = r#"[{"id":"a"}]"#;
        assert_eq!(inbox.check("/", "x", ev, None, now), Verdict::Deliver);
        assert_eq!(inbox.check("/", "x", ev, None, now), Verdict::Duplicate);
        assert_eq!(inbox.check("/other", "x", ev, None, now), Verdict::Deliver);
        let m = r#"[{"id":"a","metricId":5}]"#;
        assert_eq!(
            inbox.check("/", "metric:recorded", m, None, now),
            Verdict::Deliver
        );
        assert_eq!(
            inbox.check("/", "metric:recorded", m, None, now),
            Verdict::Duplicate
        );
        assert_eq!(
            inbox.check("/", "y", "[1]", None, now),
            Verdict::Deliver,
            "no id"
        );
        assert_eq!(
            inbox.check("/", "y", "[1]", Some("o1"), now),
            Verdict::Deliver
        );
        assert_eq!(
            inbox.check("/", "z", "[2]", Some("o1"), now),
            Verdict::Duplicate
        );
        let old = r#"[{"id":"b","timestamp":"2023-11-14T22:00:00Z"}]"#;
        assert_eq!(inbox.check("/", "x", old, None, now), Verdict::Stale);
        let fresh = r#"[{"id":"c","timestamp":1699999990000}]"#;
        assert_eq!(inbox.check("/", "x", fresh, None, now), Verdict::Deliver);
        let persisted = inbox.take_new();
        assert_eq!(persisted.len(), 5);
        // A restart primed with what was persisted still drops the repeat.
        let persisted = persisted
            .iter()
            .map(|(id, at)| (id.to_string(), *at))
            .collect();
        let mut again = Inbox::new(Some(DedupConfig::with_pointer("/id")), None, persisted);
        assert_eq!(again.check("/", "x", ev, None, now + 1), Verdict::Duplicate);
    }

    #[test]
    fn the_window_forgets_the_oldest_and_the_expired() {
        let cfg = DedupConfig {
            window: 2,
            ttl: Duration::from_secs(10),
            ..DedupConfig::with_pointer("/id")
        };
        let mut inbox = Inbox::new(Some(cfg), None, vec![]);
        let ev = |i: u32| format!(r#"[{{"id":{i}}}]"#);
        for i in 0..3 {
            assert_eq!(inbox.check("/", "e", &ev(i), None, 0), Verdict::Deliver);
        }
        assert_eq!(
            inbox.check("/", "e", &ev(0), None, 0),
            Verdict::Deliver,
            "evicted"
        );
        assert_eq!(inbox.check("/", "e", &ev(2), None, 0), Verdict::Duplicate);
        assert_eq!(
            inbox.check("/", "e", &ev(2), None, 20_000),
            Verdict::Deliver,
            "expired"
        );
    }
}
