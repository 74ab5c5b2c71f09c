//! The Merkle tree's stored hashes, read from the `tree_hash` table.

use crate::sql::Db;
use vaidya_ledger::{Hash, HashReader, TlogError};

/// Reads stored tree hashes through one connection (inside the writer's open transaction it
/// also sees the hashes written earlier in that transaction).
pub struct DbHashReader<'c, D: Db>(pub &'c D);

/// The writer's reader: appending entry n needs the latest stored hash of a few tree levels
/// (the tree's right edge), which the writer keeps in memory, one per level; anything else
/// comes from the table.
pub struct FrontierHashReader<'a, D: Db> {
    pub conn: &'a D,
    pub frontier: &'a [Option<(u64, Hash)>],
}

impl<D: Db> HashReader for FrontierHashReader<'_, D> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        let mut out = Vec::with_capacity(indexes.len());
        for &idx in indexes {
            let cached = self.frontier.iter().flatten().find(|(i, _)| *i == idx).map(|(_, h)| *h);
            match cached {
                Some(h) => out.push(h),
                None => out.extend(DbHashReader(self.conn).read_hashes(&[idx])?),
            }
        }
        Ok(out)
    }
}

impl<D: Db> HashReader for DbHashReader<'_, D> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        let mut out = Vec::with_capacity(indexes.len());
        for &idx in indexes {
            let blob: Option<Vec<u8>> = self
                .0
                .query_value("SELECT hash FROM tree_hash WHERE idx = ?1", &crate::sql_params![idx as i64])
                .map_err(|_| TlogError::IndexesNotInTree)?;
            let bytes: [u8; 32] = blob.and_then(|b| b.try_into().ok()).ok_or(TlogError::IndexesNotInTree)?;
            out.push(Hash(bytes));
        }
        Ok(out)
    }
}

/// Root hash of the first `size` entries.
pub fn root(conn: &impl Db, size: u64) -> Result<Hash, TlogError> {
    vaidya_ledger::tree_hash(size, &DbHashReader(conn))
}
