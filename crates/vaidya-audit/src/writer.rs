//! Appending to the audit journal: callers number, chain and frame their own entries; one
//! flusher thread writes and flushes them and then answers the callers.
//!
//! A caller ([`Shared::append`]) takes the journal's tip under a mutex, gives each event the
//! next sequence number, encodes the ledger entry, hashes it into the chain and the Merkle tree's
//! right edge, and adds its frame to the shared buffer (a few microseconds); then it waits. The
//! flusher takes the whole buffer, writes it to the current segment with one `write`, runs
//! `fdatasync`, and answers every caller whose events were in it: an acknowledged event is on
//! disk. While the disk flushes one buffer, callers fill the next, so one flush covers every
//! event that arrived during the previous one (and, under load, during [`FLUSH_GATHER`]). There is no per-event database write on this path
//! (that was the cost: see `journal`).
//!
//! After a flush the flusher signs a checkpoint when one is due (every
//! [`CHECKPOINT_INTERVAL_MS`] while events arrive, or [`CHECKPOINT_EVERY_ENTRIES`], when idle,
//! and at shutdown) and takes other processes' events from the inbox (see `inbox`). It keeps the
//! report-index postings of the open segment in memory and, when it closes a segment, hands
//! them to the indexer thread, which writes the segment's index file (see `index`).
//!
//! A write or flush that fails leaves the journal's end unknown: every waiting caller hears that
//! nothing was recorded, and every later event is refused until the process restarts (and
//! recovery finds the journal's true end). Request handlers then fail closed.

use crate::journal::{self, HEADER, MAGIC, Next, Pos};
use vaidya_ledger::Frontier;
use crate::index::{self, Postings};
use crate::{AuditError, CHECKPOINT_EVERY_ENTRIES, CHECKPOINT_INTERVAL_MS, JSON_PREFIX, Prepared, now_ms};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use vaidya_ledger::{Entry, EntryHash, LedgerKey, Op, hash_encoded};

/// Bytes of frames waiting for the flusher at most; callers wait (briefly) when it is full.
pub const MAX_BUFFER_BYTES: usize = 64 << 20;
/// Under load, a flush waits until this long after the previous one ended, so that events
/// arriving meanwhile share it (measured at 64 clients: with 1.7 KB JSON entries 1 ms gave the
/// best reads/s and 2 ms made the callers wait more than the CPU it saved; with compact
/// entries, whose flushes are cheaper, 0.5 ms gave 10-15% more reads/s than 1 ms, and 0 or
/// 0.2 ms less). Each `fdatasync` costs tens of microseconds of CPU (and a
/// virtual machine's disk notification); flushing one or two events at a time made that most of
/// an audited read's cost (BENCHMARKS.md). A request arriving after a quiet spell is flushed at
/// once.
const FLUSH_GATHER: Duration = Duration::from_micros(500);
/// ... when the previous flush carried at least this many events (several callers are active).
/// A lone caller (one clinician's browser) is never made to wait.
const GATHER_AFTER_BATCH: usize = 4;

pub(crate) type Reply = oneshot::Sender<Result<(), AuditError>>;

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) commits: AtomicU64,
    pub(crate) events: AtomicU64,
    pub(crate) busy_us: AtomicU64,
    pub(crate) commit_us: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) syncs: AtomicU64,
    pub(crate) sync_us: AtomicU64,
}

/// The end of the chain: what the next entry builds on.
#[derive(Debug, Clone)]
pub(crate) struct Tip {
    pub(crate) size: u64,
    pub(crate) prev_hash: EntryHash,
    pub(crate) last_time_ms: i64,
    pub(crate) frontier: Frontier,
}

/// Store a signed checkpoint of the ledger as far as `tip`, with what a restarted writer needs
/// to continue from it: the tree's edge, where the journal ends (`end`), the last leaf and time.
pub(crate) fn insert_checkpoint(db: &Connection, tip: &Tip, time_ms: i64, note: &str, end: Pos) -> Result<(), AuditError> {
    db.prepare_cached(
        "INSERT INTO checkpoint (tree_size, time_ms, note, edge, seg, off, last_leaf, last_time_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        tip.size as i64,
        time_ms,
        note,
        tip.frontier.encode(),
        end.seg as i64,
        end.off as i64,
        &tip.prev_hash.0[..],
        tip.last_time_ms
    ])?;
    Ok(())
}

