//! The servers' application-level signals, shared by both protocols: which events mean "slow
//! down" or "your token expired", and which error codes mean "try again later" or "reconnect".
//! The engine hears [`Signal`]s and [`Then`]s, never a code or an event name.

use std::{sync::Arc, time::Duration};

use super::input::{Signal, Then};
use crate::{
    codec::json::{lookup, timestamp_ms},
    config::ClientConfig,
    time::now_ms,
};

/// The code of a rate-limit refusal or `error` event: the request may go again after a pause.
const RATE_LIMITED: &str = "RATE_LIMIT_EXCEEDED";

/// Server error codes after which a new connection (with backoff) is the cure.
const RECONNECT_CODES: &[&str] = &[
    "CONNECTION_TIMEOUT",
    "INTERNAL_SERVER_ERROR",
    "SERVICE_UNAVAILABLE",
];

/// The name of the event servers report errors with (Socket.IO apps and envelopes alike).
pub(super) const ERROR_EVENT: &str = "error";

/// The signal events a client is configured to recognise.
#[derive(Debug, Clone, Default)]
pub(crate) struct Signals {
    token_expired: Option<Arc<str>>,
    slow_down: Vec<String>,
}

impl Signals {
    /// From the client's configuration (`token_expired_event`, `outbox.rate_limit_events`).
    pub(crate) fn new(config: &ClientConfig) -> Self {
        Self {
            token_expired: config.token_expired_event.as_deref().map(Arc::from),
            slow_down: config.outbox.rate_limit_events.clone(),
        }
    }

    /// What an inbound event named `name` with arguments `args` (a JSON array) asks of the
    /// client, if anything.
    pub(crate) fn of(&self, name: &str, args: &str) -> Option<Signal> {
        if self.token_expired.as_deref() == Some(name) {
            return Some(Signal::CredentialsExpired);
        }
        let named = self.slow_down.iter().any(|n| n == name);
        let coded = name == ERROR_EVENT
            && lookup(args, "/code").is_some_and(|c| c.get() == format!("\"{RATE_LIMITED}\""));
        (named || coded)
            .then(|| Signal::SlowDown(pause_requested(args, now_ms()).unwrap_or(DEFAULT_PAUSE)))
    }
}

/// Whether a server error with `code` is cured by reconnecting.
pub(crate) fn reconnects(code: &str) -> bool {
    RECONNECT_CODES.contains(&code)
}

/// What becomes of a request the server refused with `code`; `args` is the refusal's data as
/// an argument array (a rate limit's `resetTime`). Rate limits and overloaded servers are
/// retried; anything else would be refused again.
pub(crate) fn after_refusal(code: &str, args: &str) -> Then {
    if code == RATE_LIMITED {
        Then::Retry {
            pause: Some(pause_requested(args, now_ms()).unwrap_or(DEFAULT_PAUSE)),
        }
    } else if reconnects(code) {
        Then::Retry { pause: None }
    } else {
        Then::Fail
    }
}

/// How long to pause when a rate-limit signal names no time.
pub(crate) const DEFAULT_PAUSE: Duration = Duration::from_secs(1);

/// How long a server's "rate limit exceeded" signal asks us to wait, from its first argument:
/// `resetTime` (RFC 3339 or epoch milliseconds) or `retryAfter` (seconds), at the top level or
/// under `details` / `data`. `None` when it names no time.
pub(crate) fn pause_requested(args: &str, now_ms: i64) -> Option<Duration> {
    for base in ["", "/details", "/data"] {
        if let Some(at) = lookup(args, &format!("{base}/resetTime")).and_then(timestamp_ms) {
            return Some(Duration::from_millis(
                at.saturating_sub(now_ms).max(0) as u64
            ));
        }
        if let Some(secs) = lookup(args, &format!("{base}/retryAfter"))
            .and_then(|v| v.get().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
        {
            return Some(Duration::from_secs_f64(secs.min(3600.0)));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_pauses_are_read_from_reset_time_or_retry_after() {
        let now = 1_705_314_600_000; // 2024-01-15T10:30:00Z
        let p = |a: &str| pause_requested(a, now);
        assert_eq!(
            p(r#"[{"limit":10,"window":1000,"resetTime":"2024-01-15T10:30:02Z"}]"#),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            p(r#"[{"code":"RATE_LIMIT_EXCEEDED","details":{"resetTime":1705314600500}}]"#),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            p(r#"[{"data":{"retryAfter":1.5}}]"#),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            p(r#"[{"resetTime":"2020-01-01T00:00:00Z"}]"#),
            Some(Duration::ZERO)
        );
        assert_eq!(p(r#"[{"limit":10}]"#), None);
        assert_eq!(p("[]"), None);
    }

    #[test]
    fn events_and_codes_become_signals() {
        let s = Signals {
            token_expired: Some(Arc::from("token:expired")),
            slow_down: vec!["rate_limit_exceeded".into()],
        };
        assert_eq!(
            s.of("token:expired", "[]"),
            Some(Signal::CredentialsExpired)
        );
        assert_eq!(
            s.of("rate_limit_exceeded", r#"[{"retryAfter":2}]"#),
            Some(Signal::SlowDown(Duration::from_secs(2)))
        );
        assert_eq!(
            s.of("error", r#"[{"code":"RATE_LIMIT_EXCEEDED"}]"#),
            Some(Signal::SlowDown(DEFAULT_PAUSE))
        );
        assert_eq!(s.of("error", r#"[{"code":"OTHER"}]"#), None);
        assert_eq!(s.of("metric:recorded", "[1]"), None);
        assert_eq!(after_refusal("INVALID", "[null]"), Then::Fail);
        assert_eq!(
            after_refusal("SERVICE_UNAVAILABLE", "[null]"),
            Then::Retry { pause: None }
        );
        assert_eq!(
            after_refusal("RATE_LIMIT_EXCEEDED", "[null]"),
            Then::Retry {
                pause: Some(DEFAULT_PAUSE)
            }
        );
        assert!(reconnects("INTERNAL_SERVER_ERROR") && !reconnects("AUTH_FAILED"));
    }
}
