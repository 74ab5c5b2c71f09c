//! Following a ledger made elsewhere: every next entry must continue the sequence and the hash
//! chain, and at each signed checkpoint the Merkle tree of everything so far must have the root
//! the checkpoint signs. A restore from backup and a department node following the core check
//! what they receive with it before they apply any of it.

use crate::{Entry, EntryHash, Frontier, GENESIS_PREV, SignedCheckpoint};

/// Size, chain head and Merkle frontier of the entries taken so far.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ChainEdge {
    pub size: u64,
    /// The last entry's hash (`None` before the first).
    pub head: Option<EntryHash>,
    pub frontier: Frontier,
}

impl ChainEdge {
    /// Take `entry` (whose encoded bytes hash to `leaf`) as the next one.
    pub fn append(&mut self, entry: &Entry, leaf: EntryHash) -> Result<(), String> {
        let head = self.head.unwrap_or(GENESIS_PREV);
        if entry.seq != self.size + 1 || entry.prev_hash != head {
            return Err(format!("entry {} does not follow entry {} (sequence or hash chain)", entry.seq, self.size));
        }
        self.frontier.append(self.size, leaf).map_err(|e| format!("Merkle tree at entry {}: {e}", entry.seq))?;
        self.size += 1;
        self.head = Some(leaf);
        Ok(())
    }

    /// Whether the entries taken so far are exactly what `cp` signs.
    pub fn check_root(&self, cp: &SignedCheckpoint) -> Result<(), String> {
        let root = self.frontier.root(self.size).map_err(|e| format!("Merkle root: {e}"))?;
        if cp.tree_size != self.size || root != cp.root {
            return Err(format!("its entries do not give the root its checkpoint signs at {} entries: altered", cp.tree_size));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LedgerKey, Op, hash_encoded, sign_checkpoint, verify_checkpoint};

    fn entry(seq: u64, prev: EntryHash) -> Entry {
        Entry {
            seq,
            time_ms: 1_764_000_000_000 + seq as i64,
            author: "t".into(),
            op: Op::Put,
            resource_type: "Basic".into(),
            resource_id: format!("b{seq}"),
            version: 1,
            content: b"{}".to_vec(),
            prev_hash: prev,
        }
    }

    #[test]
    fn only_the_next_entry_in_the_chain_is_taken_and_the_root_is_checked() {
        let key = LedgerKey::generate("vaidya.test/ledger");
        let mut edge = ChainEdge::default();
        let mut prev = GENESIS_PREV;
        let mut entries = Vec::new();
        for seq in 1..=3 {
            let e = entry(seq, prev);
            prev = hash_encoded(&e.encode());
            entries.push(e);
        }
        // Out of order, or with a broken chain: refused, and nothing taken.
        assert!(edge.append(&entries[1], hash_encoded(&entries[1].encode())).is_err());
        let mut broken = entries[0].clone();
        broken.prev_hash = EntryHash([7; 32]);
        assert!(edge.append(&broken, hash_encoded(&broken.encode())).is_err());
        assert_eq!(edge.size, 0);
        for e in &entries {
            edge.append(e, hash_encoded(&e.encode())).unwrap();
        }
        let root = edge.frontier.root(3).unwrap();
        let good = verify_checkpoint(&sign_checkpoint(&key, 3, root, 1), key.verifier_text()).unwrap();
        edge.check_root(&good).unwrap();
        let wrong = verify_checkpoint(&sign_checkpoint(&key, 3, crate::Hash([1; 32]), 1), key.verifier_text()).unwrap();
        assert!(edge.check_root(&wrong).is_err());
        let other_size = verify_checkpoint(&sign_checkpoint(&key, 2, root, 1), key.verifier_text()).unwrap();
        assert!(edge.check_root(&other_size).is_err());
    }
}
