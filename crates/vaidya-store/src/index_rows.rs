//! Writing a resource's search index rows.

use crate::StoreError;
use crate::schema::INDEX_TABLES;
use crate::sql::Db;
use crate::sql_params;
use std::collections::HashMap;
use vaidya_fhir::index::IndexValue;
use vaidya_fhir::search_params::SearchParam;

/// Interned (resource type, parameter code) -> `sp_param.id`, cached by the writer.
#[derive(Default)]
pub(crate) struct ParamIds(HashMap<String, HashMap<String, i64>>);

impl ParamIds {
    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    fn get_or_insert(&mut self, conn: &impl Db, rtype: &str, code: &str) -> Result<i64, StoreError> {
        // Nested maps so that a hit allocates nothing (this runs for every index row).
        if let Some(&id) = self.0.get(rtype).and_then(|m| m.get(code)) {
            return Ok(id);
        }
        let id = match param_id(conn, rtype, code)? {
            Some(id) => id,
            None => conn
                .query_value("INSERT INTO sp_param (rtype, code) VALUES (?1, ?2) RETURNING id", &sql_params![rtype, code])?
                .ok_or_else(|| StoreError::Corrupt("an insert returned no id".into()))?,
        };
        self.0.entry(rtype.to_string()).or_default().insert(code.to_string(), id);
        Ok(id)
    }
}

/// Look up a parameter's id for searching; `None` if no resource ever had a value for it.
pub(crate) fn param_id(conn: &impl Db, rtype: &str, code: &str) -> Result<Option<i64>, StoreError> {
    conn.query_value("SELECT id FROM sp_param WHERE rtype = ?1 AND code = ?2", &sql_params![rtype, code])
}

/// `DELETE FROM <table> WHERE res = ?1` for each index table, made once.
static CLEAR_SQL: std::sync::LazyLock<Vec<String>> =
    std::sync::LazyLock::new(|| INDEX_TABLES.iter().map(|t| format!("DELETE FROM {t} WHERE res = ?1")).collect());

pub(crate) fn clear(conn: &impl Db, res: i64) -> Result<(), StoreError> {
    for sql in CLEAR_SQL.iter() {
        conn.execute_later(sql, &sql_params![res])?;
    }
    Ok(())
}

