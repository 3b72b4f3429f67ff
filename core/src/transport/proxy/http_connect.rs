//! HTTP `CONNECT` (RFC 9110 §9.3.6): asks an HTTP proxy for a tunnel to `host:port`. Pure:
//! [`super::tunnel`] does the I/O.

use base64::{Engine as _, engine::general_purpose::STANDARD};

use super::{credentials::Credentials, failure::ProxyFailure};

/// The longest answer accepted before its blank line: a proxy's refusal page is small, and an
/// endless header block must not grow memory.
const MAX_RESPONSE: usize = 16 * 1024;

/// The request asking for a tunnel to `authority` (`host:port`, IPv6 in brackets).
pub(super) fn request(authority: &str, credentials: Option<&Credentials>) -> Vec<u8> {
    let mut r = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(c) = credentials {
        r.push_str("Proxy-Authorization: ");
        r.push_str(&basic(c));
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// `Basic` credentials for `Proxy-Authorization` (RFC 7617).
pub(super) fn basic(c: &Credentials) -> String {
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", c.user, c.password))
    )
}

/// Reads the proxy's answer from `buf`: `Ok(None)` while the head is incomplete,
/// `Ok(Some(len))` once a 2xx head of `len` bytes arrived (the tunnel is open after it).
pub(super) fn response(
    buf: &[u8],
    authority: &str,
    has_credentials: bool,
) -> Result<Option<usize>, ProxyFailure> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let code = resp.code.unwrap_or(0);
            match code {
                200..=299 => Ok(Some(len)),
                // 407 is the standard answer; some proxies (tinyproxy) send 401 to a CONNECT,
                // which only the proxy reads, so it means the same.
                401 | 407 if !offers_basic(resp.headers) => {
                    Err(ProxyFailure::UnsupportedAuth(schemes(resp.headers)))
                }
                401 | 407 if has_credentials => Err(ProxyFailure::CredentialsRejected),
                401 | 407 => Err(ProxyFailure::CredentialsRequired),
                _ => Err(ProxyFailure::Refused {
                    target: authority.to_owned(),
                    reason: format!("HTTP {code} {}", resp.reason.unwrap_or("")),
                }),
            }
        }
        Ok(httparse::Status::Partial) if buf.len() > MAX_RESPONSE => Err(ProxyFailure::Protocol(
            format!("an answer to CONNECT longer than {MAX_RESPONSE} bytes"),
        )),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(ProxyFailure::Protocol(format!(
            "an unreadable answer to CONNECT ({e})"
        ))),
    }
}

/// The challenges of a refusal (`Proxy-Authenticate`, or `WWW-Authenticate` from proxies
/// that answer 401).
fn challenges<'h>(headers: &'h [httparse::Header<'h>]) -> impl Iterator<Item = &'h str> + 'h {
    headers
        .iter()
        .filter(|h| {
            h.name.eq_ignore_ascii_case("proxy-authenticate")
                || h.name.eq_ignore_ascii_case("www-authenticate")
        })
        .filter_map(|h| std::str::from_utf8(h.value).ok())
}

/// Whether Basic is among the schemes offered; a refusal that names no scheme counts as
/// Basic (the only one this client speaks).
fn offers_basic(headers: &[httparse::Header<'_>]) -> bool {
    let mut any = false;
    for c in challenges(headers) {
        any = true;
        if c.trim_start().to_ascii_lowercase().starts_with("basic") {
            return true;
        }
    }
    !any
}

/// The schemes offered, for the error (`NTLM, Negotiate`).
fn schemes(headers: &[httparse::Header<'_>]) -> String {
    challenges(headers)
        .filter_map(|c| c.split_whitespace().next())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            user: "ann".into(),
            password: "pa:ss".into(),
        }
    }

    #[test]
    fn the_request_names_the_target_and_carries_basic_credentials() {
        let r = String::from_utf8(request("[::1]:443", Some(&creds()))).unwrap();
        assert_eq!(
            r,
            "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\
             Proxy-Authorization: Basic YW5uOnBhOnNz\r\n\r\n"
        );
        let r = String::from_utf8(request("example.com:80", None)).unwrap();
        assert!(!r.contains("Proxy-Authorization"), "{r}");
    }

    #[test]
    fn answers_are_read_whole_before_they_count() {
        let ok = b"HTTP/1.1 200 Connection established\r\nVia: x\r\n\r\n";
        assert_eq!(response(&ok[..20], "h:1", false), Ok(None));
        assert_eq!(response(ok, "h:1", false), Ok(Some(ok.len())));
        let tinyproxy = b"HTTP/1.0 401 Unauthorized\r\n\r\n";
        assert_eq!(
            response(tinyproxy, "h:1", true),
            Err(ProxyFailure::CredentialsRejected)
        );
        let auth = b"HTTP/1.0 407 Proxy Authentication Required\r\n\r\n";
        assert_eq!(
            response(auth, "h:1", false),
            Err(ProxyFailure::CredentialsRequired)
        );
        assert_eq!(
            response(auth, "h:1", true),
            Err(ProxyFailure::CredentialsRejected)
        );
        let ntlm = b"HTTP/1.1 407 Proxy Authentication Required\r\n\
                     Proxy-Authenticate: NTLM\r\nProxy-Authenticate: Negotiate\r\n\r\n";
        assert_eq!(
            response(ntlm, "h:1", true),
            Err(ProxyFailure::UnsupportedAuth("NTLM, Negotiate".into()))
        );
        let offered = b"HTTP/1.1 407 x\r\nProxy-Authenticate: NTLM\r\n\
                        Proxy-Authenticate: Basic realm=\"corp\"\r\n\r\n";
        assert_eq!(
            response(offered, "h:1", false),
            Err(ProxyFailure::CredentialsRequired)
        );
        let forbidden = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            response(forbidden, "h:1", true),
            Err(ProxyFailure::Refused {
                target: "h:1".into(),
                reason: "HTTP 403 Forbidden".into()
            })
        );
        assert!(matches!(
            response(b"SSH-2.0-OpenSSH\r\n\r\n", "h:1", false),
            Err(ProxyFailure::Protocol(_))
        ));
        let endless = [b"HTTP/1.1 200 OK\r\n".as_slice(), &[b'a'; MAX_RESPONSE]].concat();
        assert!(matches!(
            response(&endless, "h:1", false),
            Err(ProxyFailure::Protocol(_))
        ));
    }
}
