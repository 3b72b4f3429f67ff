//! Sending the outbox. Entries are fetched from the store in windows while a namespace is
//! ready, written in order (highest lane first, by age within a lane) as the rate limits
//! allow, and retired once delivered: acknowledged by the server when an ack was asked for
//! (the entry's sequence number is its ack id), otherwise flushed to a healthy link.
//!
//! Up to `max_in_flight` acknowledgements are awaited at once, so a backlog drains pipelined.
//! An ack that does not come within `ack_timeout` sends the entry again with the same key;
//! after `max_sends` it is given up. Whatever is not delivered when a link drops stays in the
//! store and goes again, in order and with the same key, on the next link.
//!
//! The `Low` lane is battery-aware ([`LowLane`]): while the radio is asleep its entries wait,
//! in order, for traffic that wakes the radio anyway (the driver says when) or for
//! `max_delay`, and then go together.
//!
//! This is also the one registry of callers waiting for an acknowledgement: a waiter is
//! registered under a token when its emit arrives and moved to the entry's sequence number
//! when the store reports the commit, so it never travels through the store.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::Duration,
};

use tokio::{sync::oneshot, time::Instant};
use tracing::warn;

use super::{actions::Actions, listeners::Listeners, namespaces::Namespaces};
use crate::{
    args::AckReply,
    codec::json::RawJson,
    error::Error,
    event::{Event, Notice},
    metrics::Samples,
    outbox::{LowLane, LowLaneHold, OutboxConfig, Priority},
    protocol::{EventData, Rejection, Then, Wire},
    ratelimit::Limiter,
    store::{Cmd, Gone, NewEntry, Reply, StoredEntry, idempotency_key},
    time::Now,
};

/// Where an emit's acknowledgement goes.
pub(crate) type AckTx = oneshot::Sender<Result<AckReply, Error>>;

/// Entries asked for in one fetch at most.
const FETCH: usize = 512;

/// A caller waiting for an entry's acknowledgement, until the entry's TTL if it has one.
struct Waiter {
    tx: AckTx,
    expires: Option<Instant>,
}

impl Waiter {
    fn answer(self, result: Result<AckReply, Error>) {
        let _ = self.tx.send(result);
    }
}

/// An entry written and awaiting its acknowledgement.
struct InFlight {
    frames: Vec<crate::transport::Frame>,
    sent_at: Instant,
    sends: u32,
    namespace: Arc<str>,
    event: String,
}

/// What sending needs from the rest of the engine.
pub(crate) struct Link<'a> {
    /// The link's protocol, to encode entries.
    pub(crate) wire: &'a mut Wire,
    /// Which namespaces may flow.
    pub(crate) namespaces: &'a Namespaces,
    /// Listeners of outbound events.
    pub(crate) listeners: &'a mut Listeners,
    /// The store's id, the prefix of every idempotency key.
    pub(crate) client_id: &'a str,
    /// Whether the radio is awake anyway (traffic within its tail).
    pub(crate) radio_awake: bool,
}

/// The engine's view of the outbox. See the module docs.
pub(crate) struct Flush {
    max_in_flight: usize,
    ack_timeout: Duration,
    max_sends: u32,
    /// Highest sequence number fetched since the last rewind, per lane
    /// ([`Priority::DESCENDING`]).
    cursors: [u64; 3],
    /// The id of the latest fetch; answers to older ones are stale.
    fetch_id: u64,
    /// A fetch is outstanding.
    fetching: bool,
    /// Fetched, waiting for a rate-limit token.
    held: VecDeque<StoredEntry>,
    low_lane: LowLane,
    /// The network path is expensive or constrained.
    costly_path: bool,
    /// The app asked for everything now (the background flush, a polite close).
    low_forced: bool,
    /// `Low` entries waiting for the radio, in order, each with when it must go anyway.
    low_waiting: VecDeque<(StoredEntry, Instant)>,
    limiter: Limiter,
    /// When the rate limit lets the next held entry go.
    resume_at: Option<Instant>,
    in_flight: HashMap<u64, InFlight>,
    /// Written without an ack request; delivered once the write is flushed.
    written: Vec<u64>,
    /// Delivered, to be deleted from the store.
    delivered: Vec<u64>,
    next_token: u64,
    /// Callers waiting for an ack, by token, until the store reports their entry committed.
    by_token: HashMap<u64, Waiter>,
    /// Callers waiting for an ack, by sequence number, across links.
    waiters: HashMap<u64, Waiter>,
    /// Frames of `Low` entries written since the driver last asked (their traffic is not a
    /// reason for more `Low` traffic).
    pub(crate) low_frames: usize,
    /// Events written (resends and volatile emits included).
    pub(crate) sent: u64,
    /// Acknowledgement latencies.
    pub(crate) latencies: Samples,
    /// Pauses the server asked for.
    pub(crate) rate_limit_pauses: u64,
}

