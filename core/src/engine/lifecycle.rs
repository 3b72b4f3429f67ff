//! The connection's life as the app sees it: whether a connection is wanted, when the next
//! attempt starts (backoff with jitter, slowed down once suspended), what the device says
//! (network up or down, a new interface, the app in the background or the foreground),
//! `connect()` callers waiting for the result, and the [`State`] the app reads, with the
//! time spent in each.
//!
//! Phases: Idle → Dialing → Linked → (Waiting → Dialing)* …, Offline while the app says the
//! network is down, Background while the app is in the background and its policy closed the
//! link, Closing at the end. Every attempt starts in [`Lifecycle::dial`], which is where the
//! background policy holds it back. Inputs are the app's commands and what became of a dial
//! or a link; outputs are [`LinkAction`]s and notices.

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;
use tracing::debug;

pub(crate) use super::actions::ConnectWaiter;
use super::actions::{Actions, After, End, LinkAction};
use crate::{
    backoff::{Backoff, ReconnectPolicy},
    device::{BackgroundPolicy, NetworkPath},
    error::Error,
    event::{DisconnectReason, Notice, State},
    metrics::StateTimes,
    time::Now,
};

/// Where the connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not connected and not trying.
    Idle,
    /// Not trying until the network is back.
    Offline,
    /// Attempt `attempt` starts at `at`.
    Waiting { at: Instant, attempt: u32 },
    /// An attempt is under way.
    Dialing,
    /// A link is up (the main namespace may still be joining).
    Linked,
    /// The app is in the background and its policy closed the link: no attempt until the
    /// foreground.
    Background,
    /// Closing for good.
    Closing,
}

/// The connection lifecycle. See the module docs.
pub(crate) struct Lifecycle {
    reconnect_enabled: bool,
    backoff: Backoff,
    phase: Phase,
    /// The app wants a connection (between `connect()` and `disconnect()`/a terminal failure).
    wanted: bool,
    network_up: bool,
    ever_connected: bool,
    state: State,
    waiters: Vec<ConnectWaiter>,
    background_policy: BackgroundPolicy,
    /// The app is in the background.
    in_background: bool,
    /// The newest foreground's number: a background request made before it is stale.
    foreground_epoch: u64,
    /// The network path last reported.
    path: Option<NetworkPath>,
    /// Since when the connection has been down while wanted (cleared by a success, a
    /// network-up hint or the foreground): how long before attempts slow down.
    down_since: Option<Instant>,
    suspend_after: Option<Duration>,
    suspended_retry: Duration,
    /// Time per state, and the state being timed since when.
    times: StateTimes,
    timed: (State, Instant),
    /// Successful connections, and how many of them came after a loss.
    pub(crate) connects: u64,
    pub(crate) reconnects: u64,
}

impl Lifecycle {
    pub(crate) fn new(
        policy: impl Into<Arc<ReconnectPolicy>>,
        background: BackgroundPolicy,
        now: Instant,
    ) -> Self {
        let policy = policy.into();
        Self {
            reconnect_enabled: policy.enabled,
            suspend_after: policy.suspend_after,
            suspended_retry: policy.suspended_retry,
            backoff: Backoff::new(policy),
            phase: Phase::Idle,
            wanted: false,
            network_up: true,
            ever_connected: false,
            state: State::Idle,
            waiters: Vec::new(),
            background_policy: background,
            in_background: false,
            foreground_epoch: 0,
            path: None,
            down_since: None,
            times: StateTimes::default(),
            timed: (State::Idle, now),
            connects: 0,
            reconnects: 0,
        }
    }

    /// Charges the time since the last call to the state that held during it (states change
    /// only within steps, so the driver calls this at the end of each).
    pub(crate) fn account(&mut self, now: Instant) {
        let (state, since) = &self.timed;
        self.times.add(state, now.saturating_duration_since(*since));
        self.timed = (self.state.clone(), now);
    }

    /// Time spent in each state, up to `now`.
    pub(crate) fn state_times(&self, now: Instant) -> StateTimes {
        let mut times = self.times;
        let (state, since) = &self.timed;
        times.add(state, now.saturating_duration_since(*since));
        times
    }

