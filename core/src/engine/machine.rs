//! The engine's state machine: every component, and how an input flows between them. It does
//! no I/O and reads no clock: the driver hands it inputs with the time they happened and
//! carries out the [`Actions`] it accumulates.
//!
//! A frame's meaning (a [`protocol::Input`]) is routed here: an event goes through admission
//! to the listeners, an acknowledgement to the subscription or outbox entry it answers, a
//! namespace joined to recovery, the lifecycle and the subscription replay, which in turn
//! lets the outbox flow.

use std::sync::Arc;

use futures_channel::mpsc::UnboundedSender;
use serde_json::Value;
use tokio::{
    sync::mpsc::{self, OwnedPermit},
    time::Instant,
};
use tracing::warn;

use super::{
    actions::{Actions, After, End},
    admission::Admission,
    flush::{Flush, Link},
    heartbeat::{Due, Heartbeat},
    lifecycle::Lifecycle,
    listeners::Listeners,
    namespaces::{Left, Namespaces, Refusal},
    pacing::{Batch, Pacing},
    prepared::Prepared,
    radio::Radio,
    recovery::Recovery,
    seqs::Seqs,
    session::Session,
    subscriptions::Subscriptions,
};
use crate::{
    codec::json::RawJson,
    error::Error,
    event::{AckAnswer, Acker, DisconnectReason, Event, Notice, State},
    metrics::{Counters, HubShare},
    protocol::{self, HeartbeatMode, Input, Signal, Then, Wire},
    server_signals::ErrorAction,
    store::{Departed, Fetched, Snapshot, StoreEvent},
    time::Now,
};

/// Every component of the engine. See the module docs.
pub(crate) struct Machine {
    pub(super) lifecycle: Lifecycle,
    pub(super) namespaces: Namespaces,
    pub(super) recovery: Recovery,
    pub(super) admission: Admission,
    pub(super) listeners: Listeners,
    pub(super) flush: Flush,
    pub(super) subscriptions: Subscriptions,
    pub(super) radio: Radio,
    pub(super) pacing: Pacing,
    /// The link that is up, if one is.
    pub(super) session: Option<Session>,
    links: u64,
    join_within: std::time::Duration,
    client_id: Arc<str>,
    /// For the ackers handed out with events that ask for an acknowledgement.
    acks: UnboundedSender<Box<AckAnswer>>,
    /// The app heartbeat's ping and timing, when the server runs one (boxed: most do not).
    app_ping: Option<Box<AppPing>>,
    /// When credentials were last refreshed at the server's word.
    last_refresh: Option<Instant>,
    /// This client's part in its hub's totals, for a hub's client.
    pub(super) hub: Option<HubShare>,
    pub(super) out: Actions,
}

/// A second "refresh your credentials" within this long of the last is not cured by a refresh
/// alone: its reconnect waits for the backoff.
const REFRESH_AGAIN_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

/// The app heartbeat's ping event (on the main namespace) and its timing.
struct AppPing {
    event: protocol::EventData,
    interval: std::time::Duration,
    timeout: std::time::Duration,
}

impl Machine {
    pub(crate) fn new(
        prepared: &Prepared,
        authenticated: bool,
        snapshot: Snapshot,
        acks: UnboundedSender<Box<AckAnswer>>,
        now: Now,
    ) -> Self {
        let config = &prepared.config;
        Self {
            lifecycle: Lifecycle::new(prepared.reconnect.clone(), config.background, now.at),
            namespaces: Namespaces::new(&prepared.namespaces, authenticated),
            recovery: Recovery::new(snapshot.recovery),
            admission: Admission::new(
                config.dedup.clone(),
                config.freshness.clone(),
                snapshot.seen,
            ),
            listeners: Listeners::default(),
            flush: Flush::new(
                &config.outbox,
                &config.signals,
                now,
                Arc::new(Seqs::new(snapshot.seqs, snapshot.seqs_recorded)),
            ),
            subscriptions: Subscriptions::new(
                snapshot.subscriptions,
                config.subscription_ack_timeout,
            ),
            radio: Radio::default(),
            pacing: Pacing::new(config.read_hold),
            session: None,
            links: 0,
            join_within: config.connect_timeout,
            client_id: Arc::from(snapshot.client_id.as_str()),
            acks,
            app_ping: config.signals.heartbeat.as_ref().map(|h| {
                Box::new(AppPing {
                    event: protocol::EventData {
                        namespace: prepared.main(),
                        name: Arc::from(h.event.as_str()),
                        args: RawJson::validated("[]".into()),
                        attachments: Vec::new(),
                    },
                    interval: h.interval,
                    timeout: h.timeout,
                })
            }),
            last_refresh: None,
            hub: None,
            out: Actions::default(),
        }
    }

    /// What the steps since the last call asked for.
    pub(crate) fn take_actions(&mut self) -> Actions {
        std::mem::take(&mut self.out)
    }

    /// The state the app sees.
    pub(crate) fn state(&self) -> &State {
        self.lifecycle.state()
    }

