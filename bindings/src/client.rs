//! The `Client` and `Socket` objects: one-line adapters over the core's. The client holds what
//! concerns the connection; emitting, subscribing and receiving are a namespace's, so they are
//! on `Socket` only (`client.main_socket()` for the main namespace).

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::task::JoinHandle;

#[cfg(unix)]
use crate::answers::{Answers, Promise};
use crate::{
    auth::AuthProvider,
    config::ClientConfig,
    device::{BackgroundFlush, NetworkPath},
    error::PulselinkError,
    event::{AckReply, State},
    metrics::Metrics,
    outbox::{EmitOptions, Outbox},
    presence::{Presence, PresenceConfig},
    runtime::{Started, handle, on_runtime, start_here},
    stream::{EventReceiver, NoticeReceiver},
};

/// A Pulselink client: one connection, its namespaces, its durable outbox.
#[derive(uniffi::Object)]
pub struct Client {
    inner: pulselink::Client,
    main: Arc<Socket>,
}

impl Client {
    /// A client of its own, or one of `hub`'s (sharing its store thread).
    pub(crate) fn create(
        config: ClientConfig,
        auth: Option<Arc<dyn AuthProvider>>,
        hub: Option<&pulselink::Hub>,
    ) -> Result<Arc<Self>, PulselinkError> {
        let core = config.into_core(auth)?;
        let runtime = handle()?;
        let _guard = runtime.enter();
        let inner = match hub {
            Some(hub) => hub.client(core)?,
            None => pulselink::Client::new(core)?,
        };
        let main = Arc::new(Socket(inner.main_socket()));
        Ok(Arc::new(Self { inner, main }))
    }
}

#[uniffi::export]
impl Client {
    /// Creates a client; nothing connects until `connect()` or `start()`. Opens (or creates)
    /// the store, so a damaged file or a bad path fails here.
    #[uniffi::constructor(default(auth = None))]
    pub fn new(
        config: ClientConfig,
        auth: Option<Arc<dyn AuthProvider>>,
    ) -> Result<Arc<Self>, PulselinkError> {
        Self::create(config, auth, None)
    }

    /// Connects and waits until the main namespace is joined, or a definite failure
    /// (`Unauthorized`, or `Connection` after `connect_wait_ms` while retries go on).
    pub async fn connect(&self) -> Result<(), PulselinkError> {
        let c = self.inner.clone();
        Ok(on_runtime(async move { c.connect().await }).await??)
    }

    /// Starts connecting in the background and returns at once.
    pub fn start(&self) -> Result<(), PulselinkError> {
        Ok(self.inner.start()?)
    }

    /// Disconnects and stops retrying until `connect()` or `start()`; the outbox keeps
    /// what is queued.
    pub fn disconnect(&self) -> Result<(), PulselinkError> {
        Ok(self.inner.disconnect()?)
    }

    /// Closes the client for good: sends what the connection can still take, stops every
    /// task, ends every receiver. Once it returns, no call into foreign code is made for
    /// this client.
    /// (Named `shutdown` because `close()` is the generated objects' handle release in
    /// Kotlin and Python.)
    pub async fn shutdown(&self) -> Result<(), PulselinkError> {
        let c = self.inner.clone();
        on_runtime(async move { c.close().await }).await
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.inner.state().into()
    }

    /// Waits until the state differs from `current` and returns the new one (a pull-style
    /// state stream: pass the last state seen). `Closed` once the client is closed.
    pub async fn next_state(&self, current: State) -> State {
        let mut states = self.inner.states();
        // Polled in place: watch channels need no runtime, and cancelling loses nothing.
        let changed = states
            .wait_for(|s| State::from(s.clone()) != current)
            .await
            .map(|s| s.clone().into());
        changed.unwrap_or(State::Closed)
    }

    /// Reachability hint from the platform: `false` stops retrying (state `Offline`),
    /// `true` reconnects at once.
    pub fn set_network_available(&self, available: bool) -> Result<(), PulselinkError> {
        Ok(self.inner.set_network_available(available)?)
    }

