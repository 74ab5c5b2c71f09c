//! Verification of the audit ledger from its files and the public key alone.
//!
//! One pass over the journal in sequence order recomputes every entry's leaf hash, the hash
//! chain and the Merkle tree (only its right edge is kept in memory, so a ledger of any size
//! verifies in constant memory), and checks each signed checkpoint when the pass reaches its
//! tree size, together with what the checkpoint row stores for restarts (tree edge, journal
//! position, last leaf). The report indexes are compared with the entries as the pass goes (an
//! order-independent digest of the rows; the first differing entry is looked for only when the
//! digests differ). The first problem stops the check and names its position (the entry's
//! sequence number).
//!
//! Safe while the server runs: the checkpoints and the index are read in one snapshot each,
//! taken before the journal is read, and the journal is only ever appended to.

use crate::journal::{self, HEADER, Next, Pos};
use vaidya_ledger::Frontier;
use crate::{INDEX_FILE, schema};
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
    #[error("cannot read the audit journal: {0}")]
    Journal(String),
    #[error("no audit ledger at {0}")]
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
    #[error("journal segment {seg} starts with entry {seq}: segments were renamed or moved")]
    SegmentName { seq: u64, seg: u64 },
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
            Sqlite(_) | Journal(_) | NotFound(_) | BadCheckpoint { .. } => None,
            Missing { seq, .. }
            | Undecodable { seq, .. }
            | Misplaced { seq, .. }
            | Altered { seq }
            | ChainBroken { seq }
            | TimeBackwards { seq }
            | BadContent { seq, .. }
            | SegmentName { seq, .. }
            | Index { seq, .. }
            | IndexBeyondEnd { seq } => Some(*seq),
            Truncated { from, .. } => Some(*from),
            CheckpointMismatch { from, .. } => Some(*from),
        }
    }
}

impl From<crate::AuditError> for AuditVerifyError {
    fn from(e: crate::AuditError) -> Self {
        match e {
            crate::AuditError::Sqlite(e) => AuditVerifyError::Sqlite(e),
            other => AuditVerifyError::Journal(other.to_string()),
        }
    }
}

/// Verify the audit ledger in `dir` (the audit directory, `<data>/audit`) against the ledger's
/// public verifier key (`<data>/keys/ledger.pub`).
pub fn verify(dir: &Path, verifier_key: &str) -> Result<VerifyReport, AuditVerifyError> {
    let path = dir.join(crate::DB_FILE);
    if !path.exists() || !journal::journal_dir(dir).exists() {
        return Err(AuditVerifyError::NotFound(dir.display().to_string()));
    }
    let conn = schema::open_reader(&path)?;
    conn.execute_batch("BEGIN")?;
    let index = match dir.join(INDEX_FILE) {
        p if p.exists() => Some(schema::open_reader(&p)?),
        _ => None,
    };
    let report = verify_files(dir, &conn, index.as_ref(), verifier_key);
    let _ = conn.execute_batch("COMMIT");
    report
}

type Digest128 = u128;

/// Order-independent digest of an index row (the sum of these over a set of rows).
fn row_digest(kind: u8, key: &str, seq: u64, pos: Pos, time_ms: i64) -> Digest128 {
    let mut h = Sha256::new();
    h.update([kind]);
    h.update((key.len() as u64).to_be_bytes());
    h.update(key.as_bytes());
    h.update(seq.to_be_bytes());
    h.update(pos.seg.to_be_bytes());
    h.update(pos.off.to_be_bytes());
    h.update(time_ms.to_be_bytes());
    u128::from_be_bytes(h.finalize()[..16].try_into().expect("16 bytes"))
}

/// The index as stored: its marker, and the digest and count of its rows.
struct StoredIndex {
    marker: (u64, Pos),
    digest: Digest128,
    rows: u64,
}

fn stored_index(index: Option<&Connection>) -> Result<StoredIndex, AuditVerifyError> {
    let Some(conn) = index else {
        return Ok(StoredIndex { marker: (0, Pos { seg: 1, off: HEADER }), digest: 0, rows: 0 });
    };
    conn.execute_batch("BEGIN")?;
    let marker = crate::index::marker(conn)?;
    let mut digest: Digest128 = 0;
    let mut rows = 0u64;
    for_each_index_row(conn, |kind, key, seq, pos, time| {
        digest = digest.wrapping_add(row_digest(kind, key, seq, pos, time));
        rows += 1;
    })?;
    conn.execute_batch("COMMIT")?;
    Ok(StoredIndex { marker, digest, rows })
}

const INDEX_QUERIES: [(u8, &str); 4] = [
    (b'u', "SELECT user, seq, seg, off, time_ms FROM audit_user"),
    (b'u', "SELECT user, seq, seg, off, time_ms FROM audit_user_new"),
    (b'p', "SELECT patient, seq, seg, off, time_ms FROM audit_patient"),
    (b'p', "SELECT patient, seq, seg, off, time_ms FROM audit_patient_new"),
];

