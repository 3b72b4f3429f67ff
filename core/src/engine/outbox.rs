//! Sending the outbox: entries are fetched from the store in windows while connected,
//! written in order, and retired once delivered.
//!
//! One fetch is kept outstanding while there is room; the store parks it until entries exist,
//! so live emits flow without polling. An entry that asked for an acknowledgement is
//! delivered when the server acks it (its sequence number is its ack id); any other when its
//! frame was flushed to a healthy link.
//! Up to `max_in_flight` acknowledgements are awaited at once: a backlog drains pipelined,
//! not one at a time. Anything not delivered when a link drops stays in the store and is sent
//! again, in order and with the same idempotency key, on the next connection.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use tokio::{sync::oneshot, time::Instant};
use tracing::warn;

use super::{Engine, session::Link};
use crate::{
    codec::socketio::{self, EventPacket, RawJson},
    config::Protocol,
    error::Error,
    event::{AckReply, Event, Notice},
    outbox::{KeyPlacement, Priority},
    protocol::Rejection,
    ratelimit::Limiter,
    store::{AckTx, Cmd, Fetched, StoredEntry},
    transport::Frame,
};

/// Entries asked for in one fetch at most.
const FETCH: usize = 512;

/// An entry written and awaiting its acknowledgement.
struct InFlight {
    frames: Vec<Frame>,
    sent_at: Instant,
    sends: u32,
    namespace: Arc<str>,
    event: String,
}

/// The engine's view of the outbox while it sends.
pub(super) struct Flush {
    /// Highest sequence number fetched in this session, per lane ([`Priority::DESCENDING`]).
    cursors: [u64; 3],
    pub(super) fetching: Fetching,
    /// Fetched, waiting for a rate-limit token.
    held: VecDeque<StoredEntry>,
    limiter: Limiter,
    /// When the rate limit lets the next held entry go.
    resume_at: Option<Instant>,
    in_flight: HashMap<u64, InFlight>,
    /// Written without an ack request; delivered once the write is flushed.
    written: Vec<u64>,
    /// Delivered, to be deleted from the store.
    delivered: Vec<u64>,
    /// Callers waiting for acknowledgements, by sequence number, across connections.
    waiters: HashMap<u64, AckTx>,
}

impl Flush {
    pub(super) fn new(limits: &[crate::RateLimit]) -> Self {
        Self {
            cursors: [0; 3],
            fetching: None,
            held: VecDeque::new(),
            limiter: Limiter::new(limits, Instant::now()),
            resume_at: None,
            in_flight: HashMap::new(),
            written: Vec::new(),
            delivered: Vec::new(),
            waiters: HashMap::new(),
        }
    }

    /// Starts over from the oldest entry (a new connection, or a namespace became ready).
    /// A fetch under way is abandoned; the store hands its callers' waiters to the next one.
    pub(super) fn rewind(&mut self) {
        self.cursors = [0; 3];
        self.fetching = None;
        self.held.clear();
        self.resume_at = None;
    }

    /// When held entries may go again (rate limit).
    pub(super) fn resume_at(&self) -> Option<Instant> {
        self.resume_at
    }

    /// The server asked for a pause.
    pub(super) fn pause_for(&mut self, d: std::time::Duration) {
        self.limiter.pause_until(Instant::now() + d);
    }

    /// The link is gone: nothing is in flight any more. Callers keep waiting; their entries
    /// are resent on the next connection.
    pub(super) fn link_lost(&mut self) {
        self.in_flight.clear();
        // Not flushed, so not known to be delivered: they stay in the store.
        self.written.clear();
        // Callers who gave up (their own timeout) need no answer when the entry goes later.
        self.waiters.retain(|_, w| !w.is_closed());
        self.rewind();
    }

    pub(super) fn fail_waiters(&mut self, err: impl Fn() -> Error) {
        for (_, w) in self.waiters.drain() {
            let _ = w.send(Err(err()));
        }
    }

    pub(super) fn is_fetching(&self) -> bool {
        self.fetching.is_some()
    }

    /// The earliest moment an acknowledgement can be overdue.
    pub(super) fn next_ack_deadline(&self, timeout: std::time::Duration) -> Option<Instant> {
        self.in_flight.values().map(|f| f.sent_at + timeout).min()
    }
}

/// A fetch under way: the session it was asked in, and the answer.
pub(super) type Fetching = Option<(u64, oneshot::Receiver<Vec<Fetched>>)>;

