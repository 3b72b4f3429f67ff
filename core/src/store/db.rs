//! The SQL side of the store: schema, migrations and every statement, on one connection.
//!
//! Synchronous on purpose: only the store thread calls it, and unit tests drive it directly.

use std::{path::Path, time::Duration};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::{
    Lane, NewEntry, StoreError, StoredEntry, StoredSubscription,
    cipher::{self, Cipher, OutboxKey},
};
use crate::outbox::Durability;

/// The schema version this build writes; older files are migrated on open.
pub(super) const SCHEMA_VERSION: i32 = 1;

/// One migration per version step; index `i` upgrades from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[r#"
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
"#];

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
}

/// Opens (creating or migrating) the database at `path`, or an in-memory one for `None`;
/// with `key`, checks it is the key the file's payloads were sealed with (recording it on the
/// first keyed open) and returns the cipher for them.
pub(super) fn open(
    path: Option<&Path>,
    durability: Durability,
    key: Option<&OutboxKey>,
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
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| StoreError::from_sqlite("busy_timeout", e))?;
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
    meta_set(&conn, "clean", "0")?;
    let snapshot = load(&conn, unclean)?;
    Ok((conn, snapshot, cipher))
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

/// The context a payload is sealed in: it cannot be moved to another event unnoticed.
fn seal_context(namespace: &str, event: &str) -> String {
    format!("{namespace}\0{event}")
}

/// `entry` with its payload opened, if sealed.
fn reveal(mut entry: StoredEntry, cipher: Option<&Cipher>) -> Result<StoredEntry, StoreError> {
    if !cipher::is_sealed(&entry.args) {
        return Ok(entry);
    }
    let context = seal_context(&entry.namespace, &entry.event);
    let opened = cipher.map(|c| c.open(&context, &entry.args));
    let Some(Ok(Some((args, attachments)))) = opened else {
        return Err(StoreError::Corrupt(format!(
            "entry {} does not decrypt: the file was altered",
            entry.seq
        )));
    };
    entry.args = args;
    entry.attachments = attachments;
    Ok(entry)
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
    let result = (|| {
        let version = user_version(conn)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Incompatible {
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        for sql in MIGRATIONS.iter().skip(version as usize) {
            conn.execute_batch(sql)
                .map_err(|e| StoreError::from_sqlite("migration", e))?;
        }
        conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"))
            .map_err(|e| StoreError::from_sqlite("migration", e))
    })();
    if result.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
}

/// The outbox's entry count and payload bytes, as stored.
pub(super) fn totals(conn: &Connection) -> Result<(u64, u64), StoreError> {
    conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM outbox",
        [],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )
    .map_err(|e| StoreError::from_sqlite("totals", e))
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

fn meta_get(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
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
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('client_id', ?1) ON CONFLICT (key) DO NOTHING",
        [format!("{:016x}", fastrand::u64(..))],
    )
    .map_err(|e| StoreError::from_sqlite("meta", e))?;
    let client_id = meta_get(conn, "client_id")?
        .ok_or_else(|| StoreError::Io("the store's client id vanished".into()))?;
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
    })
}

/// Starts the transaction a batch of commands shares.
pub(super) fn begin(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| StoreError::from_sqlite("begin", e))
}

/// Commits the batch; on failure the batch is rolled back and nothing in it happened.
pub(super) fn commit(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("COMMIT").map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK");
        StoreError::from_sqlite("commit", e)
    })
}

/// Rolls back a batch that failed part-way.
pub(super) fn rollback(conn: &Connection) {
    let _ = conn.execute_batch("ROLLBACK");
}

