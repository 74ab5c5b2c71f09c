//! A segment: a run of consecutive ledger entries, the signed checkpoint at its last entry, and
//! optionally the state that lives beside the ledger, signed with the ledger key as a whole.
//!
//! Plain layout (before sealing; integers big-endian):
//!
//! ```text
//! body:      "VDYASEG1" | ledger u8 (1 data, 2 audit) | first u64 | count u64 | made_ms i64
//!            | checkpoint: u32 len, signed note (tree size = first + count - 1)
//!            | state: u32 len, bytes (0: none)
//!            | count x (u32 len, entry bytes: vaidya_ledger::Entry::encode)
//! signature: u32 len, a signed note whose text is "vaidya backup segment v1\n<sha256 of body>\n"
//! ```
//!
//! Why both a checkpoint and a signature: the checkpoint commits to the entries (restore
//! recomputes the Merkle root from them), the signature also covers the state and the segment's
//! place, which no checkpoint covers. Anyone can encrypt to the hospital's public recipient;
//! only the server's ledger key signs.

use sha2::{Digest, Sha256};
use vaidya_ledger::{LedgerKey, SignedCheckpoint};

const MAGIC: &[u8; 8] = b"VDYASEG1";
const SIGNED_TEXT: &str = "vaidya backup segment v1";
/// Largest entry accepted when reading (an entry holds one resource of at most a few MiB).
const MAX_ENTRY_BYTES: usize = 64 << 20;

/// Which ledger a segment belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ledger {
    Data,
    Audit,
}

impl Ledger {
    /// The folder of its objects in a target.
    pub fn folder(self) -> &'static str {
        match self {
            Ledger::Data => "data",
            Ledger::Audit => "audit",
        }
    }

    fn code(self) -> u8 {
        match self {
            Ledger::Data => 1,
            Ledger::Audit => 2,
        }
    }
}

/// A segment as written or as read back and verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub ledger: Ledger,
    /// Sequence number of the first entry (one past the last when there are none).
    pub first: u64,
    /// Canonical entry bytes, in order.
    pub entries: Vec<Vec<u8>>,
    /// The signed checkpoint at the last entry (`first + entries.len() - 1`).
    pub checkpoint: String,
    /// The state beside the ledger (data ledger only), when it changed.
    pub state: Option<Vec<u8>>,
    /// When the segment was made, ms since the Unix epoch.
    pub made_ms: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SegmentError {
    #[error("not a Vaidya backup segment")]
    NotASegment,
    #[error("the segment is truncated")]
    Truncated,
    #[error("{0} bytes follow the segment's signature")]
    Trailing(usize),
    #[error("the segment's signature does not verify with the ledger's public key: forged or altered")]
    BadSignature,
    #[error("the segment's checkpoint is not valid: {0}")]
    BadCheckpoint(String),
    #[error("the segment's checkpoint is for {checkpoint} entries but its entries end at {last}")]
    CheckpointMismatch { checkpoint: u64, last: u64 },
    #[error("an entry of {0} bytes is larger than any entry Vaidya writes")]
    EntryTooLarge(usize),
}

impl Segment {
    /// The sequence number of the last entry (`first - 1` when empty).
    pub fn last(&self) -> u64 {
        self.first + self.entries.len() as u64 - 1
    }

    /// Encode and sign with the ledger key.
    pub fn encode(&self, key: &LedgerKey) -> Vec<u8> {
        let size = self.entries.iter().map(|e| e.len() + 4).sum::<usize>() + self.checkpoint.len() + 256;
        let mut body = Vec::with_capacity(size + self.state.as_ref().map_or(0, Vec::len));
        body.extend_from_slice(MAGIC);
        body.push(self.ledger.code());
        body.extend_from_slice(&self.first.to_be_bytes());
        body.extend_from_slice(&(self.entries.len() as u64).to_be_bytes());
        body.extend_from_slice(&self.made_ms.to_be_bytes());
        put(&mut body, self.checkpoint.as_bytes());
        put(&mut body, self.state.as_deref().unwrap_or_default());
        for e in &self.entries {
            put(&mut body, e);
        }
        let digest = hex::encode(Sha256::digest(&body));
        let note = vaidya_ledger::sign_note(key, &format!("{SIGNED_TEXT}\n{digest}\n")).expect("the signed text is two lines");
        let mut out = Vec::with_capacity(4 + body.len() + 4 + note.len());
        put(&mut out, &body);
        put(&mut out, note.as_bytes());
        out
    }

