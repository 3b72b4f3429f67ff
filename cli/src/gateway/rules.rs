//! From an input line to an emit: parsing, the config file's rules (name mapping, priority,
//! coalescing, minimum interval, TTL) and the reasons a line is refused. Pure, so it is
//! unit-tested without I/O.

use std::{collections::HashMap, fmt, time::Duration};

use pulselink::{Args, EmitOptions, Priority};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::time::Instant;

/// `gateway.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GatewayConfig {
    /// Forward events no rule matches unchanged (default: refuse them when rules exist).
    #[serde(default)]
    pub(crate) pass_unknown: bool,
    /// Longest input line accepted, in bytes.
    #[serde(default)]
    pub(crate) max_line_bytes: Option<usize>,
    /// The rules, `[[rule]]` tables.
    #[serde(default, rename = "rule")]
    pub(crate) rules: Vec<Rule>,
    /// Subscriptions sent on every connect, `[[subscription]]` tables.
    #[serde(default, rename = "subscription")]
    pub(crate) subscriptions: Vec<Subscription>,
}

/// One `[[subscription]]`: an event and payload the server must get on every connect, such
/// as `room:subscribe {"roomId": "gym-3"}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Subscription {
    /// The event, e.g. `room:subscribe`.
    pub(crate) event: String,
    /// Its payload (one argument).
    pub(crate) data: toml::Value,
    /// The event that undoes it.
    pub(crate) unsubscribe: Option<String>,
}

impl Subscription {
    /// The payload as the emit's one JSON argument.
    pub(crate) fn args(&self) -> Result<Args, String> {
        let value = serde_json::to_value(&self.data).map_err(|e| e.to_string())?;
        Ok(Args::from(value))
    }
}

/// One `[[rule]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rule {
    /// The input event name it applies to.
    #[serde(rename = "match")]
    pub(crate) input: String,
    /// The event name sent (default: the input name).
    pub(crate) event: Option<String>,
    /// `high`, `normal` or `low`.
    pub(crate) priority: Option<String>,
    /// Keep only the newest undelivered reading (per `key` of the line, if it has one).
    #[serde(default)]
    pub(crate) coalesce: bool,
    /// Drop readings that follow the previous accepted one (same key) sooner than this.
    pub(crate) min_interval_ms: Option<u64>,
    /// Drop readings not delivered within this time.
    pub(crate) ttl_secs: Option<u64>,
}

impl GatewayConfig {
    /// Reads and checks a config file's text.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let config: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        for r in &config.rules {
            if let Some(p) = &r.priority {
                parse_priority(p).map_err(|e| format!("rule {:?}: {e}", r.input))?;
            }
        }
        for s in &config.subscriptions {
            s.args()
                .map_err(|e| format!("subscription {:?}: {e}", s.event))?;
        }
        Ok(config)
    }
}

fn parse_priority(p: &str) -> Result<Priority, String> {
    match p {
        "high" => Ok(Priority::High),
        "normal" => Ok(Priority::Normal),
        "low" => Ok(Priority::Low),
        other => Err(format!(
            "priority must be high, normal or low, not {other:?}"
        )),
    }
}

/// An input line: `{"event": "...", "data": ..., "priority"?: "...", "key"?: "..."}`.
#[derive(Deserialize)]
struct Line<'a> {
    event: String,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    priority: Option<String>,
    key: Option<String>,
}

/// What to send for a line.
#[derive(Debug)]
pub(crate) struct Routed {
    pub(crate) event: String,
    pub(crate) args: Args,
    pub(crate) options: EmitOptions,
}

/// Why a line was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Not a JSON object of the expected shape.
    NotJson(String),
    /// No rule for this event, and unknown events are not passed.
    UnknownEvent(String),
    /// Longer than the limit.
    TooLong(usize),
    /// Within the rule's minimum interval of the previous reading (not an error: throttling).
    Throttled,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::NotJson(e) => write!(f, "not a JSON event line: {e}"),
            Refused::UnknownEvent(e) => write!(f, "no rule for event {e:?}"),
            Refused::TooLong(n) => write!(f, "line of {n} bytes is over the limit"),
            Refused::Throttled => f.write_str("throttled"),
        }
    }
}

/// Applies the rules to lines.
pub(crate) struct Router {
    config: GatewayConfig,
    by_input: HashMap<String, usize>,
    /// When each (rule, key) last let a reading through.
    last: HashMap<(usize, String), Instant>,
}

/// The default longest line: 64 KiB of telemetry is already suspicious.
pub(crate) const MAX_LINE: usize = 64 * 1024;

