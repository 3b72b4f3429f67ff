//! One namespace on a client's connection (socket.io-client's `Socket`): every call that
//! names a namespace — emitting, subscribing, listening — is made here.

use std::{future::Future, sync::Arc, time::Duration};

use futures_util::FutureExt;
use tokio::sync::oneshot;

use super::{
    shared::Shared,
    stream::{EventStream, ListenerHandle},
};
use crate::{
    args::{AckReply, Args},
    codec::json::RawJson,
    engine::{AckTx, Command, Interest, Outgoing, Queued, Refused},
    error::{Error, Result},
    event::{Event, State},
    outbox::EmitOptions,
    protocol::EventData,
    store::{Cmd, NewEntry, Sending, StoredSubscription},
};

/// One namespace on a client's connection.
#[derive(Clone)]
pub struct Socket {
    shared: Arc<Shared>,
    namespace: Arc<str>,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl Socket {
    pub(super) fn new(shared: Arc<Shared>, namespace: Arc<str>) -> Self {
        Self { shared, namespace }
    }

    /// The namespace, e.g. `/rooms/r1`.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Whether an emit's commit runs on the engine's own task (`Durability::Normal`, or a
    /// store in memory) rather than behind an fsync on the store thread: then `emit` finishes
    /// within microseconds unless the outbox is full. A binding whose own await costs more
    /// than that (Python's event loop) waits for such an emit in place.
    pub fn commits_on_engine(&self) -> bool {
        self.shared.store.commits_on_engine()
    }

    /// Emits on this namespace, durably: when this returns Ok the event is in the store and
    /// will be delivered (at least once, in order, with its idempotency key) even across
    /// reconnects and, with a store file, an app restart — or it was delivered already (written
    /// to a healthy connection before its commit would have started, so it needed no row).
    /// Waits only for that commit or delivery.
    ///
    /// The arguments are converted when this is called; nothing is checked or handed over
    /// until the future is first polled.
    pub fn emit(
        &self,
        event: &str,
        args: impl Into<Args>,
    ) -> impl Future<Output = Result<()>> + Send {
        let opts = EmitOptions::default();
        self.emit_in(event, args.into(), opts, None)
            .map(|r| r.map(drop))
    }

    /// Emits with a priority, TTL, coalescing key or confirmation; returns the entry's outbox
    /// id. Like [`Socket::emit`], converts the arguments when called.
    pub fn emit_with(
        &self,
        event: &str,
        args: impl Into<Args>,
        options: EmitOptions,
    ) -> impl Future<Output = Result<u64>> + Send {
        // Not an `async fn`: its future would hold the arguments twice over (the caller's
        // value, and what `emit_in` holds), some 900 bytes that a batch of emits in flight
        // (`FuturesUnordered`, `join_all`) allocates and copies per emit.
        self.emit_in(event, args.into(), options, None)
    }

    /// Emits durably and waits for the server's acknowledgement. Resolves exactly once: the
    /// answer, [`Error::AckTimeout`] (the entry stays in the outbox and is still delivered
    /// later), [`Error::Expired`], [`Error::Removed`], [`Error::Closed`], or why the outbox
    /// refused the entry ([`Error::OutboxFull`], [`Error::DiskFull`], …). `timeout` counts
    /// from when the emit is handed over, its commit included (microseconds, or an fsync).
    pub async fn emit_with_ack(
        &self,
        event: &str,
        args: impl Into<Args>,
        timeout: Duration,
    ) -> Result<AckReply> {
        self.emit_with_ack_options(event, args, EmitOptions::default(), timeout)
            .await
    }

