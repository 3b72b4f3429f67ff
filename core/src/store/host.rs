//! The store thread: one OS thread that runs the stores of one client ([`Client::new`]) or of
//! every client of a [`Hub`] — so a process holding a thousand device identities holds one
//! store thread, not a thousand.
//!
//! Each client keeps its own [`Worker`]: its own SQLite connection (its own file, or its own
//! database in memory), counters and waiters, and its commands run in its own transaction. A
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
    panic::AssertUnwindSafe,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::sync::mpsc;
use tracing::{debug, error};

use super::{command::Cmd, worker::Worker};
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

/// The handle that attaches clients to a store thread.
#[derive(Clone)]
pub(crate) struct Host {
    commands: mpsc::Sender<Tagged>,
    /// Workers to adopt: taken by the thread before it runs anything it received after them.
    attach: mpsc::UnboundedSender<(Slot, Box<Worker>)>,
    next: Arc<AtomicU64>,
}

impl Host {
    /// Starts the thread.
    pub(crate) fn start(name: &str) -> Result<Self, Error> {
        let (commands, rx) = mpsc::channel(CHANNEL);
        let (attach, adopt) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || serve(rx, adopt))
            .map_err(|e| Error::Store(format!("cannot start the store thread: {e}")))?;
        Ok(Self {
            commands,
            attach,
            next: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Hands `worker` to the thread; returns the channel and slot its commands go by. The
    /// worker is queued before any of its commands can exist, so it is always found.
    pub(super) fn attach(&self, worker: Worker) -> Result<(mpsc::Sender<Tagged>, Slot), Error> {
        let slot = self.next.fetch_add(1, Ordering::Relaxed);
        self.attach
            .send((slot, Box::new(worker)))
            .map_err(|_| Error::Closed)?;
        Ok((self.commands.clone(), slot))
    }
}

/// The thread's loop.
fn serve(mut rx: mpsc::Receiver<Tagged>, mut adopt: mpsc::UnboundedReceiver<(Slot, Box<Worker>)>) {
    let mut workers: HashMap<Slot, Box<Worker>> = HashMap::new();
    let mut batch = Vec::with_capacity(64);
    // Per client, in arrival order; few clients per batch, so a list beats a map.
    let mut groups: Vec<(Slot, Vec<Cmd>)> = Vec::new();
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
        // Every worker attached before these commands were sent is queued by now.
        while let Ok((slot, worker)) = adopt.try_recv() {
            workers.insert(slot, worker);
        }
        for Tagged(slot, cmd) in batch.drain(..) {
            match groups.iter_mut().find(|(s, _)| *s == slot) {
                Some((_, cmds)) => cmds.push(cmd),
                None => groups.push((slot, vec![cmd])),
            }
        }
        for (slot, mut cmds) in groups.drain(..) {
            let Some(worker) = workers.get_mut(&slot) else {
                // Closed already: dropping the commands answers their callers `Closed`.
                continue;
            };
            // A panic in one client's batch (a bug) ends that client's store alone: its
            // callers hear `Closed`, the thread goes on serving the others.
            match std::panic::catch_unwind(AssertUnwindSafe(|| worker.run_batch(&mut cmds))) {
                Ok(None) => {}
                Ok(Some(reply)) => {
                    if let Some(worker) = workers.remove(&slot) {
                        worker.finish();
                    }
                    let _ = reply.send(());
                }
                Err(_) => {
                    error!(slot, "a client's store failed; its store is closed");
                    workers.remove(&slot);
                }
            }
        }
        // Nothing left to serve and nobody left to attach more (a single client's thread
        // once that client closed): the thread ends, and later commands hear `Closed`.
        if workers.is_empty() && adopt.is_closed() && adopt.is_empty() {
            break;
        }
    }
    // Every handle is gone: whatever was not closed is closed cleanly now.
    while let Ok((slot, worker)) = adopt.try_recv() {
        workers.insert(slot, worker);
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
    use crate::{config::Durability, outbox::OutboxConfig, store::schema};

    /// A worker on a compact database in memory; `broken` drops its outbox table, so every
    /// batch that touches the outbox fails.
    fn worker(broken: bool) -> Worker {
        let (conn, snapshot, cipher) = schema::open(None, Durability::Normal, None, true).unwrap();
        if broken {
            conn.execute_batch("DROP TABLE outbox").unwrap();
        }
        let (events, _) = mpsc::unbounded_channel();
        Worker::new(
            conn,
            None,
            cipher,
            &snapshot,
            OutboxConfig::default(),
            events,
        )
    }

    async fn clear(tx: &mpsc::Sender<Tagged>, slot: Slot) -> Option<Result<u64, Error>> {
        let (reply, rx) = oneshot::channel();
        tx.send(Tagged(slot, Cmd::Clear(reply))).await.ok()?;
        rx.await.ok()
    }

    #[tokio::test]
    async fn a_failing_client_fails_alone() {
        let host = Host::start("test-store").unwrap();
        let (tx, broken) = host.attach(worker(true)).unwrap();
        let (_, healthy) = host.attach(worker(false)).unwrap();
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
        let (tx, slot) = host.attach(worker(false)).unwrap();
        let (close, closed) = oneshot::channel();
        tx.send(Tagged(slot, Cmd::Close(close))).await.unwrap();
        closed.await.unwrap();
        assert!(
            clear(&tx, slot).await.is_none(),
            "a closed client's command is dropped, so its caller hears Closed"
        );
        // The host handle could still attach a client: the thread waits.
        let (ours, _) = host.attach(worker(false)).unwrap();
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
}
