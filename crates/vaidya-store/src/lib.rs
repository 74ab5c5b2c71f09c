//! Storage: the ledger and its projections in SQLite, with one writer and a pool of readers.
//!
//! Architecture invariant: this crate knows nothing of HTTP. It speaks FHIR only as far as it
//! must to index and search (through `vaidya-fhir`), and it writes the ledger only through
//! [`WriteTx`], so that no change can reach a projection without an entry.

pub mod content;
pub mod grants;
mod db;
mod held;
mod index_rows;
mod merkle;
pub mod migrate;
pub mod read;
pub mod scan;
pub mod schema;
pub mod search;
pub mod snapshot;
pub mod sql;
pub mod state;
pub mod tokens;
pub mod verify;
mod writer;

pub use content::Body;
pub use read::{HistoryItem, Stored};
pub use rusqlite::Connection;
pub use sql::{Conn, Db};
pub use writer::{Current, MAX_JOBS_PER_COMMIT, WriteTx, Written};

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread::JoinHandle;
use vaidya_ledger::LedgerKey;
use writer::{Message, Writer};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL error: {0}")]
    Postgres(#[from] postgres::Error),
    #[error("the store is damaged: {0}")]
    Corrupt(String),
    #[error("the commit failed, nothing was written: {0}")]
    CommitFailed(String),
    #[error("the writer has stopped")]
    WriterGone,
    #[error(
        "this server does not write now: another Vaidya server holds the database's writer lock \
         (this one serves reads, and takes over if that one stops)"
    )]
    NotWriter,
    #[error(
        "the change is saved on this server (ledger entry {0}) but the backup target has not confirmed it \
         in time (synchronous backups); it will be shipped when the target answers"
    )]
    NotShipped(u64),
    #[error("the data directory is in use by another Vaidya process ({0})")]
    Locked(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Current time in milliseconds since the Unix epoch (UTC).
pub fn now_ms() -> i64 {
    vaidya_fhir::datetime::now_ms()
}

/// Number of reader connections.
pub const READERS: usize = 8;

/// How a store is opened.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// Sign a checkpoint with every commit (synchronous backups ship only checkpointed entries
    /// and acknowledge a write once it is shipped).
    pub checkpoint_every_commit: bool,
    /// A restore from backup into a new database: no write-ahead log and no fsync per commit
    /// (a restore that fails is thrown away whole; the caller flushes the file at the end).
    /// The next normal open returns the database to WAL.
    pub restoring: bool,
    /// A replica of another server's ledger (a department node following the core): entries
    /// arrive through [`WriteTx::replay`] with the checkpoints their source signed
    /// ([`WriteTx::insert_checkpoint`]); this store never signs one (its key is not the
    /// source's).
    pub replica: bool,
}

/// Where a store's database is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Location {
    /// A SQLite file (one machine).
    File(PathBuf),
    /// A PostgreSQL database.
    Postgres(sql::PgTarget),
}

impl Location {
    /// A new reader connection: sees the last committed state at each statement.
    pub fn open_reader(&self) -> Result<Conn, StoreError> {
        Ok(match self {
            Location::File(path) => Conn::Sqlite(db::open_reader(path)?),
            Location::Postgres(target) => Conn::Postgres(Box::new(target.connect()?)),
        })
    }

    /// For messages: the file's path, or the PostgreSQL URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Location::File(path) => path.display().to_string(),
            Location::Postgres(target) => target.describe(),
        }
    }

    /// A PostgreSQL database by URL, without a password (or with one in the URL: tests).
    pub fn postgres(url: &str) -> Location {
        Location::Postgres(sql::PgTarget::new(url))
    }
}

pub struct Store {
    location: Location,
    /// Whether this process holds the writer's lock (see [`Store::is_writer`]).
    writing: std::sync::Arc<std::sync::atomic::AtomicBool>,
    checkpointed: tokio::sync::watch::Receiver<u64>,
    /// When set, [`Store::write`] answers only once the ledger has been shipped this far
    /// (synchronous backups); see [`Store::gate_writes_on`].
    gate: std::sync::OnceLock<Gate>,
    writer_tx: crossbeam_channel::Sender<Message>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    readers_tx: crossbeam_channel::Sender<Conn>,
    readers_rx: crossbeam_channel::Receiver<Conn>,
}