pub(crate) fn insert(
    conn: &impl Db,
    ids: &mut ParamIds,
    rtype: &str,
    res: i64,
    index: &[(&'static SearchParam, IndexValue)],
) -> Result<(), StoreError> {
    for (param, value) in index {
        let p = ids.get_or_insert(conn, rtype, &param.code)?;
        insert_one(conn, res, p, value)?;
    }
    Ok(())
}

fn insert_one(conn: &impl Db, res: i64, p: i64, value: &IndexValue) -> Result<(), StoreError> {
    // DO NOTHING: two values that differ only in fields outside the key (a token's display text)
    // are one index row.
    match value {
        IndexValue::String { normalized, exact } => conn.execute_later(
            "INSERT INTO ix_string (res, param, value, exact) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
            &sql_params![res, p, normalized, exact],
        )?,
        IndexValue::Token { system, code, text } => conn.execute_later(
            "INSERT INTO ix_token (res, param, system, code, text) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            &sql_params![res, p, s(system), s(code), text.as_deref()],
        )?,
        IndexValue::Reference { reference, .. } => conn.execute_later(
            "INSERT INTO ix_ref (res, param, target) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            &sql_params![res, p, reference],
        )?,
        IndexValue::Date { start_ms, end_ms } => conn.execute_later(
            "INSERT INTO ix_date (res, param, lo, hi) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
            &sql_params![res, p, start_ms, end_ms],
        )?,
        IndexValue::Number { value } => conn.execute_later(
            "INSERT INTO ix_number (res, param, value) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            &sql_params![res, p, real(*value)],
        )?,
        IndexValue::Quantity { value, system, code, unit } => conn.execute_later(
            "INSERT INTO ix_quantity (res, param, value, system, code, unit) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
            &sql_params![res, p, real(*value), s(system), s(code), s(unit)],
        )?,
        IndexValue::Uri(value) => conn.execute_later(
            "INSERT INTO ix_uri (res, param, value) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            &sql_params![res, p, value],
        )?,
        IndexValue::Composite { parts } => {
            // Shapes the store has no columns for are not indexed, and `value_key` agrees.
            let Some(row) = CompositeRow::of(parts) else { return Ok(()) };
            conn.execute_later(
                "INSERT INTO ix_composite (res, param, system, code, v_system, v_code, v_text, v_num, v_lo, v_hi, v_target)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT DO NOTHING",
                &sql_params![res, p, row.system, row.code, row.v_system, row.v_code, row.v_text, row.v_num, row.v_lo, row.v_hi, row.v_target],
            )?
        }
        IndexValue::Position { latitude, longitude } => {
            let (lat, lon) = (real(*latitude), real(*longitude));
            let (x, y, z) = unit_vector(lat, lon);
            conn.execute_later(
                "INSERT INTO ix_geo (res, param, lat, lon, x, y, z) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
                &sql_params![res, p, lat, lon, x, y, z],
            )?
        }
    };
    Ok(())
}

/// An optional text column's value ('' for none: key columns are never NULL).
fn s(o: &Option<String>) -> &str {
    o.as_deref().unwrap_or("")
}

/// A REAL as SQLite gives it back: `-0.0` is stored as the integer 0 and read as `0.0`.
fn real(v: f64) -> f64 {
    if v == 0.0 { 0.0 } else { v }
}

/// The point on the unit sphere at a latitude and longitude in degrees. Stored beside each
/// position so that searches measure great-circle distances as chord lengths, with arithmetic
/// only (see `search::exec`).
pub(crate) fn unit_vector(lat: f64, lon: f64) -> (f64, f64, f64) {
    let (lat, lon) = (lat.to_radians(), lon.to_radians());
    (lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin())
}

/// How far a stored unit vector may be from the one recomputed from its latitude and longitude
/// (the last bits of `sin`/`cos` may differ between C libraries; a tampered row is far off).
const UNIT_VECTOR_TOLERANCE: f64 = 1e-12;

/// The `ix_composite` columns of a composite value: a token, then the columns of the second
/// part's type ('' and 0 elsewhere). `None` for shapes without columns (never extracted).
struct CompositeRow<'a> {
    system: &'a str,
    code: &'a str,
    v_system: &'a str,
    v_code: &'a str,
    v_text: &'a str,
    v_num: f64,
    v_lo: i64,
    v_hi: i64,
    v_target: &'a str,
}

impl<'a> CompositeRow<'a> {
    fn of(parts: &'a [IndexValue]) -> Option<Self> {
        let [IndexValue::Token { system, code, .. }, second] = parts else { return None };
        let s = |o: &'a Option<String>| o.as_deref().unwrap_or("");
        let mut row = CompositeRow {
            system: s(system),
            code: s(code),
            v_system: "",
            v_code: "",
            v_text: "",
            v_num: 0.0,
            v_lo: 0,
            v_hi: 0,
            v_target: "",
        };
        match second {
            IndexValue::Token { system, code, .. } => {
                row.v_system = s(system);
                row.v_code = s(code);
            }
            IndexValue::Quantity { value, system, code, unit } => {
                row.v_num = real(*value);
                row.v_system = s(system);
                row.v_code = s(code);
                row.v_text = s(unit);
            }
            IndexValue::String { normalized, .. } => row.v_text = normalized,
            IndexValue::Date { start_ms, end_ms } => {
                row.v_lo = *start_ms;
                row.v_hi = *end_ms;
            }
            IndexValue::Number { value } => row.v_num = real(*value),
            IndexValue::Reference { reference, .. } => row.v_target = reference,
            IndexValue::Uri(u) => row.v_target = u,
            IndexValue::Composite { .. } | IndexValue::Position { .. } => return None,
        }
        Some(row)
    }

    fn key(&self, code: &str) -> String {
        composite_key(
            code,
            [self.code, self.system, self.v_code, self.v_system, self.v_text],
            self.v_num,
            self.v_lo,
            self.v_hi,
            self.v_target,
        )
    }
}

fn composite_key(code: &str, text: [&str; 5], num: f64, lo: i64, hi: i64, target: &str) -> String {
    let [c, s, vc, vs, vt] = text;
    row_key("ix_composite", code, &[c, s, vc, vs, vt, &format!("{num:?}"), &lo.to_string(), &hi.to_string(), target])
}

/// A row's identity (table, parameter code, key columns) as one comparable string, so that
/// verification can compare recomputed and stored index rows as sets.
fn row_key(table: &str, code: &str, cols: &[&str]) -> String {
    let mut k = String::with_capacity(64);
    k.push_str(table);
    k.push('\u{1}');
    k.push_str(code);
    for c in cols {
        k.push('\u{1}');
        k.push_str(c);
    }
    k
}

fn value_key(code: &str, value: &IndexValue) -> Option<String> {
    let opt = |o: &Option<String>| o.clone().unwrap_or_default();
    Some(match value {
        IndexValue::String { normalized, exact } => row_key("ix_string", code, &[normalized, exact]),
        IndexValue::Token { system, code: c, .. } => row_key("ix_token", code, &[&opt(c), &opt(system)]),
        IndexValue::Reference { reference, .. } => row_key("ix_ref", code, &[reference]),
        IndexValue::Date { start_ms, end_ms } => row_key("ix_date", code, &[&start_ms.to_string(), &end_ms.to_string()]),
        IndexValue::Number { value } => row_key("ix_number", code, &[&format!("{:?}", real(*value))]),
        IndexValue::Quantity { value, system, code: c, unit } => {
            row_key("ix_quantity", code, &[&format!("{:?}", real(*value)), &opt(system), &opt(c), &opt(unit)])
        }
        IndexValue::Uri(v) => row_key("ix_uri", code, &[v]),
        IndexValue::Composite { parts } => CompositeRow::of(parts)?.key(code),
        IndexValue::Position { latitude, longitude } => {
            row_key("ix_geo", code, &[&format!("{:?}", real(*latitude)), &format!("{:?}", real(*longitude))])
        }
    })
}

/// The index rows a resource should have.
pub(crate) fn expected_rows(_rtype: &str, resource: &serde_json::Value) -> std::collections::BTreeSet<String> {
    vaidya_fhir::index::extract_all(resource).iter().filter_map(|(p, v)| value_key(&p.code, v)).collect()
}

/// The index rows a resource has.
pub(crate) fn stored_rows(
    conn: &impl Db,
    res: i64,
    params: &HashMap<i64, String>,
) -> Result<std::collections::BTreeSet<String>, StoreError> {
    let mut out = std::collections::BTreeSet::new();
    let code = |p: i64| params.get(&p).cloned().unwrap_or_else(|| format!("?{p}"));
    let key = &sql_params![res];
    let mut each = |sql: &str, f: &mut dyn FnMut(&crate::sql::Cells) -> Result<String, StoreError>| {
        conn.for_each_row(sql, key, &mut |r| {
            out.insert(f(&r)?);
            Ok(())
        })
    };
    each("SELECT param, value, exact FROM ix_string WHERE res = ?1", &mut |r| {
        Ok(row_key("ix_string", &code(r.get(0)?), &[&r.get::<String>(1)?, &r.get::<String>(2)?]))
    })?;
    each("SELECT param, code, system FROM ix_token WHERE res = ?1", &mut |r| {
        Ok(row_key("ix_token", &code(r.get(0)?), &[&r.get::<String>(1)?, &r.get::<String>(2)?]))
    })?;
    each("SELECT param, target FROM ix_ref WHERE res = ?1", &mut |r| Ok(row_key("ix_ref", &code(r.get(0)?), &[&r.get::<String>(1)?])))?;
    each("SELECT param, lo, hi FROM ix_date WHERE res = ?1", &mut |r| {
        Ok(row_key("ix_date", &code(r.get(0)?), &[&r.get::<i64>(1)?.to_string(), &r.get::<i64>(2)?.to_string()]))
    })?;
    each("SELECT param, value FROM ix_number WHERE res = ?1", &mut |r| {
        Ok(row_key("ix_number", &code(r.get(0)?), &[&format!("{:?}", r.get::<f64>(1)?)]))
    })?;
    each("SELECT param, value, system, code, unit FROM ix_quantity WHERE res = ?1", &mut |r| {
        let cols = [format!("{:?}", r.get::<f64>(1)?), r.get(2)?, r.get(3)?, r.get(4)?];
        Ok(row_key("ix_quantity", &code(r.get(0)?), &[&cols[0], &cols[1], &cols[2], &cols[3]]))
    })?;
    each("SELECT param, value FROM ix_uri WHERE res = ?1", &mut |r| Ok(row_key("ix_uri", &code(r.get(0)?), &[&r.get::<String>(1)?])))?;
    each(
        "SELECT param, code, system, v_code, v_system, v_text, v_num, v_lo, v_hi, v_target FROM ix_composite WHERE res = ?1",
        &mut |r| {
            let [c, s, vc, vs, vt]: [String; 5] = [r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?];
            Ok(composite_key(&code(r.get(0)?), [&c, &s, &vc, &vs, &vt], r.get(6)?, r.get(7)?, r.get(8)?, &r.get::<String>(9)?))
        },
    )?;
    each("SELECT param, lat, lon, x, y, z FROM ix_geo WHERE res = ?1", &mut |r| {
        let (lat, lon): (f64, f64) = (r.get(1)?, r.get(2)?);
        let stored: [f64; 3] = [r.get(3)?, r.get(4)?, r.get(5)?];
        let (x, y, z) = unit_vector(lat, lon);
        let consistent = stored.iter().zip([x, y, z]).all(|(a, b)| (a - b).abs() <= UNIT_VECTOR_TOLERANCE);
        let (lat, lon) = (format!("{lat:?}"), format!("{lon:?}"));
        // A unit vector that is not the position's own makes the row differ from the expected one.
        let cols: &[&str] = if consistent { &[&lat, &lon] } else { &[&lat, &lon, "unit vector does not match"] };
        Ok(row_key("ix_geo", &code(r.get(0)?), cols))
    })?;
    Ok(out)
}
