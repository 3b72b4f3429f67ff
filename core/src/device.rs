//! What the device tells the client about itself: the app going to the background and coming
//! back, and the network path it is on. Phones and watches lose connections to their own life
//! more than to servers — a socket that died while the app slept, a radio switched from Wi-Fi
//! to cellular under a live link — so these are inputs to the engine, the same in every
//! language; each platform's adapter only reports them.

use std::time::Duration;

/// What the client does with its connection while the app is in the background.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackgroundPolicy {
    /// After the background flush, close the link (the WebSocket, not the Socket.IO session,
    /// so a server with connection state recovery can resume it) and make no attempt until
    /// the app is in the foreground again. Emits are still accepted into the store. The
    /// default: the OS suspends a backgrounded app's sockets anyway, and a radio kept awake
    /// by reconnect attempts drains the battery.
    #[default]
    Disconnect,
    /// Keep the link and the heartbeat: an Android foreground service, a VoIP or
    /// audio-streaming app that the OS lets run.
    KeepAlive,
}

/// The kind of network interface a path goes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// The network path the device is on, as the platform reports it (iOS `NWPath`, Android
/// `NetworkCapabilities`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkPath {
    /// Whether any route to the internet is up.
    pub available: bool,
    /// The interface the path goes over.
    pub interface: Interface,
    /// Metered or costly (cellular, a hotspot; Android "metered").
    pub expensive: bool,
    /// The user asked to save data (iOS Low Data Mode, Android Data Saver).
    pub constrained: bool,
}

impl NetworkPath {
    /// An available path over `interface`, neither expensive nor constrained.
    pub fn available(interface: Interface) -> Self {
        Self {
            available: true,
            interface,
            expensive: false,
            constrained: false,
        }
    }

    /// No route at all.
    pub fn unavailable() -> Self {
        Self {
            available: false,
            interface: Interface::Other,
            expensive: false,
            constrained: false,
        }
    }

    /// Whether traffic on this path costs the user money or data allowance.
    pub fn is_costly(&self) -> bool {
        self.expensive || self.constrained
    }
}

/// What the background flush achieved (see [`crate::Client::enter_background`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackgroundFlush {
    /// Outbox entries delivered during the flush.
    pub sent: u64,
    /// Entries still in the outbox when it ended: they stay stored and go on the next
    /// connection.
    pub remaining: u64,
    /// How long the flush took.
    pub took: Duration,
}
