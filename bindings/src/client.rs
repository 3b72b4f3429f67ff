//! The `Client` and `Socket` objects: one-line adapters over the core's.

use std::{sync::Arc, time::Duration};

use crate::{
    auth::AuthProvider,
    config::ClientConfig,
    error::PulselinkError,
    event::{AckReply, State},
    listener::{self, EventListener, ListenerHandle, StateListener},
    metrics::Metrics,
    outbox::{EmitOptions, Outbox},
    runtime::{RUNTIME, on_runtime},
    stream::{EventReceiver, NoticeReceiver},
};

/// Builds the core's arguments from a JSON array text and binary attachments (referenced in
/// the JSON by `{"_placeholder":true,"num":N}`).
fn args(json: String, attachments: Vec<Vec<u8>>) -> Result<pulselink::Args, PulselinkError> {
    if attachments.is_empty() {
        return Ok(pulselink::Args::from_json_array(json)?);
    }
    let value = serde_json::from_str(&json).map_err(|e| PulselinkError::InvalidArgs {
        message: e.to_string(),
    })?;
    Ok(pulselink::Args::with_attachments(value, attachments)?)
}

/// A Pulselink client: one connection, its namespaces, its durable outbox.
#[derive(uniffi::Object)]
pub struct Client {
    inner: pulselink::Client,
    main: Arc<Socket>,
}

