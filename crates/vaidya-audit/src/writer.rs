//! The audit writer: one thread owns the write connection and commits every waiting call's
//! events in one transaction; a second thread (the [`Syncer`]) makes commits durable and then
//! answers their callers.
//!
//! Why two threads: a commit with `synchronous=FULL` holds the writer for the disk's whole
//! flush (0.2-4 ms on this VM), and with one event in flight per caller, throughput is then
//! at most callers / (insert time + flush). Here the writer commits with `synchronous=NORMAL`
//! (the WAL is written, not flushed) and hands the batch's callers to the syncer, which runs
//! `fdatasync` on the WAL file and then answers every caller whose commit preceded that flush.
//! While the disk flushes batch k, the writer commits batch k+1; one flush covers every commit
//! made while the previous flush ran. A caller is answered only after a flush that began after
//! its commit, so an acknowledged event is on disk, as before. Checkpoints of the WAL into the
//! database (SQLite's own, under NORMAL) flush the WAL first and the database before the WAL is
//! reused, so a commit whose WAL frames are overwritten is already safe in the database.
//!
//! Events are checked and serialised by the callers; the writer only numbers, chains, hashes
//! and inserts them. A commit that fails is rolled back whole (ledger tip included) and every
//! caller in it hears that nothing was recorded.

use crate::tree::Frontier;
use crate::{
    AuditError, CHECKPOINT_EVERY_ENTRIES, CHECKPOINT_INTERVAL_MS, JSON_PREFIX, MAX_EVENTS_PER_COMMIT, MERGE_EVENTS, Prepared, now_ms,
};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use vaidya_ledger::{Entry, EntryHash, LedgerKey, Op, hash_encoded};

/// One caller's events and where to tell it the outcome.
type Call = (Vec<Prepared>, oneshot::Sender<Result<(), AuditError>>);

pub(crate) enum Msg {
    Record(Vec<Prepared>, oneshot::Sender<Result<(), AuditError>>),
    /// Sign a checkpoint if anything is unsigned, flush the WAL, and stop.
    Shutdown(std::sync::mpsc::Sender<()>),
}

#[derive(Debug, Clone)]
struct Tip {
    size: u64,
    prev_hash: EntryHash,
    last_time_ms: i64,
    checkpoint_size: u64,
    checkpoint_time_ms: i64,
    frontier: Frontier,
    /// Events whose index rows are in the staging tables.
    staged: u64,
}

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

pub(crate) struct Writer {
    conn: Connection,
    tip: Tip,
    key: LedgerKey,
    stats: Arc<Counters>,
    syncer: Syncer,
    /// When the inbox was last looked at (see [`crate::inbox`]).
    inbox_checked: Instant,
}

type Reply = oneshot::Sender<Result<(), AuditError>>;

/// The thread that flushes the WAL and answers callers (see the module documentation).
struct Syncer {
    tx: Option<std::sync::mpsc::Sender<Vec<Reply>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Commits handed over so far.
    handed: u64,
    /// Commits covered by a finished flush (raised by the sync thread).
    flushed: Arc<(std::sync::Mutex<u64>, std::sync::Condvar)>,
}

impl Syncer {
    fn start(db: &Path, stats: Arc<Counters>) -> Result<Syncer, AuditError> {
        let wal = PathBuf::from(format!("{}-wal", db.display()));
        let dir = db.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        let (tx, rx) = std::sync::mpsc::channel::<Vec<Reply>>();
        let flushed = Arc::new((std::sync::Mutex::new(0u64), std::sync::Condvar::new()));
        let done = flushed.clone();
        let thread = std::thread::Builder::new().name("vaidya-audit-sync".into()).spawn(move || {
            let mut file: Option<std::fs::File> = None;
            while let Ok(first) = rx.recv() {
                let mut waiting = first;
                let mut commits = 1u64;
                // Every commit handed over so far precedes the flush below.
                while let Ok(more) = rx.try_recv() {
                    waiting.extend(more);
                    commits += 1;
                }
                let t = Instant::now();
                let outcome = flush_wal(&mut file, &wal, &dir);
                stats.sync_us.fetch_add(t.elapsed().as_micros() as u64, Relaxed);
                stats.syncs.fetch_add(1, Relaxed);
                if let Err(e) = &outcome {
                    stats.failed.fetch_add(1, Relaxed);
                    tracing::error!("audit WAL flush failed: {e}");
                }
                for reply in waiting {
                    let _ = reply.send(outcome.clone().map_err(AuditError::CommitFailed));
                }
                let (count, flushed) = &*done;
                *count.lock().expect("not poisoned") += commits;
                flushed.notify_all();
            }
        })?;
        Ok(Syncer { tx: Some(tx), thread: Some(thread), handed: 0, flushed })
    }

