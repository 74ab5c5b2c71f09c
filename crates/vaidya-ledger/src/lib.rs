//! The ledger: an append-only, hash-chained log of changes, covered by an RFC 6962 Merkle tree
//! whose checkpoints are signed notes (c2sp.org/tlog-checkpoint, c2sp.org/signed-note).
//!
//! Architecture invariant: this crate knows nothing of SQL, HTTP or FHIR. It defines the bytes of
//! an entry, how entries chain, and how tree heads are signed and checked. Where the entries and
//! the tree's stored hashes live is the store's business; it reaches them through
//! [`tlog_tiles::HashReader`].

mod chain;
mod checkpoint;
mod frontier;
mod entry;
mod keys;

pub use checkpoint::{
    CheckpointError, SignedCheckpoint, sign_checkpoint, sign_checkpoint_for, sign_note, verify_checkpoint, verify_note,
};
pub use chain::ChainEdge;
pub use frontier::Frontier;
pub use entry::{DecodeError, Entry, EntryHash, Op, encoded_time_ms, hash_encoded};
pub use keys::{KeyError, LedgerKey};
pub use tlog_tiles::{
    Error as TlogError, Hash, HashReader, stored_hash_count, stored_hash_index, stored_hashes_for_record_hash,
    tree_hash,
};

/// Hash of an empty ledger's (non-existent) predecessor: the chain starts from all zeroes.
pub const GENESIS_PREV: EntryHash = EntryHash([0u8; 32]);
