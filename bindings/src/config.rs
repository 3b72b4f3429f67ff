//! Configuration records and their translation into the core's `ClientConfig`.
//!
//! Every optional field left `None` keeps the core's default, so the defaults live in one
//! place (the core) and the bindings cannot drift from them.

use std::{collections::HashMap, sync::Arc, time::Duration};

use crate::{auth::AuthProvider, device::BackgroundPolicy, error::PulselinkError};

/// Where and how to connect. Only `url` is required.
///
/// The generated Kotlin, Swift and Python records print every field in their
/// `toString`/`description`/`repr`, `auth_json`, header values and `proxy.password`
/// included: do not log this record.
#[derive(Clone, uniffi::Record)] // no Debug: it would print `auth_json` and header values
pub struct ClientConfig {
    /// Server URL, e.g. `https://api.example.com` (query parameters are kept).
    pub url: String,
    /// Namespaces to join; the first is the main one. Empty means `/`.
    #[uniffi(default)]
    pub namespaces: Vec<String>,
    /// A fixed auth object for every namespace CONNECT, as JSON text (`{"token":"..."}`).
    /// An `AuthProvider` passed to the client takes precedence, and is the better home for a
    /// token: the generated Kotlin, Swift and Python records print every field in their
    /// `toString`/`description`/`repr`, this one included.
    #[uniffi(default)]
    pub auth_json: Option<String>,
    /// Where the outbox, subscriptions, seen ids and recovery sessions are kept; `None` keeps
    /// the outbox and subscriptions in memory (lost on exit, so seen ids and recovery sessions,
    /// kept only for the next start, are not kept at all).
    #[uniffi(default)]
    pub store: Option<StoreConfig>,
    /// Engine.IO path on the server (default `/socket.io/`).
    #[uniffi(default)]
    pub path: Option<String>,
    /// Extra HTTP headers for the WebSocket upgrade and polling requests (cookies for sticky
    /// sessions, API keys).
    #[uniffi(default)]
    pub headers: HashMap<String, String>,
    /// Which transports to use (default: WebSocket, falling back to long-polling where it
    /// fails; Socket.IO only).
    #[uniffi(default)]
    pub transports: Option<Transports>,
    /// The wire protocol (default: Socket.IO).
    #[uniffi(default)]
    pub protocol: Option<WireProtocol>,
    /// Retry policy (default: 250 ms growing ×1.3 up to 5 s, jitter 0.5, forever;
    /// suspended after 2 min, then every 30 s).
    #[uniffi(default)]
    pub reconnect: Option<ReconnectConfig>,
    /// What happens to the connection while the app is in the background (default:
    /// `Disconnect` after the background flush).
    #[uniffi(default)]
    pub background: Option<BackgroundPolicy>,
    /// Time allowed for one connection attempt, in milliseconds (default 10 s).
    #[uniffi(default)]
    pub connect_timeout_ms: Option<u64>,
    /// How long `connect()` waits before failing while retries go on (default 10 s).
    #[uniffi(default)]
    pub connect_wait_ms: Option<u64>,
    /// How long a subscription's acknowledgement may take on (re)connect before it is reported
    /// failed and the outbox flows anyway, in milliseconds (default 10 s).
    #[uniffi(default)]
    pub subscription_ack_timeout_ms: Option<u64>,
    /// Outbox limits and policies.
    #[uniffi(default)]
    pub outbox: Option<OutboxConfig>,
    /// Inbound de-duplication by event id; `None` checks only recovery offsets.
    #[uniffi(default)]
    pub dedup: Option<DedupConfig>,
    /// Drop inbound events whose first argument's `timestamp` (RFC 3339 or epoch ms) is older
    /// than this many milliseconds.
    #[uniffi(default)]
    pub max_event_age_ms: Option<u64>,
    /// Largest inbound message accepted, in bytes (default 1,000,000).
    #[uniffi(default)]
    pub max_inbound_bytes: Option<u64>,
    /// The server event meaning "token expired" (default `token:expired`).
    #[uniffi(default)]
    pub token_expired_event: Option<String>,
    /// Whom to trust on `wss://` and `https://` (default: the built-in webpki roots).
    #[uniffi(default)]
    pub tls: Option<TlsConfig>,
    /// The proxy between the client and the server (default: none).
    #[uniffi(default)]
    pub proxy: Option<ProxyConfig>,
    /// The server's application-level signals (default: only `RATE_LIMIT_EXCEEDED` pauses).
    #[uniffi(default)]
    pub signals: Option<ServerSignals>,
    /// How long the frames of a stream the server pushes may gather between reads, in
    /// microseconds (default 1,000, at most 10,000, rounded up to the runtime's 1 ms timer
    /// tick; 0 reads every frame at once). Never while an answer is awaited (an ack, a
    /// subscription's, a namespace's CONNECT), and a write ends a hold.
    #[uniffi(default)]
    pub read_hold_us: Option<u64>,
}

