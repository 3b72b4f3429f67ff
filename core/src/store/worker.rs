//! One client's store: the commands of a batch run in one transaction (`BEGIN IMMEDIATE` on a
//! file; a store in memory applies each at once) and are answered after the commit — the
//! group commit that lets many concurrent emits share one fsync. A [`super::host`] thread
//! hands each worker its commands; an engine may run its own appends on the worker it shares
//! with that thread ([`Shared`]).
//!
//! Callers hear their own answers on oneshot channels; the engine hears what concerns the
//! outbox it sends ([`StoreEvent`]) on one channel, in commit order, so an append is always
//! reported before the fetch that returns it.

use std::{
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex, PoisonError},
};

use futures_channel::mpsc::UnboundedSender;
use tokio::sync::oneshot;
use tracing::{error, warn};

use super::{
    backend::Backend,
    command::{Cmd, Gone, NewEntry, Sending, StoreEvent, StoredEntry, idempotency_key},
    error::StoreError,
    owner::Owner,
    reply::Deferred,
    schema::Snapshot,
};
use crate::{
    error::Error,
    outbox::{OutboxConfig, OutboxStats, Overflow, PendingEmit, Priority},
    time::now_ms,
};

/// A fetch waiting for entries.
struct Parked {
    id: u64,
    after: [u64; 3],
    limit: usize,
}

/// One client's store, run by a [`super::host`] thread: its rows (a database or memory),
/// counters, parked fetch and waiters.
pub(super) struct Worker {
    rows: Backend,
    /// This client's hold on the store file (none in memory).
    owner: Option<Owner>,
    client_id: String,
    /// Shared with the client's other parts (and a shared configuration's other clients).
    limits: Arc<OutboxConfig>,
    stats: OutboxStats,
    /// The engine's fetch while nothing waited.
    parked: Option<Parked>,
    /// News for the engine.
    events: UnboundedSender<StoreEvent>,
    /// Callers of `Outbox::drained`.
    empty_waiters: Vec<oneshot::Sender<()>>,
    /// The highest sequence number of an append handled (stored or refused): a fetch read
    /// after it reflects every append up to it. (A caller commits an append of its own only
    /// when every lower number is committed: see `engine/seqs.rs`.)
    appended_upto: u64,
    /// Lets go of the prepared statements whenever the outbox is empty (see
    /// [`Worker::idle_releases_statements`]).
    idle_release: bool,
    /// The last sequence number `meta` records as reserved. Opened on a full disk, the
    /// engine numbers entries from a block not recorded yet; an append numbered above this
    /// records its number in its own transaction, so a later open never hands it out again,
    /// even once the entry is delivered and its row deleted.
    recorded_upto: u64,
}

impl Worker {
    /// A worker for a freshly opened store.
    pub(super) fn new(
        rows: Backend,
        owner: Option<Owner>,
        snapshot: &Snapshot,
        limits: impl Into<Arc<OutboxConfig>>,
        events: UnboundedSender<StoreEvent>,
    ) -> Self {
        Self {
            rows,
            owner,
            client_id: snapshot.client_id.clone(),
            limits: limits.into(),
            stats: OutboxStats {
                pending: snapshot.count,
                pending_bytes: snapshot.bytes,
                ..Default::default()
            },
            parked: None,
            appended_upto: 0,
            events,
            empty_waiters: Vec::new(),
            idle_release: false,
            recorded_upto: if snapshot.seqs_recorded {
                snapshot.seqs.1
            } else {
                // `meta` holds at most the number before the unrecorded block.
                snapshot.seqs.0.saturating_sub(1)
            },
        }
    }

    /// For a hub's clients: each batch that leaves the outbox empty finalizes the prepared
    /// statements. Most of a hub's devices sit idle most of the time, and cached statements
    /// are some 20 KiB of each idle device's memory; the next write prepares again, tens of
    /// microseconds on the hub's store thread — for every emit of a device that sends one
    /// acknowledged reading at a time, whose outbox empties after each.
    pub(super) fn idle_releases_statements(mut self) -> Self {
        self.idle_release = true;
        self
    }

    /// Marks the store closed cleanly, closes the database and releases the file.
    pub(super) fn finish(self) {
        // Closed before `close()` returns (see `Backend::close`).
        self.rows.close();
        // Released before `close()` returns, so the app can open the file again at once.
        drop(self.owner);
    }

    /// Runs one batch in one transaction; returns the reply of a close it found (the rest of
    /// the batch still runs). (The tests' shorthand for [`Worker::run_batch_then`].)
    #[cfg(test)]
    pub(super) fn run_batch(&mut self, batch: &mut Vec<Cmd>) -> Option<oneshot::Sender<()>> {
        self.run_batch_then(batch, &mut || {})
    }

