//! Client-side rate limits: token buckets the outbox takes a token from per event sent, and a
//! pause the server can ask for.

use std::{collections::VecDeque, time::Duration};

use tokio::time::Instant;

/// At most `events` per `per`, with bursts up to `events` (seed: 10 per second per session,
/// 100 per minute per connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Events allowed per window (also the burst size).
    pub events: u32,
    /// The window.
    pub per: Duration,
}

impl RateLimit {
    /// `events` per `per`.
    pub fn new(events: u32, per: Duration) -> Self {
        Self { events, per }
    }
}

/// A pause that grows while the server keeps saying "slow down".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PauseBackoff {
    /// The first pause.
    pub initial: Duration,
    /// The longest pause.
    pub max: Duration,
    /// Growth per further signal.
    pub multiplier: f64,
}

/// One second, as before there was a backoff: a server that names no time is asked again
/// after that long.
impl Default for PauseBackoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(1),
            multiplier: 1.0,
        }
    }
}

/// A limit for the emits whose name matches a pattern: at most `limit.events` in any
/// `limit.per` (kept as a [`Window`], so the server's own count is never exceeded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// An event name, or a prefix ending in `*` (`client:*`); `*` alone matches every event.
    pub pattern: String,
    /// The budget.
    pub limit: RateLimit,
}

impl Budget {
    /// `limit` for the events `pattern` matches.
    pub fn new(pattern: impl Into<String>, limit: RateLimit) -> Self {
        Self {
            pattern: pattern.into(),
            limit,
        }
    }

    /// Whether an emit named `event` spends from this budget.
    pub fn matches(&self, event: &str) -> bool {
        match self.pattern.strip_suffix('*') {
            Some(prefix) => event.starts_with(prefix),
            None => event == self.pattern,
        }
    }
}

/// One token bucket.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    capacity: f64,
    tokens: f64,
    /// Tokens per second.
    rate: f64,
    last: Instant,
}

impl Bucket {
    pub(crate) fn new(limit: RateLimit, now: Instant) -> Self {
        let capacity = f64::from(limit.events.max(1));
        Self {
            capacity,
            tokens: capacity,
            rate: capacity / limit.per.as_secs_f64().max(1e-9),
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.last = now;
    }

    /// When a token will be there (now if one is).
    pub(crate) fn ready_at(&mut self, now: Instant) -> Instant {
        self.refill(now);
        if self.tokens >= 1.0 {
            now
        } else {
            now + Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }

    /// Takes a token; the caller checked [`Bucket::ready_at`].
    pub(crate) fn take(&mut self) {
        self.tokens -= 1.0;
    }
}

/// At most `limit` sends in any `per`-long stretch of time: a log of the last `limit` sends.
/// Unlike a token bucket (which lets a full burst follow a full window), it never exceeds a
/// server's count, whether the server counts in fixed windows or sliding ones.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    limit: usize,
    per: Duration,
    sent: VecDeque<Instant>,
}

impl Window {
    pub(crate) fn new(limit: RateLimit) -> Self {
        let n = limit.events.max(1) as usize;
        Self {
            limit: n,
            per: limit.per,
            sent: VecDeque::with_capacity(n.min(1024)),
        }
    }

    /// When the next send fits (now if it does).
    pub(crate) fn ready_at(&mut self, now: Instant) -> Instant {
        while self.sent.front().is_some_and(|t| *t + self.per <= now) {
            self.sent.pop_front();
        }
        match self.sent.front() {
            Some(oldest) if self.sent.len() >= self.limit => *oldest + self.per,
            _ => now,
        }
    }

    /// Records a send; the caller checked [`Window::ready_at`].
    pub(crate) fn take(&mut self, now: Instant) {
        self.sent.push_back(now);
    }
}

/// A server's announced quota: this many more events until `reset_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Quota {
    /// Events the server still accepts in this period.
    pub(crate) remaining: u64,
    /// The period's limit.
    pub(crate) limit: u64,
    /// When its count starts again.
    pub(crate) reset_at: Instant,
    /// How long a period is, as far as the client knows (the time from the announcement to
    /// its reset): periods the server does not announce are assumed that long.
    pub(crate) period: Duration,
}

/// How long after a quota's announced reset the client starts the next period: the server
/// counts by its own clock in whole milliseconds, and an event that arrives a moment early
/// lands in the old period and is refused.
pub(crate) const QUOTA_RESET_MARGIN: Duration = Duration::from_millis(50);

/// Every bucket an emit takes from together: the configured ones, the rate the server
/// announced, the budgets its name matches, a quota, and a pause the server asked for.
///
/// Its state is allocated when there is first something to limit: most clients configure
/// no limit and never hear one from their server, and a hub holds thousands of them (240
/// bytes each otherwise).
#[derive(Debug, Clone)]
pub(crate) struct Limiter {
    active: Option<Box<Limits>>,
    /// The backoff a limiter made active later starts with.
    backoff: PauseBackoff,
}