/// What the server's application-level signals mean: an app heartbeat, what its `error`
/// codes ask, the limits it announces and enforces. Starts from the default (only
/// `RATE_LIMIT_EXCEEDED` pauses the outbox), or
/// from the seed platforms' preset with `seed_preset`; every other field overrides.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ServerSignals {
    /// Start from the seed platforms' preset: `ping`/`pong` every 30 s (10 s to answer),
    /// `AUTH_FAILED` refreshes credentials, `RATE_LIMITED`/`RATE_LIMIT_EXCEEDED` pause the
    /// outbox (100 ms ×1.5 up to 5 s), `CONNECTION_ERROR` reconnects, limits announced on
    /// `limits`/`quota`/`rate_limit`, budgets of 100 `client:*` and 600 events a minute.
    #[uniffi(default = false)]
    pub seed_preset: bool,
    /// An app heartbeat (replaces the preset's).
    #[uniffi(default)]
    pub heartbeat: Option<AppHeartbeat>,
    /// No app heartbeat, even the preset's.
    #[uniffi(default = false)]
    pub no_heartbeat: bool,
    /// What error codes ask, added to (or replacing) the starting point's.
    #[uniffi(default)]
    pub error_actions: HashMap<String, ErrorAction>,
    /// The outbox pause after a "slow down" without a reset time.
    #[uniffi(default)]
    pub pause_backoff: Option<PauseBackoff>,
    /// Events that announce limits (replaces the starting point's list).
    #[uniffi(default)]
    pub limit_events: Option<Vec<String>>,
    /// Budgets per event class (replaces the starting point's).
    #[uniffi(default)]
    pub budgets: Option<Vec<Budget>>,
}

/// An app-level ping and the reply that answers it.
#[derive(Debug, Clone, uniffi::Record)]
pub struct AppHeartbeat {
    /// The event the client emits.
    pub event: String,
    /// The event the server answers with.
    pub reply: String,
    /// Silence (no app traffic from the server) after which the client pings, ms.
    pub interval_ms: u64,
    /// How long the answer may take before the link is reconnected, ms.
    pub timeout_ms: u64,
}

/// What an error code asks of the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ErrorAction {
    /// Fresh credentials from the auth provider, and a new connection.
    RefreshAuth,
    /// Pause the outbox (the error's reset time, or the backoff).
    PauseOutbox,
    /// Reconnect with backoff.
    Reconnect,
    /// Only tell the app (a `ServerError` notice and the event).
    Surface,
}

/// A pause growing while the server keeps saying "slow down".
#[derive(Debug, Clone, uniffi::Record)]
pub struct PauseBackoff {
    /// The first pause, ms.
    pub initial_ms: u64,
    /// The longest, ms.
    pub max_ms: u64,
    /// Growth per further signal.
    pub multiplier: f64,
}

/// At most `events` emits whose name matches `pattern` (a name, or a prefix ending in `*`)
/// in any `per_ms` milliseconds.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Budget {
    /// `client:*`, `*`, or an event name.
    pub pattern: String,
    /// Emits allowed per window.
    pub events: u32,
    /// The window, ms.
    pub per_ms: u64,
}

impl ServerSignals {
    fn into_core(self) -> pulselink::ServerSignals {
        let mut s = if self.seed_preset {
            pulselink::ServerSignals::seed_platforms()
        } else {
            pulselink::ServerSignals::default()
        };
        if let Some(h) = self.heartbeat {
            s.heartbeat = Some(pulselink::AppHeartbeat {
                event: h.event,
                reply: h.reply,
                interval: ms(h.interval_ms),
                timeout: ms(h.timeout_ms),
            });
        }
        if self.no_heartbeat {
            s.heartbeat = None;
        }
        for (code, action) in self.error_actions {
            let action = match action {
                ErrorAction::RefreshAuth => pulselink::ErrorAction::RefreshAuth,
                ErrorAction::PauseOutbox => pulselink::ErrorAction::PauseOutbox,
                ErrorAction::Reconnect => pulselink::ErrorAction::Reconnect,
                ErrorAction::Surface => pulselink::ErrorAction::Surface,
            };
            s.error_actions.retain(|(c, _)| *c != code);
            s.error_actions.push((code, action));
        }
        if let Some(b) = self.pause_backoff {
            s.pause_backoff = pulselink::PauseBackoff {
                initial: ms(b.initial_ms),
                max: ms(b.max_ms),
                multiplier: b.multiplier,
            };
        }
        set(&mut s.limit_events, self.limit_events);
        if let Some(budgets) = self.budgets {
            s.budgets = budgets
                .into_iter()
                .map(|b| {
                    pulselink::Budget::new(
                        b.pattern,
                        pulselink::RateLimit::new(b.events, ms(b.per_ms)),
                    )
                })
                .collect();
        }
        s
    }
}

