//! What the app configures: where to connect, how to authenticate, how to retry.

use std::{fmt, future::Future, path::PathBuf, pin::Pin, sync::Arc, time::Duration};

use serde_json::Value;
use url::Url;

pub use crate::transport::{
    proxy::{NoProxy, Proxy, ProxyConfig, ProxyKind},
    tls::TlsOptions,
};
use crate::{
    backoff::ReconnectPolicy,
    device::BackgroundPolicy,
    error::Error,
    inbox::{DedupConfig, Freshness},
    outbox::OutboxConfig,
    server_signals::ServerSignals,
    store::cipher::OutboxKey,
    transport::Route,
};

/// Why the auth provider is being asked for credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthReason {
    /// A normal (re)connect.
    Connect,
    /// The server refused the previous credentials, or said the token expired: return fresh
    /// ones (refresh the token) rather than a cached value.
    Refresh {
        /// What the server said.
        message: String,
    },
}

/// The question put to an [`AuthProvider`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    /// The namespace about to be joined.
    pub namespace: String,
    /// Why credentials are needed.
    pub reason: AuthReason,
}

/// The future an [`AuthProvider`] returns.
pub type AuthFuture = Pin<Box<dyn Future<Output = Result<Option<Value>, String>> + Send>>;

/// Supplies the auth object sent in each namespace CONNECT (`{"token": "..."}`).
///
/// Asked on every connect and again after a refusal or `token:expired`, so a provider that
/// refreshes tokens keeps the client authorised without the app reconnecting by hand.
/// `Ok(None)` connects without auth; `Err` counts as a failed attempt and is retried.
pub trait AuthProvider: Send + Sync + 'static {
    /// Returns the auth object for `request`.
    fn auth(&self, request: AuthRequest) -> AuthFuture;
}

