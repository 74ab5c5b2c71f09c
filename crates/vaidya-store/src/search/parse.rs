//! From `name[:modifier]=value[,value]` pairs to a typed [`Query`].

use super::*;
use vaidya_fhir::datetime::parse_date_range;
use vaidya_fhir::index::{component_kinds, composite_indexable, normalize_string};
use vaidya_fhir::search_params::{ParamType, SearchParam, search_param};

/// What to do with parameters we do not know (the `Prefer: handling=` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Handling {
    #[default]
    Strict,
    Lenient,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SearchError {
    #[error("unknown search parameter '{0}' for {1}")]
    UnknownParam(String, String),
    #[error("search parameter '{param}': {message}")]
    BadValue { param: String, message: String },
    #[error("search parameter '{param}': {message}")]
    NotSupported { param: String, message: String },
    #[error("{0}")]
    TooMuch(String),
}

fn bad(param: &str, message: impl Into<String>) -> SearchError {
    SearchError::BadValue { param: param.to_string(), message: message.into() }
}

fn unsupported(param: &str, message: impl Into<String>) -> SearchError {
    SearchError::NotSupported { param: param.to_string(), message: message.into() }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

/// One alternative of a parameter (values of one parameter are OR-ed).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    StrPrefix(String),
    StrContains(String),
    StrExact(String),
    /// `system` None: any system; Some(""): no system.
    Token { system: Option<String>, code: Option<String> },
    TokenText(String),
    /// Candidate stored reference strings (e.g. `Patient/1`), any of which matches.
    Ref(Vec<String>),
    Date { prefix: Prefix, lo: i64, hi: i64 },
    Number { prefix: Prefix, value: f64, lo: f64, hi: f64 },
    Quantity { prefix: Prefix, value: f64, lo: f64, hi: f64, system: Option<String>, code: Option<String> },
    Uri(String),
    UriBelow(String),
    /// A composite's value: its token part (as in `Token`), and its second part, a value of the
    /// second component's type (never `TokenText`, `StrExact`, `StrContains` or another composite).
    Composite { system: Option<String>, code: Option<String>, second: Box<Value> },
    /// Location `near`: positions within `distance_km` (great-circle) of a point in degrees.
    Near { lat: f64, lon: f64, distance_km: f64 },
}

/// Which index table a parameter lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    String,
    Token,
    Ref,
    Date,
    Number,
    Quantity,
    Uri,
    Composite,
    /// Positions (Location `near`).
    Geo,
}

impl Table {
    pub fn name(self) -> &'static str {
        match self {
            Table::String => "ix_string",
            Table::Token => "ix_token",
            Table::Ref => "ix_ref",
            Table::Date => "ix_date",
            Table::Number => "ix_number",
            Table::Quantity => "ix_quantity",
            Table::Uri => "ix_uri",
            Table::Composite => "ix_composite",
            Table::Geo => "ix_geo",
        }
    }
}