impl Store {
    /// Open (creating if new) the database at `path`. The caller holds the data directory's
    /// lock: a second writer process would fork the hash chain.
    pub fn open(path: &Path, key: LedgerKey) -> Result<Store, StoreError> {
        Store::open_with(path, key, StoreOptions::default())
    }

    /// [`Store::open`] with options.
    pub fn open_with(path: &Path, key: LedgerKey, options: StoreOptions) -> Result<Store, StoreError> {
        Store::open_inner(path, Some(key), options)
    }

    /// Open (creating if new) a replica of another server's ledger: it holds no signing key
    /// and never signs a checkpoint (see [`StoreOptions::replica`]).
    pub fn open_replica(path: &Path) -> Result<Store, StoreError> {
        Store::open_inner(path, None, StoreOptions { replica: true, ..Default::default() })
    }

    /// [`Store::open_replica`] wherever the database is (a migration's target).
    pub fn open_replica_at(location: Location) -> Result<Store, StoreError> {
        Store::open_at(location, None, StoreOptions { replica: true, ..Default::default() }, None)
    }

    /// Open (creating if new) a department node's store: a replica of the core's ledger
    /// ([`Store::open_replica`]) on which the node may write a downtime branch, whose
    /// checkpoints `node_key` signs (see [`WriteTx::begin_branch`]).
    pub fn open_node(path: &Path, node_key: LedgerKey) -> Result<Store, StoreError> {
        Store::open_inner_with_branch(path, None, StoreOptions { replica: true, ..Default::default() }, Some(node_key))
    }

    fn open_inner(path: &Path, key: Option<LedgerKey>, options: StoreOptions) -> Result<Store, StoreError> {
        Store::open_inner_with_branch(path, key, options, None)
    }

    /// Open (creating the tables if new) a store in a PostgreSQL database. The caller holds
    /// the writer's lock (see `vaidya serve`): a second writer would fork the hash chain.
    pub fn open_location(location: Location, key: LedgerKey, options: StoreOptions) -> Result<Store, StoreError> {
        Store::open_at(location, Some(key), options, None)
    }

    fn open_inner_with_branch(path: &Path, key: Option<LedgerKey>, options: StoreOptions, branch_key: Option<LedgerKey>) -> Result<Store, StoreError> {
        Store::open_at(Location::File(path.to_path_buf()), key, options, branch_key)
    }

    fn open_at(location: Location, key: Option<LedgerKey>, options: StoreOptions, branch_key: Option<LedgerKey>) -> Result<Store, StoreError> {
        let conn = match &location {
            Location::File(path) => {
                let conn = db::open_writer(path)?;
                if options.restoring {
                    conn.pragma_update(None, "journal_mode", "MEMORY")?;
                    conn.pragma_update(None, "synchronous", "OFF")?;
                }
                init_schema(&conn)?;
                Conn::Sqlite(conn)
            }
            Location::Postgres(target) => {
                let conn = target.connect()?;
                schema::postgres::init(&conn)?;
                Conn::Postgres(Box::new(conn))
            }
        };
        create_secondary_indexes(&conn)?;
        let (checkpointed_tx, checkpointed) = tokio::sync::watch::channel(0);
        let key = key.filter(|_| !options.replica);
        let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = Writer::new(conn, location.clone(), writing.clone(), key, branch_key, options.checkpoint_every_commit, checkpointed_tx)?;
        let (writer_tx, rx) = crossbeam_channel::bounded(writer::QUEUE_DEPTH);
        let handle = std::thread::Builder::new()
            .name("vaidya-writer".into())
            .spawn(move || writer.run(rx))?;
        let (readers_tx, readers_rx) = crossbeam_channel::bounded(READERS);
        for _ in 0..READERS {
            readers_tx.send(location.open_reader()?).expect("pool has room for every reader");
        }
        Ok(Store {
            location,
            writing,
            checkpointed,
            gate: std::sync::OnceLock::new(),
            writer_tx,
            writer_thread: Mutex::new(Some(handle)),
            readers_tx,
            readers_rx,
        })
    }