    /// The state the app sees.
    pub(crate) fn state(&self) -> &State {
        &self.state
    }

    /// Failed attempts since the last success.
    pub(crate) fn attempts(&self) -> u32 {
        self.backoff.attempts()
    }

    fn set_state(&mut self, state: State) {
        if self.state != state {
            debug!(?state, "state");
            self.state = state;
        }
    }

    /// Answers every `connect()` caller (after the driver publishes the state they read).
    fn finish_waiters(&mut self, result: Result<(), Error>, out: &mut Actions) {
        for w in self.waiters.drain(..) {
            out.answers.push((w, result.clone()));
        }
    }

    /// The app calls `connect()` (`reply` waits for the outcome) or `start()`. Returns
    /// whether this begins a new connection (refused credentials are forgotten then).
    pub(crate) fn connect(&mut self, reply: Option<ConnectWaiter>, out: &mut Actions) -> bool {
        if let Some(r) = reply {
            if self.phase == Phase::Linked && self.state == State::Connected {
                out.answers.push((r, Ok(())));
            } else {
                self.waiters.push(r);
            }
        }
        if self.phase == Phase::Background {
            // The app asks for a connection while in the background (a background task, a
            // silent push): it gets one; the next background request applies the policy again.
            self.in_background = false;
            self.connect_now(out);
            return false;
        }
        if self.wanted || self.phase == Phase::Closing {
            return false;
        }
        self.wanted = true;
        self.backoff.reset();
        self.down_since = None;
        if self.network_up {
            self.dial(out);
        } else {
            self.go_offline();
        }
        true
    }

    /// Starts an attempt, unless the app's background policy holds attempts back.
    fn dial(&mut self, out: &mut Actions) {
        if self.held_by_app() {
            return self.hold_for_app();
        }
        if self.backoff.attempts() == 0 && !self.ever_connected {
            self.set_state(State::Connecting);
        }
        self.phase = Phase::Dialing;
        out.link = Some(LinkAction::Dial);
    }

    fn go_offline(&mut self) {
        self.phase = Phase::Offline;
        self.down_since = None;
        self.set_state(State::Offline);
    }

    /// Whether a connection is up or being attempted (so an outbox flush can happen).
    pub(crate) fn trying(&self) -> bool {
        self.wanted
            && matches!(
                self.phase,
                Phase::Dialing | Phase::Linked | Phase::Waiting { .. }
            )
    }

    /// Whether the app is in the background with a policy that closes the link.
    fn held_by_app(&self) -> bool {
        self.in_background && self.background_policy == BackgroundPolicy::Disconnect
    }

    fn hold_for_app(&mut self) {
        self.phase = Phase::Background;
        self.set_state(State::Background);
    }

    /// Connects now, skipping any backoff wait: the device says conditions changed for the
    /// better (the network is back, the app is in front of the user, a new interface).
    fn connect_now(&mut self, out: &mut Actions) {
        if !self.network_up {
            return self.go_offline();
        }
        self.backoff.reset();
        self.down_since = None;
        if matches!(self.state, State::Background | State::Suspended { .. }) && !self.held_by_app()
        {
            // Say what is happening: the attempt below sets no state of its own.
            self.set_state(State::Reconnecting {
                attempt: 1,
                delay: Duration::ZERO,
            });
        }
        self.dial(out);
    }

    /// The app went to the background (after its flush). `epoch` orders it against the
    /// foregrounds: one requested before the latest foreground is stale and ignored (returns
    /// false then).
    pub(crate) fn background(&mut self, epoch: u64, out: &mut Actions) -> bool {
        if epoch < self.foreground_epoch {
            return false;
        }
        self.in_background = true;
        if !self.held_by_app() || !self.wanted {
            return true;
        }
        match self.phase {
            Phase::Linked | Phase::Dialing => {
                out.end(End::new(DisconnectReason::Background, After::Background))
            }
            Phase::Waiting { .. } => self.hold_for_app(),
            Phase::Idle | Phase::Offline | Phase::Background | Phase::Closing => {}
        }
        true
    }

