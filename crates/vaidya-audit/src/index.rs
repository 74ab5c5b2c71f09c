//! The report indexes: for each closed journal segment, which of its entries name each patient
//! and each user, so that `vaidya audit report` reads only the frames it needs.
//!
//! `<audit>/index/<first seq, 20 digits>.idx`, written once, when the writer closes the segment
//! (and rebuilt from the segment at the next start when missing or not whole). Derived data:
//! `verify` recomputes every index file from its segment and names the first entry that
//! disagrees; a report that finds no index file for a segment reads the segment itself, and
//! reads the open (last) segment, which never has one, whole.
//!
//! Layout (little-endian `u64`s): the magic `VDYAUDX1`; the segment's first sequence number, its
//! number of entries, the number of patient postings P and of user postings U (one per entry, so
//! U equals the number of entries); P patient
//! postings, then U user postings, each `(key hash, seq, frame offset)`, sorted; then the
//! SHA-256 of every byte before it.
//!
//! Why files and not an ordered SQLite index (what this replaced): two row inserts per event
//! and the periodic merge into an index that grows with the ledger (each merge rewrote most of
//! its pages) were ~6 µs of CPU of an audited read's ~36 (BENCHMARKS.md); a posting is 24 bytes
//! pushed onto a vector, sorted and written once per 64 MiB segment, and a lookup is a binary
//! search per segment. A key is stored as its 64-bit FNV-1a hash: reports check each entry
//! they read against the key itself, so a collision costs a wasted read, never a wrong answer.

use crate::AuditError;
use crate::journal::{HEADER, Next, SegmentReader};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use vaidya_ledger::Entry;

/// The index directory inside the audit directory.
pub const INDEX_DIR: &str = "index";
const MAGIC: &[u8; 8] = b"VDYAUDX1";
/// Magic and four counts.
const HEAD: u64 = 8 + 4 * 8;
const POSTING: u64 = 24;
const TRAILER: u64 = 32;

/// What a report looks for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Key<'a> {
    Patient(&'a str),
    User(&'a str),
}

impl Key<'_> {
    fn hash(&self) -> u64 {
        match self {
            Key::Patient(p) => patient_hash(p),
            Key::User(u) => user_hash(u),
        }
    }

    /// The bytes every entry filed under this key contains (the patient's id or the user's name).
    pub(crate) fn needle(&self) -> &[u8] {
        match self {
            Key::Patient(k) | Key::User(k) => k.as_bytes(),
        }
    }

    /// Whether `entry` is filed under this key.
    pub(crate) fn names(&self, entry: &Entry) -> Result<bool, String> {
        Ok(match self {
            Key::User(u) => entry.author == *u,
            Key::Patient(p) => crate::verify::content_keys(entry)?.1.iter().any(|x| x == p),
        })
    }
}

fn patient_hash(id: &str) -> u64 {
    fnv1a(b'p', id)
}

fn user_hash(name: &str) -> u64 {
    fnv1a(b'u', name)
}

