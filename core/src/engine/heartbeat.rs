//! When a link counts as dead. Socket.IO servers ping and the client watches the silence;
//! envelope clients ping and watch for the pong. Either way a phone that slept may not have
//! advanced the monotonic clock, so staleness is also judged by the wall clock.

use tokio::time::Instant;

use crate::{protocol::HeartbeatMode, time::Now};

/// What the heartbeat wants when its deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Due {
    /// Not due yet (a proof of life moved the deadline).
    Nothing,
    /// Send a ping now.
    Ping,
    /// The link is dead.
    Dead,
}

/// One link's heartbeat.
#[derive(Debug)]
pub(super) struct Heartbeat {
    mode: HeartbeatMode,
    /// The last proof of life.
    last: Now,
    /// When our unanswered ping went out (client-driven mode).
    ping_sent: Option<Instant>,
}

impl Heartbeat {
    pub(super) fn new(mode: HeartbeatMode, now: Now) -> Self {
        Self {
            mode,
            last: now,
            ping_sent: None,
        }
    }

    /// The link just proved it works both ways.
    pub(super) fn alive(&mut self, now: Now) {
        self.last = now;
        self.ping_sent = None;
    }

    /// The next moment the heartbeat needs attention.
    pub(super) fn deadline(&self) -> Instant {
        match self.mode {
            HeartbeatMode::ServerPings { interval, timeout } => self.last.at + interval + timeout,
            HeartbeatMode::ClientPings { interval, timeout } => match self.ping_sent {
                Some(sent) => sent + timeout,
                None => self.last.at + interval,
            },
        }
    }

    /// Called when [`Heartbeat::deadline`] passed.
    pub(super) fn on_deadline(&mut self, now: Now) -> Due {
        if now.at < self.deadline() {
            return Due::Nothing;
        }
        match self.mode {
            HeartbeatMode::ServerPings { .. } => Due::Dead,
            HeartbeatMode::ClientPings { .. } if self.ping_sent.is_some() => Due::Dead,
            HeartbeatMode::ClientPings { .. } => {
                self.ping_sent = Some(now.at);
                Due::Ping
            }
        }
    }

    /// Whether the link has been silent too long by either clock: the longest a healthy link
    /// can go without a proof of life is one interval plus one timeout. The wall clock keeps
    /// running while a phone sleeps; the monotonic one may not.
    pub(super) fn is_stale(&self, now: Now) -> bool {
        let limit = self.mode.silence_limit();
        now.at >= self.last.at + limit
            || now.wall_ms.saturating_sub(self.last.wall_ms) >= limit.as_millis() as i64
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A fake clock: both clocks start together and move as the test says.
    fn later(start: Now, mono: Duration, wall: Duration) -> Now {
        Now {
            at: start.at + mono,
            wall_ms: start.wall_ms + wall.as_millis() as i64,
        }
    }

    fn t0() -> Now {
        Now {
            at: Instant::now(),
            wall_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn server_pings_are_watched_for_silence() {
        let t = t0();
        let at = |ms: u32| later(t, ms * MS, ms * MS);
        let mut h = Heartbeat::new(
            HeartbeatMode::ServerPings {
                interval: 100 * MS,
                timeout: 50 * MS,
            },
            t,
        );
        assert_eq!(h.deadline() - t.at, 150 * MS);
        assert_eq!(h.on_deadline(at(149)), Due::Nothing);
        h.alive(at(149));
        assert_eq!(h.on_deadline(at(298)), Due::Nothing);
        assert_eq!(h.on_deadline(at(299)), Due::Dead);
    }

    #[test]
    fn client_pings_then_waits_for_the_pong() {
        let t = t0();
        let at = |ms: u32| later(t, ms * MS, ms * MS);
        let mut h = Heartbeat::new(
            HeartbeatMode::ClientPings {
                interval: 100 * MS,
                timeout: 30 * MS,
            },
            t,
        );
        assert_eq!(h.on_deadline(at(100)), Due::Ping);
        assert_eq!(h.deadline() - t.at, 130 * MS);
        h.alive(at(120)); // the pong
        assert_eq!(h.deadline() - t.at, 220 * MS);
        assert_eq!(h.on_deadline(at(220)), Due::Ping);
        assert_eq!(h.on_deadline(at(250)), Due::Dead);
        assert!(h.is_stale(at(250)));
    }

    #[test]
    fn a_device_that_slept_sees_the_link_stale_by_the_wall_clock() {
        // The monotonic clock stood still for 10 s of sleep; the wall clock did not.
        let t = t0();
        let slept = later(t, 20 * MS, Duration::from_secs(10));
        let server = Heartbeat::new(
            HeartbeatMode::ServerPings {
                interval: Duration::from_secs(1),
                timeout: Duration::from_secs(1),
            },
            t,
        );
        assert!(server.is_stale(slept), "by the wall clock");
        assert!(
            !server.is_stale(later(t, 20 * MS, 20 * MS)),
            "awake and fresh"
        );
        // And by the monotonic clock alone, when the wall clock was set back meanwhile.
        assert!(server.is_stale(later(t, Duration::from_secs(2), Duration::ZERO)));
    }
}
