//! Proxies between the client and its server: HTTP (`CONNECT` tunnels, and plain forwarding
//! for `http://` long-polling) and SOCKS5, chosen explicitly or from the conventional
//! environment variables. TLS to the server runs end to end inside the tunnel, so the proxy
//! sees only the server's name and port, and certificate pinning applies to the server.
//!
//! A proxy is named in errors and logs by scheme, host and port; its credentials never are.

mod credentials;
pub(crate) mod failure;
mod http_connect;
mod no_proxy;
mod socks5;

use std::{fmt, net::IpAddr};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use url::Url;

pub(crate) use self::credentials::Credentials;
pub use self::{failure::ProxyFailure, no_proxy::NoProxy};
use super::frame::TransportError;

/// How a client reaches its server: directly, through a proxy, or as the environment says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ProxyConfig {
    /// Straight to the server (the default for the library; the CLI reads the environment).
    #[default]
    Direct,
    /// Through `proxy`, except to the hosts `no_proxy` names.
    Via {
        /// The proxy.
        proxy: Proxy,
        /// Hosts reached directly.
        no_proxy: NoProxy,
    },
    /// As `HTTPS_PROXY` (for `https://`/`wss://` servers), `HTTP_PROXY` (for `http://`/`ws://`),
    /// `ALL_PROXY` (either) and `NO_PROXY` say, lowercase names first. Unlike curl the
    /// uppercase `HTTP_PROXY` counts too, except in a CGI process (`REQUEST_METHOD` set),
    /// where a request could have planted it. Read once, when the client is created: a
    /// client made for one network keeps its proxy (make a new client when the proxy
    /// changes).
    Environment,
}

impl ProxyConfig {
    /// Every connection through the proxy at `url` (`http://user:password@host:port`,
    /// `socks5://…` resolving the server's name locally, `socks5h://…` letting the proxy
    /// resolve it).
    pub fn via(url: &str) -> Result<Self, String> {
        Ok(Self::Via {
            proxy: Proxy::parse(url)?,
            no_proxy: NoProxy::default(),
        })
    }

    /// The proxy for connections to `server`, if any, reading variables with `env`.
    pub(crate) fn resolve(
        &self,
        server: &Url,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Proxy>, String> {
        let host = server.host_str().unwrap_or_default();
        match self {
            Self::Direct => Ok(None),
            Self::Via { proxy, no_proxy } => Ok((!no_proxy.matches(host)).then(|| proxy.clone())),
            Self::Environment => {
                let var = |names: &[&'static str]| {
                    names.iter().find_map(|n: &&'static str| {
                        env(n).filter(|v| !v.trim().is_empty()).map(|v| (*n, v))
                    })
                };
                let secure = matches!(server.scheme(), "https" | "wss");
                // In a CGI process `HTTP_PROXY` may come from a request's `Proxy:` header
                // ("httpoxy"), so there only the lowercase name counts, as curl reads it.
                let cgi = env("REQUEST_METHOD").is_some();
                let scheme_vars: &[&str] = match (secure, cgi) {
                    (true, _) => &["https_proxy", "HTTPS_PROXY"],
                    (false, false) => &["http_proxy", "HTTP_PROXY"],
                    (false, true) => &["http_proxy"],
                };
                let Some((name, value)) =
                    var(scheme_vars).or_else(|| var(&["all_proxy", "ALL_PROXY"]))
                else {
                    return Ok(None);
                };
                let no_proxy = var(&["no_proxy", "NO_PROXY"])
                    .map(|(_, v)| NoProxy::parse(&v))
                    .unwrap_or_default();
                if no_proxy.matches(host) {
                    return Ok(None);
                }
                Proxy::parse(value.trim())
                    .map(Some)
                    .map_err(|e| format!("{name}: {e}"))
            }
        }
    }
}

/// A proxy server and the credentials it wants.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    kind: ProxyKind,
    host: String,
    port: u16,
    credentials: Option<Credentials>,
}

/// What kind of proxy it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    /// An HTTP proxy: `CONNECT` tunnels, and plain forwarding for `http://` polling.
    Http,
    /// A SOCKS5 proxy; with `remote_dns` (`socks5h://`) the proxy resolves the server's name.
    Socks5 {
        /// Whether the proxy resolves the server's name.
        remote_dns: bool,
    },
}

