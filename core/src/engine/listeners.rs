//! The app's event listeners and delivery to them with backpressure: an event a full listener
//! cannot take waits here, in order, and the driver stops reading the socket until it can.
//! Nothing is ever dropped for a slow listener; only one that went away loses its share.

use std::{collections::VecDeque, sync::Arc};

use tokio::sync::mpsc::{self, OwnedPermit, error::TrySendError};

use crate::event::Event;

/// A listener's channel and what it wants to see.
pub(crate) struct Listener {
    pub(crate) interest: Interest,
    pub(crate) tx: mpsc::Sender<Event>,
}

/// Which events a listener receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Interest {
    /// Every inbound event.
    Inbound,
    /// Inbound events with this name, optionally on one namespace only.
    Named {
        namespace: Option<Arc<str>>,
        name: String,
    },
    /// Inbound events on `namespace` with any of these names, in the order they arrived (one
    /// stream, where two `Named` streams could be read out of order).
    AnyOf {
        namespace: Arc<str>,
        names: Vec<String>,
    },
    /// Every event the client sends.
    Outbound,
}

impl Interest {
    fn accepts(&self, inbound: bool, ev: &Event) -> bool {
        match self {
            Interest::Inbound => inbound,
            Interest::Outbound => !inbound,
            Interest::Named { namespace, name } => {
                inbound
                    && ev.name() == name
                    && namespace.as_deref().is_none_or(|ns| ns == ev.namespace())
            }
            Interest::AnyOf { namespace, names } => {
                inbound && **namespace == *ev.namespace() && names.iter().any(|n| n == ev.name())
            }
        }
    }
}

/// Every listener, and the events waiting for a full one.
#[derive(Default)]
pub(crate) struct Listeners {
    list: Vec<Listener>,
    /// Events a full listener has not taken yet, in order, by listener index.
    backlog: VecDeque<(usize, Event)>,
    /// Some listener wants outbound events (so the outbox keeps their attachments).
    outbound: bool,
    /// Inside a batch of frames: events wait in the backlog and are handed over together when
    /// the batch ends. A listener on another thread is then woken once per batch instead of
    /// once per event or two (each wake-up of an app's `block_on` thread costs more than the
    /// events it would take).
    holding: bool,
}

impl Listeners {
    /// Registers a listener.
    pub(crate) fn add(&mut self, listener: Listener) {
        self.outbound |= listener.interest == Interest::Outbound;
        self.list.push(listener);
    }

    /// Whether a listener wants the events the client sends.
    pub(crate) fn wants_outbound(&self) -> bool {
        self.outbound
    }

    /// Starts a batch: what is dispatched waits until [`Listeners::release`].
    pub(crate) fn hold(&mut self) {
        self.holding = true;
    }

    /// Ends a batch: hands over what waits, as far as there is room.
    pub(crate) fn release(&mut self) {
        self.holding = false;
        self.hand_over();
    }

    /// Hands an event to every listener that wants it; a full listener's share waits in the
    /// backlog (behind anything already waiting, to keep order).
    pub(crate) fn dispatch(&mut self, inbound: bool, ev: Event) {
        let mut closed = false;
        // The last listener that wants it takes the event itself, the others a clone.
        let mut taker = None;
        for i in 0..self.list.len() {
            if self.list[i].interest.accepts(inbound, &ev)
                && let Some(earlier) = taker.replace(i)
            {
                closed |= self.offer(earlier, ev.clone());
            }
        }
        if let Some(last) = taker {
            closed |= self.offer(last, ev);
        }
        if closed && self.backlog.is_empty() {
            self.forget_closed();
        }
    }

    /// Offers an event to listener `i`, behind anything already waiting; true if the
    /// listener went away.
    fn offer(&mut self, i: usize, ev: Event) -> bool {
        if self.holding || !self.backlog.is_empty() {
            self.backlog.push_back((i, ev));
            return false;
        }
        match self.list[i].tx.try_send(ev) {
            Ok(()) => false,
            Err(TrySendError::Full(ev)) => {
                self.backlog.push_back((i, ev));
                false
            }
            Err(TrySendError::Closed(_)) => true,
        }
    }

    /// The listener the backlog waits for, when it waits: the driver stops reading the socket
    /// and waits for room there. During a batch, the listener that may not have room for the
    /// next event: the batch ends there, so what is held never exceeds what the listeners
    /// can take (a held event is one backlog entry per listener it goes to), as when each
    /// event was offered at once.
    pub(crate) fn blocked_on(&self) -> Option<mpsc::Sender<Event>> {
        if self.holding {
            let held = self.backlog.len();
            return self
                .list
                .iter()
                .find(|l| l.tx.capacity() <= held)
                .map(|l| l.tx.clone());
        }
        self.backlog.front().map(|(i, _)| self.list[*i].tx.clone())
    }

