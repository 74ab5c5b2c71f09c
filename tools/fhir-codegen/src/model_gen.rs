//! Generation of the compact FHIR R4 model (`crates/vaidya-fhir/data/r4-model.json`) from the
//! official definitions: `StructureDefinition/*.json` and `terminology/*.json`.
//!
//! This file is shared: the `model` binary includes it with `#[path]`, and so does the
//! freshness test in `vaidya-fhir`, which regenerates the model in memory and compares it with
//! the committed file. It therefore depends on nothing but `std` and `serde_json`.
//!
//! Output shape (all maps sorted by key, arrays in a stable order, so that regeneration is
//! byte-identical):
//!
//! ```text
//! { "fhirVersion": "4.0.1",
//!   "resourceTypes": [concrete resource type names, sorted],
//!   "types": { name: { "kind": "resource"|"complex-type"|"primitive-type", "abstract": bool,
//!                      "base": name?, "regex": primitive format?,
//!                      "elements": [ element, ... in snapshot order ] } },
//!   "valueSets": { url: { "enumerable": true, "codes": { system: [code, ...] } }
//!                | { "enumerable": false, "reason": text } } }
//!
//! element = { "path": "Observation.value[x]", "min": 0, "max": "1",
//!             "types": [ { "code": "Quantity", "profile"?: [..], "targetProfile"?: [..] } ],
//!             "choices"?: ["valueQuantity", ...]   (one per type, same order; `[x]` elements only)
//!             "contentReference"?: "#Questionnaire.item",
//!             "binding"?: ValueSet url without version   (required bindings only) }
//! ```

use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

const FHIR_TYPE_EXT: &str = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type";
const REGEX_EXT: &str = "http://hl7.org/fhir/StructureDefinition/regex";
const SYSTEM_TYPE_PREFIX: &str = "http://hl7.org/fhirpath/System.";

/// Reads the definitions under `src` and returns the model as compact JSON text.
pub fn generate(src: &Path) -> Result<String, String> {
    let definitions = read_dir_json(&src.join("StructureDefinition"))?;
    let terminology = read_dir_json(&src.join("terminology"))?;

    let mut types = BTreeMap::new();
    let mut resource_types = BTreeSet::new();
    let mut required_value_sets = BTreeSet::new();
    for sd in &definitions {
        if str_at(sd, "resourceType") != Some("StructureDefinition") {
            continue;
        }
        let (name, type_def) = convert_structure_definition(sd, &mut required_value_sets)?;
        if type_def["kind"] == "resource" && type_def["abstract"] == false {
            resource_types.insert(name.clone());
        }
        if types.insert(name.clone(), type_def).is_some() {
            return Err(format!("type {name} is defined twice"));
        }
    }

    let terminology = Terminology::new(&terminology);
    let mut value_sets = Map::new();
    for url in &required_value_sets {
        value_sets.insert(url.clone(), terminology.value_set_json(url));
    }

    let model = json!({
        "fhirVersion": "4.0.1",
        "resourceTypes": resource_types.into_iter().collect::<Vec<_>>(),
        "types": types.into_iter().collect::<Map<_, _>>(),
        "valueSets": value_sets,
    });
    let mut text = serde_json::to_string(&model).map_err(|e| e.to_string())?;
    text.push('\n');
    Ok(text)
}

/// All `*.json` files of a directory, parsed, in file-name order (for determinism).
fn read_dir_json(dir: &Path) -> Result<Vec<Value>, String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut paths: Vec<_> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(format!("no JSON files in {}", dir.display()));
    }
    paths
        .iter()
        .map(|path| {
            let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
        })
        .collect()
}

fn str_at<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

fn array_at<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Value of the first extension with `url`, whatever its `value[x]` type.
fn extension_value<'a>(value: &'a Value, url: &str) -> Option<&'a str> {
    array_at(value, "extension")
        .iter()
        .find(|ext| str_at(ext, "url") == Some(url))
        .and_then(|ext| ext.as_object())
        .and_then(|ext| ext.iter().find(|(key, _)| key.starts_with("value")))
        .and_then(|(_, value)| value.as_str())
}