impl Tip {
    pub(crate) fn genesis() -> Tip {
        Tip { size: 0, prev_hash: vaidya_ledger::GENESIS_PREV, last_time_ms: 0, frontier: Frontier::default() }
    }

    /// Check a frame read back and make it the new tip (recovery and index catch-up).
    fn take(&mut self, frame: &journal::Frame) -> Result<Entry, AuditError> {
        let seq = self.size + 1;
        let leaf = hash_encoded(&frame.entry);
        if leaf.0 != frame.leaf {
            return Err(AuditError::Corrupt(format!("journal entry {seq} was altered (its hash does not match); run `vaidya audit verify`")));
        }
        let entry = Entry::decode(&frame.entry).map_err(|e| AuditError::Corrupt(format!("journal entry {seq} cannot be decoded: {e}")))?;
        if entry.seq != seq || entry.prev_hash != self.prev_hash {
            return Err(AuditError::Corrupt(format!("journal entry {seq} does not follow entry {}; run `vaidya audit verify`", seq - 1)));
        }
        self.frontier.append(seq - 1, leaf).map_err(|e| AuditError::Corrupt(format!("Merkle tree at entry {seq}: {e}")))?;
        self.size = seq;
        self.prev_hash = leaf;
        self.last_time_ms = entry.time_ms;
        Ok(entry)
    }
}

struct State {
    tip: Tip,
    buf: Vec<u8>,
    waiters: Vec<Reply>,
    /// The report-index postings of the entries in `buf` (offsets within `buf`).
    index: Postings,
    broken: Option<String>,
    stop: bool,
}

/// What callers and the flusher share.
pub(crate) struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    pub(crate) counters: Arc<Counters>,
}

pub(crate) enum Appended {
    /// Framed; the receiver hears when they are on disk.
    Queued(oneshot::Receiver<Result<(), AuditError>>),
    /// The buffer is full: try again shortly (nothing was taken).
    Full,
    Refused(AuditError),
}

impl Shared {
    /// Number, chain and frame `events` (all of them, or none when the answer is not `Queued`).
    pub(crate) fn append(&self, events: &mut Vec<Prepared>) -> Appended {
        let mut st = self.state.lock().expect("not poisoned");
        if let Some(refusal) = refusal(&st) {
            return Appended::Refused(refusal);
        }
        if st.buf.len() >= MAX_BUFFER_BYTES {
            return Appended::Full;
        }
        let wake = st.buf.is_empty();
        for p in events.drain(..) {
            if let Err(e) = append_one(&mut st, p) {
                st.broken = Some(e.to_string());
                return Appended::Refused(e);
            }
        }
        let (tx, rx) = oneshot::channel();
        st.waiters.push(tx);
        drop(st);
        if wake {
            self.wake.notify_one();
        }
        Appended::Queued(rx)
    }

    /// Append without anyone to answer (the flusher's own: inbox rows). The last sequence number.
    fn append_unanswered(&self, events: Vec<Prepared>) -> Result<u64, AuditError> {
        let mut st = self.state.lock().expect("not poisoned");
        if let Some(refusal) = refusal(&st) {
            return Err(refusal);
        }
        for p in events {
            if let Err(e) = append_one(&mut st, p) {
                st.broken = Some(e.to_string());
                return Err(e);
            }
        }
        Ok(st.tip.size)
    }

    /// Stop: the flusher writes what is buffered, signs a final checkpoint and ends.
    pub(crate) fn stop(&self) {
        self.state.lock().expect("not poisoned").stop = true;
        self.wake.notify_one();
    }
}

fn refusal(st: &State) -> Option<AuditError> {
    if st.stop {
        return Some(AuditError::WriterGone);
    }
    st.broken.as_ref().map(|b| AuditError::CommitFailed(format!("the audit journal could not be written ({b}); restart the server")))
}