impl<F, Fut> AuthProvider for F
where
    F: Fn(AuthRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<Value>, String>> + Send + 'static,
{
    fn auth(&self, request: AuthRequest) -> AuthFuture {
        Box::pin(self(request))
    }
}

/// A provider that always returns the same auth object.
#[derive(Clone)]
pub struct StaticAuth(pub Value);

impl AuthProvider for StaticAuth {
    fn auth(&self, _: AuthRequest) -> AuthFuture {
        let v = self.0.clone();
        Box::pin(async move { Ok(Some(v)) })
    }
}

/// The longest [`ClientConfig::read_hold`], so holding stays small next to a mobile network's
/// own jitter. A hold ends on the runtime's next timer tick after it (tokio's are 1 ms), so
/// a held frame waits up to about a millisecond longer than the hold.
pub const MAX_READ_HOLD: Duration = Duration::from_millis(10);

/// Everything a [`crate::Client`] needs to know.
#[derive(Clone)]
pub struct ClientConfig {
    /// Server URL: `http(s)://` or `ws(s)://host:port`, optionally with a query string.
    pub url: Url,
    /// Engine.IO path on the server.
    pub path: String,
    /// Namespaces joined on connect; the first is the main one, whose status is the client's
    /// state. Defaults to `/`.
    pub namespaces: Vec<String>,
    /// Credentials for each namespace CONNECT.
    pub auth: Option<Arc<dyn AuthProvider>>,
    /// How to retry.
    pub reconnect: ReconnectPolicy,
    /// What happens to the connection while the app is in the background.
    pub background: BackgroundPolicy,
    /// Time allowed for one attempt: TCP, TLS, WebSocket upgrade and the Engine.IO handshake.
    pub connect_timeout: Duration,
    /// How long `Client::connect()` waits for the connection before returning
    /// [`Error::ConnectTimeout`] (the client keeps retrying).
    pub connect_wait: Duration,
    /// How long a subscription's acknowledgement may take on (re)connect before it is reported
    /// failed and the outbox flows anyway.
    pub subscription_ack_timeout: Duration,
    /// Where the outbox, subscriptions, seen ids and recovery sessions are kept.
    pub store: StoreConfig,
    /// The durable outbox's limits and sending policies.
    pub outbox: OutboxConfig,
    /// Inbound de-duplication by event id; `None` checks only recovery offsets.
    pub dedup: Option<DedupConfig>,
    /// Drop inbound events older than this.
    pub freshness: Option<Freshness>,
    /// Events queued per listener before the engine stops reading the socket (backpressure
    /// instead of unbounded memory or dropped events).
    pub listener_buffer: usize,
    /// Largest inbound message accepted, in bytes; larger ones are refused before they are
    /// buffered in full.
    pub max_inbound_bytes: usize,
    /// How long the frames of a stream the server pushes may gather before the engine reads
    /// again (1 ms by default, at most [`MAX_READ_HOLD`], rounded up to the runtime's timer
    /// tick; zero reads every frame the moment it arrives). Only a stream that keeps the
    /// reader busy is held — one whose reads keep finding frames waiting — and never while
    /// the client awaits an answer (an acknowledgement, a subscription's, a namespace's
    /// CONNECT), and a write ends a hold: a quiet link, and answers, are read at once. A busy
    /// stream is read about once per hold rather than every few frames
    /// (`Metrics::inbound_reads`); on loopback here that also spared most of the ACKs and
    /// window updates each read made the kernel send.
    pub read_hold: Duration,
    /// The server event that means "your token expired": the client refreshes credentials and
    /// reconnects.
    pub token_expired_event: Option<String>,
    /// Extra HTTP headers for the WebSocket upgrade and every polling request (cookies for
    /// sticky sessions, API keys).
    pub headers: Vec<(String, String)>,
    /// Which transports to use and in what order (Socket.IO only).
    pub transports: Transports,
    /// The wire protocol the server speaks.
    pub protocol: Protocol,
    /// Whom to trust on `wss://` and `https://`.
    pub tls: TlsOptions,
    /// The proxy between the client and the server, if any.
    pub proxy: ProxyConfig,
    /// The server's application-level signals: an app heartbeat, what error codes ask, the
    /// limits it announces and enforces.
    pub signals: ServerSignals,
}

/// Where and how the store keeps what must survive: the outbox, subscriptions, seen inbound
/// ids and connection-state-recovery sessions.
#[derive(Debug, Clone, Default)]
pub struct StoreConfig {
    /// The SQLite file; `None` keeps the store in the process's memory (same behaviour, lost
    /// on exit; no SQLite database either: a store in memory costs a client a few hundred
    /// bytes, not a database's tens of KiB).
    pub path: Option<PathBuf>,
    /// How much each commit survives.
    pub durability: Durability,
    /// Encrypts each outbox entry's arguments and attachments in the file (ChaCha20-Poly1305)
    /// with this key, kept by the app in the iOS Keychain or Android Keystore. Event names,
    /// namespaces, timestamps and subscriptions stay readable. Entries written before a key
    /// was set stay as they were until sent; once set, the file cannot be opened without it.
    /// Without a file nothing leaves the process's memory, so nothing is encrypted.
    pub encryption_key: Option<OutboxKey>,
}

/// How much the store's commits survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Survives power loss (`synchronous = FULL`): gateways and wearables on batteries.
    Full,
    /// Survives the app being killed, not a power cut (`synchronous = NORMAL` in WAL mode):
    /// phones, where the OS kills apps but rarely loses power unannounced.
    #[default]
    Normal,
}

/// The wire protocol a server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// Socket.IO v4 (Engine.IO 4, Socket.IO 5) at `url` + `path` (the default).
    #[default]
    SocketIo,
    /// JSON envelopes (`{"id","type","timestamp","data"}`) over a plain WebSocket at `url`
    /// exactly as given: one namespace, no binary attachments, WebSocket only.
    Envelope(EnvelopeOptions),
}

/// The envelope protocol's client-driven heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvelopeOptions {
    /// How often the client pings.
    pub ping_interval: Duration,
    /// How long a pong may take before the link counts as dead.
    pub ping_timeout: Duration,
}

/// Defaults suit a phone: a dead link is noticed within 35 s without pinging so often that
/// the radio never sleeps.
impl Default for EnvelopeOptions {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(10),
        }
    }
}

/// Which Engine.IO transports a client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transports {
    /// WebSocket only: the right choice where WebSocket is known to pass; an attempt fails
    /// where a server or proxy refuses the upgrade.
    WebSocket,
    /// HTTP long-polling only.
    Polling,
    /// Long-polling first, then upgrade to WebSocket if the server offers it and the probe
    /// passes (socket.io-client's default): connects wherever HTTP does.
    PollingThenUpgrade,
    /// WebSocket first; if it fails (refused upgrade, a proxy that drops it, no answer within
    /// half the connect timeout), long-polling on the same attempt (the default: WebSocket's
    /// speed where it passes, a connection wherever HTTP passes). The envelope protocol has
    /// no polling and uses WebSocket alone.
    #[default]
    WebSocketThenFallback,
}