/// Drops a `|version` suffix from a canonical URL.
fn unversioned(url: &str) -> &str {
    url.split('|').next().unwrap_or(url)
}

/// Converts one StructureDefinition into `(type name, type JSON)`, and collects the URLs of
/// the value sets of its required bindings.
fn convert_structure_definition(
    sd: &Value,
    required_value_sets: &mut BTreeSet<String>,
) -> Result<(String, Value), String> {
    let name = str_at(sd, "type")
        .ok_or("StructureDefinition without type")?
        .to_string();
    if str_at(sd, "derivation") == Some("constraint") {
        return Err(format!(
            "{name}: profiles (constraints) are not part of the base model"
        ));
    }
    let kind = str_at(sd, "kind").ok_or_else(|| format!("{name}: no kind"))?;
    let snapshot = array_at(sd.get("snapshot").unwrap_or(&Value::Null), "element");
    if snapshot.is_empty() {
        return Err(format!("{name}: no snapshot"));
    }

    let mut elements = Vec::new();
    let mut regex = None;
    for element in snapshot {
        let path =
            str_at(element, "path").ok_or_else(|| format!("{name}: element without path"))?;
        if element.get("sliceName").is_some() {
            return Err(format!(
                "{name}: unexpected slice at {path} in a base definition"
            ));
        }
        if !path.contains('.') {
            continue; // the root element carries no information the validator needs
        }
        if kind == "primitive-type" && path == format!("{name}.value") {
            // The primitive's value: keep its format, it is checked by the validator.
            regex = element
                .get("type")
                .and_then(|types| types.get(0))
                .and_then(|ty| extension_value(ty, REGEX_EXT))
                .map(str::to_string);
        }
        elements.push(convert_element(&name, kind, element, required_value_sets)?);
    }

    let mut type_def = Map::new();
    type_def.insert(
        "abstract".into(),
        Value::Bool(sd.get("abstract") == Some(&Value::Bool(true))),
    );
    if let Some(base) = str_at(sd, "baseDefinition") {
        let base = base.rsplit('/').next().unwrap_or(base);
        type_def.insert("base".into(), Value::String(base.to_string()));
    }
    type_def.insert("elements".into(), Value::Array(elements));
    type_def.insert("kind".into(), Value::String(kind.to_string()));
    if let Some(regex) = regex {
        type_def.insert("regex".into(), Value::String(regex));
    }
    Ok((name, Value::Object(type_def)))
}

fn convert_element(
    type_name: &str,
    kind: &str,
    element: &Value,
    required_value_sets: &mut BTreeSet<String>,
) -> Result<Value, String> {
    let path = str_at(element, "path").unwrap_or_default();
    let mut out = Map::new();

    let binding = element
        .get("binding")
        .filter(|b| str_at(b, "strength") == Some("required"));
    if let Some(url) = binding.and_then(|b| str_at(b, "valueSet")) {
        let url = unversioned(url).to_string();
        required_value_sets.insert(url.clone());
        out.insert("binding".into(), Value::String(url));
    }

    let types = array_at(element, "type");
    if let Some(base_name) = path.strip_suffix("[x]") {
        let base_name = base_name.rsplit('.').next().unwrap_or(base_name);
        let choices = types
            .iter()
            .map(|ty| {
                let code = str_at(ty, "code").unwrap_or_default();
                Value::String(format!("{base_name}{}", upper_first(code)))
            })
            .collect();
        out.insert("choices".into(), Value::Array(choices));
    }

    if let Some(reference) = str_at(element, "contentReference") {
        out.insert(
            "contentReference".into(),
            Value::String(reference.to_string()),
        );
    } else if types.is_empty() {
        return Err(format!(
            "{type_name}: element {path} has neither type nor contentReference"
        ));
    }

    let max = str_at(element, "max").ok_or_else(|| format!("{path}: no max"))?;
    out.insert("max".into(), Value::String(max.to_string()));
    let min = element
        .get("min")
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("{path}: no min"))?;
    out.insert("min".into(), Value::from(min));
    out.insert("path".into(), Value::String(path.to_string()));

    if !types.is_empty() {
        let is_primitive_value = kind == "primitive-type" && path == format!("{type_name}.value");
        let types = types
            .iter()
            .map(|ty| convert_type(ty, is_primitive_value).map_err(|e| format!("{path}: {e}")))
            .collect::<Result<_, _>>()?;
        out.insert("types".into(), Value::Array(types));
    }
    Ok(Value::Object(out))
}

