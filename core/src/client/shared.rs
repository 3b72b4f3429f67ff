//! What every handle of one client shares: the channels to the engine and the store, the
//! published state and notices, the configuration and the runtime.

use std::sync::{Arc, atomic::AtomicU64};

use futures_channel::mpsc::UnboundedSender;
use tokio::{runtime::Handle, sync::mpsc};

use super::stream::EventStream;
use crate::{
    args::Args,
    config::{ClientConfig, Protocol},
    engine::{Command, Interest, Listener, Outgoing, QueueTx, Seqs},
    error::{Error, Result},
    event::State,
    notices::Notices,
    state_cell::StateCell,
    store::Store,
};

/// One client's channels. The engine stops when the last handle drops it.
pub(super) struct Shared {
    pub(super) commands: UnboundedSender<Command>,
    pub(super) outgoing: QueueTx<Outgoing>,
    pub(super) store: Store,
    /// The outbox's sequence numbers, shared with the engine.
    pub(super) seqs: Arc<Seqs>,
    pub(super) state: Arc<StateCell>,
    pub(super) notices: Arc<Notices>,
    pub(super) main: Arc<str>,
    pub(super) config: Arc<ClientConfig>,
    pub(super) runtime: Handle,
    /// Foregrounds so far: orders a background flush against a foreground that overtook it.
    pub(super) app_epoch: AtomicU64,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let _ = self.commands.unbounded_send(Command::Shutdown);
    }
}

impl Shared {
    /// Sends `c` to the engine; [`Error::Closed`] once the client is closed (the state says
    /// so before `close()` returns, while the channel may outlive it for a moment).
    pub(super) fn send(&self, c: Command) -> Result<()> {
        if self.state.is(&State::Closed) {
            return Err(Error::Closed);
        }
        self.commands.unbounded_send(c).map_err(|_| Error::Closed)
    }

    /// A stream of the events `interest` names, registered with the engine.
    pub(super) fn listen(&self, interest: Interest) -> EventStream {
        let (tx, rx) = mpsc::channel(self.config.listener_buffer);
        // If the engine is gone the stream simply ends.
        let _ = self.send(Command::Listen(Box::new(Listener { interest, tx })));
        EventStream::new(rx)
    }

    /// Refuses what the configured protocol cannot carry, before anything is stored.
    pub(super) fn check_args(&self, args: &Args) -> Result<()> {
        args.check()?;
        if matches!(self.config.protocol, Protocol::Envelope(_)) {
            args.refuse_binary("the envelope protocol")?;
        }
        Ok(())
    }
}
