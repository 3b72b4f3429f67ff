//! The messages the store thread takes ([`Cmd`]) and the news it sends the engine
//! ([`StoreEvent`]), with the rows they carry.

use std::sync::Arc;

use tokio::sync::oneshot;

use crate::{
    error::Error,
    outbox::{OutboxStats, PendingEmit, Priority},
};

/// `<client id>-<seq>`: unique per store, stable across resends and restarts.
pub(crate) fn idempotency_key(client_id: &str, seq: u64) -> String {
    // Sized once: `format!` would start from nothing and grow twice.
    let mut key = String::with_capacity(client_id.len() + 21);
    write_idempotency_key(&mut key, client_id, seq);
    key
}

/// [`idempotency_key`] into `buf`, which is cleared first: the engine writes every send's key
/// into one buffer it keeps rather than allocating a key per send.
pub(crate) fn write_idempotency_key(buf: &mut String, client_id: &str, seq: u64) {
    use std::fmt::Write;
    buf.clear();
    buf.push_str(client_id);
    let _ = write!(buf, "-{seq}");
}

/// Where the answer to a command goes.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// An emit on its way into the store.
#[derive(Debug, Clone)]
pub(crate) struct NewEntry {
    pub(crate) lane: Priority,
    pub(crate) namespace: Arc<str>,
    /// Shared with the frame the live path encodes, which would otherwise copy it.
    pub(crate) event: Arc<str>,
    pub(crate) args: String,
    pub(crate) attachments: Vec<Vec<u8>>,
    pub(crate) want_ack: bool,
    pub(crate) ttl: Option<std::time::Duration>,
    pub(crate) coalesce_key: Option<String>,
}

impl NewEntry {
    /// Payload bytes counted against the outbox limit.
    pub(crate) fn bytes(&self) -> u64 {
        (self.event.len() + self.args.len() + self.attachments.iter().map(Vec::len).sum::<usize>())
            as u64
    }
}

/// How an appended entry reaches the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sending {
    /// Through a fetch, after what is older in its lane: its commit answers a parked fetch.
    Fetched,
    /// Written by the engine while it commits (the live path): a parked fetch skips it.
    Live,
    /// Committed by its caller while the engine had a link and handed to the engine in
    /// number order ([`crate::Socket::emit_here`]). Its commit does not wake a parked fetch
    /// (the engine usually writes it live); when the engine may not yet, it wakes the fetch
    /// itself ([`Cmd::WakeFetch`]), which returns the entry in order.
    Handed,
}

/// An entry read back from the store.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredEntry {
    pub(crate) seq: u64,
    pub(crate) lane: Priority,
    pub(crate) namespace: String,
    pub(crate) event: String,
    pub(crate) args: String,
    pub(crate) attachments: Vec<Vec<u8>>,
    pub(crate) want_ack: bool,
    pub(crate) created_ms: i64,
    pub(crate) expires_ms: Option<i64>,
}

/// A persisted subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredSubscription {
    pub(crate) namespace: String,
    pub(crate) event: String,
    pub(crate) args: String,
    pub(crate) unsubscribe: Option<String>,
}

