//! What a server's application-level signals mean, as configuration: the app heartbeat some
//! platforms run on top of Socket.IO, what each code of their `error` event asks of the
//! client, the limits they announce, and the per-event budgets they enforce. The defaults
//! only pause on `RATE_LIMIT_EXCEEDED`; [`ServerSignals::seed_platforms`] matches the
//! coaching, lottery-room and training-session platforms Pulselink is built for.

use std::time::Duration;

use crate::ratelimit::RateLimit;
pub use crate::ratelimit::{Budget, PauseBackoff};

/// The server's application-level signals and what the client does about them.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSignals {
    /// An app-level heartbeat on top of the transport's; `None`: none.
    pub heartbeat: Option<AppHeartbeat>,
    /// The event servers report errors with (`{code, message, details}` as first argument).
    pub error_event: String,
    /// What each error code makes the client do; a code not listed is only surfaced
    /// ([`crate::Notice::ServerError`] and the event itself).
    pub error_actions: Vec<(String, ErrorAction)>,
    /// The outbox's pause after a "slow down" that names no reset time: `initial`, growing by
    /// `multiplier` with each further one up to `max` (those arriving during a pause do not
    /// count); back to `initial` once `max` passes after a pause without another. A server's
    /// limit announcement can replace it.
    pub pause_backoff: PauseBackoff,
    /// Events that announce limits: a quota (`{quota: {messages-sent, messages-limit,
    /// reset-time}}`), a burst control (`{burst: {max-rate, window-ms}}`, with an optional
    /// `backoff: {initial, max, multiplier}`), an adaptive rate (`{adaptive:
    /// {requests-per-second}}`). camelCase field names are read too.
    pub limit_events: Vec<String>,
    /// Budgets per event class, kept by the outbox so it never trips the server's own
    /// limit: each emit whose name matches `pattern` takes a token from its bucket.
    pub budgets: Vec<Budget>,
}

/// An app-level ping the client sends and the reply the server answers it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppHeartbeat {
    /// The event the client emits (volatile: never queued, never stored).
    pub event: String,
    /// The event the server answers with.
    pub reply: String,
    /// Silence after which the client pings: app traffic from the server (any event or
    /// acknowledgement) within it makes a ping unnecessary.
    pub interval: Duration,
    /// How long the reply (or any app traffic) may take before the link counts as dead and
    /// is reconnected.
    pub timeout: Duration,
}

/// What an error code asks of the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorAction {
    /// The credentials are no good: ask the auth provider for fresh ones and reconnect.
    RefreshAuth,
    /// Too much: pause the outbox (until the reset time the error names, else by
    /// [`ServerSignals::pause_backoff`]).
    PauseOutbox,
    /// The connection is unhealthy: reconnect (with backoff).
    Reconnect,
    /// Tell the app ([`crate::Notice::ServerError`], and the event); nothing else.
    Surface,
}

/// No app heartbeat, `error` events whose `RATE_LIMIT_EXCEEDED` pauses the outbox (and
/// every other code only surfaced: a Socket.IO app's `error` event may report one failed
/// request, no reason to drop the link), no announcements, no budgets. The envelope
/// protocol's own server errors (`SERVICE_UNAVAILABLE`, `INTERNAL_SERVER_ERROR`,
/// `CONNECTION_TIMEOUT`) reconnect whatever this says, unless a code is listed here.
impl Default for ServerSignals {
    fn default() -> Self {
        Self {
            heartbeat: None,
            error_event: "error".into(),
            error_actions: vec![("RATE_LIMIT_EXCEEDED".to_owned(), ErrorAction::PauseOutbox)],
            pause_backoff: PauseBackoff::default(),
            limit_events: Vec::new(),
            budgets: Vec::new(),
        }
    }
}

/// The longest pause or budget window accepted: longer would overflow clocks or stop a
/// client for good.
const LONGEST: Duration = Duration::from_secs(86_400);

