//! When to read the link again.
//!
//! A reader that keeps up with a busy stream reads every few frames, and each read has a
//! price beyond its own: the kernel may answer it with an ACK or a window update for the
//! sender to handle. Measured against the Node server's `socket.emit` path on this project's
//! machine (loopback), a reader that read every few events cost the server more CPU per
//! event than socket.io-client, whose slower JavaScript lets frames gather between reads;
//! reading about once a millisecond instead cut the TCP segments, both ways, by more than
//! half and the ACKs the server handled to a small fraction.
//!
//! So once reads keep finding a little waiting the moment the reader is free
//! ([`HOT_STREAK`] in a row within [`HOT_GAP`], each emptying what was ready and bringing less
//! than [`GATHER_MAX`] bytes, with nothing written in between), the reader lets the next
//! frames gather for the configured hold before it reads again. It reads the moment frames
//! arrive again as soon as
//! - a read comes later than [`HOT_GAP`] (the stream paused);
//! - a held read brings fewer than [`HELD_WORTH`] frames (so slow a stream that holding saves
//!   next to nothing);
//! - a read brings [`GATHER_MAX`] bytes or more, or stops at the batch limit with more ready
//!   (a sender that fast would soon find the receive window shut while the reader holds, and
//!   is read in large batches anyway);
//! - the client writes (what comes next may be the answer);
//! - the client awaits an answer: an acknowledgement, a subscription's, a namespace's
//!   CONNECT — no hold starts until it has come.
//!
//! So a quiet link, or one where the client asks and the server answers, is read the moment
//! frames arrive. Only a stream the server pushes while the client awaits nothing is held, at
//! most the hold plus the runtime's timer tick (tokio's: 1 ms), and read about once per hold;
//! an event that answers an emit made without an acknowledgement may wait that long.
//!
//! The thread itself may still be woken while frames gather: the socket stays registered
//! with the runtime, which notes each arrival. Keeping it asleep (`SO_RCVLOWAT`) measured no
//! faster here and needs a kernel that signals a lowered mark (Linux 4.18 or later).

use std::time::Duration;

use tokio::time::Instant;

/// A read this soon after the reader was free to read counts as finding frames waiting.
pub(crate) const HOT_GAP: Duration = Duration::from_micros(200);

/// Reads in a row that must find frames waiting before reads are held.
pub(crate) const HOT_STREAK: u8 = 4;

/// A held read that brings fewer frames than this ends holding: a stream that slow costs
/// few reads either way, and each of its frames would wait for the hold.
pub(crate) const HELD_WORTH: usize = 4;

/// A read that brings this many bytes ends holding, or does not count towards it: an eighth
/// of the receive buffer Linux starts a connection with (`tcp_rmem`'s default 128 KiB), so a
/// hold does not shut the receive window on the sender.
pub(crate) const GATHER_MAX: usize = 16 * 1024;

/// What one batch read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Batch {
    /// Frames read.
    pub(crate) frames: usize,
    /// Their payloads' bytes.
    pub(crate) bytes: usize,
    /// Whether it took everything that was ready (rather than stopping at the batch limit,
    /// a full listener or the link's end).
    pub(crate) emptied: bool,
}

/// The link's read pacing, and how often it read.
#[derive(Debug)]
pub(crate) struct Pacing {
    /// How long frames of a busy stream may gather; zero never holds.
    hold: Duration,
    /// When the reader was last free to read: the end of its last batch, or of its hold (as
    /// the timer that ended it saw it).
    free_since: Option<Instant>,
    /// Reads in a row that found frames waiting.
    streak: u8,
    /// Reads wait until then.
    until: Option<Instant>,
    /// The next read follows a hold.
    held: bool,
    /// Batches read from every link so far (each one or more frames, or the link's end).
    pub(crate) reads: u64,
    /// Of those, the ones that were the first after a hold.
    pub(crate) held_reads: u64,
}

impl Pacing {
    /// Pacing that lets a busy stream's frames gather for `hold` between reads.
    pub(crate) fn new(hold: Duration) -> Self {
        Self {
            hold,
            free_since: None,
            streak: 0,
            until: None,
            held: false,
            reads: 0,
            held_reads: 0,
        }
    }

    /// A link came up or went: nothing learned about the old one applies.
    pub(crate) fn link_changed(&mut self) {
        self.free_since = None;
        self.streak = 0;
        self.until = None;
        self.held = false;
    }

    /// Whether the link may be read now (no hold under way).
    pub(crate) fn may_read(&self) -> bool {
        self.until.is_none()
    }

