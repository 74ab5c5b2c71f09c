//! The store's contract on both engines: the same writes, reads, history, searches and
//! verification on SQLite and on a real PostgreSQL (issue 8), and a ledger replayed from one
//! engine into the other keeps its Merkle root and its signed checkpoint.

mod common;

use common::pg::TestPg;
use serde_json::{Value, json};
use vaidya_ledger::LedgerKey;
use vaidya_store::read::HistoryScope;
use vaidya_store::sql::Db;
use vaidya_store::{Store, StoreError, StoreOptions, WriteTx};

fn put(tx: &mut WriteTx<'_>, rtype: &str, id: &str, r: &Value) -> Result<u64, StoreError> {
    let index = vaidya_fhir::index::extract_all(r);
    Ok(tx.put("test", rtype, id, &vaidya_store::Body::from_resource(r), &index)?.seq)
}

fn patient(family: &str, given: &str, uhid: &str) -> Value {
    json!({"resourceType": "Patient", "name": [{"family": family, "given": [given]}],
           "identifier": [{"system": "https://vaidya.example/uhid", "value": uhid}], "birthDate": "1980-05-01"})
}

/// Search `rtype` with `pairs`; the ids found, in order, and the total.
fn search(store: &Store, rtype: &str, pairs: &[(&str, &str)]) -> (Vec<String>, u64) {
    let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let q = vaidya_store::search::parse_query(rtype, &pairs, vaidya_store::search::Handling::Strict).unwrap();
    let out = store.read(|c| vaidya_store::search::run(c, &q)).unwrap();
    (out.matches.into_iter().map(|m| m.id).collect(), out.total)
}

