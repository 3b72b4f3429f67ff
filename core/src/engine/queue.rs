//! The app's emits on their way to the engine: a queue with room for a fixed number of
//! entries. A full queue makes emitters wait (backpressure, not memory) and volatile emits
//! drop.
//!
//! An unbounded channel whose room a semaphore counts, rather than tokio's bounded channel,
//! for its size while idle: tokio's allocates a cache-padded state and a 32-slot block up
//! front, some 1.6 KiB that a hub holding thousands of clients pays for each; this is about
//! 200 bytes, and an emit pays one small allocation instead. Order is tokio's: the semaphore
//! is fair, an emitter that finds room never overtakes one waiting for it, and an item is
//! queued in the same poll that took its room.

use std::sync::Arc;

use futures_channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use tokio::sync::{Semaphore, SemaphorePermit, TryAcquireError};

/// A queue with room for `room` items.
pub(crate) fn queue<T>(room: usize) -> (QueueTx<T>, QueueRx<T>) {
    let (tx, rx) = unbounded();
    let room = Arc::new(Semaphore::new(room));
    (
        QueueTx {
            tx,
            room: room.clone(),
        },
        QueueRx { rx, room },
    )
}

/// The emitters' end; clones share the queue.
pub(crate) struct QueueTx<T> {
    tx: UnboundedSender<T>,
    room: Arc<Semaphore>,
}

impl<T> Clone for QueueTx<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            room: self.room.clone(),
        }
    }
}

/// Why [`QueueTx::try_send`] gave an item back.
#[derive(Debug)]
pub(crate) enum Refused<T> {
    /// No room right now.
    Full(T),
    /// The engine is gone.
    Closed(T),
}

impl<T> QueueTx<T> {
    /// Queues `item` if there is room now.
    pub(crate) fn try_send(&self, item: T) -> Result<(), Refused<T>> {
        match self.room.try_acquire() {
            Ok(permit) => {
                permit.forget();
                self.tx
                    .unbounded_send(item)
                    .map_err(|e| Refused::Closed(e.into_inner()))
            }
            Err(TryAcquireError::NoPermits) => Err(Refused::Full(item)),
            Err(TryAcquireError::Closed) => Err(Refused::Closed(item)),
        }
    }

    /// Queues `item` once there is room; gives it back if the engine is gone.
    pub(crate) async fn send(&self, item: T) -> Result<(), T> {
        match self.room.acquire().await {
            Ok(permit) => {
                permit.forget();
                self.tx.unbounded_send(item).map_err(|e| e.into_inner())
            }
            Err(_) => Err(item),
        }
    }

    /// Room for one item, taken now: `None` when the queue is full or closed.
    pub(crate) fn try_reserve(&self) -> Option<Reserved<'_, T>> {
        let permit = self.room.try_acquire().ok()?;
        Some(Reserved {
            tx: &self.tx,
            permit,
        })
    }
}

/// Room taken for one item; given back if dropped unused.
pub(crate) struct Reserved<'a, T> {
    tx: &'a UnboundedSender<T>,
    permit: SemaphorePermit<'a>,
}

impl<T> Reserved<'_, T> {
    /// Queues `item` in the room taken.
    pub(crate) fn send(self, item: T) {
        self.permit.forget();
        // Refused only once the engine is gone, which has no use for it.
        let _ = self.tx.unbounded_send(item);
    }
}

/// The engine's end. Dropping it closes the queue: emitters waiting for room are refused.
pub(crate) struct QueueRx<T> {
    rx: UnboundedReceiver<T>,
    room: Arc<Semaphore>,
}

impl<T> QueueRx<T> {
    /// The next item; `None` once every emitter is gone and the queue is empty.
    /// Cancel-safe: an item is taken (and its room given back) only in a poll that
    /// returns it.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        let item = self.rx.recv().await.ok()?;
        self.room.add_permits(1);
        Some(item)
    }

    /// The next item if one is queued.
    pub(crate) fn try_recv(&mut self) -> Option<T> {
        let item = self.rx.try_recv().ok()?;
        self.room.add_permits(1);
        Some(item)
    }

    /// Refuses further items; those queued can still be taken.
    pub(crate) fn close(&mut self) {
        self.room.close();
        self.rx.close();
    }
}

impl<T> Drop for QueueRx<T> {
    fn drop(&mut self) {
        self.room.close();
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_makes_a_sender_wait_for_room() {
        let (tx, mut rx) = queue(2);
        tx.try_send(1).unwrap();
        tx.send(2).await.unwrap();
        assert!(matches!(tx.try_send(3), Err(Refused::Full(3))));
        assert!(tx.try_reserve().is_none(), "no room to reserve");
        let mut waiting = std::pin::pin!(tx.send(3));
        assert!(waiting.as_mut().now_or_never().is_none());
        assert_eq!(rx.recv().await, Some(1));
        // Polled, not awaited: a sender left waiting fails the test rather than hanging it.
        assert_eq!(
            waiting.now_or_never(),
            Some(Ok(())),
            "room given back on receipt"
        );
        assert_eq!(rx.try_recv(), Some(2));
        assert_eq!(rx.try_recv(), Some(3));
        assert_eq!(rx.try_recv(), None);
    }

    #[tokio::test]
    async fn a_reservation_keeps_its_place_and_gives_its_room_back_unused() {
        let (tx, mut rx) = queue(1);
        let reserved = tx.try_reserve().expect("room");
        assert!(matches!(tx.try_send(1), Err(Refused::Full(1))));
        drop(reserved);
        let reserved = tx.try_reserve().expect("room given back");
        reserved.send(2);
        assert!(
            matches!(tx.try_send(3), Err(Refused::Full(3))),
            "the item sent holds the room it reserved"
        );
        assert_eq!(rx.recv().await, Some(2));
        tx.try_send(3).unwrap();
        assert_eq!(rx.recv().await, Some(3));
    }

    #[tokio::test]
    async fn a_closed_or_dropped_receiver_refuses_senders_even_those_waiting() {
        let (tx, mut rx) = queue(1);
        tx.try_send(1).unwrap();
        let mut waiting = std::pin::pin!(tx.send(2));
        assert!(waiting.as_mut().now_or_never().is_none());
        rx.close();
        assert_eq!(
            waiting.now_or_never(),
            Some(Err(2)),
            "a waiting sender hears of the close"
        );
        assert!(matches!(tx.try_send(3), Err(Refused::Closed(3))));
        assert_eq!(
            rx.recv().await,
            Some(1),
            "what was queued can still be taken"
        );

        let (tx, rx) = queue::<u32>(1);
        tx.try_send(1).unwrap();
        let mut waiting = std::pin::pin!(tx.send(2));
        assert!(waiting.as_mut().now_or_never().is_none());
        drop(rx);
        assert_eq!(
            waiting.now_or_never(),
            Some(Err(2)),
            "and of the receiver's end"
        );
        assert!(matches!(tx.try_send(3), Err(Refused::Closed(3))));
    }

    #[tokio::test]
    async fn the_receiver_hears_the_end_once_every_sender_is_gone() {
        let (tx, mut rx) = queue(4);
        let other = tx.clone();
        tx.try_send(1).unwrap();
        drop(tx);
        other.try_send(2).unwrap();
        drop(other);
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, None);
    }
}
