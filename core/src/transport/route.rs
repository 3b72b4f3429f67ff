//! The way to the server: straight or through a proxy, and whom TLS trusts at the end of it.
//! Both transports open their connections here, so a proxy applies to WebSocket, polling and
//! the upgrade alike.

use std::sync::Arc;

use tokio::net::TcpStream;
use url::Url;

use super::{frame::TransportError, proxy::Proxy};

/// How connections to one server are opened.
#[derive(Debug, Clone)]
pub struct Route {
    /// Trust for `wss://` and `https://` (roots, custom CAs, pins): the server's certificate,
    /// also through a tunnel.
    pub tls: Arc<rustls::ClientConfig>,
    /// The proxy on the way, if any.
    pub proxy: Option<Proxy>,
}

impl Route {
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

    /// The HTTP proxy that `http://` requests are forwarded to as they are, if any.
    pub(crate) fn forwarding_proxy(&self, url: &Url) -> Option<&Proxy> {
        self.proxy
            .as_ref()
            .filter(|p| url.scheme() == "http" && p.forwards_plain_http())
    }
}