impl Flush {
    pub(crate) fn new(config: &OutboxConfig, now: Now) -> Self {
        Self {
            max_in_flight: config.max_in_flight,
            ack_timeout: config.ack_timeout,
            max_sends: config.max_sends,
            cursors: [0; 3],
            fetch_id: 0,
            fetching: false,
            held: VecDeque::new(),
            low_lane: config.low_lane,
            costly_path: false,
            low_forced: false,
            low_waiting: VecDeque::new(),
            limiter: Limiter::new(&config.rate_limits, now.at),
            resume_at: None,
            in_flight: HashMap::new(),
            written: Vec::new(),
            delivered: Vec::new(),
            next_token: 1,
            by_token: HashMap::new(),
            waiters: HashMap::new(),
            low_frames: 0,
            sent: 0,
            latencies: Samples::default(),
            rate_limit_pauses: 0,
        }
    }

    /// A new durable emit: stored (the caller hears the commit on `reply`), and its waiter,
    /// if the caller waits for the acknowledgement, kept here until the answer, or the
    /// entry's TTL, whichever comes first (offline too).
    pub(crate) fn emit(
        &mut self,
        entry: NewEntry,
        waiter: Option<AckTx>,
        reply: Reply<u64>,
        now: Now,
        out: &mut Actions,
    ) {
        let expires = entry.ttl.map(|ttl| now.at + ttl);
        let token = waiter.map(|tx| {
            let token = self.next_token;
            self.next_token += 1;
            self.by_token.insert(token, Waiter { tx, expires });
            token
        });
        out.store.push(Cmd::Append {
            entry,
            token,
            reply,
        });
    }

    /// The store committed the emit with `token` as `seq` (or refused it: its caller heard
    /// why from the store).
    pub(crate) fn appended(&mut self, token: u64, seq: Option<u64>) {
        if let (Some(w), Some(seq)) = (self.by_token.remove(&token), seq) {
            self.waiters.insert(seq, w);
        }
    }

    /// Starts over from the oldest entry (a new link, a namespace became ready, a retry). An
    /// outstanding fetch is abandoned: its answer will be stale.
    pub(crate) fn rewind(&mut self) {
        self.cursors = [0; 3];
        self.fetch_id += 1;
        self.fetching = false;
        self.held.clear();
        self.low_waiting.clear();
        self.resume_at = None;
    }

    /// Asks the store for the next window when room is free, a namespace may flow and no
    /// fetched entries wait.
    pub(crate) fn fetch_if_due(&mut self, any_ready: bool, out: &mut Actions) {
        let room = self.max_in_flight.saturating_sub(self.in_flight.len());
        if self.fetching || !self.held.is_empty() || room == 0 || !any_ready {
            return;
        }
        self.fetch(room.min(FETCH), true, out);
    }

    /// Asks for whatever is stored now without parking (the polite close's last flush);
    /// returns the fetch's id, or `None` when no room is left.
    pub(crate) fn fetch_now(&mut self, out: &mut Actions) -> Option<u64> {
        // Closing: the `Low` lane has nothing left to wait for.
        self.force_low(true);
        let room = self.max_in_flight.saturating_sub(self.in_flight.len());
        (room > 0).then(|| self.fetch(room.min(FETCH), false, out))
    }

    fn fetch(&mut self, limit: usize, park: bool, out: &mut Actions) -> u64 {
        self.fetch_id += 1;
        self.fetching = true;
        out.store.push(Cmd::Fetch {
            id: self.fetch_id,
            after: self.cursors,
            limit,
            park,
        });
        self.fetch_id
    }

    /// The store answered fetch `id`: writes what may go.
    pub(crate) fn fetched(
        &mut self,
        id: u64,
        entries: Vec<StoredEntry>,
        now: Now,
        link: &mut Link<'_>,
        out: &mut Actions,
    ) {
        if id != self.fetch_id {
            return; // Asked before a rewind: the next fetch starts over anyway.
        }
        self.fetching = false;
        for e in entries {
            let lane = lane_index(e.lane);
            self.cursors[lane] = self.cursors[lane].max(e.seq);
            self.held.push_back(e);
        }
        self.pump(now, link, out);
    }

