//! Search index values: what a resource contributes to each of its search parameters.
//!
//! The mapping from FHIR element types to index values follows the R4 search page
//! (<https://hl7.org/fhir/R4/search.html>):
//!
//! | parameter | element types | index values |
//! |---|---|---|
//! | string | string, markdown; HumanName; Address | the string; each of family, given, prefix, suffix, text; each of line, city, district, state, postalCode, country, text |
//! | token | Coding; CodeableConcept; Identifier; ContactPoint; code, string, id, uri; boolean | system, code, display; one per coding plus the text; system, value, type text; the value; the code; `true`/`false` |
//! | reference | Reference; canonical, uri; a resource (`Bundle.entry[0].resource`) | the reference string; the URL; `Type/id` |
//! | date | date, dateTime, instant; Period; Timing | the range the value covers; start to end (open ends unbounded); the outer limits of its events and bounds |
//! | number | integer, decimal | the number |
//! | quantity | Quantity (Age, Duration, ...); Money | value, system, code, unit; value with the currency as code in system `urn:iso:std:iso:4217` |
//! | uri | uri, url, canonical | the URI |
//! | composite | the nodes its expression selects (an Observation, each `Observation.component`, each `useContext`, ...) | per node, one [`IndexValue::Composite`] per combination of the values its two components have on that node |
//! | special (Location `near`) | `Location.position` | the latitude and longitude |
//!
//! An Extension (parameters defined as `X.extension('url')`) indexes its `value[x]`.
//!
//! Composite parameters are indexed when they have two components and the first is a token
//! ([`composite_indexable`]): every R4 composite but MolecularSequence's three-part coordinates
//! (`chromosome-variant-coordinate` and the like), which are not indexed. The component types are
//! those of the components' definitions, except where R4 gets them wrong ([`component_kinds`]).
//! [`extract_composite`] gives a composite's raw component values per node.
//!
//! Not indexed (yet): Range values of quantity and number parameters (Condition `onset-age`
//! given as a range, RiskAssessment `probability` ranges, `context-quantity` ranges) and
//! SampledData (`Observation` `value-quantity`), whose search semantics need range matching
//! rather than a value.

use crate::datetime::parse_date_range;
use crate::fhirpath::{Item, extension_value, get, parse_reference};
use crate::search_params::{ParamType, SearchParam, search_params};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum IndexValue {
    /// string params: `normalized` is lower-cased with Latin accents removed and whitespace
    /// collapsed ([`normalize_string`]), for the default starts-with and `:contains` matching;
    /// `exact` is the original, for `:exact`.
    String {
        normalized: String,
        exact: String,
    },
    /// token params. `text` is the display or text (for `:text`), already normalized with
    /// [`normalize_string`].
    Token {
        system: Option<String>,
        code: Option<String>,
        text: Option<String>,
    },
    /// reference params: the reference as written (`Patient/123`; absolute URLs and `urn:`
    /// references whole), plus the type and id of relative `Type/id` references.
    Reference {
        reference: String,
        target_type: Option<String>,
        target_id: Option<String>,
    },
    /// date params: the inclusive range covered, in Unix ms; an open end of a Period is
    /// `i64::MIN` / `i64::MAX`.
    Date {
        start_ms: i64,
        end_ms: i64,
    },
    Number {
        value: f64,
    },
    Quantity {
        value: f64,
        system: Option<String>,
        code: Option<String>,
        unit: Option<String>,
    },
    Uri(String),
    /// composite params (see [`composite_indexable`]): the values of the components on one node,
    /// in component order; `parts[0]` is a `Token` with a system or code (its text dropped: a
    /// composite's token part is matched on system and code only) and `parts[1]` a value of the
    /// second component's type. A node gives one such value per combination of its components'
    /// values, so `code-value-quantity` on an Observation with two codings gives two.
    Composite {
        parts: Vec<IndexValue>,
    },
    /// special params with an expression (in R4 only Location `near`, on `Location.position`): a
    /// WGS84 position in decimal degrees. Positions with a latitude outside [-90, 90] or a
    /// longitude outside [-180, 180] are not indexed.
    Position {
        latitude: f64,
        longitude: f64,
    },
}

