//! The audit ledger: every access to the hospital's records (read, search with the ids it
//! returned, create, update, delete, export, login, break-the-glass; allowed, denied or failed)
//! as a FHIR R4 AuditEvent, in an append-only ledger with the same hash chain, Merkle tree and
//! signed checkpoints as the data ledger, durable before [`Audit::record`] returns.
//!
//! - Storage: `<data>/audit/audit.db`, its own SQLite database (WAL; commits flushed by a sync thread
//!   before callers are answered, see `writer`), so that
//!   audit writes never wait behind clinical writes for SQLite's single write lock, nor the other
//!   way round. Tables (see [`schema`]): `ledger(seq, entry)`, `tree_hash(idx, hash)`,
//!   `checkpoint(tree_size, time_ms, note)`, and the report indexes `audit_patient(patient, seq,
//!   time_ms)` and `audit_user(user, seq, time_ms)`.
//! - Entry: exactly a data-ledger entry ([`vaidya_ledger::Entry`], same bytes, same RFC 6962
//!   leaf hash, same chaining): `author` = user name, `op` = Put, `resource_type` =
//!   `AuditEvent`, `resource_id` = the sequence number in decimal, `version` = 1, `content` =
//!   the AuditEvent JSON with `"id"` = the sequence number, `time_ms` = commit time (never
//!   decreasing).
//! - One writer thread with group commit ([`Audit::record`]) and one thread that flushes the
//!   WAL and answers callers, so that commits overlap flushes; checkpoints signed with the
//!   ledger key at most every [`CHECKPOINT_INTERVAL_MS`] while events arrive, when idle, and at
//!   shutdown.
//! - Other processes (the command line while the server runs) record through the writer's
//!   inbox: [`ToolAudit`] (see `inbox.rs` for why a second process never appends itself).
//! - Offline: [`verify()`], [`report_for_patient`], [`export`].
//! - Retention: nothing here ever deletes or rewrites an entry (triggers refuse UPDATE and
//!   DELETE on the ledger tables). Keep the audit database at least 180 days (CERT-In) and in
//!   the backups with the data database.
//!
//! **Architecture invariant:** no HTTP and no dependency on the server; the caller builds
//! [`AuditRecord`]s and decides what to record.

mod inbox;
mod record;
mod report;
pub mod schema;
mod tree;
pub mod verify;
mod writer;

pub use record::{
    ACTION_SYSTEM, ANONYMOUS, Action, AuditRecord, OBSERVER, Outcome, Purpose, Source, USER_AGENT_EXTENSION,
    USER_SYSTEM, Who, days_from_civil, format_instant, format_local, now_ms, parse_instant,
};
pub use inbox::{Delivery, INBOX_BATCH, ToolAudit};
pub use report::{ReportRow, break_glass_events, export, open_read_only, report_for_patient, report_for_user};
pub use verify::{AuditVerifyError, VerifyReport, verify};

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio::sync::{mpsc, oneshot};
use vaidya_ledger::LedgerKey;

/// The audit directory inside a data directory.
pub const AUDIT_DIR: &str = "audit";
/// The database file inside the audit directory.
pub const DB_FILE: &str = "audit.db";
const LOCK_FILE: &str = "LOCK";

/// Largest AuditEvent JSON accepted (a search returning 1,000 resources is ~80 KiB).
pub const MAX_EVENT_BYTES: usize = 256 * 1024;
/// Longest user name (bytes).
pub const MAX_USER_BYTES: usize = 256;
/// Most patients named by one event.
pub const MAX_PATIENTS_PER_EVENT: usize = 1_000;
/// Most events in one call to [`Audit::record`].
pub const MAX_EVENTS_PER_CALL: usize = 10_000;
/// Calls waiting for the writer at most; further callers wait to enqueue (back-pressure).
pub const QUEUE_DEPTH: usize = 4_096;
/// The writer stops adding waiting calls to a commit once it holds this many events.
pub const MAX_EVENTS_PER_COMMIT: usize = 4_096;
/// A checkpoint is signed with a commit when this much time passed since the last one (or the
/// writer has been idle this long with unsigned entries).
pub const CHECKPOINT_INTERVAL_MS: i64 = 1_000;
/// Staged report-index rows are merged into the ordered indexes once this many events are
/// staged (or when the writer is idle); see [`schema`].
pub const MERGE_EVENTS: u64 = 1_000_000;
/// ... or when this many entries are unsigned.
pub const CHECKPOINT_EVERY_ENTRIES: u64 = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("audit event is {bytes} bytes, more than the limit of {limit}")]
    TooLarge { bytes: usize, limit: usize },
    #[error("audit event refused: {0}")]
    Invalid(String),
    #[error("the audit commit failed, nothing was recorded: {0}")]
    CommitFailed(String),
    #[error("the audit writer has stopped")]
    WriterGone,
    #[error("the audit database is damaged: {0}")]
    Corrupt(String),
    #[error("the audit directory {0} is in use by another process")]
    Locked(PathBuf),
}

