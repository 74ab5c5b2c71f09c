//! What backups need of the audit ledger: its signed checkpoints and the entries between two of
//! them (shipping), and a verified copy written back into a new audit directory (restore).
//!
//! A checkpoint row records where the journal ended when it was signed, so the entries after
//! checkpoint A up to checkpoint B are exactly the frames from A's position: no index needed.

use crate::journal::{self, HEADER, MAGIC, Next, Pos};
use crate::{AuditError, DB_FILE};
use rusqlite::{Connection, params};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use crate::writer::Tip;
use vaidya_ledger::{Entry, Hash, hash_encoded};

/// A signed checkpoint of the audit ledger and where the journal ended at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpointed {
    pub tree_size: u64,
    pub time_ms: i64,
    /// The signed note (c2sp.org/tlog-checkpoint).
    pub note: String,
    end: Pos,
}

/// Opens `audit.db` read-only, for a process that ships beside the writer.
pub fn open_checkpoints(dir: &Path) -> Result<Connection, AuditError> {
    Ok(crate::schema::open_reader(&dir.join(DB_FILE))?)
}

/// The signed checkpoints after `size` entries, oldest first, at most `limit`.
pub fn checkpoints_after(db: &Connection, size: u64, limit: usize) -> Result<Vec<Checkpointed>, AuditError> {
    let mut stmt = db.prepare_cached(
        "SELECT tree_size, time_ms, note, seg, off FROM checkpoint WHERE tree_size > ?1 ORDER BY tree_size LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![size as i64, limit as i64], |r| {
        Ok(Checkpointed {
            tree_size: r.get::<_, i64>(0)? as u64,
            time_ms: r.get(1)?,
            note: r.get(2)?,
            end: Pos { seg: r.get::<_, i64>(3)? as u64, off: r.get::<_, i64>(4)? as u64 },
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The checkpoint at exactly `size` entries, if one was signed.
pub fn checkpoint_at(db: &Connection, size: u64) -> Result<Option<Checkpointed>, AuditError> {
    use rusqlite::OptionalExtension;
    Ok(db
        .prepare_cached("SELECT tree_size, time_ms, note, seg, off FROM checkpoint WHERE tree_size = ?1")?
        .query_row([size as i64], |r| {
            Ok(Checkpointed {
                tree_size: r.get::<_, i64>(0)? as u64,
                time_ms: r.get(1)?,
                note: r.get(2)?,
                end: Pos { seg: r.get::<_, i64>(3)? as u64, off: r.get::<_, i64>(4)? as u64 },
            })
        })
        .optional()?)
}

/// The canonical bytes of the entries after `from` (`None`: the start of the ledger) up to and
/// including `to`'s last entry, in order.
pub fn entries_between(dir: &Path, from: Option<&Checkpointed>, to: &Checkpointed) -> Result<Vec<Vec<u8>>, AuditError> {
    let (start, first_seq) = match from {
        Some(cp) => (cp.end, cp.tree_size + 1),
        None => (Pos { seg: journal::segments(dir)?.first().copied().unwrap_or(1), off: HEADER }, 1),
    };
    let wanted = (to.tree_size + 1).saturating_sub(first_seq) as usize;
    let mut out = Vec::with_capacity(wanted);
    if wanted == 0 {
        return Ok(out);
    }
    journal::walk(dir, start, |_seg, next| match next {
        Next::Frame(f) => {
            out.push(f.entry);
            Ok(out.len() < wanted)
        }
        Next::Torn(_) | Next::End => Ok(false),
    })?;
    if out.len() != wanted {
        return Err(AuditError::Corrupt(format!(
            "the audit journal holds {} of the {wanted} entries from {first_seq} to {}",
            out.len(),
            to.tree_size
        )));
    }
    Ok(out)
}

/// Writes a verified copy of an audit ledger into a new audit directory: the journal and the
/// checkpoints with the positions a writer restarts from. The report index is rebuilt from the
/// journal when the directory is first opened.
pub struct Restorer {
    dir: PathBuf,
    db: Connection,
    file: Option<File>,
    seg: u64,
    len: u64,
    segment_bytes: u64,
    tip: Tip,
    buf: Vec<u8>,
}

impl Restorer {
    /// Start a new audit directory at `dir` (which must not hold a journal yet).
    pub fn create(dir: &Path) -> Result<Restorer, AuditError> {
        if !journal::segments(dir)?.is_empty() {
            return Err(AuditError::Invalid(format!("{} already holds an audit journal", dir.display())));
        }
        std::fs::create_dir_all(journal::journal_dir(dir))?;
        let db = crate::schema::open_audit_db(&dir.join(DB_FILE))?;
        Ok(Restorer {
            dir: dir.to_path_buf(),
            db,
            file: None,
            seg: 0,
            len: 0,
            segment_bytes: journal::SEGMENT_BYTES,
            tip: Tip::genesis(),
            buf: Vec::with_capacity(1 << 20),
        })
    }

    /// Entries appended so far.
    pub fn size(&self) -> u64 {
        self.tip.size
    }

    /// Append the next entry (its canonical bytes, already decoded as `entry`); it must follow
    /// the last one in sequence and hash chain.
    pub fn append(&mut self, bytes: &[u8], entry: &Entry) -> Result<(), AuditError> {
        let seq = self.tip.size + 1;
        if entry.seq != seq || entry.prev_hash != self.tip.prev_hash {
            return Err(AuditError::Corrupt(format!("audit entry {} does not follow entry {}", entry.seq, self.tip.size)));
        }
        if self.file.is_none() || self.len + self.buf.len() as u64 >= self.segment_bytes {
            self.flush_buf()?;
            self.start_segment(seq)?;
        }
        let leaf = hash_encoded(bytes);
        journal::push_frame(&mut self.buf, bytes, &leaf.0);
        self.tip.frontier.append(seq - 1, leaf).map_err(|e| AuditError::Corrupt(format!("Merkle tree at audit entry {seq}: {e}")))?;
        self.tip.size = seq;
        self.tip.prev_hash = leaf;
        self.tip.last_time_ms = entry.time_ms;
        Ok(())
    }

    /// Store a checkpoint signed for the ledger as it now is; refused unless the root this copy
    /// computes is the one signed.
    pub fn checkpoint(&mut self, tree_size: u64, time_ms: i64, note: &str, root: Hash) -> Result<(), AuditError> {
        if tree_size != self.tip.size {
            return Err(AuditError::Corrupt(format!("an audit checkpoint for {tree_size} entries does not fit {}", self.tip.size)));
        }
        let ours = self.tip.frontier.root(tree_size).map_err(|e| AuditError::Corrupt(format!("Merkle root: {e}")))?;
        if ours != root {
            return Err(AuditError::Corrupt(format!("the audit Merkle root at {tree_size} entries differs from the checkpoint's")));
        }
        self.flush_buf()?;
        crate::writer::insert_checkpoint(&self.db, &self.tip, time_ms, note, Pos { seg: self.seg, off: self.len })
    }

    /// Flush everything to disk. Entries after the last checkpoint stay in the journal; the
    /// writer that opens the directory next reads and checks them.
    pub fn finish(mut self) -> Result<(), AuditError> {
        self.flush_buf()?;
        if let Some(f) = &self.file {
            f.sync_all()?;
        }
        File::open(journal::journal_dir(&self.dir))?.sync_all()?;
        self.db.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
        Ok(())
    }

    fn flush_buf(&mut self) -> Result<(), AuditError> {
        if let Some(f) = &mut self.file
            && !self.buf.is_empty()
        {
            f.write_all(&self.buf)?;
            self.len += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    fn start_segment(&mut self, first_seq: u64) -> Result<(), AuditError> {
        if let Some(f) = self.file.take() {
            f.sync_all()?;
        }
        let path = journal::segment_path(&self.dir, first_seq);
        let mut f = File::options().create_new(true).append(true).open(&path)?;
        f.write_all(MAGIC)?;
        self.seg = first_seq;
        self.len = HEADER;
        self.file = Some(f);
        Ok(())
    }
}