    /// [`Socket::emit_with_ack`] with a priority or a TTL: an entry whose TTL passes before
    /// its acknowledgement ends the wait with [`Error::Expired`] at that moment, connected or
    /// not. (A coalescing key is refused: a replaced emit's caller would never hear back.)
    pub async fn emit_with_ack_options(
        &self,
        event: &str,
        args: impl Into<Args>,
        options: EmitOptions,
        timeout: Duration,
    ) -> Result<AckReply> {
        let (tx, rx) = oneshot::channel();
        // The answer implies the commit (the engine answers an entry only once it is
        // committed), so the commit's own reply is not awaited: waking the caller for it,
        // between writing the frame and the server's answer, costs a thread wake-up per round
        // trip for an app whose calls run in `block_on`. It is read only when the entry was
        // dropped unanswered, to say why (a full disk, say): the store replies before it
        // tells the engine, so the reason is there by then.
        let offered = self.offer(event, args.into(), options, Some(tx))?;
        let committed = self.hand_over(offered).await?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => match committed.await {
                Ok(Err(refused)) => Err(refused),
                _ => Err(Error::Closed),
            },
            Err(_) => Err(Error::AckTimeout(timeout)),
        }
    }

    /// Emits only if connected right now and there is room; otherwise drops it (returns
    /// `false`). Never stored: for telemetry where only the latest value matters and losing
    /// one is fine.
    pub fn emit_volatile(&self, event: &str, args: impl Into<Args>) -> Result<bool> {
        let args = args.into();
        self.shared.check_args(&args)?;
        if !self.shared.state.is(&State::Connected) {
            return Ok(false);
        }
        let (json, attachments) = args.into_parts();
        let data = EventData {
            namespace: self.namespace.clone(),
            name: Arc::from(event),
            args: RawJson::validated(json),
            attachments,
        };
        match self
            .shared
            .outgoing
            .try_send(Outgoing::Volatile(Box::new(data)))
        {
            Ok(()) => Ok(true),
            Err(Refused::Full(_)) => Ok(false),
            Err(Refused::Closed(_)) => Err(Error::Closed),
        }
    }

    /// Emits like [`Socket::emit_with`], committing the entry on the calling thread instead
    /// of handing it to the engine's task, and returns once it is committed. Offline, the
    /// engine sends it through the fetch its next link starts with; with a link, the entry
    /// is handed to the engine's queue, which writes it at once when nothing older waits.
    /// Either way the caller never waits for the engine's thread: for callers outside an
    /// async runtime whose hand-off to another thread and back costs more than the commit —
    /// the Python binding's `emit`, where a wait for the engine's wake-up costs more than
    /// the whole commit (some 40 µs a wake on this project's machine).
    ///
    /// Blocks for one commit, which needs no fsync (and for the store thread's or engine's
    /// work on this client's database, should it be under way). `None`, nothing done, when
    /// the store commits on its own thread (`Durability::Full` with a file), when an emit
    /// made earlier has not been numbered by the engine yet (this one must not overtake it),
    /// for an entry with a coalescing key, and, with a link, when the engine's queue is full
    /// or closed. The caller then uses [`Socket::emit_with`].
    pub fn emit_here(
        &self,
        event: &str,
        args: &Args,
        options: &EmitOptions,
    ) -> Option<Result<u64>> {
        if !self.shared.store.commits_on_engine() || options.coalesce_key.is_some() {
            return None;
        }
        if let Err(e) = self.check(event, args, options, false) {
            return Some(Err(e));
        }
        let turn = self.shared.seqs.turn()?;
        // Room on the queue first: the entry is handed over under the numbers' lock (in
        // number order), and a full queue must not hold the lock.
        let handover = if turn.linked() {
            Some(self.shared.outgoing.try_reserve()?)
        } else {
            None
        };
        let entry = self.entry(event, args.clone(), options.clone(), false);
        let (reply, mut rx) = oneshot::channel();
        turn.commit(|seq| {
            let (sending, copy) = match &handover {
                Some(_) => (Sending::Handed, Some(entry.clone())),
                // The engine hears of it through the fetch every new link starts with.
                None => (Sending::Fetched, None),
            };
            let append = Cmd::Append {
                entry,
                seq,
                notify: false,
                sending,
                reply,
            };
            if !self.shared.store.commit_here(append) {
                return Some(Err(Error::Closed));
            }
            let committed = rx.try_recv().unwrap_or(Err(Error::Closed));
            if let (Some(permit), Some(entry), Ok(seq)) = (handover, copy, &committed) {
                let entry = Box::new(entry);
                permit.send(Outgoing::Committed { seq: *seq, entry });
            }
            Some(committed)
        })
    }

