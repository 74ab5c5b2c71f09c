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
/// A hand-back request that takes longer than this has failed (a batch is a few seconds' work).
const HANDBACK_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause after a refused feed (an alarm, not a hiccup).
const REFUSED_PAUSE: Duration = Duration::from_secs(10);

/// Whether the core is there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The core answers: the replica follows it.
    #[default]
    Online,
    /// The core has not answered for a while (or an operator said so): the node writes on its
    /// own branch.
    Downtime,
    /// The core is back: the branch is being handed back (writes wait a few seconds).
    HandingBack,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Online => "online",
            Mode::Downtime => "downtime",
            Mode::HandingBack => "handing-back",
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
    /// Entries written on this node in downtime and not yet handed back.
    pub branch_entries: u64,
    /// Downtime entries handed back to the core since start, and units the core queued.
    pub handed_back: u64,
    pub queued: u64,
    /// The last hand-back's time from start to a following replica (ms) and rate (entries/s).
    pub last_handback_ms: Option<u64>,
    pub last_handback_rate: Option<f64>,
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
    /// The node's own ledger key (`name+id+base64`), registered at the core on first contact:
    /// it signs the node's downtime branch.
    pub node_verifier: String,
    /// While this file exists the node is in downtime mode whatever the core does (an
    /// operator's switch).
    pub switch_file: std::path::PathBuf,
    /// Shared with the app: each downtime write holds it; leaving downtime takes it whole.
    pub writes: Arc<tokio::sync::RwLock<()>>,
    /// Entries per hand-back request at most.
    pub handback_batch: u64,
}

