//! The WebSocket opening handshake, client side (RFC 6455 §4.1): the upgrade request and the
//! reading of its answer are pure functions; [`open`] is the small I/O loop around them.
//!
//! Ours rather than tungstenite's for the sake of memory: tungstenite reads the answer into a
//! 4 KiB buffer that then becomes the connection's read buffer for good, whatever read buffer
//! size was configured. Here the read buffer is allocated at the size the route asks for, so
//! a hub's thousands of mostly idle connections can each hold a small one.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use hyper::header::{HeaderName, HeaderValue};
use ring::{
    digest::{SHA1_FOR_LEGACY_USE_ONLY, digest},
    rand::{SecureRandom, SystemRandom},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::Url;

use super::{frame::TransportError, stream::Stream};

/// The longest answer accepted before its blank line: an upgrade answer is a few hundred
/// bytes, and an endless header block must not grow memory.
const MAX_ANSWER: usize = 16 * 1024;

/// Appended to the key before hashing it into the expected `Sec-WebSocket-Accept` (§1.3).
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64 (§4.1).
pub(crate) fn key() -> Result<String, TransportError> {
    let mut nonce = [0u8; 16];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| TransportError::Io("no randomness for the WebSocket key".into()))?;
    Ok(STANDARD.encode(nonce))
}

/// The `Sec-WebSocket-Accept` a server must answer `key` with.
fn accept(key: &str) -> String {
    let hash = digest(
        &SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}{ACCEPT_GUID}").as_bytes(),
    );
    STANDARD.encode(hash.as_ref())
}

/// The upgrade request for `url` with the app's extra `headers`; refuses a header that is not
/// valid HTTP (a value is never echoed: it may be a credential).
pub(crate) fn request(
    url: &Url,
    headers: &[(String, String)],
    key: &str,
) -> Result<Vec<u8>, TransportError> {
    let host = url
        .host_str()
        .ok_or_else(|| TransportError::Io("URL has no host".into()))?;
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let mut r = format!(
        "GET {target} HTTP/1.1\r\nHost: {authority}\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n"
    );
    for (k, v) in headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| TransportError::Io(format!("invalid header name {k:?}")))?;
        HeaderValue::from_str(v)
            .map_err(|_| TransportError::Io(format!("invalid value for header {k:?}")))?;
        r.push_str(name.as_str());
        r.push_str(": ");
        r.push_str(v);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    Ok(r.into_bytes())
}

/// Reads the server's answer from `buf`: `Ok(None)` while its head is incomplete,
/// `Ok(Some(len))` once a valid switch to WebSocket of `len` bytes arrived (frames follow).
pub(crate) fn answer(buf: &[u8], key: &str) -> Result<Option<usize>, TransportError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_ANSWER => {
            return Err(TransportError::Io(format!(
                "an answer to the WebSocket upgrade longer than {MAX_ANSWER} bytes"
            )));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => {
            return Err(TransportError::Io(format!(
                "an unreadable answer to the WebSocket upgrade ({e})"
            )));
        }
    };
    let status = resp.code.unwrap_or(0);
    if status != 101 {
        return Err(TransportError::UpgradeRefused { status });
    }
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    };
    let refused = |what: &str| {
        Err(TransportError::Io(format!(
            "the server switched protocols without {what}: not a WebSocket server"
        )))
    };
    if !header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
        return refused("\"Upgrade: websocket\"");
    }
    // A list of tokens (RFC 9110 §7.6.1), one of which must be "Upgrade".
    if !header("connection").is_some_and(|c| {
        c.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    }) {
        return refused("\"Connection: Upgrade\"");
    }
    if header("sec-websocket-accept") != Some(accept(key).as_str()) {
        return refused("the Sec-WebSocket-Accept that answers its key");
    }
    // Neither subprotocols nor extensions were asked for, so none may be imposed (§4.1).
    if header("sec-websocket-protocol").is_some() || header("sec-websocket-extensions").is_some() {
        return refused("leaving out a subprotocol or extension the client never offered");
    }
    Ok(Some(len))
}

