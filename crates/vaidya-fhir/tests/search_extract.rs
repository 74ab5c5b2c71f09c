//! Index value extraction over real resources: the official R4 examples and the Synthea sample
//! (`../shared/data`). Specific values of specific resources, then invariants over all of them.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use vaidya_fhir::datetime::parse_date_range;
use vaidya_fhir::index::{IndexValue, extract, extract_all, extract_composite, normalize_string};
use vaidya_fhir::search_params::{ParamType, search_param};

fn data_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(name)
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e} (the shared test data is required)", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn example(file: &str) -> Value {
    read_json(&data_dir("fhir-r4-core/examples").join(file))
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e} (the shared test data is required)", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no JSON in {}", dir.display());
    paths
}

/// Every resource of every Synthea transaction bundle.
fn synthea_resources() -> Vec<Value> {
    let mut out = Vec::new();
    for path in json_files(&data_dir("synthea-r4")) {
        let mut bundle = read_json(&path);
        let entries = bundle
            .get_mut("entry")
            .and_then(Value::as_array_mut)
            .expect("a bundle with entries");
        out.extend(entries.iter_mut().map(|e| e["resource"].take()));
    }
    assert!(out.len() > 16_000, "{} Synthea resources", out.len());
    out
}

fn synthea_bundle(file: &str) -> Vec<Value> {
    let mut bundle = read_json(&data_dir("synthea-r4").join(file));
    bundle["entry"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .map(|e| e["resource"].take())
        .collect()
}

/// The index values of `code` on the resource's own type.
fn values(resource: &Value, code: &str) -> Vec<IndexValue> {
    let resource_type = resource["resourceType"].as_str().unwrap();
    let param =
        search_param(resource_type, code).unwrap_or_else(|| panic!("{resource_type}.{code}"));
    extract(resource, param)
}

fn string(exact: &str) -> IndexValue {
    IndexValue::String {
        normalized: normalize_string(exact),
        exact: exact.to_owned(),
    }
}

fn token(system: Option<&str>, code: Option<&str>, text: Option<&str>) -> IndexValue {
    IndexValue::Token {
        system: system.map(Into::into),
        code: code.map(Into::into),
        text: text.map(Into::into),
    }
}

fn code(c: &str) -> IndexValue {
    token(None, Some(c), None)
}

fn reference(r: &str) -> IndexValue {
    let (target_type, target_id) = match r.split_once('/') {
        Some((t, id)) if !r.contains(':') => (Some(t.to_owned()), Some(id.to_owned())),
        _ => (None, None),
    };
    IndexValue::Reference {
        reference: r.to_owned(),
        target_type,
        target_id,
    }
}

fn date(s: &str) -> IndexValue {
    let (start_ms, end_ms) = parse_date_range(s).unwrap();
    IndexValue::Date { start_ms, end_ms }
}

fn date_range(start: &str, end: &str) -> IndexValue {
    IndexValue::Date {
        start_ms: parse_date_range(start).unwrap().0,
        end_ms: parse_date_range(end).unwrap().1,
    }
}

fn quantity(
    value: f64,
    system: Option<&str>,
    code: Option<&str>,
    unit: Option<&str>,
) -> IndexValue {
    IndexValue::Quantity {
        value,
        system: system.map(Into::into),
        code: code.map(Into::into),
        unit: unit.map(Into::into),
    }
}

const UCUM: &str = "http://unitsofmeasure.org";
const LOINC: &str = "http://loinc.org";

// ---------------------------------------------------------------------------------------------
// Official examples

#[test]
fn patient_example() {
    let p = example("Patient-example.json");
    assert_eq!(
        values(&p, "family"),
        [string("Chalmers"), string("Windsor")]
    );
    assert_eq!(
        values(&p, "family")[0],
        IndexValue::String {
            normalized: "chalmers".into(),
            exact: "Chalmers".into()
        }
    );
    assert_eq!(
        values(&p, "given"),
        [string("Peter"), string("James"), string("Jim")],
        "duplicates removed"
    );
    let name = values(&p, "name");
    for part in ["Chalmers", "Peter", "James", "Jim", "Windsor"] {
        assert!(name.contains(&string(part)), "{part}");
    }
    assert_eq!(
        values(&p, "birthdate"),
        [date_range(
            "1974-12-25T00:00:00.000Z",
            "1974-12-25T23:59:59.999Z"
        )]
    );
    assert_eq!(
        values(&p, "identifier"),
        [token(
            Some("urn:oid:1.2.36.146.595.217.0.1"),
            Some("12345"),
            None
        )]
    );
    assert_eq!(values(&p, "gender"), [code("male")]);
    assert_eq!(values(&p, "active"), [code("true")]);
    assert_eq!(
        values(&p, "deceased"),
        [code("false")],
        "deceasedBoolean false"
    );
    // The telecom without a value gives nothing; ContactPoint tokens are the value alone.
    assert_eq!(
        values(&p, "phone"),
        [
            code("(03) 5555 6473"),
            code("(03) 3410 5613"),
            code("(03) 5555 8834")
        ]
    );
    assert!(values(&p, "email").is_empty());
    assert_eq!(values(&p, "address-city"), [string("PleasantVille")]);
    assert_eq!(
        values(&p, "address"),
        [
            "534 Erewhon St",
            "PleasantVille",
            "Rainbow",
            "Vic",
            "3999",
            "534 Erewhon St PeasantVille, Rainbow, Vic  3999"
        ]
        .map(string)
    );
    assert_eq!(values(&p, "address-postalcode"), [string("3999")]);
    assert_eq!(values(&p, "organization"), [reference("Organization/1")]);
    // String normalization collapses the double space of the address text.
    assert!(values(&p, "address").contains(&IndexValue::String {
        normalized: "534 erewhon st peasantville, rainbow, vic 3999".into(),
        exact: "534 Erewhon St PeasantVille, Rainbow, Vic  3999".into()
    }));
}

#[test]
fn extract_all_covers_own_and_common_parameters_but_not_store_managed_ones() {
    let mut p = example("Patient-example.json");
    p["meta"] = json!({"lastUpdated": "2024-01-01T00:00:00Z", "tag": [{"system": "urn:t", "code": "vip"}], "profile": ["http://x/p"]});
    let all = extract_all(&p);
    let codes: Vec<&str> = all.iter().map(|(param, _)| param.code.as_str()).collect();
    for expected in [
        "family",
        "given",
        "birthdate",
        "identifier",
        "gender",
        "_tag",
        "_profile",
        "deceased",
    ] {
        assert!(codes.contains(&expected), "{expected}");
    }
    assert!(!codes.contains(&"_id") && !codes.contains(&"_lastUpdated"));
    assert!(all.contains(&(
        search_param("Patient", "_tag").unwrap(),
        token(Some("urn:t"), Some("vip"), None)
    )));
    assert!(all.contains(&(
        search_param("Patient", "_profile").unwrap(),
        IndexValue::Uri("http://x/p".into())
    )));
    // The same values as extracting parameter by parameter.
    for (param, value) in &all {
        assert!(extract(&p, param).contains(value), "{}", param.code);
    }
    assert!(extract_all(&json!({"id": "no-type"})).is_empty());
    assert!(extract_all(&json!({"resourceType": "NotAType"})).is_empty());
}

#[test]
fn observation_example() {
    let o = example("Observation-example.json");
    let codes = values(&o, "code");
    assert_eq!(codes.len(), 4);
    assert_eq!(
        codes[0],
        token(Some(LOINC), Some("29463-7"), Some("body weight")),
        "display normalized for :text"
    );
    assert!(codes.contains(&token(
        Some("http://snomed.info/sct"),
        Some("27113001"),
        Some("body weight")
    )));
    assert_eq!(
        values(&o, "value-quantity"),
        [quantity(185.0, Some(UCUM), Some("[lb_av]"), Some("lbs"))]
    );
    assert!(values(&o, "value-concept").is_empty());
    assert_eq!(values(&o, "subject"), [reference("Patient/example")]);
    assert_eq!(
        values(&o, "subject")[0],
        IndexValue::Reference {
            reference: "Patient/example".into(),
            target_type: Some("Patient".into()),
            target_id: Some("example".into())
        }
    );
    assert_eq!(values(&o, "patient"), [reference("Patient/example")]);
    assert_eq!(values(&o, "encounter"), [reference("Encounter/example")]);
    assert_eq!(values(&o, "date"), [date("2016-03-28")]);
    assert_eq!(
        values(&o, "category"),
        [token(
            Some("http://terminology.hl7.org/CodeSystem/observation-category"),
            Some("vital-signs"),
            Some("vital signs")
        )]
    );
    assert_eq!(values(&o, "status"), [code("final")]);
}

#[test]
fn observation_components_and_composites() {
    let o = example("Observation-blood-pressure.json");
    let component_codes = values(&o, "component-code");
    assert!(component_codes.contains(&token(
        Some(LOINC),
        Some("8480-6"),
        Some("systolic blood pressure")
    )));
    assert!(component_codes.contains(&token(
        Some(LOINC),
        Some("8462-4"),
        Some("diastolic blood pressure")
    )));
    let mmhg = |v: f64| quantity(v, Some(UCUM), Some("mm[Hg]"), Some("mmHg"));
    assert_eq!(
        values(&o, "component-value-quantity"),
        [mmhg(107.0), mmhg(60.0)]
    );
    assert_eq!(
        values(&o, "combo-value-quantity"),
        [mmhg(107.0), mmhg(60.0)]
    );
    assert!(values(&o, "value-quantity").is_empty());
    // The CodeableConcept's text is its own token, for :text.
    assert!(values(&o, "code").contains(&token(
        None,
        None,
        Some("blood pressure systolic & diastolic")
    )));
    assert_eq!(
        values(&o, "_profile"),
        [IndexValue::Uri(
            "http://hl7.org/fhir/StructureDefinition/vitalsigns".into()
        )]
    );
    assert!(
        values(&o, "based-on").is_empty(),
        "an identifier-only reference gives no reference value"
    );

    let composite = extract_composite(
        &o,
        search_param("Observation", "component-code-value-quantity").unwrap(),
    );
    assert_eq!(composite.len(), 2, "one per component");
    assert!(composite[0][0].contains(&token(
        Some(LOINC),
        Some("8480-6"),
        Some("systolic blood pressure")
    )));
    assert_eq!(composite[0][1], [mmhg(107.0)]);
    assert!(composite[1][0].contains(&token(
        Some(LOINC),
        Some("8462-4"),
        Some("diastolic blood pressure")
    )));
    assert_eq!(composite[1][1], [mmhg(60.0)]);
    // On the Observation itself (no value[x]) the code-value composite has nothing to offer.
    assert!(
        extract_composite(
            &o,
            search_param("Observation", "code-value-quantity").unwrap()
        )
        .is_empty()
    );
    let combo = extract_composite(
        &o,
        search_param("Observation", "combo-code-value-quantity").unwrap(),
    );
    assert_eq!(
        combo.len(),
        2,
        "the components, through the untyped `value.as(Quantity)`"
    );
    // Not composite: nothing.
    assert!(extract_composite(&o, search_param("Observation", "code").unwrap()).is_empty());
}

#[test]
fn appointments_slots_and_schedules() {
    let a = example("Appointment-examplereq.json");
    assert_eq!(values(&a, "slot"), [reference("Slot/example")]);
    assert_eq!(
        values(&a, "actor"),
        [reference("Patient/example"), reference("Location/1")]
    );
    assert_eq!(values(&a, "patient"), [reference("Patient/example")]);
    assert_eq!(values(&a, "location"), [reference("Location/1")]);
    assert!(values(&a, "practitioner").is_empty());
    assert!(
        values(&a, "date").is_empty(),
        "a proposed appointment has no start"
    );
    assert_eq!(
        values(&a, "identifier"),
        [token(
            Some("http://example.org/sampleappointment-identifier"),
            Some("123"),
            None
        )]
    );
    assert_eq!(
        values(&a, "reason-code"),
        [
            token(Some("http://snomed.info/sct"), Some("413095006"), None),
            token(None, None, Some("clinical review"))
        ]
    );

    let a = example("Appointment-example.json");
    assert_eq!(
        values(&a, "date"),
        [date_range(
            "2013-12-10T09:00:00.000Z",
            "2013-12-10T09:00:00.999Z"
        )]
    );
    assert_eq!(
        values(&a, "practitioner"),
        [reference("Practitioner/example")]
    );
    assert_eq!(values(&a, "status"), [code("booked")]);
    assert_eq!(
        values(&a, "based-on"),
        [reference("ServiceRequest/myringotomy")]
    );

    let s = example("Slot-example.json");
    assert_eq!(values(&s, "schedule"), [reference("Schedule/example")]);
    assert_eq!(values(&s, "start"), [date("2013-12-25T09:15:00Z")]);
    assert_eq!(values(&s, "status"), [code("free")]);
    assert_eq!(
        values(&s, "appointment-type"),
        [token(
            Some("http://terminology.hl7.org/CodeSystem/v2-0276"),
            Some("WALKIN"),
            Some("a previously unscheduled walk-in visit")
        )]
    );

    let schedule = example("Schedule-example.json");
    assert!(!values(&schedule, "actor").is_empty());
    assert_eq!(values(&schedule, "active"), [code("true")]);
}

#[test]
fn billing_resources() {
    let c = example("ChargeItem-example.json");
    assert_eq!(
        values(&c, "factor-override"),
        [IndexValue::Number { value: 0.8 }]
    );
    assert_eq!(
        values(&c, "price-override"),
        [quantity(
            40.0,
            Some("urn:iso:std:iso:4217"),
            Some("EUR"),
            None
        )]
    );
    assert_eq!(values(&c, "quantity"), [quantity(1.0, None, None, None)]);
    // +01:00 moves the period an hour earlier in UTC.
    assert_eq!(
        values(&c, "occurrence"),
        [date_range(
            "2017-01-25T07:00:00.000Z",
            "2017-01-25T11:35:00.999Z"
        )]
    );
    assert!(
        values(&c, "performing-organization").is_empty(),
        "identifier-only reference"
    );
    assert_eq!(values(&c, "context"), [reference("Encounter/example")]);

    let i = example("Invoice-example.json");
    assert_eq!(
        values(&i, "totalnet"),
        [quantity(
            40.0,
            Some("urn:iso:std:iso:4217"),
            Some("EUR"),
            None
        )]
    );
    assert_eq!(
        values(&i, "totalgross"),
        [quantity(
            48.0,
            Some("urn:iso:std:iso:4217"),
            Some("EUR"),
            None
        )]
    );
    assert_eq!(values(&i, "account"), [reference("Account/example")]);
    assert_eq!(values(&i, "date"), [date("2017-01-25T08:00:00+01:00")]);
}

#[test]
fn open_period_and_bundle_composition() {
    let mut e = example("Encounter-example.json");
    e["period"] = json!({"start": "2024-03-01T10:00:00+05:30"});
    assert_eq!(
        values(&e, "date"),
        [IndexValue::Date {
            start_ms: parse_date_range("2024-03-01T04:30:00Z").unwrap().0,
            end_ms: i64::MAX
        }]
    );
    assert_eq!(
        values(&e, "class"),
        [token(
            Some("http://terminology.hl7.org/CodeSystem/v3-ActCode"),
            Some("IMP"),
            Some("inpatient encounter")
        )]
    );

    let bundle = json!({"resourceType": "Bundle", "type": "document", "entry": [
        {"resource": {"resourceType": "Composition", "id": "c1"}}, {"resource": {"resourceType": "Patient", "id": "p1"}}]});
    assert_eq!(
        values(&bundle, "composition"),
        [reference("Composition/c1")]
    );
}

#[test]
fn references_keep_absolute_and_urn_forms_whole() {
    let o = json!({"resourceType": "Observation", "subject": {"reference": "https://other.example/fhir/Patient/7"},
        "performer": [{"reference": "urn:uuid:9d4b"}, {"reference": "Practitioner/3/_history/2"}]});
    assert_eq!(
        values(&o, "subject"),
        [IndexValue::Reference {
            reference: "https://other.example/fhir/Patient/7".into(),
            target_type: None,
            target_id: None
        }]
    );
    assert_eq!(
        values(&o, "patient"),
        values(&o, "subject"),
        "the absolute URL still resolves as a Patient"
    );
    assert_eq!(
        values(&o, "performer"),
        [
            IndexValue::Reference {
                reference: "urn:uuid:9d4b".into(),
                target_type: None,
                target_id: None
            },
            IndexValue::Reference {
                reference: "Practitioner/3/_history/2".into(),
                target_type: Some("Practitioner".into()),
                target_id: Some("3".into())
            },
        ]
    );
}

#[test]
fn devanagari_names_are_indexed_intact() {
    let p = json!({"resourceType": "Patient", "name": [{"family": "शर्मा", "given": ["अनिल", "कुमार"], "text": "अनिल कुमार  शर्मा"}]});
    assert_eq!(
        values(&p, "family"),
        [IndexValue::String {
            normalized: "शर्मा".into(),
            exact: "शर्मा".into()
        }]
    );
    let name = values(&p, "name");
    assert!(name.contains(&IndexValue::String {
        normalized: "अनिल कुमार शर्मा".into(),
        exact: "अनिल कुमार  शर्मा".into()
    }));
    // A search for the first syllables (default string search: starts-with) still matches.
    let IndexValue::String { normalized, .. } = &values(&p, "family")[0] else {
        unreachable!()
    };
    assert!(normalized.starts_with(&normalize_string("शर्")));

    let latin = json!({"resourceType": "Patient", "name": [{"family": "Pérez-Núñez"}]});
    assert_eq!(
        values(&latin, "family"),
        [IndexValue::String {
            normalized: "perez-nunez".into(),
            exact: "Pérez-Núñez".into()
        }]
    );
}

// ---------------------------------------------------------------------------------------------
// Synthea

#[test]
fn a_synthea_record() {
    let resources = synthea_bundle("Abdul_Koepp_e925b0f3-8006-43f6-aa31-94bd215e55e7.json");
    let by_id = |id: &str| {
        resources
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("{id}"))
    };
    let patient_ref = reference("urn:uuid:018f428e-34f6-4707-8009-5ad742f901e7");

    let p = by_id("018f428e-34f6-4707-8009-5ad742f901e7");
    assert_eq!(values(p, "family"), [string("Koepp")]);
    assert_eq!(
        values(p, "name"),
        [string("Koepp"), string("Abdul"), string("Mr.")]
    );
    assert_eq!(values(p, "birthdate"), [date("1956-08-03")]);
    assert!(values(p, "identifier").contains(&token(
        Some("http://hl7.org/fhir/sid/us-ssn"),
        Some("999-22-1962"),
        Some("social security number")
    )));
    assert_eq!(values(p, "phone"), [code("555-978-4581")]);
    assert_eq!(values(p, "address-postalcode"), [string("01940")]);
    assert_eq!(
        values(p, "_tag"),
        [token(
            Some("https://smarthealthit.org/tags"),
            Some("synthea-5-2019"),
            None
        )]
    );
    assert_eq!(
        values(p, "deceased"),
        [code("false")],
        "no deceased[x] at all"
    );
    // Synthea writes patient-mothersMaidenName; R4's parameter names a different extension URL.
    assert!(values(p, "mothersMaidenName").is_empty());

    let o = by_id("af5597a6-304d-4c8f-b596-60d17d445714");
    assert_eq!(
        values(o, "code"),
        [
            token(Some(LOINC), Some("8302-2"), Some("body height")),
            token(None, None, Some("body height"))
        ]
    );
    assert_eq!(
        values(o, "value-quantity"),
        [quantity(
            176.35499866729558,
            Some(UCUM),
            Some("cm"),
            Some("cm")
        )]
    );
    assert_eq!(values(o, "subject"), std::slice::from_ref(&patient_ref));
    assert!(
        values(o, "patient").is_empty(),
        "urn:uuid references do not say they point to a Patient"
    );
    assert_eq!(values(o, "date"), [date("2011-10-14T23:37:54+00:00")]);

    let e = by_id("abbc5979-3aca-43fe-91a6-8065b7e4a90f");
    assert_eq!(
        values(e, "date"),
        [date_range(
            "1991-06-07T23:37:54+00:00",
            "1991-06-07T23:52:54+00:00"
        )]
    );
    assert_eq!(
        values(e, "class"),
        [token(
            Some("http://terminology.hl7.org/CodeSystem/v3-ActCode"),
            Some("AMB"),
            None
        )]
    );

    let c = by_id("e5e50c51-acd9-4716-b4dc-4e245ca9f8c2");
    assert_eq!(values(c, "onset-date"), [date("1991-06-07T23:37:54+00:00")]);
    assert!(values(c, "onset-age").is_empty());
    assert_eq!(
        values(c, "clinical-status"),
        [token(
            Some("http://terminology.hl7.org/CodeSystem/condition-clinical"),
            Some("active"),
            None
        )]
    );

    let proc = by_id("4df91bab-a20c-49f0-a66c-3d0e3f4fd0d2");
    assert_eq!(
        values(proc, "date"),
        [date_range(
            "2012-11-25T23:37:54+00:00",
            "2012-11-26T00:19:54+00:00"
        )]
    );

    let m = by_id("288b3dc6-1b86-4447-8826-8eb2de56b933");
    assert_eq!(
        values(m, "code")[0],
        token(
            Some("http://www.nlm.nih.gov/research/umls/rxnorm"),
            Some("310965"),
            Some("ibuprofen 200 mg oral tablet")
        )
    );
    assert_eq!(values(m, "authoredon"), [date("2017-03-21T23:37:54+00:00")]);
    assert_eq!(values(m, "intent"), [code("order")]);

    let i = by_id("2c074792-6eab-473d-9574-c68436bfa56e");
    assert_eq!(
        values(i, "vaccine-code")[0],
        token(
            Some("http://hl7.org/fhir/sid/cvx"),
            Some("140"),
            Some("influenza, seasonal, injectable, preservative free")
        )
    );
    assert_eq!(values(i, "patient"), [patient_ref]);
}

