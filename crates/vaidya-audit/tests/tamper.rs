//! Tampering with a real audit ledger behind the software's back (rewriting journal segment
//! files, editing the SQLite databases with the triggers dropped, as an intruder with the files
//! would) is caught by `verify`, and the error names the first bad position.

mod common;

use common::*;
use rusqlite::{Connection, params};
use vaidya_audit::{AuditVerifyError, verify};
use vaidya_ledger::{Entry, LedgerKey, hash_encoded};

const N: usize = 40;
const MAGIC: &[u8] = b"VDYAUDJ1";

struct Case {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    key: LedgerKey,
}

/// One frame of a journal segment: the entry bytes and the leaf hash stored after them.
type Frame = (Vec<u8>, [u8; 32]);

impl Case {
    fn new() -> Case {
        let dir = tempfile::tempdir().unwrap();
        let key = key();
        filled(dir.path(), &key, N);
        assert_eq!(verify(dir.path(), key.verifier_text()).unwrap().entries, N as u64);
        Case { path: dir.path().to_path_buf(), _dir: dir, key }
    }

    /// A write connection to the checkpoint database with the append-only triggers gone.
    fn intruder(&self) -> Connection {
        let conn = Connection::open(self.path.join(vaidya_audit::DB_FILE)).unwrap();
        conn.execute_batch("DROP TRIGGER checkpoint_no_update; DROP TRIGGER checkpoint_no_delete;").unwrap();
        conn
    }

    fn segment(&self) -> std::path::PathBuf {
        self.path.join("journal").join(format!("{:020}.log", 1))
    }

    fn frames(&self) -> Vec<Frame> {
        let bytes = std::fs::read(self.segment()).unwrap();
        assert_eq!(&bytes[..8], MAGIC);
        let mut out = Vec::new();
        let mut at = 8;
        while at < bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            let entry = bytes[at + 4..at + 4 + len].to_vec();
            let leaf: [u8; 32] = bytes[at + 4 + len..at + 36 + len].try_into().unwrap();
            out.push((entry, leaf));
            at += 36 + len;
        }
        out
    }

    fn write_frames(&self, frames: &[Frame]) {
        let mut bytes = MAGIC.to_vec();
        for (entry, leaf) in frames {
            bytes.extend_from_slice(&(entry.len() as u32).to_le_bytes());
            bytes.extend_from_slice(entry);
            bytes.extend_from_slice(leaf);
        }
        std::fs::write(self.segment(), bytes).unwrap();
    }

    fn verify(&self) -> Result<vaidya_audit::VerifyReport, AuditVerifyError> {
        verify(&self.path, self.key.verifier_text())
    }
}

#[test]
fn untouched_ledger_verifies() {
    let c = Case::new();
    // Dropping the triggers and rewriting the journal as it is changes no entry.
    drop(c.intruder());
    c.write_frames(&c.frames());
    let r = c.verify().unwrap();
    assert_eq!((r.entries, r.unsigned), (N as u64, 0));
    assert!(r.checkpoints >= 1);
}

#[test]
fn an_edited_entry_is_caught_at_its_position() {
    let c = Case::new();
    let mut frames = c.frames();
    // Change who did it, keeping the length: "user2" -> "userX" inside the record (the last
    // occurrence: the entry's author comes first).
    let bytes = &mut frames[16].0;
    let at = bytes.windows(5).rposition(|w| w == b"user2").expect("user name in content");
    bytes[at + 4] = b'X';
    c.write_frames(&frames);
    let err = c.verify().unwrap_err();
    assert!(matches!(err, AuditVerifyError::Altered { seq: 17 }), "{err}");
    assert_eq!(err.position(), Some(17));
    assert!(err.to_string().contains("entry 17"), "{err}");
}

#[test]
fn an_edited_last_entry_is_caught_too() {
    let c = Case::new();
    let mut frames = c.frames();
    let bytes = &mut frames[N - 1].0;
    let last = bytes.len() - 40; // inside the content, before the previous hash
    bytes[last] ^= 0x01;
    c.write_frames(&frames);
    assert_eq!(c.verify().unwrap_err().position(), Some(N as u64));
}

