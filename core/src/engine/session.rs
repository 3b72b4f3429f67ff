//! One link's protocol state: from the handshake to the link's end. It dies with the link;
//! everything that must outlive a link lives in the other components.

use tokio::time::Instant;

use super::heartbeat::Heartbeat;
use crate::{protocol::Wire, time::Now};

/// The state of the link that is up.
pub(crate) struct Session {
    /// Counts links, so an acknowledgement answered on a later link is not sent there.
    pub(crate) id: u64,
    /// The protocol: what frames mean, and the frames requests become.
    pub(crate) wire: Wire,
    pub(crate) heartbeat: Heartbeat,
    /// The server's app-level heartbeat, once the main namespace is joined (if configured;
    /// boxed, as most servers run none).
    pub(crate) app_heartbeat: Option<Box<Heartbeat>>,
    /// When the main namespace must be joined by: a server that completes the handshake but
    /// never answers CONNECT (a hung auth middleware) must not hold the client forever.
    pub(crate) join_by: Instant,
}

impl Session {
    pub(crate) fn new(id: u64, wire: Wire, now: Now, join_within: std::time::Duration) -> Self {
        Self {
            id,
            heartbeat: Heartbeat::new(wire.heartbeat(), now),
            app_heartbeat: None,
            wire,
            join_by: now.at + join_within,
        }
    }
}
