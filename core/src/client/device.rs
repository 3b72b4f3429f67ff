//! What the device tells a client: the app going to the background and coming back, and the
//! network path. Each call is a message to the engine, which decides what the connection does
//! (`engine::lifecycle`); the background flush is composed here from the outbox's own waits.

use std::{future::Future, sync::atomic::Ordering, time::Duration};

use tokio::{sync::oneshot, time::Instant};

use super::Client;
use crate::{
    device::{BackgroundFlush, NetworkPath},
    engine::Command,
    error::{Error, Result},
};

impl Client {
    /// The app is going to the background: flushes the outbox for up to `deadline` (iOS
    /// grants a backgrounded app about 30 s; pass less), then applies the configured
    /// [`crate::BackgroundPolicy`]: `Disconnect` (the default) closes the link and makes no
    /// attempt until [`Client::enter_foreground`]; `KeepAlive` keeps it. Either way, emits
    /// are still accepted into the store.
    ///
    /// During the flush, `Low` entries stop waiting for the radio, and a lost link is
    /// retried as usual. The result says how many entries were delivered and how many stay
    /// stored. On a client that is not trying to connect (idle, offline, refused) the flush
    /// is skipped. Fails with [`crate::Error::Closed`] on a closed client, changing nothing.
    /// The order of calls decides, not the order the futures run: a foreground called after
    /// this (even before its future is first polled) wins.
    pub fn enter_background(
        &self,
        deadline: Duration,
    ) -> impl Future<Output = Result<BackgroundFlush>> + Send + 'static {
        let epoch = self.inner.app_epoch.load(Ordering::SeqCst);
        let client = self.clone();
        async move {
            let started = Instant::now();
            let outbox = client.outbox();
            let before = outbox.stats().await?.delivered;
            // Asked of the engine, not read from the state: a network hint sent just before
            // is handled first.
            let (tx, trying) = oneshot::channel();
            client.send(Command::BackgroundFlush(tx))?;
            if trying.await.map_err(|_| Error::Closed)? {
                // Done when the store is empty or at the deadline; what is left stays stored.
                let _ = tokio::time::timeout(deadline, outbox.drained()).await;
            }
            let after = outbox.stats().await?;
            client.send(Command::Background(epoch))?;
            Ok(BackgroundFlush {
                sent: after.delivered.saturating_sub(before),
                remaining: after.pending,
                took: started.elapsed(),
            })
        }
    }

    /// The app is in the foreground again: connects at once (skipping any backoff wait)
    /// when a connection is wanted, with subscriptions replayed, the session recovered when
    /// the server allows it, and the outbox flushed, in the usual order. A background flush
    /// called before this and still under way does not close the link afterwards. Fails with
    /// [`crate::Error::Closed`] on a closed client.
    pub fn enter_foreground(&self) -> Result<()> {
        let epoch = self.inner.app_epoch.fetch_add(1, Ordering::SeqCst) + 1;
        self.send(Command::Foreground(epoch))
    }

    /// The platform's network path changed (iOS `NWPathMonitor`, Android
    /// `ConnectivityManager.NetworkCallback`). Unavailable stops attempts (state `Offline`)
    /// and available reconnects at once, like [`Client::set_network_available`]; a move to
    /// another interface under a live link replaces the link at once instead of waiting for
    /// the heartbeat to find it dead; an expensive or constrained path holds the `Low` lane
    /// when the outbox's [`crate::LowLane`] says so. Fails with [`crate::Error::Closed`] on a
    /// closed client.
    pub fn network_changed(&self, path: NetworkPath) -> Result<()> {
        self.send(Command::NetworkPath(path))
    }
}
