//! Accounts and bearer tokens. Only hashes of token secrets are stored.

use crate::{StoreError, now_ms};
use rusqlite::{Connection, OptionalExtension, params};

/// A token as stored.
#[derive(Debug, Clone)]
pub struct TokenRow {
    pub id: String,
    pub secret_hash: Vec<u8>,
    pub user: String,
    pub role: String,
    /// The Patient a patient's own account is for.
    pub patient: Option<String>,
    /// The department (HealthcareService id) a staff account works in.
    pub department: Option<String>,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
}

/// Create a user; `false` if the name is taken (nothing changes then).
pub fn insert_user(
    conn: &Connection,
    name: &str,
    role: &str,
    department: Option<&str>,
    password_hash: Option<&str>,
    must_change_password: bool,
) -> Result<bool, StoreError> {
    let n = conn.execute(
        "INSERT OR IGNORE INTO api_user (name, role, department, password_hash, must_change_password, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![name, role, department, password_hash, must_change_password, now_ms()],
    )?;
    Ok(n == 1)
}

/// Link a patient's account to their Patient resource (by id).
pub fn set_user_patient(conn: &Connection, name: &str, patient: &str) -> Result<bool, StoreError> {
    Ok(conn.execute("UPDATE api_user SET patient = ?2 WHERE name = ?1", params![name, patient])? == 1)
}

pub fn user_role(conn: &Connection, name: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row("SELECT role FROM api_user WHERE name = ?1", [name], |r| r.get(0))
        .optional()?)
}

pub fn insert_token(
    conn: &Connection,
    id: &str,
    secret_hash: &[u8],
    user: &str,
    expires_ms: Option<i64>,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO api_token (id, secret_hash, user_name, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, secret_hash, user, now_ms(), expires_ms],
    )?;
    Ok(())
}

pub fn find_token(conn: &Connection, id: &str) -> Result<Option<TokenRow>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT t.id, t.secret_hash, t.user_name, u.role, t.created_ms, t.expires_ms, t.revoked_ms, u.patient, u.department
             FROM api_token t JOIN api_user u ON u.name = t.user_name WHERE t.id = ?1",
        )?
        .query_row([id], row_to_token)
        .optional()?)
}

fn row_to_token(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok(TokenRow {
        id: r.get(0)?,
        secret_hash: r.get(1)?,
        user: r.get(2)?,
        role: r.get(3)?,
        created_ms: r.get(4)?,
        expires_ms: r.get(5)?,
        revoked_ms: r.get(6)?,
        patient: r.get(7)?,
        department: r.get(8)?,
    })
}

pub fn list_tokens(conn: &Connection) -> Result<Vec<TokenRow>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT t.id, t.secret_hash, t.user_name, u.role, t.created_ms, t.expires_ms, t.revoked_ms, u.patient, u.department
         FROM api_token t JOIN api_user u ON u.name = t.user_name ORDER BY t.created_ms",
    )?;
    let rows = stmt.query_map([], row_to_token)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Revoke one token by id; the number of tokens revoked (0 if unknown or already revoked).
pub fn revoke_token(conn: &Connection, id: &str) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "UPDATE api_token SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
        params![id, now_ms()],
    )?)
}

/// Revoke every live token of a user.
pub fn revoke_user_tokens(conn: &Connection, user: &str) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "UPDATE api_token SET revoked_ms = ?2 WHERE user_name = ?1 AND revoked_ms IS NULL",
        params![user, now_ms()],
    )?)
}
