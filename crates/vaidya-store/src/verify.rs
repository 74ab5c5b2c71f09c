//! Full verification of a data directory's database: the hash chain, the Merkle tree, every
//! signed checkpoint, and every projection against the ledger.
//!
//! It trusts nothing but the entry bytes and the public key: stored hashes, checkpoints and
//! projections are all recomputed and compared, and the first disagreement is named.

use crate::StoreError;
use crate::schema::INDEX_TABLES;
use crate::sql::Db;
use std::collections::{BTreeSet, HashMap};
use vaidya_ledger::{Entry, Hash, HashReader, Op, TlogError, hash_encoded, stored_hash_index, stored_hashes_for_record_hash};

#[derive(Debug, Clone, PartialEq)]
pub struct VerifyReport {
    pub entries: u64,
    pub checkpoints: u64,
    pub resources: u64,
    /// Root of the whole ledger's Merkle tree.
    pub root: Hash,
    /// The latest signed checkpoint: (tree size, time).
    pub last_checkpoint: Option<(u64, i64)>,
    /// Everything found wrong, the first (lowest entry) first. Empty means verified.
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The ledger entry at fault, when the problem is about one.
    pub seq: Option<u64>,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "entry {seq}: {}", self.what),
            None => write!(f, "{}", self.what),
        }
    }
}

/// Stop collecting after this many problems: one is enough to refuse, a few help diagnose.
const MAX_PROBLEMS: usize = 50;

struct MemHashes(Vec<Hash>);

impl HashReader for MemHashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        indexes.iter().map(|&i| self.0.get(i as usize).copied().ok_or(TlogError::IndexesNotInTree)).collect()
    }
}

/// Latest state of one resource according to the ledger.
struct LedgerState {
    version: u64,
    seq: u64,
    time_ms: i64,
    deleted: bool,
}

/// Where checks note what they find: the first [`MAX_PROBLEMS`] problems are kept.
fn collector(problems: &mut Vec<Problem>) -> impl FnMut(Option<u64>, String) + '_ {
    move |seq, what| {
        if problems.len() < MAX_PROBLEMS {
            problems.push(Problem { seq, what });
        }
    }
}

pub fn verify(conn: &impl Db, verifier_key: &str) -> Result<VerifyReport, StoreError> {
    let mut problems = Vec::new();
    let mut note = collector(&mut problems);
    let pass = check_ledger(conn, verifier_key, true, &mut note)?;

    // 4. Projections: current versions, history, and search indexes.
    let resources = pass.states.len() as u64;
    verify_resource_table(conn, &pass.states, &mut note)?;
    verify_history_table(conn, &pass.versions, &mut note)?;
    verify_indexes(conn, &pass.states, &mut note)?;
    drop(note);

    problems.sort_by_key(|p| p.seq.unwrap_or(u64::MAX));
    let (entries, checkpoints, root, last_checkpoint) = (pass.entries, pass.checkpoints, pass.root, pass.last_checkpoint);
    Ok(VerifyReport { entries, checkpoints, resources, root, last_checkpoint, problems })
}

/// The ledger alone (chain, Merkle tree, signed checkpoints), without the projections: what a
/// restore from a database snapshot checks before it trusts the snapshot's ledger.
pub struct LedgerVerified {
    pub entries: u64,
    pub root: Hash,
    /// Time of the last entry (ms since the epoch), 0 for an empty ledger.
    pub last_time_ms: i64,
    pub problems: Vec<Problem>,
    hashes: MemHashes,
}

impl LedgerVerified {
    /// Root at `size` entries (at most [`LedgerVerified::entries`]), from the recomputed tree.
    pub fn root_at(&self, size: u64) -> Option<Hash> {
        (size <= self.entries).then(|| vaidya_ledger::tree_hash(size, &self.hashes).ok()).flatten()
    }

