//! The store's contract: group commit, per-job rollback, verification of every projection.
//! Tests listed in `on_both_engines!` run on SQLite and on PostgreSQL.

mod common;
use common::engines::{Engine, open as open_on};

use serde_json::{Value, json};
use std::sync::Arc;
use vaidya_ledger::LedgerKey;
use vaidya_store::{Store, StoreError, WriteTx};

fn open(dir: &tempfile::TempDir) -> (Arc<Store>, String) {
    let key = LedgerKey::generate("vaidya.test/ledger");
    let vkey = key.verifier_text().to_string();
    (Arc::new(Store::open(&dir.path().join("db"), key).unwrap()), vkey)
}

fn put(tx: &mut WriteTx<'_>, id: &str, family: &str) -> Result<u64, StoreError> {
    let r = json!({"resourceType": "Patient", "name": [{"family": family}]});
    let index = vaidya_fhir::index::extract_all(&r);
    Ok(tx.put("test", "Patient", id, &vaidya_store::Body::from_resource(&r), &index)?.seq)
}

fn verify(store: &Store, vkey: &str) -> vaidya_store::verify::VerifyReport {
    store.read(|c| vaidya_store::verify::verify(c, vkey)).unwrap()
}

fn concurrent_writers_are_all_committed_in_one_chain(engine: Engine) {
    let (store, vkey) = open_on(engine);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let id = format!("t{t}-{i}");
                    store.write_blocking(move |tx| put(tx, &id, "Kumar")).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let report = verify(&store, &vkey);
    assert_eq!(report.entries, 400);
    assert_eq!(report.resources, 400);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

fn a_failing_or_panicking_job_rolls_back_alone(engine: Engine) {
    let (store, vkey) = open_on(engine);
    // Submit without waiting so that the jobs land in one group commit.
    let (r1, rx1) = tokio::sync::oneshot::channel();
    let (r2, rx2) = tokio::sync::oneshot::channel();
    let (r3, rx3) = tokio::sync::oneshot::channel();
    let (r4, rx4) = tokio::sync::oneshot::channel::<Result<u64, StoreError>>();
    store.submit(|tx| put(tx, "a", "One"), r1).unwrap();
    store
        .submit(
            |tx| {
                put(tx, "b", "Two")?;
                Err::<u64, _>(StoreError::Corrupt("deliberate failure after a write".into()))
            },
            r2,
        )
        .unwrap();
    store
        .submit(
            |tx| {
                put(tx, "c", "Three").unwrap();
                panic!("deliberate panic after a write");
            },
            r4,
        )
        .unwrap();
    store.submit(|tx| put(tx, "d", "Four"), r3).unwrap();
    assert_eq!(rx1.blocking_recv().unwrap().unwrap(), 1);
    assert!(rx2.blocking_recv().unwrap().is_err());
    assert!(rx4.blocking_recv().is_err(), "a panicking job's caller hears that it failed");
    assert_eq!(rx3.blocking_recv().unwrap().unwrap(), 2, "the chain continues right after the rolled-back jobs");
    let report = verify(&store, &vkey);
    assert_eq!(report.entries, 2);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let current = store.read(|c| vaidya_store::read::current(c, "Patient", "b")).unwrap();
    assert!(current.is_none());
}

#[test]
fn verify_catches_a_tampered_projection_and_names_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (store, vkey) = open(&dir);
    for (i, name) in ["Ali", "Bose", "Chandra"].iter().enumerate() {
        let id = format!("p{i}");
        let name = name.to_string();
        store.write_blocking(move |tx| put(tx, &id, &name)).unwrap();
    }
    store.shutdown();
    let conn = rusqlite::Connection::open(dir.path().join("db")).unwrap();
    conn.execute("UPDATE ix_string SET value = 'mallory' WHERE value = 'bose'", []).unwrap();
    let report = vaidya_store::verify::verify(&conn, &vkey).unwrap();
    let first = report.problems.first().expect("a problem is reported");
    assert_eq!(first.seq, Some(2), "{:?}", report.problems);
    assert!(first.what.contains("search index"), "{first}");

    // Deleting the last entry outright is caught by the signed checkpoint that covers it.
    conn.execute("UPDATE ix_string SET value = 'bose' WHERE value = 'mallory'", []).unwrap();
    conn.execute("DELETE FROM ledger WHERE seq = 3", []).unwrap();
    let report = vaidya_store::verify::verify(&conn, &vkey).unwrap();
    assert!(report.problems.iter().any(|p| p.what.contains("checkpoint")), "{:?}", report.problems);
}