/// The same assertions whatever the engine.
fn contract(store: &Store, vkey: &str) {
    store
        .write_blocking(|tx| -> Result<(), StoreError> {
            put(tx, "Patient", "p1", &patient("Sharma", "Asha", "UH-0001"))?;
            put(tx, "Patient", "p2", &patient("Sharief", "Ravi", "UH-0002"))?;
            put(tx, "Patient", "p3", &patient("Kumar", "Meena", "UH-0003"))?;
            put(tx, "Patient", "p4", &patient("Iyer", "Lakshmi", "UH-0004"))?;
            tx.set_sequence("uhid-central", 4)?;
            Ok(())
        })
        .unwrap();
    store
        .write_blocking(|tx| -> Result<(), StoreError> {
            put(tx, "Observation", "o1", &json!({"resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]}, "subject": {"reference": "Patient/p1"},
                "valueQuantity": {"value": 142.5, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"},
                "effectiveDateTime": "2026-11-20T09:30:00Z"}))?;
            put(tx, "Observation", "o2", &json!({"resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]}, "subject": {"reference": "Patient/p2"},
                "valueQuantity": {"value": 88, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"},
                "effectiveDateTime": "2026-11-21T09:30:00Z"}))?;
            put(tx, "Location", "l1", &json!({"resourceType": "Location", "name": "AIIMS OPD Block",
                "position": {"latitude": 28.5672, "longitude": 77.2100}}))?;
            put(tx, "Location", "l2", &json!({"resourceType": "Location", "name": "Safdarjung Lab",
                "position": {"latitude": 28.5683, "longitude": 77.2066}}))?;
            put(tx, "Location", "l3", &json!({"resourceType": "Location", "name": "Mumbai Annex",
                "position": {"latitude": 19.0760, "longitude": 72.8777}}))?;
            Ok(())
        })
        .unwrap();
    // A new version and a deletion.
    store.write_blocking(|tx| put(tx, "Patient", "p2", &patient("Sharief", "Ravi Shankar", "UH-0002"))).unwrap();
    store.write_blocking(|tx| tx.delete("test", "Patient", "p4").map(|_| ())).unwrap();
    // A job that fails is rolled back alone, on either engine.
    let failed = store.write_blocking(|tx| -> Result<(), StoreError> {
        put(tx, "Patient", "p9", &patient("Never", "Saved", "UH-0009"))?;
        Err(StoreError::Corrupt("refused".into()))
    });
    assert!(failed.is_err());
    // A create of an id that exists is refused by the uniqueness constraint (on PostgreSQL when
    // the job's held writes are sent), and only that job fails: the other in its group commits.
    let create = |id: &'static str, family: &'static str| {
        move |tx: &mut WriteTx<'_>| -> Result<u64, StoreError> {
            let r = patient(family, "Dup", "UH-0008");
            Ok(tx.create("test", "Patient", id, &vaidya_store::Body::from_resource(&r), &vaidya_fhir::index::extract_all(&r))?.seq)
        }
    };
    let (r1, rx1) = tokio::sync::oneshot::channel();
    let (r2, rx2) = tokio::sync::oneshot::channel();
    let (r3, rx3) = tokio::sync::oneshot::channel();
    store.submit(create("p5", "Bose"), r1).unwrap();
    store.submit(create("p1", "Impostor"), r2).unwrap();
    store.submit(|tx| tx.delete("test", "Patient", "p5").map(|_| 0u64), r3).unwrap();
    assert!(rx1.blocking_recv().unwrap().is_ok());
    assert!(rx2.blocking_recv().unwrap().is_err(), "Patient/p1 exists");
    assert!(rx3.blocking_recv().unwrap().is_ok());
    assert_eq!(store.write_blocking(|tx| tx.sequence("uhid-central")).unwrap(), Some(4));

    // Reads and history.
    let p2 = store.read(|c| vaidya_store::read::current(c, "Patient", "p2")).unwrap().unwrap();
    assert_eq!((p2.version, p2.deleted), (2, false));
    let body: Value = serde_json::from_slice(&p2.content).unwrap();
    assert_eq!(body["name"][0]["given"][0], "Ravi Shankar");
    let v1 = store.read(|c| vaidya_store::read::version(c, "Patient", "p2", 1)).unwrap().unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&v1.content).unwrap()["name"][0]["given"][0], "Ravi");
    assert!(store.read(|c| vaidya_store::read::current(c, "Patient", "p4")).unwrap().unwrap().deleted);
    assert!(store.read(|c| vaidya_store::read::current(c, "Patient", "p9")).unwrap().is_none(), "the failed job left nothing");
    let (items, total) = store.read(|c| vaidya_store::read::history(c, HistoryScope::Type("Patient"), None, 10, 0)).unwrap();
    assert_eq!((items.len(), total), (8, 8));
    assert_eq!(store.read(vaidya_store::read::ledger_size).unwrap(), 13);
    let p1 = store.read(|c| vaidya_store::read::current(c, "Patient", "p1")).unwrap().unwrap();
    assert_eq!((p1.version, serde_json::from_slice::<Value>(&p1.content).unwrap()["name"][0]["family"].clone()), (1, json!("Sharma")));

    // Searches: strings, tokens, sorting, quantities, dates, distances, deleted ones absent.
    assert_eq!(search(store, "Patient", &[("family", "shar"), ("_sort", "family")]), (vec!["p2".into(), "p1".into()], 2));
    assert_eq!(search(store, "Patient", &[("identifier", "https://vaidya.example/uhid|UH-0003")]).0, ["p3"]);
    assert_eq!(search(store, "Patient", &[("name:contains", "akshm")]).1, 0, "deleted resources are not found");
    assert_eq!(search(store, "Patient", &[("_sort", "-family")]).0, ["p1", "p2", "p3"]);
    assert_eq!(search(store, "Patient", &[("given", "ravi shankar")]).0, ["p2"]);
    assert_eq!(search(store, "Observation", &[("value-quantity", "gt100|http://unitsofmeasure.org|mg/dL")]).0, ["o1"]);
    assert_eq!(search(store, "Observation", &[("code-value-quantity", "http://loinc.org|2339-0$lt100")]).0, ["o2"]);
    assert_eq!(search(store, "Observation", &[("date", "ge2026-11-21")]).0, ["o2"]);
    assert_eq!(search(store, "Observation", &[("subject", "Patient/p1")]).0, ["o1"]);
    assert_eq!(search(store, "Location", &[("near", "28.5672|77.2100|2|km"), ("_sort", "name")]).0, ["l1", "l2"]);
    assert_eq!(search(store, "Patient", &[("_count", "1"), ("_sort", "family")]).0, ["p3"]);

    // The state beside the ledger, as backups carry it: the same bytes on either engine.
    let state: Value = serde_json::from_slice(&store.read(vaidya_store::state::snapshot).unwrap()).unwrap();
    assert_eq!(state["sequence"], json!({"columns": ["name", "value"], "rows": [["uhid-central", 4]]}));
    assert_eq!(state["api_user"]["rows"], json!([]));

    // The ledger, its tree, checkpoints and every projection verify.
    store.write_blocking(|tx| tx.sequence("uhid-central").map(|_| ())).unwrap();
    let report = store.read(|c| vaidya_store::verify::verify(c, vkey)).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.entries, 13);
}