    /// The app is going to the background: flushes the outbox for up to `deadline_ms`
    /// (iOS grants about 30 s; pass less), then applies the `background` policy. Emits are
    /// still stored afterwards. `Closed` on a closed client.
    pub async fn enter_background(
        &self,
        deadline_ms: u64,
    ) -> Result<BackgroundFlush, PulselinkError> {
        let c = self.inner.clone();
        let deadline = Duration::from_millis(deadline_ms);
        Ok(
            on_runtime(async move { c.enter_background(deadline).await })
                .await??
                .into(),
        )
    }

    /// The app is in the foreground again: connects at once when a connection is wanted.
    /// `Closed` on a closed client.
    pub fn enter_foreground(&self) -> Result<(), PulselinkError> {
        Ok(self.inner.enter_foreground()?)
    }

    /// The platform's network path changed: unavailable stops attempts, a new interface
    /// replaces the link at once, an expensive or constrained path may hold `Low` emits.
    /// `Closed` on a closed client.
    pub fn network_changed(&self, path: NetworkPath) -> Result<(), PulselinkError> {
        Ok(self.inner.network_changed(path.into())?)
    }

    /// The socket of the main namespace (the URL's path, `/` by default): where the main
    /// namespace's emits, subscriptions and named events are.
    pub fn main_socket(&self) -> Arc<Socket> {
        self.main.clone()
    }

    /// The socket of `namespace`, joined now and on every reconnect.
    pub fn socket(&self, namespace: String) -> Result<Arc<Socket>, PulselinkError> {
        Ok(Arc::new(Socket(self.inner.socket(&namespace)?)))
    }

    /// Every inbound event on every namespace, for one consumer.
    pub fn events(&self) -> Arc<EventReceiver> {
        Arc::new(EventReceiver::new(self.inner.events()))
    }

    /// The number its hub gave it, which `HubNotice.client` names; none without a hub.
    pub fn hub_index(&self) -> Option<u64> {
        self.inner.hub_index()
    }

    /// Lifecycle notices (connected, recovered, disconnected, emit failed, ...).
    pub fn notices(&self) -> Arc<NoticeReceiver> {
        Arc::new(NoticeReceiver::new(self.inner.notices()))
    }

    /// The durable outbox.
    pub fn outbox(&self) -> Arc<Outbox> {
        Arc::new(Outbox(self.inner.outbox()))
    }

    /// Counters, outbox and latency now.
    pub async fn metrics(&self) -> Result<Metrics, PulselinkError> {
        let c = self.inner.clone();
        Ok(on_runtime(async move { c.metrics().await }).await??.into())
    }
}

/// One namespace on a client's connection. Every call that takes arguments takes a JSON
/// array text and the binary attachments its `{"_placeholder":true,"num":N}` objects name;
/// a call that cannot carry binary (a subscription, the envelope protocol) refuses
/// attachments with `InvalidArgs`.
#[derive(uniffi::Object)]
pub struct Socket(pulselink::Socket);

fn args(json: String, attachments: Vec<Vec<u8>>) -> Result<pulselink::Args, PulselinkError> {
    Ok(pulselink::Args::from_parts(json, attachments)?)
}

/// How long [`Socket::emit_start`] waits on the caller's thread for a commit the engine's
/// task makes: typically some tens of microseconds, more only while the outbox is full.
pub const EMIT_WAIT: Duration = Duration::from_millis(1);

impl Socket {
    fn emit_wait(&self) -> Duration {
        if self.0.commits_on_engine() {
            EMIT_WAIT
        } else {
            Duration::ZERO
        }
    }

    /// What `emit_start` and `emit_start_event` share, from checked arguments on.
    fn start(
        &self,
        event: String,
        args: pulselink::Args,
        options: pulselink::EmitOptions,
    ) -> Result<EmitStart, PulselinkError> {
        let s = self.0.clone();
        if let Some(committed) = s.emit_here(&event, &args, &options) {
            return Ok(EmitStart::Done {
                entry_id: committed?,
            });
        }
        let budget = self.emit_wait();
        match start_here(
            async move { s.emit_with(&event, args, options).await },
            budget,
        )? {
            Started::Done(entry) => Ok(EmitStart::Done { entry_id: entry? }),
            Started::Running(rest) => Ok(EmitStart::Running {
                rest: Arc::new(RunningEmit(Mutex::new(Some(rest)))),
            }),
        }
    }
}

