//! Database snapshots in a target, so that a restore replays only the ledger after the last
//! snapshot instead of every entry since the first (BENCHMARKS.md, backups: a replay runs at
//! 25,000-38,000 entries/s, copying a snapshot back is several times faster).
//!
//! A snapshot is a consistent copy of the database ([`vaidya_store::snapshot::copy`]) cut into
//! parts of [`PART_BYTES`], each sealed like a segment (zstd, then age to the offline keys),
//! and a manifest put last: the ledger size and Merkle root the copy holds, and the SHA-256 of
//! every sealed part, signed with the ledger key, then sealed. Keys:
//!
//! ```text
//! snapshot/<entries:020>-<made_ms:013>/part-00000 ... part-NNNNN
//! snapshot/<entries:020>-<made_ms:013>/manifest
//! ```
//!
//! A restore checks the manifest's signature, each part's hash, and then the copy's whole
//! ledger (hash chain, Merkle tree, every checkpoint) against the manifest's root and against
//! every segment's signed checkpoint that the copy covers: a snapshot whose ledger differs from
//! the segments in one entry is refused. The projections in the copy (current versions,
//! search indexes) are as signed by the server; `vaidya verify` after a restore recomputes
//! them from the ledger, and `vaidya restore --no-snapshot` rebuilds them by replay.

use crate::seal::{self, Identity, Recipients};
use crate::target::{Target, TargetError};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use vaidya_ledger::{Hash, LedgerKey};

/// Plain bytes per part: small enough to seal and open in memory, large enough that a big
/// database is tens of objects, not thousands.
pub const PART_BYTES: usize = 64 << 20;
/// Parts a manifest may name at most (64 MiB each: 4 TiB).
const MAX_PARTS: usize = 65_536;
const SIGNED_TEXT: &str = "vaidya database snapshot v1";

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("the manifest's signature does not verify with the ledger key: forged")]
    BadSignature,
    #[error("the manifest is damaged: {0}")]
    Malformed(String),
    #[error("the manifest is of another ledger ('{0}')")]
    WrongOrigin(String),
}

/// Which object of a snapshot a key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Object {
    Manifest,
    Part(u32),
}

pub fn folder(entries: u64, made_ms: i64) -> String {
    format!("snapshot/{entries:020}-{made_ms:013}/")
}

pub fn object_key(entries: u64, made_ms: i64, object: Object) -> String {
    match object {
        Object::Manifest => format!("{}manifest", folder(entries, made_ms)),
        Object::Part(i) => format!("{}part-{i:05}", folder(entries, made_ms)),
    }
}

/// (entries, made_ms, object) of a snapshot's key; `None` for anything else.
pub fn parse_object_key(key: &str) -> Option<(u64, i64, Object)> {
    let rest = key.strip_prefix("snapshot/")?;
    let (name, object) = rest.split_once('/')?;
    let (entries, made) = name.split_once('-')?;
    if entries.len() != 20 || made.len() != 13 || !entries.bytes().chain(made.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let object = match object {
        "manifest" => Object::Manifest,
        part => {
            let n = part.strip_prefix("part-")?;
            if n.len() != 5 || !n.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Object::Part(n.parse().ok()?)
        }
    };
    Some((entries.parse().ok()?, made.parse().ok()?, object))
}

/// What a snapshot holds, as its signed manifest says.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub origin: String,
    /// Ledger entries in the copy, their Merkle root and the last one's time.
    pub entries: u64,
    pub root: Hash,
    pub last_time_ms: i64,
    pub made_ms: i64,
    /// The database copy's size.
    pub bytes: u64,
    /// SHA-256 of each sealed part, in order.
    pub parts: Vec<[u8; 32]>,
}

impl Manifest {
    fn text(&self) -> String {
        let mut t = format!(
            "{SIGNED_TEXT}\norigin {}\nentries {}\nroot {}\nlast-time-ms {}\nmade-ms {}\nbytes {}\nparts {}\n",
            self.origin,
            self.entries,
            hex::encode(self.root.0),
            self.last_time_ms,
            self.made_ms,
            self.bytes,
            self.parts.len()
        );
        for p in &self.parts {
            t.push_str(&hex::encode(p));
            t.push('\n');
        }
        t
    }

    /// The signed note (then sealed by the caller like everything else in a target).
    pub fn encode(&self, key: &LedgerKey) -> Vec<u8> {
        vaidya_ledger::sign_note(key, &self.text()).expect("the manifest text ends with a newline").into_bytes()
    }

