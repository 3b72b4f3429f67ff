//! The engine task: the one owner of the socket, the timers and the channels. It waits for the
//! next input — a command, an emit, a frame, the store's news, credentials, room at a slow
//! listener, a deadline — hands it to the [`Machine`] with the time, and carries out the
//! actions that produced: post store commands, publish notices and the state, ask for
//! credentials, write frames, open or end the link.

use std::{future::Future, panic::AssertUnwindSafe, pin::Pin, sync::Arc, time::Duration};

use futures_channel::mpsc::UnboundedReceiver;
use futures_util::{FutureExt, StreamExt, future::OptionFuture, stream::FuturesUnordered};
use serde_json::Value;
use tokio::{
    sync::{mpsc, oneshot},
    time::{sleep_until, timeout},
};
use tracing::{debug, info};

use super::{
    actions::{ConnectWaiter, Credentials, End, LinkAction, reuse},
    control::{Command, Outgoing},
    dial::dial,
    machine::Machine,
    pacing::Batch,
    queue::QueueRx,
};
use crate::{
    config::{AuthProvider, AuthRequest, ClientConfig},
    error::Error,
    event::{AckAnswer, DisconnectReason, Event},
    notices::Notices,
    protocol::{self, Wire},
    state_cell::Publisher,
    store::{Cmd as StoreCmd, Store, StoreEvent},
    time::Now,
    transport::{Frame, Link, Route, Transport, TransportError},
};

/// How many frames, emits or store events one wake-up handles before the loop looks at
/// everything else: large enough to amortise the select, small enough to keep heartbeats and
/// commands prompt.
const BATCH: usize = 512;

/// How long a polite close (DISCONNECT packets, a WebSocket close frame and the server's
/// answering one) may take before the socket is simply dropped. The answer proves the server
/// read everything written before it: a socket dropped earlier, with unread data, is reset,
/// and a reset can lose the last frames. Bounded so `close()` returns even on a dead link.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// How long a polite close may spend writing emits the app queued before closing.
const CLOSE_FLUSH: Duration = Duration::from_secs(1);

/// How long a polite close waits for the server to have read what was written before its
/// DISCONNECT packets (`Transport::settle`, one round trip). Past it the goodbyes go anyway:
/// a slow link gets the close it had before, at worst with the race settle avoids.
const CLOSE_SETTLE: Duration = Duration::from_millis(500);

/// Credentials arriving for a namespace.
type CredentialsFuture =
    Pin<Box<dyn Future<Output = (Arc<str>, Result<Option<Value>, String>)> + Send>>;

/// `connect()` callers and what to tell them.
type Answers = Vec<(ConnectWaiter, Result<(), Error>)>;

/// An attempt under way.
type DialFuture = Pin<Box<dyn Future<Output = Result<(Link, Wire), Error>> + Send>>;

/// What woke the loop.
enum Wake {
    Command(Option<Command>),
    Answer(Box<AckAnswer>),
    Store(StoreEvent),
    Credentials(Arc<str>, Result<Option<Value>, String>),
    Unblocked(Option<mpsc::OwnedPermit<Event>>),
    Frame(Option<Result<Frame, TransportError>>),
    /// Boxed: a link is large, and a dial completes rarely.
    Dialed(Box<Result<(Link, Wire), Error>>),
    Outgoing(Option<Outgoing>),
    Room,
    Timer,
}

/// Whether the loop goes on.
#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Exit,
}

/// The channels and resources the engine task owns.
pub(crate) struct Driver {
    pub(crate) machine: Machine,
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) route: Arc<Route>,
    pub(crate) options: Arc<protocol::Options>,
    /// Asked for each namespace's credentials.
    pub(crate) auth: Option<Arc<dyn AuthProvider>>,
    pub(crate) store: Store,
    pub(crate) commands: UnboundedReceiver<Command>,
    pub(crate) outgoing: QueueRx<Outgoing>,
    pub(crate) answers: UnboundedReceiver<Box<AckAnswer>>,
    pub(crate) store_events: UnboundedReceiver<StoreEvent>,
    pub(crate) state: Publisher,
    pub(crate) notices: Arc<Notices>,
}

/// A step's write of its frames, once started.
enum Written<'a> {
    /// Finished (or nothing to write).
    Done(Result<(), TransportError>),
    /// Waiting for room on the link.
    Pending(Pending<'a>),
}

