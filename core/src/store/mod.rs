//! The store: one SQLite database per client with a store file (outbox, subscriptions, seen
//! ids, recovery sessions) or, without a file, rows in memory ([`memory`]), run by a store
//! thread ([`host`]) so neither the app nor the engine waits for a disk — a thread of the
//! client's own, or one shared by every client of a [`crate::Hub`].
//!
//! Commands arrive on a channel ([`Cmd`]); the thread runs everything a client queued in one
//! transaction (group commit) and answers after the commit. What concerns the engine —
//! appends it waits on, fetched windows, entries that left undelivered — reaches it as
//! [`StoreEvent`]s on one channel, in commit order.
//!
//! The engine numbers new entries itself, from blocks of sequence numbers reserved here, and
//! writes them to the socket while they commit (the live path); it fetches only what it does
//! not hold — after a restart, a lost link, or while the live path was closed. A fetch with
//! nothing to return is parked and answered by the next commit that adds an entry the engine
//! did not send itself. One client per file ([`owner`]): numbering and the live path rely on
//! it.

mod backend;
mod blob;
pub(crate) mod cipher;
mod command;
mod db;
mod error;
mod host;
mod memory;
mod owner;
mod reply;
mod schema;
mod worker;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use self::{
    backend::Backend,
    host::{Member, Slot, Tagged},
    worker::Shared,
};
pub(crate) use self::{
    command::{
        Cmd, Departed, Fetched, Gone, NewEntry, Reply, Sending, StoreEvent, StoredEntry,
        StoredSubscription, write_idempotency_key,
    },
    host::Host,
    schema::{SEQ_BLOCK, Snapshot},
};
use crate::{
    config::{Durability, StoreConfig},
    error::Error,
    outbox::OutboxConfig,
};

/// The handle the client and engine share.
#[derive(Clone)]
pub(crate) struct Store {
    tx: mpsc::Sender<Tagged>,
    slot: Slot,
    /// The worker, when the engine commits its appends itself (see [`Store::post_all`]).
    here: Option<Arc<Shared>>,
    /// The outbox's size limit: a larger entry needs its row even once delivered.
    max_bytes: u64,
    /// Kept in memory: what only a later open reads back (seen ids, recovery sessions) is
    /// not posted at all.
    in_memory: bool,
    /// The last handle dropped detaches the client from its thread.
    _member: Arc<Member>,
}

/// The outbox writes the engine commits on its own task, once it has written the step's
/// frames, and the step's commands that came after them (posted once they are committed, so
/// the store thread sees a step's commands in the order they were made).
#[must_use = "the appends' callers wait for their commit"]
pub(crate) struct Appends<'a> {
    store: &'a Store,
    cmds: Vec<Cmd>,
    later: Vec<Cmd>,
}

impl Appends<'_> {
    /// The entries among them that need no row if they are delivered before the commit:
    /// written live, replacing no older entry (no coalescing key), within the outbox's size
    /// limit (which refuses a larger one even when it went out live).
    pub(crate) fn skippable(&self) -> Vec<u64> {
        let max_bytes = self.store.max_bytes;
        self.cmds
            .iter()
            .filter_map(|c| match c {
                Cmd::Append {
                    entry,
                    seq,
                    sending: Sending::Live,
                    ..
                } if entry.coalesce_key.is_none() && entry.bytes() <= max_bytes => Some(*seq),
                _ => None,
            })
            .collect()
    }

    /// Commits them (one transaction), answers the appends' callers and posts the commands
    /// that followed them. The appends in `delivered` (from [`Appends::skippable`]) reached
    /// the server before their commit: no row is written for them (it would be deleted at
    /// once), their callers hear that they are stored — they are past needing it — and the
    /// counters count them delivered.
    ///
    /// `settled` runs once they are committed (or known never to be stored), before any of
    /// their callers is answered: the engine lets callers number their own emits again only
    /// then (`Seqs::step_committed`), and a caller that heard its emit committed and emits
    /// again at once must not find numbering still closed.
    ///
    /// Returns the step's vector of commands, emptied, for the next step to reuse.
    pub(crate) fn commit_then(mut self, delivered: &[u64], settled: impl FnOnce()) -> Vec<Cmd> {
        let mut settled = Some(settled);
        self.run(delivered, &mut || {
            if let Some(f) = settled.take() {
                f();
            }
        });
        let mut spare = std::mem::take(&mut self.cmds);
        spare.clear();
        spare
    }

    fn run(&mut self, delivered: &[u64], settled: &mut dyn FnMut()) {
        if let Some(worker) = &self.store.here {
            // `delivered` comes in the appends' order, which is their numbers' order, so a
            // search finds each; a scan stays correct should that ever change.
            let sorted = delivered.is_sorted();
            let was_delivered = |seq: &u64| match sorted {
                true => delivered.binary_search(seq).is_ok(),
                false => delivered.contains(seq),
            };
            let skipped: Vec<Cmd> = self
                .cmds
                .extract_if(
                    ..,
                    |c| matches!(c, Cmd::Append { seq, .. } if was_delivered(seq)),
                )
                .collect();
            if !self.cmds.is_empty() {
                worker.run_then(&mut self.cmds, settled);
            }
            settled();
            if !skipped.is_empty() {
                worker.delivered_live(skipped);
            }
        }
        settled();
        for cmd in self.later.drain(..) {
            self.store.post(cmd);
        }
    }
}

