//! The shipper: one thread per target follows both ledgers and puts every checkpointed range
//! there as a sealed segment, within about a second of its commit.
//!
//! - Where each target is, per ledger, is kept in `<state dir>/<target>.json` (written after
//!   every confirmed put). A target with no such file is shipped from the start: a duplicate
//!   range in a target is harmless (restore checks that overlapping segments agree).
//! - A failed put is retried with back-off (1 s doubling to 30 s); nothing is skipped.
//! - The ledger key's private half goes to every target once, sealed like the segments, so that
//!   a restored server continues the same signed ledger.
//! - Every few minutes the shipper lists the target's object versions and reports delete
//!   markers, overwritten objects and objects it did not write (see [`Anomalies`]).
//! - Synchronous mode: [`Shipper::shipped`] is the data ledger's size that every target has
//!   confirmed; the store answers a write only once it reaches the write's entry.

use crate::seal::{self, Recipients};
use crate::segment::{self, Ledger, Segment};
use crate::source::{Range, Source};
use crate::target::Target;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vaidya_ledger::LedgerKey;

/// How long a shipper waits for news before looking again (the audit ledger has no signal).
const POLL: Duration = Duration::from_millis(50);
/// Back-off after a failed put: from the first to the last.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// The state is compared (and shipped if changed) at most this often when no entries arrive.
const STATE_EVERY: Duration = Duration::from_secs(1);
/// Anomalies kept per target at most (the first ones).
const MAX_ANOMALIES: usize = 100;

/// What the shipper needs besides the targets.
pub struct ShipConfig {
    pub recipients: Recipients,
    /// Where per-target positions are kept (`<data>/backup`).
    pub state_dir: PathBuf,
    /// How often to list each target's versions for anomalies.
    pub scan_every: Duration,
    /// Signs segments (the ledger key).
    pub key: Arc<LedgerKey>,
    /// Database snapshots beside the segments (`None`: segments only).
    pub snapshots: Option<crate::snapshotter::SnapshotPolicy>,
}

/// Opens a ledger's source for one shipping thread.
pub type SourceFactory = Box<dyn Fn(Ledger) -> Box<dyn Source> + Send + Sync>;

/// Lag from an entry's commit to its segment's confirmed put, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Lag {
    pub entries: u64,
    pub p50_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
    /// Counts per 10 ms bucket up to 10 s (the last bucket: 10 s or more).
    #[serde(skip)]
    buckets: Vec<u64>,
}

impl Lag {
    const BUCKET_MS: u64 = 10;
    const BUCKETS: usize = 1_001;

    pub fn add(&mut self, lag_ms: u64) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; Self::BUCKETS];
        }
        let b = ((lag_ms / Self::BUCKET_MS) as usize).min(Self::BUCKETS - 1);
        self.buckets[b] += 1;
        self.entries += 1;
        self.max_ms = self.max_ms.max(lag_ms);
        self.p50_ms = self.quantile(0.50);
        self.p99_ms = self.quantile(0.99);
    }

    fn quantile(&self, q: f64) -> u64 {
        let want = ((self.entries as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= want {
                // The bucket's upper edge, but never above the largest lag seen; the last
                // bucket has no upper edge.
                if i + 1 == Self::BUCKETS {
                    return self.max_ms;
                }
                return ((i as u64 + 1) * Self::BUCKET_MS).min(self.max_ms);
            }
        }
        self.max_ms
    }
}

/// One ledger at one target.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LedgerStatus {
    /// Entries confirmed by the target.
    pub shipped: u64,
    /// Entries signed by the server (what "caught up" means).
    pub checkpointed: u64,
    /// When the last segment was confirmed, ms since the epoch.
    pub shipped_ms: i64,
    /// Segments put since start.
    pub segments: u64,
    pub lag: Lag,
}

/// What a target's listing showed that the shipper never does.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Anomalies {
    pub scanned_ms: i64,
    pub delete_markers: u64,
    pub overwritten: u64,
    pub unexpected: u64,
    /// The first few, named.
    pub examples: Vec<String>,
}

