//! Generates `crates/vaidya-fhir/data/r4-search-params.json` from the official FHIR R4 (4.0.1)
//! SearchParameter and StructureDefinition resources.
//!
//! Usage: `search_params [FHIR_CORE_DIR] [OUTPUT]`
//! (defaults: `../shared/data/fhir-r4-core`, `crates/vaidya-fhir/data/r4-search-params.json`).
//!
//! The output has two sections, both sorted so that regenerating gives byte-identical files:
//!
//! * `params`: one entry per (base resource type, code). A definition shared by many bases (like
//!   `clinical-patient`, whose expression is a union over 32 resource types) is split per base and
//!   keeps only the union branches for that base, so the runtime never evaluates branches that can
//!   not match. Parameters of `Resource` and `DomainResource` carry `"common": true`: they apply to
//!   every resource type (DomainResource ones only to resources derived from DomainResource).
//! * `types`: the element types of every resource and data type (from the StructureDefinitions),
//!   which the FHIRPath compiler uses to tell choice elements (`Observation.value[x]`) from plain
//!   ones and to know the FHIR type of every node it returns. Each type lists only the elements it
//!   defines itself; inherited ones are found through `base`. Backbone elements are types named
//!   by their path (`Observation.component`), so `contentReference`s are just that name.

use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let core = PathBuf::from(
        args.first()
            .map(String::as_str)
            .unwrap_or("../shared/data/fhir-r4-core"),
    );
    let out = PathBuf::from(
        args.get(1)
            .map(String::as_str)
            .unwrap_or("crates/vaidya-fhir/data/r4-search-params.json"),
    );
    match run(&core, &out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("search_params: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(core: &Path, out: &Path) -> Result<(), String> {
    let definitions = read_dir_json(&core.join("SearchParameter"))?;
    let structures = read_dir_json(&core.join("StructureDefinition"))?;

    let mut report = Report::default();
    let mut params = collect_params(&definitions, &mut report)?;
    params.extend(synthetic_common_params());
    params.sort_by_key(key_of);
    check_unique(&params)?;

    let types = collect_types(&structures)?;
    let text = render(&params, &types);
    if let Some(dir) = out.parent() {
        fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    fs::write(out, text).map_err(|e| format!("write {}: {e}", out.display()))?;

    for line in &report.skipped {
        eprintln!("skipped: {line}");
    }
    eprintln!(
        "wrote {}: {} parameters from {} definitions, {} types",
        out.display(),
        params.len(),
        definitions.len(),
        types.len()
    );
    Ok(())
}

#[derive(Default)]
struct Report {
    skipped: Vec<String>,
}

/// Every `*.json` file of a directory, parsed, in file-name order.
fn read_dir_json(dir: &Path) -> Result<Vec<Value>, String> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| format!("read {}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(format!("no JSON files in {}", dir.display()));
    }
    paths
        .iter()
        .map(|p| {
            let text = fs::read_to_string(p).map_err(|e| format!("read {}: {e}", p.display()))?;
            serde_json::from_str(&text).map_err(|e| format!("parse {}: {e}", p.display()))
        })
        .collect()
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn string_list(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn key_of(p: &Map<String, Value>) -> (String, String) {
    let s = |k: &str| {
        p.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (s("base"), s("code"))
}

const COMMON_BASES: [&str; 2] = ["Resource", "DomainResource"];

/// A target list this long names (nearly) every one of the 146 R4 resource types.
const ANY_TARGET_THRESHOLD: usize = 140;

/// One output entry per (base, code) of every usable SearchParameter.
fn collect_params(
    definitions: &[Value],
    report: &mut Report,
) -> Result<Vec<Map<String, Value>>, String> {
    let mut out = Vec::new();
    for def in definitions {
        if str_field(def, "resourceType") != Some("SearchParameter") {
            continue;
        }
        let id = str_field(def, "id").unwrap_or("?");
        // The `example*` SearchParameters illustrate the resource itself (one redefines `_id` as
        // `id`, one puts a DocumentReference expression on Patient); they are not definitions.
        if id.starts_with("example") {
            report.skipped.push(format!(
                "{id}: an example of the SearchParameter resource, not a definition"
            ));
            continue;
        }
        let bases = string_list(def, "base");
        if bases.is_empty() {
            report.skipped.push(format!("{id}: no base resource type"));
            continue;
        }
        let expression = str_field(def, "expression").filter(|e| !e.trim().is_empty());
        let common = bases.iter().any(|b| COMMON_BASES.contains(&b.as_str()));
        if expression.is_none() && !common {
            // e.g. patient-extensions-Patient-age: defined only in prose, nothing to evaluate.
            report.skipped.push(format!("{id}: no FHIRPath expression"));
            continue;
        }
        for base in &bases {
            let expr = match expression {
                Some(e) => {
                    let own = branches_for_base(e, base);
                    if own.is_empty() {
                        report
                            .skipped
                            .push(format!("{id}: no branch of `{e}` applies to {base}"));
                        continue;
                    }
                    Some(own.join(" | "))
                }
                None => None,
            };
            out.push(param_entry(def, base, expr, common)?);
        }
    }
    Ok(out)
}

fn param_entry(
    def: &Value,
    base: &str,
    expression: Option<String>,
    common: bool,
) -> Result<Map<String, Value>, String> {
    let field =
        |k: &str| str_field(def, k).ok_or_else(|| format!("{base}: SearchParameter without `{k}`"));
    let mut m = Map::new();
    m.insert("base".into(), json!(base));
    m.insert("code".into(), json!(field("code")?));
    m.insert("type".into(), json!(field("type")?));
    m.insert("url".into(), json!(field("url")?));
    if let Some(e) = expression {
        m.insert("expression".into(), json!(e));
    }
    if common {
        m.insert("common".into(), json!(true));
    }
    let mut targets = string_list(def, "target");
    targets.sort();
    if targets.len() >= ANY_TARGET_THRESHOLD {
        // 80 reference parameters (e.g. `*.relatedArtifact.resource`) list every resource type
        // but Parameters; `*` says "any resource" in one character instead of 2 KB.
        targets = vec!["*".to_owned()];
    }
    for (key, list) in [
        ("target", targets),
        ("modifier", string_list(def, "modifier")),
        ("comparator", string_list(def, "comparator")),
    ] {
        if !list.is_empty() {
            m.insert(key.into(), json!(list));
        }
    }
    for key in ["multipleOr", "multipleAnd"] {
        if let Some(b) = def.get(key).and_then(Value::as_bool) {
            m.insert(key.into(), json!(b));
        }
    }
    let components: Vec<Value> = def
        .get("component")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|c| json!({"definition": str_field(c, "definition"), "expression": str_field(c, "expression")}))
                .collect()
        })
        .unwrap_or_default();
    if !components.is_empty() {
        m.insert("component".into(), Value::Array(components));
    }
    Ok(m)
}

/// Parameters every server understands but that have no SearchParameter resource in R4: they are
/// described only in the search page of the specification.
fn synthetic_common_params() -> Vec<Map<String, Value>> {
    [
        ("_has", "special", "has"),
        ("_list", "special", "list"),
        ("_type", "token", "type"),
    ]
    .into_iter()
    .map(|(code, kind, anchor)| {
        let v = json!({
            "base": "Resource",
            "code": code,
            "type": kind,
            "url": format!("http://hl7.org/fhir/R4/search.html#{anchor}"),
            "common": true,
        });
        match v {
            Value::Object(m) => m,
            _ => unreachable!("json! of an object literal"),
        }
    })
    .collect()
}

fn check_unique(params: &[Map<String, Value>]) -> Result<(), String> {
    for pair in params.windows(2) {
        if key_of(&pair[0]) == key_of(&pair[1]) {
            return Err(format!("two definitions for {:?}", key_of(&pair[0])));
        }
    }
    Ok(())
}

/// The union branches of `expression` that apply to `base`: those starting with the base's type
/// name, with `Resource`/`DomainResource` (which apply to every type), or with an element name
/// (relative to the resource, as in InsurancePlan's `name | alias`). A branch may be
/// parenthesised, as in `(Observation.value as Quantity)`.
fn branches_for_base(expression: &str, base: &str) -> Vec<String> {
    split_top_level_union(expression)
        .into_iter()
        .filter(|branch| {
            let head = leading_identifier(
                branch.trim_start_matches(|c: char| c == '(' || c.is_whitespace()),
            );
            let relative = head.starts_with(|c: char| c.is_ascii_lowercase());
            head == base || relative || COMMON_BASES.contains(&head)
        })
        .collect()
}

/// Splits on `|` outside parentheses, brackets and string literals.
fn split_top_level_union(expression: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut in_string = false;
    let mut escaped = false;
    let mut current = String::new();
    for c in expression.chars() {
        if in_string {
            current.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '\'' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '\'' => in_string = true,
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            '|' if depth == 0 => {
                parts.push(current.trim().to_owned());
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current.trim().to_owned());
    parts.retain(|p| !p.is_empty());
    parts
}

fn leading_identifier(s: &str) -> &str {
    let end = s
        .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .unwrap_or(s.len());
    &s[..end]
}

// ---------------------------------------------------------------------------------------------
// Types

/// One type of the model: its base type and the elements it defines itself.
#[derive(Default)]
struct TypeEntry {
    base: Option<String>,
    elements: BTreeMap<String, Value>,
}

/// Types that have no StructureDefinition of their own in the R4 package but are the base of
/// others; their elements are learned from the inheriting definitions' snapshots.
const IMPLICIT_ROOTS: [&str; 2] = ["Resource", "Element"];

fn collect_types(structures: &[Value]) -> Result<BTreeMap<String, TypeEntry>, String> {
    let mut types: BTreeMap<String, TypeEntry> = BTreeMap::new();
    for root in IMPLICIT_ROOTS {
        types.insert(root.to_owned(), TypeEntry::default());
    }
    for sd in structures {
        if str_field(sd, "resourceType") != Some("StructureDefinition") {
            continue;
        }
        let name = str_field(sd, "type").ok_or("StructureDefinition without type")?;
        let base =
            str_field(sd, "baseDefinition").map(|u| u.rsplit('/').next().unwrap_or(u).to_owned());
        types.entry(name.to_owned()).or_default().base = base;
        // A primitive's snapshot only describes its `value` (a System type) and inherited `id`
        // and `extension`; nothing a search expression navigates.
        if str_field(sd, "kind") == Some("primitive-type") {
            continue;
        }
        let elements = sd
            .pointer("/snapshot/element")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{name}: no snapshot"))?;
        for element in elements.iter().skip(1) {
            add_element(&mut types, element)?;
        }
    }
    Ok(types)
}

/// Records one snapshot element under the type that defines it. Elements inherited from a type
/// with its own StructureDefinition are skipped (found through `base` at runtime); those
/// inherited from `Resource` or `Element` are recorded there, since those have no definition.
fn add_element(types: &mut BTreeMap<String, TypeEntry>, element: &Value) -> Result<(), String> {
    let path = str_field(element, "path").ok_or("element without path")?;
    let defined_at = element
        .pointer("/base/path")
        .and_then(Value::as_str)
        .unwrap_or(path);
    let (owner_path, raw_name) = if defined_at == path {
        path.rsplit_once('.')
            .ok_or_else(|| format!("{path}: not a child path"))?
    } else {
        let (owner, name) = defined_at
            .rsplit_once('.')
            .ok_or_else(|| format!("{defined_at}: bad base path"))?;
        if !IMPLICIT_ROOTS.contains(&owner) {
            return Ok(());
        }
        (owner, name)
    };
    let (name, is_choice) = match raw_name.strip_suffix("[x]") {
        Some(n) => (n, true),
        None => (raw_name, false),
    };
    let type_value = element_type(element, path, is_choice)?;
    if let Value::String(t) = &type_value
        && t == path
    {
        // A backbone element: a type of its own, named by its path.
        let code = element_type_codes(element)
            .into_iter()
            .next()
            .unwrap_or_else(|| "BackboneElement".into());
        types.entry(path.to_owned()).or_default().base = Some(code);
    }
    types
        .entry(owner_path.to_owned())
        .or_default()
        .elements
        .insert(name.to_owned(), type_value);
    Ok(())
}

/// The type of an element: a type name (a backbone element's own path), or for a choice element
/// the array of its allowed types.
fn element_type(element: &Value, path: &str, is_choice: bool) -> Result<Value, String> {
    if let Some(reference) = str_field(element, "contentReference") {
        return Ok(json!(reference.trim_start_matches('#')));
    }
    let codes = element_type_codes(element);
    if is_choice {
        return Ok(json!(codes));
    }
    match codes.as_slice() {
        [single] if single == "BackboneElement" || single == "Element" => Ok(json!(path)),
        [single] => Ok(json!(single)),
        _ => Err(format!(
            "{path}: {} types but not a choice element",
            codes.len()
        )),
    }
}

/// The FHIR type codes of an element. `id` and `Extension.url` are typed with FHIRPath System
/// types in R4; their FHIR type is in the `structuredefinition-fhir-type` extension.
fn element_type_codes(element: &Value) -> Vec<String> {
    let Some(types) = element.get("type").and_then(Value::as_array) else {
        return Vec::new();
    };
    types
        .iter()
        .filter_map(|t| {
            let fhir_type = t
                .get("extension")
                .and_then(Value::as_array)
                .and_then(|exts| {
                    exts.iter().find(|x| {
                        str_field(x, "url") == Some("http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type")
                    })
                })
                .and_then(|x| str_field(x, "valueUrl"));
            fhir_type.or_else(|| str_field(t, "code")).map(str::to_owned)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Output

/// One parameter or type per line: small diffs when the definitions change, still plain JSON.
fn render(params: &[Map<String, Value>], types: &BTreeMap<String, TypeEntry>) -> String {
    let mut s = String::from("{\"fhirVersion\":\"4.0.1\",\n\"params\":[\n");
    let lines: Vec<String> = params
        .iter()
        .map(|p| Value::Object(p.clone()).to_string())
        .collect();
    s.push_str(&lines.join(",\n"));
    s.push_str("\n],\n\"types\":{\n");
    let lines: Vec<String> = types
        .iter()
        .map(|(name, t)| {
            let mut m = Map::new();
            if let Some(b) = &t.base {
                m.insert("base".into(), json!(b));
            }
            let elements: Map<String, Value> = t
                .elements
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !elements.is_empty() {
                m.insert("elements".into(), Value::Object(elements));
            }
            format!("{}:{}", json!(name), Value::Object(m))
        })
        .collect();
    s.push_str(&lines.join(",\n"));
    s.push_str("\n}}\n");
    s
}
