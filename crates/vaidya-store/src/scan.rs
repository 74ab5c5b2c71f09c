//! Whole-type scans of current versions, for bulk export: every live resource of a type (or
//! those updated since a time), streamed to a callback in one read snapshot, without building
//! a list. Bulk Data `$export` writes them to NDJSON as it goes, so memory stays flat whatever
//! the size of the type.

use crate::StoreError;
use crate::sql::{Db, Dialect};
use crate::sql_params;
use vaidya_ledger::Entry;

/// Run `f` inside one read transaction: every read it makes sees the same snapshot (SQLite
/// WAL; PostgreSQL's repeatable read), so an export of many types is consistent as of one
/// moment even while writes go on. The snapshot starts at the first read; `f` gets the Unix
/// milliseconds just after it began, at or after the time of every version it can see (what
/// `$export` calls transactionTime).
pub fn in_snapshot<D: Db, T, E: From<StoreError>>(conn: &D, f: impl FnOnce(&D, i64) -> Result<T, E>) -> Result<T, E> {
    conn.execute_batch(match conn.dialect() {
        Dialect::Sqlite => "BEGIN",
        Dialect::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    })?;
    let out = (|| {
        // Any read starts the snapshot.
        conn.query_value::<i64>("SELECT count(*) FROM checkpoint WHERE tree_size < 0", &[])?;
        let at = crate::now_ms();
        f(conn, at)
    })();
    // Read-only: ending it either way changes nothing.
    let ended = conn.execute_batch("COMMIT");
    let out = out?;
    ended?;
    Ok(out)
}

/// Whether any resource of `rtype` exists (live or deleted); cheap (one index probe).
pub fn type_present(conn: &impl Db, rtype: &str) -> Result<bool, StoreError> {
    Ok(conn.query_value::<i64>("SELECT 1 FROM resource WHERE rtype = ?1 LIMIT 1", &sql_params![rtype])?.is_some())
}

/// Call `f(id, version, updated_ms, content)` for every live (not deleted) current resource of
/// `rtype` last updated at or after `since_ms`, in storage order. `f` returns `false` to stop.
/// Returns how many were visited. (On PostgreSQL the rows of the type are fetched before the
/// first call: export there holds one type's rows in memory.)
pub fn current_of_type<E: From<StoreError>>(
    conn: &impl Db,
    rtype: &str,
    since_ms: Option<i64>,
    mut f: impl FnMut(&str, u64, i64, &[u8]) -> Result<bool, E>,
) -> Result<u64, E> {
    let sql = "SELECT r.updated_ms, l.entry FROM resource r JOIN ledger l ON l.seq = r.seq \
               WHERE r.rtype = ?1 AND r.updated_ms >= ?2 AND r.deleted = 0";
    let mut n = 0u64;
    let mut stopped = false;
    let mut failed: Option<E> = None;
    conn.for_each_row(sql, &sql_params![rtype, since_ms.unwrap_or(i64::MIN)], &mut |row| {
        if stopped {
            return Ok(());
        }
        let updated_ms: i64 = row.get(0)?;
        let bytes: Vec<u8> = row.get(1)?;
        let entry = Entry::decode(&bytes).map_err(|e| StoreError::Corrupt(format!("ledger entry of a current {rtype}: {e}")))?;
        n += 1;
        match f(&entry.resource_id, entry.version, updated_ms, &entry.content) {
            Ok(true) => {}
            Ok(false) => stopped = true,
            Err(e) => {
                failed = Some(e);
                stopped = true;
            }
        }
        Ok(())
    })?;
    match failed {
        Some(e) => Err(e),
        None => Ok(n),
    }
}
