//! The embedded store: one SQLite file in WAL mode, shared safely by several processes.
//!
//! Every write runs in `BEGIN IMMEDIATE`, which takes the database's write lock before reading,
//! so two processes racing on the same request serialise: the second sees the first's result.
//! The schema version lives in `PRAGMA user_version`; [`MIGRATIONS`] bring older files forward.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::{Store, StoreError, UserRecord, WriteTx};
use crate::audit::{Event, EventKind, NewEvent};
use crate::request::{Request, State};
use crate::store::outbox_item::OutboxItem;

/// Schema migrations; entry `i` moves the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO meta (key, value) VALUES ('revision', 0), ('audit_count', 0);
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    roles TEXT NOT NULL,
    secret_base32 TEXT NOT NULL,
    enrolled_at TEXT NOT NULL,
    confirmed_at TEXT,
    mfa TEXT NOT NULL
);
CREATE TABLE requests (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    created_at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX requests_state ON requests (state);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    seq INTEGER NOT NULL,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    kind TEXT NOT NULL,
    request_id TEXT,
    data TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_request ON audit (request_id);
"#,
    r#"
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    next_at TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX outbox_next ON outbox (next_at);
"#,
];

/// How long a process waits for another's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The SQLite store.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn parse_ts(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("bad timestamp {s:?}: {e}")))
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        // Private before and after: an old file keeps its mode, a new one gets the umask's.
        crate::private_fs::secure_database(path)?;
        let mut conn = Connection::open(path)?;
        crate::private_fs::secure_database(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL lets readers (the TUI polling) run beside one writer.
        set_wal(&conn)?;
        // SQLite gives -wal and -shm the database's mode; make sure of it.
        crate::private_fs::secure_database(path)?;
        conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")?;
        migrate(&mut conn)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    /// The audit chain's last event `(seq, hash)`, `None` while it is empty.
    pub fn audit_head(&self) -> Result<Option<(u64, String)>, StoreError> {
        let row: Option<(i64, String)> = self
            .conn()
            .query_row(
                "SELECT seq, hash FROM audit ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row.map(|(seq, hash)| (seq.max(0) as u64, hash)))
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A poisoned lock only means another thread panicked mid-call; SQLite's own
        // transaction rollback keeps the data consistent, so carry on with the connection.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Switches the database to WAL. Several processes opening a new data dir at once race to
/// make that switch, and SQLite answers one that could deadlock with "database is locked" at
/// once, without waiting in its busy handler; so it is tried again until [`BUSY_TIMEOUT`].
fn set_wal(conn: &Connection) -> Result<(), StoreError> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0)) {
            Ok(_) => return Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let known = MIGRATIONS.len() as i64;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > known {
        return Err(StoreError::TooNew {
            found: version,
            known,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
    }
    tx.commit()?;
    Ok(())
}

fn request_from_row(row: &Row<'_>) -> rusqlite::Result<String> {
    row.get(0)
}

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<[Option<String>; 6]> {
    Ok([
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ])
}

fn decode_user(cols: [Option<String>; 6]) -> Result<UserRecord, StoreError> {
    let [name, roles, secret, enrolled, confirmed, mfa] = cols;
    let need = |v: Option<String>, what: &str| {
        v.ok_or_else(|| StoreError::Corrupt(format!("user row without {what}")))
    };
    Ok(UserRecord {
        name: need(name, "name")?,
        roles: from_json(&need(roles, "roles")?)?,
        secret_base32: need(secret, "secret")?,
        enrolled_at: parse_ts(&need(enrolled, "enrolled_at")?)?,
        confirmed_at: confirmed.as_deref().map(parse_ts).transpose()?,
        mfa: from_json(&need(mfa, "mfa")?)?,
    })
}

const USER_COLS: &str = "name, roles, secret_base32, enrolled_at, confirmed_at, mfa";
const AUDIT_COLS: &str = "seq, at, actor, kind, request_id, data, prev_hash, hash";

type AuditRow = (
    i64,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    String,
);

fn audit_from_row(r: &Row<'_>) -> rusqlite::Result<AuditRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

fn decode_event(row: AuditRow) -> Result<Event, StoreError> {
    let seq = row.0;
    decode_event_fields(row).map_err(|e| match e {
        StoreError::Corrupt(m) => StoreError::Corrupt(format!("audit event {seq}: {m}")),
        other => other,
    })
}

fn decode_event_fields(row: AuditRow) -> Result<Event, StoreError> {
    let (seq, at, actor, kind, request_id, data, prev_hash, hash) = row;
    Ok(Event {
        seq: u64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("bad seq {seq}")))?,
        at: parse_ts(&at)?,
        actor,
        kind: EventKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown audit kind {kind:?}")))?,
        request_id,
        data: from_json(&data)?,
        prev_hash,
        hash,
    })
}

fn query_requests(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<Request>, StoreError> {
    let mut stmt = conn.prepare(sql)?;
    let bodies = stmt
        .query_map(args, request_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    bodies.iter().map(|b| from_json(b)).collect()
}

fn query_users(conn: &Connection) -> Result<Vec<UserRecord>, StoreError> {
    let mut stmt = conn.prepare(&format!("SELECT {USER_COLS} FROM users ORDER BY name"))?;
    let rows = stmt
        .query_map([], user_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter().map(decode_user).collect()
}

fn query_events(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<Event>, StoreError> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt
        .query_map(args, audit_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter().map(decode_event).collect()
}

struct SqliteTx<'a> {
    tx: rusqlite::Transaction<'a>,
    /// Set by every write, so read-only transactions leave the revision alone.
    dirty: bool,
}

impl WriteTx for SqliteTx<'_> {
    fn request(&mut self, id: &str) -> Result<Option<Request>, StoreError> {
        let body: Option<String> = self
            .tx
            .query_row("SELECT body FROM requests WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?;
        body.as_deref().map(from_json).transpose()
    }

    fn put_request(&mut self, r: &Request) -> Result<(), StoreError> {
        self.dirty = true;
        self.tx.execute(
            "INSERT INTO requests (id, state, created_at, body) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(id) DO UPDATE SET state = excluded.state, body = excluded.body",
            params![r.id, r.state.as_str(), ts(r.created_at), to_json(r)?],
        )?;
        Ok(())
    }

    fn timed_requests(&mut self) -> Result<Vec<Request>, StoreError> {
        query_requests(
            &self.tx,
            "SELECT body FROM requests WHERE state IN ('pending', 'emergency', 'approved', 'active')",
            [],
        )
    }

    fn user(&mut self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = self
            .tx
            .query_row(
                &format!("SELECT {USER_COLS} FROM users WHERE name = ?1"),
                [name],
                user_from_row,
            )
            .optional()?;
        row.map(decode_user).transpose()
    }

    fn users(&mut self) -> Result<Vec<UserRecord>, StoreError> {
        query_users(&self.tx)
    }

    fn put_user(&mut self, u: &UserRecord) -> Result<(), StoreError> {
        self.dirty = true;
        self.tx.execute(
            &format!("INSERT OR REPLACE INTO users ({USER_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
            params![
                u.name,
                to_json(&u.roles)?,
                u.secret_base32,
                ts(u.enrolled_at),
                u.confirmed_at.map(ts),
                to_json(&u.mfa)?
            ],
        )?;
        Ok(())
    }

    fn append(&mut self, e: NewEvent, at: DateTime<Utc>) -> Result<Event, StoreError> {
        self.dirty = true;
        let head: Option<(i64, String)> = self
            .tx
            .query_row(
                "SELECT seq, hash FROM audit ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let prev = head.as_ref().map(|(s, h)| (*s as u64, h.as_str()));
        let ev = Event::chain(prev, e, at);
        self.tx.execute(
            &format!("INSERT INTO audit ({AUDIT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
            params![
                ev.seq as i64,
                ts(ev.at),
                ev.actor,
                ev.kind.as_str(),
                ev.request_id,
                to_json(&ev.data)?,
                ev.prev_hash,
                ev.hash
            ],
        )?;
        self.tx.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'audit_count'",
            [ev.seq as i64],
        )?;
        Ok(ev)
    }

    fn enqueue(&mut self, item: &OutboxItem) -> Result<(), StoreError> {
        self.dirty = true;
        self.tx.execute(
            "INSERT INTO outbox (id, created_at, next_at, attempts, body) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                item.id,
                ts(item.created_at),
                ts(item.next_at),
                item.attempts,
                to_json(item)?
            ],
        )?;
        Ok(())
    }

    fn outbox_len(&mut self) -> Result<usize, StoreError> {
        let n: i64 = self
            .tx
            .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))?;
        Ok(n.max(0) as usize)
    }

    fn outbox_remove(&mut self, id: &str) -> Result<(), StoreError> {
        self.dirty = true;
        self.tx.execute("DELETE FROM outbox WHERE id = ?1", [id])?;
        Ok(())
    }
}

impl Store for SqliteStore {
    fn write<T>(
        &self,
        mut f: impl FnMut(&mut dyn WriteTx) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut stx = SqliteTx { tx, dirty: false };
        let out = f(&mut stx)?;
        if stx.dirty {
            stx.tx.execute(
                "UPDATE meta SET value = value + 1 WHERE key = 'revision'",
                [],
            )?;
        }
        stx.tx.commit()?;
        Ok(out)
    }

    fn request(&self, id: &str) -> Result<Option<Request>, StoreError> {
        let conn = self.conn();
        Ok(
            query_requests(&conn, "SELECT body FROM requests WHERE id = ?1", [id])?
                .into_iter()
                .next(),
        )
    }

    fn requests(&self, state: Option<State>) -> Result<Vec<Request>, StoreError> {
        let conn = self.conn();
        match state {
            Some(s) => query_requests(
                &conn,
                "SELECT body FROM requests WHERE state = ?1 ORDER BY created_at DESC, id",
                [s.as_str()],
            ),
            None => query_requests(
                &conn,
                "SELECT body FROM requests ORDER BY created_at DESC, id",
                [],
            ),
        }
    }

    fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        query_users(&self.conn())
    }

    fn audit_events(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        query_events(
            &self.conn(),
            &format!("SELECT {AUDIT_COLS} FROM audit WHERE seq > ?1 ORDER BY id LIMIT ?2"),
            params![after as i64, limit as i64],
        )
    }

    fn audit_for_request(&self, id: &str) -> Result<Vec<Event>, StoreError> {
        query_events(
            &self.conn(),
            &format!("SELECT {AUDIT_COLS} FROM audit WHERE request_id = ?1 ORDER BY id"),
            [id],
        )
    }

    fn audit_all(&self) -> Result<(Vec<Event>, u64), StoreError> {
        let mut conn = self.conn();
        // One read transaction so the count and the rows agree.
        let tx = conn.transaction()?;
        let events = query_events(
            &tx,
            &format!("SELECT {AUDIT_COLS} FROM audit ORDER BY id"),
            [],
        )?;
        let count: i64 = tx.query_row(
            "SELECT value FROM meta WHERE key = 'audit_count'",
            [],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok((events, count.max(0) as u64))
    }

    fn outbox_due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT body FROM outbox WHERE next_at <= ?1 ORDER BY created_at, id LIMIT ?2",
        )?;
        let bodies = stmt
            .query_map(params![ts(now), limit as i64], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        bodies.iter().map(|b| from_json(b)).collect()
    }

    fn outbox_update(&self, item: &OutboxItem, expect: u32) -> Result<bool, StoreError> {
        let changed = self.conn().execute(
            "UPDATE outbox SET next_at = ?1, attempts = ?2, body = ?3 WHERE id = ?4 AND attempts = ?5",
            params![
                ts(item.next_at),
                item.attempts,
                to_json(item)?,
                item.id,
                expect
            ],
        )?;
        Ok(changed == 1)
    }

    fn outbox_done(&self, id: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM outbox WHERE id = ?1", [id])?;
        Ok(())
    }

    fn revision(&self) -> Result<u64, StoreError> {
        let v: i64 =
            self.conn()
                .query_row("SELECT value FROM meta WHERE key = 'revision'", [], |r| {
                    r.get(0)
                })?;
        Ok(v.max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        (dir, s)
    }

    #[test]
    fn schema_is_versioned_and_reopens() {
        let (dir, s) = open();
        drop(s);
        let s = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let v: i64 = s
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        let mode: String = s
            .conn()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn newer_schema_is_refused() {
        let (dir, s) = open();
        s.conn().pragma_update(None, "user_version", 99).unwrap();
        drop(s);
        assert!(matches!(
            SqliteStore::open(&dir.path().join("s.db")),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }

    // Chain, revision and rollback: the store contract in tests/foundation/store_dynamo.rs runs on both
    // stores.
}
