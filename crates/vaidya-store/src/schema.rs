//! The SQLite schema. Every table except `ledger`, `tree_hash` and `checkpoint` is a projection
//! of the ledger, written in the same transaction as the entry, and can be rebuilt from it.
//!
//! Layout (see docs/ARCHITECTURE.md for worked examples):
//! - `ledger(seq, entry)`: the canonical entry bytes (vaidya_ledger::Entry::encode), seq from 1.
//! - `tree_hash(idx, hash)`: the RFC 6962 tree's stored hashes in tlog order
//!   (tlog_tiles::stored_hash_index); record n of the tree is the entry with seq n+1.
//! - `checkpoint(tree_size, time_ms, note)`: signed tree heads.
//! - `resource(rowid, rtype, rid, version, seq, updated_ms, deleted)`: current version of each
//!   resource; `rowid` is the `res` key of every index table.
//! - `history(rtype, rid, version, seq)`: every version, for vread and `_history`.
//! - `sp_param(id, rtype, code)`: interned search parameter names.
//! - `ix_*`: search indexes, keyed by (res, param, value...) so that a resource's rows are
//!   replaced in one range delete, with a second index (param, value, res) for searching.
//! - `ix_composite(res, param, system, code, v_system, v_code, v_text, v_num, v_lo, v_hi,
//!   v_target)`: composite parameters (two components, a token first): one row per node and
//!   combination of component values. `system`/`code` are the token part; the second part uses
//!   the columns of its type, the others hold '' or 0: token `v_system`, `v_code`; quantity
//!   `v_num`, `v_system`, `v_code`, `v_text` (the unit as written); string `v_text` (normalized);
//!   date `v_lo`, `v_hi`; number `v_num`; reference and uri `v_target`.
//! - `ix_geo(res, param, lat, lon, x, y, z)`: positions (Location `near`) in degrees, with the
//!   unit vector (x, y, z) on the sphere so that a search can compute great-circle distances with
//!   arithmetic alone (SQLite may lack trigonometry); x, y, z are derived from lat, lon.
//! - `api_user`, `api_token`: accounts and bearer tokens (not ledgered: access state).
//!   `api_user` also holds the second factor (`totp_secret` active, `totp_pending` enrolled but
//!   not yet confirmed, `totp_last_step` the last TOTP time step accepted: never again),
//!   `failed_logins`/`locked_until_ms` (lockout) and `disabled_ms` (suspended: no login, no
//!   token works). `api_token.kind` is `api` (made by `vaidya token`), `session` (a login) or `sso-session` (a single sign-on);
//!   `scopes` (space-separated SMART scopes; NULL = everything the role may do);
//!   `last_used_ms` (updated at most about once a minute, for idle session expiry).

pub const SCHEMA_VERSION: i64 = 5;

/// Changes from one schema version to the next: `MIGRATIONS[i]` takes version `i + 1` to `i + 2`.
pub const MIGRATIONS: &[&str] = &[
    // 1 -> 2: staff accounts belong to a department.
    "ALTER TABLE api_user ADD COLUMN department TEXT",
    // 2 -> 3: a patient's own account names their Patient resource.
    "ALTER TABLE api_user ADD COLUMN patient TEXT",
    // 3 -> 4: staff identity: TOTP second factor, lockout, suspension; session tokens, scoped
    // tokens and when a token was last used.
    "ALTER TABLE api_user ADD COLUMN totp_secret TEXT;
     ALTER TABLE api_user ADD COLUMN totp_pending TEXT;
     ALTER TABLE api_user ADD COLUMN totp_last_step INTEGER;
     ALTER TABLE api_user ADD COLUMN failed_logins INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE api_user ADD COLUMN locked_until_ms INTEGER;
     ALTER TABLE api_user ADD COLUMN disabled_ms INTEGER;
     ALTER TABLE api_token ADD COLUMN kind TEXT NOT NULL DEFAULT 'api';
     ALTER TABLE api_token ADD COLUMN scopes TEXT;
     ALTER TABLE api_token ADD COLUMN last_used_ms INTEGER",
    // 4 -> 5: a clinician's account names their Practitioner (their own patients are theirs).
    "ALTER TABLE api_user ADD COLUMN practitioner TEXT",
];

