//! Verification of an audit database from the entry bytes and the public key alone.
//!
//! One pass in sequence order recomputes every entry's leaf hash, the hash chain, the Merkle
//! tree (only its right edge is kept in memory, so a database of any size verifies in constant
//! memory), compares the stored tree hashes, and checks each signed checkpoint when the pass
//! reaches its tree size. Then the report indexes are recomputed from the AuditEvents. The
//! first problem stops the check and names its position (the entry's sequence number).

use crate::schema;
use crate::tree::Frontier;
use rusqlite::Connection;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::Path;
use vaidya_ledger::{Entry, Hash, hash_encoded};

#[derive(Debug, Clone, PartialEq)]
pub struct VerifyReport {
    pub entries: u64,
    pub checkpoints: u64,
    /// Root of the whole audit ledger's Merkle tree.
    pub root: Hash,
    /// The latest signed checkpoint: (tree size, time ms).
    pub last_checkpoint: Option<(u64, i64)>,
    /// Entries after the last signed checkpoint (not yet covered by a signature).
    pub unsigned: u64,
}

/// What is wrong, at which position.
#[derive(Debug, thiserror::Error)]
pub enum AuditVerifyError {
    #[error("cannot read the audit database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("no audit database at {0}")]
    NotFound(String),
    #[error("entry {seq} is missing (deleted){}", match next { Some(n) => format!("; the next entry present is {n}"), None => String::new() })]
    Missing { seq: u64, next: Option<u64> },
    #[error("entry {seq} cannot be decoded ({reason}): it was altered")]
    Undecodable { seq: u64, reason: String },
    #[error("entry {seq} holds the entry numbered {claims}: entries were reordered or moved")]
    Misplaced { seq: u64, claims: u64 },
    #[error("entry {seq} was altered: its bytes no longer match the hash recorded when it was appended")]
    Altered { seq: u64 },
    #[error("entry {seq} does not chain to entry {}: the chain was broken or entries were reordered", seq - 1)]
    ChainBroken { seq: u64 },
    #[error("entry {seq}: its time goes backwards")]
    TimeBackwards { seq: u64 },
    #[error("entry {seq} is not the AuditEvent it should be: {reason}")]
    BadContent { seq: u64, reason: String },
    #[error("entry {seq}: Merkle tree hash {idx} does not match the entries")]
    TreeHash { seq: u64, idx: u64 },
    #[error("entries {from} to {to} are missing: a signed checkpoint covers {to} entries, the ledger has {}", from - 1)]
    Truncated { from: u64, to: u64 },
    #[error("checkpoint at tree size {tree_size} is not valid: {reason}")]
    BadCheckpoint { tree_size: u64, reason: String },
    #[error("checkpoint at tree size {tree_size} signs a different root: an entry in {from} to {tree_size} was altered, removed or reordered")]
    CheckpointMismatch { tree_size: u64, from: u64 },
    #[error("report index disagrees with entry {seq}: {what}")]
    Index { seq: u64, what: String },
    #[error("report index row names entry {seq}, which does not exist")]
    IndexBeyondEnd { seq: u64 },
}

impl AuditVerifyError {
    /// The first bad position (entry sequence number), when the problem is about an entry.
    pub fn position(&self) -> Option<u64> {
        use AuditVerifyError::*;
        match self {
            Sqlite(_) | NotFound(_) | BadCheckpoint { .. } => None,
            Missing { seq, .. }
            | Undecodable { seq, .. }
            | Misplaced { seq, .. }
            | Altered { seq }
            | ChainBroken { seq }
            | TimeBackwards { seq }
            | BadContent { seq, .. }
            | TreeHash { seq, .. }
            | Index { seq, .. }
            | IndexBeyondEnd { seq } => Some(*seq),
            Truncated { from, .. } => Some(*from),
            CheckpointMismatch { from, .. } => Some(*from),
        }
    }
}

