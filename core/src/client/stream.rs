//! Receiving events: a stream per listener, and handler tasks that run a closure per event.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
};

use futures_util::Stream;
use tokio::{runtime::Handle, sync::mpsc, task::JoinHandle};

use crate::event::Event;

/// A stream of events for one listener. Ends when the client closes.
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::Receiver<Event>,
}

impl EventStream {
    pub(super) fn new(rx: mpsc::Receiver<Event>) -> Self {
        Self { rx }
    }

    /// The next event, or `None` once the client is closed.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// Waits for at least one event and appends up to `limit` to `buf`; returns how many
    /// (0 once the client is closed). The cheapest way to consume a high event rate.
    pub async fn recv_many(&mut self, buf: &mut Vec<Event>, limit: usize) -> usize {
        self.rx.recv_many(buf, limit).await
    }

    /// An event if one is ready now.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

impl Stream for EventStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

/// Keeps a listener running; cancels it on [`ListenerHandle::cancel`] or drop.
#[derive(Debug)]
pub struct ListenerHandle {
    task: JoinHandle<()>,
    cancelled: Arc<AtomicBool>,
}

impl ListenerHandle {
    /// Runs `handler` for each event of `stream` on a task of `runtime`.
    pub(super) fn spawn(
        runtime: &Handle,
        mut stream: EventStream,
        mut handler: impl FnMut(Event) + Send + 'static,
    ) -> Self {
        let cancelled = Arc::new(AtomicBool::new(false));
        let stop = cancelled.clone();
        let task = runtime.spawn(async move {
            // Grown by the first events, not allocated up front: an idle listener (a hub's
            // thousands of them) holds no buffer.
            let mut batch = Vec::new();
            while stream.recv_many(&mut batch, 64).await > 0 {
                for ev in batch.drain(..) {
                    // Checked per event: once `cancel()` returns, the handler is not called again.
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    handler(ev);
                }
            }
        });
        Self { task, cancelled }
    }

    /// Stops the listener: after this returns its handler is not called again (a call already
    /// running on another thread finishes).
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
