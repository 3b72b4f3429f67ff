//! The connected phase: one session (an Engine.IO session carrying every namespace, or one
//! envelope WebSocket) from the handshake to the link's end.

use std::{future::Future, pin::Pin, sync::Arc};

use futures_util::{FutureExt, StreamExt, stream::FuturesUnordered};
use serde_json::Value;
use tokio::{
    sync::mpsc::error::TrySendError,
    time::{Instant, sleep_until, timeout},
};
use tracing::{debug, info, warn};

use super::{
    After, CLOSE_FLUSH, CLOSE_GRACE, Control, Emit, Engine, Next, NsStatus, auth_object,
    heartbeat::{Due, Heartbeat},
};
use crate::{
    codec::{
        CodecError,
        socketio::{self, EventPacket},
    },
    config::AuthReason,
    error::Error,
    event::{Acker, DisconnectReason, Event, Notice, State},
    inbox::Verdict,
    protocol::{Input, RATE_LIMITED, RECONNECT_CODES, Wire},
    store::{Cmd as StoreCmd, now_ms},
    transport::{Frame, Transport, TransportError},
};

/// Credentials arriving for a namespace.
pub(super) type AuthFuture =
    Pin<Box<dyn Future<Output = (Arc<str>, Result<Option<Value>, String>)> + Send>>;

/// How many frames or emits one wake-up handles before the loop looks at everything else:
/// large enough to amortise the select, small enough to keep heartbeats and commands prompt.
const BATCH: usize = 512;

/// Per-connection state that dies with the connection.
pub(super) struct Link {
    /// The protocol: what frames mean, and the frames requests become.
    pub(super) wire: Wire,
    heartbeat: Heartbeat,
    /// When the main namespace must be joined by: a server that completes the handshake but
    /// never answers CONNECT (a hung auth middleware) must not hold the client forever.
    join_by: Instant,
    auth: FuturesUnordered<AuthFuture>,
    /// Frames produced while handling input, written after the batch.
    pub(super) out: Vec<Frame>,
}

/// Why the session loop ended and what comes next.
struct End {
    reason: DisconnectReason,
    after: After,
}

impl End {
    fn new(reason: DisconnectReason, after: After) -> Self {
        Self { reason, after }
    }

    /// The app ended the session on a live link: say goodbye properly.
    fn is_polite(&self) -> bool {
        self.reason == DisconnectReason::ClientDisconnect
            && matches!(self.after, After::Exit | After::Idle)
    }

    fn lost(reason: DisconnectReason) -> Self {
        Self::new(reason, After::Reconnect)
    }
}

impl From<TransportError> for End {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::Closed => End::lost(DisconnectReason::TransportClose),
            TransportError::TooLarge { .. } => {
                End::lost(DisconnectReason::ParseError(e.to_string()))
            }
            TransportError::Io(m) => End::lost(DisconnectReason::TransportError(m)),
        }
    }
}

impl From<CodecError> for End {
    fn from(e: CodecError) -> Self {
        End::lost(DisconnectReason::ParseError(e.to_string()))
    }
}

impl Engine {
    pub(super) async fn session<T: Transport>(&mut self, mut t: T, wire: Wire) -> Next {
        self.session_id += 1;
        let heartbeat = wire.heartbeat();
        debug!(session = self.session_id, ?heartbeat, "handshake");
        let mut link = Link {
            heartbeat: Heartbeat::new(heartbeat),
            wire,
            join_by: Instant::now() + self.config.connect_timeout,
            auth: FuturesUnordered::new(),
            out: Vec::new(),
        };
        for i in 0..self.namespaces.len() {
            if self.namespaces[i].status == NsStatus::Pending {
                if let Some(creds) = self.namespaces[i].retry_credentials.take() {
                    let ns = self.namespaces[i].name.clone();
                    link.auth.push(Box::pin(async move { (ns, Ok(creds)) }));
                    continue;
                }
                let reason = match &self.namespaces[i].refused {
                    Some(message) => AuthReason::Refresh {
                        message: message.clone(),
                    },
                    None => AuthReason::Connect,
                };
                let f = self.auth_request(&self.namespaces[i].name, reason);
                link.auth.push(f);
            }
        }
        let end = self.run_link(&mut t, &mut link).await;
        self.teardown(&mut t, &link.wire, &end).await;
        self.after_session(end.after, &end.reason)
    }