    /// Where the database is.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Whether this process may write now: always on SQLite (the data directory's lock is the
    /// writer's lock); on PostgreSQL, while it holds the writer's advisory lock. Several
    /// `vaidya serve` share one PostgreSQL database: one writes, the others serve reads and
    /// take the lock over when the writer's session ends.
    pub fn is_writer(&self) -> bool {
        self.writing.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The size of the latest signed checkpoint, updated as checkpoints are signed.
    pub fn checkpoints(&self) -> tokio::sync::watch::Receiver<u64> {
        self.checkpointed.clone()
    }

    /// From now on, [`Store::write`] answers only once `shipped` has reached the ledger's size
    /// after the write's commit (or `timeout` passed: then [`StoreError::NotShipped`]). Set
    /// once, by synchronous backups.
    pub fn gate_writes_on(&self, shipped: tokio::sync::watch::Receiver<u64>, timeout: std::time::Duration) {
        let _ = self.gate.set(Gate { shipped, timeout });
    }

    /// Run `f` on the writer thread inside a write transaction; resolves after the commit
    /// (and, with synchronous backups, after the backup has it). If `f` fails, everything it
    /// wrote is rolled back and its error returned.
    pub async fn write<T, E>(&self, f: impl FnOnce(&mut WriteTx<'_>) -> Result<T, E> + Send + 'static) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let size = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        self.submit_job_sized(f, reply, true, Some(size.clone()))?;
        let result = rx.await.map_err(|_| E::from(StoreError::WriterGone))?;
        if let (Ok(_), Some(gate)) = (&result, self.gate.get()) {
            gate.wait(size.load(std::sync::atomic::Ordering::Acquire)).await.map_err(E::from)?;
        }
        result
    }

    /// [`Store::write`] for callers outside an async runtime (import, tools, tests).
    pub fn write_blocking<T, E>(&self, f: impl FnOnce(&mut WriteTx<'_>) -> Result<T, E> + Send + 'static) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.submit(f, reply)?;
        rx.blocking_recv().map_err(|_| E::from(StoreError::WriterGone))?
    }

    /// Submit without waiting; the result arrives on `reply` after the commit. Lets bulk import
    /// keep the writer's queue full.
    pub fn submit<T, E>(
        &self,
        f: impl FnOnce(&mut WriteTx<'_>) -> Result<T, E> + Send + 'static,
        reply: tokio::sync::oneshot::Sender<Result<T, E>>,
    ) -> Result<(), StoreError>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.submit_job(f, reply, true)
    }

    /// [`Store::submit`] for a job that cannot fail after it has written, except through a
    /// fault (plain creates in a bulk load): it runs without a savepoint, and should it fail
    /// after all, its whole commit group is rolled back and every job in it hears so.
    pub fn submit_unguarded<T, E>(
        &self,
        f: impl FnOnce(&mut WriteTx<'_>) -> Result<T, E> + Send + 'static,
        reply: tokio::sync::oneshot::Sender<Result<T, E>>,
    ) -> Result<(), StoreError>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.submit_job(f, reply, false)
    }

    fn submit_job<T, E>(
        &self,
        f: impl FnOnce(&mut WriteTx<'_>) -> Result<T, E> + Send + 'static,
        reply: tokio::sync::oneshot::Sender<Result<T, E>>,
        guarded: bool,
    ) -> Result<(), StoreError>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.submit_job_sized(f, reply, guarded, None)
    }

    /// [`Store::submit_job`] that also stores the ledger's size after the commit in `size`
    /// (before the reply is sent).
    fn submit_job_sized<T, E>(
        &self,
        f: impl FnOnce(&mut WriteTx<'_>) -> Result<T, E> + Send + 'static,
        reply: tokio::sync::oneshot::Sender<Result<T, E>>,
        guarded: bool,
        size: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    ) -> Result<(), StoreError>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        if !self.is_writer() {
            return Err(StoreError::NotWriter);
        }
        let run: writer::JobFn = Box::new(move |tx| {
            let result = f(tx);
            let ok = result.is_ok();
            let complete: writer::Completion = Box::new(move |commit| {
                let out = match commit {
                    Ok(committed) => {
                        if let Some(size) = size {
                            size.store(committed, std::sync::atomic::Ordering::Release);
                        }
                        result
                    }
                    Err(e) => Err(E::from(e)),
                };
                let _ = reply.send(out);
            });
            (ok, complete)
        });
        self.writer_tx.send(Message::Job(writer::Job { run, guarded })).map_err(|_| StoreError::WriterGone)
    }

    /// Run `f` with a reader connection (blocking; call from a blocking context).
    pub fn read<T, E: From<StoreError>>(&self, f: impl FnOnce(&Conn) -> Result<T, E>) -> Result<T, E> {
        // The PostgreSQL client blocks on a runtime of its own, which tokio forbids on an async
        // worker thread unless the worker is first handed over (short point reads are made
        // right on the workers; on SQLite they cost microseconds and need no hand-over).
        if matches!(self.location, Location::Postgres(_))
            && tokio::runtime::Handle::try_current().is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
        {
            return tokio::task::block_in_place(|| self.read_here(f));
        }
        self.read_here(f)
    }

    fn read_here<T, E: From<StoreError>>(&self, f: impl FnOnce(&Conn) -> Result<T, E>) -> Result<T, E> {
        let conn = self.readers_rx.recv().map_err(|_| E::from(StoreError::WriterGone))?;
        let guard = ReturnOnDrop { conn: Some(conn), pool: &self.readers_tx, location: &self.location };
        f(guard.conn.as_ref().expect("present until drop"))
    }

    /// Drop the secondary indexes before loading much data at once; [`Store::end_bulk_load`]
    /// rebuilds them with one sorted pass each, which costs far less than keeping them up to
    /// date row by row at random places. Searches still work meanwhile, by scanning.
    pub fn begin_bulk_load(&self) -> Result<(), StoreError> {
        self.write_blocking(|tx| {
            for sql in schema::SECONDARY_INDEXES {
                let name = sql
                    .strip_prefix("CREATE INDEX IF NOT EXISTS ")
                    .and_then(|rest| rest.split_whitespace().next())
                    .expect("secondary index statements name their index");
                Db::execute_batch(tx.conn(), &format!("DROP INDEX IF EXISTS {name}"))?;
            }
            Ok(())
        })
    }

    /// Rebuild the secondary indexes after a bulk load.
    pub fn end_bulk_load(&self) -> Result<(), StoreError> {
        self.write_blocking(|tx| {
            // CREATE INDEX sorts the whole table. With the writer's settings (temporary data in
            // memory, a 256 MiB page cache) the sort of 1,000,000 patients' string index took
            // 72 s; with temporary files and a small cache, 28 s (BENCHMARKS.md, backups).
            let Some(conn) = tx.conn().sqlite() else { return create_secondary_indexes(tx.conn()) };
            conn.pragma_update(None, "temp_store", "FILE")?;
            conn.pragma_update(None, "cache_size", -2_000)?;
            let built = create_secondary_indexes(tx.conn());
            conn.pragma_update(None, "temp_store", "MEMORY")?;
            conn.pragma_update(None, "cache_size", db::WRITER_CACHE_KIB)?;
            built
        })
    }

    /// Sign a final checkpoint, flush the WAL and stop the writer. Idempotent.
    pub fn shutdown(&self) {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        if self.writer_tx.send(Message::Shutdown(done_tx)).is_ok() {
            let _ = done_rx.recv();
        }
        if let Some(handle) = self.writer_thread.lock().expect("not poisoned").take() {
            let _ = handle.join();
        }
    }
}

/// Synchronous backups: a write is answered once the ledger is shipped past it.
struct Gate {
    shipped: tokio::sync::watch::Receiver<u64>,
    timeout: std::time::Duration,
}

impl Gate {
    async fn wait(&self, size: u64) -> Result<(), StoreError> {
        let mut shipped = self.shipped.clone();
        match tokio::time::timeout(self.timeout, shipped.wait_for(|s| *s >= size)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(StoreError::NotShipped(size)),
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct ReturnOnDrop<'p> {
    conn: Option<Conn>,
    pool: &'p crossbeam_channel::Sender<Conn>,
    location: &'p Location,
}

impl Drop for ReturnOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            // A PostgreSQL connection lost (a failover) is replaced; if the database cannot be
            // reached yet, the lost one goes back and the next read tries again.
            if let Conn::Postgres(pg) = &conn
                && pg.is_closed()
                && let Ok(fresh) = self.location.open_reader()
            {
                conn = fresh;
            }
            let _ = self.pool.send(conn);
        }
    }
}

