//! The store thread: one OS thread that runs the stores of one client ([`Client::new`]) or of
//! every client of a [`Hub`] — so a process holding a thousand device identities holds one
//! store thread, not a thousand.
//!
//! Each client keeps its own [`Worker`]: its own store (a SQLite connection to its own file,
//! or its own rows in memory), counters and waiters, and its commands run in its own transaction. A
//! failed batch (a full disk, a corrupt file) fails only that client's commands; no entry of
//! one client is ever in another's transaction; a panic in one client's batch closes that
//! client's store and no other.
//!
//! Commands arrive on one channel, tagged with their client; the thread takes everything
//! queued (up to a batch), groups it by client in arrival order and runs each group. A closed
//! client's later commands find no worker and are dropped, so their callers hear
//! [`Error::Closed`]. The thread ends once every handle to it is gone, or once its clients
//! are all closed and nothing can attach another.
//!
//! [`Client::new`]: crate::Client::new
//! [`Hub`]: crate::Hub

use std::{
    collections::HashMap,
    sync::{
        Arc, Weak,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::sync::mpsc;
use tracing::debug;

use super::{
    command::Cmd,
    worker::{Shared, Worker},
};
use crate::error::Error;

/// Most commands taken from the channel at once.
const MAX_BATCH: usize = 4096;

/// Commands that wait in the channel before the thread takes them; a full channel makes
/// senders wait (backpressure) instead of growing memory. Shared by the clients of a hub: the
/// thread's speed is theirs to share too.
const CHANNEL: usize = 4096;

/// A client's number on its host.
pub(crate) type Slot = u64;

/// A command for one client's worker.
pub(crate) struct Tagged(pub(super) Slot, pub(super) Cmd);

/// A client joining or leaving the thread.
enum Membership {
    /// A worker to adopt: taken before anything received after it runs.
    Attach(Slot, Arc<Shared>),
    /// Every handle to the client is gone: its store is closed cleanly if it was not already
    /// (its engine ended without closing it: a runtime shut down, a panic).
    Detach(Slot),
}

/// The handle that attaches clients to a store thread.
#[derive(Clone)]
pub(crate) struct Host {
    commands: mpsc::Sender<Tagged>,
    members: mpsc::UnboundedSender<Membership>,
    next: Arc<AtomicU64>,
    /// Gone once no handle can attach another client: the thread may end with its last one.
    _alive: Arc<()>,
}

/// Held by every handle to one client's store; the last one dropped detaches it.
pub(crate) struct Member {
    slot: Slot,
    members: mpsc::UnboundedSender<Membership>,
    commands: mpsc::Sender<Tagged>,
}

impl Drop for Member {
    fn drop(&mut self) {
        if self.members.send(Membership::Detach(self.slot)).is_ok() {
            // A harmless command wakes a waiting thread to see it (a busy one sees it soon).
            let _ = self.commands.try_send(Tagged(self.slot, Cmd::Unpark));
        }
    }
}

impl Host {
    /// Starts the thread.
    pub(crate) fn start(name: &str) -> Result<Self, Error> {
        let (commands, rx) = mpsc::channel(CHANNEL);
        let (members, joining) = mpsc::unbounded_channel();
        let alive = Arc::new(());
        let host = Arc::downgrade(&alive);
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || serve(rx, joining, host))
            .map_err(|e| Error::Store(format!("cannot start the store thread: {e}")))?;
        Ok(Self {
            commands,
            members,
            next: Arc::new(AtomicU64::new(0)),
            _alive: alive,
        })
    }

    /// Hands `worker` to the thread; returns the channel and slot its commands go by, the
    /// membership its handles share and the worker as the thread shares it. The worker is
    /// queued before any of its commands can exist, so it is always found.
    pub(super) fn attach(&self, worker: Worker) -> Result<Attached, Error> {
        let slot = self.next.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(Shared::new(worker));
        self.members
            .send(Membership::Attach(slot, shared.clone()))
            .map_err(|_| Error::Closed)?;
        let member = Arc::new(Member {
            slot,
            members: self.members.clone(),
            commands: self.commands.clone(),
        });
        Ok(Attached {
            commands: self.commands.clone(),
            slot,
            member,
            worker: shared,
        })
    }
}

/// A client attached to a store thread.
pub(super) struct Attached {
    /// Where its commands go, tagged with `slot`.
    pub(super) commands: mpsc::Sender<Tagged>,
    pub(super) slot: Slot,
    /// Shared by its handles; the last one dropped detaches it.
    pub(super) member: Arc<Member>,
    /// Its worker, which the thread runs (and its engine, for appends it commits itself).
    pub(super) worker: Arc<Shared>,
}

/// The thread's loop.
fn serve(
    mut rx: mpsc::Receiver<Tagged>,
    mut joining: mpsc::UnboundedReceiver<Membership>,
    host: Weak<()>,
) {
    let mut workers: HashMap<Slot, Arc<Shared>> = HashMap::new();
    let mut batch = Vec::with_capacity(64);
    // Per client, in arrival order (a hub's batch may hold thousands of clients).
    let mut groups: Vec<(Slot, Vec<Cmd>)> = Vec::new();
    let mut group_of: HashMap<Slot, usize> = HashMap::new();
    let mut leaving = Vec::new();
    loop {
        match rx.blocking_recv() {
            Some(t) => batch.push(t),
            None => break,
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(t) => batch.push(t),
                Err(_) => break,
            }
        }
        // Every worker attached before these commands were sent is queued by now. Leavers
        // leave after the batch, which may still hold their last commands.
        while let Ok(m) = joining.try_recv() {
            match m {
                Membership::Attach(slot, worker) => {
                    workers.insert(slot, worker);
                }
                Membership::Detach(slot) => leaving.push(slot),
            }
        }
        for Tagged(slot, cmd) in batch.drain(..) {
            let i = *group_of.entry(slot).or_insert_with(|| {
                groups.push((slot, Vec::new()));
                groups.len() - 1
            });
            groups[i].1.push(cmd);
        }
        group_of.clear();
        for (slot, mut cmds) in groups.drain(..) {
            let Some(worker) = workers.get(&slot) else {
                // Closed already: dropping the commands answers their callers `Closed`.
                continue;
            };
            // A close, or a panic in one client's batch (a bug), ends that client's store
            // alone; the thread goes on serving the others.
            if !worker.run(&mut cmds) {
                workers.remove(&slot);
            }
        }
        for slot in leaving.drain(..) {
            if let Some(worker) = workers.remove(&slot) {
                worker.finish();
            }
        }
        // Nothing left to serve and nobody left to attach more (a single client's thread
        // once that client closed): the thread ends, and later commands hear `Closed`.
        if workers.is_empty() && host.strong_count() == 0 && joining.is_empty() {
            break;
        }
    }
    // Every handle is gone: whatever was not closed is closed cleanly now.
    while let Ok(m) = joining.try_recv() {
        if let Membership::Attach(slot, worker) = m {
            workers.insert(slot, worker);
        }
    }
    for (_, worker) in workers.drain() {
        worker.finish();
    }
    debug!("store thread stopped");
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::*;
    use crate::{
        config::Durability,
        outbox::OutboxConfig,
        store::{backend::Backend, schema},
    };

    /// A worker on a compact database in memory; `broken` drops its outbox table, so every
    /// batch that touches the outbox fails.
    fn worker(broken: bool) -> Worker {
        let (conn, snapshot, cipher) = schema::open(None, Durability::Normal, None, true).unwrap();
        if broken {
            conn.execute_batch("DROP TABLE outbox").unwrap();
        }
        let (events, _) = futures_channel::mpsc::unbounded();
        Worker::new(
            Backend::sqlite(conn, cipher),
            None,
            &snapshot,
            OutboxConfig::default(),
            events,
        )
    }

    fn parts(a: Attached) -> (mpsc::Sender<Tagged>, Slot, Arc<Member>) {
        (a.commands, a.slot, a.member)
    }

    async fn clear(tx: &mpsc::Sender<Tagged>, slot: Slot) -> Option<Result<u64, Error>> {
        let (reply, rx) = oneshot::channel();
        tx.send(Tagged(slot, Cmd::Clear(reply))).await.ok()?;
        rx.await.ok()
    }

    #[tokio::test]
    async fn a_failing_client_fails_alone() {
        let host = Host::start("test-store").unwrap();
        let (tx, broken, _a) = parts(host.attach(worker(true)).unwrap());
        let (_, healthy, _b) = parts(host.attach(worker(false)).unwrap());
        assert_ne!(broken, healthy);
        // In one batch: the broken client's command fails, the healthy one's succeeds.
        let (a, a_rx) = oneshot::channel();
        let (b, b_rx) = oneshot::channel();
        tx.send(Tagged(broken, Cmd::Clear(a))).await.unwrap();
        tx.send(Tagged(healthy, Cmd::Clear(b))).await.unwrap();
        assert!(
            !matches!(a_rx.await, Ok(Ok(_))),
            "the broken client's command failed"
        );
        assert_eq!(b_rx.await.unwrap().unwrap(), 0);

        let (close, closed) = oneshot::channel();
        tx.send(Tagged(broken, Cmd::Close(close))).await.unwrap();
        closed.await.unwrap();
        assert_eq!(clear(&tx, healthy).await.unwrap().unwrap(), 0);
    }

    #[tokio::test]
    async fn a_closed_client_hears_closed_and_the_thread_ends_once_nothing_can_use_it() {
        let host = Host::start("test-store").unwrap();
        let (tx, slot, _member) = parts(host.attach(worker(false)).unwrap());
        let (close, closed) = oneshot::channel();
        tx.send(Tagged(slot, Cmd::Close(close))).await.unwrap();
        closed.await.unwrap();
        assert!(
            clear(&tx, slot).await.is_none(),
            "a closed client's command is dropped, so its caller hears Closed"
        );
        // The host handle could still attach a client: the thread waits.
        let (ours, _, _ours) = parts(host.attach(worker(false)).unwrap());
        assert_eq!(clear(&ours, 1).await.unwrap().unwrap(), 0);
        let (close, closed) = oneshot::channel();
        ours.send(Tagged(1, Cmd::Close(close))).await.unwrap();
        closed.await.unwrap();
        drop(host);
        // No client left and nobody to attach one: the next thing the thread takes (here a
        // late command, in a client the last handle's drop) ends it, and its channel closes.
        assert!(clear(&ours, 1).await.is_none());
        tokio::time::timeout(std::time::Duration::from_secs(5), tx.closed())
            .await
            .expect("the store thread ended");
    }

    #[tokio::test]
    async fn a_client_whose_handles_are_all_gone_is_closed_cleanly_and_its_file_released() {
        let dir = std::env::temp_dir().join(format!("pl-host-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.db");
        let host = Host::start("test-store").unwrap();
        let owner = super::super::owner::Owner::take(&path).unwrap();
        let (conn, snapshot, cipher) =
            schema::open(Some(&path), Durability::Normal, None, true).unwrap();
        let (events, _) = futures_channel::mpsc::unbounded();
        let file = Worker::new(
            Backend::sqlite(conn, cipher),
            Some(owner),
            &snapshot,
            OutboxConfig::default(),
            events,
        );
        let (tx, slot, member) = parts(host.attach(file).unwrap());
        let (_, other, _other) = parts(host.attach(worker(false)).unwrap());
        assert_eq!(clear(&tx, slot).await.unwrap().unwrap(), 0);
        // Its engine ended without closing it (no Close): dropping the last handle detaches.
        drop(member);
        // Two round trips of another client: the batch that saw the detach has ended.
        for _ in 0..2 {
            assert_eq!(clear(&tx, other).await.unwrap().unwrap(), 0);
        }
        assert!(
            clear(&tx, slot).await.is_none(),
            "the detached client's store is closed"
        );
        let again = super::super::owner::Owner::take(&path);
        assert!(again.is_ok(), "the file is still held: {:?}", again.err());
        let conn = rusqlite::Connection::open(&path).unwrap();
        assert_eq!(
            schema::meta_get(&conn, "clean").unwrap().as_deref(),
            Some("1")
        );
    }
}
