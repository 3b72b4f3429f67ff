//! The transport a link runs on, chosen per connection attempt.

use super::{
    frame::{Frame, Transport, TransportError},
    polling, websocket,
};

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

    async fn settle(&mut self) -> Result<(), TransportError> {
        match self {
            Link::WebSocket(t) => t.settle().await,
            Link::Polling(t) => t.settle().await,
        }
    }

    async fn close(&mut self) {
        match self {
            Link::WebSocket(t) => t.close().await,
            Link::Polling(t) => t.close().await,
        }
    }
}