fn history_and_versions_follow_the_ledger(engine: Engine) {
    let (store, _) = open_on(engine);
    store.write_blocking(|tx| put(tx, "x", "First")).unwrap();
    store.write_blocking(|tx| put(tx, "x", "Second")).unwrap();
    store.write_blocking(|tx| Ok::<_, StoreError>(tx.delete("test", "Patient", "x")?.is_some())).unwrap();
    let again = store.write_blocking(|tx| Ok::<_, StoreError>(tx.delete("test", "Patient", "x")?.is_some())).unwrap();
    assert!(!again, "deleting twice writes nothing the second time");
    let (items, total) = store
        .read(|c| vaidya_store::read::history(c, vaidya_store::read::HistoryScope::Instance("Patient", "x"), None, 10, 0))
        .unwrap();
    assert_eq!(total, 3);
    let versions: Vec<u64> = items.iter().map(|i| i.stored.version).collect();
    assert_eq!(versions, vec![3, 2, 1]);
    assert!(items[0].stored.deleted);
    let v1 = store.read(|c| vaidya_store::read::version(c, "Patient", "x", 1)).unwrap().unwrap();
    let v1: Value = serde_json::from_slice(&v1.content).unwrap();
    assert_eq!(v1["name"][0]["family"], "First");
    assert_eq!(v1["meta"]["versionId"], "1");
}

#[test]
fn an_interrupted_bulk_load_gets_its_indexes_back_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let count_indexes = |dir: &tempfile::TempDir| -> i64 {
        let c = rusqlite::Connection::open(dir.path().join("db")).unwrap();
        c.query_row("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name LIKE '%_search'", [], |r| r.get(0))
            .unwrap()
    };
    let key = LedgerKey::generate("vaidya.test/ledger");
    let (skey, vkey) = (key.private_text().to_string(), key.verifier_text().to_string());
    let store = Store::open(&dir.path().join("db"), key).unwrap();
    store.write_blocking(|tx| put(tx, "a", "Before")).unwrap();
    let full = count_indexes(&dir);
    assert!(full >= 9, "{full}");
    store.begin_bulk_load().unwrap();
    assert_eq!(count_indexes(&dir), 0);
    store.write_blocking(|tx| put(tx, "b", "During")).unwrap();
    // Searching still works without the indexes (by scanning).
    let q = vaidya_store::search::parse_query(
        "Patient",
        &[("family".to_string(), "dur".to_string())],
        vaidya_store::search::Handling::Strict,
    )
    .unwrap();
    assert_eq!(store.read(|c| vaidya_store::search::run(c, &q)).unwrap().total, 1);
    // The process stops here without end_bulk_load.
    drop(store);
    let store = Store::open(&dir.path().join("db"), LedgerKey::from_private(&skey).unwrap()).unwrap();
    assert_eq!(count_indexes(&dir), full);
    let report = verify(&store, &vkey);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.entries, 2);
}

