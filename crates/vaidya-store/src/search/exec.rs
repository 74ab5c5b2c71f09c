//! Running a [`Query`] against the index tables. All values travel as bound parameters; the
//! only text spliced into SQL is table and column names chosen here.

use super::parse::{Include, Pred, Prefix, Query, SortKey, Table, Value};
use super::MAX_INCLUDED_RESOURCES;
use crate::StoreError;
use crate::index_rows::param_id;
use rusqlite::Connection;
use rusqlite::types::Value as Sql;
use std::collections::HashSet;
use vaidya_fhir::search_params::{ParamType, search_params};

/// A resource found by a search.
#[derive(Debug, Clone)]
pub struct Found {
    pub resource_type: String,
    pub id: String,
    pub content: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
pub struct SearchOutcome {
    pub total: u64,
    pub matches: Vec<Found>,
    pub included: Vec<Found>,
    /// Whether a next page exists.
    pub has_more: bool,
}

struct SqlBuilder {
    text: String,
    args: Vec<Sql>,
}

impl SqlBuilder {
    fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }
    fn arg(&mut self, v: impl Into<Sql>) {
        self.text.push('?');
        self.args.push(v.into());
    }
}

pub fn run(conn: &Connection, q: &Query) -> Result<SearchOutcome, StoreError> {
    let mut filter = SqlBuilder { text: String::new(), args: vec![] };
    filter.push("r.rtype = ");
    filter.arg(q.resource_type.clone());
    filter.push(" AND r.deleted = 0");
    for pred in &q.preds {
        filter.push(" AND ");
        pred_sql(conn, &mut filter, pred, "r")?;
    }

    let total: i64 = {
        let sql = format!("SELECT count(*) FROM resource r WHERE {}", filter.text);
        conn.prepare_cached(&sql)?.query_row(rusqlite::params_from_iter(filter.args.iter()), |r| r.get(0))?
    };
    let mut out = SearchOutcome { total: total as u64, ..Default::default() };
    // `_count=0` asks for the total alone, like `_summary=count`: no entries, no next page.
    if q.summary_count || q.count == 0 {
        return Ok(out);
    }

    let mut sql = SqlBuilder { text: format!("SELECT r.rid, r.seq, r.rowid FROM resource r WHERE {}", filter.text), args: filter.args };
    sql.push(" ORDER BY ");
    for (key, desc) in &q.sort {
        sort_sql(conn, &mut sql, key, *desc)?;
        sql.push(", ");
    }
    sql.push("r.rowid LIMIT ");
    sql.arg(q.count as i64 + 1);
    sql.push(" OFFSET ");
    sql.arg(q.offset as i64);

    let mut rows: Vec<(String, i64, i64)> = {
        let mut stmt = conn.prepare_cached(&sql.text)?;
        let it = stmt.query_map(rusqlite::params_from_iter(sql.args.iter()), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        it.collect::<Result<_, _>>()?
    };
    if rows.len() > q.count {
        rows.truncate(q.count);
        out.has_more = true;
    }
    let mut seen: HashSet<(String, String)> = HashSet::new();
    for (rid, seq, _) in &rows {
        let entry = crate::read::entry(conn, *seq as u64)?;
        seen.insert((q.resource_type.clone(), rid.clone()));
        out.matches.push(Found { resource_type: q.resource_type.clone(), id: rid.clone(), content: entry.content });
    }
    let rowids: Vec<i64> = rows.iter().map(|r| r.2).collect();
    for inc in &q.includes {
        include(conn, q, inc, &rowids, &mut seen, &mut out.included)?;
    }
    for inc in &q.revincludes {
        revinclude(conn, q, inc, &out.matches.clone(), &mut seen, &mut out.included)?;
    }
    Ok(out)
}

/// Resolve a parameter id, or `None` if no resource has ever been indexed under it.
fn pid(conn: &Connection, rtype: &str, code: &str) -> Result<Option<i64>, StoreError> {
    param_id(conn, rtype, code)
}

fn pred_sql(conn: &Connection, sql: &mut SqlBuilder, pred: &Pred, alias: &str) -> Result<(), StoreError> {
    match pred {
        Pred::Id(ids) => {
            sql.push(&format!("{alias}.rid IN ("));
            for (i, id) in ids.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.arg(id.clone());
            }
            sql.push(")");
        }
        Pred::LastUpdated(ranges) => {
            sql.push("(");
            for (i, (prefix, lo, hi)) in ranges.iter().enumerate() {
                if i > 0 {
                    sql.push(" OR ");
                }
                let col = format!("{alias}.updated_ms");
                range_sql(sql, *prefix, &col, &col, *lo, *hi);
            }
            sql.push(")");
        }
        Pred::Missing { rtype, code, table, missing } => {
            let Some(p) = pid(conn, rtype, code)? else {
                // Nobody has a value: every resource is "missing" it.
                sql.push(if *missing { "1" } else { "0" });
                return Ok(());
            };
            sql.push(&format!("{alias}.rowid {} (SELECT res FROM {} WHERE param = ", if *missing { "NOT IN" } else { "IN" }, table.name()));
            sql.arg(p);
            sql.push(")");
        }
        Pred::Index { rtype, code, table, values, negate } => {
            let Some(p) = pid(conn, rtype, code)? else {
                sql.push(if *negate { "1" } else { "0" });
                return Ok(());
            };
            sql.push(&format!("{alias}.rowid {} (SELECT res FROM {} WHERE param = ", if *negate { "NOT IN" } else { "IN" }, table.name()));
            sql.arg(p);
            sql.push(" AND (");
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    sql.push(" OR ");
                }
                value_sql(sql, v);
            }
            sql.push("))");
        }
        Pred::Chain { rtype, code, target_types: _, inner } => {
            let Some(p) = pid(conn, rtype, code)? else {
                sql.push("0");
                return Ok(());
            };
            sql.push(&format!("{alias}.rowid IN (SELECT res FROM ix_ref WHERE param = "));
            sql.arg(p);
            sql.push(" AND target IN (SELECT t.rtype || '/' || t.rid FROM resource t WHERE t.deleted = 0 AND (");
            for (i, (t, pred)) in inner.iter().enumerate() {
                if i > 0 {
                    sql.push(" OR ");
                }
                sql.push("(t.rtype = ");
                sql.arg(t.clone());
                sql.push(" AND ");
                pred_sql(conn, sql, pred, "t")?;
                sql.push(")");
            }
            sql.push(")))");
        }
    }
    Ok(())
}

