//! Running a [`Query`] against the index tables. All values travel as bound parameters; the
//! only text spliced into SQL is table and column names chosen here.

use super::parse::{Include, Pred, Prefix, Query, SortKey, Table, Value};
use super::MAX_INCLUDED_RESOURCES;
use crate::StoreError;
use crate::index_rows::{param_id, unit_vector};
use crate::sql::{Db, Dialect, OwnedValue as Sql};
use crate::sql_params;
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
    /// The number of matches; 0 and not counted when `total_omitted` (`_total=none`).
    pub total: u64,
    pub total_omitted: bool,
    pub matches: Vec<Found>,
    pub included: Vec<Found>,
    /// Whether a next page exists.
    pub has_more: bool,
}

struct SqlBuilder {
    text: String,
    args: Vec<Sql>,
    dialect: Dialect,
}

impl SqlBuilder {
    fn new(text: impl Into<String>, dialect: Dialect) -> SqlBuilder {
        SqlBuilder { text: text.into(), args: vec![], dialect }
    }
    fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }
    /// A bound parameter, numbered (`?N`) so that the text runs on both engines.
    fn arg(&mut self, v: impl Into<Sql>) {
        self.args.push(v.into());
        self.text.push_str(&format!("?{}", self.args.len()));
    }
    fn params(&self) -> Vec<crate::sql::Value<'_>> {
        self.args.iter().map(Sql::value).collect()
    }
    /// `instr(haystack, needle)` (1-based position, 0 when absent) in this dialect.
    fn position_of(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "instr",
            Dialect::Postgres => "strpos",
        }
    }
}

