//! Opening a store file: WAL, pragmas, the schema and its migrations, the encryption key
//! check, and the snapshot the engine starts from.

use std::{path::Path, time::Duration};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::{
    cipher::{self, Cipher, OutboxKey},
    command::StoredSubscription,
    db::totals,
    error::StoreError,
};
use crate::config::Durability;

/// The schema version this build writes; older files are migrated on open.
pub(super) const SCHEMA_VERSION: i32 = 2;

/// One migration per version step; index `i` upgrades from version `i` to `i + 1`. A new file
/// is built by running them all, from step 0: an earlier build of this version may open it
/// later, and it expects the AUTOINCREMENT counter's table that only migration 1 creates.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    lane INTEGER NOT NULL,
    namespace TEXT NOT NULL,
    event TEXT NOT NULL,
    args TEXT NOT NULL,
    attachments BLOB,
    want_ack INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER,
    coalesce_key TEXT,
    bytes INTEGER NOT NULL
);
CREATE INDEX outbox_by_lane ON outbox (lane, seq);
CREATE INDEX outbox_by_expiry ON outbox (expires_ms) WHERE expires_ms IS NOT NULL;
CREATE UNIQUE INDEX outbox_by_coalesce_key ON outbox (namespace, coalesce_key)
    WHERE coalesce_key IS NOT NULL;
CREATE TABLE subscriptions (
    namespace TEXT NOT NULL,
    event TEXT NOT NULL,
    args TEXT NOT NULL,
    unsubscribe TEXT,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (namespace, event, args)
) WITHOUT ROWID;
CREATE TABLE seen (id TEXT PRIMARY KEY, seen_ms INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX seen_by_age ON seen (seen_ms);
CREATE TABLE recovery (namespace TEXT PRIMARY KEY, pid TEXT NOT NULL, offset TEXT)
    WITHOUT ROWID;
"#,
    // 2: the outbox without AUTOINCREMENT. The engine numbers entries from blocks reserved in
    // `meta`, so SQLite's own counter guarded nothing, yet every insert updated it: one more page
    // written per commit. Its high-water mark (numbers of deleted entries included) moves into
    // the reservation first, so no number is ever used twice.
    r#"
INSERT OR REPLACE INTO meta (key, value) VALUES ('seq_reserved', CAST(MAX(
    COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'seq_reserved'), 0),
    COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0),
    COALESCE((SELECT MAX(seq) FROM outbox), 0)
) AS TEXT));
CREATE TABLE outbox_v2 (
    seq INTEGER PRIMARY KEY,
    lane INTEGER NOT NULL,
    namespace TEXT NOT NULL,
    event TEXT NOT NULL,
    args TEXT NOT NULL,
    attachments BLOB,
    want_ack INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER,
    coalesce_key TEXT,
    bytes INTEGER NOT NULL
);
INSERT INTO outbox_v2 (seq, lane, namespace, event, args, attachments, want_ack, created_ms,
    expires_ms, coalesce_key, bytes)
    SELECT seq, lane, namespace, event, args, attachments, want_ack, created_ms, expires_ms,
        coalesce_key, bytes FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_v2 RENAME TO outbox;
CREATE INDEX outbox_by_lane ON outbox (lane, seq);
CREATE INDEX outbox_by_expiry ON outbox (expires_ms) WHERE expires_ms IS NOT NULL;
CREATE UNIQUE INDEX outbox_by_coalesce_key ON outbox (namespace, coalesce_key)
    WHERE coalesce_key IS NOT NULL;
"#,
];

/// What a freshly opened database holds for the engine.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// Random per-store id, the prefix of every idempotency key.
    pub(crate) client_id: String,
    /// Entries waiting, and their payload bytes.
    pub(crate) count: u64,
    pub(crate) bytes: u64,
    pub(crate) subscriptions: Vec<StoredSubscription>,
    /// Seen inbound ids, oldest first, with when they were seen (ms since the epoch).
    pub(crate) seen: Vec<(String, i64)>,
    /// Per-namespace recovery session: `(namespace, pid, offset)`.
    pub(crate) recovery: Vec<(String, String, Option<String>)>,
    /// Whether the previous run ended without closing the store (a kill or a crash).
    pub(crate) unclean: bool,
    /// The sequence numbers reserved for this client's new entries, first and last.
    pub(crate) seqs: (u64, u64),
    /// Whether that block is recorded in the file (not when opened on a full disk): only
    /// numbers of a recorded block may reach the wire before their entry is committed.
    pub(crate) seqs_recorded: bool,
}

