//! The outbox's sequence numbers, which order every entry of a client: taken by the engine
//! for the emits it is sent, and by callers that commit their own emit on their thread
//! ([`crate::Socket::emit_here`]).
//!
//! Numbers come from blocks the store reserved (`schema::SEQ_BLOCK`, recorded as
//! `seq_reserved` before any number of a block is used). A caller may number and commit an
//! entry itself only while no emit it could overtake waits in the engine's queue unnumbered
//! (`queued`) and every number the engine took is committed (`numbered`: the engine commits
//! a step's appends at the end of the step), and it holds the lock through its commit (a
//! [`Turn`]). So the store's entries are always every number up to the highest, less those
//! refused: a fetch's `upto` vouches for all below it. What the caller does with the entry
//! then depends on the engine's link (`linked`):
//!
//! - **Without a link**, the entry stays in the store for the fetch every link starts with.
//!   The engine, taking its next number, learns of the entries callers committed since it
//!   last looked (`by_callers`): an entry of its own may not go out live ahead of them.
//! - **With a link**, the caller hands the entry to the engine on its emit queue, still under
//!   the lock, so the engine receives callers' entries in number order and after every emit
//!   numbered before them. The engine writes it live, or, when it may not (something older
//!   waits), fetches it; a handed entry a fetch already brought is recognised by its
//!   number.
//!
//! Plain state behind a lock, no I/O: [`super::flush`] takes its numbers here, the client's
//! sockets count what they queue and take numbers for what they commit.

use std::sync::{
    Mutex, MutexGuard, PoisonError,
    atomic::{AtomicBool, Ordering},
};

use crate::store::SEQ_BLOCK;

/// A client's sequence numbers (see the module's comment).
#[derive(Debug)]
pub(crate) struct Seqs {
    state: Mutex<State>,
    /// The engine numbered entries in its current step, not committed yet. Outside the lock:
    /// it is cleared from within the store's commit, under the store's lock, which a caller
    /// takes while it holds this one (set and read under this lock, so no number is taken
    /// between a caller's check and its commit).
    numbered: AtomicBool,
}

#[derive(Debug)]
struct State {
    /// The next number to give and the last of the block it comes from.
    next: u64,
    last: u64,
    /// Whether the file records the block in use (not when the store opened on a full disk).
    recorded: bool,
    /// A block reserved for when this one runs out, and whether the engine asked for one.
    spare: Option<(u64, u64)>,
    reserving: bool,
    /// Durable emits sent to the engine and not numbered yet.
    queued: usize,
    /// Whether the engine has a link (from before its first fetch on it until it is lost).
    linked: bool,
    /// The highest number a caller committed itself.
    by_callers: u64,
}

/// What the engine's next number brings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Taken {
    /// The number, `None` when this client has used its store's numbers.
    pub(crate) seq: Option<u64>,
    /// Whether the engine should ask the store for a block now.
    pub(crate) reserve: bool,
    /// Whether the block in use is recorded (the live path stays closed until it is).
    pub(crate) recorded: bool,
    /// The highest number callers committed themselves.
    pub(crate) by_callers: u64,
}

