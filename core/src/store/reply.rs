//! Answers that wait for their batch's commit: a caller must never hear "stored" for
//! something a rollback undid.

use futures_channel::mpsc::UnboundedSender;

use super::command::{Gone, Reply, StoreEvent, StoredEntry};
use crate::{error::Error, outbox::PendingEmit};

/// A reply that is sent only once the batch it belongs to has committed.
pub(super) enum Deferred {
    /// The append's reply, whether the engine is told, the entry's number.
    Appended(Reply<u64>, bool, u64),
    /// A fetch's id, what it found, whether nothing more was waiting, the appends handled.
    Fetched(u64, Vec<StoredEntry>, bool, u64),
    /// A reserved block of sequence numbers.
    Reserved(u64, u64),
    Gone(Vec<u64>, Gone),
    Listed(Reply<Vec<PendingEmit>>, Vec<PendingEmit>),
    Removed(Reply<bool>, bool),
    Cleared(Reply<u64>, u64),
    Done(Reply<()>),
    Unsubscribed(Reply<Option<String>>, Option<String>),
}

impl Deferred {
    /// The batch committed: answers the caller (and the engine) with the result.
    pub(super) fn ok(self, events: &UnboundedSender<StoreEvent>) {
        let tell = |e| {
            let _ = events.unbounded_send(e);
        };
        match self {
            Deferred::Appended(r, notify, seq) => {
                if notify {
                    tell(StoreEvent::Appended { seq, ok: true });
                }
                drop(r.send(Ok(seq)));
            }
            Deferred::Fetched(id, entries, drained, upto) => {
                tell(StoreEvent::fetched(id, entries, drained, upto))
            }
            Deferred::Reserved(first, last) => tell(StoreEvent::Reserved { first, last }),
            Deferred::Gone(seqs, why) => {
                if !seqs.is_empty() {
                    tell(StoreEvent::gone(seqs, why));
                }
            }
            Deferred::Listed(r, v) => drop(r.send(Ok(v))),
            Deferred::Removed(r, b) => drop(r.send(Ok(b))),
            Deferred::Cleared(r, n) => drop(r.send(Ok(n))),
            Deferred::Done(r) => drop(r.send(Ok(()))),
            Deferred::Unsubscribed(r, u) => drop(r.send(Ok(u))),
        }
    }

    /// The batch rolled back: every caller hears `err`.
    pub(super) fn err(self, err: &Error, events: &UnboundedSender<StoreEvent>) {
        let tell = |e| {
            let _ = events.unbounded_send(e);
        };
        match self {
            Deferred::Appended(r, notify, seq) => {
                if notify {
                    tell(StoreEvent::Appended { seq, ok: false });
                }
                drop(r.send(Err(err.clone())));
            }
            // Rows read inside a rolled-back batch may not exist; the engine asks again.
            Deferred::Fetched(id, ..) => tell(StoreEvent::fetched(id, Vec::new(), false, 0)),
            // The engine asks again.
            Deferred::Reserved(..) => tell(StoreEvent::ReserveFailed),
            // Nothing was deleted after all.
            Deferred::Gone(..) => {}
            Deferred::Listed(r, _) => drop(r.send(Err(err.clone()))),
            Deferred::Removed(r, _) => drop(r.send(Err(err.clone()))),
            Deferred::Cleared(r, _) => drop(r.send(Err(err.clone()))),
            Deferred::Done(r) => drop(r.send(Err(err.clone()))),
            Deferred::Unsubscribed(r, _) => drop(r.send(Err(err.clone()))),
        }
    }
}
