//! The engine task: one per client, the only owner and writer of connection state.
//!
//! Handles talk to it over a control channel (connect, close, join, network hints, listener
//! registration), unbounded and always read. Durable emits go through the store (see
//! `outbox`): the engine fetches them in windows while connected and retires them once
//! delivered. Volatile emits travel on a small bounded channel read only while connected.
//!
//! Order on every connect: handshake and auth → namespaces → subscriptions replayed (acks
//! awaited) → outbox flushed (priority, then age) → live traffic.
//!
//! Phases: Idle → Attempt → Session → (Wait → Attempt)* …, with Offline when the app says the
//! network is down and Exit on close. Each phase is a function that returns the next one.

mod heartbeat;
mod outbox;
mod session;
mod subscriptions;

use std::{collections::HashMap, sync::Arc, time::Duration};

use serde_json::Value;
use tokio::{
    sync::{broadcast, mpsc, oneshot, watch},
    time::{Instant, sleep_until, timeout},
};
use tracing::{debug, info, warn};

use crate::{
    backoff::Backoff,
    codec::{CodecError, engineio},
    config::{AuthReason, AuthRequest, ClientConfig, Protocol, Transports},
    error::Error,
    event::{Args, DisconnectReason, Event, Notice, State},
    inbox::Inbox,
    metrics::Counters,
    protocol::{Envelope, SocketIo, Wire},
    store::{Cmd as StoreCmd, Snapshot, Store, StoredSubscription},
    transport::{Frame, Link, Transport, TransportError, polling::Polling, websocket::WebSocket},
};

/// A command from a handle.
pub(crate) enum Control {
    /// Start connecting (if not already); the reply fires when connected or failed for good.
    Connect(Option<oneshot::Sender<Result<(), Error>>>),
    /// Leave every namespace and stop reconnecting; the engine stays usable.
    Disconnect,
    /// Join a namespace (also on every reconnect).
    Join(Arc<str>),
    /// Leave a namespace.
    Leave(Arc<str>),
    /// Register an event listener.
    Listen(Subscriber),
    /// Add a subscription (already persisted) and send it now if its namespace is joined.
    AddSubscription(StoredSubscription),
    /// Forget a subscription (already removed from the store).
    RemoveSubscription(StoredSubscription),
    /// A snapshot of the counters.
    Metrics(oneshot::Sender<(Counters, State)>),
    /// The app's reachability hint.
    NetworkAvailable(bool),
    /// Answer a server acknowledgement request.
    Ack {
        namespace: Arc<str>,
        id: u64,
        session: u64,
        args: Args,
    },
    /// Close for good; the reply fires when everything is torn down.
    Close(oneshot::Sender<()>),
    /// The last handle was dropped.
    Shutdown,
}

/// A volatile outbound event: sent now if connected, never stored.
pub(crate) struct Emit {
    pub(crate) namespace: Arc<str>,
    pub(crate) name: String,
    pub(crate) args: Args,
}

/// A listener's channel and what it wants to see.
pub(crate) struct Subscriber {
    pub(crate) filter: Filter,
    pub(crate) tx: mpsc::Sender<Event>,
}

/// Which events a listener receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Filter {
    /// Every inbound event.
    Inbound,
    /// Inbound events with this name, optionally on one namespace only.
    Named {
        namespace: Option<Arc<str>>,
        name: String,
    },
    /// Every event the client sends.
    Outbound,
}

impl Filter {
    fn accepts(&self, inbound: bool, ev: &Event) -> bool {
        match self {
            Filter::Inbound => inbound,
            Filter::Outbound => !inbound,
            Filter::Named { namespace, name } => {
                inbound
                    && ev.name() == name
                    && namespace.as_deref().is_none_or(|ns| ns == ev.namespace())
            }
        }
    }
}

/// Status of one namespace the app wants to be in.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NsStatus {
    /// Waiting for credentials or the server's answer.
    Pending,
    /// Joined.
    Connected,
    /// Refused for good until the app calls `connect()` again.
    Unauthorized(String),
}