/// The parameters the store indexes by itself (ids, and `meta.lastUpdated` which it sets), left
/// out of [`extract_all`].
const STORE_MANAGED: [&str; 2] = ["_id", "_lastUpdated"];

/// The index values of one parameter for `resource`, without duplicates. Empty for parameters
/// without an expression and composites that are not [`composite_indexable`].
pub fn extract(resource: &Value, param: &SearchParam) -> Vec<IndexValue> {
    let mut items = Vec::new();
    let mut out = Vec::new();
    extract_with(
        resource,
        Item::resource(resource),
        param,
        &mut items,
        &mut out,
    );
    out
}

/// The index values of every indexable parameter of the resource's type, including the common
/// `_tag`, `_profile`, `_security` and `_source` (not `_id` and `_lastUpdated`, which the store
/// indexes itself), and the composite and position values of the composite and special
/// parameters. Empty if `resourceType` is missing or unknown.
pub fn extract_all(resource: &Value) -> Vec<(&'static SearchParam, IndexValue)> {
    let Some(resource_type) = resource.get("resourceType").and_then(Value::as_str) else {
        return Vec::new();
    };
    // One pair of buffers for all parameters: evaluation then allocates almost only the values.
    let mut items = Vec::new();
    let mut values = Vec::new();
    let mut out = Vec::new();
    let root = Item::resource(resource);
    for param in search_params(resource_type) {
        if STORE_MANAGED.contains(&param.code.as_str()) {
            continue;
        }
        extract_with(resource, root, param, &mut items, &mut values);
        out.extend(values.drain(..).map(|v| (param, v)));
    }
    out
}

fn extract_with<'a>(
    resource: &'a Value,
    root: Item<'a>,
    param: &'a SearchParam,
    items: &mut Vec<Item<'a>>,
    out: &mut Vec<IndexValue>,
) {
    let Some(expression) = param.compiled() else {
        return;
    };
    if param.kind == ParamType::Composite {
        return composite_values(resource, param, out);
    }
    items.clear();
    expression.evaluate_on(resource, root, items);
    for item in items.iter() {
        match param.kind {
            ParamType::Special => index_position(*item, out),
            kind => index_item(kind, *item, out),
        }
    }
}

/// Composite parameters whose R4 definition gives a component the type of another parameter
/// than the one its expression selects: DocumentReference `relationship` points its `code`
/// component (`relatesTo.code`, a code) at the reference parameter `relatesto` and its `target`
/// component (`relatesTo.target`, a Reference) at the token parameter `relation`. By URL, with
/// the types the elements have.
const COMPONENT_KIND_ERRATA: [(&str, [ParamType; 2]); 1] = [(
    "http://hl7.org/fhir/SearchParameter/DocumentReference-relationship",
    [ParamType::Token, ParamType::Reference],
)];

/// The type of each component of a composite parameter, as indexed and searched: the type of
/// its definition, corrected for the R4 errata in [`COMPONENT_KIND_ERRATA`].
pub fn component_kinds(param: &SearchParam) -> Vec<ParamType> {
    if let Some((_, kinds)) = COMPONENT_KIND_ERRATA
        .iter()
        .find(|(url, _)| *url == param.url)
        && kinds.len() == param.components.len()
    {
        return kinds.to_vec();
    }
    param.components.iter().map(|c| c.kind).collect()
}

/// Whether a composite parameter is indexed (as [`IndexValue::Composite`]) and searchable: it
/// has an expression and two components, a token then a string, token, reference, date, number,
/// quantity or uri.
pub fn composite_indexable(param: &SearchParam) -> bool {
    param.kind == ParamType::Composite
        && param.compiled().is_some()
        && matches!(
            component_kinds(param).as_slice(),
            [ParamType::Token, second] if !matches!(second, ParamType::Composite | ParamType::Special)
        )
}

