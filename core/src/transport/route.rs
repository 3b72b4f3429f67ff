//! The way to the server: straight or through a proxy, and whom TLS trusts at the end of it.
//! Both transports open their connections here, so a proxy applies to WebSocket, polling and
//! the upgrade alike.

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, rustls::pki_types::ServerName};
use url::Url;

use super::{frame::TransportError, proxy::Proxy, stream::Stream};

/// How connections to one server are opened.
#[derive(Debug, Clone)]
pub struct Route {
    /// Trust for `wss://` and `https://` (roots, custom CAs, pins): the server's certificate,
    /// also through a tunnel.
    pub tls: Arc<rustls::ClientConfig>,
    /// The proxy on the way, if any.
    pub proxy: Option<Proxy>,
    /// Bytes a WebSocket asks of its socket per read, and so its read buffer's size.
    pub(crate) read_buffer: usize,
}

/// A WebSocket's read buffer. tungstenite zero-fills the unused part of its buffer before
/// every read attempt, including the attempts that find nothing: its default, 128 KiB, cost
/// about 130,000 instructions per wake-up, three quarters of a durable emit's instructions
/// under callgrind (1,159 M instructions for 3,000 emits; 287 M with 4 KiB). A 4 KiB read
/// still takes some thirty typical events; inbound throughput did not drop in the benchmark.
pub(crate) const READ_BUFFER: usize = 4 * 1024;

/// The read buffer of a hub's client. A hub holds thousands of connections that each carry
/// a device's few events, where a buffer is memory held per connection whether or not
/// anything arrives. 256 bytes still take a typical event or two per read; a larger message
/// grows the buffer to its size and is read in 256-byte pieces, more reads where a hub's
/// devices rarely receive much.
pub(crate) const HUB_READ_BUFFER: usize = 256;

impl Route {
    /// A route through `proxy` (if any) trusting `tls`, with a single client's read buffer.
    pub fn new(tls: Arc<rustls::ClientConfig>, proxy: Option<Proxy>) -> Self {
        Route {
            tls,
            proxy,
            read_buffer: READ_BUFFER,
        }
    }

    /// A TCP connection to `url`'s host and port, direct or tunnelled through the proxy.
    pub(crate) async fn open(&self, url: &Url) -> Result<TcpStream, TransportError> {
        let host = url
            .host_str()
            .ok_or_else(|| TransportError::Io("URL has no host".into()))?;
        let port = url.port_or_known_default().unwrap_or(80);
        if let Some(proxy) = &self.proxy {
            return proxy.tunnel(host, port).await;
        }
        let tcp = TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), port))
            .await
            .map_err(|e| TransportError::Io(e.to_string()))?;
        // Nagle off: heartbeats and acks are small and latency-sensitive; throughput comes
        // from batching writes before a flush instead.
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    /// A connection to `url`'s host and port as [`Route::open`] makes it, with TLS on it for
    /// `wss://` and `https://`: the server's certificate checked against [`Route::tls`].
    pub(crate) async fn connect(&self, url: &Url) -> Result<Stream, TransportError> {
        let tcp = self.open(url).await?;
        if !matches!(url.scheme(), "wss" | "https") {
            return Ok(Stream::Plain(tcp));
        }
        let host = url.host_str().unwrap_or_default();
        let name = ServerName::try_from(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
        )
        .map_err(|e| TransportError::Io(format!("invalid TLS server name: {e}")))?;
        let tls = TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| TransportError::Io(format!("TLS: {e}")))?;
        Ok(Stream::Tls(Box::new(tls)))
    }

    /// The HTTP proxy that `http://` requests are forwarded to as they are, if any.
    pub(crate) fn forwarding_proxy(&self, url: &Url) -> Option<&Proxy> {
        self.proxy
            .as_ref()
            .filter(|p| url.scheme() == "http" && p.forwards_plain_http())
    }
}