    pub(super) fn connected(&self) -> bool {
        self.session.is_some() && *self.lifecycle.state() == State::Connected
    }

    /// Ends every step (the driver calls it after each input): traffic the step produced
    /// wakes the radio, and waiting `Low` entries ride along; delivered entries leave the
    /// store; the next outbox window is asked for when one may go; the state's time is
    /// charged.
    pub(crate) fn settle(&mut self, now: Now) {
        let dials = matches!(self.out.link, Some(super::actions::LinkAction::Dial));
        if !self.out.frames.is_empty() || dials {
            let only_low = !dials && self.out.frames.len() <= self.flush.low_frames;
            self.radio.traffic(now.at, only_low);
        }
        if self.flush.low_waiting() && self.radio.awake_anyway(now.at) && self.connected() {
            self.with_link(now, |flush, now, link, out| {
                flush.radio_awake(now, link, out)
            });
        }
        // Counted per step, ride-along frames included.
        self.flush.low_frames = 0;
        if self.connected() {
            // Room freed by acknowledgements lets entries held for the window go.
            self.with_link(now, |flush, now, link, out| flush.resume(now, link, out));
        }
        self.flush.post_delivered(&mut self.out);
        if self.connected() {
            self.flush
                .fetch_if_due(self.namespaces.any_ready(), &mut self.out);
        }
        self.lifecycle.account(now.at);
        if let Some(hub) = &mut self.hub {
            hub.add(self.admission.received, self.flush.sent);
        }
    }