struct Namespace {
    name: Arc<str>,
    status: NsStatus,
    /// What the server said when it last refused these credentials, since the last success
    /// or `connect()`: the next attempt asks the provider for fresh ones, and a second
    /// refusal is final. Kept across links, because some servers close after refusing.
    refused: Option<String>,
    /// Fresh credentials sent after a refusal on a link that died before the server answered
    /// (some servers close after refusing): tried first on the next link, so the provider is
    /// asked for a refresh once, not once per link.
    retry_credentials: Option<Option<Value>>,
    /// Joined and its subscriptions replayed: its outbox entries may flow.
    ready: bool,
}

impl Namespace {
    fn new(name: Arc<str>) -> Self {
        Self {
            name,
            status: NsStatus::Pending,
            refused: None,
            retry_credentials: None,
            ready: false,
        }
    }
}

/// A namespace's connection-state-recovery session.
#[derive(Debug, Clone)]
struct Recovery {
    pid: String,
    offset: Option<String>,
    /// Changed since it was last written to the store.
    dirty: bool,
}

/// What to do when a session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// Retry with backoff.
    Reconnect,
    /// Retry at once (fresh credentials after `token:expired`).
    ReconnectNow,
    /// Stop; the app may call `connect()` again.
    Idle,
    /// Wait for the network to come back.
    Offline,
    /// The client is closing.
    Exit,
}

enum Next {
    Idle,
    Attempt,
    Wait { at: Instant, attempt: u32 },
    Offline,
    Exit,
}

/// The engine state. See the module docs.
pub(crate) struct Engine {
    config: Arc<ClientConfig>,
    /// Built once from `config.tls` (parsing CAs and pins per attempt would be waste).
    tls: Arc<rustls::ClientConfig>,
    ctl_rx: mpsc::UnboundedReceiver<Control>,
    /// For ackers handed out with events; the client's drop guard sends `Shutdown`, so this
    /// does not keep the engine alive on its own.
    ctl_tx: mpsc::UnboundedSender<Control>,
    /// Volatile emits.
    emit_rx: mpsc::Receiver<Emit>,
    store: Store,
    flush: outbox::Flush,
    inbox: Inbox,
    subs: subscriptions::Subscriptions,
    recovery: HashMap<Arc<str>, Recovery>,
    counters: Counters,
    state: watch::Sender<State>,
    notices: broadcast::Sender<Notice>,
    namespaces: Vec<Namespace>,
    subscribers: Vec<Subscriber>,
    /// Events a full listener has not taken yet, in order; the socket is not read meanwhile.
    backlog: std::collections::VecDeque<(usize, Event)>,
    backoff: Backoff,
    network_up: bool,
    /// The app wants a connection (between `connect()` and `disconnect()`/a terminal failure).
    wanted: bool,
    ever_connected: bool,
    session_id: u64,
    connect_waiters: Vec<oneshot::Sender<Result<(), Error>>>,
    close_reply: Option<oneshot::Sender<()>>,
}

/// The handle side of a freshly created engine.
pub(crate) struct Channels {
    pub(crate) ctl: mpsc::UnboundedSender<Control>,
    pub(crate) emits: mpsc::Sender<Emit>,
    pub(crate) state: watch::Receiver<State>,
    pub(crate) notices: broadcast::Sender<Notice>,
}

/// Volatile emits queued to the writer; beyond it a volatile emit is dropped.
const VOLATILE_QUEUE: usize = 1024;

impl Engine {
    pub(crate) fn new(
        config: Arc<ClientConfig>,
        tls: Arc<rustls::ClientConfig>,
        store: Store,
        snapshot: Snapshot,
        notices: broadcast::Sender<Notice>,
    ) -> (Self, Channels) {
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let (emit_tx, emit_rx) = mpsc::channel(VOLATILE_QUEUE);
        let (state_tx, state_rx) = watch::channel(State::Idle);
        let recovery = snapshot
            .recovery
            .into_iter()
            .map(|(ns, pid, offset)| {
                let r = Recovery {
                    pid,
                    offset,
                    dirty: false,
                };
                (Arc::from(ns.as_str()), r)
            })
            .collect();
        let namespaces = config
            .namespaces
            .iter()
            .map(|n| Namespace::new(Arc::from(n.as_str())))
            .collect();
        let config_dedup = (config.dedup.clone(), config.freshness.clone());
        let flush = outbox::Flush::new(&config.outbox.rate_limits);
        let engine = Self {
            backoff: Backoff::new(config.reconnect.clone()),
            config,
            tls,
            ctl_rx,
            ctl_tx: ctl_tx.clone(),
            emit_rx,
            flush,
            store,
            inbox: Inbox::new(config_dedup.0, config_dedup.1, snapshot.seen),
            subs: subscriptions::Subscriptions::new(snapshot.subscriptions),
            recovery,
            counters: Counters::default(),
            state: state_tx,
            notices: notices.clone(),
            namespaces,
            subscribers: Vec::new(),
            backlog: Default::default(),
            network_up: true,
            wanted: false,
            ever_connected: false,
            session_id: 0,
            connect_waiters: Vec::new(),
            close_reply: None,
        };
        let channels = Channels {
            ctl: ctl_tx,
            emits: emit_tx,
            state: state_rx,
            notices,
        };
        (engine, channels)
    }

