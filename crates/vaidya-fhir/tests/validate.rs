//! Resource validation against the R4 model: every official example and every Synthea
//! resource must pass, and each kind of defect must be reported at the right place.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use vaidya_fhir::outcome::{Issue, IssueType};
use vaidya_fhir::validate::{MAX_ISSUES, validate_resource};

/// `../shared/data/<name>` beside the checkout; a missing directory fails the test loudly.
fn shared_data(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(name);
    assert!(
        dir.is_dir(),
        "shared test data missing: {} (the repo must be checked out beside `shared`)",
        dir.display()
    );
    dir
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no JSON files in {}", dir.display());
    files
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn describe(issues: &[Issue]) -> String {
    issues
        .iter()
        .map(|issue| format!("    {issue}\n"))
        .collect()
}

/// Official examples that are genuinely invalid, with the one issue each must report. Both
/// reference a resource type that the element's definition does not allow (the official Java
/// validator reports the same); they are errors in the examples, not in the validator.
const INVALID_OFFICIAL_EXAMPLES: &[(&str, &str, &str)] = &[
    (
        "MedicationRequest-medrx0301.json",
        "MedicationRequest.dispenseRequest.performer.reference",
        "a reference to Practitioner is not allowed here (allowed: Organization)",
    ),
    (
        "Observation-clinical-gender.json",
        "Observation.performer[0].reference",
        "a reference to Encounter is not allowed here",
    ),
];

#[test]
fn official_examples_are_valid() {
    let mut failures = String::new();
    let mut count = 0;
    for path in json_files(&shared_data("fhir-r4-core/examples")) {
        let resource = read_json(&path);
        count += 1;
        let file_name = path.file_name().unwrap().to_str().unwrap();
        let result = validate_resource(&resource);
        match (
            INVALID_OFFICIAL_EXAMPLES
                .iter()
                .find(|(name, ..)| *name == file_name),
            result,
        ) {
            (None, Ok(())) => {}
            (None, Err(issues)) => {
                failures.push_str(&format!("{file_name}:\n{}", describe(&issues)))
            }
            (Some((_, expression, message)), Err(issues))
                if issues.len() == 1
                    && issues[0].expression.as_deref() == Some(*expression)
                    && issues[0].diagnostics.contains(message) => {}
            (Some(_), result) => {
                failures.push_str(&format!("{file_name}: not the known issue: {result:?}\n"))
            }
        }
    }
    assert!(
        count > 250,
        "expected the official examples, found {count} files"
    );
    assert!(
        failures.is_empty(),
        "official examples failed validation:\n{failures}"
    );
}

#[test]
fn synthea_resources_are_valid() {
    let mut failures = String::new();
    let mut count = 0;
    for path in json_files(&shared_data("synthea-r4")) {
        let bundle = read_json(&path);
        let entries = bundle["entry"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: no entries", path.display()));
        for (index, entry) in entries.iter().enumerate() {
            count += 1;
            if let Err(issues) = validate_resource(&entry["resource"]) {
                failures.push_str(&format!(
                    "{} entry {index}:\n{}",
                    path.display(),
                    describe(&issues)
                ));
            }
        }
    }
    assert!(
        count > 15_000,
        "expected the Synthea resources, found {count}"
    );
    assert!(
        failures.is_empty(),
        "Synthea resources failed validation:\n{failures}"
    );
}

/// A defective resource and the single issue it must produce.
struct Case {
    name: &'static str,
    resource: Value,
    expression: Option<&'static str>,
    code: IssueType,
    message: &'static str,
}

fn case(
    name: &'static str,
    resource: Value,
    expression: &'static str,
    code: IssueType,
    message: &'static str,
) -> Case {
    Case {
        name,
        resource,
        expression: Some(expression),
        code,
        message,
    }
}

fn observation(extra: Value) -> Value {
    let mut resource = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": { "coding": [{ "system": "http://loinc.org", "code": "8867-4" }] }
    });
    for (key, value) in extra.as_object().unwrap() {
        if value.is_null() {
            resource.as_object_mut().unwrap().remove(key);
        } else {
            resource[key] = value.clone();
        }
    }
    resource
}

