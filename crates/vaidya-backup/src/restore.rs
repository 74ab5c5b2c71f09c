//! Restore: rebuild the ledgers (and with them every projection and index) from a target alone.
//!
//! 1. [`Plan::prepare`] lists every object version. Of each key it takes the *oldest* version,
//!    the one the server put: with Object Lock nobody can remove it, while later versions and
//!    delete markers are what an attacker can add; those are reported, never used. It opens the
//!    sealed ledger key with the offline identity.
//! 2. [`Plan::run`] fetches, opens and checks the segments in ledger order (a reader thread)
//!    and applies them (this thread, through the store's single writer): each segment's
//!    signature, its checkpoint's signature, the hash chain across segments and the Merkle root
//!    at every checkpoint. A gap, a forged or altered segment, or two segments that disagree
//!    stop the restore, naming the object.
//! 3. The state beside the ledger (accounts, grants, counters) comes from the latest segment
//!    applied that carries it.
//!
//! With database snapshots in the target ([`crate::snapshot`]), [`Plan::restore_snapshot`]
//! first puts the newest usable one in place (its manifest's signature, every part's hash, its
//! whole ledger recomputed), and [`Plan::run`] then checks every segment the snapshot covers
//! against the snapshot's tree (the root at each segment's checkpoint) and replays only the
//! entries after it. A snapshot that fails a check is skipped, said in the report, and an
//! older one (or none: a full replay) is used instead.

use crate::seal::{self, Identity, SealError};
use crate::segment::{self, Ledger, Segment, SegmentError};
use crate::ship::{Anomalies, anomalies};
use crate::snapshot::{self as snap, Manifest};
use crate::target::{ObjectVersion, Target, TargetError};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vaidya_fhir::index::IndexValue;
use vaidya_fhir::search_params::SearchParam;
use vaidya_ledger::{ChainEdge, Entry, Hash, LedgerKey, SignedCheckpoint};
use vaidya_store::verify::LedgerVerified;
use vaidya_store::{Store, StoreError};