pub fn run(conn: &impl Db, q: &Query) -> Result<SearchOutcome, StoreError> {
    let driver = driving_pred(&q.preds);
    let filter = filter_sql(conn, q, Plan::of(driver))?;

    let counted = q.summary_count || q.count == 0 || !q.omit_total;
    let total = if counted { Some(count(conn, q, driver, &filter)?) } else { None };
    let mut out = SearchOutcome { total: total.unwrap_or(0), total_omitted: total.is_none(), ..Default::default() };
    // `_count=0` asks for the total alone, like `_summary=count`: no entries, no next page.
    if q.summary_count || q.count == 0 {
        return Ok(out);
    }

    // The page. When the matches are a large share of the table and the order is the default
    // one, walking the table in rowid order and testing each row finds the first page after a
    // few hundred rows; collecting every match first (the driver's plan) would cost all of them
    // (e.g. 77,000 Patients whose name starts with "sin").
    let scan = q.sort.is_empty() && driver.is_some_and(|d| dense(conn, q, d, total, q.offset + q.count + 1).unwrap_or(false));
    let page_filter = if scan { filter_sql(conn, q, Plan::Scan)? } else { filter };
    // SQLite's planner is told to walk the table; PostgreSQL's plans by its statistics.
    let from = if scan && conn.dialect() == Dialect::Sqlite { "resource r NOT INDEXED" } else { "resource r" };
    let mut sql = SqlBuilder {
        text: format!("SELECT r.rid, r.seq, r.rowid FROM {from} WHERE {}", page_filter.text),
        args: page_filter.args,
        dialect: page_filter.dialect,
    };
    sql.push(" ORDER BY ");
    for (key, desc) in &q.sort {
        sort_sql(conn, &mut sql, key, *desc)?;
        sql.push(", ");
    }
    sql.push("r.rowid LIMIT ");
    sql.arg(q.count as i64 + 1);
    sql.push(" OFFSET ");
    sql.arg(q.offset as i64);

    let mut rows: Vec<(String, i64, i64)> = conn.query_map(&sql.text, &sql.params(), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
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

/// How the filter is written: see [`filter_sql`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// No predicate can drive: SQLite chooses (the type index).
    Plain,
    /// The predicate at this index drives; the others are correlated EXISTS.
    Driven(usize),
    /// Walk the table in rowid order; every predicate is a correlated EXISTS.
    Scan,
}

impl Plan {
    fn of(driver: Option<usize>) -> Plan {
        driver.map_or(Plan::Plain, Plan::Driven)
    }
}

/// The WHERE clause of a search on `resource r`.
fn filter_sql(conn: &impl Db, q: &Query, plan: Plan) -> Result<SqlBuilder, StoreError> {
    let mut filter = SqlBuilder::new("", conn.dialect());
    // Query plan: one predicate drives (its index rows give the candidate resources, found by
    // rowid) and every other one is a correlated EXISTS on its table's primary key (res, param,
    // ...), a few b-tree steps per candidate. Without this, SQLite (which has no statistics
    // here) walked every resource of the type and built each predicate's full list of matches,
    // e.g. all booked Appointments to count one Slot's bookings: O(resources) per search.
    // `+r.rtype` keeps the planner from driving from the type index when a predicate can.
    let driven_sqlite = matches!(plan, Plan::Driven(_)) && conn.dialect() == Dialect::Sqlite;
    filter.push(if driven_sqlite { "+r.rtype = " } else { "r.rtype = " });
    filter.arg(q.resource_type.clone());
    filter.push(" AND r.deleted = 0");
    for (i, pred) in q.preds.iter().enumerate() {
        filter.push(" AND ");
        if (plan == Plan::Scan || matches!(plan, Plan::Driven(d) if d != i))
            && let Pred::Index { rtype, code, table, values, negate: false } = pred
        {
            exists_sql(conn, &mut filter, rtype, code, *table, values, "r")?;
            continue;
        }
        pred_sql(conn, &mut filter, pred, "r")?;
    }
    Ok(filter)
}

/// The number of matches. A single index predicate on a type with no deleted resources is
/// counted from its index alone (distinct resources), without visiting each resource's row.
fn count(conn: &impl Db, q: &Query, driver: Option<usize>, filter: &SqlBuilder) -> Result<u64, StoreError> {
    if let (Some(0), [Pred::Index { rtype, code, table, values, negate: false }]) = (driver, q.preds.as_slice())
        && *rtype == q.resource_type
        && !any_deleted(conn, rtype)?
    {
        let Some(p) = pid(conn, rtype, code)? else { return Ok(0) };
        let mut sql = SqlBuilder::new(format!("SELECT res FROM {} WHERE param = ", table.name()), conn.dialect());
        sql.arg(p);
        sql.push(" AND (");
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                sql.push(" OR ");
            }
            value_sql(&mut sql, v, &OWN_COLUMNS);
        }
        sql.push(")");
        // A resource may match with several values (a Devanagari given name and the full name
        // that starts with it): distinct resources are counted in a bitmap of rowids, several
        // times faster than SQLite's count(DISTINCT), which inserts each row into a b-tree.
        let max = max_rowid(conn)?;
        if (0..=MAX_BITMAP_ROWID).contains(&max) {
            let mut seen = vec![0u64; max as usize / 64 + 1];
            let mut n = 0u64;
            conn.for_each_row(&sql.text, &sql.params(), &mut |row| {
                let res: i64 = row.get(0)?;
                let Ok(res) = usize::try_from(res) else { return Ok(()) };
                let (word, bit) = (res / 64, 1u64 << (res % 64));
                if word >= seen.len() {
                    seen.resize(word + 1, 0);
                }
                if seen[word] & bit == 0 {
                    seen[word] |= bit;
                    n += 1;
                }
                Ok(())
            })?;
            return Ok(n);
        }
        let text = format!("SELECT count(DISTINCT res) FROM ({}) AS m", sql.text);
        let n: i64 = conn.query_value(&text, &sql.params())?.unwrap_or(0);
        return Ok(n as u64);
    }
    let sql = format!("SELECT count(*) FROM resource r WHERE {}", filter.text);
    let n: i64 = conn.query_value(&sql, &filter.params())?.unwrap_or(0);
    Ok(n as u64)
}

/// Largest rowid for which distinct matches are counted in a bitmap (8 MiB at most).
const MAX_BITMAP_ROWID: i64 = 1 << 26;

/// Whether any resource of `rtype` is deleted (the partial index `resource_deleted`).
fn any_deleted(conn: &impl Db, rtype: &str) -> Result<bool, StoreError> {
    Ok(conn.query_value("SELECT EXISTS (SELECT 1 FROM resource WHERE rtype = ?1 AND deleted = 1)", &sql_params![rtype])?.unwrap_or(false))
}

/// The largest rowid of the resource table (0 when empty).
fn max_rowid(conn: &impl Db) -> Result<i64, StoreError> {
    Ok(conn.query_value("SELECT coalesce(max(rowid), 0) FROM resource", &[])?.unwrap_or(0))
}