#[test]
fn a_damaged_entry_that_no_longer_decodes_is_caught() {
    let c = Case::new();
    let mut frames = c.frames();
    let bytes = &mut frames[8].0;
    bytes.truncate(bytes.len() - 3);
    c.write_frames(&frames);
    let err = c.verify().unwrap_err();
    assert!(matches!(err, AuditVerifyError::Undecodable { seq: 9, .. }), "{err}");
}

#[test]
fn a_deleted_entry_is_caught_at_its_position() {
    let c = Case::new();
    let mut frames = c.frames();
    frames.remove(22);
    c.write_frames(&frames);
    let err = c.verify().unwrap_err();
    assert!(matches!(err, AuditVerifyError::Missing { seq: 23, next: Some(24) }), "{err}");
    assert_eq!(err.position(), Some(23));
}

#[test]
fn swapped_entries_are_caught_at_the_first_of_them() {
    let c = Case::new();
    let mut frames = c.frames();
    frames.swap(11, 29);
    c.write_frames(&frames);
    let err = c.verify().unwrap_err();
    assert!(matches!(err, AuditVerifyError::Missing { seq: 12, next: Some(30) }), "{err}");
    assert_eq!(err.position(), Some(12));
}

#[test]
fn reordering_with_renumbered_entries_is_caught() {
    // A cleverer swap: renumber the two entries so each claims its new position.
    let c = Case::new();
    let mut frames = c.frames();
    let mut a = Entry::decode(&frames[4].0).unwrap();
    let mut b = Entry::decode(&frames[5].0).unwrap();
    std::mem::swap(&mut a.seq, &mut b.seq);
    std::mem::swap(&mut a.resource_id, &mut b.resource_id);
    std::mem::swap(&mut a.prev_hash, &mut b.prev_hash);
    frames[4].0 = b.encode();
    frames[5].0 = a.encode();
    c.write_frames(&frames);
    let err = c.verify().unwrap_err();
    assert_eq!(err.position(), Some(5), "{err}");
}

#[test]
fn a_truncated_tail_is_caught_against_the_last_signed_checkpoint() {
    let c = Case::new();
    // Remove the last three entries.
    let keep = N - 3;
    c.write_frames(&c.frames()[..keep]);
    let err = c.verify().unwrap_err();
    assert!(matches!(err, AuditVerifyError::Truncated { from: 38, to: 40 }), "{err}");
    assert_eq!(err.position(), Some(keep as u64 + 1));
    // And the writer will not build on a journal shorter than its last checkpoint.
    let reopened = vaidya_audit::Audit::open(&c.path, LedgerKey::from_private(c.key.private_text()).unwrap());
    assert!(matches!(reopened, Err(vaidya_audit::AuditError::Corrupt(_))));
}

#[test]
fn a_deleted_last_entry_is_caught_even_with_every_checkpoint_deleted_too() {
    // Nothing local says how long the journal was (the backup target's signed copy does), but
    // a ledger whose checkpoints are all gone fails verification by itself.
    let c = Case::new();
    c.write_frames(&c.frames()[..N - 1]);
    c.intruder().execute("DELETE FROM checkpoint", []).unwrap();
    let err = c.verify().unwrap_err();
    assert!(matches!(err, AuditVerifyError::NoCheckpoint { entries: 39 }), "{err}");
}

