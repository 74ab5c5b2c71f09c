//! The state that lives beside the ledger, not in it: staff and patient accounts, break-the-glass
//! grants, named counters (UHID serials, the day's queue tokens, receipt numbers) and the UHID
//! issuer codes claimed by department nodes. Backups
//! carry a copy of it with the ledger segments so that a restored server works as before; a
//! counter that fell behind would issue a number twice.
//!
//! Not carried: tokens and sessions (everyone signs in again after a restore: the attacker may
//! have held them), and the lockout counters (`failed_logins`, `locked_until_ms`), which change
//! on every failed login and would make every snapshot differ.

use crate::StoreError;
use crate::sql::{Cell, Db, Dialect, OwnedValue};
use serde_json::{Map, Value, json};

/// The tables carried, and the columns of each left out.
const TABLES: &[(&str, &[&str])] = &[
    ("api_user", &["failed_logins", "locked_until_ms"]),
    ("access_grant", &[]),
    ("sequence", &[]),
    ("node_issuer", &[]),
    ("node_key", &[]),
    ("handback", &[]),
];

/// The names of the tables carried, in a fixed order.
pub fn table_names() -> impl Iterator<Item = &'static str> {
    TABLES.iter().map(|(t, _)| *t)
}

/// The current state as JSON bytes (same state, same bytes: tables and rows in a fixed order).
pub fn snapshot(conn: &impl Db) -> Result<Vec<u8>, StoreError> {
    let mut out = Map::new();
    for (table, left_out) in TABLES {
        out.insert(table.to_string(), table_value(conn, table, left_out)?);
    }
    Ok(serde_json::to_vec(&Value::Object(out)).expect("JSON values serialise"))
}

/// One carried table as JSON bytes (`{"columns": [...], "rows": [...]}`, rows in a fixed order).
pub fn table_snapshot(conn: &impl Db, table: &str) -> Result<Vec<u8>, StoreError> {
    let (name, left_out) = TABLES.iter().find(|(t, _)| *t == table).ok_or_else(|| StoreError::Corrupt(format!("{table} is not a state table")))?;
    Ok(serde_json::to_vec(&table_value(conn, name, left_out)?).expect("JSON values serialise"))
}

/// A state snapshot of some of the tables (as [`table_snapshot`] made them); [`restore`]
/// replaces those and leaves the others as they are.
pub fn assemble(tables: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = b"{".to_vec();
    for (i, (name, bytes)) in tables.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&serde_json::to_vec(name).expect("a name serialises"));
        out.push(b':');
        out.extend_from_slice(bytes);
    }
    out.push(b'}');
    out
}

/// How often each carried table has changed (kept by triggers in the same transaction as the
/// change): a reader sees whether a table changed since it last looked without reading it.
pub fn versions(conn: &impl Db) -> Result<Vec<(String, i64)>, StoreError> {
    conn.query_map("SELECT tbl, v FROM state_version", &[], |r| Ok((r.get(0)?, r.get(1)?)))
}

/// The SQL that keeps [`versions`]: a counter per table and a trigger per change.
pub fn version_triggers(dialect: Dialect) -> Vec<String> {
    let mut sql = vec!["CREATE TABLE IF NOT EXISTS state_version (tbl TEXT PRIMARY KEY, v BIGINT NOT NULL)".to_string()];
    if dialect == Dialect::Postgres {
        // One function for every table; PostgreSQL's triggers call a function.
        sql.push(
            "CREATE OR REPLACE FUNCTION vaidya_state_version() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             UPDATE state_version SET v = v + 1 WHERE tbl = TG_TABLE_NAME; RETURN NULL; END $$"
                .to_string(),
        );
    }
    for (t, _) in TABLES {
        sql.push(format!("INSERT INTO state_version (tbl, v) VALUES ('{t}', 0) ON CONFLICT DO NOTHING"));
        for op in ["INSERT", "UPDATE", "DELETE"] {
            let name = format!("state_version_{t}_{}", op.to_lowercase());
            sql.push(match dialect {
                Dialect::Sqlite => format!(
                    "CREATE TRIGGER IF NOT EXISTS {name} AFTER {op} ON {t} BEGIN UPDATE state_version SET v = v + 1 WHERE tbl = '{t}'; END"
                ),
                Dialect::Postgres => {
                    format!("CREATE OR REPLACE TRIGGER {name} AFTER {op} ON {t} FOR EACH ROW EXECUTE FUNCTION vaidya_state_version()")
                }
            });
        }
    }
    sql
}

