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
//! The live path: the engine numbers new entries itself (from a block of sequence numbers the
//! store reserved for it), so while the link is up and nothing older waits, a new entry is
//! written to the socket at once, while the store commits it. An entry leaves the store only
//! once it is both committed and delivered; the emit still returns only after the commit.
//! Entries the engine did not write live come back through fetches, in order.
//!
//! This is also the one registry of callers waiting for an acknowledgement, by sequence
//! number, so a waiter never travels through the store.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use tokio::time::Instant;
use tracing::warn;

use super::{
    actions::{AckTx, Actions, WaiterAnswer, reuse},
    listeners::Listeners,
    namespaces::Namespaces,
    seq_map::{SeqMap, SeqSet},
    seqs::Seqs,
};
use crate::{
    args::AckReply,
    codec::json::RawJson,
    error::Error,
    event::{Event, Notice},
    metrics::Samples,
    outbox::{LowLane, LowLaneHold, OutboxConfig, Priority},
    protocol::{EventData, Rejection, Then, Wire},
    ratelimit::{Announced, Limiter},
    server_signals::ServerSignals,
    store::{Cmd, Gone, NewEntry, Reply, Sending, StoredEntry, write_idempotency_key},
    time::Now,
};

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
    /// The outstanding fetch was woken for a handed entry (once is enough: entries handed
    /// after that were committed before the wake-up ran).
    woken: bool,
    /// Fetched, waiting for a rate-limit token.
    held: VecDeque<StoredEntry>,
    low_lane: LowLane,
    /// The network path is expensive or constrained.
    costly_path: bool,
    /// The app asked for everything now (the background flush, a polite close).
    low_forced: bool,
    /// Forced by a polite close: over with the link.
    forced_by_close: bool,
    /// `Low` entries waiting for the radio, in order, each with when it must go anyway.
    low_waiting: VecDeque<(StoredEntry, Instant)>,
    limiter: Limiter,
    /// When the rate limit lets the next held entry go.
    resume_at: Option<Instant>,
    in_flight: SeqMap<InFlight>,
    /// Written without an ack request; delivered once the write is flushed.
    written: Vec<u64>,
    /// The key of the entry being written: one buffer, reused by every send.
    key: String,
    /// Delivered, to be deleted from the store.
    delivered: Vec<u64>,
    /// Callers waiting for an ack, by sequence number, across links.
    waiters: SeqMap<Waiter>,
    /// Answers for callers, handed to the driver with the step's other actions.
    answers: Vec<WaiterAnswer>,
    /// The sequence numbers, shared with callers that commit their own emits.
    pub(crate) seqs: Arc<Seqs>,
    /// The highest number a caller committed itself, as of the last number taken.
    by_callers: u64,
    /// Every entry stored is known to this engine and was written, held or is waiting: a new
    /// one may go out live without overtaking an older one.
    caught_up: bool,
    /// The highest sequence number appended through the store (not written live): a fetch
    /// proves the engine caught up only once the store had handled it.
    stored_max: u64,
    /// Written live, not yet committed.
    uncommitted: SeqSet,
    /// Entries callers committed and handed over that were written live since the store was
    /// last told ([`Cmd::SentLive`]).
    handed_live: u64,
    /// Of those, delivered already: deleted once committed.
    /// With the acknowledgement's answer, which its waiting caller hears only then: a caller
    /// that heard the answer finds the entry gone from the outbox.
    early: SeqMap<Option<AckReply>>,
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
    /// `seqs`: this client's sequence numbers, from the block the store reserved.
    pub(crate) fn new(
        config: &OutboxConfig,
        signals: &ServerSignals,
        now: Now,
        seqs: Arc<Seqs>,
    ) -> Self {
        Self {
            max_in_flight: config.max_in_flight,
            ack_timeout: config.ack_timeout,
            max_sends: config.max_sends,
            cursors: [0; 3],
            fetch_id: 0,
            fetching: false,
            woken: false,
            held: VecDeque::new(),
            low_lane: config.low_lane,
            costly_path: false,
            low_forced: false,
            forced_by_close: false,
            low_waiting: VecDeque::new(),
            limiter: Limiter::new(
                &config.rate_limits,
                &signals.budgets,
                signals.pause_backoff,
                now.at,
            ),
            resume_at: None,
            in_flight: SeqMap::default(),
            written: Vec::new(),
            key: String::new(),
            delivered: Vec::new(),
            waiters: SeqMap::default(),
            answers: Vec::new(),
            seqs,
            by_callers: 0,
            caught_up: false,
            stored_max: 0,
            uncommitted: SeqSet::default(),
            handed_live: 0,
            early: SeqMap::default(),
            low_frames: 0,
            sent: 0,
            latencies: Samples::default(),
            rate_limit_pauses: 0,
        }
    }

    /// A new durable emit: numbered, written at once when it may go live (`link` is the
    /// connected link, if any), and stored (the caller hears the commit on `reply`). Its
    /// waiter, if the caller waits for the acknowledgement, is kept here until the answer, or
    /// the entry's TTL, whichever comes first (offline too).
    pub(crate) fn emit(
        &mut self,
        mut entry: NewEntry,
        waiter: Option<AckTx>,
        reply: Reply<u64>,
        now: Now,
        link: Option<&mut Link<'_>>,
        out: &mut Actions,
    ) {
        let Some((seq, recorded)) = self.take_seq(out) else {
            let err = "this client has used its store's sequence numbers; reopen the client";
            let _ = reply.send(Err(Error::Store(err.into())));
            return;
        };
        let notify = waiter.is_some();
        if let Some(tx) = waiter {
            let expires = entry.ttl.map(|ttl| now.at + ttl);
            self.waiters.insert(seq, Waiter { tx, expires });
        }
        let live = match link {
            Some(link) if recorded && self.may_go_live(&entry, now, link) => {
                // Lent to the encoder and taken back: no copy of the arguments.
                let event = lend(&mut entry);
                let lane = entry.lane;
                if !self.write(seq, lane, entry.want_ack, &event, now, link, out) {
                    // Refused by the server's size limit (given up, its waiter told): the
                    // caller hears it now and nothing is stored.
                    let err = "the event exceeds the server's size limit";
                    let _ = reply.send(Err(Error::InvalidArgs(err.into())));
                    return;
                }
                entry.args = event.args.into_string();
                entry.attachments = event.attachments;
                let i = lane_index(lane);
                self.cursors[i] = self.cursors[i].max(seq);
                self.uncommitted.insert(seq);
                true
            }
            _ => {
                self.left_to_fetch(seq);
                false
            }
        };
        out.store.push(Cmd::Append {
            entry,
            seq,
            notify: notify || live,
            sending: if live {
                Sending::Live
            } else {
                Sending::Fetched
            },
            reply,
        });
    }

    /// An entry a caller committed itself as `seq` while this engine had a link, handed over
    /// in number order (see [`Seqs`]): written at once when it may go live. Otherwise
    /// something older waits (or the link is gone), and a fetch brings it in order: one
    /// under way that read before its commit leaves the engine short of `seq` (`upto`), so
    /// another follows; a parked one, which its commit did not wake ([`Sending::Handed`]),
    /// is woken now. Nothing under way is abandoned: a stream of such entries must not
    /// starve the fetches that bring what is older.
    pub(crate) fn committed(
        &mut self,
        seq: u64,
        mut entry: NewEntry,
        now: Now,
        link: Option<&mut Link<'_>>,
        out: &mut Actions,
    ) {
        let i = lane_index(entry.lane);
        if seq <= self.cursors[i] {
            return; // A fetch that ran after its commit brought it already.
        }
        match link {
            Some(link) if self.may_go_live(&entry, now, link) => {
                let event = lend(&mut entry);
                // Past it either way: written, or refused by the server's size limit and
                // given up (its row goes), when a fetch already on its way must not send it.
                self.cursors[i] = seq;
                if self.write(seq, entry.lane, entry.want_ack, &event, now, link, out) {
                    self.handed_live += 1;
                }
            }
            _ => {
                self.left_to_fetch(seq);
                if self.fetching && !self.woken {
                    self.woken = true;
                    out.store.push(Cmd::WakeFetch);
                }
            }
        }
    }

    /// Entry `seq` is stored and not written: it comes back through a fetch, after what is
    /// older, and until then nothing goes out live.
    fn left_to_fetch(&mut self, seq: u64) {
        self.caught_up = false;
        self.stored_max = self.stored_max.max(seq);
    }

    /// Whether a new entry may be written now, ahead of its commit: nothing older waits, its
    /// namespace flows, the window and the rate limit have room, and its lane is not held
    /// for the radio.
    fn may_go_live(&mut self, e: &NewEntry, now: Now, link: &Link<'_>) -> bool {
        self.caught_up
            && self.held.is_empty()
            && (e.lane != Priority::Low || self.low_waiting.is_empty())
            && link.namespaces.is_ready(&e.namespace)
            && self.in_flight.len() < self.max_in_flight
            && !(e.lane == Priority::Low && self.holds_low() && !link.radio_awake)
            && self.limiter.try_take(now.at, &e.event).is_ok()
    }

    /// The next sequence number (asking for the next block when due), and whether the file
    /// records its block. An unrecorded one (the store opened on a full disk) keeps the live
    /// path closed: a number that reached the server without its entry being inserted could
    /// be handed out again after a restart, and the server would drop the new entry as a
    /// repeat. Entries callers committed themselves since the last number are in the store,
    /// older than this one: until a fetch brings them, nothing goes out live.
    fn take_seq(&mut self, out: &mut Actions) -> Option<(u64, bool)> {
        let taken = self.seqs.take();
        if taken.reserve {
            out.store.push(Cmd::ReserveSeqs);
        }
        if taken.by_callers > self.by_callers {
            self.by_callers = taken.by_callers;
            self.caught_up = false;
            self.stored_max = self.stored_max.max(taken.by_callers);
        }
        taken.seq.map(|seq| (seq, taken.recorded))
    }

    /// The store reserved the next block of sequence numbers.
    pub(crate) fn reserved(&mut self, first: u64, last: u64) {
        self.seqs.reserved(first, last);
    }

    /// A reservation failed (disk full, say): the next emit that needs one asks again.
    pub(crate) fn reserve_failed(&mut self) {
        self.seqs.reserve_failed();
    }

    /// The store committed entry `seq` (`ok`), or refused it: its caller heard why from the
    /// store, and an entry written live is not sent again (it may have reached the server
    /// once).
    pub(crate) fn appended(&mut self, seq: u64, ok: bool) {
        let live = self.uncommitted.remove(&seq);
        let early = self.early.remove(&seq);
        if ok {
            if let (true, Some(reply)) = (live, early) {
                self.delivered.push(seq);
                if let (Some(w), Some(reply)) = (self.waiters.remove(&seq), reply) {
                    self.answers.push((w.tx, Ok(reply)));
                }
            }
        } else {
            self.in_flight.remove(&seq);
            self.written.retain(|s| *s != seq);
            self.waiters.remove(&seq);
        }
    }

    /// Entry `seq` reached the server (with the acknowledgement's answer, if it asked for
    /// one): deleted, and its waiting caller answered, once it is committed.
    fn deliver(&mut self, seq: u64, reply: Option<AckReply>) {
        if self.uncommitted.contains(&seq) {
            self.early.insert(seq, reply);
            return;
        }
        self.delivered.push(seq);
        if let (Some(w), Some(reply)) = (self.waiters.remove(&seq), reply) {
            self.answers.push((w.tx, Ok(reply)));
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
        self.caught_up = false;
    }

    /// Asks the store for the next window when room is free, a namespace may flow and no
    /// fetched entries wait.
    pub(crate) fn fetch_if_due(&mut self, any_ready: bool, out: &mut Actions) {
        let room = self.room();
        if self.fetching || !self.held.is_empty() || room == 0 || !any_ready {
            return;
        }
        self.fetch(room.min(FETCH), true, out);
    }

    /// Asks for whatever is stored now without parking (the polite close's last flush);
    /// returns the fetch's id, or `None` when no room is left.
    pub(crate) fn fetch_now(&mut self, out: &mut Actions) -> Option<u64> {
        // Closing: the `Low` lane has nothing left to wait for (until the next link).
        self.low_forced = true;
        self.forced_by_close = true;
        self.release_low();
        let room = self.room();
        (room > 0).then(|| self.fetch(room.min(FETCH), false, out))
    }

    /// Entries that may still be fetched: the window less what is in flight or waiting for
    /// the radio (those count against it too, or a held lane would pull in its whole backlog).
    fn room(&self) -> usize {
        self.max_in_flight
            .saturating_sub(self.in_flight.len() + self.low_waiting.len())
    }

    fn fetch(&mut self, limit: usize, park: bool, out: &mut Actions) -> u64 {
        self.fetch_id += 1;
        self.fetching = true;
        self.woken = false;
        out.store.push(Cmd::Fetch {
            id: self.fetch_id,
            after: self.cursors,
            limit,
            park,
        });
        self.fetch_id
    }

    /// The store answered fetch `id` (`drained`: nothing more was waiting; `upto`: the
    /// appends it had handled): writes what may go. Entries at or below a lane's cursor were
    /// written live already.
    #[allow(clippy::too_many_arguments)] // the store's answer, and what sending needs
    pub(crate) fn fetched(
        &mut self,
        id: u64,
        entries: Vec<StoredEntry>,
        drained: bool,
        upto: u64,
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
            if e.seq <= self.cursors[lane] {
                continue;
            }
            self.cursors[lane] = e.seq;
            self.held.push_back(e);
        }
        self.pump(now, link, out);
        // An append the store had not handled yet may still come back through a fetch.
        self.caught_up = drained && self.held.is_empty() && self.stored_max <= upto;
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
            if e.want_ack && self.in_flight.len() >= self.max_in_flight {
                // The window is full (released `Low` entries can fill it): acknowledgements
                // make room, and `resume` carries on.
                return;
            }
            if let Err(at) = self.limiter.try_take(now.at, &e.event) {
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

    /// Carries on sending held entries once the window has room again (no rate-limit wait
    /// pending: that one has its own timer).
    pub(crate) fn resume(&mut self, now: Now, link: &mut Link<'_>, out: &mut Actions) {
        let room = self.in_flight.len() < self.max_in_flight;
        if room && self.resume_at.is_none() && !self.held.is_empty() {
            self.pump(now, link, out);
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
        let event = EventData {
            namespace: Arc::from(e.namespace.as_str()),
            name: Arc::from(e.event.as_str()),
            args: RawJson::validated(e.args),
            attachments: e.attachments,
        };
        self.write(e.seq, e.lane, e.want_ack, &event, now, link, out);
    }

    /// Encodes entry `seq` with its key and writes it; false when the server's limit refuses
    /// it (it is given up).
    #[allow(clippy::too_many_arguments)] // one entry's parts, borrowed rather than rebuilt
    fn write(
        &mut self,
        seq: u64,
        lane: Priority,
        want_ack: bool,
        event: &EventData,
        now: Now,
        link: &mut Link<'_>,
        out: &mut Actions,
    ) -> bool {
        write_idempotency_key(&mut self.key, link.client_id, seq);
        let ack = want_ack.then_some(seq);
        // An entry awaiting its ack keeps its frames to send again; any other is encoded
        // straight into the step's frames, with no vector of its own.
        let mut kept = Vec::new();
        let frames = if want_ack { &mut kept } else { &mut out.frames };
        let before = frames.len();
        let pushed = link.wire.push_event(frames, event, ack, Some(&self.key));
        let count = frames.len() - before;
        if let Err(err) = pushed {
            frames.truncate(before);
            warn!(event = %event.name, error = %err, "outbox entry refused by the server's limit");
            let err = Error::InvalidArgs(err.to_string());
            self.give_up(seq, &event.namespace, event.name.to_string(), err, out);
            return false;
        }
        self.sent += 1;
        if lane == Priority::Low {
            self.low_frames += count;
        }
        if link.listeners.wants_outbound() {
            let copy = EventData {
                namespace: event.namespace.clone(),
                name: event.name.clone(),
                args: event.args.clone(),
                attachments: event.attachments.clone(),
            };
            link.listeners.dispatch(false, Event::new(copy, None, None));
        }
        if want_ack {
            out.frames.extend(kept.iter().cloned());
            let f = InFlight {
                frames: kept,
                sent_at: now.at,
                sends: 1,
                namespace: event.namespace.clone(),
                event: event.name.to_string(),
            };
            self.in_flight.insert(seq, f);
        } else {
            self.written.push(seq);
        }
        true
    }

    /// What was written reached a healthy link: entries that asked no ack are delivered.
    pub(crate) fn flushed(&mut self, out: &mut Actions) {
        let written = std::mem::take(&mut self.written);
        for seq in &written {
            self.deliver(*seq, None);
        }
        // Kept for the next step's writes (see `reuse`).
        let used = written.len();
        self.written = reuse(written, used);
        self.post_delivered(out);
    }

    /// Of `pending` (live entries the store may still leave out, not committed yet), those
    /// delivered already without an acknowledgement: they are done here as if committed and
    /// deleted, and the store writes no row for them.
    pub(crate) fn delivered_before_commit(&mut self, pending: &[u64]) -> Vec<u64> {
        let mut done = Vec::new();
        for seq in pending {
            if self.uncommitted.contains(seq) && matches!(self.early.get(seq), Some(None)) {
                self.uncommitted.remove(seq);
                self.early.remove(seq);
                done.push(*seq);
            }
        }
        done
    }

    /// Asks the store to delete what was delivered since the last call (acknowledged entries,
    /// and written ones once flushed): one command per step, however many acks it handled.
    pub(crate) fn post_delivered(&mut self, out: &mut Actions) {
        if !self.delivered.is_empty() {
            out.store
                .push(Cmd::Delivered(std::mem::take(&mut self.delivered)));
        }
        if self.handed_live > 0 {
            out.store
                .push(Cmd::SentLive(std::mem::take(&mut self.handed_live)));
        }
        out.acks.append(&mut self.answers);
    }

    /// An acknowledgement for entry `seq`; false when it is not one in flight (already
    /// acknowledged, given up, or not an entry's).
    pub(crate) fn acked(&mut self, seq: u64, reply: AckReply, now: Now) -> bool {
        let Some(f) = self.in_flight.remove(&seq) else {
            return false;
        };
        self.latencies
            .record(now.at.saturating_duration_since(f.sent_at));
        self.deliver(seq, Some(reply));
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

    /// The server asked for a pause: `requested` if it named one, else the backoff's next.
    pub(crate) fn pause(&mut self, now: Now, requested: Option<Duration>) {
        let pause = self.limiter.pause(now.at, requested);
        warn!(?pause, "server rate limit exceeded; pausing the outbox");
        self.rate_limit_pauses += 1;
    }

    /// The server announced its limits; what waits for the old ones goes by the new ones
    /// (through [`Flush::resume`]).
    pub(crate) fn announce(&mut self, now: Now, limits: &Announced) {
        self.limiter.announce(limits, now.at);
        self.resume_at = None;
    }

    /// Whether an acknowledgement of an entry sent is awaited.
    pub(crate) fn awaits_acks(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// When [`Flush::on_timeout`] or [`Flush::expire_waiters`] is next needed.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let acks = self
            .in_flight
            .values()
            .map(|f| f.sent_at + self.ack_timeout);
        let ttls = self.waiters.values();
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
            self.low_waiting.retain(|(e, _)| e.seq != seq);
            if let Some(w) = self.waiters.remove(&seq) {
                self.answers.push((w.tx, Err(Error::Expired)));
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
            self.answers.push((w.tx, Err(err.clone())));
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
                self.answers.push((w.tx, Err(err)));
            }
        }
        self.held.retain(|e| !seqs.contains(&e.seq));
        self.low_waiting.retain(|(e, _)| !seqs.contains(&e.seq));
    }

    /// A link is up: from now until it is lost callers hand the entries they commit to the
    /// engine rather than leave them for the next link's fetch (see [`Seqs`]).
    pub(crate) fn link_up(&self) {
        self.seqs.set_linked(true);
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
        if std::mem::take(&mut self.forced_by_close) {
            self.low_forced = false;
        }
        self.rewind();
        out.store.push(Cmd::Unpark);
        // After the rewind: a fetch answered from now on is stale.
        self.seqs.set_linked(false);
    }

    /// The client closes: every waiting caller hears it.
    pub(crate) fn closed(&mut self) {
        for (_, w) in self.waiters.drain() {
            w.answer(Err(Error::Closed));
        }
    }
}

/// A new entry as an event to encode, its arguments and attachments moved out of it (lent:
/// the caller puts them back if it still needs the entry).
fn lend(entry: &mut NewEntry) -> EventData {
    EventData {
        namespace: entry.namespace.clone(),
        name: entry.event.clone(),
        args: RawJson::validated(std::mem::take(&mut entry.args)),
        attachments: std::mem::take(&mut entry.attachments),
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
                flush: Flush::new(
                    &config,
                    &ServerSignals::default(),
                    t0,
                    Arc::new(Seqs::new((1, 1 << 40), true)),
                ),
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

        /// An emit whose caller waits for the ack, numbered `seq` and committed (offline:
        /// it goes out through a fetch).
        fn emit_waiting(&mut self, seq: u64) -> oneshot::Receiver<Result<AckReply, Error>> {
            let (waiter, rx) = oneshot::channel();
            let (reply, _) = oneshot::channel();
            let mut out = Actions::default();
            let now = self.t0;
            self.flush.seqs.set_next(seq);
            self.flush
                .emit(entry(seq).0, Some(waiter), reply, now, None, &mut out);
            let Some(Cmd::Append {
                seq: numbered,
                notify: true,
                sending: Sending::Fetched,
                ..
            }) = out.store.pop()
            else {
                panic!("the emit must go to the store, the engine told of its commit")
            };
            assert_eq!(numbered, seq);
            self.flush.appended(seq, true);
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
            self.flush
                .fetched(id, entries, false, 0, now, &mut link, &mut out);
            texts(&out)
        }

        /// A fetch that finds nothing more waiting: the engine is caught up.
        fn catch_up(&mut self, ms: u32) {
            let mut out = Actions::default();
            self.flush.fetch_if_due(true, &mut out);
            let Some(Cmd::Fetch { id, .. }) = out.store.pop() else {
                panic!("a fetch is due")
            };
            let now = self.at(ms);
            let mut link = link!(self);
            self.flush.fetched(
                id,
                vec![],
                true,
                u64::MAX,
                now,
                &mut link,
                &mut Actions::default(),
            );
        }

        /// An emit of entry `n` at `ms` with the link up; returns what it asked for.
        fn emit_linked(&mut self, ms: u32, n: u64) -> Actions {
            let (reply, _) = oneshot::channel();
            let mut out = Actions::default();
            let now = self.at(ms);
            let mut link = link!(self);
            self.flush
                .emit(entry(n).0, None, reply, now, Some(&mut link), &mut out);
            out
        }

        /// Entry `n`, committed as `seq` by a caller and handed over, at `ms` with the link
        /// up; returns what the engine asked for.
        fn handed(&mut self, ms: u32, seq: u64, n: u64) -> Actions {
            let mut out = Actions::default();
            let now = self.at(ms);
            let mut link = link!(self);
            let mut new = entry(n).0;
            new.want_ack = false;
            self.flush
                .committed(seq, new, now, Some(&mut link), &mut out);
            out
        }

        /// Hands callers their answers, as the driver does after each step.
        fn answer(&mut self) {
            let mut out = Actions::default();
            self.flush.post_delivered(&mut out);
            for (caller, answer) in out.acks {
                let _ = caller.send(answer);
            }
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
        assert!(
            waiter.try_recv().is_err(),
            "answered with the step's store commands"
        );
        let mut out = Actions::default();
        r.flush.post_delivered(&mut out);
        assert!(matches!(&out.store[..], [Cmd::Delivered(s)] if s == &[7]));
        let (caller, answer) = out.acks.pop().expect("the caller's answer");
        let _ = caller.send(answer);
        assert_eq!(waiter.try_recv().unwrap(), Ok(reply()));
        assert!(
            !r.flush.acked(7, reply(), r.at(6)),
            "a second ack is ignored"
        );
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
        r.answer();
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
        r.answer();
        assert_eq!(waiter.try_recv().unwrap(), Ok(reply()));
        assert!(r.tick(300).frames.is_empty(), "no further resend");
    }

    #[test]
    fn a_ttl_that_expires_in_flight_reaches_the_waiting_caller() {
        let mut r = Rig::new(config());
        let mut waiter = r.emit_waiting(4);
        r.send(0, &[4]);
        r.flush.gone(&[4], Gone::Expired);
        r.answer();
        assert_eq!(waiter.try_recv().unwrap(), Err(Error::Expired));
        assert!(
            r.tick(100).frames.is_empty(),
            "an expired entry is not resent"
        );
        assert!(!r.flush.acked(4, reply(), r.at(110)));
        let mut w = r.emit_waiting(5);
        r.flush.gone(&[5], Gone::Removed);
        r.answer();
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
            .emit(new, Some(tx), reply, now, None, &mut Actions::default());
        assert_eq!(r.flush.poll_timeout(), Some(r.at(40).at), "no link needed");
        r.flush.expire_waiters(r.at(39));
        r.answer();
        assert!(rx.try_recv().is_err(), "not yet");
        r.flush.appended(1, true);
        r.send(10, &[1]);
        r.flush.expire_waiters(r.at(40));
        r.answer();
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
        r.answer();
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
    fn waiting_low_entries_count_against_the_window_and_expire_like_the_rest() {
        let mut r = Rig::new(OutboxConfig {
            max_in_flight: 2,
            ..config()
        });
        assert!(
            r.send_entries(0, vec![low(&r, 1, 0), low(&r, 2, 0)])
                .is_empty()
        );
        let mut out = Actions::default();
        r.flush.fetch_if_due(true, &mut out);
        assert!(
            out.store.is_empty(),
            "the window is full of waiting entries"
        );
        // One of them is removed (its TTL passed, the app removed it): it never goes.
        r.flush.gone(&[1], Gone::Removed);
        assert_eq!(sent(&texts(&r.tick(60_000))), [2]);
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

    /// What an emit asked of the store: (seq, live).
    fn appended(out: &Actions) -> Vec<(u64, bool)> {
        out.store
            .iter()
            .filter_map(|c| match c {
                Cmd::Append { seq, sending, .. } => Some((*seq, *sending == Sending::Live)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_unrecorded_block_keeps_the_live_path_closed_until_a_recorded_one_replaces_it() {
        let mut r = Rig::new(config());
        // As when the store opened on a full disk: numbers 1.. were never recorded.
        r.flush = Flush::new(
            &config(),
            &ServerSignals::default(),
            r.t0,
            Arc::new(Seqs::new((1, 1 << 40), false)),
        );
        r.catch_up(0);
        let out = r.emit_linked(1, 1);
        assert_eq!(
            appended(&out),
            [(1, false)],
            "not live: the number is unrecorded"
        );
        assert!(out.frames.is_empty());
        assert!(out.store.iter().any(|c| matches!(c, Cmd::ReserveSeqs)));
        // The reservation fails (the disk is still full): asked again at the next emit.
        r.flush.reserve_failed();
        let out = r.emit_linked(2, 2);
        assert!(out.store.iter().any(|c| matches!(c, Cmd::ReserveSeqs)));
        r.send_entries(3, vec![entry(1).1, entry(2).1]);
        r.catch_up(4);
        // Space came back; the store recorded a block starting after what it had inserted
        // (entry 1 only, when it reserved): numbering carries on above what was handed out.
        r.flush.reserved(2, 1 << 33);
        let out = r.emit_linked(5, 3);
        assert_eq!(appended(&out), [(3, true)], "live, from the recorded block");
        assert_eq!(sent(&texts(&out)), [3]);
    }

    #[test]
    fn an_entry_a_caller_committed_keeps_the_next_one_off_the_live_path_until_fetched() {
        let mut r = Rig::new(config());
        r.catch_up(0);
        // A caller committed entry 1 on its own thread (it saw no link) as the link came up.
        let turn = r.flush.seqs.turn().unwrap();
        assert!(!turn.linked());
        assert_eq!(turn.commit(|seq| seq), 1);
        let out = r.emit_linked(1, 2);
        assert_eq!(
            (appended(&out), out.frames.len()),
            (vec![(2, false)], 0),
            "2 must not overtake 1"
        );
        // The fetch brings both, in order; then the live path opens again.
        assert_eq!(
            sent(&r.send_entries(2, vec![entry(1).1, entry(2).1])),
            [1, 2]
        );
        r.catch_up(3);
        let out = r.emit_linked(4, 3);
        assert_eq!(appended(&out), [(3, true)]);
    }

    #[test]
    fn an_entry_a_caller_handed_over_goes_live_when_caught_up_and_leaves_once_flushed() {
        let mut r = Rig::new(config());
        r.catch_up(0);
        let out = r.handed(1, 1, 1);
        assert_eq!(sent(&texts(&out)), [1], "written at once");
        assert!(
            out.store.is_empty(),
            "committed by its caller: nothing to store"
        );
        // Delivered once the write is flushed: its row goes, and the store counts it live.
        let mut out = Actions::default();
        r.flush.flushed(&mut out);
        assert!(matches!(
            &out.store[..],
            [Cmd::Delivered(s), Cmd::SentLive(1)] if s == &[1]
        ));
        // A fetch that ran after its commit brings it again: skipped, not written twice.
        assert!(r.send_entries(2, vec![entry(1).1]).is_empty());
    }

    #[test]
    fn an_entry_a_caller_handed_over_waits_behind_an_older_one_and_comes_back_by_a_fetch() {
        let mut r = Rig::new(config());
        r.catch_up(0);
        // The engine's own entry 1 goes to the store (as when the window was full)...
        r.flush.caught_up = false;
        assert_eq!(appended(&r.emit_linked(1, 1)), [(1, false)]);
        // ... so entry 2, handed over, must not overtake it. The fetch under way is kept (a
        // stream of handed entries must not starve it) and woken, should it be parked: its
        // commit did not wake it.
        let mut out = Actions::default();
        r.flush.fetch_if_due(true, &mut out);
        let Some(Cmd::Fetch { id, .. }) = out.store.pop() else {
            panic!("a fetch is due")
        };
        let out = r.handed(2, 2, 2);
        assert!(out.frames.is_empty(), "2 must not overtake 1");
        assert!(matches!(&out.store[..], [Cmd::WakeFetch]));
        // Woken once: the wake-up runs after 3's commit too.
        let out = r.handed(2, 3, 3);
        assert!(out.frames.is_empty() && out.store.is_empty());
        // Its answer brings them all, in order.
        let mut out = Actions::default();
        let now = r.at(3);
        let mut link = link!(r);
        let all = vec![entry(1).1, entry(2).1, entry(3).1];
        r.flush.fetched(id, all, true, 3, now, &mut link, &mut out);
        assert_eq!(sent(&texts(&out)), [1, 2, 3]);
        // And the next handed entry goes live.
        assert_eq!(sent(&texts(&r.handed(4, 4, 4))), [4]);
    }

    #[test]
    fn a_new_entry_goes_out_live_and_leaves_the_store_once_committed_and_delivered() {
        let mut r = Rig::new(config());
        // Before the engine knows the store holds nothing older: through the store.
        let out = r.emit_linked(0, 1);
        assert_eq!((appended(&out), out.frames.len()), (vec![(1, false)], 0));
        r.send_entries(1, vec![entry(1).1]);
        r.catch_up(2);
        // Now a new entry is written at once, while the store commits it.
        let out = r.emit_linked(3, 2);
        assert_eq!(appended(&out), [(2, true)]);
        assert_eq!(sent(&texts(&out)), [2]);
        // Acknowledged before the commit: deleted only once committed.
        assert!(r.flush.acked(2, reply(), r.at(4)));
        let mut out = Actions::default();
        r.flush.post_delivered(&mut out);
        assert!(out.store.is_empty(), "not committed yet");
        r.flush.appended(2, true);
        r.flush.post_delivered(&mut out);
        assert!(matches!(&out.store[..], [Cmd::Delivered(s)] if s == &[2]));
        // The store's answer to the parked fetch may hold it: not sent twice.
        let mut out = Actions::default();
        r.flush.fetch_if_due(true, &mut out);
        let Some(Cmd::Fetch { id, .. }) = out.store.pop() else {
            panic!()
        };
        let now = r.at(5);
        let mut link = link!(r);
        let mut out = Actions::default();
        r.flush.fetched(
            id,
            vec![entry(2).1],
            true,
            u64::MAX,
            now,
            &mut link,
            &mut out,
        );
        assert!(out.frames.is_empty(), "written live already");
    }

    #[test]
    fn a_live_entry_flushed_before_its_commit_needs_no_row_unless_it_waits_for_an_ack() {
        let mut r = Rig::new(config());
        r.catch_up(0);
        // Entry 1 asks no ack, entry 2 does; both go out live.
        let (mut plain, _) = entry(1);
        plain.want_ack = false;
        let (stored, _) = oneshot::channel();
        let mut out = Actions::default();
        let now = r.at(1);
        let mut link = link!(r);
        r.flush
            .emit(plain, None, stored, now, Some(&mut link), &mut out);
        assert_eq!(appended(&out), [(1, true)]);
        assert_eq!(appended(&r.emit_linked(1, 2)), [(2, true)]);
        // Before the flush nothing is delivered: both need their rows.
        assert!(r.flush.delivered_before_commit(&[1, 2]).is_empty());
        // Flushed to a healthy link, and entry 2 acknowledged (all before either commit):
        // the unacknowledged one is delivered and done with; the other's caller waits for
        // its commit to hear the answer.
        let mut out = Actions::default();
        r.flush.flushed(&mut out);
        assert!(r.flush.acked(2, reply(), r.at(2)));
        assert!(out.store.is_empty(), "nothing committed to delete yet");
        assert_eq!(r.flush.delivered_before_commit(&[1, 2]), [1]);
        // Entry 1 left no trace to clean up; entry 2 is deleted once committed.
        r.flush.appended(2, true);
        let mut out = Actions::default();
        r.flush.post_delivered(&mut out);
        assert!(matches!(&out.store[..], [Cmd::Delivered(s)] if s == &[2]));
        assert!(r.flush.uncommitted.is_empty() && r.flush.early.is_empty());
    }

    #[test]
    fn a_full_window_sends_new_entries_through_the_store_in_order() {
        let mut r = Rig::new(OutboxConfig {
            max_in_flight: 1,
            ..config()
        });
        r.catch_up(0);
        assert_eq!(appended(&r.emit_linked(1, 1)), [(1, true)]);
        // The window is full: this one waits in the store, and so does every later one
        // until a fetch catches up again, so none overtakes it.
        assert_eq!(appended(&r.emit_linked(2, 2)), [(2, false)]);
        assert!(r.flush.acked(1, reply(), r.at(3)));
        assert_eq!(
            appended(&r.emit_linked(4, 3)),
            [(3, false)],
            "not caught up"
        );
        assert_eq!(sent(&r.send_entries(5, vec![entry(2).1])), [2]);
    }

    #[test]
    fn a_drained_fetch_read_before_an_append_was_handled_does_not_open_the_live_path() {
        let mut r = Rig::new(config());
        let mut out = Actions::default();
        r.flush.fetch_if_due(true, &mut out);
        let Some(Cmd::Fetch { id, .. }) = out.store.pop() else {
            panic!()
        };
        // Entry 1 goes through the store (not caught up yet) while the store, which has not
        // handled it yet, answers the fetch: nothing more waiting, appends handled up to 0.
        assert_eq!(appended(&r.emit_linked(1, 1)), [(1, false)]);
        let now = r.at(2);
        let mut link = link!(r);
        r.flush
            .fetched(id, vec![], true, 0, now, &mut link, &mut Actions::default());
        // Entry 2 must not go live: it would overtake entry 1, which the next fetch returns.
        assert_eq!(appended(&r.emit_linked(3, 2)), [(2, false)]);
        assert_eq!(
            sent(&r.send_entries(4, vec![entry(1).1, entry(2).1])),
            [1, 2]
        );
    }

    #[test]
    fn a_live_entry_the_store_refused_is_not_sent_again() {
        let mut r = Rig::new(config());
        r.catch_up(0);
        r.emit_linked(1, 1);
        r.flush.appended(1, false);
        assert!(
            r.tick(500).frames.is_empty(),
            "no resend after the ack timeout"
        );
        assert!(!r.flush.acked(1, reply(), r.at(501)), "forgotten");
    }

    #[test]
    fn a_lost_link_keeps_waiters_and_unacknowledged_entries() {
        let mut r = Rig::new(config());
        let mut waiter = r.emit_waiting(1);
        r.send(0, &[1]);
        let mut out = Actions::default();
        r.flush.link_lost(&mut out);
        assert!(matches!(out.store.last(), Some(Cmd::Unpark)));
        r.answer();
        assert!(waiter.try_recv().is_err(), "still waiting");
        assert!(
            r.tick(500).frames.is_empty(),
            "nothing in flight on no link"
        );
        // The next link sends it again from the store, same key; its ack answers the waiter.
        let again = r.send(600, &[1]);
        assert_eq!(again.len(), 1);
        assert!(r.flush.acked(1, reply(), r.at(610)));
        r.answer();
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
            .fetched(id, vec![entry(9).1], false, 0, now, &mut link, &mut out);
        assert!(out.frames.is_empty(), "stale answer ignored");
        r.flush.closed();
    }
}