/// How many sequence numbers one reservation holds. The engine numbers new entries itself
/// from its reservation, so it can write an entry to the socket while the store commits it
/// (the number is its acknowledgement id and part of its idempotency key). Blocks are never
/// reused, nor are numbers of deleted entries (a server may still remember their keys), and
/// two clients sharing a file reserve different blocks.
pub(crate) const SEQ_BLOCK: u64 = 1 << 32;

/// Reserves the next block of sequence numbers; returns its first and last. Runs inside the
/// caller's transaction.
pub(super) fn reserve_seqs(conn: &Connection) -> Result<(u64, u64), StoreError> {
    let (first, last) = next_block(conn)?;
    meta_set(conn, "seq_reserved", &last.to_string())?;
    Ok((first, last))
}

/// Records `seq` as used, for a number taken from a block that is not recorded (opened on a
/// full disk): the reservation only ever grows. Runs inside the caller's transaction.
pub(super) fn record_seq(conn: &Connection, seq: u64) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('seq_reserved', ?1)
         ON CONFLICT (key) DO UPDATE SET
             value = CAST(MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER)) AS TEXT)",
        [seq.to_string()],
    )
    .map(drop)
    .map_err(|e| StoreError::from_sqlite("meta", e))
}

/// The block after every number used or reserved so far (read only).
pub(super) fn next_block(conn: &Connection) -> Result<(u64, u64), StoreError> {
    let sql = |e| StoreError::from_sqlite("reserve", e);
    // The reservation covers every number used, deleted rows' included: a block is recorded
    // before its numbers are used, and a number of an unrecorded block (a full disk) is
    // recorded with its entry (`record_seq`). The rows present are checked too.
    // A file left at version 1 (its migration postponed by a full disk) still counts in
    // SQLite's AUTOINCREMENT counter; at version 2 the counter's table is empty.
    let used: i64 = conn
        .query_row(
            "SELECT MAX(COALESCE((SELECT MAX(seq) FROM outbox), 0),
                        COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0))",
            [],
            |r| r.get(0),
        )
        .map_err(sql)?;
    let reserved = meta_get(conn, "seq_reserved")?
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let first = (used.max(0) as u64).max(reserved) + 1;
    let last = first
        .checked_add(SEQ_BLOCK - 1)
        .filter(|last| *last <= i64::MAX as u64)
        .ok_or_else(|| StoreError::Io("the store's sequence numbers are exhausted".into()))?;
    Ok((first, last))
}

/// Turns off `conn`'s lookaside memory. Must run before any statement (SQLite refuses while
/// lookaside memory is in use, leaving it on: the store then only uses more memory).
fn no_lookaside(conn: &Connection) {
    use std::ffi::{c_int, c_void};
    // SAFETY: `handle()` is this open connection, used on this thread; with a null buffer and
    // zero sizes SQLite allocates nothing. rusqlite has no safe call for this option.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_db_config(
            conn.handle(),
            rusqlite::ffi::SQLITE_DBCONFIG_LOOKASIDE,
            std::ptr::null_mut::<c_void>(),
            0 as c_int,
            0 as c_int,
        )
    };
    if rc != rusqlite::ffi::SQLITE_OK {
        tracing::debug!(rc, "lookaside stays on");
    }
}

/// Prepared statements a compact store keeps (rusqlite's default is 16).
const COMPACT_STATEMENTS: usize = 6;

