//! From `name[:modifier]=value[,value]` pairs to a typed [`Query`].

use super::*;
use vaidya_fhir::datetime::parse_date_range;
use vaidya_fhir::index::normalize_string;
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
    pub includes: Vec<Include>,
    pub revincludes: Vec<Include>,
    /// Parameters ignored under lenient handling, to report back.
    pub ignored: Vec<String>,
    /// The parameters that were applied, for the Bundle's self link.
    pub applied: Vec<(String, String)>,
}

/// Parameters that shape the result rather than filter it, and are accepted without effect.
const NEUTRAL: [&str; 3] = ["_format", "_pretty", "_total"];

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
                let table = table_of(p).ok_or_else(|| unsupported("_sort", format!("cannot sort by '{code}'")))?;
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
    if let Some(t) = &target_type {
        if !vaidya_fhir::model::Model::r4().is_resource_type(t) {
            return Err(bad(name, format!("unknown resource type '{t}'")));
        }
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

pub fn table_of(p: &SearchParam) -> Option<Table> {
    Some(match p.kind {
        ParamType::String => Table::String,
        ParamType::Token => Table::Token,
        ParamType::Reference => Table::Ref,
        ParamType::Date => Table::Date,
        ParamType::Number => Table::Number,
        ParamType::Quantity => Table::Quantity,
        ParamType::Uri => Table::Uri,
        ParamType::Composite | ParamType::Special => return None,
    })
}

/// Split on commas not escaped with a backslash, and unescape `\,` `\|` `\$` `\\`.
fn split_or(value: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n @ (',' | '$' | '\\')) => out.last_mut().expect("non-empty").push(n),
                Some(n) => {
                    let cur = out.last_mut().expect("non-empty");
                    cur.push('\\');
                    cur.push(n);
                }
                None => out.last_mut().expect("non-empty").push('\\'),
            },
            ',' => out.push(String::new()),
            c => out.last_mut().expect("non-empty").push(c),
        }
    }
    out
}

/// Split a token or quantity on `|` not escaped as `\|`.
fn split_bar(value: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('|') => out.last_mut().expect("non-empty").push('|'),
                Some(n) => {
                    let cur = out.last_mut().expect("non-empty");
                    cur.push('\\');
                    cur.push(n);
                }
                None => out.last_mut().expect("non-empty").push('\\'),
            },
            '|' => out.push(String::new()),
            c => out.last_mut().expect("non-empty").push(c),
        }
    }
    out
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
    if code == "_id" {
        if modifier.is_some() {
            return Err(unsupported(name, "no modifiers on _id"));
        }
        let ids = split_or(value);
        check_or_count(name, ids.len())?;
        return Ok(Pred::Id(ids));
    }
    if code == "_lastUpdated" {
        if modifier.is_some() {
            return Err(unsupported(name, "no modifiers on _lastUpdated"));
        }
        let mut out = vec![];
        for v in split_or(value) {
            let (prefix, rest) = split_prefix(&v);
            let (lo, hi) = parse_date_range(rest).ok_or_else(|| bad(name, format!("'{rest}' is not a FHIR date")))?;
            out.push((prefix, lo, hi));
        }
        check_or_count(name, out.len())?;
        return Ok(Pred::LastUpdated(out));
    }
    let param = search_param(rtype, code).ok_or_else(|| SearchError::UnknownParam(code.to_string(), rtype.to_string()))?;
    let table = table_of(param).ok_or_else(|| unsupported(name, "composite and special parameters are not supported yet"))?;
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
        values.push(parse_value(name, param, table, modifier, type_restriction, v)?);
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
        if let Some(rest) = v.strip_prefix(s) {
            if rest.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.') {
                return (p, rest);
            }
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

fn parse_value(
    name: &str,
    param: &SearchParam,
    table: Table,
    modifier: Option<&str>,
    type_restriction: Option<&str>,
    v: &str,
) -> Result<Value, SearchError> {
    if v.is_empty() {
        return Err(bad(name, "empty value"));
    }
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
            let parts = split_bar(v);
            match parts.as_slice() {
                [code] => Value::Token { system: None, code: Some(code.clone()) },
                [system, code] => Value::Token {
                    system: Some(system.clone()),
                    code: if code.is_empty() { None } else { Some(code.clone()) },
                },
                _ => return Err(bad(name, format!("'{v}' is not [system|]code"))),
            }
        }
        Table::Ref => Value::Ref(reference_candidates(name, param, type_restriction, v)?),
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
            let (prefix, rest) = split_prefix(v);
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
    })
}

/// The stored forms a reference search value can match.
fn reference_candidates(
    name: &str,
    param: &SearchParam,
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
                None if param.targets.is_empty() => {
                    return Err(bad(name, "give the reference as Type/id"));
                }
                None => param.targets.iter().map(String::as_str).collect(),
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
        assert_eq!(split_or(r"a,b\,c"), vec!["a", "b,c"]);
        assert_eq!(split_bar(r"http://x|a\|b"), vec!["http://x", "a|b"]);
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