/// A write that has to wait.
type Pending<'a> = Pin<Box<dyn Future<Output = Result<(), TransportError>> + Send + 'a>>;

/// The driver's I/O state while it runs.
struct Io {
    transport: Option<Link>,
    /// A polling session was refused as never this server's: the balancer has no sticky
    /// sessions, so `PollingThenUpgrade` dials WebSocket from now on.
    polling_refused: bool,
    dialing: Option<DialFuture>,
    /// Namespaces' credentials being asked for; made when first needed and let go once
    /// answered (an empty set still holds an allocation).
    credentials: Option<FuturesUnordered<CredentialsFuture>>,
    outgoing_open: bool,
    close_reply: Option<oneshot::Sender<()>>,
}

impl Driver {
    /// Runs until the client is closed or dropped.
    pub(crate) async fn run(mut self: Box<Self>) {
        let mut io = Io {
            transport: None,
            polling_refused: false,
            dialing: None,
            credentials: None,
            outgoing_open: true,
            close_reply: None,
        };
        while self.perform(&mut io).await == Flow::Continue {
            // A turn of tokio's cooperative budget per step: the inboxes (futures-channel's)
            // never run it down, so a steady stream of emits or commands would otherwise keep
            // this task on its worker, ahead of the tasks waiting there (the emitter it woke,
            // a hub's other clients).
            tokio::task::coop::consume_budget().await;
            let wake = self.next(&mut io).await;
            self.handle(&mut io, wake);
        }
        // Boxed, like the end of a link: a rare path's state would otherwise be part of every
        // idle client's task.
        Box::pin(self.finish(io)).await;
    }

    async fn next(&mut self, io: &mut Io) -> Wake {
        let timer = self.machine.poll_timeout();
        let blocked = self.machine.blocked_on();
        // Not while a listener is full (backpressure), nor while a busy stream's frames
        // gather (`pacing`): the hold's end is among the machine's timers.
        let readable = blocked.is_none() && io.transport.is_some() && self.machine.may_read();
        let has_room = self.store.has_room();
        let Io {
            transport,
            dialing,
            credentials,
            outgoing_open,
            ..
        } = io;
        tokio::select! {
            biased;
            c = self.commands.recv() => Wake::Command(c.ok()),
            Ok(a) = self.answers.recv() => Wake::Answer(a),
            Ok(e) = self.store_events.recv() => Wake::Store(e),
            Some((ns, r)) = async { credentials.as_mut()?.next().await }, if credentials.is_some() => {
                Wake::Credentials(ns, r)
            }
            // The rare branches' futures are boxed when enabled: the select holds every
            // branch's future, enabled or not, for as long as the client idles in it.
            Some(permit) = OptionFuture::from(
                blocked.map(|b| Box::pin(async { b.reserve_owned().await.ok() }))
            ) => {
                Wake::Unblocked(permit)
            }
            f = async { transport.as_mut()?.recv().await }, if readable => Wake::Frame(f),
            r = async {
                match dialing.as_mut() {
                    Some(d) => d.await,
                    None => std::future::pending().await,
                }
            }, if dialing.is_some() => Wake::Dialed(Box::new(r)),
            o = self.outgoing.recv(), if *outgoing_open && has_room => Wake::Outgoing(o),
            Some(()) = OptionFuture::from((!has_room).then(|| Box::pin(self.store.room()))) => {
                Wake::Room
            }
            () = async {
                match timer {
                    Some(t) => sleep_until(t).await,
                    None => std::future::pending().await,
                }
            }, if timer.is_some() => Wake::Timer,
        }
    }