    /// [`Worker::run_batch`], calling `settled` once the transaction is committed (or rolled
    /// back), before anyone waiting on it is answered.
    fn run_batch_then(
        &mut self,
        batch: &mut Vec<Cmd>,
        settled: &mut dyn FnMut(),
    ) -> Option<oneshot::Sender<()>> {
        let now = now_ms();
        let before = (self.stats.clone(), self.recorded_upto);
        let mut deferred = Vec::with_capacity(batch.len());
        let mut appended = false;
        let mut closing = None;
        let mut failure = self.rows.begin().err();
        for cmd in batch.drain(..) {
            if let Cmd::Close(reply) = cmd {
                closing = Some(reply);
                continue;
            }
            // An entry the engine wrote live does not wake its parked fetch, which need not
            // return it either. One a caller handed to the engine does not wake it either
            // (the engine usually writes it live), but stays for it to return: when the
            // engine cannot write it yet, it wakes the fetch itself (`Cmd::WakeFetch`).
            appended |= matches!(
                cmd,
                Cmd::Append {
                    sending: Sending::Fetched,
                    ..
                } | Cmd::WakeFetch
            );
            if let (
                Cmd::Append {
                    sending: Sending::Live,
                    seq,
                    entry,
                    ..
                },
                Some(p),
            ) = (&cmd, &mut self.parked)
            {
                let lane = match entry.lane {
                    Priority::High => 0,
                    Priority::Normal => 1,
                    Priority::Low => 2,
                };
                p.after[lane] = p.after[lane].max(*seq);
            }
            match &failure {
                // Once a statement failed the transaction is lost: refuse the rest clearly.
                Some(e) => self.refuse(cmd, e),
                None => {
                    if let Err(e) = self.apply(cmd, now, &mut deferred) {
                        failure = Some(e);
                    }
                }
            }
        }
        if failure.is_none() {
            failure = self.rows.commit().err();
        }
        if failure.is_some() {
            self.rows.rollback();
        }
        settled();
        match failure {
            None => {
                for d in deferred {
                    d.ok(&self.events);
                }
            }
            Some(e) => {
                // Nothing in the batch happened: restore the counters, fail every write.
                debug_assert!(self.rows.rolls_back(), "a batch in memory cannot fail");
                warn!(error = %e, "store batch failed");
                (self.stats, self.recorded_upto) = before;
                let err = Error::from(e);
                for d in deferred {
                    d.err(&err, &self.events);
                }
            }
        }
        if appended {
            self.answer_parked(now);
        }
        if self.stats.pending == 0 {
            for w in self.empty_waiters.drain(..) {
                let _ = w.send(());
            }
            if self.idle_release {
                self.rows.release_statements();
            }
        }
        closing
    }

    /// Appends (`Cmd::Append`) whose entries were delivered before their commit: answered
    /// and counted without a row (see [`super::Appends::commit_then`]).
    fn delivered_live(&mut self, appends: Vec<Cmd>) {
        for cmd in appends {
            if let Cmd::Append { seq, reply, .. } = cmd {
                self.appended_upto = self.appended_upto.max(seq);
                self.stats.accepted += 1;
                self.stats.sent_live += 1;
                self.stats.delivered += 1;
                let _ = reply.send(Ok(seq));
            }
        }
    }

    fn tell(&self, event: StoreEvent) {
        // The engine is gone only when the client is closing.
        let _ = self.events.unbounded_send(event);
    }

    /// Answers a command that cannot run because its batch already failed. Lost deletions
    /// only mean an entry is sent again (with its key); nothing is lost.
    fn refuse(&mut self, cmd: Cmd, e: &StoreError) {
        let err = || Error::from(e.clone());
        match cmd {
            Cmd::Append {
                reply, seq, notify, ..
            } => {
                self.appended_upto = self.appended_upto.max(seq);
                self.refuse_append(reply, notify, seq, err());
            }
            Cmd::Fetch { id, .. } => self.tell(StoreEvent::fetched(id, Vec::new(), false, 0)),
            Cmd::ReserveSeqs => self.tell(StoreEvent::ReserveFailed),
            Cmd::List { reply, .. } => drop(reply.send(Err(err()))),
            Cmd::Remove { reply, .. } => drop(reply.send(Err(err()))),
            Cmd::Clear(reply) => drop(reply.send(Err(err()))),
            Cmd::PutSubscription(_, reply) => drop(reply.send(Err(err()))),
            Cmd::RemoveSubscription(_, reply) => drop(reply.send(Err(err()))),
            Cmd::Stats(reply) => drop(reply.send(self.stats.clone())),
            Cmd::WhenEmpty(reply) => self.empty_waiters.push(reply),
            Cmd::Unpark => self.parked = None,
            Cmd::WakeFetch => {}
            Cmd::Delivered(_)
            | Cmd::Failed(_)
            | Cmd::SentLive(_)
            | Cmd::Seen { .. }
            | Cmd::Recovery { .. } => {}
            Cmd::Close(_) => unreachable!("handled by run_batch"),
        }
    }