fn init_schema(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version == 0 {
        conn.execute_batch(&format!(
            "BEGIN; {} PRAGMA user_version = {}; COMMIT;",
            schema::SCHEMA,
            schema::SCHEMA_VERSION
        ))?;
        return Ok(());
    }
    if !(1..=schema::SCHEMA_VERSION).contains(&version) {
        return Err(StoreError::Corrupt(format!(
            "database schema version {version} is not one this Vaidya knows (1 to {})",
            schema::SCHEMA_VERSION
        )));
    }
    for v in version..schema::SCHEMA_VERSION {
        let step = schema::MIGRATIONS[(v - 1) as usize];
        conn.execute_batch(&format!("BEGIN; {step}; PRAGMA user_version = {}; COMMIT;", v + 1))?;
    }
    Ok(())
}

/// Create the secondary indexes that are missing (all of them for a new database; those an
/// interrupted bulk load dropped).
fn create_secondary_indexes(conn: &impl Db) -> Result<(), StoreError> {
    let dialect = conn.dialect();
    for sql in schema::ADDED_TABLES {
        conn.execute_batch(&schema::for_dialect(sql, dialect))?;
    }
    for sql in schema::SECONDARY_INDEXES {
        conn.execute_batch(sql)?;
    }
    for sql in state::version_triggers(dialect) {
        conn.execute_batch(&sql)?;
    }
    Ok(())
}

