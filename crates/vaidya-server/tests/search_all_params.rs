//! Every search parameter of the sixteen resource types the first issue names, end to end: the
//! official R4 examples are stored, then each parameter is searched with a value derived from
//! what an example holds (so the example must be found), and with `:missing`. Then composites
//! and `near` on hand-made resources, and `vaidya verify` over everything that was indexed.

mod common;
use common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use vaidya_fhir::index::{IndexValue, extract};
use vaidya_fhir::search_params::{ParamType, SearchParam, search_params};

const TYPES: [&str; 16] = [
    "Patient",
    "Practitioner",
    "Organization",
    "Location",
    "Schedule",
    "Slot",
    "Appointment",
    "Encounter",
    "ServiceRequest",
    "Specimen",
    "Observation",
    "DiagnosticReport",
    "DocumentReference",
    "ChargeItem",
    "Invoice",
    "Account",
];

/// Parameters without an expression: the server would implement them itself (full text, `_has`,
/// ...), and does not (yet).
const NO_EXPRESSION: [&str; 7] = ["_text", "_content", "_query", "_filter", "_has", "_list", "_type"];

/// Official examples the server rightly refuses, with the reason.
const INVALID_EXAMPLES: [(&str, &str, &str); 3] = [
    ("Observation", "clinical-gender", "performer refers to an Encounter, which Observation.performer does not allow"),
    ("Invoice", "example", "issued without lines and priced in EUR: Vaidya's invoices are in INR and total their lines"),
    ("ChargeItem", "example", "priced in EUR with a factor: Vaidya's charges are in INR, priced by the tariff or by hand"),
];

/// A refused example brought into the hospital's rules, so that its type's search parameters
/// are still tested on the official content: the Invoice example gets one line carrying its
/// net total, in INR (net and gross equal: the hospital's services carry no tax); the
/// ChargeItem example is priced in INR without its factor.
fn hospital_form(e: &Value) -> Option<Value> {
    if e["resourceType"] == "ChargeItem" {
        let mut e = e.clone();
        e["priceOverride"]["currency"] = json!("INR");
        e.as_object_mut().unwrap().remove("factorOverride");
        return Some(e);
    }
    if e["resourceType"] != "Invoice" {
        return None;
    }
    let mut e = e.clone();
    let net = e["totalNet"]["value"].clone();
    e["totalNet"] = json!({"value": net, "currency": "INR"});
    e["totalGross"] = json!({"value": net, "currency": "INR"});
    e["lineItem"] = json!([{"chargeItemCodeableConcept": {"text": "services"},
        "priceComponent": [{"type": "base", "amount": {"value": net, "currency": "INR"}}]}]);
    Some(e)
}

fn examples() -> BTreeMap<&'static str, Vec<Value>> {
    let dir = shared_data().join("fhir-r4-core/examples");
    let mut paths: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    let mut out: BTreeMap<&'static str, Vec<Value>> = BTreeMap::new();
    for path in paths.iter().filter(|p| p.extension().is_some_and(|x| x == "json")) {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        if let Some(t) = TYPES.iter().find(|t| v["resourceType"] == **t) {
            assert!(v["id"].is_string(), "{}", path.display());
            out.entry(t).or_default().push(v);
        }
    }
    for t in TYPES {
        assert!(out.contains_key(t), "no example of {t}");
    }
    out
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Escape the search syntax's special characters (`\`, `,`, and those given) with a backslash.
fn esc(s: &str, also: &[char]) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\\' || c == ',' || also.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The UTC calendar date of an instant, by the domain's calendar arithmetic.
fn utc_date(ms: i64) -> vaidya_domain::LocalDate {
    vaidya_domain::schedule::from_utc_ms(ms, 0).expect("example dates lie within years 1-9999").0
}

