//! Tampering with a real audit database behind the software's back (through SQLite, triggers
//! dropped first, as an intruder with the file would) is caught by `verify`, and the error names
//! the first bad position.

mod common;

use common::*;
use rusqlite::{Connection, params};
use vaidya_audit::{AuditVerifyError, schema, verify};
use vaidya_ledger::{Entry, LedgerKey, hash_encoded};

const N: usize = 40;

struct Case {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    key: LedgerKey,
}

impl Case {
    fn new() -> Case {
        let dir = tempfile::tempdir().unwrap();
        let key = key();
        filled(dir.path(), &key, N);
        assert_eq!(verify(dir.path(), key.verifier_text()).unwrap().entries, N as u64);
        Case { path: dir.path().to_path_buf(), _dir: dir, key }
    }

    /// A write connection with the append-only triggers gone.
    fn intruder(&self) -> Connection {
        let conn = Connection::open(self.path.join(vaidya_audit::DB_FILE)).unwrap();
        for t in schema::TABLES {
            conn.execute_batch(&format!("DROP TRIGGER {t}_no_update; DROP TRIGGER {t}_no_delete;")).unwrap();
        }
        conn
    }

    fn verify(&self) -> Result<vaidya_audit::VerifyReport, AuditVerifyError> {
        verify(&self.path, self.key.verifier_text())
    }
}

fn entry(conn: &Connection, seq: u64) -> Vec<u8> {
    conn.query_row("SELECT entry FROM ledger WHERE seq = ?1", [seq as i64], |r| r.get(0)).unwrap()
}

fn set_entry(conn: &Connection, seq: u64, bytes: &[u8]) {
    assert_eq!(conn.execute("UPDATE ledger SET entry = ?2 WHERE seq = ?1", params![seq as i64, bytes]).unwrap(), 1);
}

#[test]
fn untouched_ledger_verifies() {
    let c = Case::new();
    // Dropping the triggers alone changes no entry.
    drop(c.intruder());
    let r = c.verify().unwrap();
    assert_eq!((r.entries, r.unsigned), (N as u64, 0));
    assert!(r.checkpoints >= 1);
}

#[test]
fn an_edited_entry_is_caught_at_its_position() {
    let c = Case::new();
    let conn = c.intruder();
    let mut bytes = entry(&conn, 17);
    // Change who did it, keeping the length: "user2" -> "userX" inside the JSON.
    let at = bytes.windows(6).rposition(|w| w == b"user2\"").expect("user name in content");
    bytes[at + 4] = b'X';
    set_entry(&conn, 17, &bytes);
    let err = c.verify().unwrap_err();
    assert!(matches!(err, AuditVerifyError::Altered { seq: 17 }), "{err}");
    assert_eq!(err.position(), Some(17));
    assert!(err.to_string().contains("entry 17"), "{err}");
}

#[test]
fn an_edited_last_entry_is_caught_too() {
    let c = Case::new();
    let conn = c.intruder();
    let mut bytes = entry(&conn, N as u64);
    let last = bytes.len() - 40; // inside the content, before the previous hash
    bytes[last] ^= 0x01;
    set_entry(&conn, N as u64, &bytes);
    assert_eq!(c.verify().unwrap_err().position(), Some(N as u64));
}

#[test]
fn a_damaged_entry_that_no_longer_decodes_is_caught() {
    let c = Case::new();
    let conn = c.intruder();
    let bytes = entry(&conn, 9);
    set_entry(&conn, 9, &bytes[..bytes.len() - 3]);
    let err = c.verify().unwrap_err();
    assert!(matches!(err, AuditVerifyError::Undecodable { seq: 9, .. }), "{err}");
}

#[test]
fn a_deleted_entry_is_caught_at_its_position() {
    let c = Case::new();
    let conn = c.intruder();
    conn.execute("DELETE FROM ledger WHERE seq = 23", []).unwrap();
    let err = c.verify().unwrap_err();
    assert!(matches!(err, AuditVerifyError::Missing { seq: 23, next: Some(24) }), "{err}");
    assert_eq!(err.position(), Some(23));
}