    /// Leaf hash of entry `seq`.
    pub fn leaf(&self, seq: u64) -> Option<vaidya_ledger::EntryHash> {
        (1..=self.entries)
            .contains(&seq)
            .then(|| self.hashes.0.get(stored_hash_index(0, seq - 1) as usize).map(|h| vaidya_ledger::EntryHash(h.0)))
            .flatten()
    }

    /// The tree's right edge after every entry, to append after them.
    pub fn frontier(&self) -> vaidya_ledger::Frontier {
        let mut f = vaidya_ledger::Frontier::default();
        for seq in 1..=self.entries {
            let leaf = self.leaf(seq).expect("every entry has a leaf");
            f.append(seq - 1, leaf).expect("the tree recomputed here has every hash");
        }
        f
    }
}

pub fn verify_ledger(conn: &impl Db, verifier_key: &str) -> Result<LedgerVerified, StoreError> {
    let mut problems = Vec::new();
    let mut note = collector(&mut problems);
    let pass = check_ledger(conn, verifier_key, false, &mut note)?;
    drop(note);
    problems.sort_by_key(|p| p.seq.unwrap_or(u64::MAX));
    Ok(LedgerVerified { entries: pass.entries, root: pass.root, last_time_ms: pass.last_time_ms, problems, hashes: pass.hashes })
}

/// What steps 1 to 3 found.
struct LedgerPass {
    entries: u64,
    hashes: MemHashes,
    root: Hash,
    last_time_ms: i64,
    checkpoints: u64,
    last_checkpoint: Option<(u64, i64)>,
    /// With `projections`: each resource's latest state and every version, for step 4.
    states: HashMap<(String, String), LedgerState>,
    versions: BTreeSet<(String, String, u64, u64)>,
}