/// A proxy between the client and its server: an HTTP proxy (`CONNECT` tunnels; plain
/// `http://` polling is forwarded) or SOCKS5. TLS to the server stays end to end, and pins
/// apply to the server's certificate. Pass the system's proxy here: in Swift
/// `ProxyConfig.system(for:)`, on Android from `ConnectivityManager.getDefaultProxy()`
/// (`ProxyInfo.host`/`port`/`exclusionList`). A client keeps the proxy it was made with:
/// make a new one when the network (and its proxy) changes.
///
/// The generated Kotlin, Swift and Python records print every field in their
/// `toString`/`description`/`repr`, `password` included: do not log this record.
#[derive(Clone, uniffi::Record)] // no Debug: it would print the password
pub struct ProxyConfig {
    /// `http://host:port`, `socks5://host:port` (the server's name resolved here) or
    /// `socks5h://host:port` (resolved by the proxy); credentials may be in it
    /// (`http://user:password@host:port`). Leave `None` with `from_environment`.
    #[uniffi(default)]
    pub url: Option<String>,
    /// The user name the proxy asks for, if not in `url`.
    #[uniffi(default)]
    pub username: Option<String>,
    /// The password the proxy asks for, if not in `url`.
    #[uniffi(default)]
    pub password: Option<String>,
    /// Hosts reached directly, `NO_PROXY` style: `example.com` (and its subdomains),
    /// `10.0.0.0/8`, `*`.
    #[uniffi(default)]
    pub no_proxy: Vec<String>,
    /// Read `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` from the environment
    /// instead of `url` (a desktop or gateway process; phones have no such variables).
    #[uniffi(default)]
    pub from_environment: bool,
}

impl ProxyConfig {
    fn into_core(self) -> Result<pulselink::ProxyConfig, PulselinkError> {
        let bad = |why: String| PulselinkError::config("proxy", why);
        let extras =
            self.username.is_some() || self.password.is_some() || !self.no_proxy.is_empty();
        match (self.url, self.from_environment) {
            (Some(_), true) => Err(bad("set url or from_environment, not both".into())),
            (None, true) if extras => Err(bad(
                "from_environment reads NO_PROXY and credentials from the variables: leave \
                 username, password and no_proxy empty"
                    .into(),
            )),
            (None, true) => Ok(pulselink::ProxyConfig::Environment),
            (None, false) => Err(bad("set url or from_environment".into())),
            (Some(url), false) => {
                let mut proxy = pulselink::Proxy::parse(&url).map_err(bad)?;
                if self.username.is_some() || self.password.is_some() {
                    proxy = proxy.with_credentials(
                        self.username.as_deref().unwrap_or_default(),
                        self.password.as_deref().unwrap_or_default(),
                    );
                }
                Ok(pulselink::ProxyConfig::Via {
                    proxy,
                    no_proxy: pulselink::NoProxy::parse(&self.no_proxy.join(",")),
                })
            }
        }
    }
}

/// Certificate trust for `wss://` and `https://`. Verification is always on; this only
/// chooses what counts as trusted.
#[derive(Debug, Clone, uniffi::Record)]
pub struct TlsConfig {
    /// Extra CA certificates, PEM: a company CA, or a development server's self-signed
    /// certificate.
    #[uniffi(default)]
    pub ca_pem: Vec<String>,
    /// Trust the built-in webpki (Mozilla) roots as well; off trusts only `ca_pem`.
    #[uniffi(default = true)]
    pub builtin_roots: bool,
    /// Public-key pins, `sha256/<base64>` (as OkHttp): the server must present a certificate
    /// with one of these keys. Ship a backup pin. `certificate_pins` computes them.
    #[uniffi(default)]
    pub pins: Vec<String>,
}

