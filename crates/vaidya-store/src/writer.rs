//! The single writer: one thread owns the write connection and commits jobs in groups.
//!
//! Jobs arrive on a bounded channel. The writer takes every job that is waiting (up to
//! [`MAX_JOBS_PER_COMMIT`]), runs each inside its own SAVEPOINT so that a failing job rolls back
//! alone, and commits the group with one fsync. Only after the commit does any job's caller hear
//! its result: an acknowledged write is a durable write.

use crate::index_rows::{self, ParamIds};
use crate::merkle::FrontierHashReader;
use crate::{StoreError, now_ms};
use crate::sql::{Conn, Db};
use crate::sql_params;
use crate::content::Body;
use std::panic::AssertUnwindSafe;
use std::time::Instant;
use vaidya_fhir::index::IndexValue;
use vaidya_fhir::search_params::SearchParam;
use vaidya_ledger::{Entry, EntryHash, LedgerKey, Op, hash_encoded, stored_hash_index, stored_hashes_for_record_hash};

/// Jobs committed together at most; bounds the latency a large group adds to its first job.
pub const MAX_JOBS_PER_COMMIT: usize = 256;
/// Jobs waiting for the writer at most; further writers wait to enqueue (back-pressure).
pub const QUEUE_DEPTH: usize = 4096;
/// A checkpoint is signed at the end of a commit when this much time passed since the last one,
/// and by an idle writer this long after an unsigned commit. Backups ship whole checkpointed
/// ranges (a segment carries the checkpoint it ends at), so this bounds how long a committed
/// entry waits to be shipped; signing costs well under a millisecond.
pub const CHECKPOINT_INTERVAL_MS: i64 = 200;

/// A job's completion, called after the commit with the commit's outcome: the ledger's size
/// once the commit is durable.
pub(crate) type Completion = Box<dyn FnOnce(Result<u64, StoreError>) + Send>;
/// A unit of work run on the writer thread.
pub(crate) type JobFn = Box<dyn FnOnce(&mut WriteTx<'_>) -> (bool, Completion) + Send>;

/// A unit of work run on the writer thread.
pub(crate) struct Job {
    pub(crate) run: JobFn,
    /// Run inside its own SAVEPOINT, so that its failure rolls back only itself. An unguarded
    /// job saves the savepoint's cost (copying every page it touches first), for jobs that
    /// can only fail through a fault; if one does fail, its whole group is rolled back and
    /// every job in it is told that nothing was written.
    pub(crate) guarded: bool,
}

pub(crate) enum Message {
    Job(Job),
    /// Sign a checkpoint now (if anything is unsigned) and stop.
    Shutdown(std::sync::mpsc::Sender<()>),
}

/// The ledger's head, kept in memory by the writer and rolled back with a failed job.
#[derive(Debug, Clone)]
struct Tip {
    /// Number of entries in the ledger (the next entry gets `size + 1`).
    size: u64,
    prev_hash: EntryHash,
    last_time_ms: i64,
    checkpoint_size: u64,
    checkpoint_time_ms: i64,
    /// Latest stored tree hash of each level (index, hash), filled as entries are appended.
    frontier: Vec<Option<(u64, vaidya_ledger::Hash)>>,
    /// A department node's downtime branch: the core's ledger size it left at.
    branch: Option<u64>,
    /// Entries of the branch covered by a checkpoint signed with the node's key.
    branch_signed: u64,
    /// The `rowid` the next new resource gets on PostgreSQL, where the writer numbers them
    /// itself so that the insert can be held back with the rest (held.rs); SQLite numbers
    /// its own.
    next_rowid: i64,
    /// Named counters as this writer last read or set them (PostgreSQL only, where a read is
    /// a round trip; only the writer changes them while it holds the lock).
    sequences: std::cell::RefCell<std::collections::HashMap<String, Option<u64>>>,
}

impl Tip {
    /// Whether there are entries a checkpoint should sign (with the branch key on a branch, or
    /// with the ledger key; a replica off a branch signs nothing).
    fn unsigned(&self, signs: bool, branch_signs: bool) -> bool {
        match self.branch {
            Some(_) => branch_signs && self.size > self.branch_signed,
            None => signs && self.size > self.checkpoint_size,
        }
    }
}

/// The state of a resource as the writer sees it inside its transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    pub rowid: i64,
    pub version: u64,
    pub deleted: bool,
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub resource_type: String,
    pub id: String,
    pub version: u64,
    pub seq: u64,
    pub time_ms: i64,
    /// The resource's JSON as stored (empty for a delete).
    pub content: Vec<u8>,
}

/// A write transaction as seen by a job.
pub struct WriteTx<'a> {
    conn: &'a Conn,
    tip: &'a mut Tip,
    params: &'a mut ParamIds,
    /// `None`: a replica of another server's ledger, which stores the checkpoints its source
    /// signed and never signs one itself.
    key: Option<&'a LedgerKey>,
    /// A department node's own key, which signs the checkpoints of its downtime branch.
    branch_key: Option<&'a LedgerKey>,
    garbage: &'a mut Vec<Box<dyn Send>>,
}

