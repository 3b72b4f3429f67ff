//! The servers' application-level signals, shared by both protocols: which events mean "slow
//! down" or "your token expired", and which error codes mean "try again later" or "reconnect".
//! The engine hears [`Signal`]s and [`Then`]s, never a code or an event name.

use std::{sync::Arc, time::Duration};

use super::input::{Signal, Then};
use crate::{
    codec::json::{lookup, timestamp_ms},
    config::ClientConfig,
    ratelimit::{Announced, RateLimit},
    server_signals::{ErrorAction, PauseBackoff, ServerSignals},
    time::now_ms,
};

/// The name of the event servers report errors with, as the envelope protocol carries it.
pub(super) const ERROR_EVENT: &str = "error";

/// The envelope protocol's server errors that a new connection cures, unless configured
/// otherwise.
const ENVELOPE_RECONNECTS: &[&str] = &[
    "CONNECTION_TIMEOUT",
    "INTERNAL_SERVER_ERROR",
    "SERVICE_UNAVAILABLE",
];

/// The signal events a client is configured to recognise.
#[derive(Debug, Clone, Default)]
pub(crate) struct Signals {
    token_expired: Option<Arc<str>>,
    slow_down: Vec<String>,
    server: Arc<ServerSignals>,
    /// Codes the protocol itself defines as "reconnect" (the envelope protocol's).
    protocol_reconnects: &'static [&'static str],
}

impl Signals {
    /// From the client's configuration (`token_expired_event`, `outbox.rate_limit_events`,
    /// `signals`).
    pub(crate) fn new(config: &ClientConfig) -> Self {
        Self {
            token_expired: config.token_expired_event.as_deref().map(Arc::from),
            slow_down: config.outbox.rate_limit_events.clone(),
            server: Arc::new(config.signals.clone()),
            protocol_reconnects: &[],
        }
    }

    /// These signals, with the envelope protocol's own reconnect codes.
    pub(crate) fn for_envelope(mut self) -> Self {
        self.protocol_reconnects = ENVELOPE_RECONNECTS;
        self
    }

    /// What `code` asks: as configured, else what the protocol defines, else surface it.
    fn action(&self, code: &str) -> ErrorAction {
        self.server.listed(code).unwrap_or_else(|| {
            if self.protocol_reconnects.contains(&code) {
                ErrorAction::Reconnect
            } else {
                ErrorAction::Surface
            }
        })
    }

    /// What an inbound event named `name` with arguments `args` (a JSON array) asks of the
    /// client, if anything.
    pub(crate) fn of(&self, name: &str, args: &str) -> Option<Signal> {
        if self.token_expired.as_deref() == Some(name) {
            return Some(Signal::CredentialsExpired);
        }
        if self.slow_down.iter().any(|n| n == name) {
            return Some(Signal::SlowDown(pause_requested(args, now_ms())));
        }
        if name == self.server.error_event
            && let Some(code) = text(args, "/code")
        {
            let message = text(args, "/message").unwrap_or_default();
            return Some(self.error(code, message, args));
        }
        if self
            .server
            .heartbeat
            .as_ref()
            .is_some_and(|h| h.reply == name)
        {
            return Some(Signal::Pong);
        }
        if self.server.limit_events.iter().any(|n| n == name) {
            return announced(args, now_ms()).map(Signal::Limits);
        }
        None
    }

    /// The signal of a server error with `code`; `args` holds its data (a reset time).
    pub(crate) fn error(&self, code: String, message: String, args: &str) -> Signal {
        Signal::Error {
            action: self.action(&code),
            pause: pause_requested(args, now_ms()),
            code,
            message,
        }
    }

    /// What becomes of a request the server refused with `code`; `args` is the refusal's
    /// data as an argument array (a rate limit's `resetTime`). What pauses the outbox or
    /// reconnects is retried; anything else would be refused again.
    pub(crate) fn after_refusal(&self, code: &str, args: &str) -> Then {
        match self.action(code) {
            ErrorAction::PauseOutbox => Then::Retry {
                pause: Some(
                    pause_requested(args, now_ms()).unwrap_or(self.server.pause_backoff.initial),
                ),
            },
            ErrorAction::Reconnect => Then::Retry { pause: None },
            ErrorAction::RefreshAuth | ErrorAction::Surface => Then::Fail,
        }
    }
}

/// The string at `pointer` in the first argument.
fn text(args: &str, pointer: &str) -> Option<String> {
    serde_json::from_str(lookup(args, pointer)?.get()).ok()
}

/// The number at the first of `pointers` that holds one, in the first argument.
fn number(args: &str, pointers: &[&str]) -> Option<f64> {
    pointers.iter().find_map(|p| {
        lookup(args, p)
            .and_then(|v| v.get().parse::<f64>().ok())
            .filter(|n| n.is_finite() && *n >= 0.0)
    })
}

/// The longest window, period or pause an announcement may set: a server's typo must not
/// overflow a clock (or stop the client for years).
const LONGEST_MS: f64 = 3_600_000.0;

/// `ms` milliseconds, within 1 ms and an hour.
fn bounded_ms(ms: f64) -> Duration {
    Duration::from_secs_f64(ms.clamp(1.0, LONGEST_MS) / 1000.0)
}

