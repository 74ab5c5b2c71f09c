//! Charges from the tariff, invoices that gather them, and the day-end cash report, over HTTP.

mod common;
use common::*;
use serde_json::{Value, json};

const CAPACITY: &str = "https://vaidya.dev/fhir/StructureDefinition/slot-capacity";
const EVENTS: &str = "https://vaidya.dev/fhir/CodeSystem/billable-event";
const SOURCE: &str = "https://vaidya.dev/fhir/sid/charge-source";

fn charges_of(s: &Server, patient: &str) -> Vec<Value> {
    let b = s.get(&format!("/ChargeItem?patient=Patient/{patient}&_count=100")).json();
    b["entry"].as_array().cloned().unwrap_or_default().into_iter().map(|e| e["resource"].clone()).collect()
}

fn setup(s: &Server) {
    for t in [
        tariff("reg", EVENTS, "opd-registration", 10.0),
        tariff("consult", EVENTS, "opd-consultation", 100.0),
        tariff("cbc", "http://loinc.org", "58410-2", 150.0),
    ] {
        let id = t["id"].as_str().unwrap().to_string();
        let r = s.put(&format!("/ChargeItemDefinition/{id}"), &t);
        assert_eq!(r.status, 201, "{}", r.body);
    }
    assert_eq!(s.put("/Schedule/opd", &json!({"resourceType": "Schedule", "id": "opd", "actor": [{"reference": "Practitioner/dr"}]})).status, 201);
    let slot = json!({"resourceType": "Slot", "id": "s1", "schedule": {"reference": "Schedule/opd"}, "status": "free",
        "start": "2099-01-05T09:00:00+05:30", "end": "2099-01-05T09:10:00+05:30", "extension": [{"url": CAPACITY, "valueUnsignedInt": 5}]});
    assert_eq!(s.put("/Slot/s1", &slot).status, 201);
}

fn register(s: &Server, name: &str) -> String {
    let r = s.post("/Patient", &json!({"resourceType": "Patient", "name": [{"text": name}], "gender": "female"}));
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["id"].as_str().unwrap().to_string()
}

#[test]
fn services_are_charged_from_the_tariff_once_and_cancellation_aborts() {
    let s = Server::start();
    // A broken tariff entry is refused before it can stop the charges it would price.
    let mut bad = tariff("bad", EVENTS, "opd-registration", 10.0);
    bad["propertyGroup"][0]["priceComponent"][0]["amount"]["value"] = json!(-5);
    assert_eq!(s.put("/ChargeItemDefinition/bad", &bad).status, 422);
    setup(&s);

    let p = register(&s, "Sita Devi");
    let charges = charges_of(&s, &p);
    assert_eq!(charges.len(), 1, "registration is charged");
    assert_eq!(charges[0]["status"], "billable");
    assert_eq!(charges[0]["identifier"][0]["value"], format!("Patient/{p}"));
    assert_eq!(charges[0]["definitionCanonical"][0], "https://h.example/tariff/reg");

    // Booking charges the consultation; updating the booking does not charge again.
    let appt = s.post("/Appointment", &json!({"resourceType": "Appointment", "status": "booked", "slot": [{"reference": "Slot/s1"}],
        "participant": [{"actor": {"reference": format!("Patient/{p}")}, "status": "accepted"}]}));
    assert_eq!(appt.status, 201, "{}", appt.body);
    let mut appt = appt.json();
    let appt_id = appt["id"].as_str().unwrap().to_string();
    appt["comment"] = json!("first visit");
    assert_eq!(s.put(&format!("/Appointment/{appt_id}"), &appt).status, 200);
    assert_eq!(charges_of(&s, &p).len(), 2);

    // An order for a test in the catalogue is charged at the test's price; one not in the
    // tariff is not charged.
    let order = |code: &str| {
        s.post("/ServiceRequest", &json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]}, "subject": {"reference": format!("Patient/{p}")}}))
    };
    let cbc = order("58410-2").json();
    assert_eq!(order("0000-0").status, 201);
    let charges = charges_of(&s, &p);
    assert_eq!(charges.len(), 3);
    let cbc_charge = charges.iter().find(|c| c["identifier"][0]["value"] == format!("ServiceRequest/{}", cbc["id"].as_str().unwrap())).unwrap();
    assert_eq!(cbc_charge["extension"][0]["valueMoney"]["value"].as_f64(), Some(150.0));

    // The tariff changes: charges already made keep their price.
    let mut dearer = tariff("cbc", "http://loinc.org", "58410-2", 999.0);
    dearer["id"] = json!("cbc");
    assert_eq!(s.put("/ChargeItemDefinition/cbc", &dearer).status, 200);
    let mut touched = cbc_charge.clone();
    touched["note"] = json!([{"text": "checked"}]);
    let r = s.put(&format!("/ChargeItem/{}", cbc_charge["id"].as_str().unwrap()), &touched);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["extension"][0]["valueMoney"]["value"].as_f64(), Some(150.0));

    // Cancelling the appointment aborts its unbilled charge.
    appt["status"] = json!("cancelled");
    appt["cancelationReason"] = json!({"text": "patient called"});
    let r = s.put(&format!("/Appointment/{appt_id}"), &appt);
    assert_eq!(r.status, 200, "{}", r.body);
    let consult = s.get(&format!("/ChargeItem?identifier={SOURCE}|Appointment/{appt_id}")).json();
    assert_eq!(consult["entry"][0]["resource"]["status"], "aborted");
}