/// For a composite parameter: one entry per node its expression selects (e.g. per
/// `Observation.component`), holding for each component the values found on that node (typed by
/// [`component_kinds`]). A node where some component has no value is left out, since it cannot
/// match a composite search.
pub fn extract_composite(resource: &Value, param: &SearchParam) -> Vec<Vec<Vec<IndexValue>>> {
    let (ParamType::Composite, Some(expression)) = (param.kind, param.compiled()) else {
        return Vec::new();
    };
    let kinds = component_kinds(param);
    let mut out = Vec::new();
    let mut items = Vec::new();
    for node in expression.evaluate(resource) {
        let mut parts = Vec::with_capacity(param.components.len());
        for (component, kind) in param.components.iter().zip(&kinds) {
            items.clear();
            component.compiled().evaluate_on(resource, node, &mut items);
            let mut values = Vec::new();
            for item in &items {
                index_item(*kind, *item, &mut values);
            }
            parts.push(values);
        }
        if parts.iter().all(|p| !p.is_empty()) {
            out.push(parts);
        }
    }
    out
}

/// The [`IndexValue::Composite`] values of an indexable composite: per node, every pair of a
/// token with a system or code (text-only tokens cannot match `system|code`) and a value of the
/// second component.
fn composite_values(resource: &Value, param: &SearchParam, out: &mut Vec<IndexValue>) {
    if !composite_indexable(param) {
        return;
    }
    for node in extract_composite(resource, param) {
        let [tokens, values] = node.as_slice() else {
            continue;
        };
        for token in tokens {
            let IndexValue::Token { system, code, .. } = token else {
                continue;
            };
            if system.is_none() && code.is_none() {
                continue;
            }
            let token = IndexValue::Token {
                system: system.clone(),
                code: code.clone(),
                text: None,
            };
            for value in values {
                push_unique(
                    out,
                    IndexValue::Composite {
                        parts: vec![token.clone(), value.clone()],
                    },
                );
            }
        }
    }
}

fn index_item(kind: ParamType, item: Item<'_>, out: &mut Vec<IndexValue>) {
    let item = unwrap_extension(item);
    match kind {
        ParamType::String => index_string(item, out),
        ParamType::Token => index_token(item, out),
        ParamType::Reference => index_reference(item, out),
        ParamType::Date => index_date(item, out),
        ParamType::Number => index_number(item, out),
        ParamType::Quantity => index_quantity(item, out),
        ParamType::Uri => index_uri(item, out),
        ParamType::Composite | ParamType::Special => {}
    }
}

/// An Extension node stands for its `value[x]`.
fn unwrap_extension(item: Item<'_>) -> Item<'_> {
    match item {
        Item::Node {
            value,
            ty: Some("Extension"),
        } => extension_value(value).unwrap_or(item),
        _ => item,
    }
}

fn push_unique(out: &mut Vec<IndexValue>, value: IndexValue) {
    if !out.contains(&value) {
        out.push(value);
    }
}

fn str_of<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    get(value, key).and_then(Value::as_str)
}

/// The strings of an element that may be a string or an array of strings.
fn strings_of(value: Option<&Value>) -> impl Iterator<Item = &str> {
    let (single, many) = match value {
        Some(Value::String(s)) => (Some(s.as_str()), None),
        Some(Value::Array(a)) => (None, Some(a.iter().filter_map(Value::as_str))),
        _ => (None, None),
    };
    single.into_iter().chain(many.into_iter().flatten())
}

// ---------------------------------------------------------------------------------------------
// string

const HUMAN_NAME_PARTS: [&str; 5] = ["family", "given", "prefix", "suffix", "text"];
const ADDRESS_PARTS: [&str; 7] = [
    "line",
    "city",
    "district",
    "state",
    "postalCode",
    "country",
    "text",
];

fn index_string(item: Item<'_>, out: &mut Vec<IndexValue>) {
    let Item::Node { value, ty } = item else {
        return;
    };
    let parts: &[&str] = match (value, ty) {
        (Value::String(s), _) => return push_string(s, out),
        (Value::Object(_), Some("HumanName")) => &HUMAN_NAME_PARTS,
        (Value::Object(_), Some("Address")) => &ADDRESS_PARTS,
        // Untyped (no model): HumanName and Address are told apart by their parts.
        (Value::Object(o), None) if o.contains_key("line") || o.contains_key("city") => {
            &ADDRESS_PARTS
        }
        (Value::Object(_), None) => &HUMAN_NAME_PARTS,
        _ => return,
    };
    for part in parts {
        for s in strings_of(get(value, part)) {
            push_string(s, out);
        }
    }
}