    /// Refuses what cannot be emitted, before anything is stored.
    fn check(&self, event: &str, args: &Args, options: &EmitOptions, ack: bool) -> Result<()> {
        self.shared.check_args(args)?;
        if event.is_empty() {
            return Err(Error::InvalidArgs("event name is empty".into()));
        }
        if ack && options.coalesce_key.is_some() {
            return Err(Error::InvalidArgs(
                "a coalescing key cannot be combined with an acknowledgement".into(),
            ));
        }
        Ok(())
    }

    fn entry(&self, event: &str, args: Args, options: EmitOptions, ack: bool) -> NewEntry {
        let (json, attachments) = args.into_parts();
        NewEntry {
            lane: options.priority,
            namespace: self.namespace.clone(),
            event: Arc::from(event),
            args: json,
            attachments,
            want_ack: ack || options.confirm,
            ttl: options.ttl,
            coalesce_key: options.coalesce_key,
        }
    }

    async fn emit_in(
        &self,
        event: &str,
        args: Args,
        options: EmitOptions,
        waiter: Option<AckTx>,
    ) -> Result<u64> {
        let offered = self.offer(event, args, options, waiter)?;
        let committed = self.hand_over(offered).await?;
        committed.await.map_err(|_| Error::Closed)?
    }

    /// Hands an offered emit to the engine, waiting for room if the queue had none; the
    /// receiver hears its number once it is committed (or why it was not). Apart from
    /// building the entry ([`Socket::offer`], a plain function), so that an emit's future
    /// holds only this wait, not the entry's parts as well.
    async fn hand_over(&self, offered: Offered<'_>) -> Result<oneshot::Receiver<Result<u64>>> {
        match offered {
            Offered::Queued(rx) => Ok(rx),
            Offered::Full { emit, queued, rx } => {
                self.shared
                    .outgoing
                    .send(emit)
                    .await
                    .map_err(|_| Error::Closed)?;
                queued.sent();
                Ok(rx)
            }
        }
    }