/// One `ElementDefinition.type`. FHIRPath system types (`http://hl7.org/fhirpath/System.String`)
/// are used in R4 for `Element.id`, `Extension.url`, `Resource.id` and the primitives' own
/// values; outside the primitives' values we replace them with the FHIR type named by the
/// `structuredefinition-fhir-type` extension, which is what appears on the wire.
fn convert_type(ty: &Value, is_primitive_value: bool) -> Result<Value, String> {
    let code = str_at(ty, "code").ok_or("type without code")?;
    let code = match code.strip_prefix(SYSTEM_TYPE_PREFIX) {
        Some(system_type) if !is_primitive_value => match extension_value(ty, FHIR_TYPE_EXT) {
            Some(fhir_type) => fhir_type,
            // `xhtml.id` has no extension; the system types map one to one otherwise.
            None => fhir_type_of_system_type(system_type)
                .ok_or_else(|| format!("system type {code} without a FHIR type extension"))?,
        },
        _ => code,
    };
    let mut out = Map::new();
    out.insert("code".into(), Value::String(code.to_string()));
    for key in ["profile", "targetProfile"] {
        let urls = array_at(ty, key);
        if !urls.is_empty() {
            out.insert(key.into(), Value::Array(urls.to_vec()));
        }
    }
    Ok(Value::Object(out))
}

fn fhir_type_of_system_type(system_type: &str) -> Option<&'static str> {
    Some(match system_type {
        "String" => "string",
        "Boolean" => "boolean",
        "Integer" => "integer",
        "Decimal" => "decimal",
        "Date" => "date",
        "DateTime" => "dateTime",
        "Time" => "time",
        _ => return None,
    })
}

fn upper_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Codes of a value set, by system.
type CodeSet = BTreeMap<String, BTreeSet<String>>;

/// The ValueSets and CodeSystems of the terminology folder, by URL.
struct Terminology<'a> {
    value_sets: BTreeMap<&'a str, &'a Value>,
    code_systems: BTreeMap<&'a str, &'a Value>,
}

impl<'a> Terminology<'a> {
    fn new(resources: &'a [Value]) -> Self {
        let mut value_sets = BTreeMap::new();
        let mut code_systems = BTreeMap::new();
        for resource in resources {
            let Some(url) = str_at(resource, "url") else {
                continue;
            };
            match str_at(resource, "resourceType") {
                Some("ValueSet") => value_sets.insert(url, resource),
                Some("CodeSystem") => code_systems.insert(url, resource),
                _ => None,
            };
        }
        Terminology {
            value_sets,
            code_systems,
        }
    }

    fn value_set_json(&self, url: &str) -> Value {
        match self.expand_value_set(url, &mut Vec::new()) {
            Ok(codes) => {
                let codes: Map<_, _> = codes
                    .into_iter()
                    .map(|(system, codes)| {
                        (system, Value::from(codes.into_iter().collect::<Vec<_>>()))
                    })
                    .collect();
                json!({ "codes": codes, "enumerable": true })
            }
            Err(reason) => json!({ "enumerable": false, "reason": reason }),
        }
    }