impl Drop for Appends<'_> {
    /// A step abandoned part-way (a close that ran out of time while a write was stuck) still
    /// commits its writes: their callers wait for them, and a live entry may have reached the
    /// server already.
    fn drop(&mut self) {
        self.run(&[], &mut || {});
    }
}

impl Store {
    /// Opens the store (blocking for the open and any migration) on `host` (a hub's thread;
    /// a thread of its own when `None`), reporting to the engine on `events`. A hub's
    /// databases are opened compact: less memory for a little more time per statement.
    pub(crate) fn open(
        config: &StoreConfig,
        limits: &Arc<OutboxConfig>,
        events: futures_channel::mpsc::UnboundedSender<StoreEvent>,
        host: Option<&Host>,
    ) -> Result<(Store, Snapshot), Error> {
        // Taken before the file is opened, so a refused client changes nothing in it.
        let owner = config.path.as_deref().map(owner::Owner::take).transpose()?;
        // A hub's stores: compact databases, and no statements kept while idle.
        let compact = host.is_some();
        let (rows, snapshot) = match config.path.as_deref() {
            // Nothing outlives the process: no file, and no SQLite either (see `memory`).
            None => {
                if config.encryption_key.is_some() {
                    warn!("outbox encryption key without a store file: nothing is encrypted");
                }
                let (memory, snapshot) = memory::Memory::open();
                (Backend::Memory(memory), snapshot)
            }
            Some(path) => {
                let (conn, snapshot, cipher) = schema::open(
                    Some(path),
                    config.durability,
                    config.encryption_key.as_ref(),
                    compact,
                )?;
                (Backend::sqlite(conn, cipher), snapshot)
            }
        };
        if snapshot.unclean {
            debug!("store was not closed cleanly last time; quick_check passed");
        }
        let mut worker = worker::Worker::new(rows, owner, &snapshot, limits.clone(), events);
        if compact {
            worker = worker.idle_releases_statements();
        }
        let own;
        let host = match host {
            Some(h) => h,
            None => {
                own = Host::start("pulselink-store")?;
                &own
            }
        };
        let attached = host.attach(worker)?;
        // A commit without fsync costs tens of microseconds: less than the two thread
        // wake-ups that handing it to the store thread and back would cost the caller.
        // `Full`'s fsync can take milliseconds, which the engine's link must not wait for.
        let here = (config.durability == Durability::Normal || config.path.is_none())
            .then_some(attached.worker);
        Ok((
            Store {
                tx: attached.commands,
                slot: attached.slot,
                here,
                max_bytes: limits.max_bytes,
                in_memory: config.path.is_none(),
                _member: attached.member,
            },
            snapshot,
        ))
    }

    /// Whether the engine commits the outbox's writes on its own task (no fsync per
    /// commit), so an emit's commit takes microseconds rather than an fsync.
    pub(crate) fn commits_on_engine(&self) -> bool {
        self.here.is_some()
    }

    /// Runs `cmd` on the calling thread, on the worker the engine commits on (see
    /// [`Store::commits_on_engine`]); false (nothing done, `cmd` dropped) when there is no
    /// such worker or the store is closed.
    pub(crate) fn commit_here(&self, cmd: Cmd) -> bool {
        self.here.as_ref().is_some_and(|w| w.run(&mut vec![cmd]))
    }

