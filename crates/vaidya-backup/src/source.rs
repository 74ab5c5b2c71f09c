//! What is shipped: the checkpointed ranges of each ledger, read beside the running writers.
//!
//! A segment always ends at a signed checkpoint, so a source offers ranges "after entry A, up
//! to checkpoint B". The data source also offers the state beside the ledger (accounts, grants,
//! counters), read in the same read transaction as the entries: whatever counters the shipped
//! entries advanced are in that state, or in a later one.

use crate::segment::Ledger;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use vaidya_store::sql::{Conn, Db};
use vaidya_store::{Location, sql_params};

/// Most entries in one segment, when checkpoints allow cutting there (a segment always ends at
/// a checkpoint; the store signs one at least every 200 ms of writing).
pub const MAX_SEGMENT_ENTRIES: u64 = 20_000;

/// A range ready to ship: the entries after `after` up to the checkpoint at `size`.
#[derive(Debug, Clone)]
pub struct Range {
    pub after: u64,
    pub size: u64,
    pub checkpoint: String,
    pub entries: Vec<Vec<u8>>,
    /// The state as of this read (data ledger only).
    pub state: Option<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0}")]
    Store(#[from] vaidya_store::StoreError),
    #[error("{0}")]
    Audit(#[from] vaidya_audit::AuditError),
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
}

pub trait Source: Send {
    fn ledger(&self) -> Ledger;
    /// The next range after `after` entries, if a checkpoint beyond it exists. `with_state`:
    /// also read the state (data ledger).
    fn next(&mut self, after: u64, with_state: bool) -> Result<Option<Range>, SourceError>;
    /// The latest signed checkpoint's size (what "caught up" means).
    fn checkpointed(&mut self) -> Result<u64, SourceError>;
}

/// The data ledger, through a read-only connection to the store's database.
pub struct DataSource {
    location: Location,
    conn: Option<Conn>,
}

impl DataSource {
    /// The store's SQLite file.
    pub fn new(db_path: &Path) -> DataSource {
        DataSource::at(Location::File(db_path.to_path_buf()))
    }

    /// The store wherever it is.
    pub fn at(location: Location) -> DataSource {
        DataSource { location, conn: None }
    }

    fn conn(&mut self) -> Result<&Conn, SourceError> {
        if self.conn.is_none() {
            self.conn = Some(match &self.location {
                Location::File(path) => Conn::Sqlite(vaidya_store::open_read_only(path)?),
                other => other.open_reader()?,
            });
        }
        Ok(self.conn.as_ref().expect("just opened"))
    }
}

impl Source for DataSource {
    fn ledger(&self) -> Ledger {
        Ledger::Data
    }

    fn next(&mut self, after: u64, with_state: bool) -> Result<Option<Range>, SourceError> {
        let conn = self.conn()?;
        // One read transaction: the checkpoint, its entries and the state are one snapshot.
        let result = vaidya_store::scan::in_snapshot(conn, |conn, _| read_data_range(conn, after, with_state));
        if result.is_err() {
            // A broken connection (a PostgreSQL failover) is opened afresh next time.
            self.conn = None;
        }
        result
    }

    fn checkpointed(&mut self) -> Result<u64, SourceError> {
        let conn = self.conn()?;
        let size: Option<i64> = conn.query_value("SELECT coalesce(max(tree_size), 0) FROM checkpoint", &[])?;
        Ok(size.unwrap_or(0) as u64)
    }
}

/// The entries after `after` up to the furthest signed checkpoint within [`MAX_SEGMENT_ENTRIES`]
/// (the nearest beyond it if none is within), with that checkpoint; read on `conn`.
pub fn read_data_range(conn: &impl Db, after: u64, with_state: bool) -> Result<Option<Range>, SourceError> {
    let cap = (after + MAX_SEGMENT_ENTRIES) as i64;
    let checkpoint = |r: &vaidya_store::sql::Cells| Ok((r.get::<u64>(0)?, r.get::<String>(1)?));
    // The furthest checkpoint within the cap, else the nearest beyond it.
    let pick = conn.query_opt(
        "SELECT tree_size, note FROM checkpoint WHERE tree_size > ?1 AND tree_size <= ?2 ORDER BY tree_size DESC LIMIT 1",
        &sql_params![after as i64, cap],
        checkpoint,
    )?;
    let pick = match pick {
        Some(p) => Some(p),
        None => conn.query_opt("SELECT tree_size, note FROM checkpoint WHERE tree_size > ?1 ORDER BY tree_size LIMIT 1", &sql_params![after as i64], checkpoint)?,
    };
    let (size, checkpoint) = match pick {
        Some(p) => p,
        None if with_state => {
            // Nothing new to ship, but the state may have changed: a range of no entries
            // ending at the checkpoint already shipped.
            match conn.query_opt("SELECT tree_size, note FROM checkpoint WHERE tree_size = ?1", &sql_params![after as i64], checkpoint)? {
                Some(p) => p,
                None => return Ok(None),
            }
        }
        None => return Ok(None),
    };
    let entries: Vec<Vec<u8>> =
        conn.query_map("SELECT entry FROM ledger WHERE seq > ?1 AND seq <= ?2 ORDER BY seq", &sql_params![after as i64, size as i64], |r| r.get(0))?;
    if entries.len() as u64 != size - after {
        return Err(SourceError::Store(vaidya_store::StoreError::Corrupt(format!(
            "the ledger holds {} of the entries {}..={size}",
            entries.len(),
            after + 1
        ))));
    }
    let state = if with_state { Some(vaidya_store::state::snapshot(conn)?) } else { None };
    Ok(Some(Range { after, size, checkpoint, entries, state }))
}

/// The audit ledger, through its checkpoints and journal.
pub struct AuditSource {
    dir: PathBuf,
    db: Option<Connection>,
}

impl AuditSource {
    pub fn new(audit_dir: &Path) -> AuditSource {
        AuditSource { dir: audit_dir.to_path_buf(), db: None }
    }

    fn db(&mut self) -> Result<&Connection, SourceError> {
        if self.db.is_none() {
            self.db = Some(vaidya_audit::ship::open_checkpoints(&self.dir)?);
        }
        Ok(self.db.as_ref().expect("just opened"))
    }
}

impl Source for AuditSource {
    fn ledger(&self) -> Ledger {
        Ledger::Audit
    }

    fn next(&mut self, after: u64, _with_state: bool) -> Result<Option<Range>, SourceError> {
        use vaidya_audit::ship;
        let dir = self.dir.clone();
        let db = self.db()?;
        let later = ship::checkpoints_after(db, after, 512)?;
        let Some(first) = later.first() else { return Ok(None) };
        let to = later.iter().rev().find(|c| c.tree_size - after <= MAX_SEGMENT_ENTRIES).unwrap_or(first).clone();
        let from = if after == 0 {
            None
        } else {
            Some(ship::checkpoint_at(db, after)?.ok_or_else(|| {
                vaidya_audit::AuditError::Corrupt(format!("no audit checkpoint at {after} entries, where the last segment ended"))
            })?)
        };
        let entries = ship::entries_between(&dir, from.as_ref(), &to)?;
        Ok(Some(Range { after, size: to.tree_size, checkpoint: to.note, entries, state: None }))
    }

    fn checkpointed(&mut self) -> Result<u64, SourceError> {
        let db = self.db()?;
        Ok(db.query_row("SELECT coalesce(max(tree_size), 0) FROM checkpoint", [], |r| r.get::<_, i64>(0))? as u64)
    }
}