    fn apply(&mut self, cmd: Cmd, now: i64, out: &mut Vec<Deferred>) -> Result<(), StoreError> {
        match cmd {
            Cmd::Append {
                entry,
                seq,
                notify,
                sending,
                reply,
            } => {
                self.appended_upto = self.appended_upto.max(seq);
                if seq > self.recorded_upto {
                    // Only after a full-disk open (see `recorded_upto`); never on the way of
                    // an emit otherwise.
                    self.rows.record_seq(seq)?;
                    self.recorded_upto = seq;
                }
                let live = sending == Sending::Live;
                self.appended(seq, &entry, live, reply, notify, now, out)?;
            }
            Cmd::ReserveSeqs => match self.rows.reserve_seqs() {
                Ok((first, last)) => {
                    self.recorded_upto = self.recorded_upto.max(last);
                    out.push(Deferred::Reserved(first, last));
                }
                // In memory nothing changed (see `Memory::reserve_seqs`) and nothing could be
                // rolled back: only this reservation is refused; the batch goes on.
                Err(e) if !self.rows.rolls_back() => {
                    warn!(error = %e, "no block of sequence numbers left");
                    self.tell(StoreEvent::ReserveFailed);
                }
                Err(e) => {
                    self.tell(StoreEvent::ReserveFailed);
                    return Err(e);
                }
            },
            Cmd::Fetch {
                id,
                after,
                limit,
                park,
            } => {
                self.expire(now, out)?;
                let found = self.fetch(after, limit, now)?;
                if found.is_empty() {
                    // Nothing left to send: the moment to correct the counts kept in
                    // memory, should they have drifted from the file.
                    self.recount()?;
                }
                if found.is_empty() && park {
                    // A newer fetch replaces an older one, whose asker has moved on.
                    self.parked = Some(Parked { id, after, limit });
                } else {
                    let drained = found.len() < limit;
                    out.push(Deferred::Fetched(id, found, drained, self.appended_upto));
                }
            }
            Cmd::Unpark => self.parked = None,
            // Answered after the batch (`run_batch`).
            Cmd::WakeFetch => {}
            Cmd::Delivered(seqs) => {
                let (n, bytes) = self.rows.delete(&seqs)?;
                self.stats.delivered += n;
                self.shrink(n, bytes);
                self.recount_if_shared(n, seqs.len())?;
            }
            Cmd::SentLive(n) => self.stats.sent_live += n,
            Cmd::Failed(seqs) => {
                let (n, bytes) = self.rows.delete(&seqs)?;
                self.stats.failed += n;
                self.shrink(n, bytes);
                self.recount_if_shared(n, seqs.len())?;
            }
            Cmd::List { limit, reply } => {
                let items = self
                    .rows
                    .list(limit)?
                    .into_iter()
                    .map(|e| self.describe(e))
                    .collect();
                out.push(Deferred::Listed(reply, items));
            }
            Cmd::Remove { id, reply } => {
                let (n, bytes) = self.rows.delete(&[id])?;
                self.stats.failed += n;
                self.shrink(n, bytes);
                if n > 0 {
                    out.push(Deferred::Gone(vec![id], Gone::Removed));
                }
                out.push(Deferred::Removed(reply, n > 0));
            }
            Cmd::Clear(reply) => {
                let seqs = self.rows.clear()?;
                let n = seqs.len() as u64;
                self.stats.failed += n;
                self.stats.pending = 0;
                self.stats.pending_bytes = 0;
                out.push(Deferred::Gone(seqs, Gone::Removed));
                out.push(Deferred::Cleared(reply, n));
            }
            Cmd::Stats(reply) => {
                let _ = reply.send(self.stats.clone());
            }
            Cmd::WhenEmpty(reply) => {
                if self.stats.pending > 0 {
                    self.recount()?;
                }
                // Callers re-ask periodically (see `Outbox::drained`); drop those gone.
                self.empty_waiters.retain(|w| !w.is_closed());
                self.empty_waiters.push(reply);
            }
            Cmd::PutSubscription(s, reply) => {
                self.rows.put_subscription(&s, now)?;
                out.push(Deferred::Done(reply));
            }
            Cmd::RemoveSubscription(s, reply) => {
                let undo = self.rows.remove_subscription(&s)?;
                out.push(Deferred::Unsubscribed(reply, undo));
            }
            Cmd::Seen {
                ids,
                window,
                min_ms,
            } => self.rows.record_seen(&ids, window, min_ms)?,
            Cmd::Recovery {
                namespace,
                session,
                position,
            } => self
                .rows
                .set_recovery(&namespace, session.as_deref(), position.as_deref())?,
            Cmd::Close(_) => unreachable!("handled by run_batch"),
        }
        Ok(())
    }