    fn handle(&mut self, io: &mut Io, wake: Wake) {
        let now = Now::read();
        let m = &mut self.machine;
        match wake {
            Wake::Command(None) => m.command(now, Command::Shutdown),
            Wake::Command(Some(Command::Close(reply))) => {
                io.close_reply = Some(reply);
                m.command(now, Command::Shutdown);
            }
            Wake::Command(Some(c)) => m.command(now, c),
            Wake::Answer(a) => m.answer(*a),
            Wake::Store(e) => {
                m.store_event(now, e);
                for _ in 1..BATCH {
                    match self.store_events.try_recv() {
                        Ok(e) => m.store_event(now, e),
                        Err(_) => break,
                    }
                }
            }
            Wake::Credentials(ns, result) => {
                if io
                    .credentials
                    .as_ref()
                    .is_some_and(FuturesUnordered::is_empty)
                {
                    io.credentials = None;
                }
                m.credentials(&ns, result);
            }
            Wake::Unblocked(permit) => m.unblocked(permit),
            Wake::Frame(first) => self.frames(io, now, first),
            Wake::Dialed(result) => {
                io.dialing = None;
                match *result {
                    Ok((link, wire)) => {
                        debug!(heartbeat = ?wire.heartbeat(), "handshake");
                        io.transport = Some(link);
                        m.linked(now, wire);
                    }
                    Err(e) => m.dial_failed(now, &e),
                }
            }
            Wake::Outgoing(None) => io.outgoing_open = false,
            Wake::Outgoing(Some(o)) => {
                m.outgoing(now, o);
                for _ in 1..BATCH {
                    if !self.store.has_room() {
                        break;
                    }
                    match self.outgoing.try_recv() {
                        Some(o) => m.outgoing(now, o),
                        None => break,
                    }
                }
            }
            Wake::Room => {}
            Wake::Timer => m.timeout(now),
        }
        self.machine.settle(now);
    }

    /// Handles one frame and whatever else is already readable, up to a batch.
    fn frames(&mut self, io: &mut Io, now: Now, first: Option<Result<Frame, TransportError>>) {
        let m = &mut self.machine;
        m.frames_begin();
        let mut frame = first;
        let mut handled = 0;
        let mut bytes = 0;
        let mut emptied = false;
        loop {
            match frame {
                None => {
                    m.out.end(End::lost(DisconnectReason::TransportClose));
                    break;
                }
                Some(Err(e)) => {
                    io.polling_refused |= matches!(e, TransportError::UnknownSession);
                    m.out.end(end_of(e));
                    break;
                }
                Some(Ok(f)) => {
                    bytes += f.len();
                    m.frame(now, f)
                }
            }
            handled += 1;
            // Stop before taking another frame: one taken must be handled.
            if handled == BATCH || m.blocked_on().is_some() || m.out.link.is_some() {
                break;
            }
            // `recv` is cancel-safe, so polling it once and dropping a pending future is fine.
            match io.transport.as_mut().and_then(|t| t.recv().now_or_never()) {
                Some(next) => frame = next,
                None => {
                    emptied = true;
                    break;
                }
            }
        }
        // The clock read again: a batch of 512 frames takes long enough to matter to pacing,
        // which measures from when the reader is free again.
        let batch = Batch {
            frames: handled,
            bytes,
            emptied,
        };
        m.frames_done(now, batch, tokio::time::Instant::now());
    }

    /// Carries out what the machine asked for, until it asks for nothing more.
    async fn perform(&mut self, io: &mut Io) -> Flow {
        loop {
            let (link, answers) = match self.flush_out(io).await {
                Ok(done) => done,
                Err((e, answers)) => {
                    io.polling_refused |= matches!(e, TransportError::UnknownSession);
                    (Some(LinkAction::End(end_of(e))), answers)
                }
            };
            self.publish_state();
            for (waiter, result) in answers {
                let _ = waiter.send(result);
            }
            match link {
                None => {}
                Some(LinkAction::Dial) => {
                    let dialing = dial(
                        self.config.clone(),
                        self.route.clone(),
                        self.options.clone(),
                        io.polling_refused,
                    );
                    io.dialing = Some(Box::pin(dialing));
                }
                Some(LinkAction::End(end)) => Box::pin(self.end_link(io, end)).await,
                Some(LinkAction::Exit) => return Flow::Exit,
            }
            if self.machine.out.is_empty() {
                return Flow::Continue;
            }
        }
    }

    /// Posts store commands, publishes notices, asks for credentials and writes the frames
    /// the machine produced; returns its link decision (a write error instead) and the
    /// `connect()` callers to answer once the state is published.
    async fn flush_out(
        &mut self,
        io: &mut Io,
    ) -> Result<(Option<LinkAction>, Answers), (TransportError, Answers)> {
        let (written, link, answers) = self.step_out(io);
        let written = match written {
            Written::Done(result) => result,
            Written::Pending(w) => w.await.inspect(|()| self.machine.written(Now::read())),
        };
        match written {
            Ok(()) => Ok((link, answers)),
            Err(e) => Err((e, answers)),
        }
    }