#[test]
fn a_forged_checkpoint_is_caught() {
    let c = Case::new();
    let conn = c.intruder();
    let (size, note): (i64, String) =
        conn.query_row("SELECT tree_size, note FROM checkpoint ORDER BY tree_size DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    // Signed by another key with the same name.
    let other = LedgerKey::generate("vaidya.test/ledger");
    let root = vaidya_ledger::verify_checkpoint(&note, c.key.verifier_text()).unwrap().root;
    let forged = vaidya_ledger::sign_checkpoint(&other, size as u64, root, 1);
    conn.execute("UPDATE checkpoint SET note = ?2 WHERE tree_size = ?1", params![size, forged]).unwrap();
    let err = c.verify().unwrap_err();
    assert!(matches!(err, AuditVerifyError::BadCheckpoint { tree_size, .. } if tree_size == size as u64), "{err}");
}

#[test]
fn a_checkpoint_of_the_data_ledger_does_not_pass_for_one_of_the_audit_log() {
    // Same key, same size and root, but the data ledger's origin: a genuine signature over the
    // wrong log's name.
    let c = Case::new();
    let conn = c.intruder();
    let (size, note): (i64, String) =
        conn.query_row("SELECT tree_size, note FROM checkpoint ORDER BY tree_size DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    let cp = vaidya_ledger::verify_checkpoint(&note, c.key.verifier_text()).unwrap();
    assert_eq!(cp.origin, vaidya_audit::origin(c.key.name()));
    let other_log = vaidya_ledger::sign_checkpoint(&c.key, size as u64, cp.root, cp.time_ms);
    conn.execute("UPDATE checkpoint SET note = ?2 WHERE tree_size = ?1", params![size, other_log]).unwrap();
    let err = c.verify().unwrap_err();
    assert!(matches!(&err, AuditVerifyError::BadCheckpoint { tree_size, reason } if *tree_size == size as u64 && reason.contains("not of the audit log")), "{err}");
}

#[test]
fn a_checkpoint_whose_restart_state_was_changed_is_caught() {
    // The position a restarted writer continues from is part of what verify checks.
    let c = Case::new();
    let conn = c.intruder();
    conn.execute("UPDATE checkpoint SET off = off - 1 WHERE tree_size = (SELECT max(tree_size) FROM checkpoint)", []).unwrap();
    let err = c.verify().unwrap_err();
    assert!(matches!(&err, AuditVerifyError::BadCheckpoint { reason, .. } if reason.contains("restart state")), "{err}");
}

#[test]
fn a_rewritten_history_with_a_recomputed_chain_and_hashes_fails_the_signed_checkpoint() {
    // The intruder edits entry 8 and recomputes every later hash; only the signature (no
    // private key) gives it away.
    let c = Case::new();
    let mut entries: Vec<Entry> = c.frames().iter().map(|(e, _)| Entry::decode(e).unwrap()).collect();
    let content = &mut entries[7].content;
    let at = content.windows(8).position(|w| w == b"10.1.2.3").expect("address in content");
    content[at..at + 8].copy_from_slice(b"10.9.9.9");
    let mut prev = vaidya_ledger::GENESIS_PREV;
    let mut frames = Vec::new();
    for e in entries.iter_mut() {
        e.prev_hash = prev;
        let bytes = e.encode();
        let leaf = hash_encoded(&bytes);
        frames.push((bytes, leaf.0));
        prev = leaf;
    }
    c.write_frames(&frames);
    let err = c.verify().unwrap_err();
    match err {
        AuditVerifyError::CheckpointMismatch { tree_size, from } => {
            assert!(from <= 8 && tree_size >= 8, "{err}");
        }
        other => panic!("expected a checkpoint mismatch, got {other}"),
    }
}

/// 200 reads (patient `p{i % 5}`, user `user{i % 3}`) in segments of 2 KiB (a few events
/// each): every closed segment has its report index file.
fn segmented() -> (tempfile::TempDir, LedgerKey) {
    let dir = tempfile::tempdir().unwrap();
    let key = key();
    let audit = vaidya_audit::Audit::open_with_segment_bytes(dir.path(), LedgerKey::from_private(key.private_text()).unwrap(), 2 * 1024).unwrap();
    for chunk in (1..=200).map(read_event).collect::<Vec<_>>().chunks(3) {
        audit.record_blocking(chunk.to_vec()).unwrap();
    }
    drop(audit);
    (dir, key)
}

fn index_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = match std::fs::read_dir(dir.join(vaidya_audit::INDEX_DIR)) {
        Ok(l) => l.map(|e| e.unwrap().path()).collect(),
        Err(_) => vec![],
    };
    v.sort();
    v
}

fn journal_segments(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("journal")).unwrap().count()
}

/// An index file's postings as an intruder reads them: (patients, users), each
/// `[key hash, seq, frame offset]`.
type Postings = (Vec<[u64; 3]>, Vec<[u64; 3]>);

fn read_index(path: &std::path::Path) -> (Vec<u64>, Postings) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"VDYAUDX1");
    let words: Vec<u64> = bytes[8..bytes.len() - 32].chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect();
    let (head, rest) = words.split_at(4);
    let postings: Vec<[u64; 3]> = rest.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect();
    let p = head[2] as usize;
    (head.to_vec(), (postings[..p].to_vec(), postings[p..].to_vec()))
}