fn table_value(conn: &impl Db, table: &str, left_out: &[&str]) -> Result<Value, StoreError> {
    let columns = carried_columns(conn, table, left_out)?;
    let list = columns.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ");
    // Text is ordered by its bytes on both engines (PostgreSQL's text columns are `COLLATE
    // "C"`, see schema::for_dialect): the same state gives the same bytes wherever it is kept.
    let rows = conn.query_map(&format!("SELECT {list} FROM {table} ORDER BY {list}"), &[], |r| {
        Ok(Value::Array(r.cells().iter().map(to_json).collect()))
    })?;
    Ok(json!({"columns": columns, "rows": rows}))
}


/// Replace the carried tables' rows with a snapshot's. Columns the snapshot has that this
/// schema lacks are refused (a backup from a newer Vaidya); columns it lacks take defaults.
pub fn restore(conn: &impl Db, bytes: &[u8]) -> Result<(), StoreError> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("state snapshot: {e}")))?;
    // Accounts are replaced whole, but sessions made here (a department node's sign-ins) name
    // them: the references are checked at commit, when the accounts are back.
    conn.execute_batch(match conn.dialect() {
        Dialect::Sqlite => "PRAGMA defer_foreign_keys = ON",
        Dialect::Postgres => "SET CONSTRAINTS ALL DEFERRED",
    })?;
    for (table, left_out) in TABLES {
        let Some(t) = doc.get(*table) else { continue };
        let known = carried_columns(conn, table, left_out)?;
        let columns: Vec<String> = t["columns"]
            .as_array()
            .ok_or_else(|| StoreError::Corrupt(format!("state snapshot: {table} has no columns")))?
            .iter()
            .map(|c| c.as_str().map(str::to_string).ok_or_else(|| StoreError::Corrupt("state snapshot: a column name is not text".into())))
            .collect::<Result<_, _>>()?;
        if let Some(unknown) = columns.iter().find(|c| !known.contains(c)) {
            return Err(StoreError::Corrupt(format!("state snapshot: {table}.{unknown} is not a column this Vaidya knows")));
        }
        conn.execute(&format!("DELETE FROM {table}"), &[])?;
        let list = columns.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ");
        let marks = (1..=columns.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ");
        let insert = format!("INSERT INTO {table} ({list}) VALUES ({marks})");
        for row in t["rows"].as_array().into_iter().flatten() {
            let values = row
                .as_array()
                .filter(|v| v.len() == columns.len())
                .ok_or_else(|| StoreError::Corrupt(format!("state snapshot: a {table} row has the wrong number of values")))?;
            let owned: Vec<OwnedValue> = values.iter().map(from_json).collect::<Result<_, _>>()?;
            let params: Vec<crate::sql::Value<'_>> = owned.iter().map(OwnedValue::value).collect();
            conn.execute(&insert, &params)?;
        }
    }
    // Sessions of accounts that are gone with the new state go with them.
    conn.execute("DELETE FROM api_token WHERE user_name NOT IN (SELECT name FROM api_user)", &[])?;
    Ok(())
}

/// Every column of `table`, in order.
pub fn columns(conn: &impl Db, table: &str) -> Result<Vec<String>, StoreError> {
    carried_columns(conn, table, &[])
}

