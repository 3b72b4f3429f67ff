//! A client's state as its engine publishes it: read on many calls (an emit checks it, every
//! command checks for `Closed`), watched by few.
//!
//! The watch channel that [`crate::Client::states`] hands out is made on the first call:
//! tokio's allocates its notifiers up front (some 370 bytes), which every idle client of a hub
//! would otherwise hold for a watcher that never comes. Watchers see what they would see on a
//! channel the engine owned: each change (intermediate ones may be coalesced), the current
//! state as not yet seen once the client has left `Idle` (as a clone of a receiver made with
//! the client would have it), and the channel closing once the engine is gone.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use crate::event::State;

/// The published state, shared by a client's handles and its engine.
#[derive(Debug)]
pub(crate) struct StateCell {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: State,
    /// Made for the first watcher; dropped when the engine ends, which closes the channel.
    watch: Option<watch::Sender<State>>,
    /// The engine is gone: a watcher made from now on gets a channel already closed.
    ended: bool,
    /// The state has changed since the client was made: a new watcher has a change to see.
    moved: bool,
}

impl StateCell {
    /// A cell at [`State::Idle`] and its engine's side, which publishes to it.
    pub(crate) fn new() -> (Arc<Self>, Publisher) {
        let cell = Arc::new(Self {
            inner: Mutex::new(Inner {
                state: State::Idle,
                watch: None,
                ended: false,
                moved: false,
            }),
        });
        (cell.clone(), Publisher(cell))
    }

    /// The current state.
    pub(crate) fn get(&self) -> State {
        self.lock().state.clone()
    }

    /// Whether the current state is `state`.
    pub(crate) fn is(&self, state: &State) -> bool {
        self.lock().state == *state
    }

    /// A watch on the state, at the current one, which counts as a change not yet seen once
    /// the client has left `Idle`: a watcher made after `start` learns where the client is
    /// from its first `changed()`, not only from the transition after it.
    pub(crate) fn watch(&self) -> watch::Receiver<State> {
        let mut inner = self.lock();
        let mut rx = match &inner.watch {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(inner.state.clone());
                if !inner.ended {
                    inner.watch = Some(tx);
                }
                rx
            }
        };
        if inner.moved {
            rx.mark_changed();
        }
        rx
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Nothing panics while holding it; a state is valid whatever happened.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The engine's side of a [`StateCell`]. Dropped with the engine, however it ends (closed,
/// or its runtime shut down), which closes the watchers' channel.
#[derive(Debug)]
pub(crate) struct Publisher(Arc<StateCell>);

impl Publisher {
    /// Publishes `state`; returns whether it changed.
    pub(crate) fn publish(&self, state: &State) -> bool {
        let mut inner = self.0.lock();
        if inner.state == *state {
            return false;
        }
        inner.state = state.clone();
        inner.moved = true;
        if let Some(tx) = &inner.watch {
            tx.send_replace(state.clone());
        }
        true
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let mut inner = self.0.lock();
        inner.ended = true;
        inner.watch = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The watcher's next change (`Err` once the channel closes); a broken cell fails the
    /// test rather than hanging it.
    async fn next(rx: &mut watch::Receiver<State>) -> Result<(), watch::error::RecvError> {
        tokio::time::timeout(std::time::Duration::from_secs(5), rx.changed())
            .await
            .expect("a change or the end within 5 s")
    }

    #[tokio::test]
    async fn watchers_see_changes_and_the_end_like_on_a_channel_of_the_engine() {
        let (idle, _engine) = StateCell::new();
        assert!(
            !idle.watch().has_changed().unwrap(),
            "nothing to see before the client moves"
        );

        let (cell, publisher) = StateCell::new();
        assert!(!publisher.publish(&State::Idle), "unchanged");
        assert!(publisher.publish(&State::Connecting));
        assert!(
            cell.lock().watch.is_none(),
            "no channel until someone watches"
        );

        let mut early = cell.watch();
        assert!(cell.lock().watch.is_some());
        assert!(
            early.has_changed().unwrap(),
            "where the client is counts as a change to see"
        );
        assert_eq!(*early.borrow_and_update(), State::Connecting);
        assert!(!early.has_changed().unwrap());
        assert!(publisher.publish(&State::Connected));
        next(&mut early).await.unwrap();
        assert_eq!(*early.borrow_and_update(), State::Connected);
        assert!(cell.is(&State::Connected));
        assert_eq!(cell.get(), State::Connected);

        let mut second = cell.watch();
        publisher.publish(&State::Closed);
        drop(publisher);
        // The last change is seen, then the channel is closed.
        next(&mut early).await.unwrap();
        assert_eq!(*early.borrow_and_update(), State::Closed);
        assert!(next(&mut early).await.is_err());
        next(&mut second).await.unwrap();
        assert!(next(&mut second).await.is_err());
        // A watcher after the end: the last state, to see once, and a closed channel.
        let mut late = cell.watch();
        next(&mut late).await.unwrap();
        assert_eq!(*late.borrow_and_update(), State::Closed);
        assert!(next(&mut late).await.is_err());
    }
}