impl WriteTx<'_> {
    /// The connection, for reads inside the transaction (conditional interactions).
    pub fn conn(&self) -> &Conn {
        self.conn
    }

    pub fn current(&self, rtype: &str, rid: &str) -> Result<Option<Current>, StoreError> {
        self.conn.query_opt("SELECT rowid, version, deleted FROM resource WHERE rtype = ?1 AND rid = ?2", &sql_params![rtype, rid], |r| {
            Ok(Current { rowid: r.get(0)?, version: r.get(1)?, deleted: r.get(2)? })
        })
    }

    /// Store a new version of a resource, stamped with `id`, `meta.versionId` and
    /// `meta.lastUpdated`; appends the ledger entry and replaces its index rows.
    pub fn put(
        &mut self,
        author: &str,
        rtype: &str,
        rid: &str,
        body: &Body,
        index: &[(&'static SearchParam, IndexValue)],
    ) -> Result<Written, StoreError> {
        let current = self.current(rtype, rid)?;
        let version = current.as_ref().map_or(1, |c| c.version + 1);
        let time_ms = self.next_time();
        let content = body.assemble(rtype, rid, version, &vaidya_fhir::datetime::format_instant(time_ms));
        let seq = self.append(author, Op::Put, rtype, rid, version, content.clone(), time_ms)?;
        let rowid = match current {
            Some(c) => {
                self.conn.execute_later(
                    "UPDATE resource SET version = ?2, seq = ?3, updated_ms = ?4, deleted = 0 WHERE rowid = ?1",
                    &sql_params![c.rowid, version as i64, seq as i64, time_ms],
                )?;
                index_rows::clear(self.conn, c.rowid)?;
                c.rowid
            }
            None => {
                self.insert_resource(rtype, rid, version, seq, time_ms, false)?
            }
        };
        index_rows::insert(self.conn, self.params, rtype, rowid, index)?;
        Ok(Written { resource_type: rtype.to_string(), id: rid.to_string(), version, seq, time_ms, content })
    }

    /// Store the first version of a resource whose id the server has just made (so it cannot
    /// exist yet): skips the lookup [`WriteTx::put`] makes. Should the id exist after all, the
    /// uniqueness constraint refuses the write.
    pub fn create(
        &mut self,
        author: &str,
        rtype: &str,
        rid: &str,
        body: &Body,
        index: &[(&'static SearchParam, IndexValue)],
    ) -> Result<Written, StoreError> {
        let time_ms = self.next_time();
        let content = body.assemble(rtype, rid, 1, &vaidya_fhir::datetime::format_instant(time_ms));
        let seq = self.append(author, Op::Put, rtype, rid, 1, content.clone(), time_ms)?;
        let rowid = self.insert_resource(rtype, rid, 1, seq, time_ms, false)?;
        index_rows::insert(self.conn, self.params, rtype, rowid, index)?;
        Ok(Written { resource_type: rtype.to_string(), id: rid.to_string(), version: 1, seq, time_ms, content })
    }

    /// Delete a resource. `None` when there is nothing to delete (absent or already deleted):
    /// FHIR deletes are idempotent.
    pub fn delete(&mut self, author: &str, rtype: &str, rid: &str) -> Result<Option<Written>, StoreError> {
        let Some(c) = self.current(rtype, rid)?.filter(|c| !c.deleted) else {
            return Ok(None);
        };
        let version = c.version + 1;
        let time_ms = self.next_time();
        let seq = self.append(author, Op::Delete, rtype, rid, version, Vec::new(), time_ms)?;
        self.conn.execute_later(
            "UPDATE resource SET version = ?2, seq = ?3, updated_ms = ?4, deleted = 1 WHERE rowid = ?1",
            &sql_params![c.rowid, version as i64, seq as i64, time_ms],
        )?;
        index_rows::clear(self.conn, c.rowid)?;
        Ok(Some(Written { resource_type: rtype.to_string(), id: rid.to_string(), version, seq, time_ms, content: Vec::new() }))
    }

    /// Insert a resource's row; its `rowid` (the key of its index rows).
    #[allow(clippy::too_many_arguments)]
    fn insert_resource(&mut self, rtype: &str, rid: &str, version: u64, seq: u64, time_ms: i64, deleted: bool) -> Result<i64, StoreError> {
        if let Conn::Postgres(pg) = self.conn {
            let rowid = self.tip.next_rowid;
            self.tip.next_rowid += 1;
            pg.execute_later(
                "INSERT INTO resource (rowid, rtype, rid, version, seq, updated_ms, deleted) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                &sql_params![rowid, rtype, rid, version as i64, seq as i64, time_ms, deleted],
            )?;
            return Ok(rowid);
        }
        self.conn
            .query_value(
                "INSERT INTO resource (rtype, rid, version, seq, updated_ms, deleted) VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING rowid",
                &sql_params![rtype, rid, version as i64, seq as i64, time_ms, deleted],
            )?
            .ok_or_else(|| StoreError::Corrupt("an insert returned no rowid".into()))
    }

    /// Hand over something to be freed off the writer thread. Freeing a large JSON tree or
    /// index vector costs the single writer measurable time on bulk loads; a helper thread
    /// does it instead, after the commit.
    pub fn dispose(&mut self, value: impl Send + 'static) {
        self.garbage.push(Box::new(value));
    }

    /// A named counter's value (`None` if it was never set).
    pub fn sequence(&self, name: &str) -> Result<Option<u64>, StoreError> {
        if let Some(v) = self.tip.sequences.borrow().get(name) {
            return Ok(*v);
        }
        let value = self.conn.query_value("SELECT value FROM sequence WHERE name = ?1", &sql_params![name])?;
        if matches!(self.conn, Conn::Postgres(_)) {
            self.tip.sequences.borrow_mut().insert(name.to_string(), value);
        }
        Ok(value)
    }

    /// Set a named counter, in this transaction.
    pub fn set_sequence(&mut self, name: &str, value: u64) -> Result<(), StoreError> {
        if matches!(self.conn, Conn::Postgres(_)) {
            self.tip.sequences.borrow_mut().insert(name.to_string(), Some(value));
        }
        self.conn.execute_later(
            "INSERT INTO sequence (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = ?2",
            &sql_params![name, value as i64],
        )?;
        Ok(())
    }

    /// Entries in the ledger so far, including this transaction's.
    pub fn ledger_size(&self) -> u64 {
        self.tip.size
    }

    fn next_time(&mut self) -> i64 {
        // Monotonic even if the wall clock steps back: the ledger's times never decrease.
        let t = now_ms().max(self.tip.last_time_ms);
        self.tip.last_time_ms = t;
        t
    }

    #[allow(clippy::too_many_arguments)]
    fn append(
        &mut self,
        author: &str,
        op: Op,
        rtype: &str,
        rid: &str,
        version: u64,
        content: Vec<u8>,
        time_ms: i64,
    ) -> Result<u64, StoreError> {
        let seq = self.tip.size + 1;
        let entry = Entry {
            seq,
            time_ms,
            author: author.to_string(),
            op,
            resource_type: rtype.to_string(),
            resource_id: rid.to_string(),
            version,
            content,
            prev_hash: self.tip.prev_hash,
        };
        self.append_encoded(&entry.encode(), rtype, rid, version)?;
        Ok(seq)
    }

    /// Append the canonical bytes of entry `tip.size + 1`: the ledger row, the tree's hashes,
    /// the history row.
    fn append_encoded(&mut self, bytes: &[u8], rtype: &str, rid: &str, version: u64) -> Result<(), StoreError> {
        let seq = self.tip.size + 1;
        let leaf = hash_encoded(bytes);
        self.conn.execute_later("INSERT INTO ledger (seq, entry) VALUES (?1, ?2)", &sql_params![seq as i64, bytes])?;
        // Record n of the tree (0-based) is entry seq n+1.
        let n = seq - 1;
        let reader = FrontierHashReader { conn: self.conn, frontier: &self.tip.frontier };
        let hashes = stored_hashes_for_record_hash(n, vaidya_ledger::Hash(leaf.0), &reader)
            .map_err(|e| StoreError::Corrupt(format!("Merkle tree hashes unreadable at entry {seq}: {e}")))?;
        let first = stored_hash_index(0, n);
        // Appending record n stores its leaf (level 0) and then one hash per subtree it
        // completes, at levels 1, 2, ... in that order.
        for (level, h) in hashes.iter().enumerate() {
            let idx = first + level as u64;
            self.conn.execute_later("INSERT INTO tree_hash (idx, hash) VALUES (?1, ?2)", &sql_params![idx as i64, &h.0[..]])?;
            if self.tip.frontier.len() <= level {
                self.tip.frontier.resize(level + 1, None);
            }
            self.tip.frontier[level] = Some((idx, *h));
        }
        self.conn.execute_later(
            "INSERT INTO history (rtype, rid, version, seq) VALUES (?1, ?2, ?3, ?4)",
            &sql_params![rtype, rid, version as i64, seq as i64],
        )?;
        self.tip.size = seq;
        self.tip.prev_hash = leaf;
        Ok(())
    }

    /// Append an entry made elsewhere, exactly as it was made (a restore from backup): it must
    /// be the next entry and chain to the last one. The resource's row and index rows are
    /// written as for a new write; `index` is what its content indexes to.
    pub fn replay(&mut self, entry: &Entry, bytes: &[u8], index: &[(&'static SearchParam, IndexValue)]) -> Result<(), StoreError> {
        if let Some(fork) = self.tip.branch {
            return Err(StoreError::Corrupt(format!(
                "this replica has its own entries after entry {fork} (a downtime branch): they are handed back and cut before it follows again"
            )));
        }
        if entry.seq != self.tip.size + 1 || entry.prev_hash != self.tip.prev_hash {
            return Err(StoreError::Corrupt(format!(
                "entry {} does not follow the ledger's last entry {} (sequence or hash chain)",
                entry.seq, self.tip.size
            )));
        }
        let (rtype, rid, seq, time_ms) = (&entry.resource_type, &entry.resource_id, entry.seq, entry.time_ms);
        self.append_encoded(bytes, rtype, rid, entry.version)?;
        self.tip.last_time_ms = self.tip.last_time_ms.max(time_ms);
        let deleted = entry.op == Op::Delete;
        match self.current(rtype, rid)? {
            Some(c) => {
                self.conn.execute_later(
                    "UPDATE resource SET version = ?2, seq = ?3, updated_ms = ?4, deleted = ?5 WHERE rowid = ?1",
                    &sql_params![c.rowid, entry.version as i64, seq as i64, time_ms, deleted],
                )?;
                index_rows::clear(self.conn, c.rowid)?;
                if !deleted {
                    index_rows::insert(self.conn, self.params, rtype, c.rowid, index)?;
                }
            }
            None => {
                let rowid = self.insert_resource(rtype, rid, entry.version, seq, time_ms, deleted)?;
                if !deleted {
                    index_rows::insert(self.conn, self.params, rtype, rowid, index)?;
                }
            }
        }
        Ok(())
    }

    /// Store a checkpoint signed elsewhere (a restore from backup) for the ledger as it now
    /// is; refused unless the tree this store computed has the root the checkpoint signs.
    pub fn insert_checkpoint(&mut self, tree_size: u64, time_ms: i64, note: &str, root: vaidya_ledger::Hash) -> Result<(), StoreError> {
        if tree_size != self.tip.size {
            return Err(StoreError::Corrupt(format!("a checkpoint for {tree_size} entries does not fit a ledger of {}", self.tip.size)));
        }
        let ours = crate::merkle::root(self.conn, tree_size)
            .map_err(|e| StoreError::Corrupt(format!("cannot compute the Merkle root: {e}")))?;
        if ours != root {
            return Err(StoreError::Corrupt(format!("the Merkle root at {tree_size} entries differs from the checkpoint's")));
        }
        self.conn.execute_later(
            "INSERT INTO checkpoint (tree_size, time_ms, note) VALUES (?1, ?2, ?3)",
            &sql_params![tree_size as i64, time_ms, note],
        )?;
        self.tip.checkpoint_size = tree_size;
        self.tip.checkpoint_time_ms = now_ms();
        Ok(())
    }

    /// The last entry's hash (the chain's head).
    pub fn head_hash(&self) -> EntryHash {
        self.tip.prev_hash
    }

    /// Sign a checkpoint if entries wait for one and it is time (or `force`): with the ledger
    /// key, or on a department node's branch with the node's key (kept apart, in
    /// `branch_checkpoint`: the core's checkpoints stay the core's).
    fn checkpoint_if_due(&mut self, force: bool) -> Result<(), StoreError> {
        let on_branch = self.tip.branch.is_some();
        let (key, signed, insert) = if on_branch {
            (self.branch_key, self.tip.branch_signed, "INSERT INTO branch_checkpoint (tree_size, time_ms, note) VALUES (?1, ?2, ?3)")
        } else {
            (self.key, self.tip.checkpoint_size, "INSERT INTO checkpoint (tree_size, time_ms, note) VALUES (?1, ?2, ?3)")
        };
        let Some(key) = key else { return Ok(()) };
        let now = now_ms();
        if self.tip.size <= signed || !(force || now - self.tip.checkpoint_time_ms >= CHECKPOINT_INTERVAL_MS) {
            return Ok(());
        }
        let root = crate::merkle::root(self.conn, self.tip.size)
            .map_err(|e| StoreError::Corrupt(format!("cannot compute the Merkle root: {e}")))?;
        let time_ms = now.max(self.tip.last_time_ms);
        let note = vaidya_ledger::sign_checkpoint(key, self.tip.size, root, time_ms);
        self.conn.execute_later(insert, &sql_params![self.tip.size as i64, time_ms, &note])?;
        if on_branch {
            self.tip.branch_signed = self.tip.size;
        } else {
            self.tip.checkpoint_size = self.tip.size;
        }
        self.tip.checkpoint_time_ms = time_ms;
        Ok(())
    }
}

/// A department node's downtime branch: while the core is unreachable the node writes on its
/// replica, after the core's last entry, with the same code as the core. These entries chain
/// to the core's, each write transaction's range is recorded (`branch_tx`: it is handed back
/// to the core as one unit), and checkpoints over them are signed with the node's own key
/// (`branch_checkpoint`; the core's key is not the node's to use). When the core answers
/// again, the node hands the branch back and cuts it ([`WriteTx::cut_branch`]): the core's
/// ledger, with the handed-back writes in it, is then followed from the fork as before.
impl WriteTx<'_> {
    /// Start a branch at the ledger's current end (or find the one already started): its fork.
    /// Refused on a store without a branch key.
    pub fn begin_branch(&mut self) -> Result<u64, StoreError> {
        if let Some(fork) = self.tip.branch {
            return Ok(fork);
        }
        if self.branch_key.is_none() {
            return Err(StoreError::Corrupt("this store has no key to sign a branch with (only a department node's has)".into()));
        }
        let fork = self.tip.size;
        self.conn.execute("INSERT INTO branch (id, fork, started_ms) VALUES (1, ?1, ?2)", &sql_params![fork as i64, now_ms()])?;
        self.tip.branch = Some(fork);
        self.tip.branch_signed = fork;
        Ok(fork)
    }

    /// The fork of the branch being written, if any.
    pub fn branch_fork(&self) -> Option<u64> {
        self.tip.branch
    }

    /// Cut the ledger back to the branch's fork: the branch's entries, tree hashes and
    /// checkpoints go, and every resource they touched is as it was at the fork (its row and
    /// index rows rebuilt from its latest version before it). The number of entries removed.
    pub fn cut_branch(&mut self) -> Result<u64, StoreError> {
        let Some(fork) = self.tip.branch else { return Ok(0) };
        let mut touched = std::collections::BTreeSet::new();
        let branch_entries =
            self.conn.query_map("SELECT seq, entry FROM ledger WHERE seq > ?1 ORDER BY seq", &sql_params![fork as i64], |r| {
                Ok((r.get::<i64>(0)?, r.get::<Vec<u8>>(1)?))
            })?;
        for (seq, bytes) in branch_entries {
            let e = Entry::decode(&bytes).map_err(|e| StoreError::Corrupt(format!("entry {seq}: {e}")))?;
            self.conn.execute(
                "DELETE FROM history WHERE rtype = ?1 AND rid = ?2 AND version = ?3",
                &sql_params![&e.resource_type, &e.resource_id, e.version as i64],
            )?;
            touched.insert((e.resource_type, e.resource_id));
        }
        for (rtype, rid) in &touched {
            let Some(current) = self.current(rtype, rid)? else { continue };
            index_rows::clear(self.conn, current.rowid)?;
            let before: Option<i64> = self
                .conn
                .query_value("SELECT seq FROM history WHERE rtype = ?1 AND rid = ?2 ORDER BY version DESC LIMIT 1", &sql_params![rtype, rid])?;
            let Some(seq) = before else {
                self.conn.execute("DELETE FROM resource WHERE rowid = ?1", &sql_params![current.rowid])?;
                continue;
            };
            let bytes: Vec<u8> = self
                .conn
                .query_value("SELECT entry FROM ledger WHERE seq = ?1", &sql_params![seq])?
                .ok_or_else(|| StoreError::Corrupt(format!("ledger entry {seq} is missing")))?;
            let e = Entry::decode(&bytes).map_err(|e| StoreError::Corrupt(format!("entry {seq}: {e}")))?;
            let deleted = e.op == Op::Delete;
            self.conn.execute(
                "UPDATE resource SET version = ?2, seq = ?3, updated_ms = ?4, deleted = ?5 WHERE rowid = ?1",
                &sql_params![current.rowid, e.version as i64, seq, e.time_ms, deleted],
            )?;
            if !deleted {
                let value: serde_json::Value = serde_json::from_slice(&e.content)
                    .map_err(|err| StoreError::Corrupt(format!("entry {seq}: content is not JSON: {err}")))?;
                index_rows::insert(self.conn, self.params, rtype, current.rowid, &vaidya_fhir::index::extract_all(&value))?;
            }
        }
        let removed = self.tip.size - fork;
        self.conn.execute("DELETE FROM ledger WHERE seq > ?1", &sql_params![fork as i64])?;
        self.conn.execute("DELETE FROM tree_hash WHERE idx >= ?1", &sql_params![stored_hash_index(0, fork) as i64])?;
        self.conn.execute("DELETE FROM checkpoint WHERE tree_size > ?1", &sql_params![fork as i64])?;
        self.conn.execute_batch("DELETE FROM branch; DELETE FROM branch_tx; DELETE FROM branch_checkpoint;")?;
        *self.tip = load_tip(self.conn)?;
        Ok(removed)
    }

    /// Record the entries a write transaction on the branch appended (after `before`).
    fn note_branch_tx(&mut self, before: u64) -> Result<(), StoreError> {
        if self.tip.branch.is_some() && self.tip.size > before {
            self.conn.execute(
                "INSERT INTO branch_tx (first_seq, last_seq) VALUES (?1, ?2)",
                &sql_params![(before + 1) as i64, self.tip.size as i64],
            )?;
        }
        Ok(())
    }
}

/// How often a server that does not hold the writer's lock tries to take it (PostgreSQL).
pub const TAKE_OVER_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// The writer thread's state.
pub(crate) struct Writer {
    conn: Conn,
    /// Where the database is, to connect again after a failover (PostgreSQL).
    location: crate::Location,
    /// Whether this process holds the writer's lock and may append (always, on SQLite: the
    /// data directory's lock file is the writer's lock there).
    writing: std::sync::Arc<std::sync::atomic::AtomicBool>,
    tip: Tip,
    params: ParamIds,
    key: Option<LedgerKey>,
    branch_key: Option<LedgerKey>,
    garbage: Vec<Box<dyn Send>>,
    dropper: crossbeam_channel::Sender<Vec<Box<dyn Send>>>,
    /// Time spent committing since start, and commits made: how busy the single writer is.
    busy: std::time::Duration,
    commits: u64,
    /// Sign a checkpoint with every commit (synchronous backups wait for one), not only every
    /// [`CHECKPOINT_INTERVAL_MS`].
    checkpoint_every_commit: bool,
    /// Told the size of each checkpoint signed (backups follow it).
    checkpointed: tokio::sync::watch::Sender<u64>,
}

impl Writer {
    pub(crate) fn new(
        conn: Conn,
        location: crate::Location,
        writing: std::sync::Arc<std::sync::atomic::AtomicBool>,
        key: Option<LedgerKey>,
        branch_key: Option<LedgerKey>,
        checkpoint_every_commit: bool,
        checkpointed: tokio::sync::watch::Sender<u64>,
    ) -> Result<Writer, StoreError> {
        let holds_lock = match &conn {
            Conn::Sqlite(_) => true,
            Conn::Postgres(pg) => pg.try_writer_lock()?,
        };
        writing.store(holds_lock, std::sync::atomic::Ordering::Release);
        if !holds_lock {
            tracing::info!("another Vaidya server holds the writer's lock on {}: serving reads, ready to take over", location.describe());
        }
        let tip = load_tip(&conn)?;
        checkpointed.send_replace(tip.checkpoint_size);
        // Bounded: if freeing falls behind, the writer waits rather than memory growing.
        let (dropper, garbage_rx) = crossbeam_channel::bounded::<Vec<Box<dyn Send>>>(64);
        std::thread::Builder::new().name("vaidya-dropper".into()).spawn(move || for batch in garbage_rx {
            drop(batch);
        })?;
        Ok(Writer {
            conn,
            location,
            writing,
            tip,
            params: ParamIds::default(),
            key,
            branch_key,
            garbage: Vec::new(),
            dropper,
            busy: Default::default(),
            commits: 0,
            checkpoint_every_commit,
            checkpointed,
        })
    }

    /// Run until the channel closes or a shutdown message arrives.
    pub(crate) fn run(mut self, rx: crossbeam_channel::Receiver<Message>) {
        let mut batch: Vec<Job> = Vec::with_capacity(MAX_JOBS_PER_COMMIT);
        loop {
            if !self.writing.load(std::sync::atomic::Ordering::Acquire) && !self.take_over(&rx) {
                return;
            }
            let received = if self.tip.unsigned(self.key.is_some(), self.branch_key.is_some()) {
                // Unsigned entries: sign them once the writer has been idle for an interval.
                match rx.recv_timeout(std::time::Duration::from_millis(CHECKPOINT_INTERVAL_MS as u64)) {
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                        self.sign_idle();
                        continue;
                    }
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(crossbeam_channel::RecvError),
                    Ok(m) => Ok(m),
                }
            } else {
                rx.recv()
            };
            let first = match received {
                Ok(Message::Job(job)) => job,
                Ok(Message::Shutdown(done)) => {
                    self.shutdown();
                    let _ = done.send(());
                    return;
                }
                Err(_) => {
                    self.shutdown();
                    return;
                }
            };
            batch.push(first);
            let mut shutdown = None;
            while batch.len() < MAX_JOBS_PER_COMMIT {
                match rx.try_recv() {
                    Ok(Message::Job(job)) => batch.push(job),
                    Ok(Message::Shutdown(done)) => {
                        shutdown = Some(done);
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit_batch(&mut batch);
            if let Some(done) = shutdown {
                self.shutdown();
                let _ = done.send(());
                return;
            }
        }
    }

    /// Wait until this process holds the writer's lock (PostgreSQL), connecting again if the
    /// connection was lost (a failover); then continue the ledger from the database as it now
    /// is. `false` when asked to stop meanwhile.
    fn take_over(&mut self, rx: &crossbeam_channel::Receiver<Message>) -> bool {
        loop {
            match rx.recv_timeout(TAKE_OVER_POLL) {
                Ok(Message::Shutdown(done)) => {
                    let _ = done.send(());
                    return false;
                }
                // Submitted as the lock was lost: dropped, so its caller hears that nothing
                // was written.
                Ok(Message::Job(_)) => continue,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return false,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            }
            let attempt = (|| -> Result<bool, StoreError> {
                if self.conn_lost() {
                    self.conn = self.location.open_reader()?;
                }
                let Conn::Postgres(pg) = &self.conn else { return Ok(true) };
                if !pg.try_writer_lock()? {
                    return Ok(false);
                }
                self.tip = load_tip(&self.conn)?;
                self.params.clear();
                Ok(true)
            })();
            match attempt {
                Ok(true) => {
                    tracing::warn!(entries = self.tip.size, "this server now holds the writer's lock on {} and writes", self.location.describe());
                    self.checkpointed.send_replace(self.tip.checkpoint_size);
                    self.writing.store(true, std::sync::atomic::Ordering::Release);
                    return true;
                }
                Ok(false) => {}
                Err(e) => tracing::debug!("cannot take the writer's lock yet: {e}"),
            }
        }
    }

    /// Whether the write connection is gone (PostgreSQL stopped or failed over).
    fn conn_lost(&self) -> bool {
        matches!(&self.conn, Conn::Postgres(pg) if pg.is_closed())
    }

    /// The connection was lost, and with it the writer's lock: stop writing until the lock is
    /// taken again (by this process or another).
    fn give_up_writing(&mut self) {
        if self.writing.swap(false, std::sync::atomic::Ordering::AcqRel) {
            tracing::error!("the connection to {} was lost: not writing until the writer's lock is taken again", self.location.describe());
        }
    }

    fn commit_batch(&mut self, batch: &mut Vec<Job>) {
        let started = Instant::now();
        let jobs = batch.len();
        let mut completions: Vec<(bool, Completion)> = Vec::with_capacity(jobs);
        let tip_before_batch = self.tip.clone();
        if let Err(e) = self.conn.begin_write() {
            // The jobs never ran; dropping them drops their reply channels, so each caller
            // hears that its write did not happen.
            tracing::error!("cannot begin a write transaction for {jobs} jobs: {e}");
            batch.clear();
            if self.conn_lost() {
                self.give_up_writing();
            }
            return;
        }
        let mut tip_before_batch = tip_before_batch;
        for job in batch.drain(..) {
            if job.guarded {
                completions.push(self.run_job(job.run));
                continue;
            }
            match self.run_unguarded(job.run) {
                Ok(done) => completions.push(done),
                Err(failed) => {
                    // Undo the whole group so far and start a new transaction for the rest.
                    let _ = self.conn.execute_batch("ROLLBACK");
                    self.tip = tip_before_batch.clone();
                    self.params.clear();
                    for (_, complete) in completions.drain(..) {
                        complete(Err(StoreError::CommitFailed(
                            "another job in the same group failed, so the group was rolled back".into(),
                        )));
                    }
                    // The failing job carries its own error.
                    failed(Ok(self.tip.size));
                    if let Err(e) = self.conn.begin_write() {
                        // The remaining jobs are dropped with the drain, and their callers hear
                        // that nothing was written.
                        tracing::error!("cannot begin a write transaction after a rollback: {e}");
                        return;
                    }
                    tip_before_batch = self.tip.clone();
                }
            }
        }
        let signed_before = self.tip.checkpoint_size;
        let committed = {
            let force = self.checkpoint_every_commit;
            let mut tx = WriteTx { conn: &self.conn, tip: &mut self.tip, params: &mut self.params, key: self.key.as_ref(), branch_key: self.branch_key.as_ref(), garbage: &mut self.garbage };
            tx.checkpoint_if_due(force).and_then(|()| self.conn.execute_batch("COMMIT"))
        };
        if let Err(e) = &committed {
            tracing::error!("commit of {jobs} jobs failed: {e}");
            let _ = self.conn.execute_batch("ROLLBACK");
            self.tip = tip_before_batch;
            self.params.clear();
            if self.conn_lost() {
                // Whether the commit reached the database is unknown: the callers hear that it
                // failed, and the ledger is read afresh when the lock is taken again.
                self.give_up_writing();
            }
        }
        if committed.is_ok() && self.tip.checkpoint_size != signed_before {
            self.checkpointed.send_replace(self.tip.checkpoint_size);
        }
        let size = self.tip.size;
        for (_ran_ok, complete) in completions {
            // A job that failed already carries its own error; the commit outcome matters to
            // the ones that succeeded.
            complete(match &committed {
                Ok(()) => Ok(size),
                Err(e) => Err(StoreError::CommitFailed(e.to_string())),
            });
        }
        self.busy += started.elapsed();
        self.commits += 1;
        tracing::trace!(jobs, elapsed_us = started.elapsed().as_micros() as u64, "group commit");
        if !self.garbage.is_empty() {
            let _ = self.dropper.send(std::mem::take(&mut self.garbage));
        }
    }

    /// Run a job, catching a panic; a successful job on a department node's branch has its
    /// entries recorded as one unit.
    fn run_caught(&mut self, job: JobFn) -> std::thread::Result<(bool, Completion)> {
        let mut tx = WriteTx { conn: &self.conn, tip: &mut self.tip, params: &mut self.params, key: self.key.as_ref(), branch_key: self.branch_key.as_ref(), garbage: &mut self.garbage };
        let before = tx.tip.size;
        std::panic::catch_unwind(AssertUnwindSafe(|| {
            let out = job(&mut tx);
            if out.0 {
                // A failure here is a fault of the database: the job fails with it.
                tx.note_branch_tx(before).expect("recording a branch transaction");
            }
            out
        }))
    }

    /// Run a job without a savepoint; `Err` hands back the failed job's completion.
    fn run_unguarded(&mut self, job: JobFn) -> Result<(bool, Completion), Completion> {
        let outcome = self.run_caught(job);
        match outcome {
            Ok((true, complete)) => Ok((true, complete)),
            Ok((false, complete)) => Err(complete),
            Err(panic) => {
                tracing::error!("a write job panicked: {:?}", panic.downcast_ref::<&str>());
                Err(Box::new(|_| {}))
            }
        }
    }

    fn run_job(&mut self, job: JobFn) -> (bool, Completion) {
        // Cached statements: parsing SAVEPOINT/RELEASE for every job showed up in profiles.
        if let Err(e) = self.conn.control("SAVEPOINT job") {
            // The connection failed (PostgreSQL gone): the job is not run, and its caller
            // hears that nothing was written.
            tracing::error!("cannot make a savepoint: {e}");
            return (false, Box::new(move |_| drop(job)));
        }
        let tip_before = self.tip.clone();
        let outcome = self.run_caught(job);
        match outcome {
            Ok((true, complete)) => match self.conn.control("RELEASE job") {
                Ok(()) => (true, complete),
                Err(e) => {
                    // On PostgreSQL the job's writes were sent with the RELEASE and one was
                    // refused (a uniqueness constraint): the job fails alone.
                    let message = e.to_string();
                    self.rollback_job(tip_before);
                    (false, Box::new(move |_| complete(Err(StoreError::CommitFailed(message)))))
                }
            },
            Ok((false, complete)) => {
                self.rollback_job(tip_before);
                (false, complete)
            }
            Err(panic) => {
                self.rollback_job(tip_before);
                tracing::error!("a write job panicked: {:?}", panic.downcast_ref::<&str>());
                // The job's reply channel was dropped with it: its caller sees the writer as gone.
                (false, Box::new(|_| {}))
            }
        }
    }

    fn rollback_job(&mut self, tip_before: Tip) {
        if let Err(e) = self.conn.execute_batch("ROLLBACK TO job; RELEASE job") {
            // Only a lost connection does this; the commit then fails for the whole group.
            tracing::error!("cannot roll back a job's savepoint: {e}");
        }
        self.tip = tip_before;
        // Parameter ids interned by the failed job are gone with it.
        self.params.clear();
    }

    /// Sign the unsigned entries of an idle writer.
    fn sign_idle(&mut self) {
        let result = (|| -> Result<(), StoreError> {
            self.conn.begin_write()?;
            let mut tx = WriteTx { conn: &self.conn, tip: &mut self.tip, params: &mut self.params, key: self.key.as_ref(), branch_key: self.branch_key.as_ref(), garbage: &mut self.garbage };
            tx.checkpoint_if_due(true)?;
            self.conn.execute_batch("COMMIT")?;
            Ok(())
        })();
        match result {
            Ok(()) => {
                self.checkpointed.send_replace(self.tip.checkpoint_size);
            }
            Err(e) => {
                tracing::error!("idle checkpoint failed: {e}");
                let _ = self.conn.execute_batch("ROLLBACK");
                // Do not spin on a failing checkpoint: the next commit tries again.
                self.tip.checkpoint_size = self.tip.size;
                if self.conn_lost() {
                    self.give_up_writing();
                }
            }
        }
    }

    fn shutdown(&mut self) {
        tracing::debug!(
            commits = self.commits,
            busy_ms = self.busy.as_millis() as u64,
            cpu_ms = thread_cpu_ms().unwrap_or(-1),
            entries = self.tip.size,
            "writer stopping"
        );
        let result = (|| -> Result<(), StoreError> {
            self.conn.begin_write()?;
            let mut tx = WriteTx { conn: &self.conn, tip: &mut self.tip, params: &mut self.params, key: self.key.as_ref(), branch_key: self.branch_key.as_ref(), garbage: &mut self.garbage };
            tx.checkpoint_if_due(true)?;
            self.conn.execute_batch("COMMIT")?;
            self.checkpointed.send_replace(self.tip.checkpoint_size);
            if let Some(sqlite) = self.conn.sqlite() {
                sqlite.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            tracing::error!("final checkpoint failed: {e}");
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// CPU time of the calling thread (Linux; for diagnostics only), in milliseconds.
fn thread_cpu_ms() -> Option<i64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: i64 = fields.get(11)?.parse::<i64>().ok()? + fields.get(12)?.parse::<i64>().ok()?;
    Some(ticks * 10) // USER_HZ is 100 on Linux
}

fn load_tip(conn: &impl Db) -> Result<Tip, StoreError> {
    let last = conn.query_opt("SELECT seq, entry FROM ledger ORDER BY seq DESC LIMIT 1", &[], |r| Ok((r.get::<u64>(0)?, r.get::<Vec<u8>>(1)?)))?;
    let (size, prev_hash, last_time_ms) = match last {
        None => (0, vaidya_ledger::GENESIS_PREV, 0),
        Some((seq, bytes)) => {
            let entry = Entry::decode(&bytes).map_err(|e| StoreError::Corrupt(format!("entry {seq}: {e}")))?;
            (seq, hash_encoded(&bytes), entry.time_ms)
        }
    };
    let (checkpoint_size, checkpoint_time_ms): (u64, i64) = conn
        .query_opt("SELECT tree_size, time_ms FROM checkpoint ORDER BY tree_size DESC LIMIT 1", &[], |r| Ok((r.get(0)?, r.get(1)?)))?
        .unwrap_or((0, 0));
    let branch: Option<u64> = conn.query_value("SELECT fork FROM branch WHERE id = 1", &[])?;
    let branch_signed: Option<u64> = conn.query_value::<Option<u64>>("SELECT max(tree_size) FROM branch_checkpoint", &[])?.flatten();
    let next_rowid = conn.query_value::<i64>("SELECT coalesce(max(rowid), 0) + 1 FROM resource", &[])?.unwrap_or(1);
    Ok(Tip {
        size,
        prev_hash,
        last_time_ms,
        checkpoint_size,
        checkpoint_time_ms,
        frontier: Vec::new(),
        branch,
        branch_signed: branch_signed.or(branch).unwrap_or(0),
        next_rowid,
        sequences: Default::default(),
    })
}