pub struct Follower {
    config: FollowConfig,
    origin: String,
    store: Arc<Store>,
    edge: ChainEdge,
    /// SHA-256 (hex) of each table of the state beside the ledger that the replica holds, in
    /// `vaidya_store::state::table_names` order.
    table_hashes: Vec<String>,
    status: Arc<Mutex<FollowStatus>>,
    stop: Arc<AtomicBool>,
    agent: ureq::Agent,
    /// For hand-backs: a batch may take the core longer than a poll.
    handback_agent: ureq::Agent,
    /// The downtime branch being written or handed back: its fork and start time.
    branch: Option<(u64, i64)>,
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
        let mut edge = ChainEdge { size: checked.entries, head: checked.leaf(checked.entries), frontier: checked.frontier() };
        let branch = store.read(super::sendback::branch).map_err(|e| format!("reading the replica: {e}"))?;
        let mut status = FollowStatus { entries: edge.size, ..Default::default() };
        if let Some((fork, started, size)) = branch {
            // Stopped in downtime: the branch waits to be handed back; the core's ledger is
            // followed from the fork again after that.
            edge = edge_at(&store, fork)?;
            status = FollowStatus { mode: Mode::Downtime, downtime_since_ms: Some(started), entries: fork, branch_entries: size - fork, ..status };
            tracing::warn!(fork, entries = size - fork, "started with downtime entries not yet handed back: DOWNTIME MODE until the core answers");
        }
        let table_hashes = state_hashes(&store, None)?.into_iter().map(Option::unwrap_or_default).collect();
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(POLL_WAIT_SECONDS) + REQUEST_SLACK))
            .http_status_as_error(false)
            .build()
            .into();
        let branch = branch.map(|(fork, started, _)| (fork, started));
        let handback_agent = ureq::Agent::config_builder().timeout_global(Some(HANDBACK_TIMEOUT)).http_status_as_error(false).build().into();
        Ok(Follower { config, origin, store, edge, table_hashes, status: Arc::new(Mutex::new(status)), stop, agent, handback_agent, branch })
    }

    pub fn status(&self) -> Arc<Mutex<FollowStatus>> {
        self.status.clone()
    }

    /// Follow until stopped.
    pub fn run(mut self) {
        let mut backoff = RETRY_FIRST;
        let mut last_answer = Instant::now();
        while !self.stop.load(Ordering::Acquire) {
            if self.config.switch_file.exists() {
                self.enter_downtime("an operator switched this node to downtime mode");
                self.pause(Duration::from_millis(250));
                self.count_branch();
                continue;
            }
            self.count_branch();
            let step = if self.branch.is_some() { self.hand_back() } else { self.once() };
            match step {
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
                        let why = format!("the core has not answered for {:.1} s", last_answer.elapsed().as_secs_f64());
                        self.enter_downtime(&why);
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

    /// Show how many downtime entries wait to be handed back.
    fn count_branch(&self) {
        if let Some((fork, _)) = self.branch
            && let Ok(size) = self.store.read(vaidya_store::read::ledger_size)
        {
            self.status.lock().expect("not poisoned").branch_entries = size.saturating_sub(fork);
        }
    }

    /// Downtime mode: start the branch the node's writes go on (its fork is the replica's
    /// end), then let writes in.
    fn enter_downtime(&mut self, why: &str) {
        if self.branch.is_none() {
            match self.store.write_blocking(|tx| tx.begin_branch()) {
                Ok(fork) => self.branch = Some((fork, vaidya_store::now_ms())),
                Err(e) => {
                    tracing::error!(target: "vaidya::alert", "ALERT: cannot start downtime writing on this node: {e}");
                    return;
                }
            }
        }
        let mut s = self.status.lock().expect("not poisoned");
        if s.mode == Mode::Online {
            s.mode = Mode::Downtime;
            s.downtime_since_ms = Some(vaidya_store::now_ms());
            s.downtimes += 1;
            tracing::error!(target: "vaidya::alert", "ALERT: DOWNTIME MODE: {why} ({})", s.last_error.as_deref().unwrap_or("no answer"));
        } else if s.mode == Mode::HandingBack {
            s.mode = Mode::Downtime; // a hand-back cut short: writes go on, on the same branch
        }
    }

    /// Hand the branch back: ask the core how far it has it, stop downtime writes, send the
    /// rest, cut the branch, follow again.
    fn hand_back(&mut self) -> Result<(), Trouble> {
        let (fork, started) = self.branch.expect("called with a branch");
        let started_at = Instant::now();
        let sender = super::sendback::Sender { core: &self.config.core, token: &self.config.token, agent: &self.handback_agent, store: &self.store, issuer: self.config.issuer, batch: self.config.handback_batch };
        let taken = back(sender.taken(fork))?;
        // The core answers: no more downtime writes (those under way finish first).
        {
            let _all = self.config.writes.blocking_write();
            self.status.lock().expect("not poisoned").mode = Mode::HandingBack;
        }
        let result = (|| {
            let end = self.store.read(vaidya_store::read::ledger_size).map_err(|e| Trouble::Refused(e.to_string()))?;
            if end > taken {
                back(super::sendback::wait_signed(&self.store, end))?;
            }
            let sent = back(sender.send(fork, taken, end))?;
            let removed = super::sendback::finish(&self.store, fork, started, end - fork).map_err(|e| Trouble::Refused(format!("cutting the handed-back branch: {e}")))?;
            Ok((sent, removed))
        })();
        let (sent, removed) = match result {
            Ok(r) => r,
            Err(t) => {
                self.enter_downtime("the hand-back was cut short");
                return Err(t);
            }
        };
        self.branch = None;
        self.edge = edge_at(&self.store, fork).map_err(Trouble::Refused)?;
        let ms = started_at.elapsed().as_millis() as u64;
        let mut s = self.status.lock().expect("not poisoned");
        let since = s.downtime_since_ms.take().unwrap_or(started);
        s.mode = Mode::Online;
        s.entries = self.edge.size;
        s.branch_entries = 0;
        s.handed_back += sent.entries;
        s.queued += sent.queued;
        s.last_handback_ms = Some(ms);
        s.last_handback_rate = (ms > 0).then(|| sent.entries as f64 * 1000.0 / ms as f64);
        tracing::warn!(
            "the core answers again after {:.1} s of downtime: {removed} downtime entries handed back ({} units applied, {} queued for a person) in {ms} ms; back online",
            (vaidya_store::now_ms() - since) as f64 / 1000.0,
            sent.applied,
            sent.queued
        );
        Ok(())
    }

    fn core_answered(&self) {
        let mut s = self.status.lock().expect("not poisoned");
        if s.mode == Mode::Downtime && self.branch.is_none() {
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
            "{}/node/feed?after={}&wait={POLL_WAIT_SECONDS}&tables={}&issuer={}&key={}",
            self.config.core.trim_end_matches('/'),
            self.edge.size,
            self.table_hashes.join(","),
            self.config.issuer,
            form_urlencoded::byte_serialize(self.config.node_verifier.as_bytes()).collect::<String>()
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
        let state_changed = state.is_some();
        let received: Vec<String> = state
            .as_deref()
            .and_then(|b| serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(b).ok())
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
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
        if state_changed {
            // What the replica now holds of the tables that came, as the core will compare it.
            let fresh = state_hashes(&self.store, Some(&received)).map_err(Trouble::Refused)?;
            for (i, h) in fresh.into_iter().enumerate() {
                if let Some(h) = h {
                    self.table_hashes[i] = h;
                }
            }
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

/// The SHA-256 (hex) of each state table in the replica, in table order (`only`: of those
/// tables, `None` for the others).
fn state_hashes(store: &Store, only: Option<&[String]>) -> Result<Vec<Option<String>>, String> {
    store
        .read(|conn| {
            vaidya_store::state::table_names()
                .map(|t| match only {
                    Some(list) if !list.iter().any(|x| x == t) => Ok(None),
                    _ => vaidya_store::state::table_snapshot(conn, t).map(|b| Some(super::wire::state_table_hash(&b))),
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| format!("reading the replica's accounts: {e}"))
}

fn back<T>(r: Result<T, super::sendback::Failed>) -> Result<T, Trouble> {
    r.map_err(|f| match f {
        super::sendback::Failed::Unreachable(e) => Trouble::Unreachable(e),
        super::sendback::Failed::Refused(e) => Trouble::Refused(e),
    })
}

/// The chain edge of the replica at entry `size` (where a cut branch left it).
fn edge_at(store: &Store, size: u64) -> Result<ChainEdge, String> {
    store
        .read(|conn| -> Result<ChainEdge, vaidya_store::StoreError> {
            Ok(ChainEdge { size, head: if size == 0 { None } else { vaidya_store::leaf_at(conn, size)? }, frontier: vaidya_store::frontier_at(conn, size)? })
        })
        .map_err(|e| format!("reading the replica at entry {size}: {e}"))
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