    /// Runs until the client is closed or dropped.
    pub(crate) async fn run(mut self) {
        let mut next = Next::Idle;
        loop {
            next = match next {
                Next::Idle => self.idle().await,
                Next::Attempt => self.attempt().await,
                Next::Wait { at, attempt } => self.wait(at, attempt).await,
                Next::Offline => self.offline().await,
                Next::Exit => break,
            };
        }
        self.flush.fail_waiters(|| Error::Closed);
        self.finish_waiters(Err(Error::Closed));
        self.set_state(State::Closed);
        self.emit_rx.close();
        // Mark the store closed cleanly before saying the client is closed.
        let (tx, rx) = oneshot::channel();
        self.store.post(StoreCmd::Close(tx));
        let _ = rx.await;
        if let Some(reply) = self.close_reply.take() {
            let _ = reply.send(());
        }
        debug!("engine stopped");
    }

    fn set_state(&self, state: State) {
        self.state.send_if_modified(|s| {
            if *s == state {
                false
            } else {
                info!(state = ?state, "state");
                *s = state;
                true
            }
        });
    }

    fn notify(&self, notice: Notice) {
        let _ = self.notices.send(notice);
    }

    fn main_namespace(&self) -> &str {
        self.config.main_namespace()
    }

    fn finish_waiters(&mut self, result: Result<(), Error>) {
        for w in self.connect_waiters.drain(..) {
            let _ = w.send(result.clone());
        }
    }

    /// Handles a command while no session is up. Returns the phase to switch to, if any.
    fn on_control_offline(&mut self, c: Control) -> Option<Next> {
        match c {
            Control::Connect(reply) => {
                reply.into_iter().for_each(|r| self.connect_waiters.push(r));
                if self.wanted {
                    return None;
                }
                self.wanted = true;
                self.backoff.reset();
                for ns in &mut self.namespaces {
                    ns.status = NsStatus::Pending;
                    ns.refused = None;
                    ns.retry_credentials = None;
                }
                Some(if self.network_up {
                    Next::Attempt
                } else {
                    Next::Offline
                })
            }
            Control::Disconnect => {
                self.wanted = false;
                self.set_state(State::Idle);
                self.finish_waiters(Err(Error::Disconnected));
                Some(Next::Idle)
            }
            Control::Join(ns) => {
                self.add_namespace(ns);
                None
            }
            Control::Leave(ns) => {
                self.remove_namespace(&ns);
                None
            }
            Control::Listen(s) => {
                self.subscribers.push(s);
                None
            }
            Control::AddSubscription(s) => {
                self.subs.add(s);
                None
            }
            Control::RemoveSubscription(s) => {
                self.subs.remove(&s);
                None
            }
            Control::Metrics(reply) => {
                let _ = reply.send((self.counters.clone(), self.state.borrow().clone()));
                None
            }
            Control::NetworkAvailable(up) => {
                let was = std::mem::replace(&mut self.network_up, up);
                match (was, up, self.wanted) {
                    (true, false, true) => Some(Next::Offline),
                    (false, true, true) => {
                        self.backoff.reset();
                        Some(Next::Attempt)
                    }
                    _ => None,
                }
            }
            // The request came on a connection that is gone; the server forgot it.
            Control::Ack { .. } => None,
            Control::Close(reply) => {
                self.close_reply = Some(reply);
                Some(Next::Exit)
            }
            Control::Shutdown => Some(Next::Exit),
        }
    }

    fn add_namespace(&mut self, ns: Arc<str>) -> bool {
        if self.namespaces.iter().any(|n| n.name == ns) {
            return false;
        }
        self.namespaces.push(Namespace::new(ns));
        true
    }