    /// [`Driver::flush_out`] up to the write that has to wait, if one does. Apart, so that
    /// only that write, boxed, is held across the wait: the step's other state would
    /// otherwise be part of every idle client's task (some 500 bytes of its 1.3 KiB).
    fn step_out<'a>(&mut self, io: &'a mut Io) -> (Written<'a>, Option<LinkAction>, Answers) {
        let out = self.machine.take_actions();
        let used = out.store.len();
        // The outbox's writes, committed here once the frames are written: a live entry's
        // frame leaves first, and one delivered by then needs no row.
        let appends = self.store.post_all(out.store);
        for n in out.notices {
            self.notices.publish(n);
        }
        for (ns, how) in out.credentials {
            io.credentials
                .get_or_insert_with(FuturesUnordered::new)
                .push(self.credentials(ns, how));
        }
        let frames = out.frames;
        let mut write =
            io.transport
                .as_mut()
                .filter(|_| !frames.is_empty())
                .map(|t| -> Pending<'a> {
                    Box::pin(async move {
                        for f in frames {
                            t.feed(f).await?;
                        }
                        t.flush().await
                    })
                });
        // Usually written at once (room in the socket's buffer): then a live entry that asked
        // no ack is delivered before its commit would start. On a slow link (a full buffer, a
        // long-polling POST's round trip) the commits and their callers do not wait for it.
        let written = match write.as_mut().map(|w| w.as_mut().now_or_never()) {
            None => Written::Done(Ok(())),
            Some(Some(result)) => Written::Done(result),
            Some(None) => Written::Pending(write.take().expect("a write under way")),
        };
        let delivered = match (&written, write.is_some()) {
            (Written::Done(Ok(())), true) => {
                self.machine.written(Now::read());
                self.machine.delivered_before_commit(&appends.skippable())
            }
            _ => Vec::new(),
        };
        // Every number this step took is in the store then: callers may number theirs.
        let seqs = &self.machine.flush.seqs;
        // The step's command vector, kept for the next step's while a stream lasts (see
        // `reuse`), with whatever the machine asked for since (`written`'s deliveries).
        let mut kept = reuse(
            appends.commit_then(&delivered, || seqs.step_committed()),
            used,
        );
        kept.append(&mut self.machine.out.store);
        self.machine.out.store = kept;
        // Answered once the step's deletions are committed: a caller that heard its ack
        // finds the entry gone from the outbox.
        for (caller, answer) in out.acks {
            let _ = caller.send(answer);
        }
        (written, out.link, out.answers)
    }

    fn publish_state(&self) {
        let state = self.machine.state();
        if self.state.publish(state) {
            info!(state = ?state, "state");
        }
    }

    /// Ends the link (or abandons the attempt under way) as `end` says.
    async fn end_link(&mut self, io: &mut Io, end: End) {
        io.credentials = None;
        if io.transport.is_none() {
            io.dialing = None;
            self.machine.dial_abandoned(Now::read(), &end);
            return;
        }
        info!(reason = ?end.reason, "disconnected");
        if end.is_polite() {
            self.farewell(io).await;
        } else if end.keeps_session()
            && let Some(t) = io.transport.as_mut()
        {
            // A close frame, so the server sees a clean transport close (and keeps the
            // session for recovery), but no DISCONNECT packet, which would end the session.
            let _ = timeout(CLOSE_GRACE, t.close()).await;
        }
        io.transport = None;
        // Decisions made about this link are moot now that it is gone.
        self.machine.out.link = None;
        self.machine.link_ended(Now::read(), &end);
    }

    /// A polite close: what the app emitted just before closing goes out now (bounded by
    /// [`CLOSE_FLUSH`]; the rest stays stored), the server is given [`CLOSE_SETTLE`] to show
    /// it read it, then the namespaces are left and the link closed within [`CLOSE_GRACE`].
    async fn farewell(&mut self, io: &mut Io) {
        let _ = timeout(CLOSE_FLUSH, self.flush_remaining(io)).await;
        let frames = self.machine.goodbyes();
        let Some(t) = io.transport.as_mut() else {
            return;
        };
        if !frames.is_empty() {
            // The server has read the last events before it reads the goodbyes; read
            // together, it could drop the events (see `Transport::settle`), and those that
            // asked no ack count as delivered once flushed. A late or failed answer leaves
            // the goodbyes to go anyway.
            let _ = timeout(CLOSE_SETTLE, t.settle()).await;
        }
        let _ = timeout(CLOSE_GRACE, async {
            for f in frames {
                t.feed(f).await?;
            }
            t.flush().await?;
            t.close().await;
            Ok::<(), TransportError>(())
        })
        .await;
    }

    async fn flush_remaining(&mut self, io: &mut Io) -> Result<(), TransportError> {
        let now = Now::read();
        while let Some(o) = self.outgoing.try_recv() {
            self.machine.outgoing(now, o);
        }
        loop {
            let Some(id) = self.machine.fetch_remaining() else {
                return Ok(());
            };
            self.flush_quietly(io).await?;
            let found = loop {
                match self.store_events.recv().await {
                    Ok(StoreEvent::Fetched(f)) if f.id == id => {
                        let any = !f.entries.is_empty();
                        self.machine
                            .store_event(Now::read(), StoreEvent::Fetched(f));
                        break any;
                    }
                    Ok(e) => self.machine.store_event(Now::read(), e),
                    Err(_) => return Ok(()),
                }
            };
            self.machine.out.link = None;
            self.flush_quietly(io).await?;
            if !found {
                return Ok(());
            }
        }
    }

    /// [`Driver::flush_out`] during a polite close: the link decision is moot, the callers
    /// are answered at once.
    async fn flush_quietly(&mut self, io: &mut Io) -> Result<(), TransportError> {
        let (answers, result) = match self.flush_out(io).await {
            Ok((_, answers)) => (answers, Ok(())),
            Err((e, answers)) => (answers, Err(e)),
        };
        self.publish_state();
        for (waiter, result) in answers {
            let _ = waiter.send(result);
        }
        result
    }

    /// The future that obtains a namespace's credentials, bounded by the connect timeout.
    fn credentials(&self, ns: Arc<str>, how: Credentials) -> CredentialsFuture {
        let reason = match how {
            Credentials::Reuse(creds) => return Box::pin(async move { (ns, Ok(creds)) }),
            Credentials::Ask(reason) => reason,
        };
        let provider = self.auth.clone();
        let request = AuthRequest {
            namespace: ns.to_string(),
            reason,
        };
        let limit = self.config.connect_timeout;
        Box::pin(async move {
            let result = match provider {
                None => Ok(None),
                // A provider that panics fails the attempt; it must not take the engine down.
                Some(p) => {
                    let asked = AssertUnwindSafe(async move { p.auth(request).await });
                    match timeout(limit, asked.catch_unwind()).await {
                        Ok(Ok(r)) => r,
                        Ok(Err(_)) => Err("auth provider panicked".to_owned()),
                        Err(_) => Err(format!("auth provider did not answer within {limit:?}")),
                    }
                }
            };
            (ns, result)
        })
    }

    async fn finish(mut self: Box<Self>, io: Io) {
        self.machine.closed();
        let out = self.machine.take_actions();
        let seqs = &self.machine.flush.seqs;
        self.store
            .post_all(out.store)
            .commit_then(&[], || seqs.step_committed());
        for (caller, answer) in out.acks {
            let _ = caller.send(answer);
        }
        self.publish_state();
        for (waiter, result) in out.answers {
            let _ = waiter.send(result);
        }
        self.outgoing.close();
        // Mark the store closed cleanly before saying the client is closed.
        let (tx, rx) = oneshot::channel();
        self.store.post(StoreCmd::Close(tx));
        let _ = rx.await;
        if let Some(reply) = io.close_reply {
            let _ = reply.send(());
        }
        debug!("engine stopped");
    }
}

/// Why a transport failure ends the link.
fn end_of(e: TransportError) -> End {
    match e {
        TransportError::Closed => End::lost(DisconnectReason::TransportClose),
        TransportError::TooLarge { .. } => End::lost(DisconnectReason::ParseError(e.to_string())),
        TransportError::Io(m) => End::lost(DisconnectReason::TransportError(m)),
        e @ (TransportError::UpgradeRefused { .. }
        | TransportError::Proxy { .. }
        | TransportError::UnknownSession) => {
            End::lost(DisconnectReason::TransportError(e.to_string()))
        }
    }
}