/// Inserts an entry, first removing an undelivered one with the same coalescing key. Returns
/// the new sequence number and the entry it replaced (`seq`, `bytes`), if any.
pub(super) fn insert(
    conn: &Connection,
    e: &NewEntry,
    now_ms: i64,
    cipher: Option<&Cipher>,
) -> Result<(u64, Option<(u64, u64)>), StoreError> {
    let sql = |err| StoreError::from_sqlite("insert", err);
    let mut replaced = None;
    if let Some(key) = &e.coalesce_key {
        let old: Option<(i64, i64)> = conn
            .prepare_cached(
                "DELETE FROM outbox WHERE namespace = ?1 AND coalesce_key = ?2
                 RETURNING seq, bytes",
            )
            .map_err(sql)?
            .query_row(params![&*e.namespace, key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(sql)?;
        replaced = old.map(|(s, b)| (s as u64, b as u64));
    }
    let (args, attachments) = match cipher {
        Some(c) => {
            let context = seal_context(&e.namespace, &e.event);
            let sealed = c
                .seal(&context, &e.args, &e.attachments)
                .map_err(|_| StoreError::Io("entry too large to encrypt".into()))?;
            (std::borrow::Cow::<str>::Owned(sealed), None)
        }
        None => (
            std::borrow::Cow::Borrowed(e.args.as_str()),
            (!e.attachments.is_empty()).then(|| pack(&e.attachments)),
        ),
    };
    let expires = e.ttl.map(|t| now_ms.saturating_add(t.as_millis() as i64));
    conn.prepare_cached(
        "INSERT INTO outbox (lane, namespace, event, args, attachments, want_ack, created_ms,
                             expires_ms, coalesce_key, bytes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .map_err(sql)?
    .execute(params![
        e.lane as i64,
        &*e.namespace,
        e.event,
        args,
        attachments,
        e.want_ack,
        now_ms,
        expires,
        e.coalesce_key,
        e.bytes() as i64,
    ])
    .map_err(sql)?;
    Ok((conn.last_insert_rowid() as u64, replaced))
}

/// Deletes delivered (or dropped) entries; returns how many rows and bytes went.
pub(super) fn delete(conn: &Connection, seqs: &[u64]) -> Result<(u64, u64), StoreError> {
    let sql = |err| StoreError::from_sqlite("delete", err);
    let mut stmt = conn
        .prepare_cached("DELETE FROM outbox WHERE seq = ?1 RETURNING bytes")
        .map_err(sql)?;
    let (mut rows, mut bytes) = (0, 0);
    for s in seqs {
        if let Some(b) = stmt
            .query_row([*s as i64], |r| r.get::<_, i64>(0))
            .optional()
            .map_err(sql)?
        {
            rows += 1;
            bytes += b as u64;
        }
    }
    Ok((rows, bytes))
}

/// Deletes entries whose TTL has passed; returns each one's `(seq, bytes)`.
pub(super) fn expire(conn: &Connection, now_ms: i64) -> Result<Vec<(u64, u64)>, StoreError> {
    let sql = |err| StoreError::from_sqlite("expire", err);
    conn.prepare_cached(
        "DELETE FROM outbox WHERE expires_ms IS NOT NULL AND expires_ms <= ?1
         RETURNING seq, bytes",
    )
    .map_err(sql)?
    .query_map([now_ms], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
    })
    .map_err(sql)?
    .collect::<Result<_, _>>()
    .map_err(sql)
}

/// The oldest entry of the lowest lane: what `DropOldest` gives up first.
pub(super) fn oldest_lowest(conn: &Connection) -> Result<Option<(u64, u64)>, StoreError> {
    conn.prepare_cached("SELECT seq, bytes FROM outbox ORDER BY lane, seq LIMIT 1")
        .map_err(|e| StoreError::from_sqlite("overflow", e))?
        .query_row([], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
        })
        .optional()
        .map_err(|e| StoreError::from_sqlite("overflow", e))
}

const COLUMNS: &str = "seq, lane, namespace, event, args, attachments, want_ack, created_ms, \
                       expires_ms, coalesce_key";

fn row_to_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEntry> {
    let blob: Option<Vec<u8>> = r.get(5)?;
    Ok(StoredEntry {
        seq: r.get::<_, i64>(0)? as u64,
        lane: Lane::from_i64(r.get(1)?),
        namespace: r.get(2)?,
        event: r.get(3)?,
        args: r.get(4)?,
        attachments: blob.map(|b| unpack(&b)).unwrap_or_default(),
        want_ack: r.get(6)?,
        created_ms: r.get(7)?,
        expires_ms: r.get(8)?,
        coalesce_key: r.get(9)?,
    })
}

/// Up to `limit` entries of `lane` after `after`, in order, skipping expired ones.
pub(super) fn fetch(
    conn: &Connection,
    lane: Lane,
    after: u64,
    limit: usize,
    now_ms: i64,
    cipher: Option<&Cipher>,
) -> Result<Vec<StoredEntry>, StoreError> {
    let sql = |err| StoreError::from_sqlite("fetch", err);
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM outbox
         WHERE lane = ?1 AND seq > ?2 AND (expires_ms IS NULL OR expires_ms > ?3)
         ORDER BY seq LIMIT ?4"
    ))
    .map_err(sql)?
    .query_map(
        params![lane as i64, after as i64, now_ms, limit as i64],
        row_to_entry,
    )
    .map_err(sql)?
    .map(|r| reveal(r.map_err(sql)?, cipher))
    .collect()
}