fn push_string(s: &str, out: &mut Vec<IndexValue>) {
    let normalized = normalize_string(s);
    if !normalized.is_empty() {
        push_unique(
            out,
            IndexValue::String {
                normalized,
                exact: s.to_owned(),
            },
        );
    }
}

/// The normalization of string parameters, for index values and query values alike: Latin
/// letters lose their accents (`é` -> `e`, `Ł` stays: it has no decomposition), everything is
/// lower-cased, and runs of whitespace become one space, trimmed at both ends. Other scripts
/// keep their combining marks: Devanagari vowel signs, viramas and nuktas change the word, not
/// its spelling style, and so must not be stripped.
pub fn normalize_string(s: &str) -> String {
    if s.is_ascii() {
        normalize_ascii(s)
    } else {
        normalize_unicode(s)
    }
}

fn normalize_unicode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending_space = false;
    let mut after_latin = false;
    for c in s.chars() {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            after_latin = false;
            continue;
        }
        if is_latin_combining_mark(c) && after_latin {
            continue; // an accent written as a separate code point after a Latin letter
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        let base = fold_latin(c);
        after_latin = base.is_ascii_alphabetic() || is_latin_letter(c);
        out.extend(base.to_lowercase());
    }
    out
}

/// The same for ASCII-only text (most values), byte by byte.
fn normalize_ascii(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s
        .split(|c: char| c.is_whitespace())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.bytes().map(|b| char::from(b.to_ascii_lowercase())));
    }
    out
}

/// The combining marks that decorate Latin letters (Combining Diacritical Marks, and their
/// Extended and Supplement blocks).
fn is_latin_combining_mark(c: char) -> bool {
    matches!(c, '\u{0300}'..='\u{036F}' | '\u{1AB0}'..='\u{1AFF}' | '\u{1DC0}'..='\u{1DFF}')
}

fn is_latin_letter(c: char) -> bool {
    matches!(c, '\u{00C0}'..='\u{024F}' | '\u{1E00}'..='\u{1EFF}') && c.is_alphabetic()
}

/// Base letters of the precomposed Latin letters in U+00C0..U+024F, one byte per code point;
/// `.` where the canonical decomposition (NFD) is not an ASCII letter plus combining marks.
/// Generated with Python's `unicodedata` (Unicode 14).
const LATIN_1_TO_EXTENDED_B: &[u8; 400] = b"\
AAAAAA.CEEEEIIII.NOOOOO..UUUUY..aaaaaa.ceeeeiiii.nooooo..uuuuy.y\
AaAaAaCcCcCcCcDd..EeEeEeEeEeGgGgGgGgHh..IiIiIiIiI...JjKk.LlLlLl.\
...NnNnNn...OoOoOo..RrRrRrSsSsSsSsTtTt..UuUuUuUuUuUuWwYyYZzZzZz.\
................................Oo.............Uu...............\
.............AaIiOoUuUuUuUuUu.AaAa....GgKkOoOo..j...Gg..NnAa....\
AaAaEeEeIiIiOoOoRrRrUuUuSsTt..Hh......AaEeOoOoOoOoYy............\
................";

/// The same for Latin Extended Additional, U+1E00..U+1EFF (Vietnamese and others).
const LATIN_EXTENDED_ADDITIONAL: &[u8; 256] = b"\
AaBbBbBbCcDdDdDdDdDdEeEeEeEeEeFfGgHhHhHhHhHhIiIiKkKkKkLlLlLlLlMm\
MmMmNnNnNnNnOoOoOoOoPpPpRrRrRrRrSsSsSsSsSsTtTtTtTtUuUuUuUuUuVvVv\
WwWwWwWwWwXxXxYyZzZzZzhtwy......AaAaAaAaAaAaAaAaAaAaAaAaEeEeEeEe\
EeEeEeEeIiIiOoOoOoOoOoOoOoOoOoOoOoOoUuUuUuUuUuUuUuYyYyYyYy......";

fn fold_latin(c: char) -> char {
    let cp = c as usize;
    let base = match cp {
        0x00C0..=0x024F => LATIN_1_TO_EXTENDED_B[cp - 0x00C0],
        0x1E00..=0x1EFF => LATIN_EXTENDED_ADDITIONAL[cp - 0x1E00],
        _ => return c,
    };
    if base == b'.' { c } else { char::from(base) }
}