/// Structural checks on every value extracted from every Synthea resource and official example.
fn check_invariants(resource: &Value) -> usize {
    let all = extract_all(resource);
    let mut seen: BTreeMap<&str, Vec<&IndexValue>> = BTreeMap::new();
    let resource_type = resource["resourceType"].as_str().unwrap();
    for (param, value) in &all {
        assert!(
            param.base == resource_type || param.common,
            "{resource_type}: {} from {}",
            param.code,
            param.base
        );
        let same_param = seen.entry(param.code.as_str()).or_default();
        assert!(
            !same_param.contains(&value),
            "{resource_type}.{}: duplicate {value:?}",
            param.code
        );
        same_param.push(value);
        let kind_matches = match value {
            IndexValue::String { normalized, exact } => {
                assert_eq!(normalized, &normalize_string(exact));
                assert!(!normalized.is_empty());
                param.kind == ParamType::String
            }
            IndexValue::Token { system, code, text } => {
                assert!(system.is_some() || code.is_some() || text.is_some());
                param.kind == ParamType::Token
            }
            IndexValue::Reference {
                reference,
                target_type,
                target_id,
            } => {
                assert!(!reference.is_empty());
                if let (Some(t), Some(id)) = (target_type, target_id) {
                    assert!(reference.starts_with(&format!("{t}/{id}")), "{reference}");
                }
                param.kind == ParamType::Reference
            }
            IndexValue::Date { start_ms, end_ms } => {
                assert!(start_ms <= end_ms, "{resource_type}.{}", param.code);
                param.kind == ParamType::Date
            }
            IndexValue::Number { value } => value.is_finite() && param.kind == ParamType::Number,
            IndexValue::Quantity { value, .. } => {
                value.is_finite() && param.kind == ParamType::Quantity
            }
            IndexValue::Uri(u) => !u.is_empty() && param.kind == ParamType::Uri,
            IndexValue::Composite { parts } => {
                assert_eq!(parts.len(), 2, "{resource_type}.{}", param.code);
                assert!(matches!(parts[0], IndexValue::Token { .. }));
                param.kind == ParamType::Composite
            }
            IndexValue::Position { latitude, longitude } => {
                latitude.abs() <= 90.0 && longitude.abs() <= 180.0 && param.kind == ParamType::Special
            }
        };
        assert!(
            kind_matches,
            "{resource_type}.{}: {value:?} for a {:?} parameter",
            param.code, param.kind
        );
    }
    all.len()
}

