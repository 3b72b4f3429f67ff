//! The store: one SQLite database per client (outbox, subscriptions, seen ids, recovery
//! sessions), run by a store thread ([`host`]) so neither the app nor the engine waits for a
//! disk — a thread of the client's own, or one shared by every client of a [`crate::Hub`].
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

mod blob;
pub(crate) mod cipher;
mod command;
mod db;
mod error;
mod host;
mod owner;
mod reply;
mod schema;
mod worker;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use self::host::{Member, Slot, Tagged};
pub(crate) use self::{
    command::{
        Cmd, Gone, NewEntry, Reply, StoreEvent, StoredEntry, StoredSubscription, idempotency_key,
    },
    host::Host,
    schema::{SEQ_BLOCK, Snapshot},
};
use crate::{config::StoreConfig, error::Error, outbox::OutboxConfig};

/// The handle the client and engine share.
#[derive(Clone)]
pub(crate) struct Store {
    tx: mpsc::Sender<Tagged>,
    slot: Slot,
    /// The last handle dropped detaches the client from its thread.
    _member: Arc<Member>,
}

impl Store {
    /// Opens the store (blocking for the open and any migration) on `host` (a hub's thread;
    /// a thread of its own when `None`), reporting to the engine on `events`. A hub's
    /// databases are opened compact: less memory for a little more time per statement.
    pub(crate) fn open(
        config: &StoreConfig,
        limits: &OutboxConfig,
        events: mpsc::UnboundedSender<StoreEvent>,
        host: Option<&Host>,
    ) -> Result<(Store, Snapshot), Error> {
        // Taken before the file is opened, so a refused client changes nothing in it.
        let owner = config.path.as_deref().map(owner::Owner::take).transpose()?;
        let (conn, snapshot, cipher) = schema::open(
            config.path.as_deref(),
            config.durability,
            config.encryption_key.as_ref(),
            host.is_some(),
        )?;
        if snapshot.unclean {
            debug!("store was not closed cleanly last time; quick_check passed");
        }
        let worker = worker::Worker::new(conn, owner, cipher, &snapshot, limits.clone(), events);
        let own;
        let host = match host {
            Some(h) => h,
            None => {
                own = Host::start("pulselink-store")?;
                &own
            }
        };
        let (tx, slot, member) = host.attach(worker)?;
        Ok((
            Store {
                tx,
                slot,
                _member: member,
            },
            snapshot,
        ))
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
