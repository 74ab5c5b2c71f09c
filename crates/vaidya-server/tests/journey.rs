//! A whole OPD patient journey over HTTP, each step by the member of staff who does it: register,
//! book, check in, consult (Encounter, note, diagnosis, CBC order), collect, enter, verify,
//! release, bill, pay; then the patient fetches and prints the report. Bad input on the way is
//! refused and changes nothing.

mod common;
use common::*;
use serde_json::{Value, json};

const CAPACITY: &str = "https://vaidya.dev/fhir/StructureDefinition/slot-capacity";
const EVENTS: &str = "https://vaidya.dev/fhir/CodeSystem/billable-event";
const UHID: &str = "https://vaidya.dev/fhir/sid/uhid";

/// The hospital as the administrator sets it up: a department, a doctor with an OPD schedule
/// and its slots, the tariff and a test in the catalogue.
fn set_up_hospital(s: &Server) {
    let puts = [
        json!({"resourceType": "Organization", "id": "aiims", "name": "AIIMS"}),
        json!({"resourceType": "HealthcareService", "id": "gen-med", "name": "General Medicine", "providedBy": {"reference": "Organization/aiims"}}),
        json!({"resourceType": "HealthcareService", "id": "lab", "name": "Laboratory", "providedBy": {"reference": "Organization/aiims"}}),
        json!({"resourceType": "Practitioner", "id": "dr-sharma", "name": [{"family": "Sharma", "given": ["Anjali"]}]}),
        json!({"resourceType": "PractitionerRole", "id": "dr-sharma-role", "practitioner": {"reference": "Practitioner/dr-sharma"},
            "healthcareService": [{"reference": "HealthcareService/gen-med"}]}),
        json!({"resourceType": "Schedule", "id": "sharma-opd", "actor": [{"reference": "Practitioner/dr-sharma"}, {"reference": "HealthcareService/gen-med"}]}),
        json!({"resourceType": "ActivityDefinition", "id": "test-cbc", "status": "active", "kind": "ServiceRequest", "url": "https://aiims.example/catalogue/cbc",
            "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2", "display": "CBC panel - Blood by Automated count"}]}}),
        tariff("reg", EVENTS, "opd-registration", 10.0),
        tariff("consult", EVENTS, "opd-consultation", 100.0),
        tariff("cbc", "http://loinc.org", "58410-2", 150.0),
    ];
    for r in puts {
        let path = format!("/{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
        let resp = s.put(&path, &r);
        assert_eq!(resp.status, 201, "{path}: {}", resp.body);
    }
    // A slot far in the future, so the journey never books the past.
    let slot = json!({"resourceType": "Slot", "id": "sharma-1", "schedule": {"reference": "Schedule/sharma-opd"}, "status": "free",
        "start": "2099-03-02T09:00:00+05:30", "end": "2099-03-02T09:10:00+05:30", "extension": [{"url": CAPACITY, "valueUnsignedInt": 1}]});
    assert_eq!(s.put("/Slot/sharma-1", &slot).status, 201);
}

fn id_of(r: &Resp) -> String {
    r.json()["id"].as_str().unwrap_or_else(|| panic!("no id in {}", r.body)).to_string()
}