    /// The app is in the foreground (epoch `epoch`): connect at once if a connection is
    /// wanted and none is up or under way.
    pub(crate) fn foreground(&mut self, epoch: u64, out: &mut Actions) {
        self.foreground_epoch = self.foreground_epoch.max(epoch);
        self.in_background = false;
        if self.wanted && matches!(self.phase, Phase::Background | Phase::Waiting { .. }) {
            self.connect_now(out);
        }
    }

    /// The platform reported the network path. A move to another interface under a live
    /// link replaces it at once: its socket is bound to the old interface and would only be
    /// found dead by the heartbeat, a whole ping interval and timeout later.
    pub(crate) fn path_changed(&mut self, path: NetworkPath, out: &mut Actions) {
        let before = self.path.replace(path);
        if before.is_some_and(|b| b.available == path.available && b.interface == path.interface) {
            // Platforms repeat reports (Android, at every change of signal or bandwidth):
            // only a change of availability or interface means anything here.
            return;
        }
        let moved =
            before.is_some_and(|b| b.available && path.available && b.interface != path.interface);
        if moved && self.wanted {
            match self.phase {
                Phase::Linked => out.end(End::new(
                    DisconnectReason::NetworkChanged,
                    After::ReconnectNow,
                )),
                Phase::Waiting { .. } => self.connect_now(out),
                _ => {}
            }
        }
        if path.available != self.network_up {
            // Only a change of reachability is a hint; a first report of a path that is up
            // is not news (NWPathMonitor and NetworkCallback report at registration).
            self.network(path.available, out);
        }
    }

    /// The app calls `disconnect()`: leave, and stop trying.
    pub(crate) fn disconnect(&mut self, out: &mut Actions) {
        self.wanted = false;
        self.down_since = None;
        self.set_state(State::Idle);
        self.finish_waiters(Err(Error::Disconnected), out);
        match self.phase {
            Phase::Linked | Phase::Dialing => {
                out.end(End::new(DisconnectReason::ClientDisconnect, After::Idle))
            }
            Phase::Closing => {}
            _ => self.phase = Phase::Idle,
        }
    }

    /// The platform's reachability hint.
    pub(crate) fn network(&mut self, up: bool, out: &mut Actions) {
        let was = std::mem::replace(&mut self.network_up, up);
        match self.phase {
            Phase::Linked if !up => {
                out.end(End::new(DisconnectReason::NetworkDown, After::Offline));
            }
            Phase::Linked | Phase::Closing => {}
            Phase::Dialing if was && !up && self.wanted => {
                out.end(End::new(DisconnectReason::NetworkDown, After::Offline));
            }
            Phase::Dialing => {}
            Phase::Idle | Phase::Offline | Phase::Waiting { .. } => {
                let suspended = matches!(self.state, State::Suspended { .. });
                match (was, up, self.wanted) {
                    (true, false, true) => self.go_offline(),
                    // Back: no reason to sit out a backoff meant for a dead network. Said
                    // while suspended, it is news too: the platform saw the path come up.
                    (false, true, true) => self.connect_now(out),
                    // One attempt now; if it fails the client stays suspended (the outage
                    // is not over because the app said so).
                    (true, true, true) if suspended => self.dial(out),
                    _ => {}
                }
            }
            // Nothing is attempted in the background; the foreground looks at the network.
            Phase::Background => {}
        }
    }

    /// The attempt under way failed.
    pub(crate) fn dial_failed(&mut self, now: Now, error: Error, out: &mut Actions) {
        out.notify(Notice::ConnectFailed {
            attempt: self.backoff.attempts(),
            error: error.clone(),
        });
        self.schedule_retry(now, error, out);
    }

    /// The attempt under way produced a link.
    pub(crate) fn linked(&mut self) {
        self.phase = Phase::Linked;
    }

    /// The main namespace was joined: connected. Returns the attempts it took.
    pub(crate) fn joined(&mut self, out: &mut Actions) -> u32 {
        let attempts = self.backoff.attempts();
        self.connects += 1;
        if self.ever_connected {
            self.reconnects += 1;
        }
        self.ever_connected = true;
        self.backoff.reset();
        self.down_since = None;
        self.set_state(State::Connected);
        self.finish_waiters(Ok(()), out);
        attempts
    }