/// Waits for the answer to the fetch under way (a free function so the select loop can
/// borrow this field beside the others). Never ends if the store is gone: the client is
/// closing then, and the control channel ends the session.
pub(super) async fn fetched(fetching: &mut Fetching) -> (u64, Vec<Fetched>) {
    if let Some((session, rx)) = fetching
        && let Ok(found) = rx.await
    {
        return (*session, found);
    }
    std::future::pending().await
}

impl Engine {
    /// Asks the store for the next window when connected, room is free and entries may wait.
    pub(super) fn fetch_if_due(&mut self) {
        let f = &mut self.flush;
        let room = self
            .config
            .outbox
            .max_in_flight
            .saturating_sub(f.in_flight.len());
        if f.fetching.is_some()
            || !f.held.is_empty()
            || room == 0
            || !self.namespaces.iter().any(|n| n.ready)
        {
            return;
        }
        let limit = room.min(FETCH);
        let (tx, rx) = oneshot::channel();
        self.store.post(Cmd::Fetch {
            after: f.cursors,
            limit,
            park: true,
            reply: tx,
        });
        f.fetching = Some((self.session_id, rx));
    }

    /// Writes a fetched window.
    pub(super) fn on_fetched(&mut self, session: u64, entries: Vec<Fetched>, link: &mut Link) {
        self.flush.fetching = None;
        for f in entries {
            if let Some(ack) = f.ack {
                self.flush.waiters.insert(f.entry.seq, ack);
            }
            // Asked for on a connection that is gone: the next one starts over anyway.
            if session != self.session_id {
                continue;
            }
            let lane = Priority::DESCENDING
                .iter()
                .position(|p| *p == f.entry.lane)
                .unwrap_or(1);
            self.flush.cursors[lane] = self.flush.cursors[lane].max(f.entry.seq);
            self.flush.held.push_back(f.entry);
        }
        self.pump(link);
    }

    /// Sends held entries while the rate limits allow.
    pub(super) fn pump(&mut self, link: &mut Link) {
        self.flush.resume_at = None;
        while let Some(e) = self.flush.held.front() {
            let Some(ns) = self.namespaces.iter().find(|n| *n.name == *e.namespace) else {
                // A namespace the app has not joined (yet): the entry waits in the store.
                self.flush.held.pop_front();
                continue;
            };
            if !ns.ready || self.flush.in_flight.contains_key(&e.seq) {
                self.flush.held.pop_front();
                continue;
            }
            if let Err(at) = self.flush.limiter.try_take(Instant::now()) {
                self.flush.resume_at = Some(at);
                return;
            }
            let namespace = ns.name.clone();
            if let Some(e) = self.flush.held.pop_front() {
                self.send_entry(e, namespace, link);
            }
        }
    }

    fn send_entry(&mut self, mut e: StoredEntry, namespace: Arc<str>, link: &mut Link) {
        let seq = e.seq;
        let key = self.store.key(seq);
        // The envelope protocol carries the key as the message id; the data stays the app's.
        let args = match self.config.protocol {
            Protocol::SocketIo => with_key(&e.args, &self.config.outbox.key, &key),
            Protocol::Envelope(_) => std::mem::take(&mut e.args),
        };
        let args = RawJson::validated(args);
        let id = e.want_ack.then_some(seq);
        let outbound = self.wants_outbound();
        let attachments = if outbound {
            e.attachments.clone()
        } else {
            std::mem::take(&mut e.attachments)
        };
        let mut frames = Vec::with_capacity(1 + attachments.len());
        if let Err(err) = link.wire.push_event(
            &mut frames,
            &namespace,
            &e.event,
            &args,
            id,
            attachments,
            Some(&key),
        ) {
            warn!(event = %e.event, error = %err, "outbox entry refused by the server's limit");
            self.give_up(
                seq,
                &namespace,
                e.event,
                Error::InvalidArgs(err.to_string()),
            );
            return;
        }
        if outbound {
            let packet = EventPacket {
                namespace: namespace.clone(),
                id,
                name: Arc::from(e.event.as_str()),
                args,
                attachments: e.attachments,
            };
            self.dispatch(false, Event::new(packet, None));
        }
        self.counters.sent += 1;
        if e.want_ack {
            link.out.extend(frames.iter().cloned());
            let f = InFlight {
                frames,
                sent_at: Instant::now(),
                sends: 1,
                namespace,
                event: e.event,
            };
            self.flush.in_flight.insert(seq, f);
        } else {
            link.out.extend(frames);
            self.flush.written.push(seq);
        }
    }