    async fn run_link<T: Transport>(&mut self, t: &mut T, link: &mut Link) -> End {
        loop {
            let connected = *self.state.borrow() == State::Connected;
            if connected {
                self.fetch_if_due();
            }
            let timer = [
                self.flush.next_ack_deadline(self.config.outbox.ack_timeout),
                self.subs.next_deadline(),
                self.flush.resume_at(),
            ]
            .into_iter()
            .flatten()
            .min();
            let fetching = self.flush.is_fetching();
            let readable = self.backlog.is_empty();
            let backlog_tx = self
                .backlog
                .front()
                .map(|(i, _)| self.subscribers[*i].tx.clone());
            let deadline = if connected {
                link.heartbeat.deadline()
            } else {
                link.heartbeat.deadline().min(link.join_by)
            };
            let result: Result<(), End> = tokio::select! {
                biased;
                c = self.ctl_rx.recv() => match c {
                    Some(c) => self.on_control_session(c, link),
                    None => Err(End::new(DisconnectReason::ClientDisconnect, After::Exit)),
                },
                Some((ns, creds)) = link.auth.next(), if !link.auth.is_empty() => {
                    self.on_credentials(ns, creds, link)
                }
                permit = async { backlog_tx?.reserve_owned().await.ok() }, if !readable => {
                    self.drain_backlog(permit);
                    Ok(())
                }
                frame = t.recv(), if readable => {
                    self.on_frames(frame, t, link)
                }
                (session, entries) = super::outbox::fetched(&mut self.flush.fetching), if fetching => {
                    self.on_fetched(session, entries, link);
                    Ok(())
                }
                emit = self.emit_rx.recv(), if connected => match emit {
                    Some(e) => self.on_emits(e, link),
                    None => Err(End::new(DisconnectReason::ClientDisconnect, After::Exit)),
                },
                _ = sleep_until(timer.unwrap_or(deadline)), if timer.is_some() => {
                    self.check_in_flight(link);
                    self.check_subscriptions();
                    self.pump(link);
                    Ok(())
                }
                _ = sleep_until(deadline) => self.on_deadline(link),
            };
            let flushed = self.write_out(t, link).await;
            match result.and(flushed) {
                Ok(()) => {}
                Err(end) if end.is_polite() => {
                    self.flush_queued(t, link).await;
                    return end;
                }
                Err(end) => return end,
            }
        }
    }

    /// A deadline passed: the wait for the main namespace's CONNECT (or auth answer), or the
    /// heartbeat's (time to ping, or the link is dead).
    fn on_deadline(&self, link: &mut Link) -> Result<(), End> {
        if *self.state.borrow() != State::Connected && Instant::now() >= link.join_by {
            let limit = self.config.connect_timeout;
            return Err(End::lost(DisconnectReason::TransportError(format!(
                "the server did not answer CONNECT within {limit:?}"
            ))));
        }
        match link.heartbeat.on_deadline() {
            Due::Nothing => Ok(()),
            Due::Ping => {
                link.out.extend(link.wire.ping());
                Ok(())
            }
            Due::Dead => Err(End::lost(DisconnectReason::PingTimeout)),
        }
    }

    /// Writes what handling produced, in one flush.
    async fn write_out<T: Transport>(&mut self, t: &mut T, link: &mut Link) -> Result<(), End> {
        if !link.out.is_empty() {
            for f in link.out.drain(..) {
                t.feed(f).await?;
            }
            t.flush().await?;
        }
        self.on_flushed();
        Ok(())
    }