/// Whether the first `need` matches are found sooner by walking the table in rowid order than
/// by collecting all matches of the driving predicate: walking costs about `need * rows /
/// matches` cheap probes, collecting costs `matches` inserts into a temporary index (a few
/// times dearer each). Without a total, the driver's index rows are counted up to the break-even.
fn dense(conn: &impl Db, q: &Query, driver: usize, total: Option<u64>, need: usize) -> Result<bool, StoreError> {
    let rows = max_rowid(conn)?;
    // matches^2 > 4 * need * rows
    let break_even = ((4.0 * need as f64 * rows.max(0) as f64).sqrt().ceil() as u64).max(1);
    if let Some(t) = total {
        return Ok(t >= break_even);
    }
    let Pred::Index { rtype, code, table, values, negate: false } = &q.preds[driver] else { return Ok(false) };
    let Some(p) = pid(conn, rtype, code)? else { return Ok(false) };
    let mut sql = SqlBuilder::new(format!("SELECT count(*) FROM (SELECT 1 FROM {} WHERE param = ", table.name()), conn.dialect());
    sql.arg(p);
    sql.push(" AND (");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            sql.push(" OR ");
        }
        value_sql(&mut sql, v, &OWN_COLUMNS);
    }
    sql.push(") LIMIT ");
    sql.arg(break_even as i64);
    sql.push(") AS m");
    let n: i64 = conn.query_value(&sql.text, &sql.params())?.unwrap_or(0);
    Ok(n as u64 >= break_even)
}

/// The predicate whose index rows should drive the search: the one likely to match the fewest
/// resources, judged from its kind (an exact reference or a token with a system is usually
/// selective, a date range or a `:contains` rarely) and its number of alternatives. Ties go to
/// the earlier predicate. `None` when no predicate can drive (only negations, `_id`, ...).
fn driving_pred(preds: &[Pred]) -> Option<usize> {
    let score = |p: &Pred| -> Option<u32> {
        match p {
            Pred::Index { values, negate: false, .. } => {
                let kind = values
                    .iter()
                    .map(|v| match v {
                        Value::Ref(_) | Value::Uri(_) => 1,
                        Value::Token { system: Some(_), code: Some(_) } => 1,
                        Value::StrExact(_) => 2,
                        Value::Token { code: Some(_), .. } | Value::Composite { .. } => 3,
                        // Longer prefixes match fewer names.
                        Value::StrPrefix(s) => 6 - s.chars().count().min(4) as u32,
                        Value::UriBelow(_) | Value::Near { .. } => 4,
                        Value::Date { .. } | Value::Number { .. } | Value::Quantity { .. } => 5,
                        Value::Token { .. } | Value::TokenText(_) | Value::StrContains(_) => 8,
                    })
                    .max()?;
                Some(kind * 16 + values.len().min(15) as u32)
            }
            Pred::Chain { .. } => Some(4 * 16),
            _ => None,
        }
    };
    preds.iter().enumerate().filter_map(|(i, p)| score(p).map(|s| (s, i))).min().map(|(_, i)| i)
}

/// `EXISTS (SELECT 1 FROM {table} WHERE res = {alias}.rowid AND param = ? AND (values...))`.
fn exists_sql(
    conn: &impl Db,
    sql: &mut SqlBuilder,
    rtype: &str,
    code: &str,
    table: Table,
    values: &[Value],
    alias: &str,
) -> Result<(), StoreError> {
    let Some(p) = pid(conn, rtype, code)? else {
        sql.push("FALSE");
        return Ok(());
    };
    sql.push(&format!("EXISTS (SELECT 1 FROM {} WHERE res = {alias}.rowid AND param = ", table.name()));
    sql.arg(p);
    sql.push(" AND (");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            sql.push(" OR ");
        }
        value_sql(sql, v, &OWN_COLUMNS);
    }
    sql.push("))");
    Ok(())
}

/// Resolve a parameter id, or `None` if no resource has ever been indexed under it.
fn pid(conn: &impl Db, rtype: &str, code: &str) -> Result<Option<i64>, StoreError> {
    param_id(conn, rtype, code)
}