#[test]
fn manual_charges_need_a_price_and_a_reason_and_bad_ones_change_nothing() {
    let s = Server::start();
    setup(&s);
    let p = register(&s, "Kamla Bai");
    let charge = |extra: Value| {
        let mut c = json!({"resourceType": "ChargeItem", "status": "billable", "code": {"text": "Dressing"}, "subject": {"reference": format!("Patient/{p}")}});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        s.post("/ChargeItem", &c)
    };
    let before = s.ledger_size();
    assert_eq!(charge(json!({})).status, 422, "no price at all");
    assert_eq!(charge(json!({"priceOverride": {"value": 50, "currency": "INR"}})).status, 422, "no reason");
    assert_eq!(charge(json!({"priceOverride": {"value": -5, "currency": "INR"}, "overrideReason": "x"})).status, 422, "negative");
    assert_eq!(charge(json!({"priceOverride": {"value": 5, "currency": "USD"}, "overrideReason": "x"})).status, 422, "not INR");
    assert_eq!(charge(json!({"priceOverride": {"value": 5.001, "currency": "INR"}, "overrideReason": "x"})).status, 422, "fractions of paise");
    assert_eq!(charge(json!({"definitionCanonical": ["https://h.example/tariff/none"]})).status, 422, "not in the tariff");
    assert_eq!(charge(json!({"definitionCanonical": ["https://h.example/tariff/reg"], "quantity": {"value": 0}})).status, 422, "zero quantity");
    assert_eq!(charge(json!({"definitionCanonical": ["https://h.example/tariff/reg"], "status": "billed"})).status, 422, "born billed");
    assert_eq!(charge(json!({"definitionCanonical": ["https://h.example/tariff/reg"], "subject": {"reference": "Group/g"}})).status, 422, "not a patient");
    assert_eq!(s.ledger_size(), before, "refused charges write nothing");

    let r = charge(json!({"priceOverride": {"value": 35.5, "currency": "INR"}, "overrideReason": "dressing kit", "quantity": {"value": 2}}));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["extension"][0]["valueMoney"]["value"].as_f64(), Some(35.5));
    // Marking it billed by hand, without an invoice, is refused.
    let mut c = r.json();
    c["status"] = json!("billed");
    assert_eq!(s.put(&format!("/ChargeItem/{}", c["id"].as_str().unwrap()), &c).status, 422);
}

