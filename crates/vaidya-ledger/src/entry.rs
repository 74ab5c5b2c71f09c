//! One ledger entry and its canonical bytes.
//!
//! The encoding is explicit and versioned rather than serde-derived, so that a change of a Rust
//! type can never silently change the bytes that were hashed and signed years ago.

use std::fmt;

/// Format version written as the first byte of every entry.
const FORMAT_V1: u8 = 1;

/// What an entry does to the resource it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A new version of the resource (create or update); the entry carries its full content.
    Put = 1,
    /// The resource is deleted; the entry carries no content.
    Delete = 2,
}

/// SHA-256 leaf hash of an entry (RFC 6962: `SHA-256(0x00 || bytes)`). It is both the entry's
/// identity in the hash chain and its leaf in the Merkle tree.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntryHash(pub [u8; 32]);

impl fmt::Debug for EntryHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", hex_lower(&self.0))
    }
}

impl fmt::Display for EntryHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", hex_lower(&self.0))
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One change, as recorded forever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position in the ledger, starting at 1.
    pub seq: u64,
    /// Commit time, milliseconds since the Unix epoch, UTC.
    pub time_ms: i64,
    /// Who made the change (a user name or a system component such as `import`).
    pub author: String,
    pub op: Op,
    pub resource_type: String,
    pub resource_id: String,
    /// The resource's version after this change (1 for a create).
    pub version: u64,
    /// The resource's JSON exactly as stored and served; empty for a delete.
    pub content: Vec<u8>,
    /// Hash of the entry before this one ([`crate::GENESIS_PREV`] for the first).
    pub prev_hash: EntryHash,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("entry is truncated")]
    Truncated,
    #[error("unknown entry format version {0}")]
    Version(u8),
    #[error("unknown operation {0}")]
    Op(u8),
    #[error("text field is not UTF-8")]
    Utf8,
    #[error("{0} trailing bytes after the entry")]
    Trailing(usize),
}

impl Entry {
    /// The canonical bytes of this entry: what is hashed, stored and shipped.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.author.len() + self.content.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.time_ms.to_be_bytes());
        put_short(&mut out, self.author.as_bytes());
        out.push(self.op as u8);
        put_short(&mut out, self.resource_type.as_bytes());
        put_short(&mut out, self.resource_id.as_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&(self.content.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.content);
        out.extend_from_slice(&self.prev_hash.0);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Entry, DecodeError> {
        let mut r = Reader { bytes, pos: 0 };
        let version = r.u8()?;
        if version != FORMAT_V1 {
            return Err(DecodeError::Version(version));
        }
        let seq = r.u64()?;
        let time_ms = r.u64()? as i64;
        let author = r.short_str()?;
        let op = match r.u8()? {
            1 => Op::Put,
            2 => Op::Delete,
            other => return Err(DecodeError::Op(other)),
        };
        let resource_type = r.short_str()?;
        let resource_id = r.short_str()?;
        let version = r.u64()?;
        let content_len = r.u32()? as usize;
        let content = r.take(content_len)?.to_vec();
        let prev_hash = EntryHash(r.take(32)?.try_into().expect("took 32 bytes"));
        if r.pos != bytes.len() {
            return Err(DecodeError::Trailing(bytes.len() - r.pos));
        }
        Ok(Entry { seq, time_ms, author, op, resource_type, resource_id, version, content, prev_hash })
    }

    /// The entry's hash, computed from its canonical bytes.
    pub fn hash(&self) -> EntryHash {
        hash_encoded(&self.encode())
    }
}

/// The commit time of an encoded entry, read without decoding it (`None`: not a known format).
pub fn encoded_time_ms(encoded: &[u8]) -> Option<i64> {
    if encoded.first() != Some(&FORMAT_V1) {
        return None;
    }
    Some(i64::from_be_bytes(encoded.get(9..17)?.try_into().ok()?))
}

/// Hash of an already encoded entry (avoids re-encoding on the write path).
pub fn hash_encoded(encoded: &[u8]) -> EntryHash {
    EntryHash(tlog_tiles::record_hash(encoded).0)
}

fn put_short(out: &mut Vec<u8>, field: &[u8]) {
    // Names, ids and types are short by FHIR's own rules (ids <= 64 chars); a longer one is a
    // programming error upstream, not input to be truncated silently.
    let len = u16::try_from(field.len()).expect("short ledger field longer than 65535 bytes");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(field);
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let slice = self.bytes.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(slice)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn short_str(&mut self) -> Result<String, DecodeError> {
        let len = u16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")) as usize;
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| DecodeError::Utf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entry {
        Entry {
            seq: 7,
            time_ms: 1_700_000_000_123,
            author: "admin".into(),
            op: Op::Put,
            resource_type: "Patient".into(),
            resource_id: "p1".into(),
            version: 3,
            content: br#"{"resourceType":"Patient","id":"p1"}"#.to_vec(),
            prev_hash: EntryHash([9; 32]),
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        let e = sample();
        assert_eq!(Entry::decode(&e.encode()).unwrap(), e);
        let d = Entry { op: Op::Delete, content: vec![], ..sample() };
        assert_eq!(Entry::decode(&d.encode()).unwrap(), d);
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = sample().hash();
        let variants = [
            Entry { seq: 8, ..sample() },
            Entry { time_ms: 1, ..sample() },
            Entry { author: "x".into(), ..sample() },
            Entry { op: Op::Delete, ..sample() },
            Entry { resource_type: "Patienu".into(), ..sample() },
            Entry { resource_id: "p2".into(), ..sample() },
            Entry { version: 4, ..sample() },
            Entry { content: b"{}".to_vec(), ..sample() },
            Entry { prev_hash: EntryHash([8; 32]), ..sample() },
        ];
        for v in variants {
            assert_ne!(v.hash(), base, "{v:?}");
        }
    }

    #[test]
    fn the_time_is_read_without_decoding() {
        assert_eq!(encoded_time_ms(&sample().encode()), Some(1_700_000_000_123));
        assert_eq!(encoded_time_ms(&[2; 40]), None);
        assert_eq!(encoded_time_ms(&[1, 0, 0]), None);
    }

    #[test]
    fn decode_rejects_damage() {
        let bytes = sample().encode();
        assert_eq!(Entry::decode(&bytes[..bytes.len() - 1]), Err(DecodeError::Truncated));
        let mut extra = bytes.clone();
        extra.push(0);
        assert_eq!(Entry::decode(&extra), Err(DecodeError::Trailing(1)));
        let mut v = bytes.clone();
        v[0] = 2;
        assert_eq!(Entry::decode(&v), Err(DecodeError::Version(2)));
    }

    #[test]
    fn hash_is_the_rfc6962_leaf_hash() {
        use sha2::{Digest, Sha256};
        let bytes = sample().encode();
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update(&bytes);
        assert_eq!(sample().hash().0, <[u8; 32]>::from(h.finalize()));
    }
}