    /// The main namespace refused the credentials for good.
    pub(crate) fn unauthorized(&mut self, namespace: &str, message: String, out: &mut Actions) {
        self.wanted = false;
        // State first: a caller woken by the waiter must already see `Unauthorized`.
        self.set_state(State::Unauthorized {
            message: message.clone(),
        });
        let err = Error::Unauthorized {
            namespace: namespace.to_owned(),
            message,
        };
        self.finish_waiters(Err(err), out);
    }

    /// The server ended the session (it disconnected the main namespace).
    pub(crate) fn server_left(&mut self, out: &mut Actions) {
        self.wanted = false;
        self.set_state(State::Idle);
        self.finish_waiters(Err(Error::ServerDisconnected), out);
    }

    /// The link (or the attempt under way) ended as `end` says; decides what comes next.
    pub(crate) fn link_ended(&mut self, now: Now, end: &End, out: &mut Actions) {
        match end.after {
            After::Exit => {
                self.phase = Phase::Closing;
                out.link = Some(LinkAction::Exit);
            }
            After::Idle => {
                // An auth refusal already set `Unauthorized`, which says more than `Idle`.
                if !matches!(self.state, State::Unauthorized { .. }) {
                    self.set_state(State::Idle);
                }
                self.phase = Phase::Idle;
            }
            After::Offline => self.go_offline(),
            After::Background if self.wanted => self.hold_for_app(),
            After::Background => {
                self.phase = Phase::Idle;
                self.set_state(State::Idle);
            }
            After::ReconnectNow => {
                self.backoff.reset();
                // No backoff wait sets a state on this path; say what is happening.
                self.set_state(State::Reconnecting {
                    attempt: 1,
                    delay: Duration::ZERO,
                });
                self.dial(out);
            }
            After::Reconnect => {
                let err = Error::Connect(format!("{:?}", end.reason));
                self.schedule_retry(now, err, out);
            }
        }
    }

    fn schedule_retry(&mut self, now: Now, last_error: Error, out: &mut Actions) {
        if self.held_by_app() {
            return self.hold_for_app();
        }
        let since = *self.down_since.get_or_insert(now.at);
        match self.backoff.next_delay() {
            Some((attempt, delay)) => {
                // Down this long, the outage is not a blip: slow down to save the battery.
                let suspended = self
                    .suspend_after
                    .is_some_and(|after| now.at.saturating_duration_since(since) >= after);
                let delay = if suspended {
                    self.backoff.jittered(self.suspended_retry)
                } else {
                    delay
                };
                debug!(attempt, ?delay, suspended, "reconnect scheduled");
                self.set_state(if suspended {
                    State::Suspended { delay }
                } else {
                    State::Reconnecting { attempt, delay }
                });
                self.phase = Phase::Waiting {
                    at: now.at + delay,
                    attempt,
                };
            }
            None => {
                let attempts = self.backoff.attempts().saturating_sub(1);
                out.notify(Notice::ReconnectFailed { attempts });
                self.wanted = false;
                self.phase = Phase::Idle;
                self.set_state(State::Idle);
                let err = if self.reconnect_enabled {
                    Error::GaveUp { attempts }
                } else {
                    last_error
                };
                self.finish_waiters(Err(err), out);
            }
        }
    }

