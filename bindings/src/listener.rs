//! Push delivery: foreign listeners called with batches of events or with state changes.
//!
//! The core runs them on its runtime's blocking pool, one call at a time per listener and in
//! order, so a slow or blocking listener (a GIL, a main-thread hop) never stalls the engine;
//! the engine stops reading the socket instead once the listener's buffer is full.

use std::sync::Arc;

use crate::event::{Event, State};

/// Receives inbound events in batches (cheaper per event than one call each).
#[uniffi::export(with_foreign)]
pub trait EventListener: Send + Sync {
    /// Called with the next events, in arrival order. An exception thrown here is dropped;
    /// the listener keeps receiving.
    fn on_events(&self, events: Vec<Event>);
}

/// Receives every state change.
#[uniffi::export(with_foreign)]
pub trait StateListener: Send + Sync {
    /// Called with the new state (first with the current one).
    fn on_state(&self, state: State);
}

/// Keeps a listener registered; `cancel()` or dropping it stops the listener.
#[derive(Debug, uniffi::Object)]
pub struct ListenerHandle(pulselink::ListenerHandle);

#[uniffi::export]
impl ListenerHandle {
    /// Stops the listener: once this returns it is not called again (a call already running
    /// on another thread finishes).
    pub fn cancel(&self) {
        self.0.cancel();
    }
}

/// Most events handed to a listener in one call.
const BATCH: usize = 256;

/// Feeds `stream` to `listener` until the client closes or the handle is cancelled or dropped.
pub(crate) fn events(
    client: &pulselink::Client,
    stream: pulselink::EventStream,
    listener: Arc<dyn EventListener>,
) -> Arc<ListenerHandle> {
    let handle = client.listen_batches(stream, BATCH, move |batch| {
        listener.on_events(batch.into_iter().map(Event::from).collect());
    });
    Arc::new(ListenerHandle(handle))
}

/// Feeds state changes to `listener`, starting with the current state.
pub(crate) fn states(
    client: &pulselink::Client,
    listener: Arc<dyn StateListener>,
) -> Arc<ListenerHandle> {
    Arc::new(ListenerHandle(
        client.watch_states(move |state| listener.on_state(state.into())),
    ))
}