/// A search value (and modifier) that must match `v`, in the syntax of a parameter of `kind`;
/// `in_composite` escapes `$` too. `None` when the value cannot be searched for as such (a
/// reference to a contained resource).
fn derive(v: &IndexValue, in_composite: bool) -> Option<(&'static str, String)> {
    let also: &[char] = if in_composite { &['$', '|'] } else { &['|'] };
    let plain: &[char] = if in_composite { &['$'] } else { &[] };
    Some(match v {
        IndexValue::String { normalized, .. } => {
            let prefix: String = normalized.chars().take(4).collect();
            ("", esc(prefix.trim_end(), plain))
        }
        IndexValue::Token { system, code: Some(code), .. } => match system {
            Some(s) => ("", format!("{}|{}", esc(s, also), esc(code, also))),
            None => ("", esc(code, also)),
        },
        IndexValue::Token { system: Some(s), code: None, .. } => ("", format!("{}|", esc(s, also))),
        IndexValue::Token { text: Some(t), .. } => {
            if in_composite {
                return None;
            }
            (":text", esc(t, also))
        }
        IndexValue::Token { .. } => return None,
        IndexValue::Reference { reference, .. } => {
            if reference.starts_with('#') {
                return None;
            }
            ("", esc(reference, plain))
        }
        IndexValue::Date { start_ms, end_ms } => {
            let (open_start, open_end) = (*start_ms == i64::MIN, *end_ms == i64::MAX);
            if !open_start && !open_end && utc_date(*start_ms).year() == utc_date(*end_ms).year() {
                ("", format!("eq{:04}", utc_date(*start_ms).year()))
            } else if !open_start {
                ("", format!("ge{}", utc_date(*start_ms)))
            } else {
                ("", format!("le{}", utc_date(*end_ms)))
            }
        }
        IndexValue::Number { value } => ("", format!("{value}")),
        IndexValue::Quantity { value, system, code, unit } => match (system, code, unit) {
            (Some(s), Some(c), _) => ("", format!("{value}|{}|{}", esc(s, also), esc(c, also))),
            (_, Some(c), _) | (_, None, Some(c)) => ("", format!("{value}||{}", esc(c, also))),
            _ => ("", format!("{value}")),
        },
        IndexValue::Uri(u) => ("", esc(u, plain)),
        IndexValue::Composite { parts } => {
            let mut out = Vec::new();
            for p in parts {
                let (modifier, value) = derive(p, true)?;
                assert_eq!(modifier, "");
                out.push(value);
            }
            ("", out.join("$"))
        }
        IndexValue::Position { latitude, longitude } => ("", format!("{latitude}|{longitude}|1|km")),
    })
}

/// A well-formed value for a parameter no example has a value for.
fn generic(param: &SearchParam) -> String {
    let one = |kind: ParamType, targets: &[String]| match kind {
        ParamType::String => "zz".to_string(),
        ParamType::Token => "http://example.org|zz".to_string(),
        ParamType::Reference => format!("{}/zz", targets.first().map_or("Patient", String::as_str)),
        ParamType::Date => "ge2020-01-01".to_string(),
        ParamType::Number => "gt1".to_string(),
        ParamType::Quantity => "gt1||mg".to_string(),
        ParamType::Uri => "http://example.org/zz".to_string(),
        ParamType::Special => "28.567|77.210|5|km".to_string(),
        ParamType::Composite => unreachable!(),
    };
    match param.kind {
        ParamType::Composite => vaidya_fhir::index::component_kinds(param)
            .into_iter()
            .map(|k| one(k, &[]).replace("Patient/zz", "DocumentReference/zz"))
            .collect::<Vec<_>>()
            .join("$"),
        kind => one(kind, &param.targets),
    }
}