#[test]
fn invoices_gather_charges_once_and_cancelling_frees_them() {
    let s = Server::start();
    setup(&s);
    let p = register(&s, "Ramesh Kumar");
    let other = register(&s, "Someone Else");
    let gather = |patient: &str| s.post("/Invoice/$gather", &params(json!([{"name": "patient", "valueReference": {"reference": format!("Patient/{patient}")}}])));
    let inv = gather(&p);
    assert_eq!(inv.status, 201, "{}", inv.body);
    let inv = inv.json();
    let inv_id = inv["id"].as_str().unwrap().to_string();
    assert_eq!(inv["status"], "issued");
    assert_eq!(inv["totalGross"]["value"].as_f64(), Some(10.0));
    assert_eq!(inv["lineItem"][0]["priceComponent"][0]["amount"]["value"].as_f64(), Some(10.0));
    let charge_ref = inv["lineItem"][0]["chargeItemReference"]["reference"].as_str().unwrap().to_string();
    let charge = s.get(&format!("/{charge_ref}")).json();
    assert_eq!(charge["status"], "billed");
    // Nothing left to gather; the same charge cannot go on a second invoice, nor on another
    // patient's; a line's price cannot differ from its charge's.
    assert_eq!(gather(&p).status, 422);
    let again = json!({"resourceType": "Invoice", "status": "issued", "subject": {"reference": format!("Patient/{p}")},
        "lineItem": [{"chargeItemReference": {"reference": charge_ref}}]});
    assert_eq!(s.post("/Invoice", &again).status, 409);
    let mut theirs = again.clone();
    theirs["subject"]["reference"] = json!(format!("Patient/{other}"));
    assert_eq!(s.post("/Invoice", &theirs).status, 422);
    assert_eq!(gather("nobody").status, 422);
    assert_eq!(s.post("/Invoice/$gather", &params(json!([]))).status, 400);

    // Cancelling the invoice makes its charge billable again, and a new invoice takes it.
    let r = s.post(&format!("/Invoice/{inv_id}/$cancel"), &params(json!([{"name": "reason", "valueString": "wrong counter"}])));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(s.get(&format!("/{charge_ref}")).json()["status"], "billable");
    let mut wrong_price = again.clone();
    wrong_price["lineItem"][0]["priceComponent"] = json!([{"type": "base", "amount": {"value": 1, "currency": "INR"}}]);
    assert_eq!(s.post("/Invoice", &wrong_price).status, 422);
    let r = s.post("/Invoice", &again);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["totalGross"]["value"].as_f64(), Some(10.0));
}