    /// Sends held entries while the rate limits allow; `Low` entries wait for the radio.
    fn pump(&mut self, now: Now, link: &mut Link<'_>, out: &mut Actions) {
        self.resume_at = None;
        let mut awake = link.radio_awake;
        while let Some(e) = self.held.front() {
            // A namespace not joined (yet), or an entry already out: it waits in the store.
            if !link.namespaces.is_ready(&e.namespace) || self.in_flight.contains_key(&e.seq) {
                self.held.pop_front();
                continue;
            }
            if e.lane == Priority::Low {
                let go = awake || !self.holds_low() || self.low_wait_left(e, now).is_zero();
                if go && !self.low_waiting.is_empty() {
                    // Older `Low` entries go first.
                    self.release_low();
                    continue;
                }
                if !go {
                    if let Some(e) = self.held.pop_front() {
                        let due = now.at + self.low_wait_left(&e, now);
                        self.low_waiting.push_back((e, due));
                    }
                    continue;
                }
            }
            if let Err(at) = self.limiter.try_take(now.at) {
                self.resume_at = Some(at);
                return;
            }
            if let Some(e) = self.held.pop_front() {
                self.send(e, now, link, out);
                // This write wakes the radio: whatever follows rides along.
                awake = true;
            }
        }
    }

    /// Whether `Low` entries wait for the radio now.
    fn holds_low(&self) -> bool {
        !self.low_forced
            && match self.low_lane.hold {
                LowLaneHold::Always => true,
                LowLaneHold::OnCostlyPaths => self.costly_path,
                LowLaneHold::Never => false,
            }
    }

    /// How much longer `e` may wait for the radio (by the wall clock: the entry's age counts
    /// from its emit, across restarts).
    fn low_wait_left(&self, e: &StoredEntry, now: Now) -> Duration {
        let waited = Duration::from_millis(now.wall_ms.saturating_sub(e.created_ms).max(0) as u64);
        self.low_lane.max_delay.saturating_sub(waited)
    }

    /// Puts the waiting `Low` entries back before the first `Low` entry held, in order.
    fn release_low(&mut self) {
        let at = self
            .held
            .iter()
            .position(|e| e.lane == Priority::Low)
            .unwrap_or(self.held.len());
        for (e, _) in self.low_waiting.drain(..).rev() {
            self.held.insert(at, e);
        }
    }

    /// Whether `Low` entries wait for the radio.
    pub(crate) fn low_waiting(&self) -> bool {
        !self.low_waiting.is_empty()
    }

    /// The radio is awake anyway (other traffic): waiting `Low` entries go now.
    pub(crate) fn radio_awake(&mut self, now: Now, link: &mut Link<'_>, out: &mut Actions) {
        if !self.low_waiting.is_empty() {
            self.release_low();
            self.pump(now, link, out);
        }
    }

    /// The network path became costly (or not): with [`LowLaneHold::OnCostlyPaths`] the
    /// `Low` lane waits only then.
    pub(crate) fn set_costly_path(&mut self, costly: bool) {
        self.costly_path = costly;
    }

    /// The app wants everything sent now (`true`: a background flush) or the usual schedule
    /// back (`false`). Waiting entries go with the next pump.
    pub(crate) fn force_low(&mut self, forced: bool) {
        self.low_forced = forced;
    }

    fn send(&mut self, e: StoredEntry, now: Now, link: &mut Link<'_>, out: &mut Actions) {
        let seq = e.seq;
        let key = idempotency_key(link.client_id, seq);
        let event = EventData {
            namespace: Arc::from(e.namespace.as_str()),
            name: Arc::from(e.event.as_str()),
            args: RawJson::validated(e.args),
            attachments: e.attachments,
        };
        let ack = e.want_ack.then_some(seq);
        let mut frames = Vec::with_capacity(1 + event.attachments.len());
        if let Err(err) = link.wire.push_event(&mut frames, &event, ack, Some(&key)) {
            warn!(event = %e.event, error = %err, "outbox entry refused by the server's limit");
            let err = Error::InvalidArgs(err.to_string());
            self.give_up(seq, &event.namespace, e.event, err, out);
            return;
        }
        self.sent += 1;
        if e.lane == Priority::Low {
            self.low_frames += frames.len();
        }
        let namespace = event.namespace.clone();
        if link.listeners.wants_outbound() {
            link.listeners
                .dispatch(false, Event::new(event, None, None));
        }
        if e.want_ack {
            out.frames.extend(frames.iter().cloned());
            let f = InFlight {
                frames,
                sent_at: now.at,
                sends: 1,
                namespace,
                event: e.event,
            };
            self.in_flight.insert(seq, f);
        } else {
            out.frames.extend(frames);
            self.written.push(seq);
        }
    }