/// One AND-ed condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Pred {
    Id(Vec<String>),
    LastUpdated(Vec<(Prefix, i64, i64)>),
    Index { rtype: String, code: String, table: Table, values: Vec<Value>, negate: bool },
    Missing { rtype: String, code: String, table: Table, missing: bool },
    /// `ref_param.inner`: resources whose `ref_param` points at a resource matching `inner`.
    Chain { rtype: String, code: String, target_types: Vec<String>, inner: Vec<(String, Pred)> },
    /// Every resource (`true`) or none: `_id:missing` and `_lastUpdated:missing`.
    Constant(bool),
    /// Every resource but these ids. Never parsed from a query: the server adds it to leave out
    /// what the searching account may not see, so that totals and counts do not betray it.
    NotIds(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum SortKey {
    Id,
    LastUpdated,
    Param { rtype: String, code: String, table: Table },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Include {
    /// Resource type whose reference parameter is followed.
    pub source_type: String,
    /// Reference parameter code; `None` for `*` (all reference parameters).
    pub code: Option<String>,
    /// Only targets of this type.
    pub target_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub resource_type: String,
    pub preds: Vec<Pred>,
    pub sort: Vec<(SortKey, bool)>, // (key, descending)
    pub count: usize,
    pub offset: usize,
    pub summary_count: bool,
    /// `_total=none`: the client does not want the total, so it is not counted.
    pub omit_total: bool,
    pub includes: Vec<Include>,
    pub revincludes: Vec<Include>,
    /// Parameters ignored under lenient handling, to report back.
    pub ignored: Vec<String>,
    /// The parameters that were applied, for the Bundle's self link.
    pub applied: Vec<(String, String)>,
}

/// Parameters that shape the result rather than filter it, and are accepted without effect.
const NEUTRAL: [&str; 2] = ["_format", "_pretty"];

pub fn parse_query(resource_type: &str, pairs: &[(String, String)], handling: Handling) -> Result<Query, SearchError> {
    if pairs.len() > MAX_PARAMS {
        return Err(SearchError::TooMuch(format!("at most {MAX_PARAMS} search parameters per query")));
    }
    let mut q = Query {
        resource_type: resource_type.to_string(),
        preds: vec![],
        sort: vec![],
        count: DEFAULT_COUNT,
        offset: 0,
        summary_count: false,
        omit_total: false,
        includes: vec![],
        revincludes: vec![],
        ignored: vec![],
        applied: vec![],
    };
    for (name, value) in pairs {
        if value.len() > MAX_VALUE_LEN {
            return Err(bad(name, format!("value longer than {MAX_VALUE_LEN} characters")));
        }
        let applied = match name.as_str() {
            "_count" => {
                q.count = parse_usize(name, value)?;
                if q.count > MAX_COUNT {
                    return Err(bad(name, format!("at most {MAX_COUNT} results per page")));
                }
                true
            }
            "_offset" => {
                q.offset = parse_usize(name, value)?;
                if q.offset > MAX_OFFSET {
                    return Err(bad(name, format!("paging deeper than {MAX_OFFSET} results is not supported; narrow the search")));
                }
                true
            }
            "_sort" => {
                q.sort = parse_sort(resource_type, value)?;
                true
            }
            "_total" => match value.as_str() {
                "none" => {
                    q.omit_total = true;
                    true
                }
                // Every total this server gives is exact.
                "accurate" | "estimate" => true,
                _ => return Err(bad(name, "must be none, estimate or accurate")),
            },
            "_summary" => match value.as_str() {
                "count" => {
                    q.summary_count = true;
                    true
                }
                "false" => true,
                _ => return Err(unsupported(name, "only _summary=count and _summary=false are supported")),
            },
            "_include" | "_revinclude" => {
                if q.includes.len() + q.revincludes.len() >= MAX_INCLUDES {
                    return Err(SearchError::TooMuch(format!("at most {MAX_INCLUDES} _include/_revinclude")));
                }
                let inc = parse_include(name, value)?;
                if name == "_include" { q.includes.push(inc) } else { q.revincludes.push(inc) }
                true
            }
            n if NEUTRAL.contains(&n) => false,
            _ => match parse_filter(resource_type, name, value) {
                Ok(pred) => {
                    q.preds.push(pred);
                    true
                }
                Err(SearchError::UnknownParam(..)) | Err(SearchError::NotSupported { .. })
                    if handling == Handling::Lenient =>
                {
                    q.ignored.push(name.clone());
                    false
                }
                Err(e) => return Err(e),
            },
        };
        if applied {
            q.applied.push((name.clone(), value.clone()));
        }
    }
    Ok(q)
}

fn parse_usize(name: &str, value: &str) -> Result<usize, SearchError> {
    value.parse().map_err(|_| bad(name, format!("'{value}' is not a non-negative whole number")))
}

fn parse_sort(rtype: &str, value: &str) -> Result<Vec<(SortKey, bool)>, SearchError> {
    let mut out = vec![];
    for part in value.split(',') {
        let (desc, code) = match part.strip_prefix('-') {
            Some(c) => (true, c),
            None => (false, part),
        };
        let key = match code {
            "_id" => SortKey::Id,
            "_lastUpdated" => SortKey::LastUpdated,
            _ => {
                let p = search_param(rtype, code).ok_or_else(|| SearchError::UnknownParam(code.into(), rtype.into()))?;
                let table = table_of(p)
                    .filter(|t| !matches!(t, Table::Composite | Table::Geo))
                    .ok_or_else(|| unsupported("_sort", format!("cannot sort by '{code}'")))?;
                SortKey::Param { rtype: rtype.to_string(), code: code.to_string(), table }
            }
        };
        out.push((key, desc));
    }
    Ok(out)
}

fn parse_include(name: &str, value: &str) -> Result<Include, SearchError> {
    let mut parts = value.split(':');
    let source_type = parts.next().unwrap_or_default();
    let code = parts.next().ok_or_else(|| bad(name, "expected Type:parameter[:TargetType]"))?;
    let target_type = parts.next().map(str::to_string);
    if parts.next().is_some() || !vaidya_fhir::model::Model::r4().is_resource_type(source_type) {
        return Err(bad(name, format!("'{value}' is not Type:parameter[:TargetType]")));
    }
    if let Some(t) = &target_type
        && !vaidya_fhir::model::Model::r4().is_resource_type(t)
    {
        return Err(bad(name, format!("unknown resource type '{t}'")));
    }
    let code = if code == "*" {
        None
    } else {
        let p = search_param(source_type, code)
            .ok_or_else(|| SearchError::UnknownParam(code.to_string(), source_type.to_string()))?;
        if p.kind != ParamType::Reference {
            return Err(bad(name, format!("'{code}' is not a reference parameter")));
        }
        Some(code.to_string())
    };
    Ok(Include { source_type: source_type.to_string(), code, target_type })
}

/// The index table of a parameter; `None` if it cannot be searched: composites other than the
/// two-part, token-first ones ([`composite_indexable`]: MolecularSequence's coordinates) and
/// special parameters without an expression (`_has`, `_list`, `_filter`). The special
/// parameters with an expression (Location `near`) are positions.
pub fn table_of(p: &SearchParam) -> Option<Table> {
    Some(match p.kind {
        ParamType::String => Table::String,
        ParamType::Token => Table::Token,
        ParamType::Reference => Table::Ref,
        ParamType::Date => Table::Date,
        ParamType::Number => Table::Number,
        ParamType::Quantity => Table::Quantity,
        ParamType::Uri => Table::Uri,
        ParamType::Composite if composite_indexable(p) => Table::Composite,
        ParamType::Special if p.compiled().is_some() => Table::Geo,
        ParamType::Composite | ParamType::Special => return None,
    })
}

/// Split on `sep` where it is not escaped with a backslash, keeping every escape (`\x`) as
/// written, so that the parts can be split again on another separator.
fn split_unescaped(value: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == sep {
            out.push(String::new());
            continue;
        }
        let cur = out.last_mut().expect("non-empty");
        cur.push(c);
        if c == '\\'
            && let Some(n) = chars.next()
        {
            cur.push(n);
        }
    }
    out
}

/// Undo the escapes of the search syntax, `\,` `\$` `\|` `\\`; other backslashes stay.
fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some(n @ (',' | '$' | '|' | '\\'))) => {
                out.push(n);
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

/// Split a parameter's value into its comma-separated alternatives, escapes kept.
fn split_or(value: &str) -> Vec<String> {
    split_unescaped(value, ',')
}

/// Split a token, quantity or `near` value on `|` not escaped as `\|`, and unescape the parts.
fn split_bar(value: &str) -> Vec<String> {
    split_unescaped(value, '|').iter().map(|p| unescape(p)).collect()
}

fn parse_filter(rtype: &str, name: &str, value: &str) -> Result<Pred, SearchError> {
    // Chained: `subject.identifier`, `subject:Patient.name`.
    if let Some((head, rest)) = name.split_once('.') {
        return parse_chain(rtype, name, head, rest, value);
    }
    let (code, modifier) = match name.split_once(':') {
        Some((c, m)) => (c, Some(m)),
        None => (name, None),
    };
    if (code == "_id" || code == "_lastUpdated") && modifier == Some("missing") {
        // Every resource has an id and a lastUpdated.
        return match value {
            "true" => Ok(Pred::Constant(false)),
            "false" => Ok(Pred::Constant(true)),
            _ => Err(bad(name, "expected true or false")),
        };
    }
    if code == "_id" {
        if modifier.is_some() {
            return Err(unsupported(name, "no modifiers on _id"));
        }
        let ids: Vec<String> = split_or(value).iter().map(|v| unescape(v)).collect();
        check_or_count(name, ids.len())?;
        return Ok(Pred::Id(ids));
    }
    if code == "_lastUpdated" {
        if modifier.is_some() {
            return Err(unsupported(name, "no modifiers on _lastUpdated"));
        }
        let mut out = vec![];
        for v in split_or(value) {
            let v = unescape(&v);
            let (prefix, rest) = split_prefix(&v);
            let (lo, hi) = parse_date_range(rest).ok_or_else(|| bad(name, format!("'{rest}' is not a FHIR date")))?;
            out.push((prefix, lo, hi));
        }
        check_or_count(name, out.len())?;
        return Ok(Pred::LastUpdated(out));
    }
    let param = search_param(rtype, code).ok_or_else(|| SearchError::UnknownParam(code.to_string(), rtype.to_string()))?;
    let table = table_of(param).ok_or_else(|| unsupported(name, format!("the {} parameter '{code}' is not supported", param.kind.as_str())))?;
    let mut negate = false;
    let mut type_restriction = None;
    match modifier {
        None => {}
        Some("missing") => {
            let missing = match value {
                "true" => true,
                "false" => false,
                _ => return Err(bad(name, "expected true or false")),
            };
            return Ok(Pred::Missing { rtype: rtype.into(), code: code.into(), table, missing });
        }
        Some("not") if table == Table::Token => negate = true,
        Some("exact" | "contains") if table == Table::String => {}
        Some("text") if table == Table::Token => {}
        Some("below") if table == Table::Uri => {}
        Some(t) if table == Table::Ref && vaidya_fhir::model::Model::r4().is_resource_type(t) => {
            type_restriction = Some(t)
        }
        Some(m) => return Err(unsupported(name, format!("modifier ':{m}' is not supported for this parameter"))),
    }
    let alternatives = split_or(value);
    check_or_count(name, alternatives.len())?;
    let mut values = Vec::with_capacity(alternatives.len());
    for v in &alternatives {
        let value = match table {
            Table::Composite => parse_composite(name, param, v)?,
            Table::Geo => parse_near(name, v)?,
            _ => parse_value(name, &param.targets, table, modifier, type_restriction, v)?,
        };
        values.push(value);
    }
    Ok(Pred::Index { rtype: rtype.into(), code: code.into(), table, values, negate })
}

fn check_or_count(name: &str, n: usize) -> Result<(), SearchError> {
    if n > MAX_OR_VALUES {
        return Err(bad(name, format!("at most {MAX_OR_VALUES} comma-separated values")));
    }
    Ok(())
}

fn parse_chain(rtype: &str, name: &str, head: &str, rest: &str, value: &str) -> Result<Pred, SearchError> {
    let (code, type_mod) = match head.split_once(':') {
        Some((c, t)) => (c, Some(t)),
        None => (head, None),
    };
    let param = search_param(rtype, code).ok_or_else(|| SearchError::UnknownParam(code.to_string(), rtype.to_string()))?;
    if param.kind != ParamType::Reference {
        return Err(bad(name, format!("'{code}' is not a reference parameter and cannot be chained")));
    }
    if rest.contains('.') {
        return Err(unsupported(name, "chains deeper than one level are not supported"));
    }
    let candidates: Vec<String> = match type_mod {
        Some(t) if param.targets.iter().any(|x| x == t) => vec![t.to_string()],
        Some(t) => return Err(bad(name, format!("'{code}' cannot refer to {t}"))),
        None => param.targets.clone(),
    };
    let chained_code = rest.split(':').next().unwrap_or(rest);
    let mut inner = vec![];
    for t in &candidates {
        if search_param(t, chained_code).is_some() || chained_code.starts_with('_') {
            inner.push((t.clone(), parse_filter(t, rest, value)?));
        }
    }
    if inner.is_empty() {
        return Err(SearchError::UnknownParam(rest.to_string(), candidates.join("|")));
    }
    let target_types = inner.iter().map(|(t, _)| t.clone()).collect();
    Ok(Pred::Chain { rtype: rtype.into(), code: code.into(), target_types, inner })
}

fn split_prefix(v: &str) -> (Prefix, &str) {
    let prefixes = [
        ("eq", Prefix::Eq),
        ("ne", Prefix::Ne),
        ("gt", Prefix::Gt),
        ("lt", Prefix::Lt),
        ("ge", Prefix::Ge),
        ("le", Prefix::Le),
        ("sa", Prefix::Sa),
        ("eb", Prefix::Eb),
        ("ap", Prefix::Ap),
    ];
    for (s, p) in prefixes {
        if let Some(rest) = v.strip_prefix(s)
            && rest.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.')
        {
            return (p, rest);
        }
    }
    (Prefix::Eq, v)
}

/// The implicit range of a decimal as written: `100` means [99.5, 100.5), `1.50` [1.495, 1.505).
fn decimal_range(name: &str, s: &str) -> Result<(f64, f64, f64), SearchError> {
    let valid = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_digit() || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E');
    let value: f64 = if valid { s.parse().ok() } else { None }
        .filter(|v: &f64| v.is_finite())
        .ok_or_else(|| bad(name, format!("'{s}' is not a number")))?;
    let decimals = s.split_once('.').map_or(0, |(_, frac)| frac.chars().take_while(|c| c.is_ascii_digit()).count());
    let half = 0.5 * 10f64.powi(-(decimals as i32));
    Ok((value, value - half, value + half))
}

/// One alternative of a value (escapes still in, as [`split_or`] leaves them) of a parameter of
/// `table`'s type; `targets` are the types a reference may point to.
fn parse_value(
    name: &str,
    targets: &[String],
    table: Table,
    modifier: Option<&str>,
    type_restriction: Option<&str>,
    v: &str,
) -> Result<Value, SearchError> {
    if v.is_empty() {
        return Err(bad(name, "empty value"));
    }
    let raw = v;
    // Tokens and quantities split on `|` first; everything else is one unescaped value.
    let unescaped = unescape(raw);
    let v = unescaped.as_str();
    Ok(match table {
        Table::String => {
            match modifier {
                Some("exact") => Value::StrExact(v.to_string()),
                Some("contains") => Value::StrContains(normalize_string(v)),
                _ => Value::StrPrefix(normalize_string(v)),
            }
        }
        Table::Token if modifier == Some("text") => Value::TokenText(normalize_string(v)),
        Table::Token => {
            let parts = split_bar(raw);
            match parts.as_slice() {
                [code] => Value::Token { system: None, code: Some(code.clone()) },
                [system, code] => Value::Token {
                    system: Some(system.clone()),
                    code: if code.is_empty() { None } else { Some(code.clone()) },
                },
                _ => return Err(bad(name, format!("'{v}' is not [system|]code"))),
            }
        }
        Table::Ref => Value::Ref(reference_candidates(name, targets, type_restriction, v)?),
        Table::Date => {
            let (prefix, rest) = split_prefix(v);
            let (lo, hi) = parse_date_range(rest).ok_or_else(|| bad(name, format!("'{rest}' is not a FHIR date")))?;
            Value::Date { prefix, lo, hi }
        }
        Table::Number => {
            let (prefix, rest) = split_prefix(v);
            let (value, lo, hi) = decimal_range(name, rest)?;
            Value::Number { prefix, value, lo, hi }
        }
        Table::Quantity => {
            let (prefix, rest) = split_prefix(raw);
            let parts = split_bar(rest);
            let (number, system, code) = match parts.as_slice() {
                [n] => (n.as_str(), None, None),
                [n, s, c] => (
                    n.as_str(),
                    (!s.is_empty()).then(|| s.clone()),
                    (!c.is_empty()).then(|| c.clone()),
                ),
                _ => return Err(bad(name, format!("'{v}' is not number|system|code"))),
            };
            let (value, lo, hi) = decimal_range(name, number)?;
            Value::Quantity { prefix, value, lo, hi, system, code }
        }
        Table::Uri => match modifier {
            Some("below") => Value::UriBelow(v.to_string()),
            _ => Value::Uri(v.to_string()),
        },
        Table::Composite | Table::Geo => return Err(bad(name, "not a simple value")),
    })
}

/// A composite value (<https://hl7.org/fhir/R4/search.html#composite>): the components'
/// values separated by `$` (a literal `$` is `\$`), each in its own type's syntax, e.g.
/// `http://loinc.org|8480-6$gt100|http://unitsofmeasure.org|mm[Hg]`. The first component is a
/// token; prefixes apply to a date, number or quantity second component. A reference second
/// component is given as `Type/id` or an absolute URL.
fn parse_composite(name: &str, param: &SearchParam, v: &str) -> Result<Value, SearchError> {
    let kinds = component_kinds(param);
    let parts = split_unescaped(v, '$');
    if parts.len() != kinds.len() {
        let expected: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        return Err(bad(
            name,
            format!("'{v}' has {} part(s); expected {} separated by '$' ({})", parts.len(), kinds.len(), expected.join("$")),
        ));
    }
    let mut values = Vec::with_capacity(parts.len());
    for (kind, part) in kinds.iter().zip(&parts) {
        let table = match kind {
            ParamType::Token => Table::Token,
            ParamType::String => Table::String,
            ParamType::Reference => Table::Ref,
            ParamType::Date => Table::Date,
            ParamType::Number => Table::Number,
            ParamType::Quantity => Table::Quantity,
            ParamType::Uri => Table::Uri,
            ParamType::Composite | ParamType::Special => return Err(unsupported(name, "nested composite")),
        };
        if part.is_empty() {
            return Err(bad(name, format!("'{v}' has an empty {} part", kind.as_str())));
        }
        values.push(parse_value(name, &[], table, None, None, part)?);
    }
    let second = values.pop().expect("two parts");
    let Some(Value::Token { system, code }) = values.pop() else {
        return Err(bad(name, format!("'{v}' does not start with a token")));
    };
    Ok(Value::Composite { system, code, second: Box::new(second) })
}

/// Distance when `near` gives none, in km.
pub const NEAR_DEFAULT_KM: f64 = 10.0;

/// `near=latitude|longitude[|distance[|units]]` (WGS84 degrees; units `km` (the default), `m`,
/// `mi` or UCUM `[mi_i]`; distance [`NEAR_DEFAULT_KM`] when not given).
fn parse_near(name: &str, v: &str) -> Result<Value, SearchError> {
    let parts = split_bar(v);
    if !(2..=4).contains(&parts.len()) {
        return Err(bad(name, format!("'{v}' is not latitude|longitude|distance|units")));
    }
    let number = |s: &str, what: &str| -> Result<f64, SearchError> {
        let valid = !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'));
        if valid { s.parse::<f64>().ok() } else { None }
            .filter(|x| x.is_finite())
            .ok_or_else(|| bad(name, format!("{what} '{s}' is not a number")))
    };
    let lat = number(&parts[0], "latitude")?;
    let lon = number(&parts[1], "longitude")?;
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return Err(bad(name, format!("'{lat}|{lon}' is not a latitude in [-90, 90] and a longitude in [-180, 180]")));
    }
    let distance = match parts.get(2).map(String::as_str) {
        None | Some("") => None,
        Some(d) => Some(number(d, "distance")?),
    };
    let km_per_unit = match parts.get(3).map(String::as_str) {
        None | Some("") | Some("km") => 1.0,
        Some("m") => 0.001,
        Some("mi" | "[mi_i]") => 1.609_344,
        Some(u) => return Err(bad(name, format!("unknown distance unit '{u}' (km, m, mi)"))),
    };
    let distance_km = match distance {
        Some(d) if d < 0.0 => return Err(bad(name, "a negative distance")),
        Some(d) => d * km_per_unit,
        None => NEAR_DEFAULT_KM,
    };
    Ok(Value::Near { lat, lon, distance_km })
}

