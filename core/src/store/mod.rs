//! The store: one SQLite database per client, owned by its own thread so the engine never
//! waits for a disk.
//!
//! Commands arrive on a channel. The thread takes every command already queued (up to a
//! batch), runs them in one `BEGIN IMMEDIATE` transaction and answers after the commit: that
//! is the group commit that lets many concurrent emits share one fsync.
//!
//! The engine keeps one fetch outstanding while it can send. When nothing waits the fetch is
//! parked here and answered by the next commit that adds entries, so a live emit reaches the
//! wire without the engine having to ask again.

pub(crate) mod cipher;
mod db;

use std::{
    collections::HashMap,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use rusqlite::{Connection, ErrorCode};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{debug, warn};

pub(crate) use self::db::Snapshot;
use crate::{
    error::Error,
    event::{AckReply, Notice},
    outbox::{OutboxConfig, OutboxStats, Overflow, PendingEmit, Priority},
};

/// A lane is a priority.
pub(crate) type Lane = Priority;

/// Where an emit's acknowledgement goes.
pub(crate) type AckTx = oneshot::Sender<Result<AckReply, Error>>;

/// Commands that wait in the channel before the thread takes them; a full channel makes
/// emitters wait (backpressure) instead of growing memory.
const CHANNEL: usize = 4096;

/// Most commands in one transaction.
const MAX_BATCH: usize = 4096;

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("the disk is full ({0})")]
    Full(String),
    #[error("the store file is damaged: {0}")]
    Corrupt(String),
    #[error(
        "the store was written by a newer Pulselink (schema {found}, this build reads up to {supported})"
    )]
    Incompatible { found: i32, supported: i32 },
    #[error("store error: {0}")]
    Io(String),
    /// The encryption key is missing or not the file's.
    #[error("outbox encryption: {0}")]
    Key(String),
}

impl StoreError {
    fn from_sqlite(op: &str, e: rusqlite::Error) -> Self {
        let code = e.sqlite_error_code();
        let msg = format!("{op}: {e}");
        match code {
            Some(ErrorCode::DiskFull) => StoreError::Full(msg),
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreError::Corrupt(msg),
            _ => StoreError::Io(msg),
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Full(m) => Error::DiskFull(m),
            StoreError::Corrupt(m) => Error::StoreCorrupt(m),
            e @ StoreError::Incompatible { .. } => Error::Store(e.to_string()),
            StoreError::Io(m) => Error::Store(m),
            e @ StoreError::Key(_) => Error::InvalidConfig(e.to_string()),
        }
    }
}

/// An emit on its way into the store.
#[derive(Debug)]
pub(crate) struct NewEntry {
    pub(crate) lane: Lane,
    pub(crate) namespace: Arc<str>,
    pub(crate) event: String,
    pub(crate) args: String,
    pub(crate) attachments: Vec<Vec<u8>>,
    pub(crate) want_ack: bool,
    pub(crate) ttl: Option<std::time::Duration>,
    pub(crate) coalesce_key: Option<String>,
}

impl NewEntry {
    /// Payload bytes counted against the outbox limit.
    pub(crate) fn bytes(&self) -> u64 {
        (self.event.len() + self.args.len() + self.attachments.iter().map(Vec::len).sum::<usize>())
            as u64
    }
}

/// An entry read back from the store.
#[derive(Debug, Clone)]
pub(crate) struct StoredEntry {
    pub(crate) seq: u64,
    pub(crate) lane: Lane,
    pub(crate) namespace: String,
    pub(crate) event: String,
    pub(crate) args: String,
    pub(crate) attachments: Vec<Vec<u8>>,
    pub(crate) want_ack: bool,
    pub(crate) created_ms: i64,
    pub(crate) expires_ms: Option<i64>,
    #[allow(dead_code)]
    pub(crate) coalesce_key: Option<String>,
}

/// An entry handed to the engine, with the caller waiting for its acknowledgement if that
/// caller is still in this process.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) entry: StoredEntry,
    pub(crate) ack: Option<AckTx>,
}