/// The Merkle tree's right edge after the first `size` entries, from the stored hashes (where
/// a department node's branch continues the ledger).
pub fn frontier_at(conn: &impl Db, size: u64) -> Result<vaidya_ledger::Frontier, StoreError> {
    vaidya_ledger::Frontier::at(size, &merkle::DbHashReader(conn))
        .map_err(|e| StoreError::Corrupt(format!("Merkle tree hashes unreadable at {size} entries: {e}")))
}

/// The leaf hash of entry `seq` (the hash the next entry chains to), if the ledger has it.
pub fn leaf_at(conn: &impl Db, seq: u64) -> Result<Option<vaidya_ledger::EntryHash>, StoreError> {
    let bytes: Option<Vec<u8>> = conn.query_value("SELECT entry FROM ledger WHERE seq = ?1", &sql_params![seq as i64])?;
    Ok(bytes.map(|b| vaidya_ledger::hash_encoded(&b)))
}

/// The ledger's Merkle root at `size` entries, from the stored tree hashes (drills compare a
/// restored copy with it).
pub fn merkle_root(conn: &impl Db, size: u64) -> Result<vaidya_ledger::Hash, StoreError> {
    merkle::root(conn, size).map_err(|e| StoreError::Corrupt(format!("cannot compute the Merkle root at {size} entries: {e}")))
}

/// Open a read-only connection for offline tools (verify) without starting a writer.
pub fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    if !path.exists() {
        return Err(StoreError::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no database at {}", path.display()),
        )));
    }
    Ok(db::open_reader(path)?)
}

/// [`open_admin`] wherever the database is (creating PostgreSQL's tables if new).
pub fn open_admin_at(location: &Location) -> Result<Conn, StoreError> {
    match location {
        Location::File(path) => Ok(Conn::Sqlite(open_admin(path)?)),
        Location::Postgres(target) => {
            let conn = target.connect()?;
            schema::postgres::init(&conn)?;
            Ok(Conn::Postgres(Box::new(conn)))
        }
    }
}

/// Open a write connection for account administration (users, tokens) beside a running
/// server: these tables are not ledgered, and SQLite serialises the two writers.
pub fn open_admin(path: &Path) -> Result<Connection, StoreError> {
    let conn = db::open_writer(path)?;
    init_schema(&conn)?;
    Ok(conn)
}