/// Date-range semantics of FHIR prefixes: the stored value is the range [lo_col, hi_col].
fn range_sql(sql: &mut SqlBuilder, prefix: Prefix, lo_col: &str, hi_col: &str, lo: i64, hi: i64) {
    match prefix {
        Prefix::Eq => {
            sql.push(&format!("({lo_col} >= "));
            sql.arg(lo);
            sql.push(&format!(" AND {hi_col} <= "));
            sql.arg(hi);
            sql.push(")");
        }
        Prefix::Ne => {
            sql.push(&format!("NOT ({lo_col} >= "));
            sql.arg(lo);
            sql.push(&format!(" AND {hi_col} <= "));
            sql.arg(hi);
            sql.push(")");
        }
        Prefix::Gt => {
            sql.push(&format!("{hi_col} > "));
            sql.arg(hi);
        }
        Prefix::Lt => {
            sql.push(&format!("{lo_col} < "));
            sql.arg(lo);
        }
        Prefix::Ge => {
            sql.push(&format!("{hi_col} >= "));
            sql.arg(lo);
        }
        Prefix::Le => {
            sql.push(&format!("{lo_col} <= "));
            sql.arg(hi);
        }
        Prefix::Sa => {
            sql.push(&format!("{lo_col} > "));
            sql.arg(hi);
        }
        Prefix::Eb => {
            sql.push(&format!("{hi_col} < "));
            sql.arg(lo);
        }
        Prefix::Ap => {
            sql.push(&format!("({lo_col} <= "));
            sql.arg(hi);
            sql.push(&format!(" AND {hi_col} >= "));
            sql.arg(lo);
            sql.push(")");
        }
    }
}

