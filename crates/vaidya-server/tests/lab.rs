//! The laboratory flow: order, collect with a barcode, enter results, verify by a second
//! person, release; and what is refused on the way.

mod common;
use common::*;
use serde_json::{Value, json};

fn as_user(s: &Server, token: &str, method: &str, path: &str, body: &Value) -> Resp {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let auth = format!("Bearer {token}");
    raw_request(&agent, method, &format!("{}{path}", s.base), Some(&body.to_string()), &[("Authorization", &auth), ("Content-Type", "application/fhir+json")])
}

#[test]
fn order_collect_enter_verify_release() {
    let s = Server::start();
    let data = s.data().to_str().unwrap().to_string();
    let out = s.vaidya(&["user", "add", "--data", &data, "--name", "verifier", "--role", "lab", "--department", "lab"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("One-time password:"));
    let bad = s.vaidya(&["user", "add", "--data", &data, "--name", "x", "--role", "wizard"]);
    assert!(!bad.status.success());
    let verifier = s.make_token("verifier");

    assert_eq!(s.put("/Patient/p1", &json!({"resourceType": "Patient", "id": "p1"})).status, 201);
    let order = s.post("/ServiceRequest", &json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order",
        "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2", "display": "CBC panel"}]},
        "subject": {"reference": "Patient/p1"}})).json();
    let sr = order["id"].as_str().unwrap();

    // Collection with the day's next barcode; a barcode cannot be reused.
    let collect = |barcode: Option<&str>| {
        let params = match barcode {
            Some(b) => json!({"resourceType": "Parameters", "parameter": [{"name": "barcode", "valueString": b}]}),
            None => json!({"resourceType": "Parameters"}),
        };
        s.post(&format!("/ServiceRequest/{sr}/$collect"), &params)
    };
    let specimen = collect(None);
    assert_eq!(specimen.status, 201, "{}", specimen.body);
    let specimen = specimen.json();
    let barcode = specimen["accessionIdentifier"]["value"].as_str().unwrap().to_string();
    assert!(barcode.starts_with('S') && barcode.len() == 14, "{barcode}");
    assert_eq!(specimen["request"][0]["reference"], format!("ServiceRequest/{sr}"));
    assert_eq!(collect(Some(&barcode)).status, 409);
    assert_eq!(collect(Some("no spaces allowed")).status, 400);
    let found = s.get(&format!("/Specimen?accession={barcode}")).json();
    assert_eq!(found["total"], 1);

    // Results entered by admin, gathered in a preliminary report.
    let obs = s.post("/Observation", &json!({"resourceType": "Observation", "status": "preliminary",
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]}, "subject": {"reference": "Patient/p1"},
        "basedOn": [{"reference": format!("ServiceRequest/{sr}")}], "specimen": {"reference": format!("Specimen/{}", specimen["id"].as_str().unwrap())},
        "valueQuantity": {"value": 10.8, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"},
        "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "L"}]}]})).json();
    let report = s.post("/DiagnosticReport", &json!({"resourceType": "DiagnosticReport", "status": "preliminary",
        "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]}, "subject": {"reference": "Patient/p1"},
        "basedOn": [{"reference": format!("ServiceRequest/{sr}")}],
        "result": [{"reference": format!("Observation/{}", obs["id"].as_str().unwrap())}]})).json();
    let dr = report["id"].as_str().unwrap();

    // Release before verification, and verification by the one who entered the result: refused.
    let before = s.ledger_size();
    let empty = json!({"resourceType": "Parameters"});
    assert_eq!(s.post(&format!("/DiagnosticReport/{dr}/$release"), &empty).status, 409);
    let r = s.post(&format!("/DiagnosticReport/{dr}/$verify"), &empty);
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(s.ledger_size(), before);

    // A second person verifies; then the report is released with its results final.
    let r = as_user(&s, &verifier, "POST", &format!("/DiagnosticReport/{dr}/$verify"), &empty);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(as_user(&s, &verifier, "POST", &format!("/DiagnosticReport/{dr}/$verify"), &empty).status, 409);
    let r = s.post(&format!("/DiagnosticReport/{dr}/$release"), &empty);
    assert_eq!(r.status, 200, "{}", r.body);
    let released = s.get(&format!("/DiagnosticReport/{dr}")).json();
    assert_eq!(released["status"], "final");
    assert!(released["issued"].is_string());
    assert_eq!(s.get(&format!("/Observation/{}", obs["id"].as_str().unwrap())).json()["status"], "final");
    assert_eq!(s.post(&format!("/DiagnosticReport/{dr}/$release"), &empty).status, 409);

    // An amendment is a new version; the released one stays in history.
    let mut amended = released.clone();
    amended["status"] = json!("amended");
    amended["conclusion"] = json!("Mild anaemia; repeat in 4 weeks.");
    assert_eq!(s.put(&format!("/DiagnosticReport/{dr}"), &amended).status, 200);
    let history = s.get(&format!("/DiagnosticReport/{dr}/_history")).json();
    let statuses: Vec<&str> = history["entry"].as_array().unwrap().iter().map(|e| e["resource"]["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, vec!["amended", "final", "preliminary", "preliminary"]);
}
