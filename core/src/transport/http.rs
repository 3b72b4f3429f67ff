//! The HTTP/1.1 client under long-polling: one keep-alive connection per lane (hyper), TLS by
//! rustls for `https://` (configured by [`super::tls`]), along the [`Route`]: `https://`
//! through a proxy's tunnel, `http://` forwarded by an HTTP proxy in absolute form (the form
//! every HTTP proxy takes, where `CONNECT` is often limited to port 443).
//!
//! Polling keeps at most one GET and one POST in flight, so each gets its own lane: a lane is
//! a connection that a request future takes and gives back, which keeps the futures `'static`
//! (the transport stores them across `recv` calls, so cancelling a `recv` loses nothing).

use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::{
    Request, StatusCode,
    body::Bytes,
    client::conn::http1::{self, SendRequest},
    header::{self, HeaderName, HeaderValue},
};
use hyper_util::rt::TokioIo;
use url::Url;

use super::{frame::TransportError, proxy::ProxyFailure, route::Route};

/// A keep-alive connection, absent until first used or after the server closed it.
pub(crate) type Lane = Option<SendRequest<Full<Bytes>>>;

/// What a request returns: the lane to give back, the status and the body.
pub(crate) struct Answer {
    pub(crate) lane: Lane,
    pub(crate) status: StatusCode,
    pub(crate) set_cookies: Vec<String>,
    pub(crate) body: Bytes,
}

/// Sends `method url` with `headers` and `body` on `lane` (connecting it first if needed, along
/// `route`) and reads the whole answer, refusing bodies over `max_body` bytes.
pub(crate) async fn request(
    lane: Lane,
    method: &'static str,
    url: Url,
    headers: Vec<(String, String)>,
    body: Option<Bytes>,
    max_body: usize,
    route: Arc<Route>,
) -> Result<Answer, TransportError> {
    let mut sender = match lane {
        Some(s) if !s.is_closed() => s,
        _ => connect(&url, &route).await?,
    };
    let forwarded = route.forwarding_proxy(&url);
    let target = match forwarded {
        // Absolute form: the proxy needs to know where the request goes. Never the URL's
        // user and password: they would be the proxy's to log (RFC 9110 forbids them here).
        Some(_) => {
            let mut bare = url.clone();
            let _ = bare.set_username("");
            let _ = bare.set_password(None);
            bare.to_string()
        }
        None => request_target(&url),
    };
    let mut req = Request::builder().method(method).uri(target);
    if let Some(auth) = forwarded.and_then(|p| p.authorization()) {
        req = req.header(header::PROXY_AUTHORIZATION, auth);
    }
    let host = url.host_str().unwrap_or_default();
    req = req.header(
        header::HOST,
        match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        },
    );
    for (k, v) in &headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| TransportError::Io(format!("invalid header name {k:?}")))?;
        // The value may be a credential: never echo it in the error.
        let value = HeaderValue::from_str(v)
            .map_err(|_| TransportError::Io(format!("invalid value for header {k:?}")))?;
        req = req.header(name, value);
    }
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "text/plain;charset=UTF-8");
    }
    let req = req
        .body(Full::new(body.unwrap_or_default()))
        .map_err(|e| TransportError::Io(e.to_string()))?;
    sender.ready().await.map_err(io)?;
    let resp = sender.send_request(req).await.map_err(io)?;
    let status = resp.status();
    if let Some(proxy) = forwarded {
        if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
            return Err(proxy.failed(match proxy.authorization() {
                Some(_) => ProxyFailure::CredentialsRejected,
                None => ProxyFailure::CredentialsRequired,
            }));
        }
        // A forwarded request's 401 may be the server's or, from some proxies (tinyproxy),
        // the proxy's refusal of its credentials: say both, since only one can be known.
        if status == StatusCode::UNAUTHORIZED {
            return Err(TransportError::Io(format!(
                "HTTP 401 Unauthorized through proxy {proxy}: from the server, or the proxy \
                 refusing its credentials (some proxies answer 401 rather than 407)"
            )));
        }
    }
    let set_cookies = resp
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    if resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .is_some_and(|len| len > max_body)
    {
        return Err(TransportError::TooLarge { max: max_body });
    }
    // Bounded read: a server that lies about (or omits) the length cannot make us buffer more.
    let limited = http_body_util::Limited::new(resp.into_body(), max_body);
    let body = limited
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                TransportError::TooLarge { max: max_body }
            } else {
                TransportError::Io(e.to_string())
            }
        })?
        .to_bytes();
    Ok(Answer {
        lane: Some(sender),
        status,
        set_cookies,
        body,
    })
}

/// Path and query, what an HTTP/1.1 request line carries.
fn request_target(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}

async fn connect(url: &Url, route: &Route) -> Result<SendRequest<Full<Bytes>>, TransportError> {
    if let Some(proxy) = route.forwarding_proxy(url) {
        return handshake(TokioIo::new(proxy.connect().await?)).await;
    }
    handshake(TokioIo::new(route.connect(url).await?)).await
}

async fn handshake<T>(io_: TokioIo<T>) -> Result<SendRequest<Full<Bytes>>, TransportError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = http1::handshake(io_).await.map_err(io)?;
    // The connection task ends when the sender is dropped or the server closes it.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn io(e: hyper::Error) -> TransportError {
    TransportError::Io(e.to_string())
}