    fn remove_namespace(&mut self, ns: &str) -> Option<Namespace> {
        let i = self.namespaces.iter().position(|n| &*n.name == ns)?;
        Some(self.namespaces.remove(i))
    }

    async fn idle(&mut self) -> Next {
        loop {
            let Some(c) = self.ctl_rx.recv().await else {
                return Next::Exit;
            };
            if let Some(next) = self.on_control_offline(c) {
                return next;
            }
        }
    }

    async fn offline(&mut self) -> Next {
        self.set_state(State::Offline);
        self.idle().await
    }

    async fn wait(&mut self, at: Instant, attempt: u32) -> Next {
        loop {
            tokio::select! {
                _ = sleep_until(at) => {
                    self.notify(Notice::ReconnectAttempt { attempt });
                    return Next::Attempt;
                }
                c = self.ctl_rx.recv() => {
                    let Some(c) = c else { return Next::Exit };
                    if let Control::Connect(reply) = c {
                        // Already trying; just wait with the others.
                        reply.into_iter().for_each(|r| self.connect_waiters.push(r));
                        continue;
                    }
                    if let Some(next) = self.on_control_offline(c) {
                        return next;
                    }
                }
            }
        }
    }

    async fn attempt(&mut self) -> Next {
        if self.backoff.attempts() == 0 && !self.ever_connected {
            self.set_state(State::Connecting);
        }
        let connecting = open_link(self.config.clone(), self.tls.clone());
        tokio::pin!(connecting);
        loop {
            tokio::select! {
                r = &mut connecting => match r {
                    Ok((t, wire)) => return self.session(t, wire).await,
                    Err(e) => {
                        warn!(error = %e, attempt = self.backoff.attempts(), "connect failed");
                        self.notify(Notice::ConnectFailed {
                            attempt: self.backoff.attempts(),
                            error: e.to_string(),
                        });
                        return self.schedule_retry(e);
                    }
                },
                c = self.ctl_rx.recv() => {
                    let Some(c) = c else { return Next::Exit };
                    match c {
                        Control::Connect(reply) => {
                            reply.into_iter().for_each(|r| self.connect_waiters.push(r));
                        }
                        Control::NetworkAvailable(true) => self.network_up = true,
                        c => {
                            if let Some(next) = self.on_control_offline(c) {
                                return next;
                            }
                        }
                    }
                }
            }
        }
    }

    fn schedule_retry(&mut self, last_error: Error) -> Next {
        match self.backoff.next_delay() {
            Some((attempt, delay)) => {
                debug!(attempt, ?delay, "reconnect scheduled");
                self.set_state(State::Reconnecting { attempt, delay });
                Next::Wait {
                    at: Instant::now() + delay,
                    attempt,
                }
            }
            None => {
                let attempts = self.backoff.attempts().saturating_sub(1);
                self.notify(Notice::ReconnectFailed { attempts });
                self.wanted = false;
                self.set_state(State::Idle);
                let err = if self.config.reconnect.enabled {
                    Error::GaveUp { attempts }
                } else {
                    last_error
                };
                self.finish_waiters(Err(err));
                Next::Idle
            }
        }
    }

    fn after_session(&mut self, after: After, reason: &DisconnectReason) -> Next {
        match after {
            After::Exit => Next::Exit,
            After::Idle => {
                // An auth refusal already set `Unauthorized`, which says more than `Idle`.
                if !matches!(*self.state.borrow(), State::Unauthorized { .. }) {
                    self.set_state(State::Idle);
                }
                Next::Idle
            }
            After::Offline => Next::Offline,
            After::ReconnectNow => {
                self.backoff.reset();
                // No backoff wait sets a state on this path; say what is happening.
                self.set_state(State::Reconnecting {
                    attempt: 1,
                    delay: Duration::ZERO,
                });
                Next::Attempt
            }
            After::Reconnect => {
                let err = Error::Connect(format!("{reason:?}"));
                self.schedule_retry(err)
            }
        }
    }

