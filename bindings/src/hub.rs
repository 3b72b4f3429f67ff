//! The `Hub` object: clients that share one store thread (a gateway forwarding for many
//! devices), over the core's `Hub`.

use std::sync::Arc;

use crate::{
    auth::AuthProvider, client::Client, config::ClientConfig, error::PulselinkError,
    runtime::handle, stream::HubNoticeReceiver,
};

/// Makes clients that share one store thread: many device identities in one process, each
/// client still with its own connection, outbox and store.
#[derive(uniffi::Object)]
pub struct Hub {
    inner: pulselink::Hub,
}

#[uniffi::export]
impl Hub {
    /// Starts the hub's store thread.
    #[uniffi::constructor]
    pub fn new() -> Result<Arc<Self>, PulselinkError> {
        let runtime = handle()?;
        let _guard = runtime.enter();
        Ok(Arc::new(Self {
            inner: pulselink::Hub::new()?,
        }))
    }

    /// A client on this hub; otherwise exactly `Client(config, auth)`. Store paths must
    /// differ between clients.
    #[uniffi::method(default(auth = None))]
    pub fn client(
        &self,
        config: ClientConfig,
        auth: Option<Arc<dyn AuthProvider>>,
    ) -> Result<Arc<Client>, PulselinkError> {
        Client::create(config, auth, Some(&self.inner))
    }

    /// Totals across every client this hub made, counted as they happen (no listener on
    /// each client needed).
    pub fn stats(&self) -> HubStats {
        self.inner.stats().into()
    }

    /// Every client's notices from now on, on one receiver, each with its client's number
    /// (`Client.hub_index`): a fleet's app listens once, not once per client.
    pub fn notices(&self) -> Arc<HubNoticeReceiver> {
        Arc::new(HubNoticeReceiver::new(self.inner.notices()))
    }
}

/// Totals across a hub's clients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, uniffi::Record)]
pub struct HubStats {
    /// Events delivered to the apps of the hub's clients, since the hub was made.
    pub events_received: u64,
    /// Events written to servers by them, resends and volatile emits included.
    pub events_sent: u64,
}

impl From<pulselink::HubStats> for HubStats {
    fn from(s: pulselink::HubStats) -> Self {
        Self {
            events_received: s.events_received,
            events_sent: s.events_sent,
        }
    }
}
