//! Registration: UHIDs are issued in order, never twice, checked when typed, and searchable.

mod common;
use common::*;
use serde_json::json;

const UHID: &str = "https://vaidya.dev/fhir/sid/uhid";

fn uhid_of(p: &serde_json::Value) -> String {
    p["identifier"].as_array().unwrap().iter().find(|i| i["system"] == UHID).unwrap()["value"].as_str().unwrap().to_string()
}

#[test]
fn registration_issues_uhids_and_catches_mistyped_ones() {
    let s = Server::start();
    let first = s.post("/Patient", &json!({"resourceType": "Patient", "name": [{"family": "Yadav"}]})).json();
    let second = s.post("/Patient", &json!({"resourceType": "Patient", "name": [{"family": "Mishra"}]})).json();
    let (a, b) = (uhid_of(&first), uhid_of(&second));
    let (ua, ub): (vaidya_domain::Uhid, vaidya_domain::Uhid) = (a.parse().unwrap(), b.parse().unwrap());
    assert_eq!(ub.serial(), ua.serial() + 1, "{a} then {b}");

    // Found by UHID, with or without the system.
    let found = s.get(&format!("/Patient?identifier={UHID}|{b}")).json();
    assert_eq!(found["total"], 1);
    assert_eq!(found["entry"][0]["resource"]["name"][0]["family"], "Mishra");

    // A mistyped UHID (last digit changed) is refused, naming the element, and nothing is written.
    let before = s.ledger_size();
    let mut wrong = b.clone().into_bytes();
    let last = wrong.len() - 1;
    wrong[last] = if wrong[last] == b'9' { b'0' } else { wrong[last] + 1 };
    let wrong = String::from_utf8(wrong).unwrap();
    let r = s.post("/Patient", &json!({"resourceType": "Patient", "identifier": [{"system": UHID, "value": wrong}]}));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.assert_outcome().to_string().contains("Patient.identifier[0].value"), "{}", r.body);
    assert_eq!(s.ledger_size(), before);

    // A central UHID entered by hand (typed with spaces: stored in canonical form) moves the
    // counter on: the next one issued is after it.
    let manual = vaidya_domain::Uhid::new(0, ub.serial() + 100).unwrap().to_string();
    let spaced = manual.replace('-', " ");
    let r = s.post("/Patient", &json!({"resourceType": "Patient", "identifier": [{"system": UHID, "value": spaced}]}));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(uhid_of(&r.json()), manual);
    let next = s.post("/Patient", &json!({"resourceType": "Patient", "name": [{"family": "Next"}]})).json();
    assert_eq!(uhid_of(&next).parse::<vaidya_domain::Uhid>().unwrap().serial(), ub.serial() + 101);
}
