//! The generated search parameter definitions against the official R4 SearchParameters in
//! `../shared/data/fhir-r4-core/SearchParameter`: every definition is either available (with a
//! compiled expression) or explicitly listed here as left out, with the reason.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use vaidya_fhir::fhirpath::Expression;
use vaidya_fhir::search_params::{
    ParamType, resource_types, search_param, search_params, unsupported,
};

fn core_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/fhir-r4-core")
}

/// All SearchParameter resources of the R4 package; panics if the data is missing, so that a
/// broken checkout cannot pass as "nothing to test".
fn definitions() -> Vec<Value> {
    let dir = core_dir().join("SearchParameter");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (the FHIR R4 core data is required)", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    assert_eq!(
        paths.len(),
        1400,
        "the R4 4.0.1 package has 1400 SearchParameters"
    );
    paths
        .iter()
        .map(|p| {
            serde_json::from_str(&std::fs::read_to_string(p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        })
        .collect()
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn bases(v: &Value) -> Vec<&str> {
    v.get("base")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The definitions the generator leaves out, and why.
const LEFT_OUT: &[(&str, &str)] = &[
    // No `base` and no `expression`: XPath-only extension parameters of the terminology resources.
    ("codesystem-extensions-CodeSystem-author", "no base"),
    ("codesystem-extensions-CodeSystem-effective", "no base"),
    ("codesystem-extensions-CodeSystem-end", "no base"),
    ("codesystem-extensions-CodeSystem-keyword", "no base"),
    ("codesystem-extensions-CodeSystem-workflow", "no base"),
    ("valueset-extensions-ValueSet-author", "no base"),
    ("valueset-extensions-ValueSet-effective", "no base"),
    ("valueset-extensions-ValueSet-end", "no base"),
    ("valueset-extensions-ValueSet-keyword", "no base"),
    ("valueset-extensions-ValueSet-workflow", "no base"),
    // Examples of the SearchParameter resource, not definitions: one redefines `_id` as `id`,
    // one duplicates Condition `subject`, one has a DocumentReference expression on Patient.
    ("example", "example"),
    ("example-reference", "example"),
    ("example-extension", "example"),
    // Defined in prose only (age is computed from birthDate at search time).
    ("patient-extensions-Patient-age", "no expression"),
    (
        "patient-extensions-Patient-birthOrderBoolean",
        "no expression",
    ),
];

/// Expressions of the R4 package that the FHIRPath subset cannot parse: none. Listed
/// explicitly so that a regression names the expression.
const UNPARSEABLE: &[&str] = &[];

#[test]
fn every_r4_expression_parses() {
    let mut expressions = 0;
    let mut failures = Vec::new();
    for def in definitions() {
        let components = def
            .get("component")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let sources = std::iter::once(str_field(&def, "expression").to_owned())
            .chain(
                components
                    .iter()
                    .map(|c| str_field(c, "expression").to_owned()),
            )
            .filter(|s| !s.is_empty());
        for source in sources {
            expressions += 1;
            if let Err(e) = Expression::parse(&source) {
                failures.push(format!("{}: {source}: {e}", str_field(&def, "id")));
            }
        }
    }
    // 1384 parameter expressions (whole unions, before splitting per base) + 96 components.
    assert_eq!(expressions, 1384 + 96);
    assert_eq!(failures, UNPARSEABLE, "expressions that do not parse");
}

#[test]
fn every_definition_is_available_or_listed_as_left_out() {
    let left_out: BTreeSet<&str> = LEFT_OUT.iter().map(|(id, _)| *id).collect();
    let mut available = 0;
    for def in definitions() {
        let id = str_field(&def, "id");
        if left_out.contains(id) {
            for base in bases(&def)
                .into_iter()
                .filter(|b| resource_types().iter().any(|t| t == b))
            {
                if let Some(p) = search_param(base, str_field(&def, "code")) {
                    assert_ne!(p.url, str_field(&def, "url"), "{id} should be left out");
                }
            }
            continue;
        }
        for base in bases(&def) {
            // Common parameters are looked up through a concrete type.
            let lookup_type = if base == "Resource" || base == "DomainResource" {
                "Patient"
            } else {
                base
            };
            let code = str_field(&def, "code");
            let p = search_param(lookup_type, code)
                .unwrap_or_else(|| panic!("{id}: {base}.{code} missing"));
            assert_eq!(p.url, str_field(&def, "url"), "{base}.{code}");
            assert_eq!(p.kind.as_str(), str_field(&def, "type"), "{base}.{code}");
            assert_eq!(p.base, base);
            assert_eq!(p.common, lookup_type != base);
            // The per-base expression is made of branches of the original.
            let original = str_field(&def, "expression");
            assert_eq!(
                p.expression.is_empty(),
                original.is_empty(),
                "{base}.{code}"
            );
            for branch in p.expression.split(" | ").filter(|b| !b.is_empty()) {
                assert!(
                    original.contains(branch),
                    "{base}.{code}: `{branch}` not in `{original}`"
                );
                // A branch's leading type, if any, is this base's (or a common one).
                let head = branch
                    .trim_start_matches('(')
                    .split(['.', ' '])
                    .next()
                    .unwrap();
                if head.starts_with(|c: char| c.is_ascii_uppercase()) {
                    assert!(
                        [base, "Resource", "DomainResource"].contains(&head),
                        "{base}.{code}: `{branch}`"
                    );
                }
            }
            available += 1;
        }
    }
    assert_eq!(
        available, 1716,
        "(base, code) pairs from the R4 definitions"
    );
}

/// The resource types Vaidya handles: every one of their parameters must work.
const HOSPITAL_TYPES: [&str; 23] = [
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Location",
    "HealthcareService",
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
    "Condition",
    "Procedure",
    "MedicationRequest",
    "Immunization",
    "AllergyIntolerance",
];

/// Common parameters the server implements itself: they have no expression to compile.
const WITHOUT_EXPRESSION: [&str; 7] = [
    "_content", "_filter", "_has", "_list", "_query", "_text", "_type",
];

#[test]
fn every_parameter_of_the_hospital_types_compiles_with_full_type_information() {
    let definitions = definitions();
    for t in HOSPITAL_TYPES {
        let mut own = 0;
        for p in search_params(t) {
            if p.expression.is_empty() {
                assert!(
                    WITHOUT_EXPRESSION.contains(&p.code.as_str()),
                    "{t}.{}: no expression",
                    p.code
                );
                continue;
            }
            let compiled = p
                .compiled()
                .unwrap_or_else(|| panic!("{t}.{} did not compile", p.code));
            assert!(
                compiled.warnings().is_empty(),
                "{t}.{}: {:?}",
                p.code,
                compiled.warnings()
            );
            for c in &p.components {
                assert!(
                    c.compiled().warnings().is_empty(),
                    "{t}.{} component {}: {:?}",
                    p.code,
                    c.expression,
                    c.compiled().warnings()
                );
            }
            own += usize::from(!p.common);
        }
        // As many own parameters as the R4 package defines for the type, minus those left out.
        let expected = definitions
            .iter()
            .filter(|d| {
                bases(d).contains(&t) && !LEFT_OUT.iter().any(|(id, _)| *id == str_field(d, "id"))
            })
            .count();
        assert_eq!(own, expected, "{t}");
    }
}

#[test]
fn every_parameter_of_every_type_compiles_without_warnings() {
    assert!(unsupported().is_empty(), "{:#?}", unsupported());
    let mut compiled = 0;
    for t in resource_types() {
        for p in search_params(t).filter(|p| !p.expression.is_empty()) {
            let e = p.compiled().unwrap_or_else(|| panic!("{t}.{}", p.code));
            assert!(
                e.warnings().is_empty(),
                "{t}.{}: {:?}",
                p.code,
                e.warnings()
            );
            compiled += 1;
        }
    }
    // 146 types x 5 common parameters with expressions (_id, _lastUpdated, _tag, _profile,
    // _security, _source: 6) plus 1706 own parameters with expressions.
    assert_eq!(compiled, 146 * 6 + 1706);
}

#[test]
fn composite_parameters_have_typed_compiled_components() {
    let mut composites = 0;
    for t in resource_types() {
        for p in search_params(t).filter(|p| p.kind == ParamType::Composite) {
            composites += 1;
            assert!(p.components.len() >= 2, "{t}.{}", p.code);
            for c in &p.components {
                assert!(
                    !matches!(c.kind, ParamType::Composite | ParamType::Special),
                    "{t}.{}",
                    p.code
                );
                assert_eq!(c.compiled().source(), c.expression);
            }
        }
    }
    assert_eq!(composites, 72);
    let p = search_param("Observation", "code-value-quantity").unwrap();
    let parts: Vec<(&str, ParamType)> = p
        .components
        .iter()
        .map(|c| (c.expression.as_str(), c.kind))
        .collect();
    assert_eq!(
        parts,
        [
            ("code", ParamType::Token),
            ("value.as(Quantity)", ParamType::Quantity)
        ]
    );
}

#[test]
fn reference_parameters_name_their_targets() {
    // The genetics extension parameter's definition lists no target (it is a Condition).
    let untargeted = [("DiagnosticReport", "assessed-condition")];
    for t in HOSPITAL_TYPES {
        for p in search_params(t).filter(|p| p.kind == ParamType::Reference) {
            assert_eq!(
                p.targets.is_empty(),
                untargeted.contains(&(t, p.code.as_str())),
                "{t}.{}",
                p.code
            );
            for target in &p.targets {
                assert!(
                    resource_types().contains(target),
                    "{t}.{} -> {target}",
                    p.code
                );
            }
        }
    }
    assert_eq!(
        search_param("Appointment", "slot").unwrap().targets,
        ["Slot"]
    );
    assert_eq!(
        search_param("Slot", "schedule").unwrap().targets,
        ["Schedule"]
    );
}