/// Verify the audit database in `dir` (the audit directory, `<data>/audit`) against the
/// ledger's public verifier key (`<data>/keys/ledger.pub`). Safe while the server runs (it
/// reads one consistent snapshot).
pub fn verify(dir: &Path, verifier_key: &str) -> Result<VerifyReport, AuditVerifyError> {
    let path = dir.join(crate::DB_FILE);
    if !path.exists() {
        return Err(AuditVerifyError::NotFound(path.display().to_string()));
    }
    let conn = schema::open_reader(&path)?;
    conn.execute_batch("BEGIN")?; // one snapshot for all the queries below
    let report = verify_conn(&conn, verifier_key);
    let _ = conn.execute_batch("COMMIT");
    report
}

type Digest128 = u128;

/// Order-independent digest of an index row (the sum of these over a set of rows).
fn row_digest(kind: u8, key: &str, seq: u64, time_ms: i64) -> Digest128 {
    let mut h = Sha256::new();
    h.update([kind]);
    h.update((key.len() as u64).to_be_bytes());
    h.update(key.as_bytes());
    h.update(seq.to_be_bytes());
    h.update(time_ms.to_be_bytes());
    u128::from_be_bytes(h.finalize()[..16].try_into().expect("16 bytes"))
}

pub(crate) fn verify_conn(conn: &Connection, verifier_key: &str) -> Result<VerifyReport, AuditVerifyError> {
    use AuditVerifyError::*;
    // A note verifier key is `<name>+<key hash>+<key>`; the audit log's origin derives from the name.
    let expected_origin = crate::origin(verifier_key.split('+').next().unwrap_or_default());
    let mut ledger_stmt = conn.prepare("SELECT seq, entry FROM ledger ORDER BY seq")?;
    let mut ledger_rows = ledger_stmt.query([])?;
    let mut tree_stmt = conn.prepare("SELECT idx, hash FROM tree_hash ORDER BY idx")?;
    let mut tree_rows = tree_stmt.query([])?;
    let mut cp_stmt = conn.prepare("SELECT tree_size, note FROM checkpoint ORDER BY tree_size")?;
    let mut cp_rows = cp_stmt.query([])?;
    let mut next_cp = next_checkpoint(&mut cp_rows)?;

    let mut frontier = Frontier::default();
    let mut prev = vaidya_ledger::GENESIS_PREV;
    let mut prev_time = i64::MIN;
    let mut expected = 1u64;
    let mut checkpoints = 0u64;
    let mut last_checkpoint: Option<(u64, i64)> = None;
    let mut index_digest: Digest128 = 0;
    let mut index_rows = 0u64;

    while let Some(row) = ledger_rows.next()? {
        let seq = row.get::<_, i64>(0)? as u64;
        let bytes: Vec<u8> = row.get(1)?;
        if seq != expected {
            return Err(Missing { seq: expected, next: Some(seq) });
        }
        let leaf = hash_encoded(&bytes);
        let entry = Entry::decode(&bytes).map_err(|e| Undecodable { seq, reason: e.to_string() })?;
        if entry.seq != seq {
            return Err(Misplaced { seq, claims: entry.seq });
        }
        // The tree hashes stored when this entry was appended: its leaf first.
        let (first, hashes) =
            frontier.append(seq - 1, leaf, None).map_err(|e| BadContent { seq, reason: format!("tree: {e}") })?;
        for (i, h) in hashes.iter().enumerate() {
            let idx = first + i as u64;
            let stored = match tree_rows.next()? {
                Some(r) => Some((r.get::<_, i64>(0)? as u64, r.get::<_, Vec<u8>>(1)?)),
                None => None,
            };
            match stored {
                Some((i2, hash)) if i2 == idx && hash[..] == h.0[..] => {}
                Some((i2, _)) if i2 == idx && i == 0 => return Err(Altered { seq }),
                _ => return Err(TreeHash { seq, idx }),
            }
        }
        if entry.prev_hash != prev {
            return Err(ChainBroken { seq });
        }
        if entry.time_ms < prev_time {
            return Err(TimeBackwards { seq });
        }
        let (user, patients) = content_keys(&entry).map_err(|reason| BadContent { seq, reason })?;
        index_digest = index_digest.wrapping_add(row_digest(b'u', &user, seq, entry.time_ms));
        index_rows += 1;
        for p in &patients {
            index_digest = index_digest.wrapping_add(row_digest(b'p', p, seq, entry.time_ms));
            index_rows += 1;
        }
        prev = leaf;
        prev_time = entry.time_ms;

        // Every checkpoint at this size: signed by our key, and over the root recomputed here.
        while let Some((size, note)) = next_cp.as_ref().filter(|(size, _)| *size <= seq).cloned() {
            checkpoints += 1;
            let cp = vaidya_ledger::verify_checkpoint(&note, verifier_key)
                .map_err(|e| BadCheckpoint { tree_size: size, reason: e.to_string() })?;
            if cp.origin != expected_origin {
                return Err(BadCheckpoint { tree_size: size, reason: format!("it is a checkpoint of '{}', not of the audit log '{expected_origin}'", cp.origin) });
            }
            if cp.tree_size != size {
                return Err(BadCheckpoint { tree_size: size, reason: format!("it signs tree size {}", cp.tree_size) });
            }
            if size == 0 {
                return Err(BadCheckpoint { tree_size: 0, reason: "empty tree".into() });
            }
            if size < seq {
                // Only possible if a row appeared out of order; the cursor is sorted.
                return Err(BadCheckpoint { tree_size: size, reason: "out of order".into() });
            }
            let root = frontier.root(seq, None).map_err(|e| BadContent { seq, reason: format!("tree: {e}") })?;
            if root != cp.root {
                let from = last_checkpoint.map_or(1, |(s, _)| s + 1);
                return Err(CheckpointMismatch { tree_size: size, from });
            }
            last_checkpoint = Some((size, cp.time_ms));
            next_cp = next_checkpoint(&mut cp_rows)?;
        }
        expected += 1;
    }
    let entries = expected - 1;
    if let Some((size, note)) = next_cp {
        // A checkpoint beyond the end: entries were removed (if its signature is ours).
        vaidya_ledger::verify_checkpoint(&note, verifier_key)
            .map_err(|e| BadCheckpoint { tree_size: size, reason: e.to_string() })?;
        let mut last = size;
        while let Some((s, _)) = next_checkpoint(&mut cp_rows)? {
            last = s;
        }
        return Err(Truncated { from: entries + 1, to: last });
    }
    if let Some(r) = tree_rows.next()? {
        // Tree hashes for entries that are gone: the tail was deleted.
        let _ = r;
        return Err(Missing { seq: entries + 1, next: None });
    }
    let root = frontier.root(entries, None).map_err(|e| BadContent { seq: entries, reason: format!("tree: {e}") })?;
    drop(ledger_rows);
    drop(tree_rows);
    drop(cp_rows);

    verify_indexes(conn, entries, index_digest, index_rows)?;
    let unsigned = entries - last_checkpoint.map_or(0, |(s, _)| s);
    Ok(VerifyReport { entries, checkpoints, root, last_checkpoint, unsigned })
}

