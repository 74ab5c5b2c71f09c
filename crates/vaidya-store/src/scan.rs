//! Whole-type scans of current versions, for bulk export: every live resource of a type (or
//! those updated since a time), streamed to a callback in one read snapshot, without building
//! a list. Bulk Data `$export` writes them to NDJSON as it goes, so memory stays flat whatever
//! the size of the type.

use crate::StoreError;
use rusqlite::{Connection, params};
use vaidya_ledger::Entry;

/// Run `f` inside one read transaction: every read it makes sees the same snapshot (SQLite
/// WAL), so an export of many types is consistent as of one moment even while writes go on.
/// The snapshot starts at the first read; `f` gets the Unix milliseconds just after it began,
/// at or after the time of every version it can see (what `$export` calls transactionTime).
pub fn in_snapshot<T, E: From<StoreError>>(conn: &Connection, f: impl FnOnce(&Connection, i64) -> Result<T, E>) -> Result<T, E> {
    let tx = conn.unchecked_transaction().map_err(StoreError::from)?;
    // Any read starts the snapshot.
    tx.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(())).map_err(StoreError::from)?;
    let at = crate::now_ms();
    let out = f(&tx, at)?;
    tx.finish().map_err(StoreError::from)?;
    Ok(out)
}

/// Whether any resource of `rtype` exists (live or deleted); cheap (one index probe).
pub fn type_present(conn: &Connection, rtype: &str) -> Result<bool, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT 1 FROM resource WHERE rtype = ?1 LIMIT 1")?;
    Ok(stmt.exists([rtype])?)
}

/// Call `f(id, version, updated_ms, content)` for every live (not deleted) current resource of
/// `rtype` last updated at or after `since_ms`, in storage order. `f` returns `false` to stop.
/// Returns how many were visited.
pub fn current_of_type<E: From<StoreError>>(
    conn: &Connection,
    rtype: &str,
    since_ms: Option<i64>,
    mut f: impl FnMut(&str, u64, i64, &[u8]) -> Result<bool, E>,
) -> Result<u64, E> {
    let sql = "SELECT r.updated_ms, l.entry FROM resource r JOIN ledger l ON l.seq = r.seq \
               WHERE r.rtype = ?1 AND r.updated_ms >= ?2 AND r.deleted = 0";
    let mut stmt = conn.prepare_cached(sql).map_err(StoreError::from)?;
    let mut rows = stmt.query(params![rtype, since_ms.unwrap_or(i64::MIN)]).map_err(StoreError::from)?;
    let mut n = 0u64;
    while let Some(row) = rows.next().map_err(StoreError::from)? {
        let updated_ms: i64 = row.get(0).map_err(StoreError::from)?;
        let bytes = row.get_ref(1).map_err(StoreError::from)?.as_blob().map_err(|e| StoreError::Corrupt(format!("ledger entry: {e}")))?;
        let entry = Entry::decode(bytes).map_err(|e| StoreError::Corrupt(format!("ledger entry of a current {rtype}: {e}")))?;
        n += 1;
        if !f(&entry.resource_id, entry.version, updated_ms, &entry.content)? {
            break;
        }
    }
    Ok(n)
}