pub const SCHEMA: &str = r#"
CREATE TABLE ledger (
    seq INTEGER PRIMARY KEY,
    entry BLOB NOT NULL
);
CREATE TABLE tree_hash (
    idx INTEGER PRIMARY KEY,
    hash BLOB NOT NULL
);
CREATE TABLE checkpoint (
    tree_size INTEGER PRIMARY KEY,
    time_ms INTEGER NOT NULL,
    note TEXT NOT NULL
);
CREATE TABLE resource (
    rowid INTEGER PRIMARY KEY,
    rtype TEXT NOT NULL,
    rid TEXT NOT NULL,
    version INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    UNIQUE (rtype, rid)
);
CREATE TABLE history (
    rtype TEXT NOT NULL,
    rid TEXT NOT NULL,
    version INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (rtype, rid, version)
) WITHOUT ROWID;
CREATE TABLE sp_param (
    id INTEGER PRIMARY KEY,
    rtype TEXT NOT NULL,
    code TEXT NOT NULL,
    UNIQUE (rtype, code)
);
CREATE TABLE ix_string (
    res INTEGER NOT NULL, param INTEGER NOT NULL, value TEXT NOT NULL, exact TEXT NOT NULL,
    PRIMARY KEY (res, param, value, exact)
) WITHOUT ROWID;
CREATE TABLE ix_token (
    res INTEGER NOT NULL, param INTEGER NOT NULL, system TEXT NOT NULL, code TEXT NOT NULL,
    text TEXT,
    PRIMARY KEY (res, param, code, system)
) WITHOUT ROWID;
CREATE TABLE ix_ref (
    res INTEGER NOT NULL, param INTEGER NOT NULL, target TEXT NOT NULL,
    PRIMARY KEY (res, param, target)
) WITHOUT ROWID;
CREATE TABLE ix_date (
    res INTEGER NOT NULL, param INTEGER NOT NULL, lo INTEGER NOT NULL, hi INTEGER NOT NULL,
    PRIMARY KEY (res, param, lo, hi)
) WITHOUT ROWID;
CREATE TABLE ix_number (
    res INTEGER NOT NULL, param INTEGER NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (res, param, value)
) WITHOUT ROWID;
CREATE TABLE ix_quantity (
    res INTEGER NOT NULL, param INTEGER NOT NULL, value REAL NOT NULL,
    system TEXT NOT NULL, code TEXT NOT NULL, unit TEXT NOT NULL,
    PRIMARY KEY (res, param, value, system, code, unit)
) WITHOUT ROWID;
CREATE TABLE ix_uri (
    res INTEGER NOT NULL, param INTEGER NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (res, param, value)
) WITHOUT ROWID;
CREATE TABLE ix_composite (
    res INTEGER NOT NULL, param INTEGER NOT NULL, system TEXT NOT NULL, code TEXT NOT NULL,
    v_system TEXT NOT NULL, v_code TEXT NOT NULL, v_text TEXT NOT NULL, v_num REAL NOT NULL,
    v_lo INTEGER NOT NULL, v_hi INTEGER NOT NULL, v_target TEXT NOT NULL,
    PRIMARY KEY (res, param, code, system, v_code, v_system, v_text, v_num, v_lo, v_hi, v_target)
) WITHOUT ROWID;
CREATE TABLE ix_geo (
    res INTEGER NOT NULL, param INTEGER NOT NULL, lat REAL NOT NULL, lon REAL NOT NULL,
    x REAL NOT NULL, y REAL NOT NULL, z REAL NOT NULL,
    PRIMARY KEY (res, param, lat, lon)
) WITHOUT ROWID;
CREATE TABLE api_user (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    department TEXT,
    patient TEXT,
    password_hash TEXT,
    must_change_password INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    totp_secret TEXT,
    totp_pending TEXT,
    totp_last_step INTEGER,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until_ms INTEGER,
    disabled_ms INTEGER,
    practitioner TEXT
);
CREATE TABLE api_token (
    id TEXT PRIMARY KEY,
    secret_hash BLOB NOT NULL,
    user_name TEXT NOT NULL REFERENCES api_user (name),
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER,
    revoked_ms INTEGER,
    kind TEXT NOT NULL DEFAULT 'api',
    scopes TEXT,
    last_used_ms INTEGER
);
"#;

