//! Pull delivery: receivers foreign code awaits for the next batch of events or notices.
//!
//! The async methods' futures are polled in place rather than spawned on the runtime, and
//! the channels they read are cancel-safe: a foreign caller that cancels its wait (a Python
//! task cancelled, a Kotlin coroutine scope ended) loses nothing. On Unix an event loop can
//! instead watch an answer queue (`EventReceiver::next_packed_start`, see `answers.rs`); its
//! wait runs on the runtime, and what a wait given up took is kept for the next call.

use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(unix)]
use std::{
    future::Future,
    sync::{Arc, PoisonError},
    task::{Context, Poll, Waker},
};

use tokio::sync::{Mutex, Notify, broadcast};

use crate::event::{Event, HubNotice, Notice, PackedEvents};
#[cfg(unix)]
use crate::{
    answers::{Answer, Answers, Outcome},
    error::PulselinkError,
    runtime::handle,
};

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
    /// The wait `next_packed_start` left running, and what it took.
    #[cfg(unix)]
    watch: std::sync::Mutex<Watch>,
}

/// A wait [`EventReceiver::next_packed_start`] left running on the runtime.
#[cfg(unix)]
#[derive(Default)]
struct Watch {
    /// Events the wait took, for the next call.
    taken: Vec<pulselink::Event>,
    /// Whether a wait is running.
    waiting: bool,
    /// Whom it tells when it ends: everyone who asked meanwhile (one may have given up,
    /// another still wait), so that each asks again.
    tell: Vec<(Arc<Answers>, u64)>,
}

impl EventReceiver {
    pub(crate) fn new(stream: pulselink::EventStream) -> Self {
        Self {
            stream: Mutex::new(Some(stream)),
            closed: AtomicBool::new(false),
            closing: Notify::new(),
            #[cfg(unix)]
            watch: std::sync::Mutex::default(),
        }
    }
}

/// Unix only, in a block of its own: UniFFI's export macro sees every method of a block
/// whatever `cfg` a method carries.
#[cfg(unix)]
#[uniffi::export]
impl EventReceiver {
    /// `next_packed` for an event loop that watches `answers` instead of awaiting: up to
    /// `max` events when some are ready now (an empty batch once the receiver ended);
    /// otherwise `None`, and `answers` hears `token` (`Ready`) once some are, or the receiver
    /// ended, and asking again takes them. One wait runs at a time, on the runtime, and tells
    /// everyone who asked meanwhile; what it took waits here for the next call, so a caller
    /// that gave up loses nothing. Read a receiver this way or through the async methods,
    /// not both: those do not see what such a wait took. A wait keeps the receiver until
    /// it ends (the next event, `close()`, or the client's end).
    pub fn next_packed_start(
        self: Arc<Self>,
        max: u32,
        answers: Arc<Answers>,
        token: u64,
    ) -> Result<Option<PackedEvents>, PulselinkError> {
        let runtime = handle()?;
        let mut watch = self.watch.lock().unwrap_or_else(PoisonError::into_inner);
        if self.is_closed() {
            // A closed receiver hears nothing more, as `next_raw` says.
            watch.taken.clear();
        }
        if !watch.taken.is_empty() {
            let n = watch.taken.len().min(max.max(1) as usize);
            return Ok(Some(PackedEvents::pack(watch.taken.drain(..n).collect())));
        }
        if watch.waiting {
            watch.tell.push((answers, token));
            return Ok(None);
        }
        // Polled once here, within the runtime's context (its timers, its I/O): events that
        // are ready cost no wait and no wake-up.
        let _context = runtime.enter();
        let receiver = self.clone();
        let mut wait = Box::pin(async move { receiver.next_raw(max).await });
        if let Poll::Ready(events) = wait.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            return Ok(Some(PackedEvents::pack(events)));
        }
        watch.waiting = true;
        watch.tell.push((answers, token));
        drop(watch);
        let finish = Finish {
            receiver: self,
            events: Vec::new(),
        };
        runtime.spawn(async move { finish.with(wait.await) });
        Ok(None)
    }
}