/// `url` for logs and `Debug`: query values and any user name or password replaced, since
/// apps put API keys and tokens there.
pub(crate) fn redacted(url: &Url) -> String {
    let mut shown = url.clone();
    if !url.username().is_empty() || url.password().is_some() {
        let _ = shown.set_username("<redacted>");
        let _ = shown.set_password(None);
    }
    if url.query().is_some() {
        let keys: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
        shown.set_query(None);
        let mut pairs = shown.query_pairs_mut();
        for k in keys {
            pairs.append_pair(&k, "<redacted>");
        }
    }
    shown.to_string()
}

impl fmt::Debug for ClientConfig {
    // Hand-written so an auth provider's state never reaches a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("url", &redacted(&self.url))
            .field("path", &self.path)
            .field("namespaces", &self.namespaces)
            .field("auth", &self.auth.as_ref().map(|_| "<provider>"))
            .field("reconnect", &self.reconnect)
            .field("background", &self.background)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_hold", &self.read_hold)
            .field("subscription_ack_timeout", &self.subscription_ack_timeout)
            .field("store", &self.store)
            .field("outbox", &self.outbox)
            .field("dedup", &self.dedup)
            .field("freshness", &self.freshness)
            .field("transports", &self.transports)
            .field("protocol", &self.protocol)
            .field("tls", &self.tls)
            .field("proxy", &self.proxy)
            .field("signals", &self.signals)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// A configuration with defaults for `url`.
    pub fn new(url: &str) -> Result<Self, Error> {
        let url = Url::parse(url).map_err(|e| {
            // Only the part before any query: some apps put an API key there.
            let shown = url.split('?').next().unwrap_or_default();
            Error::InvalidConfig(format!("url {shown:?}: {e}"))
        })?;
        let config = Self {
            url,
            path: "/socket.io/".into(),
            namespaces: vec!["/".into()],
            auth: None,
            reconnect: ReconnectPolicy::default(),
            background: BackgroundPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            connect_wait: Duration::from_secs(10),
            subscription_ack_timeout: Duration::from_secs(10),
            store: StoreConfig::default(),
            outbox: OutboxConfig::default(),
            dedup: None,
            freshness: None,
            listener_buffer: 512,
            max_inbound_bytes: 1_000_000,
            read_hold: Duration::from_millis(1),
            token_expired_event: Some("token:expired".into()),
            headers: Vec::new(),
            transports: Transports::default(),
            protocol: Protocol::default(),
            tls: TlsOptions::default(),
            proxy: ProxyConfig::default(),
            signals: ServerSignals::default(),
        };
        config.validate()?;
        Ok(config)
    }

    /// Sets the auth provider.
    pub fn with_auth(mut self, provider: impl AuthProvider) -> Self {
        self.auth = Some(Arc::new(provider));
        self
    }

    /// Sets a fixed auth object, e.g. `{"token": "..."}`.
    pub fn with_static_auth(self, auth: Value) -> Self {
        self.with_auth(StaticAuth(auth))
    }

    /// Sets the namespaces joined on connect (the first is the main one).
    pub fn with_namespaces<I, S>(mut self, namespaces: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.namespaces = namespaces.into_iter().map(Into::into).collect();
        self
    }

    /// Stores the outbox (and subscriptions, seen ids, recovery sessions) in the SQLite file
    /// at `path`, so they survive the app being killed.
    pub fn with_store(mut self, path: impl Into<PathBuf>) -> Self {
        self.store.path = Some(path.into());
        self
    }

    /// Sets inbound de-duplication.
    pub fn with_dedup(mut self, dedup: DedupConfig) -> Self {
        self.dedup = Some(dedup);
        self
    }

    /// Sets which transports to use.
    pub fn with_transports(mut self, transports: Transports) -> Self {
        self.transports = transports;
        self
    }

    /// Sets how the server is reached: directly, through a proxy, or as the environment's
    /// `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`/`NO_PROXY` say.
    pub fn with_proxy(mut self, proxy: ProxyConfig) -> Self {
        self.proxy = proxy;
        self
    }

    /// Sets what the server's application-level signals mean
    /// ([`ServerSignals::seed_platforms`] for the seed platforms).
    pub fn with_signals(mut self, signals: ServerSignals) -> Self {
        self.signals = signals;
        self
    }