#[test]
fn swapped_entries_are_caught_at_the_first_of_them() {
    let c = Case::new();
    let conn = c.intruder();
    let (a, b) = (entry(&conn, 12), entry(&conn, 30));
    set_entry(&conn, 12, &b);
    set_entry(&conn, 30, &a);
    let err = c.verify().unwrap_err();
    assert!(matches!(err, AuditVerifyError::Misplaced { seq: 12, claims: 30 }), "{err}");
    assert_eq!(err.position(), Some(12));
}

#[test]
fn reordering_with_renumbered_entries_is_caught() {
    // A cleverer swap: renumber the two entries so each claims its new position.
    let c = Case::new();
    let conn = c.intruder();
    let mut a = Entry::decode(&entry(&conn, 5)).unwrap();
    let mut b = Entry::decode(&entry(&conn, 6)).unwrap();
    std::mem::swap(&mut a.seq, &mut b.seq);
    std::mem::swap(&mut a.resource_id, &mut b.resource_id);
    std::mem::swap(&mut a.prev_hash, &mut b.prev_hash);
    set_entry(&conn, 5, &b.encode());
    set_entry(&conn, 6, &a.encode());
    let err = c.verify().unwrap_err();
    assert_eq!(err.position(), Some(5), "{err}");
}

#[test]
fn a_truncated_tail_is_caught_against_the_last_signed_checkpoint() {
    let c = Case::new();
    let conn = c.intruder();
    // Remove the last three entries and everything the tree stored for them.
    let keep = (N - 3) as u64;
    conn.execute("DELETE FROM ledger WHERE seq > ?1", [keep as i64]).unwrap();
    conn.execute("DELETE FROM tree_hash WHERE idx >= ?1", [vaidya_ledger::stored_hash_count(keep) as i64]).unwrap();
    conn.execute("DELETE FROM audit_user WHERE seq > ?1", [keep as i64]).unwrap();
    conn.execute("DELETE FROM audit_patient WHERE seq > ?1", [keep as i64]).unwrap();
    let err = c.verify().unwrap_err();
    assert!(matches!(err, AuditVerifyError::Truncated { from: 38, to: 40 }), "{err}");
    assert_eq!(err.position(), Some(keep + 1));
}

#[test]
fn a_deleted_last_entry_is_caught_even_without_a_checkpoint_over_it() {
    let c = Case::new();
    let conn = c.intruder();
    conn.execute("DELETE FROM ledger WHERE seq = ?1", [N as i64]).unwrap();
    conn.execute("DELETE FROM checkpoint", []).unwrap();
    let err = c.verify().unwrap_err();
    assert!(matches!(err, AuditVerifyError::Missing { seq: 40, next: None }), "{err}");
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
fn a_rewritten_history_with_a_recomputed_chain_and_tree_fails_the_signed_checkpoint() {
    // The intruder edits entry 8 and recomputes every later hash, the whole tree and the
    // indexes; only the signature (no private key) gives it away.
    let c = Case::new();
    let conn = c.intruder();
    let mut entries: Vec<Entry> = (1..=N as u64).map(|s| Entry::decode(&entry(&conn, s)).unwrap()).collect();
    let content = String::from_utf8(entries[7].content.clone()).unwrap().replace("10.1.2.3", "10.9.9.9");
    entries[7].content = content.into_bytes();
    let mut prev = vaidya_ledger::GENESIS_PREV;
    let mut hashes: Vec<vaidya_ledger::Hash> = Vec::new();
    struct Mem<'a>(&'a [vaidya_ledger::Hash]);
    impl vaidya_ledger::HashReader for Mem<'_> {
        fn read_hashes(&self, idx: &[u64]) -> Result<Vec<vaidya_ledger::Hash>, vaidya_ledger::TlogError> {
            Ok(idx.iter().map(|&i| self.0[i as usize]).collect())
        }
    }
    conn.execute("DELETE FROM tree_hash", []).unwrap();
    for e in entries.iter_mut() {
        e.prev_hash = prev;
        let bytes = e.encode();
        let leaf = hash_encoded(&bytes);
        set_entry(&conn, e.seq, &bytes);
        let new = vaidya_ledger::stored_hashes_for_record_hash(e.seq - 1, vaidya_ledger::Hash(leaf.0), &Mem(&hashes)).unwrap();
        hashes.extend(new);
        prev = leaf;
    }
    for (i, h) in hashes.iter().enumerate() {
        conn.execute("INSERT INTO tree_hash (idx, hash) VALUES (?1, ?2)", params![i as i64, &h.0[..]]).unwrap();
    }
    let err = c.verify().unwrap_err();
    match err {
        AuditVerifyError::CheckpointMismatch { tree_size, from } => {
            assert!(from <= 8 && tree_size >= 8, "{err}");
        }
        other => panic!("expected a checkpoint mismatch, got {other}"),
    }
}