impl Anomalies {
    pub fn any(&self) -> bool {
        self.delete_markers + self.overwritten + self.unexpected > 0
    }
}

/// A target's shipping status (`vaidya backup status`, `/metrics`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TargetStatus {
    pub target: String,
    pub data: LedgerStatus,
    pub audit: LedgerStatus,
    pub failures: u64,
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
    pub anomalies: Anomalies,
}

impl TargetStatus {
    fn ledger_mut(&mut self, ledger: Ledger) -> &mut LedgerStatus {
        match ledger {
            Ledger::Data => &mut self.data,
            Ledger::Audit => &mut self.audit,
        }
    }
}

/// Where a target is (persisted).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Position {
    pub data: u64,
    pub audit: u64,
    /// SHA-256 of the last state shipped (hex).
    pub state_hash: Option<String>,
    /// Whether the sealed ledger key is in the target.
    pub key_shipped: bool,
}

impl Position {
    fn of(&self, ledger: Ledger) -> u64 {
        match ledger {
            Ledger::Data => self.data,
            Ledger::Audit => self.audit,
        }
    }

    fn set(&mut self, ledger: Ledger, size: u64) {
        match ledger {
            Ledger::Data => self.data = size,
            Ledger::Audit => self.audit = size,
        }
    }
}

/// Positions file of a target.
pub fn position_path(state_dir: &Path, target: &str) -> PathBuf {
    state_dir.join(format!("{target}.json"))
}

pub fn load_position(state_dir: &Path, target: &str) -> Position {
    std::fs::read(position_path(state_dir, target)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// Write a target's position (restore writes one so a restored server does not reship).
pub fn save_position(state_dir: &Path, target: &str, p: &Position) -> std::io::Result<()> {
    std::fs::create_dir_all(state_dir)?;
    let path = position_path(state_dir, target);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(p).expect("positions serialise"))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path)
}

/// The name of the sealed ledger key in a target.
pub fn key_object(key_verifier: &str) -> String {
    let digest = hex::encode(Sha256::digest(key_verifier.as_bytes()));
    format!("keys/ledger-{}.age", &digest[..16])
}

