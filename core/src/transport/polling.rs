//! Engine.IO HTTP long-polling, with the upgrade to WebSocket.
//!
//! To the engine this is one more [`Transport`]: the packets of each long GET come out of
//! `recv` one frame at a time, and fed frames leave in POST batches (at most `maxPayload`
//! bytes each) on `flush`. At most one GET and one POST are in flight, each on its own
//! keep-alive connection; the session id and any cookie the server set (sticky sessions behind
//! a load balancer) go with every request.
//!
//! With `upgrade`, a WebSocket is opened beside the polling session right after the handshake
//! and probed (`2probe` → `3probe`); once the pending GET returns (the server releases it with
//! a noop), `5` is sent on the WebSocket and every later frame uses it. A failed probe leaves
//! the session on polling. The engine never sees the switch.

use std::{collections::VecDeque, future::Future, pin::Pin, sync::Arc};

use hyper::{StatusCode, body::Bytes};
use tracing::{debug, warn};
use url::Url;

use super::{
    frame::{Frame, Transport, TransportError, Utf8Bytes},
    http::{self, Answer, Lane},
    route::Route,
    websocket::WebSocket,
};
use crate::codec::{
    engineio,
    polling::{Piece, decode_payload, encoded_len, is_unknown_session, push_packet},
};

type Pending<T> = Pin<Box<dyn Future<Output = Result<T, TransportError>> + Send>>;

/// How long the WebSocket of an upgrade may take to answer its probe.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What woke a waiting `recv`.
enum Woke {
    Get(Result<Answer, TransportError>),
    Probe(Result<Box<WebSocket>, TransportError>),
}

enum Upgrade {
    /// Polling only (not wanted, not offered, or the probe failed).
    Off,
    /// The WebSocket is being opened and probed.
    Probing(Pending<Box<WebSocket>>),
    /// The probe was answered: switch once the pending GET is back.
    Ready(Box<WebSocket>),
    /// Every frame goes over the WebSocket now.
    Done(Box<WebSocket>),
}

/// An Engine.IO session over HTTP long-polling.
pub struct Polling {
    url: Url,
    headers: Vec<(String, String)>,
    cookies: Vec<String>,
    max_inbound: usize,
    max_payload: usize,
    get: Option<Pending<Answer>>,
    get_lane: Lane,
    post_lane: Lane,
    inbound: VecDeque<Frame>,
    outbound: Vec<Frame>,
    upgrade: Upgrade,
    closed: bool,
    route: Arc<Route>,
    /// `None` during the handshake; then whether a request of the session was answered. A
    /// session refused before that was never this server's (a balancer without sticky
    /// sessions sent the request elsewhere); refused after, it ended.
    confirmed: Option<bool>,
}

impl Polling {
    /// Opens a session at `url` (an `http(s)://…?EIO=4&transport=polling` URL): the handshake
    /// GET. Its packets, the `open` packet first, are the first frames `recv` returns. With
    /// `upgrade_to` (the WebSocket URL), the upgrade starts at once if the server offers it.
    /// Every connection goes along `route` (a proxy or not, TLS for `https://` and `wss://`).
    pub async fn connect(
        url: &Url,
        headers: &[(String, String)],
        max_inbound: usize,
        upgrade_to: Option<Url>,
        route: &Arc<Route>,
    ) -> Result<Self, TransportError> {
        let mut me = Self {
            url: url.clone(),
            headers: headers.to_vec(),
            cookies: Vec::new(),
            max_inbound,
            max_payload: 1_000_000,
            get: None,
            get_lane: None,
            post_lane: None,
            inbound: VecDeque::new(),
            outbound: Vec::new(),
            upgrade: Upgrade::Off,
            closed: false,
            route: route.clone(),
            confirmed: None,
        };
        let answer = http::request(
            None,
            "GET",
            me.url.clone(),
            me.request_headers(),
            None,
            max_inbound,
            me.route.clone(),
        )
        .await?;
        me.get_lane = me.take_answer(answer)?;
        let handshake = match me.inbound.front() {
            Some(Frame::Text(t)) => match engineio::decode_text(t) {
                Ok(engineio::Packet::Open(h)) => h,
                _ => {
                    return Err(TransportError::Io(
                        "polling handshake did not start with open".into(),
                    ));
                }
            },
            _ => return Err(TransportError::Io("empty polling handshake".into())),
        };
        me.max_payload = handshake.max_payload;
        me.url.query_pairs_mut().append_pair("sid", &handshake.sid);
        me.confirmed = Some(false);
        if let Some(mut ws_url) =
            upgrade_to.filter(|_| handshake.upgrades.iter().any(|u| u == "websocket"))
        {
            ws_url.query_pairs_mut().append_pair("sid", &handshake.sid);
            let headers = me.request_headers();
            // A proxy that swallows the upgrade must not leave a probe hanging forever.
            let probe = tokio::time::timeout(
                PROBE_TIMEOUT,
                probe(ws_url, headers, max_inbound, me.route.clone()),
            );
            me.upgrade = Upgrade::Probing(Box::pin(async move {
                probe
                    .await
                    .unwrap_or_else(|_| Err(TransportError::Io("upgrade probe timed out".into())))
            }));
        }
        Ok(me)
    }