impl Limiter {
    /// The configured `limits` (token buckets), per-event `budgets`, and the `backoff` for
    /// pauses that name no time.
    pub(crate) fn new(
        limits: &[RateLimit],
        budgets: &[Budget],
        backoff: PauseBackoff,
        now: Instant,
    ) -> Self {
        let active = (!limits.is_empty() || !budgets.is_empty())
            .then(|| Box::new(Limits::new(limits, budgets, backoff, now)));
        Self { active, backoff }
    }

    /// Takes a token for an emit named `event` from every bucket that applies, if all have
    /// one (and the quota allows); otherwise says when to try again.
    pub(crate) fn try_take(&mut self, now: Instant, event: &str) -> Result<(), Instant> {
        match &mut self.active {
            None => Ok(()),
            Some(limits) => limits.try_take(now, event),
        }
    }

    /// The server said to slow down: send nothing for `requested`, or, when it named no time,
    /// for the backoff's next pause. Returns the pause.
    pub(crate) fn pause(&mut self, now: Instant, requested: Option<Duration>) -> Duration {
        self.active().pause(now, requested)
    }

    /// The server announced its limits.
    pub(crate) fn announce(&mut self, limits: &Announced, now: Instant) {
        self.active().announce(limits, now);
    }

    fn active(&mut self) -> &mut Limits {
        let backoff = self.backoff;
        self.active.get_or_insert_with(|| {
            Box::new(Limits {
                backoff,
                ..Limits::default()
            })
        })
    }
}

/// An active [`Limiter`]'s state.
#[derive(Debug, Clone, Default)]
struct Limits {
    buckets: Vec<Bucket>,
    /// The rate the server announced last (burst control, adaptive limit).
    announced: Option<Window>,
    budgets: Vec<(Budget, Window)>,
    quota: Option<Quota>,
    /// The server asked us to wait until then.
    paused_until: Option<Instant>,
    backoff: PauseBackoff,
    /// The last pause the backoff chose, and when.
    last_pause: Option<(Duration, Instant)>,
}

impl Limits {
    fn new(limits: &[RateLimit], budgets: &[Budget], backoff: PauseBackoff, now: Instant) -> Self {
        Self {
            buckets: limits.iter().map(|l| Bucket::new(*l, now)).collect(),
            budgets: budgets
                .iter()
                .map(|b| (b.clone(), Window::new(b.limit)))
                .collect(),
            backoff,
            ..Self::default()
        }
    }

    fn try_take(&mut self, now: Instant, event: &str) -> Result<(), Instant> {
        if let Some(until) = self.paused_until {
            if now < until {
                return Err(until);
            }
            self.paused_until = None;
        }
        if let Some(q) = &mut self.quota {
            if now >= q.reset_at {
                // A new period: the same limit again, for a period as long as the last one,
                // until the server announces its count.
                while q.reset_at <= now {
                    q.reset_at += q.period;
                }
                q.remaining = q.limit;
            }
            if q.remaining == 0 {
                return Err(q.reset_at);
            }
        }
        let budgets = self.budgets.iter_mut().filter(|(b, _)| b.matches(event));
        let mut windows: Vec<&mut Window> = self
            .announced
            .iter_mut()
            .chain(budgets.map(|(_, w)| w))
            .collect();
        let ready = self
            .buckets
            .iter_mut()
            .map(|b| b.ready_at(now))
            .chain(windows.iter_mut().map(|w| w.ready_at(now)))
            .max()
            .unwrap_or(now);
        if ready > now {
            return Err(ready);
        }
        self.buckets.iter_mut().for_each(Bucket::take);
        windows.into_iter().for_each(|w| w.take(now));
        if let Some(q) = &mut self.quota {
            q.remaining = q.remaining.saturating_sub(1);
        }
        Ok(())
    }

    fn pause(&mut self, now: Instant, requested: Option<Duration>) -> Duration {
        let pause = requested.unwrap_or_else(|| {
            let b = self.backoff;
            match self.last_pause {
                // Within the pause under way (refusals of what was already in flight): one
                // over-send is one step, not many.
                Some((last, at)) if now < at + last => return at + last - now,
                _ => {}
            }
            let next = match self.last_pause {
                // Told again within `max` of the last pause ending: longer each time.
                Some((last, at)) if now.saturating_duration_since(at) < b.max + last => {
                    let grown = last.as_secs_f64() * b.multiplier;
                    Duration::from_secs_f64(grown.min(b.max.as_secs_f64()))
                }
                _ => b.initial,
            };
            self.last_pause = Some((next, now));
            next
        });
        let until = now + pause;
        self.paused_until = Some(self.paused_until.map_or(until, |u| u.max(until)));
        pause
    }