/// Counters of the writer since [`Audit::open`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditStats {
    /// Transactions committed.
    pub commits: u64,
    /// Events committed.
    pub events: u64,
    /// Time the writer spent committing (inserting, hashing, writing the WAL), microseconds.
    pub busy_us: u64,
    /// Of which in COMMIT: writing the WAL (and SQLite's occasional checkpoint).
    pub commit_us: u64,
    /// Commits or WAL flushes that failed (their callers heard so).
    pub failed_commits: u64,
    /// WAL flushes (`fdatasync`) by the sync thread; each covers one or more commits.
    pub syncs: u64,
    /// Time spent in those flushes, microseconds.
    pub sync_us: u64,
}

/// The audit log's origin (the first line of its signed checkpoints): the data ledger's, with
/// `/audit`. Both logs are signed with one key; distinct origins keep a checkpoint of one from
/// passing for a checkpoint of the other.
pub fn origin(ledger_key_name: &str) -> String {
    format!("{ledger_key_name}/audit")
}

/// The audit directory of a data directory: `<data>/audit`.
pub fn audit_dir(data: &Path) -> PathBuf {
    data.join(AUDIT_DIR)
}

/// The audit ledger, open for writing. Cheap to clone (an `Arc` inside); `Send + Sync`, so it
/// can sit in the server's state. The writer stops (signing a final checkpoint) when the last
/// clone is dropped or on [`Audit::shutdown`].
#[derive(Clone)]
pub struct Audit {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    stats: Arc<writer::Counters>,
    tx: mpsc::Sender<writer::Msg>,
    thread: Mutex<Option<JoinHandle<()>>>,
    _lock: File,
}

impl Audit {
    /// Open (creating if new) the audit ledger in `dir` and start its writer. Checkpoints are
    /// signed with `key`, normally the data ledger's key (a second copy:
    /// `LedgerKey::from_private(key.private_text())`), so `<data>/keys/ledger.pub` checks both.
    /// Only one process may have the directory open (a lock file guards it).
    pub fn open(dir: &Path, key: LedgerKey) -> Result<Audit, AuditError> {
        std::fs::create_dir_all(dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = File::options().create(true).truncate(false).write(true).open(&lock_path)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(AuditError::Locked(dir.to_path_buf())),
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        }
        let db = dir.join(DB_FILE);
        let conn = schema::open_writer(&db)?;
        let stats = Arc::new(writer::Counters::default());
        let w = writer::Writer::new(conn, &db, key, stats.clone())?;
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let handle = std::thread::Builder::new().name("vaidya-audit".into()).spawn(move || w.run(rx))?;
        Ok(Audit {
            inner: Arc::new(Inner { dir: dir.to_path_buf(), stats, tx, thread: Mutex::new(Some(handle)), _lock: lock }),
        })
    }

    /// Open `<data>/audit` (see [`Audit::open`]).
    pub fn open_in_data_dir(data: &Path, key: LedgerKey) -> Result<Audit, AuditError> {
        Audit::open(&audit_dir(data), key)
    }

    /// The audit directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// What the writer has done since it was opened (for metrics and benchmarks).
    pub fn stats(&self) -> AuditStats {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.inner.stats;
        AuditStats {
            commits: c.commits.load(Relaxed),
            events: c.events.load(Relaxed),
            busy_us: c.busy_us.load(Relaxed),
            commit_us: c.commit_us.load(Relaxed),
            failed_commits: c.failed.load(Relaxed),
            syncs: c.syncs.load(Relaxed),
            sync_us: c.sync_us.load(Relaxed),
        }
    }