    /// What was written reached a healthy link: entries that asked no ack are delivered.
    pub(crate) fn flushed(&mut self, out: &mut Actions) {
        self.delivered.append(&mut self.written);
        self.post_delivered(out);
    }

    /// Asks the store to delete what was delivered since the last call (acknowledged entries,
    /// and written ones once flushed): one command per step, however many acks it handled.
    pub(crate) fn post_delivered(&mut self, out: &mut Actions) {
        if !self.delivered.is_empty() {
            out.store
                .push(Cmd::Delivered(std::mem::take(&mut self.delivered)));
        }
    }

    /// An acknowledgement for entry `seq`; false when it is not one in flight (already
    /// acknowledged, given up, or not an entry's).
    pub(crate) fn acked(&mut self, seq: u64, reply: AckReply, now: Now) -> bool {
        let Some(f) = self.in_flight.remove(&seq) else {
            return false;
        };
        self.latencies
            .record(now.at.saturating_duration_since(f.sent_at));
        self.delivered.push(seq);
        if let Some(w) = self.waiters.remove(&seq) {
            w.answer(Ok(reply));
        }
        true
    }

    /// The server refused entry `seq`: retried from the oldest, or failed for good with
    /// [`Error::Rejected`]. False when `seq` is not in flight.
    pub(crate) fn refused(&mut self, seq: u64, rejection: Rejection, out: &mut Actions) -> bool {
        let Some(f) = self.in_flight.remove(&seq) else {
            return false;
        };
        if let Then::Retry { .. } = rejection.then {
            self.rewind();
            return true;
        }
        warn!(event = %f.event, code = %rejection.code, "emit rejected by the server");
        let err = Error::Rejected {
            code: rejection.code,
            message: rejection.message,
        };
        self.give_up(seq, &f.namespace, f.event, err, out);
        true
    }

    /// The server asked for a pause.
    pub(crate) fn pause(&mut self, now: Now, pause: Duration) {
        warn!(?pause, "server rate limit exceeded; pausing the outbox");
        self.rate_limit_pauses += 1;
        self.limiter.pause_until(now.at + pause);
    }

    /// When [`Flush::on_timeout`] or [`Flush::expire_waiters`] is next needed.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let acks = self
            .in_flight
            .values()
            .map(|f| f.sent_at + self.ack_timeout);
        let ttls = self.waiters.values().chain(self.by_token.values());
        acks.chain(self.resume_at)
            .chain(ttls.filter_map(|w| w.expires))
            .chain(self.low_waiting.front().map(|(_, due)| *due))
            .min()
    }

    /// Callers whose entry's TTL passed hear [`Error::Expired`], link or no link; such an
    /// entry is not sent again (the store drops it on its next pass).
    pub(crate) fn expire_waiters(&mut self, now: Now) {
        let due = |w: &Waiter| w.expires.is_some_and(|at| at <= now.at);
        let seqs: Vec<u64> = self
            .waiters
            .iter()
            .filter(|(_, w)| due(w))
            .map(|(s, _)| *s)
            .collect();
        for seq in seqs {
            self.in_flight.remove(&seq);
            self.held.retain(|e| e.seq != seq);
            if let Some(w) = self.waiters.remove(&seq) {
                w.answer(Err(Error::Expired));
            }
        }
        let tokens: Vec<u64> = self
            .by_token
            .iter()
            .filter(|(_, w)| due(w))
            .map(|(t, _)| *t)
            .collect();
        for token in tokens {
            if let Some(w) = self.by_token.remove(&token) {
                w.answer(Err(Error::Expired));
            }
        }
    }

    /// Time passed: sends again what was not acknowledged in time (giving up after
    /// `max_sends`), and what the rate limit held back.
    pub(crate) fn on_timeout(&mut self, now: Now, link: &mut Link<'_>, out: &mut Actions) {
        let mut overdue: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.sent_at + self.ack_timeout <= now.at)
            .map(|(s, _)| *s)
            .collect();
        overdue.sort_unstable();
        for seq in overdue {
            let Some(f) = self.in_flight.get_mut(&seq) else {
                continue;
            };
            if f.sends >= self.max_sends {
                if let Some(f) = self.in_flight.remove(&seq) {
                    let err = Error::AckTimeout(self.ack_timeout);
                    self.give_up(seq, &f.namespace, f.event, err, out);
                }
                continue;
            }
            f.sends += 1;
            f.sent_at = now.at;
            out.frames.extend(f.frames.iter().cloned());
            self.sent += 1;
        }
        let low_due = self
            .low_waiting
            .front()
            .is_some_and(|(_, due)| *due <= now.at);
        if low_due {
            // The oldest waited long enough: every waiting entry goes, on one wake-up.
            self.release_low();
        }
        if low_due || self.resume_at.is_some_and(|at| at <= now.at) {
            self.pump(now, link, out);
        }
    }

    fn give_up(&mut self, seq: u64, namespace: &str, event: String, err: Error, out: &mut Actions) {
        out.store.push(Cmd::Failed(vec![seq]));
        if let Some(w) = self.waiters.remove(&seq) {
            w.answer(Err(err.clone()));
        }
        out.notify(Notice::EmitFailed {
            namespace: namespace.to_owned(),
            event,
            error: err.to_string(),
        });
    }

    /// Entries left the store undelivered: they are not sent (again), and their callers hear
    /// why.
    pub(crate) fn gone(&mut self, seqs: &[u64], why: Gone) {
        for seq in seqs {
            self.in_flight.remove(seq);
            if let Some(w) = self.waiters.remove(seq) {
                let err = match why {
                    Gone::Expired => Error::Expired,
                    Gone::Overflow { entries, bytes } => Error::OutboxFull { entries, bytes },
                    Gone::Removed => Error::Removed,
                };
                w.answer(Err(err));
            }
        }
        self.held.retain(|e| !seqs.contains(&e.seq));
    }

    /// The link is gone: nothing is in flight any more. Callers keep waiting; their entries
    /// are sent again on the next link.
    pub(crate) fn link_lost(&mut self, out: &mut Actions) {
        // Acknowledged entries are delivered whatever happens to the link now.
        self.post_delivered(out);
        self.in_flight.clear();
        // Not flushed, so not known to be delivered: they stay in the store.
        self.written.clear();
        // Callers who gave up (their own timeout) need no answer when the entry goes later.
        self.waiters.retain(|_, w| !w.tx.is_closed());
        self.by_token.retain(|_, w| !w.tx.is_closed());
        self.rewind();
        out.store.push(Cmd::Unpark);
    }

    /// The client closes: every waiting caller hears it.
    pub(crate) fn closed(&mut self) {
        for (_, w) in self.waiters.drain().chain(self.by_token.drain()) {
            w.answer(Err(Error::Closed));
        }
    }
}

