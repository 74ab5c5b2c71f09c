//! Recording from a second process: the `vaidya` command line (accounts, tokens) while the
//! server holds the audit ledger.
//!
//! Only one process may append to the ledger: its writer keeps the chain's tip and the Merkle
//! tree's right edge in memory, so a second appender would fork the chain (both would link
//! entry N+1 to entry N) and `verify` would fail. [`Audit::open`] takes a lock file for that
//! reason. A tool that finds the lock taken therefore does not append; it inserts its events,
//! already checked and serialised, into the `inbox` table of the same database (SQLite's own
//! locking makes that one short write transaction; `synchronous=FULL`, so the event is on disk
//! when [`ToolAudit::record`] returns). The writer that holds the lock takes inbox rows into the
//! ledger at start, when idle (every [`crate::CHECKPOINT_INTERVAL_MS`]) and at most once that
//! often while busy, in inbox order, and deletes each row once its entry is flushed to the
//! journal. A crash between the flush and the delete leaves the row behind with its entry
//! already appended; the next start recognises it (the same user and AuditEvent among the
//! entries after the last checkpoint, which is never signed between the two steps) and deletes
//! it: each row is appended exactly once. A row that cannot be an entry (it was not written by
//! [`ToolAudit::record`]) is kept with the reason in `rejected` and logged.
//!
//! If the lock is free (no server running), the tool opens the ledger itself and appends
//! directly, taking any waiting inbox rows first.

use crate::{AuditError, AuditRecord, JSON_PREFIX, MAX_EVENT_BYTES, MAX_USER_BYTES, Prepared};
use crate::{Audit, DB_FILE, prepare};
use rusqlite::{Connection, params};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use vaidya_ledger::Entry;
use std::path::Path;
use vaidya_ledger::LedgerKey;

/// Most inbox rows taken into one commit.
pub const INBOX_BATCH: usize = 1_000;

/// The audit ledger as a command-line tool sees it.
pub enum ToolAudit {
    /// No other process holds the ledger: this process appends.
    Writer(Audit),
    /// A server holds it: events go to its inbox.
    Inbox(Connection),
}

/// Where [`ToolAudit::record`] put the events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Appended to the ledger (committed, fsynced, signed at shutdown).
    Appended,
    /// In the running writer's inbox (committed, fsynced); in the ledger within about a second.
    Queued,
}

impl ToolAudit {
    /// Open the audit ledger in `dir` for a tool: as its writer if no other process holds it,
    /// otherwise its inbox. `key` signs checkpoints when this process is the writer.
    pub fn open(dir: &Path, key: LedgerKey) -> Result<ToolAudit, AuditError> {
        match Audit::open(dir, key) {
            Ok(a) => Ok(ToolAudit::Writer(a)),
            Err(AuditError::Locked(_)) => open_inbox(&dir.join(DB_FILE)).map(ToolAudit::Inbox),
            Err(e) => Err(e),
        }
    }

    /// Record `events` durably (see [`Delivery`]).
    pub fn record(&self, events: Vec<AuditRecord>) -> Result<Delivery, AuditError> {
        match self {
            ToolAudit::Writer(a) => a.record_blocking(events).map(|()| Delivery::Appended),
            ToolAudit::Inbox(conn) => {
                let prepared = prepare(&events, crate::Form::Json)?;
                let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
                {
                    let mut stmt = tx.prepare("INSERT INTO inbox (time_ms, user, json) VALUES (?1, ?2, ?3)")?;
                    for p in &prepared {
                        stmt.execute(params![crate::now_ms(), p.user, p.content])?;
                    }
                }
                tx.commit()?;
                Ok(Delivery::Queued)
            }
        }
    }
}

fn open_inbox(path: &Path) -> Result<Connection, AuditError> {
    if !path.exists() {
        return Err(AuditError::Invalid(format!(
            "another process holds the audit ledger but {} does not exist yet; try again in a moment",
            path.display()
        )));
    }
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version < crate::schema::SCHEMA_VERSION {
        return Err(AuditError::Invalid(format!(
            "the process holding the audit ledger ({}) has no inbox for other processes' events (schema version {version}); \
             upgrade and restart it, or stop it and run this command again",
            path.display()
        )));
    }
    Ok(conn)
}