/// The limits an announcement states, read in kebab-case or camelCase; `None` when it
/// states none this client understands.
pub(crate) fn announced(args: &str, now_ms: i64) -> Option<Announced> {
    let mut a = Announced::default();
    if let Some(limit) = number(args, &["/quota/messages-limit", "/quota/messagesLimit"]) {
        let sent = number(args, &["/quota/messages-sent", "/quota/messagesSent"]).unwrap_or(0.0);
        let reset = ["/quota/reset-time", "/quota/resetTime"]
            .iter()
            .find_map(|p| lookup(args, p).and_then(timestamp_ms));
        // No reset time: hold at the limit for a minute, then ask the server again by
        // trying (its next announcement or refusal says more).
        let reset_in = reset.map_or(Duration::from_secs(60), |at| {
            Duration::from_millis(at.saturating_sub(now_ms).clamp(0, LONGEST_MS as i64) as u64)
        });
        a.quota = Some(((limit - sent).max(0.0) as u64, limit as u64, reset_in));
    }
    if let Some(rate) = number(args, &["/burst/max-rate", "/burst/maxRate"]) {
        let window = number(args, &["/burst/window-ms", "/burst/windowMs"]).unwrap_or(1000.0);
        // At least one event per window: a fraction of one would allow none.
        a.rate = Some(RateLimit::new(
            rate.clamp(1.0, f64::from(u32::MAX)).round() as u32,
            bounded_ms(window),
        ));
    }
    let per_second = [
        "/adaptive/requests-per-second",
        "/adaptive/requestsPerSecond",
        "/requests-per-second",
        "/requestsPerSecond",
    ];
    if let Some(rate) = number(args, &per_second) {
        // A rate, not a burst: one request every 1/rate seconds.
        a.rate = Some(RateLimit::new(1, bounded_ms(1000.0 / rate.max(1e-6))));
    }
    if let (Some(initial), Some(max)) = (
        number(args, &["/backoff/initial"]),
        number(args, &["/backoff/max"]),
    ) {
        let multiplier = number(args, &["/backoff/multiplier"])
            .unwrap_or(1.0)
            .clamp(1.0, 100.0);
        let initial = bounded_ms(initial);
        a.backoff = Some(PauseBackoff {
            initial,
            max: bounded_ms(max).max(initial),
            multiplier,
        });
    }
    (a != Announced::default()).then_some(a)
}

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
            server: Arc::new(ServerSignals::seed_platforms()),
            protocol_reconnects: &[],
        };
        assert_eq!(
            s.of("token:expired", "[]"),
            Some(Signal::CredentialsExpired)
        );
        assert_eq!(
            s.of("rate_limit_exceeded", r#"[{"retryAfter":2}]"#),
            Some(Signal::SlowDown(Some(Duration::from_secs(2))))
        );
        assert_eq!(
            s.of("error", r#"[{"code":"RATE_LIMITED","message":"slow"}]"#),
            Some(Signal::Error {
                code: "RATE_LIMITED".into(),
                message: "slow".into(),
                action: ErrorAction::PauseOutbox,
                pause: None
            })
        );
        assert!(matches!(
            s.of("error", r#"[{"code":"AUTH_FAILED"}]"#),
            Some(Signal::Error {
                action: ErrorAction::RefreshAuth,
                ..
            })
        ));
        assert!(matches!(
            s.of("error", r#"[{"code":"CONNECTION_ERROR"}]"#),
            Some(Signal::Error {
                action: ErrorAction::Reconnect,
                ..
            })
        ));
        assert!(matches!(
            s.of("error", r#"[{"code":"OTHER","details":{"retryAfter":1}}]"#),
            Some(Signal::Error {
                action: ErrorAction::Surface,
                pause: Some(_),
                ..
            })
        ));
        // An `error` event without a code is the app's own business.
        assert_eq!(s.of("error", r#"[{"message":"x"}]"#), None);
        assert_eq!(s.of("pong", "[]"), Some(Signal::Pong));
        assert_eq!(s.of("metric:recorded", "[1]"), None);
        assert_eq!(s.after_refusal("INVALID", "[null]"), Then::Fail);
        assert_eq!(
            s.after_refusal("SERVICE_UNAVAILABLE", "[null]"),
            Then::Retry { pause: None }
        );
        assert_eq!(
            s.after_refusal("RATE_LIMIT_EXCEEDED", "[null]"),
            Then::Retry {
                pause: Some(Duration::from_millis(100))
            }
        );
        let plain = Signals::default();
        assert_eq!(plain.of("pong", "[]"), None, "no heartbeat configured");
    }

    #[test]
    fn announcements_become_limits() {
        let now = 1_705_314_600_000; // 2024-01-15T10:30:00Z
        let quota = r#"[{"quota":{"messages-sent":90,"messages-limit":100,"reset-time":"2024-01-15T10:30:30Z"}}]"#;
        assert_eq!(
            announced(quota, now),
            Some(Announced {
                quota: Some((10, 100, Duration::from_secs(30))),
                ..Default::default()
            })
        );
        let burst = r#"[{"burst":{"maxRate":20,"windowMs":2000},"backoff":{"initial":100,"max":5000,"multiplier":1.5}}]"#;
        let a = announced(burst, now).unwrap();
        assert_eq!(a.rate, Some(RateLimit::new(20, Duration::from_secs(2))));
        assert_eq!(
            a.backoff,
            Some(PauseBackoff {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(5),
                multiplier: 1.5
            })
        );
        assert_eq!(
            announced(r#"[{"adaptive":{"requests-per-second":0.5}}]"#, now)
                .unwrap()
                .rate,
            Some(RateLimit::new(1, Duration::from_secs(2)))
        );
        assert_eq!(
            announced(r#"[{"requestsPerSecond":8}]"#, now).unwrap().rate,
            Some(RateLimit::new(1, Duration::from_millis(125)))
        );
        assert_eq!(announced(r#"[{"quota":{"note":1}}]"#, now), None);
        assert_eq!(announced("[]", now), None);
    }
}