    /// Sets the wire protocol.
    pub fn with_protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// Sets the reconnect policy.
    pub fn with_reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = policy;
        self
    }

    /// Checks every field, naming the first one that is unusable.
    pub fn validate(&self) -> Result<(), Error> {
        self.checked().map(drop)
    }

    /// Checks every field and returns the way to the server they describe (TLS configuration
    /// and proxy), built once.
    pub(crate) fn checked(&self) -> Result<Route, Error> {
        let bad = |m: String| Err(Error::InvalidConfig(m));
        match self.url.scheme() {
            "http" | "https" | "ws" | "wss" => {}
            s => {
                return bad(format!(
                    "url scheme must be http, https, ws or wss, not {s:?}"
                ));
            }
        }
        if self.url.host().is_none() {
            return bad("url has no host".into());
        }
        if !self.path.starts_with('/') {
            return bad(format!("path must start with '/', got {:?}", self.path));
        }
        if self.namespaces.is_empty() {
            return bad("at least one namespace is required".into());
        }
        if let Some(ns) = self.namespaces.iter().find(|n| !is_valid_namespace(n)) {
            return bad(format!(
                "namespace must start with '/' and contain no ',': {ns:?}"
            ));
        }
        if self.listener_buffer == 0 {
            return bad("listener_buffer must be at least 1".into());
        }
        let o = &self.outbox;
        if o.max_entries == 0 || o.max_bytes == 0 || o.max_in_flight == 0 || o.max_sends == 0 {
            return bad(
                "outbox max_entries, max_bytes, max_in_flight and max_sends must be at least 1"
                    .into(),
            );
        }
        if o.ack_timeout.is_zero() {
            return bad("outbox ack_timeout must be positive".into());
        }
        if o.low_lane.max_delay.is_zero() && o.low_lane.hold != crate::outbox::LowLaneHold::Never {
            return bad("outbox low_lane max_delay must be positive (or hold Never)".into());
        }
        if let Some(d) = &self.dedup {
            let pointers = d.pointer.iter().chain(d.per_event.values());
            if let Some(p) = pointers
                .into_iter()
                .find(|p| !p.is_empty() && !p.starts_with('/'))
            {
                return bad(format!(
                    "dedup pointer must be empty or start with '/': {p:?}"
                ));
            }
            if d.window == 0 {
                return bad("dedup window must be at least 1".into());
            }
        }
        if let Some(f) = &self.freshness
            && !f.pointer.is_empty()
            && !f.pointer.starts_with('/')
        {
            return bad(format!(
                "freshness pointer must start with '/': {:?}",
                f.pointer
            ));
        }
        if self.max_inbound_bytes < 1024 {
            return bad("max_inbound_bytes must be at least 1024".into());
        }
        if self.connect_timeout.is_zero() {
            return bad("connect_timeout must be positive".into());
        }
        if self.read_hold > MAX_READ_HOLD {
            return bad(format!("read_hold must be at most {MAX_READ_HOLD:?}"));
        }
        if self.subscription_ack_timeout.is_zero() {
            return bad("subscription_ack_timeout must be positive".into());
        }
        if let Protocol::Envelope(e) = &self.protocol {
            if e.ping_interval.is_zero() || e.ping_timeout.is_zero() {
                return bad("envelope ping_interval and ping_timeout must be positive".into());
            }
            if self.namespaces.iter().any(|n| n != "/") {
                return bad(
                    "the envelope protocol has no namespaces: leave namespaces as [\"/\"]".into(),
                );
            }
            if matches!(
                self.transports,
                Transports::Polling | Transports::PollingThenUpgrade
            ) {
                return bad(
                    "the envelope protocol runs over WebSocket only: set transports to WebSocket"
                        .into(),
                );
            }
        }
        self.reconnect.validate().map_err(Error::InvalidConfig)?;
        self.signals.validate().map_err(Error::InvalidConfig)?;
        let proxy = self
            .proxy
            .resolve(&self.url, |name| std::env::var(name).ok())
            .map_err(|e| Error::InvalidConfig(format!("proxy: {e}")))?;
        let tls = crate::transport::tls::client_config(&self.tls).map_err(Error::InvalidConfig)?;
        Ok(Route::new(tls, proxy))
    }

    /// The main namespace: the first configured one.
    pub fn main_namespace(&self) -> &str {
        self.namespaces.first().map_or("/", String::as_str)
    }

    /// The WebSocket URL of the Engine.IO endpoint.
    pub(crate) fn websocket_url(&self) -> Url {
        self.engineio_url("websocket")
    }

    /// The envelope protocol's WebSocket URL: `url` as given, with a WebSocket scheme.
    pub(crate) fn envelope_url(&self) -> Url {
        let mut url = self.url.clone();
        let scheme = match url.scheme() {
            "https" | "wss" => "wss",
            _ => "ws",
        };
        let _ = url.set_scheme(scheme);
        url
    }

    /// The long-polling handshake URL (`http(s)://…?EIO=4&transport=polling`).
    pub(crate) fn polling_url(&self) -> Url {
        self.engineio_url("polling")
    }

    fn engineio_url(&self, transport: &str) -> Url {
        let mut url = self.url.clone();
        let secure = matches!(url.scheme(), "https" | "wss");
        let scheme = match (transport, secure) {
            ("websocket", true) => "wss",
            ("websocket", false) => "ws",
            (_, true) => "https",
            (_, false) => "http",
        };
        // Both schemes are special and valid for any URL that parsed as http(s)/ws(s).
        let _ = url.set_scheme(scheme);
        url.set_path(&self.path);
        let existing: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "EIO" && k != "transport")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(existing)
            .append_pair("EIO", "4")
            .append_pair("transport", transport);
        url
    }
}