    /// Writes whatever the outbox holds now, without parking: the polite close's last flush.
    /// Returns whether anything was written.
    pub(super) async fn send_remaining(&mut self, link: &mut Link) -> bool {
        // A parked fetch would never answer; ask afresh from the same cursors.
        self.flush.fetching = None;
        let room = self
            .config
            .outbox
            .max_in_flight
            .saturating_sub(self.flush.in_flight.len());
        if room == 0 {
            return false;
        }
        let (tx, rx) = oneshot::channel();
        self.store.post(Cmd::Fetch {
            after: self.flush.cursors,
            limit: room.min(FETCH),
            park: false,
            reply: tx,
        });
        let found = rx.await.unwrap_or_default();
        let any = !found.is_empty();
        self.on_fetched(self.session_id, found, link);
        any
    }

    /// The frames written so far reached a healthy link.
    pub(super) fn on_flushed(&mut self) {
        let f = &mut self.flush;
        f.delivered.append(&mut f.written);
        self.post_delivered();
    }

    /// Deletes delivered entries from the store.
    pub(super) fn post_delivered(&mut self) {
        if !self.flush.delivered.is_empty() {
            let done = std::mem::take(&mut self.flush.delivered);
            self.store.post(Cmd::Delivered(done));
        }
    }

    /// An acknowledgement for an outbox entry; false when `id` is not one in flight.
    pub(super) fn on_entry_ack(&mut self, id: u64, reply: AckReply) -> bool {
        let Some(f) = self.flush.in_flight.remove(&id) else {
            return false;
        };
        self.counters.latencies.record(f.sent_at.elapsed());
        self.flush.delivered.push(id);
        if let Some(w) = self.flush.waiters.remove(&id) {
            let _ = w.send(Ok(reply));
        }
        true
    }

    /// The server answered an outbox entry with a failure: a retryable one (rate limit, an
    /// overloaded server) leaves the entry stored to go again from the oldest; any other ends
    /// it with [`Error::Rejected`], since sending it again would be refused again.
    pub(super) fn on_entry_rejected(&mut self, id: u64, rejection: Rejection) {
        let Some(f) = self.flush.in_flight.remove(&id) else {
            return;
        };
        if rejection.is_retryable() {
            self.flush.rewind();
            return;
        }
        warn!(event = %f.event, code = %rejection.code, "emit rejected by the server");
        self.flush.delivered.push(id);
        let err = Error::Rejected {
            code: rejection.code,
            message: rejection.message,
        };
        if let Some(w) = self.flush.waiters.remove(&id) {
            let _ = w.send(Err(err.clone()));
        }
        self.notify(Notice::EmitFailed {
            namespace: f.namespace.to_string(),
            event: f.event,
            error: err.to_string(),
        });
    }

    /// Sends again what was not acknowledged in time; gives up after `max_sends`.
    pub(super) fn check_in_flight(&mut self, link: &mut Link) {
        let timeout = self.config.outbox.ack_timeout;
        let max = self.config.outbox.max_sends;
        let now = Instant::now();
        let mut overdue: Vec<u64> = self
            .flush
            .in_flight
            .iter()
            .filter(|(_, f)| f.sent_at + timeout <= now)
            .map(|(s, _)| *s)
            .collect();
        overdue.sort_unstable();
        for seq in overdue {
            let Some(f) = self.flush.in_flight.get_mut(&seq) else {
                continue;
            };
            if f.sends >= max {
                if let Some(f) = self.flush.in_flight.remove(&seq) {
                    self.give_up(seq, &f.namespace, f.event, Error::AckTimeout(timeout));
                }
                continue;
            }
            f.sends += 1;
            f.sent_at = now;
            link.out.extend(f.frames.iter().cloned());
            self.counters.sent += 1;
        }
    }

    fn give_up(&mut self, seq: u64, namespace: &str, event: String, err: Error) {
        self.store.post(Cmd::Failed(vec![seq]));
        if let Some(w) = self.flush.waiters.remove(&seq) {
            let _ = w.send(Err(err.clone()));
        }
        self.notify(Notice::EmitFailed {
            namespace: namespace.to_owned(),
            event,
            error: err.to_string(),
        });
    }
}

/// `args` carrying `key` where the configuration puts it.
fn with_key(args: &str, placement: &KeyPlacement, key: &str) -> String {
    let quoted = serde_json::to_string(key).unwrap_or_default();
    match placement {
        KeyPlacement::Field(name) => {
            socketio::insert_field(args, name, &quoted).unwrap_or_else(|| args.to_owned())
        }
        KeyPlacement::TrailingArg(name) => {
            let obj = format!(
                "{{{}:{quoted}}}",
                serde_json::to_string(name).unwrap_or_default()
            );
            socketio::append_arg(args, &obj)
        }
        KeyPlacement::None => args.to_owned(),
    }
}
