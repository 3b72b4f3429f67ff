//! The inbound filter: drops events the app has already seen, and events too old to matter.
//!
//! Pure and synchronous: the engine asks it about each event and persists what it learned.

use std::{
    borrow::Cow,
    collections::{HashMap, HashSet, VecDeque},
    time::Duration,
};

use serde_json::value::RawValue;

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

/// The seen-id window.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    dedup: Option<DedupConfig>,
    freshness: Option<Freshness>,
    seen: HashSet<Box<str>>,
    order: VecDeque<(Box<str>, i64)>,
    /// Ids seen since the last [`Inbox::take_new`], to persist.
    new: Vec<(String, i64)>,
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
            dedup,
            freshness,
            window,
            ttl_ms,
            ..Self::default()
        };
        for (id, at) in persisted {
            inbox.remember(id.into_boxed_str(), at);
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
            Some(o) => Some(format!("{namespace}\u{0}@{o}")),
            None => self.dedup.as_ref().and_then(|d| {
                let pointer = d.per_event.get(name).or(d.pointer.as_ref())?;
                let v = lookup(args, pointer)?;
                Some(format!("{namespace}\u{0}{name}\u{0}{}", scalar_text(v)?))
            }),
        };
        let Some(id) = id else {
            return Verdict::Deliver;
        };
        self.expire(now_ms);
        if self.seen.contains(id.as_str()) {
            return Verdict::Duplicate;
        }
        self.new.push((id.clone(), now_ms));
        self.remember(id.into_boxed_str(), now_ms);
        Verdict::Deliver
    }

    /// Ids first seen since the last call, for the store.
    pub(crate) fn take_new(&mut self) -> Vec<(String, i64)> {
        std::mem::take(&mut self.new)
    }

    fn remember(&mut self, id: Box<str>, at: i64) {
        if self.seen.insert(id.clone()) {
            self.order.push_back((id, at));
        }
        while self.order.len() > self.window {
            if let Some((old, _)) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
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

/// The value at `pointer` (RFC 6901) inside the first element of the JSON array `args`,
/// as raw JSON text borrowed from `args`. Only the path is parsed; the rest is skipped.
pub(crate) fn lookup<'a>(args: &'a str, pointer: &str) -> Option<&'a RawValue> {
    let list: Vec<&'a RawValue> = serde_json::from_str(args).ok()?;
    let mut cur: &'a RawValue = list.first()?;
    if pointer.is_empty() {
        return Some(cur);
    }
    for seg in pointer.strip_prefix('/')?.split('/') {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        let text: &'a str = cur.get();
        cur = if text.starts_with('{') {
            let map: HashMap<Cow<'a, str>, &'a RawValue> = serde_json::from_str(text).ok()?;
            map.get(seg.as_str()).copied()?
        } else if text.starts_with('[') {
            let items: Vec<&'a RawValue> = serde_json::from_str(text).ok()?;
            items.get(seg.parse::<usize>().ok()?).copied()?
        } else {
            return None;
        };
    }
    Some(cur)
}

/// A string's contents or a number's digits; other values are not ids.
fn scalar_text(v: &RawValue) -> Option<String> {
    let t = v.get();
    if t.starts_with('"') {
        serde_json::from_str::<String>(t).ok()
    } else if t.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        Some(t.to_owned())
    } else {
        None
    }
}

/// Milliseconds since the epoch from an RFC 3339 string or a number.
pub(crate) fn timestamp_ms(v: &RawValue) -> Option<i64> {
    let t = v.get();
    if t.starts_with('"') {
        parse_rfc3339(&serde_json::from_str::<String>(t).ok()?)
    } else {
        let n: f64 = t.parse().ok()?;
        Some(if n < 1e11 { n * 1000.0 } else { n } as i64)
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff][Z|±HH:MM]` into milliseconds since the epoch.
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let frac = s.get(start..i)?;
        if frac.is_empty() {
            return None;
        }
        ms = format!("{frac:0<3}")[..3].parse().ok()?;
    }
    let offset_min = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let m = num(i + 1..i + 3)? * 60 + num(i + 4..i + 6)?;
            if *sign == b'+' { m } else { -m }
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Some(secs * 1000 + ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_timestamps() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2024-01-15T10:30:00.123Z"),
            Some(1_705_314_600_123)
        );
        assert_eq!(
            parse_rfc3339("2024-01-15T12:30:00+02:00"),
            Some(1_705_314_600_000)
        );
        assert_eq!(
            parse_rfc3339("2024-01-15T10:30:00.5Z"),
            Some(1_705_314_600_500)
        );
        for bad in [
            "2024-13-01T00:00:00Z",
            "2024-01-15",
            "2024-01-15T10:30:00",
            "x",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn ids_are_found_by_pointer() {
        let args = r#"[{"id":"m1","meta":{"eventId":7,"a/b":"s"}},2]"#;
        assert_eq!(lookup(args, "/id").unwrap().get(), r#""m1""#);
        assert_eq!(lookup(args, "/meta/eventId").unwrap().get(), "7");
        assert_eq!(lookup(args, "/meta/a~1b").unwrap().get(), r#""s""#);
        assert!(lookup(args, "/missing").is_none());
        assert!(lookup("[]", "/id").is_none());
        assert!(lookup(r#"[[10,20]]"#, "/1").is_some_and(|v| v.get() == "20"));
    }

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