fn append_one(st: &mut State, p: Prepared) -> Result<(), AuditError> {
    let seq = st.tip.size + 1;
    let time_ms = now_ms().max(st.tip.last_time_ms);
    let id = seq.to_string();
    let content = if p.content.starts_with(JSON_PREFIX) {
        // `{"resourceType":"AuditEvent","id":"<seq>",` + the rest of the inbox row's JSON.
        let rest = &p.content[JSON_PREFIX.len()..];
        let mut json = Vec::with_capacity(p.content.len() + id.len() + 8);
        json.extend_from_slice(JSON_PREFIX);
        json.extend_from_slice(b"\"id\":\"");
        json.extend_from_slice(id.as_bytes());
        json.extend_from_slice(b"\",");
        json.extend_from_slice(rest);
        json
    } else {
        // Compact: the id is the entry's own sequence number, not repeated inside.
        p.content
    };
    let entry = Entry {
        seq,
        time_ms,
        author: p.user,
        op: Op::Put,
        resource_type: "AuditEvent".into(),
        resource_id: id,
        version: 1,
        content,
        prev_hash: st.tip.prev_hash,
    };
    let bytes = entry.encode();
    let leaf = hash_encoded(&bytes);
    st.tip.frontier.append(seq - 1, leaf).map_err(|e| AuditError::Corrupt(format!("Merkle tree at entry {seq}: {e}")))?;
    let off = st.buf.len() as u64;
    journal::push_frame(&mut st.buf, &bytes, &leaf.0);
    st.index.add(seq, off, &entry.author, &p.patients);
    st.tip.size = seq;
    st.tip.prev_hash = leaf;
    st.tip.last_time_ms = time_ms;
    Ok(())
}

/// Open the journal for appending: recover its end, take back inbox rows a crash left behind
/// after appending them, bring the index up to date, and start the flusher.
pub(crate) fn start(dir: &Path, key: LedgerKey, segment_bytes: u64, counters: Arc<Counters>) -> Result<(Arc<Shared>, std::thread::JoinHandle<()>), AuditError> {
    std::fs::create_dir_all(journal::journal_dir(dir))?;
    let db = crate::schema::open_audit_db(&dir.join(crate::DB_FILE))?;
    let recovered = recover(dir, &db)?;
    crate::inbox::forget_appended(&db, &recovered.appended)?;
    let (current, unindexed) = prepare_index(dir, recovered.last_segment.map(|(seg, _)| seg))?;
    let last_cp: (u64, i64) = db
        .query_row("SELECT tree_size, time_ms FROM checkpoint ORDER BY tree_size DESC LIMIT 1", [], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
        .optional()?
        .unwrap_or((0, 0));
    let shared = Arc::new(Shared {
        state: Mutex::new(State { tip: recovered.tip.clone(), buf: Vec::new(), waiters: Vec::new(), index: Postings::default(), broken: None, stop: false }),
        wake: Condvar::new(),
        counters,
    });
    let (seg, len) = match recovered.last_segment {
        Some((seg, len)) => (seg, len),
        None => (0, 0),
    };
    let runtime = tokio::runtime::Handle::try_current().ok().filter(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    let flusher = Flusher {
        runtime,
        dir: dir.to_path_buf(),
        shared: shared.clone(),
        key,
        db,
        seg,
        file: None,
        len,
        segment_bytes,
        last_cp,
        durable: recovered.tip,
        indexer: Indexer::start(dir.to_path_buf(), unindexed)?,
        current,
        inbox_checked: Instant::now() - Duration::from_secs(3600),
        inbox_taken: Vec::new(),
    };
    let thread = std::thread::Builder::new().name("vaidya-audit".into()).spawn(move || flusher.run())?;
    Ok((shared, thread))
}

struct Recovered {
    tip: Tip,
    /// The last segment and its length.
    last_segment: Option<(u64, u64)>,
    /// Keys of the entries after the last checkpoint (see `inbox::appended_key`).
    appended: HashSet<[u8; 32]>,
}

/// Find the journal's end: start from the last signed checkpoint's tip and position and read
/// forward, checking each frame; cut off a frame that a crash left half-written at the very end.
fn recover(dir: &Path, db: &Connection) -> Result<Recovered, AuditError> {
    type Cp = (u64, Vec<u8>, u64, u64, Vec<u8>, i64);
    let cp: Option<Cp> = db
        .query_row("SELECT tree_size, edge, seg, off, last_leaf, last_time_ms FROM checkpoint ORDER BY tree_size DESC LIMIT 1", [], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get::<_, i64>(2)? as u64, r.get::<_, i64>(3)? as u64, r.get(4)?, r.get(5)?))
        })
        .optional()?;
    let segs = journal::segments(dir)?;
    let (mut tip, from) = match cp {
        None => (Tip::genesis(), Pos { seg: segs.first().copied().unwrap_or(1), off: HEADER }),
        Some((size, edge, seg, off, last_leaf, last_time_ms)) => {
            let frontier = Frontier::decode(&edge).ok_or_else(|| AuditError::Corrupt("the last checkpoint's tree edge is unreadable".into()))?;
            let prev: [u8; 32] = last_leaf.try_into().map_err(|_| AuditError::Corrupt("the last checkpoint's leaf hash is unreadable".into()))?;
            let len = std::fs::metadata(journal::segment_path(dir, seg)).map(|m| m.len()).unwrap_or(0);
            if len < off {
                return Err(AuditError::Corrupt(format!(
                    "the audit journal ends before the last signed checkpoint (entry {size}): entries were removed; run `vaidya audit verify`"
                )));
            }
            (Tip { size, prev_hash: EntryHash(prev), last_time_ms, frontier }, Pos { seg, off })
        }
    };
    // A segment created just before a crash may lack its header: it holds no entries.
    if let Some(&last) = segs.last() {
        let path = journal::segment_path(dir, last);
        let len = std::fs::metadata(&path)?.len();
        if len < HEADER {
            let mut f = std::fs::OpenOptions::new().write(true).open(&path)?;
            f.set_len(0)?;
            f.write_all(MAGIC)?;
            f.sync_all()?;
        }
    }
    let mut appended = HashSet::new();
    journal::walk(dir, from, |seg, next| {
        match next {
            Next::Frame(f) => {
                let entry = tip.take(&f)?;
                if f.off == HEADER && entry.seq != seg {
                    return Err(AuditError::Corrupt(format!("journal segment {seg} starts with entry {}", entry.seq)));
                }
                if let Some(k) = crate::inbox::appended_key(&entry) {
                    appended.insert(k);
                }
            }
            Next::Torn(off) => {
                tracing::warn!(segment = seg, offset = off, "audit journal ends in a frame cut short by a crash; cutting it off (it was never acknowledged)");
                let f = std::fs::OpenOptions::new().write(true).open(journal::segment_path(dir, seg))?;
                f.set_len(off)?;
                f.sync_all()?;
            }
            Next::End => {}
        }
        Ok(true)
    })?;
    let last_segment = match segs.last() {
        Some(&seg) => Some((seg, std::fs::metadata(journal::segment_path(dir, seg))?.len())),
        None => None,
    };
    Ok(Recovered { tip, last_segment, appended })
}