#[test]
fn a_hidden_access_in_the_report_index_is_caught() {
    let c = Case::new();
    let conn = c.intruder();
    // Hide event 14's access to its patient from `vaidya audit report`.
    assert_eq!(conn.execute("DELETE FROM audit_patient WHERE seq = 14", []).unwrap(), 1);
    let err = c.verify().unwrap_err();
    assert!(matches!(err, AuditVerifyError::Index { seq: 14, .. }), "{err}");
    // Or file it under another patient.
    let c = Case::new();
    let conn = c.intruder();
    conn.execute("UPDATE audit_patient SET patient = 'someone-else' WHERE seq = 3", []).unwrap();
    let err = c.verify().unwrap_err();
    assert_eq!(err.position(), Some(3), "{err}");
}

#[test]
fn staged_index_rows_count_and_are_checked_too() {
    // As after a crash before the staged rows were merged: move some rows back to staging.
    let c = Case::new();
    let conn = c.intruder();
    conn.execute_batch(
        "INSERT INTO audit_patient_new (seq, patient, time_ms) SELECT seq, patient, time_ms FROM audit_patient WHERE seq > 30;
         DELETE FROM audit_patient WHERE seq > 30;
         INSERT INTO audit_user_new (seq, user, time_ms) SELECT seq, user, time_ms FROM audit_user WHERE seq > 30;
         DELETE FROM audit_user WHERE seq > 30;",
    )
    .unwrap();
    c.verify().unwrap();
    let ids = |p: &str| -> Vec<String> {
        vaidya_audit::report_for_patient(&c.path, p).unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(ids("p1"), ["1", "6", "11", "16", "21", "26", "31", "36"]);
    // A staged row filed under the wrong patient is caught.
    conn.execute("DELETE FROM audit_patient_new WHERE seq = 36", []).unwrap();
    conn.execute("INSERT INTO audit_patient_new (seq, patient, time_ms) SELECT 36, 'p9', time_ms FROM audit_user_new WHERE seq = 36", []).unwrap();
    let err = c.verify().unwrap_err();
    assert!(matches!(err, AuditVerifyError::Index { seq: 36, .. }), "{err}");
    // (Staged rows cannot be updated either: the trigger refuses; put the right one back.)
    assert!(conn.execute("UPDATE audit_patient_new SET patient = 'p1' WHERE seq = 36", []).is_err());
    conn.execute("DELETE FROM audit_patient_new WHERE seq = 36", []).unwrap();
    conn.execute("INSERT INTO audit_patient_new (seq, patient, time_ms) SELECT 36, 'p1', time_ms FROM audit_user_new WHERE seq = 36", []).unwrap();
    c.verify().unwrap();
    drop(conn);
    // Reopening merges what is staged (at shutdown at the latest); all still verifies.
    let audit = vaidya_audit::Audit::open(&c.path, LedgerKey::from_private(c.key.private_text()).unwrap()).unwrap();
    audit.shutdown();
    let conn = Connection::open(c.path.join(vaidya_audit::DB_FILE)).unwrap();
    let staged: i64 = conn.query_row("SELECT count(*) FROM audit_patient_new", [], |r| r.get(0)).unwrap();
    assert_eq!(staged, 0);
    c.verify().unwrap();
    assert_eq!(ids("p1"), ["1", "6", "11", "16", "21", "26", "31", "36"]);
}