/// Tables added after schema version 1, created if missing when the store opens.
pub const ADDED_TABLES: &[&str] = &[
    // Named counters (e.g. the last UHID serial issued), written in the same transaction as
    // the resources that use them.
    "CREATE TABLE IF NOT EXISTS sequence (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    // Break-the-glass grants: a clinician's time-limited access to one patient outside their
    // normal rights, with the reason they gave (every grant is also in the audit ledger).
    "CREATE TABLE IF NOT EXISTS access_grant (user_name TEXT NOT NULL, patient TEXT NOT NULL, reason TEXT NOT NULL,
        granted_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL, PRIMARY KEY (user_name, patient, granted_ms))",
    // UHID issuer codes (01-99) claimed by department nodes for downtime registration: one node
    // account per code and one code per node account, so that no two nodes issue the same UHID.
    "CREATE TABLE IF NOT EXISTS node_issuer (issuer INTEGER PRIMARY KEY, user_name TEXT NOT NULL UNIQUE, claimed_ms INTEGER NOT NULL)",
    // Department nodes' own keys (registered on first contact, with the issuer code), which
    // sign their downtime branches; and how far each branch has been handed back (the chain
    // edge the next hand-back must continue), so that a retried hand-back applies nothing twice.
    "CREATE TABLE IF NOT EXISTS node_key (user_name TEXT PRIMARY KEY, verifier TEXT NOT NULL, registered_ms INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS handback (node TEXT NOT NULL, fork INTEGER NOT NULL, size INTEGER NOT NULL, head BLOB, frontier BLOB NOT NULL,
        updated_ms INTEGER NOT NULL, PRIMARY KEY (node, fork))",
    // A department node's downtime branch (see `WriteTx::begin_branch`): where it left the
    // core's ledger, the entries of each write transaction made on it since, and the
    // checkpoints the node's own key signed over them.
    "CREATE TABLE IF NOT EXISTS branch (id INTEGER PRIMARY KEY CHECK (id = 1), fork INTEGER NOT NULL, started_ms INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS branch_tx (first_seq INTEGER PRIMARY KEY, last_seq INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS branch_checkpoint (tree_size INTEGER PRIMARY KEY, time_ms INTEGER NOT NULL, note TEXT NOT NULL)",
];

/// Secondary indexes: everything a search or listing needs beyond the tables' own keys. They
/// are kept apart so that a bulk load can drop them and rebuild them once, sorted, at the end
/// (`Store::begin_bulk_load`); opening the store recreates any that are missing, so an
/// interrupted bulk load heals itself.
pub const SECONDARY_INDEXES: &[&str] = &[
    "CREATE INDEX IF NOT EXISTS resource_type_updated ON resource (rtype, updated_ms)",
    "CREATE INDEX IF NOT EXISTS history_type_seq ON history (rtype, seq)",
    // Deleted resources only (few): lets a search know at once that none of a type is deleted,
    // and then count matches from the index alone (`search::exec`).
    "CREATE INDEX IF NOT EXISTS resource_deleted ON resource (rtype) WHERE deleted = 1",
    "CREATE INDEX IF NOT EXISTS ix_string_search ON ix_string (param, value, res)",
    "CREATE INDEX IF NOT EXISTS ix_token_search ON ix_token (param, code, system, res)",
    "CREATE INDEX IF NOT EXISTS ix_ref_search ON ix_ref (param, target, res)",
    "CREATE INDEX IF NOT EXISTS ix_date_search ON ix_date (param, lo, hi, res)",
    "CREATE INDEX IF NOT EXISTS ix_number_search ON ix_number (param, value, res)",
    "CREATE INDEX IF NOT EXISTS ix_quantity_search ON ix_quantity (param, value, res)",
    "CREATE INDEX IF NOT EXISTS ix_uri_search ON ix_uri (param, value, res)",
    "CREATE INDEX IF NOT EXISTS ix_composite_search ON ix_composite (param, code, system, res)",
    "CREATE INDEX IF NOT EXISTS ix_geo_search ON ix_geo (param, lat, lon, x, y, z, res)",
];

/// Index tables in a fixed order, for clearing a resource's rows and for verification.
pub const INDEX_TABLES: [&str; 9] = [
    "ix_string",
    "ix_token",
    "ix_ref",
    "ix_date",
    "ix_number",
    "ix_quantity",
    "ix_uri",
    "ix_composite",
    "ix_geo",
];

