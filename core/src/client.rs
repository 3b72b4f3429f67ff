//! The app-facing handle. It holds no connection state: every call is a message to the
//! engine task, which answers on oneshot channels and publishes state on a watch channel.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use futures_util::Stream;
use tokio::{
    runtime::Handle,
    sync::{broadcast, mpsc, oneshot, watch},
    task::JoinHandle,
};

use crate::{
    config::{ClientConfig, Protocol, is_valid_namespace},
    engine::{Channels, Control, Emit, Engine, Filter, Subscriber},
    error::{Error, Result},
    event::{AckReply, Args, Event, Notice, State},
    metrics::Metrics,
    outbox::{EmitOptions, OutboxStats, PendingEmit},
    store::{AckTx, Cmd, NewEntry, Store, StoredSubscription},
};

/// A connection to one Socket.IO server. Cheap to clone; the connection closes when the last
/// clone is dropped or [`Client::close`] is called.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    ctl: mpsc::UnboundedSender<Control>,
    /// Volatile emits.
    emits: mpsc::Sender<Emit>,
    store: Store,
    state: watch::Receiver<State>,
    notices: broadcast::Sender<Notice>,
    main: Arc<str>,
    config: Arc<ClientConfig>,
    runtime: Handle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.ctl.send(Control::Shutdown);
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &crate::config::redacted(&self.inner.config.url))
            .field("state", &*self.inner.state.borrow())
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
        config.validate()?;
        let tls =
            crate::transport::tls::client_config(&config.tls).map_err(Error::InvalidConfig)?;
        let runtime = Handle::try_current().map_err(|_| {
            Error::InvalidConfig("Client::new must run inside a tokio runtime".into())
        })?;
        let config = Arc::new(config);
        let (notices, _) = broadcast::channel(256);
        let (store, snapshot) = Store::open(&config.outbox, notices.clone())?;
        let (
            engine,
            Channels {
                ctl,
                emits,
                state,
                notices,
            },
        ) = Engine::new(config.clone(), tls, store.clone(), snapshot, notices);
        runtime.spawn(engine.run());
        let main = Arc::from(config.main_namespace());
        Ok(Self {
            inner: Arc::new(Inner {
                ctl,
                emits,
                store,
                state,
                notices,
                main,
                config,
                runtime,
            }),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    fn send(&self, c: Control) -> Result<()> {
        self.inner.ctl.send(c).map_err(|_| Error::Closed)
    }

    /// Connects and waits until the main namespace is joined.
    ///
    /// Returns early with the reason when the attempt can never succeed (refused credentials,
    /// the policy gave up), and with [`Error::ConnectTimeout`] after `connect_wait`, in which
    /// case the client keeps retrying in the background and emits are buffered meanwhile.
    pub async fn connect(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.send(Control::Connect(Some(tx)))?;
        let wait = self.inner.config.connect_wait;
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => Err(Error::ConnectTimeout(wait)),
        }
    }

    /// Starts connecting in the background and returns at once.
    pub fn start(&self) -> Result<()> {
        self.send(Control::Connect(None))
    }

    /// Leaves every namespace and stops reconnecting; [`Client::connect`] starts again.
    pub fn disconnect(&self) -> Result<()> {
        self.send(Control::Disconnect)
    }

    /// Closes the client for good: stops reconnecting at once, writes what the outbox holds
    /// if the link is alive (bounded to a second), says goodbye to the server, closes the
    /// store and ends the engine task. Entries not delivered stay in the store for the next
    /// client on the same file; pending acknowledgements fail with [`Error::Closed`].
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.send(Control::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.inner.state.borrow().clone()
    }

    /// A watch on the state: `changed().await` then `borrow()` for every transition that
    /// matters (intermediate ones may be coalesced).
    pub fn states(&self) -> watch::Receiver<State> {
        self.inner.state.clone()
    }

    /// Lifecycle notices: reconnect attempts, failures, namespace refusals, dropped emits.
    pub fn notices(&self) -> broadcast::Receiver<Notice> {
        self.inner.notices.subscribe()
    }

    /// The app's reachability hint: `false` stops attempts (state `Offline`) and closes the
    /// link; `true` reconnects at once instead of waiting out the backoff.
    pub fn set_network_available(&self, available: bool) -> Result<()> {
        self.send(Control::NetworkAvailable(available))
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
            self.send(Control::Join(ns.clone()))?;
        }
        Ok(Socket {
            client: self.clone(),
            namespace: ns,
        })
    }

    /// The main namespace's handle.
    pub fn main_socket(&self) -> Socket {
        Socket {
            client: self.clone(),
            namespace: self.inner.main.clone(),
        }
    }

    /// Emits on the main namespace, durably: when this returns Ok the event is in the store
    /// and will be delivered (at least once, in order, with its idempotency key) even across
    /// reconnects and, with a store file, an app restart. Waits only for the store's commit.
    pub async fn emit(&self, event: &str, args: impl Into<Args>) -> Result<()> {
        self.emit_in(
            &self.inner.main,
            event,
            args.into(),
            EmitOptions::default(),
            None,
        )
        .await
        .map(drop)
    }

    /// Emits with a priority, TTL or coalescing key; returns the entry's outbox id.
    pub async fn emit_with(
        &self,
        event: &str,
        args: impl Into<Args>,
        options: EmitOptions,
    ) -> Result<u64> {
        self.emit_in(&self.inner.main, event, args.into(), options, None)
            .await
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
        self.emit_with_ack_in(&self.inner.main, event, args.into(), timeout)
            .await
    }

    /// Emits on the main namespace only if connected right now and there is room; otherwise
    /// drops it (returns `false`). Never stored: for telemetry where only the latest value
    /// matters and losing one is fine.
    pub fn emit_volatile(&self, event: &str, args: impl Into<Args>) -> Result<bool> {
        self.emit_volatile_in(self.inner.main.clone(), event, args.into())
    }

    async fn emit_in(
        &self,
        namespace: &str,
        event: &str,
        args: Args,
        options: EmitOptions,
        ack: Option<AckTx>,
    ) -> Result<u64> {
        self.check_args(&args)?;
        if event.is_empty() {
            return Err(Error::InvalidArgs("event name is empty".into()));
        }
        if ack.is_some() && options.coalesce_key.is_some() {
            return Err(Error::InvalidArgs(
                "a coalescing key cannot be combined with an acknowledgement".into(),
            ));
        }
        let entry = NewEntry {
            lane: options.priority,
            namespace: Arc::from(namespace),
            event: event.to_owned(),
            args: args.json.into_string(),
            attachments: args.attachments,
            want_ack: ack.is_some() || options.confirm,
            ttl: options.ttl,
            coalesce_key: options.coalesce_key,
        };
        self.inner
            .store
            .ask(|reply| Cmd::Append { entry, ack, reply })
            .await
    }

    async fn emit_with_ack_in(
        &self,
        namespace: &str,
        event: &str,
        args: Args,
        timeout: Duration,
    ) -> Result<AckReply> {
        let (tx, rx) = oneshot::channel();
        self.emit_in(namespace, event, args, EmitOptions::default(), Some(tx))
            .await?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => Err(Error::AckTimeout(timeout)),
        }
    }

    /// Refuses what the configured protocol cannot carry, before anything is stored.
    fn check_args(&self, args: &Args) -> Result<()> {
        args.check()?;
        if matches!(self.inner.config.protocol, Protocol::Envelope(_))
            && !args.attachments.is_empty()
        {
            return Err(Error::InvalidArgs(
                "binary attachments need the Socket.IO protocol".into(),
            ));
        }
        Ok(())
    }

    fn emit_volatile_in(&self, namespace: Arc<str>, event: &str, args: Args) -> Result<bool> {
        self.check_args(&args)?;
        if *self.inner.state.borrow() != State::Connected {
            return Ok(false);
        }
        let emit = Emit {
            namespace,
            name: event.to_owned(),
            args,
        };
        match self.inner.emits.try_send(emit) {
            Ok(()) => Ok(true),
            Err(mpsc::error::TrySendError::Full(_)) => Ok(false),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Error::Closed),
        }
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
        self.subscribe_in(&self.inner.main, event, args.into(), unsubscribe)
            .await
    }

    /// Removes a subscription made with [`Client::subscribe`] and, if it named an unsubscribe
    /// event, emits that (durably) with the same arguments.
    pub async fn unsubscribe(&self, event: &str, args: impl Into<Args>) -> Result<()> {
        self.unsubscribe_in(&self.inner.main, event, args.into())
            .await
    }

    async fn subscribe_in(
        &self,
        namespace: &str,
        event: &str,
        args: Args,
        unsubscribe: Option<&str>,
    ) -> Result<()> {
        if !args.attachments.is_empty() || event.is_empty() {
            return Err(Error::InvalidArgs(
                "a subscription needs an event name and JSON arguments (no binary)".into(),
            ));
        }
        let sub = StoredSubscription {
            namespace: namespace.to_owned(),
            event: event.to_owned(),
            args: args.json.into_string(),
            unsubscribe: unsubscribe.map(str::to_owned),
        };
        let stored = sub.clone();
        self.inner
            .store
            .ask(|reply| Cmd::PutSubscription(stored, reply))
            .await?;
        self.send(Control::AddSubscription(sub))
    }

    async fn unsubscribe_in(&self, namespace: &str, event: &str, args: Args) -> Result<()> {
        let sub = StoredSubscription {
            namespace: namespace.to_owned(),
            event: event.to_owned(),
            args: args.json.get().to_owned(),
            unsubscribe: None,
        };
        let stored = sub.clone();
        let removed = self
            .inner
            .store
            .ask(|reply| Cmd::RemoveSubscription(stored, reply))
            .await?;
        self.send(Control::RemoveSubscription(sub))?;
        if let Some(undo) = removed {
            self.emit_in(namespace, &undo, args, EmitOptions::default(), None)
                .await?;
        }
        Ok(())
    }

    /// The durable outbox: size, contents, removal.
    pub fn outbox(&self) -> Outbox {
        Outbox {
            store: self.inner.store.clone(),
        }
    }

    /// Counters, outbox size and acknowledgement latency percentiles.
    pub async fn metrics(&self) -> Result<Metrics> {
        let (tx, rx) = oneshot::channel();
        self.send(Control::Metrics(tx))?;
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
        })
    }

    fn listen_stream(&self, filter: Filter) -> EventStream {
        let (tx, rx) = mpsc::channel(self.inner.config.listener_buffer);
        // If the engine is gone the stream simply ends.
        let _ = self.send(Control::Listen(Subscriber { filter, tx }));
        EventStream { rx }
    }

    /// Every inbound event on every namespace, in arrival order.
    ///
    /// Register before connecting to see the first events. A stream that is not read holds
    /// the engine back (it stops reading the socket) rather than losing events.
    pub fn events(&self) -> EventStream {
        self.listen_stream(Filter::Inbound)
    }

    /// Every event this client sends, as sent.
    pub fn outgoing(&self) -> EventStream {
        self.listen_stream(Filter::Outbound)
    }

    /// Calls `handler` for each inbound event named `event` on the main namespace, on a task
    /// of the client's runtime. Stops when the returned handle is cancelled or dropped.
    pub fn on(&self, event: &str, handler: impl FnMut(Event) + Send + 'static) -> ListenerHandle {
        let filter = Filter::Named {
            namespace: Some(self.inner.main.clone()),
            name: event.into(),
        };
        self.listen(self.listen_stream(filter), handler)
    }

    /// Calls `handler` for every inbound event (socket.io-client's `onAny`).
    pub fn on_any(&self, handler: impl FnMut(Event) + Send + 'static) -> ListenerHandle {
        self.listen(self.events(), handler)
    }

    /// Calls `handler` for every outbound event (socket.io-client's `onAnyOutgoing`).
    pub fn on_any_outgoing(&self, handler: impl FnMut(Event) + Send + 'static) -> ListenerHandle {
        self.listen(self.outgoing(), handler)
    }

    /// Calls `handler` with batches of up to `batch` events from `stream`, in order, one call
    /// at a time, on the runtime's blocking pool: for handlers that may block or are slow
    /// (foreign code taking a GIL or hopping to a main thread). While a call runs the stream
    /// fills and then holds the engine back: backpressure, never loss. A panic in the handler
    /// ends that call only.
    pub fn listen_batches(
        &self,
        mut stream: EventStream,
        batch: usize,
        handler: impl Fn(Vec<Event>) + Send + Sync + 'static,
    ) -> ListenerHandle {
        let handler = Arc::new(handler);
        self.spawn_blocking_listener(move |stop| async move {
            let mut buf = Vec::with_capacity(batch);
            while stream.recv_many(&mut buf, batch.max(1)).await > 0 {
                let events = std::mem::take(&mut buf);
                let (h, stop) = (handler.clone(), stop.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    if !stop.load(Ordering::Acquire) {
                        h(events);
                    }
                })
                .await;
            }
        })
    }

    /// Calls `handler` with the current state and then every change, one call at a time, on
    /// the runtime's blocking pool (see [`Client::listen_batches`]).
    pub fn watch_states(&self, handler: impl Fn(State) + Send + Sync + 'static) -> ListenerHandle {
        let handler = Arc::new(handler);
        let mut states = self.states();
        self.spawn_blocking_listener(move |stop| async move {
            loop {
                let state = states.borrow_and_update().clone();
                let (h, stop) = (handler.clone(), stop.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    if !stop.load(Ordering::Acquire) {
                        h(state);
                    }
                })
                .await;
                if states.changed().await.is_err() {
                    return;
                }
            }
        })
    }

    fn spawn_blocking_listener<F, Fut>(&self, run: F) -> ListenerHandle
    where
        F: FnOnce(Arc<AtomicBool>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let cancelled = Arc::new(AtomicBool::new(false));
        let task = self.inner.runtime.spawn(run(cancelled.clone()));
        ListenerHandle { task, cancelled }
    }

    fn listen(
        &self,
        mut stream: EventStream,
        mut handler: impl FnMut(Event) + Send + 'static,
    ) -> ListenerHandle {
        let cancelled = Arc::new(AtomicBool::new(false));
        let stop = cancelled.clone();
        let task = self.inner.runtime.spawn(async move {
            let mut batch = Vec::with_capacity(64);
            while stream.recv_many(&mut batch, 64).await > 0 {
                for ev in batch.drain(..) {
                    // Checked per event: once `cancel()` returns, the handler is not called again.
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    handler(ev);
                }
            }
        });
        ListenerHandle { task, cancelled }
    }
}