    /// Checks and builds a durable emit and queues it for the engine if there is room.
    fn offer(
        &self,
        event: &str,
        args: Args,
        options: EmitOptions,
        waiter: Option<AckTx>,
    ) -> Result<Offered<'_>> {
        self.check(event, &args, &options, waiter.is_some())?;
        let entry = self.entry(event, args, options, waiter.is_some());
        let (reply, rx) = oneshot::channel();
        let emit = Outgoing::Durable {
            entry: Box::new(entry),
            waiter,
            reply,
        };
        // Counted until the engine numbers it, so that no emit a caller commits itself
        // meanwhile takes a lower number (see `Socket::emit_here`).
        let queued = self.shared.seqs.queue();
        // Queued without yielding while there is room: an awaited send counts against tokio's
        // cooperative budget, and once it runs out (128 operations in one task) the send
        // yields and the emits that app polls together (`join_all`, `FuturesUnordered`)
        // would reach the engine — and be numbered — out of the order they were made.
        match self.shared.outgoing.try_send(emit) {
            Ok(()) => {
                queued.sent();
                Ok(Offered::Queued(rx))
            }
            Err(Refused::Full(emit)) => Ok(Offered::Full { emit, queued, rx }),
            Err(Refused::Closed(_)) => Err(Error::Closed),
        }
    }

    /// Declares a subscription: `event` with `args` is sent on every connect (and now, if
    /// connected), its acknowledgement awaited before the outbox flushes. Persisted, so it
    /// survives an app restart. `unsubscribe` names the event that undoes it (e.g.
    /// `room:unsubscribe`), sent with the same arguments by [`Socket::unsubscribe`].
    /// Subscriptions carry JSON only: binary attachments are refused.
    pub async fn subscribe(
        &self,
        event: &str,
        args: impl Into<Args>,
        unsubscribe: Option<&str>,
    ) -> Result<()> {
        let args = args.into();
        args.check()?;
        args.refuse_binary("a subscription")?;
        if event.is_empty() {
            return Err(Error::InvalidArgs("event name is empty".into()));
        }
        let sub = StoredSubscription {
            namespace: self.namespace.to_string(),
            event: event.to_owned(),
            args: args.into_parts().0,
            unsubscribe: unsubscribe.map(str::to_owned),
        };
        let stored = sub.clone();
        self.shared
            .store
            .ask(|reply| Cmd::PutSubscription(stored, reply))
            .await?;
        self.shared.send(Command::AddSubscription(Box::new(sub)))
    }

    /// Removes a subscription made with [`Socket::subscribe`] and, if it named an unsubscribe
    /// event, emits that (durably) with the same arguments.
    pub async fn unsubscribe(&self, event: &str, args: impl Into<Args>) -> Result<()> {
        let args = args.into();
        args.check()?;
        args.refuse_binary("a subscription")?;
        let sub = StoredSubscription {
            namespace: self.namespace.to_string(),
            event: event.to_owned(),
            args: args.json().to_owned(),
            unsubscribe: None,
        };
        let stored = sub.clone();
        let removed = self
            .shared
            .store
            .ask(|reply| Cmd::RemoveSubscription(stored, reply))
            .await?;
        self.shared
            .send(Command::RemoveSubscription(Box::new(sub)))?;
        if let Some(undo) = removed {
            self.emit_in(&undo, args, EmitOptions::default(), None)
                .await?;
        }
        Ok(())
    }

    /// Inbound events named `event` on this namespace.
    pub fn events_named(&self, event: &str) -> EventStream {
        self.shared.listen(Interest::Named {
            namespace: Some(self.namespace.clone()),
            name: event.into(),
        })
    }

    /// Calls `handler` for each inbound event named `event` on this namespace, on a task of
    /// the client's runtime. Stops when the returned handle is cancelled or dropped.
    pub fn on(&self, event: &str, handler: impl FnMut(Event) + Send + 'static) -> ListenerHandle {
        ListenerHandle::spawn(&self.shared.runtime, self.events_named(event), handler)
    }

    /// Inbound events on this namespace named any of `names`, in arrival order.
    pub(super) fn events_any_of(&self, names: &[&str]) -> EventStream {
        self.shared.listen(Interest::AnyOf {
            namespace: self.namespace.clone(),
            names: names.iter().map(|n| (*n).to_owned()).collect(),
        })
    }

    /// Notices from now on (for the helpers built on this socket).
    pub(super) fn notices(&self) -> tokio::sync::broadcast::Receiver<crate::event::Notice> {
        self.shared.notices.subscribe()
    }

    pub(super) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.shared.runtime
    }

    pub(super) fn is_connected(&self) -> bool {
        self.shared.state.is(&State::Connected)
    }

    /// Leaves the namespace (and stops rejoining it on reconnect).
    pub fn leave(&self) -> Result<()> {
        self.shared.send(Command::Leave(self.namespace.clone()))
    }
}

/// A durable emit offered to the engine's queue.
enum Offered<'a> {
    /// Queued; the receiver hears the commit.
    Queued(oneshot::Receiver<Result<u64>>),
    /// The queue was full: `emit` waits for room, counted as queued meanwhile.
    Full {
        emit: Outgoing,
        queued: Queued<'a>,
        rx: oneshot::Receiver<Result<u64>>,
    },
}

/// The most the future of `emit` or `emit_with` may take, in bytes: an app with emits in
/// flight (`FuturesUnordered`, `join_all`, spawned tasks) allocates and moves one per emit.
/// (`emit_with_ack`'s holds a timer as well, and is not bound by it.)
#[cfg(test)]
const MAX_EMIT_FUTURE: usize = 512;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientConfig, client::Client};

    #[tokio::test]
    async fn an_emits_future_stays_small() {
        let client = Client::new(ClientConfig::new("http://127.0.0.1:9").unwrap()).unwrap();
        let value = serde_json::json!({"metric": "heart_rate", "value": 142});
        let emit = client.emit("metric", value.clone());
        let emit_with = client.emit_with("metric", value, EmitOptions::default());
        let sizes = [size_of_val(&emit), size_of_val(&emit_with)];
        assert!(
            sizes.iter().all(|s| *s <= MAX_EMIT_FUTURE),
            "{sizes:?} bytes"
        );
        client.close().await;
    }
}