impl Proxy {
    /// Reads a proxy URL: `http://[user:password@]host[:port]` (port 1080 if absent, curl's
    /// default), `socks5://…` or `socks5h://…` (port 1080). A bare `host:port` is an HTTP
    /// proxy, as in many `HTTPS_PROXY` values. User and password are percent-decoded.
    pub fn parse(url: &str) -> Result<Self, String> {
        let with_scheme = if url.contains("://") {
            url.to_owned()
        } else {
            format!("http://{url}")
        };
        // Never echo the input: it may hold a password.
        let parsed =
            Url::parse(&with_scheme).map_err(|e| format!("proxy URL is not a URL ({e})"))?;
        let kind = match parsed.scheme() {
            "http" => ProxyKind::Http,
            "socks5" => ProxyKind::Socks5 { remote_dns: false },
            "socks5h" => ProxyKind::Socks5 { remote_dns: true },
            "https" => {
                return Err(
                    "https:// proxies (TLS to the proxy itself) are not supported; use \
                            http:// — TLS to the server stays end to end through the tunnel"
                        .into(),
                );
            }
            s => {
                return Err(format!(
                    "proxy scheme must be http, socks5 or socks5h, not {s:?}"
                ));
            }
        };
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("proxy URL has no host")?
            .to_owned();
        if parsed.path() != "/" && !parsed.path().is_empty()
            || parsed.query().is_some()
            || parsed.fragment().is_some()
        {
            return Err("proxy URL must be scheme://[user:password@]host[:port] only".into());
        }
        let decode = |s: &str| {
            percent_decode(s).ok_or_else(|| "proxy credentials are not valid UTF-8".to_owned())
        };
        let credentials = match (parsed.username(), parsed.password()) {
            ("", None) => None,
            (user, password) => Some(Credentials {
                user: decode(user)?,
                password: decode(password.unwrap_or(""))?,
            }),
        };
        Ok(Self {
            kind,
            host,
            port: explicit_port(&with_scheme).unwrap_or(1080),
            credentials,
        })
    }

    /// Sets the user name and password the proxy asks for (Basic for HTTP, RFC 1929 for
    /// SOCKS5), for apps that keep them apart from the URL.
    pub fn with_credentials(mut self, user: &str, password: &str) -> Self {
        self.credentials = Some(Credentials {
            user: user.to_owned(),
            password: password.to_owned(),
        });
        self
    }

    /// What kind of proxy it is.
    pub fn kind(&self) -> ProxyKind {
        self.kind
    }

    /// Whether `http://` requests go to this proxy as they are (absolute-form), rather than
    /// through a tunnel: how HTTP proxies carry plain HTTP, and the form they allow most.
    pub(crate) fn forwards_plain_http(&self) -> bool {
        self.kind == ProxyKind::Http
    }

    /// `Proxy-Authorization` for requests forwarded as they are.
    pub(crate) fn authorization(&self) -> Option<String> {
        self.credentials.as_ref().map(http_connect::basic)
    }