/// Make the report index whole again at start: remove what an interrupted index write and the
/// SQLite index of earlier versions left, read the open segment's postings back from it, and
/// list the closed segments whose index file is missing or not whole (after a crash between
/// closing a segment and writing its index, or a restore), to be indexed in the background.
fn prepare_index(dir: &Path, last_segment: Option<u64>) -> Result<(Postings, Vec<u64>), AuditError> {
    for old in ["index.db", "index.db-wal", "index.db-shm"] {
        match std::fs::remove_file(dir.join(old)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    index::remove_leftovers(dir)?;
    let Some(last) = last_segment else { return Ok((Postings::default(), Vec::new())) };
    let current = index::postings_of_segment(dir, last)?;
    let unindexed = journal::segments(dir)?.into_iter().filter(|&seg| seg != last && index::IndexFile::open(dir, seg).is_none()).collect();
    Ok((current, unindexed))
}

struct Flusher {
    /// The multi-threaded tokio runtime the ledger was opened in, if any: flushed callers are
    /// answered from a task on it (see [`Flusher::answer`]).
    runtime: Option<tokio::runtime::Handle>,
    dir: PathBuf,
    shared: Arc<Shared>,
    key: LedgerKey,
    db: Connection,
    /// The current segment (0: none yet) and its length.
    seg: u64,
    file: Option<File>,
    len: u64,
    /// A new segment starts once the current one holds this many bytes.
    segment_bytes: u64,
    /// The last signed checkpoint: (tree size, time).
    last_cp: (u64, i64),
    /// The tip as far as the journal is on disk (what checkpoints sign).
    durable: Tip,
    indexer: Indexer,
    /// The report-index postings of the current segment's entries on disk.
    current: Postings,
    inbox_checked: Instant,
    /// Inbox rows appended but not yet flushed: (row id, sequence number).
    inbox_taken: Vec<(i64, u64)>,
}

/// One buffer taken from the callers.
/// Emptied vectors of a flushed batch, to be filled again.
#[derive(Default)]
struct Spare {
    buf: Vec<u8>,
    waiters: Vec<Reply>,
    index: Postings,
}

struct Batch {
    buf: Vec<u8>,
    waiters: Vec<Reply>,
    index: Postings,
    /// The tip after this batch.
    tip: Tip,
    /// Whether a checkpoint is due once it is on disk.
    checkpoint_due: bool,
}

impl Flusher {
    fn run(mut self) {
        let idle = Duration::from_millis(CHECKPOINT_INTERVAL_MS as u64);
        // The batch's vectors come back emptied and are handed to the callers again: vectors
        // that started empty every batch were regrown by reallocation on the request threads
        // and freed on this one, and such cross-thread frees showed in the profile.
        let mut spare = Spare::default();
        let mut last_flush = Instant::now();
        let mut last_batch = 0usize;
        self.take_inbox();
        loop {
            let batch = {
                let mut st = self.shared.state.lock().expect("not poisoned");
                while st.buf.is_empty() && !st.stop {
                    let (guard, timeout) = self.shared.wake.wait_timeout(st, idle).expect("not poisoned");
                    st = guard;
                    if timeout.timed_out() && st.buf.is_empty() && !st.stop {
                        drop(st);
                        self.idle();
                        st = self.shared.state.lock().expect("not poisoned");
                    }
                }
                if st.buf.is_empty() {
                    // Stopping, and nothing left to write.
                    drop(st);
                    self.finish();
                    return;
                }
                if !st.stop && last_batch >= GATHER_AFTER_BATCH {
                    let since = last_flush.elapsed();
                    if since < FLUSH_GATHER {
                        drop(st);
                        std::thread::sleep(FLUSH_GATHER - since);
                        st = self.shared.state.lock().expect("not poisoned");
                    }
                }
                let due = st.tip.size >= self.last_cp.0 + CHECKPOINT_EVERY_ENTRIES || now_ms() - self.last_cp.1 >= CHECKPOINT_INTERVAL_MS;
                Batch {
                    buf: std::mem::replace(&mut st.buf, std::mem::take(&mut spare.buf)),
                    waiters: std::mem::replace(&mut st.waiters, std::mem::take(&mut spare.waiters)),
                    index: std::mem::replace(&mut st.index, std::mem::take(&mut spare.index)),
                    tip: st.tip.clone(),
                    checkpoint_due: due,
                }
            };
            last_batch = batch.index.users.len();
            spare = self.flush(batch);
            last_flush = Instant::now();
        }
    }

    /// Write and flush one batch, answer its callers, then do what is due. Returns its vectors,
    /// emptied, for reuse.
    fn flush(&mut self, mut batch: Batch) -> Spare {
        let started = Instant::now();
        let first_seq = batch.index.users.first().map(|u| u.1).unwrap_or(0);
        let last_seq = batch.index.users.last().map(|u| u.1).unwrap_or(0);
        let written = self.write(first_seq, &batch.buf);
        let c = self.shared.counters.clone();
        match &written {
            Ok(base) => {
                self.answer(&mut batch.waiters);
                c.commits.fetch_add(1, Relaxed);
                c.events.fetch_add(batch.index.entries(), Relaxed);
                self.current.append_at(&batch.index, *base);
                self.forget_flushed_inbox_rows(last_seq);
                self.durable = batch.tip;
                if batch.checkpoint_due {
                    self.checkpoint();
                }
            }
            Err(e) => {
                c.failed.fetch_add(1, Relaxed);
                tracing::error!("audit journal write failed, {} events not recorded: {e}", batch.index.entries());
                self.shared.state.lock().expect("not poisoned").broken = Some(e.clone());
                for w in batch.waiters.drain(..) {
                    let _ = w.send(Err(AuditError::CommitFailed(e.clone())));
                }
            }
        }
        if self.inbox_checked.elapsed() >= Duration::from_millis(CHECKPOINT_INTERVAL_MS as u64) {
            self.take_inbox();
        }
        c.busy_us.fetch_add(started.elapsed().as_micros() as u64, Relaxed);
        let mut buf = batch.buf;
        buf.clear();
        batch.waiters.clear();
        batch.index.clear();
        // A burst's vectors are not kept for ever: one that grew past a large batch is dropped.
        let keep = |cap: usize, most: usize| cap <= most;
        Spare {
            buf: if keep(buf.capacity(), 4 << 20) { buf } else { Vec::new() },
            waiters: if keep(batch.waiters.capacity(), 4096) { batch.waiters } else { Vec::new() },
            index: if keep(batch.index.users.capacity(), 4096) && keep(batch.index.patients.capacity(), 8192) { batch.index } else { Postings::default() },
        }
    }

    /// Tell the callers of a flushed batch that their events are on disk. On a multi-threaded
    /// runtime one task does it: each answer from this thread was a wake-up from outside the
    /// runtime (its shared queue, often a parked worker woken), one per caller; from a task on a
    /// worker they are wake-ups on that worker's own queue (measured: 4 µs less CPU per audited
    /// read and ~7% more reads/s at 64 clients, BENCHMARKS.md). Should the runtime be gone (at
    /// shutdown) the callers hear that the writer has stopped, although their events are on
    /// disk: a request then fails closed.
    fn answer(&self, waiters: &mut Vec<Reply>) {
        match &self.runtime {
            Some(rt) if !waiters.is_empty() => {
                let flushed = std::mem::take(waiters);
                rt.spawn(async move {
                    for w in flushed {
                        let _ = w.send(Ok(()));
                    }
                });
            }
            _ => {
                for w in waiters.drain(..) {
                    let _ = w.send(Ok(()));
                }
            }
        }
    }

    /// Append `buf` (frames starting with entry `first_seq`) to the journal and flush it; the
    /// offset in the current segment where `buf` starts.
    fn write(&mut self, first_seq: u64, buf: &[u8]) -> Result<u64, String> {
        let t = Instant::now();
        if self.seg == 0 || self.len >= self.segment_bytes {
            self.new_segment(first_seq)?;
        }
        if self.file.is_none() {
            let path = journal::segment_path(&self.dir, self.seg);
            let f = std::fs::OpenOptions::new().append(true).open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            self.file = Some(f);
        }
        let file = self.file.as_mut().expect("opened above");
        let base = self.len;
        file.write_all(buf).map_err(|e| format!("cannot write the audit journal: {e}"))?;
        let c = &self.shared.counters;
        c.commit_us.fetch_add(t.elapsed().as_micros() as u64, Relaxed);
        let t = Instant::now();
        file.sync_data().map_err(|e| format!("cannot flush the audit journal: {e}"))?;
        c.sync_us.fetch_add(t.elapsed().as_micros() as u64, Relaxed);
        c.syncs.fetch_add(1, Relaxed);
        self.len += buf.len() as u64;
        Ok(base)
    }

    /// Close the current segment and start one named `first_seq`; its name made durable.
    fn new_segment(&mut self, first_seq: u64) -> Result<(), String> {
        if let Some(f) = self.file.take() {
            f.sync_all().map_err(|e| format!("cannot flush the audit journal: {e}"))?;
        }
        if self.seg != 0 {
            // The segment is closed: its index file can be written.
            self.indexer.send(self.seg, std::mem::take(&mut self.current));
        }
        let path = journal::segment_path(&self.dir, first_seq);
        let mut f = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        f.write_all(MAGIC).and_then(|()| f.sync_all()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let jdir = journal::journal_dir(&self.dir);
        File::open(&jdir).and_then(|d| d.sync_all()).map_err(|e| format!("cannot flush {}: {e}", jdir.display()))?;
        self.seg = first_seq;
        self.len = HEADER;
        self.file = Some(f);
        Ok(())
    }

    /// Sign the tree as far as it is on disk, and store the checkpoint with the position.
    fn checkpoint(&mut self) {
        let tip = &self.durable;
        if tip.size == 0 || tip.size <= self.last_cp.0 {
            return;
        }
        let result = (|| -> Result<i64, AuditError> {
            let root = tip.frontier.root(tip.size).map_err(|e| AuditError::Corrupt(format!("cannot compute the Merkle root: {e}")))?;
            let time_ms = now_ms().max(tip.last_time_ms);
            let note = vaidya_ledger::sign_checkpoint_for(&self.key, &crate::origin(self.key.name()), tip.size, root, time_ms);
            insert_checkpoint(&self.db, tip, time_ms, &note, Pos { seg: self.seg, off: self.len })?;
            Ok(time_ms)
        })();
        match result {
            Ok(time_ms) => self.last_cp = (tip.size, time_ms),
            Err(e) => tracing::error!("audit checkpoint at {} entries failed: {e}", tip.size),
        }
    }

    /// Nothing arrived for a while: sign what is unsigned, look at the inbox.
    fn idle(&mut self) {
        self.checkpoint();
        self.take_inbox();
    }

    fn finish(mut self) {
        self.checkpoint();
        // The open segment's postings are read back from it at the next start.
        self.indexer.stop();
        if let Err(e) = self.db.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
            tracing::error!("audit database WAL checkpoint failed: {e}");
        }
        tracing::debug!(entries = self.durable.size, "audit writer stopped");
    }

    /// Append waiting inbox rows (they are flushed with the next batch, and deleted then).
    fn take_inbox(&mut self) {
        self.inbox_checked = Instant::now();
        if !self.inbox_taken.is_empty() {
            return; // the last ones are not flushed yet
        }
        let rows = match crate::inbox::waiting(&self.db) {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!("audit inbox unreadable: {e}");
                return;
            }
        };
        for (id, user, json) in rows {
            match crate::inbox::check_row(user, json) {
                Ok(p) => match self.shared.append_unanswered(vec![p]) {
                    Ok(seq) => self.inbox_taken.push((id, seq)),
                    Err(e) => {
                        tracing::error!("audit inbox row {id} not appended: {e}");
                        return;
                    }
                },
                Err(reason) => {
                    tracing::error!("audit inbox row {id} rejected (kept in the inbox): {reason}");
                    if let Err(e) = self.db.execute("UPDATE inbox SET rejected = ?2 WHERE id = ?1", params![id, reason]) {
                        tracing::error!("audit inbox row {id} could not be marked rejected: {e}");
                    }
                }
            }
        }
    }

    /// Delete inbox rows whose entries are now on disk (exactly once: see `inbox`).
    fn forget_flushed_inbox_rows(&mut self, flushed_to: u64) {
        let done: Vec<i64> = self.inbox_taken.iter().filter(|(_, seq)| *seq <= flushed_to).map(|(id, _)| *id).collect();
        if done.is_empty() {
            return;
        }
        let result = (|| -> rusqlite::Result<()> {
            let tx = self.db.unchecked_transaction()?;
            for id in &done {
                tx.execute("DELETE FROM inbox WHERE id = ?1", [id])?;
            }
            tx.commit()
        })();
        match result {
            Ok(()) => self.inbox_taken.retain(|(_, seq)| *seq > flushed_to),
            Err(e) => tracing::error!("audit inbox rows appended but not deleted (they will be recognised at the next start): {e}"),
        }
    }
}

/// The thread that writes closed segments' index files (sorting and writing a segment's
/// postings takes tens of milliseconds: the flusher does not wait for it).
struct Indexer {
    tx: Option<std::sync::mpsc::Sender<(u64, Option<Postings>)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Indexer {
    /// Start it, first indexing the closed segments in `unindexed` (read back from the journal).
    fn start(dir: PathBuf, unindexed: Vec<u64>) -> Result<Indexer, AuditError> {
        let (tx, rx) = std::sync::mpsc::channel::<(u64, Option<Postings>)>();
        for seg in unindexed {
            let _ = tx.send((seg, None));
        }
        let thread = std::thread::Builder::new().name("vaidya-audit-index".into()).spawn(move || {
            while let Ok((seg, postings)) = rx.recv() {
                let t = Instant::now();
                let postings = match postings {
                    Some(p) => Ok(p),
                    None => index::postings_of_segment(&dir, seg),
                };
                // A segment left without an index file is indexed at the next start; reports
                // read it whole meanwhile.
                match postings.and_then(|p| Ok(index::write(&dir, seg, p)?)) {
                    Ok(()) => tracing::debug!(segment = seg, ms = t.elapsed().as_millis() as u64, "audit index file written"),
                    Err(e) => tracing::error!("audit index of segment {seg} not written (retried at the next start): {e}"),
                }
            }
        })?;
        Ok(Indexer { tx: Some(tx), thread: Some(thread) })
    }

    fn send(&self, seg: u64, postings: Postings) {
        if let Some(tx) = &self.tx {
            let _ = tx.send((seg, Some(postings)));
        }
    }

    fn stop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