    /// Posts the engine's commands in order, except, when the store is cheap to commit to
    /// (`Durability::Normal`, or in memory), the outbox's own writes — appends, deliveries,
    /// failures: those the engine commits on its own task ([`Appends::commit_then`]), in one
    /// transaction per step, saving an emit's caller two thread hand-offs and the store
    /// thread a transaction of its own per delivery; commands after the first of them are
    /// posted after that commit. Running ahead of commands of earlier steps still queued is
    /// safe: an append or a deletion touches rows no queued command depends on, a fetch that
    /// reads later reports the appends it saw (`upto`), and the engine skips entries it wrote
    /// live. Reads, and writes the inbound path makes, stay on the store thread — except
    /// those only a later open reads (seen ids, recovery sessions), which a store in memory
    /// drops here.
    pub(crate) fn post_all(&self, mut cmds: Vec<Cmd>) -> Appends<'_> {
        let here = |cmd: &Cmd| {
            self.here.is_some()
                && matches!(
                    cmd,
                    Cmd::Append { .. } | Cmd::Delivered(_) | Cmd::Failed(_) | Cmd::SentLive(_)
                )
        };
        // Written for the next open, which a store in memory never has (see `memory`): not
        // worth a wake-up of the store thread per inbound batch.
        let dropped =
            |cmd: &Cmd| self.in_memory && matches!(cmd, Cmd::Seen { .. } | Cmd::Recovery { .. });
        // What comes before the first of the engine's own writes is posted now, what follows
        // it once they are committed. The writes stay in `cmds`, in order: a step's emits
        // are moved once, not copied into a second vector.
        let first = cmds.iter().position(here).unwrap_or(cmds.len());
        for cmd in cmds.drain(..first) {
            if !dropped(&cmd) {
                self.post(cmd);
            }
        }
        let later = cmds
            .extract_if(.., |c| !here(c))
            .filter(|c| !dropped(c))
            .collect();
        Appends {
            store: self,
            cmds,
            later,
        }
    }

    /// Queues a command, waiting for room.
    pub(crate) async fn send(&self, cmd: Cmd) -> Result<(), Error> {
        self.tx
            .send(Tagged(self.slot, cmd))
            .await
            .map_err(|_| Error::Closed)
    }

    /// Queues a command from the engine, which must not wait: when the channel is full the
    /// command is handed to a task that waits for room (order within that rare case is kept
    /// by the channel's FIFO semaphore).
    pub(crate) fn post(&self, cmd: Cmd) {
        match self.tx.try_send(Tagged(self.slot, cmd)) {
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

    /// Whether a command can be queued now without waiting.
    pub(crate) fn has_room(&self) -> bool {
        self.tx.capacity() > 0
    }

    /// Waits until a command can be queued (or the store is gone).
    pub(crate) async fn room(&self) {
        let _ = self.tx.reserve().await;
    }

    /// Sends `make(reply)` and waits for the answer.
    pub(crate) async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).await?;
        rx.await.map_err(|_| Error::Closed)?
    }
}

#[cfg(test)]
mod tests {
    use super::{worker::tests::append_as, *};

    /// A live entry numbered `seq`, with a coalescing key if given.
    fn append(
        seq: u64,
        coalesce_key: Option<&str>,
    ) -> (Cmd, oneshot::Receiver<Result<u64, Error>>) {
        let (mut cmd, rx) = append_as(seq as usize, seq, true, true);
        if let Cmd::Append { entry, .. } = &mut cmd {
            entry.coalesce_key = coalesce_key.map(str::to_owned);
        }
        (cmd, rx)
    }

    /// A client's store in memory on a thread of its own, and the news it sends the engine.
    fn in_memory() -> (Store, futures_channel::mpsc::UnboundedReceiver<StoreEvent>) {
        let (events, news) = futures_channel::mpsc::unbounded();
        let config = StoreConfig::default();
        let (store, _) = Store::open(&config, &Arc::default(), events, None).unwrap();
        (store, news)
    }