/// The stored forms a reference search value can match.
fn reference_candidates(
    name: &str,
    targets: &[String],
    type_restriction: Option<&str>,
    v: &str,
) -> Result<Vec<String>, SearchError> {
    if v.starts_with("http://") || v.starts_with("https://") || v.starts_with("urn:") {
        return Ok(vec![v.to_string()]);
    }
    match v.split_once('/') {
        Some((t, id)) if !id.contains('/') => {
            if !vaidya_fhir::model::Model::r4().is_resource_type(t) {
                return Err(bad(name, format!("unknown resource type '{t}'")));
            }
            Ok(vec![format!("{t}/{id}")])
        }
        Some(_) => Err(bad(name, format!("'{v}' is not a reference"))),
        None => {
            let types: Vec<&str> = match type_restriction {
                Some(t) => vec![t],
                None if targets.is_empty() => {
                    return Err(bad(name, "give the reference as Type/id"));
                }
                None => targets.iter().map(String::as_str).collect(),
            };
            Ok(types.iter().map(|t| format!("{t}/{v}")).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Result<Query, SearchError> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        parse_query("Observation", &pairs, Handling::Strict)
    }

    #[test]
    fn splits_alternatives_and_tokens_with_escapes() {
        let unescaped = |v: &str| split_or(v).iter().map(|p| unescape(p)).collect::<Vec<_>>();
        assert_eq!(unescaped(r"a,b\,c"), vec!["a", "b,c"]);
        assert_eq!(split_bar(r"http://x|a\|b"), vec!["http://x", "a|b"]);
        // An escaped backslash does not escape the separator after it.
        assert_eq!(split_bar(r"a\\|b"), vec![r"a\", "b"]);
        assert_eq!(unescaped(r"a\\,b"), vec![r"a\", "b"]);
        // Other backslashes are kept as written.
        assert_eq!(unescaped(r"C:\x"), vec![r"C:\x"]);
        // Splitting on commas keeps the other escapes for the next split.
        assert_eq!(split_or(r"a\$b\|c,d"), vec![r"a\$b\|c", "d"]);
        assert_eq!(split_unescaped(r"x\$y$z", '$'), vec![r"x\$y", "z"]);
    }

    fn composite(code: &str, value: &str) -> Result<Vec<Value>, SearchError> {
        match p(&[(code, value)])?.preds.remove(0) {
            Pred::Index { table: Table::Composite, values, negate: false, .. } => Ok(values),
            other => panic!("{other:?}"),
        }
    }

    fn tok(system: Option<&str>, code: Option<&str>) -> (Option<String>, Option<String>) {
        (system.map(str::to_string), code.map(str::to_string))
    }

    #[test]
    fn composite_values_split_on_unescaped_dollars() {
        let v = composite("component-code-value-quantity", "http://loinc.org|8480-6$gt100|http://unitsofmeasure.org|mm[Hg]").unwrap();
        let [Value::Composite { system, code, second }] = v.as_slice() else { panic!("{v:?}") };
        assert_eq!((system.clone(), code.clone()), tok(Some("http://loinc.org"), Some("8480-6")));
        let Value::Quantity { prefix: Prefix::Gt, value, system, code, .. } = second.as_ref() else { panic!("{second:?}") };
        assert_eq!(*value, 100.0);
        assert_eq!((system.clone(), code.clone()), tok(Some("http://unitsofmeasure.org"), Some("mm[Hg]")));

        // `\$` is a dollar inside a part, `\,` a comma; unescaped `,` separates alternatives.
        let v = composite("code-value-string", r"a\$b$US\$ 5\, or so,x$y").unwrap();
        assert_eq!(v.len(), 2);
        let Value::Composite { system: None, code: Some(code), second } = &v[0] else { panic!("{v:?}") };
        assert_eq!(code, "a$b");
        assert_eq!(second.as_ref(), &Value::StrPrefix("us$ 5, or so".into()));

        // Token second part, with an escaped bar in its code; date second part with a prefix.
        let v = composite("code-value-concept", r"1234$http://snomed.info/sct|a\|b").unwrap();
        let Value::Composite { second, .. } = &v[0] else { panic!() };
        assert_eq!(second.as_ref(), &Value::Token { system: Some("http://snomed.info/sct".into()), code: Some("a|b".into()) });
        let v = composite("code-value-date", "x$ge2020-01-01").unwrap();
        let Value::Composite { second, .. } = &v[0] else { panic!() };
        assert!(matches!(second.as_ref(), Value::Date { prefix: Prefix::Ge, .. }));

        // DocumentReference `relationship`: a token, then a reference (R4 swaps the definitions).
        let pairs = vec![("relationship".to_string(), "replaces$DocumentReference/d1".to_string())];
        let q = parse_query("DocumentReference", &pairs, Handling::Strict).unwrap();
        let Pred::Index { values, .. } = &q.preds[0] else { panic!() };
        let Value::Composite { code: Some(code), second, .. } = &values[0] else { panic!() };
        assert_eq!(code, "replaces");
        assert_eq!(second.as_ref(), &Value::Ref(vec!["DocumentReference/d1".into()]));
    }

    #[test]
    fn malformed_composites_are_bad_values_naming_the_parameter() {
        for (code, value) in [
            ("code-value-quantity", "8480-6"),                    // one part
            ("code-value-quantity", "8480-6$1$2"),                // three parts
            ("code-value-quantity", r"8480-6\$100"),              // the only dollar is escaped
            ("code-value-quantity", "8480-6$gtabc"),              // not a number
            ("code-value-quantity", "8480-6$100|a"),              // not number|system|code
            ("code-value-quantity", "$100"),                      // empty token
            ("code-value-quantity", "a|b|c$100"),                 // not [system|]code
            ("code-value-date", "8480-6$2020-13-01"),             // not a date
            ("component-code-value-concept", "x$"),               // empty value
        ] {
            match p(&[(code, value)]) {
                Err(SearchError::BadValue { param, .. }) => assert_eq!(param, code, "{value}"),
                other => panic!("{code}={value}: {other:?}"),
            }
        }
        let pairs = vec![("relationship".to_string(), "replaces$d1".to_string())];
        assert!(matches!(
            parse_query("DocumentReference", &pairs, Handling::Strict),
            Err(SearchError::BadValue { .. })
        ));
        // No modifiers but :missing; no sorting by a composite.
        assert!(matches!(p(&[("code-value-quantity:not", "a$1")]), Err(SearchError::NotSupported { .. })));
        assert!(p(&[("code-value-quantity:missing", "true")]).is_ok());
        assert!(matches!(p(&[("_sort", "code-value-quantity")]), Err(SearchError::NotSupported { .. })));
        // MolecularSequence's three-part coordinates are not supported.
        let pairs = vec![("chromosome-window-coordinate".to_string(), "1$1$2".to_string())];
        assert!(matches!(
            parse_query("MolecularSequence", &pairs, Handling::Strict),
            Err(SearchError::NotSupported { .. })
        ));
    }

    #[test]
    fn near_values() {
        let near = |v: &str| {
            let pairs = vec![("near".to_string(), v.to_string())];
            parse_query("Location", &pairs, Handling::Strict).map(|mut q| match q.preds.remove(0) {
                Pred::Index { table: Table::Geo, mut values, .. } => values.remove(0),
                other => panic!("{other:?}"),
            })
        };
        assert_eq!(near("28.567|77.210|5|km").unwrap(), Value::Near { lat: 28.567, lon: 77.21, distance_km: 5.0 });
        assert_eq!(near("28.567|77.210|5").unwrap(), Value::Near { lat: 28.567, lon: 77.21, distance_km: 5.0 });
        assert_eq!(near("28.567|77.210").unwrap(), Value::Near { lat: 28.567, lon: 77.21, distance_km: NEAR_DEFAULT_KM });
        assert_eq!(near("0|0|500|m").unwrap(), Value::Near { lat: 0.0, lon: 0.0, distance_km: 0.5 });
        let Value::Near { distance_km, .. } = near("0|0|2|mi").unwrap() else { panic!() };
        assert!((distance_km - 3.218688).abs() < 1e-9);
        for bad_value in ["28.5", "91|0", "0|181", "a|0", "0|0|-1", "0|0|5|parsec", "0|0|5|km|x", "0|0|NaN"] {
            assert!(matches!(near(bad_value), Err(SearchError::BadValue { ref param, .. }) if param == "near"), "{bad_value}");
        }
        assert!(matches!(near("0|0").map(|_| ()), Ok(())));
        let pairs = vec![("near:missing".to_string(), "false".to_string())];
        assert!(parse_query("Location", &pairs, Handling::Strict).is_ok());
    }

    #[test]
    fn prefixes_and_implicit_ranges() {
        assert_eq!(split_prefix("ge2020"), (Prefix::Ge, "2020"));
        assert_eq!(split_prefix("2020"), (Prefix::Eq, "2020"));
        let (v, lo, hi) = decimal_range("x", "100").unwrap();
        assert_eq!((v, lo, hi), (100.0, 99.5, 100.5));
        let (_, lo, hi) = decimal_range("x", "1.50").unwrap();
        assert!((lo - 1.495).abs() < 1e-12 && (hi - 1.505).abs() < 1e-12);
        assert!(decimal_range("x", "1; DROP TABLE").is_err());
    }

    #[test]
    fn refuses_what_it_cannot_do_and_what_is_wrong() {
        assert!(matches!(p(&[("nonsense", "1")]), Err(SearchError::UnknownParam(..))));
        assert!(matches!(p(&[("_count", "100000")]), Err(SearchError::BadValue { .. })));
        assert!(matches!(p(&[("date", "2020-13-01")]), Err(SearchError::BadValue { .. })));
        assert!(matches!(p(&[("code:below", "x")]), Err(SearchError::NotSupported { .. })));
        assert!(matches!(p(&[("subject.a.b", "x")]), Err(SearchError::NotSupported { .. })));
        assert_eq!(p(&[("_id:missing", "true")]).unwrap().preds, vec![Pred::Constant(false)]);
        assert_eq!(p(&[("_lastUpdated:missing", "false")]).unwrap().preds, vec![Pred::Constant(true)]);
        assert!(matches!(p(&[("_id:missing", "maybe")]), Err(SearchError::BadValue { .. })));
        assert!(matches!(p(&[("_id:exact", "x")]), Err(SearchError::NotSupported { .. })));
        let pairs = vec![("nonsense".to_string(), "1".to_string())];
        let q = parse_query("Observation", &pairs, Handling::Lenient).unwrap();
        assert_eq!(q.ignored, vec!["nonsense"]);
    }

    #[test]
    fn chains_resolve_through_reference_targets() {
        let q = p(&[("subject:Patient.identifier", "http://x|1")]).unwrap();
        match &q.preds[0] {
            Pred::Chain { target_types, .. } => assert_eq!(target_types, &vec!["Patient".to_string()]),
            other => panic!("{other:?}"),
        }
    }
}