    /// A TCP connection to the proxy itself.
    pub(crate) async fn connect(&self) -> Result<TcpStream, TransportError> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let tcp = TcpStream::connect((host, self.port))
            .await
            .map_err(|e| self.failed(ProxyFailure::Unreachable(e.to_string())))?;
        // Nagle off: heartbeats and acks are small and latency-sensitive.
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    /// A TCP connection to `host:port` through this proxy, ready for TLS or plain bytes.
    pub(crate) async fn tunnel(&self, host: &str, port: u16) -> Result<TcpStream, TransportError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match self.kind {
            ProxyKind::Http => {
                let mut tcp = self.connect().await?;
                let authority = match bare.parse::<IpAddr>() {
                    Ok(IpAddr::V6(_)) => format!("[{bare}]:{port}"),
                    _ => format!("{bare}:{port}"),
                };
                let request = http_connect::request(&authority, self.credentials.as_ref());
                self.write(&mut tcp, &request).await?;
                let mut buf = Vec::with_capacity(512);
                loop {
                    self.read(&mut tcp, &mut buf).await?;
                    let answer =
                        http_connect::response(&buf, &authority, self.credentials.is_some())
                            .map_err(|f| self.failed(f))?;
                    if let Some(len) = answer {
                        return self.opened(tcp, buf.len() - len);
                    }
                }
            }
            ProxyKind::Socks5 { remote_dns } => {
                let targets = match bare.parse::<IpAddr>() {
                    Ok(ip) => vec![socks5::Target::Ip(ip)],
                    Err(_) if remote_dns => vec![socks5::Target::Name(bare.to_owned())],
                    Err(_) => resolve(bare, port)
                        .await?
                        .into_iter()
                        .map(socks5::Target::Ip)
                        .collect(),
                };
                // A name resolved here may have addresses the proxy cannot reach (IPv6 first,
                // a proxy without an IPv6 route): the next one gets its own attempt.
                let mut refused = None;
                for target in targets {
                    match self.socks5(target, port).await {
                        Err(
                            e @ TransportError::Proxy {
                                failure: ProxyFailure::Refused { .. },
                                ..
                            },
                        ) => refused = Some(e),
                        other => return other,
                    }
                }
                Err(refused
                    .unwrap_or_else(|| TransportError::Io(format!("resolving {bare}: no address"))))
            }
        }
    }

    /// One SOCKS5 handshake for a connection to `target:port`, on a fresh connection.
    async fn socks5(&self, target: socks5::Target, port: u16) -> Result<TcpStream, TransportError> {
        let mut tcp = self.connect().await?;
        let (mut hs, greeting) = socks5::Handshake::start(target, port, self.credentials.clone())
            .map_err(|f| self.failed(f))?;
        self.write(&mut tcp, &greeting).await?;
        let mut buf = Vec::with_capacity(64);
        loop {
            self.read(&mut tcp, &mut buf).await?;
            loop {
                match hs.advance(&buf).map_err(|f| self.failed(f))? {
                    socks5::Step::Read => break,
                    socks5::Step::Write { consumed, send } => {
                        buf.drain(..consumed);
                        self.write(&mut tcp, &send).await?;
                    }
                    socks5::Step::Open { consumed } => {
                        return self.opened(tcp, buf.len() - consumed);
                    }
                }
            }
        }
    }

    /// The tunnel is open; bytes the proxy sent past its answer would belong to the server,
    /// which does not speak first on any protocol carried here.
    fn opened(&self, tcp: TcpStream, extra: usize) -> Result<TcpStream, TransportError> {
        if extra > 0 {
            return Err(self.failed(ProxyFailure::Protocol(
                "data before the tunnel was used".into(),
            )));
        }
        Ok(tcp)
    }

    async fn write(&self, tcp: &mut TcpStream, bytes: &[u8]) -> Result<(), TransportError> {
        tcp.write_all(bytes)
            .await
            .map_err(|e| self.failed(ProxyFailure::Unreachable(e.to_string())))
    }

    async fn read(&self, tcp: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), TransportError> {
        let mut chunk = [0u8; 512];
        let n = tcp
            .read(&mut chunk)
            .await
            .map_err(|e| self.failed(ProxyFailure::Unreachable(e.to_string())))?;
        if n == 0 {
            return Err(self.failed(ProxyFailure::Protocol(
                "closed the connection during the handshake".into(),
            )));
        }
        buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// A transport error naming this proxy.
    pub(crate) fn failed(&self, failure: ProxyFailure) -> TransportError {
        TransportError::Proxy {
            proxy: self.to_string(),
            failure,
        }
    }
}

/// Resolves `host` here, for `socks5://` (the proxy then sees only addresses).
async fn resolve(host: &str, port: u16) -> Result<Vec<IpAddr>, TransportError> {
    let addrs: Vec<IpAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| TransportError::Io(format!("resolving {host}: {e}")))?
        .map(|a| a.ip())
        .collect();
    if addrs.is_empty() {
        return Err(TransportError::Io(format!("resolving {host}: no address")));
    }
    Ok(addrs)
}

/// The port written in `url` (`url::Url` forgets a scheme's default one: `http://p:80`), or
/// `None` when none is written.
fn explicit_port(url: &str) -> Option<u16> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let port = match host_port.rsplit_once(']') {
        // [v6]:port
        Some((_, tail)) => tail.strip_prefix(':')?,
        None => host_port.rsplit_once(':')?.1,
    };
    port.parse().ok()
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// `scheme://host:port`: how a proxy is named in errors and logs, without its credentials.
impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.kind {
            ProxyKind::Http => "http",
            ProxyKind::Socks5 { remote_dns: false } => "socks5",
            ProxyKind::Socks5 { remote_dns: true } => "socks5h",
        };
        let host = match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => format!("[{}]", self.host),
            _ => self.host.clone(),
        };
        write!(f, "{scheme}://{host}:{}", self.port)
    }
}

