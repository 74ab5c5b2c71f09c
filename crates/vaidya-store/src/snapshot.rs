//! A consistent copy of the whole database, for backups: a restore starts from the copy and
//! replays only the ledger entries made after it, instead of every entry since the first.
//!
//! The copy is SQLite's online backup of every page in one step: one read transaction, so the
//! copy is one committed state even while the writer goes on (a page-by-page backup would
//! restart at each commit). Bearer tokens and sessions are removed from the copy: a restored
//! server makes everyone sign in again, as a restore from segments does.

use crate::StoreError;
use rusqlite::Connection;
use std::path::Path;
use vaidya_ledger::Hash;

/// What a copy holds.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyInfo {
    /// Ledger entries in the copy.
    pub size: u64,
    /// Merkle root of those entries.
    pub root: Hash,
    /// Time of the last entry (ms since the epoch).
    pub last_time_ms: i64,
    /// The copy's size in bytes.
    pub bytes: u64,
}

/// Copy the database at `db` (a running server's, or any) into the new file `out`.
pub fn copy(db: &Path, out: &Path) -> Result<CopyInfo, StoreError> {
    if out.exists() {
        return Err(StoreError::Io(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} exists: a snapshot is only written into a new file", out.display()),
        )));
    }
    let src = crate::db::open_reader(db)?;
    {
        let mut dst = Connection::open(out)?;
        let backup = rusqlite::backup::Backup::new(&src, &mut dst)?;
        // Every page in one step: one read transaction for the whole copy.
        loop {
            match backup.step(-1)? {
                rusqlite::backup::StepResult::Done => break,
                rusqlite::backup::StepResult::Busy | rusqlite::backup::StepResult::Locked => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                _ => {}
            }
        }
    }
    let dst = Connection::open(out)?;
    // The copy is a plain file: no write-ahead log beside it to lose.
    dst.pragma_update(None, "journal_mode", "DELETE")?;
    dst.pragma_update(None, "secure_delete", true)?;
    dst.execute("DELETE FROM api_token", [])?;
    let info = describe(&dst)?;
    drop(dst);
    let bytes = std::fs::metadata(out)?.len();
    Ok(CopyInfo { bytes, ..info })
}

/// Size, root and last entry time of a database's ledger (from its stored tree).
pub fn describe(conn: &impl crate::sql::Db) -> Result<CopyInfo, StoreError> {
    let last: Option<(i64, Vec<u8>)> =
        conn.query_opt("SELECT seq, entry FROM ledger ORDER BY seq DESC LIMIT 1", &[], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let (size, last_time_ms) = match last {
        None => (0, 0),
        Some((seq, bytes)) => (
            seq as u64,
            vaidya_ledger::encoded_time_ms(&bytes).ok_or_else(|| StoreError::Corrupt(format!("entry {seq} cannot be decoded")))?,
        ),
    };
    let root = crate::merkle_root(conn, size)?;
    Ok(CopyInfo { size, root, last_time_ms, bytes: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use vaidya_ledger::LedgerKey;

    #[test]
    fn a_copy_is_one_committed_state_without_tokens_and_its_ledger_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("vaidya.db");
        let key = LedgerKey::generate("vaidya.test/ledger");
        let verifier = key.verifier_text().to_string();
        let store = Store::open(&db, key).unwrap();
        for i in 0..20 {
            let body = crate::Body::from_resource(&serde_json::json!({"resourceType": "Basic"}));
            store.write_blocking(move |tx| tx.put("test", "Basic", &format!("b{i}"), &body, &[]).map(|_| ())).unwrap();
        }
        store
            .write_blocking(|tx| {
                use crate::sql::Db;
                tx.conn().execute("INSERT INTO api_user (name, role, must_change_password, created_ms) VALUES ('u', 'doctor', 0, 0)", &[])?;
                tx.conn().execute("INSERT INTO api_token (id, secret_hash, user_name, created_ms) VALUES ('t', x'00', 'u', 0)", &[])?;
                Ok::<_, StoreError>(())
            })
            .unwrap();
        let out = dir.path().join("copy.db");
        let info = copy(&db, &out).unwrap();
        assert_eq!(info.size, 20);
        let live_root = store.read(|c| crate::merkle_root(c, 20)).unwrap();
        assert_eq!(info.root, live_root);
        assert!(info.bytes > 0);
        assert!(copy(&db, &out).is_err(), "never over an existing file");

        let conn = Connection::open(&out).unwrap();
        let tokens: i64 = conn.query_row("SELECT count(*) FROM api_token", [], |r| r.get(0)).unwrap();
        let users: i64 = conn.query_row("SELECT count(*) FROM api_user", [], |r| r.get(0)).unwrap();
        assert_eq!((tokens, users), (0, 1), "accounts stay, tokens go");
        let checked = crate::verify::verify_ledger(&conn, &verifier).unwrap();
        assert!(checked.problems.is_empty(), "{:?}", checked.problems);
        assert_eq!((checked.entries, checked.root), (20, live_root));
        assert_eq!(checked.root_at(20), Some(live_root));
        assert_eq!(checked.frontier().root(20).unwrap(), live_root);

        // An entry altered in the copy is found by the ledger check alone.
        conn.execute("UPDATE ledger SET entry = CAST(replace(CAST(entry AS TEXT), 'b7', 'x7') AS BLOB) WHERE seq = 8", []).unwrap();
        let checked = crate::verify::verify_ledger(&conn, &verifier).unwrap();
        assert!(!checked.problems.is_empty());
    }
}
