//! The engine: one task per client, the only owner and writer of connection state.
//!
//! Its logic is a set of components that own their state and do no I/O — each turns inputs
//! (a decoded frame, a command, the store's news, the time) into [`actions::Actions`]
//! (frames to write, store commands, notices, credentials to ask for, what to do with the
//! link), and each is unit-tested with a made-up clock:
//!
//! - [`lifecycle`]: whether a connection is wanted, backoff and suspension, what the device
//!   says (network, interface, background and foreground), the state and its times;
//! - [`namespaces`]: joining, refusals and credential refresh;
//! - [`recovery`]: connection-state-recovery sessions;
//! - [`admission`]: counting, de-duplicating and freshness-checking inbound events;
//! - [`listeners`]: delivery to the app with backpressure;
//! - [`flush`]: the outbox window, acknowledgements, resends, give-up, and the callers
//!   waiting for acknowledgements;
//! - [`subscriptions`]: replay on every join, acks awaited before the outbox flows;
//! - [`heartbeat`] and [`session`]: one link's liveness and protocol state;
//! - [`radio`]: wake-ups the link's traffic costs, and whether the radio is awake anyway
//!   (when the outbox's `Low` lane may go);
//! - [`pacing`]: when the link is read again (a busy stream's frames gather for a moment).
//!
//! [`seqs`] holds the outbox's sequence numbers, which the engine shares with callers that
//! commit their own emits. [`machine`] routes inputs between them, [`control`] handles the
//! app's commands, and
//! [`driver`] is the task: it owns the socket, the timers and the channels, feeds the machine
//! and performs its actions. [`dial`] opens a link.
//!
//! Order on every connect: handshake and auth → namespaces → subscriptions replayed (acks
//! awaited) → outbox flushed (priority, then age) → live traffic.

mod actions;
mod admission;
mod control;
mod dial;
mod driver;
mod flush;
mod heartbeat;
mod lifecycle;
mod listeners;
mod machine;
mod namespaces;
mod pacing;
mod prepared;
mod queue;
mod radio;
mod recovery;
mod seq_map;
mod seqs;
mod session;
mod subscriptions;

use std::sync::Arc;

use futures_channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use tokio::runtime::Handle;

pub(crate) use self::{
    actions::AckTx,
    control::{Command, Outgoing},
    listeners::{Interest, Listener},
    prepared::Prepared,
    queue::{QueueTx, Refused},
    seqs::{Queued, Seqs},
};
use self::{driver::Driver, machine::Machine};
use crate::{
    config::AuthProvider,
    event::AckAnswer,
    metrics::{HubCounters, HubShare},
    notices::Notices,
    state_cell::StateCell,
    store::{Snapshot, Store, StoreEvent},
    time::Now,
};

/// Emits queued to the engine; a full queue makes emitters wait (and volatile emits drop).
const OUTGOING: usize = 1024;

/// The handle side of a running engine.
pub(crate) struct Handles {
    pub(crate) commands: UnboundedSender<Command>,
    pub(crate) outgoing: QueueTx<Outgoing>,
    pub(crate) state: Arc<StateCell>,
    /// The outbox's sequence numbers, for emits a caller commits itself.
    pub(crate) seqs: Arc<Seqs>,
}

/// Starts a client's engine task on `runtime`, asking `auth` for credentials (the
/// configuration's provider, or a hub client's own).
#[allow(clippy::too_many_arguments)] // the client's parts, each made by `Client::build`
pub(crate) fn spawn(
    runtime: &Handle,
    prepared: Prepared,
    auth: Option<Arc<dyn AuthProvider>>,
    store: Store,
    snapshot: Snapshot,
    store_events: UnboundedReceiver<StoreEvent>,
    notices: Arc<Notices>,
    hub: Option<Arc<HubCounters>>,
) -> Handles {
    let (commands_tx, commands) = unbounded();
    let (outgoing_tx, outgoing) = queue::queue(OUTGOING);
    let (answers_tx, answers) = unbounded::<Box<AckAnswer>>();
    let (state, publisher) = StateCell::new();
    let mut machine = Machine::new(&prepared, auth.is_some(), snapshot, answers_tx, Now::read());
    let Prepared {
        config,
        route,
        options,
        ..
    } = prepared;
    machine.hub = hub.map(HubShare::new);
    let seqs = machine.flush.seqs.clone();
    let driver = Driver {
        machine,
        options,
        config,
        route,
        auth,
        store,
        commands,
        outgoing,
        answers,
        store_events,
        state: publisher,
        notices,
    };
    runtime.spawn(Box::new(driver).run());
    Handles {
        commands: commands_tx,
        outgoing: outgoing_tx,
        state,
        seqs,
    }
}
