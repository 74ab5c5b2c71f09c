//! The compact encoding of an [`AuditRecord`]: what the server stores as an audit entry's
//! content, and from which the FHIR AuditEvent is written whenever one is shown or exported.
//!
//! Why: every audited read used to serialise, hash, copy, write and flush a 1.7 KB AuditEvent
//! JSON; the same facts in this encoding are about 150 bytes, and the bytes were most of the
//! audit record's cost (BENCHMARKS.md, "Reads with authorization and the durable audit
//! record"). The AuditEvent is a pure function of the record ([`AuditRecord::to_fhir_json`]),
//! so nothing is lost: the hash chain covers these bytes, and the JSON written from them is
//! the same every time.
//!
//! Layout (every integer little-endian; a string is its UTF-8 bytes after a `u32` length; a
//! list is a `u32` count then its strings; an optional string is a presence byte `0`/`1` then
//! the string):
//!
//! | field | encoding |
//! |---|---|
//! | format | `0x01` (a JSON content starts with `{`, so the two never mix up) |
//! | `time_ms` | `i64` |
//! | `action` | tag `u8` ([`Action`] variants in declaration order), then the name for `Operation` and `Account` |
//! | `outcome` | tag `u8` (0 allowed, 1 denied, 2 failed), then the reason for denied and failed |
//! | `who.user`, `who.role`, `who.session`, `source.address`, `source.user_agent` | optional strings |
//! | `what` | list |
//! | `query` | optional string |
//! | `returned`, `patients` | lists |
//! | `purpose` | `u8`: 0 none, then [`Purpose`] variants in declaration order from 1 |
//! | `reason`, `target_user` | optional strings |
//!
//! Decoding is strict: a wrong format byte, an unknown tag, a length past the end, invalid
//! UTF-8 or bytes left over is an error, so one record has exactly one encoding.

use crate::record::{Action, AuditRecord, Outcome, Purpose, Source, Who};

/// The first byte of a compact content.
pub const FORMAT: u8 = 0x01;

/// Encode `r` (see the module documentation).
pub fn encode(r: &AuditRecord) -> Vec<u8> {
    let mut o = Vec::with_capacity(160);
    o.push(FORMAT);
    o.extend_from_slice(&r.time_ms.to_le_bytes());
    let (tag, name) = action_tag(&r.action);
    o.push(tag);
    if let Some(n) = name {
        string(&mut o, n);
    }
    match &r.outcome {
        Outcome::Allowed => o.push(0),
        Outcome::Denied(why) => {
            o.push(1);
            string(&mut o, why);
        }
        Outcome::Failed(why) => {
            o.push(2);
            string(&mut o, why);
        }
    }
    for s in [&r.who.user, &r.who.role, &r.who.session, &r.source.address, &r.source.user_agent] {
        optional(&mut o, s.as_deref());
    }
    list(&mut o, &r.what);
    optional(&mut o, r.query.as_deref());
    list(&mut o, &r.returned);
    list(&mut o, &r.patients);
    o.push(match r.purpose {
        None => 0,
        Some(Purpose::Treatment) => 1,
        Some(Purpose::BreakTheGlass) => 2,
        Some(Purpose::Payment) => 3,
        Some(Purpose::Operations) => 4,
        Some(Purpose::PatientRequest) => 5,
    });
    optional(&mut o, r.reason.as_deref());
    optional(&mut o, r.target_user.as_deref());
    o
}

/// Decode what [`encode`] wrote; `Err` says what is wrong with the bytes.
pub fn decode(bytes: &[u8]) -> Result<AuditRecord, String> {
    let mut d = Reader { bytes, at: 0 };
    if d.u8()? != FORMAT {
        return Err("not a compact audit record".into());
    }
    let time_ms = i64::from_le_bytes(d.take(8)?.try_into().expect("8 bytes"));
    let action = match d.u8()? {
        0 => Action::Read,
        1 => Action::VRead,
        2 => Action::Search,
        3 => Action::History,
        4 => Action::Create,
        5 => Action::Update,
        6 => Action::Patch,
        7 => Action::Delete,
        8 => Action::Operation(d.string()?),
        9 => Action::Transaction,
        10 => Action::Batch,
        11 => Action::Export,
        12 => Action::Print,
        13 => Action::Login,
        14 => Action::LoginFailed,
        15 => Action::Logout,
        16 => Action::BreakGlass,
        17 => Action::Account(d.string()?),
        t => return Err(format!("unknown action tag {t}")),
    };
    let outcome = match d.u8()? {
        0 => Outcome::Allowed,
        1 => Outcome::Denied(d.string()?),
        2 => Outcome::Failed(d.string()?),
        t => return Err(format!("unknown outcome tag {t}")),
    };
    let who = Who { user: d.optional()?, role: d.optional()?, session: d.optional()? };
    let source = Source { address: d.optional()?, user_agent: d.optional()? };
    let what = d.list()?;
    let query = d.optional()?;
    let returned = d.list()?;
    let patients = d.list()?;
    let purpose = match d.u8()? {
        0 => None,
        1 => Some(Purpose::Treatment),
        2 => Some(Purpose::BreakTheGlass),
        3 => Some(Purpose::Payment),
        4 => Some(Purpose::Operations),
        5 => Some(Purpose::PatientRequest),
        t => return Err(format!("unknown purpose tag {t}")),
    };
    let reason = d.optional()?;
    let target_user = d.optional()?;
    if d.at != bytes.len() {
        return Err(format!("{} bytes after the record", bytes.len() - d.at));
    }
    Ok(AuditRecord { time_ms, action, outcome, who, source, what, query, returned, patients, purpose, reason, target_user })
}