    /// When the hold under way ends.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.until
    }

    /// Time passed: a hold that is over ends (true then). The reader is free from now, which
    /// may be well after the hold's end (a timer fires on its runtime's next tick: tokio's
    /// are 1 ms).
    pub(crate) fn on_timeout(&mut self, now: Instant) -> bool {
        let over = self.until.is_some_and(|t| now >= t);
        if over {
            self.until = None;
            self.free_since = Some(now);
            self.held = true;
        }
        over
    }

    /// Frames were written: what comes next may be their answer, which must not wait, so a
    /// hold under way ends and the streak starts again.
    pub(crate) fn wrote(&mut self) {
        self.streak = 0;
        self.held = false;
        if self.until.take().is_some() {
            self.free_since = None;
        }
    }

    /// A batch was read: woken at `woke`, done at `ended`, as `read` says. `awaiting`: the
    /// client awaits an answer, so no hold starts.
    pub(crate) fn read(&mut self, woke: Instant, ended: Instant, read: Batch, awaiting: bool) {
        debug_assert!(self.until.is_none(), "the link was read during a hold");
        self.reads += 1;
        let held = std::mem::take(&mut self.held);
        self.held_reads += u64::from(held);
        let waiting = self
            .free_since
            .is_some_and(|free| woke.saturating_duration_since(free) < HOT_GAP);
        let worth = !held || read.frames >= HELD_WORTH;
        let small = read.emptied && read.bytes < GATHER_MAX;
        self.streak = if waiting && worth && small {
            self.streak.saturating_add(1)
        } else {
            0
        };
        if self.streak >= HOT_STREAK && !awaiting && !self.hold.is_zero() {
            self.until = Some(ended + self.hold);
        }
        self.free_since = Some(ended);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = Duration::from_millis(1);

    /// A frame's size in these tests.
    const FRAME: usize = 120;

    /// Quick enough to count as finding frames waiting.
    const QUICK: Duration = Duration::from_micros(20);

    /// Reads `read` `gap` after the reader was free, the batch taking 5 µs, ending any hold
    /// first the way the driver does (its timer fires at the hold's end). Returns whether a
    /// hold followed.
    fn read_after(
        p: &mut Pacing,
        clock: &mut Instant,
        gap: Duration,
        read: Batch,
        awaiting: bool,
    ) -> bool {
        if let Some(t) = p.poll_timeout() {
            *clock = t;
            p.on_timeout(*clock);
            assert!(p.may_read());
        }
        *clock += gap;
        let woke = *clock;
        *clock += Duration::from_micros(5);
        p.read(woke, *clock, read, awaiting);
        !p.may_read()
    }

    /// [`read_after`] of `frames` frames, everything that was ready, no answer awaited.
    fn batch(p: &mut Pacing, clock: &mut Instant, gap: Duration, frames: usize) -> bool {
        read_after(p, clock, gap, emptied(frames), false)
    }

    /// `frames` frames read, everything that was ready.
    fn emptied(frames: usize) -> Batch {
        Batch {
            frames,
            bytes: frames * FRAME,
            emptied: true,
        }
    }

    /// With no streak (after a pause, a write, or a read that does not count): `HOT_STREAK -
    /// 1` quick reads of `read` leave the link to be read at once, the next is held.
    fn assert_held_after_streak(p: &mut Pacing, clock: &mut Instant, read: Batch) {
        for _ in 1..HOT_STREAK {
            assert!(!read_after(p, clock, QUICK, read, false));
        }
        assert!(read_after(p, clock, QUICK, read, false));
    }

    /// A pacing that holds now, after a busy stream's streak.
    fn holding(clock: &mut Instant) -> Pacing {
        let mut p = Pacing::new(HOLD);
        // The first read has nothing to compare with; then HOT_STREAK quick wake-ups.
        assert!(!batch(&mut p, clock, Duration::ZERO, 5));
        assert_held_after_streak(&mut p, clock, emptied(5));
        p
    }

    #[test]
    fn a_busy_stream_is_held_after_the_streak_and_for_the_hold() {
        let mut clock = Instant::now();
        let mut p = holding(&mut clock);
        assert_eq!(p.poll_timeout(), Some(clock + HOLD));
        // Not a microsecond early.
        p.on_timeout(clock + HOLD - Duration::from_micros(1));
        assert!(!p.may_read());
        // Frames waiting at the hold's end, many of them: held again.
        assert!(batch(&mut p, &mut clock, Duration::ZERO, 100));
        assert_eq!((p.reads, p.held_reads), (HOT_STREAK as u64 + 2, 1));
    }

    #[test]
    fn a_timer_that_fires_late_keeps_holding() {
        let mut clock = Instant::now();
        let mut p = holding(&mut clock);
        // tokio's timers fire on a 1 ms tick: the hold ends 900 µs after it was due, and the
        // frames waiting are read at once.
        clock = p.poll_timeout().unwrap() + Duration::from_micros(900);
        p.on_timeout(clock);
        assert!(p.may_read());
        p.read(clock, clock + Duration::from_micros(5), emptied(100), false);
        assert!(!p.may_read(), "held again");
    }

    #[test]
    fn a_quiet_link_is_never_held() {
        let mut p = Pacing::new(HOLD);
        let mut clock = Instant::now();
        for _ in 0..100 {
            assert!(!batch(&mut p, &mut clock, HOT_GAP, 1));
        }
        assert_eq!((p.reads, p.held_reads), (100, 0));
    }

    #[test]
    fn one_late_wake_up_breaks_the_streak() {
        let mut p = Pacing::new(HOLD);
        let mut clock = Instant::now();
        for _ in 0..HOT_STREAK {
            assert!(!batch(&mut p, &mut clock, QUICK, 5));
        }
        assert!(!batch(&mut p, &mut clock, Duration::from_millis(2), 5));
        assert_held_after_streak(&mut p, &mut clock, emptied(5));
    }

    #[test]
    fn a_held_read_that_brings_few_frames_ends_holding() {
        let mut clock = Instant::now();
        let mut p = holding(&mut clock);
        // A stream of about 2,000 events/s: a few frames gathered in the hold.
        assert!(!batch(&mut p, &mut clock, Duration::ZERO, HELD_WORTH - 1));
        // Quick wake-ups that follow no hold count again from the start.
        assert_held_after_streak(&mut p, &mut clock, emptied(1));
    }

    #[test]
    fn a_read_of_gather_max_ends_holding_and_does_not_count() {
        let mut clock = Instant::now();
        let mut p = holding(&mut clock);
        let many = GATHER_MAX.div_ceil(FRAME);
        // A sender faster than the hold should gather: read at once from now on.
        assert!(!batch(&mut p, &mut clock, Duration::ZERO, many));
        for _ in 0..2 * HOT_STREAK {
            assert!(!batch(&mut p, &mut clock, QUICK, many));
        }
        // One byte less counts.
        let under = Batch {
            bytes: GATHER_MAX - 1,
            ..emptied(1)
        };
        assert_held_after_streak(&mut p, &mut clock, under);
    }

    #[test]
    fn a_batch_cut_short_ends_holding_and_does_not_count() {
        let mut clock = Instant::now();
        let mut p = holding(&mut clock);
        // 512 tiny frames, more ready: read on at once.
        let cut = Batch {
            frames: 512,
            bytes: 512 * 10,
            emptied: false,
        };
        assert!(!read_after(&mut p, &mut clock, Duration::ZERO, cut, false));
        for _ in 0..2 * HOT_STREAK {
            assert!(!read_after(&mut p, &mut clock, QUICK, cut, false));
        }
    }

    #[test]
    fn no_hold_starts_while_an_answer_is_awaited() {
        let mut p = Pacing::new(HOLD);
        let mut clock = Instant::now();
        for _ in 0..4 * HOT_STREAK {
            assert!(!read_after(&mut p, &mut clock, QUICK, emptied(5), true));
        }
        // Answered: the stream, still busy, is held at once.
        assert!(read_after(&mut p, &mut clock, QUICK, emptied(5), false));
    }

    #[test]
    fn a_write_ends_the_hold_and_the_streak() {
        let mut clock = Instant::now();
        let mut p = holding(&mut clock);
        p.wrote();
        assert!(p.may_read());
        assert_eq!(p.poll_timeout(), None);
        // An answer and the client's next request, in turn, however quick: never held.
        for _ in 0..100 {
            assert!(!batch(&mut p, &mut clock, QUICK, 1));
            p.wrote();
        }
        // Nothing written for a streak: held again.
        assert_held_after_streak(&mut p, &mut clock, emptied(1));
    }

    #[test]
    fn on_timeout_says_whether_a_hold_ended() {
        let mut clock = Instant::now();
        let mut p = holding(&mut clock);
        let until = p.poll_timeout().unwrap();
        assert!(!p.on_timeout(until - Duration::from_nanos(1)));
        assert!(p.on_timeout(until));
        assert!(!p.on_timeout(until), "only once");
    }

    #[test]
    fn a_new_link_starts_from_nothing() {
        let mut clock = Instant::now();
        let mut p = holding(&mut clock);
        p.link_changed();
        assert!(p.may_read());
        assert_eq!(p.poll_timeout(), None);
        assert!(!batch(&mut p, &mut clock, Duration::ZERO, 5));
        assert_eq!(p.reads, HOT_STREAK as u64 + 2, "counts outlive links");
    }

    #[test]
    fn a_zero_hold_never_holds() {
        let mut p = Pacing::new(Duration::ZERO);
        let mut clock = Instant::now();
        for _ in 0..100 {
            assert!(!batch(&mut p, &mut clock, Duration::ZERO, 5));
        }
    }
}
