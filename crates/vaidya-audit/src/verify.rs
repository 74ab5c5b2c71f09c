//! Verification of the audit ledger from its files and the public key alone.
//!
//! One pass over the journal in sequence order recomputes every entry's leaf hash, the hash
//! chain and the Merkle tree (only its right edge is kept in memory, so a ledger of any size
//! verifies in constant memory), and checks each signed checkpoint when the pass reaches its
//! tree size, together with what the checkpoint row stores for restarts (tree edge, journal
//! position, last leaf). Each closed segment's report index file is compared with the postings
//! recomputed from the segment's entries when the pass leaves the segment. The first problem
//! stops the check and names its position (the entry's sequence number).
//!
//! Safe while the server runs: the checkpoints are read in one snapshot taken before the
//! journal is read, the journal is only ever appended to, and the segment being written (the
//! last one the pass reads) has no index file to compare yet.

use crate::index::{self, Postings};
use crate::journal::{self, HEADER, Next, Pos};
use crate::schema;
use rusqlite::Connection;
use std::path::Path;
use vaidya_ledger::Frontier;
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
    #[error("there is a report index file for journal segment {seq}, which does not exist")]
    IndexBeyondEnd { seq: u64 },
    #[error("none of the {entries} entries is covered by a signed checkpoint: the checkpoints were deleted (compare with the backup target's copy), or the server stopped within a second of its first event ever (start it once to sign them)")]
    NoCheckpoint { entries: u64 },
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
            NoCheckpoint { .. } => Some(1),
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
    let report = verify_files(dir, &conn, verifier_key);
    let _ = conn.execute_batch("COMMIT");
    report
}

fn verify_files(dir: &Path, conn: &Connection, verifier_key: &str) -> Result<VerifyReport, AuditVerifyError> {
    use AuditVerifyError::*;
    // A note verifier key is `<name>+<key hash>+<key>`; the audit log's origin derives from the name.
    let expected_origin = crate::origin(verifier_key.split('+').next().unwrap_or_default());
    let segments = journal::segments(dir).map_err(|e| AuditVerifyError::Journal(e.to_string()))?;
    let indexed = index::indexed_segments(dir).map_err(|e| AuditVerifyError::Journal(e.to_string()))?;
    if let Some(&stray) = indexed.iter().find(|s| segments.binary_search(s).is_err()) {
        return Err(AuditVerifyError::IndexBeyondEnd { seq: stray });
    }
    let last_segment = segments.last().copied().unwrap_or(0);
    // The segment the pass is in, and its postings as its entries say (for a closed segment
    // with an index file).
    let mut in_segment: Option<(u64, Postings)> = None;
    let mut cp_stmt = conn.prepare("SELECT tree_size, note, edge, seg, off, last_leaf, last_time_ms FROM checkpoint ORDER BY tree_size")?;
    let mut cp_rows = cp_stmt.query([])?;
    let mut next_cp = next_checkpoint(&mut cp_rows)?;

    let mut frontier = Frontier::default();
    let mut prev = vaidya_ledger::GENESIS_PREV;
    let mut prev_time = i64::MIN;
    let mut expected = 1u64;
    let mut checkpoints = 0u64;
    let mut last_checkpoint: Option<(u64, i64)> = None;
    let mut failure: Option<AuditVerifyError> = None;

    let walked = journal::walk(dir, Pos { seg: 1, off: HEADER }, |seg, next| {
        let Next::Frame(frame) = next else { return Ok(true) };
        let seq = expected;
        if in_segment.as_ref().is_none_or(|(s, _)| *s != seg) {
            if let Some((done, postings)) = in_segment.take()
                && let Some((seq, what)) = index::difference(dir, done, postings)
            {
                failure = Some(Index { seq, what });
                return Ok(false);
            }
            let compare = seg != last_segment && indexed.binary_search(&seg).is_ok();
            in_segment = Some((seg, Postings::default())).filter(|_| compare);
        }
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
            if let Some((_, postings)) = in_segment.as_mut() {
                postings.add(seq, frame.off, &user, &patients);
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
    if let Some((done, postings)) = in_segment.take()
        && let Some((seq, what)) = index::difference(dir, done, postings)
    {
        return Err(Index { seq, what });
    }
    let root = frontier.root(entries).map_err(|e| BadContent { seq: entries, reason: format!("tree: {e}") })?;
    if entries > 0 && last_checkpoint.is_none() {
        // The writer signs within a second of any event, and at shutdown: a ledger without a
        // single signature is one whose checkpoints were removed, which would hide a cut tail.
        return Err(NoCheckpoint { entries });
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

