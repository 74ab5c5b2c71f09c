//! Reads of current and past versions, and of history, from the ledger and its projections.

use crate::StoreError;
use crate::sql::Db;
use crate::sql_params;
use vaidya_ledger::{Entry, Op};

/// One stored version of a resource.
#[derive(Debug, Clone)]
pub struct Stored {
    pub version: u64,
    pub seq: u64,
    pub time_ms: i64,
    pub deleted: bool,
    /// Who wrote this version (the ledger entry's author).
    pub author: String,
    /// The resource JSON as stored (empty for a deletion).
    pub content: Vec<u8>,
}

/// One entry of a `_history` listing.
#[derive(Debug, Clone)]
pub struct HistoryItem {
    pub resource_type: String,
    pub id: String,
    pub stored: Stored,
}

pub fn entry(conn: &impl Db, seq: u64) -> Result<Entry, StoreError> {
    let bytes: Vec<u8> = conn
        .query_value("SELECT entry FROM ledger WHERE seq = ?1", &sql_params![seq as i64])?
        .ok_or_else(|| StoreError::Corrupt(format!("ledger entry {seq} is missing")))?;
    Entry::decode(&bytes).map_err(|e| StoreError::Corrupt(format!("ledger entry {seq}: {e}")))
}

fn stored_from(entry: Entry) -> Stored {
    Stored {
        version: entry.version,
        seq: entry.seq,
        time_ms: entry.time_ms,
        deleted: entry.op == Op::Delete,
        author: entry.author,
        content: entry.content,
    }
}

/// The current version (which may be a deletion), or `None` if the resource never existed.
pub fn current(conn: &impl Db, rtype: &str, rid: &str) -> Result<Option<Stored>, StoreError> {
    // One statement: on PostgreSQL each is a round trip.
    let found: Option<(i64, Option<Vec<u8>>)> = conn.query_opt(
        "SELECT r.seq, l.entry FROM resource r LEFT JOIN ledger l ON l.seq = r.seq WHERE r.rtype = ?1 AND r.rid = ?2",
        &sql_params![rtype, rid],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let Some((seq, bytes)) = found else { return Ok(None) };
    let bytes = bytes.ok_or_else(|| StoreError::Corrupt(format!("ledger entry {seq} is missing")))?;
    let entry = Entry::decode(&bytes).map_err(|e| StoreError::Corrupt(format!("ledger entry {seq}: {e}")))?;
    Ok(Some(stored_from(entry)))
}

pub fn version(conn: &impl Db, rtype: &str, rid: &str, version: u64) -> Result<Option<Stored>, StoreError> {
    let seq: Option<i64> = conn
        .query_value("SELECT seq FROM history WHERE rtype = ?1 AND rid = ?2 AND version = ?3", &sql_params![rtype, rid, version as i64])?;
    seq.map(|s| entry(conn, s as u64).map(stored_from)).transpose()
}

/// Which history to list.
pub enum HistoryScope<'a> {
    System,
    Type(&'a str),
    Instance(&'a str, &'a str),
}

/// History newest first, `count` items after skipping `offset`, of entries at or after
/// `since_ms` (with the total of such entries).
pub fn history(
    conn: &impl Db,
    scope: HistoryScope<'_>,
    since_ms: Option<i64>,
    count: usize,
    offset: usize,
) -> Result<(Vec<HistoryItem>, u64), StoreError> {
    let from_seq = match since_ms {
        Some(ms) => first_seq_at_or_after(conn, ms)? as i64,
        None => 0,
    };
    let (seqs, total): (Vec<i64>, i64) = match scope {
        HistoryScope::System => (
            collect(
                conn,
                "SELECT seq FROM ledger WHERE seq >= ?1 ORDER BY seq DESC LIMIT ?2 OFFSET ?3",
                &sql_params![from_seq, count as i64, offset as i64],
            )?,
            count_of(conn, "SELECT count(*) FROM ledger WHERE seq >= ?1", &sql_params![from_seq])?,
        ),
        HistoryScope::Type(t) => (
            collect(
                conn,
                "SELECT seq FROM history WHERE rtype = ?1 AND seq >= ?2 ORDER BY seq DESC LIMIT ?3 OFFSET ?4",
                &sql_params![t, from_seq, count as i64, offset as i64],
            )?,
            count_of(conn, "SELECT count(*) FROM history WHERE rtype = ?1 AND seq >= ?2", &sql_params![t, from_seq])?,
        ),
        HistoryScope::Instance(t, id) => (
            collect(
                conn,
                "SELECT seq FROM history WHERE rtype = ?1 AND rid = ?2 AND seq >= ?3 ORDER BY version DESC LIMIT ?4 OFFSET ?5",
                &sql_params![t, id, from_seq, count as i64, offset as i64],
            )?,
            count_of(conn, "SELECT count(*) FROM history WHERE rtype = ?1 AND rid = ?2 AND seq >= ?3", &sql_params![t, id, from_seq])?,
        ),
    };
    let mut items = Vec::with_capacity(seqs.len());
    for seq in seqs {
        let e = entry(conn, seq as u64)?;
        items.push(HistoryItem { resource_type: e.resource_type.clone(), id: e.resource_id.clone(), stored: stored_from(e) });
    }
    Ok((items, total as u64))
}

/// Every version of resources of `rtype` written in `[from_ms, until_ms)`, oldest first, at
/// most `limit` (for day reports: the ledger's order is the order things happened).
pub fn type_versions_between(conn: &impl Db, rtype: &str, from_ms: i64, until_ms: i64, limit: usize) -> Result<Vec<Stored>, StoreError> {
    let from = first_seq_at_or_after(conn, from_ms)? as i64;
    let until = first_seq_at_or_after(conn, until_ms)? as i64;
    let seqs = collect(
        conn,
        "SELECT seq FROM history WHERE rtype = ?1 AND seq >= ?2 AND seq < ?3 ORDER BY seq LIMIT ?4",
        &sql_params![rtype, from, until, limit as i64],
    )?;
    seqs.into_iter().map(|s| entry(conn, s as u64).map(stored_from)).collect()
}

/// The first entry committed at or after `ms`. Entry times never decrease along the ledger
/// (the writer keeps them monotonic), so a binary search over sequence numbers finds it.
pub fn first_seq_at_or_after(conn: &impl Db, ms: i64) -> Result<u64, StoreError> {
    let (mut lo, mut hi) = (1u64, ledger_size(conn)? + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if entry(conn, mid)?.time_ms < ms {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

fn collect(conn: &impl Db, sql: &str, p: &[crate::sql::Value<'_>]) -> Result<Vec<i64>, StoreError> {
    conn.query_map(sql, p, |r| r.get(0))
}

fn count_of(conn: &impl Db, sql: &str, p: &[crate::sql::Value<'_>]) -> Result<i64, StoreError> {
    Ok(conn.query_value(sql, p)?.unwrap_or(0))
}

/// Number of entries in the ledger.
pub fn ledger_size(conn: &impl Db) -> Result<u64, StoreError> {
    let n: Option<Option<i64>> = conn.query_value("SELECT max(seq) FROM ledger", &[])?;
    Ok(n.flatten().unwrap_or(0) as u64)
}
