//! What a component's step produced, for the driver to carry out: frames to write, store
//! commands to post, notices to publish, credentials to ask for, and what becomes of the link.
//! Components only append here; they never perform I/O themselves.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::oneshot;

use crate::{
    args::AckReply,
    config::AuthReason,
    error::Error,
    event::{DisconnectReason, Notice},
    store::Cmd as StoreCmd,
    transport::Frame,
};

/// Where an emit's acknowledgement goes: the caller of `emit_with_ack` waits on the other end.
pub(crate) type AckTx = oneshot::Sender<Result<AckReply, Error>>;

/// A waiting caller's answer, sent by the driver once the step's store commands are posted: a
/// caller that heard its entry was acknowledged never finds it still counted in the outbox.
pub(crate) type WaiterAnswer = (AckTx, Result<AckReply, Error>);

/// Everything one step asks of the driver, in order per kind.
#[derive(Default)]
pub(crate) struct Actions {
    /// Frames to write on the link, then flush.
    pub(crate) frames: Vec<Frame>,
    /// Commands for the store thread.
    pub(crate) store: Vec<StoreCmd>,
    /// Notices for the app.
    pub(crate) notices: Vec<Notice>,
    /// Credentials to obtain, per namespace.
    pub(crate) credentials: Vec<(Arc<str>, Credentials)>,
    /// What to do with the link, when a step decided it.
    pub(crate) link: Option<LinkAction>,
    /// `connect()` callers to answer, once the state they will read is published.
    pub(crate) answers: Vec<(ConnectWaiter, Result<(), Error>)>,
    /// Callers waiting for an acknowledgement, answered once the store commands are posted.
    pub(crate) acks: Vec<WaiterAnswer>,
}

impl Actions {
    /// Whether nothing is asked for.
    pub(crate) fn is_empty(&self) -> bool {
        self.frames.is_empty()
            && self.store.is_empty()
            && self.notices.is_empty()
            && self.credentials.is_empty()
            && self.link.is_none()
            && self.answers.is_empty()
            && self.acks.is_empty()
    }

    /// Asks the driver to end the link (the first decision wins: it is the cause).
    pub(crate) fn end(&mut self, end: End) {
        if !matches!(self.link, Some(LinkAction::End(_) | LinkAction::Exit)) {
            self.link = Some(LinkAction::End(end));
        }
    }

    /// Publishes a notice.
    pub(crate) fn notify(&mut self, notice: Notice) {
        self.notices.push(notice);
    }
}

/// A `connect()` caller waiting for the outcome.
pub(crate) type ConnectWaiter = oneshot::Sender<Result<(), Error>>;

/// How a namespace's credentials are obtained.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Credentials {
    /// Ask the app's auth provider.
    Ask(AuthReason),
    /// Send these again (fresh ones were fetched for a link that died before the answer).
    Reuse(Option<Value>),
}

/// What the driver does with the link.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LinkAction {
    /// Open a new one now.
    Dial,
    /// End the current link (or the attempt under way).
    End(End),
    /// No link is up: stop the engine.
    Exit,
}

/// Why a link ends and what comes next.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct End {
    /// Why, as the app hears it.
    pub(crate) reason: DisconnectReason,
    /// What comes next.
    pub(crate) after: After,
}

impl End {
    /// An end followed by `after`.
    pub(crate) fn new(reason: DisconnectReason, after: After) -> Self {
        Self { reason, after }
    }

    /// A lost link: retry with backoff.
    pub(crate) fn lost(reason: DisconnectReason) -> Self {
        Self::new(reason, After::Reconnect)
    }

    /// The app ended the session on a live link: say goodbye properly.
    pub(crate) fn is_polite(&self) -> bool {
        self.reason == DisconnectReason::ClientDisconnect
            && matches!(self.after, After::Exit | After::Idle)
    }

    /// The transport is closed with a close frame rather than dropped, but the session is
    /// kept (no namespace is left), so the server may resume it.
    pub(crate) fn keeps_session(&self) -> bool {
        self.after == After::Background
    }
}

/// What to do when a link ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    /// Retry with backoff.
    Reconnect,
    /// Retry at once (fresh credentials after they expired).
    ReconnectNow,
    /// Stop; the app may call `connect()` again.
    Idle,
    /// Wait for the network to come back.
    Offline,
    /// Wait for the app to come back to the foreground. The transport is closed cleanly but
    /// no namespace is left: a server with connection state recovery keeps the session, to
    /// resume it (with what was missed) on the foreground.
    Background,
    /// The client is closing.
    Exit,
}

/// `spare`, emptied, kept for the next step if the last one, which used `used` of it, was
/// part of a stream and needed most of its room; otherwise let go.
///
/// A stream of emits makes steps of tens to hundreds of commands each; a vector that started
/// empty every step would grow by doubling each time, and glibc serves each growth past
/// 1 KiB by first merging every small block freed meanwhile (`malloc_consolidate`). A small
/// step keeps nothing, so an idle client (a hub holds thousands) holds no buffer: a heartbeat
/// lets go of what a burst left.
pub(crate) fn reuse<T>(mut spare: Vec<T>, used: usize) -> Vec<T> {
    if used < STREAM_STEP || spare.capacity() > used.saturating_mul(4) {
        return Vec::new();
    }
    spare.clear();
    spare
}

/// The fewest items a step must have used for its buffer to be kept.
const STREAM_STEP: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_is_kept_emptied_while_a_stream_needs_its_room_and_let_go_after() {
        let spare: Vec<u64> = (0..200).collect();
        let room = spare.capacity();
        let kept = reuse(spare, 100);
        assert!(kept.is_empty(), "kept emptied");
        assert_eq!(kept.capacity(), room, "kept for a step of half its room");
        let let_go = reuse(kept, room / 4 - 1);
        assert_eq!(
            let_go.capacity(),
            0,
            "let go after a step that needed under a quarter"
        );
        let small: Vec<u64> = Vec::with_capacity(STREAM_STEP);
        assert_eq!(
            reuse(small, STREAM_STEP - 1).capacity(),
            0,
            "a small step keeps nothing"
        );
    }
}
