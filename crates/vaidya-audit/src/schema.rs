//! The audit database's schema and connection settings.
//!
//! - `ledger(seq, entry)`: canonical entry bytes ([`vaidya_ledger::Entry::encode`]), seq from 1.
//! - `tree_hash(idx, hash)`: the RFC 6962 tree's stored hashes in tlog order (entry `seq` is
//!   tree record `seq - 1`), exactly as in the data database.
//! - `checkpoint(tree_size, time_ms, note)`: signed tree heads (c2sp signed notes).
//! - `audit_patient(patient, seq, time_ms)`, `audit_user(user, seq, time_ms)`: report indexes,
//!   projections of the entries (`time_ms` is the entry's commit time); `verify` recomputes
//!   them. The writer does not insert into them event by event: each event's rows are first
//!   appended, in the entry's own transaction, to `audit_patient_new(seq, patient, time_ms)` /
//!   `audit_user_new(seq, user, time_ms)`, which are in `seq` order, so a commit dirties only the
//!   last page or two of each instead of one random page per event of a patient- or
//!   user-ordered index (that made ~15 KB of disk writes per 1.7 KB event). Every
//!   [`crate::MERGE_EVENTS`] events, or when the writer is idle, the staged rows are moved into
//!   the ordered indexes in one sorted pass. Reports read both.
//!
//! - `inbox(id, time_ms, user, json, rejected)`: events left by other processes for the writer
//!   (see [`crate::inbox`]); not part of the ledger.
//!
//! Triggers refuse UPDATE and DELETE on every table except DELETE on the two staging tables (the
//! merge) and on the inbox (a row is deleted in the transaction that appends it): the software never changes what it has recorded (someone with write access to the
//! file can drop them; `verify` is what detects that).

use rusqlite::Connection;
use std::path::Path;

pub const SCHEMA_VERSION: i64 = 2;

/// Version 2: `inbox`, where processes other than the ledger's writer (the `vaidya` command
/// line while the server runs) leave events for the writer to append (see [`crate::inbox`]).
/// `rejected` is set (and the row kept) when a row cannot become an entry. Its rows are deleted
/// in the transaction that appends them, so each is appended exactly once.
pub const INBOX: &str = r#"
CREATE TABLE inbox (
    id INTEGER PRIMARY KEY,
    time_ms INTEGER NOT NULL,
    user TEXT NOT NULL,
    json BLOB NOT NULL,
    rejected TEXT
);
CREATE TRIGGER inbox_no_update BEFORE UPDATE OF id, time_ms, user, json ON inbox BEGIN SELECT RAISE(ABORT, 'inbox events are not rewritten'); END;
"#;

pub const SCHEMA: &str = r#"
CREATE TABLE ledger (
    seq INTEGER PRIMARY KEY,
    entry BLOB NOT NULL
);
CREATE TABLE tree_hash (
    idx INTEGER PRIMARY KEY,
    hash BLOB NOT NULL
);
CREATE TABLE checkpoint (
    tree_size INTEGER PRIMARY KEY,
    time_ms INTEGER NOT NULL,
    note TEXT NOT NULL
);
CREATE TABLE audit_patient (
    patient TEXT NOT NULL,
    seq INTEGER NOT NULL,
    time_ms INTEGER NOT NULL,
    PRIMARY KEY (patient, seq)
) WITHOUT ROWID;
CREATE TABLE audit_user (
    user TEXT NOT NULL,
    seq INTEGER NOT NULL,
    time_ms INTEGER NOT NULL,
    PRIMARY KEY (user, seq)
) WITHOUT ROWID;
CREATE TABLE audit_patient_new (
    seq INTEGER NOT NULL,
    patient TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    PRIMARY KEY (seq, patient)
) WITHOUT ROWID;
CREATE TABLE audit_user_new (
    seq INTEGER PRIMARY KEY,
    user TEXT NOT NULL,
    time_ms INTEGER NOT NULL
);
"#;

/// Tables whose rows are never updated or deleted.
pub const TABLES: [&str; 5] = ["ledger", "tree_hash", "checkpoint", "audit_patient", "audit_user"];
/// Staging tables: rows are deleted only when moved into the ordered indexes.
pub const STAGING_TABLES: [&str; 2] = ["audit_patient_new", "audit_user_new"];

pub(crate) fn open_writer(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // NORMAL: a commit writes the WAL without waiting for the disk; the writer's sync thread
    // (see `writer::Syncer`) fsyncs the WAL and only then acknowledges the events, so that the
    // next batch is committed while the disk flushes the previous ones. Checkpoints still sync
    // the WAL before copying it into the database and the database before the WAL is reused.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "cache_size", -65_536)?; // 64 MiB
    conn.pragma_update(None, "wal_autocheckpoint", 5_000)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(64);
    init(&conn)?;
    Ok(conn)
}

fn init(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version == 0 {
        let mut sql = String::from("BEGIN;");
        sql.push_str(SCHEMA);
        for t in TABLES {
            sql.push_str(&format!(
                "CREATE TRIGGER {t}_no_update BEFORE UPDATE ON {t} BEGIN SELECT RAISE(ABORT, 'the audit ledger is append-only'); END;
                 CREATE TRIGGER {t}_no_delete BEFORE DELETE ON {t} BEGIN SELECT RAISE(ABORT, 'the audit ledger is append-only'); END;"
            ));
        }
        for t in STAGING_TABLES {
            sql.push_str(&format!(
                "CREATE TRIGGER {t}_no_update BEFORE UPDATE ON {t} BEGIN SELECT RAISE(ABORT, 'the audit ledger is append-only'); END;"
            ));
        }
        sql.push_str(INBOX);
        sql.push_str(&format!("PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"));
        conn.execute_batch(&sql)?;
    } else if version == 1 {
        conn.execute_batch(&format!("BEGIN IMMEDIATE; {INBOX} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"))?;
    } else if version != SCHEMA_VERSION {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISMATCH),
            Some(format!("audit database schema version {version} is not {SCHEMA_VERSION}")),
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
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}