fn pred_sql(conn: &impl Db, sql: &mut SqlBuilder, pred: &Pred, alias: &str) -> Result<(), StoreError> {
    match pred {
        Pred::Constant(all) => sql.push(if *all { "TRUE" } else { "FALSE" }),
        Pred::NotIds(ids) if ids.is_empty() => sql.push("TRUE"),
        Pred::NotIds(ids) => id_list_sql(sql, alias, "NOT IN", ids),
        Pred::Id(ids) => id_list_sql(sql, alias, "IN", ids),
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
                sql.push(if *missing { "TRUE" } else { "FALSE" });
                return Ok(());
            };
            sql.push(&format!("{alias}.rowid {} (SELECT res FROM {} WHERE param = ", if *missing { "NOT IN" } else { "IN" }, table.name()));
            sql.arg(p);
            sql.push(")");
        }
        Pred::Index { rtype, code, table, values, negate } => {
            let Some(p) = pid(conn, rtype, code)? else {
                sql.push(if *negate { "TRUE" } else { "FALSE" });
                return Ok(());
            };
            sql.push(&format!("{alias}.rowid {} (SELECT res FROM {} WHERE param = ", if *negate { "NOT IN" } else { "IN" }, table.name()));
            sql.arg(p);
            sql.push(" AND (");
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    sql.push(" OR ");
                }
                value_sql(sql, v, &OWN_COLUMNS);
            }
            sql.push("))");
        }
        Pred::Chain { rtype, code, target_types: _, inner } => {
            let Some(p) = pid(conn, rtype, code)? else {
                sql.push("FALSE");
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

/// `{alias}.rid IN|NOT IN (?, ?, ...)`.
fn id_list_sql(sql: &mut SqlBuilder, alias: &str, op: &str, ids: &[String]) {
    sql.push(&format!("{alias}.rid {op} ("));
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.arg(id.clone());
    }
    sql.push(")");
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

/// Number semantics: column `col` against the search value `v` with implicit range [lo, hi).
fn number_sql(sql: &mut SqlBuilder, col: &str, prefix: Prefix, v: f64, lo: f64, hi: f64) {
    let (op, x) = match prefix {
        Prefix::Eq => {
            sql.push(&format!("({col} >= "));
            sql.arg(lo);
            sql.push(&format!(" AND {col} < "));
            sql.arg(hi);
            sql.push(")");
            return;
        }
        Prefix::Ne => {
            sql.push(&format!("({col} < "));
            sql.arg(lo);
            sql.push(&format!(" OR {col} >= "));
            sql.arg(hi);
            sql.push(")");
            return;
        }
        Prefix::Ap => {
            // "Approximately": within 10% of the value, as the spec suggests.
            let d = (v * 0.1).abs();
            sql.push(&format!("({col} >= "));
            sql.arg(v - d);
            sql.push(&format!(" AND {col} <= "));
            sql.arg(v + d);
            sql.push(")");
            return;
        }
        Prefix::Gt | Prefix::Sa => (">", v),
        Prefix::Lt | Prefix::Eb => ("<", v),
        Prefix::Ge => (">=", v),
        Prefix::Le => ("<=", v),
    };
    sql.push(&format!("{col} {op} "));
    sql.arg(x);
}

/// The columns a value is matched against: its own table's, or, for the second part of a
/// composite, those of `ix_composite` (see `schema.rs`).
struct Columns {
    /// The normalized string of a string parameter.
    string: &'static str,
    uri: &'static str,
    number: &'static str,
    exact: &'static str,
    system: &'static str,
    code: &'static str,
    text: &'static str,
    unit: &'static str,
    lo: &'static str,
    hi: &'static str,
    target: &'static str,
}

const OWN_COLUMNS: Columns = Columns {
    string: "value",
    uri: "value",
    number: "value",
    exact: "exact",
    system: "system",
    code: "code",
    text: "text",
    unit: "unit",
    lo: "lo",
    hi: "hi",
    target: "target",
};

/// The second part of a composite; no `exact` or token `text` there (a composite takes no
/// modifiers), so those name columns that a value never matches.
const COMPOSITE_SECOND_COLUMNS: Columns = Columns {
    string: "v_text",
    uri: "v_target",
    number: "v_num",
    exact: "v_text",
    system: "v_system",
    code: "v_code",
    text: "v_text",
    unit: "v_text",
    lo: "v_lo",
    hi: "v_hi",
    target: "v_target",
};

/// Earth's mean radius (IUGG), for great-circle distances on a sphere.
const EARTH_RADIUS_KM: f64 = 6_371.008_8;

fn token_sql(sql: &mut SqlBuilder, cols: &Columns, system: &Option<String>, code: &Option<String>) {
    sql.push("(TRUE");
    if let Some(c) = code {
        sql.push(&format!(" AND {} = ", cols.code));
        sql.arg(c.clone());
    }
    if let Some(s) = system {
        sql.push(&format!(" AND {} = ", cols.system));
        sql.arg(s.clone());
    }
    sql.push(")");
}

fn value_sql(sql: &mut SqlBuilder, v: &Value, cols: &Columns) {
    match v {
        Value::StrPrefix(s) => {
            // Starts-with as a range on the normalised value, so the index is used.
            sql.push(&format!("({} >= ", cols.string));
            sql.arg(s.clone());
            sql.push(&format!(" AND {} < ", cols.string));
            sql.arg(format!("{s}\u{10FFFF}"));
            sql.push(")");
        }
        Value::StrContains(s) => {
            sql.push(&format!("{}({}, ", sql.position_of(), cols.string));
            sql.arg(s.clone());
            sql.push(") > 0");
        }
        Value::StrExact(s) => {
            sql.push(&format!("{} = ", cols.exact));
            sql.arg(s.clone());
        }
        Value::Token { system, code } => token_sql(sql, cols, system, code),
        Value::TokenText(s) => {
            sql.push(&format!("{}(lower({}), ", sql.position_of(), cols.text));
            sql.arg(s.clone());
            sql.push(") > 0");
        }
        Value::Ref(candidates) => {
            sql.push(&format!("{} IN (", cols.target));
            for (i, c) in candidates.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.arg(c.clone());
            }
            sql.push(")");
        }
        Value::Date { prefix, lo, hi } => range_sql(sql, *prefix, cols.lo, cols.hi, *lo, *hi),
        Value::Number { prefix, value, lo, hi } => number_sql(sql, cols.number, *prefix, *value, *lo, *hi),
        Value::Quantity { prefix, value, lo, hi, system, code } => {
            sql.push("(");
            number_sql(sql, cols.number, *prefix, *value, *lo, *hi);
            if let Some(s) = system {
                sql.push(&format!(" AND {} = ", cols.system));
                sql.arg(s.clone());
            }
            if let Some(c) = code {
                // Without a system the code may be a UCUM code or the unit as written.
                if system.is_some() {
                    sql.push(&format!(" AND {} = ", cols.code));
                    sql.arg(c.clone());
                } else {
                    sql.push(&format!(" AND ({} = ", cols.code));
                    sql.arg(c.clone());
                    sql.push(&format!(" OR {} = ", cols.unit));
                    sql.arg(c.clone());
                    sql.push(")");
                }
            }
            sql.push(")");
        }
        Value::Uri(u) => {
            sql.push(&format!("{} = ", cols.uri));
            sql.arg(u.clone());
        }
        Value::UriBelow(u) => {
            sql.push(&format!("({} >= ", cols.uri));
            sql.arg(u.clone());
            sql.push(&format!(" AND {} < ", cols.uri));
            sql.arg(format!("{u}\u{10FFFF}"));
            sql.push(")");
        }
        Value::Composite { system, code, second } => {
            // Both parts in one row: the same node (component, context, ...) of the resource.
            sql.push("(");
            token_sql(sql, &OWN_COLUMNS, system, code);
            sql.push(" AND ");
            value_sql(sql, second, &COMPOSITE_SECOND_COLUMNS);
            sql.push(")");
        }
        Value::Near { lat, lon, distance_km } => near_sql(sql, *lat, *lon, *distance_km),
    }
}

/// Positions within `distance_km` of (`lat`, `lon`) along the great circle, on a sphere of
/// Earth's mean radius (the haversine distance; WGS84's ellipsoid differs by up to 0.5%).
///
/// The bounding box of the circle in degrees (latitude ± d/R; longitude ± asin(sin(d/R) /
/// cos(lat)), split at the antimeridian, unbounded when the circle holds a pole) selects
/// candidates through `ix_geo_search`. The exact test compares chord lengths, which only needs
/// arithmetic: with the unit vectors p (stored) and q (of the search point), the central angle
/// θ ≤ d/R exactly when |p − q|² ≤ (2 sin(d/2R))². Differences of nearby unit vectors keep their
/// precision, so this holds to well under a metre at any distance.
fn near_sql(sql: &mut SqlBuilder, lat: f64, lon: f64, distance_km: f64) {
    let angle = distance_km / EARTH_RADIUS_KM;
    if angle >= std::f64::consts::PI {
        sql.push("TRUE"); // the whole sphere
        return;
    }
    // A hair of slack so that rounding cannot drop a point on the boundary.
    const SLACK_DEGREES: f64 = 1e-9;
    let dlat = angle.to_degrees() + SLACK_DEGREES;
    let (lat_lo, lat_hi) = (lat - dlat, lat + dlat);
    sql.push("(");
    let mut lon_ranges: Vec<(f64, f64)> = vec![];
    if lat_lo > -90.0 && lat_hi < 90.0 {
        // No pole inside, so sin(angle) < cos(lat) and the asin is defined.
        let ratio = (angle.sin() / lat.to_radians().cos()).min(1.0);
        let dlon = ratio.asin().to_degrees() + SLACK_DEGREES;
        let (lon_lo, lon_hi) = (lon - dlon, lon + dlon);
        if dlon < 180.0 {
            if lon_lo < -180.0 {
                lon_ranges.extend([(lon_lo + 360.0, 180.0), (-180.0, lon_hi)]);
            } else if lon_hi > 180.0 {
                lon_ranges.extend([(lon_lo, 180.0), (-180.0, lon_hi - 360.0)]);
            } else {
                lon_ranges.push((lon_lo, lon_hi));
            }
        }
    }
    sql.push("lat >= ");
    sql.arg(lat_lo.max(-90.0));
    sql.push(" AND lat <= ");
    sql.arg(lat_hi.min(90.0));
    if !lon_ranges.is_empty() {
        sql.push(" AND (");
        for (i, (lo, hi)) in lon_ranges.iter().enumerate() {
            if i > 0 {
                sql.push(" OR ");
            }
            sql.push("(lon >= ");
            sql.arg(*lo);
            sql.push(" AND lon <= ");
            sql.arg(*hi);
            sql.push(")");
        }
        sql.push(")");
    }
    let (x, y, z) = unit_vector(lat, lon);
    let chord = 2.0 * (angle / 2.0).sin();
    sql.push(" AND ");
    for (i, (col, q)) in [("x", x), ("y", y), ("z", z)].into_iter().enumerate() {
        if i > 0 {
            sql.push(" + ");
        }
        sql.push(&format!("({col} - "));
        sql.arg(q);
        sql.push(&format!(") * ({col} - "));
        sql.arg(q);
        sql.push(")");
    }
    sql.push(" <= ");
    sql.arg(chord * chord * (1.0 + 1e-12));
    sql.push(")");
}

fn sort_sql(conn: &impl Db, sql: &mut SqlBuilder, key: &SortKey, desc: bool) -> Result<(), StoreError> {
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
                // Refused by the parser: no single value to sort by.
                (Table::Composite | Table::Geo, _) => {
                    sql.push("NULL");
                    return Ok(());
                }
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

fn load_current(conn: &impl Db, target: &str) -> Result<Option<Found>, StoreError> {
    let Some((t, id)) = target.split_once('/') else { return Ok(None) };
    Ok(crate::read::current(conn, t, id)?.filter(|s| !s.deleted).map(|s| Found {
        resource_type: t.to_string(),
        id: id.to_string(),
        content: s.content,
    }))
}

fn include(
    conn: &impl Db,
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
        for &res in rowids {
            let targets: Vec<String> = conn.query_map("SELECT target FROM ix_ref WHERE res = ?1 AND param = ?2", &sql_params![res, p], |r| r.get(0))?;
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
    conn: &impl Db,
    _q: &Query,
    inc: &Include,
    matches: &[Found],
    seen: &mut HashSet<(String, String)>,
    out: &mut Vec<Found>,
) -> Result<(), StoreError> {
    for code in reference_codes(&inc.source_type, &inc.code) {
        let Some(p) = pid(conn, &inc.source_type, &code)? else { continue };
        for m in matches {
            if inc.target_type.as_deref().is_some_and(|want| want != m.resource_type) {
                continue;
            }
            let target = format!("{}/{}", m.resource_type, m.id);
            let rows: Vec<(String, i64)> = conn.query_map(
                "SELECT r.rid, r.seq FROM ix_ref x JOIN resource r ON r.rowid = x.res
                 WHERE x.param = ?1 AND x.target = ?2 AND r.deleted = 0 AND r.rtype = ?3",
                &sql_params![p, &target, &inc.source_type],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
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

/// The greatest token code in `[lo, hi]` that resources of `rtype` have under parameter
/// `code` with `system` (e.g. the last UHID issued). Uses the search index's order.
pub fn max_token_code(conn: &impl Db, rtype: &str, code: &str, system: &str, lo: &str, hi: &str) -> Result<Option<String>, StoreError> {
    let Some(p) = pid(conn, rtype, code)? else { return Ok(None) };
    conn.query_value(
        "SELECT code FROM ix_token WHERE param = ?1 AND code >= ?2 AND code <= ?3 AND system = ?4 ORDER BY code DESC LIMIT 1",
        &sql_params![p, lo, hi, system],
    )
}