/// The pin (`sha256/<base64>` of the public key) of each certificate in `pem`, for
/// `TlsConfig.pins`.
#[uniffi::export]
pub fn certificate_pins(pem: String) -> Result<Vec<String>, PulselinkError> {
    Ok(pulselink::certificate_pins(&pem)?)
}

/// Which Engine.IO transports a client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Transports {
    /// WebSocket only.
    WebSocket,
    /// HTTP long-polling only.
    Polling,
    /// Long-polling first, then upgrade to WebSocket (socket.io-client's default).
    PollingThenUpgrade,
    /// WebSocket first, long-polling if it fails (the default).
    WebSocketThenFallback,
}

/// The wire protocol a server speaks. Not called `Protocol`: Swift reserves `T.Protocol` for
/// metatypes, and the type sits next to Swift's `protocol` keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum WireProtocol {
    /// Socket.IO v4 at `url` + `path`.
    SocketIo,
    /// JSON envelopes over a plain WebSocket at `url` as given; the client pings every
    /// `ping_interval_ms` and counts the link dead when a pong takes over `ping_timeout_ms`
    /// (`None`: 25 s and 10 s).
    Envelope {
        /// How often the client pings, in milliseconds.
        ping_interval_ms: Option<u64>,
        /// How long a pong may take, in milliseconds.
        ping_timeout_ms: Option<u64>,
    },
}

/// Where and how the store keeps what must survive a restart.
#[derive(Debug, Clone, Default, uniffi::Record)]
pub struct StoreConfig {
    /// The SQLite file; `None` keeps the store in memory (lost on exit).
    #[uniffi(default)]
    pub path: Option<String>,
    /// How much each commit survives (default: the app being killed, not a power cut).
    #[uniffi(default)]
    pub durability: Option<Durability>,
    /// Encrypts each outbox entry's arguments and attachments in the file; event names and
    /// timestamps stay readable. Once set, the file does not open without it. Without a file
    /// nothing leaves the process's memory, so nothing is encrypted.
    #[uniffi(default)]
    pub encryption_key: Option<Arc<OutboxKey>>,
}

/// How much each store commit survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Durability {
    /// Survives power loss: gateways and wearables.
    Full,
    /// Survives the app being killed, not a power cut: phones (the default).
    Normal,
}

/// When and how often to retry; `None` keeps the default (250 ms growing ×1.3 up to 5 s,
/// jitter 0.5, forever).
#[derive(Debug, Clone, uniffi::Record)]
pub struct ReconnectConfig {
    /// Whether to reconnect at all.
    #[uniffi(default = true)]
    pub enabled: bool,
    /// Nominal delay before the first retry, in milliseconds.
    #[uniffi(default)]
    pub initial_delay_ms: Option<u64>,
    /// Largest delay between attempts, in milliseconds.
    #[uniffi(default)]
    pub max_delay_ms: Option<u64>,
    /// Growth of the delay per failed attempt (≥ 1).
    #[uniffi(default)]
    pub factor: Option<f64>,
    /// Fraction of each delay randomised away, in [0, 1].
    #[uniffi(default)]
    pub jitter: Option<f64>,
    /// Attempts before giving up; `None` retries forever.
    #[uniffi(default)]
    pub max_attempts: Option<u32>,
    /// Disconnected this long (milliseconds), the client is `Suspended` and attempts slow
    /// down to one per `suspended_retry_ms` (default 120,000; 0 never suspends).
    #[uniffi(default)]
    pub suspend_after_ms: Option<u64>,
    /// Spacing of attempts while suspended, in milliseconds (default 30,000).
    #[uniffi(default)]
    pub suspended_retry_ms: Option<u64>,
}

/// What `emit` does when the outbox is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Overflow {
    /// Fail the new emit with `OutboxFull`; nothing queued is lost (the default).
    Reject,
    /// Drop the oldest lowest-priority entry to make room (counted and announced).
    DropOldest,
}