/// Number semantics: `value` against the search value `v` with implicit range [lo, hi).
fn number_sql(sql: &mut SqlBuilder, prefix: Prefix, v: f64, lo: f64, hi: f64) {
    let (op, x) = match prefix {
        Prefix::Eq => {
            sql.push("(value >= ");
            sql.arg(lo);
            sql.push(" AND value < ");
            sql.arg(hi);
            sql.push(")");
            return;
        }
        Prefix::Ne => {
            sql.push("(value < ");
            sql.arg(lo);
            sql.push(" OR value >= ");
            sql.arg(hi);
            sql.push(")");
            return;
        }
        Prefix::Ap => {
            // "Approximately": within 10% of the value, as the spec suggests.
            let d = (v * 0.1).abs();
            sql.push("(value >= ");
            sql.arg(v - d);
            sql.push(" AND value <= ");
            sql.arg(v + d);
            sql.push(")");
            return;
        }
        Prefix::Gt | Prefix::Sa => (">", v),
        Prefix::Lt | Prefix::Eb => ("<", v),
        Prefix::Ge => (">=", v),
        Prefix::Le => ("<=", v),
    };
    sql.push(&format!("value {op} "));
    sql.arg(x);
}

fn value_sql(sql: &mut SqlBuilder, v: &Value) {
    match v {
        Value::StrPrefix(s) => {
            // Starts-with as a range on the normalised value, so the index is used.
            sql.push("(value >= ");
            sql.arg(s.clone());
            sql.push(" AND value < ");
            sql.arg(format!("{s}\u{10FFFF}"));
            sql.push(")");
        }
        Value::StrContains(s) => {
            sql.push("instr(value, ");
            sql.arg(s.clone());
            sql.push(") > 0");
        }
        Value::StrExact(s) => {
            sql.push("exact = ");
            sql.arg(s.clone());
        }
        Value::Token { system, code } => {
            sql.push("(1");
            if let Some(c) = code {
                sql.push(" AND code = ");
                sql.arg(c.clone());
            }
            if let Some(s) = system {
                sql.push(" AND system = ");
                sql.arg(s.clone());
            }
            sql.push(")");
        }
        Value::TokenText(s) => {
            sql.push("instr(lower(text), ");
            sql.arg(s.clone());
            sql.push(") > 0");
        }
        Value::Ref(candidates) => {
            sql.push("target IN (");
            for (i, c) in candidates.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.arg(c.clone());
            }
            sql.push(")");
        }
        Value::Date { prefix, lo, hi } => range_sql(sql, *prefix, "lo", "hi", *lo, *hi),
        Value::Number { prefix, value, lo, hi } => number_sql(sql, *prefix, *value, *lo, *hi),
        Value::Quantity { prefix, value, lo, hi, system, code } => {
            sql.push("(");
            number_sql(sql, *prefix, *value, *lo, *hi);
            if let Some(s) = system {
                sql.push(" AND system = ");
                sql.arg(s.clone());
            }
            if let Some(c) = code {
                // Without a system the code may be a UCUM code or the unit as written.
                if system.is_some() {
                    sql.push(" AND code = ");
                    sql.arg(c.clone());
                } else {
                    sql.push(" AND (code = ");
                    sql.arg(c.clone());
                    sql.push(" OR unit = ");
                    sql.arg(c.clone());
                    sql.push(")");
                }
            }
            sql.push(")");
        }
        Value::Uri(u) => {
            sql.push("value = ");
            sql.arg(u.clone());
        }
        Value::UriBelow(u) => {
            sql.push("(value >= ");
            sql.arg(u.clone());
            sql.push(" AND value < ");
            sql.arg(format!("{u}\u{10FFFF}"));
            sql.push(")");
        }
    }
}