/// What [`Socket::emit_start`] gives back.
#[derive(uniffi::Enum)]
pub enum EmitStart {
    /// Committed (or delivered already): the entry's outbox id.
    Done {
        /// The outbox entry id, as `emit_with` returns it.
        entry_id: u64,
    },
    /// Still under way; `rest.wait()` gives what `emit_with` would have.
    Running {
        /// The rest of the emit, running on Pulselink's runtime.
        rest: Arc<RunningEmit>,
    },
}

/// An emit that goes on on Pulselink's runtime (see [`Socket::emit_start`]).
#[derive(uniffi::Object)]
pub struct RunningEmit(Mutex<Option<JoinHandle<pulselink::Result<u64>>>>);

#[uniffi::export]
impl RunningEmit {
    /// Waits for the emit and returns its outbox entry id. Cancelling the wait does not
    /// cancel the emit; a second wait fails with `Closed`.
    pub async fn wait(&self) -> Result<u64, PulselinkError> {
        let rest = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        let rest = rest.ok_or(PulselinkError::Closed)?;
        match rest.await {
            Ok(entry) => Ok(entry?),
            Err(e) => Err(PulselinkError::Internal {
                message: e.to_string(),
            }),
        }
    }
}

#[uniffi::export]
impl Socket {
    /// The namespace, e.g. `/rooms/r1`.
    pub fn namespace(&self) -> String {
        self.0.namespace().to_owned()
    }

    /// Emits `event`; it is in the durable outbox when this returns and is delivered once
    /// connected, or it was delivered already (written to a healthy connection first).
    #[uniffi::method(default(attachments = []))]
    pub async fn emit(
        &self,
        event: String,
        args_json: String,
        attachments: Vec<Vec<u8>>,
    ) -> Result<(), PulselinkError> {
        let (s, args) = (self.0.clone(), args(args_json, attachments)?);
        Ok(on_runtime(async move { s.emit(&event, args).await }).await??)
    }

    /// Emits with priority, TTL, coalescing or confirmation; returns the outbox entry id.
    #[uniffi::method(default(attachments = []))]
    pub async fn emit_with(
        &self,
        event: String,
        args_json: String,
        options: EmitOptions,
        attachments: Vec<Vec<u8>>,
    ) -> Result<u64, PulselinkError> {
        let (s, args) = (self.0.clone(), args(args_json, attachments)?);
        let options = options.into();
        Ok(on_runtime(async move { s.emit_with(&event, args, options).await }).await??)
    }

    /// `emit_with`, started on the calling thread. When the store commits without fsync
    /// (`Durability::Normal`, or in memory) the entry is committed right here and, connected,
    /// handed to the engine without waiting for it; when it cannot be (an emit made earlier
    /// not numbered yet, a coalescing key, the engine's queue full), the calling thread waits
    /// for the engine's commit or live write up to [`EMIT_WAIT`]. Under `Full` it does not
    /// wait. Either it is done then, or `Running` hands over the rest, which finishes on
    /// Pulselink's runtime whether or not it is awaited.
    ///
    /// For a foreign event loop whose await costs more than the commit: Python's `emit`.
    /// Blocking the calling thread for a commit is what the caller trades for that.
    #[uniffi::method(default(attachments = []))]
    pub fn emit_start(
        &self,
        event: String,
        args_json: String,
        options: EmitOptions,
        attachments: Vec<Vec<u8>>,
    ) -> Result<EmitStart, PulselinkError> {
        // Like every call, refused once the runtime was stopped (`shutdown_runtime`).
        handle()?;
        self.start(event, args(args_json, attachments)?, options.into())
    }

    /// `emit_start` with the default options and no attachments, what most emits are, the
    /// event's name and arguments in one JSON array: `["name", arg, ...]`. Its own entry
    /// point because, in UniFFI's generated Python, lowering an options record and an empty
    /// attachment list costs some 20 µs per call (a record written field by field, three more
    /// FFI crossings), and each string argument some 8 µs: more than the commit it starts.
    pub fn emit_start_event(&self, event_json: String) -> Result<EmitStart, PulselinkError> {
        handle()?;
        let (event, args) = pulselink::Args::split_event(&event_json)?;
        self.start(event, args, pulselink::EmitOptions::default())
    }

