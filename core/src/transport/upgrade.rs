//! The WebSocket opening handshake, client side (RFC 6455 §4.1): the upgrade request and the
//! reading of its answer are pure functions; [`open`] is the small I/O loop around them.
//!
//! Ours rather than tungstenite's for the sake of memory: tungstenite reads the answer into a
//! 4 KiB buffer that then becomes the connection's read buffer for good, so a smaller read
//! buffer size was never honoured. Here the read buffer is allocated at the size the route
//! asks for, so a hub's thousands of mostly idle connections can each hold a small one.

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

/// Most header lines read in an answer (as many as tungstenite read: a CDN's refusal can
/// carry dozens, and it must still be told apart as a refusal).
const MAX_HEADERS: usize = 124;

/// Appended to the key before hashing it into the expected `Sec-WebSocket-Accept` (§1.3).
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The handshake's own headers: an app's copy is left out (as tungstenite did), since a
/// second `Host` or key makes servers refuse the request or the answer ambiguous.
/// Extensions are left out too: none is implemented, so none may be offered.
const OWN_HEADERS: [&str; 6] = [
    "host",
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
];

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64 (§4.1).
fn key() -> Result<String, TransportError> {
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

/// One upgrade: its request, and what a valid answer to it must say.
#[derive(Debug)]
pub(crate) struct Upgrade {
    request: Vec<u8>,
    accept: String,
    /// The subprotocols the app offered (its `Sec-WebSocket-Protocol` header), if any.
    protocols: Vec<String>,
}

impl Upgrade {
    /// The upgrade for `url` with the app's extra `headers` and a fresh key. Refuses a header
    /// that is not valid HTTP (a value is never echoed: it may be a credential), before any
    /// connection is opened.
    pub(crate) fn new(url: &Url, headers: &[(String, String)]) -> Result<Self, TransportError> {
        Self::with_key(url, headers, &key()?)
    }

    fn with_key(
        url: &Url,
        headers: &[(String, String)],
        key: &str,
    ) -> Result<Self, TransportError> {
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
        let mut protocols = Vec::new();
        for (k, v) in headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| TransportError::Io(format!("invalid header name {k:?}")))?;
            HeaderValue::from_str(v)
                .map_err(|_| TransportError::Io(format!("invalid value for header {k:?}")))?;
            if OWN_HEADERS.contains(&name.as_str()) {
                continue;
            }
            if name == "sec-websocket-protocol" {
                protocols.extend(v.split(',').map(|p| p.trim().to_owned()));
            }
            // As the app spelled it: a few servers compare names case-sensitively.
            r.push_str(k);
            r.push_str(": ");
            r.push_str(v);
            r.push_str("\r\n");
        }
        r.push_str("\r\n");
        Ok(Upgrade {
            request: r.into_bytes(),
            accept: accept(key),
            protocols,
        })
    }

    /// Reads the server's answer from `buf`: `Ok(None)` while its head is incomplete,
    /// `Ok(Some(len))` once a valid switch to WebSocket of `len` bytes arrived (frames
    /// follow).
    pub(crate) fn answer(&self, buf: &[u8]) -> Result<Option<usize>, TransportError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
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
                "the server's switch to WebSocket {what}: not a WebSocket server this client \
                 can speak to"
            )))
        };
        // Switching protocols is HTTP/1.1's (§4.1: "HTTP/1.1 or higher").
        if resp.version != Some(1) {
            return refused("is not HTTP/1.1");
        }
        if !header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
            return refused("lacks \"Upgrade: websocket\"");
        }
        // A list of tokens (RFC 9110 §7.6.1), one of which must be "Upgrade".
        if !header("connection").is_some_and(|c| {
            c.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        }) {
            return refused("lacks \"Connection: Upgrade\"");
        }
        if header("sec-websocket-accept") != Some(self.accept.as_str()) {
            return refused("does not answer its key (Sec-WebSocket-Accept)");
        }
        // Only a subprotocol offered may be chosen, and one offered must be (§4.1).
        match header("sec-websocket-protocol") {
            Some(p) if !self.protocols.iter().any(|o| o == p) => {
                return refused("chose a subprotocol that was not offered");
            }
            None if !self.protocols.is_empty() => {
                return refused("chose none of the subprotocols offered");
            }
            _ => {}
        }
        if header("sec-websocket-extensions").is_some() {
            return refused("imposes an extension that was not offered");
        }
        Ok(Some(len))
    }

    /// Upgrades `stream`; returns what the server sent after its answer (the first frames,
    /// if any) in a buffer of `read_buffer` bytes' capacity, the connection's read buffer
    /// from now on.
    pub(crate) async fn open(
        &self,
        stream: &mut Stream,
        read_buffer: usize,
    ) -> Result<Vec<u8>, TransportError> {
        let io = |e: std::io::Error| TransportError::Io(e.to_string());
        stream.write_all(&self.request).await.map_err(io)?;
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
            if let Some(len) = self.answer(&buf)? {
                let mut part = Vec::with_capacity(read_buffer.max(buf.len() - len));
                part.extend_from_slice(&buf[len..]);
                return Ok(part);
            }
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

    fn upgrade(headers: &[(&str, &str)]) -> Upgrade {
        let url = Url::parse("ws://h/").unwrap();
        let headers: Vec<_> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Upgrade::with_key(&url, &headers, KEY).unwrap()
    }

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
    fn the_request_carries_path_query_host_key_and_the_apps_headers() {
        let url = Url::parse("ws://[::1]:3000/socket.io/?EIO=4&transport=websocket").unwrap();
        let headers = [
            ("Authorization".to_owned(), "Bearer t".to_owned()),
            // The handshake's own: the app's copies are left out.
            ("Host".to_owned(), "elsewhere".to_owned()),
            ("sec-websocket-key".to_owned(), "x".to_owned()),
        ];
        let u = Upgrade::with_key(&url, &headers, KEY).unwrap();
        assert_eq!(
            String::from_utf8(u.request).unwrap(),
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: [::1]:3000\r\n\
             Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer t\r\n\r\n"
        );
        let default_port = Url::parse("wss://example.com/ws").unwrap();
        let u = Upgrade::with_key(&default_port, &[], KEY).unwrap();
        let r = String::from_utf8(u.request).unwrap();
        assert!(
            r.starts_with("GET /ws HTTP/1.1\r\nHost: example.com\r\n"),
            "{r}"
        );
    }

    #[test]
    fn a_header_that_would_split_the_request_is_refused_without_its_value() {
        let url = Url::parse("ws://h/").unwrap();
        let bad = [("X-Token".to_owned(), "secret\r\nEvil: 1".to_owned())];
        let e = Upgrade::new(&url, &bad).unwrap_err().to_string();
        assert!(e.contains("X-Token") && !e.contains("secret"), "{e}");
        let bad_name = [("X Token".to_owned(), "v".to_owned())];
        assert!(Upgrade::new(&url, &bad_name).is_err());
    }

    #[test]
    fn an_answer_counts_once_whole_and_frames_after_it_are_left() {
        let u = upgrade(&[]);
        let ok = switch("");
        assert_eq!(u.answer(&ok.as_bytes()[..30]), Ok(None));
        let mut with_frame = ok.clone().into_bytes();
        with_frame.extend_from_slice(&[0x81, 1, b'0']);
        assert_eq!(u.answer(&with_frame), Ok(Some(ok.len())));
        let listed = ok.replace("Connection: Upgrade", "Connection: keep-alive, Upgrade");
        assert_eq!(u.answer(listed.as_bytes()), Ok(Some(listed.len())));
    }

    #[test]
    fn a_refusal_or_a_wrong_switch_is_an_error() {
        let u = upgrade(&[]);
        let refused = "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            u.answer(refused.as_bytes()),
            Err(TransportError::UpgradeRefused { status: 403 })
        );
        // A refusal with many headers is still a refusal.
        let cdn = format!(
            "HTTP/1.1 403 Forbidden\r\n{}\r\n",
            "X-Cdn: y\r\n".repeat(100)
        );
        assert_eq!(
            u.answer(cdn.as_bytes()),
            Err(TransportError::UpgradeRefused { status: 403 })
        );
        let wrong_key = switch("").replace("s3pP", "AAAA");
        let not_upgrade = switch("").replace("Upgrade: websocket", "Upgrade: h2c");
        let no_connection = switch("").replace("Connection: Upgrade\r\n", "");
        let http10 = switch("").replace("HTTP/1.1", "HTTP/1.0");
        let imposed_protocol = switch("Sec-WebSocket-Protocol: chat\r\n");
        let imposed_extension = switch("Sec-WebSocket-Extensions: permessage-deflate\r\n");
        for bad in [
            wrong_key,
            not_upgrade,
            no_connection,
            http10,
            imposed_protocol,
            imposed_extension,
        ] {
            assert!(
                matches!(u.answer(bad.as_bytes()), Err(TransportError::Io(_))),
                "{bad}"
            );
        }
        let endless = format!("HTTP/1.1 101 x\r\n{}", "X: y\r\n".repeat(3000));
        assert!(u.answer(endless.as_bytes()).is_err());
        assert!(u.answer(b"\x00garbage\r\n\r\n").is_err());
    }

    #[test]
    fn a_subprotocol_the_app_offered_may_be_chosen_and_one_must_be() {
        let u = upgrade(&[("Sec-WebSocket-Protocol", "chat, superchat")]);
        let chose = switch("Sec-WebSocket-Protocol: superchat\r\n");
        assert_eq!(u.answer(chose.as_bytes()), Ok(Some(chose.len())));
        let other = switch("Sec-WebSocket-Protocol: mqtt\r\n");
        assert!(u.answer(other.as_bytes()).is_err());
        assert!(u.answer(switch("").as_bytes()).is_err());
    }
}
