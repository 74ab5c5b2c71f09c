//! `vaidya serve --demo`: a working demo hospital on first start, nothing added on the next.

mod common;
use common::*;
use serde_json::json;

#[test]
fn demo_hospital_is_loaded_once_and_is_bookable() {
    let mut s = Server::start_with(tempfile::tempdir().unwrap(), &["--demo"]);
    assert_eq!(s.get("/HealthcareService?_summary=count").json()["total"], 7);
    assert_eq!(s.get("/Practitioner?_summary=count").json()["total"], 8);
    assert!(s.get("/ChargeItemDefinition?_summary=count").json()["total"].as_u64().unwrap() >= 6);
    // Patients carry valid UHIDs and Hindi names.
    let patients = s.get("/Patient?_count=100").json();
    let entries = patients["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 8);
    for e in entries {
        let uhid = e["resource"]["identifier"][0]["value"].as_str().unwrap();
        uhid.parse::<vaidya_domain::Uhid>().unwrap_or_else(|err| panic!("{uhid}: {err}"));
    }
    assert_eq!(s.get("/Patient?name=सीता").json()["total"], 1);
    // Slots for the coming week, all in the future, and one can be booked over plain FHIR.
    let slots = s.get("/Slot?status=free&_sort=start&_count=5").json();
    assert!(slots["total"].as_u64().unwrap() > 50, "{}", slots["total"]);
    let slot_id = slots["entry"][0]["resource"]["id"].as_str().unwrap().to_string();
    let appt = json!({"resourceType": "Appointment", "status": "booked", "slot": [{"reference": format!("Slot/{slot_id}")}],
                      "participant": [{"actor": {"reference": "Patient/pt-5"}, "status": "accepted"}]});
    assert_eq!(s.post("/Appointment", &appt).status, 201);

    // The released lab report prints, with its sample and who verified it.
    let print = raw_request(
        &ureq::Agent::config_builder().http_status_as_error(false).build().into(),
        "GET",
        &s.base.replace("/fhir", "/print/DiagnosticReport/report-1"),
        None,
        &[("Authorization", &format!("Bearer {}", s.token))],
    );
    assert_eq!(print.status, 200, "{}", print.body);
    for text in ["Sita Devi", "S2026112000001", "12.0–15.5 g/dL", "Low", "dr-verma", "Dr. Imran Khan", "20 Nov 2026, 12:00 IST"] {
        assert!(print.body.contains(text), "{text} missing from the printed demo report");
    }

    // A second start with --demo adds nothing.
    let before = s.ledger_size();
    s.stop();
    s.spawn();
    assert_eq!(s.ledger_size(), before);
}