/// 64-bit FNV-1a of a kind byte and the key (stable across versions: it is stored).
fn fnv1a(kind: u8, key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::iter::once(kind).chain(key.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// `(key hash, seq, frame offset)`.
pub(crate) type Posting = (u64, u64, u64);

/// The postings of one segment's entries (or of one batch's, with offsets in the batch).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Postings {
    pub(crate) patients: Vec<Posting>,
    /// One per entry, in the order added (sequence order until [`Postings::seal`]).
    pub(crate) users: Vec<Posting>,
}

impl Postings {
    /// Entry `seq`, whose frame starts at `off`, by `user`, naming `patients`: the one place
    /// where keys become hashes (the writer, a rebuild and `verify` all come through here).
    pub(crate) fn add<P: AsRef<str>>(&mut self, seq: u64, off: u64, user: &str, patients: &[P]) {
        self.users.push((user_hash(user), seq, off));
        self.patients.extend(patients.iter().map(|p| (patient_hash(p.as_ref()), seq, off)));
    }

    /// How many entries these postings are of.
    pub(crate) fn entries(&self) -> u64 {
        self.users.len() as u64
    }

    /// Append `other`'s postings with their offsets moved by `base` (a flushed batch).
    pub(crate) fn append_at(&mut self, other: &Postings, base: u64) {
        self.users.extend(other.users.iter().map(|&(k, s, o)| (k, s, o + base)));
        self.patients.extend(other.patients.iter().map(|&(k, s, o)| (k, s, o + base)));
    }

    pub(crate) fn clear(&mut self) {
        self.users.clear();
        self.patients.clear();
    }

    /// Sorted, each posting once (an event may name a patient twice).
    fn seal(&mut self) {
        for v in [&mut self.patients, &mut self.users] {
            v.sort_unstable();
            v.dedup();
        }
    }

    fn encode(&self, seg: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity((HEAD + POSTING * (self.patients.len() + self.users.len()) as u64 + TRAILER) as usize);
        out.extend_from_slice(MAGIC);
        for n in [seg, self.entries(), self.patients.len() as u64, self.users.len() as u64] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        for &(k, s, o) in self.patients.iter().chain(&self.users) {
            for n in [k, s, o] {
                out.extend_from_slice(&n.to_le_bytes());
            }
        }
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        out
    }
}

pub(crate) fn index_dir(audit_dir: &Path) -> PathBuf {
    audit_dir.join(INDEX_DIR)
}

pub(crate) fn index_path(audit_dir: &Path, seg: u64) -> PathBuf {
    index_dir(audit_dir).join(format!("{seg:020}.idx"))
}

/// The segments that have an index file, in order.
pub(crate) fn indexed_segments(audit_dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut out = Vec::new();
    let listing = match std::fs::read_dir(index_dir(audit_dir)) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for item in listing {
        let name = item?.file_name();
        if let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".idx"))
            && stem.len() == 20
            && let Ok(seg) = stem.parse::<u64>()
        {
            out.push(seg);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Write segment `seg`'s index file whole: to a temporary file, flushed, then renamed into
/// place, so that a file under the index's name is always complete.
pub(crate) fn write(audit_dir: &Path, seg: u64, mut postings: Postings) -> std::io::Result<()> {
    postings.seal();
    let dir = index_dir(audit_dir);
    std::fs::create_dir_all(&dir)?;
    let tmp = dir.join(format!("{seg:020}.idx.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(&postings.encode(seg))?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, index_path(audit_dir, seg))
}

/// The postings of segment `seg`, read from the segment itself (a frame cut short at its end
/// ends it).
pub(crate) fn postings_of_segment(audit_dir: &Path, seg: u64) -> Result<Postings, AuditError> {
    let mut out = Postings::default();
    let mut r = SegmentReader::open(audit_dir, seg, HEADER)?;
    while let Next::Frame(f) = r.next()? {
        let entry = Entry::decode(&f.entry).map_err(|e| AuditError::Corrupt(format!("segment {seg}, offset {}: {e}", f.off)))?;
        let (user, patients) = crate::verify::content_keys(&entry).map_err(|e| AuditError::Corrupt(format!("entry {}: {e}", entry.seq)))?;
        out.add(entry.seq, f.off, &user, &patients);
    }
    Ok(out)
}

/// Remove temporary files an interrupted [`write`] left behind.
pub(crate) fn remove_leftovers(audit_dir: &Path) -> std::io::Result<()> {
    let Ok(listing) = std::fs::read_dir(index_dir(audit_dir)) else { return Ok(()) };
    for item in listing {
        let item = item?;
        if item.file_name().to_str().is_some_and(|n| n.ends_with(".idx.tmp")) {
            std::fs::remove_file(item.path())?;
        }
    }
    Ok(())
}

/// An index file opened for lookups.
pub(crate) struct IndexFile {
    file: File,
    pub(crate) entries: u64,
    patients: u64,
    users: u64,
}

impl IndexFile {
    /// The index of segment `seg`, if there is one whose header is whole and consistent (one
    /// user posting per entry) and whose length fits it (files are written whole, so this is
    /// what a crash or a deletion can leave otherwise).
    pub(crate) fn open(audit_dir: &Path, seg: u64) -> Option<IndexFile> {
        let file = File::open(index_path(audit_dir, seg)).ok()?;
        let len = file.metadata().ok()?.len();
        let mut head = [0u8; HEAD as usize];
        file.read_exact_at(&mut head, 0).ok()?;
        let n = |i: usize| u64::from_le_bytes(head[8 + 8 * i..16 + 8 * i].try_into().expect("8 bytes"));
        let (entries, patients, users) = (n(1), n(2), n(3));
        let expected = patients.checked_add(users)?.checked_mul(POSTING)?.checked_add(HEAD + TRAILER)?;
        (&head[..8] == MAGIC && n(0) == seg && entries == users && len == expected).then_some(IndexFile { file, entries, patients, users })
    }

    /// `(seq, frame offset)` of the postings under `key`'s hash, in sequence order.
    pub(crate) fn lookup(&self, key: Key<'_>) -> std::io::Result<Vec<(u64, u64)>> {
        let (start, count) = match key {
            Key::Patient(_) => (HEAD, self.patients),
            Key::User(_) => (HEAD + self.patients * POSTING, self.users),
        };
        let at = |i: u64| -> std::io::Result<Posting> {
            let mut b = [0u8; POSTING as usize];
            self.file.read_exact_at(&mut b, start + i * POSTING)?;
            let n = |j: usize| u64::from_le_bytes(b[8 * j..8 * j + 8].try_into().expect("8 bytes"));
            Ok((n(0), n(1), n(2)))
        };
        let want = key.hash();
        // The first posting whose hash is not below `want`.
        let (mut lo, mut hi) = (0u64, count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if at(mid)?.0 < want {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut out = Vec::new();
        while lo < count {
            let (k, seq, off) = at(lo)?;
            if k != want {
                break;
            }
            out.push((seq, off));
            lo += 1;
        }
        Ok(out)
    }
}

/// Segment `seg`'s index file read whole and its checksum checked (for `verify`).
pub(crate) fn read(audit_dir: &Path, seg: u64) -> Result<Postings, String> {
    let bytes = std::fs::read(index_path(audit_dir, seg)).map_err(|e| e.to_string())?;
    if (bytes.len() as u64) < HEAD + TRAILER || &bytes[..8] != MAGIC {
        return Err("it is not an index file".into());
    }
    let (body, digest) = bytes.split_at(bytes.len() - TRAILER as usize);
    if Sha256::digest(body).as_slice() != digest {
        return Err("its checksum does not match its contents".into());
    }
    let words: Vec<u64> = body[8..].chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
    if body[8..].len() % 8 != 0 || words.len() < 4 {
        return Err("its length is not whole postings".into());
    }
    let (head, rest) = words.split_at(4);
    let (file_seg, entries, p, u) = (head[0], head[1], head[2] as usize, head[3] as usize);
    if file_seg != seg {
        return Err(format!("it is the index of segment {file_seg}"));
    }
    if rest.len() != 3 * (p + u) {
        return Err("its counts do not match its length".into());
    }
    if entries != u as u64 {
        return Err(format!("it counts {entries} entries and {u} user postings (one per entry)"));
    }
    let postings: Vec<Posting> = rest.chunks_exact(3).map(|c| (c[0], c[1], c[2])).collect();
    Ok(Postings { patients: postings[..p].to_vec(), users: postings[p..].to_vec() })
}

/// Compare segment `seg`'s stored index with the postings recomputed from its entries: `None`
/// when they agree, else the first entry concerned and what is wrong.
pub(crate) fn difference(audit_dir: &Path, seg: u64, mut computed: Postings) -> Option<(u64, String)> {
    computed.seal();
    let stored = match read(audit_dir, seg) {
        Ok(s) => s,
        Err(e) => return Some((seg, format!("the index file of segment {seg} is damaged: {e}"))),
    };
    if stored == computed {
        return None;
    }
    // The smallest sequence number whose postings differ.
    let by_seq = |p: &Postings| {
        let mut v: Vec<(u64, u8, u64, u64)> = p.patients.iter().map(|&(k, s, o)| (s, b'p', k, o)).collect();
        v.extend(p.users.iter().map(|&(k, s, o)| (s, b'u', k, o)));
        v.sort_unstable();
        v
    };
    let (a, b) = (by_seq(&stored), by_seq(&computed));
    let first = a.iter().zip(&b).find(|(x, y)| x != y).map(|(x, y)| x.0.min(y.0)).or_else(|| match a.len().cmp(&b.len()) {
        std::cmp::Ordering::Less => Some(b[a.len()].0),
        std::cmp::Ordering::Greater => Some(a[b.len()].0),
        std::cmp::Ordering::Equal => None,
    });
    Some(match first {
        Some(seq) => (seq, format!("the index file of segment {seg} files it differently from what it names (or at another place)")),
        None => (
            seg + stored.entries().min(computed.entries()),
            format!("the index file of segment {seg} counts {} entries, the segment holds {}", stored.entries(), computed.entries()),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Postings {
        let mut p = Postings::default();
        p.add(10, 8, "asha", &["p1", "p2", "p1"]);
        p.add(11, 300, "ravi", &[] as &[&str]);
        p.add(12, 600, "asha", &["p2"]);
        p
    }

    #[test]
    fn a_written_index_finds_each_key_in_sequence_order_and_reads_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 10, sample()).unwrap();
        let idx = IndexFile::open(dir.path(), 10).unwrap();
        assert_eq!(idx.entries, 3);
        assert_eq!(idx.lookup(Key::Patient("p1")).unwrap(), [(10, 8)]);
        assert_eq!(idx.lookup(Key::Patient("p2")).unwrap(), [(10, 8), (12, 600)]);
        assert_eq!(idx.lookup(Key::User("asha")).unwrap(), [(10, 8), (12, 600)]);
        assert_eq!(idx.lookup(Key::User("ravi")).unwrap(), [(11, 300)]);
        assert!(idx.lookup(Key::Patient("p3")).unwrap().is_empty());
        // A user and a patient of the same name are different keys.
        assert!(idx.lookup(Key::Patient("asha")).unwrap().is_empty());
        assert_eq!(difference(dir.path(), 10, sample()), None);
        assert_eq!(indexed_segments(dir.path()).unwrap(), [10]);
    }

    #[test]
    fn a_file_that_is_not_whole_is_not_used_and_a_changed_one_is_named_at_its_entry() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 10, sample()).unwrap();
        let path = index_path(dir.path(), 10);
        let bytes = std::fs::read(&path).unwrap();
        // Cut short: not opened for lookups (a report reads the segment instead).
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(IndexFile::open(dir.path(), 10).is_none());
        assert!(difference(dir.path(), 10, sample()).unwrap().1.contains("damaged"));
        // Under another segment's name: not used either.
        std::fs::write(&path, &bytes).unwrap();
        assert!(IndexFile::open(dir.path(), 11).is_none());
        // Entry 12 refiled under another user, with the checksum recomputed: named at 12.
        let mut changed = sample();
        changed.users[2].0 = user_hash("mallory");
        write(dir.path(), 10, changed).unwrap();
        let (seq, what) = difference(dir.path(), 10, sample()).unwrap();
        assert_eq!(seq, 12, "{what}");
        // Entry 11 dropped whole: named at 11.
        let mut p = Postings::default();
        p.add(10, 8, "asha", &["p1", "p2"]);
        p.add(12, 600, "asha", &["p2"]);
        write(dir.path(), 10, p).unwrap();
        assert_eq!(difference(dir.path(), 10, sample()).unwrap().0, 11);
    }

    #[test]
    fn hashes_are_stable() {
        // Stored in files: a change here would make every existing index file wrong.
        assert_eq!(fnv1a(b'p', ""), 0xaf63_ed4c_8602_096f);
        assert_ne!(patient_hash("p1"), user_hash("p1"));
    }
}