    /// Record `events`; resolves once they are committed and fsynced (or with the reason they
    /// were not: then none of them was recorded, and a request handler should fail closed,
    /// i.e. not send the data it was about to send). Events from many concurrent callers share
    /// one commit. Waits (asynchronously) while the writer's queue is full. The events are
    /// checked and serialised to AuditEvent JSON on the caller's task, not on the writer.
    pub fn record(&self, events: Vec<AuditRecord>) -> impl Future<Output = Result<(), AuditError>> + Send + 'static {
        let inner = self.inner.clone();
        async move {
            let prepared = prepare(&events)?;
            if prepared.is_empty() {
                return Ok(());
            }
            let (reply, rx) = oneshot::channel();
            inner.tx.send(writer::Msg::Record(prepared, reply)).await.map_err(|_| AuditError::WriterGone)?;
            rx.await.map_err(|_| AuditError::WriterGone)?
        }
    }

    /// [`Audit::record`] for callers outside an async runtime (CLI tools, blocking threads).
    /// Must not be called from inside an async task.
    pub fn record_blocking(&self, events: Vec<AuditRecord>) -> Result<(), AuditError> {
        let prepared = prepare(&events)?;
        if prepared.is_empty() {
            return Ok(());
        }
        let (reply, rx) = oneshot::channel();
        self.inner.tx.blocking_send(writer::Msg::Record(prepared, reply)).map_err(|_| AuditError::WriterGone)?;
        rx.blocking_recv().map_err(|_| AuditError::WriterGone)?
    }

    /// Sign a final checkpoint, flush the WAL and stop the writer. Idempotent; later calls to
    /// `record` fail with [`AuditError::WriterGone`]. Blocks: call it from a blocking context.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }
}

impl Inner {
    fn shutdown(&self) {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        // try_send: never block here; if the queue is full the writer drains it first.
        let mut msg = writer::Msg::Shutdown(done_tx);
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => {
                    let _ = done_rx.recv();
                    break;
                }
                Err(mpsc::error::TrySendError::Full(m)) => {
                    msg = m;
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(mpsc::error::TrySendError::Closed(_)) => break,
            }
        }
        if let Some(handle) = self.thread.lock().expect("not poisoned").take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The JSON every stored AuditEvent starts with; the writer inserts `"id"` after it.
pub(crate) const JSON_PREFIX: &[u8] = br#"{"resourceType":"AuditEvent","#;

/// An event checked and serialised, ready for the writer.
pub(crate) struct Prepared {
    pub(crate) user: String,
    pub(crate) patients: Vec<String>,
    /// The AuditEvent JSON without `id`, starting with [`JSON_PREFIX`].
    pub(crate) json: Vec<u8>,
}

fn prepare(events: &[AuditRecord]) -> Result<Vec<Prepared>, AuditError> {
    if events.len() > MAX_EVENTS_PER_CALL {
        return Err(AuditError::Invalid(format!(
            "{} events in one call, more than the limit of {MAX_EVENTS_PER_CALL}",
            events.len()
        )));
    }
    events.iter().map(prepare_one).collect()
}

fn prepare_one(r: &AuditRecord) -> Result<Prepared, AuditError> {
    let user = r.user();
    if user.len() > MAX_USER_BYTES {
        return Err(AuditError::Invalid(format!("user name longer than {MAX_USER_BYTES} bytes")));
    }
    if r.patients.len() > MAX_PATIENTS_PER_EVENT {
        return Err(AuditError::Invalid(format!("more than {MAX_PATIENTS_PER_EVENT} patients in one event")));
    }
    let mut patients: Vec<String> = Vec::with_capacity(r.patients.len());
    for p in &r.patients {
        if p.is_empty() || p.len() > 64 || p.contains('/') {
            return Err(AuditError::Invalid(format!("patient id {p:?} is not a FHIR id")));
        }
        if !patients.contains(p) {
            patients.push(p.clone());
        }
    }
    let json = r.to_fhir_json();
    if json.len() > MAX_EVENT_BYTES {
        return Err(AuditError::TooLarge { bytes: json.len(), limit: MAX_EVENT_BYTES });
    }
    debug_assert!(json.starts_with(JSON_PREFIX));
    Ok(Prepared { user: user.to_string(), patients, json })
}
