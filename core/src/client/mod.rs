//! The app-facing handles. They hold no connection state: every call is a message to the
//! engine task (commands, emits) or the store thread (outbox queries), answered on oneshot
//! channels, with the state published on a watch channel.

mod device;
mod outbox;
mod presence;
mod shared;
mod socket;
mod stream;

use std::{future::Future, sync::Arc, time::Duration};

use tokio::{
    runtime::Handle,
    sync::{broadcast, oneshot, watch},
};

use self::shared::Shared;
pub use self::{
    outbox::Outbox,
    presence::{Presence, PresenceChange, PresenceConfig},
    socket::Socket,
    stream::{EventStream, ListenerHandle},
};
use crate::{
    args::{AckReply, Args},
    config::{AuthProvider, ClientConfig, Protocol, is_valid_namespace},
    engine::{self, Command, Interest, Prepared},
    error::{Error, Result},
    event::{Event, Notice, State},
    metrics::{HubCounters, Metrics},
    notices::Notices,
    outbox::EmitOptions,
    store::{Host, Store},
};

/// A connection to one Socket.IO (or JSON-envelope) server. Cheap to clone; the connection
/// closes when the last clone is dropped or [`Client::close`] is called.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Shared>,
    /// The main namespace's handle, kept so that an emit on it borrows one rather than
    /// making one (two reference counts touched per emit, and a future that owns it).
    main: Socket,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &crate::config::redacted(&self.inner.config.url))
            .field("state", &self.inner.state.get())
            .finish()
    }
}

impl Client {
    /// Creates a client and its engine task on the current tokio runtime, opening its store
    /// (a few milliseconds of blocking file I/O; migrations and an integrity check after an
    /// unclean exit happen here). Nothing connects until [`Client::connect`] or
    /// [`Client::start`].
    ///
    /// Fails with [`Error::InvalidConfig`] for an unusable configuration or outside a tokio
    /// runtime, and with [`Error::StoreCorrupt`] / [`Error::Store`] when the store cannot be
    /// opened.
    pub fn new(config: ClientConfig) -> Result<Self> {
        Self::build(
            Prepared::new(config, false)?,
            None,
            None,
            None,
            Notices::single(),
        )
    }

    /// A client of `prepared`'s configuration asking `auth` for credentials (`None`: the
    /// configuration's provider, if it has one), whose store runs on `host`'s thread (a
    /// hub's, which `hub` counts its traffic for) or on a thread of its own, publishing its
    /// notices to `notices`.
    pub(crate) fn build(
        prepared: Prepared,
        auth: Option<Arc<dyn AuthProvider>>,
        host: Option<&Host>,
        hub: Option<Arc<HubCounters>>,
        notices: Notices,
    ) -> Result<Self> {
        let runtime = Handle::try_current().map_err(|_| {
            Error::InvalidConfig("Client::new must run inside a tokio runtime".into())
        })?;
        let config = prepared.config.clone();
        let auth = auth.or_else(|| config.auth.clone());
        let notices = Arc::new(notices);
        let (events_tx, store_events) = futures_channel::mpsc::unbounded();
        let (store, snapshot) = Store::open(&config.store, &prepared.outbox, events_tx, host)?;
        let main = prepared.main();
        let handles = engine::spawn(
            &runtime,
            prepared,
            auth,
            store.clone(),
            snapshot,
            store_events,
            notices.clone(),
            hub,
        );
        let inner = Arc::new(Shared {
            commands: handles.commands,
            outgoing: handles.outgoing,
            store,
            seqs: handles.seqs,
            state: handles.state,
            notices,
            main,
            config,
            runtime,
            app_epoch: Default::default(),
        });
        let main = Socket::new(inner.clone(), inner.main.clone());
        Ok(Self { inner, main })
    }

    /// The number its [`crate::Hub`] gave it (unique within the hub, in the order the hub
    /// made its clients), which [`crate::HubNotice::client`] names; `None` without a hub.
    pub fn hub_index(&self) -> Option<u64> {
        self.inner.notices.hub_index()
    }