fn a_failing_unguarded_job_rolls_back_its_whole_group_and_everyone_hears_it(engine: Engine) {
    let (store, vkey) = open_on(engine);
    store.write_blocking(|tx| put(tx, "before", "Zero")).unwrap();
    // A job that waits for a signal holds the writer, so that the jobs submitted meanwhile
    // are taken as one group when it lets go (no timing involved).
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let (r0, rx0) = tokio::sync::oneshot::channel();
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    store
        .submit(
            move |tx| {
                started_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                put(tx, "blocker", "Blocker")
            },
            r0,
        )
        .unwrap();
    started_rx.recv().unwrap();
    let (rg, rxg) = tokio::sync::oneshot::channel();
    let (r1, rx1) = tokio::sync::oneshot::channel();
    let (r2, rx2) = tokio::sync::oneshot::channel();
    let (r3, rx3) = tokio::sync::oneshot::channel();
    store.submit(|tx| put(tx, "g", "Guarded"), rg).unwrap();
    store.submit_unguarded(|tx| put(tx, "a", "One"), r1).unwrap();
    store
        .submit_unguarded(
            |tx| {
                put(tx, "b", "Two")?;
                Err::<u64, _>(StoreError::Corrupt("deliberate fault after a write".into()))
            },
            r2,
        )
        .unwrap();
    store.submit_unguarded(|tx| put(tx, "c", "Three"), r3).unwrap();
    go_tx.send(()).unwrap();
    assert!(rx0.blocking_recv().unwrap().is_ok());
    let (g, a, b, c) =
        (rxg.blocking_recv().unwrap(), rx1.blocking_recv().unwrap(), rx2.blocking_recv().unwrap(), rx3.blocking_recv().unwrap());
    assert!(matches!(b, Err(StoreError::Corrupt(_))), "{b:?}");
    // Everything of the group up to the failure was rolled back and told so; what came after
    // ran in a fresh transaction.
    assert!(matches!(g, Err(StoreError::CommitFailed(_))), "{g:?}");
    assert!(matches!(a, Err(StoreError::CommitFailed(_))), "{a:?}");
    assert!(c.is_ok(), "{c:?}");
    for (id, present) in [("before", true), ("blocker", true), ("g", false), ("a", false), ("b", false), ("c", true)] {
        let found = store.read(|conn| vaidya_store::read::current(conn, "Patient", id)).unwrap().is_some();
        assert_eq!(found, present, "{id}");
    }
    let report = verify(&store, &vkey);
    assert_eq!(report.entries, 3);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

fn history_since_counts_and_pages_only_later_entries(engine: Engine) {
    let (store, _) = open_on(engine);
    for i in 0..3 {
        let id = format!("early{i}");
        store.write_blocking(move |tx| put(tx, &id, "Early")).unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(5));
    let since = vaidya_fhir::datetime::now_ms();
    for i in 0..4 {
        let id = format!("late{i}");
        store.write_blocking(move |tx| put(tx, &id, "Late")).unwrap();
    }
    use vaidya_store::read::{HistoryScope, history};
    let (items, total) = store.read(|c| history(c, HistoryScope::System, Some(since), 2, 0)).unwrap();
    assert_eq!(total, 4);
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|i| i.id.starts_with("late")));
    let (items, _) = store.read(|c| history(c, HistoryScope::Type("Patient"), Some(since), 10, 2)).unwrap();
    assert_eq!(items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), vec!["late1", "late0"]);
    let (_, total) = store.read(|c| history(c, HistoryScope::Instance("Patient", "early0"), Some(since), 10, 0)).unwrap();
    assert_eq!(total, 0);
}

