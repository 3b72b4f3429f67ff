//! The connection's life as the app sees it: whether a connection is wanted, when the next
//! attempt starts (backoff with jitter), the network hint, `connect()` callers waiting for
//! the result, and the [`State`] the app reads.
//!
//! Phases: Idle → Dialing → Linked → (Waiting → Dialing)* …, Offline while the app says the
//! network is down, Closing at the end. Inputs are the app's commands and what became of a
//! dial or a link; outputs are [`LinkAction`]s and notices.

use tokio::time::Instant;
use tracing::debug;

pub(crate) use super::actions::ConnectWaiter;
use super::actions::{Actions, After, End, LinkAction};
use crate::{
    backoff::{Backoff, ReconnectPolicy},
    error::Error,
    event::{DisconnectReason, Notice, State},
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
    /// Successful connections, and how many of them came after a loss.
    pub(crate) connects: u64,
    pub(crate) reconnects: u64,
}

impl Lifecycle {
    pub(crate) fn new(policy: ReconnectPolicy) -> Self {
        Self {
            reconnect_enabled: policy.enabled,
            backoff: Backoff::new(policy),
            phase: Phase::Idle,
            wanted: false,
            network_up: true,
            ever_connected: false,
            state: State::Idle,
            waiters: Vec::new(),
            connects: 0,
            reconnects: 0,
        }
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
        if self.wanted || self.phase == Phase::Closing {
            return false;
        }
        self.wanted = true;
        self.backoff.reset();
        if self.network_up {
            self.dial(out);
        } else {
            self.go_offline();
        }
        true
    }

    fn dial(&mut self, out: &mut Actions) {
        if self.backoff.attempts() == 0 && !self.ever_connected {
            self.set_state(State::Connecting);
        }
        self.phase = Phase::Dialing;
        out.link = Some(LinkAction::Dial);
    }

    fn go_offline(&mut self) {
        self.phase = Phase::Offline;
        self.set_state(State::Offline);
    }

    /// The app calls `disconnect()`: leave, and stop trying.
    pub(crate) fn disconnect(&mut self, out: &mut Actions) {
        self.wanted = false;
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
                match (was, up, self.wanted) {
                    (true, false, true) => self.go_offline(),
                    (false, true, true) => {
                        // Back: no reason to sit out a backoff meant for a dead network.
                        self.backoff.reset();
                        self.dial(out);
                    }
                    _ => {}
                }
            }
        }
    }

    /// The attempt under way failed.
    pub(crate) fn dial_failed(&mut self, now: Now, error: String, out: &mut Actions) {
        out.notify(Notice::ConnectFailed {
            attempt: self.backoff.attempts(),
            error: error.clone(),
        });
        self.schedule_retry(now, Error::Connect(error), out);
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
            After::ReconnectNow => {
                self.backoff.reset();
                // No backoff wait sets a state on this path; say what is happening.
                self.set_state(State::Reconnecting {
                    attempt: 1,
                    delay: std::time::Duration::ZERO,
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
        match self.backoff.next_delay() {
            Some((attempt, delay)) => {
                debug!(attempt, ?delay, "reconnect scheduled");
                self.set_state(State::Reconnecting { attempt, delay });
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
        let mut l = Lifecycle::new(policy());
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
        let mut l = Lifecycle::new(policy().with_max_attempts(2));
        let t = t0();
        let (tx, _rx) = oneshot::channel();
        l.connect(Some(tx), &mut Actions::default());
        let mut out = Actions::default();
        l.dial_failed(t, "refused".into(), &mut out);
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
        l.dial_failed(after(t, 110), "refused".into(), &mut Actions::default());
        assert_eq!(l.poll_timeout(), Some(after(t, 310).at), "100 ms × 2");
        l.on_timeout(after(t, 310), &mut Actions::default());
        let mut out = Actions::default();
        l.dial_failed(after(t, 320), "refused".into(), &mut out);
        assert!(
            out.notices
                .contains(&Notice::ReconnectFailed { attempts: 2 })
        );
        assert_eq!(l.state(), &State::Idle);
        assert_eq!(out.answers[0].1, Err(Error::GaveUp { attempts: 2 }));
    }

    #[test]
    fn the_network_hint_goes_offline_and_dials_at_once_when_back() {
        let mut l = Lifecycle::new(policy());
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
        let mut l = Lifecycle::new(policy());
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
        let mut l = Lifecycle::new(policy());
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
}