fn defective_resources() -> Vec<Case> {
    use IssueType::*;
    vec![
        case(
            "unknown element",
            json!({"resourceType": "Patient", "foo": 1}),
            "Patient.foo",
            Structure,
            "unknown element 'foo'",
        ),
        case(
            "unknown nested element",
            json!({"resourceType": "Patient", "name": [{"family": "X", "surname": "Y"}]}),
            "Patient.name[0].surname",
            Structure,
            "unknown element 'surname'",
        ),
        case(
            "boolean as string",
            json!({"resourceType": "Patient", "active": "true"}),
            "Patient.active",
            Structure,
            "expected a boolean",
        ),
        case(
            "number for a string",
            json!({"resourceType": "Patient", "birthDate": 2021}),
            "Patient.birthDate",
            Structure,
            "expected a string (date), found a number",
        ),
        case(
            "decimal as string",
            observation(json!({"valueQuantity": {"value": "5.4"}})),
            "Observation.valueQuantity.value",
            Structure,
            "expected a number (decimal), found a string",
        ),
        case(
            "fractional integer",
            observation(json!({"valueInteger": 1.5})),
            "Observation.valueInteger",
            Structure,
            "expected an integer",
        ),
        case(
            "object for a primitive",
            json!({"resourceType": "Patient", "gender": {"code": "male"}}),
            "Patient.gender",
            Structure,
            "expected a string (code), found an object",
        ),
        case(
            "string for an object",
            observation(json!({"subject": "Patient/1"})),
            "Observation.subject",
            Structure,
            "expected an object, found a string",
        ),
        case(
            "missing status",
            observation(json!({"status": null})),
            "Observation",
            Required,
            "minimum cardinality 1 not met for 'status'",
        ),
        case(
            "missing code",
            observation(json!({"code": null})),
            "Observation",
            Required,
            "minimum cardinality 1 not met for 'code'",
        ),
        case(
            "missing required choice",
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "component": [{"code": {"text": "y"}, "valueString": "z"}, {"valueString": "z"}]}),
            "Observation.component[1]",
            Required,
            "minimum cardinality 1 not met for 'code'",
        ),
        case(
            "extension without url",
            json!({"resourceType": "Patient", "extension": [{"valueString": "x"}]}),
            "Patient.extension[0]",
            Required,
            "minimum cardinality 1 not met for 'url'",
        ),
        case(
            "bad date",
            json!({"resourceType": "Patient", "birthDate": "2021-13-45"}),
            "Patient.birthDate",
            Value,
            "'2021-13-45' is not a valid date",
        ),
        case(
            "date that does not exist",
            json!({"resourceType": "Patient", "birthDate": "2021-02-29"}),
            "Patient.birthDate",
            Value,
            "is not a valid date",
        ),
        case(
            "dateTime without zone",
            observation(json!({"effectiveDateTime": "2021-03-04T10:11:12"})),
            "Observation.effectiveDateTime",
            Value,
            "is not a valid dateTime",
        ),
        case(
            "instant without zone",
            observation(json!({"issued": "2015-02-07T13:28:17"})),
            "Observation.issued",
            Value,
            "'2015-02-07T13:28:17' is not a valid instant",
        ),
        case(
            "bad time",
            observation(json!({"valueTime": "25:00:00"})),
            "Observation.valueTime",
            Value,
            "not a valid time",
        ),
        case(
            "invalid code",
            json!({"resourceType": "Patient", "gender": "unknown-gender"}),
            "Patient.gender",
            CodeInvalid,
            "code 'unknown-gender' is not in the required value set http://hl7.org/fhir/ValueSet/administrative-gender",
        ),
        case(
            "code with a trailing space",
            json!({"resourceType": "Patient", "gender": "male "}),
            "Patient.gender",
            Value,
            "is not a valid code",
        ),
        case(
            "invalid code in a data type",
            json!({"resourceType": "Patient", "name": [{"use": "alias", "text": "x"}]}),
            "Patient.name[0].use",
            CodeInvalid,
            "not in the required value set http://hl7.org/fhir/ValueSet/name-use",
        ),
        case(
            "abstract code",
            json!({"resourceType": "Questionnaire", "status": "draft",
            "item": [{"linkId": "1", "type": "question"}]}),
            "Questionnaire.item[0].type",
            CodeInvalid,
            "code 'question' is not in the required value set http://hl7.org/fhir/ValueSet/item-type",
        ),
        case(
            "invalid CodeableConcept",
            json!({"resourceType": "Condition", "subject": {"reference": "Patient/1"},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "cured"}]}}),
            "Condition.clinicalStatus",
            CodeInvalid,
            "no coding is in the required value set http://hl7.org/fhir/ValueSet/condition-clinical",
        ),
        case(
            "CodeableConcept with text only",
            json!({"resourceType": "Condition", "subject": {"reference": "Patient/1"},
            "clinicalStatus": {"text": "active"}}),
            "Condition.clinicalStatus",
            CodeInvalid,
            "a coding from the required value set http://hl7.org/fhir/ValueSet/condition-clinical is needed",
        ),
        case(
            "two value[x] variants",
            observation(json!({"valueString": "x", "valueBoolean": true})),
            "Observation.valueBoolean",
            Structure,
            "only one variant of 'value[x]' may be present",
        ),
        case(
            "variant and other variant's extension",
            observation(json!({"valueString": "x", "_valueBoolean": {"id": "a"}})),
            "Observation._valueBoolean",
            Structure,
            "only one variant of 'value[x]' may be present",
        ),
        case(
            "unknown choice variant",
            observation(json!({"valueMoney": {"value": 1}})),
            "Observation.valueMoney",
            Structure,
            "unknown element 'valueMoney'",
        ),
        case(
            "bare choice name",
            observation(json!({"value": 1})),
            "Observation.value",
            Structure,
            "unknown element 'value'",
        ),
        case(
            "array for a max-1 element",
            json!({"resourceType": "Patient", "gender": ["male"]}),
            "Patient.gender",
            Structure,
            "expected a single value for 'gender' (maximum cardinality 1), found an array",
        ),
        case(
            "scalar for an array element",
            json!({"resourceType": "Patient", "name": {"family": "X"}}),
            "Patient.name",
            Structure,
            "expected an array for 'name'",
        ),
        case(
            "scalar for a primitive array",
            json!({"resourceType": "Patient", "name": [{"given": "Ann"}]}),
            "Patient.name[0].given",
            Structure,
            "expected an array for 'given'",
        ),
        case(
            "empty string",
            json!({"resourceType": "Patient", "name": [{"family": ""}]}),
            "Patient.name[0].family",
            Structure,
            "empty string",
        ),
        case(
            "control character",
            json!({"resourceType": "Patient", "name": [{"family": "A\u{1}"}]}),
            "Patient.name[0].family",
            Value,
            "control characters are not allowed",
        ),
        case(
            "empty object",
            json!({"resourceType": "Patient", "name": [{}]}),
            "Patient.name[0]",
            Structure,
            "empty object",
        ),
        case(
            "empty array",
            json!({"resourceType": "Patient", "name": []}),
            "Patient.name",
            Structure,
            "empty array",
        ),
        case(
            "null value",
            json!({"resourceType": "Patient", "gender": null}),
            "Patient.gender",
            Structure,
            "null is not allowed",
        ),
        case(
            "null in an array",
            json!({"resourceType": "Patient", "name": [{"given": ["Ann", null]}]}),
            "Patient.name[0].given[1]",
            Structure,
            "null is not allowed",
        ),
        case(
            "null in a complex array",
            json!({"resourceType": "Patient", "name": [null]}),
            "Patient.name[0]",
            Structure,
            "null is not allowed",
        ),
        case(
            "invalid id",
            json!({"resourceType": "Patient", "id": "bad_id!"}),
            "Patient.id",
            Value,
            "'bad_id!' is not a valid id",
        ),
        case(
            "too long id",
            json!({"resourceType": "Patient", "id": "a".repeat(65)}),
            "Patient.id",
            Value,
            "is not a valid id",
        ),
        case(
            "integer out of range",
            json!({"resourceType": "Patient", "multipleBirthInteger": 2_147_483_648u64}),
            "Patient.multipleBirthInteger",
            Value,
            "2147483648 is out of range for integer",
        ),
        case(
            "positiveInt zero",
            json!({"resourceType": "Appointment", "status": "booked", "minutesDuration": 0,
            "participant": [{"actor": {"reference": "Patient/1"}, "status": "accepted"}]}),
            "Appointment.minutesDuration",
            Value,
            "0 is out of range for positiveInt",
        ),
        case(
            "negative unsignedInt",
            json!({"resourceType": "Patient", "photo": [{"size": -1}]}),
            "Patient.photo[0].size",
            Value,
            "-1 is out of range for unsignedInt",
        ),
        case(
            "uri with a space",
            json!({"resourceType": "Patient", "implicitRules": "http://a b"}),
            "Patient.implicitRules",
            Value,
            "is not a valid uri",
        ),
        case(
            "bad base64",
            json!({"resourceType": "Patient", "photo": [{"data": "abc"}]}),
            "Patient.photo[0].data",
            Value,
            "is not a valid base64Binary",
        ),
        case(
            "narrative not a div",
            json!({"resourceType": "Patient", "text": {"status": "generated", "div": "<p>x</p>"}}),
            "Patient.text.div",
            Value,
            "is not a valid xhtml",
        ),
        case(
            "narrative without div",
            json!({"resourceType": "Patient", "text": {"status": "generated"}}),
            "Patient.text",
            Required,
            "minimum cardinality 1 not met for 'div'",
        ),
        case(
            "resourceType in a data type",
            json!({"resourceType": "Patient", "name": [{"resourceType": "HumanName", "text": "x"}]}),
            "Patient.name[0].resourceType",
            Structure,
            "unknown element 'resourceType'",
        ),
        Case {
            name: "unknown resourceType",
            resource: json!({"resourceType": "Foo", "id": "1"}),
            expression: None,
            code: NotSupported,
            message: "unknown resourceType 'Foo'",
        },
        Case {
            name: "abstract resourceType",
            resource: json!({"resourceType": "DomainResource", "id": "1"}),
            expression: None,
            code: NotSupported,
            message: "unknown resourceType 'DomainResource'",
        },
        Case {
            name: "missing resourceType",
            resource: json!({"id": "1"}),
            expression: None,
            code: Required,
            message: "missing resourceType",
        },
        Case {
            name: "not an object",
            resource: json!(["Patient"]),
            expression: None,
            code: Structure,
            message: "expected a resource (a JSON object), found an array",
        },
        case(
            "invalid contained resource",
            json!({"resourceType": "Patient",
            "contained": [{"resourceType": "Practitioner", "id": "p1", "name": [{"family": "X", "foo": true}]}]}),
            "Patient.contained[0].name[0].foo",
            Structure,
            "unknown element 'foo'",
        ),
        case(
            "contained resource of unknown type",
            json!({"resourceType": "Patient", "contained": [{"resourceType": "Nope", "id": "n"}]}),
            "Patient.contained[0]",
            NotSupported,
            "unknown resourceType 'Nope'",
        ),
        case(
            "contained resource without resourceType",
            json!({"resourceType": "Patient", "contained": [{"id": "n"}]}),
            "Patient.contained[0]",
            Required,
            "missing resourceType",
        ),
        case(
            "invalid resource in a Bundle",
            json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": {"resourceType": "Patient", "id": "ok"}},
            {"resource": {"resourceType": "Patient", "gender": "unknown-gender"}}]}),
            "Bundle.entry[1].resource.gender",
            CodeInvalid,
            "code 'unknown-gender' is not in the required value set",
        ),
        case(
            "invalid resource in a nested Bundle",
            json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Observation",
                "code": {"text": "x"}}}]}}]}),
            "Bundle.entry[0].resource.entry[0].resource",
            Required,
            "minimum cardinality 1 not met for 'status'",
        ),
        case(
            "invalid resource in Parameters",
            json!({"resourceType": "Parameters", "parameter": [
            {"name": "p", "resource": {"resourceType": "Patient", "active": 1}}]}),
            "Parameters.parameter[0].resource.active",
            Structure,
            "expected a boolean",
        ),
        case(
            "bad reference string",
            observation(json!({"subject": {"reference": "Patient"}})),
            "Observation.subject.reference",
            Value,
            "invalid reference 'Patient'",
        ),
        case(
            "reference with a bad id",
            observation(json!({"subject": {"reference": "Patient/a b"}})),
            "Observation.subject.reference",
            Value,
            "invalid reference 'Patient/a b'",
        ),
        case(
            "reference to an unknown type",
            observation(json!({"subject": {"reference": "Pateint/1"}})),
            "Observation.subject.reference",
            Value,
            "unknown resource type 'Pateint'",
        ),
        case(
            "reference to a type not allowed",
            observation(json!({"subject": {"reference": "Medication/1"}})),
            "Observation.subject.reference",
            Value,
            "a reference to Medication is not allowed here",
        ),
        case(
            "bad urn:uuid reference",
            observation(json!({"subject": {"reference": "urn:uuid:1234"}})),
            "Observation.subject.reference",
            Value,
            "not a UUID",
        ),
        case(
            "extension sibling of a complex element",
            json!({"resourceType": "Patient", "_name": [{"id": "x"}]}),
            "Patient._name",
            Structure,
            "'name' is not a primitive",
        ),
        case(
            "unknown element in an extension sibling",
            json!({"resourceType": "Patient", "_birthDate": {"foo": 1}}),
            "Patient._birthDate.foo",
            Structure,
            "unknown element 'foo'",
        ),
        case(
            "extension sibling of the wrong length",
            json!({"resourceType": "Patient",
            "name": [{"given": ["A", "B"], "_given": [{"id": "x"}]}]}),
            "Patient.name[0]._given",
            Structure,
            "'_given' must have as many items as 'given' (2)",
        ),
        case(
            "empty extension sibling array",
            json!({"resourceType": "Patient", "name": [{"_given": []}]}),
            "Patient.name[0]._given",
            Structure,
            "empty array",
        ),
        case(
            "null on both sides",
            json!({"resourceType": "Patient", "name": [{"given": ["A", null], "_given": [{"id": "x"}, null]}]}),
            "Patient.name[0].given[1]",
            Structure,
            "null is not allowed",
        ),
        case(
            "content reference",
            json!({"resourceType": "Questionnaire", "status": "draft",
            "item": [{"linkId": "1", "type": "group", "item": [{"linkId": "1.1", "type": "string", "foo": 1}]}]}),
            "Questionnaire.item[0].item[0].foo",
            Structure,
            "unknown element 'foo'",
        ),
        case(
            "prohibited element",
            json!({"resourceType": "Patient", "text": {"status": "generated",
            "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>", "_div": {"extension": [{"url": "http://x", "valueString": "y"}]}}}),
            "Patient.text._div.extension",
            Structure,
            "not allowed here (maximum cardinality 0)",
        ),
    ]
}

