//! The node's side of the feed: a thread that asks the core for the entries after its replica's
//! last one, checks them, and only then applies them to the replica.
//!
//! Checks, in order: the feed's format; the checkpoint's signature with the core's public key
//! (given to the node by its operator, never fetched from the core) and its origin; each
//! entry's sequence number and hash chain from the replica's head; the Merkle root of the whole
//! ledger at the checkpoint. A feed that fails any check is refused whole, said in the status
//! (and the log), and asked for again after a pause: nothing of it is applied.
//!
//! Downtime: a healthy core answers a long poll at least every [`POLL_WAIT_SECONDS`]; when it
//! has not answered for `downtime_after` (default [`DOWNTIME_AFTER`]), the node is in downtime
//! mode (said on `/healthz`, `/metrics` and in the log) until the core answers again.

use super::wire::{self, Feed};
use sha2::{Digest, Sha256};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vaidya_backup::restore::PreparedEntry;
use vaidya_ledger::{ChainEdge, SignedCheckpoint};
use vaidya_store::Store;

/// How long one long poll waits at the core: a healthy core answers at least this often.
pub const POLL_WAIT_SECONDS: u64 = 2;
/// A request to the core that takes this much longer than the poll has failed.
const REQUEST_SLACK: Duration = Duration::from_secs(2);
/// The core silent this long: downtime mode.
pub const DOWNTIME_AFTER: Duration = Duration::from_secs(3);
const RETRY_FIRST: Duration = Duration::from_millis(250);
/// Retries stay frequent so that the core's return is noticed within about a second.
const RETRY_MAX: Duration = Duration::from_secs(1);
/// Pause after a refused feed (an alarm, not a hiccup).
const REFUSED_PAUSE: Duration = Duration::from_secs(10);

/// Whether the core is there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The core answers: the replica follows it.
    #[default]
    Online,
    /// The core has not answered for a while.
    Downtime,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Online => "online",
            Mode::Downtime => "downtime",
        }
    }
}

/// Where the follower is (the node's `/healthz`, `/metrics` and screens).
#[derive(Debug, Clone, Default, Serialize)]
pub struct FollowStatus {
    pub mode: Mode,
    /// When the current downtime began (ms since the epoch).
    pub downtime_since_ms: Option<i64>,
    /// Downtimes since start.
    pub downtimes: u64,
    /// Entries in the replica.
    pub entries: u64,
    /// The core's signed ledger as last heard.
    pub core_entries: u64,
    /// When the core last answered (ms since the epoch); 0: never since start.
    pub core_answered_ms: i64,
    /// Commit-to-applied lag of the last entry applied (ms).
    pub last_lag_ms: u64,
    /// Largest lag since start (ms).
    pub max_lag_ms: u64,
    /// Commit-to-applied lag of every entry applied since start (p50, p99, max).
    pub lag: vaidya_backup::ship::Lag,
    pub failures: u64,
    pub last_error: Option<String>,
    /// Times the accounts, grants and counters were replaced by the core's since start.
    pub state_updates: u64,
    /// Feeds refused by a check since start, and the last reason: an alarm.
    pub refused: u64,
    pub last_refusal: Option<String>,
}

/// What the follower needs.
pub struct FollowConfig {
    /// The core's base URL (`http://core:8080`).
    pub core: String,
    pub token: String,
    /// The core's ledger public key (`name+id+base64`).
    pub verifier: String,
    /// The core silent this long: downtime mode.
    pub downtime_after: Duration,
    /// The UHID issuer code (01-99) this node claims at the core for downtime registration.
    pub issuer: u8,
}

pub struct Follower {
    config: FollowConfig,
    origin: String,
    store: Arc<Store>,
    edge: ChainEdge,
    /// SHA-256 (hex) of the state beside the ledger that the replica holds.
    state_hash: String,
    status: Arc<Mutex<FollowStatus>>,
    stop: Arc<AtomicBool>,
    agent: ureq::Agent,
}