    /// The configuration in use. For a client of a shared configuration
    /// ([`crate::Hub::shared_client`]) it is the shared one: its `auth` is the configuration's,
    /// not a provider the client was given of its own.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    fn send(&self, c: Command) -> Result<()> {
        self.inner.send(c)
    }

    /// Connects and waits until the main namespace is joined.
    ///
    /// Returns early with the reason when the attempt can never succeed (refused credentials,
    /// the policy gave up), and with [`Error::ConnectTimeout`] after `connect_wait`, in which
    /// case the client keeps retrying in the background and emits are buffered meanwhile.
    pub async fn connect(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        // Subscribed before asking, so no failed attempt goes unseen: a timeout says why.
        let mut notices = self.inner.notices.subscribe();
        self.send(Command::Connect(Some(tx)))?;
        let wait = self.inner.config.connect_wait;
        let mut last_failure = None;
        let mut watching = true;
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline, rx);
        loop {
            tokio::select! {
                r = &mut rx => return r.unwrap_or(Err(Error::Closed)),
                n = notices.recv(), if watching => match n {
                    Ok(Notice::ConnectFailed { error, .. }) => {
                        last_failure = Some(Box::new(error));
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => watching = false,
                },
                () = &mut deadline => {
                    return Err(Error::ConnectTimeout {
                        waited: wait,
                        last_failure,
                    });
                }
            }
        }
    }

    /// Starts connecting in the background and returns at once.
    pub fn start(&self) -> Result<()> {
        self.send(Command::Connect(None))
    }

    /// Leaves every namespace and stops reconnecting; [`Client::connect`] starts again.
    pub fn disconnect(&self) -> Result<()> {
        self.send(Command::Disconnect)
    }

    /// Closes the client for good: stops reconnecting at once, writes what the outbox holds
    /// if the link is alive (bounded to a second), says goodbye to the server, closes the
    /// store and ends the engine task. Entries not delivered stay in the store for the next
    /// client on the same file; pending acknowledgements fail with [`Error::Closed`].
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.send(Command::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.inner.state.get()
    }

    /// A watch on the state: `changed().await` then `borrow()` for every transition that
    /// matters (intermediate ones may be coalesced). Once the client has left `Idle`, the
    /// state it is in when the watch is made counts as a change not yet seen: the first
    /// `changed()` returns at once with it. The channel closes when the engine ends.
    pub fn states(&self) -> watch::Receiver<State> {
        self.inner.state.watch()
    }

    /// Lifecycle notices: reconnect attempts, failures, namespace refusals, dropped emits. A
    /// receiver more than 256 notices behind (16 for a [`crate::Hub`]'s client, whose app may
    /// rather listen to every client at once with [`crate::Hub::notices`]) skips the oldest
    /// (`Lagged`); events are never skipped. The channel is made by the first call (or by
    /// [`Client::connect`]): notices published before anyone listened reach no one.
    pub fn notices(&self) -> broadcast::Receiver<Notice> {
        self.inner.notices.subscribe()
    }

    /// The app's reachability hint: `false` stops attempts (state `Offline`) and closes the
    /// link; `true` reconnects at once instead of waiting out the backoff.
    pub fn set_network_available(&self, available: bool) -> Result<()> {
        self.send(Command::NetworkAvailable(available))
    }

    /// A handle for namespace `namespace` on this connection, joining it now and on every
    /// reconnect (with its own CONNECT and credentials).
    pub fn socket(&self, namespace: &str) -> Result<Socket> {
        if !is_valid_namespace(namespace) {
            return Err(Error::InvalidConfig(format!(
                "namespace must start with '/' and contain no ',': {namespace:?}"
            )));
        }
        let ns: Arc<str> = Arc::from(namespace);
        if ns != self.inner.main && matches!(self.inner.config.protocol, Protocol::Envelope(_)) {
            return Err(Error::InvalidConfig(
                "the envelope protocol has no namespaces".into(),
            ));
        }
        if ns != self.inner.main {
            self.send(Command::Join(ns.clone()))?;
        }
        Ok(Socket::new(self.inner.clone(), ns))
    }

    /// The main namespace's handle.
    pub fn main_socket(&self) -> Socket {
        self.main.clone()
    }

    /// Who is online in a room on the main namespace, kept current ([`Socket::presence`]).
    pub fn presence(&self, config: PresenceConfig) -> Presence {
        self.main.presence(config)
    }

    /// Emits on the main namespace, durably: when this returns Ok the event is in the store
    /// and will be delivered (at least once, in order, with its idempotency key) even across
    /// reconnects and, with a store file, an app restart. Waits only for the store's commit.
    /// See [`Socket::emit`].
    pub fn emit(
        &self,
        event: &str,
        args: impl Into<Args>,
    ) -> impl Future<Output = Result<()>> + Send {
        self.main.emit(event, args)
    }

    /// Emits with a priority, TTL or coalescing key; returns the entry's outbox id.
    pub fn emit_with(
        &self,
        event: &str,
        args: impl Into<Args>,
        options: EmitOptions,
    ) -> impl Future<Output = Result<u64>> + Send {
        self.main.emit_with(event, args, options)
    }

    /// Emits on the main namespace durably and waits for the server's acknowledgement.
    /// Resolves exactly once: the answer, [`Error::AckTimeout`] (the entry stays in the
    /// outbox and is still delivered later), [`Error::Expired`], or [`Error::Closed`].
    pub async fn emit_with_ack(
        &self,
        event: &str,
        args: impl Into<Args>,
        timeout: Duration,
    ) -> Result<AckReply> {
        self.main.emit_with_ack(event, args, timeout).await
    }

    /// [`Client::emit_with_ack`] with a priority or a TTL; see
    /// [`Socket::emit_with_ack_options`].
    pub async fn emit_with_ack_options(
        &self,
        event: &str,
        args: impl Into<Args>,
        options: EmitOptions,
        timeout: Duration,
    ) -> Result<AckReply> {
        self.main
            .emit_with_ack_options(event, args, options, timeout)
            .await
    }

    /// Emits on the main namespace only if connected right now and there is room; otherwise
    /// drops it (returns `false`). Never stored: for telemetry where only the latest value
    /// matters and losing one is fine.
    pub fn emit_volatile(&self, event: &str, args: impl Into<Args>) -> Result<bool> {
        self.main.emit_volatile(event, args)
    }

    /// Declares a subscription on the main namespace: `event` with `args` is sent on every
    /// connect (and now, if connected), its acknowledgement awaited before the outbox flushes.
    /// Persisted, so it survives an app restart. `unsubscribe` names the event that undoes it
    /// (e.g. `room:unsubscribe`), sent with the same arguments by [`Client::unsubscribe`].
    pub async fn subscribe(
        &self,
        event: &str,
        args: impl Into<Args>,
        unsubscribe: Option<&str>,
    ) -> Result<()> {
        self.main.subscribe(event, args, unsubscribe).await
    }

    /// Removes a subscription made with [`Client::subscribe`] and, if it named an unsubscribe
    /// event, emits that (durably) with the same arguments.
    pub async fn unsubscribe(&self, event: &str, args: impl Into<Args>) -> Result<()> {
        self.main.unsubscribe(event, args).await
    }

    /// The durable outbox: size, contents, removal.
    pub fn outbox(&self) -> Outbox {
        Outbox::new(self.inner.store.clone())
    }

    /// Counters, outbox size and acknowledgement latency percentiles.
    pub async fn metrics(&self) -> Result<Metrics> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Metrics(tx))?;
        let (c, state) = rx.await.map_err(|_| Error::Closed)?;
        let outbox = self.outbox().stats().await?;
        Ok(Metrics {
            state,
            connects: c.connects,
            reconnects: c.reconnects,
            events_sent: c.sent,
            events_received: c.received,
            duplicates_dropped: c.duplicates,
            stale_dropped: c.stale,
            invalid_dropped: c.invalid,
            recovered_sessions: c.recovered,
            subscriptions_failed: c.subscriptions_failed,
            rate_limit_pauses: c.rate_limit_pauses,
            outbox,
            ack_latency: c.latencies.summary(),
            radio_wakeups: c.radio_wakeups,
            radio_active: c.radio_active,
            inbound_reads: c.inbound_reads,
            held_reads: c.held_reads,
            state_times: c.state_times,
        })
    }

    /// Every inbound event on every namespace, in arrival order.
    ///
    /// Register before connecting to see the first events. A stream that is not read holds
    /// the engine back (it stops reading the socket) rather than losing events.
    pub fn events(&self) -> EventStream {
        self.inner.listen(Interest::Inbound)
    }

    /// Every event this client sends (with the app's arguments; the idempotency key is added
    /// on the wire).
    pub fn outgoing(&self) -> EventStream {
        self.inner.listen(Interest::Outbound)
    }

    /// Calls `handler` for each inbound event named `event` on the main namespace, on a task
    /// of the client's runtime. Stops when the returned handle is cancelled or dropped.
    pub fn on(&self, event: &str, handler: impl FnMut(Event) + Send + 'static) -> ListenerHandle {
        self.main.on(event, handler)
    }

    /// Calls `handler` for every inbound event (socket.io-client's `onAny`).
    pub fn on_any(&self, handler: impl FnMut(Event) + Send + 'static) -> ListenerHandle {
        ListenerHandle::spawn(&self.inner.runtime, self.events(), handler)
    }

    /// Calls `handler` for every outbound event (socket.io-client's `onAnyOutgoing`).
    pub fn on_any_outgoing(&self, handler: impl FnMut(Event) + Send + 'static) -> ListenerHandle {
        ListenerHandle::spawn(&self.inner.runtime, self.outgoing(), handler)
    }
}