    /// Writes what the outbox holds before a polite close, within [`CLOSE_FLUSH`]: an emit
    /// that returned Ok just before `close()` should reach the server now rather than on the
    /// next start. Whatever is not written stays in the store.
    async fn flush_queued<T: Transport>(&mut self, t: &mut T, link: &mut Link) {
        if *self.state.borrow() != State::Connected {
            return;
        }
        while let Ok(e) = self.emit_rx.try_recv() {
            self.write_emit(e, link);
        }
        let _ = timeout(CLOSE_FLUSH, async {
            loop {
                self.write_out(t, link).await?;
                if !self.send_remaining(link).await {
                    return Ok::<(), End>(());
                }
            }
        })
        .await;
    }

    /// Handles one frame and whatever else is already readable, up to a batch.
    fn on_frames<T: Transport>(
        &mut self,
        first: Option<Result<Frame, TransportError>>,
        t: &mut T,
        link: &mut Link,
    ) -> Result<(), End> {
        let mut frame = first;
        let mut handled = 0;
        loop {
            match frame {
                None => return Err(End::lost(DisconnectReason::TransportClose)),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(f)) => self.on_frame(f, link)?,
            }
            handled += 1;
            // Stop before taking another frame: one taken must be handled.
            if handled == BATCH || !self.backlog.is_empty() {
                break;
            }
            // `recv` is cancel-safe, so polling it once and dropping a pending future is fine.
            match t.recv().now_or_never() {
                Some(next) => frame = next,
                None => break,
            }
        }
        self.persist_inbound();
        Ok(())
    }

    /// Writes what this batch taught the filter (seen ids, recovery offsets) to the store.
    fn persist_inbound(&mut self) {
        let ids = self.inbox.take_new();
        if !ids.is_empty() {
            let (window, min_ms) = self.inbox.retention(now_ms());
            self.store.post(StoreCmd::Seen {
                ids,
                window,
                min_ms,
            });
        }
        for (ns, r) in self.recovery.iter_mut().filter(|(_, r)| r.dirty) {
            r.dirty = false;
            self.store.post(StoreCmd::Recovery {
                namespace: ns.to_string(),
                pid: Some(r.pid.clone()),
                offset: r.offset.clone(),
            });
        }
    }

    fn on_frame(&mut self, frame: Frame, link: &mut Link) -> Result<(), End> {
        let input = link.wire.decode(frame, &mut link.out)?;
        self.on_input(input, link)
    }

    fn on_input(&mut self, input: Input, link: &mut Link) -> Result<(), End> {
        match input {
            Input::Nothing => {}
            Input::Event { packet, id } => return self.on_event(packet, id),
            Input::Alive => link.heartbeat.alive(),
            Input::Ack { id, reply } => match reply {
                Ok(reply) => {
                    if !self.on_subscription_ack(id, None) {
                        self.on_entry_ack(id, reply);
                    }
                }
                Err(rejection) => {
                    if rejection.code == RATE_LIMITED {
                        self.on_rate_limited(&format!("[{}]", rejection.data));
                    }
                    if !self.on_subscription_ack(id, Some(&rejection)) {
                        self.on_entry_rejected(id, rejection);
                    }
                }
            },
            Input::Joined { namespace, data } => self.on_joined(&namespace, data, link),
            Input::Refused { namespace, message } => {
                return self.on_refused(namespace, message, link);
            }
            Input::Left { namespace } => {
                if &*namespace == self.main_namespace() {
                    self.wanted = false;
                    self.set_state(State::Idle);
                    self.finish_waiters(Err(Error::ServerDisconnected));
                    return Err(End::new(DisconnectReason::ServerDisconnect, After::Idle));
                }
                self.remove_namespace(&namespace);
                self.notify(Notice::ConnectError {
                    namespace: namespace.to_string(),
                    message: "disconnected by the server".into(),
                    will_retry: false,
                });
            }
            Input::Closed => return Err(End::lost(DisconnectReason::TransportClose)),
            Input::ServerError {
                code,
                message,
                event,
            } => {
                warn!(code, message, "server error");
                self.notify(Notice::ServerError {
                    code: code.clone(),
                    message: message.clone(),
                });
                self.on_event(event, None)?;
                if RECONNECT_CODES.contains(&code.as_str()) {
                    return Err(End::lost(DisconnectReason::ServerError { code, message }));
                }
            }
            Input::Invalid(e) => {
                // The message itself is not logged: it may carry personal data.
                warn!(error = %e, "invalid inbound message dropped");
                self.counters.invalid += 1;
                self.notify(Notice::InvalidMessage {
                    error: e.to_string(),
                });
            }
        }
        Ok(())
    }

    /// An inbound app event: filtered, dispatched, and acted on when it is a signal.
    fn on_event(&mut self, mut ev: EventPacket, id: Option<String>) -> Result<(), End> {
        let Some(offset) = self.admit(&mut ev, id) else {
            return Ok(());
        };
        self.on_rate_limit_signal(&ev);
        let expired = self.config.token_expired_event.as_deref() == Some(&*ev.name);
        let acker = ev.id.map(|id| Acker {
            tx: self.ctl_tx.clone(),
            id,
            session: self.session_id,
        });
        self.dispatch(true, Event::new(ev, acker).with_offset(offset));
        if expired {
            return Err(End::new(
                DisconnectReason::TokenExpired,
                After::ReconnectNow,
            ));
        }
        Ok(())
    }

    /// Pauses the outbox when the server says the rate limit was exceeded.
    fn on_rate_limit_signal(&mut self, ev: &EventPacket) {
        let args = ev.args.get();
        let named = self
            .config
            .outbox
            .rate_limit_events
            .iter()
            .any(|n| *n == *ev.name);
        let coded = &*ev.name == "error"
            && crate::inbox::lookup(args, "/code")
                .is_some_and(|c| c.get() == r#""RATE_LIMIT_EXCEEDED""#);
        if named || coded {
            self.on_rate_limited(args);
        }
    }

    /// Pauses sending for as long as the server's rate-limit signal (`args`, a JSON array)
    /// asks, one second when it names no time.
    fn on_rate_limited(&mut self, args: &str) {
        let pause = crate::ratelimit::pause_requested(args, now_ms())
            .unwrap_or(std::time::Duration::from_secs(1));
        warn!(?pause, "server rate limit exceeded; pausing the outbox");
        self.counters.rate_limit_pauses += 1;
        self.flush.pause_for(pause);
    }

    /// Strips a recovery offset and asks the filter: `None` when the event is dropped, else
    /// the id it carried (its recovery offset, or the envelope id given as `id`).
    fn admit(&mut self, ev: &mut EventPacket, id: Option<String>) -> Option<Option<Arc<str>>> {
        self.counters.received += 1;
        if id.is_none() && self.recovery.is_empty() && !self.inbox.is_active() {
            return Some(None); // The common case: nothing to check, no clock to read.
        }
        let now = now_ms();
        let mut offset = id;
        if let Some(r) = self.recovery.get_mut(&ev.namespace)
            && let Some((args, o)) = socketio::split_offset(ev.args.get(), now)
        {
            let o = o.to_owned();
            r.offset = Some(o.clone());
            r.dirty = true;
            ev.args = socketio::RawJson::validated(args);
            offset = Some(o);
        }
        if offset.is_some() || self.inbox.is_active() {
            match self.inbox.check(
                &ev.namespace,
                &ev.name,
                ev.args.get(),
                offset.as_deref(),
                now,
            ) {
                Verdict::Deliver => {}
                Verdict::Duplicate => {
                    self.counters.received -= 1;
                    self.counters.duplicates += 1;
                    return None;
                }
                Verdict::Stale => {
                    self.counters.received -= 1;
                    self.counters.stale += 1;
                    return None;
                }
            }
        }
        Some(offset.map(Arc::from))
    }

    fn on_joined(&mut self, namespace: &str, data: Option<Value>, link: &mut Link) {
        let Some(i) = self.namespaces.iter().position(|n| &*n.name == namespace) else {
            return;
        };
        let recovered = self.on_recovery_session(i, data);
        let ns = &mut self.namespaces[i];
        ns.status = NsStatus::Connected;
        ns.refused = None;
        ns.retry_credentials = None;
        let attempts = self.backoff.attempts();
        self.notify(Notice::Connected {
            namespace: namespace.to_owned(),
            attempts,
            recovered,
        });
        if namespace == self.main_namespace() {
            self.counters.connects += 1;
            if self.ever_connected {
                self.counters.reconnects += 1;
            }
            self.ever_connected = true;
            self.backoff.reset();
            self.set_state(State::Connected);
            self.finish_waiters(Ok(()));
        }
        if self.replay_subscriptions(i, link) {
            self.mark_ready(namespace);
        }
    }

    /// Records the server's recovery session id (`pid`) for namespace `i`; returns whether
    /// the server restored the previous session (its missed events follow).
    fn on_recovery_session(&mut self, i: usize, data: Option<Value>) -> bool {
        let ns = self.namespaces[i].name.clone();
        let pid = data
            .as_ref()
            .and_then(|d| d.get("pid"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let previous = self.recovery.remove(&ns);
        let recovered = matches!((&previous, &pid), (Some(p), Some(new)) if p.pid == *new);
        if previous.is_some() && !recovered {
            // The server could not restore the session: events sent meanwhile are gone.
            self.notify(Notice::RecoveryFailed {
                namespace: ns.to_string(),
            });
        }
        if recovered {
            self.counters.recovered += 1;
        }
        match pid {
            Some(pid) => {
                let offset = previous.filter(|_| recovered).and_then(|p| p.offset);
                self.recovery.insert(
                    ns,
                    super::Recovery {
                        pid,
                        offset,
                        dirty: true,
                    },
                );
            }
            None if previous.is_some() => self.store.post(StoreCmd::Recovery {
                namespace: ns.to_string(),
                pid: None,
                offset: None,
            }),
            None => {}
        }
        recovered
    }

    fn on_refused(
        &mut self,
        namespace: Arc<str>,
        message: String,
        link: &mut Link,
    ) -> Result<(), End> {
        let Some(i) = self.namespaces.iter().position(|n| n.name == namespace) else {
            return Ok(());
        };
        if self.namespaces[i].status == NsStatus::Connected {
            // Credentials revoked mid-session (an envelope server's AUTHENTICATION_FAILED):
            // reconnect at once with fresh ones; a refusal of those is final.
            self.namespaces[i].refused = Some(message.clone());
            return Err(End::new(
                DisconnectReason::ServerError {
                    code: "AUTHENTICATION_FAILED".into(),
                    message,
                },
                After::ReconnectNow,
            ));
        }
        self.namespaces[i].retry_credentials = None;
        let retry = self.namespaces[i].refused.is_none() && self.config.auth.is_some();
        self.notify(Notice::ConnectError {
            namespace: namespace.to_string(),
            message: message.clone(),
            will_retry: retry,
        });
        if retry {
            self.namespaces[i].refused = Some(message.clone());
            let f = self.auth_request(&namespace, AuthReason::Refresh { message });
            link.auth.push(f);
            return Ok(());
        }
        // Its outbox entries stay stored for when the app connects with better credentials.
        warn!(namespace = %namespace, "namespace refused");
        self.namespaces[i].status = NsStatus::Unauthorized(message.clone());
        if &*namespace == self.main_namespace() {
            self.wanted = false;
            // State first: a caller woken by the waiter must already see `Unauthorized`.
            self.set_state(State::Unauthorized {
                message: message.clone(),
            });
            self.finish_waiters(Err(Error::Unauthorized {
                namespace: namespace.to_string(),
                message,
            }));
            return Err(End::new(DisconnectReason::ClientDisconnect, After::Idle));
        }
        Ok(())
    }

    fn on_credentials(
        &mut self,
        ns: Arc<str>,
        creds: Result<Option<Value>, String>,
        link: &mut Link,
    ) -> Result<(), End> {
        let Some(i) = self
            .namespaces
            .iter()
            .position(|n| n.name == ns && n.status == NsStatus::Pending)
        else {
            return Ok(());
        };
        match creds.and_then(auth_object) {
            Ok(mut auth) => {
                if self.namespaces[i].refused.is_some() {
                    self.namespaces[i].retry_credentials = Some(auth.clone());
                }
                if let Some(r) = self.recovery.get(&ns) {
                    // Ask the server to restore the session (socket.io-client does the same).
                    let obj = auth.get_or_insert_with(|| Value::Object(Default::default()));
                    if let Value::Object(m) = obj {
                        m.entry("pid").or_insert_with(|| r.pid.clone().into());
                        if let Some(o) = &r.offset {
                            m.entry("offset").or_insert_with(|| o.clone().into());
                        }
                    }
                }
                match link.wire.connect(&ns, auth.as_ref()) {
                    Ok(frame) => link.out.push(frame),
                    // Defensive: the client refuses such namespaces before they get here.
                    Err(why) => {
                        self.namespaces.retain(|n| n.name != ns);
                        self.notify(Notice::ConnectError {
                            namespace: ns.to_string(),
                            message: why,
                            will_retry: false,
                        });
                    }
                }
                Ok(())
            }
            Err(message) => {
                // Never log the credentials; the provider's own message is safe to show.
                warn!(namespace = %ns, error = %message, "auth provider failed");
                self.notify(Notice::ConnectFailed {
                    attempt: self.backoff.attempts(),
                    error: format!("auth provider: {message}"),
                });
                Err(End::lost(DisconnectReason::TransportError(format!(
                    "auth provider: {message}"
                ))))
            }
        }
    }

    fn on_control_session(&mut self, c: Control, link: &mut Link) -> Result<(), End> {
        match c {
            Control::Connect(reply) => {
                match reply {
                    Some(r) if *self.state.borrow() == State::Connected => {
                        let _ = r.send(Ok(()));
                    }
                    Some(r) => self.connect_waiters.push(r),
                    None => {}
                }
                Ok(())
            }
            Control::Disconnect => {
                self.wanted = false;
                self.set_state(State::Idle);
                self.finish_waiters(Err(Error::Disconnected));
                Err(End::new(DisconnectReason::ClientDisconnect, After::Idle))
            }
            Control::Close(reply) => {
                self.close_reply = Some(reply);
                Err(End::new(DisconnectReason::ClientDisconnect, After::Exit))
            }
            Control::Shutdown => Err(End::new(DisconnectReason::ClientDisconnect, After::Exit)),
            Control::NetworkAvailable(up) => {
                self.network_up = up;
                if up {
                    Ok(())
                } else {
                    Err(End::new(DisconnectReason::NetworkDown, After::Offline))
                }
            }
            Control::Listen(s) => {
                self.subscribers.push(s);
                Ok(())
            }
            Control::AddSubscription(s) => {
                self.subscribe_now(s, link);
                Ok(())
            }
            Control::RemoveSubscription(s) => {
                self.subs.remove(&s);
                Ok(())
            }
            Control::Metrics(reply) => {
                let _ = reply.send((self.counters.clone(), self.state.borrow().clone()));
                Ok(())
            }
            Control::Join(ns) => {
                if self.add_namespace(ns.clone()) {
                    link.auth.push(self.auth_request(&ns, AuthReason::Connect));
                }
                Ok(())
            }
            Control::Leave(ns) => {
                let was = self.remove_namespace(&ns).map(|n| n.status);
                if was == Some(NsStatus::Connected) {
                    link.out.extend(link.wire.disconnect(&ns));
                }
                Ok(())
            }
            Control::Ack {
                namespace,
                id,
                session,
                args,
            } => {
                if session == self.session_id {
                    link.wire.push_ack(&mut link.out, &namespace, id, args);
                }
                Ok(())
            }
        }
    }

    /// Writes one volatile emit and any already queued behind it, up to a batch.
    fn on_emits(&mut self, first: Emit, link: &mut Link) -> Result<(), End> {
        // A phone that slept must not write into a socket that died meanwhile; a volatile
        // emit is not worth keeping for the next connection.
        if link.heartbeat.is_stale() {
            self.drop_volatile(first);
            return Err(End::lost(DisconnectReason::PingTimeout));
        }
        self.write_emit(first, link);
        for _ in 1..BATCH {
            match self.emit_rx.try_recv() {
                Ok(e) => self.write_emit(e, link),
                Err(_) => break,
            }
        }
        Ok(())
    }

    fn drop_volatile(&self, e: Emit) {
        self.notify(Notice::EmitDropped {
            namespace: e.namespace.to_string(),
            event: e.name,
        });
    }

    fn write_emit(&mut self, mut e: Emit, link: &mut Link) {
        if !self
            .namespaces
            .iter()
            .any(|n| n.name == e.namespace && n.status == NsStatus::Connected)
        {
            self.drop_volatile(e);
            return;
        }
        let before = link.out.len();
        let attachments = if self.wants_outbound() {
            e.args.attachments.clone()
        } else {
            std::mem::take(&mut e.args.attachments)
        };
        if let Err(err) = link.wire.push_event(
            &mut link.out,
            &e.namespace,
            &e.name,
            &e.args.json,
            None,
            attachments,
            None,
        ) {
            link.out.truncate(before);
            warn!(event = %e.name, error = %err, "emit refused");
            self.drop_volatile(e);
            return;
        }
        self.counters.sent += 1;
        if self.wants_outbound() {
            let packet = EventPacket {
                namespace: e.namespace,
                id: None,
                name: Arc::from(e.name.as_str()),
                args: e.args.json,
                attachments: e.args.attachments,
            };
            self.dispatch(false, Event::new(packet, None));
        }
    }

    /// Whether a listener wants the events the client sends.
    pub(super) fn wants_outbound(&self) -> bool {
        self.subscribers
            .iter()
            .any(|s| s.filter == super::Filter::Outbound)
    }

    /// Hands an event to every listener that wants it; a full listener's share waits in the
    /// backlog (and the socket is not read) until it makes room.
    pub(super) fn dispatch(&mut self, inbound: bool, ev: Event) {
        let mut closed = false;
        for (i, s) in self.subscribers.iter().enumerate() {
            if !s.filter.accepts(inbound, &ev) {
                continue;
            }
            if !self.backlog.is_empty() {
                self.backlog.push_back((i, ev.clone()));
                continue;
            }
            match s.tx.try_send(ev.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(ev)) => self.backlog.push_back((i, ev)),
                Err(TrySendError::Closed(_)) => closed = true,
            }
        }
        if closed && self.backlog.is_empty() {
            self.subscribers.retain(|s| !s.tx.is_closed());
        }
    }

    fn drain_backlog(&mut self, permit: Option<tokio::sync::mpsc::OwnedPermit<Event>>) {
        let Some((_, ev)) = self.backlog.pop_front() else {
            return;
        };
        // Without a permit the listener went away; its events go with it.
        if let Some(p) = permit {
            p.send(ev);
        }
        while let Some((i, ev)) = self.backlog.pop_front() {
            match self.subscribers[i].tx.try_send(ev) {
                Ok(()) | Err(TrySendError::Closed(_)) => {}
                Err(TrySendError::Full(ev)) => {
                    self.backlog.push_front((i, ev));
                    return;
                }
            }
        }
        self.subscribers.retain(|s| !s.tx.is_closed());
    }

    async fn teardown<T: Transport>(&mut self, t: &mut T, wire: &Wire, end: &End) {
        info!(reason = ?end.reason, "disconnected");
        let polite = end.is_polite();
        if polite {
            let frames: Vec<Frame> = self
                .namespaces
                .iter()
                .filter(|n| n.status == NsStatus::Connected)
                .filter_map(|ns| wire.disconnect(&ns.name))
                .collect();
            let _ = timeout(CLOSE_GRACE, async {
                for f in frames {
                    t.feed(f).await?;
                }
                t.flush().await?;
                t.close().await;
                Ok::<(), TransportError>(())
            })
            .await;
        }
        // Acknowledged entries are delivered whatever happens to the link now.
        self.post_delivered();
        self.flush.link_lost();
        self.subs.link_lost();
        for ns in &mut self.namespaces {
            if ns.status == NsStatus::Connected {
                ns.status = NsStatus::Pending;
            }
            ns.ready = false;
        }
        self.notify(Notice::Disconnected {
            reason: end.reason.clone(),
        });
    }
}
