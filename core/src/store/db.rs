//! Every statement the store runs on an open connection: the outbox, subscriptions, seen ids
//! and recovery sessions. Synchronous on purpose: only the store thread calls it, and unit
//! tests drive it directly.

use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};

use super::{
    blob::{pack, unpack},
    cipher::{self, Cipher},
    command::{NewEntry, StoredEntry, StoredSubscription},
    error::StoreError,
};
use crate::outbox::Priority;

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

/// The outbox's entry count and payload bytes, as stored.
pub(super) fn totals(conn: &Connection) -> Result<(u64, u64), StoreError> {
    conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM outbox",
        [],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )
    .map_err(|e| StoreError::from_sqlite("totals", e))
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

/// Inserts an entry as `seq` (the engine numbered it), first removing an undelivered one
/// with the same coalescing key. Returns the entry it replaced (`seq`, `bytes`), if any.
pub(super) fn insert(
    conn: &Connection,
    seq: u64,
    e: &NewEntry,
    now_ms: i64,
    cipher: Option<&Cipher>,
) -> Result<Option<(u64, u64)>, StoreError> {
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
        "INSERT INTO outbox (seq, lane, namespace, event, args, attachments, want_ack,
                             created_ms, expires_ms, coalesce_key, bytes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .map_err(sql)?
    .execute(params![
        seq as i64,
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
    Ok(replaced)
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

const COLUMNS: &str =
    "seq, lane, namespace, event, args, attachments, want_ack, created_ms, expires_ms";

fn row_to_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEntry> {
    let blob: Option<Vec<u8>> = r.get(5)?;
    Ok(StoredEntry {
        seq: r.get::<_, i64>(0)? as u64,
        lane: Priority::from_i64(r.get(1)?),
        namespace: r.get(2)?,
        event: r.get(3)?,
        args: r.get(4)?,
        attachments: blob.map(|b| unpack(&b)).unwrap_or_default(),
        want_ack: r.get(6)?,
        created_ms: r.get(7)?,
        expires_ms: r.get(8)?,
    })
}

/// Up to `limit` entries of `lane` after `after`, in order, skipping expired ones.
pub(super) fn fetch(
    conn: &Connection,
    lane: Priority,
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

/// Deletes every entry; returns their sequence numbers.
pub(super) fn clear(conn: &Connection) -> Result<Vec<u64>, StoreError> {
    let sql = |e| StoreError::from_sqlite("clear", e);
    conn.prepare_cached("DELETE FROM outbox RETURNING seq")
        .map_err(sql)?
        .query_map([], |r| Ok(r.get::<_, i64>(0)? as u64))
        .map_err(sql)?
        .collect::<Result<_, _>>()
        .map_err(sql)
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
    ids: &[(Arc<str>, i64)],
    window: usize,
    min_ms: i64,
) -> Result<(), StoreError> {
    let sql = |err| StoreError::from_sqlite("seen", err);
    let mut stmt = conn
        .prepare_cached("INSERT OR REPLACE INTO seen (id, seen_ms) VALUES (?1, ?2)")
        .map_err(sql)?;
    for (id, at) in ids {
        stmt.execute(params![&**id, at]).map_err(sql)?;
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

#[cfg(test)]
mod tests {
    use super::{super::schema::open, *};
    use crate::{config::Durability, store::cipher::OutboxKey};

    fn entry(n: u64) -> NewEntry {
        NewEntry {
            lane: Priority::Normal,
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
        let (conn, _, none) = open(Some(&path), Durability::Normal, None, false).unwrap();
        insert(&conn, 1, &entry(1), 0, none.as_ref()).unwrap();
        drop(conn);
        let (conn, _, cipher) = open(Some(&path), Durability::Normal, Some(&key), false).unwrap();
        for n in 2..=3 {
            insert(&conn, n, &entry(n), 0, cipher.as_ref()).unwrap();
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
        let needs_key = open(Some(&path), Durability::Normal, None, false).unwrap_err();
        assert!(matches!(needs_key, StoreError::Key(ref m) if m.contains("configure")));
        let other = OutboxKey::generate().unwrap();
        let wrong = open(Some(&path), Durability::Normal, Some(&other), false).unwrap_err();
        assert!(matches!(wrong, StoreError::Key(ref m) if m.contains("not the one")));

        // With it, every entry reads back as written, in order.
        let (conn, snap, cipher) =
            open(Some(&path), Durability::Normal, Some(&key), false).unwrap();
        assert_eq!(snap.count, 3);
        let got = fetch(&conn, Priority::Normal, 0, 10, 0, cipher.as_ref()).unwrap();
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
        let moved = fetch(&conn, Priority::Normal, 0, 10, 0, cipher.as_ref()).unwrap_err();
        assert!(matches!(moved, StoreError::Corrupt(ref m) if m.contains("entry 2")));
    }
}
