//! Reading the audit ledger: who accessed a patient's record, and exports for incident reports.
//!
//! These only read (the journal's segments and their index files) and can run beside a running
//! server. The segment being written has no index file yet: it is read whole.

use crate::index::{self, Key};
use crate::journal::{self, HEADER, Next, Pos, SegmentReader};
use crate::AuditError;
use serde_json::Value;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use vaidya_ledger::Entry;

fn no_audit(dir: &Path) -> AuditError {
    AuditError::Io(std::io::Error::new(std::io::ErrorKind::NotFound, format!("no audit journal in {}", dir.display())))
}

/// Every AuditEvent naming Patient `patient_id` (as a patient entity), oldest first.
pub fn report_for_patient(dir: &Path, patient_id: &str) -> Result<Vec<Value>, AuditError> {
    events_by_key(dir, Key::Patient(patient_id))
}

/// Every AuditEvent by user `user` (`anonymous` for requests without valid credentials),
/// oldest first.
pub fn report_for_user(dir: &Path, user: &str) -> Result<Vec<Value>, AuditError> {
    events_by_key(dir, Key::User(user))
}

fn events_by_key(dir: &Path, key: Key<'_>) -> Result<Vec<Value>, AuditError> {
    if !journal::journal_dir(dir).exists() {
        return Err(no_audit(dir));
    }
    let segs = journal::segments(dir)?;
    let finder = memchr::memmem::Finder::new(key.needle());
    let mut out = Vec::new();
    for (i, &seg) in segs.iter().enumerate() {
        // The last segment is still being written: it has no index file yet. A closed one's
        // file must count the entries up to the next segment's first.
        let indexed = match segs.get(i + 1) {
            Some(&next) => index::IndexFile::open(dir, seg).filter(|idx| seg + idx.entries == next),
            None => None,
        };
        match indexed {
            Some(idx) => {
                let file = File::open(journal::segment_path(dir, seg))
                    .map_err(|e| AuditError::Corrupt(format!("segment {seg}: {e} (run `vaidya audit verify`)")))?;
                for (seq, off) in idx.lookup(key)? {
                    let frame = journal::read_frame_at(&file, off)
                        .map_err(|e| AuditError::Corrupt(format!("entry {seq}: {e} (run `vaidya audit verify`)")))?;
                    let entry = decode(seq, &frame.entry)?;
                    if entry.seq != seq {
                        return Err(AuditError::Corrupt(format!("the index places entry {seq} where entry {} is (run `vaidya audit verify`)", entry.seq)));
                    }
                    // A hash shared by two keys: the entry is read, and left out.
                    if names(&key, &entry)? {
                        out.push(content(&entry)?);
                    }
                }
            }
            None => {
                // Read the segment. Only entries whose bytes contain the patient's id or the
                // user's name can be filed under them (in JSON and compact records alike);
                // only those are decoded.
                let mut r = SegmentReader::open(dir, seg, HEADER)?;
                while let Next::Frame(f) = r.next()? {
                    if finder.find(&f.entry).is_none() {
                        continue;
                    }
                    let entry = decode(seg, &f.entry)?;
                    if names(&key, &entry)? {
                        out.push(content(&entry)?);
                    }
                }
            }
        }
    }
    Ok(out)
}

fn names(key: &Key<'_>, entry: &Entry) -> Result<bool, AuditError> {
    key.names(entry).map_err(|e| AuditError::Corrupt(format!("entry {}: {e} (run `vaidya audit verify`)", entry.seq)))
}

fn decode(seq: u64, bytes: &[u8]) -> Result<Entry, AuditError> {
    Entry::decode(bytes).map_err(|e| AuditError::Corrupt(format!("entry {seq}: {e} (run `vaidya audit verify`)")))
}

fn content(entry: &Entry) -> Result<Value, AuditError> {
    serde_json::from_slice(&json(entry)?).map_err(|e| AuditError::Corrupt(format!("entry {} is not JSON: {e} (run `vaidya audit verify`)", entry.seq)))
}

/// The entry's AuditEvent JSON (see [`crate::event_json`]).
fn json(entry: &Entry) -> Result<Vec<u8>, AuditError> {
    crate::event_json(entry).map_err(|e| AuditError::Corrupt(format!("entry {}: {e} (run `vaidya audit verify`)", entry.seq)))
}

/// Call `each(entry)` for every entry appended in `[since_ms, until_ms)` (UTC milliseconds),
/// oldest first. Entries' times never decrease, so whole segments before the range are
/// skipped by their first entry's time, and the walk stops at the first entry past it.
fn scan_range(dir: &Path, since_ms: i64, until_ms: i64, mut each: impl FnMut(Entry) -> Result<(), AuditError>) -> Result<(), AuditError> {
    if !journal::journal_dir(dir).exists() {
        return Err(no_audit(dir));
    }
    let segs = journal::segments(dir)?;
    // The last segment whose first entry is before `since_ms`: the range starts in it or later.
    let mut start = segs.first().copied().unwrap_or(1);
    for &seg in &segs {
        match SegmentReader::open(dir, seg, HEADER)?.next()? {
            Next::Frame(f) if decode(seg, &f.entry)?.time_ms < since_ms => start = seg,
            _ => break,
        }
    }
    journal::walk(dir, Pos { seg: start, off: HEADER }, |seg, next| {
        let Next::Frame(f) = next else { return Ok(true) };
        let entry = decode(seg, &f.entry)?;
        if entry.time_ms >= until_ms {
            return Ok(false);
        }
        if entry.time_ms >= since_ms {
            each(entry)?;
        }
        Ok(true)
    })
}