fn new_key() -> (LedgerKey, String) {
    let key = LedgerKey::generate("vaidya.test/ledger");
    let vkey = key.verifier_text().to_string();
    (key, vkey)
}

#[test]
fn the_store_contract_holds_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (key, vkey) = new_key();
    let store = Store::open(&dir.path().join("db"), key).unwrap();
    contract(&store, &vkey);
}

#[test]
fn the_store_contract_holds_on_postgres() {
    let pg = TestPg::start();
    let (key, vkey) = new_key();
    let store = Store::open_location(vaidya_store::Location::postgres(&pg.fresh_database()), key, StoreOptions::default()).unwrap();
    contract(&store, &vkey);
}

/// Every entry of `from`, replayed onto the empty `to` with its last signed checkpoint.
fn replay_all(from: &Store, to: &Store) {
    let entries: Vec<Vec<u8>> = from.read(|c| c.query_map("SELECT entry FROM ledger ORDER BY seq", &[], |r| r.get(0))).unwrap();
    let checkpoint: (u64, i64, String) = from
        .read(|c| c.query_opt("SELECT tree_size, time_ms, note FROM checkpoint ORDER BY tree_size DESC LIMIT 1", &[], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))))
        .unwrap()
        .expect("a signed checkpoint");
    assert_eq!(checkpoint.0, entries.len() as u64, "the source's last checkpoint covers every entry");
    let root = from.read(|c| vaidya_store::merkle_root(c, checkpoint.0)).unwrap();
    to.write_blocking(move |tx| -> Result<(), StoreError> {
        for bytes in &entries {
            let entry = vaidya_ledger::Entry::decode(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let index = if entry.content.is_empty() {
                vec![]
            } else {
                vaidya_fhir::index::extract_all(&serde_json::from_slice::<Value>(&entry.content).unwrap())
            };
            tx.replay(&entry, bytes, &index)?;
        }
        tx.insert_checkpoint(checkpoint.0, checkpoint.1, &checkpoint.2, root)
    })
    .unwrap();
}

#[test]
fn a_ledger_replayed_across_engines_keeps_its_root_and_verifies_with_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let pg = TestPg::start();
    let (key, vkey) = new_key();
    let sqlite = Store::open(&dir.path().join("db"), key).unwrap();
    contract(&sqlite, &vkey);
    sqlite.shutdown(); // signs the last checkpoint
    let sqlite = Store::open_replica(&dir.path().join("db")).unwrap();

    let postgres = Store::open_replica_at(vaidya_store::Location::postgres(&pg.fresh_database())).unwrap();
    replay_all(&sqlite, &postgres);
    let size = sqlite.read(vaidya_store::read::ledger_size).unwrap();
    let roots = [&sqlite, &postgres].map(|s| s.read(|c| vaidya_store::merkle_root(c, size)).unwrap());
    assert_eq!(roots[0], roots[1], "the same Merkle root on both engines");
    let report = postgres.read(|c| vaidya_store::verify::verify(c, &vkey)).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.entries, size);
    // The same searches find the same resources.
    assert_eq!(search(&postgres, "Patient", &[("family", "shar"), ("_sort", "family")]).0, ["p2", "p1"]);

    // And back again: PostgreSQL to a new SQLite file, the same root.
    let back = Store::open_replica(&dir.path().join("back")).unwrap();
    replay_all(&postgres, &back);
    assert_eq!(back.read(|c| vaidya_store::merkle_root(c, size)).unwrap(), roots[0]);
}