impl Seqs {
    /// `block`: the numbers the store reserved at open; `recorded`: whether the file records
    /// them.
    pub(crate) fn new(block: (u64, u64), recorded: bool) -> Self {
        Self {
            state: Mutex::new(State {
                next: block.0,
                last: block.1,
                recorded,
                spare: None,
                reserving: false,
                queued: 0,
                linked: false,
                by_callers: 0,
            }),
            numbered: AtomicBool::new(false),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing here panics with the lock held; the state stays consistent regardless.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A durable emit is on its way to the engine: callers hold back until it is numbered.
    /// Counted until [`Queued::sent`]; dropped before (the engine closed, the emit was
    /// cancelled while it waited for room) it is uncounted.
    pub(crate) fn queue(&self) -> Queued<'_> {
        self.state().queued += 1;
        Queued(Some(self))
    }

    /// Whether the engine has a link: set before its first fetch on a link, cleared once the
    /// link is lost (a fetch answered after that is stale, and the next link starts over).
    pub(crate) fn set_linked(&self, linked: bool) {
        self.state().linked = linked;
    }

    /// The engine's next number, for an emit that was queued; asks for the next block well
    /// before this one runs out, and, on a block not recorded, until one is.
    pub(crate) fn take(&self) -> Taken {
        let mut s = self.state();
        s.queued = s.queued.saturating_sub(1);
        let mut reserve = false;
        if !s.recorded && !s.reserving {
            s.reserving = true;
            reserve = true;
        }
        let seq = s.take_next();
        if seq.is_some() {
            self.numbered.store(true, Ordering::Release);
        }
        if let Some(seq) = seq
            && s.running_low(seq)
        {
            s.reserving = true;
            reserve = true;
        }
        Taken {
            seq,
            reserve,
            recorded: s.recorded,
            by_callers: s.by_callers,
        }
    }

    /// The engine's step ended with its appends committed (or, under `Durability::Full`,
    /// queued to the store thread, where callers commit nothing): callers may number again.
    /// (A step that panics part-way never says so: callers then leave every emit to the
    /// engine, the safe way round.)
    pub(crate) fn step_committed(&self) {
        self.numbered.store(false, Ordering::Release);
    }

    /// The lock, for a caller that numbers and commits its own emit — unless an emit queued
    /// earlier has no number yet (it must get the lower one), one the engine numbered is not
    /// committed yet (a fetch must never find a higher number without it), the block is not
    /// recorded, or the engine should reserve the next one first: then `None`, and the caller
    /// sends its emit to the engine instead.
    pub(crate) fn turn(&self) -> Option<Turn<'_>> {
        let s = self.state();
        let low = s.running_low(s.next);
        let numbered = self.numbered.load(Ordering::Acquire);
        if s.queued > 0 || numbered || !s.recorded || low || s.next > s.last {
            return None;
        }
        Some(Turn(s))
    }

    /// The store reserved the next block.
    pub(crate) fn reserved(&self, first: u64, last: u64) {
        let mut s = self.state();
        s.reserving = false;
        if s.recorded {
            s.spare = Some((first, last));
        } else {
            // Replaces the unrecorded block at once. Numbers taken from it since the request
            // may lie inside the new block (it starts after what was recorded when the store
            // reserved it; an append whose commit was still to come is not): carry on above
            // them.
            s.next = s.next.max(first);
            s.last = last;
            s.recorded = true;
        }
    }

    /// A reservation failed (disk full, say): the next emit that needs one asks again.
    pub(crate) fn reserve_failed(&self) {
        self.state().reserving = false;
    }

    /// Sets the next number (tests of the engine's components).
    #[cfg(test)]
    pub(crate) fn set_next(&self, seq: u64) {
        self.state().next = seq;
    }
}

/// A caller's turn to number and commit an emit, holding the numbers' lock (see
/// [`Seqs::turn`]).
#[must_use = "dropped, the turn is given up"]
pub(crate) struct Turn<'a>(MutexGuard<'a, State>);

impl Turn<'_> {
    /// Whether the engine has a link: the caller hands its entry over within
    /// [`Turn::commit`]; otherwise it leaves it in the store for a fetch.
    pub(crate) fn linked(&self) -> bool {
        self.0.linked
    }

    /// Runs `commit` with the next number, the lock still held. Holding it through the
    /// commit means that by the time the engine takes a higher number and sees this one in
    /// `by_callers`, the entry is in the store for a fetch to find; and, with a link, that
    /// entries reach the engine's queue in number order.
    pub(crate) fn commit<T>(mut self, commit: impl FnOnce(u64) -> T) -> T {
        let seq = self.0.next;
        self.0.next += 1;
        if !self.0.linked {
            self.0.by_callers = seq;
        }
        commit(seq)
    }
}

/// A durable emit counted as queued to the engine (see [`Seqs::queue`]).
#[must_use = "dropped, the emit is uncounted at once"]
pub(crate) struct Queued<'a>(Option<&'a Seqs>);