#[uniffi::export]
impl Client {
    /// Creates a client; nothing connects until `connect()` or `start()`. Opens (or creates)
    /// the outbox store, so a damaged file or a bad path fails here.
    #[uniffi::constructor(default(auth = None))]
    pub fn new(
        config: ClientConfig,
        auth: Option<Arc<dyn AuthProvider>>,
    ) -> Result<Arc<Self>, PulselinkError> {
        let core = config.into_core(auth)?;
        let _guard = RUNTIME.enter();
        let inner = pulselink::Client::new(core)?;
        let main = Arc::new(Socket(inner.main_socket()));
        Ok(Arc::new(Self { inner, main }))
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
    /// task, ends every receiver and listener.
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
    /// state stream: pass the last state seen).
    pub async fn next_state(&self, current: State) -> State {
        let mut states = self.inner.states();
        // Polled in place: watch channels need no runtime, and cancelling loses nothing.
        let changed = states
            .wait_for(|s| State::from(s.clone()) != current)
            .await
            .map(|s| s.clone().into());
        changed.unwrap_or(State::Closed)
    }

    /// Calls `listener` with every state change, starting with the current state.
    pub fn watch_state(&self, listener: Arc<dyn StateListener>) -> Arc<ListenerHandle> {
        listener::states(&self.inner, listener)
    }

    /// Reachability hint from the platform: `false` stops retrying (state `Offline`),
    /// `true` reconnects at once.
    pub fn set_network_available(&self, available: bool) -> Result<(), PulselinkError> {
        Ok(self.inner.set_network_available(available)?)
    }

    /// The socket of the main namespace (the URL's path, `/` by default).
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

    /// Calls `listener` with batches of every inbound event (`event` = `None`) or of the main
    /// namespace's events named `event`.
    #[uniffi::method(default(event = None))]
    pub fn add_listener(
        &self,
        listener: Arc<dyn EventListener>,
        event: Option<String>,
    ) -> Arc<ListenerHandle> {
        match event {
            None => listener::events(&self.inner, self.inner.events(), listener),
            Some(name) => self.main.add_listener(name, listener),
        }
    }

    /// Lifecycle notices (connected, recovered, disconnected, emit failed, ...).
    pub fn notices(&self) -> Arc<NoticeReceiver> {
        Arc::new(NoticeReceiver::new(self.inner.notices()))
    }

    /// Emits on the main namespace; durable once this returns. See `Socket.emit`.
    #[uniffi::method(default(attachments = []))]
    pub async fn emit(
        &self,
        event: String,
        args_json: String,
        attachments: Vec<Vec<u8>>,
    ) -> Result<(), PulselinkError> {
        self.main.emit(event, args_json, attachments).await
    }

    /// Emits with options on the main namespace; returns the outbox entry id.
    #[uniffi::method(default(attachments = []))]
    pub async fn emit_with(
        &self,
        event: String,
        args_json: String,
        options: EmitOptions,
        attachments: Vec<Vec<u8>>,
    ) -> Result<u64, PulselinkError> {
        self.main
            .emit_with(event, args_json, options, attachments)
            .await
    }

    /// Emits on the main namespace and waits up to `timeout_ms` for the acknowledgement.
    #[uniffi::method(default(attachments = []))]
    pub async fn emit_with_ack(
        &self,
        event: String,
        args_json: String,
        timeout_ms: u64,
        attachments: Vec<Vec<u8>>,
    ) -> Result<AckReply, PulselinkError> {
        self.main
            .emit_with_ack(event, args_json, timeout_ms, attachments)
            .await
    }

    /// Emits only if connected now, bypassing the outbox; false when dropped.
    pub fn emit_volatile(&self, event: String, args_json: String) -> Result<bool, PulselinkError> {
        self.main.emit_volatile(event, args_json)
    }

    /// Declares a subscription on the main namespace, sent and acknowledged on every connect
    /// before the outbox flows, and kept across restarts. `unsubscribe` names the event that
    /// undoes it.
    #[uniffi::method(default(unsubscribe = None))]
    pub async fn subscribe(
        &self,
        event: String,
        args_json: String,
        unsubscribe: Option<String>,
    ) -> Result<(), PulselinkError> {
        self.main.subscribe(event, args_json, unsubscribe).await
    }

    /// Forgets a subscription and emits its `unsubscribe` counterpart durably.
    pub async fn unsubscribe(
        &self,
        event: String,
        args_json: String,
    ) -> Result<(), PulselinkError> {
        self.main.unsubscribe(event, args_json).await
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

/// One namespace on a client's connection.
#[derive(uniffi::Object)]
pub struct Socket(pulselink::Socket);

#[uniffi::export]
impl Socket {
    /// The namespace, e.g. `/rooms/r1`.
    pub fn namespace(&self) -> String {
        self.0.namespace().to_owned()
    }

    /// Emits `event` with `args_json` (a JSON array) and binary `attachments`; the emit is in
    /// the durable outbox when this returns and is delivered once connected.
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
    pub fn emit_volatile(&self, event: String, args_json: String) -> Result<bool, PulselinkError> {
        Ok(self.0.emit_volatile(&event, args(args_json, Vec::new())?)?)
    }

    /// Declares a subscription on this namespace; see `Client.subscribe`.
    #[uniffi::method(default(unsubscribe = None))]
    pub async fn subscribe(
        &self,
        event: String,
        args_json: String,
        unsubscribe: Option<String>,
    ) -> Result<(), PulselinkError> {
        let (s, args) = (self.0.clone(), args(args_json, Vec::new())?);
        let run = async move { s.subscribe(&event, args, unsubscribe.as_deref()).await };
        Ok(on_runtime(run).await??)
    }

    /// Forgets a subscription on this namespace; see `Client.unsubscribe`.
    pub async fn unsubscribe(
        &self,
        event: String,
        args_json: String,
    ) -> Result<(), PulselinkError> {
        let (s, args) = (self.0.clone(), args(args_json, Vec::new())?);
        Ok(on_runtime(async move { s.unsubscribe(&event, args).await }).await??)
    }

    /// Inbound events named `event` on this namespace, for one consumer.
    pub fn events_named(&self, event: String) -> Arc<EventReceiver> {
        Arc::new(EventReceiver::new(self.0.events_named(&event)))
    }

    /// Calls `listener` with batches of this namespace's events named `event`.
    pub fn add_listener(
        &self,
        event: String,
        listener: Arc<dyn EventListener>,
    ) -> Arc<ListenerHandle> {
        listener::events(self.0.client(), self.0.events_named(&event), listener)
    }

    /// Leaves the namespace and stops rejoining it.
    pub fn leave(&self) -> Result<(), PulselinkError> {
        Ok(self.0.leave()?)
    }
}