    /// Runs `f` with the outbox and what sending needs from the link, when one is up.
    pub(super) fn with_link(
        &mut self,
        now: Now,
        f: impl FnOnce(&mut Flush, Now, &mut Link<'_>, &mut Actions),
    ) {
        self.with_link_if(now, false, |flush, now, link, out| {
            if let Some(link) = link {
                f(flush, now, link, out);
            }
        });
    }

    /// Runs `f` with the outbox and, when connected, the link: a new emit is written at
    /// once or stored.
    pub(super) fn with_connected_link(
        &mut self,
        now: Now,
        f: impl FnOnce(&mut Flush, Now, Option<&mut Link<'_>>, &mut Actions),
    ) {
        self.with_link_if(now, true, f);
    }

    /// Runs `f` with the outbox and what sending needs from the link, if one is up (and,
    /// with `connected`, the client connected).
    fn with_link_if(
        &mut self,
        now: Now,
        connected: bool,
        f: impl FnOnce(&mut Flush, Now, Option<&mut Link<'_>>, &mut Actions),
    ) {
        let up = !connected || self.connected();
        let Some(s) = self.session.as_mut().filter(|_| up) else {
            return f(&mut self.flush, now, None, &mut self.out);
        };
        let mut link = Link {
            wire: &mut s.wire,
            namespaces: &self.namespaces,
            listeners: &mut self.listeners,
            client_id: &self.client_id,
            radio_awake: self.radio.awake_anyway(now.at),
        };
        f(&mut self.flush, now, Some(&mut link), &mut self.out);
    }

    /// A link is up, speaking `wire`: credentials are asked for every namespace.
    pub(crate) fn linked(&mut self, now: Now, wire: Wire) {
        self.links += 1;
        self.lifecycle.linked();
        self.session = Some(Session::new(self.links, wire, now, self.join_within));
        self.pacing.link_changed();
        self.flush.link_up();
        self.namespaces.link_up(&mut self.out);
    }

    /// The attempt under way failed.
    pub(crate) fn dial_failed(&mut self, now: Now, error: &Error) {
        warn!(%error, attempt = self.lifecycle.attempts(), "connect failed");
        self.lifecycle
            .dial_failed(now, error.clone(), &mut self.out);
    }

    /// The attempt under way was abandoned as `end` says (no link was up).
    pub(crate) fn dial_abandoned(&mut self, now: Now, end: &End) {
        // The state changes here, outside a step: time up to now is the old state's.
        self.lifecycle.account(now.at);
        self.lifecycle.link_ended(now, end, &mut self.out);
        self.lifecycle.account(now.at);
    }

    /// Credentials for `namespace` arrived from the auth provider.
    pub(crate) fn credentials(&mut self, namespace: &str, result: Result<Option<Value>, String>) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let resume = self.recovery.resume(namespace);
        let attempt = self.lifecycle.attempts();
        self.namespaces.credentials(
            namespace,
            result,
            &mut s.wire,
            resume,
            attempt,
            &mut self.out,
        );
    }

    /// An inbound frame: what it means is decoded by the link's protocol (which may owe an
    /// answer at once, such as a pong) and handled. A frame that cannot be decoded ends the
    /// link: nothing after it can be trusted.
    pub(crate) fn frame(&mut self, now: Now, frame: crate::transport::Frame) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        match s.wire.decode(frame, &mut self.out.frames) {
            Ok(input) => {
                // An acknowledgement answers what was sent (perhaps by the Low lane): the
                // send was the reason the radio woke, not this.
                let answer = matches!(input, Input::Ack { .. });
                self.radio.traffic(now.at, answer);
                self.input(now, input)
            }
            Err(e) => {
                self.radio.traffic(now.at, false);
                self.out
                    .end(End::lost(DisconnectReason::ParseError(e.to_string())))
            }
        }
    }

    /// What one inbound frame meant.
    pub(crate) fn input(&mut self, now: Now, input: Input) {
        // App traffic from the server proves the app heartbeat (transport pings do not).
        if matches!(input, Input::Event(_) | Input::Ack { .. })
            && let Some(hb) = self.session.as_mut().and_then(|s| s.app_heartbeat.as_mut())
        {
            hb.alive(now);
        }
        match input {
            Input::Nothing => {}
            Input::Event(inbound) => self.event(now, inbound),
            Input::Alive => {
                if let Some(s) = self.session.as_mut() {
                    s.heartbeat.alive(now);
                }
            }
            Input::Ack { id, reply } => match reply {
                Ok(reply) => match self.subscriptions.ack(id, None, &mut self.out) {
                    Some(ready) => ready.into_iter().for_each(|ns| self.mark_ready(&ns)),
                    // An outbox entry's, or a late one nobody waits for any more.
                    None => {
                        self.flush.acked(id, reply, now);
                    }
                },
                Err(rejection) => {
                    if let Then::Retry { pause: Some(p) } = rejection.then {
                        self.flush.pause(now, Some(p));
                    }
                    match self.subscriptions.ack(id, Some(&rejection), &mut self.out) {
                        Some(ready) => ready.into_iter().for_each(|ns| self.mark_ready(&ns)),
                        None => {
                            self.flush.refused(id, rejection, &mut self.out);
                        }
                    }
                }
            },
            Input::Joined {
                namespace,
                resumable,
            } => self.joined(now, namespace, resumable),
            Input::Refused {
                namespace,
                code,
                message,
            } => {
                if let Refusal::Final { main: true } =
                    self.namespaces
                        .refused(&namespace, code, message.clone(), &mut self.out)
                {
                    self.lifecycle
                        .unauthorized(&namespace, message, &mut self.out);
                    self.out
                        .end(End::new(DisconnectReason::ClientDisconnect, After::Idle));
                }
            }
            Input::Left { namespace } => {
                if self.namespaces.left(&namespace, &mut self.out) == Left::Main {
                    self.lifecycle.server_left(&mut self.out);
                    self.out
                        .end(End::new(DisconnectReason::ServerDisconnect, After::Idle));
                }
            }
            Input::Closed => self.out.end(End::lost(DisconnectReason::TransportClose)),
            Input::Invalid(e) => self.admission.invalid(&e, &mut self.out),
        }
    }

    /// An inbound app event: remembered for recovery, filtered, delivered, acted on when it
    /// carries a signal.
    fn event(&mut self, now: Now, inbound: protocol::Inbound) {
        let protocol::Inbound {
            event,
            ack,
            id,
            resumes,
            signal,
        } = inbound;
        if resumes && let Some(position) = &id {
            self.recovery.advanced(&event.namespace, position);
        }
        // A signal is acted on even when the filter keeps its event from the app (a stale
        // timestamp, a repeated id): the server's request stands.
        if self.admission.admit(now, &event, id.as_deref()) {
            let link = self.session.as_ref().map_or(0, |s| s.id);
            let acker = ack.map(|id| Acker {
                tx: self.acks.clone(),
                id,
                link,
            });
            self.listeners.dispatch(true, Event::new(event, acker, id));
        }
        match signal {
            Some(Signal::SlowDown(pause)) => self.flush.pause(now, pause),
            Some(Signal::CredentialsExpired) => {
                self.refresh_credentials(now, "the server said the token expired".into());
            }
            Some(Signal::Error {
                code,
                message,
                action,
                pause,
            }) => {
                warn!(code, message, ?action, "server error");
                self.out.notify(Notice::ServerError {
                    code: code.clone(),
                    message: message.clone(),
                });
                match action {
                    ErrorAction::RefreshAuth => {
                        self.refresh_credentials(now, format!("{code}: {message}"));
                    }
                    ErrorAction::PauseOutbox => self.flush.pause(now, pause),
                    ErrorAction::Reconnect => self
                        .out
                        .end(End::lost(DisconnectReason::ServerError { code, message })),
                    ErrorAction::Surface => {}
                }
            }
            Some(Signal::Limits(limits)) => {
                self.flush.announce(now, &limits);
                self.with_link(now, |flush, now, link, out| flush.resume(now, link, out));
            }
            // Any app traffic proved the app heartbeat (in `input`); the reply is no more.
            Some(Signal::Pong) | None => {}
        }
    }

    /// The server says the credentials are no good: fresh ones from the provider, on a new
    /// link at once; said again soon after a refresh (a banned account, a provider handing
    /// out the same token), the new link waits for the reconnect backoff instead of looping.
    fn refresh_credentials(&mut self, now: Now, why: String) {
        let again = self
            .last_refresh
            .is_some_and(|at| now.at.saturating_duration_since(at) < REFRESH_AGAIN_WITHIN);
        self.last_refresh = Some(now.at);
        self.namespaces.credentials_expired(why);
        let after = if again {
            After::Reconnect
        } else {
            After::ReconnectNow
        };
        self.out
            .end(End::new(DisconnectReason::TokenExpired, after));
    }

    fn joined(&mut self, now: Now, namespace: Arc<str>, resumable: Option<String>) {
        let Some(main) = self.namespaces.joined(&namespace) else {
            return;
        };
        let recovered = self.recovery.joined(&namespace, resumable, &mut self.out);
        self.out.notify(Notice::Connected {
            namespace: namespace.to_string(),
            attempts: self.lifecycle.attempts(),
            recovered,
        });
        if main {
            self.lifecycle.joined(&mut self.out);
        }
        let Some(s) = self.session.as_mut() else {
            return;
        };
        if main && let Some(ping) = &self.app_ping {
            // The app heartbeat runs once the namespace its ping goes to is joined.
            s.app_heartbeat = Some(Box::new(Heartbeat::new(
                HeartbeatMode::ClientPings {
                    interval: ping.interval,
                    timeout: ping.timeout,
                },
                now,
            )));
        }
        if self
            .subscriptions
            .replay(&namespace, now, &mut s.wire, &mut self.out)
        {
            self.mark_ready(&namespace);
        }
    }

    /// Lets a namespace's outbox entries flow, starting from the oldest.
    fn mark_ready(&mut self, namespace: &str) {
        if self.namespaces.mark_ready(namespace) {
            self.flush.rewind();
        }
    }

    /// A batch of frames starts: the events it carries reach the app together when it ends,
    /// one wake-up of a listener's thread per batch.
    pub(crate) fn frames_begin(&mut self) {
        self.listeners.hold();
    }

    /// A batch, read on the wake-up handled at `now`, was handled by `ended`: its events are
    /// handed to the app, what it taught the filter and recovery is persisted, and pacing
    /// learns how busy the link is.
    pub(crate) fn frames_done(&mut self, now: Now, batch: Batch, ended: Instant) {
        self.listeners.release();
        self.admission.persist(now, &mut self.out);
        self.recovery.persist(&mut self.out);
        let awaiting = self.awaits_answer();
        self.pacing.read(now.at, ended, batch, awaiting);
    }

    /// Whether the client awaits an answer from the server — an acknowledgement of an entry,
    /// a subscription's, the main namespace's CONNECT — which no read hold may delay.
    fn awaits_answer(&self) -> bool {
        !self.connected() || self.flush.awaits_acks() || self.subscriptions.awaits_acks()
    }

    /// Whether the link may be read now: not while a busy stream's frames gather.
    pub(crate) fn may_read(&self) -> bool {
        self.pacing.may_read()
    }

    /// The app's answer to a server's acknowledgement request.
    pub(crate) fn answer(&mut self, a: AckAnswer) {
        if let Some(s) = self.session.as_ref().filter(|s| s.id == a.link) {
            s.wire
                .push_ack(&mut self.out.frames, &a.namespace, a.id, a.args);
        }
    }

    /// News from the store.
    pub(crate) fn store_event(&mut self, now: Now, event: StoreEvent) {
        match event {
            StoreEvent::Appended { seq, ok } => self.flush.appended(seq, ok),
            StoreEvent::Reserved { first, last } => self.flush.reserved(first, last),
            StoreEvent::ReserveFailed => self.flush.reserve_failed(),
            StoreEvent::Fetched(f) => {
                let Fetched {
                    id,
                    entries,
                    drained,
                    upto,
                } = *f;
                self.with_link(now, |flush, now, link, out| {
                    flush.fetched(id, entries, drained, upto, now, link, out)
                });
            }
            StoreEvent::Gone(g) => {
                let Departed { seqs, why } = *g;
                if let crate::store::Gone::Overflow { .. } = why {
                    self.out.notify(Notice::OutboxOverflow {
                        dropped: seqs.len() as u64,
                    });
                }
                self.flush.gone(&seqs, why);
            }
        }
    }

    /// The frames produced so far were written and flushed.
    pub(crate) fn written(&mut self, now: Now) {
        self.pacing.wrote();
        // Written into a socket that may have died while the device slept: not delivered.
        if let Some(s) = &self.session
            && s.heartbeat.is_stale(now)
        {
            return self.out.end(End::lost(DisconnectReason::PingTimeout));
        }
        self.flush.flushed(&mut self.out);
    }

    /// Of `pending` (live entries not committed yet, which the store may leave out), those
    /// the last [`Machine::written`] delivered: they need no row.
    pub(crate) fn delivered_before_commit(&mut self, pending: &[u64]) -> Vec<u64> {
        self.flush.delivered_before_commit(pending)
    }

    /// When [`Machine::timeout`] is next needed.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.deadline()
            .into_iter()
            .chain(self.pacing.poll_timeout())
            .min()
    }

