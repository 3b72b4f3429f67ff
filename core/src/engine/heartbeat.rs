//! When a link counts as dead. Socket.IO servers ping and the client watches the silence;
//! envelope clients ping and watch for the pong. Either way a phone that slept may not have
//! advanced the monotonic clock, so staleness is also judged by the wall clock.

use std::time::SystemTime;

use tokio::time::Instant;

use crate::protocol::HeartbeatMode;

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
    last: Instant,
    last_wall: SystemTime,
    /// When our unanswered ping went out (client-driven mode).
    ping_sent: Option<Instant>,
}

impl Heartbeat {
    pub(super) fn new(mode: HeartbeatMode) -> Self {
        Self {
            mode,
            last: Instant::now(),
            last_wall: SystemTime::now(),
            ping_sent: None,
        }
    }

    /// The link just proved it works both ways.
    pub(super) fn alive(&mut self) {
        self.last = Instant::now();
        self.last_wall = SystemTime::now();
        self.ping_sent = None;
    }

    /// The next moment the heartbeat needs attention.
    pub(super) fn deadline(&self) -> Instant {
        match self.mode {
            HeartbeatMode::ServerPings { interval, timeout } => self.last + interval + timeout,
            HeartbeatMode::ClientPings { interval, timeout } => match self.ping_sent {
                Some(sent) => sent + timeout,
                None => self.last + interval,
            },
        }
    }

    /// Called when [`Heartbeat::deadline`] passed.
    pub(super) fn on_deadline(&mut self) -> Due {
        let now = Instant::now();
        if now < self.deadline() {
            return Due::Nothing;
        }
        match self.mode {
            HeartbeatMode::ServerPings { .. } => Due::Dead,
            HeartbeatMode::ClientPings { .. } if self.ping_sent.is_some() => Due::Dead,
            HeartbeatMode::ClientPings { .. } => {
                self.ping_sent = Some(now);
                Due::Ping
            }
        }
    }

    /// Whether the link has been silent too long by either clock: the longest a healthy link
    /// can go without a proof of life is one interval plus one timeout.
    pub(super) fn is_stale(&self) -> bool {
        let limit = match self.mode {
            HeartbeatMode::ServerPings { interval, timeout }
            | HeartbeatMode::ClientPings { interval, timeout } => interval + timeout,
        };
        Instant::now() >= self.last + limit
            || SystemTime::now()
                .duration_since(self.last_wall)
                .unwrap_or_default()
                >= limit
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn server_pings_are_watched_for_silence() {
        let mut h = Heartbeat::new(HeartbeatMode::ServerPings {
            interval: 100 * MS,
            timeout: 50 * MS,
        });
        assert_eq!(h.deadline() - Instant::now(), 150 * MS);
        tokio::time::advance(149 * MS).await;
        assert_eq!(h.on_deadline(), Due::Nothing);
        h.alive();
        tokio::time::advance(149 * MS).await;
        assert_eq!(h.on_deadline(), Due::Nothing);
        tokio::time::advance(MS).await;
        assert_eq!(h.on_deadline(), Due::Dead);
    }

    #[tokio::test(start_paused = true)]
    async fn client_pings_then_waits_for_the_pong() {
        let mut h = Heartbeat::new(HeartbeatMode::ClientPings {
            interval: 100 * MS,
            timeout: 30 * MS,
        });
        tokio::time::advance(100 * MS).await;
        assert_eq!(h.on_deadline(), Due::Ping);
        assert_eq!(h.deadline() - Instant::now(), 30 * MS);
        tokio::time::advance(20 * MS).await;
        h.alive(); // the pong
        assert_eq!(h.deadline() - Instant::now(), 100 * MS);
        tokio::time::advance(100 * MS).await;
        assert_eq!(h.on_deadline(), Due::Ping);
        tokio::time::advance(30 * MS).await;
        assert_eq!(h.on_deadline(), Due::Dead);
        assert!(h.is_stale());
    }
}