fn action_tag(a: &Action) -> (u8, Option<&str>) {
    match a {
        Action::Read => (0, None),
        Action::VRead => (1, None),
        Action::Search => (2, None),
        Action::History => (3, None),
        Action::Create => (4, None),
        Action::Update => (5, None),
        Action::Patch => (6, None),
        Action::Delete => (7, None),
        Action::Operation(name) => (8, Some(name)),
        Action::Transaction => (9, None),
        Action::Batch => (10, None),
        Action::Export => (11, None),
        Action::Print => (12, None),
        Action::Login => (13, None),
        Action::LoginFailed => (14, None),
        Action::Logout => (15, None),
        Action::BreakGlass => (16, None),
        Action::Account(code) => (17, Some(code)),
    }
}

fn string(o: &mut Vec<u8>, s: &str) {
    o.extend_from_slice(&(s.len() as u32).to_le_bytes());
    o.extend_from_slice(s.as_bytes());
}

fn optional(o: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => o.push(0),
        Some(s) => {
            o.push(1);
            string(o, s);
        }
    }
}

fn list(o: &mut Vec<u8>, items: &[String]) {
    o.extend_from_slice(&(items.len() as u32).to_le_bytes());
    for s in items {
        string(o, s);
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or("the record ends early")?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<usize, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize)
    }

    fn string(&mut self) -> Result<String, String> {
        let n = self.u32()?;
        let raw = self.take(n)?;
        String::from_utf8(raw.to_vec()).map_err(|_| "a string is not UTF-8".to_string())
    }

    fn optional(&mut self) -> Result<Option<String>, String> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.string()?)),
            t => Err(format!("unknown presence byte {t}")),
        }
    }

    fn list(&mut self) -> Result<Vec<String>, String> {
        let n = self.u32()?;
        // Every string takes at least its 4 length bytes: a count the rest cannot hold is a lie,
        // refused before anything is allocated for it.
        if n > (self.bytes.len() - self.at) / 4 {
            return Err("a list is longer than the record".into());
        }
        (0..n).map(|_| self.string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> Vec<AuditRecord> {
        let actions = [
            Action::Read,
            Action::VRead,
            Action::Search,
            Action::History,
            Action::Create,
            Action::Update,
            Action::Patch,
            Action::Delete,
            Action::Operation("$merge".into()),
            Action::Transaction,
            Action::Batch,
            Action::Export,
            Action::Print,
            Action::Login,
            Action::LoginFailed,
            Action::Logout,
            Action::BreakGlass,
            Action::Account("user-add".into()),
        ];
        let outcomes = [Outcome::Allowed, Outcome::Denied("403 Forbidden".into()), Outcome::Failed("404 Not Found: \"x\"\n".into())];
        let purposes = [None, Some(Purpose::Treatment), Some(Purpose::BreakTheGlass), Some(Purpose::Payment), Some(Purpose::Operations), Some(Purpose::PatientRequest)];
        let mut out = vec![];
        for (i, a) in actions.iter().enumerate() {
            let mut r = AuditRecord::new(a.clone(), outcomes[i % 3].clone());
            r.time_ms = 1_764_230_400_123 + i as i64;
            r.purpose = purposes[i % purposes.len()];
            if i % 2 == 0 {
                r.who = Who { user: Some("dr.sharma".into()), role: Some("doctor".into()), session: Some("tok_1".into()) };
                r.source = Source { address: Some("10.0.0.7".into()), user_agent: Some("curl/8 ü \u{1}".into()) };
                r.what = vec!["Patient/p1".into(), "Observation/o9".into()];
                r.query = Some("Observation?patient=Patient/p1&code=x".into());
                r.returned = vec!["Observation/o9".into(), "Observation/o10".into()];
                r.patients = vec!["p1".into(), "p2".into()];
                r.reason = Some("unconscious in casualty".into());
                r.target_user = Some("clerk1".into());
            }
            out.push(r);
        }
        out
    }

    #[test]
    fn every_record_comes_back_as_it_was_and_gives_the_same_audit_event() {
        for r in every_kind() {
            let bytes = encode(&r);
            let back = decode(&bytes).unwrap_or_else(|e| panic!("{:?}: {e}", r.action));
            assert_eq!(back, r);
            assert_eq!(back.to_fhir_json(), r.to_fhir_json());
            assert!(bytes.len() < r.to_fhir_json().len() / 2, "{} vs {}", bytes.len(), r.to_fhir_json().len());
        }
    }

    #[test]
    fn damaged_bytes_are_refused_not_misread() {
        let r = &every_kind()[0];
        let bytes = encode(r);
        // Every shortening ends early.
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "cut at {n}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).unwrap_err().contains("after the record"));
        let mut json = bytes.clone();
        json[0] = b'{';
        assert!(decode(&json).is_err());
        let mut tag = bytes.clone();
        tag[9] = 200;
        assert!(decode(&tag).unwrap_err().contains("action tag"));
        // A list count far beyond the bytes is refused without allocating for it.
        let mut r2 = AuditRecord::new(Action::Read, Outcome::Allowed);
        r2.what = vec![];
        let mut b2 = encode(&r2);
        let what_at = 1 + 8 + 1 + 1 + 5; // format, time, action, outcome, five absent options
        b2[what_at..what_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&b2).unwrap_err().contains("longer than the record"));
        // Invalid UTF-8 in a string.
        let mut r3 = AuditRecord::new(Action::Read, Outcome::Allowed);
        r3.who.user = Some("ab".into());
        let mut b3 = encode(&r3);
        let pos = b3.windows(2).position(|w| w == b"ab").expect("the user name is in the bytes");
        b3[pos] = 0xff;
        assert!(decode(&b3).unwrap_err().contains("UTF-8"));
    }
}