/// Opens (creating or migrating) the database at `path` — or, for unit tests, one in memory
/// for `None` (a client without a store file keeps its rows in [`super::memory`], not in
/// SQLite); with `key`, checks it is the key the file's payloads were sealed with (recording
/// it on the first keyed open) and returns the cipher for them. `compact` is for processes
/// holding many clients: no lookaside memory (SQLite's per-connection allocator, about
/// 120 KiB touched at open) and fewer cached statements, for a little more time per
/// statement.
pub(super) fn open(
    path: Option<&Path>,
    durability: Durability,
    key: Option<&OutboxKey>,
    compact: bool,
) -> Result<(Connection, Snapshot, Option<Cipher>), StoreError> {
    let conn = match path {
        Some(p) => Connection::open_with_flags(
            p,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        ),
        None => Connection::open_in_memory(),
    }
    .map_err(|e| StoreError::from_sqlite("open", e))?;
    if compact {
        no_lookaside(&conn);
        conn.set_prepared_statement_cache_capacity(COMPACT_STATEMENTS);
    }
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| StoreError::from_sqlite("busy_timeout", e))?;
    if path.is_some() && page_count(&conn)? == 0 {
        // A new file: 1 KiB pages. A commit writes each page it touched to the WAL (an
        // entry's table and index pages), so its cost follows the page size: a quarter of
        // the bytes of SQLite's default 4 KiB, for entries that are mostly a few hundred
        // bytes. Only before the first write (the switch to WAL below is one); an existing
        // file keeps the size it has.
        conn.execute_batch("PRAGMA page_size = 1024")
            .map_err(|e| StoreError::from_sqlite("pragma", e))?;
    }

    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    let mode = wal_mode(&conn)?;
    if path.is_some() && !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Io(format!(
            "could not switch the store to WAL mode (got {mode})"
        )));
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {sync}; PRAGMA temp_store = MEMORY; PRAGMA cache_size = -2000;"
    ))
    .map_err(|e| StoreError::from_sqlite("pragma", e))?;
    migrate(&conn)?;
    let cipher = check_key(&conn, key)?;
    let unclean = meta_get(&conn, "clean")?.as_deref() == Some("0");
    if unclean {
        quick_check(&conn)?;
    }
    match meta_set(&conn, "clean", "0") {
        // A full disk must not keep the client from opening: it can still send what is
        // stored (which is how space comes back). The next open then skips the integrity
        // check it would make after this run if it ended badly.
        Err(StoreError::Full(e)) => tracing::warn!(error = %e, "store opened on a full disk"),
        other => other?,
    }
    let snapshot = load(&conn, unclean)?;
    if path.is_some() {
        // One client per file (`owner`), so SQLite's file locks guard nothing: taken by the
        // next transaction and held for the connection's life, they cost no system calls
        // per transaction (a dozen otherwise). Set once the file is set up: two openers of a new
        // file (possible below `Store::open`, which takes the owner lock first) then wait for
        // each other in the steps above instead of each keeping a lock the other needs.
        conn.query_row("PRAGMA locking_mode = EXCLUSIVE", [], |r| {
            r.get::<_, String>(0)
        })
        .map_err(|e| StoreError::from_sqlite("locking_mode", e))?;
    }
    Ok((conn, snapshot, cipher))
}

/// Reserves a block in a transaction of its own, taken at once (`IMMEDIATE`): two processes
/// opening the file together reserve different blocks.
fn reserve_at_open(conn: &Connection) -> Result<(u64, u64), StoreError> {
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| StoreError::from_sqlite("reserve", e))?;
    let reserved = reserve_seqs(conn).and_then(|seqs| {
        conn.execute_batch("COMMIT")
            .map_err(|e| StoreError::from_sqlite("reserve", e))?;
        Ok(seqs)
    });
    if reserved.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    reserved
}

/// The meta row proving which key seals this file's payloads (a sealed constant, not the key).
const KEY_CHECK: &str = "key_check";

/// Matches `key` with the file: a keyed file needs its key, and the first keyed open records
/// the check (insert-if-absent, so two processes opening at once agree).
fn check_key(conn: &Connection, key: Option<&OutboxKey>) -> Result<Option<Cipher>, StoreError> {
    let bad_key = |m: &str| StoreError::Key(m.to_owned());
    let Some(key) = key else {
        return match meta_get(conn, KEY_CHECK)? {
            Some(_) => Err(bad_key(
                "this outbox's payloads are encrypted: configure its encryption key",
            )),
            None => Ok(None),
        };
    };
    let cipher = Cipher::new(key)
        .map_err(|_| bad_key("no randomness from the system to start the key's nonces"))?;
    if meta_get(conn, KEY_CHECK)?.is_none() {
        let check = cipher
            .seal(cipher::CHECK_CONTEXT, KEY_CHECK, &[])
            .map_err(|_| StoreError::Io("could not seal the key check".into()))?;
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)",
            params![KEY_CHECK, check],
        )
        .map_err(|e| StoreError::from_sqlite("key check", e))?;
    }
    let check = meta_get(conn, KEY_CHECK)?.unwrap_or_default();
    match cipher.open(cipher::CHECK_CONTEXT, &check) {
        Ok(Some((text, _))) if text == KEY_CHECK => Ok(Some(cipher)),
        _ => Err(bad_key(
            "the encryption key is not the one this outbox was written with",
        )),
    }
}