fn bundle_ids(s: &Server, path: &str) -> Result<Vec<String>, String> {
    let r = s.get(path);
    if r.status != 200 {
        return Err(format!("{path}: HTTP {}: {}", r.status, r.body));
    }
    let b = r.json();
    if b["resourceType"] != "Bundle" || b["type"] != "searchset" {
        return Err(format!("{path}: not a searchset Bundle: {}", r.body));
    }
    let ids: Vec<String> = b["entry"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["resource"]["id"].as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if b["total"].as_u64() != Some(ids.len() as u64) && ids.len() < 1000 {
        return Err(format!("{path}: total {} but {} entries", b["total"], ids.len()));
    }
    Ok(ids)
}

fn put(s: &Server, body: &Value) -> Result<(), String> {
    let path = format!("/{}/{}", body["resourceType"].as_str().unwrap(), body["id"].as_str().unwrap());
    let r = s.put(&path, body);
    if r.status == 200 || r.status == 201 { Ok(()) } else { Err(format!("PUT {path}: HTTP {}: {}", r.status, r.body)) }
}

#[derive(Default)]
struct Tally {
    params: usize,
    derived: usize,
    found: usize,
    /// Searches with a derived value that left out some examples of the type.
    selective: usize,
    generic: usize,
    generic_names: Vec<String>,
    not_derivable: Vec<String>,
    failures: Vec<String>,
}

#[test]
fn every_parameter_of_the_sixteen_types_works_on_the_official_examples() {
    let mut s = Server::start();
    let mut examples = examples();
    let mut failures = Vec::new();
    let mut stored = 0;
    for (rtype, list) in examples.iter_mut() {
        for e in std::mem::take(list) {
            let invalid = INVALID_EXAMPLES.iter().find(|(t, id, _)| t == rtype && e["id"] == *id);
            match (put(&s, &e), invalid) {
                (Ok(()), None) => {
                    stored += 1;
                    list.push(e);
                }
                (Err(_), Some((t, id, why))) => {
                    println!("{t}/{id} refused as expected: {why}");
                    if let Some(adapted) = hospital_form(&e) {
                        match put(&s, &adapted) {
                            Ok(()) => {
                                stored += 1;
                                list.push(adapted);
                            }
                            Err(err) => failures.push(format!("{t}/{id} in the hospital's form: {err}")),
                        }
                    }
                }
                (Ok(()), Some((t, id, _))) => failures.push(format!("{t}/{id} was expected to be refused")),
                (Err(e), None) => failures.push(e),
            }
        }
    }
    println!("stored {stored} official examples of {} types", examples.len());
    assert!(failures.is_empty(), "examples refused:\n{}", failures.join("\n"));

    let mut total = Tally::default();
    for (rtype, list) in &examples {
        let mut t = Tally::default();
        for param in search_params(rtype) {
            let code = param.code.as_str();
            if NO_EXPRESSION.contains(&code) {
                assert!(param.expression.is_empty(), "{rtype}.{code} has an expression now");
                continue;
            }
            t.params += 1;
            // The first example with a searchable value, and that value.
            let derived = list.iter().find_map(|e| {
                let id = e["id"].as_str().unwrap();
                let values = match code {
                    "_id" => return Some((id, String::new(), encode(id))),
                    "_lastUpdated" => return Some((id, String::new(), "ge2020-01-01".into())),
                    _ => extract(e, param),
                };
                values.iter().find_map(|v| derive(v, false)).map(|(m, v)| (id, m.to_string(), encode(&v)))
            });
            let has_values = list.iter().any(|e| !extract(e, param).is_empty());
            match &derived {
                Some((id, modifier, value)) => {
                    t.derived += 1;
                    let path = format!("/{rtype}?{}{modifier}={value}&_count=1000", encode(code));
                    match bundle_ids(&s, &path) {
                        Ok(ids) if ids.iter().any(|x| x == id) => {
                            t.found += 1;
                            t.selective += usize::from(ids.len() < list.len());
                        }
                        Ok(ids) => t.failures.push(format!("{path}: {rtype}/{id} not among {ids:?}")),
                        Err(e) => t.failures.push(e),
                    }
                }
                None => {
                    if has_values {
                        t.not_derivable.push(format!("{rtype}.{code}"));
                    }
                    t.generic += 1;
                    t.generic_names.push(code.to_string());
                    let path = format!("/{rtype}?{}={}", encode(code), encode(&generic(param)));
                    if let Err(e) = bundle_ids(&s, &path) {
                        t.failures.push(e);
                    }
                }
            }
            for missing in ["true", "false"] {
                let path = format!("/{rtype}?{}={missing}&_count=1000", encode(&format!("{code}:missing")));
                match bundle_ids(&s, &path) {
                    Ok(ids) => {
                        // The example with a value is not missing it.
                        if let Some((id, _, _)) = &derived {
                            let listed = ids.iter().any(|x| x == id);
                            if listed != (missing == "false") {
                                t.failures.push(format!("{path}: {rtype}/{id} listed: {listed}"));
                            }
                        }
                    }
                    Err(e) => t.failures.push(e),
                }
            }
        }
        println!(
            "{rtype:<18} {:>3} params, {:>3} searched with a value from an example, {:>3} found it ({:>3} left out another of the {} examples), {:>3} with a generic value: {}",
            t.params,
            t.derived,
            t.found,
            t.selective,
            list.len(),
            t.generic,
            t.generic_names.join(" ")
        );
        total.params += t.params;
        total.derived += t.derived;
        total.found += t.found;
        total.selective += t.selective;
        total.generic += t.generic;
        total.not_derivable.extend(t.not_derivable);
        total.failures.extend(t.failures);
    }
    println!(
        "TOTAL: {} parameters tested, {} with values derived from the examples, {} found the example ({} left out another example); {} with a generic value",
        total.params, total.derived, total.found, total.selective, total.generic
    );
    if !total.not_derivable.is_empty() {
        println!("values present but not searchable as such (references to contained resources): {:?}", total.not_derivable);
    }
    assert!(total.failures.is_empty(), "{} failures:\n{}", total.failures.len(), total.failures.join("\n"));
    assert!(total.found * 10 >= total.params * 7, "most parameters find an example");

    composites_and_near(&s);
    common_meta_params(&s, &examples);

    // Everything indexed above, composites and positions included, recomputes from the ledger.
    s.stop();
    let out = std::process::Command::new(BIN).args(["verify", "--data"]).arg(s.data()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
}

fn ids(s: &Server, query: &str) -> Vec<String> {
    let mut ids = bundle_ids(s, query).unwrap_or_else(|e| panic!("{e}"));
    ids.sort();
    ids
}

/// `_tag`, `_security`, `_source` and `_profile`, which few official examples carry.
fn common_meta_params(s: &Server, examples: &BTreeMap<&'static str, Vec<Value>>) {
    for (rtype, list) in examples {
        // A copy of an example (valid, as it was stored), with all four in its meta.
        let mut body = list[0].clone();
        body["id"] = json!("meta-test");
        body["meta"] = json!({
            "source": "urn:vaidya:test#1",
            "profile": ["http://example.org/StructureDefinition/p"],
            "tag": [{"system": "http://example.org/tags", "code": "t1"}],
            "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]});
        put(s, &body).unwrap();
        for (param, value) in [
            ("_source", "urn:vaidya:test#1"),
            ("_profile", "http://example.org/StructureDefinition/p"),
            ("_tag", "http://example.org/tags|t1"),
            ("_security", "http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R"),
        ] {
            let found = ids(s, &format!("/{rtype}?{param}={}", encode(value)));
            assert_eq!(found, ["meta-test"], "{rtype}?{param}");
        }
    }
}

fn composites_and_near(s: &Server) {
    let loinc = "http://loinc.org";
    let component = |code: &str, v: f64| {
        json!({"code": {"coding": [{"system": loinc, "code": code}]},
               "valueQuantity": {"value": v, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}})
    };
    for (id, sys, dia) in [("bp-120-80", 120.0, 80.0), ("bp-150-100", 150.0, 100.0)] {
        let bp = json!({"resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": loinc, "code": "85354-9"}]},
            "subject": {"reference": "Patient/example"}, "effectiveDateTime": "2024-05-01",
            "component": [component("8480-6", sys), component("8462-4", dia)]});
        put(s, &bp).unwrap();
    }
    // Among these two: the official examples hold blood pressures too.
    let q = |param: &str, value: &str| ids(s, &format!("/Observation?{param}={}&_id=bp-120-80,bp-150-100", encode(value)));
    let cq = "component-code-value-quantity";
    assert_eq!(q(cq, "http://loinc.org|8480-6$gt110"), ["bp-120-80", "bp-150-100"]);
    assert_eq!(q(cq, "http://loinc.org|8480-6$lt130"), ["bp-120-80"]);
    assert!(q(cq, "http://loinc.org|8480-6$lt90").is_empty());
    assert!(q(cq, "http://loinc.org|8462-4$gt110").is_empty(), "no pairing across components");
    assert_eq!(q(cq, "http://loinc.org|8462-4$ge100|http://unitsofmeasure.org|mm[Hg]"), ["bp-150-100"]);
    assert_eq!(q("combo-code-value-quantity", "8480-6$120"), ["bp-120-80"]);
    assert!(q("code-value-quantity", "8480-6$120").is_empty(), "the components are not the Observation's value");

    // Malformed composites are 400s naming the parameter.
    for bad in ["8480-6", "8480-6$1$2", "8480-6$abc", r"8480-6\$120"] {
        let r = s.get(&format!("/Observation?{cq}={}", encode(bad)));
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert!(r.assert_outcome().to_string().contains(cq), "{}", r.body);
    }

    // DocumentReference relationship: the official example appends to itself.
    assert_eq!(ids(s, "/DocumentReference?relationship=appends$DocumentReference/example"), ["example"]);
    assert!(ids(s, "/DocumentReference?relationship=replaces$DocumentReference/example").is_empty());

    // near: two places in New Delhi 0.36 km apart, one 21 km away, and the official examples
    // in Ann Arbor (Location/1) and one with latitude and longitude swapped (Location/hl7).
    for (id, lat, lon) in [("aiims", 28.5672, 77.2100), ("safdarjung", 28.5685, 77.2066), ("gurgaon", 28.4595, 77.0266)] {
        put(s, &json!({"resourceType": "Location", "id": id, "name": id, "position": {"latitude": lat, "longitude": lon}}))
            .unwrap();
    }
    let near = |v: &str| ids(s, &format!("/Location?near={}", encode(v)));
    assert_eq!(near("28.5672|77.2100|1|km"), ["aiims", "safdarjung"]);
    assert_eq!(near("28.5672|77.2100|0.1|km"), ["aiims"]);
    assert_eq!(near("28.5672|77.2100|25|km"), ["aiims", "gurgaon", "safdarjung"]);
    assert_eq!(near("28.5672|77.2100|10|mi"), ["aiims", "safdarjung"], "16 km");
    assert_eq!(near("28.5672|77.2100|15|mi"), ["aiims", "gurgaon", "safdarjung"], "24 km");
    assert_eq!(near("28.5672|77.2100"), ["aiims", "safdarjung"], "10 km by default");
    assert_eq!(near("42.2548|-83.6946|1|km"), ["1"]);
    assert_eq!(near("-83.69471|42.2565|1"), ["hl7"]);
    assert!(near("0|0|100|km").is_empty());
    for bad in ["28.5", "100|0|1", "28.5|77.2|5|furlong", "28.5|x"] {
        let r = s.get(&format!("/Location?near={}", encode(bad)));
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
}