fn for_each_index_row(conn: &Connection, mut each: impl FnMut(u8, &str, u64, Pos, i64)) -> rusqlite::Result<()> {
    for (kind, sql) in INDEX_QUERIES {
        let mut stmt = conn.prepare(sql)?;
        let mut r = stmt.query([])?;
        while let Some(row) = r.next()? {
            let key: String = row.get(0)?;
            let pos = Pos { seg: row.get::<_, i64>(2)? as u64, off: row.get::<_, i64>(3)? as u64 };
            each(kind, &key, row.get::<_, i64>(1)? as u64, pos, row.get(4)?);
        }
    }
    Ok(())
}

fn verify_files(dir: &Path, conn: &Connection, index: Option<&Connection>, verifier_key: &str) -> Result<VerifyReport, AuditVerifyError> {
    use AuditVerifyError::*;
    // A note verifier key is `<name>+<key hash>+<key>`; the audit log's origin derives from the name.
    let expected_origin = crate::origin(verifier_key.split('+').next().unwrap_or_default());
    let stored = stored_index(index)?;
    let mut cp_stmt = conn.prepare("SELECT tree_size, note, edge, seg, off, last_leaf, last_time_ms FROM checkpoint ORDER BY tree_size")?;
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
    let mut failure: Option<AuditVerifyError> = None;

    let walked = journal::walk(dir, Pos { seg: 1, off: HEADER }, |seg, next| {
        let Next::Frame(frame) = next else { return Ok(true) };
        let seq = expected;
        let step = (|| -> Result<(), AuditVerifyError> {
            let entry = Entry::decode(&frame.entry).map_err(|e| Undecodable { seq, reason: e.to_string() })?;
            if entry.seq > seq {
                return Err(Missing { seq, next: Some(entry.seq) });
            }
            if entry.seq != seq {
                return Err(Misplaced { seq, claims: entry.seq });
            }
            if frame.off == HEADER && seg != seq {
                return Err(SegmentName { seq, seg });
            }
            let leaf = hash_encoded(&frame.entry);
            if leaf.0 != frame.leaf {
                return Err(Altered { seq });
            }
            if entry.prev_hash != prev {
                return Err(ChainBroken { seq });
            }
            if entry.time_ms < prev_time {
                return Err(TimeBackwards { seq });
            }
            frontier.append(seq - 1, leaf).map_err(|e| BadContent { seq, reason: format!("tree: {e}") })?;
            let (user, patients) = content_keys(&entry).map_err(|reason| BadContent { seq, reason })?;
            if seq <= stored.marker.0 {
                let pos = Pos { seg, off: frame.off };
                index_digest = index_digest.wrapping_add(row_digest(b'u', &user, seq, pos, entry.time_ms));
                index_rows += 1;
                for p in &patients {
                    index_digest = index_digest.wrapping_add(row_digest(b'p', p, seq, pos, entry.time_ms));
                    index_rows += 1;
                }
                if seq == stored.marker.0 && stored.marker.1 != (Pos { seg, off: frame.end() }) {
                    return Err(Index { seq, what: "the index's marker does not point just past it".into() });
                }
            }
            prev = leaf;
            prev_time = entry.time_ms;

            // Every checkpoint at this size: signed by our key, over the root recomputed here,
            // with the restart state it stores matching the entries.
            while let Some(cp) = next_cp.take_if(|cp| cp.size <= seq) {
                checkpoints += 1;
                let size = cp.size;
                let bad = |reason: String| BadCheckpoint { tree_size: size, reason };
                let signed = vaidya_ledger::verify_checkpoint(&cp.note, verifier_key).map_err(|e| bad(e.to_string()))?;
                if signed.origin != expected_origin {
                    return Err(bad(format!("it is a checkpoint of '{}', not of the audit log '{expected_origin}'", signed.origin)));
                }
                if signed.tree_size != size {
                    return Err(bad(format!("it signs tree size {}", signed.tree_size)));
                }
                if size < seq {
                    return Err(bad("out of order".into()));
                }
                let root = frontier.root(seq).map_err(|e| BadContent { seq, reason: format!("tree: {e}") })?;
                if root != signed.root {
                    let from = last_checkpoint.map_or(1, |(s, _)| s + 1);
                    return Err(CheckpointMismatch { tree_size: size, from });
                }
                if cp.edge != frontier.encode() || cp.pos != (Pos { seg, off: frame.end() }) || cp.last_leaf != leaf.0.to_vec() || cp.last_time_ms != entry.time_ms {
                    return Err(bad("the restart state stored with it (tree edge, journal position, last entry) does not match the entries".into()));
                }
                last_checkpoint = Some((size, signed.time_ms));
                next_cp = next_checkpoint(&mut cp_rows)?;
            }
            Ok(())
        })();
        match step {
            Ok(()) => {
                expected += 1;
                Ok(true)
            }
            Err(e) => {
                failure = Some(e);
                Ok(false)
            }
        }
    });
    if let Some(f) = failure {
        return Err(f);
    }
    walked?;
    let entries = expected - 1;
    if let Some(cp) = next_cp {
        // A checkpoint beyond the end: entries were removed (if its signature is ours).
        vaidya_ledger::verify_checkpoint(&cp.note, verifier_key).map_err(|e| BadCheckpoint { tree_size: cp.size, reason: e.to_string() })?;
        let mut last = cp.size;
        while let Some(more) = next_checkpoint(&mut cp_rows)? {
            last = more.size;
        }
        return Err(Truncated { from: entries + 1, to: last });
    }
    if stored.marker.0 > entries {
        return Err(IndexBeyondEnd { seq: entries + 1 });
    }
    let root = frontier.root(entries).map_err(|e| BadContent { seq: entries, reason: format!("tree: {e}") })?;
    if index_digest != stored.digest || index_rows != stored.rows {
        return Err(first_index_difference(dir, index, stored.marker.0));
    }
    let unsigned = entries - last_checkpoint.map_or(0, |(s, _)| s);
    Ok(VerifyReport { entries, checkpoints, root, last_checkpoint, unsigned })
}