/// Where to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Everything in the target.
    Latest,
    /// Up to and including data-ledger entry N (the audit ledger up to that entry's time).
    Seq(u64),
    /// Every entry committed at or before this time (ms since the epoch), in both ledgers.
    Time(i64),
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{0}")]
    Target(#[from] TargetError),
    #[error("the target holds no sealed ledger key (keys/ledger-*.age): is this a Vaidya backup, and the right prefix?")]
    NoKey,
    #[error("the identity does not open this backup (it was encrypted to other keys): wrong key file?")]
    WrongIdentity,
    #[error("the target holds {0} different ledger keys; name the one to trust with --verifier")]
    SeveralKeys(usize),
    #[error("no ledger key in the target matches the verifier key given")]
    VerifierNotFound,
    #[error("{object}: {reason}")]
    Bad { object: String, reason: String },
    #[error("{ledger} ledger: entries {from} to {to} are missing (the next segment is {object})")]
    Gap { ledger: &'static str, from: u64, to: u64, object: String },
    #[error("{0} ledger: the target holds no segments")]
    Empty(&'static str),
    #[error("restore into the store failed: {0}")]
    Store(#[from] StoreError),
    #[error("restore of the audit ledger failed: {0}")]
    Audit(#[from] vaidya_audit::AuditError),
}

fn bad(object: &str, reason: impl ToString) -> RestoreError {
    RestoreError::Bad { object: object.to_string(), reason: reason.to_string() }
}

/// A segment object chosen for restore.
#[derive(Debug, Clone)]
struct Chosen {
    key: String,
    version_id: Option<String>,
    first: u64,
    last: u64,
    made_ms: i64,
    size: u64,
}

/// A database snapshot's objects in the target (oldest versions).
#[derive(Debug, Clone, Default)]
struct SnapshotObjects {
    manifest: Option<(String, Option<String>)>,
    parts: BTreeMap<u32, (String, Option<String>)>,
}

/// The snapshot a restore starts from, checked and in place.
pub struct FromSnapshot {
    /// Its folder in the target (`snapshot/<entries>-<made_ms>/`).
    pub folder: String,
    pub manifest: Manifest,
    /// Sealed bytes fetched.
    pub sealed_bytes: u64,
    pub took: Duration,
    ledger: Arc<LedgerVerified>,
}

/// What restore found in the target before applying anything.
pub struct Plan {
    target: Arc<dyn Target>,
    identity: Arc<Identity>,
    key: LedgerKey,
    data: Vec<Chosen>,
    audit: Vec<Chosen>,
    /// By (entries, made_ms), oldest first.
    snapshots: BTreeMap<(u64, i64), SnapshotObjects>,
    pub anomalies: Anomalies,
    /// Objects in the target, and their bytes (oldest versions).
    pub objects: usize,
    pub bytes: u64,
}

/// What one ledger's restore ended at.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LedgerReport {
    pub entries: u64,
    pub last_time_ms: i64,
    /// The last checkpoint applied: its size and root (hex).
    pub checkpoint_size: u64,
    pub checkpoint_root: String,
    pub segments: u64,
}

/// What a restore did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub data: LedgerReport,
    pub audit: LedgerReport,
    /// Segments present in the target but not needed (duplicates of ranges applied).
    pub duplicates: u64,
    pub state_restored: bool,
    pub elapsed: Duration,
    /// Of which: replaying the data ledger, rebuilding the search indexes, the audit ledger.
    pub replay: Duration,
    pub indexes: Duration,
    pub audit_time: Duration,
    /// The database snapshot started from: its folder, entries, database bytes, sealed bytes
    /// and how long fetching and checking it took.
    pub snapshot: Option<(String, u64, u64, u64, Duration)>,
    /// Ranges of data-ledger entries that no segment in the target holds although a snapshot
    /// covered them (the restore did not need them; with Object Lock nothing can remove a
    /// segment, so investigate).
    pub missing_under_snapshot: Vec<(u64, u64)>,
}

impl Plan {
    /// List the target, choose the objects, open the ledger key. `verifier`: the ledger's
    /// public key as kept offline (`name+id+base64`); without it, the one key in the target.
    pub fn prepare(target: Arc<dyn Target>, identity: Identity, verifier: Option<&str>) -> Result<Plan, RestoreError> {
        let versions = target.list_versions("")?;
        let found = anomalies(&versions);
        let originals = oldest_versions(&versions);
        let mut keys = Vec::new();
        let mut wrong_identity = false;
        for v in originals.iter().filter(|v| v.key.starts_with("keys/ledger-")) {
            let sealed = target.get(&v.key, v.version_id.as_deref())?;
            match seal::open(&sealed, &identity) {
                Ok(text) => {
                    let text = String::from_utf8(text).map_err(|_| bad(&v.key, "the sealed ledger key is not text"))?;
                    let key = LedgerKey::from_private(&text).map_err(|e| bad(&v.key, e))?;
                    if crate::ship::key_object(key.verifier_text()) != v.key {
                        return Err(bad(&v.key, "holds a key other than its name says"));
                    }
                    keys.push(key);
                }
                Err(SealError::WrongKey) => wrong_identity = true,
                Err(e) => return Err(bad(&v.key, e)),
            }
        }
        let key = match verifier {
            Some(vk) => keys.into_iter().find(|k| k.verifier_text() == vk.trim()).ok_or(RestoreError::VerifierNotFound)?,
            None if keys.len() > 1 => return Err(RestoreError::SeveralKeys(keys.len())),
            None => match keys.pop() {
                Some(k) => k,
                None if wrong_identity => return Err(RestoreError::WrongIdentity),
                None => return Err(RestoreError::NoKey),
            },
        };
        let mut data = Vec::new();
        let mut audit = Vec::new();
        let mut snapshots: BTreeMap<(u64, i64), SnapshotObjects> = BTreeMap::new();
        let mut bytes = 0;
        for v in &originals {
            bytes += v.size;
            if let Some((entries, made_ms, object)) = snap::parse_object_key(&v.key) {
                let s = snapshots.entry((entries, made_ms)).or_default();
                let at = (v.key.clone(), v.version_id.clone());
                match object {
                    snap::Object::Manifest => s.manifest = Some(at),
                    snap::Object::Part(i) => {
                        s.parts.insert(i, at);
                    }
                }
            }
            if let Some((ledger, first, last, made_ms)) = segment::parse_object_key("", &v.key) {
                let c = Chosen { key: v.key.clone(), version_id: v.version_id.clone(), first, last, made_ms, size: v.size };
                match ledger {
                    Ledger::Data => data.push(c),
                    Ledger::Audit => audit.push(c),
                }
            }
        }
        for list in [&mut data, &mut audit] {
            list.sort_by_key(|c| (c.first, c.last, c.made_ms));
        }
        Ok(Plan { target, identity: Arc::new(identity), key, data, audit, snapshots, anomalies: found, objects: originals.len(), bytes })
    }

    /// The ledger key the backup carries (the restored server signs with it).
    pub fn key(&self) -> &LedgerKey {
        &self.key
    }

    pub fn segments(&self) -> (usize, usize) {
        (self.data.len(), self.audit.len())
    }

    /// Database snapshots in the target (complete or not).
    pub fn snapshots(&self) -> usize {
        self.snapshots.len()
    }

    /// Put the newest usable snapshot within `until` at `db` (a new file): `None` when there is
    /// none. Each one that fails a check is removed again and named in the second value.
    pub fn restore_snapshot(&self, db: &Path, until: Until) -> Result<(Option<FromSnapshot>, Vec<String>), RestoreError> {
        let mut skipped = Vec::new();
        for (&(entries, made_ms), objects) in self.snapshots.iter().rev() {
            let folder = snap::folder(entries, made_ms);
            match self.try_snapshot(&folder, entries, made_ms, objects, db, until) {
                Ok(Some(from)) => return Ok((Some(from), skipped)),
                Ok(None) => {}
                Err(reason) => {
                    for suffix in ["", "-journal", "-wal", "-shm"] {
                        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
                    }
                    skipped.push(format!("{folder}: {reason}"));
                }
            }
        }
        Ok((None, skipped))
    }

    fn try_snapshot(
        &self,
        folder: &str,
        entries: u64,
        made_ms: i64,
        objects: &SnapshotObjects,
        db: &Path,
        until: Until,
    ) -> Result<Option<FromSnapshot>, String> {
        let started = Instant::now();
        let (key, version) = objects.manifest.as_ref().ok_or("no manifest (an interrupted upload)")?;
        let sealed = self.target.get(key, version.as_deref()).map_err(|e| e.to_string())?;
        let plain = seal::open(&sealed, &self.identity).map_err(|e| format!("manifest: {e}"))?;
        let manifest = Manifest::decode(&plain, self.key.verifier_text(), self.key.name()).map_err(|e| e.to_string())?;
        if (manifest.entries, manifest.made_ms) != (entries, made_ms) {
            return Err("its manifest describes another snapshot than its name says".into());
        }
        let within = match until {
            Until::Latest => true,
            Until::Seq(n) => manifest.entries <= n,
            Until::Time(t) => manifest.last_time_ms <= t,
        };
        if !within {
            return Ok(None);
        }
        let mut parts = Vec::with_capacity(manifest.parts.len());
        for (i, hash) in manifest.parts.iter().enumerate() {
            let (key, version) = objects.parts.get(&(i as u32)).ok_or_else(|| format!("part {i} is missing"))?;
            parts.push((key.clone(), version.clone(), *hash));
        }
        if objects.parts.len() != parts.len() {
            return Err(format!("holds {} parts, its manifest names {}", objects.parts.len(), parts.len()));
        }
        // Fetch and open parts on a thread of their own, writing here.
        let (tx, rx) = crossbeam_channel::bounded::<Result<(usize, Vec<u8>), String>>(2);
        let (target, identity) = (self.target.clone(), self.identity.clone());
        let reader = std::thread::Builder::new()
            .name("vaidya-restore-snapshot".into())
            .spawn(move || {
                for (key, version, hash) in parts {
                    let opened = target.get(&key, version.as_deref()).map_err(|e| e.to_string()).and_then(|sealed| {
                        let n = sealed.len();
                        snap::open_part(&sealed, &hash, &identity).map(|p| (n, p)).map_err(|e| format!("{key}: {e}"))
                    });
                    let failed = opened.is_err();
                    if tx.send(opened).is_err() || failed {
                        return;
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        let mut file = std::fs::File::create_new(db).map_err(|e| format!("{}: {e}", db.display()))?;
        let (mut written, mut sealed_bytes) = (0u64, 0u64);
        for part in rx.iter() {
            let (n, plain) = part?;
            std::io::Write::write_all(&mut file, &plain).map_err(|e| format!("{}: {e}", db.display()))?;
            written += plain.len() as u64;
            sealed_bytes += n as u64;
        }
        let _ = reader.join();
        drop(file);
        if written != manifest.bytes {
            return Err(format!("its parts hold {written} bytes, its manifest says {}", manifest.bytes));
        }
        let conn = vaidya_store::open_read_only(db).map_err(|e| e.to_string())?;
        let ledger = vaidya_store::verify::verify_ledger(&conn, self.key.verifier_text()).map_err(|e| e.to_string())?;
        drop(conn);
        if let Some(p) = ledger.problems.first() {
            return Err(format!("its ledger does not verify: {p}"));
        }
        if ledger.entries != manifest.entries || ledger.root != manifest.root {
            return Err(format!(
                "its ledger ({} entries) does not give the root its manifest signs at {} entries",
                ledger.entries, manifest.entries
            ));
        }
        Ok(Some(FromSnapshot { folder: folder.to_string(), manifest, sealed_bytes, took: started.elapsed(), ledger: Arc::new(ledger) }))
    }

    /// Rebuild: the data ledger into `store` (new and empty, opened with [`Plan::key`]) and the
    /// audit ledger into `audit_dir` (new). `progress` hears (ledger, entries so far).
    /// `from`: the snapshot [`Plan::restore_snapshot`] put in place (the store is opened on
    /// it), whose entries are not replayed.
    pub fn run(
        &self,
        store: &Store,
        audit_dir: &Path,
        until: Until,
        from: Option<&FromSnapshot>,
        progress: &(dyn Fn(Ledger, u64) + Sync),
    ) -> Result<Report, RestoreError> {
        let started = Instant::now();
        if self.data.is_empty() {
            return Err(RestoreError::Empty("data"));
        }
        let mut report = Report::default();
        if let Some(f) = from {
            report.missing_under_snapshot = uncovered(&self.data, f.manifest.entries);
            report.snapshot = Some((f.folder.clone(), f.manifest.entries, f.manifest.bytes, f.sealed_bytes, f.took));
            report.state_restored = true;
            // Until a segment after it is applied, the snapshot's own signed root is the last.
            report.data.checkpoint_size = f.manifest.entries;
            report.data.checkpoint_root = hex::encode(f.manifest.root.0);
        } else {
            store.begin_bulk_load()?;
        }
        let data_bound = self.restore_data(store, until, from, progress, &mut report)?;
        report.replay = started.elapsed();
        if from.is_none() {
            store.end_bulk_load()?;
        }
        report.indexes = started.elapsed() - report.replay;
        // The audit ledger up to the same moment as the data.
        let audit_until = match until {
            Until::Latest => Until::Latest,
            Until::Time(t) => Until::Time(t),
            Until::Seq(_) => Until::Time(data_bound),
        };
        self.restore_audit(audit_dir, audit_until, progress, &mut report)?;
        report.elapsed = started.elapsed();
        report.audit_time = report.elapsed - report.replay - report.indexes;
        Ok(report)
    }

    /// Fetch, open and decode a ledger's segments in order on a thread of their own (with the
    /// search index values for the data ledger), a few segments ahead of the caller.
    /// Segments ending at or before entry `known` (held by a snapshot) are checked but their
    /// entries not decoded.
    fn read_in_background(&self, ledger: Ledger, known: u64) -> Result<(std::thread::JoinHandle<()>, OpenedSegments), RestoreError> {
        let (origin, list, index) = match ledger {
            Ledger::Data => (self.key.name().to_string(), self.data.clone(), true),
            Ledger::Audit => (vaidya_audit::origin(self.key.name()), self.audit.clone(), false),
        };
        let reading = Reading {
            target: self.target.clone(),
            identity: self.identity.clone(),
            verifier: self.key.verifier_text().to_string(),
            origin,
            index,
            known,
        };
        let (tx, rx) = crossbeam_channel::bounded::<Result<Opened, RestoreError>>(4);
        let reader = std::thread::Builder::new()
            .name("vaidya-restore-read".into())
            .spawn(move || reading.all(&list, &tx))
            .map_err(|e| bad("restore", e))?;
        Ok((reader, rx))
    }

    fn restore_data(
        &self,
        store: &Store,
        until: Until,
        from: Option<&FromSnapshot>,
        progress: &(dyn Fn(Ledger, u64) + Sync),
        report: &mut Report,
    ) -> Result<i64, RestoreError> {
        let mut applied = from.map_or_else(Applied::default, Applied::from_snapshot);
        let (reader, rx) = self.read_in_background(Ledger::Data, applied.size())?;
        let mut pending: Vec<tokio::sync::oneshot::Receiver<Result<u64, StoreError>>> = Vec::new();
        let mut last_time = from.map_or(0, |f| f.manifest.last_time_ms);
        let mut state: Option<Vec<u8>> = None;
        for opened in rx.iter() {
            let opened = opened?;
            let (seg, cp, object) = (&opened.segment, &opened.checkpoint, opened.object.clone());
            let skip = match applied.place(seg, cp, &object, "data")? {
                Place::Duplicate => {
                    report.duplicates += 1;
                    // A state read after the snapshot was copied is newer than the snapshot's.
                    let newer = match from {
                        Some(f) => seg.made_ms > f.manifest.made_ms,
                        None => seg.entries.is_empty() && seg.last() == applied.size(),
                    };
                    if seg.state.is_some() && newer {
                        state = seg.state.clone();
                    }
                    continue;
                }
                Place::Gap { .. } if bound_reached(until, applied.size(), last_time) => break,
                Place::Gap { from, to } => {
                    return Err(RestoreError::Gap { ledger: "data", from, to, object });
                }
                Place::From(skip) => skip,
            };
            let mut entries = opened.prepared;
            entries.drain(..skip);
            let keep = entries.iter().take_while(|p| within(&p.entry, until)).count();
            let whole = keep == entries.len();
            if !whole {
                // Cut inside this segment: check all of it against its checkpoint first.
                applied.check_whole(&entries, cp).map_err(|r| bad(&object, r))?;
                entries.truncate(keep);
            }
            applied.extend(&entries, whole.then_some(cp)).map_err(|r| bad(&object, r))?;
            if let Some(p) = entries.last() {
                last_time = p.entry.time_ms;
            }
            let checkpoint = whole.then(|| (cp.tree_size, cp.time_ms, seg.checkpoint.clone(), cp.root));
            let (reply, done) = tokio::sync::oneshot::channel();
            let object_for_job = object.clone();
            store.submit_unguarded(
                move |tx| -> Result<u64, StoreError> {
                    for p in &entries {
                        tx.replay(&p.entry, &p.bytes, &p.index)?;
                    }
                    if let Some((size, time_ms, note, root)) = &checkpoint {
                        tx.insert_checkpoint(*size, *time_ms, note, *root)
                            .map_err(|e| StoreError::Corrupt(format!("{object_for_job}: {e}")))?;
                    }
                    tx.dispose(entries);
                    Ok(tx.ledger_size())
                },
                reply,
            )?;
            pending.push(done);
            report.data.segments += 1;
            if seg.state.is_some() {
                state = seg.state.clone();
            }
            if whole {
                report.data.checkpoint_size = cp.tree_size;
                report.data.checkpoint_root = hex::encode(cp.root.0);
            }
            // A few segments in flight, no more: the writer's queue is the buffer.
            if pending.len() >= 8 {
                let size = wait(pending.remove(0))?;
                progress(Ledger::Data, size);
            }
            if !whole || bound_reached(until, applied.size(), last_time) {
                break;
            }
        }
        drop(rx);
        let _ = reader.join();
        for done in pending {
            let size = wait(done)?;
            progress(Ledger::Data, size);
        }
        if let Some(state) = state {
            store.write_blocking(move |tx| vaidya_store::state::restore(tx.conn(), &state))?;
            report.state_restored = true;
        }
        report.data.entries = applied.size();
        report.data.last_time_ms = last_time;
        Ok(last_time)
    }

    fn restore_audit(
        &self,
        dir: &Path,
        until: Until,
        progress: &(dyn Fn(Ledger, u64) + Sync),
        report: &mut Report,
    ) -> Result<(), RestoreError> {
        let mut writer = vaidya_audit::ship::Restorer::create(dir)?;
        if self.audit.is_empty() {
            writer.finish()?;
            return Ok(());
        }
        let (reader, rx) = self.read_in_background(Ledger::Audit, 0)?;
        let mut applied = Applied::default();
        let mut last_time = 0;
        for opened in rx.iter() {
            let opened = opened?;
            let (seg, cp, object) = (&opened.segment, &opened.checkpoint, opened.object.clone());
            let skip = match applied.place(seg, cp, &object, "audit")? {
                Place::Duplicate => {
                    report.duplicates += 1;
                    continue;
                }
                Place::Gap { .. } if bound_reached(until, applied.size(), last_time) => break,
                Place::Gap { from, to } => {
                    return Err(RestoreError::Gap { ledger: "audit", from, to, object });
                }
                Place::From(skip) => skip,
            };
            let entries = &opened.prepared[skip..];
            let keep = entries.iter().take_while(|p| within(&p.entry, until)).count();
            let whole = keep == entries.len();
            if !whole {
                applied.check_whole(entries, cp).map_err(|r| bad(&object, r))?;
            }
            let entries = &entries[..keep];
            applied.extend(entries, whole.then_some(cp)).map_err(|r| bad(&object, r))?;
            for p in entries {
                writer.append(&p.bytes, &p.entry).map_err(|e| bad(&object, e))?;
                last_time = p.entry.time_ms;
            }
            if whole {
                writer.checkpoint(cp.tree_size, cp.time_ms, &seg.checkpoint, cp.root).map_err(|e| bad(&object, e))?;
                report.audit.checkpoint_size = cp.tree_size;
                report.audit.checkpoint_root = hex::encode(cp.root.0);
            }
            report.audit.segments += 1;
            progress(Ledger::Audit, writer.size());
            if !whole || bound_reached(until, applied.size(), last_time) {
                break;
            }
        }
        drop(rx);
        let _ = reader.join();
        report.audit.entries = writer.size();
        report.audit.last_time_ms = last_time;
        writer.finish()?;
        Ok(())
    }
}

/// Entries 1..=`through` that none of `segments` holds, as ranges.
fn uncovered(segments: &[Chosen], through: u64) -> Vec<(u64, u64)> {
    let mut gaps = Vec::new();
    let mut next = 1;
    for c in segments {
        if next > through {
            break;
        }
        if c.first > next {
            gaps.push((next, (c.first - 1).min(through)));
        }
        next = next.max(c.last + 1);
    }
    if next <= through {
        gaps.push((next, through));
    }
    gaps
}

fn wait(done: tokio::sync::oneshot::Receiver<Result<u64, StoreError>>) -> Result<u64, RestoreError> {
    Ok(done.blocking_recv().map_err(|_| StoreError::WriterGone)??)
}

fn within(entry: &Entry, until: Until) -> bool {
    match until {
        Until::Latest => true,
        Until::Seq(n) => entry.seq <= n,
        Until::Time(t) => entry.time_ms <= t,
    }
}

/// Whether the bound is reached: nothing later can be within it.
fn bound_reached(until: Until, size: u64, last_time: i64) -> bool {
    match until {
        Until::Latest => false,
        Until::Seq(n) => size >= n,
        Until::Time(t) => last_time > t,
    }
}

/// The oldest version of every key that has one (delete markers are never data).
fn oldest_versions(versions: &[ObjectVersion]) -> Vec<ObjectVersion> {
    let mut out: Vec<ObjectVersion> = Vec::new();
    let mut i = 0;
    while i < versions.len() {
        let key = &versions[i].key;
        let same: Vec<&ObjectVersion> = versions[i..].iter().take_while(|v| &v.key == key).collect();
        i += same.len();
        // Listed newest first: the last object version is the one first put.
        if let Some(v) = same.iter().rev().find(|v| !v.delete_marker) {
            out.push((*v).clone());
        }
    }
    out
}

/// One entry made elsewhere, decoded and indexed before the store's writer replays it (off
/// the writer thread): by restore, and by a department node following the core.
pub struct PreparedEntry {
    pub entry: Entry,
    /// Its leaf hash.
    pub leaf: vaidya_ledger::EntryHash,
    pub bytes: Vec<u8>,
    /// Its search index values (empty for a delete, or when not asked for).
    pub index: Vec<(&'static SearchParam, IndexValue)>,
}

impl PreparedEntry {
    /// Decode `bytes` (expected at `position`, for messages) and, with `with_index`, compute
    /// the search index values of the resource it puts.
    pub fn new(bytes: Vec<u8>, position: u64, with_index: bool) -> Result<PreparedEntry, String> {
        let entry = Entry::decode(&bytes).map_err(|e| format!("entry {position}: {e}"))?;
        let index = if with_index && entry.op == vaidya_ledger::Op::Put {
            let resource: serde_json::Value =
                serde_json::from_slice(&entry.content).map_err(|e| format!("entry {}: content is not JSON: {e}", entry.seq))?;
            vaidya_fhir::index::extract_all(&resource)
        } else {
            Vec::new()
        };
        let leaf = vaidya_ledger::hash_encoded(&bytes);
        Ok(PreparedEntry { entry, leaf, bytes, index })
    }
}

/// Segments as the background reader hands them over, in order.
type OpenedSegments = crossbeam_channel::Receiver<Result<Opened, RestoreError>>;

struct Opened {
    object: String,
    segment: Segment,
    checkpoint: SignedCheckpoint,
    prepared: Vec<PreparedEntry>,
}

/// How a ledger's segments are fetched, opened and decoded.
struct Reading {
    target: Arc<dyn Target>,
    identity: Arc<Identity>,
    verifier: String,
    origin: String,
    /// Compute search index values (the data ledger).
    index: bool,
    /// Entries held by a snapshot: segments ending at or before it are checked, not decoded.
    known: u64,
}

impl Reading {
    /// Every segment of `list` in order; stops at the first failure (sent) or when the receiver
    /// is gone.
    fn all(&self, list: &[Chosen], tx: &crossbeam_channel::Sender<Result<Opened, RestoreError>>) {
        for c in list {
            let opened = self.one(c);
            let failed = opened.is_err();
            if tx.send(opened).is_err() || failed {
                return;
            }
        }
    }

    fn one(&self, c: &Chosen) -> Result<Opened, RestoreError> {
        let Reading { target, identity, verifier, origin, index, known } = self;
        let (index, known) = (*index, *known);
        let sealed = target.get(&c.key, c.version_id.as_deref())?;
        if sealed.len() as u64 != c.size && c.size != 0 {
            return Err(bad(&c.key, format!("holds {} bytes, the listing said {}", sealed.len(), c.size)));
        }
        let plain = seal::open(&sealed, identity).map_err(|e| bad(&c.key, e))?;
        drop(sealed);
        let (mut segment, checkpoint) = Segment::decode(&plain, verifier, origin).map_err(|e: SegmentError| bad(&c.key, e))?;
        drop(plain);
        if segment.first != c.first || segment.last() != c.last {
            return Err(bad(&c.key, format!("holds entries {}..={}, not what its name says", segment.first, segment.last())));
        }
        let count = segment.entries.len();
        if c.last <= known {
            // Held by the snapshot: only its checkpoint is compared with the snapshot's tree.
            segment.entries.iter_mut().for_each(Vec::clear);
            return Ok(Opened { object: c.key.clone(), segment, checkpoint, prepared: Vec::new() });
        }
        let mut prepared = Vec::with_capacity(count);
        for (i, bytes) in std::mem::take(&mut segment.entries).into_iter().enumerate() {
            let position = segment.first + i as u64;
            let p = PreparedEntry::new(bytes, position, index).map_err(|e| bad(&c.key, e))?;
            if p.entry.seq != position {
                return Err(bad(&c.key, format!("entry {position} is numbered {}", p.entry.seq)));
            }
            prepared.push(p);
        }
        // The bytes live in `prepared` now; the segment keeps its header (and its length).
        segment.entries.resize(count, Vec::new());
        Ok(Opened { object: c.key.clone(), segment, checkpoint, prepared })
    }
}

/// Where the next segment goes relative to what is applied.
enum Place {
    /// Entirely applied already (and consistent with it).
    Duplicate,
    /// Apply its entries after skipping this many.
    From(usize),
    /// Entries `from..=to` are missing before it.
    Gap { from: u64, to: u64 },
}

/// What is applied so far: the chain's edge, and the roots at the checkpoints applied (to
/// compare duplicates with).
#[derive(Default)]
struct Applied {
    edge: ChainEdge,
    roots: HashMap<u64, Hash>,
    /// The snapshot's recomputed tree: the root at any size it covers.
    base: Option<Arc<LedgerVerified>>,
}

impl Applied {
    fn size(&self) -> u64 {
        self.edge.size
    }

    fn from_snapshot(from: &FromSnapshot) -> Applied {
        let l = &from.ledger;
        Applied {
            edge: ChainEdge { size: l.entries, head: l.leaf(l.entries), frontier: l.frontier() },
            roots: HashMap::new(),
            base: Some(from.ledger.clone()),
        }
    }

    fn place(&self, seg: &Segment, cp: &SignedCheckpoint, object: &str, ledger: &'static str) -> Result<Place, RestoreError> {
        let size = self.size();
        if seg.last() <= size {
            // Already covered: it must agree with what was applied.
            let known = self.roots.get(&cp.tree_size).copied().or_else(|| self.base.as_ref().and_then(|b| b.root_at(cp.tree_size)));
            if let Some(root) = known
                && root != cp.root
            {
                return Err(bad(
                    object,
                    format!("disagrees with the {ledger} ledger already restored (a different root at {} entries): forged", cp.tree_size),
                ));
            }
            return Ok(Place::Duplicate);
        }
        if seg.first > size + 1 {
            return Ok(Place::Gap { from: size + 1, to: seg.first - 1 });
        }
        Ok(Place::From((size + 1 - seg.first) as usize))
    }

    /// Check that `entries` (the next ones) chain on from the head and, with `checkpoint`, that
    /// they bring the tree to its root; then take them as applied.
    fn extend(&mut self, entries: &[PreparedEntry], checkpoint: Option<&SignedCheckpoint>) -> Result<(), String> {
        let mut next = self.edge.clone();
        for p in entries {
            next.append(&p.entry, p.leaf)?;
        }
        if let Some(cp) = checkpoint {
            next.check_root(cp)?;
            self.roots.insert(cp.tree_size, cp.root);
        }
        self.edge = next;
        Ok(())
    }

    /// Check, without taking them, that `entries` (the rest of a segment) bring the tree to its
    /// checkpoint's root: before applying only a part of a segment.
    fn check_whole(&self, entries: &[PreparedEntry], cp: &SignedCheckpoint) -> Result<(), String> {
        let mut next = self.edge.clone();
        for p in entries {
            next.append(&p.entry, p.leaf)?;
        }
        next.check_root(cp)
    }
}

#[cfg(test)]
mod tests {
    //! The restore logic against a directory target holding segments made here with a real
    //! key: a ledger of entries 1..=9 in three segments.
    use super::*;
    use crate::dir::DirTarget;
    use crate::seal::{Identity, Recipients, seal};
    use vaidya_ledger::{Frontier, GENESIS_PREV, Op};

    fn entries(n: u64) -> Vec<Vec<u8>> {
        let mut prev = GENESIS_PREV;
        (1..=n)
            .map(|seq| {
                let e = Entry {
                    seq,
                    time_ms: 1_764_000_000_000 + seq as i64 * 1000,
                    author: "t".into(),
                    op: Op::Put,
                    resource_type: "Basic".into(),
                    resource_id: format!("b{seq}"),
                    version: 1,
                    content: format!(r#"{{"resourceType":"Basic","id":"b{seq}"}}"#).into_bytes(),
                    prev_hash: prev,
                }
                .encode();
                prev = vaidya_ledger::hash_encoded(&e);
                e
            })
            .collect()
    }

    fn root_at(all: &[Vec<u8>], size: u64) -> Hash {
        let mut f = Frontier::default();
        for (i, e) in all.iter().take(size as usize).enumerate() {
            f.append(i as u64, vaidya_ledger::hash_encoded(e)).unwrap();
        }
        f.root(size).unwrap()
    }

    struct Setup {
        _dir: tempfile::TempDir,
        target: Arc<DirTarget>,
        key: LedgerKey,
        id: String,
        to: Recipients,
        all: Vec<Vec<u8>>,
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let target = Arc::new(DirTarget::new("t", dir.path()));
        let key = LedgerKey::generate("vaidya.test/ledger");
        let (id, recipient) = Identity::generate();
        let to = Recipients::parse(&[recipient]).unwrap();
        target.put(&crate::ship::key_object(key.verifier_text()), &seal(key.private_text().as_bytes(), &to).unwrap()).unwrap();
        Setup { _dir: dir, target, key, id, to, all: entries(9) }
    }

    impl Setup {
        fn put_segment(&self, first: u64, last: u64, made: i64) -> String {
            let cp = vaidya_ledger::sign_checkpoint(&self.key, last, root_at(&self.all, last), made);
            let seg = Segment {
                ledger: Ledger::Data,
                first,
                entries: self.all[(first - 1) as usize..last as usize].to_vec(),
                checkpoint: cp,
                state: None,
                made_ms: made,
            };
            let name = segment::object_key("", Ledger::Data, first, last, made);
            self.target.put(&name, &seal(&seg.encode(&self.key), &self.to).unwrap()).unwrap();
            name
        }

        fn plan(&self) -> Result<Plan, RestoreError> {
            Plan::prepare(self.target.clone(), Identity::parse(&self.id).unwrap(), None)
        }

        /// Walk the data segments the way `restore_data` does, without a store.
        fn walk(&self, until: Until) -> Result<(u64, u64), RestoreError> {
            let plan = self.plan()?;
            let mut applied = Applied::default();
            let mut duplicates = 0;
            for c in &plan.data {
                let reading = Reading {
                    target: self.target.clone(),
                    identity: plan.identity.clone(),
                    verifier: self.key.verifier_text().to_string(),
                    origin: self.key.name().to_string(),
                    index: false,
                    known: 0,
                };
                let o = reading.one(c)?;
                let skip = match applied.place(&o.segment, &o.checkpoint, &c.key, "data")? {
                    Place::Duplicate => {
                        duplicates += 1;
                        continue;
                    }
                    Place::Gap { .. } if bound_reached(until, applied.size(), 0) => break,
                    Place::Gap { from, to } => {
                        return Err(RestoreError::Gap { ledger: "data", from, to, object: c.key.clone() });
                    }
                    Place::From(skip) => skip,
                };
                let entries = &o.prepared[skip..];
                let keep = entries.iter().take_while(|p| within(&p.entry, until)).count();
                if keep < entries.len() {
                    applied.check_whole(entries, &o.checkpoint).map_err(|r| bad(&c.key, r))?;
                    applied.extend(&entries[..keep], None).map_err(|r| bad(&c.key, r))?;
                    break;
                }
                applied.extend(entries, Some(&o.checkpoint)).map_err(|r| bad(&c.key, r))?;
            }
            Ok((applied.size(), duplicates))
        }
    }

    #[test]
    fn segments_chain_overlaps_are_checked_and_gaps_named() {
        let s = setup();
        s.put_segment(1, 3, 1);
        s.put_segment(4, 6, 2);
        s.put_segment(7, 9, 3);
        assert_eq!(s.walk(Until::Latest).unwrap(), (9, 0));
        // A re-shipped range (a shipper that lost its position) overlapping what was applied.
        s.put_segment(1, 6, 4);
        s.put_segment(5, 9, 5);
        assert_eq!(s.walk(Until::Latest).unwrap(), (9, 2));
        assert_eq!(s.walk(Until::Seq(5)).unwrap().0, 5);
        assert_eq!(s.walk(Until::Time(1_764_000_000_000 + 7_500)).unwrap().0, 7);

        let gap = setup();
        gap.put_segment(1, 3, 1);
        let next = gap.put_segment(6, 9, 3);
        match gap.walk(Until::Latest) {
            Err(RestoreError::Gap { from: 4, to: 5, object, .. }) => assert_eq!(object, next),
            other => panic!("{other:?}"),
        }
        assert_eq!(gap.walk(Until::Seq(3)).unwrap().0, 3, "a gap after the bound does not matter");
    }

    #[test]
    fn a_segment_signed_by_another_key_or_with_a_wrong_root_is_named() {
        let s = setup();
        s.put_segment(1, 3, 1);
        // Sealed to the hospital's public key (anyone can) but signed by an intruder's key.
        let intruder = LedgerKey::generate("vaidya.test/ledger");
        let cp = vaidya_ledger::sign_checkpoint(&intruder, 6, root_at(&s.all, 6), 2);
        let forged = Segment { ledger: Ledger::Data, first: 4, entries: s.all[3..6].to_vec(), checkpoint: cp, state: None, made_ms: 2 };
        let name = segment::object_key("", Ledger::Data, 4, 6, 2);
        s.target.put(&name, &seal(&forged.encode(&intruder), &s.to).unwrap()).unwrap();
        match s.walk(Until::Latest) {
            Err(RestoreError::Bad { object, reason }) => {
                assert_eq!(object, name);
                assert!(reason.contains("signature"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // Signed by the right key, but the checkpoint's root is not what the entries give.
        let t = setup();
        t.put_segment(1, 3, 1);
        let cp = vaidya_ledger::sign_checkpoint(&t.key, 6, Hash([9; 32]), 2);
        let wrong = Segment { ledger: Ledger::Data, first: 4, entries: t.all[3..6].to_vec(), checkpoint: cp, state: None, made_ms: 2 };
        t.target.put(&name, &seal(&wrong.encode(&t.key), &t.to).unwrap()).unwrap();
        match t.walk(Until::Latest) {
            Err(RestoreError::Bad { object, reason }) => {
                assert_eq!(object, name);
                assert!(reason.contains("root"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ranges_no_segment_holds_are_found() {
        let c = |first, last| Chosen { key: String::new(), version_id: None, first, last, made_ms: 0, size: 0 };
        assert_eq!(uncovered(&[c(1, 5), c(6, 9)], 9), vec![]);
        assert_eq!(uncovered(&[c(1, 5), c(8, 9)], 9), vec![(6, 7)]);
        assert_eq!(uncovered(&[c(3, 5), c(4, 12)], 9), vec![(1, 2)]);
        assert_eq!(uncovered(&[c(1, 3)], 9), vec![(4, 9)]);
        assert_eq!(uncovered(&[c(1, 3), c(12, 20)], 9), vec![(4, 9)]);
        assert_eq!(uncovered(&[], 0), vec![]);
    }

    #[test]
    fn only_the_oldest_version_of_an_object_counts() {
        let mk = |key: &str, id: &str, marker: bool| ObjectVersion {
            key: key.into(),
            version_id: Some(id.into()),
            delete_marker: marker,
            size: 1,
            last_modified_ms: 0,
        };
        // Listed newest first: a delete marker, an overwrite, then the original.
        let listed = [mk("a", "3", true), mk("a", "2", false), mk("a", "1", false), mk("b", "9", true)];
        let chosen = oldest_versions(&listed);
        assert_eq!(chosen.len(), 1, "a key with only a delete marker has nothing to restore");
        assert_eq!(chosen[0].version_id.as_deref(), Some("1"));
    }

    #[test]
    fn the_wrong_identity_and_a_missing_key_are_said_plainly() {
        let s = setup();
        s.put_segment(1, 9, 1);
        let (other, _) = Identity::generate();
        assert!(matches!(Plan::prepare(s.target.clone(), Identity::parse(&other).unwrap(), None), Err(RestoreError::WrongIdentity)));
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            Plan::prepare(Arc::new(DirTarget::new("e", empty.path())), Identity::parse(&s.id).unwrap(), None),
            Err(RestoreError::NoKey)
        ));
        assert!(matches!(
            Plan::prepare(s.target.clone(), Identity::parse(&s.id).unwrap(), Some("someone+else+key")),
            Err(RestoreError::VerifierNotFound)
        ));
        assert!(s.plan().is_ok());
    }
}
