//! Billing: invoice totals always equal their lines; payments with receipts, once per key.

mod common;
use common::*;
use serde_json::{Value, json};

fn invoice(lines: &[(&str, Value, u64)], status: &str) -> Value {
    json!({"resourceType": "Invoice", "status": status, "subject": {"reference": "Patient/p1"},
        "lineItem": lines.iter().map(|(what, amount, qty)| json!({
            "chargeItemCodeableConcept": {"text": what},
            "priceComponent": [{"type": "base", "amount": {"value": amount, "currency": "INR"}, "factor": qty}]
        })).collect::<Vec<_>>()})
}

fn pay(amount: Value, mode: &str, key: &str) -> Value {
    json!({"resourceType": "Parameters", "parameter": [
        {"name": "amount", "valueMoney": {"value": amount, "currency": "INR"}},
        {"name": "mode", "valueCode": mode}, {"name": "key", "valueString": key}]})
}

fn receipts(inv: &Value) -> Vec<String> {
    inv["extension"].as_array().into_iter().flatten()
        .map(|e| e["extension"].as_array().unwrap().iter().find(|x| x["url"] == "receipt").unwrap()["valueString"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn totals_follow_lines_and_payments_are_recorded_once() {
    let s = Server::start();
    let r = s.post("/Invoice", &invoice(&[("OPD registration", json!(10.00), 1), ("CBC", json!(150), 1), ("Syringe", json!(2.50), 4)], "issued"));
    assert_eq!(r.status, 201, "{}", r.body);
    let inv = r.json();
    assert_eq!(inv["totalGross"]["value"].to_string(), "170.00");
    assert_eq!(inv["totalNet"]["currency"], "INR");
    let id = inv["id"].as_str().unwrap();

    // Totals that disagree with the lines, bad amounts: refused, nothing written.
    let before = s.ledger_size();
    let mut wrong = invoice(&[("CBC", json!(150), 1)], "issued");
    wrong["totalGross"] = json!({"value": 149, "currency": "INR"});
    for (body, what) in [
        (wrong, "totalGross"),
        (invoice(&[("CBC", json!(150.005), 1)], "issued"), "value"),
        (invoice(&[("CBC", json!(-1), 1)], "issued"), "lineItem"),
        (invoice(&[("CBC", json!(1), 0)], "issued"), "lineItem"),
    ] {
        let r = s.post("/Invoice", &body);
        assert_eq!(r.status, 422, "{what}: {}", r.body);
        assert!(r.assert_outcome().to_string().contains(what), "{what}: {}", r.body);
    }
    let mut dollars = invoice(&[("CBC", json!(150), 1)], "issued");
    dollars["lineItem"][0]["priceComponent"][0]["amount"]["currency"] = json!("USD");
    assert_eq!(s.post("/Invoice", &dollars).status, 422);
    assert_eq!(s.ledger_size(), before);

    // A part payment, its retry (same key: recorded once), an overpayment (refused), the rest.
    let r = s.post(&format!("/Invoice/{id}/$pay"), &pay(json!(100), "cash", "counter-3-0001"));
    assert_eq!(r.status, 200, "{}", r.body);
    let after_first = s.ledger_size();
    let retry = s.post(&format!("/Invoice/{id}/$pay"), &pay(json!(100), "cash", "counter-3-0001"));
    assert_eq!(retry.status, 200);
    assert_eq!(s.ledger_size(), after_first, "a retried payment writes nothing");
    assert_eq!(receipts(&retry.json()).len(), 1);
    let over = s.post(&format!("/Invoice/{id}/$pay"), &pay(json!(80), "upi", "counter-3-0002"));
    assert_eq!(over.status, 409, "{}", over.body);
    assert!(over.body.contains("balance"), "{}", over.body);
    for (amount, key) in [(json!(-5), "neg"), (json!(0), "zero")] {
        assert_eq!(s.post(&format!("/Invoice/{id}/$pay"), &pay(amount, "cash", key)).status, 409);
    }
    assert_eq!(s.post(&format!("/Invoice/{id}/$pay"), &pay(json!(70), "bitcoin", "x")).status, 400);
    let done = s.post(&format!("/Invoice/{id}/$pay"), &pay(json!(70), "upi", "counter-3-0003")).json();
    assert_eq!(done["status"], "balanced");
    let r = receipts(&done);
    assert_eq!(r.len(), 2);
    assert_ne!(r[0], r[1]);
    assert!(r.iter().all(|x| x.starts_with('R') && x.len() == 14), "{r:?}");

    // A cancelled invoice takes no payment.
    let mut cancelled = invoice(&[("ECG", json!(50), 1)], "cancelled");
    cancelled["cancelledReason"] = json!("ordered twice");
    let c = s.post("/Invoice", &cancelled).json();
    let r = s.post(&format!("/Invoice/{}/$pay", c["id"].as_str().unwrap()), &pay(json!(50), "cash", "c1"));
    assert_eq!(r.status, 409, "{}", r.body);
}

fn params(pairs: &[(&str, Value)]) -> Value {
    json!({"resourceType": "Parameters", "parameter": pairs.iter().map(|(n, v)| {
        let mut p = v.clone();
        p["name"] = json!(n);
        p
    }).collect::<Vec<_>>()})
}

#[test]
fn refunds_waivers_and_cancellations_follow_the_rules() {
    let s = Server::start();
    let inv = s.post("/Invoice", &invoice(&[("X-ray chest", json!(100), 1)], "issued")).json();
    let id = inv["id"].as_str().unwrap();
    let op = |name: &str, body: Value| s.post(&format!("/Invoice/{id}/${name}"), &body);
    assert_eq!(op("pay", pay(json!(100), "card", "k1")).status, 200);

    // A refund never exceeds what was paid; a retried refund is recorded once.
    let refund = |amount: Value, key: &str| params(&[("amount", json!({"valueMoney": {"value": amount, "currency": "INR"}})),
        ("reason", json!({"valueString": "test not done"})), ("key", json!({"valueString": key}))]);
    let r = op("refund", refund(json!(101), "rf1"));
    assert_eq!(r.status, 409, "{}", r.body);
    let r = op("refund", refund(json!(40), "rf1"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "issued", "60 is owed again after a 40 refund");
    let before = s.ledger_size();
    assert_eq!(op("refund", refund(json!(40), "rf1")).status, 200);
    assert_eq!(s.ledger_size(), before);
    assert_eq!(op("refund", params(&[("amount", json!({"valueMoney": {"value": 10, "currency": "INR"}})), ("key", json!({"valueString": "rf2"}))])).status, 400, "a reason is required");

    // Cancelling is refused while money is held; a waiver needs an approver and clears the rest.
    assert_eq!(op("cancel", params(&[("reason", json!({"valueString": "duplicate"}))])).status, 409);
    assert_eq!(op("waive", params(&[("reason", json!({"valueString": "BPL card holder"}))])).status, 400);
    let r = op("waive", params(&[("approver", json!({"valueString": "dr.ms.medical-supdt"})), ("reason", json!({"valueString": "BPL card holder"}))]));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "balanced");
    assert_eq!(op("waive", params(&[("approver", json!({"valueString": "a"})), ("reason", json!({"valueString": "again"}))])).status, 409);

    // An unpaid invoice can be cancelled with a reason, and then takes no payment.
    let other = s.post("/Invoice", &invoice(&[("ECG", json!(50), 1)], "issued")).json();
    let oid = other["id"].as_str().unwrap();
    let r = s.post(&format!("/Invoice/{oid}/$cancel"), &params(&[("reason", json!({"valueString": "ordered twice"}))]));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "cancelled");
    assert_eq!(s.post(&format!("/Invoice/{oid}/$pay"), &pay(json!(50), "cash", "late")).status, 409);
    assert_eq!(s.post(&format!("/Invoice/{oid}/$explode"), &params(&[])).status, 404);
}