/// Write an index file back with its counts and its checksum made to fit, as a careful
/// intruder would.
fn write_index(path: &std::path::Path, head: &[u64], (patients, users): &Postings) {
    use sha2::Digest;
    let mut out = b"VDYAUDX1".to_vec();
    for n in [head[0], head[1], patients.len() as u64, users.len() as u64] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    for p in patients.iter().chain(users) {
        for n in p {
            out.extend_from_slice(&n.to_le_bytes());
        }
    }
    let digest = sha2::Sha256::digest(&out);
    out.extend_from_slice(&digest);
    std::fs::write(path, out).unwrap();
}

#[test]
fn a_hidden_access_in_the_report_index_is_caught() {
    let (dir, key) = segmented();
    let files = index_files(dir.path());
    assert_eq!(files.len(), journal_segments(dir.path()) - 1, "every closed segment is indexed");
    verify(dir.path(), key.verifier_text()).unwrap();
    let target = files[3].clone();
    let (head, (patients, users)) = read_index(&target);
    let original = std::fs::read(&target).unwrap();
    // Hide one entry's access to its patient from `vaidya audit report`.
    let hidden = patients[1];
    let fewer: Vec<[u64; 3]> = patients.iter().copied().filter(|p| *p != hidden).collect();
    write_index(&target, &head, &(fewer, users.clone()));
    let err = verify(dir.path(), key.verifier_text()).unwrap_err();
    assert!(matches!(err, AuditVerifyError::Index { .. }), "{err}");
    assert_eq!(err.position(), Some(hidden[1]), "{err}");
    // Or file it under another patient.
    let mut other = patients.clone();
    other[1][0] = other[0][0].wrapping_add(1);
    other.sort();
    write_index(&target, &head, &(other, users.clone()));
    let err = verify(dir.path(), key.verifier_text()).unwrap_err();
    assert_eq!(err.position(), Some(hidden[1]), "{err}");
    // Or point a user's posting at another entry's frame.
    let mut moved = users.clone();
    let to = moved[0][2];
    let victim = moved.iter().position(|u| u[2] != to).unwrap();
    let victim_seq = moved[victim][1];
    moved[victim][2] = to;
    write_index(&target, &head, &(patients.clone(), moved));
    let err = verify(dir.path(), key.verifier_text()).unwrap_err();
    assert_eq!(err.position(), Some(victim_seq), "{err}");
    // Any change without the checksum made to fit: the file is named damaged.
    let mut flipped = original.clone();
    flipped[60] ^= 1;
    std::fs::write(&target, &flipped).unwrap();
    let err = verify(dir.path(), key.verifier_text()).unwrap_err();
    assert!(err.to_string().contains("damaged"), "{err}");
    // An index file for a segment the journal does not have.
    std::fs::write(&target, &original).unwrap();
    verify(dir.path(), key.verifier_text()).unwrap();
    std::fs::copy(&target, target.with_file_name(format!("{:020}.idx", 99_999))).unwrap();
    let err = verify(dir.path(), key.verifier_text()).unwrap_err();
    assert!(matches!(err, AuditVerifyError::IndexBeyondEnd { seq: 99_999 }), "{err}");
}

#[test]
fn reports_through_the_index_files_equal_reports_that_read_every_segment() {
    let (dir, _key) = segmented();
    let report = |patient: bool, k: &str| -> Vec<String> {
        let events = if patient { vaidya_audit::report_for_patient(dir.path(), k) } else { vaidya_audit::report_for_user(dir.path(), k) };
        events.unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect()
    };
    let keys: Vec<(bool, String)> = (0..5).map(|i| (true, format!("p{i}"))).chain((0..3).map(|i| (false, format!("user{i}")))).collect();
    let indexed: Vec<Vec<String>> = keys.iter().map(|(p, k)| report(*p, k)).collect();
    assert_eq!(indexed[3].len(), 40, "p3 is read by every fifth event");
    assert_eq!(indexed[3][..3], ["3", "8", "13"]);
    assert_eq!(indexed[5].len(), 66, "user0 made every third event");
    // An index file cut short is not used (the segment is read instead): same answers.
    let files = index_files(dir.path());
    let bytes = std::fs::read(&files[2]).unwrap();
    std::fs::write(&files[2], &bytes[..bytes.len() - 10]).unwrap();
    assert_eq!(keys.iter().map(|(p, k)| report(*p, k)).collect::<Vec<_>>(), indexed);
    // Without any index file: every segment read, same answers.
    std::fs::remove_dir_all(dir.path().join(vaidya_audit::INDEX_DIR)).unwrap();
    assert_eq!(keys.iter().map(|(p, k)| report(*p, k)).collect::<Vec<_>>(), indexed);
    // Nobody else's entries: an unknown patient, and a name that is both a user's and a
    // patient's key is not mixed up.
    assert!(report(true, "user0").is_empty());
    assert!(report(true, "p").is_empty());
}

