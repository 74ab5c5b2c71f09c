//! The Merkle tree's right edge ("frontier"): the latest stored hash of each level. Appending a
//! leaf and computing the root of the whole tree need only these, so the writer and `verify`
//! keep them in memory, and each signed checkpoint stores the edge it was computed from (so a
//! restarted writer continues from the last checkpoint without rereading the whole journal).

use crate::EntryHash;
use tlog_tiles::{Error as TlogError, Hash, HashReader, stored_hash_index, stored_hashes_for_record_hash};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frontier {
    /// (stored index, hash) per level.
    levels: Vec<Option<(u64, Hash)>>,
}

impl Frontier {
    /// Append record `n` (entry `n + 1`) with leaf hash `leaf`.
    pub fn append(&mut self, n: u64, leaf: EntryHash) -> Result<(), TlogError> {
        let hashes = stored_hashes_for_record_hash(n, Hash(leaf.0), &Reader { frontier: self })?;
        let first = stored_hash_index(0, n);
        for (level, h) in hashes.iter().enumerate() {
            if self.levels.len() <= level {
                self.levels.resize(level + 1, None);
            }
            self.levels[level] = Some((first + level as u64, *h));
        }
        Ok(())
    }

    /// The edge after the first `size` records, read from a store of the tree's hashes: at
    /// each level the last complete subtree, which is what appending them one by one leaves.
    /// (A department node and the core resume a ledger at a given size without replaying it.)
    pub fn at(size: u64, hashes: &impl HashReader) -> Result<Frontier, TlogError> {
        let mut levels = Vec::new();
        let mut level = 0u8;
        while level < 64 && size >> level > 0 {
            let idx = stored_hash_index(level, (size >> level) - 1);
            let h = hashes.read_hashes(&[idx])?.into_iter().next().ok_or(TlogError::IndexesNotInTree)?;
            levels.push(Some((idx, h)));
            level += 1;
        }
        Ok(Frontier { levels })
    }

    /// Root hash of the first `size` records, where `size` is the number appended.
    pub fn root(&self, size: u64) -> Result<Hash, TlogError> {
        tlog_tiles::tree_hash(size, &Reader { frontier: self })
    }

    /// Bytes to store with a checkpoint: per level, a presence byte, then index and hash.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.levels.len() * 41);
        for level in &self.levels {
            match level {
                None => out.push(0),
                Some((idx, h)) => {
                    out.push(1);
                    out.extend_from_slice(&idx.to_be_bytes());
                    out.extend_from_slice(&h.0);
                }
            }
        }
        out
    }

    pub fn decode(mut bytes: &[u8]) -> Option<Frontier> {
        let mut levels = Vec::new();
        while let Some((&flag, rest)) = bytes.split_first() {
            match flag {
                0 => {
                    levels.push(None);
                    bytes = rest;
                }
                1 if rest.len() >= 40 => {
                    let idx = u64::from_be_bytes(rest[..8].try_into().ok()?);
                    let h: [u8; 32] = rest[8..40].try_into().ok()?;
                    levels.push(Some((idx, Hash(h))));
                    bytes = &rest[40..];
                }
                _ => return None,
            }
        }
        Some(Frontier { levels })
    }
}

struct Reader<'a> {
    frontier: &'a Frontier,
}

impl HashReader for Reader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        indexes
            .iter()
            .map(|&idx| {
                self.frontier.levels.iter().flatten().find(|(i, _)| *i == idx).map(|(_, h)| *h).ok_or(TlogError::IndexesNotInTree)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_edge_survives_encoding_and_gives_the_same_root() {
        let mut f = Frontier::default();
        for n in 0..37u64 {
            f.append(n, EntryHash([n as u8; 32])).unwrap();
        }
        let back = Frontier::decode(&f.encode()).unwrap();
        assert_eq!(back, f);
        assert_eq!(back.root(37).unwrap(), f.root(37).unwrap());
        assert!(Frontier::decode(&[1, 2, 3]).is_none());
    }

    /// Every stored hash of a tree, as the stores keep them.
    struct All(Vec<Hash>);
    impl HashReader for All {
        fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
            indexes.iter().map(|&i| self.0.get(i as usize).copied().ok_or(TlogError::IndexesNotInTree)).collect()
        }
    }

    #[test]
    fn the_edge_read_from_stored_hashes_continues_like_the_appended_one() {
        let leaf = |n: u64| EntryHash([(n * 7 + 1) as u8; 32]);
        let mut all = All(Vec::new());
        let mut appended = Frontier::default();
        for n in 0..70u64 {
            let hashes = stored_hashes_for_record_hash(n, Hash(leaf(n).0), &all).unwrap();
            all.0.extend(hashes);
            appended.append(n, leaf(n)).unwrap();
            let size = n + 1;
            let mut read = Frontier::at(size, &all).unwrap();
            assert_eq!(read.root(size).unwrap(), appended.root(size).unwrap(), "root at {size}");
            // ...and appending to it gives the same tree as appending to the other.
            let mut more = appended.clone();
            for m in size..size + 5 {
                read.append(m, leaf(m)).unwrap();
                more.append(m, leaf(m)).unwrap();
            }
            assert_eq!(read.root(size + 5).unwrap(), more.root(size + 5).unwrap());
        }
        assert_eq!(Frontier::at(0, &all).unwrap(), Frontier::default());
        assert!(Frontier::at(71, &all).is_err(), "hashes the store does not have");
    }
}
