//! Push delivery: foreign listeners called with batches of events or with state changes.
//!
//! Foreign code runs on the runtime's blocking pool, one batch at a time per listener and in
//! order, so a slow or blocking listener (a GIL, a main-thread hop) never stalls the engine;
//! the engine stops reading the socket instead once the listener's buffer is full.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use tokio::{sync::watch, task::AbortHandle};

use crate::{
    event::{Event, State},
    runtime::RUNTIME,
};

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
pub struct ListenerHandle {
    cancelled: Arc<AtomicBool>,
    task: AbortHandle,
}

#[uniffi::export]
impl ListenerHandle {
    /// Stops the listener: once this returns it is not called again (a call already running
    /// on another thread finishes).
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.task.abort();
    }
}

impl Drop for ListenerHandle {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// Most events handed to a listener in one call.
const BATCH: usize = 256;

/// Feeds `stream` to `listener` until the client closes or the handle is cancelled.
pub(crate) fn events(
    mut stream: pulselink::EventStream,
    listener: Arc<dyn EventListener>,
) -> Arc<ListenerHandle> {
    spawn(move |cancelled| async move {
        let mut batch = Vec::with_capacity(BATCH);
        while stream.recv_many(&mut batch, BATCH).await > 0 {
            let events: Vec<Event> = batch.drain(..).map(Event::from).collect();
            let (l, stop) = (listener.clone(), cancelled.clone());
            // A panic (an exception the listener let escape) ends only this call.
            let _ = tokio::task::spawn_blocking(move || {
                if !stop.load(Ordering::Acquire) {
                    l.on_events(events);
                }
            })
            .await;
        }
    })
}

/// Feeds state changes to `listener`, starting with the current state.
pub(crate) fn states(
    mut states: watch::Receiver<pulselink::State>,
    listener: Arc<dyn StateListener>,
) -> Arc<ListenerHandle> {
    spawn(move |cancelled| async move {
        loop {
            let state: State = states.borrow_and_update().clone().into();
            let (l, stop) = (listener.clone(), cancelled.clone());
            let _ = tokio::task::spawn_blocking(move || {
                if !stop.load(Ordering::Acquire) {
                    l.on_state(state);
                }
            })
            .await;
            if states.changed().await.is_err() {
                return;
            }
        }
    })
}

fn spawn<F, Fut>(run: F) -> Arc<ListenerHandle>
where
    F: FnOnce(Arc<AtomicBool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let cancelled = Arc::new(AtomicBool::new(false));
    let task = RUNTIME.spawn(run(cancelled.clone())).abort_handle();
    Arc::new(ListenerHandle { cancelled, task })
}