    /// Whether the session moved to WebSocket.
    pub fn upgraded(&self) -> bool {
        matches!(self.upgrade, Upgrade::Done(_))
    }

    fn request_headers(&self) -> Vec<(String, String)> {
        let mut h = self.headers.clone();
        if !self.cookies.is_empty() {
            h.push(("Cookie".into(), self.cookies.join("; ")));
        }
        h
    }

    /// Reads one answer: gives the lane back, keeps cookies, queues the packets.
    fn take_answer(&mut self, answer: Answer) -> Result<Lane, TransportError> {
        for c in &answer.set_cookies {
            // `name=value; Path=/; HttpOnly`: only the pair goes back.
            let pair = c.split(';').next().unwrap_or_default().trim();
            let name = pair.split('=').next().unwrap_or_default();
            self.cookies
                .retain(|old| old.split('=').next() != Some(name));
            self.cookies.push(pair.to_owned());
        }
        if answer.status != StatusCode::OK {
            if answer.status == StatusCode::BAD_REQUEST && is_unknown_session(&answer.body) {
                return Err(self.unknown_session());
            }
            // Otherwise 400 is how the server says the session is gone (closed, timed out).
            return Err(TransportError::Io(format!(
                "HTTP {} on a polling request",
                answer.status
            )));
        }
        self.answered();
        let text = std::str::from_utf8(&answer.body)
            .map_err(|_| TransportError::Io("polling payload is not UTF-8".into()))?;
        let pieces = decode_payload(text).map_err(|e| TransportError::Io(e.to_string()))?;
        for piece in pieces {
            self.inbound.push_back(match piece {
                Piece::Text(t) => Frame::Text(Utf8Bytes::from(t.to_owned())),
                Piece::Binary(b) => Frame::Binary(Bytes::from(b)),
            });
        }
        Ok(answer.lane)
    }

    fn start_get(&mut self) {
        let mut url = self.url.clone();
        // Cache busting, as every Engine.IO client does: some proxies cache GETs.
        url.query_pairs_mut()
            .append_pair("t", &fastrand::u64(..).to_string());
        let fut = http::request(
            self.get_lane.take(),
            "GET",
            url,
            self.request_headers(),
            None,
            self.max_inbound,
            self.route.clone(),
        );
        self.get = Some(Box::pin(fut));
    }

    /// Sends `5` on the probed WebSocket: from now on every frame goes there.
    async fn finish_upgrade(&mut self) -> Result<(), TransportError> {
        self.post_outbound().await?;
        let Upgrade::Ready(mut ws) = std::mem::replace(&mut self.upgrade, Upgrade::Off) else {
            return Ok(());
        };
        ws.feed(Frame::Text(Utf8Bytes::from_static("5"))).await?;
        ws.flush().await?;
        debug!("upgraded from polling to websocket");
        self.get_lane = None;
        self.post_lane = None;
        self.upgrade = Upgrade::Done(ws);
        Ok(())
    }

    /// POSTs what was fed, in batches of at most `maxPayload` bytes, one at a time.
    async fn post_outbound(&mut self) -> Result<(), TransportError> {
        let frames = std::mem::take(&mut self.outbound);
        let mut payload = String::new();
        for frame in &frames {
            let piece = match frame {
                Frame::Text(t) => Piece::Text(t.as_str()),
                Frame::Binary(b) => Piece::Binary(b.to_vec()),
            };
            if !payload.is_empty() && payload.len() + encoded_len(&piece, false) > self.max_payload
            {
                self.post(std::mem::take(&mut payload)).await?;
            }
            push_packet(&mut payload, &piece);
        }
        if !payload.is_empty() {
            self.post(payload).await?;
        }
        Ok(())
    }