// ---------------------------------------------------------------------------------------------
// token

fn index_token(item: Item<'_>, out: &mut Vec<IndexValue>) {
    let (value, ty) = match item {
        Item::Bool(b) => return push_code(if b { "true" } else { "false" }, out),
        Item::Node { value, ty } => (value, ty),
        _ => return,
    };
    match value {
        Value::Bool(b) => push_code(if *b { "true" } else { "false" }, out),
        Value::String(s) => push_code(s, out),
        Value::Object(o) => match ty.unwrap_or_else(|| guess_token_type(o)) {
            "CodeableConcept" => index_codeable_concept(value, out),
            "Coding" => index_coding(value, out),
            "Identifier" => index_identifier(value, out),
            // The R4 token table: a ContactPoint matches on its value; the system (phone,
            // email) is what the `phone`/`email` parameters select on, not a code system.
            "ContactPoint" => {
                if let Some(v) = str_of(value, "value") {
                    push_code(v, out);
                }
            }
            _ => {}
        },
        _ => {}
    }
}

/// The token type of an object when the model gave none.
fn guess_token_type(o: &serde_json::Map<String, Value>) -> &'static str {
    if o.contains_key("coding") || (o.len() == 1 && o.contains_key("text")) {
        "CodeableConcept"
    } else if o.contains_key("value") {
        "Identifier"
    } else {
        "Coding"
    }
}

fn push_code(code: &str, out: &mut Vec<IndexValue>) {
    push_token(None, Some(code), None, out);
}

fn push_token(
    system: Option<&str>,
    code: Option<&str>,
    text: Option<&str>,
    out: &mut Vec<IndexValue>,
) {
    let text = text.map(normalize_string).filter(|t| !t.is_empty());
    if system.is_none() && code.is_none() && text.is_none() {
        return;
    }
    push_unique(
        out,
        IndexValue::Token {
            system: system.map(str::to_owned),
            code: code.map(str::to_owned),
            text,
        },
    );
}

fn index_coding(coding: &Value, out: &mut Vec<IndexValue>) {
    push_token(
        str_of(coding, "system"),
        str_of(coding, "code"),
        str_of(coding, "display"),
        out,
    );
}

/// Every coding, plus the concept's text on its own (for `:text`).
fn index_codeable_concept(concept: &Value, out: &mut Vec<IndexValue>) {
    if let Some(codings) = get(concept, "coding").and_then(Value::as_array) {
        codings.iter().for_each(|c| index_coding(c, out));
    }
    if let Some(text) = str_of(concept, "text") {
        push_token(None, None, Some(text), out);
    }
}

/// system|value; the text is the identifier type's text, which R4's `:text` matches.
fn index_identifier(identifier: &Value, out: &mut Vec<IndexValue>) {
    let type_text = get(identifier, "type").and_then(|t| str_of(t, "text"));
    push_token(
        str_of(identifier, "system"),
        str_of(identifier, "value"),
        type_text,
        out,
    );
}

// ---------------------------------------------------------------------------------------------
// reference

fn index_reference(item: Item<'_>, out: &mut Vec<IndexValue>) {
    let Item::Node { value, .. } = item else {
        return;
    };
    match value {
        // canonical and uri: the URL is the reference.
        Value::String(s) => push_reference(s, out),
        Value::Object(_) => {
            if let Some(reference) = str_of(value, "reference") {
                push_reference(reference, out);
            } else if let (Some(ty), Some(id)) =
                (str_of(value, "resourceType"), str_of(value, "id"))
            {
                // A resource itself (Bundle.entry[0].resource for Bundle's `composition`).
                push_unique(
                    out,
                    IndexValue::Reference {
                        reference: format!("{ty}/{id}"),
                        target_type: Some(ty.to_owned()),
                        target_id: Some(id.to_owned()),
                    },
                );
            }
            // A Reference with only an identifier or display gives nothing to match on.
        }
        _ => {}
    }
}

