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
//! `index.db` (derived; rebuilt from the journal if deleted): the report indexes
//! `audit_patient(patient, seq, seg, off, time_ms)` and `audit_user(user, seq, seg, off,
//! time_ms)`, projections of the entries with where each entry's frame is, and `indexed(seq,
//! seg, off)`: the entries up to `seq` are indexed and the journal after them starts at
//! (`seg`, `off`). Rows are appended in `seq` order to `audit_patient_new` / `audit_user_new`
//! and moved into the ordered tables every [`crate::MERGE_EVENTS`] events, so a write dirties
//! the last pages of the staging tables instead of one random page per event. Reports read both
//! and scan the journal after `indexed` (the index trails the journal by about a second).
//!
//! Triggers refuse UPDATE and DELETE on `checkpoint` and rewriting inbox events: the software
//! never changes what it has recorded (someone with write access to the files can; `verify` is
//! what detects that).

use rusqlite::Connection;
use std::path::Path;

/// Version 3: the entries moved from a `ledger` table into the journal files.
pub const SCHEMA_VERSION: i64 = 3;
pub const INDEX_SCHEMA_VERSION: i64 = 1;

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

const INDEX_SCHEMA: &str = r#"
CREATE TABLE audit_patient (
    patient TEXT NOT NULL,
    seq INTEGER NOT NULL,
    seg INTEGER NOT NULL,
    off INTEGER NOT NULL,
    time_ms INTEGER NOT NULL,
    PRIMARY KEY (patient, seq)
) WITHOUT ROWID;
CREATE TABLE audit_user (
    user TEXT NOT NULL,
    seq INTEGER NOT NULL,
    seg INTEGER NOT NULL,
    off INTEGER NOT NULL,
    time_ms INTEGER NOT NULL,
    PRIMARY KEY (user, seq)
) WITHOUT ROWID;
CREATE TABLE audit_patient_new (
    seq INTEGER NOT NULL,
    patient TEXT NOT NULL,
    seg INTEGER NOT NULL,
    off INTEGER NOT NULL,
    time_ms INTEGER NOT NULL,
    PRIMARY KEY (seq, patient)
) WITHOUT ROWID;
CREATE TABLE audit_user_new (
    seq INTEGER PRIMARY KEY,
    user TEXT NOT NULL,
    seg INTEGER NOT NULL,
    off INTEGER NOT NULL,
    time_ms INTEGER NOT NULL
);
CREATE TABLE indexed (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    seq INTEGER NOT NULL,
    seg INTEGER NOT NULL,
    off INTEGER NOT NULL
);
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

pub(crate) fn open_index_db(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // Derived data: a commit lost in a power cut is rebuilt from the journal at the next start.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "cache_size", -65_536)?; // 64 MiB
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    init(&conn, INDEX_SCHEMA, INDEX_SCHEMA_VERSION, "audit index")?;
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