/// A persisted subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredSubscription {
    pub(crate) namespace: String,
    pub(crate) event: String,
    pub(crate) args: String,
    pub(crate) unsubscribe: Option<String>,
}

type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// Work for the store thread.
pub(crate) enum Cmd {
    Append {
        entry: NewEntry,
        ack: Option<AckTx>,
        reply: Reply<u64>,
    },
    /// The next entries of each lane after the engine's cursors, highest lane first; parked
    /// until there are some.
    Fetch {
        after: [u64; 3],
        limit: usize,
        /// Wait for entries rather than answer empty.
        park: bool,
        reply: oneshot::Sender<Vec<Fetched>>,
    },
    Delivered(Vec<u64>),
    /// Given up by the engine (too many sends).
    Failed(Vec<u64>),
    List {
        limit: usize,
        reply: Reply<Vec<PendingEmit>>,
    },
    Remove {
        id: u64,
        reply: Reply<bool>,
    },
    Clear(Reply<u64>),
    Stats(oneshot::Sender<OutboxStats>),
    PutSubscription(StoredSubscription, Reply<()>),
    /// Answers with the removed subscription's unsubscribe event, if it had one.
    RemoveSubscription(StoredSubscription, Reply<Option<String>>),
    Seen {
        ids: Vec<(String, i64)>,
        window: usize,
        min_ms: i64,
    },
    Recovery {
        namespace: String,
        pid: Option<String>,
        offset: Option<String>,
    },
    /// Answered once the outbox is empty (at once if it is).
    WhenEmpty(oneshot::Sender<()>),
    Close(oneshot::Sender<()>),
}

/// The handle the client and engine share.
#[derive(Clone)]
pub(crate) struct Store {
    tx: mpsc::Sender<Cmd>,
    /// Prefix of every idempotency key.
    pub(crate) client_id: Arc<str>,
}

impl Store {
    /// Opens the store (blocking for the open and any migration) and starts its thread.
    pub(crate) fn open(
        config: &OutboxConfig,
        notices: broadcast::Sender<Notice>,
    ) -> Result<(Store, Snapshot), Error> {
        let (conn, snapshot, cipher) = db::open(
            config.path.as_deref(),
            config.durability,
            config.encryption_key.as_ref(),
        )?;
        if snapshot.unclean {
            debug!("store was not closed cleanly last time; quick_check passed");
        }
        let (tx, rx) = mpsc::channel(CHANNEL);
        let worker = Worker {
            conn,
            cipher,
            client_id: snapshot.client_id.clone(),
            limits: config.clone(),
            stats: OutboxStats {
                pending: snapshot.count,
                pending_bytes: snapshot.bytes,
                ..Default::default()
            },
            waiters: HashMap::new(),
            parked: None,
            notices,
            empty_waiters: Vec::new(),
        };
        std::thread::Builder::new()
            .name("pulselink-store".into())
            .spawn(move || worker.run(rx))
            .map_err(|e| Error::Store(format!("cannot start the store thread: {e}")))?;
        let store = Store {
            tx,
            client_id: Arc::from(snapshot.client_id.as_str()),
        };
        Ok((store, snapshot))
    }

    /// Queues a command, waiting for room.
    pub(crate) async fn send(&self, cmd: Cmd) -> Result<(), Error> {
        self.tx.send(cmd).await.map_err(|_| Error::Closed)
    }

    /// Queues a command from the engine, which must not wait: when the channel is full the
    /// command is handed to a task that waits for room (order within that rare case is kept
    /// by the channel's FIFO semaphore).
    pub(crate) fn post(&self, cmd: Cmd) {
        match self.tx.try_send(cmd) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(cmd)) => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let _ = tx.send(cmd).await;
                });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Sends `make(reply)` and waits for the answer.
    pub(crate) async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).await?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// The idempotency key of entry `seq`.
    pub(crate) fn key(&self, seq: u64) -> String {
        idempotency_key(&self.client_id, seq)
    }
}