    /// Room appeared for the first waiting event (`None`: its listener went away): hands over
    /// what fits.
    pub(crate) fn drain(&mut self, permit: Option<OwnedPermit<Event>>) {
        let Some((_, ev)) = self.backlog.pop_front() else {
            return;
        };
        if let Some(p) = permit {
            p.send(ev);
        }
        self.hand_over();
    }

    /// Offers the backlog in order until a listener is full.
    fn hand_over(&mut self) {
        while let Some((i, ev)) = self.backlog.pop_front() {
            match self.list[i].tx.try_send(ev) {
                Ok(()) | Err(TrySendError::Closed(_)) => {}
                Err(TrySendError::Full(ev)) => {
                    self.backlog.push_front((i, ev));
                    return;
                }
            }
        }
        self.forget_closed();
    }

    fn forget_closed(&mut self) {
        self.list.retain(|l| !l.tx.is_closed());
        self.outbound = self.list.iter().any(|l| l.interest == Interest::Outbound);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{codec::json::RawJson, protocol::EventData};

    fn event(n: u32) -> Event {
        let data = EventData {
            namespace: Arc::from("/"),
            name: Arc::from("tick"),
            args: RawJson::validated(format!("[{n}]")),
            attachments: vec![],
        };
        Event::new(data, None, None)
    }

    #[tokio::test]
    async fn a_full_listener_holds_events_back_in_order_and_loses_none() {
        let mut l = Listeners::default();
        let (tx, mut rx) = mpsc::channel(2);
        l.add(Listener {
            interest: Interest::Inbound,
            tx,
        });
        for n in 0..5 {
            l.dispatch(true, event(n));
        }
        let blocked = l.blocked_on().expect("two fit, three wait");
        let mut got = Vec::new();
        while let Some(tx) = l.blocked_on() {
            got.push(rx.recv().await.unwrap());
            let permit = tx.reserve_owned().await.ok();
            l.drain(permit);
        }
        drop(blocked);
        while let Ok(ev) = rx.try_recv() {
            got.push(ev);
        }
        let order: Vec<&str> = got.iter().map(|e| e.args_json()).collect();
        assert_eq!(order, ["[0]", "[1]", "[2]", "[3]", "[4]"]);
    }

    #[test]
    fn a_batch_is_handed_over_whole_at_its_end_and_ends_where_a_listener_may_be_full() {
        let mut l = Listeners::default();
        let (tx, mut rx) = mpsc::channel(3);
        l.add(Listener {
            interest: Interest::Inbound,
            tx,
        });
        l.hold();
        for n in 0..2 {
            l.dispatch(true, event(n));
            assert!(
                l.blocked_on().is_none(),
                "room for what is held and one more"
            );
        }
        l.dispatch(true, event(2));
        assert!(
            rx.try_recv().is_err(),
            "nothing reaches the app during a batch"
        );
        assert!(
            l.blocked_on().is_some(),
            "the batch ends before it holds more than the listener can take"
        );
        l.release();
        let order: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|e| e.args_json().to_owned())
            .collect();
        assert_eq!(order, ["[0]", "[1]", "[2]"], "all of it, in order");
        assert!(l.blocked_on().is_none());
    }

    #[test]
    fn interests_filter_and_closed_listeners_are_forgotten() {
        let mut l = Listeners::default();
        let (named_tx, mut named) = mpsc::channel(8);
        let (out_tx, out_rx) = mpsc::channel(8);
        l.add(Listener {
            interest: Interest::Named {
                namespace: Some(Arc::from("/")),
                name: "tick".into(),
            },
            tx: named_tx,
        });
        l.add(Listener {
            interest: Interest::Outbound,
            tx: out_tx,
        });
        assert!(l.wants_outbound());
        l.dispatch(true, event(1));
        l.dispatch(false, event(2));
        assert_eq!(named.try_recv().unwrap().args_json(), "[1]");
        assert!(
            named.try_recv().is_err(),
            "outbound events are not inbound ones"
        );
        drop(out_rx);
        l.dispatch(false, event(3));
        assert!(!l.wants_outbound(), "the outbound listener went away");
        assert!(l.blocked_on().is_none());
    }
}
