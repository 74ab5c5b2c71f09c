//! The audit journal: the ledger's entries, in append-only segment files.
//!
//! `<audit>/journal/<first seq, 20 digits>.log`: an 8-byte magic, then one frame per entry,
//! in sequence order: `[u32 little-endian length][entry bytes][32-byte leaf hash]`. The entry
//! bytes are exactly a data-ledger entry ([`vaidya_ledger::Entry::encode`]); the leaf hash is
//! its RFC 6962 leaf hash, stored so that a reader can tell a frame cut short by a crash (the
//! length runs past the end of the file) from one that was altered (the hash does not match).
//! A new segment starts once the current one holds [`SEGMENT_BYTES`]; a batch of frames is
//! never split between two segments.
//!
//! Why files and not SQLite rows: an audited read must be durable before it is answered, so the
//! audit record is on every request's path. Appending a frame to a buffer and writing the buffer
//! with one `fdatasync` per batch costs a few microseconds of CPU per event; inserting the same
//! entry as a row (B-tree pages, WAL frames, index rows) cost 20-30 (BENCHMARKS.md).

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The journal directory inside the audit directory.
pub const JOURNAL_DIR: &str = "journal";
/// A segment is closed and a new one started once it holds this many bytes.
pub const SEGMENT_BYTES: u64 = 64 << 20;
/// Every segment starts with these bytes.
pub(crate) const MAGIC: &[u8; 8] = b"VDYAUDJ1";
/// Where a segment's first frame starts.
pub(crate) const HEADER: u64 = MAGIC.len() as u64;
/// A frame longer than this is damage, not an entry (an entry is at most
/// [`crate::MAX_EVENT_BYTES`] of JSON plus a short header).
const MAX_ENTRY_BYTES: u32 = 1 << 20;

/// Where an entry's frame starts: the segment (named by its first sequence number) and the
/// byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    pub(crate) seg: u64,
    pub(crate) off: u64,
}

pub(crate) fn journal_dir(audit_dir: &Path) -> PathBuf {
    audit_dir.join(JOURNAL_DIR)
}

pub(crate) fn segment_path(audit_dir: &Path, seg: u64) -> PathBuf {
    journal_dir(audit_dir).join(format!("{seg:020}.log"))
}

/// The segments present, in order (their first sequence numbers). Other files are ignored.
pub(crate) fn segments(audit_dir: &Path) -> std::io::Result<Vec<u64>> {
    let dir = journal_dir(audit_dir);
    let mut out = Vec::new();
    let listing = match std::fs::read_dir(&dir) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for item in listing {
        let name = item?.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".log")) else { continue };
        if stem.len() == 20
            && let Ok(seg) = stem.parse::<u64>()
        {
            out.push(seg);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Append one frame to `out`.
pub(crate) fn push_frame(out: &mut Vec<u8>, entry: &[u8], leaf: &[u8; 32]) {
    out.extend_from_slice(&(entry.len() as u32).to_le_bytes());
    out.extend_from_slice(entry);
    out.extend_from_slice(leaf);
}

/// One frame read back.
#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) off: u64,
    pub(crate) entry: Vec<u8>,
    /// The leaf hash stored after the entry (not checked here).
    pub(crate) leaf: [u8; 32],
}

impl Frame {
    /// Offset just past this frame.
    pub(crate) fn end(&self) -> u64 {
        self.off + 4 + self.entry.len() as u64 + 32
    }
}

/// What the next read found.
#[derive(Debug)]
pub(crate) enum Next {
    Frame(Frame),
    /// The file ends inside a frame (at this offset): a write cut short.
    Torn(u64),
    End,
}

/// Frames of one segment, in order, from a given offset.
pub(crate) struct SegmentReader {
    r: BufReader<File>,
    off: u64,
    len: u64,
}

impl SegmentReader {
    /// Open segment `seg` and start at `off` (the first frame if `off` is before it).
    pub(crate) fn open(audit_dir: &Path, seg: u64, off: u64) -> std::io::Result<SegmentReader> {
        let path = segment_path(audit_dir, seg);
        let mut f = File::open(&path)?;
        let len = f.metadata()?.len();
        let mut magic = [0u8; 8];
        if len < HEADER || {
            f.read_exact(&mut magic)?;
            &magic != MAGIC
        } {
            return Err(invalid(format!("{} is not an audit journal segment", path.display())));
        }
        let off = off.max(HEADER);
        f.seek(SeekFrom::Start(off))?;
        Ok(SegmentReader { r: BufReader::with_capacity(256 * 1024, f), off, len })
    }

    pub(crate) fn next(&mut self) -> std::io::Result<Next> {
        let left = self.len.saturating_sub(self.off);
        if left == 0 {
            return Ok(Next::End);
        }
        if left < 4 {
            return Ok(Next::Torn(self.off));
        }
        let mut len = [0u8; 4];
        self.r.read_exact(&mut len)?;
        let len = u32::from_le_bytes(len);
        if len > MAX_ENTRY_BYTES {
            return Err(invalid(format!("frame at offset {} claims {len} bytes", self.off)));
        }
        if left < 4 + len as u64 + 32 {
            return Ok(Next::Torn(self.off));
        }
        let mut entry = vec![0u8; len as usize];
        self.r.read_exact(&mut entry)?;
        let mut leaf = [0u8; 32];
        self.r.read_exact(&mut leaf)?;
        let frame = Frame { off: self.off, entry, leaf };
        self.off = frame.end();
        Ok(Next::Frame(frame))
    }
}

/// The frame at `off` of an open segment file.
pub(crate) fn read_frame_at(file: &File, off: u64) -> std::io::Result<Frame> {
    let mut len = [0u8; 4];
    file.read_exact_at(&mut len, off)?;
    let len = u32::from_le_bytes(len);
    if len > MAX_ENTRY_BYTES {
        return Err(invalid(format!("frame at offset {off} claims {len} bytes")));
    }
    let mut entry = vec![0u8; len as usize];
    file.read_exact_at(&mut entry, off + 4)?;
    let mut leaf = [0u8; 32];
    file.read_exact_at(&mut leaf, off + 4 + len as u64)?;
    Ok(Frame { off, entry, leaf })
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

/// Every frame from `from` to the end of the journal, in order, across segments, with the
/// segment it is in, until `each` answers `false`. A frame cut short at the very end of the
/// last segment ends the walk (`Torn` is passed to `each` so a writer can cut it off);
/// anywhere else it is damage.
pub(crate) fn walk(
    audit_dir: &Path,
    from: Pos,
    mut each: impl FnMut(u64, Next) -> Result<bool, crate::AuditError>,
) -> Result<(), crate::AuditError> {
    let segs = segments(audit_dir)?;
    let later: Vec<u64> = segs.iter().copied().filter(|s| *s >= from.seg).collect();
    for (i, seg) in later.iter().enumerate() {
        let off = if *seg == from.seg { from.off } else { HEADER };
        let mut r = SegmentReader::open(audit_dir, *seg, off)?;
        loop {
            match r.next()? {
                Next::End => break,
                Next::Torn(off) if i + 1 == later.len() => {
                    each(*seg, Next::Torn(off))?;
                    return Ok(());
                }
                Next::Torn(off) => {
                    return Err(crate::AuditError::Corrupt(format!(
                        "segment {} ends inside a frame at offset {off}, and a later segment exists",
                        segment_path(audit_dir, *seg).display()
                    )));
                }
                frame => {
                    if !each(*seg, frame)? {
                        return Ok(());
                    }
                }
            }
        }
    }
    Ok(())
}