impl ServerSignals {
    /// The seed platforms' signals: `ping` every 30 s answered by `pong` (10 s to answer);
    /// `AUTH_FAILED` refreshes the credentials, `RATE_LIMITED`/`RATE_LIMIT_EXCEEDED` pause
    /// the outbox (100 ms growing ×1.5 to 5 s), `CONNECTION_ERROR` reconnects; limits
    /// announced on `limits`, `quota` or `rate_limit`; the lottery rooms' budgets of 100
    /// `client:*` events and 600 events in all per minute.
    pub fn seed_platforms() -> Self {
        let mut s = Self {
            heartbeat: Some(AppHeartbeat {
                event: "ping".into(),
                reply: "pong".into(),
                interval: Duration::from_secs(30),
                timeout: Duration::from_secs(10),
            }),
            pause_backoff: PauseBackoff {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(5),
                multiplier: 1.5,
            },
            limit_events: vec!["limits".into(), "quota".into(), "rate_limit".into()],
            budgets: vec![
                Budget::new("client:*", RateLimit::new(100, Duration::from_secs(60))),
                Budget::new("*", RateLimit::new(600, Duration::from_secs(60))),
            ],
            ..Self::default()
        };
        s.error_actions.extend(
            [
                ("AUTH_FAILED", ErrorAction::RefreshAuth),
                ("RATE_LIMITED", ErrorAction::PauseOutbox),
                ("CONNECTION_ERROR", ErrorAction::Reconnect),
                ("CONNECTION_TIMEOUT", ErrorAction::Reconnect),
                ("INTERNAL_SERVER_ERROR", ErrorAction::Reconnect),
                ("SERVICE_UNAVAILABLE", ErrorAction::Reconnect),
            ]
            .into_iter()
            .map(|(c, a)| (c.to_owned(), a)),
        );
        s
    }

    /// What `code` asks of the client (`Surface` for a code not listed).
    pub fn action(&self, code: &str) -> ErrorAction {
        self.listed(code).unwrap_or(ErrorAction::Surface)
    }

    /// What `code` asks, if it is listed.
    pub(crate) fn listed(&self, code: &str) -> Option<ErrorAction> {
        self.error_actions
            .iter()
            .find(|(c, _)| c == code)
            .map(|(_, a)| *a)
    }

    /// Checks every field, naming the first that is unusable.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if let Some(h) = &self.heartbeat {
            if h.event.is_empty() || h.reply.is_empty() {
                return Err("signals heartbeat event and reply must be named".into());
            }
            if h.interval.is_zero() || h.timeout.is_zero() {
                return Err("signals heartbeat interval and timeout must be positive".into());
            }
        }
        let b = &self.pause_backoff;
        if b.initial.is_zero()
            || b.max < b.initial
            || b.max > LONGEST
            || !b.multiplier.is_finite()
            || b.multiplier < 1.0
        {
            return Err(
                "signals pause_backoff needs 0 < initial <= max and a multiplier of at least 1"
                    .into(),
            );
        }
        if let Some(b) = self.budgets.iter().find(|b| {
            b.pattern.is_empty()
                || b.limit.events == 0
                || b.limit.per.is_zero()
                || b.limit.per > LONGEST
        }) {
            return Err(format!(
                "signals budget {:?} needs a pattern and a limit of 1 or more per at most a day",
                b.pattern
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_names_or_prefixes() {
        let b = |p: &str| Budget::new(p, RateLimit::new(1, Duration::from_secs(1)));
        assert!(b("client:*").matches("client:bet"));
        assert!(!b("client:*").matches("app:bet"));
        assert!(b("*").matches("anything"));
        assert!(b("tick").matches("tick") && !b("tick").matches("ticks"));
    }

    #[test]
    fn codes_map_to_actions_and_unknown_ones_are_surfaced() {
        let s = ServerSignals::seed_platforms();
        assert_eq!(s.action("AUTH_FAILED"), ErrorAction::RefreshAuth);
        assert_eq!(s.action("RATE_LIMITED"), ErrorAction::PauseOutbox);
        assert_eq!(s.action("RATE_LIMIT_EXCEEDED"), ErrorAction::PauseOutbox);
        assert_eq!(s.action("CONNECTION_ERROR"), ErrorAction::Reconnect);
        assert_eq!(s.action("VALIDATION_ERROR"), ErrorAction::Surface);
        assert_eq!(
            ServerSignals::default().action("AUTH_FAILED"),
            ErrorAction::Surface
        );
        assert!(s.validate().is_ok());
        let mut bad = s.clone();
        bad.pause_backoff.multiplier = 0.5;
        assert!(bad.validate().unwrap_err().contains("pause_backoff"));
        let mut bad = s;
        bad.budgets
            .push(Budget::new("x", RateLimit::new(0, Duration::from_secs(1))));
        assert!(bad.validate().unwrap_err().contains("budget"));
    }
}
