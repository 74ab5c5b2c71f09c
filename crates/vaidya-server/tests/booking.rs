//! OPD booking through plain FHIR: capacity holds under concurrent load, cancel frees, bad
//! bookings are refused and change nothing.

mod common;
use common::*;
use serde_json::{Value, json};
use std::sync::Arc;

const CAPACITY: &str = "https://vaidya.dev/fhir/StructureDefinition/slot-capacity";

fn slot(id: &str, capacity: u64, start: &str, end: &str) -> Value {
    json!({"resourceType": "Slot", "id": id, "schedule": {"reference": "Schedule/opd-med"}, "status": "free",
           "start": start, "end": end, "extension": [{"url": CAPACITY, "valueUnsignedInt": capacity}]})
}

fn appointment(slot: &str, patient: &str) -> Value {
    json!({"resourceType": "Appointment", "status": "booked", "slot": [{"reference": format!("Slot/{slot}")}],
           "participant": [{"actor": {"reference": format!("Patient/{patient}")}, "status": "accepted"}]})
}

#[test]
fn concurrent_bookings_never_overbook_and_cancel_frees_the_place() {
    let s = Server::start();
    assert_eq!(s.put("/Schedule/opd-med", &json!({"resourceType": "Schedule", "id": "opd-med", "actor": [{"reference": "Practitioner/dr-rao"}]})).status, 201);
    for i in 0..3 {
        let id = format!("s{i}");
        let r = s.put(&format!("/Slot/{id}"), &slot(&id, 2, "2099-01-05T09:00:00+05:30", "2099-01-05T09:10:00+05:30"));
        assert_eq!(r.status, 201, "{}", r.body);
    }
    // 240 bookings from 16 threads at 3 slots of 2 places: exactly 6 may succeed.
    let (base, token) = (Arc::new(s.base.clone()), Arc::new(s.token.clone()));
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let (base, token) = (base.clone(), token.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
                let mut statuses = vec![];
                for i in 0..15 {
                    let body = appointment(&format!("s{}", (t + i) % 3), &format!("p{t}-{i}")).to_string();
                    let auth = format!("Bearer {token}");
                    let r = raw_request(&agent, "POST", &format!("{base}/Appointment"), Some(&body), &[("Authorization", &auth), ("Content-Type", "application/fhir+json")]);
                    if r.status != 201 {
                        assert_eq!(r.status, 409, "{}", r.body);
                        assert!(r.assert_outcome().to_string().contains("full"), "{}", r.body);
                    }
                    statuses.push(r.status);
                }
                statuses
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert_eq!(statuses.len(), 240);
    assert_eq!(statuses.iter().filter(|&&c| c == 201).count(), 6, "exactly capacity x slots bookings succeed");
    for i in 0..3 {
        let b = s.get(&format!("/Appointment?slot=Slot/s{i}&status=booked")).json();
        assert_eq!(b["total"], 2, "slot s{i}");
        assert_eq!(s.get(&format!("/Slot/s{i}")).json()["status"], "busy");
    }

    // Cancelling frees the place and the slot; booking it again works.
    let b = s.get("/Appointment?slot=Slot/s0&status=booked").json();
    let mut appt = b["entry"][0]["resource"].clone();
    appt["status"] = json!("cancelled");
    let id = appt["id"].as_str().unwrap().to_string();
    assert_eq!(s.put(&format!("/Appointment/{id}"), &appt).status, 200);
    assert_eq!(s.get("/Slot/s0").json()["status"], "free");
    assert_eq!(s.post("/Appointment", &appointment("s0", "late")).status, 201);
    assert_eq!(s.get("/Slot/s0").json()["status"], "busy");
    assert_eq!(s.post("/Appointment", &appointment("s0", "later")).status, 409);
}

#[test]
fn past_missing_and_blocked_slots_are_refused_and_nothing_changes() {
    let s = Server::start();
    assert_eq!(s.put("/Slot/past", &slot("past", 5, "2020-01-01T09:00:00+05:30", "2020-01-01T09:10:00+05:30")).status, 201);
    let mut blocked = slot("blocked", 5, "2099-01-01T09:00:00+05:30", "2099-01-01T09:10:00+05:30");
    blocked["status"] = json!("busy-unavailable");
    assert_eq!(s.put("/Slot/blocked", &blocked).status, 201);
    let before = s.ledger_size();
    for (slot_id, status) in [("past", 422), ("nowhere", 422), ("blocked", 409)] {
        let r = s.post("/Appointment", &appointment(slot_id, "p1"));
        assert_eq!(r.status, status, "{slot_id}: {}", r.body);
        r.assert_outcome();
    }
    assert_eq!(s.ledger_size(), before);
    // A proposed appointment holds no place and may name any slot.
    let mut proposed = appointment("past", "p1");
    proposed["status"] = json!("proposed");
    assert_eq!(s.post("/Appointment", &proposed).status, 201);
}

fn slot_params(days: &[&str], from: &str, count: u64) -> Value {
    let mut p: Vec<Value> = days.iter().map(|d| json!({"name": "day", "valueCode": d})).collect();
    p.extend([
        json!({"name": "start", "valueTime": "09:00:00"}),
        json!({"name": "end", "valueTime": "13:00:00"}),
        json!({"name": "slotMinutes", "valuePositiveInt": 10}),
        json!({"name": "capacity", "valuePositiveInt": 2}),
        json!({"name": "from", "valueDate": from}),
        json!({"name": "days", "valuePositiveInt": count}),
    ]);
    json!({"resourceType": "Parameters", "parameter": p})
}

fn count(p: &Value, name: &str) -> u64 {
    p["parameter"].as_array().unwrap().iter().find(|x| x["name"] == name).unwrap()["valueInteger"].as_u64().unwrap()
}

#[test]
fn weekly_schedule_generates_slots_once() {
    let s = Server::start();
    assert_eq!(s.put("/Schedule/ortho-opd", &json!({"resourceType": "Schedule", "id": "ortho-opd", "actor": [{"reference": "Practitioner/dr-singh"}]})).status, 201);
    // Mon and Thu 09:00-13:00 in 10-minute slots from Monday 2099-01-05 for a week: 2 x 24.
    let r = s.post("/Schedule/ortho-opd/$generate-slots", &slot_params(&["mon", "thu"], "2099-01-05", 7));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(count(&r.json(), "created"), 48);
    let first = s.get("/Slot/ortho-opd-2099-01-05-0900").json();
    assert_eq!(first["start"], "2099-01-05T03:30:00.000Z", "09:00 IST is 03:30 UTC");
    assert_eq!(first["status"], "free");
    assert_eq!(s.get("/Slot?schedule=Schedule/ortho-opd&start=2099-01-08&_summary=count").json()["total"], 24);

    // Running it again creates nothing and leaves a booked slot as it is.
    let appt = json!({"resourceType": "Appointment", "status": "booked", "slot": [{"reference": "Slot/ortho-opd-2099-01-05-0900"}],
                      "participant": [{"actor": {"reference": "Patient/p1"}, "status": "accepted"}]});
    assert_eq!(s.post("/Appointment", &appt).status, 201);
    assert_eq!(s.post("/Appointment", &appt).status, 201);
    assert_eq!(s.get("/Slot/ortho-opd-2099-01-05-0900").json()["status"], "busy");
    let again = s.post("/Schedule/ortho-opd/$generate-slots", &slot_params(&["mon", "thu"], "2099-01-05", 7)).json();
    assert_eq!((count(&again, "created"), count(&again, "existing")), (0, 48));
    assert_eq!(s.get("/Slot/ortho-opd-2099-01-05-0900").json()["status"], "busy");

    // Bad requests change nothing.
    let before = s.ledger_size();
    for (path, body, status) in [
        ("/Schedule/nowhere/$generate-slots", slot_params(&["mon"], "2099-01-05", 7), 404),
        ("/Schedule/ortho-opd/$generate-slots", slot_params(&[], "2099-01-05", 7), 400),
        ("/Schedule/ortho-opd/$generate-slots", slot_params(&["funday"], "2099-01-05", 7), 400),
        ("/Schedule/ortho-opd/$generate-slots", slot_params(&["mon"], "2099-02-30", 7), 400),
        ("/Schedule/ortho-opd/$generate-slots", slot_params(&["mon"], "2099-01-05", 5000), 400),
        ("/Schedule/ortho-opd/$explode", slot_params(&["mon"], "2099-01-05", 7), 404),
    ] {
        let r = s.post(path, &body);
        assert_eq!(r.status, status, "{path}: {}", r.body);
        r.assert_outcome();
    }
    assert_eq!(s.ledger_size(), before);
}

#[test]
fn rescheduling_moves_the_place_and_frees_the_old_slot() {
    let s = Server::start();
    assert_eq!(s.put("/Schedule/opd-med", &json!({"resourceType": "Schedule", "id": "opd-med", "actor": [{"reference": "Practitioner/dr-rao"}]})).status, 201);
    assert_eq!(s.put("/Slot/a", &slot("a", 1, "2099-01-05T09:00:00+05:30", "2099-01-05T09:10:00+05:30")).status, 201);
    assert_eq!(s.put("/Slot/b", &slot("b", 1, "2099-01-06T09:00:00+05:30", "2099-01-06T09:10:00+05:30")).status, 201);
    let r = s.post("/Appointment", &appointment("a", "p1"));
    assert_eq!(r.status, 201, "{}", r.body);
    let mut appt = r.json();
    let id = appt["id"].as_str().unwrap().to_string();
    assert_eq!(s.get("/Slot/a").json()["status"], "busy");

    // Moved to b: a is free again (and bookable by someone else), b is busy.
    appt["slot"] = json!([{"reference": "Slot/b"}]);
    let r = s.put(&format!("/Appointment/{id}"), &appt);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(s.get("/Slot/a").json()["status"], "free");
    assert_eq!(s.get("/Slot/b").json()["status"], "busy");
    assert_eq!(s.post("/Appointment", &appointment("a", "p2")).status, 201);
    // Moving onto a full slot is refused and leaves the booking where it was.
    let mut back = r.json();
    back["slot"] = json!([{"reference": "Slot/a"}]);
    assert_eq!(s.put(&format!("/Appointment/{id}"), &back).status, 409);
    assert_eq!(s.get(&format!("/Appointment/{id}")).json()["slot"][0]["reference"], "Slot/b");
    assert_eq!(s.get("/Slot/b").json()["status"], "busy");
}

#[test]
fn a_patient_books_and_cancels_their_own_appointment_and_nothing_more() {
    let s = Server::start();
    assert_eq!(s.put("/Schedule/opd-med", &json!({"resourceType": "Schedule", "id": "opd-med", "actor": [{"reference": "Practitioner/dr-rao"}]})).status, 201);
    assert_eq!(s.put("/Slot/s1", &slot("s1", 1, "2099-01-05T09:00:00+05:30", "2099-01-05T09:10:00+05:30")).status, 201);
    for p in ["p1", "p2"] {
        assert_eq!(s.put(&format!("/Patient/{p}"), &json!({"resourceType": "Patient", "id": p, "name": [{"text": p}]})).status, 201);
    }
    let me = s.add_user("p.one", "patient", &["--patient", "p1"]);
    // The directory is open to patients for booking: the slot and its schedule.
    let r = s.request_as(&me, "GET", "/Slot?schedule=Schedule/opd-med", None);
    assert_eq!(r.status, 200, "{}", r.body);
    // Not for someone else, not with queue tokens or another status.
    assert_eq!(s.request_as(&me, "POST", "/Appointment", Some(&appointment("s1", "p2"))).status, 403);
    let mut jump = appointment("s1", "p1");
    jump["status"] = json!("arrived");
    assert_eq!(s.request_as(&me, "POST", "/Appointment", Some(&jump)).status, 403);
    let mut token = appointment("s1", "p1");
    token["identifier"] = json!([{"system": "https://vaidya.dev/fhir/sid/opd-token", "value": "GM-001"}]);
    let r = s.request_as(&me, "POST", "/Appointment", Some(&token));
    assert_eq!(r.status, 403, "{}", r.body);
    let before = s.ledger_size();
    let r = s.request_as(&me, "POST", "/Appointment", Some(&appointment("s1", "p1")));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(s.ledger_size(), before + 2, "the appointment and the slot, now busy");
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(s.get("/Slot/s1").json()["status"], "busy");
    // The patient may not move it through the queue, nor change it by PUT.
    let queue = s.request_as(&me, "POST", &format!("/Appointment/{id}/$queue"), Some(&params(json!([{"name": "state", "valueCode": "waiting"}]))));
    assert_eq!(queue.status, 403, "{}", queue.body);
    let mut changed = s.get(&format!("/Appointment/{id}")).json();
    changed["status"] = json!("arrived");
    assert_eq!(s.request_as(&me, "PUT", &format!("/Appointment/{id}"), Some(&changed)).status, 403);
    // Cancelling frees the place; a second cancel is refused.
    let cancel = |who: &str| s.request_as(who, "POST", &format!("/Appointment/{id}/$cancel"), Some(&params(json!([{"name": "reason", "valueString": "feeling better"}]))));
    let r = cancel(&me);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(s.get(&format!("/Appointment/{id}")).json()["status"], "cancelled");
    assert_eq!(s.get("/Slot/s1").json()["status"], "free");
    assert_eq!(cancel(&me).status, 409);
    // Someone else's booking is not theirs to cancel; the desk may, until check-in.
    let mut other = appointment("s1", "p2");
    other["participant"].as_array_mut().unwrap().push(json!({"actor": {"reference": "HealthcareService/med"}, "status": "accepted"}));
    let theirs = s.post("/Appointment", &other).json()["id"].as_str().unwrap().to_string();
    let r = s.request_as(&me, "POST", &format!("/Appointment/{theirs}/$cancel"), Some(&params(json!([]))));
    assert!(matches!(r.status, 403 | 404), "{}", r.body);
    let clerk = s.add_user("desk.one", "registration", &[]);
    let r = s.request_as(&clerk, "POST", &format!("/Appointment/{theirs}/$queue"), Some(&params(json!([{"name": "state", "valueCode": "waiting"}]))));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s.request_as(&clerk, "POST", &format!("/Appointment/{theirs}/$cancel"), Some(&params(json!([]))));
    assert_eq!(r.status, 409, "after check-in the queue decides: {}", r.body);
}