    /// Starts asking the auth provider for one namespace's credentials.
    fn auth_request(&self, ns: &Arc<str>, reason: AuthReason) -> session::AuthFuture {
        let provider = self.config.auth.clone();
        let request = AuthRequest {
            namespace: ns.to_string(),
            reason,
        };
        let ns = ns.clone();
        let limit = self.config.connect_timeout;
        Box::pin(async move {
            let result = match provider {
                None => Ok(None),
                Some(p) => match timeout(limit, p.auth(request)).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("auth provider did not answer within {limit:?}")),
                },
            };
            (ns, result)
        })
    }
}

/// Opens the configured transport and reads the Engine.IO handshake (Socket.IO), or opens the
/// envelope WebSocket, within the connect timeout.
async fn open_link(
    config: Arc<ClientConfig>,
    tls: Arc<rustls::ClientConfig>,
) -> Result<(Link, Wire), Error> {
    let limit = config.connect_timeout;
    if let Protocol::Envelope(options) = config.protocol {
        let url = config.envelope_url();
        let max = config.max_inbound_bytes;
        let ws = timeout(limit, WebSocket::connect(&url, &config.headers, max, &tls))
            .await
            .map_err(|_| Error::Connect(format!("no WebSocket within {limit:?}")))?
            .map_err(connect_error)?;
        return Ok((
            Link::WebSocket(ws),
            Wire::Envelope(Envelope::new(options, max)),
        ));
    }
    let timed_out = || Error::Connect(format!("no handshake within {limit:?}"));
    let headers = &config.headers;
    let max = config.max_inbound_bytes;
    let websocket = async |limit| {
        let url = config.websocket_url();
        let ws = WebSocket::connect(&url, headers, max, &tls);
        match timeout(limit, async {
            handshake(Link::WebSocket(ws.await.map_err(connect_error)?)).await
        })
        .await
        {
            Ok(r) => r,
            Err(_) => Err(timed_out()),
        }
    };
    let polling = async |limit, upgrade: bool| {
        let to = upgrade.then(|| config.websocket_url());
        let url = config.polling_url();
        let open = Polling::connect(&url, headers, max, to, &tls);
        match timeout(limit, async {
            handshake(Link::Polling(open.await.map_err(connect_error)?)).await
        })
        .await
        {
            Ok(r) => r,
            Err(_) => Err(timed_out()),
        }
    };
    match config.transports {
        Transports::WebSocket => websocket(limit).await,
        Transports::Polling => polling(limit, false).await,
        Transports::PollingThenUpgrade => polling(limit, true).await,
        Transports::WebSocketThenFallback => match websocket(limit / 2).await {
            Ok(link) => Ok(link),
            Err(ws_error) => {
                debug!(error = %ws_error, "websocket failed; falling back to polling");
                polling(limit / 2, false)
                    .await
                    .map_err(|e| Error::Connect(format!("websocket: {ws_error}; polling: {e}")))
            }
        },
    }
}

/// Reads the Engine.IO handshake: the `open` packet, the first frame of every transport.
async fn handshake(mut link: Link) -> Result<(Link, Wire), Error> {
    loop {
        match link.recv().await {
            Some(Ok(Frame::Text(t))) => match engineio::decode_text(&t)? {
                engineio::Packet::Open(h) => return Ok((link, Wire::SocketIo(SocketIo::new(h)))),
                // Some servers send a noop or a ping first; keep waiting for `open`.
                engineio::Packet::Noop | engineio::Packet::Ping(_) => {}
                _ => return Err(CodecError::UnexpectedFrame("expected the open packet").into()),
            },
            Some(Ok(Frame::Binary(_))) => {
                return Err(CodecError::UnexpectedFrame("binary frame before open").into());
            }
            Some(Err(e)) => return Err(connect_error(e)),
            None => return Err(Error::Connect("closed before the handshake".into())),
        }
    }
}

fn connect_error(e: TransportError) -> Error {
    Error::Connect(e.to_string())
}

/// `value` as the JSON auth object of a CONNECT packet, if it is one.
fn auth_object(value: Option<Value>) -> Result<Option<Value>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => Ok(Some(v)),
        Some(_) => Err("auth provider must return a JSON object".into()),
    }
}

/// How long a polite close (DISCONNECT packets and a WebSocket close frame) may take before
/// the socket is simply dropped: `close()` must return promptly even on a dead link.
const CLOSE_GRACE: Duration = Duration::from_millis(50);

/// How long a polite close may spend writing emits the app queued before closing.
const CLOSE_FLUSH: Duration = Duration::from_secs(1);
