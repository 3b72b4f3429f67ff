//! WebSocket transport over tokio-tungstenite, on the [`Stream`] the route opens (rustls for
//! `wss://`, configured by [`super::tls`]).

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        self, Message,
        protocol::{Role, WebSocketConfig},
    },
};
use url::Url;

use super::{
    frame::{Frame, Transport, TransportError},
    route::Route,
    stream::Stream,
    upgrade::Upgrade,
};

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
        // Checked before any connection is opened: a bad header fails without touching the
        // network (or a proxy that counts its failed logins).
        let upgrade = Upgrade::new(url, headers)?;
        let mut stream = route.connect(url).await?;
        let read = upgrade.open(&mut stream, route.read_buffer).await?;
        let config = WebSocketConfig::default()
            .max_message_size(Some(max_message))
            .max_frame_size(Some(max_message))
            .read_buffer_size(route.read_buffer);
        let inner =
            WebSocketStream::from_partially_read(stream, read, Role::Client, Some(config)).await;
        Ok(Self { inner, max_message })
    }
}

fn map_error(e: tungstenite::Error, max: usize) -> TransportError {
    use tungstenite::{Error as E, error::CapacityError};
    match e {
        E::ConnectionClosed | E::AlreadyClosed => TransportError::Closed,
        E::Capacity(CapacityError::MessageTooLong { .. }) => TransportError::TooLarge { max },
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

#[cfg(test)]
mod tests {
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };

    use super::*;
    use crate::transport::tls::{TlsOptions, client_config};

    /// A server may send its first frames in the same segment as its answer to the upgrade:
    /// they are the connection's first frames, not leftovers of the handshake.
    #[tokio::test]
    async fn frames_sent_with_the_upgrade_answer_are_received() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            while !request.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                socket.read_exact(&mut byte).await.unwrap();
                request.push(byte[0]);
            }
            let request = String::from_utf8(request).unwrap();
            let key = request
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .unwrap();
            let accept = crate::transport::upgrade::tests::accept_for(key);
            let mut answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            )
            .into_bytes();
            // Two unmasked text frames, "0{}" and "40", in the same write as the answer.
            answer.extend_from_slice(&[0x81, 3, b'0', b'{', b'}', 0x81, 2, b'4', b'0']);
            socket.write_all(&answer).await.unwrap();
            // Held open until the client has read.
            let _ = socket.read(&mut [0u8; 1]).await;
        });
        let route = Route::new(client_config(&TlsOptions::default()).unwrap(), None);
        let url = Url::parse(&format!("ws://127.0.0.1:{port}/socket.io/")).unwrap();
        let mut ws = WebSocket::connect(&url, &[], 1 << 20, &route)
            .await
            .unwrap();
        for expected in ["0{}", "40"] {
            let frame = tokio::time::timeout(std::time::Duration::from_secs(5), ws.recv())
                .await
                .expect("the frames sent with the answer were lost");
            assert_eq!(frame.unwrap().unwrap(), Frame::Text(expected.into()));
        }
        drop(ws);
        server.await.unwrap();
    }
}
