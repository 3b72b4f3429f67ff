//! Where a client's rows live: its SQLite file ([`db`]), or — for a store without a file —
//! the process's memory ([`Memory`]). The worker runs the same commands on either; this is
//! the one place that tells them apart.

use std::sync::Arc;

use rusqlite::Connection;
use tracing::warn;

use super::{
    cipher::Cipher,
    command::{NewEntry, StoredEntry, StoredSubscription},
    db,
    error::StoreError,
    memory::Memory,
    schema,
};
use crate::outbox::Priority;

/// A client's rows.
pub(super) enum Backend {
    /// A store file, its payloads sealed when the app configured a key.
    Sqlite {
        conn: Connection,
        /// Boxed: a cipher is larger than all of [`Memory`], and most stores have none.
        cipher: Option<Box<Cipher>>,
    },
    /// A store without a file: nothing outlives the process, so nothing is sealed either.
    Memory(Memory),
}

impl Backend {
    /// A store file's rows, as [`schema::open`] returns its connection and cipher.
    pub(super) fn sqlite(conn: Connection, cipher: Option<Cipher>) -> Self {
        Backend::Sqlite {
            conn,
            cipher: cipher.map(Box::new),
        }
    }

    /// Starts the transaction a batch of commands shares.
    pub(super) fn begin(&self) -> Result<(), StoreError> {
        match self {
            Backend::Sqlite { conn, .. } => db::begin(conn),
            Backend::Memory(_) => Ok(()),
        }
    }

    /// Commits the batch; on failure the batch is rolled back and nothing in it happened.
    pub(super) fn commit(&self) -> Result<(), StoreError> {
        match self {
            Backend::Sqlite { conn, .. } => db::commit(conn),
            Backend::Memory(_) => Ok(()),
        }
    }

    /// Whether a failed batch is undone. Only a file's can be, and only a file's batch ever
    /// fails: no operation on rows in memory does (a reservation past the last number changes
    /// nothing, and the worker refuses only it).
    pub(super) fn rolls_back(&self) -> bool {
        matches!(self, Backend::Sqlite { .. })
    }

    /// Rolls back a batch that failed part-way (see [`Backend::rolls_back`]).
    pub(super) fn rollback(&self) {
        if let Backend::Sqlite { conn, .. } = self {
            db::rollback(conn);
        }
    }

    /// See [`db::insert`].
    pub(super) fn insert(
        &mut self,
        seq: u64,
        e: &NewEntry,
        now_ms: i64,
    ) -> Result<Option<(u64, u64)>, StoreError> {
        match self {
            Backend::Sqlite { conn, cipher } => db::insert(conn, seq, e, now_ms, cipher.as_deref()),
            Backend::Memory(m) => Ok(m.insert(seq, e, now_ms)),
        }
    }

    /// See [`db::delete`].
    pub(super) fn delete(&mut self, seqs: &[u64]) -> Result<(u64, u64), StoreError> {
        match self {
            Backend::Sqlite { conn, .. } => db::delete(conn, seqs),
            Backend::Memory(m) => Ok(m.delete(seqs)),
        }
    }

    /// See [`db::expire`].
    pub(super) fn expire(&mut self, now_ms: i64) -> Result<Vec<(u64, u64)>, StoreError> {
        match self {
            Backend::Sqlite { conn, .. } => db::expire(conn, now_ms),
            Backend::Memory(m) => Ok(m.expire(now_ms)),
        }
    }

    /// See [`db::oldest_lowest`].
    pub(super) fn oldest_lowest(&self) -> Result<Option<(u64, u64)>, StoreError> {
        match self {
            Backend::Sqlite { conn, .. } => db::oldest_lowest(conn),
            Backend::Memory(m) => Ok(m.oldest_lowest()),
        }
    }

    /// See [`db::fetch`].
    pub(super) fn fetch(
        &self,
        lane: Priority,
        after: u64,
        limit: usize,
        now_ms: i64,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        match self {
            Backend::Sqlite { conn, cipher } => {
                db::fetch(conn, lane, after, limit, now_ms, cipher.as_deref())
            }
            Backend::Memory(m) => Ok(m.fetch(lane, after, limit, now_ms)),
        }
    }