fn next_checkpoint(rows: &mut rusqlite::Rows<'_>) -> Result<Option<(u64, String)>, rusqlite::Error> {
    Ok(match rows.next()? {
        Some(r) => Some((r.get::<_, i64>(0)? as u64, r.get(1)?)),
        None => None,
    })
}

/// The user and patients an entry must be indexed under, from its bytes: the author, and the
/// entities with role `1` (Patient) whose `what` is `Patient/<id>`. Also checks the content is
/// the AuditEvent with this entry's id.
pub(crate) fn content_keys(entry: &Entry) -> Result<(String, Vec<String>), String> {
    if entry.resource_type != "AuditEvent" || entry.resource_id != entry.seq.to_string() || entry.version != 1 {
        return Err("its header does not name AuditEvent/<seq> version 1".into());
    }
    let v: serde_json::Value = serde_json::from_slice(&entry.content).map_err(|e| format!("not JSON: {e}"))?;
    if v.get("resourceType").and_then(|t| t.as_str()) != Some("AuditEvent")
        || v.get("id").and_then(|t| t.as_str()) != Some(entry.resource_id.as_str())
    {
        return Err("its content is not AuditEvent/<seq>".into());
    }
    Ok((entry.author.clone(), patients_of(&v)))
}

/// Patient ids an AuditEvent names (entities in the Patient role).
pub(crate) fn patients_of(v: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in v.get("entity").and_then(|e| e.as_array()).into_iter().flatten() {
        if e.pointer("/role/code").and_then(|c| c.as_str()) != Some("1") {
            continue;
        }
        if let Some(id) = e.pointer("/what/reference").and_then(|r| r.as_str()).and_then(|r| r.strip_prefix("Patient/"))
            && !out.iter().any(|p| p == id)
        {
            out.push(id.to_string());
        }
    }
    out
}

