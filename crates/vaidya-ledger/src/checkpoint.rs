//! Signed checkpoints: (origin, tree size, root hash) plus the time, as a c2sp.org/tlog-checkpoint
//! body inside a c2sp.org/signed-note signed with the ledger key.

use crate::keys::{LedgerKey, verifier};
use signed_note::{Note, VerifierList};
use tlog_tiles::{Checkpoint, Hash};

/// A checkpoint as verified: what it commits to.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedCheckpoint {
    pub origin: String,
    pub tree_size: u64,
    pub root: Hash,
    pub time_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint note is malformed")]
    Malformed,
    #[error("checkpoint signature does not verify with the ledger's public key")]
    BadSignature,
    #[error("checkpoint has no time line")]
    NoTime,
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
}

const TIME_PREFIX: &str = "time ";

/// Sign a checkpoint for a tree of `tree_size` entries with root `root`, made at `time_ms`. The
/// origin (the log's name) is the key's name.
pub fn sign_checkpoint(key: &LedgerKey, tree_size: u64, root: Hash, time_ms: i64) -> String {
    sign_checkpoint_for(key, key.name(), tree_size, root, time_ms)
}

/// [`sign_checkpoint`] for another log signed with the same key (the audit log): its own
/// origin, so that a checkpoint of one log can never pass for one of the other.
pub fn sign_checkpoint_for(key: &LedgerKey, origin: &str, tree_size: u64, root: Hash, time_ms: i64) -> String {
    let extension = format!("{TIME_PREFIX}{time_ms}\n");
    let body = Checkpoint::new(origin, tree_size, root, &extension)
        .expect("origins are key names or derived from them, and the extension is one line");
    let mut note = Note::new(&body.to_bytes(), &[]).expect("checkpoint body is a valid note text");
    note.add_sigs(&[key.signer()]).expect("key name is valid");
    String::from_utf8(note.to_bytes()).expect("notes are UTF-8")
}

/// Check a signed checkpoint against the ledger's public verifier key and return what it says.
pub fn verify_checkpoint(note_text: &str, verifier_key: &str) -> Result<SignedCheckpoint, CheckpointError> {
    let note = Note::from_bytes(note_text.as_bytes()).map_err(|_| CheckpointError::Malformed)?;
    let list = VerifierList::new(vec![Box::new(verifier(verifier_key)?)]);
    note.verify(&list).map_err(|_| CheckpointError::BadSignature)?;
    let body = Checkpoint::from_bytes(note.text()).map_err(|_| CheckpointError::Malformed)?;
    let time_ms = body
        .extension()
        .lines()
        .find_map(|l| l.strip_prefix(TIME_PREFIX))
        .and_then(|t| t.parse().ok())
        .ok_or(CheckpointError::NoTime)?;
    Ok(SignedCheckpoint {
        origin: body.origin().to_string(),
        tree_size: body.size(),
        root: *body.hash(),
        time_ms,
    })
}

/// Sign an arbitrary text (one or more lines, ending in a newline) with the ledger key as a
/// c2sp.org/signed-note; backups sign each segment's digest this way.
pub fn sign_note(key: &LedgerKey, text: &str) -> Result<String, CheckpointError> {
    let mut note = Note::new(text.as_bytes(), &[]).map_err(|_| CheckpointError::Malformed)?;
    note.add_sigs(&[key.signer()]).map_err(|_| CheckpointError::Malformed)?;
    String::from_utf8(note.to_bytes()).map_err(|_| CheckpointError::Malformed)
}

/// Check a note made by [`sign_note`] against the ledger's verifier key; its text.
pub fn verify_note(note_text: &str, verifier_key: &str) -> Result<String, CheckpointError> {
    let note = Note::from_bytes(note_text.as_bytes()).map_err(|_| CheckpointError::Malformed)?;
    let list = VerifierList::new(vec![Box::new(verifier(verifier_key)?)]);
    note.verify(&list).map_err(|_| CheckpointError::BadSignature)?;
    String::from_utf8(note.text().to_vec()).map_err(|_| CheckpointError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_checkpoint_verifies_and_tampering_is_caught() {
        let key = LedgerKey::generate("vaidya.test/ledger");
        let root = Hash([7; 32]);
        let note = sign_checkpoint(&key, 42, root, 1_700_000_000_000);
        let cp = verify_checkpoint(&note, key.verifier_text()).unwrap();
        assert_eq!(cp.tree_size, 42);
        assert_eq!(cp.root, root);
        assert_eq!(cp.time_ms, 1_700_000_000_000);
        assert_eq!(cp.origin, "vaidya.test/ledger");

        let forged = note.replacen("\n42\n", "\n43\n", 1);
        assert!(matches!(verify_checkpoint(&forged, key.verifier_text()), Err(CheckpointError::BadSignature)));
        let other = LedgerKey::generate("vaidya.test/ledger");
        assert!(verify_checkpoint(&note, other.verifier_text()).is_err());
    }

    #[test]
    fn signed_notes_verify_only_unaltered_and_with_their_key() {
        let key = LedgerKey::generate("vaidya.test/ledger");
        let note = sign_note(&key, "segment abc\n").unwrap();
        assert_eq!(verify_note(&note, key.verifier_text()).unwrap(), "segment abc\n");
        assert!(matches!(verify_note(&note.replace("abc", "abd"), key.verifier_text()), Err(CheckpointError::BadSignature)));
        let other = LedgerKey::generate("vaidya.test/ledger");
        assert!(verify_note(&note, other.verifier_text()).is_err());
        assert!(sign_note(&key, "no newline").is_err());
    }
}