fn lane_index(lane: Priority) -> usize {
    Priority::DESCENDING
        .iter()
        .position(|p| *p == lane)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::*;
    use crate::{protocol::test_wire, transport::Frame};

    const MS: Duration = Duration::from_millis(1);

    /// The link context borrowed from a rig's fields (disjoint from its `flush`).
    macro_rules! link {
        ($r:expr) => {
            Link {
                wire: &mut $r.wire,
                namespaces: &$r.namespaces,
                listeners: &mut $r.listeners,
                client_id: "c",
                radio_awake: $r.awake,
            }
        };
    }

    struct Rig {
        flush: Flush,
        wire: Wire,
        namespaces: Namespaces,
        listeners: Listeners,
        t0: Now,
        /// Whether the radio is awake anyway.
        awake: bool,
    }

    impl Rig {
        fn new(config: OutboxConfig) -> Self {
            let t0 = Now {
                at: Instant::now(),
                wall_ms: 1_700_000_000_000,
            };
            let mut namespaces = Namespaces::new(&["/".into()], false);
            namespaces.joined("/");
            namespaces.mark_ready("/");
            Self {
                flush: Flush::new(&config, t0),
                wire: test_wire(25_000, 20_000),
                namespaces,
                listeners: Listeners::default(),
                t0,
                awake: false,
            }
        }

        fn at(&self, ms: u32) -> Now {
            Now {
                at: self.t0.at + ms * MS,
                wall_ms: self.t0.wall_ms + i64::from(ms),
            }
        }

        /// An emit whose caller waits for the ack, committed by the store as `seq`.
        fn emit_waiting(&mut self, seq: u64) -> oneshot::Receiver<Result<AckReply, Error>> {
            let (waiter, rx) = oneshot::channel();
            let (reply, _) = oneshot::channel();
            let mut out = Actions::default();
            let now = self.t0;
            self.flush
                .emit(entry(seq).0, Some(waiter), reply, now, &mut out);
            let Some(Cmd::Append { token, .. }) = out.store.pop() else {
                panic!("the emit must go to the store")
            };
            self.flush
                .appended(token.expect("a waiter needs a token"), Some(seq));
            rx
        }

        /// Fetches and sends the stored entries `seqs` at `ms`; returns the frames written.
        fn send(&mut self, ms: u32, seqs: &[u64]) -> Vec<String> {
            self.send_entries(ms, seqs.iter().map(|s| entry(*s).1).collect())
        }

        /// Fetches and sends `entries` at `ms`; returns the frames written.
        fn send_entries(&mut self, ms: u32, entries: Vec<StoredEntry>) -> Vec<String> {
            let mut out = Actions::default();
            self.flush.fetch_if_due(true, &mut out);
            let Some(Cmd::Fetch { id, .. }) = out.store.pop() else {
                panic!("a fetch is due")
            };
            let now = self.at(ms);
            let mut out = Actions::default();
            let mut link = link!(self);
            self.flush.fetched(id, entries, now, &mut link, &mut out);
            texts(&out)
        }

        fn tick(&mut self, ms: u32) -> Actions {
            let now = self.at(ms);
            let mut out = Actions::default();
            let mut link = link!(self);
            self.flush.on_timeout(now, &mut link, &mut out);
            out
        }
    }

    fn entry(seq: u64) -> (NewEntry, StoredEntry) {
        let args = format!(r#"[{{"n":{seq}}}]"#);
        let new = NewEntry {
            lane: Priority::Normal,
            namespace: Arc::from("/"),
            event: "tick".into(),
            args: args.clone(),
            attachments: vec![],
            want_ack: true,
            ttl: None,
            coalesce_key: None,
        };
        let stored = StoredEntry {
            seq,
            lane: Priority::Normal,
            namespace: "/".into(),
            event: "tick".into(),
            args,
            attachments: vec![],
            want_ack: true,
            created_ms: 0,
            expires_ms: None,
        };
        (new, stored)
    }

    /// A `Low` entry emitted `ms` after the rig's start.
    fn low(r: &Rig, seq: u64, ms: u32) -> StoredEntry {
        StoredEntry {
            lane: Priority::Low,
            created_ms: r.at(ms).wall_ms,
            ..entry(seq).1
        }
    }

    /// The `n` values of the frames, in order.
    fn sent(frames: &[String]) -> Vec<u64> {
        frames
            .iter()
            .map(|f| {
                let at = f.find(r#""n":"#).expect("a tick") + 4;
                let digits: String = f[at..].chars().take_while(char::is_ascii_digit).collect();
                digits.parse().unwrap()
            })
            .collect()
    }

    fn texts(out: &Actions) -> Vec<String> {
        out.frames
            .iter()
            .map(|f| match f {
                Frame::Text(t) => t.to_string(),
                Frame::Binary(_) => "<binary>".into(),
            })
            .collect()
    }

    fn reply() -> AckReply {
        AckReply {
            args: RawJson::validated("[true]".into()),
            attachments: vec![],
        }
    }

    fn config() -> OutboxConfig {
        OutboxConfig {
            ack_timeout: Duration::from_millis(100),
            max_sends: 3,
            ..OutboxConfig::default()
        }
    }

    #[test]
    fn an_entry_goes_out_with_its_key_and_its_ack_answers_the_waiter_once() {
        let mut r = Rig::new(config());
        let mut waiter = r.emit_waiting(7);
        let sent = r.send(0, &[7]);
        assert_eq!(sent, [r#"427["tick",{"idempotencyKey":"c-7","n":7}]"#]);
        assert!(
            !r.flush.acked(99, reply(), r.at(1)),
            "an ack for an unknown id"
        );
        assert!(r.flush.acked(7, reply(), r.at(5)));
        assert_eq!(waiter.try_recv().unwrap(), Ok(reply()));
        assert!(
            !r.flush.acked(7, reply(), r.at(6)),
            "a second ack is ignored"
        );
        let mut out = Actions::default();
        r.flush.post_delivered(&mut out);
        assert!(matches!(&out.store[..], [Cmd::Delivered(s)] if s == &[7]));
        assert_eq!(r.flush.latencies.summary().p50, 5 * MS);
    }

    #[test]
    fn an_unacknowledged_entry_is_resent_with_the_same_key_then_given_up() {
        let mut r = Rig::new(config());
        let mut waiter = r.emit_waiting(1);
        let first = r.send(0, &[1]);
        assert_eq!(r.flush.poll_timeout(), Some(r.at(100).at));
        assert!(r.tick(99).frames.is_empty(), "not yet overdue");
        let again = texts(&r.tick(100));
        assert_eq!(again, first, "the same frame, the same key");
        assert_eq!(texts(&r.tick(200)), first);
        let out = r.tick(300);
        assert!(out.frames.is_empty(), "three sends: given up");
        assert!(matches!(&out.store[..], [Cmd::Failed(s)] if s == &[1]));
        assert!(matches!(
            &out.notices[..],
            [Notice::EmitFailed { event, error, .. }] if event == "tick" && error.contains("acknowledgement")
        ));
        assert!(matches!(
            waiter.try_recv().unwrap(),
            Err(Error::AckTimeout(_))
        ));
        assert_eq!(r.flush.sent, 3);
    }

    #[test]
    fn a_late_ack_after_a_resend_resolves_the_waiter_once() {
        let mut r = Rig::new(config());
        let mut waiter = r.emit_waiting(1);
        r.send(0, &[1]);
        r.tick(100);
        // The first copy's ack arrives after the resend, then the second copy's.
        assert!(r.flush.acked(1, reply(), r.at(120)));
        assert!(!r.flush.acked(1, reply(), r.at(130)));
        assert_eq!(waiter.try_recv().unwrap(), Ok(reply()));
        assert!(r.tick(300).frames.is_empty(), "no further resend");
    }

    #[test]
    fn a_ttl_that_expires_in_flight_reaches_the_waiting_caller() {
        let mut r = Rig::new(config());
        let mut waiter = r.emit_waiting(4);
        r.send(0, &[4]);
        r.flush.gone(&[4], Gone::Expired);
        assert_eq!(waiter.try_recv().unwrap(), Err(Error::Expired));
        assert!(
            r.tick(100).frames.is_empty(),
            "an expired entry is not resent"
        );
        assert!(!r.flush.acked(4, reply(), r.at(110)));
        let mut w = r.emit_waiting(5);
        r.flush.gone(&[5], Gone::Removed);
        assert_eq!(w.try_recv().unwrap(), Err(Error::Removed));
    }

    #[test]
    fn a_waiting_caller_hears_its_ttl_pass_even_offline() {
        let mut r = Rig::new(config());
        let (tx, mut rx) = oneshot::channel();
        let (reply, _) = oneshot::channel();
        let (mut new, _) = entry(1);
        new.ttl = Some(Duration::from_millis(40));
        let now = r.at(0);
        r.flush
            .emit(new, Some(tx), reply, now, &mut Actions::default());
        assert_eq!(r.flush.poll_timeout(), Some(r.at(40).at), "no link needed");
        r.flush.expire_waiters(r.at(39));
        assert!(rx.try_recv().is_err(), "not yet");
        r.flush.appended(1, Some(1));
        r.send(10, &[1]);
        r.flush.expire_waiters(r.at(40));
        assert_eq!(rx.try_recv().unwrap(), Err(Error::Expired));
        assert!(r.tick(110).frames.is_empty(), "expired: not sent again");
    }

    #[test]
    fn a_refusal_fails_the_entry_or_sends_it_again_from_the_oldest() {
        let mut r = Rig::new(config());
        let mut waiter = r.emit_waiting(1);
        r.send(0, &[1, 2]);
        let retry = Rejection {
            code: "SERVICE_UNAVAILABLE".into(),
            message: "later".into(),
            then: Then::Retry { pause: None },
        };
        let mut out = Actions::default();
        assert!(r.flush.refused(2, retry, &mut out));
        assert!(
            out.store.is_empty() && out.notices.is_empty(),
            "kept for a retry"
        );
        assert_eq!(
            r.send(1, &[1, 2]).len(),
            1,
            "1 is still in flight, 2 goes again"
        );
        let fail = Rejection {
            code: "INVALID".into(),
            message: "no".into(),
            then: Then::Fail,
        };
        let mut out = Actions::default();
        assert!(r.flush.refused(1, fail, &mut out));
        assert!(matches!(&out.store[..], [Cmd::Failed(s)] if s == &[1]));
        assert!(
            matches!(waiter.try_recv().unwrap(), Err(Error::Rejected { ref code, .. }) if code == "INVALID")
        );
    }

    #[test]
    fn the_window_holds_max_in_flight_and_a_rate_limit_spaces_sends() {
        let mut r = Rig::new(OutboxConfig {
            max_in_flight: 2,
            rate_limits: vec![crate::ratelimit::RateLimit::new(
                1,
                Duration::from_millis(50),
            )],
            ..config()
        });
        let sent = r.send(0, &[1, 2]);
        assert_eq!(sent.len(), 1, "one token: the second waits");
        assert_eq!(r.flush.poll_timeout(), Some(r.at(50).at));
        assert_eq!(texts(&r.tick(50)).len(), 1);
        let mut out = Actions::default();
        r.flush.fetch_if_due(true, &mut out);
        assert!(out.store.is_empty(), "two in flight: no room for a fetch");
        r.flush.acked(1, reply(), r.at(60));
        r.flush.fetch_if_due(true, &mut out);
        assert!(matches!(&out.store[..], [Cmd::Fetch { limit: 1, .. }]));
    }

    #[test]
    fn low_entries_wait_for_the_radio_and_ride_along_with_other_traffic() {
        let mut r = Rig::new(config());
        let (l1, l2) = (low(&r, 1, 0), low(&r, 2, 0));
        assert!(r.send_entries(0, vec![l1, l2]).is_empty(), "radio asleep");
        assert_eq!(r.flush.poll_timeout(), Some(r.at(60_000).at), "max_delay");
        // A Normal entry wakes the radio: it goes first, the waiting Low ones after it, in
        // order, with the newer Low one of the same fetch last.
        let (n3, l4) = (entry(3).1, low(&r, 4, 5_000));
        assert_eq!(sent(&r.send_entries(5_000, vec![n3, l4])), [3, 1, 2, 4]);
        // Traffic the engine saw (an inbound event, a heartbeat) lets waiting ones go too.
        assert!(r.send_entries(6_000, vec![low(&r, 5, 6_000)]).is_empty());
        let mut out = Actions::default();
        let now = r.at(7_000);
        r.awake = true;
        let mut link = link!(r);
        r.flush.radio_awake(now, &mut link, &mut out);
        assert_eq!(sent(&texts(&out)), [5]);
    }

    #[test]
    fn low_entries_go_together_once_the_oldest_waited_max_delay() {
        let mut r = Rig::new(config());
        assert!(r.send_entries(0, vec![low(&r, 1, 0)]).is_empty());
        assert!(r.send_entries(10_000, vec![low(&r, 2, 10_000)]).is_empty());
        assert!(r.tick(59_999).frames.is_empty(), "not yet");
        assert_eq!(
            sent(&texts(&r.tick(60_000))),
            [1, 2],
            "one wake-up for both"
        );
    }

    #[test]
    fn the_low_lane_is_held_only_when_its_schedule_says() {
        let never = OutboxConfig {
            low_lane: LowLane {
                hold: LowLaneHold::Never,
                ..LowLane::default()
            },
            ..config()
        };
        let mut r = Rig::new(never);
        assert_eq!(sent(&r.send_entries(0, vec![low(&r, 1, 0)])), [1]);

        let costly = OutboxConfig {
            low_lane: LowLane {
                hold: LowLaneHold::OnCostlyPaths,
                ..LowLane::default()
            },
            ..config()
        };
        let mut r = Rig::new(costly);
        assert_eq!(sent(&r.send_entries(0, vec![low(&r, 1, 0)])), [1], "Wi-Fi");
        r.flush.set_costly_path(true);
        assert!(
            r.send_entries(10, vec![low(&r, 2, 10)]).is_empty(),
            "cellular"
        );
        // A background flush (or a close) wants everything now.
        r.flush.force_low(true);
        let mut out = Actions::default();
        let now = r.at(20);
        let mut link = link!(r);
        r.flush.radio_awake(now, &mut link, &mut out);
        assert_eq!(sent(&texts(&out)), [2]);
        assert_eq!(
            sent(&r.send_entries(30, vec![low(&r, 3, 30)])),
            [3],
            "forced"
        );
    }

    #[test]
    fn a_lost_link_keeps_waiters_and_unacknowledged_entries() {
        let mut r = Rig::new(config());
        let mut waiter = r.emit_waiting(1);
        r.send(0, &[1]);
        let mut out = Actions::default();
        r.flush.link_lost(&mut out);
        assert!(matches!(out.store.last(), Some(Cmd::Unpark)));
        assert!(waiter.try_recv().is_err(), "still waiting");
        assert!(
            r.tick(500).frames.is_empty(),
            "nothing in flight on no link"
        );
        // The next link sends it again from the store, same key; its ack answers the waiter.
        let again = r.send(600, &[1]);
        assert_eq!(again.len(), 1);
        assert!(r.flush.acked(1, reply(), r.at(610)));
        assert_eq!(waiter.try_recv().unwrap(), Ok(reply()));
        // A fetch asked before a rewind is stale.
        let mut out = Actions::default();
        r.flush.fetch_if_due(true, &mut out);
        let Some(Cmd::Fetch { id, .. }) = out.store.pop() else {
            panic!()
        };
        r.flush.rewind();
        let mut out = Actions::default();
        let now = r.at(700);
        let mut link = link!(r);
        r.flush
            .fetched(id, vec![entry(9).1], now, &mut link, &mut out);
        assert!(out.frames.is_empty(), "stale answer ignored");
        r.flush.closed();
    }
}
