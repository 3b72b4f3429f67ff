//! Pull delivery: receivers foreign code awaits for the next batch of events or notices.
//!
//! These futures are polled in place rather than spawned on the runtime, and the channels
//! they read are cancel-safe: a foreign caller that cancels its wait (a Python task
//! cancelled, a Kotlin coroutine scope ended) loses nothing.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{Mutex, Notify, broadcast};

use crate::event::{Event, HubNotice, Notice, PackedEvents};

/// Inbound events for one consumer; every receiver sees every event it matches.
///
/// Created before `connect()`, it sees the first events. A receiver nobody reads holds the
/// engine back once its buffer is full (backpressure, never loss): close it when done.
#[derive(uniffi::Object)]
pub struct EventReceiver {
    stream: Mutex<Option<pulselink::EventStream>>,
    closed: AtomicBool,
    /// Wakes a `next_batch` waiting while `close()` is called.
    closing: Notify,
}

impl EventReceiver {
    pub(crate) fn new(stream: pulselink::EventStream) -> Self {
        Self {
            stream: Mutex::new(Some(stream)),
            closed: AtomicBool::new(false),
            closing: Notify::new(),
        }
    }
}

#[uniffi::export]
impl EventReceiver {
    /// Waits for at least one event and returns up to `max`; empty once the client or this
    /// receiver is closed.
    pub async fn next_batch(&self, max: u32) -> Vec<Event> {
        self.next_raw(max)
            .await
            .into_iter()
            .map(Event::from)
            .collect()
    }

    /// Like `next_batch`, packed into one JSON text: for languages where lifting many small
    /// records costs more than parsing one string (Python decodes it in C).
    pub async fn next_packed(&self, max: u32) -> PackedEvents {
        PackedEvents::pack(self.next_raw(max).await)
    }

    /// Stops receiving and unregisters; a waiting `next_batch` returns at once.
    pub fn cancel(&self) {
        self.closed.store(true, Ordering::Release);
        self.closing.notify_one();
        if let Ok(mut guard) = self.stream.try_lock() {
            guard.take();
        }
    }
}

impl EventReceiver {
    /// Waits for at least one event and takes up to `max`; cancel-safe.
    async fn next_raw(&self, max: u32) -> Vec<pulselink::Event> {
        let mut guard = self.stream.lock().await;
        let max = max.max(1) as usize;
        let mut buf = Vec::with_capacity(max.min(1024));
        if let Some(stream) = guard.as_mut().filter(|_| !self.is_closed()) {
            tokio::select! {
                _ = stream.recv_many(&mut buf, max) => {}
                () = self.closing.notified() => {}
            }
        }
        if self.is_closed() {
            // Unregisters from the engine so an unread receiver never holds it back.
            guard.take();
            // Events that came in as `cancel()` woke the wait: the select may have taken
            // them rather than the wake-up, and a cancelled receiver hears nothing more.
            buf.clear();
        }
        buf
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// Lifecycle notices for one consumer. Notices are a bounded broadcast: a consumer that falls
/// far behind skips the oldest ones (never events).
#[derive(uniffi::Object)]
pub struct NoticeReceiver(Mutex<broadcast::Receiver<pulselink::Notice>>);

impl NoticeReceiver {
    pub(crate) fn new(rx: broadcast::Receiver<pulselink::Notice>) -> Self {
        Self(Mutex::new(rx))
    }
}

#[uniffi::export]
impl NoticeReceiver {
    /// Waits for at least one notice and returns up to `max`; empty once the client closed.
    pub async fn next_batch(&self, max: u32) -> Vec<Notice> {
        next_batch(&mut *self.0.lock().await, max).await
    }
}

/// Every notice of a hub's clients for one consumer, each with its client's number; bounded
/// like a client's notices.
#[derive(uniffi::Object)]
pub struct HubNoticeReceiver(Mutex<broadcast::Receiver<pulselink::HubNotice>>);

impl HubNoticeReceiver {
    pub(crate) fn new(rx: broadcast::Receiver<pulselink::HubNotice>) -> Self {
        Self(Mutex::new(rx))
    }
}

#[uniffi::export]
impl HubNoticeReceiver {
    /// Waits for at least one notice and returns up to `max`; empty once the hub and all its
    /// clients are gone.
    pub async fn next_batch(&self, max: u32) -> Vec<HubNotice> {
        next_batch(&mut *self.0.lock().await, max).await
    }
}

/// At least one item from `rx` (none once it closed), then up to `max` in all of those
/// already there; skipping past the oldest when the consumer fell behind.
async fn next_batch<T: Clone, U: From<T>>(rx: &mut broadcast::Receiver<T>, max: u32) -> Vec<U> {
    let mut out = Vec::new();
    loop {
        match rx.recv().await {
            Ok(n) => {
                out.push(n.into());
                break;
            }
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return out,
        }
    }
    while out.len() < max.max(1) as usize {
        match rx.try_recv() {
            Ok(n) => out.push(n.into()),
            Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
            Err(_) => break,
        }
    }
    out
}