/// Up to `limit` entries in send order (lane, then age), for the app to inspect.
pub(super) fn list(
    conn: &Connection,
    limit: usize,
    cipher: Option<&Cipher>,
) -> Result<Vec<StoredEntry>, StoreError> {
    let sql = |err| StoreError::from_sqlite("list", err);
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM outbox ORDER BY lane DESC, seq LIMIT ?1"
    ))
    .map_err(sql)?
    .query_map([limit as i64], row_to_entry)
    .map_err(sql)?
    .map(|r| reveal(r.map_err(sql)?, cipher))
    .collect()
}

/// Deletes every entry; returns how many went.
pub(super) fn clear(conn: &Connection) -> Result<u64, StoreError> {
    conn.execute("DELETE FROM outbox", [])
        .map(|n| n as u64)
        .map_err(|e| StoreError::from_sqlite("clear", e))
}

/// Adds or replaces a subscription.
pub(super) fn put_subscription(
    conn: &Connection,
    s: &StoredSubscription,
    now_ms: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO subscriptions (namespace, event, args, unsubscribe, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (namespace, event, args) DO UPDATE SET unsubscribe = excluded.unsubscribe",
    )
    .and_then(|mut st| st.execute(params![s.namespace, s.event, s.args, s.unsubscribe, now_ms]))
    .map(drop)
    .map_err(|e| StoreError::from_sqlite("subscribe", e))
}

/// Removes a subscription; returns its unsubscribe event, if it had one.
pub(super) fn remove_subscription(
    conn: &Connection,
    namespace: &str,
    event: &str,
    args: &str,
) -> Result<Option<String>, StoreError> {
    conn.prepare_cached(
        "DELETE FROM subscriptions WHERE namespace = ?1 AND event = ?2 AND args = ?3
         RETURNING unsubscribe",
    )
    .and_then(|mut st| {
        st.query_row(params![namespace, event, args], |r| {
            r.get::<_, Option<String>>(0)
        })
        .optional()
    })
    .map(Option::flatten)
    .map_err(|e| StoreError::from_sqlite("unsubscribe", e))
}

/// Records inbound ids as seen and forgets the oldest beyond `window` or older than `min_ms`.
pub(super) fn record_seen(
    conn: &Connection,
    ids: &[(String, i64)],
    window: usize,
    min_ms: i64,
) -> Result<(), StoreError> {
    let sql = |err| StoreError::from_sqlite("seen", err);
    let mut stmt = conn
        .prepare_cached("INSERT OR REPLACE INTO seen (id, seen_ms) VALUES (?1, ?2)")
        .map_err(sql)?;
    for (id, at) in ids {
        stmt.execute(params![id, at]).map_err(sql)?;
    }
    conn.prepare_cached(
        "DELETE FROM seen WHERE seen_ms < ?1 OR id IN
            (SELECT id FROM seen ORDER BY seen_ms DESC LIMIT -1 OFFSET ?2)",
    )
    .map_err(sql)?
    .execute(params![min_ms, window as i64])
    .map_err(sql)?;
    Ok(())
}

/// Stores a namespace's recovery session.
pub(super) fn set_recovery(
    conn: &Connection,
    namespace: &str,
    pid: Option<&str>,
    offset: Option<&str>,
) -> Result<(), StoreError> {
    let r = match pid {
        Some(pid) => conn
            .prepare_cached(
                "INSERT INTO recovery (namespace, pid, offset) VALUES (?1, ?2, ?3)
                 ON CONFLICT (namespace) DO UPDATE SET pid = excluded.pid, offset = excluded.offset",
            )
            .and_then(|mut st| st.execute(params![namespace, pid, offset])),
        None => conn
            .prepare_cached("DELETE FROM recovery WHERE namespace = ?1")
            .and_then(|mut st| st.execute([namespace])),
    };
    r.map(drop)
        .map_err(|e| StoreError::from_sqlite("recovery", e))
}

