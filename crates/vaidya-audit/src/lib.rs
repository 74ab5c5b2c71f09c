//! The audit ledger: every access to the hospital's records (read, search with the ids it
//! returned, create, update, delete, export, login, break-the-glass; allowed, denied or failed)
//! as a FHIR R4 AuditEvent, in an append-only ledger with the same hash chain, Merkle tree and
//! signed checkpoints as the data ledger, durable before [`Audit::record`] returns.
//!
//! - Storage: `<data>/audit/`, apart from the clinical database so that audit writes never
//!   wait behind clinical writes, nor the other way round:
//!   - `journal/*.log`: the entries, in append-only segment files (see [`journal`]), written and
//!     flushed in batches before callers are answered (see `writer`);
//!   - `audit.db`: the signed checkpoints and the inbox (see [`schema`]);
//!   - `index/*.idx`: the report indexes by patient and by user, one file per closed journal
//!     segment (see `index`; derived from the journal, rebuilt if lost).
//! - Entry: exactly a data-ledger entry ([`vaidya_ledger::Entry`], same bytes, same RFC 6962
//!   leaf hash, same chaining): `author` = user name, `op` = Put, `resource_type` =
//!   `AuditEvent`, `resource_id` = the sequence number in decimal, `version` = 1, `time_ms` =
//!   append time (never decreasing), `content` = the event's [`compact`] record (events of this
//!   process), or the AuditEvent JSON with `"id"` = the sequence number (events that came
//!   through the inbox from another process, and every entry written before the compact
//!   records). Reports and exports always give the FHIR AuditEvent ([`event_json`]).
//! - Callers append under a mutex (numbering, chaining, hashing, framing) and one thread writes
//!   and flushes the journal and answers them, so that a flush covers every event that arrived
//!   during the previous one; checkpoints signed with the ledger key at most every
//!   [`CHECKPOINT_INTERVAL_MS`] while events arrive, when idle, and at shutdown.
//! - Other processes (the command line while the server runs) record through the writer's
//!   inbox: [`ToolAudit`] (see `inbox.rs` for why a second process never appends itself).
//! - Offline: [`verify()`], [`report_for_patient`], [`export`].
//! - Retention: nothing here ever deletes or rewrites an entry (segments are only appended to;
//!   triggers refuse UPDATE and DELETE of checkpoints). Keep the audit directory at least 180
//!   days (CERT-In) and in the backups with the data database.
//!
//! **Architecture invariant:** no HTTP and no dependency on the server; the caller builds
//! [`AuditRecord`]s and decides what to record.

pub mod compact;
mod inbox;
mod index;
pub mod journal;
mod record;
mod report;
pub mod schema;
pub mod ship;
pub mod verify;
mod writer;

pub use record::{
    ACTION_SYSTEM, ANONYMOUS, Action, AuditRecord, OBSERVER, Outcome, Purpose, Source, USER_AGENT_EXTENSION,
    USER_SYSTEM, Who, days_from_civil, format_instant, format_local, now_ms, parse_instant,
};
pub use inbox::{Delivery, INBOX_BATCH, ToolAudit};
pub use report::{ReportRow, break_glass_events, export, report_for_patient, report_for_user};
pub use verify::{AuditVerifyError, VerifyReport, verify};

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use vaidya_ledger::LedgerKey;

/// The audit directory inside a data directory.
pub const AUDIT_DIR: &str = "audit";
/// The database of checkpoints and inbox inside the audit directory.
pub const DB_FILE: &str = "audit.db";
pub use index::INDEX_DIR;
pub use writer::MAX_BUFFER_BYTES;
const LOCK_FILE: &str = "LOCK";

/// Largest AuditEvent JSON accepted (a search returning 1,000 resources is ~80 KiB).
pub const MAX_EVENT_BYTES: usize = 256 * 1024;
/// Longest user name (bytes).
pub const MAX_USER_BYTES: usize = 256;
/// Most patients named by one event.
pub const MAX_PATIENTS_PER_EVENT: usize = 1_000;
/// Most events in one call to [`Audit::record`].
pub const MAX_EVENTS_PER_CALL: usize = 10_000;
/// A checkpoint is signed with a commit when this much time passed since the last one (or the
/// writer has been idle this long with unsigned entries).
pub const CHECKPOINT_INTERVAL_MS: i64 = 200;
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
    /// Batches written to the journal.
    pub commits: u64,
    /// Events written.
    pub events: u64,
    /// Time the flusher spent on batches (writing, flushing, answering, checkpoints), microseconds.
    pub busy_us: u64,
    /// Of which writing the journal (before the flush).
    pub commit_us: u64,
    /// Writes or flushes that failed (their callers heard so).
    pub failed_commits: u64,
    /// Journal flushes (`fdatasync`); each covers one batch.
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
    shared: Arc<writer::Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    _lock: File,
}

impl Audit {
    /// Open (creating if new) the audit ledger in `dir` and start its writer. Checkpoints are
    /// signed with `key`, normally the data ledger's key (a second copy:
    /// `LedgerKey::from_private(key.private_text())`), so `<data>/keys/ledger.pub` checks both.
    /// Only one process may have the directory open (a lock file guards it).
    pub fn open(dir: &Path, key: LedgerKey) -> Result<Audit, AuditError> {
        Audit::open_with_segment_bytes(dir, key, journal::SEGMENT_BYTES)
    }