    /// The earliest deadline of every component but pacing.
    fn deadline(&self) -> Option<Instant> {
        let link = self.session.as_ref().map(|s| {
            let hb = s.heartbeat.deadline();
            let hb = s
                .app_heartbeat
                .as_ref()
                .map_or(hb, |a| a.deadline().min(hb));
            if *self.lifecycle.state() == State::Connected {
                hb
            } else {
                hb.min(s.join_by)
            }
        });
        [
            self.lifecycle.poll_timeout(),
            link,
            self.flush.poll_timeout(),
            self.subscriptions.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Time passed: every component checks its deadlines.
    pub(crate) fn timeout(&mut self, now: Now) {
        // A hold's end alone (up to a thousand a second while a stream is held) needs no
        // sweep of the other components' deadlines.
        if self.pacing.on_timeout(now.at) && self.deadline().is_none_or(|d| d > now.at) {
            return;
        }
        self.lifecycle.on_timeout(now, &mut self.out);
        self.flush.expire_waiters(now);
        let connected = *self.lifecycle.state() == State::Connected;
        let Some(s) = self.session.as_mut() else {
            return;
        };
        if !connected && now.at >= s.join_by {
            let limit = self.join_within;
            self.out
                .end(End::lost(DisconnectReason::TransportError(format!(
                    "the server did not answer CONNECT within {limit:?}"
                ))));
        }
        match s.heartbeat.on_deadline(now) {
            Due::Nothing => {}
            Due::Ping => self.out.frames.extend(s.wire.ping()),
            Due::Dead => self.out.end(End::lost(DisconnectReason::PingTimeout)),
        }
        if let (Some(hb), Some(ping)) = (s.app_heartbeat.as_mut(), &self.app_ping) {
            match hb.on_deadline(now) {
                Due::Nothing => {}
                Due::Ping => {
                    if let Err(e) = s
                        .wire
                        .push_event(&mut self.out.frames, &ping.event, None, None)
                    {
                        warn!(error = %e, "app heartbeat ping not encoded");
                    }
                }
                Due::Dead => self.out.end(End::lost(DisconnectReason::AppPingTimeout)),
            }
        }
        self.with_link(now, |flush, now, link, out| {
            flush.on_timeout(now, link, out)
        });
        for ns in self.subscriptions.on_timeout(now, &mut self.out) {
            self.mark_ready(&ns);
        }
    }

    /// The link ended as `end` says: per-link state goes, the lifecycle decides what next.
    pub(crate) fn link_ended(&mut self, now: Now, end: &End) {
        // The state changes here, outside a step: time up to now is the old state's.
        self.lifecycle.account(now.at);
        self.session = None;
        self.pacing.link_changed();
        self.flush.link_lost(&mut self.out);
        self.subscriptions.link_lost();
        self.namespaces.link_lost();
        self.out.notify(Notice::Disconnected {
            reason: end.reason.clone(),
        });
        self.lifecycle.link_ended(now, end, &mut self.out);
        self.lifecycle.account(now.at);
    }

    /// The engine stops: everyone still waiting hears it.
    pub(crate) fn closed(&mut self) {
        self.flush.closed();
        self.lifecycle.closed(&mut self.out);
    }

    /// Counters for `metrics()`, up to `now`.
    pub(crate) fn counters(&self, now: Now) -> Counters {
        Counters {
            connects: self.lifecycle.connects,
            reconnects: self.lifecycle.reconnects,
            sent: self.flush.sent,
            received: self.admission.received,
            duplicates: self.admission.duplicates,
            stale: self.admission.stale,
            invalid: self.admission.invalid,
            recovered: self.recovery.recovered,
            subscriptions_failed: self.subscriptions.failed,
            rate_limit_pauses: self.flush.rate_limit_pauses,
            latencies: self.flush.latencies.clone(),
            radio_wakeups: self.radio.wakeups,
            radio_active: self.radio.active(now.at),
            inbound_reads: self.pacing.reads,
            held_reads: self.pacing.held_reads,
            state_times: self.lifecycle.state_times(now.at),
        }
    }

    /// The listener a delivery waits for, if one does (the socket is not read meanwhile).
    pub(crate) fn blocked_on(&self) -> Option<mpsc::Sender<Event>> {
        self.listeners.blocked_on()
    }

    /// Room appeared at the listener a delivery waited for.
    pub(crate) fn unblocked(&mut self, permit: Option<OwnedPermit<Event>>) {
        self.listeners.drain(permit);
    }

    /// Asks for what the outbox holds now, for the polite close's last flush.
    pub(crate) fn fetch_remaining(&mut self) -> Option<u64> {
        if !self.connected() {
            return None;
        }
        self.flush.fetch_now(&mut self.out)
    }

    /// The frames that leave every joined namespace.
    pub(crate) fn goodbyes(&self) -> Vec<crate::transport::Frame> {
        self.session
            .as_ref()
            .map(|s| self.namespaces.goodbyes(&s.wire))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tokio::sync::oneshot;

    use super::*;
    use crate::{
        args::AckReply,
        config::{ClientConfig, StaticAuth},
        engine::{
            actions::LinkAction,
            control::{Command, Outgoing},
        },
        protocol::{EventData, test_wire},
        server_signals::ServerSignals,
        store::{Cmd, StoredEntry, StoredSubscription},
        transport::Frame,
    };

    fn t0() -> Now {
        Now {
            at: Instant::now(),
            wall_ms: 1_700_000_000_000,
        }
    }

    fn machine(snapshot: Snapshot, auth: bool) -> Machine {
        let mut config = ClientConfig::new("http://localhost:1").unwrap();
        if auth {
            config = config.with_auth(StaticAuth(json!({"token": "t"})));
        }
        let (acks, _) = futures_channel::mpsc::unbounded();
        let auth = config.auth.is_some();
        Machine::new(
            &Prepared::new(config, false).unwrap(),
            auth,
            snapshot,
            acks,
            t0(),
        )
    }

    fn texts(out: &Actions) -> Vec<String> {
        out.frames
            .iter()
            .map(|f| match f {
                Frame::Text(t) => t.to_string(),
                Frame::Binary(_) => "<binary>".into(),
            })
            .collect()
    }

    /// A machine with the seed platforms' signals, connected (main namespace joined).
    fn seed_connected() -> Machine {
        let config = ClientConfig::new("http://localhost:1")
            .unwrap()
            .with_signals(ServerSignals::seed_platforms());
        let (acks, _) = futures_channel::mpsc::unbounded();
        let prepared = Prepared::new(config, false).unwrap();
        let mut m = Machine::new(&prepared, false, Snapshot::default(), acks, t0());
        link_up(&mut m);
        join_main(&mut m);
        m.take_actions();
        m
    }

    fn at(ms: u64) -> Now {
        let t = t0();
        Now {
            at: t.at + std::time::Duration::from_millis(ms),
            wall_ms: t.wall_ms + ms as i64,
        }
    }

    fn app_event(name: &str, signal: Option<Signal>) -> Input {
        Input::Event(protocol::Inbound {
            event: EventData {
                namespace: Arc::from("/"),
                name: Arc::from(name),
                args: RawJson::validated("[]".into()),
                attachments: vec![],
            },
            ack: None,
            id: None,
            resumes: false,
            signal,
        })
    }

    #[test]
    fn the_app_heartbeat_pings_after_silence_and_a_missing_reply_ends_the_link() {
        let mut m = seed_connected();
        // The server's Engine.IO pings keep the transport alive; they are not app traffic.
        let tick = |m: &mut Machine, ms: u64| {
            m.input(at(ms), Input::Alive);
            m.timeout(at(ms));
            texts(&m.take_actions())
        };
        // App traffic 20 s in: the ping waits for 30 s of silence after it.
        m.input(at(20_000), app_event("score", None));
        assert!(
            tick(&mut m, 30_000).is_empty(),
            "no ping while traffic flows"
        );
        assert!(tick(&mut m, 49_999).is_empty());
        assert_eq!(tick(&mut m, 50_000), [r#"42["ping"]"#]);
        // Answered: the next ping 30 s after the reply.
        m.input(at(50_100), app_event("pong", Some(Signal::Pong)));
        assert!(tick(&mut m, 60_100).is_empty());
        assert!(m.take_actions().link.is_none());
        assert_eq!(tick(&mut m, 80_100), [r#"42["ping"]"#]);
        // Unanswered for the timeout: the link is dead although the transport is up.
        m.input(at(90_100), Input::Alive);
        m.timeout(at(90_100));
        assert!(matches!(
            m.take_actions().link,
            Some(LinkAction::End(ref e)) if e.reason == DisconnectReason::AppPingTimeout
        ));
    }

    #[test]
    fn error_codes_do_what_the_configuration_says() {
        let error = |code: &str, action| {
            app_event(
                "error",
                Some(Signal::Error {
                    code: code.into(),
                    message: "m".into(),
                    action,
                    pause: None,
                }),
            )
        };
        let mut m = seed_connected();
        m.input(t0(), error("AUTH_FAILED", ErrorAction::RefreshAuth));
        let out = m.take_actions();
        assert!(
            matches!(&out.notices[..], [Notice::ServerError { code, .. }] if code == "AUTH_FAILED")
        );
        assert!(matches!(
            out.link,
            Some(LinkAction::End(ref e)) if e.reason == DisconnectReason::TokenExpired && e.after == After::ReconnectNow
        ));

        // Again right after the refresh: the reconnect waits for the backoff (no tight loop).
        let mut m2 = seed_connected();
        m2.input(t0(), error("AUTH_FAILED", ErrorAction::RefreshAuth));
        m2.take_actions();
        m2.input(at(1_000), error("AUTH_FAILED", ErrorAction::RefreshAuth));
        assert!(matches!(
            m2.take_actions().link,
            Some(LinkAction::End(ref e)) if e.after == After::Reconnect
        ));

        let mut m = seed_connected();
        m.input(t0(), error("CONNECTION_ERROR", ErrorAction::Reconnect));
        assert!(matches!(
            m.take_actions().link,
            Some(LinkAction::End(ref e)) if matches!(e.reason, DisconnectReason::ServerError { .. })
        ));

        let mut m = seed_connected();
        m.input(t0(), error("RATE_LIMITED", ErrorAction::PauseOutbox));
        assert_eq!(m.counters(t0()).rate_limit_pauses, 1);
        m.input(t0(), error("VALIDATION_ERROR", ErrorAction::Surface));
        let out = m.take_actions();
        assert!(out.link.is_none(), "surfaced only");
        assert_eq!(out.notices.len(), 2, "{:?}", out.notices);
    }

    /// The server accepts the main namespace's CONNECT; the step is settled.
    fn join_main(m: &mut Machine) {
        m.input(
            t0(),
            Input::Joined {
                namespace: Arc::from("/"),
                resumable: None,
            },
        );
        m.settle(t0());
    }

    /// Connects `m` up to the CONNECT frame: dialed, linked, credentials sent.
    fn link_up(m: &mut Machine) {
        m.command(t0(), Command::Connect(None));
        assert_eq!(m.take_actions().link, Some(LinkAction::Dial));
        m.linked(t0(), test_wire(25_000, 20_000));
        let out = m.take_actions();
        assert_eq!(out.credentials.len(), 1);
        m.credentials("/", Ok(None));
        assert_eq!(texts(&m.take_actions()), ["40"]);
    }

    /// A store that holds one subscription, replayed on every join.
    fn subscribed() -> Snapshot {
        Snapshot {
            subscriptions: vec![StoredSubscription {
                namespace: "/".into(),
                event: "room:subscribe".into(),
                args: r#"[{"roomId":"r1"}]"#.into(),
                unsubscribe: None,
            }],
            ..Snapshot::default()
        }
    }

    /// The server acknowledges the subscription `frame` (its replay, ack id and all); the
    /// step is settled.
    fn ack_subscription(m: &mut Machine, frame: &str) {
        let id: u64 = frame[2..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap();
        let reply = AckReply {
            args: RawJson::validated("[]".into()),
            attachments: vec![],
        };
        m.input(
            t0(),
            Input::Ack {
                id,
                reply: Ok(reply),
            },
        );
        m.settle(t0());
    }

    #[test]
    fn subscriptions_are_acknowledged_before_the_first_outbox_frame() {
        let mut m = machine(subscribed(), false);
        link_up(&mut m);
        join_main(&mut m);
        let out = m.take_actions();
        assert_eq!(m.state(), &State::Connected);
        let frames = texts(&out);
        assert_eq!(frames.len(), 1);
        assert!(frames[0].starts_with("42") && frames[0].contains("room:subscribe"));
        assert!(
            !out.store.iter().any(|c| matches!(c, Cmd::Fetch { .. })),
            "the outbox waits for the subscription's ack"
        );
        ack_subscription(&mut m, &frames[0]);
        let out = m.take_actions();
        let Some(Cmd::Fetch { id: fetch, .. }) = out.store.into_iter().last() else {
            panic!("acked: the outbox may flow")
        };
        let entry = StoredEntry {
            seq: 1,
            lane: crate::outbox::Priority::Normal,
            namespace: "/".into(),
            event: "tick".into(),
            args: "[1]".into(),
            attachments: vec![],
            want_ack: false,
            created_ms: 0,
            expires_ms: None,
        };
        m.store_event(t0(), StoreEvent::fetched(fetch, vec![entry], true, 0));
        assert_eq!(texts(&m.take_actions()), [r#"42["tick",1]"#]);
    }

    /// Reads of a busy stream: `n` batches of five frames, 20 µs apart, from `from_us` on.
    /// Returns when the last was read, in µs.
    fn busy_reads(m: &mut Machine, from_us: u64, n: usize) -> u64 {
        let mut us = from_us;
        for _ in 0..n {
            us += 20;
            let now = Now {
                at: t0().at + std::time::Duration::from_micros(us),
                ..t0()
            };
            let batch = Batch {
                frames: 5,
                bytes: 600,
                emptied: true,
            };
            m.frames_done(now, batch, now.at);
        }
        us
    }

    #[test]
    fn a_busy_stream_is_held_between_reads_until_a_timer_or_a_write() {
        let mut m = seed_connected();
        let us = busy_reads(&mut m, 0, 5);
        assert!(!m.may_read(), "held");
        let until = m.poll_timeout().expect("the hold's end is a timer");
        assert!(until > t0().at + std::time::Duration::from_micros(us));
        // Its end comes through `timeout`, as the driver's timer calls it.
        m.timeout(Now { at: until, ..t0() });
        assert!(m.may_read());
        assert_eq!(m.counters(t0()).inbound_reads, 5);
        // Still busy: held again; a write ends the hold at once.
        busy_reads(&mut m, us + 1_000, 1);
        assert!(!m.may_read());
        m.written(t0());
        assert!(m.may_read());
        // Held again after a streak; a lost link forgets the hold.
        busy_reads(&mut m, us + 2_000, 5);
        assert!(!m.may_read());
        m.link_ended(t0(), &End::lost(DisconnectReason::TransportClose));
        assert!(m.may_read());
        assert_eq!(m.counters(t0()).held_reads, 1);
    }

    #[test]
    fn no_read_is_held_while_a_subscription_ack_is_awaited() {
        let mut m = machine(subscribed(), false);
        link_up(&mut m);
        // Not joined yet: the CONNECT's answer is awaited.
        let us = busy_reads(&mut m, 0, 10);
        assert!(m.may_read());
        join_main(&mut m);
        let frames = texts(&m.take_actions());
        let us = busy_reads(&mut m, us, 10);
        assert!(m.may_read(), "the subscription's ack is awaited");
        ack_subscription(&mut m, &frames[0]);
        busy_reads(&mut m, us, 1);
        assert!(!m.may_read(), "answered: the busy stream is held");
    }

    #[test]
    fn a_refusal_twice_is_unauthorized_and_ends_the_link() {
        let mut m = machine(Snapshot::default(), true);
        let (tx, mut rx) = oneshot::channel();
        m.command(t0(), Command::Connect(Some(tx)));
        m.linked(t0(), test_wire(25_000, 20_000));
        m.credentials("/", Ok(Some(json!({"token": "old"}))));
        let _ = m.take_actions();
        let refused = |m: &mut Machine| {
            m.input(
                t0(),
                Input::Refused {
                    namespace: Arc::from("/"),
                    code: "CONNECT_ERROR".into(),
                    message: "Authentication failed".into(),
                },
            );
            m.take_actions()
        };
        let out = refused(&mut m);
        assert!(
            matches!(
                &out.credentials[..],
                [(
                    _,
                    super::super::actions::Credentials::Ask(
                        crate::config::AuthReason::Refresh { .. }
                    )
                )]
            ),
            "asked once more, for fresh credentials"
        );
        assert!(out.link.is_none());
        m.credentials("/", Ok(Some(json!({"token": "new"}))));
        let _ = m.take_actions();
        let out = refused(&mut m);
        assert!(matches!(
            m.state(),
            State::Unauthorized { message } if message == "Authentication failed"
        ));
        assert!(matches!(
            out.link,
            Some(LinkAction::End(ref e)) if e.after == After::Idle
        ));
        let (waiter, result) = out.answers.into_iter().next().unwrap();
        let _ = waiter.send(result);
        assert!(matches!(
            rx.try_recv().unwrap(),
            Err(Error::Unauthorized { .. })
        ));
    }

    #[test]
    fn signals_pause_the_outbox_or_reconnect_with_fresh_credentials() {
        let mut m = machine(Snapshot::default(), false);
        link_up(&mut m);
        m.input(
            t0(),
            Input::Joined {
                namespace: Arc::from("/"),
                resumable: None,
            },
        );
        let event = app_event;
        let pause = std::time::Duration::from_millis(700);
        m.input(
            t0(),
            event("rate_limit_exceeded", Some(Signal::SlowDown(Some(pause)))),
        );
        assert_eq!(m.counters(t0()).rate_limit_pauses, 1);
        assert_eq!(m.counters(t0()).received, 1, "the app sees the signal too");
        m.input(
            t0(),
            event("token:expired", Some(Signal::CredentialsExpired)),
        );
        let out = m.take_actions();
        assert!(matches!(
            out.link,
            Some(LinkAction::End(ref e)) if e.reason == DisconnectReason::TokenExpired && e.after == After::ReconnectNow
        ));
    }

    #[test]
    fn a_volatile_emit_goes_only_to_a_joined_namespace_on_a_live_link() {
        let mut m = machine(Snapshot::default(), false);
        let data = |ns: &str| EventData {
            namespace: Arc::from(ns),
            name: Arc::from("hr"),
            args: RawJson::validated("[72]".into()),
            attachments: vec![],
        };
        m.outgoing(t0(), Outgoing::Volatile(Box::new(data("/"))));
        let out = m.take_actions();
        assert!(out.frames.is_empty());
        assert!(matches!(&out.notices[..], [Notice::EmitDropped { .. }]));
        link_up(&mut m);
        m.input(
            t0(),
            Input::Joined {
                namespace: Arc::from("/"),
                resumable: None,
            },
        );
        let _ = m.take_actions();
        m.outgoing(t0(), Outgoing::Volatile(Box::new(data("/"))));
        assert_eq!(texts(&m.take_actions()), [r#"42["hr",72]"#]);
        m.outgoing(t0(), Outgoing::Volatile(Box::new(data("/elsewhere"))));
        let out = m.take_actions();
        assert!(out.frames.is_empty() && out.notices.len() == 1);
        // Asleep past the heartbeat: the socket may be dead; the emit is dropped, the link ends.
        let later = Now {
            at: t0().at,
            wall_ms: t0().wall_ms + 60_000,
        };
        m.outgoing(later, Outgoing::Volatile(Box::new(data("/"))));
        let out = m.take_actions();
        assert!(out.frames.is_empty());
        assert!(matches!(
            out.link,
            Some(LinkAction::End(ref e)) if e.reason == DisconnectReason::PingTimeout
        ));
    }
}