/// An inbox row checked the way [`prepare`] checks a caller's event, and its patients taken
/// from the AuditEvent itself (as `verify` will): `Err` with the reason it cannot be appended.
pub(crate) fn check_row(user: String, json: Vec<u8>) -> Result<Prepared, String> {
    if user.is_empty() || user.len() > MAX_USER_BYTES {
        return Err(format!("user name is empty or longer than {MAX_USER_BYTES} bytes"));
    }
    if json.len() > MAX_EVENT_BYTES || !json.starts_with(JSON_PREFIX) {
        return Err(format!("not an AuditEvent of at most {MAX_EVENT_BYTES} bytes as the recorder writes it"));
    }
    let v: serde_json::Value = serde_json::from_slice(&json).map_err(|e| format!("not JSON: {e}"))?;
    if v.get("id").is_some() {
        return Err("it already has an id".into());
    }
    let requestor = v
        .get("agent")
        .and_then(|a| a.as_array())
        .and_then(|a| a.iter().find(|x| x.get("requestor").and_then(|r| r.as_bool()) == Some(true)))
        .and_then(|a| a.get("name"))
        .and_then(|n| n.as_str());
    if requestor != Some(user.as_str()) {
        return Err(format!("its requestor is not the row's user '{user}'"));
    }
    let patients = crate::verify::patients_of(&v);
    if patients.len() > crate::MAX_PATIENTS_PER_EVENT || patients.iter().any(|p| p.is_empty() || p.len() > 64 || p.contains('/')) {
        return Err("it names too many patients or an invalid patient id".into());
    }
    Ok(Prepared { user, patients, content: json })
}

/// Waiting rows (oldest first), for the writer.
pub(crate) fn waiting(conn: &Connection) -> rusqlite::Result<Vec<(i64, String, Vec<u8>)>> {
    let mut stmt = conn.prepare_cached("SELECT id, user, json FROM inbox WHERE rejected IS NULL ORDER BY id LIMIT ?1")?;
    stmt.query_map([INBOX_BATCH as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect()
}

/// Whether any row waits (a cheap check outside a transaction).
pub(crate) fn any_waiting(conn: &Connection) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM inbox WHERE rejected IS NULL)")?.query_row([], |r| r.get(0))
}

/// What identifies an inbox event among appended entries: its user and AuditEvent JSON (the
/// entry's content without the `id` the writer inserted).
fn key_of(user: &str, json: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((user.len() as u64).to_be_bytes());
    h.update(user.as_bytes());
    h.update(json);
    h.finalize().into()
}

/// [`key_of`] an appended entry.
pub(crate) fn appended_key(entry: &Entry) -> Option<[u8; 32]> {
    let id_part = format!("\"id\":\"{}\",", entry.seq);
    let rest = entry.content.strip_prefix(JSON_PREFIX)?.strip_prefix(id_part.as_bytes())?;
    let mut json = Vec::with_capacity(JSON_PREFIX.len() + rest.len());
    json.extend_from_slice(JSON_PREFIX);
    json.extend_from_slice(rest);
    Some(key_of(&entry.author, &json))
}

/// Delete waiting rows whose events are among `appended` (a crash came between their flush and
/// their deletion).
pub(crate) fn forget_appended(conn: &Connection, appended: &HashSet<[u8; 32]>) -> Result<(), AuditError> {
    if appended.is_empty() || !any_waiting(conn)? {
        return Ok(());
    }
    let tx = conn.unchecked_transaction()?;
    let rows: Vec<(i64, String, Vec<u8>)> = tx
        .prepare("SELECT id, user, json FROM inbox WHERE rejected IS NULL ORDER BY id")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    for (id, user, json) in rows {
        if appended.contains(&key_of(&user, &json)) {
            tracing::warn!("audit inbox row {id} was appended before a crash; deleting it");
            tx.execute("DELETE FROM inbox WHERE id = ?1", [id])?;
        }
    }
    tx.commit()?;
    Ok(())
}