/// Switches the file to WAL and returns the journal mode now in force. The switch needs an
/// exclusive lock and SQLite does not wait for it (no busy handler), so while another process
/// opens the same file it is retried for as long as the busy timeout.
fn wal_mode(conn: &Connection) -> Result<String, StoreError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        // `journal_mode` answers with a row, so it is queried rather than executed.
        match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)) {
            Ok(mode) => return Ok(mode),
            Err(e)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(StoreError::from_sqlite("journal_mode", e)),
        }
    }
}

/// Pages in the database: 0 for a file nothing was written to yet.
fn page_count(conn: &Connection) -> Result<i64, StoreError> {
    conn.query_row("PRAGMA page_count", [], |r| r.get(0))
        .map_err(|e| StoreError::from_sqlite("page_count", e))
}

/// Brings `conn` to [`SCHEMA_VERSION`], one step at a time.
fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let user_version = |conn: &Connection| -> Result<i32, StoreError> {
        conn.query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| StoreError::from_sqlite("user_version", e))
    };
    // The common case, an up-to-date file, takes no write lock.
    if user_version(conn)? == SCHEMA_VERSION {
        return Ok(());
    }
    // Another process may be migrating the same file right now: the version that counts is
    // the one read under the write lock.
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| StoreError::from_sqlite("migration", e))?;
    let sql = |e| StoreError::from_sqlite("migration", e);
    // One transaction per step, so a step that cannot run leaves the file at the version
    // before it; each step starts by reading the version under the write lock, as another
    // process may have taken the file further meanwhile.
    let result = (|| loop {
        let version = user_version(conn)?;
        if !(0..=SCHEMA_VERSION).contains(&version) {
            return Err(StoreError::Incompatible {
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if version == SCHEMA_VERSION {
            return conn.execute_batch("COMMIT").map_err(sql);
        }
        conn.execute_batch(MIGRATIONS[version as usize])
            .and_then(|()| conn.execute_batch(&format!("PRAGMA user_version = {}", version + 1)))
            .and_then(|()| conn.execute_batch("COMMIT; BEGIN IMMEDIATE"))
            .map_err(sql)?;
    })();
    let Err(e) = result else { return Ok(()) };
    let _ = conn.execute_batch("ROLLBACK");
    match e {
        // Version 1 still runs (its outbox keeps the AUTOINCREMENT counter that version 2
        // drops, which only costs time): a full disk must not keep the client from opening
        // and sending what it holds, which is how space comes back. The next open tries again.
        StoreError::Full(e) if user_version(conn)? >= 1 => {
            tracing::warn!(error = %e, "store migration postponed: the disk is full");
            Ok(())
        }
        e => Err(e),
    }
}

/// Runs SQLite's `quick_check`; a damaged file is a clear error rather than silent loss.
pub(super) fn quick_check(conn: &Connection) -> Result<(), StoreError> {
    let result: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| StoreError::from_sqlite("quick_check", e))?;
    if result == "ok" {
        Ok(())
    } else {
        Err(StoreError::Corrupt(result))
    }
}

pub(super) fn meta_get(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
        .map_err(|e| StoreError::from_sqlite("meta", e))
}

pub(super) fn meta_set(conn: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )
    .map(drop)
    .map_err(|e| StoreError::from_sqlite("meta", e))
}

