//! Break-the-glass grants: a clinician's time-limited access to one patient's records outside
//! their normal rights. Written through the writer (durable with the rest), read by the access
//! checks on every decision about that patient.

use crate::StoreError;
use rusqlite::{Connection, OptionalExtension, params};

/// One grant as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub user: String,
    pub patient: String,
    pub reason: String,
    pub granted_ms: i64,
    pub expires_ms: i64,
}

pub fn insert(conn: &Connection, g: &Grant) -> Result<(), StoreError> {
    conn.execute(
        "INSERT OR REPLACE INTO access_grant (user_name, patient, reason, granted_ms, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![g.user, g.patient, g.reason, g.granted_ms, g.expires_ms],
    )?;
    Ok(())
}

/// Whether `user` holds a grant for `patient` that has not expired at `now_ms`.
pub fn active(conn: &Connection, user: &str, patient: &str, now_ms: i64) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM access_grant WHERE user_name = ?1 AND patient = ?2 AND expires_ms > ?3 LIMIT 1")?
        .query_row(params![user, patient, now_ms], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Grants made at or after `since_ms`, newest first (for the privacy officer's review).
pub fn since(conn: &Connection, since_ms: i64) -> Result<Vec<Grant>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT user_name, patient, reason, granted_ms, expires_ms FROM access_grant WHERE granted_ms >= ?1 ORDER BY granted_ms DESC",
    )?;
    let rows = stmt.query_map([since_ms], |r| {
        Ok(Grant { user: r.get(0)?, patient: r.get(1)?, reason: r.get(2)?, granted_ms: r.get(3)?, expires_ms: r.get(4)? })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
