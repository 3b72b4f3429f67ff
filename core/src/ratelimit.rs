//! Client-side rate limits: token buckets the outbox takes a token from per event sent, and a
//! pause the server can ask for.

use std::time::Duration;

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

/// Every configured bucket, taken from together.
#[derive(Debug, Clone, Default)]
pub(crate) struct Limiter {
    buckets: Vec<Bucket>,
    /// The server asked us to wait until then.
    paused_until: Option<Instant>,
}

impl Limiter {
    pub(crate) fn new(limits: &[RateLimit], now: Instant) -> Self {
        Self {
            buckets: limits.iter().map(|l| Bucket::new(*l, now)).collect(),
            paused_until: None,
        }
    }

    /// Takes a token from every bucket if all have one; otherwise says when to try again.
    pub(crate) fn try_take(&mut self, now: Instant) -> Result<(), Instant> {
        if let Some(until) = self.paused_until {
            if now < until {
                return Err(until);
            }
            self.paused_until = None;
        }
        let ready = self
            .buckets
            .iter_mut()
            .map(|b| b.ready_at(now))
            .max()
            .unwrap_or(now);
        if ready > now {
            return Err(ready);
        }
        self.buckets.iter_mut().for_each(Bucket::take);
        Ok(())
    }

    /// The server said the limit was exceeded: send nothing until `until`.
    pub(crate) fn pause_until(&mut self, until: Instant) {
        self.paused_until = Some(self.paused_until.map_or(until, |u| u.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_allow_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut l = Limiter::new(&[RateLimit::new(10, Duration::from_secs(1))], t0);
        for _ in 0..10 {
            assert!(l.try_take(t0).is_ok());
        }
        let next = l.try_take(t0).unwrap_err();
        assert_eq!(next - t0, Duration::from_millis(100));
        assert!(l.try_take(t0 + Duration::from_millis(100)).is_ok());
        assert!(l.try_take(t0 + Duration::from_millis(150)).is_err());
    }

    #[test]
    fn the_strictest_bucket_and_a_server_pause_win() {
        let t0 = Instant::now();
        let limits = [
            RateLimit::new(10, Duration::from_secs(1)),
            RateLimit::new(3, Duration::from_secs(60)),
        ];
        let mut l = Limiter::new(&limits, t0);
        for _ in 0..3 {
            assert!(l.try_take(t0).is_ok());
        }
        let next = l.try_take(t0).unwrap_err();
        assert_eq!(
            next - t0,
            Duration::from_secs(20),
            "100/min bucket: one per 20 s"
        );

        let mut free = Limiter::new(&[], t0);
        free.pause_until(t0 + Duration::from_secs(5));
        assert_eq!(
            free.try_take(t0 + Duration::from_secs(1)),
            Err(t0 + Duration::from_secs(5))
        );
        assert!(free.try_take(t0 + Duration::from_secs(5)).is_ok());
    }
}
