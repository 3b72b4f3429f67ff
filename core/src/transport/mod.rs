//! Transports move frames; they know nothing about Socket.IO. The engine is generic over
//! [`Transport`], so reconnect, heartbeat, acks and buffering are written once for every
//! transport (WebSocket, HTTP long-polling with its upgrade to WebSocket).

mod frame;
pub(crate) mod http;
mod link;
pub mod polling;
pub mod proxy;
mod route;
mod stream;
pub mod tls;
mod upgrade;
pub mod websocket;

pub(crate) use self::route::HUB_READ_BUFFER;
pub use self::{
    frame::{Bytes, Frame, Transport, TransportError, Utf8Bytes},
    link::Link,
    route::Route,
};