/// Steps 1 to 3: the chain and the tree from the entry bytes, the stored tree hashes, the
/// signed checkpoints. `projections`: also check that content is JSON and collect what step 4
/// compares the projections with.
fn check_ledger(
    conn: &impl Db,
    verifier_key: &str,
    projections: bool,
    note: &mut impl FnMut(Option<u64>, String),
) -> Result<LedgerPass, StoreError> {
    // 1. The chain and the tree, from the entry bytes alone.
    let mut hashes = MemHashes(Vec::new());
    let mut states: HashMap<(String, String), LedgerState> = HashMap::new();
    let mut versions: BTreeSet<(String, String, u64, u64)> = BTreeSet::new();
    let mut prev = vaidya_ledger::GENESIS_PREV;
    let mut prev_time = i64::MIN;
    let mut expected_seq = 1u64;
    let mut gap = false;
    conn.for_each_row("SELECT seq, entry FROM ledger ORDER BY seq", &[], &mut |row| {
        {
            let seq: u64 = row.get(0)?;
            let bytes: Vec<u8> = row.get(1)?;
            if gap {
                return Ok(());
            }
            if seq != expected_seq {
                note(Some(expected_seq), format!("missing; the next entry present is {seq}"));
                gap = true;
                return Ok(());
            }
            let leaf = hash_encoded(&bytes);
            let entry = match Entry::decode(&bytes) {
                Ok(e) => e,
                Err(e) => {
                    note(Some(seq), format!("cannot be decoded ({e}); it was altered"));
                    // Keep the tree going with what is there, so later checks still run.
                    append_leaf(&mut hashes, seq, leaf);
                    prev = leaf;
                    expected_seq += 1;
                    return Ok(());
                }
            };
            if entry.seq != seq {
                note(Some(seq), format!("says it is entry {}", entry.seq));
            }
            if entry.prev_hash != prev {
                let culprit = seq - 1;
                note(
                    Some(culprit.max(1)),
                    format!("its hash does not match the previous-hash recorded in entry {seq}; entry {culprit} was altered"),
                );
            }
            if entry.time_ms < prev_time {
                note(Some(seq), "time goes backwards".into());
            }
            if projections && entry.op == Op::Put && serde_json::from_slice::<serde_json::Value>(&entry.content).is_err() {
                note(Some(seq), "content is not valid JSON".into());
            }
            prev_time = entry.time_ms;
            append_leaf(&mut hashes, seq, leaf);
            if projections {
                versions.insert((entry.resource_type.clone(), entry.resource_id.clone(), entry.version, seq));
                states.insert(
                    (entry.resource_type, entry.resource_id),
                    LedgerState { version: entry.version, seq, time_ms: entry.time_ms, deleted: entry.op == Op::Delete },
                );
            }
            prev = leaf;
            expected_seq += 1;
        }
        Ok(())
    })?;
    let entries = expected_seq - 1;

    // 2. The stored tree hashes agree with the recomputed ones (the last entry has no successor
    //    to vouch for it: its stored leaf hash does).
    {
        let mut seen = 0usize;
        conn.for_each_row("SELECT idx, hash FROM tree_hash ORDER BY idx", &[], &mut |row| {
            let idx = row.get::<u64>(0)? as usize;
            let stored: Vec<u8> = row.get(1)?;
            seen += 1;
            match hashes.0.get(idx) {
                Some(h) if h.0[..] == stored[..] => {}
                Some(_) => {
                    let seq = seq_of_stored_index(idx as u64, entries);
                    note(seq, format!("Merkle tree hash {idx} does not match the entries; the entry or the tree was altered"));
                }
                None => note(None, format!("unexpected Merkle tree hash {idx} beyond the ledger's end")),
            }
            Ok(())
        })?;
        if seen < hashes.0.len() {
            note(None, format!("{} Merkle tree hashes are missing", hashes.0.len() - seen));
        }
    }
    let root = vaidya_ledger::tree_hash(entries, &hashes).map_err(|e| StoreError::Corrupt(e.to_string()))?;

    // 3. Every checkpoint is signed by our key and matches the recomputed tree at its size.
    let mut checkpoints = 0u64;
    let mut last_checkpoint = None;
    {
        conn.for_each_row("SELECT tree_size, note FROM checkpoint ORDER BY tree_size", &[], &mut |row| {
            checkpoints += 1;
            let size: u64 = row.get(0)?;
            let text: String = row.get(1)?;
            match vaidya_ledger::verify_checkpoint(&text, verifier_key) {
                Err(e) => note(None, format!("checkpoint at tree size {size}: {e}")),
                Ok(cp) if Some(cp.origin.as_str()) != verifier_key.split('+').next() => {
                    note(None, format!("checkpoint at tree size {size} is of another log ('{}'), not of this ledger", cp.origin))
                }
                Ok(cp) if cp.tree_size != size => note(None, format!("checkpoint filed under size {size} signs size {}", cp.tree_size)),
                Ok(_) if size > entries => {
                    note(None, format!("checkpoint at size {size} is beyond the ledger ({entries} entries): entries were removed"))
                }
                Ok(cp) => {
                    let expected = vaidya_ledger::tree_hash(size, &hashes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    if expected != cp.root {
                        note(None, format!("checkpoint at tree size {size} signs a different root: the first {size} entries were altered"));
                    }
                    last_checkpoint = Some((size, cp.time_ms));
                }
            }
            Ok(())
        })?;
    }

    let last_time_ms = if entries == 0 { 0 } else { prev_time };
    Ok(LedgerPass { entries, hashes, root, last_time_ms, checkpoints, last_checkpoint, states, versions })
}

fn append_leaf(hashes: &mut MemHashes, seq: u64, leaf: vaidya_ledger::EntryHash) {
    let n = seq - 1;
    let new = stored_hashes_for_record_hash(n, Hash(leaf.0), hashes).expect("in-memory tree has every earlier hash");
    debug_assert_eq!(hashes.0.len() as u64, stored_hash_index(0, n));
    hashes.0.extend(new);
}

/// The entry whose append wrote stored hash `idx` (its leaf, or a subtree it completed).
fn seq_of_stored_index(idx: u64, entries: u64) -> Option<u64> {
    (1..=entries).find(|&seq| stored_hash_index(0, seq) > idx)
}

fn verify_resource_table(
    conn: &impl Db,
    states: &HashMap<(String, String), LedgerState>,
    note: &mut impl FnMut(Option<u64>, String),
) -> Result<(), StoreError> {
    let mut seen = 0usize;
    conn.for_each_row("SELECT rtype, rid, version, seq, updated_ms, deleted FROM resource", &[], &mut |row| {
        seen += 1;
        let key: (String, String) = (row.get(0)?, row.get(1)?);
        let (version, seq, updated, deleted): (u64, u64, i64, bool) = (row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?);
        match states.get(&key) {
            None => note(None, format!("current-version table has {}/{} which the ledger never wrote", key.0, key.1)),
            Some(s) if (s.version, s.seq, s.time_ms, s.deleted) != (version, seq, updated, deleted) => {
                note(Some(s.seq), format!("current-version row of {}/{} disagrees with the ledger", key.0, key.1))
            }
            Some(_) => {}
        }
        Ok(())
    })?;
    if seen != states.len() {
        note(None, format!("current-version table has {seen} rows, the ledger names {} resources", states.len()));
    }
    Ok(())
}

fn verify_history_table(
    conn: &impl Db,
    versions: &BTreeSet<(String, String, u64, u64)>,
    note: &mut impl FnMut(Option<u64>, String),
) -> Result<(), StoreError> {
    let actual: BTreeSet<(String, String, u64, u64)> =
        conn.query_map("SELECT rtype, rid, version, seq FROM history", &[], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?.into_iter().collect();
    if let Some(extra) = actual.difference(versions).next() {
        note(Some(extra.3), format!("history table lists {}/{} version {} which the ledger does not", extra.0, extra.1, extra.2));
    }
    if let Some(missing) = versions.difference(&actual).next() {
        note(Some(missing.3), format!("history table lacks {}/{} version {}", missing.0, missing.1, missing.2));
    }
    Ok(())
}

/// Recompute every live resource's index rows and compare them with the stored ones.
fn verify_indexes(
    conn: &impl Db,
    states: &HashMap<(String, String), LedgerState>,
    note: &mut impl FnMut(Option<u64>, String),
) -> Result<(), StoreError> {
    let params: HashMap<i64, String> = conn.query_map("SELECT id, code FROM sp_param", &[], |r| Ok((r.get(0)?, r.get(1)?)))?.into_iter().collect();
    let mut stored_rows_total = 0u64;
    for table in INDEX_TABLES {
        let n: i64 = conn.query_value(&format!("SELECT count(*) FROM {table}"), &[])?.unwrap_or(0);
        stored_rows_total += n as u64;
    }
    let mut expected_rows_total = 0u64;
    conn.for_each_row("SELECT rowid, rtype, rid FROM resource WHERE deleted = 0", &[], &mut |row| {
        let (res, rtype, rid): (i64, String, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
        let Some(state) = states.get(&(rtype.clone(), rid.clone())) else {
            return Ok(());
        };
        let Ok(entry) = crate::read::entry(conn, state.seq) else {
            return Ok(());
        };
        let Ok(resource) = serde_json::from_slice::<serde_json::Value>(&entry.content) else {
            return Ok(());
        };
        let expected = crate::index_rows::expected_rows(&rtype, &resource);
        expected_rows_total += expected.len() as u64;
        let actual = crate::index_rows::stored_rows(conn, res, &params)?;
        if expected != actual {
            note(Some(state.seq), format!("search index rows of {rtype}/{rid} do not match its content"));
        }
        Ok(())
    })?;
    if expected_rows_total != stored_rows_total {
        note(None, format!("search indexes hold {stored_rows_total} rows, the ledger implies {expected_rows_total}"));
    }
    Ok(())
}