    #[tokio::test]
    async fn a_step_keeps_its_order_and_an_abandoned_one_still_commits() {
        let (store, mut news) = in_memory();
        // Not live: the fetch that follows it in the step must find it.
        let (append, stored) = append_as(1, 1, true, false);
        let fetch = Cmd::Fetch {
            id: 7,
            after: [0; 3],
            limit: 10,
            park: false,
        };
        let appends = store.post_all(vec![append, fetch]);
        assert_eq!(appends.later.len(), 1, "the fetch waits for the commit");
        // Dropped without `commit` (its task cancelled mid-write): committed all the same.
        drop(appends);
        assert_eq!(stored.await.unwrap().unwrap(), 1);
        let fetched = loop {
            match news.recv().await.unwrap() {
                StoreEvent::Fetched(f) if f.id == 7 => break f.entries,
                _ => continue,
            }
        };
        let seqs: Vec<u64> = fetched.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1]);
    }

    #[tokio::test]
    async fn a_step_is_settled_before_any_of_its_callers_hears_of_it() {
        let (store, _news) = in_memory();
        // One committed, one delivered before its commit (no row): neither caller has heard
        // anything when `settled` runs, and both have once the commit returns.
        let (kept, mut kept_rx) = append_as(1, 1, false, true);
        let (skipped, mut skipped_rx) = append_as(2, 2, false, true);
        let appends = store.post_all(vec![kept, skipped]);
        let mut heard_when_settled = None;
        appends.commit_then(&[2], || {
            heard_when_settled = Some((!kept_rx.is_empty(), !skipped_rx.is_empty()));
        });
        assert_eq!(heard_when_settled, Some((false, false)));
        assert_eq!(kept_rx.try_recv().unwrap().unwrap(), 1);
        assert_eq!(skipped_rx.try_recv().unwrap().unwrap(), 2);
        // A step whose only append needs no row.
        let (skipped, mut skipped_rx) = append_as(3, 3, false, true);
        let mut heard_when_settled = None;
        store
            .post_all(vec![skipped])
            .commit_then(&[3], || heard_when_settled = Some(!skipped_rx.is_empty()));
        assert_eq!(heard_when_settled, Some(false));
        assert_eq!(skipped_rx.try_recv().unwrap().unwrap(), 3);
    }

    #[tokio::test]
    async fn a_store_in_memory_posts_nothing_only_a_later_open_would_read() {
        let dir = std::env::temp_dir().join(format!("pl-store-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let file = StoreConfig {
            path: Some(dir.join("s.db")),
            ..StoreConfig::default()
        };
        let (events, _news) = futures_channel::mpsc::unbounded();
        let (file, _) = Store::open(&file, &Arc::default(), events, None).unwrap();
        let (memory, _news) = in_memory();
        for (store, kept) in [(&file, 2), (&memory, 0)] {
            // Behind an append, so the step's later commands are held, where they can be seen.
            let (append, _rx) = append(1, None);
            let seen = Cmd::Seen {
                ids: vec![("m1".into(), 1)],
                window: 10,
                min_ms: 0,
            };
            let recovery = Cmd::Recovery {
                namespace: "/".into(),
                session: Some("pid".into()),
                position: Some("1-0".into()),
            };
            let appends = store.post_all(vec![append, seen, recovery]);
            assert_eq!(appends.later.len(), kept);
            appends.commit_then(&[], || {});
        }
        drop(file);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn appends_delivered_before_their_commit_are_answered_and_counted_without_a_row() {
        let (store, mut news) = in_memory();
        let (a1, r1) = append(1, None);
        let (a2, r2) = append(2, None);
        let (a3, r3) = append(3, Some("latest"));
        let appends = store.post_all(vec![a1, a2, a3]);
        // Entry 3 replaces any older entry with its key: it needs its row even if delivered.
        assert_eq!(appends.skippable(), [1, 2]);
        appends.commit_then(&[1], || {});
        for (rx, seq) in [(r1, 1), (r2, 2), (r3, 3)] {
            assert_eq!(rx.await.unwrap().unwrap(), seq, "every caller hears Ok");
        }
        // Only the committed ones are reported to the engine; one row per committed entry.
        let mut reported = Vec::new();
        while let Ok(e) = news.try_recv() {
            if let StoreEvent::Appended { seq, ok: true } = e {
                reported.push(seq);
            }
        }
        assert_eq!(reported, [2, 3]);
        let (tx, rx) = oneshot::channel();
        store.send(Cmd::Stats(tx)).await.unwrap();
        let stats = rx.await.unwrap();
        assert_eq!(
            (
                stats.pending,
                stats.accepted,
                stats.delivered,
                stats.sent_live
            ),
            (2, 3, 1, 3)
        );
    }
}