fn carried_columns(conn: &impl Db, table: &str, left_out: &[&str]) -> Result<Vec<String>, StoreError> {
    let names: Vec<String> = match conn.dialect() {
        Dialect::Sqlite => conn.query_map(&format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid"), &[], |r| r.get(0))?,
        Dialect::Postgres => conn.query_map(
            "SELECT column_name::text FROM information_schema.columns WHERE table_schema = current_schema() AND table_name::text = ?1 ORDER BY ordinal_position",
            &crate::sql_params![table],
            |r| r.get(0),
        )?,
    };
    Ok(names.into_iter().filter(|n| !left_out.contains(&n.as_str())).collect())
}

fn to_json(v: &Cell) -> Value {
    match v {
        Cell::Null => Value::Null,
        Cell::Int(i) => json!(i),
        Cell::Real(f) => json!(f),
        Cell::Text(s) => Value::String(s.clone()),
        Cell::Blob(b) => json!({"hex": b.iter().map(|x| format!("{x:02x}")).collect::<String>()}),
    }
}

fn from_json(v: &Value) -> Result<OwnedValue, StoreError> {
    let bad = || StoreError::Corrupt(format!("state snapshot: unexpected value {v}"));
    Ok(match v {
        Value::Null => OwnedValue::Null,
        Value::String(s) => OwnedValue::Text(s.clone()),
        Value::Number(n) => match n.as_i64() {
            Some(i) => OwnedValue::Int(i),
            None => OwnedValue::Real(n.as_f64().ok_or_else(bad)?),
        },
        Value::Object(o) => {
            let hex = o.get("hex").and_then(Value::as_str).ok_or_else(bad)?;
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| hex.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(bad)?;
            OwnedValue::Blob(bytes)
        }
        _ => return Err(bad()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use rusqlite::Connection;

    fn db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(crate::schema::SCHEMA).unwrap();
        for sql in crate::schema::ADDED_TABLES {
            conn.execute_batch(sql).unwrap();
        }
        for sql in version_triggers(Dialect::Sqlite) {
            conn.execute_batch(&sql).unwrap();
        }
        conn
    }

    #[test]
    fn tables_travel_alone_and_their_change_counts_move_only_with_them() {
        let (a, b) = (db(), db());
        let count = |c: &Connection, t: &str| versions(c).unwrap().into_iter().find(|(n, _)| n == t).unwrap().1;
        a.execute_batch("INSERT INTO api_user (name, role, must_change_password, created_ms) VALUES ('asha', 'doctor', 0, 5);
                         INSERT INTO sequence VALUES ('uhid-central', 1);").unwrap();
        assert_eq!((count(&a, "api_user"), count(&a, "sequence"), count(&a, "access_grant")), (1, 1, 0));
        a.execute("UPDATE sequence SET value = 2", []).unwrap();
        assert_eq!((count(&a, "api_user"), count(&a, "sequence")), (1, 2), "a counter moves only its table's count");
        // Only the counters travel: the other side's accounts stay as they are.
        b.execute_batch("INSERT INTO api_user (name, role, must_change_password, created_ms) VALUES ('asha', 'doctor', 0, 5);").unwrap();
        let seq = table_snapshot(&a, "sequence").unwrap();
        restore(&b, &assemble(&[("sequence", &seq)])).unwrap();
        assert_eq!(table_snapshot(&b, "sequence").unwrap(), seq, "the same bytes on both sides: the same hash");
        assert_eq!(table_snapshot(&b, "api_user").unwrap(), table_snapshot(&a, "api_user").unwrap());
        assert_eq!(snapshot(&b).unwrap(), snapshot(&a).unwrap());
        let whole: Value = serde_json::from_slice(&assemble(&[("api_user", b"{\"columns\":[],\"rows\":[]}"), ("sequence", &seq)])).unwrap();
        assert_eq!(whole.as_object().unwrap().len(), 2, "assembled as JSON");
        assert!(table_snapshot(&a, "api_token").is_err(), "not a state table");
    }

    #[test]
    fn a_snapshot_restores_the_same_accounts_grants_and_counters_and_not_the_lockout() {
        let a = db();
        a.execute_batch(
            "INSERT INTO api_user (name, role, department, password_hash, must_change_password, created_ms, failed_logins, totp_secret)
                 VALUES ('asha', 'doctor', 'cardiology', '$argon2id$x', 0, 5, 3, 'SECRET');
             INSERT INTO api_user (name, role, must_change_password, created_ms) VALUES ('ravi', 'billing', 1, 6);
             INSERT INTO access_grant VALUES ('asha', 'p1', 'emergency', 10, 20);
             INSERT INTO sequence VALUES ('uhid-central', 41), ('opd-token:CARD:2026-11-27', 7);",
        )
        .unwrap();
        let snap = snapshot(&a).unwrap();
        let b = db();
        b.execute_batch("INSERT INTO sequence VALUES ('stale', 1)").unwrap();
        restore(&b, &snap).unwrap();
        assert_eq!(snapshot(&b).unwrap(), snap, "the same state, the same bytes");
        let (role, totp, failed): (String, String, i64) =
            b.query_row("SELECT role, totp_secret, failed_logins FROM api_user WHERE name = 'asha'", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap();
        assert_eq!((role.as_str(), totp.as_str(), failed), ("doctor", "SECRET", 0));
        let n: i64 = b.query_row("SELECT count(*) FROM sequence WHERE name = 'stale'", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 0, "the snapshot replaces the table");
        // A failed login changes no snapshot.
        a.execute_batch("UPDATE api_user SET failed_logins = 4, locked_until_ms = 99 WHERE name = 'asha'").unwrap();
        assert_eq!(snapshot(&a).unwrap(), snap);
    }

    #[test]
    fn a_damaged_or_foreign_snapshot_is_refused() {
        let b = db();
        assert!(restore(&b, b"not json").is_err());
        let foreign = br#"{"sequence": {"columns": ["name", "value", "colour"], "rows": []}}"#;
        assert!(matches!(restore(&b, foreign), Err(StoreError::Corrupt(m)) if m.contains("colour")));
        let short = br#"{"sequence": {"columns": ["name", "value"], "rows": [["x"]]}}"#;
        assert!(restore(&b, short).is_err());
    }
}
