//! The Merkle tree's right edge ("frontier"): the latest stored hash of each level. Appending a
//! leaf and computing the root of the whole tree need only these, so the writer and `verify`
//! keep them in memory; anything else is read from the `tree_hash` table (writer only).

use rusqlite::{Connection, OptionalExtension};
use vaidya_ledger::{EntryHash, Hash, HashReader, TlogError, stored_hash_index, stored_hashes_for_record_hash};

#[derive(Debug, Clone, Default)]
pub(crate) struct Frontier {
    /// (stored index, hash) per level.
    levels: Vec<Option<(u64, Hash)>>,
}

impl Frontier {
    /// Append record `n` (entry `n + 1`) with leaf hash `leaf`; returns its first stored index
    /// and the hashes to store from there on (its leaf, then each subtree it completes).
    pub(crate) fn append(&mut self, n: u64, leaf: EntryHash, conn: Option<&Connection>) -> Result<(u64, Vec<Hash>), TlogError> {
        let hashes = stored_hashes_for_record_hash(n, Hash(leaf.0), &Reader { frontier: self, conn })?;
        let first = stored_hash_index(0, n);
        for (level, h) in hashes.iter().enumerate() {
            if self.levels.len() <= level {
                self.levels.resize(level + 1, None);
            }
            self.levels[level] = Some((first + level as u64, *h));
        }
        Ok((first, hashes))
    }

    /// Root hash of the first `size` records (the whole tree when `size` is the number
    /// appended; other sizes may need the table).
    pub(crate) fn root(&self, size: u64, conn: Option<&Connection>) -> Result<Hash, TlogError> {
        vaidya_ledger::tree_hash(size, &Reader { frontier: self, conn })
    }
}

struct Reader<'a> {
    frontier: &'a Frontier,
    conn: Option<&'a Connection>,
}

impl HashReader for Reader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        let mut out = Vec::with_capacity(indexes.len());
        for &idx in indexes {
            if let Some(h) = self.frontier.levels.iter().flatten().find(|(i, _)| *i == idx).map(|(_, h)| *h) {
                out.push(h);
                continue;
            }
            let conn = self.conn.ok_or(TlogError::IndexesNotInTree)?;
            let blob: Option<Vec<u8>> = conn
                .prepare_cached("SELECT hash FROM tree_hash WHERE idx = ?1")
                .and_then(|mut s| s.query_row([idx as i64], |r| r.get(0)).optional())
                .map_err(|_| TlogError::IndexesNotInTree)?;
            let bytes: [u8; 32] = blob.and_then(|b| b.try_into().ok()).ok_or(TlogError::IndexesNotInTree)?;
            out.push(Hash(bytes));
        }
        Ok(out)
    }
}