#[test]
fn a_version_1_database_is_migrated_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(&dir);
    store.write_blocking(|tx| put(tx, "a", "Kept")).unwrap();
    drop(store);
    // Make it look like a database written by schema version 1 (no department or patient column).
    let conn = rusqlite::Connection::open(dir.path().join("db")).unwrap();
    conn.execute_batch(
        "ALTER TABLE api_user DROP COLUMN department; ALTER TABLE api_user DROP COLUMN patient;
         ALTER TABLE api_user DROP COLUMN totp_secret; ALTER TABLE api_user DROP COLUMN totp_pending;
         ALTER TABLE api_user DROP COLUMN totp_last_step; ALTER TABLE api_user DROP COLUMN failed_logins;
         ALTER TABLE api_user DROP COLUMN locked_until_ms; ALTER TABLE api_user DROP COLUMN disabled_ms;
         ALTER TABLE api_token DROP COLUMN kind; ALTER TABLE api_token DROP COLUMN scopes;
         ALTER TABLE api_token DROP COLUMN last_used_ms; ALTER TABLE api_user DROP COLUMN practitioner;
         PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(conn);
    let store = Store::open(&dir.path().join("db"), LedgerKey::generate("vaidya.test/ledger")).unwrap();
    let admin = vaidya_store::open_admin(&dir.path().join("db")).unwrap();
    assert!(vaidya_store::tokens::insert_user(&admin, "asha", "lab", Some("lab"), None, false).unwrap());
    assert!(vaidya_store::tokens::set_user_patient(&admin, "asha", "p1").unwrap());
    // Version 4's columns: lockout counters, TOTP, suspension; token kinds and scopes.
    let row = vaidya_store::tokens::find_login(&admin, "asha").unwrap().unwrap();
    assert_eq!((row.failed_logins, row.locked_until_ms, row.disabled_ms, row.totp_secret), (0, None, None, None));
    vaidya_store::tokens::insert_token_of_kind(&admin, "t1", b"h", "asha", None, "api", Some("system/Observation.write")).unwrap();
    let t = vaidya_store::tokens::find_token(&admin, "t1").unwrap().unwrap();
    assert_eq!((t.kind.as_str(), t.scopes.as_deref()), ("api", Some("system/Observation.write")));
    // Version 5's: a clinician's Practitioner.
    assert!(vaidya_store::tokens::set_user_practitioner(&admin, "asha", "dr-asha").unwrap());
    assert_eq!(vaidya_store::tokens::find_token(&admin, "t1").unwrap().unwrap().practitioner.as_deref(), Some("dr-asha"));
    assert_eq!(vaidya_store::tokens::record_login_failure(&admin, "asha", 1000, |n| (n >= 2).then_some(60_000)).unwrap(), Some((1, None)));
    assert_eq!(vaidya_store::tokens::record_login_failure(&admin, "asha", 1000, |n| (n >= 2).then_some(60_000)).unwrap(), Some((2, Some(61_000))));
    assert!(vaidya_store::tokens::accept_totp_step(&admin, "asha", 7).unwrap());
    assert!(!vaidya_store::tokens::accept_totp_step(&admin, "asha", 7).unwrap(), "a TOTP step is used once");
    assert!(vaidya_store::tokens::accept_totp_step(&admin, "asha", 8).unwrap());
    let version: i64 = admin.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, vaidya_store::schema::SCHEMA_VERSION);
    assert!(store.read(|c| vaidya_store::read::current(c, "Patient", "a")).unwrap().is_some());
}

fn family_search(store: &Store, family: &str) -> Vec<String> {
    let q = vaidya_store::search::parse_query("Patient", &[("family".into(), family.into())], vaidya_store::search::Handling::Strict).unwrap();
    store.read(|c| vaidya_store::search::run(c, &q)).unwrap().matches.into_iter().map(|m| m.id).collect()
}