/// Work for the store thread.
pub(crate) enum Cmd {
    /// Stores an emit as `seq` (numbered by the engine from its reservation); `reply` hears
    /// once it is committed. With `notify`, the engine hears it too
    /// ([`StoreEvent::Appended`]): it wrote the entry already, or a caller waits for its
    /// acknowledgement.
    Append {
        /// Held inline, not boxed, though the command is large: under `Full` the store
        /// thread drops the command, and a box the engine's thread allocated costs glibc an
        /// arena lock to free there, which the two threads then fight over (boxing it
        /// measured 12 times the futex calls and a quarter less group-commit throughput).
        entry: NewEntry,
        seq: u64,
        notify: bool,
        /// How it reaches the socket, which decides what a parked fetch does about it.
        sending: Sending,
        reply: Reply<u64>,
    },
    /// Reserves the next block of sequence numbers ([`StoreEvent::Reserved`]).
    ReserveSeqs,
    /// The next entries of each lane after the engine's cursors, highest lane first, answered
    /// with [`StoreEvent::Fetched`] carrying `id`. With `park`, an empty answer waits for the
    /// next commit that adds entries (a newer fetch replaces a parked one).
    Fetch {
        id: u64,
        after: [u64; 3],
        limit: usize,
        park: bool,
    },
    /// Forgets the parked fetch: the engine lost its link and will ask afresh.
    Unpark,
    /// Answers the parked fetch if entries arrived for it that woke it not
    /// ([`Sending::Handed`] ones the engine could not write live).
    WakeFetch,
    /// Delivered: deleted.
    Delivered(Vec<u64>),
    /// Given up by the engine (too many sends, refused by the server): deleted.
    Failed(Vec<u64>),
    /// Entries callers committed ([`Sending::Handed`]) that the engine then wrote live:
    /// counted in [`OutboxStats::sent_live`] like its own.
    SentLive(u64),
    List {
        limit: usize,
        reply: Reply<Vec<PendingEmit>>,
    },
    Remove {
        id: u64,
        reply: Reply<bool>,
    },
    Clear(Reply<u64>),
    Stats(oneshot::Sender<OutboxStats>),
    PutSubscription(StoredSubscription, Reply<()>),
    /// Answers with the removed subscription's unsubscribe event, if it had one.
    RemoveSubscription(StoredSubscription, Reply<Option<String>>),
    Seen {
        ids: Vec<(Arc<str>, i64)>,
        window: usize,
        min_ms: i64,
    },
    /// A namespace's restorable session and the position reached in it (`None`: forget it).
    Recovery {
        namespace: String,
        session: Option<String>,
        position: Option<String>,
    },
    /// Answered once the outbox is empty (at once if it is).
    WhenEmpty(oneshot::Sender<()>),
    Close(oneshot::Sender<()>),
}

/// What the store tells the engine, in the order it happened.
///
/// Every client's engine keeps a channel of these, and a tokio channel allocates its first
/// block of 32 slots up front: the rare, large answers are boxed so a slot is 24 bytes, not
/// 56 (a kilobyte less per client of a hub), while the frequent ones stay inline.
#[derive(Debug, PartialEq)]
pub(crate) enum StoreEvent {
    /// The append of `seq` committed (`ok`) or was refused or rolled back.
    Appended { seq: u64, ok: bool },
    /// The answer to a fetch.
    Fetched(Box<Fetched>),
    /// A new block of sequence numbers, first and last.
    Reserved { first: u64, last: u64 },
    /// A reservation failed (its batch was rolled back); the engine may ask again.
    ReserveFailed,
    /// Entries that left the store undelivered.
    Gone(Box<Departed>),
}

// The point of the boxes above: a slot no larger than the frequent events need.
const _: () = assert!(size_of::<StoreEvent>() <= 24);

impl StoreEvent {
    /// The answer to fetch `id`.
    pub(crate) fn fetched(id: u64, entries: Vec<StoredEntry>, drained: bool, upto: u64) -> Self {
        StoreEvent::Fetched(Box::new(Fetched {
            id,
            entries,
            drained,
            upto,
        }))
    }

    /// `seqs` left the store undelivered because of `why`.
    pub(crate) fn gone(seqs: Vec<u64>, why: Gone) -> Self {
        StoreEvent::Gone(Box::new(Departed { seqs, why }))
    }
}

/// The answer to fetch `id`; `drained` when nothing more was waiting after these, and every
/// append up to sequence number `upto` had been handled when it was read.
#[derive(Debug, PartialEq)]
pub(crate) struct Fetched {
    pub(crate) id: u64,
    pub(crate) entries: Vec<StoredEntry>,
    pub(crate) drained: bool,
    pub(crate) upto: u64,
}

/// Entries that left the store undelivered, and why.
#[derive(Debug, PartialEq)]
pub(crate) struct Departed {
    pub(crate) seqs: Vec<u64>,
    pub(crate) why: Gone,
}

/// Why entries left the store undelivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gone {
    /// Their TTL passed.
    Expired,
    /// The `DropOldest` overflow policy made room for newer ones; what the outbox held then.
    Overflow { entries: u64, bytes: u64 },
    /// The app removed them (`Outbox::remove`, `Outbox::clear`).
    Removed,
}
