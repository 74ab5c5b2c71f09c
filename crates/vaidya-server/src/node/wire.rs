//! The ledger feed's format: `vaidya ledger feed v1\n`, then the signed checkpoint note (empty
//! when the answer carries only state), the count of entries and each entry's canonical bytes,
//! then the state beside the ledger when it changed (accounts, grants, counters:
//! `vaidya_store::state`, empty when unchanged); every piece as a 4-byte big-endian length and
//! the bytes. The checkpoint signs the Merkle root of the whole ledger up to its last entry,
//! which is what authenticates the entries: the feed itself is not signed. The state is as the
//! core's TLS connection and the node account's token vouch for it (it is not ledgered).

pub const CONTENT_TYPE: &str = "application/vnd.vaidya.ledger-feed";
const MAGIC: &[u8] = b"vaidya ledger feed v1\n";
/// Entries in one answer at most (a backup segment's cap).
pub const MAX_ENTRIES: usize = vaidya_backup::source::MAX_SEGMENT_ENTRIES as usize;
/// Bytes of one answer at most (what a node reads).
pub const MAX_BYTES: u64 = 512 << 20;
/// One entry's bytes at most.
const MAX_ENTRY_BYTES: usize = 64 << 20;

#[derive(Debug, Clone, PartialEq)]
pub struct Feed {
    /// The signed checkpoint note (text) at the last entry; empty when there are no entries.
    pub checkpoint: String,
    /// Entries after the node's position up to the checkpoint, in order.
    pub entries: Vec<Vec<u8>>,
    /// The state beside the ledger, when it differs from the node's.
    pub state: Option<Vec<u8>>,
}

impl Feed {
    pub fn encode(&self) -> Vec<u8> {
        let size = MAGIC.len() + 8 + self.checkpoint.len() + self.entries.iter().map(|e| e.len() + 4).sum::<usize>();
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.checkpoint.len() as u32).to_be_bytes());
        out.extend_from_slice(self.checkpoint.as_bytes());
        out.extend_from_slice(&(self.entries.len() as u32).to_be_bytes());
        for e in &self.entries {
            out.extend_from_slice(&(e.len() as u32).to_be_bytes());
            out.extend_from_slice(e);
        }
        let state = self.state.as_deref().unwrap_or_default();
        out.extend_from_slice(&(state.len() as u32).to_be_bytes());
        out.extend_from_slice(state);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Feed, String> {
        let mut rest = bytes.strip_prefix(MAGIC).ok_or("not a Vaidya ledger feed (v1)")?;
        let mut take = |n: usize| -> Result<&[u8], String> {
            if rest.len() < n {
                return Err("the feed is cut short".into());
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let len = |b: &[u8]| u32::from_be_bytes(b.try_into().expect("four bytes")) as usize;
        let n = len(take(4)?);
        let checkpoint = String::from_utf8(take(n)?.to_vec()).map_err(|_| "the checkpoint is not text")?;
        let count = len(take(4)?);
        if count > MAX_ENTRIES {
            return Err(format!("{count} entries in one feed: more than {MAX_ENTRIES}"));
        }
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let n = len(take(4)?);
            if n > MAX_ENTRY_BYTES {
                return Err(format!("an entry of {n} bytes"));
            }
            entries.push(take(n)?.to_vec());
        }
        let n = len(take(4)?);
        let state = take(n)?.to_vec();
        if !rest.is_empty() {
            return Err("bytes after the state".into());
        }
        if checkpoint.is_empty() != entries.is_empty() {
            return Err("entries without a checkpoint, or a checkpoint without entries".into());
        }
        Ok(Feed { checkpoint, entries, state: (!state.is_empty()).then_some(state) })
    }
}

/// How a node and the core name a state table's contents (`tables=` of the feed): the
/// SHA-256 (hex) of `vaidya_store::state::table_snapshot`'s bytes; both sides must agree.
pub fn state_table_hash(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// A hand-back (`POST /node/handback`, see `handback.rs`): `vaidya hand-back v1\n`, then the
/// [`HandBackMeta`] (JSON), the checkpoint note the node's own key signed at the last entry,
/// the count of entries and each entry's canonical bytes; each piece length-prefixed as in a
/// feed.
#[derive(Debug, Clone, PartialEq)]
pub struct HandBack {
    pub meta: HandBackMeta,
    pub checkpoint: String,
    pub entries: Vec<Vec<u8>>,
}

pub const HANDBACK_CONTENT_TYPE: &str = "application/vnd.vaidya.hand-back";
const HANDBACK_MAGIC: &[u8] = b"vaidya hand-back v1\n";

/// What a hand-back says beside its entries.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandBackMeta {
    /// The core's ledger size the node's branch left at.
    pub fork: u64,
    /// Each write transaction on the node, as (first, last) entry: the units that are applied
    /// at the core, or queued for a person, whole. They cover the entries exactly, in order.
    pub units: Vec<(u64, u64)>,
    /// The node's counters that the core must never fall behind (its own UHID, receipt and
    /// specimen serials; queue tokens it gave out), by name.
    pub counters: std::collections::BTreeMap<String, u64>,
}