#[test]
fn a_node_branch_is_recorded_per_transaction_signed_with_the_node_key_and_cut_back_to_the_fork() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let (core_key, node_key) = (LedgerKey::generate("vaidya.test/ledger"), LedgerKey::generate("vaidya.test/node-07"));
    let (core_v, node_v) = (core_key.verifier_text().to_string(), node_key.verifier_text().to_string());
    // The core's ledger (here written in place; a node gets it through the feed).
    let core = Store::open(&path, core_key).unwrap();
    for (id, family) in [("a", "Sharma"), ("b", "Verma"), ("c", "Iyer")] {
        core.write_blocking(move |tx| put(tx, id, family)).unwrap();
    }
    core.shutdown();
    drop(core);

    let node = Store::open_node(&path, LedgerKey::from_private(node_key.private_text()).unwrap()).unwrap();
    let fork = node.write_blocking(|tx| tx.begin_branch()).unwrap();
    assert_eq!(fork, 3);
    // Downtime writes: a new patient with an update in one transaction, a changed one, a deleted one.
    node.write_blocking(|tx| -> Result<(), StoreError> {
        put(tx, "d", "Khan")?;
        put(tx, "d", "Khanna")?;
        Ok(())
    })
    .unwrap();
    node.write_blocking(|tx| put(tx, "a", "Sharma-Gupta")).unwrap();
    node.write_blocking(|tx| tx.delete("test", "Patient", "b").map(|_| ())).unwrap();
    assert_eq!(family_search(&node, "Khanna"), vec!["d"]);
    assert!(family_search(&node, "Verma").is_empty());
    // A replica on a branch takes no entries from the core.
    let foreign = vaidya_ledger::Entry {
        seq: 7, time_ms: 1, author: "x".into(), op: vaidya_ledger::Op::Put, resource_type: "Basic".into(),
        resource_id: "x".into(), version: 1, content: b"{}".to_vec(), prev_hash: vaidya_ledger::GENESIS_PREV,
    };
    let err = node.write_blocking(move |tx| tx.replay(&foreign, &foreign.encode(), &[])).unwrap_err();
    assert!(err.to_string().contains("downtime branch"), "{err}");
    node.shutdown(); // signs the branch's last checkpoint
    drop(node);

    let node = Store::open_node(&path, LedgerKey::from_private(node_key.private_text()).unwrap()).unwrap();
    let (units, note): (Vec<(i64, i64)>, String) = node
        .read(|c| -> Result<_, StoreError> {
            let units = c.sqlite().unwrap().prepare("SELECT first_seq, last_seq FROM branch_tx ORDER BY first_seq")?.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
            let note = c.sqlite().unwrap().query_row("SELECT note FROM branch_checkpoint ORDER BY tree_size DESC LIMIT 1", [], |r| r.get(0))?;
            Ok((units, note))
        })
        .unwrap();
    assert_eq!(units, vec![(4, 5), (6, 6), (7, 7)], "one unit per write transaction");
    let cp = vaidya_ledger::verify_checkpoint(&note, &node_v).unwrap();
    assert_eq!(cp.tree_size, 7);
    assert!(vaidya_ledger::verify_checkpoint(&note, &core_v).is_err(), "signed with the node's key, not the core's");
    // The whole ledger still verifies with the core's key (its checkpoints are all the core's).
    let report = verify(&node, &core_v);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.entries, 7);

    let removed = node.write_blocking(|tx| tx.cut_branch()).unwrap();
    assert_eq!(removed, 4);
    let report = verify(&node, &core_v);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!((report.entries, report.resources), (3, 3));
    assert_eq!(family_search(&node, "Sharma"), vec!["a"]);
    assert!(family_search(&node, "Sharma-Gupta").is_empty());
    assert_eq!(family_search(&node, "Verma"), vec!["b"]);
    assert!(family_search(&node, "Khan").is_empty());
    let a = node.read(|c| vaidya_store::read::current(c, "Patient", "a")).unwrap().unwrap();
    assert_eq!((a.version, a.deleted), (1, false));
    assert!(node.read(|c| vaidya_store::read::current(c, "Patient", "d")).unwrap().is_none());
    let left: i64 = node.read(|c| c.sqlite().unwrap().query_row("SELECT (SELECT count(*) FROM branch) + (SELECT count(*) FROM branch_tx) + (SELECT count(*) FROM branch_checkpoint)", [], |r| r.get(0)).map_err(StoreError::from)).unwrap();
    assert_eq!(left, 0);
    // The chain continues from the fork (as the core's next entries will).
    let fork = node.write_blocking(|tx| tx.begin_branch()).unwrap();
    assert_eq!(fork, 3);
    node.write_blocking(|tx| put(tx, "e", "Das")).unwrap();
    assert!(verify(&node, &core_v).problems.is_empty());
}

#[test]
fn only_a_node_store_may_branch() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(&dir);
    let err = store.write_blocking(|tx| tx.begin_branch()).unwrap_err();
    assert!(err.to_string().contains("no key to sign a branch"), "{err}");
}

on_both_engines!(concurrent_writers_are_all_committed_in_one_chain, a_failing_or_panicking_job_rolls_back_alone, history_and_versions_follow_the_ledger, a_failing_unguarded_job_rolls_back_its_whole_group_and_everyone_hears_it, history_since_counts_and_pages_only_later_entries);
