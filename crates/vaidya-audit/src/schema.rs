//! The two SQLite databases beside the journal, their schemas and connection settings.
//!
//! `audit.db` (kept; in the backups):
//! - `checkpoint(tree_size, time_ms, note, edge, seg, off, last_leaf, last_time_ms)`: signed tree
//!   heads (c2sp signed notes), each with what a restarted writer needs to continue from it
//!   without rereading the journal: the Merkle tree's right edge, where the journal ends at that
//!   size, and the last entry's leaf hash and time. `verify` recomputes all of these.
//! - `inbox(id, time_ms, user, json, rejected)`: events left by other processes for the writer
//!   (see [`crate::inbox`]); not part of the ledger.
//!
//! The report indexes are files beside the journal (see `index`).
//!
//! Triggers refuse UPDATE and DELETE on `checkpoint` and rewriting inbox events: the software
//! never changes what it has recorded (someone with write access to the files can; `verify` is
//! what detects that).

use rusqlite::Connection;
use std::path::Path;

/// Version 3: the entries moved from a `ledger` table into the journal files.
pub const SCHEMA_VERSION: i64 = 3;

const AUDIT_SCHEMA: &str = r#"
CREATE TABLE checkpoint (
    tree_size INTEGER PRIMARY KEY,
    time_ms INTEGER NOT NULL,
    note TEXT NOT NULL,
    edge BLOB NOT NULL,
    seg INTEGER NOT NULL,
    off INTEGER NOT NULL,
    last_leaf BLOB NOT NULL,
    last_time_ms INTEGER NOT NULL
);
CREATE TRIGGER checkpoint_no_update BEFORE UPDATE ON checkpoint BEGIN SELECT RAISE(ABORT, 'the audit ledger is append-only'); END;
CREATE TRIGGER checkpoint_no_delete BEFORE DELETE ON checkpoint BEGIN SELECT RAISE(ABORT, 'the audit ledger is append-only'); END;
CREATE TABLE inbox (
    id INTEGER PRIMARY KEY,
    time_ms INTEGER NOT NULL,
    user TEXT NOT NULL,
    json BLOB NOT NULL,
    rejected TEXT
);
CREATE TRIGGER inbox_no_update BEFORE UPDATE OF id, time_ms, user, json ON inbox BEGIN SELECT RAISE(ABORT, 'inbox events are not rewritten'); END;
"#;


pub(crate) fn open_audit_db(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // Checkpoints are written about once a second and inbox rows rarely: every commit is flushed.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    init(&conn, AUDIT_SCHEMA, SCHEMA_VERSION, "audit database")?;
    Ok(conn)
}

fn init(conn: &Connection, schema: &str, want: i64, what: &str) -> rusqlite::Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version == 0 {
        conn.execute_batch(&format!("BEGIN IMMEDIATE; {schema} PRAGMA user_version = {want}; COMMIT;"))?;
    } else if version != want {
        let hint = if what == "audit database" && version < 3 {
            " (it was written by a Vaidya that kept audit entries in SQLite; export it with that version's \
             `vaidya audit export`, then move the audit directory aside)"
        } else {
            ""
        };
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISMATCH),
            Some(format!("{what} schema version {version} is not {want}{hint}")),
        ));
    }
    Ok(())
}

pub(crate) fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.pragma_update(None, "cache_size", -16_384)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}