    /// See [`db::list`].
    pub(super) fn list(&self, limit: usize) -> Result<Vec<StoredEntry>, StoreError> {
        match self {
            Backend::Sqlite { conn, cipher } => db::list(conn, limit, cipher.as_deref()),
            Backend::Memory(m) => Ok(m.list(limit)),
        }
    }

    /// See [`db::clear`].
    pub(super) fn clear(&mut self) -> Result<Vec<u64>, StoreError> {
        match self {
            Backend::Sqlite { conn, .. } => db::clear(conn),
            Backend::Memory(m) => Ok(m.clear()),
        }
    }

    /// See [`db::totals`].
    pub(super) fn totals(&self) -> Result<(u64, u64), StoreError> {
        match self {
            Backend::Sqlite { conn, .. } => db::totals(conn),
            Backend::Memory(m) => Ok(m.totals()),
        }
    }

    /// See [`db::put_subscription`].
    pub(super) fn put_subscription(
        &mut self,
        s: &StoredSubscription,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        match self {
            Backend::Sqlite { conn, .. } => db::put_subscription(conn, s, now_ms),
            Backend::Memory(m) => {
                m.put_subscription(s);
                Ok(())
            }
        }
    }

    /// See [`db::remove_subscription`].
    pub(super) fn remove_subscription(
        &mut self,
        s: &StoredSubscription,
    ) -> Result<Option<String>, StoreError> {
        match self {
            Backend::Sqlite { conn, .. } => {
                db::remove_subscription(conn, &s.namespace, &s.event, &s.args)
            }
            Backend::Memory(m) => Ok(m.remove_subscription(s)),
        }
    }

    /// See [`db::record_seen`]. Kept by a file only: seen ids are read back at the next
    /// open, which a store in memory never has.
    pub(super) fn record_seen(
        &self,
        ids: &[(Arc<str>, i64)],
        window: usize,
        min_ms: i64,
    ) -> Result<(), StoreError> {
        match self {
            Backend::Sqlite { conn, .. } => db::record_seen(conn, ids, window, min_ms),
            Backend::Memory(_) => Ok(()),
        }
    }

    /// See [`db::set_recovery`]. Kept by a file only, like seen ids.
    pub(super) fn set_recovery(
        &self,
        namespace: &str,
        pid: Option<&str>,
        offset: Option<&str>,
    ) -> Result<(), StoreError> {
        match self {
            Backend::Sqlite { conn, .. } => db::set_recovery(conn, namespace, pid, offset),
            Backend::Memory(_) => Ok(()),
        }
    }

    /// See [`schema::reserve_seqs`].
    pub(super) fn reserve_seqs(&mut self) -> Result<(u64, u64), StoreError> {
        match self {
            Backend::Sqlite { conn, .. } => schema::reserve_seqs(conn),
            Backend::Memory(m) => m
                .reserve_seqs()
                .ok_or_else(|| StoreError::Io("the store's sequence numbers are exhausted".into())),
        }
    }

    /// See [`schema::record_seq`].
    pub(super) fn record_seq(&mut self, seq: u64) -> Result<(), StoreError> {
        match self {
            Backend::Sqlite { conn, .. } => schema::record_seq(conn, seq),
            Backend::Memory(m) => {
                m.record_seq(seq);
                Ok(())
            }
        }
    }

    /// Lets go of the prepared statements (a hub's idle file; see
    /// `Worker::idle_releases_statements`).
    pub(super) fn release_statements(&self) {
        if let Backend::Sqlite { conn, .. } = self {
            conn.flush_prepared_statement_cache();
        }
    }

    /// Marks a file closed cleanly and closes it: the last connection checkpoints and
    /// removes the WAL, so an app that exits, moves or reopens the file right after finds it
    /// whole. A failure is logged; nothing is lost either way (the next open checks the file).
    pub(super) fn close(self) {
        let Backend::Sqlite { conn, .. } = self else {
            return;
        };
        if let Err(e) = schema::meta_set(&conn, "clean", "1") {
            warn!(error = %e, "could not mark the store closed");
        }
        if let Err((_, e)) = conn.close() {
            warn!(error = %e, "could not close the store cleanly");
        }
    }
}
