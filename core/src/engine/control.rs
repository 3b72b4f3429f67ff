//! The app's commands and emits, and the one place they are handled: each is routed to the
//! components it concerns, whatever phase the connection is in.

use std::sync::Arc;

use tokio::sync::oneshot;
use tracing::warn;

use super::{
    actions::{AckTx, Actions, End},
    lifecycle::ConnectWaiter,
    listeners::Listener,
    machine::Machine,
};
use crate::{
    device::NetworkPath,
    event::{DisconnectReason, Event, Notice, State},
    metrics::Counters,
    protocol::EventData,
    store::{NewEntry, Reply, StoredSubscription},
    time::Now,
};

/// A command from a client handle.
pub(crate) enum Command {
    /// Start connecting (if not already); the reply fires when connected or failed for good.
    Connect(Option<ConnectWaiter>),
    /// Leave every namespace and stop reconnecting; the engine stays usable.
    Disconnect,
    /// Join a namespace (also on every reconnect).
    Join(Arc<str>),
    /// Leave a namespace.
    Leave(Arc<str>),
    /// Register an event listener. Boxed, as the largest payload: every command channel
    /// allocates its first block of 32 slots with the client, slots sized by the largest.
    Listen(Box<Listener>),
    /// Add a subscription (already persisted) and send it now if its namespace is ready.
    AddSubscription(Box<StoredSubscription>),
    /// Forget a subscription (already removed from the store).
    RemoveSubscription(Box<StoredSubscription>),
    /// A snapshot of the counters.
    Metrics(oneshot::Sender<(Counters, State)>),
    /// The app's reachability hint.
    NetworkAvailable(bool),
    /// The platform's network path.
    NetworkPath(NetworkPath),
    /// The app is going to the background and flushes the outbox first: `Low` entries stop
    /// waiting for the radio. The reply says whether a flush can happen (a connection is up
    /// or being attempted).
    BackgroundFlush(oneshot::Sender<bool>),
    /// The app is in the background (its flush is over); `epoch` orders it against
    /// foregrounds.
    Background(u64),
    /// The app is in the foreground (epoch `epoch`).
    Foreground(u64),
    /// Close for good; the reply fires when everything is torn down.
    Close(oneshot::Sender<()>),
    /// The last handle was dropped.
    Shutdown,
}

/// An emit on its way to the engine. The emit queue (`queue.rs`) carries these, read while
/// the store has room: a fast emitter waits rather than growing memory. Their bodies are
/// boxed: the queue's channel holds one empty node of this type per client even idle, and a
/// hub holds thousands.
pub(crate) enum Outgoing {
    /// Stored before the caller hears back on `reply`; `waiter` hears the acknowledgement.
    Durable {
        entry: Box<NewEntry>,
        waiter: Option<AckTx>,
        reply: Reply<u64>,
    },
    /// Committed by its caller as `seq` while the engine had a link, handed over in number
    /// order ([`super::Seqs`]): the engine writes it, or fetches it when it may not yet.
    Committed { seq: u64, entry: Box<NewEntry> },
    /// Written now if connected, never stored.
    Volatile(Box<EventData>),
}

impl Machine {
    /// Handles a command; [`Command::Close`]'s reply stays with the driver, which answers it
    /// once everything is torn down.
    pub(crate) fn command(&mut self, now: Now, command: Command) {
        match command {
            Command::Connect(reply) => {
                if self.lifecycle.connect(reply, &mut self.out) {
                    self.namespaces.start_over();
                }
            }
            Command::Disconnect => self.lifecycle.disconnect(&mut self.out),
            Command::Close(_) | Command::Shutdown => self.lifecycle.close(&mut self.out),
            Command::Join(ns) => {
                let linked = self.session.is_some();
                self.namespaces.join(ns, linked, &mut self.out);
            }
            Command::Leave(ns) => {
                let wire = self.session.as_ref().map(|s| &s.wire);
                self.namespaces.leave(&ns, wire, &mut self.out);
            }
            Command::Listen(l) => self.listeners.add(*l),
            Command::AddSubscription(s) => {
                let ready = self.namespaces.is_ready(&s.namespace);
                let wire = self.session.as_mut().filter(|_| ready).map(|s| &mut s.wire);
                self.subscriptions.add(*s, now, wire, &mut self.out);
            }
            Command::RemoveSubscription(s) => self.subscriptions.remove(&s),
            Command::Metrics(reply) => {
                let _ = reply.send((self.counters(now), self.state().clone()));
            }
            Command::NetworkAvailable(up) => self.lifecycle.network(up, &mut self.out),
            Command::NetworkPath(path) => {
                self.flush.set_costly_path(path.is_costly());
                if self.connected() {
                    // A path that stopped being costly lets waiting `Low` entries go.
                    self.with_link(now, |flush, now, link, out| {
                        flush.radio_awake(now, link, out)
                    });
                }
                self.lifecycle.path_changed(path, &mut self.out);
            }
            Command::BackgroundFlush(reply) => {
                let _ = reply.send(self.lifecycle.trying());
                self.flush.force_low(true);
                if self.connected() {
                    self.with_link(now, |flush, now, link, out| {
                        flush.radio_awake(now, link, out)
                    });
                }
            }
            Command::Background(epoch) => {
                // A stale request (a foreground came after it) changes nothing, not even a
                // newer flush's.
                if self.lifecycle.background(epoch, &mut self.out) {
                    self.flush.force_low(false);
                }
            }
            Command::Foreground(epoch) => {
                self.flush.force_low(false);
                self.lifecycle.foreground(epoch, &mut self.out);
            }
        }
    }

    /// Handles an emit.
    pub(crate) fn outgoing(&mut self, now: Now, o: Outgoing) {
        match o {
            Outgoing::Durable {
                entry,
                waiter,
                reply,
            } => {
                self.with_connected_link(now, |flush, now, link, out| {
                    flush.emit(*entry, waiter, reply, now, link, out)
                });
            }
            Outgoing::Committed { seq, entry } => {
                self.with_connected_link(now, |flush, now, link, out| {
                    flush.committed(seq, *entry, now, link, out)
                });
            }
            Outgoing::Volatile(event) => self.volatile(now, *event),
        }
    }

    /// A volatile emit: written now if its namespace is joined, otherwise dropped (and said).
    fn volatile(&mut self, now: Now, event: EventData) {
        let dropped = |out: &mut Actions, e: &EventData| {
            out.notify(Notice::EmitDropped {
                namespace: e.namespace.to_string(),
                event: e.name.to_string(),
            })
        };
        let connected = self.connected();
        let Some(s) = self.session.as_mut().filter(|_| connected) else {
            return dropped(&mut self.out, &event);
        };
        // A phone that slept must not write into a socket that died meanwhile; a volatile
        // emit is not worth keeping for the next connection.
        if s.heartbeat.is_stale(now) {
            dropped(&mut self.out, &event);
            return self.out.end(End::lost(DisconnectReason::PingTimeout));
        }
        if !self.namespaces.is_joined(&event.namespace) {
            return dropped(&mut self.out, &event);
        }
        let before = self.out.frames.len();
        if let Err(err) = s.wire.push_event(&mut self.out.frames, &event, None, None) {
            self.out.frames.truncate(before);
            warn!(event = %event.name, error = %err, "emit refused");
            return dropped(&mut self.out, &event);
        }
        self.flush.sent += 1;
        if self.listeners.wants_outbound() {
            self.listeners
                .dispatch(false, Event::new(event, None, None));
        }
    }
}