impl Router {
    pub(crate) fn new(config: GatewayConfig) -> Self {
        let by_input = config
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.input.clone(), i))
            .collect();
        Self {
            config,
            by_input,
            last: HashMap::new(),
        }
    }

    /// The longest line accepted.
    pub(crate) fn max_line(&self) -> usize {
        self.config.max_line_bytes.unwrap_or(MAX_LINE)
    }

    /// What to send for `line`, read at `now`.
    pub(crate) fn route(&mut self, line: &str, now: Instant) -> Result<Routed, Refused> {
        if line.len() > self.max_line() {
            return Err(Refused::TooLong(line.len()));
        }
        let parsed: Line<'_> =
            serde_json::from_str(line).map_err(|e| Refused::NotJson(e.to_string()))?;
        let data = parsed.data.map_or("null", RawValue::get);
        let args = Args::from_json_array(format!("[{data}]"))
            .map_err(|e| Refused::NotJson(e.to_string()))?;
        let mut options = EmitOptions::default().confirm();
        if let Some(p) = &parsed.priority {
            options.priority = parse_priority(p).map_err(Refused::NotJson)?;
        }
        let rule = match self.by_input.get(&parsed.event) {
            Some(&i) => Some((i, self.config.rules[i].clone())),
            None if self.config.rules.is_empty() || self.config.pass_unknown => None,
            None => return Err(Refused::UnknownEvent(parsed.event)),
        };
        let Some((i, rule)) = rule else {
            return Ok(Routed {
                event: parsed.event,
                args,
                options,
            });
        };
        let event = rule.event.clone().unwrap_or(parsed.event);
        let key = parsed.key.unwrap_or_default();
        if let Some(ms) = rule.min_interval_ms {
            let slot = (i, key.clone());
            if let Some(prev) = self.last.get(&slot)
                && now.saturating_duration_since(*prev) < Duration::from_millis(ms)
            {
                return Err(Refused::Throttled);
            }
            self.last.insert(slot, now);
        }
        if let Some(p) = &rule.priority
            && parsed.priority.is_none()
        {
            options.priority = parse_priority(p).map_err(Refused::NotJson)?;
        }
        if rule.coalesce {
            // Coalesced readings replace each other: nobody waits for their acks.
            options.confirm = false;
            options.coalesce_key = Some(if key.is_empty() {
                event.clone()
            } else {
                format!("{event}:{key}")
            });
        }
        options.ttl = rule.ttl_secs.map(Duration::from_secs);
        Ok(Routed {
            event,
            args,
            options,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
        [[rule]]
        match = "hr"
        event = "metric:recorded"
        coalesce = true
        min_interval_ms = 1000

        [[rule]]
        match = "MEDICAL_STATUS_CHANGED"
        priority = "high"
        ttl_secs = 600
    "#;

    #[test]
    fn lines_without_rules_pass_as_they_are() {
        let mut r = Router::new(GatewayConfig::default());
        let t = Instant::now();
        let out = r
            .route(r#"{"event":"tick","data":{"n":1},"priority":"low"}"#, t)
            .unwrap();
        assert_eq!(out.event, "tick");
        assert_eq!(out.args.json(), r#"[{"n":1}]"#);
        assert_eq!(out.options.priority, Priority::Low);
        assert!(out.options.confirm, "readings are kept until acknowledged");
        assert_eq!(
            r.route(r#"{"event":"x"}"#, t).unwrap().args.json(),
            "[null]"
        );
    }

    #[test]
    fn rules_map_throttle_prioritise_and_coalesce() {
        let mut r = Router::new(GatewayConfig::parse(CONFIG).unwrap());
        let t = Instant::now();
        let hr = |bpm: u32, key: &str| {
            format!(r#"{{"event":"hr","data":{{"bpm":{bpm}}},"key":"{key}"}}"#)
        };
        let first = r.route(&hr(70, "strap1"), t).unwrap();
        assert_eq!(first.event, "metric:recorded");
        assert_eq!(
            first.options.coalesce_key.as_deref(),
            Some("metric:recorded:strap1")
        );
        assert!(!first.options.confirm);
        let soon = t + Duration::from_millis(400);
        assert_eq!(
            r.route(&hr(71, "strap1"), soon).unwrap_err(),
            Refused::Throttled
        );
        assert!(
            r.route(&hr(71, "strap2"), soon).is_ok(),
            "another key has its own interval"
        );
        assert!(
            r.route(&hr(72, "strap1"), t + Duration::from_millis(1000))
                .is_ok()
        );

        let alert = r
            .route(
                r#"{"event":"MEDICAL_STATUS_CHANGED","data":{"s":"fall"}}"#,
                t,
            )
            .unwrap();
        assert_eq!(alert.options.priority, Priority::High);
        assert_eq!(alert.options.ttl, Some(Duration::from_secs(600)));
        assert_eq!(
            r.route(r#"{"event":"power","data":1}"#, t).unwrap_err(),
            Refused::UnknownEvent("power".into())
        );
    }

    #[test]
    fn the_example_config_parses() {
        let text = include_str!("../../examples/gateway.toml");
        let config = GatewayConfig::parse(text).unwrap();
        assert_eq!(config.rules.len(), 5);
        let sub = &config.subscriptions[0];
        assert_eq!(sub.args().unwrap().json(), r#"[{"roomId":"gym-3"}]"#);
    }

    #[test]
    fn bad_lines_are_refused_with_a_reason() {
        let mut r = Router::new(GatewayConfig {
            max_line_bytes: Some(64),
            ..Default::default()
        });
        let t = Instant::now();
        assert!(matches!(r.route("not json", t), Err(Refused::NotJson(_))));
        assert!(matches!(
            r.route(r#"{"data":1}"#, t),
            Err(Refused::NotJson(_))
        ));
        assert!(matches!(
            r.route(r#"{"event":"x","priority":"urgent"}"#, t),
            Err(Refused::NotJson(m)) if m.contains("priority")
        ));
        let long = format!(r#"{{"event":"x","data":"{}"}}"#, "a".repeat(100));
        assert_eq!(r.route(&long, t).unwrap_err(), Refused::TooLong(long.len()));
        assert!(GatewayConfig::parse("[[rule]]\nmatch = 1").is_err());
        assert!(GatewayConfig::parse("[[rule]]\nmatch = \"a\"\npriority = \"x\"").is_err());
        assert!(
            GatewayConfig::parse("bogus = true").is_err(),
            "unknown keys are errors"
        );
    }
}
