//! Accounts and bearer tokens. Only hashes of token secrets and passwords are stored.
//!
//! Token kinds: `api` (made by an operator with `vaidya token`, long-lived, optionally scoped),
//! `session` (made by a password login, short-lived, ends when idle) and `sso-session` (made by
//! a single sign-on through an OpenID Connect provider: the same lifetimes as `session`; the
//! local password was not used, so a pending change of it does not hold the session back). The rules (how long, how many
//! failures lock) live in `vaidya-access` and the server; this module only stores.

//!
//! The queries are portable (`crate::sql`): the same functions serve SQLite and PostgreSQL.

use crate::sql::{Cells, Db, Dialect};
use crate::{StoreError, now_ms, sql_params};

pub const KIND_API: &str = "api";
pub const KIND_SESSION: &str = "session";
pub const KIND_SSO_SESSION: &str = "sso-session";

/// A login session of either kind (absolute and idle expiry).
pub fn is_session(kind: &str) -> bool {
    kind == KIND_SESSION || kind == KIND_SSO_SESSION
}

/// A token as stored, with what the request path needs to know of its account.
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
    /// The Practitioner a clinician's account is: patients with an appointment or encounter
    /// with them are in their care.
    pub practitioner: Option<String>,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
    /// [`KIND_API`], [`KIND_SESSION`] or [`KIND_SSO_SESSION`].
    pub kind: String,
    /// Space-separated scopes; `None`: whatever the account's role may do.
    pub scopes: Option<String>,
    pub last_used_ms: Option<i64>,
    /// The account is suspended (since then): none of its tokens work.
    pub user_disabled_ms: Option<i64>,
    pub must_change_password: bool,
}

/// What a login needs to know of an account.
#[derive(Debug, Clone)]
pub struct LoginRow {
    pub name: String,
    pub role: String,
    pub password_hash: Option<String>,
    pub must_change_password: bool,
    /// The active TOTP secret (base32), if the account has a second factor.
    pub totp_secret: Option<String>,
    /// A secret enrolled over HTTP and not yet confirmed with a code.
    pub totp_pending: Option<String>,
    pub totp_last_step: Option<i64>,
    pub failed_logins: u32,
    pub locked_until_ms: Option<i64>,
    pub disabled_ms: Option<i64>,
}

/// An account as the administrator's list shows it.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub name: String,
    pub role: String,
    pub department: Option<String>,
    pub must_change_password: bool,
    pub disabled_ms: Option<i64>,
}

/// Every account, by name.
pub fn list_users(conn: &impl Db) -> Result<Vec<UserRow>, StoreError> {
    conn.query_map("SELECT name, role, department, must_change_password, disabled_ms FROM api_user ORDER BY name", &[], |r| {
        Ok(UserRow { name: r.get(0)?, role: r.get(1)?, department: r.get(2)?, must_change_password: r.get(3)?, disabled_ms: r.get(4)? })
    })
}

/// Create a user; `false` if the name is taken (nothing changes then).
pub fn insert_user(
    conn: &impl Db,
    name: &str,
    role: &str,
    department: Option<&str>,
    password_hash: Option<&str>,
    must_change_password: bool,
) -> Result<bool, StoreError> {
    let n = conn.execute(
        "INSERT INTO api_user (name, role, department, password_hash, must_change_password, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
        &sql_params![name, role, department, password_hash, must_change_password, now_ms()],
    )?;
    Ok(n == 1)
}

/// The Patient a patient's account is linked to (`None`: no such account, or none linked).
pub fn user_patient(conn: &impl Db, name: &str) -> Result<Option<String>, StoreError> {
    Ok(conn.query_opt("SELECT patient FROM api_user WHERE name = ?1", &sql_params![name], |r| r.get::<Option<String>>(0))?.flatten())
}

/// Link a patient's account to their Patient resource (by id).
pub fn set_user_patient(conn: &impl Db, name: &str, patient: &str) -> Result<bool, StoreError> {
    Ok(conn.execute("UPDATE api_user SET patient = ?2 WHERE name = ?1", &sql_params![name, patient])? == 1)
}

pub fn set_user_practitioner(conn: &impl Db, name: &str, practitioner: &str) -> Result<bool, StoreError> {
    Ok(conn.execute("UPDATE api_user SET practitioner = ?2 WHERE name = ?1", &sql_params![name, practitioner])? == 1)
}

pub fn user_role(conn: &impl Db, name: &str) -> Result<Option<String>, StoreError> {
    conn.query_opt("SELECT role FROM api_user WHERE name = ?1", &sql_params![name], |r| r.get(0))
}

