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

    /// Hands an event to every listener that wants it; a full listener's share waits in the
    /// backlog (behind anything already waiting, to keep order).
    pub(crate) fn dispatch(&mut self, inbound: bool, ev: Event) {
        let mut closed = false;
        for (i, l) in self.list.iter().enumerate() {
            if !l.interest.accepts(inbound, &ev) {
                continue;
            }
            if !self.backlog.is_empty() {
                self.backlog.push_back((i, ev.clone()));
                continue;
            }
            match l.tx.try_send(ev.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(ev)) => self.backlog.push_back((i, ev)),
                Err(TrySendError::Closed(_)) => closed = true,
            }
        }
        if closed && self.backlog.is_empty() {
            self.forget_closed();
        }
    }

    /// The listener the backlog waits for, when it waits: the driver stops reading the socket
    /// and waits for room there.
    pub(crate) fn blocked_on(&self) -> Option<mpsc::Sender<Event>> {
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