#[test]
fn invariants_over_all_synthea_resources() {
    let resources = synthea_resources();
    let mut total = 0;
    for r in &resources {
        total += check_invariants(r);
    }
    assert!(total > 150_000, "{total} values");

    // What every resource of a kind must have indexed.
    let mut with_value_quantity = 0;
    let mut with_value_concept = 0;
    for r in &resources {
        match r["resourceType"].as_str().unwrap() {
            "Observation" => {
                assert!(
                    values(r, "code").iter().any(
                        |v| matches!(v, IndexValue::Token { system: Some(s), .. } if s == LOINC)
                    ),
                    "{}",
                    r["id"]
                );
                assert_eq!(values(r, "subject").len(), 1);
                assert_eq!(values(r, "date").len(), 1);
                with_value_quantity += usize::from(!values(r, "value-quantity").is_empty());
                with_value_concept += usize::from(!values(r, "value-concept").is_empty());
            }
            "Patient" => {
                assert_eq!(values(r, "birthdate").len(), 1);
                assert!(!values(r, "family").is_empty());
                assert_eq!(values(r, "gender").len(), 1);
                assert!(values(r, "identifier").len() >= 2);
            }
            "Encounter" => {
                assert_eq!(values(r, "date").len(), 1);
                assert_eq!(values(r, "subject").len(), 1);
            }
            "Immunization" => assert_eq!(values(r, "date").len(), 1),
            "Condition" => assert_eq!(values(r, "onset-date").len(), 1),
            _ => {}
        }
    }
    // Synthea Observations are mostly quantities, some coded (e.g. smoking status), and the
    // blood pressure panels carry their values in components only.
    assert!(with_value_quantity > 5_000, "{with_value_quantity}");
    assert!(with_value_concept > 100, "{with_value_concept}");
}

#[test]
fn invariants_over_all_official_examples() {
    let mut types = 0;
    let mut total = 0;
    for path in json_files(&data_dir("fhir-r4-core/examples")) {
        let resource = read_json(&path);
        if search_param(resource["resourceType"].as_str().unwrap(), "_id").is_some() {
            total += check_invariants(&resource);
            types += 1;
        }
    }
    assert_eq!(types, 291);
    assert!(total > 3_000, "{total} values");
}