/// The running shipper.
pub struct Shipper {
    statuses: Vec<Arc<Mutex<TargetStatus>>>,
    snapshot: Option<Arc<Mutex<crate::snapshotter::SnapshotStatus>>>,
    shipped_rx: tokio::sync::watch::Receiver<u64>,
    stop: Arc<AtomicBool>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Shipper {
    /// Start one thread per target. `checkpoints` is the store's signal of new checkpoints.
    pub fn start(
        config: ShipConfig,
        targets: Vec<Arc<dyn Target>>,
        sources: SourceFactory,
        checkpoints: tokio::sync::watch::Receiver<u64>,
    ) -> std::io::Result<Shipper> {
        let config = Arc::new(config);
        let sources = Arc::new(sources);
        let stop = Arc::new(AtomicBool::new(false));
        let mins: Arc<Vec<AtomicU64>> = Arc::new(targets.iter().map(|_| AtomicU64::new(0)).collect());
        let (shipped_tx, shipped_rx) = tokio::sync::watch::channel(0u64);
        let shipped_tx = Arc::new(shipped_tx);
        let mut statuses = Vec::new();
        let mut threads = Vec::new();
        let mut snapshot = None;
        if let Some(policy) = config.snapshots.clone() {
            let status = Arc::new(Mutex::new(crate::snapshotter::load_status(&config.state_dir)));
            snapshot = Some(status.clone());
            let s = crate::snapshotter::Snapshotter {
                policy,
                config: config.clone(),
                targets: targets.clone(),
                checkpoints: checkpoints.clone(),
                stop: stop.clone(),
                status,
                started_ms: vaidya_store::now_ms(),
            };
            threads.push(std::thread::Builder::new().name("vaidya-snapshot".into()).spawn(move || s.run())?);
        }
        for (i, target) in targets.into_iter().enumerate() {
            let position = load_position(&config.state_dir, target.name());
            mins[i].store(position.data, Ordering::Release);
            let status = Arc::new(Mutex::new(TargetStatus {
                target: target.name().to_string(),
                data: LedgerStatus { shipped: position.data, ..Default::default() },
                audit: LedgerStatus { shipped: position.audit, ..Default::default() },
                ..Default::default()
            }));
            statuses.push(status.clone());
            let worker = Worker {
                index: i,
                target,
                config: config.clone(),
                data: sources(Ledger::Data),
                audit: sources(Ledger::Audit),
                position,
                status,
                stop: stop.clone(),
                mins: mins.clone(),
                shipped_tx: shipped_tx.clone(),
                checkpoints: checkpoints.clone(),
                last_scan: None,
                last_state_check: None,
            };
            threads.push(std::thread::Builder::new().name(format!("vaidya-ship-{i}")).spawn(move || worker.run())?);
        }
        let min = mins.iter().map(|m| m.load(Ordering::Acquire)).min().unwrap_or(0);
        shipped_tx.send_replace(min);
        Ok(Shipper { statuses, snapshot, shipped_rx, stop, threads: Mutex::new(threads) })
    }

    /// The data ledger's size confirmed by every target.
    pub fn shipped(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shipped_rx.clone()
    }

    pub fn status(&self) -> Vec<TargetStatus> {
        self.statuses.iter().map(|s| s.lock().expect("not poisoned").clone()).collect()
    }

    /// The last database snapshot put into every target (`None`: snapshots are off).
    pub fn snapshot_status(&self) -> Option<crate::snapshotter::SnapshotStatus> {
        self.snapshot.as_ref().map(|s| s.lock().expect("not poisoned").clone())
    }

    /// Stop the threads after their current put. Idempotent.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        for t in self.threads.lock().expect("not poisoned").drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Shipper {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Worker {
    index: usize,
    target: Arc<dyn Target>,
    config: Arc<ShipConfig>,
    data: Box<dyn Source>,
    audit: Box<dyn Source>,
    position: Position,
    status: Arc<Mutex<TargetStatus>>,
    stop: Arc<AtomicBool>,
    mins: Arc<Vec<AtomicU64>>,
    shipped_tx: Arc<tokio::sync::watch::Sender<u64>>,
    checkpoints: tokio::sync::watch::Receiver<u64>,
    last_scan: Option<Instant>,
    last_state_check: Option<Instant>,
}

impl Worker {
    fn run(mut self) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a current-thread runtime starts");
        let mut backoff = RETRY_FIRST;
        while !self.stop.load(Ordering::Acquire) {
            match self.round(false) {
                Ok(()) => backoff = RETRY_FIRST,
                Err(message) => {
                    self.failed(message);
                    self.sleep(backoff);
                    backoff = (backoff * 2).min(RETRY_MAX);
                    continue;
                }
            }
            if self.last_scan.is_none_or(|t| t.elapsed() >= self.config.scan_every) {
                self.scan();
            }
            let mut cps = self.checkpoints.clone();
            rt.block_on(async {
                let _ = tokio::time::timeout(POLL, cps.changed()).await;
            });
            self.checkpoints.mark_unchanged();
        }
        // One last round, state included: an account made in the last second before a clean
        // stop is in the backup too.
        self.last_state_check = None;
        if let Err(message) = self.round(true) {
            self.failed(message);
        }
    }

