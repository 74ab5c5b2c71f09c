//! Reading the audit ledger: who accessed a patient's record, and exports for incident reports.
//!
//! These open the database read-only and can run beside a running server.

use crate::{AuditError, DB_FILE, schema};
use rusqlite::{Connection, OptionalExtension};
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use vaidya_ledger::Entry;

/// A read-only connection to the audit database in `dir` (`<data>/audit`).
pub fn open_read_only(dir: &Path) -> Result<Connection, AuditError> {
    let path = dir.join(DB_FILE);
    if !path.exists() {
        return Err(AuditError::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no audit database at {}", path.display()),
        )));
    }
    Ok(schema::open_reader(&path)?)
}

/// Every AuditEvent naming Patient `patient_id` (as a patient entity), oldest first.
pub fn report_for_patient(dir: &Path, patient_id: &str) -> Result<Vec<Value>, AuditError> {
    let conn = open_read_only(dir)?;
    events_by_index(&conn, "SELECT seq FROM audit_patient WHERE patient = ?1 UNION ALL SELECT seq FROM audit_patient_new WHERE patient = ?1 ORDER BY 1", patient_id)
}

/// Every AuditEvent by user `user` (`anonymous` for requests without valid credentials),
/// oldest first.
pub fn report_for_user(dir: &Path, user: &str) -> Result<Vec<Value>, AuditError> {
    let conn = open_read_only(dir)?;
    events_by_index(&conn, "SELECT seq FROM audit_user WHERE user = ?1 UNION ALL SELECT seq FROM audit_user_new WHERE user = ?1 ORDER BY 1", user)
}

fn events_by_index(conn: &Connection, sql: &str, key: &str) -> Result<Vec<Value>, AuditError> {
    let conn_tx = conn.unchecked_transaction()?; // one snapshot: a merge cannot move rows between the two reads
    let seqs: Vec<i64> = conn_tx.prepare(sql)?.query_map([key], |r| r.get(0))?.collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(seqs.len());
    let mut stmt = conn_tx.prepare("SELECT entry FROM ledger WHERE seq = ?1")?;
    for seq in seqs {
        let bytes: Vec<u8> = stmt.query_row([seq], |r| r.get(0))?;
        out.push(content(seq as u64, &bytes)?);
    }
    Ok(out)
}

fn decode(seq: u64, bytes: &[u8]) -> Result<Entry, AuditError> {
    Entry::decode(bytes).map_err(|e| AuditError::Corrupt(format!("entry {seq}: {e} (run `vaidya audit verify`)")))
}

fn content(seq: u64, bytes: &[u8]) -> Result<Value, AuditError> {
    let entry = decode(seq, bytes)?;
    serde_json::from_slice(&entry.content)
        .map_err(|e| AuditError::Corrupt(format!("entry {seq} is not JSON: {e} (run `vaidya audit verify`)")))
}

/// Call `each(seq, entry)` for every entry committed in `[since_ms, until_ms)` (UTC
/// milliseconds), oldest first, in one snapshot. Entries' commit times never decrease, so the
/// range is found by binary search and a scan costs only what it reads.
fn scan_range(dir: &Path, since_ms: i64, until_ms: i64, mut each: impl FnMut(u64, Entry) -> Result<(), AuditError>) -> Result<(), AuditError> {
    let conn = open_read_only(dir)?;
    conn.execute_batch("BEGIN")?;
    let size: i64 = conn.query_row("SELECT coalesce(max(seq), 0) FROM ledger", [], |r| r.get(0))?;
    let first = first_at_or_after(&conn, since_ms, size as u64)?;
    let mut stmt = conn.prepare("SELECT seq, entry FROM ledger WHERE seq >= ?1 ORDER BY seq")?;
    let mut rows = stmt.query([first as i64])?;
    while let Some(row) = rows.next()? {
        let seq = row.get::<_, i64>(0)? as u64;
        let entry = decode(seq, &row.get::<_, Vec<u8>>(1)?)?;
        if entry.time_ms >= until_ms {
            break;
        }
        each(seq, entry)?;
    }
    Ok(())
}

/// Write the AuditEvents committed in `[since_ms, until_ms)` (UTC milliseconds) to `out` as
/// NDJSON, one event per line exactly as stored, oldest first; returns how many.
pub fn export(dir: &Path, since_ms: i64, until_ms: i64, out: &mut impl Write) -> Result<u64, AuditError> {
    let mut n = 0u64;
    scan_range(dir, since_ms, until_ms, |_, entry| {
        out.write_all(&entry.content)?;
        out.write_all(b"\n")?;
        n += 1;
        Ok(())
    })?;
    out.flush()?;
    Ok(n)
}

/// Every break-the-glass event committed in `[since_ms, until_ms)`: the grants, and every
/// access made under one (purpose of use `BTG`), oldest first, for the privacy officer's
/// review. A scan of the range (break-the-glass is rare; a day is a few seconds at most).
pub fn break_glass_events(dir: &Path, since_ms: i64, until_ms: i64) -> Result<Vec<Value>, AuditError> {
    let mut out = vec![];
    // The code as it appears in the stored JSON; only candidates are parsed.
    let needle = br#""code":"BTG""#;
    scan_range(dir, since_ms, until_ms, |seq, entry| {
        if !entry.content.windows(needle.len()).any(|w| w == needle) {
            return Ok(());
        }
        let ev: Value = serde_json::from_slice(&entry.content)
            .map_err(|e| AuditError::Corrupt(format!("entry {seq} is not JSON: {e} (run `vaidya audit verify`)")))?;
        let mut codes = ev["purposeOfEvent"].as_array().into_iter().flatten().flat_map(|p| p["coding"].as_array().into_iter().flatten());
        if codes.any(|c| c["code"] == "BTG") {
            out.push(ev);
        }
        Ok(())
    })?;
    Ok(out)
}

/// The first sequence number whose entry time is `>= t` (`size + 1` if none).
fn first_at_or_after(conn: &Connection, t: i64, size: u64) -> Result<u64, AuditError> {
    let mut stmt = conn.prepare("SELECT entry FROM ledger WHERE seq = ?1")?;
    let (mut lo, mut hi) = (1u64, size + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let bytes: Option<Vec<u8>> = stmt.query_row([mid as i64], |r| r.get(0)).optional()?;
        let time = match bytes {
            Some(b) => decode(mid, &b)?.time_ms,
            None => return Err(AuditError::Corrupt(format!("entry {mid} is missing (run `vaidya audit verify`)"))),
        };
        if time < t { lo = mid + 1 } else { hi = mid }
    }
    Ok(lo)
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
