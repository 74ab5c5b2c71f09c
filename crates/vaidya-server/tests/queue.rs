//! The OPD queue: walk-in tokens, check-in of booked patients, and the queue's states.

mod common;
use common::*;
use serde_json::{Value, json};

fn params(pairs: &[(&str, Value)]) -> Value {
    json!({"resourceType": "Parameters", "parameter": pairs.iter().map(|(n, v)| {
        let mut p = json!({"name": n});
        for (k, val) in v.as_object().unwrap() { p[k] = val.clone(); }
        p
    }).collect::<Vec<_>>()})
}

fn reference(r: &str) -> Value {
    json!({"valueReference": {"reference": r}})
}

fn state(code: &str) -> Value {
    params(&[("state", json!({"valueCode": code}))])
}

fn token(appt: &Value) -> String {
    appt["identifier"].as_array().unwrap().iter().find(|i| i["system"] == "https://vaidya.dev/fhir/sid/opd-token").unwrap()["value"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn walk_ins_get_tokens_and_move_through_the_queue() {
    let s = Server::start();
    for (path, body) in [
        ("/HealthcareService/gen-med", json!({"resourceType": "HealthcareService", "id": "gen-med", "name": "General Medicine"})),
        ("/Practitioner/dr-sharma", json!({"resourceType": "Practitioner", "id": "dr-sharma"})),
        ("/Patient/p1", json!({"resourceType": "Patient", "id": "p1"})),
        ("/Patient/p2", json!({"resourceType": "Patient", "id": "p2"})),
        ("/Patient/p3", json!({"resourceType": "Patient", "id": "p3"})),
    ] {
        assert_eq!(s.put(path, &body).status, 201, "{path}");
    }
    let walk_in = |patient: &str| {
        s.post("/HealthcareService/gen-med/$walk-in", &params(&[("patient", reference(patient)), ("practitioner", reference("Practitioner/dr-sharma"))]))
    };
    let a = walk_in("Patient/p1");
    assert_eq!(a.status, 201, "{}", a.body);
    let a = a.json();
    let b = walk_in("Patient/p2").json();
    assert_eq!((token(&a), token(&b)), ("GENMED-001".to_string(), "GENMED-002".to_string()));
    assert_eq!(a["status"], "arrived");

    // Today's queue of the department, in order of arrival.
    let today = &a["start"].as_str().unwrap()[..10];
    let q = s.get(&format!("/Appointment?actor=HealthcareService/gen-med&date={today}&_sort=date")).json();
    let order: Vec<&str> = q["entry"].as_array().unwrap().iter().map(|e| e["resource"]["id"].as_str().unwrap()).collect();
    assert_eq!(order, vec![a["id"].as_str().unwrap(), b["id"].as_str().unwrap()]);

    // The first patient is called, seen and done.
    let id_a = a["id"].as_str().unwrap();
    for st in ["called", "in-consultation", "done"] {
        let r = s.post(&format!("/Appointment/{id_a}/$queue"), &state(st));
        assert_eq!(r.status, 200, "{st}: {}", r.body);
    }
    assert_eq!(s.get(&format!("/Appointment/{id_a}")).json()["status"], "fulfilled");

    // Steps the queue does not allow are refused and change nothing.
    let id_b = b["id"].as_str().unwrap();
    let before = s.ledger_size();
    let r = s.post(&format!("/Appointment/{id_b}/$queue"), &state("done"));
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(s.post(&format!("/Appointment/{id_b}/$queue"), &state("asleep")).status, 400);
    assert_eq!(s.post("/HealthcareService/nowhere/$walk-in", &params(&[("patient", reference("Patient/p1"))])).status, 422);
    assert_eq!(s.post("/HealthcareService/gen-med/$walk-in", &params(&[("patient", reference("Patient/ghost"))])).status, 422);
    assert_eq!(s.ledger_size(), before);

    // A booked patient checks in and joins the same day's numbering.
    let booked = s
        .post("/Appointment", &json!({"resourceType": "Appointment", "status": "booked", "participant": [
            {"actor": {"reference": "Patient/p3"}, "status": "accepted"},
            {"actor": {"reference": "HealthcareService/gen-med"}, "status": "accepted"}]}))
        .json();
    let id_c = booked["id"].as_str().unwrap();
    let r = s.post(&format!("/Appointment/{id_c}/$queue"), &state("called"));
    assert_eq!(r.status, 409, "calling before check-in: {}", r.body);
    let r = s.post(&format!("/Appointment/{id_c}/$queue"), &state("waiting"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(token(&r.json()), "GENMED-003");
}