fn sort_sql(conn: &Connection, sql: &mut SqlBuilder, key: &SortKey, desc: bool) -> Result<(), StoreError> {
    let dir = if desc { "DESC" } else { "ASC" };
    match key {
        SortKey::Id => sql.push(&format!("r.rid {dir}")),
        SortKey::LastUpdated => sql.push(&format!("r.updated_ms {dir}")),
        SortKey::Param { rtype, code, table } => {
            let Some(p) = pid(conn, rtype, code)? else {
                sql.push("NULL");
                return Ok(());
            };
            let (agg, col) = match (table, desc) {
                (Table::Date, false) => ("min", "lo"),
                (Table::Date, true) => ("max", "hi"),
                (Table::Token, _) => (if desc { "max" } else { "min" }, "code"),
                (Table::Ref, _) => (if desc { "max" } else { "min" }, "target"),
                (_, _) => (if desc { "max" } else { "min" }, "value"),
            };
            // Resources without a value sort last either way.
            sql.push(&format!("(SELECT {agg}({col}) FROM {} WHERE res = r.rowid AND param = ", table.name()));
            sql.arg(p);
            sql.push(&format!(") IS NULL, (SELECT {agg}({col}) FROM {} WHERE res = r.rowid AND param = ", table.name()));
            sql.arg(p);
            sql.push(&format!(") {dir}"));
        }
    }
    Ok(())
}

fn reference_codes(rtype: &str, code: &Option<String>) -> Vec<String> {
    match code {
        Some(c) => vec![c.clone()],
        None => search_params(rtype).filter(|p| p.kind == ParamType::Reference).map(|p| p.code.clone()).collect(),
    }
}

fn load_current(conn: &Connection, target: &str) -> Result<Option<Found>, StoreError> {
    let Some((t, id)) = target.split_once('/') else { return Ok(None) };
    Ok(crate::read::current(conn, t, id)?.filter(|s| !s.deleted).map(|s| Found {
        resource_type: t.to_string(),
        id: id.to_string(),
        content: s.content,
    }))
}

fn include(
    conn: &Connection,
    q: &Query,
    inc: &Include,
    rowids: &[i64],
    seen: &mut HashSet<(String, String)>,
    out: &mut Vec<Found>,
) -> Result<(), StoreError> {
    if inc.source_type != q.resource_type || rowids.is_empty() {
        return Ok(());
    }
    for code in reference_codes(&inc.source_type, &inc.code) {
        let Some(p) = pid(conn, &inc.source_type, &code)? else { continue };
        let mut stmt = conn.prepare_cached("SELECT target FROM ix_ref WHERE res = ?1 AND param = ?2")?;
        for &res in rowids {
            let targets: Vec<String> = stmt.query_map([res, p], |r| r.get(0))?.collect::<Result<_, _>>()?;
            for target in targets {
                if out.len() >= MAX_INCLUDED_RESOURCES {
                    return Ok(());
                }
                let Some((t, id)) = target.split_once('/') else { continue };
                if inc.target_type.as_deref().is_some_and(|want| want != t) {
                    continue;
                }
                if seen.contains(&(t.to_string(), id.to_string())) {
                    continue;
                }
                if let Some(found) = load_current(conn, &target)? {
                    seen.insert((t.to_string(), id.to_string()));
                    out.push(found);
                }
            }
        }
    }
    Ok(())
}

fn revinclude(
    conn: &Connection,
    _q: &Query,
    inc: &Include,
    matches: &[Found],
    seen: &mut HashSet<(String, String)>,
    out: &mut Vec<Found>,
) -> Result<(), StoreError> {
    for code in reference_codes(&inc.source_type, &inc.code) {
        let Some(p) = pid(conn, &inc.source_type, &code)? else { continue };
        let mut stmt = conn.prepare_cached(
            "SELECT r.rid, r.seq FROM ix_ref x JOIN resource r ON r.rowid = x.res
             WHERE x.param = ?1 AND x.target = ?2 AND r.deleted = 0 AND r.rtype = ?3",
        )?;
        for m in matches {
            if inc.target_type.as_deref().is_some_and(|want| want != m.resource_type) {
                continue;
            }
            let target = format!("{}/{}", m.resource_type, m.id);
            let rows: Vec<(String, i64)> = stmt
                .query_map(rusqlite::params![p, target, inc.source_type], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            for (rid, seq) in rows {
                if out.len() >= MAX_INCLUDED_RESOURCES {
                    return Ok(());
                }
                if !seen.insert((inc.source_type.clone(), rid.clone())) {
                    continue;
                }
                let entry = crate::read::entry(conn, seq as u64)?;
                out.push(Found { resource_type: inc.source_type.clone(), id: rid, content: entry.content });
            }
        }
    }
    Ok(())
}
