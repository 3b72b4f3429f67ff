//! The rows of a store without a file, kept in the process's memory.
//!
//! A store in memory promises nothing across a restart: its rows end with the process. SQLite
//! bought it nothing but cost — an in-memory database is some 27 KiB even idle (its b-trees'
//! pages, page cache and parsed schema), most of a hub device's memory, and every emit paid
//! for SQL. Here each idle client's rows cost a few empty collections.
//!
//! Only what is read back while the client runs is kept: the outbox, its sequence numbers and
//! the subscriptions (removing one answers with its unsubscribe event). Seen ids and recovery
//! sessions are written to a store only so a restart can read them ([`super::Snapshot`]);
//! a store in memory has no restart, so they are not kept.
//!
//! Each operation matches the SQL statement of the same name in [`super::db`] — the same rows
//! chosen, in the same order — and none fails but a reservation once every number is used
//! (after 2⁶² emits), which changes nothing and is refused alone: a batch on this store never
//! needs the rollback it has no way to make.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    ops::Bound,
};

use super::{
    command::{NewEntry, StoredEntry, StoredSubscription},
    schema::{SEQ_BLOCK, Snapshot},
};
use crate::outbox::Priority;

/// An outbox entry as kept.
#[derive(Debug)]
struct Row {
    entry: StoredEntry,
    coalesce_key: Option<String>,
    bytes: u64,
}

/// One client's rows in memory.
#[derive(Debug, Default)]
pub(super) struct Memory {
    /// Entries by lane (`Priority as usize`), each lane in sequence order.
    lanes: [BTreeMap<u64, Row>; 3],
    /// Entries with a TTL, by expiry: what `expire` deletes first.
    expiry: BTreeSet<(i64, u64)>,
    /// `(namespace, coalescing key)` → the entry holding it (one per pair, like the file's
    /// unique index).
    coalesce: HashMap<(String, String), u64>,
    /// In the order they were first put.
    subscriptions: Vec<StoredSubscription>,
    /// The last sequence number reserved.
    reserved: u64,
    count: u64,
    bytes: u64,
}

impl Memory {
    /// An empty store and what the engine starts from: a fresh client id and the first
    /// block of sequence numbers.
    pub(super) fn open() -> (Self, Snapshot) {
        let memory = Memory {
            reserved: SEQ_BLOCK,
            ..Memory::default()
        };
        let snapshot = Snapshot {
            client_id: format!("{:016x}", fastrand::u64(..)),
            seqs: (1, SEQ_BLOCK),
            seqs_recorded: true,
            ..Snapshot::default()
        };
        (memory, snapshot)
    }

    /// The outbox's entry count and payload bytes.
    pub(super) fn totals(&self) -> (u64, u64) {
        (self.count, self.bytes)
    }

    /// Inserts an entry as `seq`, first removing an entry with the same coalescing key.
    /// Returns the entry it replaced (`seq`, `bytes`), if any.
    pub(super) fn insert(&mut self, seq: u64, e: &NewEntry, now_ms: i64) -> Option<(u64, u64)> {
        let coalesce = e
            .coalesce_key
            .clone()
            .map(|key| (e.namespace.to_string(), key));
        let replaced = coalesce.as_ref().and_then(|k| {
            let old = *self.coalesce.get(k)?;
            self.remove(old).map(|bytes| (old, bytes))
        });
        // The engine numbers each entry once (`engine/seqs.rs`); were a number ever appended
        // twice, the newer row replaces the older and is reported as replacing it, so the
        // worker's counts stay right.
        debug_assert!(self.lane_of(seq).is_none(), "entry {seq} appended twice");
        let replaced = replaced.or_else(|| self.remove(seq).map(|bytes| (seq, bytes)));
        let expires_ms = e.ttl.map(|t| now_ms.saturating_add(t.as_millis() as i64));
        if let Some(at) = expires_ms {
            self.expiry.insert((at, seq));
        }
        if let Some(k) = coalesce {
            self.coalesce.insert(k, seq);
        }
        let bytes = e.bytes();
        let row = Row {
            entry: StoredEntry {
                seq,
                lane: e.lane,
                namespace: e.namespace.to_string(),
                event: e.event.to_string(),
                args: e.args.clone(),
                attachments: e.attachments.clone(),
                want_ack: e.want_ack,
                created_ms: now_ms,
                expires_ms,
            },
            coalesce_key: e.coalesce_key.clone(),
            bytes,
        };
        self.lanes[e.lane as usize].insert(seq, row);
        self.count += 1;
        self.bytes += bytes;
        replaced
    }