    /// Ship everything checkpointed, both ledgers (`last`: the round after a stop was asked
    /// for, which runs to the end).
    fn round(&mut self, last: bool) -> Result<(), String> {
        if !self.position.key_shipped {
            self.ship_key()?;
        }
        for ledger in [Ledger::Data, Ledger::Audit] {
            loop {
                if !last && self.stop.load(Ordering::Acquire) {
                    return Ok(());
                }
                let after = self.position.of(ledger);
                let with_state = ledger == Ledger::Data
                    && self.last_state_check.is_none_or(|t| t.elapsed() >= STATE_EVERY || self.has_news(ledger, after));
                let source = match ledger {
                    Ledger::Data => &mut self.data,
                    Ledger::Audit => &mut self.audit,
                };
                let checkpointed = source.checkpointed().map_err(|e| format!("reading the {} ledger: {e}", ledger.folder()))?;
                self.status.lock().expect("not poisoned").ledger_mut(ledger).checkpointed = checkpointed;
                let range = source.next(after, with_state).map_err(|e| format!("reading the {} ledger: {e}", ledger.folder()))?;
                if with_state {
                    self.last_state_check = Some(Instant::now());
                }
                let Some(mut range) = range else { break };
                let state_hash = range.state.as_ref().map(|s| hex::encode(Sha256::digest(s)));
                if state_hash.is_some() && state_hash == self.position.state_hash {
                    range.state = None; // unchanged since the last segment
                }
                if range.entries.is_empty() && range.state.is_none() {
                    break;
                }
                self.ship(ledger, range)?;
                if let Some(h) = state_hash {
                    self.position.state_hash = Some(h);
                }
                self.save()?;
                if self.position.of(ledger) >= checkpointed {
                    break;
                }
            }
        }
        Ok(())
    }

    fn has_news(&self, ledger: Ledger, after: u64) -> bool {
        ledger == Ledger::Data && *self.checkpoints.borrow() > after
    }

    fn ship(&mut self, ledger: Ledger, range: Range) -> Result<(), String> {
        let made_ms = vaidya_store::now_ms();
        let first = range.after + 1;
        let seg = Segment { ledger, first, entries: range.entries, checkpoint: range.checkpoint, state: range.state, made_ms };
        let plain = seg.encode(&self.config.key);
        let sealed = seal::seal(&plain, &self.config.recipients).map_err(|e| e.to_string())?;
        let key = segment::object_key("", ledger, first, range.size, made_ms);
        self.target.put(&key, &sealed).map_err(|e| e.to_string())?;
        let done_ms = vaidya_store::now_ms();
        self.position.set(ledger, range.size);
        let mut status = self.status.lock().expect("not poisoned");
        let ls = status.ledger_mut(ledger);
        ls.shipped = range.size;
        ls.shipped_ms = done_ms;
        ls.segments += 1;
        for e in &seg.entries {
            if let Some(t) = vaidya_ledger::encoded_time_ms(e) {
                ls.lag.add((done_ms - t).max(0) as u64);
            }
        }
        drop(status);
        if ledger == Ledger::Data {
            self.mins[self.index].store(range.size, Ordering::Release);
            let min = self.mins.iter().map(|m| m.load(Ordering::Acquire)).min().unwrap_or(0);
            self.shipped_tx.send_if_modified(|v| {
                let changed = *v != min;
                *v = min;
                changed
            });
        }
        Ok(())
    }

    fn ship_key(&mut self) -> Result<(), String> {
        let key = &self.config.key;
        let sealed = seal::seal(key.private_text().as_bytes(), &self.config.recipients).map_err(|e| e.to_string())?;
        match self.target.put(&key_object(key.verifier_text()), &sealed) {
            Ok(()) | Err(crate::target::TargetError::Exists { .. }) => {}
            Err(e) => return Err(format!("shipping the sealed ledger key: {e}")),
        }
        self.position.key_shipped = true;
        self.save()
    }

    fn save(&self) -> Result<(), String> {
        save_position(&self.config.state_dir, self.target.name(), &self.position)
            .map_err(|e| format!("cannot record the shipped position in {}: {e}", self.config.state_dir.display()))
    }

    fn failed(&self, message: String) {
        tracing::warn!(target = self.target.name(), "backup shipping failed: {message}");
        let mut status = self.status.lock().expect("not poisoned");
        status.failures += 1;
        status.last_error = Some(message);
        status.last_error_ms = Some(vaidya_store::now_ms());
    }