    pub fn decode(bytes: &[u8], verifier: &str, origin: &str) -> Result<Manifest, SnapshotError> {
        let note = std::str::from_utf8(bytes).map_err(|_| SnapshotError::Malformed("not text".into()))?;
        let text = vaidya_ledger::verify_note(note, verifier).map_err(|_| SnapshotError::BadSignature)?;
        let mut lines = text.lines();
        let bad = |what: &str| SnapshotError::Malformed(what.to_string());
        if lines.next() != Some(SIGNED_TEXT) {
            return Err(bad("not a Vaidya snapshot manifest of a version this Vaidya knows"));
        }
        let mut field = |name: &str| -> Result<String, SnapshotError> {
            lines
                .next()
                .and_then(|l| l.strip_prefix(name))
                .and_then(|l| l.strip_prefix(' '))
                .map(str::to_string)
                .ok_or_else(|| bad(&format!("no {name} line")))
        };
        let number = |s: String, name: &str| s.parse::<i64>().map_err(|_| bad(&format!("{name} is not a number")));
        let m_origin = field("origin")?;
        let entries = number(field("entries")?, "entries")?;
        let root = parse_hash(&field("root")?).ok_or_else(|| bad("root is not a hash"))?;
        let last_time_ms = number(field("last-time-ms")?, "last-time-ms")?;
        let made_ms = number(field("made-ms")?, "made-ms")?;
        let bytes = number(field("bytes")?, "bytes")?;
        let count = number(field("parts")?, "parts")?;
        if entries < 0 || bytes < 0 || !(0..=MAX_PARTS as i64).contains(&count) {
            return Err(bad("a count is out of range"));
        }
        let parts = (0..count)
            .map(|_| lines.next().and_then(parse_hash).map(|h| h.0).ok_or_else(|| bad("a part's hash is missing or damaged")))
            .collect::<Result<Vec<_>, _>>()?;
        if m_origin != origin {
            return Err(SnapshotError::WrongOrigin(m_origin));
        }
        Ok(Manifest { origin: m_origin, entries: entries as u64, root: Hash(root.0), last_time_ms, made_ms, bytes: bytes as u64, parts })
    }
}

fn parse_hash(s: &str) -> Option<Hash> {
    let bytes: [u8; 32] = hex::decode(s.trim()).ok()?.try_into().ok()?;
    Some(Hash(bytes))
}

/// A snapshot made and sealed on the server's disk, ready to upload to each target.
#[derive(Debug)]
pub struct Made {
    pub manifest: Manifest,
    /// The sealed manifest.
    sealed_manifest: Vec<u8>,
    /// Where the sealed parts are (`part-NNNNN`), removed by [`Made::discard`].
    dir: PathBuf,
}

impl Made {
    pub fn folder(&self) -> String {
        folder(self.manifest.entries, self.manifest.made_ms)
    }

    /// The sealed bytes put in a target (parts and manifest).
    pub fn sealed_bytes(&self) -> u64 {
        let parts: u64 =
            (0..self.manifest.parts.len()).filter_map(|i| std::fs::metadata(self.dir.join(part_file(i))).ok()).map(|m| m.len()).sum();
        parts + self.sealed_manifest.len() as u64
    }

    /// Put every part, then the manifest, into `target`; parts already there (an earlier try
    /// of this same snapshot) are not put again: a target never replaces an object.
    pub fn upload(&self, target: &dyn Target, stop: &dyn Fn() -> bool) -> Result<(), String> {
        let present: std::collections::HashSet<String> = target
            .list_versions(&self.folder())
            .map_err(|e| format!("listing {}: {e}", self.folder()))?
            .into_iter()
            .filter(|v| !v.delete_marker)
            .map(|v| v.key)
            .collect();
        let (entries, made) = (self.manifest.entries, self.manifest.made_ms);
        for i in 0..self.manifest.parts.len() {
            if stop() {
                return Err("stopped".into());
            }
            let key = object_key(entries, made, Object::Part(i as u32));
            if present.contains(&key) {
                continue;
            }
            let body = std::fs::read(self.dir.join(part_file(i))).map_err(|e| format!("reading a sealed part: {e}"))?;
            put_new(target, &key, &body)?;
        }
        let key = object_key(entries, made, Object::Manifest);
        if !present.contains(&key) {
            put_new(target, &key, &self.sealed_manifest)?;
        }
        Ok(())
    }