/// Whether `ns` can be written in a packet header: it starts with `/` and has no comma.
pub fn is_valid_namespace(ns: &str) -> bool {
    ns.starts_with('/') && !ns.contains(',')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_url_secrets() {
        let c = ClientConfig::new("https://u:pw@example.com/rt?apiKey=k3y&room=r1").unwrap();
        let shown = format!("{c:?}");
        assert!(
            shown.contains(
                "https://%3Credacted%3E@example.com/rt?apiKey=%3Credacted%3E&room=%3Credacted%3E"
            ),
            "{shown}"
        );
        assert!(!shown.contains("k3y") && !shown.contains("pw"), "{shown}");
        let err = ClientConfig::new("nope?token=k3y").unwrap_err().to_string();
        assert!(!err.contains("k3y"), "{err}");
    }

    #[test]
    fn builds_the_engine_io_url() {
        let c = ClientConfig::new("http://127.0.0.1:3000/?room=a&EIO=3").unwrap();
        assert_eq!(
            c.websocket_url().as_str(),
            "ws://127.0.0.1:3000/socket.io/?room=a&EIO=4&transport=websocket"
        );
        let c = ClientConfig::new("https://example.com").unwrap();
        assert!(
            c.websocket_url()
                .as_str()
                .starts_with("wss://example.com/socket.io/?EIO=4")
        );
    }

    #[test]
    fn rejects_bad_config_with_the_field_named() {
        let err = |c: ClientConfig| c.validate().unwrap_err().to_string();
        assert!(
            ClientConfig::new("ftp://x")
                .unwrap_err()
                .to_string()
                .contains("scheme")
        );
        assert!(
            ClientConfig::new("not a url")
                .unwrap_err()
                .to_string()
                .contains("url")
        );
        let base = ClientConfig::new("http://localhost:1").unwrap();
        assert!(err(base.clone().with_namespaces(["admin"])).contains("namespace"));
        assert!(err(base.clone().with_namespaces(Vec::<String>::new())).contains("namespace"));
        assert!(
            err(ClientConfig {
                listener_buffer: 0,
                ..base.clone()
            })
            .contains("listener_buffer")
        );
        assert!(
            err(ClientConfig {
                read_hold: MAX_READ_HOLD + Duration::from_nanos(1),
                ..base.clone()
            })
            .contains("read_hold")
        );
        let longest = ClientConfig {
            read_hold: MAX_READ_HOLD,
            ..base.clone()
        };
        assert!(longest.validate().is_ok());
        let mut zero_window = base.clone();
        zero_window.outbox.max_in_flight = 0;
        assert!(err(zero_window).contains("max_in_flight"));
        let bad_pointer = base.clone().with_dedup(DedupConfig::with_pointer("id"));
        assert!(err(bad_pointer).contains("pointer"));
        assert!(
            err(ClientConfig {
                path: "x".into(),
                ..base.clone()
            })
            .contains("path")
        );
        let p = ReconnectPolicy {
            jitter: 2.0,
            ..Default::default()
        };
        assert!(err(base.with_reconnect(p)).contains("jitter"));
    }

    #[test]
    fn debug_output_hides_credentials() {
        let c = ClientConfig::new("http://localhost:1")
            .unwrap()
            .with_static_auth(serde_json::json!({"token": "s3cret"}));
        let mut c = c;
        c.headers
            .push(("Authorization".into(), "Bearer s3cret".into()));
        let s = format!("{c:?}");
        assert!(!s.contains("s3cret"), "{s}");
    }
}