impl HandBack {
    pub fn encode(&self) -> Vec<u8> {
        let meta = serde_json::to_vec(&self.meta).expect("the meta serialises");
        let mut out = Vec::with_capacity(HANDBACK_MAGIC.len() + meta.len() + self.checkpoint.len() + self.entries.iter().map(|e| e.len() + 4).sum::<usize>() + 12);
        out.extend_from_slice(HANDBACK_MAGIC);
        for piece in [meta.as_slice(), self.checkpoint.as_bytes()] {
            out.extend_from_slice(&(piece.len() as u32).to_be_bytes());
            out.extend_from_slice(piece);
        }
        out.extend_from_slice(&(self.entries.len() as u32).to_be_bytes());
        for e in &self.entries {
            out.extend_from_slice(&(e.len() as u32).to_be_bytes());
            out.extend_from_slice(e);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<HandBack, String> {
        let mut r = Pieces(bytes.strip_prefix(HANDBACK_MAGIC).ok_or("not a Vaidya hand-back (v1)")?);
        let meta: HandBackMeta = serde_json::from_slice(r.piece(1 << 20)?).map_err(|e| format!("the hand-back's meta: {e}"))?;
        let checkpoint = String::from_utf8(r.piece(64 << 10)?.to_vec()).map_err(|_| "the checkpoint is not text")?;
        let count = r.len()?;
        if count > MAX_ENTRIES {
            return Err(format!("{count} entries in one hand-back: more than {MAX_ENTRIES}"));
        }
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            entries.push(r.piece(MAX_ENTRY_BYTES)?.to_vec());
        }
        if !r.0.is_empty() {
            return Err("bytes after the entries".into());
        }
        if entries.is_empty() || checkpoint.is_empty() {
            return Err("a hand-back carries entries and the checkpoint over them".into());
        }
        Ok(HandBack { meta, checkpoint, entries })
    }
}

/// Length-prefixed pieces, read in turn.
struct Pieces<'a>(&'a [u8]);

impl<'a> Pieces<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("cut short".into());
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn len(&mut self) -> Result<usize, String> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("four bytes")) as usize)
    }

    fn piece(&mut self, max: usize) -> Result<&'a [u8], String> {
        let n = self.len()?;
        if n > max {
            return Err(format!("a piece of {n} bytes (at most {max})"));
        }
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hand_back_round_trips_and_damage_is_refused() {
        let meta = HandBackMeta { fork: 10, units: vec![(11, 12)], counters: [("node-07:uhid".to_string(), 3)].into() };
        let h = HandBack { meta, checkpoint: "note\n".into(), entries: vec![b"a".to_vec(), b"b".to_vec()] };
        let bytes = h.encode();
        assert_eq!(HandBack::decode(&bytes).unwrap(), h);
        assert!(HandBack::decode(&bytes[..bytes.len() - 1]).is_err(), "cut short");
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(HandBack::decode(&longer).is_err(), "trailing bytes");
        let empty = HandBack { entries: vec![], ..h.clone() };
        assert!(HandBack::decode(&empty.encode()).is_err(), "nothing to hand back");
        assert!(HandBack::decode(&Feed { checkpoint: "n".into(), entries: vec![b"a".to_vec()], state: None }.encode()).is_err(), "a feed is not a hand-back");
        let mut bad_meta = HANDBACK_MAGIC.to_vec();
        bad_meta.extend_from_slice(&5u32.to_be_bytes());
        bad_meta.extend_from_slice(b"{\"x\":");
        assert!(HandBack::decode(&bad_meta).is_err());
    }

    #[test]
    fn a_feed_round_trips_and_damage_is_refused() {
        let f = Feed { checkpoint: "note\n".into(), entries: vec![b"one".to_vec(), Vec::new(), b"three".to_vec()], state: None };
        let bytes = f.encode();
        assert_eq!(Feed::decode(&bytes).unwrap(), f);
        let only_state = Feed { checkpoint: String::new(), entries: Vec::new(), state: Some(b"{}".to_vec()) };
        assert_eq!(Feed::decode(&only_state.encode()).unwrap(), only_state);
        let no_checkpoint = Feed { checkpoint: String::new(), entries: vec![b"one".to_vec()], state: None };
        assert!(Feed::decode(&no_checkpoint.encode()).is_err(), "entries need their checkpoint");
        assert!(Feed::decode(&bytes[..bytes.len() - 1]).is_err(), "cut short");
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Feed::decode(&longer).is_err(), "trailing bytes");
        assert!(Feed::decode(b"HTTP/1.1 200 OK").is_err(), "not a feed");
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&0u32.to_be_bytes());
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(Feed::decode(&huge).is_err(), "a count beyond the cap");
    }
}