    fn fetch(
        &mut self,
        after: [u64; 3],
        limit: usize,
        now: i64,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        let mut found = Vec::new();
        for (lane, after) in Priority::DESCENDING.into_iter().zip(after) {
            if found.len() >= limit {
                break;
            }
            found.extend(self.rows.fetch(lane, after, limit - found.len(), now)?);
        }
        Ok(found)
    }

    /// Answers the parked fetch if entries arrived for it.
    fn answer_parked(&mut self, now: i64) {
        let Some(p) = self.parked.take() else { return };
        match self.fetch(p.after, p.limit, now) {
            Ok(found) if found.is_empty() => self.parked = Some(p),
            Ok(entries) => {
                let drained = entries.len() < p.limit;
                self.tell(StoreEvent::fetched(
                    p.id,
                    entries,
                    drained,
                    self.appended_upto,
                ))
            }
            // The engine hears nothing and asks again on its next connection.
            Err(e) => warn!(error = %e, "store fetch failed"),
        }
    }

    /// Inserts an entry within the limits. The outer error is a store failure; the inner one
    /// a refusal (too large, outbox full) that leaves the batch intact.
    /// Appends one entry and answers its caller (after the commit, through `out`).
    #[allow(clippy::too_many_arguments)] // one command's parts, taken apart by `apply`
    fn appended(
        &mut self,
        seq: u64,
        entry: &NewEntry,
        live: bool,
        reply: super::command::Reply<u64>,
        notify: bool,
        now: i64,
        out: &mut Vec<Deferred>,
    ) -> Result<(), StoreError> {
        match self.append(seq, entry, now, out) {
            Ok(Ok(())) => {
                self.stats.sent_live += u64::from(live);
                out.push(Deferred::Appended(reply, notify, seq));
            }
            Ok(Err(refused)) => self.refuse_append(reply, notify, seq, refused),
            Err(e) => {
                self.refuse_append(reply, notify, seq, e.clone().into());
                return Err(e);
            }
        }
        Ok(())
    }

    /// Tells an append's caller, and the engine when it waits on it, that it was not stored.
    fn refuse_append(&self, reply: super::command::Reply<u64>, notify: bool, seq: u64, err: Error) {
        let _ = reply.send(Err(err));
        if notify {
            self.tell(StoreEvent::Appended { seq, ok: false });
        }
    }

    fn append(
        &mut self,
        seq: u64,
        e: &NewEntry,
        now: i64,
        out: &mut Vec<Deferred>,
    ) -> Result<Result<(), Error>, StoreError> {
        let size = e.bytes();
        if size > self.limits.max_bytes {
            return Ok(Err(Error::InvalidArgs(format!(
                "event of {size} bytes exceeds the outbox limit of {} bytes",
                self.limits.max_bytes
            ))));
        }
        let full = |s: &OutboxStats, l: &OutboxConfig| {
            s.pending + 1 > l.max_entries || s.pending_bytes + size > l.max_bytes
        };
        if full(&self.stats, &self.limits) && e.coalesce_key.is_none() {
            match self.limits.overflow {
                Overflow::Reject => {
                    self.stats.rejected += 1;
                    return Ok(Err(Error::OutboxFull {
                        entries: self.stats.pending,
                        bytes: self.stats.pending_bytes,
                    }));
                }
                Overflow::DropOldest => {
                    let mut dropped = Vec::new();
                    while full(&self.stats, &self.limits) {
                        let Some((seq, bytes)) = self.rows.oldest_lowest()? else {
                            break;
                        };
                        self.rows.delete(&[seq])?;
                        self.shrink(1, bytes);
                        dropped.push(seq);
                    }
                    self.stats.dropped_overflow += dropped.len() as u64;
                    let why = Gone::Overflow {
                        entries: self.stats.pending,
                        bytes: self.stats.pending_bytes,
                    };
                    out.push(Deferred::Gone(dropped, why));
                }
            }
        }
        let replaced = self.rows.insert(seq, e, now)?;
        if let Some((_, bytes)) = replaced {
            self.stats.coalesced += 1;
            self.shrink(1, bytes);
        }
        self.stats.accepted += 1;
        self.stats.pending += 1;
        self.stats.pending_bytes += size;
        Ok(Ok(()))
    }