struct CheckpointRow {
    size: u64,
    note: String,
    edge: Vec<u8>,
    pos: Pos,
    last_leaf: Vec<u8>,
    last_time_ms: i64,
}

fn next_checkpoint(rows: &mut rusqlite::Rows<'_>) -> Result<Option<CheckpointRow>, rusqlite::Error> {
    Ok(match rows.next()? {
        Some(r) => Some(CheckpointRow {
            size: r.get::<_, i64>(0)? as u64,
            note: r.get(1)?,
            edge: r.get(2)?,
            pos: Pos { seg: r.get::<_, i64>(3)? as u64, off: r.get::<_, i64>(4)? as u64 },
            last_leaf: r.get(5)?,
            last_time_ms: r.get(6)?,
        }),
        None => None,
    })
}

/// The digests differ: find the first entry concerned (slow path, in memory).
fn first_index_difference(dir: &Path, index: Option<&Connection>, marker: u64) -> AuditVerifyError {
    let mut stored: BTreeSet<(u64, u8, String, Pos, i64)> = BTreeSet::new();
    if let Some(conn) = index {
        let r = for_each_index_row(conn, |kind, key, seq, pos, time| {
            stored.insert((seq, kind, key.to_string(), pos, time));
        });
        if let Err(e) = r {
            return e.into();
        }
    }
    let mut wanted: BTreeSet<(u64, u8, String, Pos, i64)> = BTreeSet::new();
    let walked = journal::walk(dir, Pos { seg: 1, off: HEADER }, |seg, next| {
        let Next::Frame(f) = next else { return Ok(true) };
        let Ok(entry) = Entry::decode(&f.entry) else { return Ok(false) };
        if entry.seq > marker {
            return Ok(false);
        }
        let Ok((user, patients)) = content_keys(&entry) else { return Ok(false) };
        let pos = Pos { seg, off: f.off };
        wanted.insert((entry.seq, b'u', user, pos, entry.time_ms));
        for p in patients {
            wanted.insert((entry.seq, b'p', p, pos, entry.time_ms));
        }
        Ok(true)
    });
    if let Err(e) = walked {
        return e.into();
    }
    match stored.symmetric_difference(&wanted).next().cloned() {
        Some((seq, ..)) if seq > marker || seq == 0 => AuditVerifyError::IndexBeyondEnd { seq },
        Some((seq, kind, key, ..)) => {
            let what = match (stored.iter().any(|r| r.0 == seq && r.1 == kind && r.2 == key), kind) {
                (true, b'u') => format!("the user index files it under {key:?}, which it does not name (or at another place)"),
                (true, _) => format!("the patient index files it under Patient/{key}, which it does not name (or at another place)"),
                (false, b'u') => format!("the user index lacks its user {key:?}"),
                (false, _) => format!("the patient index lacks its Patient/{key}"),
            };
            AuditVerifyError::Index { seq, what }
        }
        None => AuditVerifyError::Index { seq: marker, what: "index digests differ".into() },
    }
}

/// The user and patients an entry must be indexed under, from its bytes: the author, and the
/// patients the record names (in JSON: the entities with role `1` (Patient) whose `what` is
/// `Patient/<id>`). Also checks the content is this entry's AuditEvent: a compact record whose
/// user is the entry's author, or JSON of the AuditEvent with this entry's id.
pub(crate) fn content_keys(entry: &Entry) -> Result<(String, Vec<String>), String> {
    if entry.resource_type != "AuditEvent" || entry.resource_id != entry.seq.to_string() || entry.version != 1 {
        return Err("its header does not name AuditEvent/<seq> version 1".into());
    }
    if entry.content.first() == Some(&crate::compact::FORMAT) {
        let record = crate::compact::decode(&entry.content)?;
        if record.user() != entry.author {
            return Err("its record's user is not the entry's author".into());
        }
        let mut patients: Vec<String> = Vec::with_capacity(record.patients.len());
        for p in record.patients {
            if !patients.contains(&p) {
                patients.push(p);
            }
        }
        return Ok((entry.author.clone(), patients));
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