#[test]
fn a_patient_goes_from_registration_to_a_paid_bill_and_reads_the_report() {
    let s = Server::start();
    set_up_hospital(&s);
    let clerk = s.add_user("reg.asha", "registration", &[]);
    let doctor = s.add_user("dr.sharma", "doctor", &["--department", "gen-med"]);
    let nurse = s.add_user("nurse.mary", "nurse", &["--department", "gen-med"]);
    let tech = s.add_user("lab.verma", "lab", &["--department", "lab"]);
    let verifier = s.add_user("lab.bose", "lab", &["--department", "lab"]);
    let cashier = s.add_user("cash.ravi", "billing", &[]);
    let as_ = |token: &str, method: &str, path: &str, body: Option<&Value>| s.request_as(token, method, path, body);

    // 1. Registration: the duplicate check finds nobody; the patient gets a UHID.
    let patient = json!({"resourceType": "Patient", "name": [{"use": "official", "family": "Devi", "given": ["Sita"]}, {"text": "सीता देवी"}],
        "gender": "female", "birthDate": "1975-08-02", "telecom": [{"system": "phone", "value": "+919810000002", "use": "mobile"}],
        "address": [{"city": "New Delhi", "state": "Delhi", "postalCode": "110029"}]});
    let dups = as_(&clerk, "POST", "/Patient/$duplicates", Some(&patient));
    assert_eq!(dups.status, 200, "{}", dups.body);
    assert_eq!(dups.json()["total"], 0);
    let r = as_(&clerk, "POST", "/Patient", Some(&patient));
    assert_eq!(r.status, 201, "{}", r.body);
    let pid = id_of(&r);
    let uhid = r.json()["identifier"].as_array().unwrap().iter().find(|i| i["system"] == UHID).unwrap()["value"].as_str().unwrap().to_string();
    assert_eq!(uhid.len(), 14, "NNNN-NNNN-NNNN: {uhid}");
    // The same person again is found as a likely duplicate before a second UHID is issued.
    assert_eq!(as_(&clerk, "POST", "/Patient/$duplicates", Some(&patient)).json()["total"], 1);
    // Found at the counter by UHID, by mobile and by name in Devanagari.
    for q in [format!("identifier={UHID}|{uhid}"), "phone=9810000002".to_string(), "name=सीता".to_string()] {
        let found = as_(&clerk, "GET", &format!("/Patient?{q}"), None).json();
        assert_eq!(found["total"], 1, "{q}: {found}");
    }

    // 2. Booking: a past or unknown slot is refused and changes nothing; the free slot is taken.
    let booking = |slot: &str| json!({"resourceType": "Appointment", "status": "booked", "slot": [{"reference": format!("Slot/{slot}")}],
        "participant": [{"actor": {"reference": format!("Patient/{pid}")}, "status": "accepted"},
                        {"actor": {"reference": "Practitioner/dr-sharma"}, "status": "accepted"},
                        {"actor": {"reference": "HealthcareService/gen-med"}, "status": "accepted"}]});
    let before = s.ledger_size();
    assert_eq!(as_(&clerk, "POST", "/Appointment", Some(&booking("no-such-slot"))).status, 422);
    assert_eq!(s.ledger_size(), before);
    let r = as_(&clerk, "POST", "/Appointment", Some(&booking("sharma-1")));
    assert_eq!(r.status, 201, "{}", r.body);
    let appt = id_of(&r);
    assert_eq!(s.get("/Slot/sharma-1").json()["status"], "busy");
    assert_eq!(as_(&clerk, "POST", "/Appointment", Some(&booking("sharma-1"))).status, 409, "the slot is full");

    // 3. Check-in gives a token; the doctor calls the patient in, which opens the Encounter.
    let queue = |token: &str, state: &str| as_(token, "POST", &format!("/Appointment/{appt}/$queue"), Some(&params(json!([{"name": "state", "valueCode": state}]))));
    let r = queue(&nurse, "waiting");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["identifier"].as_array().unwrap().iter().any(|i| i["system"] == "https://vaidya.dev/fhir/sid/opd-token"));
    assert_eq!(queue(&doctor, "done").status, 409, "not yet seen");
    assert_eq!(queue(&doctor, "called").status, 200);
    assert_eq!(queue(&doctor, "in-consultation").status, 200);
    let enc = as_(&doctor, "GET", &format!("/Encounter?patient=Patient/{pid}&appointment=Appointment/{appt}"), None).json();
    assert_eq!(enc["total"], 1, "{enc}");
    let encounter = enc["entry"][0]["resource"].clone();
    assert_eq!(encounter["status"], "in-progress");
    assert_eq!(encounter["subject"]["reference"], format!("Patient/{pid}"));
    let eid = encounter["id"].as_str().unwrap().to_string();

    // 4. The consultation: a note, a diagnosis and a CBC order, all in the Encounter. An entry
    //    for another patient in this Encounter is refused.
    let in_visit = |mut r: Value| {
        r["subject"] = json!({"reference": format!("Patient/{pid}")});
        r["encounter"] = json!({"reference": format!("Encounter/{eid}")});
        r
    };
    let note = in_visit(json!({"resourceType": "ClinicalImpression", "status": "completed", "summary": "Tired for 3 weeks, pale conjunctiva.",
        "note": [{"text": "Suspect iron deficiency anaemia."}]}));
    assert_eq!(as_(&doctor, "POST", "/ClinicalImpression", Some(&note)).status, 201);
    let diagnosis = in_visit(json!({"resourceType": "Condition",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "provisional"}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "87522002", "display": "Iron deficiency anemia"}]}}));
    assert_eq!(as_(&doctor, "POST", "/Condition", Some(&diagnosis)).status, 201);
    let other = id_of(&as_(&clerk, "POST", "/Patient", Some(&json!({"resourceType": "Patient", "name": [{"text": "Someone Else"}]}))));
    let mut wrong = diagnosis.clone();
    wrong["subject"]["reference"] = json!(format!("Patient/{other}"));
    let before = s.ledger_size();
    // The doctor may not write for a patient outside their department's care at all; an
    // integration that may is stopped by the visit's own rule.
    assert_eq!(as_(&doctor, "POST", "/Condition", Some(&wrong)).status, 403, "not the doctor's patient");
    assert_eq!(s.post("/Condition", &wrong).status, 422, "wrong patient in this visit");
    assert_eq!(s.ledger_size(), before);
    let order = in_visit(json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order",
        "instantiatesCanonical": ["https://aiims.example/catalogue/cbc"],
        "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2", "display": "CBC panel - Blood by Automated count"}]},
        "requester": {"reference": "Practitioner/dr-sharma"}}));
    let r = as_(&doctor, "POST", "/ServiceRequest", Some(&order));
    assert_eq!(r.status, 201, "{}", r.body);
    let sr = id_of(&r);
    assert_eq!(queue(&doctor, "done").status, 200);
    let enc = as_(&doctor, "GET", &format!("/Encounter/{eid}"), None).json();
    assert_eq!(enc["status"], "finished");
    assert!(enc["period"]["end"].is_string());

    // 5. The lab: collection with a barcode, results with ranges and flags, a report.
    let r = as_(&tech, "POST", &format!("/ServiceRequest/{sr}/$collect"), Some(&params(json!([]))));
    assert_eq!(r.status, 201, "{}", r.body);
    let specimen = id_of(&r);
    let result = |loinc: &str, value: f64, unit: &str, low: f64, high: f64, flag: Option<&str>| {
        let mut o = json!({"resourceType": "Observation", "status": "preliminary",
            "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]}, "subject": {"reference": format!("Patient/{pid}")},
            "basedOn": [{"reference": format!("ServiceRequest/{sr}")}], "specimen": {"reference": format!("Specimen/{specimen}")},
            "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
            "referenceRange": [{"low": {"value": low, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
                                "high": {"value": high, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}}]});
        if let Some(f) = flag {
            o["interpretation"] = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": f}]}]);
        }
        let r = as_(&tech, "POST", "/Observation", Some(&o));
        assert_eq!(r.status, 201, "{}", r.body);
        id_of(&r)
    };
    let hb = result("718-7", 9.6, "g/dL", 12.0, 15.5, Some("L"));
    let wbc = result("6690-2", 7.2, "10*3/uL", 4.0, 11.0, None);
    let report = json!({"resourceType": "DiagnosticReport", "status": "preliminary",
        "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2", "display": "CBC panel - Blood by Automated count"}]},
        "subject": {"reference": format!("Patient/{pid}")}, "basedOn": [{"reference": format!("ServiceRequest/{sr}")}],
        "result": [{"reference": format!("Observation/{hb}")}, {"reference": format!("Observation/{wbc}")}]});
    let r = as_(&tech, "POST", "/DiagnosticReport", Some(&report));
    assert_eq!(r.status, 201, "{}", r.body);
    let dr = id_of(&r);

    // Before release the report is the lab's alone: the doctor neither reads nor finds it.
    assert_eq!(as_(&doctor, "GET", &format!("/DiagnosticReport/{dr}"), None).status, 404);
    assert_eq!(as_(&doctor, "GET", &format!("/DiagnosticReport?patient=Patient/{pid}"), None).json()["total"], 0);
    assert_eq!(as_(&doctor, "GET", &format!("/Observation/{hb}"), None).status, 404);
    assert_eq!(as_(&tech, "GET", &format!("/DiagnosticReport?patient=Patient/{pid}"), None).json()["total"], 1);

    // Releasing an unverified report, or verifying one's own results, is refused.
    let empty = params(json!([]));
    assert_eq!(as_(&tech, "POST", &format!("/DiagnosticReport/{dr}/$release"), Some(&empty)).status, 409);
    assert_eq!(as_(&tech, "POST", &format!("/DiagnosticReport/{dr}/$verify"), Some(&empty)).status, 403);
    assert_eq!(as_(&verifier, "POST", &format!("/DiagnosticReport/{dr}/$verify"), Some(&empty)).status, 200);
    assert_eq!(as_(&tech, "POST", &format!("/DiagnosticReport/{dr}/$release"), Some(&empty)).status, 200);
    let seen = as_(&doctor, "GET", &format!("/DiagnosticReport/{dr}"), None);
    assert_eq!(seen.status, 200, "released: the ordering doctor sees it");
    assert_eq!(seen.json()["status"], "final");
    assert_eq!(as_(&doctor, "GET", &format!("/Observation/{hb}"), None).json()["status"], "final");

    // 6. Billing: registration ₹10 + consultation ₹100 + CBC ₹150, gathered on one invoice.
    let r = as_(&cashier, "POST", "/Invoice/$gather", Some(&params(json!([{"name": "patient", "valueReference": {"reference": format!("Patient/{pid}")}}]))));
    assert_eq!(r.status, 201, "{}", r.body);
    let invoice = r.json();
    let inv = invoice["id"].as_str().unwrap().to_string();
    assert_eq!(invoice["lineItem"].as_array().unwrap().len(), 3);
    assert_eq!(invoice["totalGross"]["value"].as_f64(), Some(260.0));
    let pay = |amount: Value, mode: &str, key: &str| {
        as_(&cashier, "POST", &format!("/Invoice/{inv}/$pay"), Some(&params(json!([
            {"name": "amount", "valueMoney": {"value": amount, "currency": "INR"}}, {"name": "mode", "valueCode": mode},
            {"name": "counter", "valueString": "OPD-2"}, {"name": "key", "valueString": key}]))))
    };
    let before = s.ledger_size();
    for (amount, why) in [(json!(-10), "negative"), (json!(0), "zero"), (json!(261), "more than owed")] {
        let r = pay(amount, "cash", why);
        assert_eq!(r.status, 409, "{why}: {}", r.body);
        r.assert_outcome();
    }
    assert_eq!(pay(json!("ten"), "cash", "text").status, 422, "not a number");
    assert_eq!(s.ledger_size(), before, "refused payments change nothing");
    let r = pay(json!(100), "upi", "visit-1-part-1");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "issued", "partly paid");
    let r = pay(json!(160), "cash", "visit-1-part-2");
    assert_eq!(r.json()["status"], "balanced");
    let version = r.header("ETag").map(str::to_string);
    let retry = pay(json!(160), "cash", "visit-1-part-2");
    assert_eq!(retry.status, 200);
    assert_eq!(retry.header("ETag").map(str::to_string), version, "a retried payment is recorded once");
    let receipts: Vec<String> = retry.json()["extension"].as_array().unwrap().iter()
        .filter_map(|e| e["extension"].as_array()?.iter().find(|x| x["url"] == "receipt")?["valueString"].as_str().map(str::to_string))
        .collect();
    assert_eq!(receipts.len(), 2);
    assert_ne!(receipts[0], receipts[1]);
    // A cancelled invoice takes no payment (this one holds money, so it cannot even be cancelled).
    assert_eq!(as_(&cashier, "POST", &format!("/Invoice/{inv}/$cancel"), Some(&params(json!([{"name": "reason", "valueString": "x"}])))).status, 409);

    // 7. The patient, signed in to their own account, sees their released report and bill,
    //    prints the report, and nothing of anyone else's; they write nothing but their own
    //    bookings.
    let me = s.add_user("sita.devi", "patient", &["--patient", &pid]);
    let mine = as_(&me, "GET", "/DiagnosticReport", None).json();
    assert_eq!(mine["total"], 1, "{mine}");
    assert_eq!(mine["entry"][0]["resource"]["id"], dr.as_str());
    assert_eq!(as_(&me, "GET", &format!("/DiagnosticReport/{dr}"), None).status, 200);
    assert_eq!(as_(&me, "GET", "/Invoice", None).json()["entry"][0]["resource"]["status"], "balanced");
    assert_eq!(as_(&me, "GET", &format!("/Patient/{other}"), None).status, 404);
    assert_eq!(as_(&me, "GET", "/Patient", None).json()["total"], 1);
    // The OPD directory is open to them (to book); other types are not.
    assert_eq!(as_(&me, "GET", "/Practitioner", None).status, 200);
    assert_eq!(as_(&me, "GET", "/Organization", None).status, 403);
    assert_eq!(as_(&me, "POST", "/Patient", Some(&patient)).status, 403);
    assert_eq!(as_(&me, "GET", &format!("/Patient/{pid}/_history"), None).status, 403);
    let printed = as_(&me, "GET", &format!("{}/print/DiagnosticReport/{dr}", s.base.trim_end_matches("/fhir")), None);
    assert_eq!(printed.status, 200, "{}", printed.body);
    for expected in [uhid.as_str(), "9.6", "12", "15.5", "Low", "lab.bose"] {
        assert!(printed.body.contains(expected), "the printed report shows {expected}");
    }
    // The other patient's account sees none of it.
    let them = s.add_user("someone.else", "patient", &["--patient", &other]);
    assert_eq!(as_(&them, "GET", &format!("/DiagnosticReport/{dr}"), None).status, 404);
    assert_eq!(as_(&them, "GET", "/DiagnosticReport", None).json()["total"], 0);
    assert_eq!(as_(&them, "GET", &format!("{}/print/DiagnosticReport/{dr}", s.base.trim_end_matches("/fhir")), None).status, 404);
}