/// Ends a watched wait: what it took is kept for the next call and everyone who asked is
/// told (also when the wait is dropped unfinished, with the runtime: asking again then fails).
#[cfg(unix)]
struct Finish {
    receiver: Arc<EventReceiver>,
    events: Vec<pulselink::Event>,
}

#[cfg(unix)]
impl Finish {
    /// Ends the wait with what it took.
    fn with(mut self, events: Vec<pulselink::Event>) {
        self.events = events;
    }
}

#[cfg(unix)]
impl Drop for Finish {
    fn drop(&mut self) {
        let tell = {
            let mut watch = self
                .receiver
                .watch
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            watch.taken.append(&mut self.events);
            watch.waiting = false;
            std::mem::take(&mut watch.tell)
        };
        for (answers, token) in tell {
            answers.answer(Answer {
                token,
                outcome: Outcome::Ready,
            });
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
pub struct NoticeReceiver(Pull<pulselink::Notice>);

impl NoticeReceiver {
    pub(crate) fn new(rx: broadcast::Receiver<pulselink::Notice>) -> Self {
        Self(Pull::new(rx))
    }
}

#[uniffi::export]
impl NoticeReceiver {
    /// Waits for at least one notice and returns up to `max`; empty once the client or this
    /// receiver is closed.
    pub async fn next_batch(&self, max: u32) -> Vec<Notice> {
        self.0.next_batch(max).await
    }

    /// Stops receiving; a waiting `next_batch` returns at once.
    pub fn cancel(&self) {
        self.0.cancel();
    }
}

/// Every notice of a hub's clients for one consumer, each with its client's number; bounded
/// like a client's notices.
#[derive(uniffi::Object)]
pub struct HubNoticeReceiver(Pull<pulselink::HubNotice>);

impl HubNoticeReceiver {
    pub(crate) fn new(rx: broadcast::Receiver<pulselink::HubNotice>) -> Self {
        Self(Pull::new(rx))
    }
}

#[uniffi::export]
impl HubNoticeReceiver {
    /// Waits for at least one notice and returns up to `max`; empty once this receiver is
    /// cancelled, or the hub and all its clients are gone.
    pub async fn next_batch(&self, max: u32) -> Vec<HubNotice> {
        self.0.next_batch(max).await
    }

    /// Stops receiving (a hub's stream has no other end while the hub lives); a waiting
    /// `next_batch` returns at once.
    pub fn cancel(&self) {
        self.0.cancel();
    }
}

/// A broadcast receiver read in batches, which its consumer may cancel.
struct Pull<T> {
    rx: Mutex<Option<broadcast::Receiver<T>>>,
    closed: AtomicBool,
    /// Wakes a `next_batch` waiting while `cancel()` is called.
    closing: Notify,
}

impl<T: Clone> Pull<T> {
    fn new(rx: broadcast::Receiver<T>) -> Self {
        Self {
            rx: Mutex::new(Some(rx)),
            closed: AtomicBool::new(false),
            closing: Notify::new(),
        }
    }

    /// At least one item (none once the channel closed or this was cancelled), then up to
    /// `max` in all of those already there; skipping past the oldest when the consumer fell
    /// behind. Cancel-safe: `recv` takes an item only when it returns it.
    async fn next_batch<U: From<T>>(&self, max: u32) -> Vec<U> {
        let mut guard = self.rx.lock().await;
        let mut out = Vec::new();
        while let Some(rx) = guard.as_mut().filter(|_| !self.is_closed()) {
            tokio::select! {
                n = rx.recv() => match n {
                    Ok(n) => {
                        out.push(n.into());
                        break;
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return out,
                },
                () = self.closing.notified() => {}
            }
        }
        if self.is_closed() {
            // Lets go of the channel, so a hub no longer copies notices for this receiver.
            guard.take();
            return Vec::new();
        }
        while out.len() < max.max(1) as usize {
            let Some(rx) = guard.as_mut() else { break };
            match rx.try_recv() {
                Ok(n) => out.push(n.into()),
                Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
                Err(_) => break,
            }
        }
        out
    }

    fn cancel(&self) {
        self.closed.store(true, Ordering::Release);
        self.closing.notify_one();
        if let Ok(mut guard) = self.rx.try_lock() {
            guard.take();
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}