fn push_reference(reference: &str, out: &mut Vec<IndexValue>) {
    if reference.is_empty() {
        return;
    }
    let (target_type, target_id) = match parse_reference(reference) {
        Some(p) if !p.absolute => (Some(p.resource_type.to_owned()), p.id.map(str::to_owned)),
        _ => (None, None),
    };
    push_unique(
        out,
        IndexValue::Reference {
            reference: reference.to_owned(),
            target_type,
            target_id,
        },
    );
}

// ---------------------------------------------------------------------------------------------
// date

fn index_date(item: Item<'_>, out: &mut Vec<IndexValue>) {
    let Item::Node { value, ty } = item else {
        return;
    };
    let range = match value {
        Value::String(s) => parse_date_range(s),
        Value::Object(o) => match ty {
            Some("Period") => period_range(value),
            Some("Timing") => timing_range(value),
            None if o.contains_key("start") || o.contains_key("end") => period_range(value),
            None if o.contains_key("event") || o.contains_key("repeat") => timing_range(value),
            _ => None,
        },
        _ => None,
    };
    if let Some((start_ms, end_ms)) = range {
        push_unique(out, IndexValue::Date { start_ms, end_ms });
    }
}

/// From the start of `start` to the end of `end`; a missing end is open. Nothing if both are
/// missing or either is malformed.
fn period_range(period: &Value) -> Option<(i64, i64)> {
    let bound = |key: &str| -> Option<Option<(i64, i64)>> {
        match get(period, key) {
            None | Some(Value::Null) => Some(None),
            Some(Value::String(s)) => parse_date_range(s).map(Some),
            Some(_) => None,
        }
    };
    let (start, end) = (bound("start")?, bound("end")?);
    if start.is_none() && end.is_none() {
        return None;
    }
    let start_ms = start.map_or(i64::MIN, |r| r.0);
    let end_ms = end.map_or(i64::MAX, |r| r.1);
    (start_ms <= end_ms).then_some((start_ms, end_ms))
}

/// The outer limits of a Timing: its events and `repeat.boundsPeriod`, ignoring the schedule
/// itself (the R4 search page: "only the outer limits matter").
fn timing_range(timing: &Value) -> Option<(i64, i64)> {
    let events = strings_of(get(timing, "event")).filter_map(parse_date_range);
    let bounds = get(timing, "repeat")
        .and_then(|r| get(r, "boundsPeriod"))
        .and_then(period_range);
    events
        .chain(bounds)
        .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)))
}

// ---------------------------------------------------------------------------------------------
// position (Location `near`)

fn index_position(item: Item<'_>, out: &mut Vec<IndexValue>) {
    let Item::Node { value, .. } = item else {
        return;
    };
    let number = |key: &str| get(value, key).and_then(Value::as_f64);
    if let (Some(latitude), Some(longitude)) = (number("latitude"), number("longitude"))
        && (-90.0..=90.0).contains(&latitude)
        && (-180.0..=180.0).contains(&longitude)
    {
        push_unique(
            out,
            IndexValue::Position {
                latitude,
                longitude,
            },
        );
    }
}

// ---------------------------------------------------------------------------------------------
// number, quantity, uri

fn index_number(item: Item<'_>, out: &mut Vec<IndexValue>) {
    if let Item::Node {
        value: Value::Number(n),
        ..
    } = item
        && let Some(value) = n.as_f64()
    {
        push_unique(out, IndexValue::Number { value });
    }
}

/// Currency codes are ISO 4217, the system the R4 search page prescribes for Money.
const ISO_4217: &str = "urn:iso:std:iso:4217";

fn index_quantity(item: Item<'_>, out: &mut Vec<IndexValue>) {
    let Item::Node {
        value: quantity,
        ty,
    } = item
    else {
        return;
    };
    let Some(value) = get(quantity, "value").and_then(Value::as_f64) else {
        return;
    };
    let owned = |key: &str| str_of(quantity, key).map(str::to_owned);
    let is_money = ty == Some("Money") || (ty.is_none() && get(quantity, "currency").is_some());
    let indexed = if is_money {
        IndexValue::Quantity {
            value,
            system: Some(ISO_4217.to_owned()),
            code: owned("currency"),
            unit: None,
        }
    } else {
        IndexValue::Quantity {
            value,
            system: owned("system"),
            code: owned("code"),
            unit: owned("unit"),
        }
    };
    push_unique(out, indexed);
}