/// An `api` token with the account's full role.
pub fn insert_token(
    conn: &impl Db,
    id: &str,
    secret_hash: &[u8],
    user: &str,
    expires_ms: Option<i64>,
) -> Result<(), StoreError> {
    insert_token_of_kind(conn, id, secret_hash, user, expires_ms, KIND_API, None)
}

/// A token of `kind` ([`KIND_API`], [`KIND_SESSION`], [`KIND_SSO_SESSION`]), with `scopes` (space-separated) or the
/// account's full role (`None`). A session starts as just used.
pub fn insert_token_of_kind(
    conn: &impl Db,
    id: &str,
    secret_hash: &[u8],
    user: &str,
    expires_ms: Option<i64>,
    kind: &str,
    scopes: Option<&str>,
) -> Result<(), StoreError> {
    let now = now_ms();
    let last_used = is_session(kind).then_some(now);
    conn.execute(
        "INSERT INTO api_token (id, secret_hash, user_name, created_ms, expires_ms, kind, scopes, last_used_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        &sql_params![id, secret_hash, user, now, expires_ms, kind, scopes, last_used],
    )?;
    Ok(())
}

const TOKEN_COLUMNS: &str = "t.id, t.secret_hash, t.user_name, u.role, t.created_ms, t.expires_ms, t.revoked_ms, u.patient,
     t.kind, t.scopes, t.last_used_ms, u.disabled_ms, u.must_change_password, u.department, u.practitioner";

pub fn find_token(conn: &impl Db, id: &str) -> Result<Option<TokenRow>, StoreError> {
    conn.query_opt(
        &format!("SELECT {TOKEN_COLUMNS} FROM api_token t JOIN api_user u ON u.name = t.user_name WHERE t.id = ?1"),
        &sql_params![id],
        row_to_token,
    )
}

fn row_to_token(r: &Cells) -> Result<TokenRow, StoreError> {
    Ok(TokenRow {
        id: r.get(0)?,
        secret_hash: r.get(1)?,
        user: r.get(2)?,
        role: r.get(3)?,
        created_ms: r.get(4)?,
        expires_ms: r.get(5)?,
        revoked_ms: r.get(6)?,
        patient: r.get(7)?,
        kind: r.get(8)?,
        scopes: r.get(9)?,
        last_used_ms: r.get(10)?,
        user_disabled_ms: r.get(11)?,
        must_change_password: r.get(12)?,
        department: r.get(13)?,
        practitioner: r.get(14)?,
    })
}

pub fn list_tokens(conn: &impl Db) -> Result<Vec<TokenRow>, StoreError> {
    conn.query_map(&format!("SELECT {TOKEN_COLUMNS} FROM api_token t JOIN api_user u ON u.name = t.user_name ORDER BY t.created_ms"), &[], row_to_token)
}

/// Note that a token was used at `now` (callers do this at most about once a minute).
pub fn touch_token(conn: &impl Db, id: &str, now: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE api_token SET last_used_ms = ?2 WHERE id = ?1 AND (last_used_ms IS NULL OR last_used_ms < ?2)",
        &sql_params![id, now],
    )?;
    Ok(())
}

/// Revoke one token by id; the number of tokens revoked (0 if unknown or already revoked).
pub fn revoke_token(conn: &impl Db, id: &str) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "UPDATE api_token SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
        &sql_params![id, now_ms()],
    )? as usize)
}

/// Revoke every live token of a user.
pub fn revoke_user_tokens(conn: &impl Db, user: &str) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "UPDATE api_token SET revoked_ms = ?2 WHERE user_name = ?1 AND revoked_ms IS NULL",
        &sql_params![user, now_ms()],
    )? as usize)
}

/// Revoke a user's live sessions except `keep` (after a password change).
pub fn revoke_other_sessions(conn: &impl Db, user: &str, keep: &str) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "UPDATE api_token SET revoked_ms = ?3 WHERE user_name = ?1 AND id <> ?2 AND kind = 'session' AND revoked_ms IS NULL",
        &sql_params![user, keep, now_ms()],
    )? as usize)
}

pub fn find_login(conn: &impl Db, name: &str) -> Result<Option<LoginRow>, StoreError> {
    conn.query_opt(
        "SELECT name, role, password_hash, must_change_password, totp_secret, totp_pending, totp_last_step,
                failed_logins, locked_until_ms, disabled_ms
         FROM api_user WHERE name = ?1",
        &sql_params![name],
        |r| {
            Ok(LoginRow {
                name: r.get(0)?,
                role: r.get(1)?,
                password_hash: r.get(2)?,
                must_change_password: r.get(3)?,
                totp_secret: r.get(4)?,
                totp_pending: r.get(5)?,
                totp_last_step: r.get(6)?,
                failed_logins: r.get(7)?,
                locked_until_ms: r.get(8)?,
                disabled_ms: r.get(9)?,
            })
        },
    )
}

