//! Break-the-glass grants: a clinician's time-limited access to one patient's records outside
//! their normal rights. Written through the writer (durable with the rest), read by the access
//! checks on every decision about that patient. Portable queries (`crate::sql`).

use crate::sql::Db;
use crate::{StoreError, sql_params};

/// One grant as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub user: String,
    pub patient: String,
    pub reason: String,
    pub granted_ms: i64,
    pub expires_ms: i64,
}

/// Store a grant (the same user, patient and moment again replaces its reason and expiry).
pub fn insert(conn: &impl Db, g: &Grant) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO access_grant (user_name, patient, reason, granted_ms, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (user_name, patient, granted_ms) DO UPDATE SET reason = excluded.reason, expires_ms = excluded.expires_ms",
        &sql_params![&g.user, &g.patient, &g.reason, g.granted_ms, g.expires_ms],
    )?;
    Ok(())
}

/// Whether `user` holds a grant for `patient` that has not expired at `now_ms`.
pub fn active(conn: &impl Db, user: &str, patient: &str, now_ms: i64) -> Result<bool, StoreError> {
    Ok(conn
        .query_opt(
            "SELECT 1 FROM access_grant WHERE user_name = ?1 AND patient = ?2 AND expires_ms > ?3 LIMIT 1",
            &sql_params![user, patient, now_ms],
            |_| Ok(()),
        )?
        .is_some())
}

/// Grants made at or after `since_ms`, newest first (for the privacy officer's review).
pub fn since(conn: &impl Db, since_ms: i64) -> Result<Vec<Grant>, StoreError> {
    conn.query_map(
        "SELECT user_name, patient, reason, granted_ms, expires_ms FROM access_grant WHERE granted_ms >= ?1 ORDER BY granted_ms DESC",
        &sql_params![since_ms],
        |r| Ok(Grant { user: r.get(0)?, patient: r.get(1)?, reason: r.get(2)?, granted_ms: r.get(3)?, expires_ms: r.get(4)? }),
    )
}