/// One namespace on a client's connection (socket.io-client's `Socket`).
#[derive(Clone, Debug)]
pub struct Socket {
    client: Client,
    namespace: Arc<str>,
}

impl Socket {
    /// The namespace, e.g. `/rooms/r1`.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The client this socket belongs to.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Emits on this namespace; see [`Client::emit`].
    pub async fn emit(&self, event: &str, args: impl Into<Args>) -> Result<()> {
        let opts = EmitOptions::default();
        self.client
            .emit_in(&self.namespace, event, args.into(), opts, None)
            .await
            .map(drop)
    }

    /// Emits with options on this namespace; see [`Client::emit_with`].
    pub async fn emit_with(
        &self,
        event: &str,
        args: impl Into<Args>,
        options: EmitOptions,
    ) -> Result<u64> {
        self.client
            .emit_in(&self.namespace, event, args.into(), options, None)
            .await
    }

    /// Declares a subscription on this namespace; see [`Client::subscribe`].
    pub async fn subscribe(
        &self,
        event: &str,
        args: impl Into<Args>,
        unsubscribe: Option<&str>,
    ) -> Result<()> {
        self.client
            .subscribe_in(&self.namespace, event, args.into(), unsubscribe)
            .await
    }

    /// Removes a subscription on this namespace; see [`Client::unsubscribe`].
    pub async fn unsubscribe(&self, event: &str, args: impl Into<Args>) -> Result<()> {
        self.client
            .unsubscribe_in(&self.namespace, event, args.into())
            .await
    }

