//! Many clients in one process: a hub or gateway that forwards for hundreds of devices, each
//! with its own connection and identity, or a load test of thousands.
//!
//! A [`Client`] made by [`Client::new`] has a store thread of its own. Clients made by one
//! [`Hub`] share one: each still keeps its own store (its file, or its rows in memory), outbox
//! order, idempotency keys, subscriptions and dedup window, and its commands run in its own
//! transactions, so one client's failure (a full disk, a corrupt file) never touches another's
//! entries. A device without a file holds no SQLite database at all; files are opened compact
//! (no SQLite lookaside memory, prepared statements let go whenever the outbox is empty: most
//! devices are idle most of the time). Their engines run on the runtime the hub's clients are
//! created on, like every client's. So the process's thread count does not grow with its
//! clients. Each reads its WebSocket 256 bytes at a time rather than 4 KiB, and keeps fewer
//! notices for a slow receiver: memory every connection holds whether or not anything
//! arrives, where a device's traffic is a few events. [`Hub::stats`] totals what the hub's
//! clients received and sent, so a gateway or load test that only counts needs no listener
//! (a task and a channel) on each client; [`Hub::notices`] is every client's notices on one
//! channel, each with its client's number, so a client's own notice channel (some 1.7 KiB)
//! is made only for a client the app asks.
//!
//! What they share is the thread's time: one client's slow commit (an fsync with
//! `Durability::Full`, a file locked by another process for up to 5 s) delays the others'
//! store commands meanwhile, and each client with a file commits on its own (group commit
//! works within a client, not across them).

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use tokio::sync::broadcast;

use crate::{
    client::Client,
    config::{AuthProvider, ClientConfig},
    engine::Prepared,
    error::{Error, Result},
    metrics::{HubCounters, HubStats},
    notices::{HubChannel, HubNotice, Notices},
    store::Host,
};

/// A configuration checked once and shared by many of a hub's clients ([`Hub::share`],
/// [`Hub::shared_client`]). Cheap to clone.
#[derive(Clone)]
pub struct SharedConfig(Prepared);

impl SharedConfig {
    /// The configuration its clients connect with.
    pub fn config(&self) -> &ClientConfig {
        &self.0.config
    }
}

impl std::fmt::Debug for SharedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SharedConfig").field(&self.0.config).finish()
    }
}

/// Creates clients that share one store thread. Cheap to clone; the thread ends once the hub
/// and every client it made are gone.
#[derive(Clone)]
pub struct Hub {
    host: Host,
    counters: Arc<HubCounters>,
    notices: HubChannel,
    /// The number the next client gets.
    next: Arc<AtomicU64>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    /// Starts the hub's store thread.
    pub fn new() -> Result<Self> {
        Ok(Self {
            host: Host::start("pulselink-hub-store")?,
            counters: Arc::default(),
            notices: HubChannel::default(),
            next: Arc::default(),
        })
    }

    /// A client whose store runs on this hub's thread; otherwise exactly [`Client::new`]
    /// (the same checks and errors, inside a tokio runtime). Store files must differ between
    /// clients, as always.
    pub fn client(&self, config: ClientConfig) -> Result<Client> {
        self.build(Prepared::new(config, true)?, None)
    }

    /// Checks `config` once for any number of this hub's clients ([`Hub::shared_client`]).
    ///
    /// Fails like [`Client::new`] for an unusable configuration, and for one with a store
    /// file: two clients never share a file, so a device with a file of its own has a
    /// configuration of its own ([`Hub::client`]).
    pub fn share(&self, config: ClientConfig) -> Result<SharedConfig> {
        if let Some(path) = &config.store.path {
            return Err(Error::InvalidConfig(format!(
                "a shared configuration cannot name a store file ({}): each client needs its own; \
                 give a client with a file its own configuration (Hub::client)",
                path.display()
            )));
        }
        Ok(SharedConfig(Prepared::new(config, true)?))
    }

    /// A client of `shared`'s configuration, asking `auth` for its credentials (`None`: the
    /// configuration's provider, if it has one). A fleet of devices that differ only in their
    /// credentials holds its configuration once rather than once per client, about 1.5 KiB
    /// each. Everything a client keeps for itself (its store, outbox order, idempotency keys,
    /// subscriptions, dedup window and connection) is its own, as with [`Hub::client`].
    /// [`Client::config`] shows the shared configuration, whose `auth` is not `auth`.
    pub fn shared_client(
        &self,
        shared: &SharedConfig,
        auth: Option<Arc<dyn AuthProvider>>,
    ) -> Result<Client> {
        self.build(shared.0.clone(), auth)
    }

    fn build(&self, prepared: Prepared, auth: Option<Arc<dyn AuthProvider>>) -> Result<Client> {
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        let notices = Notices::hub_member(self.notices.clone(), index);
        Client::build(
            prepared,
            auth,
            Some(&self.host),
            Some(self.counters.clone()),
            notices,
        )
    }

    /// Every client's notices, from now on, each with the number of its client
    /// ([`Client::hub_index`]): one receiver for a fleet. Up to 16,384 notices are kept for a
    /// slow receiver; one further behind skips the oldest (`Lagged`).
    pub fn notices(&self) -> broadcast::Receiver<HubNotice> {
        self.notices.subscribe()
    }

    /// Totals across every client this hub made, closed ones included: what a gateway or a
    /// load test reports, without a listener on each client. A client adds its counts after
    /// each step of its engine, so they trail its own [`Client::metrics`] by at most that.
    pub fn stats(&self) -> HubStats {
        self.counters.stats()
    }
}