    /// Decode, check the signature with the ledger's verifier key and the checkpoint's
    /// signature and size. The entries themselves are checked by whoever applies them (chain
    /// and Merkle root against the checkpoint).
    pub fn decode(bytes: &[u8], verifier: &str, origin: &str) -> Result<(Segment, SignedCheckpoint), SegmentError> {
        let mut r = Reader { bytes, pos: 0 };
        let body = r.take_prefixed(usize::MAX)?;
        let note = std::str::from_utf8(r.take_prefixed(64 << 10)?).map_err(|_| SegmentError::BadSignature)?;
        if r.pos != bytes.len() {
            return Err(SegmentError::Trailing(bytes.len() - r.pos));
        }
        let text = vaidya_ledger::verify_note(note, verifier).map_err(|_| SegmentError::BadSignature)?;
        if text != format!("{SIGNED_TEXT}\n{}\n", hex::encode(Sha256::digest(body))) {
            return Err(SegmentError::BadSignature);
        }
        let mut b = Reader { bytes: body, pos: 0 };
        if b.take(8)? != MAGIC {
            return Err(SegmentError::NotASegment);
        }
        let ledger = match b.take(1)?[0] {
            1 => Ledger::Data,
            2 => Ledger::Audit,
            _ => return Err(SegmentError::NotASegment),
        };
        let first = b.u64()?;
        let count = b.u64()?;
        let made_ms = b.u64()? as i64;
        let checkpoint = String::from_utf8(b.take_prefixed(64 << 10)?.to_vec()).map_err(|_| SegmentError::BadCheckpoint("not text".into()))?;
        let state = b.take_prefixed(usize::MAX)?;
        let state = (!state.is_empty()).then(|| state.to_vec());
        // Each entry takes at least 4 bytes: a count larger than that is damage, not a reason
        // to reserve memory.
        if count > (body.len() / 4) as u64 {
            return Err(SegmentError::Truncated);
        }
        let mut entries = Vec::with_capacity(count as usize);
        for _ in 0..count {
            entries.push(b.take_prefixed(MAX_ENTRY_BYTES)?.to_vec());
        }
        if b.pos != body.len() {
            return Err(SegmentError::Trailing(body.len() - b.pos));
        }
        let cp = vaidya_ledger::verify_checkpoint(&checkpoint, verifier).map_err(|e| SegmentError::BadCheckpoint(e.to_string()))?;
        if cp.origin != origin {
            return Err(SegmentError::BadCheckpoint(format!("it is a checkpoint of '{}', not of '{origin}'", cp.origin)));
        }
        let segment = Segment { ledger, first, entries, checkpoint, state, made_ms };
        if cp.tree_size != segment.last() {
            return Err(SegmentError::CheckpointMismatch { checkpoint: cp.tree_size, last: segment.last() });
        }
        Ok((segment, cp))
    }
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).expect("segment parts are below 4 GiB").to_be_bytes());
    out.extend_from_slice(bytes);
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SegmentError> {
        let end = self.pos.checked_add(n).ok_or(SegmentError::Truncated)?;
        let s = self.bytes.get(self.pos..end).ok_or(SegmentError::Truncated)?;
        self.pos = end;
        Ok(s)
    }
    fn u64(&mut self) -> Result<u64, SegmentError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn take_prefixed(&mut self, max: usize) -> Result<&'a [u8], SegmentError> {
        let len = u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize;
        if len > max {
            return Err(SegmentError::EntryTooLarge(len));
        }
        self.take(len)
    }
}