/// Count a failed login: one more consecutive failure, and the lock `lock_for(failures)` asks
/// for (ms from `now`), if any. Atomic, so that parallel guesses are all counted. Returns the
/// new count and the lock's end; `None` if there is no such account.
pub fn record_login_failure(
    conn: &impl Db,
    name: &str,
    now: i64,
    lock_for: impl Fn(u32) -> Option<i64>,
) -> Result<Option<(u32, Option<i64>)>, StoreError> {
    // A savepoint, not a transaction: this runs inside the server's writer transaction as
    // well as on its own (the CLI). PostgreSQL takes savepoints only inside a transaction; the
    // count's increment is atomic by itself there.
    let savepoint = conn.dialect() == Dialect::Sqlite;
    if savepoint {
        conn.execute_batch("SAVEPOINT login_failure")?;
    }
    let run = || -> Result<Option<(u32, Option<i64>)>, StoreError> {
        let failures: Option<u32> =
            conn.query_opt("UPDATE api_user SET failed_logins = failed_logins + 1 WHERE name = ?1 RETURNING failed_logins", &sql_params![name], |r| {
                r.get(0)
            })?;
        let Some(failures) = failures else { return Ok(None) };
        let until = lock_for(failures).map(|ms| now + ms);
        if let Some(until) = until {
            conn.execute("UPDATE api_user SET locked_until_ms = ?2 WHERE name = ?1", &sql_params![name, until])?;
        }
        Ok(Some((failures, until)))
    };
    match run() {
        Ok(v) => {
            if savepoint {
                conn.execute_batch("RELEASE login_failure")?;
            }
            Ok(v)
        }
        Err(e) => {
            if savepoint {
                let _ = conn.execute_batch("ROLLBACK TO login_failure; RELEASE login_failure");
            }
            Err(e)
        }
    }
}

/// A successful login: the failure count starts again.
pub fn record_login_success(conn: &impl Db, name: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE api_user SET failed_logins = 0, locked_until_ms = NULL WHERE name = ?1 AND (failed_logins <> 0 OR locked_until_ms IS NOT NULL)",
        &sql_params![name],
    )?;
    Ok(())
}

/// Lift a lock and forget the failures (an operator's `vaidya user unlock`).
pub fn unlock_user(conn: &impl Db, name: &str) -> Result<bool, StoreError> {
    Ok(conn.execute("UPDATE api_user SET failed_logins = 0, locked_until_ms = NULL WHERE name = ?1", &sql_params![name])? == 1)
}

/// Suspend an account (`Some(since)`) or reinstate it (`None`).
pub fn set_user_disabled(conn: &impl Db, name: &str, since: Option<i64>) -> Result<bool, StoreError> {
    Ok(conn.execute("UPDATE api_user SET disabled_ms = ?2 WHERE name = ?1", &sql_params![name, since])? == 1)
}

/// Store a TOTP time step as used, if it is later than the last one: `false` if it is not (a
/// replay, or a race with another request that used the same code).
pub fn accept_totp_step(conn: &impl Db, name: &str, step: i64) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE api_user SET totp_last_step = ?2 WHERE name = ?1 AND (totp_last_step IS NULL OR totp_last_step < ?2)",
        &sql_params![name, step],
    )? == 1)
}

/// Make `secret` the account's active second factor at once (an operator's enrolment).
pub fn set_totp_secret(conn: &impl Db, name: &str, secret: &str) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE api_user SET totp_secret = ?2, totp_pending = NULL, totp_last_step = NULL WHERE name = ?1",
        &sql_params![name, secret],
    )? == 1)
}

/// Keep `secret` as pending until the user proves, with a code, that their app has it.
pub fn set_totp_pending(conn: &impl Db, name: &str, secret: &str) -> Result<bool, StoreError> {
    Ok(conn.execute("UPDATE api_user SET totp_pending = ?2 WHERE name = ?1", &sql_params![name, secret])? == 1)
}

/// The pending secret `secret` becomes active, with `step` as used; `false` if the pending
/// secret changed meanwhile.
pub fn confirm_totp(conn: &impl Db, name: &str, secret: &str, step: i64) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE api_user SET totp_secret = totp_pending, totp_pending = NULL, totp_last_step = ?3 WHERE name = ?1 AND totp_pending = ?2",
        &sql_params![name, secret, step],
    )? == 1)
}

/// Store a new password hash chosen by the user (clears `must_change_password`).
pub fn set_password(conn: &impl Db, name: &str, hash: &str) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE api_user SET password_hash = ?2, must_change_password = 0 WHERE name = ?1",
        &sql_params![name, hash],
    )? == 1)
}