    async fn post(&mut self, payload: String) -> Result<(), TransportError> {
        let answer = http::request(
            self.post_lane.take(),
            "POST",
            self.url.clone(),
            self.request_headers(),
            Some(Bytes::from(payload)),
            4096,
            self.route.clone(),
        )
        .await?;
        let status = answer.status;
        self.post_lane = answer.lane;
        if status == StatusCode::BAD_REQUEST && is_unknown_session(&answer.body) {
            return Err(self.unknown_session());
        }
        if status != StatusCode::OK {
            return Err(TransportError::Io(format!(
                "HTTP {status} on a polling POST"
            )));
        }
        self.answered();
        Ok(())
    }

    /// A request of the session was answered: this server holds it.
    fn answered(&mut self) {
        if self.confirmed == Some(false) {
            self.confirmed = Some(true);
        }
    }

    /// The server said it does not know the session: never this server's if no request of
    /// it was answered yet (another node opened it), otherwise ended (closed, expired).
    fn unknown_session(&self) -> TransportError {
        match self.confirmed {
            Some(true) => TransportError::Io(
                "the server no longer knows this long-polling session (closed or expired)".into(),
            ),
            _ => TransportError::UnknownSession,
        }
    }
}

/// Opens the WebSocket of an upgrade and checks that it answers the probe.
async fn probe(
    url: Url,
    headers: Vec<(String, String)>,
    max: usize,
    route: Arc<Route>,
) -> Result<Box<WebSocket>, TransportError> {
    let mut ws = WebSocket::connect(&url, &headers, max, &route).await?;
    ws.feed(Frame::Text(Utf8Bytes::from_static("2probe")))
        .await?;
    ws.flush().await?;
    match ws.recv().await {
        Some(Ok(Frame::Text(t))) if t.as_str() == "3probe" => Ok(Box::new(ws)),
        other => Err(TransportError::Io(format!(
            "upgrade probe not answered: {other:?}"
        ))),
    }
}

impl Transport for Polling {
    async fn recv(&mut self) -> Option<Result<Frame, TransportError>> {
        loop {
            if let Some(frame) = self.inbound.pop_front() {
                return Some(Ok(frame));
            }
            if let Upgrade::Done(ws) = &mut self.upgrade {
                return ws.recv().await;
            }
            if self.closed {
                return None;
            }
            if self.get.is_none() {
                if matches!(self.upgrade, Upgrade::Ready(_)) {
                    // Boxed, like every HTTP request below: their state would otherwise sit
                    // in every engine task's `recv`, polling or not.
                    if let Err(e) = Box::pin(self.finish_upgrade()).await {
                        return Some(Err(e));
                    }
                    continue;
                }
                self.start_get();
            }
            // Both futures live in `self`: a cancelled `recv` resumes them next time.
            let Some(get) = self.get.as_mut() else {
                continue;
            };
            let woke = match &mut self.upgrade {
                Upgrade::Probing(p) => tokio::select! {
                    a = get => Woke::Get(a),
                    r = p => Woke::Probe(r),
                },
                _ => Woke::Get(get.await),
            };
            let answer = match woke {
                Woke::Get(a) => a,
                Woke::Probe(r) => {
                    self.upgrade = match r {
                        Ok(ws) => Upgrade::Ready(ws),
                        Err(e) => {
                            warn!(error = %e, "websocket upgrade failed; staying on polling");
                            Upgrade::Off
                        }
                    };
                    continue;
                }
            };
            self.get = None;
            match answer.and_then(|a| self.take_answer(a)) {
                Ok(lane) => self.get_lane = lane,
                Err(e) => return Some(Err(e)),
            }
        }
    }

    async fn feed(&mut self, frame: Frame) -> Result<(), TransportError> {
        match &mut self.upgrade {
            Upgrade::Done(ws) => ws.feed(frame).await,
            _ => {
                self.outbound.push(frame);
                Ok(())
            }
        }
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        match &mut self.upgrade {
            Upgrade::Done(ws) => ws.flush().await,
            _ => Box::pin(self.post_outbound()).await,
        }
    }

    /// Every POST is answered once the server has read it, so a flushed one was read; on
    /// the upgraded WebSocket, its ping.
    async fn settle(&mut self) -> Result<(), TransportError> {
        match &mut self.upgrade {
            Upgrade::Done(ws) => ws.settle().await,
            _ => Ok(()),
        }
    }

    async fn close(&mut self) {
        self.closed = true;
        self.get = None;
        match &mut self.upgrade {
            Upgrade::Done(ws) => ws.close().await,
            _ => {
                // The close packet tells the server at once instead of at its ping timeout.
                self.outbound.push(Frame::Text(Utf8Bytes::from_static("1")));
                let _ = Box::pin(self.post_outbound()).await;
            }
        }
        self.upgrade = Upgrade::Off;
    }
}
