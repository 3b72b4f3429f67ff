//! Opening a link: the configured transport (WebSocket, long-polling, one falling back to the
//! other) and, for Socket.IO, the Engine.IO handshake, all within the connect timeout. The
//! only I/O of an attempt; the protocol decides what the first frame means.

use std::sync::Arc;

use tokio::time::timeout;
use tracing::debug;

use crate::{
    config::{ClientConfig, Transports},
    error::Error,
    protocol::{self, Opening, Wire},
    transport::{Link, Route, Transport, TransportError, polling::Polling, websocket::WebSocket},
};

/// Opens the configured transport and reads the Engine.IO handshake (Socket.IO), or opens the
/// envelope WebSocket, within the connect timeout.
/// `polling_refused`: a polling session of this client was refused as unknown before it was
/// ever answered — a balancer without sticky sessions.
pub(crate) async fn dial(
    config: Arc<ClientConfig>,
    route: Arc<Route>,
    options: Arc<protocol::Options>,
    polling_refused: bool,
) -> Result<(Link, Wire), Error> {
    let limit = config.connect_timeout;
    let headers = &config.headers;
    let max = config.max_inbound_bytes;
    if let Some(wire) = Wire::without_opening(&options) {
        let url = config.envelope_url();
        let ws = timeout(limit, WebSocket::connect(&url, headers, max, &route))
            .await
            .map_err(|_| Error::Connect(format!("no WebSocket within {limit:?}")))?
            .map_err(connect_error)?;
        return Ok((Link::WebSocket(ws), wire));
    }
    let timed_out = || Error::Connect(format!("no handshake within {limit:?}"));
    let websocket = async |limit| {
        let url = config.websocket_url();
        let ws = WebSocket::connect(&url, headers, max, &route);
        match timeout(limit, async {
            handshake(Link::WebSocket(ws.await.map_err(connect_error)?), &options).await
        })
        .await
        {
            Ok(r) => r,
            Err(_) => Err(timed_out()),
        }
    };
    let polling = async |limit, upgrade: bool| {
        let to = upgrade.then(|| config.websocket_url());
        let url = config.polling_url();
        let open = Polling::connect(&url, headers, max, to, &route);
        match timeout(limit, async {
            handshake(Link::Polling(open.await.map_err(connect_error)?), &options).await
        })
        .await
        {
            Ok(r) => r,
            Err(_) => Err(timed_out()),
        }
    };
    match config.transports {
        Transports::WebSocket => websocket(limit).await.map_err(|e| match e {
            Error::Connect(m) if m.contains(UPGRADE_REFUSED) => Error::Connect(format!(
                "{m}: the server, or a proxy on the way, may not allow WebSocket; \
                 transports WebSocketThenFallback (the default) or PollingThenUpgrade \
                 connect over HTTP long-polling there"
            )),
            other => other,
        }),
        Transports::Polling => polling(limit, false).await,
        // Polling cannot work through this balancer (no sticky sessions) but a WebSocket
        // session lives on one connection, so it can: after polling met that, WebSocket.
        Transports::PollingThenUpgrade if polling_refused => websocket(limit).await,
        Transports::PollingThenUpgrade => polling(limit, true).await,
        Transports::WebSocketThenFallback => match websocket(limit / 2).await {
            Ok(link) => Ok(link),
            // What fails the WebSocket fails polling too: no second connection (and no second
            // try of refused proxy credentials, which some proxies count toward a lockout).
            Err(e @ Error::Proxy { .. }) if !e.websocket_only() => Err(e),
            Err(ws_error) => {
                debug!(error = %ws_error, "websocket failed; falling back to polling");
                // With the upgrade: a WebSocket that failed for a moment (a balancer's 502
                // during a deploy) is probed again, so the session does not stay on polling.
                polling(limit / 2, true)
                    .await
                    .map_err(|e| match (e, ws_error) {
                        // A proxy's refusal says more than either transport's symptoms: keep
                        // it typed.
                        (proxy @ Error::Proxy { .. }, _) | (_, proxy @ Error::Proxy { .. }) => {
                            proxy
                        }
                        (e, ws_error) => {
                            Error::Connect(format!("websocket: {ws_error}; polling: {e}"))
                        }
                    })
            }
        },
    }
}

/// Reads frames until the protocol's opening one.
async fn handshake(mut link: Link, options: &protocol::Options) -> Result<(Link, Wire), Error> {
    loop {
        match link.recv().await {
            Some(Ok(frame)) => match Wire::opening(frame, options)? {
                Opening::Open(wire) => return Ok((link, *wire)),
                Opening::NotYet => {}
            },
            Some(Err(e)) => return Err(connect_error(e)),
            None => return Err(Error::Connect("closed before the handshake".into())),
        }
    }
}

/// How the transport words a refused upgrade, recognised to add what helps.
const UPGRADE_REFUSED: &str = "on WebSocket upgrade";

fn connect_error(e: TransportError) -> Error {
    match e {
        TransportError::Proxy { proxy, failure } => Error::Proxy { proxy, failure },
        e => Error::Connect(e.to_string()),
    }
}
