//! WebSocket transport over tokio-tungstenite, on the [`Stream`] the route opens (rustls for
//! `wss://`, configured by [`super::tls`]).

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::{
    WebSocketStream, client_async_with_config,
    tungstenite::{
        self, Message,
        client::IntoClientRequest,
        http::{HeaderName, HeaderValue},
        protocol::WebSocketConfig,
    },
};
use url::Url;

use super::{
    frame::{Frame, Transport, TransportError},
    route::Route,
    stream::Stream,
};

/// Bytes asked of the socket per read. tungstenite zero-fills this much of its buffer before
/// every read attempt, including the attempts that find nothing: its default, 128 KiB, cost
/// about 130,000 instructions per wake-up, three quarters of a durable emit's instructions
/// under callgrind (1,159 M instructions for 3,000 emits; 287 M with 4 KiB). A 4 KiB read
/// still takes some thirty typical events; inbound throughput did not drop in the benchmark.
const READ_BUFFER: usize = 4 * 1024;

/// An open WebSocket.
pub struct WebSocket {
    inner: WebSocketStream<Stream>,
    max_message: usize,
}

impl WebSocket {
    /// Opens a WebSocket to `url` along `route` (a proxy tunnel or not, TLS for `wss://`) with
    /// extra request `headers`, refusing inbound messages larger than `max_message` bytes
    /// before they are buffered in full.
    pub async fn connect(
        url: &Url,
        headers: &[(String, String)],
        max_message: usize,
        route: &Route,
    ) -> Result<Self, TransportError> {
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| TransportError::Io(e.to_string()))?;
        for (k, v) in headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| TransportError::Io(format!("invalid header name {k:?}")))?;
            // The value may be a credential: never echo it in the error.
            let value = HeaderValue::from_str(v)
                .map_err(|_| TransportError::Io(format!("invalid value for header {k:?}")))?;
            request.headers_mut().append(name, value);
        }
        let config = WebSocketConfig::default()
            .max_message_size(Some(max_message))
            .max_frame_size(Some(max_message))
            .read_buffer_size(READ_BUFFER);
        let stream = route.connect(url).await?;
        let (inner, _response) = client_async_with_config(request, stream, Some(config))
            .await
            .map_err(|e| map_error(e, max_message))?;
        Ok(Self { inner, max_message })
    }
}

fn map_error(e: tungstenite::Error, max: usize) -> TransportError {
    use tungstenite::{Error as E, error::CapacityError};
    match e {
        E::ConnectionClosed | E::AlreadyClosed => TransportError::Closed,
        E::Capacity(CapacityError::MessageTooLong { .. }) => TransportError::TooLarge { max },
        E::Http(resp) => TransportError::UpgradeRefused {
            status: resp.status().as_u16(),
        },
        other => TransportError::Io(other.to_string()),
    }
}

/// The payload of [`WebSocket::settle`]'s ping, told apart from any other pong.
const SETTLE_PROBE: &[u8] = b"pulselink-settle";

impl Transport for WebSocket {
    async fn recv(&mut self) -> Option<Result<Frame, TransportError>> {
        loop {
            let msg = match self.inner.next().await? {
                Ok(m) => m,
                Err(e) => return Some(Err(map_error(e, self.max_message))),
            };
            return Some(Ok(match msg {
                Message::Text(t) => Frame::Text(t),
                Message::Binary(b) => Frame::Binary(b),
                Message::Close(_) => return None,
                // tungstenite answers pings itself; nothing for the engine to see.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            }));
        }
    }

    async fn feed(&mut self, frame: Frame) -> Result<(), TransportError> {
        let msg = match frame {
            Frame::Text(t) => Message::Text(t),
            Frame::Binary(b) => Message::Binary(b),
        };
        self.inner
            .feed(msg)
            .await
            .map_err(|e| map_error(e, self.max_message))
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        self.inner
            .flush()
            .await
            .map_err(|e| map_error(e, self.max_message))
    }

    /// A ping, and the frames that came in until its pong: a WebSocket server answers a ping
    /// as it parses it, after every frame before it.
    async fn settle(&mut self) -> Result<(), TransportError> {
        let max = self.max_message;
        self.inner
            .send(Message::Ping(SETTLE_PROBE.into()))
            .await
            .map_err(|e| map_error(e, max))?;
        while let Some(msg) = self.inner.next().await {
            if let Message::Pong(p) = msg.map_err(|e| map_error(e, max))?
                && p.as_ref() == SETTLE_PROBE
            {
                return Ok(());
            }
        }
        Err(TransportError::Closed)
    }

    async fn close(&mut self) {
        if self.inner.close(None).await.is_err() {
            return;
        }
        // Read on to the server's answering close frame and the end of the stream: a socket
        // dropped with unread data is reset (RST), and a reset can make the server discard
        // what it received but had not read yet — the last frames of a polite close.
        while let Some(Ok(_)) = self.inner.next().await {}
    }
}