    fn announce(&mut self, limits: &Announced, now: Instant) {
        if let Some((remaining, limit, reset_in)) = limits.quota {
            let reset_at = now + reset_in + QUOTA_RESET_MARGIN;
            // The same period again (its reset within a second of the one known): what was
            // sent since the server counted is not in its count yet, so keep the lower.
            let remaining = match self.quota {
                Some(Quota {
                    remaining: ours,
                    reset_at: at,
                    ..
                }) if at.max(reset_at) - at.min(reset_at) < Duration::from_secs(1) => {
                    ours.min(remaining)
                }
                _ => remaining,
            };
            self.quota = Some(Quota {
                remaining,
                limit,
                reset_at,
                period: reset_in.max(Duration::from_secs(1)),
            });
        }
        if let Some(rate) = limits.rate {
            // The sends already made count against the new rate too.
            let mut window = Window::new(rate);
            if let Some(old) = self.announced.take() {
                let keep = old.sent.len().saturating_sub(window.limit);
                window.sent = old.sent.into_iter().skip(keep).collect();
            }
            self.announced = Some(window);
        }
        if let Some(backoff) = limits.backoff {
            self.backoff = backoff;
        }
    }
}

/// Limits a server announced: a quota (events left, time to its reset), a rate, a backoff.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Announced {
    /// Events left, the period's limit, and how long until the count resets.
    pub(crate) quota: Option<(u64, u64, Duration)>,
    /// The rate to keep to (burst control, adaptive limit).
    pub(crate) rate: Option<RateLimit>,
    /// How to pause after a "slow down" that names no time.
    pub(crate) backoff: Option<PauseBackoff>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_allow_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut l = Limiter::new(
            &[RateLimit::new(10, Duration::from_secs(1))],
            &[],
            PauseBackoff::default(),
            t0,
        );
        for _ in 0..10 {
            assert!(l.try_take(t0, "e").is_ok());
        }
        let next = l.try_take(t0, "e").unwrap_err();
        assert_eq!(next - t0, Duration::from_millis(100));
        assert!(l.try_take(t0 + Duration::from_millis(100), "e").is_ok());
        assert!(l.try_take(t0 + Duration::from_millis(150), "e").is_err());
    }

    #[test]
    fn a_limiter_with_nothing_to_limit_holds_nothing_until_the_server_speaks() {
        let t0 = Instant::now();
        let backoff = PauseBackoff {
            initial: Duration::from_secs(3),
            ..PauseBackoff::default()
        };
        let mut l = Limiter::new(&[], &[], backoff, t0);
        assert!(l.try_take(t0, "e").is_ok());
        assert!(l.active.is_none(), "nothing configured, nothing heard");
        // A pause that names no time takes the configured backoff's first step.
        assert_eq!(l.pause(t0, None), Duration::from_secs(3));
        assert!(l.active.is_some());
        assert_eq!(l.try_take(t0, "e"), Err(t0 + Duration::from_secs(3)));
        let configured = Limiter::new(
            &[RateLimit::new(1, Duration::from_secs(1))],
            &[],
            backoff,
            t0,
        );
        assert!(configured.active.is_some());
    }

    #[test]
    fn the_strictest_bucket_and_a_server_pause_win() {
        let t0 = Instant::now();
        let limits = [
            RateLimit::new(10, Duration::from_secs(1)),
            RateLimit::new(3, Duration::from_secs(60)),
        ];
        let mut l = Limiter::new(&limits, &[], PauseBackoff::default(), t0);
        for _ in 0..3 {
            assert!(l.try_take(t0, "e").is_ok());
        }
        let next = l.try_take(t0, "e").unwrap_err();
        assert_eq!(
            next - t0,
            Duration::from_secs(20),
            "100/min bucket: one per 20 s"
        );

        let mut free = Limiter::new(&[], &[], PauseBackoff::default(), t0);
        free.pause(t0, Some(Duration::from_secs(5)));
        assert_eq!(
            free.try_take(t0 + Duration::from_secs(1), "e"),
            Err(t0 + Duration::from_secs(5))
        );
        assert!(free.try_take(t0 + Duration::from_secs(5), "e").is_ok());
    }

    #[test]
    fn budgets_apply_to_the_events_they_name() {
        let t0 = Instant::now();
        let budgets = [
            Budget::new("client:*", RateLimit::new(2, Duration::from_secs(60))),
            Budget::new("*", RateLimit::new(3, Duration::from_secs(60))),
        ];
        let mut l = Limiter::new(&[], &budgets, PauseBackoff::default(), t0);
        assert!(l.try_take(t0, "client:bet").is_ok());
        assert!(l.try_take(t0, "client:bet").is_ok());
        assert_eq!(
            l.try_take(t0, "client:bet"),
            Err(t0 + Duration::from_secs(60)),
            "2 in any minute: the next when the first leaves the window"
        );
        // Other events spend only from the catch-all budget, which one more fits.
        assert!(l.try_take(t0, "app:score").is_ok());
        assert!(l.try_take(t0, "app:score").is_err());
    }

    #[test]
    fn a_window_never_lets_more_than_its_limit_into_any_stretch_of_its_length() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut w = Window::new(RateLimit::new(3, ms(1000)));
        let mut sent = Vec::new();
        let mut now = t0;
        // Send as fast as allowed for 5 s.
        while now < t0 + ms(5000) {
            let at = w.ready_at(now);
            if at > now {
                now = at;
                continue;
            }
            w.take(now);
            sent.push(now);
        }
        for (i, t) in sent.iter().enumerate() {
            let in_window = sent[i..].iter().take_while(|u| **u < *t + ms(1000)).count();
            assert!(in_window <= 3, "{in_window} sends within 1 s of {i}");
        }
        assert_eq!(sent.len(), 15, "and the full rate: 3 per second");
    }

    #[test]
    fn a_quota_holds_sending_at_its_limit_until_the_reset() {
        let t0 = Instant::now();
        let mut l = Limiter::new(&[], &[], PauseBackoff::default(), t0);
        let announced = Announced {
            quota: Some((2, 3, Duration::from_secs(10))),
            ..Default::default()
        };
        l.announce(&announced, t0);
        assert!(l.try_take(t0, "e").is_ok());
        assert!(l.try_take(t0, "e").is_ok());
        let reset = t0 + Duration::from_secs(10) + QUOTA_RESET_MARGIN;
        assert_eq!(l.try_take(t0, "e"), Err(reset));
        // The next period, unannounced: the limit again, for a period as long as the last.
        for _ in 0..3 {
            assert!(l.try_take(reset, "e").is_ok());
        }
        let next = reset + Duration::from_secs(10);
        assert_eq!(l.try_take(reset, "e"), Err(next));
        // The server's count for this period arrives late, missing what was just sent: the
        // lower of the two stands.
        let late = Announced {
            quota: Some((2, 3, Duration::from_secs(10) - QUOTA_RESET_MARGIN)),
            ..Default::default()
        };
        l.announce(&late, reset);
        assert!(l.try_take(reset, "e").is_err());
        // A new period announced: its count stands.
        let fresh = Announced {
            quota: Some((1, 3, Duration::from_secs(30))),
            ..Default::default()
        };
        l.announce(&fresh, next);
        assert!(l.try_take(next, "e").is_ok());
        assert!(l.try_take(next, "e").is_err());
    }

    #[test]
    fn an_announced_rate_replaces_the_last_one() {
        let t0 = Instant::now();
        let mut l = Limiter::new(&[], &[], PauseBackoff::default(), t0);
        let rate = |n| Announced {
            rate: Some(RateLimit::new(n, Duration::from_secs(1))),
            ..Default::default()
        };
        l.announce(&rate(1), t0);
        assert!(l.try_take(t0, "e").is_ok());
        assert_eq!(l.try_take(t0, "e"), Err(t0 + Duration::from_secs(1)));
        // Re-announced, even higher: the send already made counts against it (no fresh burst).
        l.announce(&rate(4), t0);
        for _ in 0..3 {
            assert!(l.try_take(t0, "e").is_ok());
        }
        assert_eq!(l.try_take(t0, "e"), Err(t0 + Duration::from_secs(1)));
        l.announce(&rate(4), t0);
        assert!(
            l.try_take(t0, "e").is_err(),
            "a repeated announcement opens no burst"
        );
    }

    #[test]
    fn pauses_without_a_time_grow_by_the_backoff_and_start_over_after_a_quiet_spell() {
        let t0 = Instant::now();
        let backoff = PauseBackoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(300),
            multiplier: 2.0,
        };
        let mut l = Limiter::new(&[], &[], backoff, t0);
        let ms = Duration::from_millis;
        assert_eq!(l.pause(t0, None), ms(100));
        // Refusals of what was already in flight, within the pause: the same step.
        assert_eq!(l.pause(t0 + ms(10), None), ms(90));
        assert_eq!(l.pause(t0 + ms(100), None), ms(200));
        assert_eq!(l.pause(t0 + ms(300), None), ms(300));
        assert_eq!(l.pause(t0 + ms(600), None), ms(300));
        // The server's own time wins, and does not count as a step.
        assert_eq!(l.pause(t0 + ms(900), Some(ms(50))), ms(50));
        // Quiet for longer than max after the last pause: from the start.
        assert_eq!(l.pause(t0 + ms(2000), None), ms(100));
        assert_eq!(l.try_take(t0 + ms(2050), "e"), Err(t0 + ms(2100)));
    }
}