    /// Emits and waits up to `timeout_ms` for the acknowledgement. The emit stays durable:
    /// a timeout does not withdraw it.
    #[uniffi::method(default(attachments = []))]
    pub async fn emit_with_ack(
        &self,
        event: String,
        args_json: String,
        timeout_ms: u64,
        attachments: Vec<Vec<u8>>,
    ) -> Result<AckReply, PulselinkError> {
        let (s, args) = (self.0.clone(), args(args_json, attachments)?);
        let timeout = Duration::from_millis(timeout_ms);
        let reply = on_runtime(async move { s.emit_with_ack(&event, args, timeout).await });
        Ok(reply.await??.into())
    }

    /// Emits only if connected now, bypassing the outbox; false when dropped.
    #[uniffi::method(default(attachments = []))]
    pub fn emit_volatile(
        &self,
        event: String,
        args_json: String,
        attachments: Vec<Vec<u8>>,
    ) -> Result<bool, PulselinkError> {
        Ok(self
            .0
            .emit_volatile(&event, args(args_json, attachments)?)?)
    }

    /// Declares a subscription, sent and acknowledged on every connect before the outbox
    /// flows, and kept across restarts. `unsubscribe` names the event that undoes it.
    /// Subscriptions carry JSON only: attachments are refused.
    #[uniffi::method(default(unsubscribe = None, attachments = []))]
    pub async fn subscribe(
        &self,
        event: String,
        args_json: String,
        unsubscribe: Option<String>,
        attachments: Vec<Vec<u8>>,
    ) -> Result<(), PulselinkError> {
        let (s, args) = (self.0.clone(), args(args_json, attachments)?);
        let run = async move { s.subscribe(&event, args, unsubscribe.as_deref()).await };
        Ok(on_runtime(run).await??)
    }

    /// Forgets a subscription and emits its `unsubscribe` counterpart durably.
    #[uniffi::method(default(attachments = []))]
    pub async fn unsubscribe(
        &self,
        event: String,
        args_json: String,
        attachments: Vec<Vec<u8>>,
    ) -> Result<(), PulselinkError> {
        let (s, args) = (self.0.clone(), args(args_json, attachments)?);
        Ok(on_runtime(async move { s.unsubscribe(&event, args).await }).await??)
    }

    /// Inbound events named `event` on this namespace, for one consumer.
    pub fn events_named(&self, event: String) -> Arc<EventReceiver> {
        Arc::new(EventReceiver::new(self.0.events_named(&event)))
    }

    /// Leaves the namespace and stops rejoining it.
    pub fn leave(&self) -> Result<(), PulselinkError> {
        Ok(self.0.leave()?)
    }

    /// Who is online in a room of this namespace, kept current from the server's presence
    /// events and re-fetched after every (re)connect.
    pub fn presence(&self, config: PresenceConfig) -> Arc<Presence> {
        Arc::new(Presence::new(self.0.presence(config.into_core())))
    }
}

/// Unix only, in a block of its own: UniFFI's export macro sees every method of a block
/// whatever `cfg` a method carries.
#[cfg(unix)]
#[uniffi::export]
impl Socket {
    /// `emit_with_ack` for an event loop that watches `answers` instead of awaiting: the emit
    /// is handed over on the calling thread (so emits started one after another are numbered
    /// in that order), and its acknowledgement, or why there is none, arrives in `answers`
    /// under `token`. The call goes on on Pulselink's runtime whatever the caller does next;
    /// dropped unanswered (the runtime shut down), it answers `Closed`.
    #[uniffi::method(default(attachments = []))]
    pub fn emit_with_ack_start(
        &self,
        event: String,
        args_json: String,
        timeout_ms: u64,
        answers: Arc<Answers>,
        token: u64,
        attachments: Vec<Vec<u8>>,
    ) -> Result<(), PulselinkError> {
        let (s, args) = (self.0.clone(), args(args_json, attachments)?);
        let timeout = Duration::from_millis(timeout_ms);
        let promise = Promise::new(answers, token);
        let call = async move {
            let reply = s.emit_with_ack(&event, args, timeout).await;
            promise.keep(reply.map(Into::into).map_err(Into::into).into());
        };
        // Done in place only when it failed at once; otherwise it waits on the runtime.
        start_here(call, Duration::ZERO)?;
        Ok(())
    }
}