/// A statement of this module (written for SQLite) as `dialect` needs it. PostgreSQL's types
/// differ in name only where the store uses them: every integer is 64-bit (`BIGINT`; SQLite's
/// `INTEGER` is 64-bit), `BLOB` is `BYTEA`, `REAL` is `DOUBLE PRECISION`, text is ordered by
/// its bytes (`COLLATE "C"`); the two keys SQLite
/// numbers by itself (`resource.rowid`, `sp_param.id`) become identity columns; `WITHOUT
/// ROWID` (a SQLite storage choice) goes; and the account a token names may be replaced in the
/// same transaction as the token (state restore), so that reference is checked at commit.
pub fn for_dialect(sql: &str, dialect: crate::sql::Dialect) -> std::borrow::Cow<'_, str> {
    if dialect == crate::sql::Dialect::Sqlite {
        return std::borrow::Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len() + 64);
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        out.push_str(match word.as_str() {
            "INTEGER" => "BIGINT",
            "BLOB" => "BYTEA",
            "REAL" => "DOUBLE PRECISION",
            // Text compares by its bytes, as in SQLite, whatever the database's locale: the same
            // search sorts the same on both engines.
            "TEXT" => "TEXT COLLATE \"C\"",
            w => w,
        });
        word.clear();
    };
    for c in sql.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    std::borrow::Cow::Owned(
        out.replace(") WITHOUT ROWID", ")")
            .replace("rowid BIGINT PRIMARY KEY", "rowid BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
            .replace("id BIGINT PRIMARY KEY,\n    rtype", "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,\n    rtype")
            .replace("REFERENCES api_user (name)", "REFERENCES api_user (name) DEFERRABLE INITIALLY IMMEDIATE"),
    )
}

/// The PostgreSQL schema: the same tables and columns as [`SCHEMA`] (see [`for_dialect`]).
pub mod postgres {
    use crate::StoreError;
    use crate::sql::{Db, Dialect};

    /// Create the tables of a new database (in one transaction), or check that an existing
    /// one has a schema version this Vaidya knows. The version is kept in `vaidya_meta`
    /// (PostgreSQL has no `user_version`).
    pub fn init(conn: &impl Db) -> Result<(), StoreError> {
        conn.execute_batch("CREATE TABLE IF NOT EXISTS vaidya_meta (name TEXT PRIMARY KEY, value BIGINT NOT NULL)")?;
        let version: Option<i64> = conn.query_value("SELECT value FROM vaidya_meta WHERE name = 'schema_version'", &[])?;
        match version {
            None => {
                let ddl = super::for_dialect(super::SCHEMA, Dialect::Postgres);
                conn.execute_batch(&format!(
                    "BEGIN; LOCK TABLE vaidya_meta; {ddl}; INSERT INTO vaidya_meta VALUES ('schema_version', {}); COMMIT;",
                    super::SCHEMA_VERSION
                ))?
            }
            Some(v) if v == super::SCHEMA_VERSION => {}
            Some(v) => return Err(StoreError::Corrupt(format!(
                "database schema version {v} is not the one this Vaidya runs on PostgreSQL ({})",
                super::SCHEMA_VERSION
            ))),
        }
        for sql in super::ADDED_TABLES {
            conn.execute_batch(&super::for_dialect(sql, Dialect::Postgres))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::Dialect;

    #[test]
    fn postgres_types_replace_sqlite_types_by_whole_word_only() {
        let pg = for_dialect("CREATE TABLE t (rowid INTEGER PRIMARY KEY, blobby TEXT, b BLOB, r REAL) WITHOUT ROWID", Dialect::Postgres);
        assert_eq!(pg, "CREATE TABLE t (rowid BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, blobby TEXT COLLATE \"C\", b BYTEA, r DOUBLE PRECISION)");
        assert_eq!(for_dialect(SCHEMA, Dialect::Sqlite), SCHEMA);
        let all = for_dialect(SCHEMA, Dialect::Postgres);
        assert!(!all.contains("INTEGER") && !all.contains("BLOB") && !all.contains("WITHOUT ROWID"), "{all}");
        assert!(all.contains("id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,\n    rtype TEXT COLLATE \"C\" NOT NULL,\n    code"), "sp_param numbers itself");
    }
}