/// An object's name in a target: `<prefix><ledger>/<first>-<last>-<made_ms>.seg`, numbers
/// zero-padded so that names sort in ledger order.
pub fn object_key(prefix: &str, ledger: Ledger, first: u64, last: u64, made_ms: i64) -> String {
    format!("{prefix}{}/{first:020}-{last:020}-{made_ms:013}.seg", ledger.folder())
}

/// What a segment object's name says: (ledger, first, last, made_ms).
pub fn parse_object_key(prefix: &str, key: &str) -> Option<(Ledger, u64, u64, i64)> {
    let rest = key.strip_prefix(prefix)?;
    let (folder, name) = rest.split_once('/')?;
    let ledger = match folder {
        "data" => Ledger::Data,
        "audit" => Ledger::Audit,
        _ => return None,
    };
    let stem = name.strip_suffix(".seg")?;
    let mut parts = stem.split('-');
    let (a, b, c) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || a.len() != 20 || b.len() != 20 || c.len() != 13 {
        return None;
    }
    Some((ledger, a.parse().ok()?, b.parse().ok()?, c.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vaidya_ledger::{Entry, Op};

    fn entries(n: u64) -> Vec<Vec<u8>> {
        (1..=n)
            .map(|seq| {
                Entry {
                    seq,
                    time_ms: 1_700_000_000_000 + seq as i64,
                    author: "clerk".into(),
                    op: Op::Put,
                    resource_type: "Patient".into(),
                    resource_id: format!("p{seq}"),
                    version: 1,
                    content: b"{}".to_vec(),
                    prev_hash: vaidya_ledger::GENESIS_PREV,
                }
                .encode()
            })
            .collect()
    }

    fn segment(key: &LedgerKey, n: u64) -> Segment {
        let note = vaidya_ledger::sign_checkpoint(key, n, vaidya_ledger::Hash([1; 32]), 5);
        Segment { ledger: Ledger::Data, first: 1, entries: entries(n), checkpoint: note, state: Some(b"{}".to_vec()), made_ms: 77 }
    }

    #[test]
    fn round_trip_and_every_alteration_is_caught() {
        let key = LedgerKey::generate("vaidya.test/ledger");
        let s = segment(&key, 3);
        let bytes = s.encode(&key);
        let (back, cp) = Segment::decode(&bytes, key.verifier_text(), key.name()).unwrap();
        assert_eq!(back, s);
        assert_eq!(cp.tree_size, 3);
        for i in (0..bytes.len()).step_by(7) {
            let mut altered = bytes.clone();
            altered[i] ^= 0x20;
            assert!(Segment::decode(&altered, key.verifier_text(), key.name()).is_err(), "byte {i}");
        }
        let other = LedgerKey::generate("vaidya.test/ledger");
        assert_eq!(Segment::decode(&bytes, other.verifier_text(), key.name()), Err(SegmentError::BadSignature));
        assert!(Segment::decode(&bytes[..bytes.len() - 1], key.verifier_text(), key.name()).is_err());
        assert!(matches!(Segment::decode(&bytes, key.verifier_text(), "someone/else"), Err(SegmentError::BadCheckpoint(_))));
    }

    #[test]
    fn a_checkpoint_must_end_where_the_entries_end() {
        let key = LedgerKey::generate("vaidya.test/ledger");
        let mut s = segment(&key, 3);
        s.entries.pop();
        assert_eq!(
            Segment::decode(&s.encode(&key), key.verifier_text(), key.name()),
            Err(SegmentError::CheckpointMismatch { checkpoint: 3, last: 2 })
        );
    }

    #[test]
    fn object_names_sort_in_ledger_order_and_parse_back() {
        let a = object_key("h/", Ledger::Data, 1, 100, 1_764_000_000_000);
        let b = object_key("h/", Ledger::Data, 101, 5_000, 1_764_000_000_001);
        assert!(a < b);
        assert_eq!(parse_object_key("h/", &b), Some((Ledger::Data, 101, 5_000, 1_764_000_000_001)));
        assert_eq!(parse_object_key("h/", "h/data/1-2-3.seg"), None);
        assert_eq!(parse_object_key("h/", "h/keys/x.age"), None);
        assert_eq!(parse_object_key("other/", &a), None);
    }
}