/// Hand-written so the password never reaches a log line.
impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("url", &self.to_string())
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn proxy_urls_are_read_and_named_without_the_password() {
        let p = Proxy::parse("http://ann:p%40ss@proxy.corp:3128").unwrap();
        assert_eq!(p.kind(), ProxyKind::Http);
        assert_eq!(p.to_string(), "http://proxy.corp:3128");
        let c = p.credentials.as_ref().unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("ann", "p@ss"));
        assert!(!format!("{p:?}").contains("p@ss"));
        assert_eq!(
            Proxy::parse("proxy:8080").unwrap().to_string(),
            "http://proxy:8080"
        );
        // A scheme's own default port is still the one written, not the proxy default.
        assert_eq!(
            Proxy::parse("http://proxy.corp:80").unwrap().to_string(),
            "http://proxy.corp:80"
        );
        assert_eq!(
            Proxy::parse("http://u:p@[::1]:80").unwrap().to_string(),
            "http://[::1]:80"
        );
        assert_eq!(
            Proxy::parse("http://proxy.corp").unwrap().to_string(),
            "http://proxy.corp:1080"
        );
        assert!(Proxy::parse("http://ann:1234#x@host").is_err());
        assert_eq!(
            Proxy::parse("socks5h://[::1]").unwrap().to_string(),
            "socks5h://[::1]:1080"
        );
        let bad = Proxy::parse("ftp://u:s3cret@x:1").unwrap_err();
        assert!(bad.contains("scheme") && !bad.contains("s3cret"), "{bad}");
        assert!(
            Proxy::parse("https://x:1")
                .unwrap_err()
                .contains("https://")
        );
        assert!(Proxy::parse("http://x:1/path").is_err());
    }

    #[test]
    fn the_environment_is_read_per_scheme_with_no_proxy() {
        let vars: HashMap<&str, &str> = [
            ("HTTPS_PROXY", "http://secure:1"),
            ("http_proxy", "socks5://plain:2"),
            ("HTTP_PROXY", "http://ignored:3"),
            ("NO_PROXY", "internal.example"),
        ]
        .into();
        let env = |k: &str| vars.get(k).map(|v| (*v).to_owned());
        let at = |u: &str| {
            ProxyConfig::Environment
                .resolve(&Url::parse(u).unwrap(), env)
                .unwrap()
                .map(|p| p.to_string())
        };
        assert_eq!(at("wss://a.example").as_deref(), Some("http://secure:1"));
        assert_eq!(at("http://a.example").as_deref(), Some("socks5://plain:2"));
        assert_eq!(at("https://api.internal.example"), None);

        // A CGI process: the uppercase HTTP_PROXY may be a request's header, so it is not
        // read; the lowercase one and HTTPS_PROXY still are.
        let cgi = |k: &str| match k {
            "REQUEST_METHOD" => Some("GET".to_owned()),
            "HTTP_PROXY" => Some("http://planted:1".to_owned()),
            _ => None,
        };
        let p = ProxyConfig::Environment
            .resolve(&Url::parse("http://x").unwrap(), cgi)
            .unwrap();
        assert_eq!(p, None);

        let only_all = |k: &str| (k == "ALL_PROXY").then(|| "socks5h://all:4".to_owned());
        let p = ProxyConfig::Environment
            .resolve(&Url::parse("ws://x").unwrap(), only_all)
            .unwrap();
        assert_eq!(p.unwrap().to_string(), "socks5h://all:4");
        let none = ProxyConfig::Environment
            .resolve(&Url::parse("ws://x").unwrap(), |_| Some(" ".into()))
            .unwrap();
        assert_eq!(none, None);
        let bad = ProxyConfig::Environment
            .resolve(&Url::parse("https://x").unwrap(), |k| {
                (k == "HTTPS_PROXY").then(|| "gopher://u:s3cret@h".to_owned())
            })
            .unwrap_err();
        assert!(
            bad.starts_with("HTTPS_PROXY") && !bad.contains("s3cret"),
            "{bad}"
        );
    }

    #[test]
    fn an_explicit_proxy_honours_its_no_proxy_list() {
        let config = ProxyConfig::Via {
            proxy: Proxy::parse("http://p:1").unwrap(),
            no_proxy: NoProxy::parse("127.0.0.1"),
        };
        let at = |u: &str| config.resolve(&Url::parse(u).unwrap(), |_| None).unwrap();
        assert_eq!(at("http://127.0.0.1:3000"), None);
        assert!(at("http://localhost:3000").is_some());
        assert_eq!(
            ProxyConfig::Direct
                .resolve(&Url::parse("http://x").unwrap(), |_| Some(
                    "http://p:1".into()
                ))
                .unwrap(),
            None
        );
    }
}
