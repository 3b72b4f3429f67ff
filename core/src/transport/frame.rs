//! What every transport moves and how: frames, failures, and the [`Transport`] interface the
//! engine drives.

use std::future::Future;

pub use tokio_tungstenite::tungstenite::{Bytes, Utf8Bytes};

/// One message on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A text message.
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
}

impl Frame {
    /// Its payload's length in bytes.
    pub(crate) fn len(&self) -> usize {
        match self {
            Frame::Text(t) => t.len(),
            Frame::Binary(b) => b.len(),
        }
    }
}

/// Why a transport failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The peer closed the connection.
    #[error("connection closed")]
    Closed,
    /// An inbound message is larger than the configured limit.
    #[error("inbound message exceeds {max} bytes")]
    TooLarge {
        /// The limit.
        max: usize,
    },
    /// The server (or a proxy on the way) answered the WebSocket upgrade with this HTTP
    /// status instead of switching protocols.
    #[error("HTTP {status} on WebSocket upgrade")]
    UpgradeRefused {
        /// The HTTP status.
        status: u16,
    },
    /// The proxy did not open the way to the server.
    #[error("proxy {proxy} {failure}")]
    Proxy {
        /// The proxy, as `scheme://host:port` (never its credentials).
        proxy: String,
        /// What it did.
        failure: super::proxy::failure::ProxyFailure,
    },
    /// The first requests of a long-polling session reached a server that does not know it:
    /// behind a load balancer, every request of a session must reach the node that opened it.
    #[error(
        "the server does not know this long-polling session (\"Session ID unknown\"): behind a \
         load balancer, long-polling needs sticky sessions (every request of a session to the \
         node that opened it, e.g. nginx ip_hash or a cookie); or connect over WebSocket \
         (Transports::WebSocketThenFallback, the default, or Transports::WebSocket)"
    )]
    UnknownSession,
    /// Anything else the I/O layer reported.
    #[error("{0}")]
    Io(String),
}

/// A connected, framed, bidirectional link.
///
/// `recv` must be cancel-safe: the engine races it against commands and timers.
pub trait Transport: Send {
    /// The next inbound frame; `None` when the peer closed cleanly.
    fn recv(&mut self) -> impl Future<Output = Option<Result<Frame, TransportError>>> + Send;
    /// Queues a frame for sending; it is on the wire after [`Transport::flush`].
    fn feed(&mut self, frame: Frame) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Writes everything queued.
    fn flush(&mut self) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Returns once the peer has read everything flushed so far: frames a server reads in
    /// the same chunk as a later one may be handled after it (the official Socket.IO server
    /// handles an event on the tick after reading it, and ignores it if a namespace
    /// DISCONNECT read in the same chunk ended the socket first). Inbound frames that arrive
    /// meanwhile are dropped: for a link about to close. The caller bounds the time.
    fn settle(&mut self) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Closes the link politely (best effort; the caller bounds the time it may take).
    fn close(&mut self) -> impl Future<Output = ()> + Send;
}
