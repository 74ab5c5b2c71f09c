//! The snapshot thread: beside the shippers, it puts a database snapshot into every target when
//! enough has changed since the last one (or enough time has passed), so that a restore has
//! little ledger to replay. Segments stay the record: a snapshot only saves replay time.

use crate::snapshot;
use crate::target::Target;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// When to make a snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotPolicy {
    /// The live database.
    pub db: PathBuf,
    /// After this many new ledger entries...
    pub every_entries: u64,
    /// ...or after this long, if anything changed at all.
    pub every: Duration,
}

/// The last snapshot put into every target (persisted in `<state dir>/snapshot.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SnapshotStatus {
    pub entries: u64,
    pub made_ms: i64,
    /// Sealed bytes put per target.
    pub sealed_bytes: u64,
    /// The database copy's size.
    pub db_bytes: u64,
    /// How long making and putting it took.
    pub took_ms: u64,
    pub failures: u64,
    pub last_error: Option<String>,
}

const CHECK_EVERY: Duration = Duration::from_secs(1);
const RETRY_AFTER: Duration = Duration::from_secs(60);

fn status_path(state_dir: &Path) -> PathBuf {
    state_dir.join("snapshot.json")
}

pub fn load_status(state_dir: &Path) -> SnapshotStatus {
    std::fs::read(status_path(state_dir)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

fn save_status(state_dir: &Path, s: &SnapshotStatus) -> std::io::Result<()> {
    let path = status_path(state_dir);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(s).expect("status serialises"))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path)
}

pub(crate) struct Snapshotter {
    pub policy: SnapshotPolicy,
    pub config: Arc<crate::ship::ShipConfig>,
    pub targets: Vec<Arc<dyn Target>>,
    pub checkpoints: tokio::sync::watch::Receiver<u64>,
    pub stop: Arc<AtomicBool>,
    pub status: Arc<Mutex<SnapshotStatus>>,
    /// When this server started: the time count for a first snapshot starts here (a small
    /// ledger gets its first one after `every`; a large one, after `every_entries`, at once).
    pub started_ms: i64,
}

impl Snapshotter {
    pub fn due(&self, signed: u64, now_ms: i64) -> bool {
        let last = self.status.lock().expect("not poisoned").clone();
        let since = if last.made_ms == 0 { self.started_ms } else { last.made_ms };
        let every_ms = i64::try_from(self.policy.every.as_millis()).unwrap_or(i64::MAX);
        signed > last.entries && (signed - last.entries >= self.policy.every_entries || now_ms.saturating_sub(since) >= every_ms)
    }

    pub fn run(self) {
        let mut retry_at: Option<Instant> = None;
        while !self.stopped() {
            let signed = *self.checkpoints.borrow();
            if retry_at.is_none_or(|t| Instant::now() >= t) && self.due(signed, vaidya_store::now_ms()) {
                match self.make_and_put() {
                    Ok(()) => retry_at = None,
                    Err(_) if self.stopped() => break,
                    Err(e) => {
                        tracing::warn!("database snapshot for backups failed (tried again in a minute): {e}");
                        let mut s = self.status.lock().expect("not poisoned");
                        s.failures += 1;
                        s.last_error = Some(e);
                        retry_at = Some(Instant::now() + RETRY_AFTER);
                    }
                }
            }
            let until = Instant::now() + CHECK_EVERY;
            while Instant::now() < until && !self.stopped() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn make_and_put(&self) -> Result<(), String> {
        let started = Instant::now();
        let stop = || self.stopped();
        let work = self.config.state_dir.join("snapshot");
        let made = snapshot::make(&self.policy.db, &work, &self.config.key, &self.config.recipients, &stop)?;
        let uploaded = self.targets.iter().try_for_each(|t| made.upload(&**t, &stop).map_err(|e| format!("{}: {e}", t.name())));
        let sealed_bytes = made.sealed_bytes();
        let manifest = made.manifest.clone();
        made.discard();
        uploaded?;
        let mut s = self.status.lock().expect("not poisoned");
        s.entries = manifest.entries;
        s.made_ms = manifest.made_ms;
        s.sealed_bytes = sealed_bytes;
        s.db_bytes = manifest.bytes;
        s.took_ms = started.elapsed().as_millis() as u64;
        s.last_error = None;
        tracing::info!(entries = s.entries, sealed_bytes, took_ms = s.took_ms, "database snapshot put into every backup target");
        save_status(&self.config.state_dir, &s).map_err(|e| format!("recording the snapshot: {e}"))
    }
}