    fn expire(&mut self, now: i64, out: &mut Vec<Deferred>) -> Result<(), StoreError> {
        let expired = self.rows.expire(now)?;
        if expired.is_empty() {
            return Ok(());
        }
        let mut seqs = Vec::with_capacity(expired.len());
        for (seq, bytes) in expired {
            self.stats.expired += 1;
            self.shrink(1, bytes);
            seqs.push(seq);
        }
        out.push(Deferred::Gone(seqs, Gone::Expired));
        Ok(())
    }

    /// Fewer rows deleted than asked means something else took them (the app's `remove`,
    /// an expiry): the counts kept in memory are then re-read from the store, so `drained()`
    /// does not wait for entries that are gone.
    fn recount_if_shared(&mut self, deleted: u64, asked: usize) -> Result<(), StoreError> {
        if deleted < asked as u64 {
            self.recount()?;
        }
        Ok(())
    }

    /// Re-reads the pending counts from the store.
    fn recount(&mut self) -> Result<(), StoreError> {
        let (count, bytes) = self.rows.totals()?;
        self.stats.pending = count;
        self.stats.pending_bytes = bytes;
        Ok(())
    }

    fn shrink(&mut self, n: u64, bytes: u64) {
        self.stats.pending = self.stats.pending.saturating_sub(n);
        self.stats.pending_bytes = self.stats.pending_bytes.saturating_sub(bytes);
    }

    fn describe(&self, e: StoredEntry) -> PendingEmit {
        PendingEmit {
            id: e.seq,
            key: idempotency_key(&self.client_id, e.seq),
            namespace: e.namespace,
            event: e.event,
            args_json: e.args,
            attachments: e.attachments.len(),
            priority: e.lane,
            wants_ack: e.want_ack,
            created_ms: e.created_ms,
            expires_ms: e.expires_ms,
        }
    }
}

/// A client's worker as its store thread and its engine share it: the thread runs every
/// command, and the engine commits its appends itself when the store allows it (see
/// [`super::Store::post_all`]). `None` once the store is closed.
pub(super) struct Shared(Mutex<Option<Worker>>);

impl Shared {
    pub(super) fn new(worker: Worker) -> Self {
        Self(Mutex::new(Some(worker)))
    }

    /// Runs `cmds` in one transaction. A closed store drops them, so their callers hear
    /// [`Error::Closed`]; a close among them closes it once the batch ran; a panic (a bug)
    /// closes this client's store alone, its callers hearing `Closed`. Returns whether the
    /// store is still open.
    pub(super) fn run(&self, cmds: &mut Vec<Cmd>) -> bool {
        self.run_then(cmds, &mut || {})
    }

    /// [`Shared::run`], calling `settled` once the batch is committed (or rolled back, or
    /// dropped by a closed store), before anyone waiting on it is answered.
    pub(super) fn run_then(&self, cmds: &mut Vec<Cmd>, settled: &mut dyn FnMut()) -> bool {
        // A panic is caught below with the lock held, so the lock is never poisoned; if it
        // were, the worker inside is as consistent as a caught panic leaves it.
        let mut held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(worker) = held.as_mut() else {
            settled();
            cmds.clear();
            return false;
        };
        let run = || worker.run_batch_then(cmds, settled);
        match std::panic::catch_unwind(AssertUnwindSafe(run)) {
            Ok(None) => true,
            Ok(Some(reply)) => {
                if let Some(worker) = held.take() {
                    worker.finish();
                }
                let _ = reply.send(());
                false
            }
            Err(_) => {
                error!("a client's store failed; its store is closed");
                *held = None;
                cmds.clear();
                false
            }
        }
    }

    /// [`Worker::delivered_live`], unless the store is closed (dropping the replies then
    /// tells their callers).
    pub(super) fn delivered_live(&self, appends: Vec<Cmd>) {
        let mut held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(worker) = held.as_mut() {
            worker.delivered_live(appends);
        }
    }