    /// When the lifecycle next needs [`Lifecycle::on_timeout`].
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Waiting { at, .. } => Some(at),
            _ => None,
        }
    }

    /// Time passed: starts the attempt that was waiting for it.
    pub(crate) fn on_timeout(&mut self, now: Now, out: &mut Actions) {
        if let Phase::Waiting { at, attempt } = self.phase
            && now.at >= at
        {
            out.notify(Notice::ReconnectAttempt { attempt });
            self.dial(out);
        }
    }

    /// The app closes the client: end the link (politely) or stop at once.
    pub(crate) fn close(&mut self, out: &mut Actions) {
        match self.phase {
            Phase::Linked | Phase::Dialing => {
                out.end(End::new(DisconnectReason::ClientDisconnect, After::Exit))
            }
            Phase::Closing => {}
            _ => out.link = Some(LinkAction::Exit),
        }
        self.phase = Phase::Closing;
    }

    /// The engine stopped: every waiter hears it, the state is final.
    pub(crate) fn closed(&mut self, out: &mut Actions) {
        self.finish_waiters(Err(Error::Closed), out);
        self.set_state(State::Closed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;

    fn t0() -> Now {
        Now {
            at: Instant::now(),
            wall_ms: 1_700_000_000_000,
        }
    }

    fn after(t: Now, ms: u64) -> Now {
        Now {
            at: t.at + Duration::from_millis(ms),
            wall_ms: t.wall_ms + ms as i64,
        }
    }

    fn lifecycle(policy: ReconnectPolicy) -> Lifecycle {
        Lifecycle::new(policy, BackgroundPolicy::Disconnect, Instant::now())
    }

    fn policy() -> ReconnectPolicy {
        ReconnectPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(400),
            factor: 2.0,
            jitter: 0.0,
            ..ReconnectPolicy::default()
        }
    }

    #[test]
    fn connect_dials_and_waiters_hear_the_join() {
        let mut l = lifecycle(policy());
        let mut out = Actions::default();
        let (tx, mut rx) = oneshot::channel();
        assert!(l.connect(Some(tx), &mut out));
        assert_eq!(out.link, Some(LinkAction::Dial));
        assert_eq!(l.state(), &State::Connecting);
        assert!(!l.connect(None, &mut Actions::default()), "already wanted");
        l.linked();
        let mut out = Actions::default();
        assert_eq!(l.joined(&mut out), 0);
        assert_eq!(l.state(), &State::Connected);
        assert!(
            rx.try_recv().is_err(),
            "answered by the driver, after the state is out"
        );
        let (_, result) = out.answers.pop().unwrap();
        assert_eq!(result, Ok(()));
        let (tx, _rx) = oneshot::channel();
        let mut out = Actions::default();
        l.connect(Some(tx), &mut out);
        assert_eq!(out.answers.len(), 1, "connected: answered at once");
    }

    #[test]
    fn failures_back_off_then_give_up_with_the_policy() {
        let mut l = lifecycle(policy().with_max_attempts(2));
        let t = t0();
        let (tx, _rx) = oneshot::channel();
        l.connect(Some(tx), &mut Actions::default());
        let mut out = Actions::default();
        l.dial_failed(t, Error::Connect("refused".into()), &mut out);
        assert!(matches!(
            out.notices[0],
            Notice::ConnectFailed { attempt: 0, .. }
        ));
        assert_eq!(
            l.state(),
            &State::Reconnecting {
                attempt: 1,
                delay: Duration::from_millis(100)
            }
        );
        assert_eq!(l.poll_timeout(), Some(after(t, 100).at));
        let mut out = Actions::default();
        l.on_timeout(after(t, 99), &mut out);
        assert!(out.link.is_none(), "not yet");
        l.on_timeout(after(t, 100), &mut out);
        assert_eq!(out.link, Some(LinkAction::Dial));
        assert_eq!(out.notices, vec![Notice::ReconnectAttempt { attempt: 1 }]);
        l.dial_failed(
            after(t, 110),
            Error::Connect("refused".into()),
            &mut Actions::default(),
        );
        assert_eq!(l.poll_timeout(), Some(after(t, 310).at), "100 ms × 2");
        l.on_timeout(after(t, 310), &mut Actions::default());
        let mut out = Actions::default();
        l.dial_failed(after(t, 320), Error::Connect("refused".into()), &mut out);
        assert!(
            out.notices
                .contains(&Notice::ReconnectFailed { attempts: 2 })
        );
        assert_eq!(l.state(), &State::Idle);
        assert_eq!(out.answers[0].1, Err(Error::GaveUp { attempts: 2 }));
    }

    #[test]
    fn the_network_hint_goes_offline_and_dials_at_once_when_back() {
        let mut l = lifecycle(policy());
        let t = t0();
        l.connect(None, &mut Actions::default());
        l.linked();
        l.joined(&mut Actions::default());
        let mut out = Actions::default();
        l.network(false, &mut out);
        let end = match out.link {
            Some(LinkAction::End(e)) => e,
            other => panic!("{other:?}"),
        };
        assert_eq!(end.reason, DisconnectReason::NetworkDown);
        l.link_ended(t, &end, &mut Actions::default());
        assert_eq!(l.state(), &State::Offline);
        assert_eq!(l.poll_timeout(), None, "no attempts while offline");
        let mut out = Actions::default();
        l.network(true, &mut out);
        assert_eq!(out.link, Some(LinkAction::Dial), "no backoff wait");
    }

    #[test]
    fn a_lost_link_retries_and_reconnects_count() {
        let mut l = lifecycle(policy());
        let t = t0();
        l.connect(None, &mut Actions::default());
        l.linked();
        l.joined(&mut Actions::default());
        let lost = End::lost(DisconnectReason::TransportClose);
        l.link_ended(t, &lost, &mut Actions::default());
        assert!(matches!(l.state(), State::Reconnecting { attempt: 1, .. }));
        l.on_timeout(after(t, 100), &mut Actions::default());
        l.linked();
        assert_eq!(
            l.joined(&mut Actions::default()),
            1,
            "one attempt before it worked"
        );
        assert_eq!((l.connects, l.reconnects), (2, 1));
        let expired = End::new(DisconnectReason::TokenExpired, After::ReconnectNow);
        let mut out = Actions::default();
        l.link_ended(t, &expired, &mut out);
        assert_eq!(
            out.link,
            Some(LinkAction::Dial),
            "fresh credentials: at once"
        );
    }

    #[test]
    fn refusal_disconnect_and_close_end_waiting() {
        let mut l = lifecycle(policy());
        let (tx, _rx) = oneshot::channel();
        l.connect(Some(tx), &mut Actions::default());
        l.linked();
        let mut out = Actions::default();
        l.unauthorized("/", "bad token".into(), &mut out);
        assert_eq!(
            l.state(),
            &State::Unauthorized {
                message: "bad token".into()
            }
        );
        assert!(matches!(out.answers[0].1, Err(Error::Unauthorized { .. })));
        let end = End::new(DisconnectReason::ClientDisconnect, After::Idle);
        l.link_ended(t0(), &end, &mut Actions::default());
        assert!(matches!(l.state(), State::Unauthorized { .. }), "kept");
        // A new connect() starts over; close() ends the attempt and the engine.
        let mut out = Actions::default();
        assert!(l.connect(None, &mut out));
        let (tx, _rx) = oneshot::channel();
        l.connect(Some(tx), &mut Actions::default());
        let mut out = Actions::default();
        l.close(&mut out);
        assert!(matches!(out.link, Some(LinkAction::End(ref e)) if e.after == After::Exit));
        let mut out = Actions::default();
        l.closed(&mut out);
        assert_eq!(out.answers[0].1, Err(Error::Closed));
        assert_eq!(l.state(), &State::Closed);
    }

    fn connected(policy: ReconnectPolicy, background: BackgroundPolicy) -> Lifecycle {
        let mut l = Lifecycle::new(policy, background, Instant::now());
        l.connect(None, &mut Actions::default());
        l.linked();
        l.joined(&mut Actions::default());
        l
    }

    /// A connected lifecycle under `policy` whose link was just lost, and when.
    fn lost_link(policy: ReconnectPolicy) -> (Lifecycle, Now) {
        let mut l = connected(policy, BackgroundPolicy::Disconnect);
        let t = t0();
        let lost = End::lost(DisconnectReason::TransportClose);
        l.link_ended(t, &lost, &mut Actions::default());
        (l, t)
    }

    fn ended(out: Actions) -> End {
        match out.link {
            Some(LinkAction::End(e)) => e,
            other => panic!("expected the link to end: {other:?}"),
        }
    }

    #[test]
    fn the_background_closes_the_link_keeping_the_session_and_the_foreground_dials_at_once() {
        let mut l = connected(policy(), BackgroundPolicy::Disconnect);
        let t = t0();
        let mut out = Actions::default();
        l.background(0, &mut out);
        let end = ended(out);
        assert_eq!(end.reason, DisconnectReason::Background);
        assert!(
            end.keeps_session() && !end.is_polite(),
            "no DISCONNECT packet"
        );
        l.link_ended(t, &end, &mut Actions::default());
        assert_eq!(l.state(), &State::Background);
        assert_eq!(l.poll_timeout(), None, "no attempt in the background");
        // Neither the network coming back nor an interface change dials meanwhile.
        let mut out = Actions::default();
        l.network(false, &mut out);
        l.network(true, &mut out);
        l.path_changed(
            NetworkPath::available(crate::device::Interface::Cellular),
            &mut out,
        );
        assert_eq!(out.link, None);
        assert_eq!(l.state(), &State::Background);
        let mut out = Actions::default();
        l.foreground(1, &mut out);
        assert_eq!(out.link, Some(LinkAction::Dial), "at once");
        // A background flush that began before that foreground ends late: ignored.
        l.linked();
        l.joined(&mut Actions::default());
        let mut out = Actions::default();
        l.background(0, &mut out);
        assert_eq!(out.link, None, "stale");
        assert_eq!(l.state(), &State::Connected);
    }

    #[test]
    fn keep_alive_keeps_the_link_and_the_retries_in_the_background() {
        let mut l = connected(policy(), BackgroundPolicy::KeepAlive);
        let t = t0();
        let mut out = Actions::default();
        l.background(0, &mut out);
        assert_eq!(out.link, None);
        l.link_ended(t, &End::lost(DisconnectReason::TransportClose), &mut out);
        assert!(matches!(l.state(), State::Reconnecting { .. }));
        l.on_timeout(after(t, 100), &mut out);
        assert_eq!(out.link, Some(LinkAction::Dial));
    }

    #[test]
    fn a_long_outage_suspends_and_slows_attempts_until_a_hint() {
        let suspend = ReconnectPolicy {
            suspend_after: Some(Duration::from_millis(1_000)),
            suspended_retry: Duration::from_millis(5_000),
            ..policy()
        };
        let (mut l, t) = lost_link(suspend);
        let mut now = t;
        // Backoff (100, 200, 400, 400 ms …) until a second has passed since the loss.
        while !matches!(l.state(), State::Suspended { .. }) {
            assert!(matches!(l.state(), State::Reconnecting { .. }));
            now = Now {
                at: l.poll_timeout().unwrap(),
                wall_ms: now.wall_ms,
            };
            l.on_timeout(now, &mut Actions::default());
            l.dial_failed(
                now,
                Error::Connect("refused".into()),
                &mut Actions::default(),
            );
        }
        assert!(now.at.duration_since(t.at) >= Duration::from_millis(1_000));
        assert_eq!(
            l.state(),
            &State::Suspended {
                delay: Duration::from_millis(5_000)
            },
            "jitter 0 in this policy"
        );
        assert_eq!(
            l.poll_timeout(),
            Some(now.at + Duration::from_millis(5_000))
        );
        // Suspension fails nothing; a network-up hint (the platform saw the path come up)
        // connects at once, as does one after the network was down.
        let mut out = Actions::default();
        l.network(true, &mut out);
        assert_eq!(out.link, Some(LinkAction::Dial), "at once while suspended");
        l.dial_failed(
            now,
            Error::Connect("refused".into()),
            &mut Actions::default(),
        );
        assert!(
            matches!(l.state(), State::Suspended { .. }),
            "the hint did not end the outage: {:?}",
            l.state()
        );
        // A platform repeating the same path (Android does, often) changes nothing.
        let wifi = NetworkPath::available(crate::device::Interface::Wifi);
        l.path_changed(wifi, &mut Actions::default());
        let mut out = Actions::default();
        for _ in 0..10 {
            l.path_changed(wifi, &mut out);
        }
        assert_eq!(out.link, None, "no attempt for a repeated report");
        let mut out = Actions::default();
        l.network(false, &mut out);
        assert_eq!(l.state(), &State::Offline);
        l.network(true, &mut out);
        assert_eq!(out.link, Some(LinkAction::Dial));
        assert!(out.answers.is_empty() && out.notices.is_empty());
        let mut out = Actions::default();
        l.dial_failed(now, Error::Connect("refused".into()), &mut out);
        assert!(
            matches!(l.state(), State::Reconnecting { attempt: 1, .. }),
            "the hint started a fresh outage: {:?}",
            l.state()
        );
    }

    #[test]
    fn a_new_interface_replaces_the_link_at_once() {
        use crate::device::Interface;
        let mut l = connected(policy(), BackgroundPolicy::Disconnect);
        let mut out = Actions::default();
        l.path_changed(NetworkPath::available(Interface::Wifi), &mut out);
        assert_eq!(out.link, None, "the first report is no change");
        let costly = NetworkPath {
            expensive: true,
            ..NetworkPath::available(Interface::Wifi)
        };
        l.path_changed(costly, &mut out);
        assert_eq!(out.link, None, "same interface");
        l.path_changed(NetworkPath::available(Interface::Cellular), &mut out);
        let end = ended(out);
        assert_eq!(
            (end.reason.clone(), end.after),
            (DisconnectReason::NetworkChanged, After::ReconnectNow)
        );
        let mut out = Actions::default();
        l.link_ended(t0(), &end, &mut out);
        assert_eq!(out.link, Some(LinkAction::Dial));
        let mut out = Actions::default();
        l.path_changed(NetworkPath::unavailable(), &mut out);
        assert_eq!(
            out.link,
            Some(LinkAction::End(End::new(
                DisconnectReason::NetworkDown,
                After::Offline
            )))
        );
    }

    #[test]
    fn time_is_charged_to_the_state_that_held() {
        let start = Instant::now();
        let mut l = Lifecycle::new(policy(), BackgroundPolicy::Disconnect, start);
        let ms = |n| start + Duration::from_millis(n);
        l.connect(None, &mut Actions::default());
        l.account(ms(100)); // Idle until now; Connecting from here
        l.linked();
        l.joined(&mut Actions::default());
        l.account(ms(300));
        let times = l.state_times(ms(1_300));
        assert_eq!(times.idle, Duration::from_millis(100));
        assert_eq!(times.connecting, Duration::from_millis(200));
        assert_eq!(times.connected, Duration::from_millis(1_000));
    }

    #[test]
    fn disconnect_connect_and_close_in_the_background() {
        let mut l = connected(policy(), BackgroundPolicy::Disconnect);
        let t = t0();
        let mut out = Actions::default();
        l.background(0, &mut out);
        l.link_ended(t, &ended(out), &mut Actions::default());
        // An explicit connect() in the background (a background task) connects anyway.
        let mut out = Actions::default();
        l.connect(None, &mut out);
        assert_eq!(out.link, Some(LinkAction::Dial));
        l.linked();
        l.joined(&mut Actions::default());
        // The next background request applies the policy again; disconnect() then close().
        let mut out = Actions::default();
        l.background(0, &mut out);
        l.link_ended(t, &ended(out), &mut Actions::default());
        l.disconnect(&mut Actions::default());
        assert_eq!(l.state(), &State::Idle);
        let mut out = Actions::default();
        l.foreground(1, &mut out);
        assert_eq!(
            l.state(),
            &State::Idle,
            "not wanted: the foreground does not connect"
        );
        let mut out = Actions::default();
        l.close(&mut out);
        assert_eq!(out.link, Some(LinkAction::Exit));
    }

    #[test]
    fn an_old_outage_does_not_suspend_a_new_connection() {
        let suspend = ReconnectPolicy {
            suspend_after: Some(Duration::from_millis(1_000)),
            ..policy()
        };
        let (mut l, t) = lost_link(suspend);
        l.disconnect(&mut Actions::default());
        // Much later, the app connects again and the first attempt fails.
        let later = after(t, 60_000);
        l.connect(None, &mut Actions::default());
        l.dial_failed(
            later,
            Error::Connect("refused".into()),
            &mut Actions::default(),
        );
        assert!(
            matches!(l.state(), State::Reconnecting { attempt: 1, .. }),
            "{:?}",
            l.state()
        );
    }
}
