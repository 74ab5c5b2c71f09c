//! Duplicate check before registration, and merging two records of one person.

mod common;
use common::*;
use serde_json::{Value, json};

fn patient(given: &str, family: &str, mobile: &str) -> Value {
    json!({"resourceType": "Patient", "name": [{"family": family, "given": [given]}], "gender": "male",
           "telecom": [{"system": "phone", "value": mobile}]})
}

fn ids(bundle: &Value) -> Vec<String> {
    let mut v: Vec<String> = bundle["entry"].as_array().into_iter().flatten().map(|e| e["resource"]["id"].as_str().unwrap().to_string()).collect();
    v.sort();
    v
}

#[test]
fn likely_duplicates_are_found_by_mobile_and_name_or_abha() {
    let s = Server::start();
    let ramesh = s.post("/Patient", &patient("Ramesh", "Kumar", "9810000001")).json();
    let _suresh = s.post("/Patient", &patient("Suresh", "Gupta", "9810000001")).json(); // same family phone
    let mut with_abha = patient("Anita", "Rao", "9810000099");
    with_abha["identifier"] = json!([{"system": "https://healthid.ndhm.gov.in", "value": "91-1234-5678-9012"}]);
    let anita = s.post("/Patient", &with_abha).json();

    // Same mobile (written differently) and a similar name: Ramesh, not Suresh.
    let r = s.post("/Patient/$duplicates", &patient("Rameshwar", "K", "+91 98100 00001"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(ids(&r.json()), vec![ramesh["id"].as_str().unwrap().to_string()]);
    // Same ABHA, whatever the name and mobile.
    let mut other = patient("A", "R", "9000000000");
    other["identifier"] = json!([{"system": "https://healthid.ndhm.gov.in", "value": "91123456789012"}]);
    let r = s.post("/Patient/$duplicates", &other).json();
    assert_eq!(ids(&r), vec![anita["id"].as_str().unwrap().to_string()]);
    // Nobody like this.
    assert_eq!(s.post("/Patient/$duplicates", &patient("Zoya", "Ali", "9999999999")).json()["total"], 0);
    // Bad input.
    let mut bad = patient("A", "B", "9810000001");
    bad["identifier"] = json!([{"system": "https://healthid.ndhm.gov.in", "value": "12-34"}]);
    assert_eq!(s.post("/Patient/$duplicates", &bad).status, 400);
    assert_eq!(s.post("/Patient/$nonsense", &patient("A", "B", "1")).status, 404);
}

#[test]
fn merge_links_both_records_and_keeps_their_histories() {
    let s = Server::start();
    let a = s.post("/Patient", &patient("Ramesh", "Kumar", "9810000001")).json();
    let b = s.post("/Patient", &patient("Ramesh", "Kumaar", "9810000001")).json();
    let (ida, idb) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let uhid_b = b["identifier"][0]["value"].as_str().unwrap().to_string();
    let params = json!({"resourceType": "Parameters", "parameter": [
        {"name": "source", "valueReference": {"reference": format!("Patient/{idb}")}},
        {"name": "target", "valueReference": {"reference": format!("Patient/{ida}")}}]});
    let r = s.post("/Patient/$merge", &params);
    assert_eq!(r.status, 200, "{}", r.body);
    let src = s.get(&format!("/Patient/{idb}")).json();
    assert_eq!(src["active"], false);
    assert_eq!(src["link"][0]["type"], "replaced-by");
    assert_eq!(src["link"][0]["other"]["reference"], format!("Patient/{ida}"));
    let tgt = s.get(&format!("/Patient/{ida}")).json();
    assert_eq!(tgt["link"][0]["type"], "replaces");
    // Searching by the retired UHID finds both records, the survivor among them.
    let found = s.get(&format!("/Patient?identifier={uhid_b}")).json();
    assert!(ids(&found).contains(&ida.to_string()), "{found}");
    // Histories stay: each has two versions now.
    assert_eq!(s.get(&format!("/Patient/{idb}/_history")).json()["total"], 2);
    assert_eq!(s.get(&format!("/Patient/{ida}/_history")).json()["total"], 2);
    // A second merge of the retired record is refused and writes nothing.
    let before = s.ledger_size();
    assert_eq!(s.post("/Patient/$merge", &params).status, 409);
    let same = json!({"resourceType": "Parameters", "parameter": [
        {"name": "source", "valueReference": {"reference": format!("Patient/{ida}")}},
        {"name": "target", "valueReference": {"reference": format!("Patient/{ida}")}}]});
    assert_eq!(s.post("/Patient/$merge", &same).status, 400);
    assert_eq!(s.ledger_size(), before);
}
