//! Opening SQLite connections with the settings Vaidya relies on.

use rusqlite::{Connection, OpenFlags};
use std::path::Path;

/// The writer's page cache: 256 MiB (a negative `cache_size` is in KiB).
pub const WRITER_CACHE_KIB: i64 = -262_144;

/// The writer: WAL, and `synchronous=FULL` so that a commit is on disk (fsync) before the
/// client hears "created". Group commit spreads that fsync over every job in a batch.
pub fn open_writer(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    // Page size stays SQLite's 4 KiB: 16 KiB pages cut bulk-import writer CPU by ~8%, but a
    // small transaction then writes four times the bytes to the WAL for each page it dirties,
    // which is what limits many small concurrent transactions.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "cache_size", WRITER_CACHE_KIB)?;
    // Checkpoint the WAL into the database every ~80 MiB (5,000 pages) rather than every few
    // MiB: pages that change often (index interiors) are then copied once per checkpoint, not
    // many times (measured: checkpointing every 1,000 4 KiB pages cost ~20% more writer CPU).
    conn.pragma_update(None, "wal_autocheckpoint", 5_000)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}

/// A reader: never blocks the writer, sees the last committed state at the start of each read.
pub fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.pragma_update(None, "cache_size", -16_384)?; // 16 MiB each
    conn.pragma_update(None, "mmap_size", 268_435_456)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}