    /// Deletes delivered (or dropped) entries; returns how many rows and bytes went.
    pub(super) fn delete(&mut self, seqs: &[u64]) -> (u64, u64) {
        seqs.iter()
            .filter_map(|s| self.remove(*s))
            .fold((0, 0), |(n, b), bytes| (n + 1, b + bytes))
    }

    /// Deletes entries whose TTL has passed (`expires_ms <= now_ms`); returns each one's
    /// `(seq, bytes)`, soonest expiry first.
    pub(super) fn expire(&mut self, now_ms: i64) -> Vec<(u64, u64)> {
        let due: Vec<u64> = self
            .expiry
            .range(..=(now_ms, u64::MAX))
            .map(|(_, seq)| *seq)
            .collect();
        due.into_iter()
            .filter_map(|seq| self.remove(seq).map(|bytes| (seq, bytes)))
            .collect()
    }

    /// The oldest entry of the lowest lane: what `DropOldest` gives up first.
    pub(super) fn oldest_lowest(&self) -> Option<(u64, u64)> {
        self.lanes
            .iter()
            .find_map(|lane| lane.first_key_value())
            .map(|(seq, row)| (*seq, row.bytes))
    }

    /// Up to `limit` entries of `lane` after `after`, in order, skipping expired ones.
    pub(super) fn fetch(
        &self,
        lane: Priority,
        after: u64,
        limit: usize,
        now_ms: i64,
    ) -> Vec<StoredEntry> {
        self.lanes[lane as usize]
            .range((Bound::Excluded(after), Bound::Unbounded))
            .map(|(_, row)| &row.entry)
            .filter(|e| e.expires_ms.is_none_or(|at| at > now_ms))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Up to `limit` entries in send order (highest lane first, then age).
    pub(super) fn list(&self, limit: usize) -> Vec<StoredEntry> {
        self.lanes
            .iter()
            .rev()
            .flat_map(|lane| lane.values())
            .take(limit)
            .map(|row| row.entry.clone())
            .collect()
    }

    /// Deletes every entry; returns their sequence numbers, lowest first.
    pub(super) fn clear(&mut self) -> Vec<u64> {
        let mut seqs: Vec<u64> = self
            .lanes
            .iter_mut()
            .flat_map(std::mem::take)
            .map(|(seq, _)| seq)
            .collect();
        seqs.sort_unstable();
        self.expiry.clear();
        self.coalesce.clear();
        (self.count, self.bytes) = (0, 0);
        seqs
    }

    /// Adds a subscription, or replaces the unsubscribe event of the same one.
    pub(super) fn put_subscription(&mut self, s: &StoredSubscription) {
        match self.subscriptions.iter_mut().find(|k| same(k, s)) {
            Some(kept) => kept.unsubscribe.clone_from(&s.unsubscribe),
            // One at a time, as the engine's copy grows: a client has a few for its life.
            None => {
                self.subscriptions.reserve_exact(1);
                self.subscriptions.push(s.clone());
            }
        }
    }

    /// Removes a subscription; returns its unsubscribe event, if it had one.
    pub(super) fn remove_subscription(&mut self, s: &StoredSubscription) -> Option<String> {
        let at = self.subscriptions.iter().position(|k| same(k, s))?;
        self.subscriptions.remove(at).unsubscribe
    }

    /// Reserves the next block of sequence numbers; returns its first and last. `None` once
    /// the numbers are exhausted (after 2³¹ blocks: never in practice), before anything
    /// changed.
    pub(super) fn reserve_seqs(&mut self) -> Option<(u64, u64)> {
        let first = self.reserved + 1;
        let last = first
            .checked_add(SEQ_BLOCK - 1)
            .filter(|last| *last <= i64::MAX as u64)?;
        self.reserved = last;
        Some((first, last))
    }

    /// Records `seq` as used: the reservation only ever grows.
    pub(super) fn record_seq(&mut self, seq: u64) {
        self.reserved = self.reserved.max(seq);
    }

    /// Moves the reservation to `last` (tests of running out of numbers).
    #[cfg(test)]
    pub(super) fn set_reserved(&mut self, last: u64) {
        self.reserved = last;
    }

    fn lane_of(&self, seq: u64) -> Option<usize> {
        self.lanes.iter().position(|lane| lane.contains_key(&seq))
    }

    /// Removes entry `seq` from every index; returns its bytes if it was there.
    fn remove(&mut self, seq: u64) -> Option<u64> {
        let row = self.lanes[self.lane_of(seq)?].remove(&seq)?;
        if let Some(at) = row.entry.expires_ms {
            self.expiry.remove(&(at, seq));
        }
        if let Some(key) = row.coalesce_key {
            self.coalesce.remove(&(row.entry.namespace, key));
        }
        self.count -= 1;
        self.bytes -= row.bytes;
        Some(row.bytes)
    }
}

/// The same subscription: the file's primary key.
fn same(a: &StoredSubscription, b: &StoredSubscription) -> bool {
    (&a.namespace, &a.event, &a.args) == (&b.namespace, &b.event, &b.args)
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use rusqlite::Connection;

    use super::*;
    use crate::{
        config::Durability,
        store::{db, schema},
    };

    /// A random entry: one of two namespaces and three lanes, sometimes a coalescing key
    /// from a small set (so keys collide), a TTL, attachments.
    fn entry(rng: &mut fastrand::Rng, n: u64) -> NewEntry {
        NewEntry {
            lane: Priority::from_i64(rng.i64(0..3)),
            namespace: Arc::from(if rng.bool() { "/" } else { "/admin" }),
            event: format!("e{}", rng.u8(0..3)).into(),
            args: format!(r#"[{{"n":{n}}}]"#),
            attachments: (0..rng.usize(0..2))
                .map(|i| vec![i as u8; rng.usize(1..9)])
                .collect(),
            want_ack: rng.bool(),
            ttl: rng.bool().then(|| Duration::from_millis(rng.u64(0..50))),
            coalesce_key: (rng.u8(0..4) == 0).then(|| format!("k{}", rng.u8(0..3))),
        }
    }

    fn subscription(rng: &mut fastrand::Rng) -> StoredSubscription {
        StoredSubscription {
            namespace: "/".into(),
            event: format!("room:subscribe{}", rng.u8(0..3)),
            args: format!(r#"[{{"roomId":"r{}"}}]"#, rng.u8(0..2)),
            unsubscribe: rng.bool().then(|| format!("u{}", rng.u8(0..9))),
        }
    }

    fn sorted(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
        v.sort_unstable();
        v
    }

    /// The same random operations on a SQLite database and on rows in memory give the same
    /// answers, step by step: the rows chosen, their order and contents, the counts.
    #[test]
    fn every_operation_answers_as_the_database_does() {
        for seed in 0..40 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let (conn, _, _): (Connection, _, _) =
                schema::open(None, Durability::Normal, None, false).unwrap();
            let (mut mem, _) = Memory::open();
            let (mut now, mut next) = (1_000i64, 1u64);
            for step in 0..400 {
                let at = format!("seed {seed}, step {step}");
                now += rng.i64(0..5);
                match rng.u8(0..13) {
                    0..=3 => {
                        let e = entry(&mut rng, next);
                        let want = db::insert(&conn, next, &e, now, None).unwrap();
                        assert_eq!(mem.insert(next, &e, now), want, "{at}: insert");
                        next += 1;
                    }
                    4 => {
                        let seqs: Vec<u64> =
                            (0..rng.usize(1..4)).map(|_| rng.u64(1..next + 1)).collect();
                        let want = db::delete(&conn, &seqs).unwrap();
                        assert_eq!(mem.delete(&seqs), want, "{at}: delete {seqs:?}");
                    }
                    5 => {
                        let want = sorted(db::expire(&conn, now).unwrap());
                        assert_eq!(sorted(mem.expire(now)), want, "{at}: expire");
                    }
                    6 => {
                        let want = db::oldest_lowest(&conn).unwrap();
                        assert_eq!(mem.oldest_lowest(), want, "{at}: oldest_lowest");
                    }
                    7 | 8 => {
                        let lane = Priority::from_i64(rng.i64(0..3));
                        let (after, limit) = (rng.u64(0..next + 1), rng.usize(1..8));
                        let want = db::fetch(&conn, lane, after, limit, now, None).unwrap();
                        assert_eq!(mem.fetch(lane, after, limit, now), want, "{at}: fetch");
                    }
                    9 => {
                        let limit = rng.usize(1..30);
                        let want = db::list(&conn, limit, None).unwrap();
                        assert_eq!(mem.list(limit), want, "{at}: list");
                    }
                    10 => {
                        let s = subscription(&mut rng);
                        if rng.bool() {
                            db::put_subscription(&conn, &s, now).unwrap();
                            mem.put_subscription(&s);
                        } else {
                            let want =
                                db::remove_subscription(&conn, &s.namespace, &s.event, &s.args)
                                    .unwrap();
                            assert_eq!(mem.remove_subscription(&s), want, "{at}: unsubscribe");
                        }
                    }
                    11 => {
                        // A block after every number recorded, or a number taken from an
                        // unrecorded block recorded with its entry.
                        if rng.bool() {
                            let want = schema::reserve_seqs(&conn).unwrap();
                            assert_eq!(mem.reserve_seqs(), Some(want), "{at}: reserve");
                        } else {
                            // Below the reservation too: recording never lowers it.
                            let seq = rng.u64(1..mem.reserved + 2 * SEQ_BLOCK);
                            schema::record_seq(&conn, seq).unwrap();
                            mem.record_seq(seq);
                        }
                    }
                    _ if rng.u8(0..10) == 0 => {
                        let want = db::clear(&conn).unwrap();
                        assert_eq!(mem.clear(), want, "{at}: clear");
                    }
                    _ => {}
                }
                assert_eq!(mem.totals(), db::totals(&conn).unwrap(), "{at}: totals");
            }
        }
    }

    #[test]
    fn subscriptions_take_room_for_themselves_only() {
        let (mut mem, _) = Memory::open();
        let mut rng = fastrand::Rng::with_seed(7);
        let one = subscription(&mut rng);
        mem.put_subscription(&one);
        mem.put_subscription(&one);
        assert_eq!(mem.subscriptions.len(), 1, "the same one, once");
        assert_eq!(mem.subscriptions.capacity(), 1, "no room kept for more");
    }

    #[test]
    fn numbers_are_reserved_in_blocks_that_never_overlap_what_was_used() {
        let (mut mem, snapshot) = Memory::open();
        assert_eq!(snapshot.seqs, (1, SEQ_BLOCK));
        assert!(snapshot.seqs_recorded);
        assert_eq!(mem.reserve_seqs(), Some((SEQ_BLOCK + 1, 2 * SEQ_BLOCK)));
        mem.record_seq(5 * SEQ_BLOCK);
        assert_eq!(mem.reserve_seqs().unwrap().0, 5 * SEQ_BLOCK + 1);
        mem.reserved = i64::MAX as u64 - 10;
        assert_eq!(mem.reserve_seqs(), None, "exhausted, nothing handed out");
        assert_eq!(mem.reserved, i64::MAX as u64 - 10);
    }
}