    /// Remove the sealed parts from the server's disk.
    pub fn discard(self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn put_new(target: &dyn Target, key: &str, body: &[u8]) -> Result<(), String> {
    match target.put(key, body) {
        Ok(()) | Err(TargetError::Exists { .. }) => Ok(()),
        Err(e) => Err(format!("putting {key}: {e}")),
    }
}

fn part_file(i: usize) -> String {
    format!("part-{i:05}")
}

/// Copy the database at `db` and seal it in parts under `work` (made afresh; the caller's
/// directory for this, e.g. `<data>/backup/snapshot`). `stop` is asked between parts.
pub fn make(db: &Path, work: &Path, key: &LedgerKey, recipients: &Recipients, stop: &dyn Fn() -> bool) -> Result<Made, String> {
    let _ = std::fs::remove_dir_all(work);
    std::fs::create_dir_all(work).map_err(|e| format!("creating {}: {e}", work.display()))?;
    let made_ms = vaidya_store::now_ms();
    let copy_path = work.join("copy.db");
    let result = (|| {
        let info = vaidya_store::snapshot::copy(db, &copy_path).map_err(|e| format!("copying the database: {e}"))?;
        let mut file = std::fs::File::open(&copy_path).map_err(|e| format!("reading the copy: {e}"))?;
        let mut parts = Vec::new();
        let mut buf = vec![0u8; PART_BYTES];
        loop {
            if stop() {
                return Err("stopped".to_string());
            }
            let n = read_full(&mut file, &mut buf).map_err(|e| format!("reading the copy: {e}"))?;
            if n == 0 {
                break;
            }
            let sealed = seal::seal(&buf[..n], recipients).map_err(|e| e.to_string())?;
            parts.push(Sha256::digest(&sealed).into());
            let mut out =
                std::fs::File::create(work.join(part_file(parts.len() - 1))).map_err(|e| format!("writing a sealed part: {e}"))?;
            out.write_all(&sealed).map_err(|e| format!("writing a sealed part: {e}"))?;
            if n < buf.len() {
                break;
            }
        }
        let manifest = Manifest {
            origin: key.name().to_string(),
            entries: info.size,
            root: info.root,
            last_time_ms: info.last_time_ms,
            made_ms,
            bytes: info.bytes,
            parts,
        };
        let sealed_manifest = seal::seal(&manifest.encode(key), recipients).map_err(|e| e.to_string())?;
        Ok(Made { manifest, sealed_manifest, dir: work.to_path_buf() })
    })();
    let _ = std::fs::remove_file(&copy_path);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(work);
    }
    result
}

fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Open one sealed part after checking it against the manifest's hash.
pub fn open_part(sealed: &[u8], expected: &[u8; 32], identity: &Identity) -> Result<Vec<u8>, String> {
    if Sha256::digest(sealed).as_slice() != expected {
        return Err("its bytes are not what the signed manifest names: altered or replaced".into());
    }
    seal::open(sealed, identity).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_nothing_else_parses() {
        let k = object_key(1_000_000, 1_764_230_000_000, Object::Part(7));
        assert_eq!(k, "snapshot/00000000000001000000-1764230000000/part-00007");
        assert_eq!(parse_object_key(&k), Some((1_000_000, 1_764_230_000_000, Object::Part(7))));
        let m = object_key(5, 1_764_230_000_000, Object::Manifest);
        assert_eq!(parse_object_key(&m), Some((5, 1_764_230_000_000, Object::Manifest)));
        for other in [
            "snapshot/00000000000000000005-1764230000000/ransom.txt",
            "snapshot/5-1764230000000/manifest",
            "snapshot/00000000000000000005-1764230000000/part-7",
            "snapshot/00000000000000000005-1764230000000/manifest/x",
            "data/00000000000000000001-00000000000000000005-1764230000000.seg",
        ] {
            assert_eq!(parse_object_key(other), None, "{other}");
        }
    }

    #[test]
    fn a_manifest_verifies_only_unchanged_and_with_its_key() {
        let key = LedgerKey::generate("vaidya.test/ledger");
        let m = Manifest {
            origin: key.name().to_string(),
            entries: 42,
            root: Hash([7; 32]),
            last_time_ms: 1_764_230_000_000,
            made_ms: 1_764_230_001_000,
            bytes: 4096,
            parts: vec![[1; 32], [2; 32]],
        };
        let bytes = m.encode(&key);
        assert_eq!(Manifest::decode(&bytes, key.verifier_text(), key.name()).unwrap(), m);
        let altered = String::from_utf8(bytes.clone()).unwrap().replace("entries 42", "entries 43");
        assert!(matches!(Manifest::decode(altered.as_bytes(), key.verifier_text(), key.name()), Err(SnapshotError::BadSignature)));
        let other = LedgerKey::generate("vaidya.test/ledger");
        assert!(matches!(Manifest::decode(&bytes, other.verifier_text(), key.name()), Err(SnapshotError::BadSignature)));
        assert!(matches!(Manifest::decode(&bytes, key.verifier_text(), "elsewhere"), Err(SnapshotError::WrongOrigin(_))));
    }
}