/// Upgrades `stream` to WebSocket for `url`; returns what the server sent after its answer
/// (the first frames, if any) in a buffer of `read_buffer` bytes' capacity, the connection's
/// read buffer from now on.
pub(crate) async fn open(
    stream: &mut Stream,
    url: &Url,
    headers: &[(String, String)],
    read_buffer: usize,
) -> Result<Vec<u8>, TransportError> {
    let key = key()?;
    let io = |e: std::io::Error| TransportError::Io(e.to_string());
    stream
        .write_all(&request(url, headers, &key)?)
        .await
        .map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut buf = Vec::with_capacity(1024);
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(1024);
        }
        if stream.read_buf(&mut buf).await.map_err(io)? == 0 {
            return Err(TransportError::Io(
                "the server closed the connection during the WebSocket upgrade".into(),
            ));
        }
        if let Some(len) = answer(&buf, &key)? {
            let mut part = Vec::with_capacity(read_buffer.max(buf.len() - len));
            part.extend_from_slice(&buf[len..]);
            return Ok(part);
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The answer a server gives `key`, for tests of a whole connection.
    pub(crate) fn accept_for(key: &str) -> String {
        accept(key)
    }

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn switch(extra: &str) -> String {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n{extra}\r\n"
        )
    }

    #[test]
    fn the_accept_value_is_the_rfc_example() {
        // RFC 6455 §1.3's worked example.
        assert_eq!(accept(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn keys_are_fresh_16_byte_nonces() {
        let (a, b) = (key().unwrap(), key().unwrap());
        assert_ne!(a, b);
        assert_eq!(STANDARD.decode(a).unwrap().len(), 16);
    }

    #[test]
    fn the_request_carries_path_query_host_key_and_headers() {
        let url = Url::parse("ws://[::1]:3000/socket.io/?EIO=4&transport=websocket").unwrap();
        let headers = [("Authorization".to_owned(), "Bearer t".to_owned())];
        let r = String::from_utf8(request(&url, &headers, KEY).unwrap()).unwrap();
        assert_eq!(
            r,
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: [::1]:3000\r\n\
             Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nauthorization: Bearer t\r\n\r\n"
        );
        let default_port = Url::parse("wss://example.com/ws").unwrap();
        let r = String::from_utf8(request(&default_port, &[], KEY).unwrap()).unwrap();
        assert!(
            r.starts_with("GET /ws HTTP/1.1\r\nHost: example.com\r\n"),
            "{r}"
        );
    }

    #[test]
    fn a_header_that_would_split_the_request_is_refused_without_its_value() {
        let url = Url::parse("ws://h/").unwrap();
        let bad = [("X-Token".to_owned(), "secret\r\nEvil: 1".to_owned())];
        let e = request(&url, &bad, KEY).unwrap_err().to_string();
        assert!(e.contains("X-Token") && !e.contains("secret"), "{e}");
        let bad_name = [("X Token".to_owned(), "v".to_owned())];
        assert!(request(&url, &bad_name, KEY).is_err());
    }

    #[test]
    fn an_answer_counts_once_whole_and_frames_after_it_are_left() {
        let ok = switch("");
        assert_eq!(answer(&ok.as_bytes()[..30], KEY), Ok(None));
        let with_frame = format!("{ok}\u{81}\u{1}0");
        assert_eq!(answer(with_frame.as_bytes(), KEY), Ok(Some(ok.len())));
        let listed = ok.replace("Connection: Upgrade", "Connection: keep-alive, Upgrade");
        assert_eq!(answer(listed.as_bytes(), KEY), Ok(Some(listed.len())));
    }

    #[test]
    fn a_refusal_or_a_wrong_switch_is_an_error() {
        let refused = "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            answer(refused.as_bytes(), KEY),
            Err(TransportError::UpgradeRefused { status: 403 })
        );
        let wrong_key = switch("").replace("s3pP", "AAAA");
        let not_upgrade = switch("").replace("Upgrade: websocket", "Upgrade: h2c");
        let no_connection = switch("").replace("Connection: Upgrade\r\n", "");
        let imposed = switch("Sec-WebSocket-Protocol: chat\r\n");
        for bad in [wrong_key, not_upgrade, no_connection, imposed] {
            assert!(
                matches!(answer(bad.as_bytes(), KEY), Err(TransportError::Io(_))),
                "{bad}"
            );
        }
        let endless = format!("HTTP/1.1 101 x\r\n{}", "X: y\r\n".repeat(3000));
        assert!(answer(endless.as_bytes(), KEY).is_err());
        assert!(answer(b"\x00garbage\r\n\r\n", KEY).is_err());
    }
}