/// Every report-index row, ordered and staged: (kind, key, seq, time).
const INDEX_QUERIES: [(u8, &str); 4] = [
    (b'u', "SELECT user, seq, time_ms FROM audit_user"),
    (b'u', "SELECT user, seq, time_ms FROM audit_user_new"),
    (b'p', "SELECT patient, seq, time_ms FROM audit_patient"),
    (b'p', "SELECT patient, seq, time_ms FROM audit_patient_new"),
];

fn verify_indexes(conn: &Connection, entries: u64, expected: Digest128, expected_rows: u64) -> Result<(), AuditVerifyError> {
    let mut digest: Digest128 = 0;
    let mut rows = 0u64;
    for (kind, sql) in INDEX_QUERIES {
        let mut stmt = conn.prepare(sql)?;
        let mut r = stmt.query([])?;
        while let Some(row) = r.next()? {
            let (key, seq, time): (String, i64, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
            digest = digest.wrapping_add(row_digest(kind, &key, seq as u64, time));
            rows += 1;
        }
    }
    if digest == expected && rows == expected_rows {
        return Ok(());
    }
    // Something differs: find the first entry concerned (slow path, in memory).
    let stored = stored_index_rows(conn)?;
    let mut wanted: BTreeSet<(u64, u8, String, i64)> = BTreeSet::new();
    let mut stmt = conn.prepare("SELECT seq, entry FROM ledger ORDER BY seq")?;
    let mut r = stmt.query([])?;
    while let Some(row) = r.next()? {
        let seq = row.get::<_, i64>(0)? as u64;
        let entry = Entry::decode(&row.get::<_, Vec<u8>>(1)?)
            .map_err(|e| AuditVerifyError::Undecodable { seq, reason: e.to_string() })?;
        let (user, patients) = content_keys(&entry).map_err(|reason| AuditVerifyError::BadContent { seq: entry.seq, reason })?;
        wanted.insert((entry.seq, b'u', user, entry.time_ms));
        for p in patients {
            wanted.insert((entry.seq, b'p', p, entry.time_ms));
        }
    }
    let first = stored.symmetric_difference(&wanted).next().cloned();
    match first {
        Some((seq, ..)) if seq > entries || seq == 0 => Err(AuditVerifyError::IndexBeyondEnd { seq }),
        Some((seq, kind, key, _)) => {
            let what = match (stored.iter().any(|r| r.0 == seq && r.1 == kind && r.2 == key), kind) {
                (true, b'u') => format!("the user index files it under {key:?}, which it does not name"),
                (true, _) => format!("the patient index files it under Patient/{key}, which it does not name"),
                (false, b'u') => format!("the user index lacks its user {key:?}"),
                (false, _) => format!("the patient index lacks its Patient/{key}"),
            };
            Err(AuditVerifyError::Index { seq, what })
        }
        None => Err(AuditVerifyError::Index { seq: entries, what: "index digests differ".into() }),
    }
}

fn stored_index_rows(conn: &Connection) -> Result<BTreeSet<(u64, u8, String, i64)>, rusqlite::Error> {
    let mut out = BTreeSet::new();
    for (kind, sql) in INDEX_QUERIES {
        let mut stmt = conn.prepare(sql)?;
        let mut r = stmt.query([])?;
        while let Some(row) = r.next()? {
            out.insert((row.get::<_, i64>(1)? as u64, kind, row.get(0)?, row.get(2)?));
        }
    }
    Ok(out)
}