/// Outbox limits and policies; `None` keeps the default.
#[derive(Debug, Clone, Default, uniffi::Record)]
pub struct OutboxConfig {
    /// Most entries held (default 1,000,000).
    #[uniffi(default)]
    pub max_entries: Option<u64>,
    /// Most payload bytes held (default 256 MiB).
    #[uniffi(default)]
    pub max_bytes: Option<u64>,
    /// What happens at a limit.
    #[uniffi(default)]
    pub overflow: Option<Overflow>,
    /// Acknowledgement wait before an entry is sent again with the same key (default 30 s).
    #[uniffi(default)]
    pub ack_timeout_ms: Option<u64>,
    /// Sends of one entry before it is given up (default 5).
    #[uniffi(default)]
    pub max_sends: Option<u32>,
    /// Client-side rate limits, all applied (e.g. 10 per second and 100 per minute).
    #[uniffi(default)]
    pub rate_limits: Vec<RateLimit>,
    /// When `Low` emits wait for the radio to be awake anyway (default `Always`).
    #[uniffi(default)]
    pub low_lane_hold: Option<LowLaneHold>,
    /// The longest a `Low` emit waits for the radio, in milliseconds (default 60,000).
    #[uniffi(default)]
    pub low_max_delay_ms: Option<u64>,
}

/// When `Low` emits wait for the radio: they go with the next traffic on the link (a
/// heartbeat, an inbound event, a `Normal` emit) or after `low_max_delay_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum LowLaneHold {
    /// Always (the default).
    Always,
    /// Only on an expensive or constrained network path.
    OnCostlyPaths,
    /// Never.
    Never,
}

/// A 256-bit key encrypting outbox payloads at rest. Keep it in the iOS Keychain or the
/// Android Keystore; it is an object, not a record, so it never shows in a `toString`.
#[derive(uniffi::Object)]
pub struct OutboxKey(pulselink::OutboxKey);

impl std::fmt::Debug for OutboxKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[uniffi::export]
impl OutboxKey {
    /// A fresh random key (store it with `to_base64` on first launch).
    #[uniffi::constructor]
    pub fn generate() -> Result<Arc<Self>, PulselinkError> {
        let key = pulselink::OutboxKey::generate()
            .map_err(|e| PulselinkError::Internal { message: e })?;
        Ok(Arc::new(Self(key)))
    }

    /// The key from 32 bytes written as base64 or 64 hex digits.
    #[uniffi::constructor]
    pub fn parse(text: String) -> Result<Arc<Self>, PulselinkError> {
        let key =
            pulselink::OutboxKey::parse(&text).map_err(|e| PulselinkError::config("key", e))?;
        Ok(Arc::new(Self(key)))
    }

    /// The key as base64, to keep it.
    pub fn to_base64(&self) -> String {
        self.0.to_base64()
    }
}

/// At most `events` entries sent per `per_ms` milliseconds.
#[derive(Debug, Clone, uniffi::Record)]
pub struct RateLimit {
    /// Entries allowed per window.
    pub events: u32,
    /// Window length in milliseconds.
    pub per_ms: u64,
}

/// Where inbound events carry their id.
#[derive(Debug, Clone, Default, uniffi::Record)]
pub struct DedupConfig {
    /// JSON pointer to the id in every event's first argument, e.g. `/id`.
    #[uniffi(default)]
    pub pointer: Option<String>,
    /// Per-event pointers, overriding `pointer`.
    #[uniffi(default)]
    pub per_event: HashMap<String, String>,
    /// Ids remembered (default 10,000).
    #[uniffi(default)]
    pub window: Option<u32>,
    /// How long an id is remembered, in milliseconds (default 24 h).
    #[uniffi(default)]
    pub ttl_ms: Option<u64>,
}