#[test]
fn the_day_end_report_counts_each_counter_and_cashier() {
    let s = Server::start();
    setup(&s);
    let ravi = s.add_user("cash.ravi", "billing", &[]);
    let meena = s.add_user("cash.meena", "billing", &[]);
    let mut invoices = vec![];
    for name in ["A", "B", "C"] {
        let p = register(&s, name);
        // A manual charge makes each bill ₹510 (registration ₹10 + ₹500).
        let r = s.post("/ChargeItem", &json!({"resourceType": "ChargeItem", "status": "billable", "code": {"text": "Procedure"},
            "subject": {"reference": format!("Patient/{p}")}, "priceOverride": {"value": 500, "currency": "INR"}, "overrideReason": "package"}));
        assert_eq!(r.status, 201, "{}", r.body);
        let inv = s.post("/Invoice/$gather", &params(json!([{"name": "patient", "valueReference": {"reference": format!("Patient/{p}")}}]))).json();
        assert_eq!(inv["totalGross"]["value"].as_f64(), Some(510.0));
        invoices.push(inv["id"].as_str().unwrap().to_string());
    }
    let pay = |token: &str, inv: &str, rupees: i64, mode: &str, counter: &str, key: &str| {
        s.request_as(token, "POST", &format!("/Invoice/{inv}/$pay"), Some(&params(json!([
            {"name": "amount", "valueMoney": {"value": rupees, "currency": "INR"}}, {"name": "mode", "valueCode": mode},
            {"name": "counter", "valueString": counter}, {"name": "key", "valueString": key}]))))
    };
    assert_eq!(pay(&ravi, &invoices[0], 510, "cash", "OPD-1", "k1").status, 200);
    assert_eq!(pay(&ravi, &invoices[0], 510, "cash", "OPD-1", "k1").status, 200, "a retry is answered, not recorded again");
    assert_eq!(pay(&ravi, &invoices[1], 10, "upi", "OPD-1", "k2").status, 200);
    assert_eq!(pay(&meena, &invoices[1], 500, "card", "OPD-2", "k3").status, 200);
    assert_eq!(pay(&meena, &invoices[2], 200, "cash", "OPD-2", "k4").status, 200);
    assert_eq!(pay(&meena, &invoices[2], 1000, "cash", "OPD-2", "k5").status, 409, "more than the balance");
    assert_eq!(pay(&meena, &invoices[2], 10, "cheque", "OPD-2", "k6").status, 400);
    let refund = s.request_as(&meena, "POST", &format!("/Invoice/{}/$refund", invoices[2]), Some(&params(json!([
        {"name": "amount", "valueMoney": {"value": 50, "currency": "INR"}}, {"name": "reason", "valueString": "test not done"},
        {"name": "counter", "valueString": "OPD-2"}, {"name": "key", "valueString": "r1"}]))));
    assert_eq!(refund.status, 200, "{}", refund.body);

    let today = {
        // The hospital's date now (IST); the report is per hospital day.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        vaidya_domain::schedule::from_utc_ms(now, vaidya_domain::schedule::IST_OFFSET_MINUTES).unwrap().0.to_string()
    };
    let report = s.post("/Invoice/$cash-report", &params(json!([{"name": "date", "valueDate": today}])));
    assert_eq!(report.status, 200, "{}", report.body);
    let report = report.json();
    let part = |p: &Value, name: &str| -> Value { p["part"].as_array().unwrap().iter().find(|x| x["name"] == name).cloned().unwrap_or(Value::Null) };
    let money = |p: &Value, name: &str| part(p, name)["valueMoney"]["value"].as_f64().unwrap();
    let row = |name: &str, counter: &str, cashier: Option<&str>| -> Value {
        report["parameter"].as_array().unwrap().iter().find(|p| {
            p["name"] == name && part(p, "counter")["valueString"] == counter && cashier.is_none_or(|c| part(p, "cashier")["valueString"] == c)
        }).cloned().unwrap_or_else(|| panic!("no {name} row for {counter} in {report}"))
    };
    let r = row("cashier", "OPD-1", Some("cash.ravi"));
    assert_eq!((money(&r, "cash"), money(&r, "upi"), money(&r, "card")), (510.0, 10.0, 0.0));
    assert_eq!(part(&r, "payments")["valueInteger"], 2);
    let m = row("cashier", "OPD-2", Some("cash.meena"));
    assert_eq!((money(&m, "cash"), money(&m, "card"), money(&m, "refunded-cash"), money(&m, "cash-in-drawer")), (200.0, 500.0, 50.0, 150.0));
    assert_eq!(part(&m, "refunds")["valueInteger"], 1);
    let total = report["parameter"].as_array().unwrap().iter().find(|p| p["name"] == "total").unwrap().clone();
    assert_eq!((money(&total, "collected"), money(&total, "refunded"), money(&total, "net")), (1220.0, 50.0, 1170.0));

    // Another day has nothing; a malformed date is refused.
    let empty = s.post("/Invoice/$cash-report", &params(json!([{"name": "date", "valueDate": "2001-01-01"}]))).json();
    let total = empty["parameter"].as_array().unwrap().iter().find(|p| p["name"] == "total").unwrap().clone();
    assert_eq!(money(&total, "collected"), 0.0);
    assert_eq!(s.post("/Invoice/$cash-report", &params(json!([{"name": "date", "valueDate": "2026-13-01"}]))).status, 400);
    assert_eq!(s.post("/Invoice/$cash-report", &params(json!([]))).status, 400);
}