/// Attachments as one blob: each is a little-endian u32 length followed by its bytes.
pub(super) fn pack(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 4).sum());
    for p in parts {
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// The inverse of [`pack`]; a truncated blob yields the parts that are whole.
pub(super) fn unpack(mut blob: &[u8]) -> Vec<Vec<u8>> {
    let mut parts = Vec::new();
    while blob.len() >= 4 {
        let len = u32::from_le_bytes([blob[0], blob[1], blob[2], blob[3]]) as usize;
        blob = &blob[4..];
        if blob.len() < len {
            break;
        }
        parts.push(blob[..len].to_vec());
        blob = &blob[len..];
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u64) -> NewEntry {
        NewEntry {
            lane: Lane::Normal,
            namespace: "/".into(),
            event: "metric:recorded".into(),
            args: format!(r#"[{{"heartRate":{n},"note":"private-{n}"}}]"#),
            attachments: vec![b"ecg-private".to_vec()],
            want_ack: true,
            ttl: None,
            coalesce_key: None,
        }
    }

    #[test]
    fn an_encrypted_outbox_keeps_payloads_unreadable_and_needs_its_key() {
        let dir = std::env::temp_dir().join(format!("pl-db-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.db");
        let key = OutboxKey::generate().unwrap();
        // One entry from before the key was set, two after.
        let (conn, _, none) = open(Some(&path), Durability::Normal, None).unwrap();
        insert(&conn, &entry(1), 0, none.as_ref()).unwrap();
        drop(conn);
        let (conn, _, cipher) = open(Some(&path), Durability::Normal, Some(&key)).unwrap();
        for n in 2..=3 {
            insert(&conn, &entry(n), 0, cipher.as_ref()).unwrap();
        }
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        drop(conn);

        // On disk: the old entry as it was, the new ones sealed.
        let raw = std::fs::read(&path).unwrap();
        let has = |needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"private-1"));
        assert!(!has(b"private-2") && !has(b"private-3"));
        assert_eq!(raw.windows(11).filter(|w| w == b"ecg-private").count(), 1);

        // Without the key, or with another, the file does not open; nothing is touched.
        let needs_key = open(Some(&path), Durability::Normal, None).unwrap_err();
        assert!(matches!(needs_key, StoreError::Key(ref m) if m.contains("configure")));
        let other = OutboxKey::generate().unwrap();
        let wrong = open(Some(&path), Durability::Normal, Some(&other)).unwrap_err();
        assert!(matches!(wrong, StoreError::Key(ref m) if m.contains("not the one")));

        // With it, every entry reads back as written, in order.
        let (conn, snap, cipher) = open(Some(&path), Durability::Normal, Some(&key)).unwrap();
        assert_eq!(snap.count, 3);
        let got = fetch(&conn, Lane::Normal, 0, 10, 0, cipher.as_ref()).unwrap();
        let args: Vec<&str> = got.iter().map(|e| e.args.as_str()).collect();
        let want: Vec<String> = (1..=3).map(|n| entry(n).args).collect();
        assert_eq!(args, want);
        assert!(
            got.iter()
                .all(|e| e.attachments == vec![b"ecg-private".to_vec()])
        );

        // A sealed payload moved to another event, or altered, is refused as damage.
        conn.execute("UPDATE outbox SET event = 'other' WHERE seq = 2", [])
            .unwrap();
        let moved = fetch(&conn, Lane::Normal, 0, 10, 0, cipher.as_ref()).unwrap_err();
        assert!(matches!(moved, StoreError::Corrupt(ref m) if m.contains("entry 2")));
    }

    #[test]
    fn attachments_round_trip() {
        let parts = vec![vec![], vec![1, 2, 3], vec![0; 300]];
        assert_eq!(unpack(&pack(&parts)), parts);
        assert!(unpack(&[5, 0, 0, 0, 1]).is_empty(), "truncated blob");
    }

    #[test]
    fn opening_twice_migrates_once_and_flags_an_unclean_exit() {
        let dir = std::env::temp_dir().join(format!("pl-db-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.db");
        let (conn, snap, _) = open(Some(&path), Durability::Normal, None).unwrap();
        assert!(!snap.unclean);
        let id = snap.client_id;
        drop(conn); // no clean close recorded
        let (conn, snap, _) = open(Some(&path), Durability::Full, None).unwrap();
        assert!(snap.unclean, "a run that never closed the store is unclean");
        assert_eq!(snap.client_id, id, "the client id survives");
        let v: i32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        conn.execute_batch("PRAGMA user_version = 99").unwrap();
        drop(conn);
        assert!(matches!(
            open(Some(&path), Durability::Normal, None),
            Err(StoreError::Incompatible { found: 99, .. })
        ));
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
                        open(Some(&path), Durability::Normal, None)
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
        let err = open(Some(&path), Durability::Normal, None).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
