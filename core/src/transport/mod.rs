//! Transports move frames; they know nothing about Socket.IO. The engine is generic over
//! [`Transport`], so reconnect, heartbeat, acks and buffering are written once for every
//! transport (WebSocket, HTTP long-polling with its upgrade to WebSocket).

pub(crate) mod http;
pub mod polling;
pub mod tls;
pub mod websocket;

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
    /// Closes the link politely (best effort; the caller bounds the time it may take).
    fn close(&mut self) -> impl Future<Output = ()> + Send;
}

/// The transport a session runs on, chosen per connection attempt.
// One per connection, held by the session for its lifetime: the WebSocket stays inline (no
// indirection on the hot path) at the cost of a larger enum.
#[allow(clippy::large_enum_variant)]
pub enum Link {
    /// A WebSocket from the start.
    WebSocket(websocket::WebSocket),
    /// HTTP long-polling, possibly upgraded to WebSocket since.
    Polling(polling::Polling),
}

impl Transport for Link {
    async fn recv(&mut self) -> Option<Result<Frame, TransportError>> {
        match self {
            Link::WebSocket(t) => t.recv().await,
            Link::Polling(t) => t.recv().await,
        }
    }

    async fn feed(&mut self, frame: Frame) -> Result<(), TransportError> {
        match self {
            Link::WebSocket(t) => t.feed(frame).await,
            Link::Polling(t) => t.feed(frame).await,
        }
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        match self {
            Link::WebSocket(t) => t.flush().await,
            Link::Polling(t) => t.flush().await,
        }
    }

    async fn close(&mut self) {
        match self {
            Link::WebSocket(t) => t.close().await,
            Link::Polling(t) => t.close().await,
        }
    }
}