#[test]
fn a_lost_index_is_rebuilt_from_the_journal() {
    let (dir, key) = segmented();
    let before = index_files(dir.path());
    let contents: Vec<Vec<u8>> = before.iter().map(|f| std::fs::read(f).unwrap()).collect();
    std::fs::remove_dir_all(dir.path().join(vaidya_audit::INDEX_DIR)).unwrap();
    // What an interrupted index write leaves is cleared at the next start.
    std::fs::create_dir_all(dir.path().join(vaidya_audit::INDEX_DIR)).unwrap();
    std::fs::write(dir.path().join(vaidya_audit::INDEX_DIR).join(format!("{:020}.idx.tmp", 5)), b"half").unwrap();
    // Without the index, reports still find everything (by reading the journal).
    assert_eq!(vaidya_audit::report_for_patient(dir.path(), "p1").unwrap().len(), 40);
    let audit = vaidya_audit::Audit::open_with_segment_bytes(dir.path(), LedgerKey::from_private(key.private_text()).unwrap(), 2 * 1024).unwrap();
    audit.shutdown();
    // The same files, byte for byte, and nothing else.
    assert_eq!(index_files(dir.path()), before);
    assert_eq!(before.iter().map(|f| std::fs::read(f).unwrap()).collect::<Vec<_>>(), contents);
    verify(dir.path(), key.verifier_text()).unwrap();
}

#[test]
fn a_frame_cut_short_by_a_crash_is_cut_off_and_the_chain_continues() {
    let c = Case::new();
    // A crash in the middle of writing a 41st frame: its length and half its bytes.
    let mut bytes = std::fs::read(c.segment()).unwrap();
    bytes.extend_from_slice(&500u32.to_le_bytes());
    bytes.extend_from_slice(&[7u8; 200]);
    std::fs::write(c.segment(), &bytes).unwrap();
    assert_eq!(c.verify().unwrap().entries, N as u64, "an unacknowledged half frame is not an entry");
    let audit = vaidya_audit::Audit::open(&c.path, LedgerKey::from_private(c.key.private_text()).unwrap()).unwrap();
    audit.record_blocking(vec![read_event(41)]).unwrap();
    audit.shutdown();
    let r = c.verify().unwrap();
    assert_eq!((r.entries, r.unsigned), (N as u64 + 1, 0));
}

#[test]
fn many_segments_verify_report_and_export_across_their_boundaries() {
    let (dir, key) = segmented();
    let segments = std::fs::read_dir(dir.path().join("journal")).unwrap().count();
    assert!(segments > 10, "{segments} segments");
    let r = verify(dir.path(), key.verifier_text()).unwrap();
    assert_eq!(r.entries, 200);
    assert_eq!(vaidya_audit::report_for_patient(dir.path(), "p3").unwrap().len(), 40);
    let mut out = Vec::new();
    assert_eq!(vaidya_audit::export(dir.path(), 0, i64::MAX, &mut out).unwrap(), 200);
    // Reopen and go on across another boundary; a renamed segment is caught.
    let audit = vaidya_audit::Audit::open_with_segment_bytes(dir.path(), LedgerKey::from_private(key.private_text()).unwrap(), 8 * 1024).unwrap();
    audit.record_blocking((201..=230).map(read_event).collect()).unwrap();
    drop(audit);
    assert_eq!(verify(dir.path(), key.verifier_text()).unwrap().entries, 230);
    let mut names: Vec<_> = std::fs::read_dir(dir.path().join("journal")).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    let second = names[1].clone();
    std::fs::rename(&second, second.with_file_name(format!("{:020}.log", 99_999))).unwrap();
    assert!(verify(dir.path(), key.verifier_text()).is_err());
}