fn load(conn: &Connection, unclean: bool) -> Result<Snapshot, StoreError> {
    let sql = |e| StoreError::from_sqlite("load", e);
    // Insert-if-absent, then read: two processes opening a new file at once agree on one id
    // (the idempotency keys of rows either may send).
    // Read first: an existing file needs no write (it may be on a full disk).
    let client_id = match meta_get(conn, "client_id")? {
        Some(id) => id,
        None => {
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('client_id', ?1)
                 ON CONFLICT (key) DO NOTHING",
                [format!("{:016x}", fastrand::u64(..))],
            )
            .map_err(|e| StoreError::from_sqlite("meta", e))?;
            meta_get(conn, "client_id")?
                .ok_or_else(|| StoreError::Io("the store's client id vanished".into()))?
        }
    };
    let (seqs, seqs_recorded) = match reserve_at_open(conn) {
        Ok(seqs) => (seqs, true),
        // A full disk must not keep the client from opening (it can still send, which frees
        // space): the block is used without being recorded. Each number of it is recorded
        // with its entry (`record_seq`), so the next open starts after every number inserted,
        // deleted or not; a number is reused only if it reached the server without being
        // inserted — which the engine prevents by keeping the live path closed until a
        // recorded block replaces this one.
        Err(StoreError::Full(_)) => (next_block(conn)?, false),
        Err(e) => return Err(e),
    };
    let (count, bytes) = totals(conn)?;
    let mut stmt = conn
        .prepare(
            "SELECT namespace, event, args, unsubscribe FROM subscriptions ORDER BY created_ms",
        )
        .map_err(sql)?;
    let subscriptions = stmt
        .query_map([], |r| {
            Ok(StoredSubscription {
                namespace: r.get(0)?,
                event: r.get(1)?,
                args: r.get(2)?,
                unsubscribe: r.get(3)?,
            })
        })
        .map_err(sql)?
        .collect::<Result<_, _>>()
        .map_err(sql)?;
    let mut stmt = conn
        .prepare("SELECT id, seen_ms FROM seen ORDER BY seen_ms")
        .map_err(sql)?;
    let seen = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(sql)?
        .collect::<Result<_, _>>()
        .map_err(sql)?;
    let mut stmt = conn
        .prepare("SELECT namespace, pid, offset FROM recovery")
        .map_err(sql)?;
    let recovery = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(sql)?
        .collect::<Result<_, _>>()
        .map_err(sql)?;
    Ok(Snapshot {
        client_id,
        count,
        bytes,
        subscriptions,
        seen,
        recovery,
        unclean,
        seqs,
        seqs_recorded,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_twice_migrates_once_and_flags_an_unclean_exit() {
        let dir = std::env::temp_dir().join(format!("pl-db-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.db");
        let (conn, snap, _) = open(Some(&path), Durability::Normal, None, false).unwrap();
        assert!(!snap.unclean);
        let id = snap.client_id;
        drop(conn); // no clean close recorded
        let (conn, snap, _) = open(Some(&path), Durability::Full, None, false).unwrap();
        assert!(snap.unclean, "a run that never closed the store is unclean");
        assert_eq!(snap.client_id, id, "the client id survives");
        let v: i32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        conn.execute_batch("PRAGMA user_version = 99").unwrap();
        drop(conn);
        assert!(matches!(
            open(Some(&path), Durability::Normal, None, false),
            Err(StoreError::Incompatible { found: 99, .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// The SQLite linked here is the one `.cargo/config.toml` builds: a build that missed its
    /// flags (run from outside the repository, or with `LIBSQLITE3_FLAGS` already set) would
    /// carry the extensions' code and their memory on every connection.
    #[test]
    fn sqlite_is_built_without_the_extensions_the_store_never_uses() {
        let conn = Connection::open_in_memory().unwrap();
        let mut stmt = conn.prepare("PRAGMA compile_options").unwrap();
        let options: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(options.iter().any(|o| o == "THREADSAFE=1"), "{options:?}");
        for unused in [
            "ENABLE_FTS3",
            "ENABLE_FTS5",
            "ENABLE_RTREE",
            "ENABLE_DBSTAT_VTAB",
        ] {
            assert!(
                !options.iter().any(|o| o == unused),
                "{unused} in {options:?}"
            );
        }
    }

    #[test]
    fn a_new_file_is_built_by_the_migrations_so_earlier_builds_open_it() {
        let dir = std::env::temp_dir().join(format!("pl-db-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let (conn, snap, _) =
            open(Some(&dir.join("s.db")), Durability::Normal, None, false).unwrap();
        let counter: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE name = 'sqlite_sequence')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(counter, "builds of version 2 before this one read it");
        assert_eq!(snap.seqs.0, 1);
        drop(conn);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A file as version 1 made it, holding `entries` (lane, arguments) numbered by SQLite's
    /// AUTOINCREMENT counter.
    fn version_1_file(path: &Path, entries: &[(i64, String)]) -> Connection {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch("PRAGMA user_version = 1").unwrap();
        for (lane, args) in entries {
            conn.execute(
                "INSERT INTO outbox (lane, namespace, event, args, want_ack, created_ms, bytes)
                 VALUES (?1, '/', 'tick', ?2, 1, 0, 10)",
                params![lane, args],
            )
            .unwrap();
        }
        conn
    }

    #[test]
    fn a_version_1_file_keeps_its_entries_and_never_reuses_a_number() {
        let dir = std::env::temp_dir().join(format!("pl-db-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.db");
        // As version 1 left a file: entries numbered by SQLite's counter, the two newest
        // deleted (delivered), so the counter (5) is above every row (3).
        let entries: Vec<_> = (1..=5).map(|n| (n % 2, format!("[{n}]"))).collect();
        let conn = version_1_file(&path, &entries);
        conn.execute("DELETE FROM outbox WHERE seq >= 4", [])
            .unwrap();
        drop(conn);
        let (conn, snap, _) = open(Some(&path), Durability::Normal, None, false).unwrap();
        assert_eq!(snap.count, 3);
        assert_eq!(
            snap.seqs.0, 6,
            "the next number is above every one used, deleted too"
        );
        let rows: Vec<(i64, i64, String)> = conn
            .prepare("SELECT seq, lane, args FROM outbox ORDER BY lane, seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                (2, 0, "[2]".into()),
                (1, 1, "[1]".into()),
                (3, 1, "[3]".into())
            ]
        );
        let table: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'outbox'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(!table.contains("AUTOINCREMENT"), "{table}");
        let indexes: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'outbox'
                 AND name LIKE 'outbox_by_%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 3);
        // An existing file keeps its page size; a new one gets 1 KiB pages.
        let size =
            |c: &Connection| -> i64 { c.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap() };
        assert_eq!(size(&conn), 4096);
        let (fresh, _, _) =
            open(Some(&dir.join("new.db")), Durability::Normal, None, false).unwrap();
        assert_eq!(size(&fresh), 1024);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_full_disk_postpones_the_migration_and_the_file_still_works() {
        let dir = std::env::temp_dir().join(format!("pl-db-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.db");
        let entries: Vec<_> = (1..=40)
            .map(|n| (1, format!("[{n},\"{}\"]", "x".repeat(200))))
            .collect();
        let conn = version_1_file(&path, &entries);
        conn.execute("DELETE FROM outbox WHERE seq > 30", [])
            .unwrap();
        // SQLite answers SQLITE_FULL once the file would outgrow this: as a full disk would.
        let pages: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        let _: i64 = conn
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                r.get(0)
            })
            .unwrap();
        migrate(&conn).unwrap();
        let version = |c: &Connection| -> i32 {
            c.query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(version(&conn), 1, "postponed, nothing half done");
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 30);
        // Still at version 1, SQLite's counter (40) keeps numbers from being reused.
        assert!(next_block(&conn).unwrap().0 > 40);
        drop(conn);
        let (conn, snap, _) = open(Some(&path), Durability::Normal, None, false).unwrap();
        assert_eq!(version(&conn), SCHEMA_VERSION, "the next open migrates");
        assert_eq!(snap.count, 30);
        assert!(snap.seqs.0 > 40);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn concurrent_first_opens_agree_on_schema_and_client_id() {
        let dir = std::env::temp_dir().join(format!("pl-db-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.db");
        let barrier = std::sync::Barrier::new(4);
        let ids: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        open(Some(&path), Durability::Normal, None, false)
                            .unwrap()
                            .1
                            .client_id
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn garbage_file_is_a_clear_error() {
        let dir = std::env::temp_dir().join(format!("pl-db-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.db");
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let err = open(Some(&path), Durability::Normal, None, false).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