    /// Emits on this namespace and waits for the acknowledgement; see
    /// [`Client::emit_with_ack`].
    pub async fn emit_with_ack(
        &self,
        event: &str,
        args: impl Into<Args>,
        timeout: Duration,
    ) -> Result<AckReply> {
        self.client
            .emit_with_ack_in(&self.namespace, event, args.into(), timeout)
            .await
    }

    /// Emits only if connected now; see [`Client::emit_volatile`].
    pub fn emit_volatile(&self, event: &str, args: impl Into<Args>) -> Result<bool> {
        self.client
            .emit_volatile_in(self.namespace.clone(), event, args.into())
    }

    /// Inbound events named `event` on this namespace.
    pub fn events_named(&self, event: &str) -> EventStream {
        self.client.listen_stream(Filter::Named {
            namespace: Some(self.namespace.clone()),
            name: event.into(),
        })
    }

    /// Calls `handler` for each inbound event named `event` on this namespace.
    pub fn on(&self, event: &str, handler: impl FnMut(Event) + Send + 'static) -> ListenerHandle {
        self.client.listen(self.events_named(event), handler)
    }

    /// Leaves the namespace (and stops rejoining it on reconnect).
    pub fn leave(&self) -> Result<()> {
        self.client.send(Control::Leave(self.namespace.clone()))
    }
}

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

    /// Removes entry `id` (counted as failed); false if it was already gone. An entry already
    /// written to the server may still arrive there.
    pub async fn remove(&self, id: u64) -> Result<bool> {
        self.store.ask(|reply| Cmd::Remove { id, reply }).await
    }

    /// Waits until every entry is delivered (or dropped): a gateway draining before it exits,
    /// a test waiting for a flush. Ends with [`Error::Closed`] if the client closes first.
    pub async fn drained(&self) -> Result<()> {
        // Asked again now and then: another process sharing the store file may deliver the
        // last entries without this one hearing of it, and each ask re-reads the file.
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

/// A stream of events for one listener. Ends when the client closes.
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::Receiver<Event>,
}

impl EventStream {
    /// The next event, or `None` once the client is closed.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// Waits for at least one event and appends up to `limit` to `buf`; returns how many
    /// (0 once the client is closed). The cheapest way to consume a high event rate.
    pub async fn recv_many(&mut self, buf: &mut Vec<Event>, limit: usize) -> usize {
        self.rx.recv_many(buf, limit).await
    }

    /// An event if one is ready now.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

impl Stream for EventStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

/// Keeps a listener running; cancels it on [`ListenerHandle::cancel`] or drop.
#[derive(Debug)]
pub struct ListenerHandle {
    task: JoinHandle<()>,
    cancelled: Arc<AtomicBool>,
}

impl ListenerHandle {
    /// Stops the listener: after this returns its handler is not called again (a call already
    /// running on another thread finishes).
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.task.abort();
    }
}

impl Drop for ListenerHandle {
    fn drop(&mut self) {
        self.cancel();
    }
}
