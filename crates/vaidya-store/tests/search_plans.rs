//! Search gives the same answers whichever plan `exec.rs` picks: a driving predicate with the
//! others as correlated EXISTS, the rowid walk for dense matches, the total counted from the
//! index alone (or not at all with `_total=none`). Results are checked against a brute-force
//! answer computed here.

mod common;
use common::engines::{Engine, open};

use serde_json::{Value, json};
use vaidya_store::search::{Handling, SearchOutcome, parse_query};
use vaidya_store::{Body, Store};

fn search(store: &Store, rtype: &str, query: &[(&str, &str)]) -> SearchOutcome {
    let pairs: Vec<(String, String)> = query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let q = parse_query(rtype, &pairs, Handling::Strict).unwrap();
    store.read(|c| vaidya_store::search::run(c, &q)).unwrap()
}

fn ids(o: &SearchOutcome) -> Vec<String> {
    o.matches.iter().map(|m| m.id.clone()).collect()
}

/// Patient `i`: half are Singh (dense matches), every 50th Sharma (few), with a Devanagari name
/// whose text repeats the given name (a resource matching a prefix twice).
fn patient(i: usize) -> Value {
    let (family, dev) = if i.is_multiple_of(50) {
        ("Sharma", "शर्मा")
    } else if i.is_multiple_of(2) {
        ("Singh", "सिंह")
    } else {
        ("Yadav", "यादव")
    };
    let given = if i.is_multiple_of(3) { ("Ramesh", "रमेश") } else { ("Sunita", "सुनीता") };
    json!({"resourceType": "Patient", "gender": if i.is_multiple_of(3) { "male" } else { "female" },
           "name": [{"family": family, "given": [given.0]},
                    {"text": format!("{} {dev}", given.1), "family": dev, "given": [given.1]}]})
}

fn put(store: &Store, rtype: &'static str, id: String, r: Value) {
    store
        .write_blocking(move |tx| {
            let index = vaidya_fhir::index::extract_all(&r);
            tx.put("test", rtype, &id, &Body::from_resource(&r), &index).map(|_| ())
        })
        .unwrap();
}

fn every_plan_finds_the_same_patients(engine: Engine) {
    let (store, _) = open(engine);
    let n = 1200;
    for i in 0..n {
        put(&store, "Patient", format!("p{i:04}"), patient(i));
    }
    let expect = |pred: &dyn Fn(usize) -> bool| -> Vec<String> { (0..n).filter(|&i| pred(i)).map(|i| format!("p{i:04}")).collect() };
    let singh = |i: usize| i.is_multiple_of(2) && !i.is_multiple_of(50);

    // Dense (600 of 1200): the first page walks the table in rowid order.
    let all = expect(&singh);
    for (q, total) in [("sin", true), ("Singh", true), ("सिं", true)] {
        let o = search(&store, "Patient", &[("name", q), ("_count", "20")]);
        assert_eq!(ids(&o), all[..20], "{q}");
        assert!(o.has_more);
        if total {
            assert_eq!((o.total, o.total_omitted), (all.len() as u64, false), "{q}: each patient counted once");
        }
    }
    let deep = search(&store, "Patient", &[("name", "sin"), ("_count", "30"), ("_offset", "570")]);
    assert_eq!(ids(&deep), all[570..]);
    assert!(!deep.has_more);
    let none = search(&store, "Patient", &[("name", "sin"), ("_count", "20"), ("_total", "none")]);
    assert_eq!((ids(&none), none.total_omitted), (all[..20].to_vec(), true));

    // Few (24): collected through the index.
    let sharma = expect(&|i| i % 50 == 0);
    let o = search(&store, "Patient", &[("name", "shar"), ("_count", "100")]);
    assert_eq!((ids(&o), o.total), (sharma.clone(), 24));
    // A Devanagari given name matches its `given` and the `text` that starts with it: once.
    let ramesh = expect(&|i| i % 3 == 0);
    assert_eq!(search(&store, "Patient", &[("name", "रमे"), ("_count", "0")]).total, ramesh.len() as u64);

    // Several predicates: one drives, the others are tested per candidate.
    let both = expect(&|i| singh(i) && i % 3 == 0);
    let o = search(&store, "Patient", &[("family", "singh"), ("given", "ram"), ("_count", "1000")]);
    assert_eq!((ids(&o), o.total), (both.clone(), both.len() as u64));
    let o = search(&store, "Patient", &[("gender", "male"), ("name", "sharma"), ("_count", "1000")]);
    assert_eq!(ids(&o), expect(&|i| i % 50 == 0 && i % 3 == 0));
    let o = search(&store, "Patient", &[("name", "sin"), ("gender:not", "male"), ("_count", "1000")]);
    assert_eq!(ids(&o), expect(&|i| singh(i) && i % 3 != 0));

    // A deleted patient: neither counted (the index-only count is not used then) nor listed.
    store.write_blocking(|tx| tx.delete("test", "Patient", "p0002").map(|_| ())).unwrap();
    let o = search(&store, "Patient", &[("name", "sin"), ("_count", "20")]);
    assert_eq!(o.total, all.len() as u64 - 1);
    assert_eq!(ids(&o), all[1..21]);
}

fn slot_holders_are_counted_by_slot_and_status(engine: Engine) {
    let (store, _) = open(engine);
    let statuses = ["booked", "arrived", "cancelled", "booked", "noshow"];
    for i in 0..300 {
        let a = json!({"resourceType": "Appointment", "status": statuses[i % statuses.len()],
                       "slot": [{"reference": format!("Slot/s{}", i % 7)}],
                       "participant": [{"actor": {"reference": format!("Patient/p{i}")}, "status": "accepted"}]});
        put(&store, "Appointment", format!("a{i:03}"), a);
    }
    for s in 0..7 {
        let expected = (0..300).filter(|i| i % 7 == s && matches!(statuses[i % statuses.len()], "booked" | "arrived")).count() as u64;
        let slot = format!("Slot/s{s}");
        let o = search(&store, "Appointment", &[("slot", &slot), ("status", "booked,arrived,checked-in,fulfilled"), ("_summary", "count")]);
        assert_eq!(o.total, expected, "{slot}");
        // The same with the predicates the other way round.
        let o = search(&store, "Appointment", &[("status", "booked,arrived,checked-in,fulfilled"), ("slot", &slot), ("_summary", "count")]);
        assert_eq!(o.total, expected, "{slot}");
    }
}

on_both_engines!(every_plan_finds_the_same_patients, slot_holders_are_counted_by_slot_and_status);