    /// Wait until at most one handed-over commit is not yet covered by a finished flush: the
    /// writer then commits while the disk flushes, but not more often than the disk flushes,
    /// so that events arriving during a flush share one commit (each commit rewrites the last
    /// pages of every table it touches, whatever the number of events in it).
    fn wait_for_flush(&self) {
        let (count, flushed) = &*self.flushed;
        let mut n = count.lock().expect("not poisoned");
        while self.handed.saturating_sub(*n) > 1 {
            n = flushed.wait(n).expect("not poisoned");
        }
    }

    fn hand_over(&mut self, replies: Vec<Reply>) {
        if let Some(tx) = &self.tx {
            match tx.send(replies) {
                Ok(()) => self.handed += 1,
                Err(std::sync::mpsc::SendError(replies)) => {
                    for reply in replies {
                        let _ = reply.send(Err(AuditError::WriterGone));
                    }
                }
            }
        }
    }

    /// Answer everything handed over, then stop the thread.
    fn stop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `fdatasync` the WAL. The file is opened on first use (SQLite creates it with the first
/// write) and the directory is flushed once then, so that the WAL's name is durable too.
fn flush_wal(file: &mut Option<std::fs::File>, wal: &Path, dir: &Path) -> Result<(), String> {
    if file.is_none() {
        let f = std::fs::File::open(wal).map_err(|e| format!("cannot open {}: {e}", wal.display()))?;
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| format!("cannot flush {}: {e}", dir.display()))?;
        *file = Some(f);
    }
    file.as_ref().expect("opened above").sync_data().map_err(|e| format!("cannot flush {}: {e}", wal.display()))
}

impl Writer {
    pub(crate) fn new(conn: Connection, db: &Path, key: LedgerKey, stats: Arc<Counters>) -> Result<Writer, AuditError> {
        let tip = load_tip(&conn)?;
        let syncer = Syncer::start(db, stats.clone())?;
        Ok(Writer { conn, tip, key, stats, syncer, inbox_checked: Instant::now() })
    }

    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!("audit writer cannot start: {e}");
                return;
            }
        };
        let idle = Duration::from_millis(CHECKPOINT_INTERVAL_MS as u64);
        let mut batch: Vec<Call> = Vec::new();
        self.drain_inbox();
        loop {
            let first = rt.block_on(async { tokio::time::timeout(idle, rx.recv()).await });
            let mut shutdown = None;
            match first {
                Err(_) => {
                    // Idle: sign what is unsigned, so a quiet night still ends in a checkpoint,
                    // and move staged index rows while nobody waits; take other processes' events.
                    self.drain_inbox();
                    self.maintain(false);
                    continue;
                }
                Ok(None) => {
                    self.shutdown();
                    return;
                }
                Ok(Some(Msg::Shutdown(done))) => {
                    self.shutdown();
                    let _ = done.send(());
                    return;
                }
                Ok(Some(Msg::Record(events, reply))) => batch.push((events, reply)),
            }
            // Let events gather while the previous commit is flushed.
            self.syncer.wait_for_flush();
            let mut n: usize = batch[0].0.len();
            while n < MAX_EVENTS_PER_COMMIT {
                match rx.try_recv() {
                    Ok(Msg::Record(events, reply)) => {
                        n += events.len();
                        batch.push((events, reply));
                    }
                    Ok(Msg::Shutdown(done)) => {
                        shutdown = Some(done);
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit(&mut batch);
            if let Some(done) = shutdown {
                self.shutdown();
                let _ = done.send(());
                return;
            }
        }
    }

    fn commit(&mut self, batch: &mut Vec<Call>) {
        let started = Instant::now();
        let tip_before = self.tip.clone();
        // Every caller in the batch hears the commit's outcome, whatever happens below.
        let mut replies = Vec::with_capacity(batch.len());
        let mut calls = Vec::with_capacity(batch.len());
        for (prepared, reply) in batch.drain(..) {
            replies.push(reply);
            calls.push(prepared);
        }
        let mut events = 0usize;
        let result = (|| -> Result<(), AuditError> {
            self.conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
            for p in calls.into_iter().flatten() {
                events += 1;
                self.append(p)?;
            }
            if self.inbox_checked.elapsed() >= Duration::from_millis(CHECKPOINT_INTERVAL_MS as u64) {
                events += self.take_inbox()?;
            }
            if self.tip.staged >= MERGE_EVENTS {
                self.merge_staged()?;
            }
            self.checkpoint_if_due(false)?;
            let t = Instant::now();
            self.conn.prepare_cached("COMMIT")?.execute([])?;
            self.stats.commit_us.fetch_add(t.elapsed().as_micros() as u64, Relaxed);
            Ok(())
        })();
        match result {
            Ok(()) => {
                self.stats.commits.fetch_add(1, Relaxed);
                self.stats.events.fetch_add(events as u64, Relaxed);
                // Answered once the WAL holding this commit is flushed.
                self.syncer.hand_over(replies);
            }
            Err(e) => {
                self.stats.failed.fetch_add(1, Relaxed);
                tracing::error!("audit commit of {events} events failed: {e}");
                let _ = self.conn.execute_batch("ROLLBACK");
                self.tip = tip_before;
                for reply in replies {
                    let _ = reply.send(Err(AuditError::CommitFailed(e.to_string())));
                }
            }
        }
        self.stats.busy_us.fetch_add(started.elapsed().as_micros() as u64, Relaxed);
    }

    fn append(&mut self, p: Prepared) -> Result<(), AuditError> {
        let seq = self.tip.size + 1;
        let time_ms = now_ms().max(self.tip.last_time_ms);
        let id = seq.to_string();
        // `{"resourceType":"AuditEvent","id":"<seq>",` + the rest of the caller's JSON.
        let rest = &p.json[JSON_PREFIX.len()..];
        let mut content = Vec::with_capacity(p.json.len() + id.len() + 8);
        content.extend_from_slice(JSON_PREFIX);
        content.extend_from_slice(b"\"id\":\"");
        content.extend_from_slice(id.as_bytes());
        content.extend_from_slice(b"\",");
        content.extend_from_slice(rest);
        let entry = Entry {
            seq,
            time_ms,
            author: p.user,
            op: Op::Put,
            resource_type: "AuditEvent".into(),
            resource_id: id,
            version: 1,
            content,
            prev_hash: self.tip.prev_hash,
        };
        let bytes = entry.encode();
        let leaf = hash_encoded(&bytes);
        self.conn.prepare_cached("INSERT INTO ledger (seq, entry) VALUES (?1, ?2)")?.execute(params![seq as i64, bytes])?;
        let (first, hashes) = self
            .tip
            .frontier
            .append(seq - 1, leaf, Some(&self.conn))
            .map_err(|e| AuditError::Corrupt(format!("Merkle tree hashes unreadable at entry {seq}: {e}")))?;
        let mut stmt = self.conn.prepare_cached("INSERT INTO tree_hash (idx, hash) VALUES (?1, ?2)")?;
        for (i, h) in hashes.iter().enumerate() {
            stmt.execute(params![(first + i as u64) as i64, &h.0[..]])?;
        }
        self.conn
            .prepare_cached("INSERT INTO audit_user_new (seq, user, time_ms) VALUES (?1, ?2, ?3)")?
            .execute(params![seq as i64, entry.author, time_ms])?;
        let mut stmt = self.conn.prepare_cached("INSERT INTO audit_patient_new (seq, patient, time_ms) VALUES (?1, ?2, ?3)")?;
        for patient in &p.patients {
            stmt.execute(params![seq as i64, patient, time_ms])?;
        }
        self.tip.staged += 1;
        self.tip.size = seq;
        self.tip.prev_hash = leaf;
        self.tip.last_time_ms = time_ms;
        Ok(())
    }

    /// Append waiting inbox rows (inside the caller's transaction), deleting each: the count
    /// appended. Rows that cannot be entries are marked rejected and kept.
    fn take_inbox(&mut self) -> Result<usize, AuditError> {
        self.inbox_checked = Instant::now();
        let rows = crate::inbox::waiting(&self.conn)?;
        let mut n = 0;
        for (id, user, json) in rows {
            match crate::inbox::check_row(user, json) {
                Ok(p) => {
                    self.append(p)?;
                    self.conn.prepare_cached("DELETE FROM inbox WHERE id = ?1")?.execute([id])?;
                    n += 1;
                }
                Err(reason) => {
                    tracing::error!("audit inbox row {id} rejected (kept in the inbox): {reason}");
                    self.conn.prepare_cached("UPDATE inbox SET rejected = ?2 WHERE id = ?1")?.execute(params![id, reason])?;
                }
            }
        }
        Ok(n)
    }

    /// Take waiting inbox rows in a transaction of their own (at start and when idle).
    fn drain_inbox(&mut self) {
        self.inbox_checked = Instant::now();
        match crate::inbox::any_waiting(&self.conn) {
            Ok(false) => return,
            Ok(true) => {}
            Err(e) => {
                tracing::error!("audit inbox unreadable: {e}");
                return;
            }
        }
        let tip_before = self.tip.clone();
        let result = (|| -> Result<usize, AuditError> {
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
            let n = self.take_inbox()?;
            self.checkpoint_if_due(false)?;
            self.conn.execute_batch("COMMIT")?;
            Ok(n)
        })();
        match result {
            Ok(n) => {
                self.stats.events.fetch_add(n as u64, Relaxed);
                tracing::debug!(events = n, "audit inbox taken into the ledger");
            }
            Err(e) => {
                tracing::error!("audit inbox could not be taken into the ledger: {e}");
                let _ = self.conn.execute_batch("ROLLBACK");
                self.tip = tip_before;
            }
        }
    }

    fn checkpoint_if_due(&mut self, force: bool) -> Result<(), AuditError> {
        let now = now_ms();
        let unsigned = self.tip.size - self.tip.checkpoint_size;
        let due = force
            || now - self.tip.checkpoint_time_ms >= CHECKPOINT_INTERVAL_MS
            || unsigned >= CHECKPOINT_EVERY_ENTRIES;
        if unsigned == 0 || !due {
            return Ok(());
        }
        let root = self
            .tip
            .frontier
            .root(self.tip.size, Some(&self.conn))
            .map_err(|e| AuditError::Corrupt(format!("cannot compute the Merkle root: {e}")))?;
        let time_ms = now.max(self.tip.last_time_ms);
        let note = vaidya_ledger::sign_checkpoint_for(&self.key, &crate::origin(self.key.name()), self.tip.size, root, time_ms);
        self.conn
            .prepare_cached("INSERT INTO checkpoint (tree_size, time_ms, note) VALUES (?1, ?2, ?3)")?
            .execute(params![self.tip.size as i64, time_ms, note])?;
        self.tip.checkpoint_size = self.tip.size;
        self.tip.checkpoint_time_ms = time_ms;
        Ok(())
    }

    /// Move the staged index rows into the ordered indexes, in one sorted pass each.
    fn merge_staged(&mut self) -> Result<(), AuditError> {
        let t = Instant::now();
        self.conn.execute_batch(
            "INSERT INTO audit_patient (patient, seq, time_ms) SELECT patient, seq, time_ms FROM audit_patient_new ORDER BY patient, seq;
             DELETE FROM audit_patient_new;
             INSERT INTO audit_user (user, seq, time_ms) SELECT user, seq, time_ms FROM audit_user_new ORDER BY user, seq;
             DELETE FROM audit_user_new;",
        )?;
        tracing::debug!(events = self.tip.staged, ms = t.elapsed().as_millis() as u64, "audit index rows merged");
        self.tip.staged = 0;
        Ok(())
    }

    /// When idle or stopping: merge staged index rows and sign a checkpoint (forced: even if
    /// the last one is recent), in a transaction of their own.
    fn maintain(&mut self, force: bool) {
        if self.tip.size == self.tip.checkpoint_size && self.tip.staged == 0 {
            return;
        }
        let tip_before = self.tip.clone();
        let result = (|| -> Result<(), AuditError> {
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
            if self.tip.staged > 0 {
                self.merge_staged()?;
            }
            self.checkpoint_if_due(force)?;
            self.conn.execute_batch("COMMIT")?;
            Ok(())
        })();
        if let Err(e) = result {
            tracing::error!("audit checkpoint or index merge failed: {e}");
            let _ = self.conn.execute_batch("ROLLBACK");
            self.tip = tip_before;
        }
    }

    fn shutdown(&mut self) {
        tracing::debug!(
            commits = self.stats.commits.load(Relaxed),
            busy_ms = self.stats.busy_us.load(Relaxed) / 1000,
            entries = self.tip.size,
            "audit writer stopping"
        );
        self.drain_inbox();
        self.maintain(true);
        // Answer every caller still waiting for a flush before the checkpoint below moves
        // (and syncs) the WAL into the database.
        self.syncer.stop();
        if let Err(e) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
            tracing::error!("audit WAL checkpoint failed: {e}");
        }
    }
}

fn load_tip(conn: &Connection) -> Result<Tip, AuditError> {
    let last: Option<(i64, Vec<u8>)> = conn
        .query_row("SELECT seq, entry FROM ledger ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (size, prev_hash, last_time_ms) = match last {
        None => (0, vaidya_ledger::GENESIS_PREV, 0),
        Some((seq, bytes)) => {
            let entry = Entry::decode(&bytes).map_err(|e| AuditError::Corrupt(format!("entry {seq}: {e}")))?;
            (seq as u64, hash_encoded(&bytes), entry.time_ms)
        }
    };
    let (checkpoint_size, checkpoint_time_ms): (i64, i64) = conn
        .query_row("SELECT tree_size, time_ms FROM checkpoint ORDER BY tree_size DESC LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?
        .unwrap_or((0, 0));
    let staged: i64 = conn.query_row("SELECT count(*) FROM audit_user_new", [], |r| r.get(0))?;
    Ok(Tip {
        staged: staged as u64,
        size,
        prev_hash,
        last_time_ms,
        checkpoint_size: checkpoint_size as u64,
        checkpoint_time_ms,
        frontier: Frontier::default(),
    })
}