#[test]
fn defects_are_reported_where_they_are() {
    let mut failures = String::new();
    for case in defective_resources() {
        match validate_resource(&case.resource) {
            Ok(()) => failures.push_str(&format!("{}: no issue reported\n", case.name)),
            Err(issues) => {
                let issue = &issues[0];
                let matches = issues.len() == 1
                    && issue.expression.as_deref() == case.expression
                    && issue.code == case.code
                    && issue.diagnostics.contains(case.message);
                if !matches {
                    failures.push_str(&format!(
                        "{}: expected {:?} at {:?}: ...{}...; got:\n{}",
                        case.name,
                        case.code,
                        case.expression,
                        case.message,
                        describe(&issues)
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures}");
}

#[test]
fn valid_edge_cases_pass() {
    let resources = [
        // Extension-only primitives, with null placeholders in the value array.
        json!({"resourceType": "Patient", "name": [{"given": ["A", null], "_given": [null, {"extension": [
            {"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]}]}]}),
        // A required primitive present only as its extension.
        json!({"resourceType": "Observation", "_status": {"extension": [
            {"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]},
            "code": {"text": "x"}}),
        // A choice value with its own extension sibling.
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "valueString": "y", "_valueString": {"id": "v"}}),
        // References of every plausible form.
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": "Patient/123/_history/2"}, "encounter": {"reference": "urn:uuid:a0d04be4-ec8e-4d5b-8ca7-5d9ae8fbeb8a"},
            "performer": [{"reference": "#p1"}, {"reference": "https://example.org/fhir/Practitioner/7"},
                {"reference": "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999"}, {"display": "no reference"}],
            "basedOn": [{"reference": "urn:oid:1.2.3.4"}]}),
        // A translation beside the required code is fine.
        json!({"resourceType": "Condition", "subject": {"reference": "Patient/1"}, "clinicalStatus": {"coding": [
            {"system": "http://example.org/local", "code": "A"},
            {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}}),
        // Codes of a value set that is not enumerable are not checked.
        json!({"resourceType": "Patient", "photo": [{"contentType": "x-made/up", "data": "aGVsbG8="}]}),
        // Leap day, leap second, offsets.
        json!({"resourceType": "Patient", "birthDate": "2024-02-29", "meta": {"lastUpdated": "2016-12-31T23:59:60.5-14:00"}}),
    ];
    for resource in resources {
        if let Err(issues) = validate_resource(&resource) {
            panic!("{resource}\nshould be valid, got:\n{}", describe(&issues));
        }
    }
}

#[test]
fn issues_are_capped() {
    let mut resource = json!({"resourceType": "Patient"});
    for index in 0..150 {
        resource[format!("bogus{index}")] = json!(1);
    }
    let issues = validate_resource(&resource).unwrap_err();
    assert_eq!(issues.len(), MAX_ISSUES + 1);
    assert_eq!(issues[MAX_ISSUES].code, IssueType::TooCosts);
    assert_eq!(issues[0].expression.as_deref(), Some("Patient.bogus0"));
}

#[test]
fn every_issue_of_a_resource_is_reported() {
    let resource = json!({"resourceType": "Observation", "foo": 1, "issued": "2015", "subject": {"reference": "nope"}});
    let issues = validate_resource(&resource).unwrap_err();
    let expressions: Vec<_> = issues
        .iter()
        .map(|issue| issue.expression.as_deref().unwrap())
        .collect();
    assert_eq!(
        expressions,
        [
            "Observation.foo",
            "Observation.issued",
            "Observation.subject.reference",
            "Observation",
            "Observation"
        ]
    );
}
