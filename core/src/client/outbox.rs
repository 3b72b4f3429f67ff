//! The durable outbox as the app inspects it: size, contents, removal, draining.

use std::time::Duration;

use tokio::sync::oneshot;

use crate::{
    error::{Error, Result},
    outbox::{OutboxStats, PendingEmit},
    store::{Cmd, Store},
};

/// The durable outbox of a client: what waits, and the means to drop it.
#[derive(Clone)]
pub struct Outbox {
    store: Store,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

impl Outbox {
    pub(super) fn new(store: Store) -> Self {
        Self { store }
    }

    /// Size and counters.
    pub async fn stats(&self) -> Result<OutboxStats> {
        let (tx, rx) = oneshot::channel();
        self.store.send(Cmd::Stats(tx)).await?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// Up to `limit` entries in the order they will be sent.
    pub async fn list(&self, limit: usize) -> Result<Vec<PendingEmit>> {
        self.store.ask(|reply| Cmd::List { limit, reply }).await
    }

    /// Removes entry `id` (counted as failed; a caller waiting for its acknowledgement gets
    /// [`Error::Removed`]); false if it was already gone. An entry already written to the
    /// server may still arrive there.
    pub async fn remove(&self, id: u64) -> Result<bool> {
        self.store.ask(|reply| Cmd::Remove { id, reply }).await
    }

    /// Waits until every entry is delivered (or dropped): a gateway draining before it exits,
    /// a test waiting for a flush. Ends with [`Error::Closed`] if the client closes first.
    pub async fn drained(&self) -> Result<()> {
        // Asked again now and then: each ask recounts the entries from the file, should the
        // counts kept in memory have drifted from it.
        const RECHECK: Duration = Duration::from_millis(250);
        loop {
            let (tx, rx) = oneshot::channel();
            self.store.send(Cmd::WhenEmpty(tx)).await?;
            match tokio::time::timeout(RECHECK, rx).await {
                Ok(done) => return done.map_err(|_| Error::Closed),
                Err(_) => continue,
            }
        }
    }

    /// Removes every entry; returns how many.
    pub async fn clear(&self) -> Result<u64> {
        self.store.ask(Cmd::Clear).await
    }
}
