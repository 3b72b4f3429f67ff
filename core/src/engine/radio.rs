//! The device's radio, as the link's traffic implies it: every packet either way keeps a
//! cellular radio in its high-power state for a tail after it, and traffic after a silence
//! longer than the tail wakes it up again. Counting wake-ups tells an app what its traffic
//! costs; knowing whether the radio is awake for other reasons lets the outbox's `Low` lane
//! ride along with traffic that happens anyway. The `Low` lane's own traffic (its frames and
//! the acknowledgements they bring back) keeps the radio up but does not count as a reason:
//! otherwise one `Low` emit a second would keep the radio awake for good.

use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::RADIO_TAIL;

/// The radio model. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Radio {
    /// The latest traffic.
    last: Option<Instant>,
    /// The latest traffic not caused by the `Low` lane.
    last_other: Option<Instant>,
    /// When the current tail ends.
    awake_until: Option<Instant>,
    /// Wake-ups so far.
    pub(crate) wakeups: u64,
    /// Awake time accounted so far, tails that have not ended yet included in full.
    active: Duration,
}

impl Radio {
    /// Traffic happened at `at` (a frame in or out, a connection attempt); `low_lane` when
    /// the `Low` lane caused it.
    pub(crate) fn traffic(&mut self, at: Instant, low_lane: bool) {
        if !low_lane {
            self.last_other = Some(at);
        }
        if !self.awake(at) {
            self.wakeups += 1;
        }
        let end = at + RADIO_TAIL;
        let start = self.awake_until.map_or(at, |until| until.max(at));
        self.active += end.saturating_duration_since(start);
        self.awake_until = Some(self.awake_until.map_or(end, |until| until.max(end)));
        self.last = Some(at);
    }

    /// Whether the radio is still in the tail of earlier traffic at `at`.
    pub(crate) fn awake(&self, at: Instant) -> bool {
        self.last.is_some_and(|last| at < last + RADIO_TAIL)
    }

    /// Whether traffic other than the `Low` lane's keeps the radio awake at `at`: then the
    /// lane's waiting entries may go along.
    pub(crate) fn awake_anyway(&self, at: Instant) -> bool {
        self.last_other.is_some_and(|last| at < last + RADIO_TAIL)
    }

    /// Time awake up to `now` (the part of a tail still to come is not counted).
    pub(crate) fn active(&self, now: Instant) -> Duration {
        let ahead = self
            .awake_until
            .map_or(Duration::ZERO, |until| until.saturating_duration_since(now));
        self.active.saturating_sub(ahead)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_within_the_tail_rides_the_same_wake_up() {
        let t = Instant::now();
        let ms = |n: u64| t + Duration::from_millis(n);
        let mut r = Radio::default();
        assert!(!r.awake(t));
        r.traffic(t, false);
        r.traffic(ms(1_000), true);
        r.traffic(ms(2_500), true); // 1.5 s after the last: still awake
        assert_eq!(r.wakeups, 1);
        assert!(r.awake(ms(4_499)) && !r.awake(ms(4_500)));
        // The Low lane's own traffic kept the radio up, but is no reason for more of it.
        assert!(r.awake_anyway(ms(1_999)) && !r.awake_anyway(ms(2_000)));
        r.traffic(ms(10_000), false); // 7.5 s of silence: a new wake-up
        assert_eq!(r.wakeups, 2);
        // Awake 0–4.5 s and 10–12 s.
        assert_eq!(r.active(ms(20_000)), Duration::from_millis(6_500));
        assert_eq!(
            r.active(ms(11_000)),
            Duration::from_millis(5_500),
            "tail to come"
        );
    }
}