impl ClientConfig {
    /// The core configuration this describes.
    pub(crate) fn into_core(
        self,
        auth: Option<Arc<dyn AuthProvider>>,
    ) -> Result<pulselink::ClientConfig, PulselinkError> {
        let mut core = pulselink::ClientConfig::new(&self.url)?;
        if !self.namespaces.is_empty() {
            core = core.with_namespaces(self.namespaces);
        }
        if let Some(auth) = self.auth_json {
            let value =
                serde_json::from_str(&auth).map_err(|e| PulselinkError::config("auth_json", e))?;
            core = core.with_static_auth(value);
        }
        if let Some(provider) = auth {
            core = core.with_auth(crate::auth::Adapter(provider));
        }
        if let Some(store) = self.store {
            core.store = pulselink::StoreConfig {
                path: store.path.map(Into::into),
                durability: match store.durability {
                    Some(Durability::Full) => pulselink::Durability::Full,
                    Some(Durability::Normal) | None => pulselink::Durability::Normal,
                },
                encryption_key: store.encryption_key.map(|k| k.0.clone()),
            };
        }
        if let Some(path) = self.path {
            core.path = path;
        }
        core.headers = self.headers.into_iter().collect();
        if let Some(p) = self.proxy {
            core = core.with_proxy(p.into_core()?);
        }
        if let Some(s) = self.signals {
            core = core.with_signals(s.into_core());
        }
        if let Some(t) = self.transports {
            core.transports = match t {
                Transports::WebSocket => pulselink::Transports::WebSocket,
                Transports::Polling => pulselink::Transports::Polling,
                Transports::PollingThenUpgrade => pulselink::Transports::PollingThenUpgrade,
                Transports::WebSocketThenFallback => pulselink::Transports::WebSocketThenFallback,
            };
        }
        if let Some(p) = self.protocol {
            core.protocol = match p {
                WireProtocol::SocketIo => pulselink::Protocol::SocketIo,
                WireProtocol::Envelope {
                    ping_interval_ms,
                    ping_timeout_ms,
                } => {
                    let mut o = pulselink::EnvelopeOptions::default();
                    set(&mut o.ping_interval, ping_interval_ms.map(ms));
                    set(&mut o.ping_timeout, ping_timeout_ms.map(ms));
                    pulselink::Protocol::Envelope(o)
                }
            };
        }
        if let Some(r) = self.reconnect {
            let mut policy = pulselink::ReconnectPolicy {
                enabled: r.enabled,
                max_attempts: r.max_attempts,
                ..Default::default()
            };
            set(&mut policy.initial_delay, r.initial_delay_ms.map(ms));
            set(&mut policy.max_delay, r.max_delay_ms.map(ms));
            set(&mut policy.factor, r.factor);
            set(&mut policy.jitter, r.jitter);
            match r.suspend_after_ms {
                Some(0) => policy.suspend_after = None,
                Some(after) => policy.suspend_after = Some(ms(after)),
                None => {}
            }
            set(&mut policy.suspended_retry, r.suspended_retry_ms.map(ms));
            core = core.with_reconnect(policy);
        }
        set(&mut core.background, self.background.map(Into::into));
        set(&mut core.connect_timeout, self.connect_timeout_ms.map(ms));
        set(&mut core.connect_wait, self.connect_wait_ms.map(ms));
        set(
            &mut core.subscription_ack_timeout,
            self.subscription_ack_timeout_ms.map(ms),
        );
        if let Some(o) = self.outbox {
            let out = &mut core.outbox;
            set(&mut out.max_entries, o.max_entries);
            set(&mut out.max_bytes, o.max_bytes);
            set(
                &mut out.overflow,
                o.overflow.map(|o| match o {
                    Overflow::Reject => pulselink::Overflow::Reject,
                    Overflow::DropOldest => pulselink::Overflow::DropOldest,
                }),
            );
            set(&mut out.ack_timeout, o.ack_timeout_ms.map(ms));
            set(&mut out.max_sends, o.max_sends);
            out.rate_limits = o
                .rate_limits
                .into_iter()
                .map(|l| pulselink::RateLimit::new(l.events, ms(l.per_ms)))
                .collect();
            set(
                &mut out.low_lane.hold,
                o.low_lane_hold.map(|h| match h {
                    LowLaneHold::Always => pulselink::LowLaneHold::Always,
                    LowLaneHold::OnCostlyPaths => pulselink::LowLaneHold::OnCostlyPaths,
                    LowLaneHold::Never => pulselink::LowLaneHold::Never,
                }),
            );
            set(&mut out.low_lane.max_delay, o.low_max_delay_ms.map(ms));
        }
        if let Some(d) = self.dedup {
            let mut dedup = pulselink::DedupConfig {
                pointer: d.pointer,
                per_event: d.per_event,
                ..Default::default()
            };
            set(&mut dedup.window, d.window.map(|w| w as usize));
            set(&mut dedup.ttl, d.ttl_ms.map(ms));
            core = core.with_dedup(dedup);
        }
        if let Some(age) = self.max_event_age_ms {
            core.freshness = Some(pulselink::Freshness::new(ms(age)));
        }
        set(
            &mut core.max_inbound_bytes,
            self.max_inbound_bytes
                .map(|b| usize::try_from(b).unwrap_or(usize::MAX)),
        );
        set(
            &mut core.read_hold,
            self.read_hold_us.map(Duration::from_micros),
        );
        if self.token_expired_event.is_some() {
            core.token_expired_event = self.token_expired_event;
        }
        if let Some(t) = self.tls {
            core.tls = pulselink::TlsOptions {
                ca_pem: t.ca_pem,
                builtin_roots: t.builtin_roots,
                pins: t.pins,
            };
        }
        core.validate()?;
        Ok(core)
    }
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// Overrides a default when the foreign side gave a value.
fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *field = v;
    }
}