/// Write the AuditEvents appended in `[since_ms, until_ms)` (UTC milliseconds) to `out` as
/// NDJSON, one FHIR AuditEvent per line (written from the compact record, or exactly as stored
/// when stored as JSON), oldest first; returns how many.
pub fn export(dir: &Path, since_ms: i64, until_ms: i64, out: &mut impl Write) -> Result<u64, AuditError> {
    let mut n = 0u64;
    scan_range(dir, since_ms, until_ms, |entry| {
        out.write_all(&json(&entry)?)?;
        out.write_all(b"\n")?;
        n += 1;
        Ok(())
    })?;
    out.flush()?;
    Ok(n)
}

/// Every break-the-glass event appended in `[since_ms, until_ms)`: the grants, and every
/// access made under one (purpose of use `BTG`), oldest first, for the privacy officer's
/// review. A scan of the range (break-the-glass is rare; a day is a few seconds at most).
pub fn break_glass_events(dir: &Path, since_ms: i64, until_ms: i64) -> Result<Vec<Value>, AuditError> {
    let mut out = vec![];
    // The code as it appears in stored JSON; only candidates are parsed. A compact record says
    // its purpose in one byte: it is decoded.
    let needle = br#""code":"BTG""#;
    scan_range(dir, since_ms, until_ms, |entry| {
        let candidate = match entry.content.first() {
            Some(&crate::compact::FORMAT) => {
                let record = crate::compact::decode(&entry.content).map_err(|e| AuditError::Corrupt(format!("entry {}: {e} (run `vaidya audit verify`)", entry.seq)))?;
                record.purpose == Some(crate::Purpose::BreakTheGlass)
            }
            _ => entry.content.windows(needle.len()).any(|w| w == needle),
        };
        if !candidate {
            return Ok(());
        }
        let ev = content(&entry)?;
        let mut codes = ev["purposeOfEvent"].as_array().into_iter().flatten().flat_map(|p| p["coding"].as_array().into_iter().flatten());
        if codes.any(|c| c["code"] == "BTG") {
            out.push(ev);
        }
        Ok(())
    })?;
    Ok(out)
}

/// One line of a human-readable access report, taken from an AuditEvent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRow {
    pub id: String,
    /// `recorded`, in UTC milliseconds (None if unreadable).
    pub time_ms: Option<i64>,
    pub user: String,
    pub role: String,
    /// The `audit-action` code (`read`, `search`, `$merge`, `break-glass`, ...).
    pub action: String,
    /// `allowed`, `denied: <reason>`, `failed: <reason>`.
    pub outcome: String,
    /// Network address of the requestor.
    pub address: String,
    /// Purpose of use and reason (`BTG ETREAT: patient unconscious in casualty`).
    pub reason: String,
    /// Resources named (the patients, the resources read, the query).
    pub what: String,
}

impl ReportRow {
    pub fn from_event(ev: &Value) -> ReportRow {
        let s = |v: Option<&Value>| v.and_then(|v| v.as_str()).unwrap_or("").to_string();
        let agent = ev
            .get("agent")
            .and_then(|a| a.as_array())
            .and_then(|a| a.iter().find(|x| x.get("requestor").and_then(|r| r.as_bool()) == Some(true)).or(a.first()));
        let action = ev
            .get("subtype")
            .and_then(|a| a.as_array())
            .and_then(|a| a.iter().find(|c| c.get("system").and_then(|s| s.as_str()) == Some(crate::ACTION_SYSTEM)))
            .map(|c| s(c.get("code")))
            .unwrap_or_else(|| s(ev.pointer("/type/code")));
        let desc = s(ev.get("outcomeDesc"));
        let outcome = match ev.get("outcome").and_then(|o| o.as_str()) {
            Some("0") => "allowed".to_string(),
            Some("4") => format!("denied: {desc}"),
            Some(other) => format!("failed ({other}): {desc}"),
            None => String::new(),
        };
        let reason = ev
            .get("purposeOfEvent")
            .and_then(|p| p.as_array())
            .map(|list| {
                list.iter()
                    .map(|cc| {
                        let codes: Vec<String> = cc
                            .get("coding")
                            .and_then(|c| c.as_array())
                            .into_iter()
                            .flatten()
                            .map(|c| s(c.get("code")))
                            .collect();
                        let text = s(cc.get("text"));
                        match (codes.is_empty(), text.is_empty()) {
                            (false, false) => format!("{}: {text}", codes.join(" ")),
                            (false, true) => codes.join(" "),
                            _ => text,
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
        let what = ev
            .get("entity")
            .and_then(|e| e.as_array())
            .into_iter()
            .flatten()
            .filter_map(|e| {
                e.pointer("/what/reference")
                    .and_then(|r| r.as_str())
                    .map(str::to_string)
                    .or_else(|| e.pointer("/what/identifier/value").and_then(|d| d.as_str()).map(|u| format!("account:{u}")))
                    .or_else(|| e.get("description").and_then(|d| d.as_str()).map(str::to_string))
            })
            .collect::<Vec<_>>()
            .join(" ");
        ReportRow {
            id: s(ev.get("id")),
            time_ms: ev.get("recorded").and_then(|r| r.as_str()).and_then(crate::parse_instant),
            user: s(agent.and_then(|a| a.get("name"))),
            role: s(agent.and_then(|a| a.pointer("/role/0/text"))),
            action,
            outcome,
            address: s(agent.and_then(|a| a.pointer("/network/address"))),
            reason,
            what,
        }
    }
}