/// `<client id>-<seq>`: unique per store, stable across resends and restarts.
pub(crate) fn idempotency_key(client_id: &str, seq: u64) -> String {
    format!("{client_id}-{seq}")
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A fetch waiting for entries.
struct Parked {
    after: [u64; 3],
    limit: usize,
    reply: oneshot::Sender<Vec<Fetched>>,
}

/// Answers a fetch. If the engine has stopped listening (its link dropped), the callers'
/// acknowledgement waiters go back to the store for the next fetch.
fn answer_fetch(
    reply: oneshot::Sender<Vec<Fetched>>,
    found: Vec<Fetched>,
    waiters: &mut HashMap<u64, AckTx>,
) {
    if let Err(found) = reply.send(found) {
        for f in found {
            if let Some(ack) = f.ack {
                waiters.insert(f.entry.seq, ack);
            }
        }
    }
}

/// A reply that is sent only once the batch it belongs to has committed.
enum Deferred {
    Appended(Reply<u64>, u64),
    Fetched(oneshot::Sender<Vec<Fetched>>, Vec<Fetched>),
    Listed(Reply<Vec<PendingEmit>>, Vec<PendingEmit>),
    Removed(Reply<bool>, bool),
    Cleared(Reply<u64>, u64),
    Done(Reply<()>),
    Unsubscribed(Reply<Option<String>>, Option<String>),
}

struct Worker {
    conn: Connection,
    /// Seals payloads when the app configured an encryption key.
    cipher: Option<cipher::Cipher>,
    client_id: String,
    limits: OutboxConfig,
    stats: OutboxStats,
    /// Callers awaiting acknowledgements of entries the engine has not fetched yet.
    waiters: HashMap<u64, AckTx>,
    /// The engine's fetch while nothing waited.
    parked: Option<Parked>,
    notices: broadcast::Sender<Notice>,
    /// Callers of `Outbox::drained`.
    empty_waiters: Vec<oneshot::Sender<()>>,
}

impl Worker {
    fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let mut batch = Vec::with_capacity(64);
        let mut closed_reply = None;
        while closed_reply.is_none() {
            batch.clear();
            match rx.blocking_recv() {
                Some(cmd) => batch.push(cmd),
                None => break,
            }
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(cmd) => batch.push(cmd),
                    Err(_) => break,
                }
            }
            closed_reply = self.run_batch(&mut batch);
        }
        if let Err(e) = db::meta_set(&self.conn, "clean", "1") {
            warn!(error = %e, "could not mark the store closed");
        }
        // Whoever still waits on an entry hears that the client is gone.
        self.waiters.clear();
        // Closed before `close()` returns: the last connection checkpoints and removes the
        // WAL, so an app that exits, moves or reopens the file right after finds it whole.
        if let Err((_, e)) = self.conn.close() {
            warn!(error = %e, "could not close the store cleanly");
        }
        debug!("store thread stopped");
        if let Some(reply) = closed_reply {
            let _ = reply.send(());
        }
    }

    /// Runs one batch in one transaction; returns the reply of a close it found (the rest of
    /// the batch still runs).
    fn run_batch(&mut self, batch: &mut Vec<Cmd>) -> Option<oneshot::Sender<()>> {
        let now = now_ms();
        let before = self.stats.clone();
        let mut deferred = Vec::with_capacity(batch.len());
        let mut appended = false;
        let mut closing = None;
        let mut failure = db::begin(&self.conn).err();
        for cmd in batch.drain(..) {
            if let Cmd::Close(reply) = cmd {
                closing = Some(reply);
                continue;
            }
            appended |= matches!(cmd, Cmd::Append { .. });
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
            failure = db::commit(&self.conn).err();
        }
        match failure {
            None => {
                for d in deferred {
                    d.send_ok(&mut self.waiters);
                }
            }
            Some(e) => {
                // Nothing in the batch happened: restore the counters, fail every write.
                db::rollback(&self.conn);
                warn!(error = %e, "store batch failed");
                self.stats = before;
                let err = Error::from(e);
                for d in deferred {
                    d.send_err(&err, &mut self.waiters);
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
        }
        closing
    }

    /// Answers a command that cannot run because its batch already failed. Lost deletions
    /// only mean an entry is sent again (with its key); nothing is lost.
    fn refuse(&mut self, cmd: Cmd, e: &StoreError) {
        let err = || Error::from(e.clone());
        match cmd {
            Cmd::Append { reply, .. } => drop(reply.send(Err(err()))),
            Cmd::Fetch { reply, .. } => drop(reply.send(Vec::new())),
            Cmd::List { reply, .. } => drop(reply.send(Err(err()))),
            Cmd::Remove { reply, .. } => drop(reply.send(Err(err()))),
            Cmd::Clear(reply) => drop(reply.send(Err(err()))),
            Cmd::PutSubscription(_, reply) => drop(reply.send(Err(err()))),
            Cmd::RemoveSubscription(_, reply) => drop(reply.send(Err(err()))),
            Cmd::Stats(reply) => drop(reply.send(self.stats.clone())),
            Cmd::WhenEmpty(reply) => self.empty_waiters.push(reply),
            Cmd::Delivered(_) | Cmd::Failed(_) | Cmd::Seen { .. } | Cmd::Recovery { .. } => {}
            Cmd::Close(_) => unreachable!("handled by run_batch"),
        }
    }

    fn apply(&mut self, cmd: Cmd, now: i64, out: &mut Vec<Deferred>) -> Result<(), StoreError> {
        match cmd {
            Cmd::Append { entry, ack, reply } => match self.append(&entry, now) {
                Ok(Ok(seq)) => {
                    if let Some(ack) = ack {
                        self.waiters.insert(seq, ack);
                    }
                    out.push(Deferred::Appended(reply, seq));
                }
                Ok(Err(refused)) => {
                    let _ = reply.send(Err(refused));
                }
                Err(e) => {
                    let _ = reply.send(Err(e.clone().into()));
                    return Err(e);
                }
            },
            Cmd::Fetch {
                after,
                limit,
                park,
                reply,
            } => {
                self.expire(now)?;
                let found = self.fetch(after, limit, now)?;
                if found.is_empty() {
                    // Nothing left to send: the moment to notice entries another process
                    // sharing the file has delivered.
                    self.recount()?;
                }
                if found.is_empty() && park {
                    // A newer fetch replaces an older one, whose asker has moved on.
                    self.parked = Some(Parked {
                        after,
                        limit,
                        reply,
                    });
                } else {
                    out.push(Deferred::Fetched(reply, found));
                }
            }
            Cmd::Delivered(seqs) => {
                let (n, bytes) = db::delete(&self.conn, &seqs)?;
                self.stats.delivered += n;
                self.shrink(n, bytes);
                self.recount_if_shared(n, seqs.len())?;
            }
            Cmd::Failed(seqs) => {
                let (n, bytes) = db::delete(&self.conn, &seqs)?;
                self.stats.failed += n;
                self.shrink(n, bytes);
                self.recount_if_shared(n, seqs.len())?;
            }
            Cmd::List { limit, reply } => {
                let items = db::list(&self.conn, limit, self.cipher.as_ref())?
                    .into_iter()
                    .map(|e| self.describe(e))
                    .collect();
                out.push(Deferred::Listed(reply, items));
            }
            Cmd::Remove { id, reply } => {
                let (n, bytes) = db::delete(&self.conn, &[id])?;
                self.stats.failed += n;
                self.shrink(n, bytes);
                self.waiters.remove(&id);
                out.push(Deferred::Removed(reply, n > 0));
            }
            Cmd::Clear(reply) => {
                let n = db::clear(&self.conn)?;
                self.stats.failed += n;
                self.stats.pending = 0;
                self.stats.pending_bytes = 0;
                self.waiters.clear();
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
                db::put_subscription(&self.conn, &s, now)?;
                out.push(Deferred::Done(reply));
            }
            Cmd::RemoveSubscription(s, reply) => {
                let undo = db::remove_subscription(&self.conn, &s.namespace, &s.event, &s.args)?;
                out.push(Deferred::Unsubscribed(reply, undo));
            }
            Cmd::Seen {
                ids,
                window,
                min_ms,
            } => db::record_seen(&self.conn, &ids, window, min_ms)?,
            Cmd::Recovery {
                namespace,
                pid,
                offset,
            } => db::set_recovery(&self.conn, &namespace, pid.as_deref(), offset.as_deref())?,
            Cmd::Close(_) => unreachable!("handled by run_batch"),
        }
        Ok(())
    }

    fn fetch(
        &mut self,
        after: [u64; 3],
        limit: usize,
        now: i64,
    ) -> Result<Vec<Fetched>, StoreError> {
        let mut found = Vec::new();
        for (lane, after) in Priority::DESCENDING.into_iter().zip(after) {
            if found.len() >= limit {
                break;
            }
            let cipher = self.cipher.as_ref();
            for entry in db::fetch(&self.conn, lane, after, limit - found.len(), now, cipher)? {
                let ack = self.waiters.remove(&entry.seq);
                found.push(Fetched { entry, ack });
            }
        }
        Ok(found)
    }

    /// Answers the parked fetch if entries arrived for it.
    fn answer_parked(&mut self, now: i64) {
        let Some(p) = self.parked.take() else { return };
        if p.reply.is_closed() {
            return;
        }
        match self.fetch(p.after, p.limit, now) {
            Ok(found) if found.is_empty() => self.parked = Some(p),
            Ok(found) => answer_fetch(p.reply, found, &mut self.waiters),
            // The engine hears nothing and asks again on its next connection.
            Err(e) => warn!(error = %e, "store fetch failed"),
        }
    }

    /// Inserts an entry within the limits. The outer error is a store failure; the inner one
    /// a refusal (too large, outbox full) that leaves the batch intact.
    fn append(&mut self, e: &NewEntry, now: i64) -> Result<Result<u64, Error>, StoreError> {
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
                    let mut dropped = 0;
                    while full(&self.stats, &self.limits) {
                        let Some((seq, bytes)) = db::oldest_lowest(&self.conn)? else {
                            break;
                        };
                        db::delete(&self.conn, &[seq])?;
                        self.shrink(1, bytes);
                        self.fail_waiter(
                            seq,
                            Error::OutboxFull {
                                entries: self.stats.pending,
                                bytes: self.stats.pending_bytes,
                            },
                        );
                        dropped += 1;
                    }
                    self.stats.dropped_overflow += dropped;
                    let _ = self.notices.send(Notice::OutboxOverflow { dropped });
                }
            }
        }
        let (seq, replaced) = db::insert(&self.conn, e, now, self.cipher.as_ref())?;
        if let Some((_, bytes)) = replaced {
            self.stats.coalesced += 1;
            self.shrink(1, bytes);
        }
        self.stats.accepted += 1;
        self.stats.pending += 1;
        self.stats.pending_bytes += size;
        Ok(Ok(seq))
    }

    fn expire(&mut self, now: i64) -> Result<(), StoreError> {
        for (seq, bytes) in db::expire(&self.conn, now)? {
            self.stats.expired += 1;
            self.shrink(1, bytes);
            self.fail_waiter(seq, Error::Expired);
        }
        Ok(())
    }

    fn fail_waiter(&mut self, seq: u64, err: Error) {
        if let Some(w) = self.waiters.remove(&seq) {
            let _ = w.send(Err(err));
        }
    }

    /// Fewer rows deleted than asked means another process sharing the file (or the app's
    /// `remove`) took some: the counts kept in memory are then re-read from the file, so
    /// `drained()` does not wait for entries that are gone.
    fn recount_if_shared(&mut self, deleted: u64, asked: usize) -> Result<(), StoreError> {
        if deleted < asked as u64 {
            self.recount()?;
        }
        Ok(())
    }

    /// Re-reads the pending counts from the file.
    fn recount(&mut self) -> Result<(), StoreError> {
        let (count, bytes) = db::totals(&self.conn)?;
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

impl Deferred {
    fn send_ok(self, waiters: &mut HashMap<u64, AckTx>) {
        match self {
            Deferred::Appended(r, seq) => drop(r.send(Ok(seq))),
            Deferred::Fetched(r, v) => answer_fetch(r, v, waiters),
            Deferred::Listed(r, v) => drop(r.send(Ok(v))),
            Deferred::Removed(r, b) => drop(r.send(Ok(b))),
            Deferred::Cleared(r, n) => drop(r.send(Ok(n))),
            Deferred::Done(r) => drop(r.send(Ok(()))),
            Deferred::Unsubscribed(r, u) => drop(r.send(Ok(u))),
        }
    }

    fn send_err(self, err: &Error, waiters: &mut HashMap<u64, AckTx>) {
        match self {
            Deferred::Appended(r, seq) => {
                waiters.remove(&seq);
                drop(r.send(Err(err.clone())));
            }
            // Rows read inside a rolled-back batch may not exist; the engine asks again.
            Deferred::Fetched(r, v) => {
                for f in v {
                    if let Some(ack) = f.ack {
                        waiters.insert(f.entry.seq, ack);
                    }
                }
                drop(r.send(Vec::new()));
            }
            Deferred::Listed(r, _) => drop(r.send(Err(err.clone()))),
            Deferred::Removed(r, _) => drop(r.send(Err(err.clone()))),
            Deferred::Cleared(r, _) => drop(r.send(Err(err.clone()))),
            Deferred::Done(r) => drop(r.send(Err(err.clone()))),
            Deferred::Unsubscribed(r, _) => drop(r.send(Err(err.clone()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(config: OutboxConfig) -> Worker {
        let (conn, snapshot, cipher) =
            db::open(None, config.durability, config.encryption_key.as_ref()).unwrap();
        Worker {
            conn,
            cipher,
            client_id: snapshot.client_id,
            limits: config,
            stats: OutboxStats::default(),
            waiters: HashMap::new(),
            parked: None,
            notices: broadcast::channel(4).0,
            empty_waiters: Vec::new(),
        }
    }

    fn append(n: usize) -> (Cmd, oneshot::Receiver<Result<u64, Error>>) {
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
        let cmd = Cmd::Append {
            entry,
            ack: None,
            reply,
        };
        (cmd, rx)
    }

    #[test]
    fn a_batch_commits_together_and_answers_after_the_commit() {
        let mut w = worker(OutboxConfig::default());
        let (mut batch, rxs): (Vec<_>, Vec<_>) = (0..1000).map(append).unzip();
        w.run_batch(&mut batch);
        let seqs: Vec<u64> = rxs
            .into_iter()
            .map(|mut rx| rx.try_recv().unwrap().unwrap())
            .collect();
        assert_eq!(seqs, (1..=1000).collect::<Vec<_>>());
        assert_eq!(w.stats.pending, 1000);
    }

    #[test]
    fn disk_full_fails_the_batch_clearly_and_keeps_what_was_stored() {
        let mut w = worker(OutboxConfig::default());
        let (mut batch, _rxs): (Vec<_>, Vec<_>) = (0..10).map(append).unzip();
        w.run_batch(&mut batch);
        let pages: i64 = w
            .conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        // The file may not grow any more: the next writes hit SQLITE_FULL.
        w.conn
            .execute_batch(&format!("PRAGMA max_page_count = {pages}"))
            .unwrap();
        let (mut batch, rxs): (Vec<_>, Vec<_>) = (10..200).map(append).unzip();
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
        assert_eq!(w.stats.pending, 10, "counters match what is stored");
        assert_eq!(
            db::list(&w.conn, 100, None).unwrap().len(),
            10,
            "nothing lost"
        );
        db::quick_check(&w.conn).unwrap();
        // Space comes back: writes work again.
        w.conn
            .execute_batch("PRAGMA max_page_count = 1000000")
            .unwrap();
        let (mut batch, mut rxs): (Vec<_>, Vec<_>) = (200..201).map(append).unzip();
        w.run_batch(&mut batch);
        assert!(rxs[0].try_recv().unwrap().is_ok());
        assert_eq!(w.stats.pending, 11);
    }
}
