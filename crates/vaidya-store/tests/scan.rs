//! Whole-type scans for bulk export: live current versions only, `since` on the last update,
//! and one snapshot for a whole export however the data changes meanwhile.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use vaidya_ledger::LedgerKey;
use vaidya_store::{Store, StoreError, scan};

fn put(store: &Store, resource: Value) -> i64 {
    store
        .write_blocking(move |tx| {
            let index = vaidya_fhir::index::extract_all(&resource);
            let rtype = resource["resourceType"].as_str().unwrap().to_string();
            let id = resource["id"].as_str().unwrap().to_string();
            tx.put("test", &rtype, &id, &vaidya_store::Body::from_resource(&resource), &index).map(|w| w.time_ms)
        })
        .unwrap()
}

/// id -> (version, family name) of every live Patient updated at or after `since`.
fn patients(conn: &vaidya_store::Connection, since: Option<i64>) -> BTreeMap<String, (u64, String)> {
    let mut out = BTreeMap::new();
    scan::current_of_type(conn, "Patient", since, |id, version, _updated, content| -> Result<bool, StoreError> {
        let v: Value = serde_json::from_slice(content).unwrap();
        assert_eq!(v["id"], id, "the content is the stored resource");
        out.insert(id.to_string(), (version, v["name"][0]["family"].as_str().unwrap_or("").to_string()));
        Ok(true)
    })
    .unwrap();
    out
}

fn patient(id: &str, family: &str) -> Value {
    json!({"resourceType": "Patient", "id": id, "name": [{"family": family}]})
}

#[test]
fn live_current_versions_since_a_time_in_one_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = Store::open(&path, LedgerKey::generate("vaidya.test/ledger")).unwrap();
    put(&store, patient("a", "Old"));
    put(&store, patient("b", "Gone"));
    put(&store, json!({"resourceType": "Organization", "id": "o", "name": "x"}));
    store.write_blocking(|tx| tx.delete("test", "Patient", "b").map(|_| ())).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    let t_a2 = put(&store, patient("a", "New"));
    put(&store, patient("c", "Later"));

    let conn = vaidya_store::open_read_only(&path).unwrap();
    let all = patients(&conn, None);
    assert_eq!(all, BTreeMap::from([("a".into(), (2, "New".into())), ("c".into(), (1, "Later".into()))]), "deleted b is not there");
    assert_eq!(patients(&conn, Some(t_a2)).len(), 2);
    assert!(patients(&conn, Some(t_a2 + 3_600_000)).is_empty());
    assert!(scan::type_present(&conn, "Patient").unwrap());
    assert!(!scan::type_present(&conn, "Encounter").unwrap());

    // Stopping early.
    let mut seen = 0;
    scan::current_of_type(&conn, "Patient", None, |_, _, _, _| -> Result<bool, StoreError> {
        seen += 1;
        Ok(false)
    })
    .unwrap();
    assert_eq!(seen, 1);

    // A write committed during a snapshot is not in it, and the snapshot's time is after
    // every version it sees.
    let (inside, at) = scan::in_snapshot(&conn, |c, at| -> Result<_, StoreError> {
        let before = patients(c, None);
        put(&store, patient("d", "During"));
        let after = patients(c, None);
        assert_eq!(before, after, "one snapshot");
        Ok((after, at))
    })
    .unwrap();
    assert!(!inside.contains_key("d"));
    assert!(at >= t_a2);
    assert!(patients(&conn, None).contains_key("d"), "outside the snapshot it is there");
    store.shutdown();
}