impl Queued<'_> {
    /// The emit is in the engine's queue: the engine uncounts it when it numbers it.
    pub(crate) fn sent(mut self) {
        self.0 = None;
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if let Some(seqs) = self.0 {
            let mut s = seqs.state();
            s.queued = s.queued.saturating_sub(1);
        }
    }
}

impl State {
    /// Whether, with `seq` taken, less than half the block is left and no next one is
    /// reserved or asked for: time for the engine to ask.
    fn running_low(&self, seq: u64) -> bool {
        self.spare.is_none() && !self.reserving && self.last.saturating_sub(seq) < SEQ_BLOCK / 2
    }

    fn take_next(&mut self) -> Option<u64> {
        if self.next > self.last {
            (self.next, self.last) = self.spare.take()?;
        }
        let seq = self.next;
        self.next += 1;
        Some(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_numbers_its_own_entry_only_when_no_queued_emit_waits_for_a_lower_number() {
        let seqs = Seqs::new((1, 1 << 40), true);
        assert_eq!(seqs.turn().map(|t| t.commit(|seq| seq)), Some(1));
        seqs.queue().sent();
        // The queued emit was made first: it gets 2, so the caller goes through the engine.
        assert_eq!(seqs.turn().map(|t| t.commit(|seq| seq)), None);
        let taken = seqs.take();
        assert_eq!(taken.seq, Some(2));
        assert_eq!(
            taken.by_callers, 1,
            "the engine learns of the caller's entry"
        );
        assert_eq!(
            seqs.turn().map(|t| t.commit(|seq| seq)),
            None,
            "2 is not committed yet: a fetch would find 3 without it"
        );
        seqs.step_committed();
        assert_eq!(seqs.turn().map(|t| t.commit(|seq| seq)), Some(3));
        assert_eq!(seqs.take().by_callers, 3);
    }

    #[test]
    fn an_entry_a_caller_hands_to_the_linked_engine_is_not_one_it_must_fetch() {
        let seqs = Seqs::new((1, 1 << 40), true);
        seqs.set_linked(true);
        let turn = seqs.turn().unwrap();
        assert!(turn.linked());
        assert_eq!(turn.commit(|seq| seq), 1);
        assert_eq!(
            seqs.take().by_callers,
            0,
            "handed over, not left in the store"
        );
        seqs.step_committed();
        seqs.set_linked(false);
        let turn = seqs.turn().unwrap();
        assert!(!turn.linked());
        assert_eq!(turn.commit(|seq| seq), 3);
        assert_eq!(seqs.take().by_callers, 3, "left for the next link's fetch");
    }

    #[test]
    fn an_emit_dropped_before_it_reached_the_engine_holds_no_caller_back() {
        let seqs = Seqs::new((1, 1 << 40), true);
        let queued = seqs.queue();
        assert_eq!(seqs.turn().map(|t| t.commit(|seq| seq)), None);
        drop(queued);
        assert_eq!(seqs.turn().map(|t| t.commit(|seq| seq)), Some(1));
    }

    #[test]
    fn callers_leave_an_unrecorded_or_running_out_block_to_the_engine() {
        let unrecorded = Seqs::new((1, 1 << 40), false);
        assert_eq!(unrecorded.turn().map(|t| t.commit(|seq| seq)), None);
        let taken = unrecorded.take();
        assert!(taken.reserve && !taken.recorded);
        unrecorded.step_committed();
        unrecorded.reserved(10, 1 << 40);
        assert_eq!(unrecorded.turn().map(|t| t.commit(|seq| seq)), Some(10));

        // Less than half a block left and none asked for: the engine's next number asks.
        let low = Seqs::new((1, SEQ_BLOCK / 4), true);
        assert_eq!(low.turn().map(|t| t.commit(|seq| seq)), None);
        assert!(low.take().reserve);
        low.step_committed();
        assert_eq!(
            low.turn().map(|t| t.commit(|seq| seq)),
            Some(2),
            "asked: callers go on"
        );
    }
}
