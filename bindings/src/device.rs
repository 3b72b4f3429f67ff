//! What the device tells a client: the app's background and foreground, and the network path
//! (see the core's `device` module). The platform adapters (Swift `followApp`, Android
//! `AppLifecycleAdapter`) report these; apps with their own lifecycle code call them directly.

/// What the client does with its connection while the app is in the background.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum BackgroundPolicy {
    /// After the background flush, close the link and make no attempt until the foreground
    /// (the default). Emits are still stored.
    Disconnect,
    /// Keep the link and the heartbeat (an Android foreground service, VoIP, audio).
    KeepAlive,
}

impl From<BackgroundPolicy> for pulselink::BackgroundPolicy {
    fn from(p: BackgroundPolicy) -> Self {
        match p {
            BackgroundPolicy::Disconnect => Self::Disconnect,
            BackgroundPolicy::KeepAlive => Self::KeepAlive,
        }
    }
}

/// The kind of network interface a path goes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Interface {
    /// Wi-Fi.
    Wifi,
    /// A cellular modem.
    Cellular,
    /// Ethernet.
    Wired,
    /// Anything else (a VPN, loopback, unknown).
    Other,
}

/// The network path the device is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct NetworkPath {
    /// Whether any route to the internet is up.
    pub available: bool,
    /// The interface the path goes over.
    pub interface: Interface,
    /// Metered or costly (cellular, a hotspot).
    #[uniffi(default = false)]
    pub expensive: bool,
    /// The user asked to save data (iOS Low Data Mode, Android Data Saver).
    #[uniffi(default = false)]
    pub constrained: bool,
}

impl From<NetworkPath> for pulselink::NetworkPath {
    fn from(p: NetworkPath) -> Self {
        Self {
            available: p.available,
            interface: match p.interface {
                Interface::Wifi => pulselink::Interface::Wifi,
                Interface::Cellular => pulselink::Interface::Cellular,
                Interface::Wired => pulselink::Interface::Wired,
                Interface::Other => pulselink::Interface::Other,
            },
            expensive: p.expensive,
            constrained: p.constrained,
        }
    }
}

/// What the background flush achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct BackgroundFlush {
    /// Outbox entries delivered during the flush.
    pub sent: u64,
    /// Entries still stored when it ended (sent on the next connection).
    pub remaining: u64,
    /// How long the flush took, in milliseconds.
    pub took_ms: u64,
}

impl From<pulselink::BackgroundFlush> for BackgroundFlush {
    fn from(f: pulselink::BackgroundFlush) -> Self {
        Self {
            sent: f.sent,
            remaining: f.remaining,
            took_ms: u64::try_from(f.took.as_millis()).unwrap_or(u64::MAX),
        }
    }
}
