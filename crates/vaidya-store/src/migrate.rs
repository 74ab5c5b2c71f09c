//! Moving a hospital from one engine to the other (SQLite to PostgreSQL, or back): the ledger
//! entries are replayed byte for byte with the checkpoints their source signed, so the hash
//! chain, the Merkle tree and every signature are the same on the other side; the projections
//! are rebuilt from the entries there; the accounts, tokens, grants and counters are copied.

use crate::sql::{Db, OwnedValue};
use crate::{Store, StoreError, sql_params};
use vaidya_ledger::{Entry, Hash, Op};

/// Entries replayed per write transaction.
const BATCH: i64 = 2_000;

/// The tables beside the ledger that a migration copies whole (parents before children:
/// tokens name accounts).
pub const TABLES: &[&str] = &["api_user", "api_token", "access_grant", "sequence", "node_issuer", "node_key", "handback"];

/// What a migration did.
#[derive(Debug, Clone)]
pub struct Migrated {
    pub entries: u64,
    pub checkpoints: u64,
    /// The Merkle root at the last entry, the same on both sides.
    pub root: Hash,
    /// Rows copied per table beside the ledger.
    pub rows: Vec<(&'static str, u64)>,
}

/// Copy everything from `from` into the empty `to` (opened as a replica: it stores the
/// source's checkpoints and signs none). `progress` hears the entries copied so far.
pub fn copy(from: &Store, to: &Store, progress: &dyn Fn(u64)) -> Result<Migrated, StoreError> {
    let existing = to.read(crate::read::ledger_size)?;
    if existing > 0 {
        return Err(StoreError::Corrupt(format!("the target already holds {existing} ledger entries: a migration goes into an empty database")));
    }
    let checkpoints: Vec<(u64, i64, String)> =
        from.read(|c| c.query_map("SELECT tree_size, time_ms, note FROM checkpoint ORDER BY tree_size", &[], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))))?;
    let mut next_checkpoint = 0usize;
    let mut copied = 0u64;
    loop {
        let batch: Vec<(u64, Vec<u8>)> = from.read(|c| {
            c.query_map("SELECT seq, entry FROM ledger WHERE seq > ?1 ORDER BY seq LIMIT ?2", &sql_params![copied as i64, BATCH], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
        })?;
        let Some(&(last, _)) = batch.last() else { break };
        // The checkpoints this batch reaches, each with the source's root at its size (the
        // target refuses one whose root its own tree does not have).
        let mut signed = Vec::new();
        while let Some((size, time_ms, note)) = checkpoints.get(next_checkpoint).filter(|(size, ..)| *size <= last) {
            let root = from.read(|c| crate::merkle_root(c, *size))?;
            signed.push((*size, *time_ms, note.clone(), root));
            next_checkpoint += 1;
        }
        to.write_blocking(move |tx| -> Result<(), StoreError> {
            let mut signed = signed.into_iter().peekable();
            for (seq, bytes) in &batch {
                let entry = Entry::decode(bytes).map_err(|e| StoreError::Corrupt(format!("entry {seq}: {e}")))?;
                tx.replay(&entry, bytes, &index_of(&entry)?)?;
                while let Some((size, time_ms, note, root)) = signed.next_if(|(size, ..)| *size == *seq) {
                    tx.insert_checkpoint(size, time_ms, &note, root)?;
                }
            }
            Ok(())
        })?;
        copied = last;
        progress(copied);
    }
    if next_checkpoint < checkpoints.len() {
        return Err(StoreError::Corrupt(format!(
            "the source has a checkpoint at {} entries but only {copied} entries",
            checkpoints[next_checkpoint].0
        )));
    }
    let mut read = Vec::new();
    for &table in TABLES {
        let ours = to.read(|c| crate::state::columns(c, table))?;
        let theirs = from.read(|c| crate::state::columns(c, table))?;
        let columns: Vec<String> = ours.into_iter().filter(|c| theirs.contains(c)).collect();
        let rows = from.read(|c| read_rows(c, table, &columns))?;
        read.push((table, columns, rows));
    }
    let rows = read.iter().map(|(t, _, r)| (*t, r.len() as u64)).collect();
    to.write_blocking(move |tx| -> Result<(), StoreError> {
        // Children first out, parents first in (tokens name accounts).
        for (table, ..) in read.iter().rev() {
            tx.conn().execute(&format!("DELETE FROM {table}"), &[])?;
        }
        for (table, columns, rows) in &read {
            write_rows(tx.conn(), table, columns, rows)?;
        }
        Ok(())
    })?;
    let root = to.read(|c| crate::merkle_root(c, copied))?;
    Ok(Migrated { entries: copied, checkpoints: checkpoints.len() as u64, root, rows })
}

/// The search index values of the resource an entry puts (none for a delete).
fn index_of(entry: &Entry) -> Result<Vec<(&'static vaidya_fhir::search_params::SearchParam, vaidya_fhir::index::IndexValue)>, StoreError> {
    if entry.op != Op::Put {
        return Ok(Vec::new());
    }
    let value: serde_json::Value =
        serde_json::from_slice(&entry.content).map_err(|e| StoreError::Corrupt(format!("entry {}: content is not JSON: {e}", entry.seq)))?;
    Ok(vaidya_fhir::index::extract_all(&value))
}

fn column_list(columns: &[String]) -> String {
    columns.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ")
}

/// Every row of `table`, the `columns` given.
fn read_rows(conn: &impl Db, table: &str, columns: &[String]) -> Result<Vec<Vec<OwnedValue>>, StoreError> {
    conn.query_map(&format!("SELECT {} FROM {table}", column_list(columns)), &[], |r| Ok(r.cells().iter().map(OwnedValue::from_cell).collect()))
}

fn write_rows(conn: &impl Db, table: &str, columns: &[String], rows: &[Vec<OwnedValue>]) -> Result<(), StoreError> {
    let marks = (1..=columns.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ");
    let insert = format!("INSERT INTO {table} ({}) VALUES ({marks})", column_list(columns));
    for row in rows {
        let params: Vec<crate::sql::Value<'_>> = row.iter().map(OwnedValue::value).collect();
        conn.execute(&insert, &params)?;
    }
    Ok(())
}