fn index_uri(item: Item<'_>, out: &mut Vec<IndexValue>) {
    if let Item::Node {
        value: Value::String(s),
        ..
    } = item
        && !s.is_empty()
    {
        push_unique(out, IndexValue::Uri(s.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_fast_path_matches_the_general_path() {
        for s in [
            "  Hello \t World\n",
            "ABC def",
            "",
            "   ",
            "a\u{b}b",
            "x\u{c}y\r\nz",
            "Mc-Donald's  #12",
        ] {
            assert_eq!(normalize_ascii(s), normalize_unicode(s), "{s:?}");
        }
    }

    #[test]
    fn normalize_latin() {
        assert_eq!(
            normalize_string("  José   María\tÑúñez "),
            "jose maria nunez"
        );
        assert_eq!(normalize_string("ÀÉÎÕÜ Çç Ÿÿ"), "aeiou cc yy");
        assert_eq!(
            normalize_string("Nguyễn Văn Đức"),
            "nguyen van đuc",
            "Đ has no decomposition"
        );
        assert_eq!(
            normalize_string("Łukasz Øster Straße"),
            "łukasz øster straße"
        );
        assert_eq!(
            normalize_string("Ștefan Ţepeş Dvořák"),
            "stefan tepes dvorak"
        );
        // Decomposed input: letter + combining acute.
        assert_eq!(normalize_string("Jose\u{301}"), "jose");
        assert_eq!(normalize_string("MIXED case"), "mixed case");
        assert_eq!(normalize_string(" \n "), "");
    }

    #[test]
    fn normalize_keeps_devanagari_intact() {
        // Vowel signs (ि, ी, ु), virama (्), nukta (़) and anusvara (ं) are combining marks
        // outside the Latin blocks: they must survive.
        let name = "अनिल  कुमार शर्मा";
        assert_eq!(normalize_string(name), "अनिल कुमार शर्मा");
        assert_eq!(normalize_string("ज़ीनत हिंदी"), "ज़ीनत हिंदी");
        // A Latin combining mark after a Devanagari letter is not a Latin accent: kept.
        assert_eq!(normalize_string("क\u{301}"), "क\u{301}");
        assert_eq!(normalize_string("Ravi रवि"), "ravi रवि");
    }

    #[test]
    fn fold_table_spot_checks() {
        for (c, base) in [
            ('À', 'A'),
            ('ÿ', 'y'),
            ('Ā', 'A'),
            ('ž', 'z'),
            ('ǎ', 'a'),
            ('ȳ', 'y'),
            ('Ḁ', 'A'),
            ('ỹ', 'y'),
            ('ẞ', 'ẞ'),
            ('×', '×'),
            ('Æ', 'Æ'),
        ] {
            assert_eq!(fold_latin(c), base, "{c}");
        }
    }

    #[test]
    fn period_and_timing_ranges() {
        use serde_json::json;
        let (s, e) = period_range(&json!({"start": "2020-01-01", "end": "2020-01-31"})).unwrap();
        assert_eq!(
            (s, e),
            (
                parse_date_range("2020-01-01").unwrap().0,
                parse_date_range("2020-01-31").unwrap().1
            )
        );
        assert_eq!(period_range(&json!({"start": "2020"})).unwrap().1, i64::MAX);
        assert_eq!(period_range(&json!({"end": "2020"})).unwrap().0, i64::MIN);
        assert_eq!(period_range(&json!({})), None);
        assert_eq!(period_range(&json!({"start": "garbage"})), None);
        assert_eq!(period_range(&json!({"start": "2021", "end": "2020"})), None);
        let t = timing_range(&json!({"event": ["2020-05-01", "2020-03-01"], "repeat": {"boundsPeriod": {"end": "2020-06"}}})).unwrap();
        assert_eq!(t, (i64::MIN, parse_date_range("2020-06").unwrap().1));
        let t = timing_range(&json!({"event": ["2020-05-01", "2020-03-01"]})).unwrap();
        assert_eq!(
            t,
            (
                parse_date_range("2020-03-01").unwrap().0,
                parse_date_range("2020-05-01").unwrap().1
            )
        );
        assert_eq!(timing_range(&json!({"code": {"text": "BID"}})), None);
    }
}