    /// Closes the store cleanly, if it is still open.
    pub(super) fn finish(&self) {
        let worker = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(worker) = worker {
            worker.finish();
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::Durability;

    type News = futures_channel::mpsc::UnboundedReceiver<StoreEvent>;

    /// A worker on a compact SQLite database (as a hub's clients with a file have), kept in
    /// memory for the test.
    fn worker(config: OutboxConfig) -> (Worker, News) {
        let (conn, snapshot, cipher) =
            super::super::schema::open(None, Durability::Normal, None, true).unwrap();
        let (events, rx) = futures_channel::mpsc::unbounded();
        let rows = Backend::sqlite(conn, cipher);
        (Worker::new(rows, None, &snapshot, config, events), rx)
    }

    /// A worker on each kind of store: a SQLite database, and rows in memory (what every
    /// client without a store file has).
    fn both(config: OutboxConfig) -> [(Worker, News); 2] {
        let (memory, snapshot) = crate::store::memory::Memory::open();
        let (events, rx) = futures_channel::mpsc::unbounded();
        let rows = Backend::Memory(memory);
        let in_memory = (
            Worker::new(rows, None, &snapshot, config.clone(), events),
            rx,
        );
        [worker(config), in_memory]
    }

    /// The SQLite connection of a worker made by [`worker`].
    fn conn(w: &Worker) -> &rusqlite::Connection {
        match &w.rows {
            Backend::Sqlite { conn, .. } => conn,
            Backend::Memory(_) => panic!("a worker in memory has no connection"),
        }
    }

    /// A fetch `id` from the start that finds nothing and parks.
    fn park(w: &mut Worker, id: u64) {
        let mut batch = vec![Cmd::Fetch {
            id,
            after: [0; 3],
            limit: 10,
            park: true,
        }];
        w.run_batch(&mut batch);
    }

    /// Entry `n`, numbered `n + 1` as the engine would from a fresh block.
    fn append(n: usize, notify: bool) -> (Cmd, oneshot::Receiver<Result<u64, Error>>) {
        append_as(n, n as u64 + 1, notify, false)
    }

    /// Entry `n` (200-odd bytes), numbered `seq`.
    pub(in crate::store) fn append_as(
        n: usize,
        seq: u64,
        notify: bool,
        live: bool,
    ) -> (Cmd, oneshot::Receiver<Result<u64, Error>>) {
        let (reply, rx) = oneshot::channel();
        let entry = NewEntry {
            lane: Priority::Normal,
            namespace: Arc::from("/"),
            event: "metric:recorded".into(),
            args: format!(r#"[{{"n":{n},"pad":"{}"}}]"#, "x".repeat(200)),
            attachments: vec![],
            want_ack: false,
            ttl: None,
            coalesce_key: None,
        };
        let sending = if live {
            Sending::Live
        } else {
            Sending::Fetched
        };
        let cmd = Cmd::Append {
            entry,
            seq,
            notify,
            sending,
            reply,
        };
        (cmd, rx)
    }

    /// Bytes SQLite holds for `conn`'s prepared statements (`SQLITE_DBSTATUS_STMT_USED`).
    fn statement_memory(conn: &rusqlite::Connection) -> i32 {
        let (mut now, mut high) = (0, 0);
        // SAFETY: `handle()` is this open connection, used on this thread; the two outputs
        // are live locals. rusqlite has no safe call for this counter.
        let rc = unsafe {
            rusqlite::ffi::sqlite3_db_status(
                conn.handle(),
                rusqlite::ffi::SQLITE_DBSTATUS_STMT_USED,
                &mut now,
                &mut high,
                0,
            )
        };
        assert_eq!(rc, rusqlite::ffi::SQLITE_OK);
        now
    }

    #[test]
    fn a_hub_worker_lets_go_of_its_statements_once_its_outbox_is_empty() {
        for releasing in [false, true] {
            let (mut w, _events) = worker(OutboxConfig::default());
            if releasing {
                w = w.idle_releases_statements();
            }
            let (cmd, _rx) = append(0, false);
            w.run_batch(&mut vec![cmd]);
            assert_eq!(w.stats.pending, 1);
            let busy = statement_memory(conn(&w));
            assert!(
                busy > 0,
                "an entry is pending: its statements stay prepared"
            );
            w.run_batch(&mut vec![Cmd::Delivered(vec![1])]);
            assert_eq!(w.stats.pending, 0);
            let idle = statement_memory(conn(&w));
            if releasing {
                assert_eq!(idle, 0, "idle, a hub's worker holds no statement");
            } else {
                assert!(
                    idle >= busy,
                    "a client's own worker keeps them: {idle} < {busy}"
                );
            }
            // And prepares again when there is work.
            let (cmd, rx) = append(1, false);
            w.run_batch(&mut vec![cmd]);
            assert_eq!(rx.blocking_recv().unwrap().unwrap(), 2);
        }
    }

    #[test]
    fn a_number_of_an_unrecorded_block_is_never_handed_out_again() {
        let (db, opened, cipher) =
            super::super::schema::open(None, Durability::Normal, None, true).unwrap();
        // As after an open on a full disk: the block after the recorded one, not recorded.
        let first = opened.seqs.1 + 1;
        let snapshot = Snapshot {
            count: 0,
            bytes: 0,
            seqs: (first, first + crate::store::SEQ_BLOCK - 1),
            seqs_recorded: false,
            ..opened
        };
        let (events, _rx) = futures_channel::mpsc::unbounded();
        let mut w = Worker::new(
            Backend::sqlite(db, cipher),
            None,
            &snapshot,
            OutboxConfig::default(),
            events,
        );
        let (cmd, rx) = append_as(0, first, false, false);
        w.run_batch(&mut vec![cmd]);
        assert_eq!(rx.blocking_recv().unwrap().unwrap(), first);
        // Delivered and deleted: no row says the number was used.
        w.run_batch(&mut vec![Cmd::Delivered(vec![first])]);
        assert_eq!(w.stats.pending, 0);
        let (next, _) = super::super::schema::next_block(conn(&w)).unwrap();
        assert!(
            next > first,
            "the next open would reuse {first}: it starts at {next}"
        );
        // Numbers of a recorded block cost no such write.
        let recorded = w.recorded_upto;
        let (cmd, _rx) = append_as(1, first + 1, false, false);
        w.run_batch(&mut vec![Cmd::ReserveSeqs, cmd]);
        assert!(
            w.recorded_upto > recorded + 1,
            "the reservation recorded a whole block"
        );
    }

    #[test]
    fn a_batch_commits_together_and_answers_after_the_commit() {
        for (mut w, _events) in both(OutboxConfig::default()) {
            let (mut batch, rxs): (Vec<_>, Vec<_>) = (0..1000).map(|n| append(n, false)).unzip();
            w.run_batch(&mut batch);
            let seqs: Vec<u64> = rxs
                .into_iter()
                .map(|mut rx| rx.try_recv().unwrap().unwrap())
                .collect();
            assert_eq!(seqs, (1..=1000).collect::<Vec<_>>());
            assert_eq!(w.stats.pending, 1000);
        }
    }

    #[test]
    fn the_engine_hears_an_append_before_the_fetch_that_returns_it() {
        for (mut w, mut events) in both(OutboxConfig::default()) {
            park(&mut w, 7);
            assert!(events.try_recv().is_err(), "parked: nothing to send yet");
            let (cmd, _rx) = append(0, true);
            w.run_batch(&mut vec![cmd]);
            assert_eq!(
                events.try_recv().unwrap(),
                StoreEvent::Appended { seq: 1, ok: true }
            );
            match events.try_recv().unwrap() {
                StoreEvent::Fetched(f) if (f.id, f.drained, f.upto) == (7, true, 1) => {
                    assert_eq!(f.entries[0].seq, 1)
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn an_entry_written_live_does_not_wake_the_parked_fetch() {
        for (mut w, mut events) in both(OutboxConfig::default()) {
            park(&mut w, 3);
            let (cmd, _rx) = append_as(0, 1, true, true);
            w.run_batch(&mut vec![cmd]);
            assert_eq!(
                events.try_recv().unwrap(),
                StoreEvent::Appended { seq: 1, ok: true }
            );
            assert!(events.try_recv().is_err(), "still parked");
            // The next entry that was not written live is what the fetch returns.
            let (cmd, _rx) = append_as(1, 2, false, false);
            w.run_batch(&mut vec![cmd]);
            match events.try_recv().unwrap() {
                StoreEvent::Fetched(f) if f.id == 3 => {
                    assert_eq!(f.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [2])
                }
                other => panic!("{other:?}"),
            }
            // Sequence blocks never overlap what was used.
            w.run_batch(&mut vec![Cmd::ReserveSeqs]);
            match events.try_recv().unwrap() {
                StoreEvent::Reserved { first, .. } => assert!(first > 2, "{first}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn an_entry_a_caller_handed_to_the_engine_waits_for_the_engine_to_wake_the_parked_fetch() {
        for (mut w, mut events) in both(OutboxConfig::default()) {
            park(&mut w, 3);
            let (mut cmd, rx) = append_as(0, 1, false, false);
            if let Cmd::Append { sending, .. } = &mut cmd {
                *sending = Sending::Handed;
            }
            w.run_batch(&mut vec![cmd]);
            assert_eq!(rx.blocking_recv().unwrap().unwrap(), 1, "committed");
            assert!(events.try_recv().is_err(), "still parked");
            assert_eq!(w.stats.sent_live, 0, "the engine has not written it");
            // The engine could not write it live: it wakes the fetch, which returns it.
            w.run_batch(&mut vec![Cmd::WakeFetch]);
            match events.try_recv().unwrap() {
                StoreEvent::Fetched(f) if f.id == 3 => {
                    assert_eq!(f.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [1])
                }
                other => panic!("{other:?}"),
            }
            // One the engine wrote live: it says so, and it was delivered.
            w.run_batch(&mut vec![Cmd::SentLive(1), Cmd::Delivered(vec![1])]);
            assert_eq!((w.stats.sent_live, w.stats.delivered), (1, 1));
        }
    }

    #[test]
    fn entries_leaving_undelivered_are_reported() {
        let mut limits = OutboxConfig {
            max_entries: 2,
            overflow: Overflow::DropOldest,
            ..OutboxConfig::default()
        };
        limits.max_bytes = 1 << 20;
        for (mut w, mut events) in both(limits) {
            let (mut batch, _rxs): (Vec<_>, Vec<_>) = (0..3).map(|n| append(n, false)).unzip();
            w.run_batch(&mut batch);
            assert_eq!(
                events.try_recv().unwrap(),
                StoreEvent::gone(
                    vec![1],
                    Gone::Overflow {
                        entries: 1,
                        bytes: 233
                    }
                )
            );
            let (reply, _rx) = oneshot::channel();
            w.run_batch(&mut vec![Cmd::Clear(reply)]);
            assert_eq!(
                events.try_recv().unwrap(),
                StoreEvent::gone(vec![2, 3], Gone::Removed)
            );
        }
    }

    #[test]
    fn in_memory_running_out_of_numbers_refuses_the_reservation_alone() {
        let [_, (mut w, mut events)] = both(OutboxConfig::default());
        let Backend::Memory(m) = &mut w.rows else {
            unreachable!("the second is in memory")
        };
        m.set_reserved(i64::MAX as u64 - 10);
        let (cmd, rx) = append(0, true);
        // Nothing can be rolled back in memory: the append before it stays, and says so.
        w.run_batch(&mut vec![cmd, Cmd::ReserveSeqs]);
        assert_eq!(rx.blocking_recv().unwrap().unwrap(), 1);
        assert_eq!(events.try_recv().unwrap(), StoreEvent::ReserveFailed);
        assert_eq!(
            events.try_recv().unwrap(),
            StoreEvent::Appended { seq: 1, ok: true }
        );
        assert_eq!((w.stats.pending, w.stats.accepted), (1, 1));
    }

    #[test]
    fn disk_full_fails_the_batch_clearly_and_keeps_what_was_stored() {
        let (mut w, mut events) = worker(OutboxConfig::default());
        let (mut batch, _rxs): (Vec<_>, Vec<_>) = (0..10).map(|n| append(n, false)).unzip();
        w.run_batch(&mut batch);
        let pages: i64 = conn(&w)
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        // The file may not grow any more: the next writes hit SQLITE_FULL.
        conn(&w)
            .execute_batch(&format!("PRAGMA max_page_count = {pages}"))
            .unwrap();
        let (mut batch, rxs): (Vec<_>, Vec<_>) = (10..200).map(|n| append(n, true)).unzip();
        w.run_batch(&mut batch);
        let errors: Vec<Error> = rxs
            .into_iter()
            .map(|mut rx| rx.try_recv().unwrap().unwrap_err())
            .collect();
        assert!(
            errors.iter().all(|e| matches!(e, Error::DiskFull(_))),
            "{:?}",
            &errors[..2]
        );
        assert!(errors[0].to_string().contains("disk full"), "{}", errors[0]);
        let failed = std::iter::from_fn(|| events.try_recv().ok()).count();
        assert_eq!(
            failed, 190,
            "the engine hears every failed append it waits for"
        );
        assert_eq!(w.stats.pending, 10, "counters match what is stored");
        assert_eq!(w.rows.list(100).unwrap().len(), 10, "nothing lost");
        super::super::schema::quick_check(conn(&w)).unwrap();
        // Space comes back: writes work again.
        conn(&w)
            .execute_batch("PRAGMA max_page_count = 1000000")
            .unwrap();
        let (mut batch, mut rxs): (Vec<_>, Vec<_>) = (200..201).map(|n| append(n, false)).unzip();
        w.run_batch(&mut batch);
        assert!(rxs[0].try_recv().unwrap().is_ok());
        assert_eq!(w.stats.pending, 11);
    }
}