    /// All codes of a value set, or why they cannot be enumerated from the folder alone.
    /// `visiting` guards against include cycles.
    fn expand_value_set(&self, url: &str, visiting: &mut Vec<String>) -> Result<CodeSet, String> {
        let url = unversioned(url);
        if visiting.iter().any(|seen| seen == url) {
            return Err(format!("value set {url} includes itself"));
        }
        let value_set = self
            .value_sets
            .get(url)
            .ok_or_else(|| format!("value set {url} is not in the folder"))?;
        let compose = value_set
            .get("compose")
            .ok_or_else(|| format!("value set {url} has no compose"))?;
        visiting.push(url.to_string());
        let mut codes = CodeSet::new();
        for include in array_at(compose, "include") {
            for (system, included) in self.expand_include(include, visiting)? {
                codes.entry(system).or_default().extend(included);
            }
        }
        for exclude in array_at(compose, "exclude") {
            for (system, excluded) in self.expand_include(exclude, visiting)? {
                if let Some(codes) = codes.get_mut(&system) {
                    codes.retain(|code| !excluded.contains(code));
                }
            }
        }
        codes.retain(|_, codes| !codes.is_empty());
        visiting.pop();
        Ok(codes)
    }

    /// One `compose.include` (or `exclude`): the codes of its system part (explicit concepts or
    /// the whole code system), intersected with every value set it names.
    fn expand_include(
        &self,
        include: &Value,
        visiting: &mut Vec<String>,
    ) -> Result<CodeSet, String> {
        if include.get("filter").is_some() {
            return Err("uses a filter".to_string());
        }
        let mut result: Option<CodeSet> = None;
        if let Some(system) = str_at(include, "system") {
            let concepts = array_at(include, "concept");
            let codes = if concepts.is_empty() {
                self.code_system_codes(system)?
            } else {
                concepts
                    .iter()
                    .filter_map(|c| str_at(c, "code"))
                    .map(str::to_string)
                    .collect()
            };
            result = Some(CodeSet::from([(system.to_string(), codes)]));
        }
        for value_set in array_at(include, "valueSet")
            .iter()
            .filter_map(Value::as_str)
        {
            let other = self.expand_value_set(value_set, visiting)?;
            result = Some(match result {
                None => other,
                Some(current) => intersect(current, &other),
            });
        }
        result.ok_or_else(|| "an include has neither system nor valueSet".to_string())
    }

    /// Every selectable code of a complete code system, nested concepts included.
    fn code_system_codes(&self, system: &str) -> Result<BTreeSet<String>, String> {
        let code_system = self
            .code_systems
            .get(system)
            .ok_or_else(|| format!("code system {system} is not in the folder"))?;
        if str_at(code_system, "content") != Some("complete") {
            return Err(format!(
                "code system {system} is not complete in the folder"
            ));
        }
        let mut codes = BTreeSet::new();
        collect_concepts(array_at(code_system, "concept"), &mut codes);
        Ok(codes)
    }
}

/// Adds the codes of `concepts` and their descendants, leaving out abstract groupings
/// (property `notSelectable` = true, e.g. `question` in item-type), which may not be used.
fn collect_concepts(concepts: &[Value], codes: &mut BTreeSet<String>) {
    for concept in concepts {
        let not_selectable = array_at(concept, "property").iter().any(|property| {
            str_at(property, "code") == Some("notSelectable")
                && property.get("valueBoolean") == Some(&Value::Bool(true))
        });
        if let (Some(code), false) = (str_at(concept, "code"), not_selectable) {
            codes.insert(code.to_string());
        }
        collect_concepts(array_at(concept, "concept"), codes);
    }
}

fn intersect(left: CodeSet, right: &CodeSet) -> CodeSet {
    left.into_iter()
        .filter_map(|(system, codes)| {
            let other = right.get(&system)?;
            let codes: BTreeSet<_> = codes
                .into_iter()
                .filter(|code| other.contains(code))
                .collect();
            (!codes.is_empty()).then_some((system, codes))
        })
        .collect()
}