impl Follower {
    /// Check the replica's own ledger (the whole chain and tree, against the core's key) and
    /// start from its end.
    pub fn new(config: FollowConfig, store: Arc<Store>, stop: Arc<AtomicBool>) -> Result<Follower, String> {
        let origin = config.verifier.split('+').next().unwrap_or_default().to_string();
        let checked = store
            .read(|conn| vaidya_store::verify::verify_ledger(conn, &config.verifier))
            .map_err(|e| format!("reading the replica: {e}"))?;
        if let Some(p) = checked.problems.first() {
            return Err(format!("the replica's ledger does not verify with the core's key: {p}"));
        }
        let edge = ChainEdge { size: checked.entries, head: checked.leaf(checked.entries), frontier: checked.frontier() };
        let state = store.read(vaidya_store::state::snapshot).map_err(|e| format!("reading the replica's accounts: {e}"))?;
        let state_hash = hex::encode(Sha256::digest(&state));
        let status = FollowStatus { entries: edge.size, ..Default::default() };
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(POLL_WAIT_SECONDS) + REQUEST_SLACK))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Follower { config, origin, store, edge, state_hash, status: Arc::new(Mutex::new(status)), stop, agent })
    }

    pub fn status(&self) -> Arc<Mutex<FollowStatus>> {
        self.status.clone()
    }

    /// Follow until stopped.
    pub fn run(mut self) {
        let mut backoff = RETRY_FIRST;
        let mut last_answer = Instant::now();
        while !self.stop.load(Ordering::Acquire) {
            match self.once() {
                Ok(()) => {
                    backoff = RETRY_FIRST;
                    last_answer = Instant::now();
                    self.core_answered();
                }
                Err(Trouble::Unreachable(e)) => {
                    let mut s = self.status.lock().expect("not poisoned");
                    s.failures += 1;
                    s.last_error = Some(e);
                    drop(s);
                    if last_answer.elapsed() >= self.config.downtime_after {
                        self.core_silent(last_answer.elapsed());
                    }
                    self.pause(backoff);
                    backoff = (backoff * 2).min(RETRY_MAX);
                }
                Err(Trouble::Refused(reason)) => {
                    tracing::error!(target: "vaidya::alert", "ALERT: refused a ledger feed from the core: {reason}");
                    let mut s = self.status.lock().expect("not poisoned");
                    s.refused += 1;
                    s.last_refusal = Some(reason);
                    drop(s);
                    self.pause(REFUSED_PAUSE);
                }
            }
        }
    }

    fn core_silent(&self, for_how_long: Duration) {
        let mut s = self.status.lock().expect("not poisoned");
        if s.mode == Mode::Online {
            s.mode = Mode::Downtime;
            s.downtime_since_ms = Some(vaidya_store::now_ms());
            s.downtimes += 1;
            tracing::error!(
                target: "vaidya::alert",
                "ALERT: the core has not answered for {:.1} s: DOWNTIME MODE ({})",
                for_how_long.as_secs_f64(),
                s.last_error.as_deref().unwrap_or("no answer")
            );
        }
    }

    fn core_answered(&self) {
        let mut s = self.status.lock().expect("not poisoned");
        if s.mode == Mode::Downtime {
            let since = s.downtime_since_ms.take().unwrap_or_default();
            s.mode = Mode::Online;
            tracing::warn!("the core answers again after {:.1} s of downtime: back online", (vaidya_store::now_ms() - since) as f64 / 1000.0);
        }
    }

    fn pause(&self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until && !self.stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One long poll and what it brought.
    fn once(&mut self) -> Result<(), Trouble> {
        let url = format!(
            "{}/node/feed?after={}&wait={POLL_WAIT_SECONDS}&state={}&issuer={}",
            self.config.core.trim_end_matches('/'),
            self.edge.size,
            self.state_hash,
            self.config.issuer
        );
        let resp = self
            .agent
            .get(&url)
            .header("Authorization", &format!("Bearer {}", self.config.token))
            .call()
            .map_err(|e| Trouble::Unreachable(format!("{url}: {e}")))?;
        let status = resp.status().as_u16();
        let core_size = resp.headers().get(super::feed::SIZE_HEADER).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        let mut body = resp.into_body();
        let bytes = body
            .with_config()
            .limit(wire::MAX_BYTES)
            .read_to_vec()
            .map_err(|e| Trouble::Unreachable(format!("reading the feed: {e}")))?;
        {
            let mut s = self.status.lock().expect("not poisoned");
            s.core_answered_ms = vaidya_store::now_ms();
            if let Some(n) = core_size {
                s.core_entries = n;
            }
        }
        match status {
            200 => self.apply(&bytes),
            204 => Ok(()),
            409 => Err(Trouble::Refused(format!("the core says: {}", String::from_utf8_lossy(&bytes)))),
            other => Err(Trouble::Unreachable(format!("the core answered {other}: {}", String::from_utf8_lossy(&bytes)))),
        }
    }

    fn apply(&mut self, bytes: &[u8]) -> Result<(), Trouble> {
        let Feed { checkpoint: note, entries, state } = Feed::decode(bytes).map_err(Trouble::Refused)?;
        let checked = if entries.is_empty() {
            None
        } else {
            Some(check(&self.edge, &note, entries, &self.config.verifier, &self.origin).map_err(Trouble::Refused)?)
        };
        let state_hash = state.as_ref().map(|s| hex::encode(Sha256::digest(s)));
        let (next, batch) = checked.map(|(next, checkpoint, prepared)| (next, (checkpoint, prepared))).unzip();
        let times: Vec<i64> = batch.iter().flat_map(|(_, p)| p.iter().map(|e| e.entry.time_ms)).collect();
        self.store
            .write_blocking(move |tx| -> Result<(), vaidya_store::StoreError> {
                if let Some((checkpoint, prepared)) = &batch {
                    for p in prepared {
                        tx.replay(&p.entry, &p.bytes, &p.index)?;
                    }
                    tx.insert_checkpoint(checkpoint.tree_size, checkpoint.time_ms, &note, checkpoint.root)?;
                }
                if let Some(state) = &state {
                    vaidya_store::state::restore(tx.conn(), state)?;
                }
                Ok(())
            })
            .map_err(|e| Trouble::Refused(format!("the replica refused the feed: {e}")))?;
        if let Some(next) = next {
            self.edge = next;
        }
        let state_changed = state_hash.is_some();
        if let Some(h) = state_hash {
            self.state_hash = h;
        }
        let applied_ms = vaidya_store::now_ms();
        let mut s = self.status.lock().expect("not poisoned");
        s.entries = self.edge.size;
        s.state_updates += u64::from(state_changed);
        for t in times {
            let lag = (applied_ms - t).max(0) as u64;
            s.lag.add(lag);
            s.last_lag_ms = lag;
            s.max_lag_ms = s.max_lag_ms.max(lag);
        }
        s.last_error = None;
        Ok(())
    }
}

enum Trouble {
    /// The core did not answer, or not with a feed: try again soon.
    Unreachable(String),
    /// The core answered with something that fails a check: an alarm.
    Refused(String),
}

/// Check `entries` with `checkpoint` as the continuation of `edge`: the edge after them, the
/// checkpoint, and the entries decoded with their search index values.
pub fn check(
    edge: &ChainEdge,
    checkpoint: &str,
    entries: Vec<Vec<u8>>,
    verifier: &str,
    origin: &str,
) -> Result<(ChainEdge, SignedCheckpoint, Vec<PreparedEntry>), String> {
    let cp = vaidya_ledger::verify_checkpoint(checkpoint, verifier).map_err(|e| format!("the checkpoint: {e}"))?;
    if cp.origin != origin {
        return Err(format!("the checkpoint is of another ledger ('{}')", cp.origin));
    }
    let mut next = edge.clone();
    let mut prepared = Vec::with_capacity(entries.len());
    for bytes in entries {
        let p = PreparedEntry::new(bytes, next.size + 1, true)?;
        next.append(&p.entry, p.leaf)?;
        prepared.push(p);
    }
    next.check_root(&cp)?;
    Ok((next, cp, prepared))
}