    fn scan(&mut self) {
        self.last_scan = Some(Instant::now());
        match self.target.list_versions("") {
            Ok(versions) => {
                let found = anomalies(&versions);
                if found.any() {
                    tracing::warn!(
                        target = self.target.name(),
                        delete_markers = found.delete_markers,
                        overwritten = found.overwritten,
                        unexpected = found.unexpected,
                        "backup target holds objects or versions Vaidya never writes: {}",
                        found.examples.join("; ")
                    );
                }
                self.status.lock().expect("not poisoned").anomalies = found;
            }
            Err(e) => self.failed(format!("listing versions: {e}")),
        }
    }

    fn sleep(&self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until && !self.stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Delete markers, keys with more than one version, and keys Vaidya never writes.
pub fn anomalies(versions: &[crate::target::ObjectVersion]) -> Anomalies {
    let mut found = Anomalies { scanned_ms: vaidya_store::now_ms(), ..Default::default() };
    let note = |found: &mut Anomalies, text: String| {
        if found.examples.len() < MAX_ANOMALIES {
            found.examples.push(text);
        }
    };
    let mut i = 0;
    while i < versions.len() {
        let key = &versions[i].key;
        let same: Vec<_> = versions[i..].iter().take_while(|v| &v.key == key).collect();
        i += same.len();
        let markers = same.iter().filter(|v| v.delete_marker).count() as u64;
        if markers > 0 {
            found.delete_markers += markers;
            note(&mut found, format!("delete marker on {key}"));
        }
        let objects = same.iter().filter(|v| !v.delete_marker).count();
        if objects > 1 {
            found.overwritten += 1;
            note(&mut found, format!("{key} was overwritten ({objects} versions)"));
        }
        if !expected_key(key) {
            found.unexpected += 1;
            note(&mut found, format!("unexpected object {key}"));
        }
    }
    found
}

/// Keys Vaidya writes: segments, database snapshots, the sealed ledger key, `backup check`
/// probes.
pub fn expected_key(key: &str) -> bool {
    segment::parse_object_key("", key).is_some()
        || crate::snapshot::parse_object_key(key).is_some()
        || (key.starts_with("keys/ledger-") && key.ends_with(".age") && !key[5..].contains('/'))
        || key.starts_with("probe/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::ObjectVersion;

    fn v(key: &str, marker: bool) -> ObjectVersion {
        ObjectVersion { key: key.into(), version_id: Some("x".into()), delete_marker: marker, size: 1, last_modified_ms: 0 }
    }

    #[test]
    fn anomalies_are_what_vaidya_never_does() {
        let seg = "data/00000000000000000001-00000000000000000005-1764230000000.seg";
        let clean = [
            v(seg, false),
            v("keys/ledger-0123456789abcdef.age", false),
            v("probe/abc", false),
            v("snapshot/00000000000000000005-1764230000000/part-00000", false),
            v("snapshot/00000000000000000005-1764230000000/manifest", false),
        ];
        assert!(!anomalies(&clean).any());
        let attacked = [v(seg, true), v(seg, false), v(seg, false), v("ransom-note.txt", false), v("keys/x/y.age", false)];
        let a = anomalies(&attacked);
        assert_eq!((a.delete_markers, a.overwritten, a.unexpected), (1, 1, 2), "{a:?}");
        assert_eq!(a.examples.len(), 4);
    }

    #[test]
    fn lag_quantiles_never_exceed_the_largest_lag() {
        let mut l = Lag::default();
        for ms in [5, 12, 250, 251, 900] {
            l.add(ms);
        }
        assert_eq!(l.entries, 5);
        assert_eq!(l.max_ms, 900);
        assert!(l.p50_ms >= 250 && l.p50_ms <= 260, "{l:?}");
        assert_eq!(l.p99_ms, 900);
        l.add(20_000);
        assert_eq!(l.p99_ms, 20_000, "lags past the last bucket count at the maximum");
    }
}