    /// [`Audit::open`] with journal segments of `segment_bytes` (tests: many small segments).
    #[doc(hidden)]
    pub fn open_with_segment_bytes(dir: &Path, key: LedgerKey, segment_bytes: u64) -> Result<Audit, AuditError> {
        std::fs::create_dir_all(dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = File::options().create(true).truncate(false).write(true).open(&lock_path)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(AuditError::Locked(dir.to_path_buf())),
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        }
        let (shared, handle) = writer::start(dir, key, segment_bytes, Arc::new(writer::Counters::default()))?;
        Ok(Audit { inner: Arc::new(Inner { dir: dir.to_path_buf(), shared, thread: Mutex::new(Some(handle)), _lock: lock }) })
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
        let c = &self.inner.shared.counters;
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

    /// Record `events`; resolves once they are written to the journal and flushed (or with the
    /// reason they were not: then a request handler should fail closed, i.e. not send the data
    /// it was about to send). Events from many concurrent callers share one flush. The events
    /// are checked, serialised, numbered and hashed on the caller's task; it waits (briefly,
    /// asynchronously) while [`MAX_BUFFER_BYTES`] are waiting for the disk.
    pub fn record(&self, events: Vec<AuditRecord>) -> impl Future<Output = Result<(), AuditError>> + Send + 'static {
        let inner = self.inner.clone();
        async move {
            let mut prepared = prepare(&events, Form::Compact)?;
            if prepared.is_empty() {
                return Ok(());
            }
            loop {
                match inner.shared.append(&mut prepared) {
                    writer::Appended::Queued(rx) => return rx.await.map_err(|_| AuditError::WriterGone)?,
                    writer::Appended::Full => tokio::time::sleep(std::time::Duration::from_millis(1)).await,
                    writer::Appended::Refused(e) => return Err(e),
                }
            }
        }
    }

    /// [`Audit::record`] for callers outside an async runtime (CLI tools, blocking threads).
    /// Must not be called from inside an async task.
    pub fn record_blocking(&self, events: Vec<AuditRecord>) -> Result<(), AuditError> {
        let mut prepared = prepare(&events, Form::Compact)?;
        if prepared.is_empty() {
            return Ok(());
        }
        loop {
            match self.inner.shared.append(&mut prepared) {
                writer::Appended::Queued(rx) => return rx.blocking_recv().map_err(|_| AuditError::WriterGone)?,
                writer::Appended::Full => std::thread::sleep(std::time::Duration::from_millis(1)),
                writer::Appended::Refused(e) => return Err(e),
            }
        }
    }

    /// Write what is buffered, sign a final checkpoint, bring the index up to date and stop the
    /// writer. Idempotent; later calls to `record` fail with [`AuditError::WriterGone`]. Blocks:
    /// call it from a blocking context.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }
}

impl Inner {
    fn shutdown(&self) {
        self.shared.stop();
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

/// The JSON every AuditEvent written as JSON starts with; the writer inserts `"id"` after it.
pub(crate) const JSON_PREFIX: &[u8] = br#"{"resourceType":"AuditEvent","#;

/// An event checked and serialised, ready for the writer.
pub(crate) struct Prepared {
    pub(crate) user: String,
    pub(crate) patients: Vec<String>,
    /// What the entry will hold: the record's [`compact`] encoding (this process's events), or
    /// the AuditEvent JSON without `id`, starting with [`JSON_PREFIX`] (other processes' events,
    /// through the inbox).
    pub(crate) content: Vec<u8>,
}

/// How an event is serialised: compact for the journal, JSON for another process's inbox.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    Compact,
    Json,
}

fn prepare(events: &[AuditRecord], form: Form) -> Result<Vec<Prepared>, AuditError> {
    if events.len() > MAX_EVENTS_PER_CALL {
        return Err(AuditError::Invalid(format!(
            "{} events in one call, more than the limit of {MAX_EVENTS_PER_CALL}",
            events.len()
        )));
    }
    events.iter().map(|e| prepare_one(e, form)).collect()
}

fn prepare_one(r: &AuditRecord, form: Form) -> Result<Prepared, AuditError> {
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
    let content = match form {
        Form::Compact => compact::encode(r),
        Form::Json => r.to_fhir_json(),
    };
    // The limit is on what is stored; a compact record's AuditEvent, written when it is read,
    // is several times larger (and bounded by the same few fields).
    if content.len() > MAX_EVENT_BYTES {
        return Err(AuditError::TooLarge { bytes: content.len(), limit: MAX_EVENT_BYTES });
    }
    Ok(Prepared { user: user.to_string(), patients, content })
}

/// The FHIR AuditEvent JSON of a stored entry, with its `id` (the sequence number): written
/// from a compact content, or the stored JSON itself. `Err` says what is wrong with it.
pub fn event_json(entry: &vaidya_ledger::Entry) -> Result<Vec<u8>, String> {
    match entry.content.first() {
        Some(&compact::FORMAT) => {
            let record = compact::decode(&entry.content)?;
            let json = record.to_fhir_json();
            let id = entry.seq.to_string();
            let mut out = Vec::with_capacity(json.len() + id.len() + 8);
            out.extend_from_slice(JSON_PREFIX);
            out.extend_from_slice(b"\"id\":\"");
            out.extend_from_slice(id.as_bytes());
            out.extend_from_slice(b"\",");
            out.extend_from_slice(&json[JSON_PREFIX.len()..]);
            Ok(out)
        }
        Some(b'{') => Ok(entry.content.clone()),
        _ => Err("its content is neither a compact audit record nor JSON".into()),
    }
}
