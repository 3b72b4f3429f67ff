//! A configuration checked once and made ready to connect: what a client needs from its
//! configuration for its whole life, shared by every client made from one (a hub's
//! [`crate::SharedConfig`]) rather than copied into each.

use std::sync::Arc;

use super::namespaces::Namespaces;
use crate::{
    backoff::ReconnectPolicy, config::ClientConfig, error::Result, outbox::OutboxConfig, protocol,
    transport::Route,
};

/// A configuration checked and made ready to connect: the parts of a client that never
/// change, which the clients made from one of a hub's shared configurations share.
#[derive(Clone)]
pub(crate) struct Prepared {
    pub(crate) config: Arc<ClientConfig>,
    /// The configuration's outbox limits, for the store.
    pub(crate) outbox: Arc<OutboxConfig>,
    pub(crate) route: Arc<Route>,
    pub(crate) options: Arc<protocol::Options>,
    /// The reconnect policy, which each client's backoff reads.
    pub(crate) reconnect: Arc<ReconnectPolicy>,
    /// The namespaces' names, the main one first.
    pub(crate) namespaces: Arc<[Arc<str>]>,
}

impl Prepared {
    /// Checks `config`; a hub's client reads its WebSocket in smaller pieces.
    pub(crate) fn new(config: ClientConfig, hub: bool) -> Result<Self> {
        let mut route = config.checked()?;
        if hub {
            route.read_buffer = crate::transport::HUB_READ_BUFFER;
        }
        Ok(Self {
            options: Arc::new(protocol::Options::new(&config)),
            outbox: Arc::new(config.outbox.clone()),
            reconnect: Arc::new(config.reconnect.clone()),
            namespaces: config
                .namespaces
                .iter()
                .map(|n| Arc::from(n.as_str()))
                .collect(),
            route: Arc::new(route),
            config: Arc::new(config),
        })
    }

    /// The main namespace's name.
    pub(crate) fn main(&self) -> Arc<str> {
        Namespaces::main_of(&self.namespaces)
    }
}
