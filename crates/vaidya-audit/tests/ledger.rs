//! The audit ledger as its users see it: record (async and blocking, many callers at once),
//! reopen and continue the chain, verify, report and export; every AuditEvent is valid FHIR.

mod common;

use common::*;
use std::collections::BTreeSet;
use vaidya_audit::{Action, Audit, AuditError, AuditRecord, Outcome, ReportRow, verify};
use vaidya_ledger::{Entry, LedgerKey};

fn copy(key: &LedgerKey) -> LedgerKey {
    LedgerKey::from_private(key.private_text()).unwrap()
}

#[test]
fn every_kind_of_event_is_a_valid_fhir_audit_event_before_and_after_storage() {
    for r in all_kinds() {
        let v = r.to_fhir();
        if let Err(issues) = vaidya_fhir::validate::validate_resource(&v) {
            panic!("{:?} is not valid: {issues:?}\n{v:#}", r.action);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let key = key();
    let audit = Audit::open(dir.path(), copy(&key)).unwrap();
    audit.record_blocking(all_kinds()).unwrap();
    audit.shutdown();
    let mut out = Vec::new();
    let n = vaidya_audit::export(dir.path(), 0, i64::MAX, &mut out).unwrap();
    assert_eq!(n as usize, all_kinds().len());
    let kinds = all_kinds();
    for (i, line) in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).enumerate() {
        let v: serde_json::Value = serde_json::from_slice(line).unwrap();
        assert_eq!(v["id"], (i + 1).to_string());
        // The journal keeps a compact record; what comes out is the record's AuditEvent, exactly.
        let mut without_id = v.clone();
        without_id.as_object_mut().unwrap().remove("id");
        assert_eq!(without_id, kinds[i].to_fhir(), "event {}", i + 1);
        if let Err(issues) = vaidya_fhir::validate::validate_resource(&v) {
            panic!("stored event {} is not valid: {issues:?}\n{v:#}", i + 1);
        }
    }
}

#[test]
fn the_fhir_mapping_says_what_happened() {
    let kinds = all_kinds();
    let btg = kinds.iter().find(|r| r.action == Action::BreakGlass).unwrap().to_fhir();
    assert_eq!(btg["type"]["code"], "110113");
    assert_eq!(btg["subtype"][0]["code"], "110127");
    let purpose: Vec<&str> = btg["purposeOfEvent"][0]["coding"].as_array().unwrap().iter().map(|c| c["code"].as_str().unwrap()).collect();
    assert_eq!(purpose, ["BTG", "ETREAT"]);
    assert_eq!(btg["purposeOfEvent"][0]["text"], "unconscious patient in casualty, consultant not reachable");
    assert_eq!(btg["agent"][0]["purposeOfUse"][0], btg["purposeOfEvent"][0]);

    let read = read_event(3).to_fhir();
    assert_eq!(read["type"]["system"], "http://terminology.hl7.org/CodeSystem/audit-event-type");
    assert_eq!(read["type"]["code"], "rest");
    assert_eq!(read["subtype"][0]["system"], "http://hl7.org/fhir/restful-interaction");
    assert_eq!(read["subtype"][0]["code"], "read");
    assert_eq!(read["action"], "R");
    assert_eq!(read["outcome"], "0");
    assert_eq!(read["recorded"], "2025-11-27T08:00:00.003Z");
    assert_eq!(read["agent"][0]["who"]["identifier"]["value"], "user0");
    assert_eq!(read["agent"][0]["altId"], "tok3");
    assert_eq!(read["agent"][0]["requestor"], true);
    assert_eq!(read["agent"][0]["network"]["address"], "10.1.2.3");
    assert_eq!(read["agent"][0]["network"]["type"], "2");
    assert_eq!(read["source"]["observer"]["display"], vaidya_audit::OBSERVER);
    // The patient read is one entity, in the Patient role.
    assert_eq!(read["entity"].as_array().unwrap().len(), 1);
    assert_eq!(read["entity"][0]["what"]["reference"], "Patient/p3");
    assert_eq!(read["entity"][0]["role"]["code"], "1");

    let search = kinds.iter().find(|r| r.action == Action::Search).unwrap().to_fhir();
    assert_eq!(search["action"], "E");
    assert_eq!(search["outcome"], "8");
    let query = search["entity"].as_array().unwrap().iter().find(|e| e["role"]["code"] == "24").unwrap();
    assert_eq!(query["detail"][0]["valueString"], "Patient/p1 Patient/p2");
    assert!(query["description"].as_str().unwrap().starts_with("Patient?identifier="));

    let denied = kinds.iter().find(|r| r.action == Action::VRead).unwrap().to_fhir();
    assert_eq!(denied["outcome"], "4");
    assert_eq!(denied["outcomeDesc"], "role nurse may not delete Patient");
    let row = ReportRow::from_event(&denied);
    assert_eq!(row.outcome, "denied: role nurse may not delete Patient");
    assert_eq!(row.action, "vread");
    assert_eq!(row.user, "user1");
    assert_eq!(row.role, "doctor");
    assert_eq!(row.address, "10.1.2.3");
    let row = ReportRow::from_event(&btg);
    assert_eq!(row.reason, "BTG ETREAT: unconscious patient in casualty, consultant not reachable");
    assert_eq!(row.action, "break-glass");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_share_commits_and_the_chain_stays_whole() {
    let dir = tempfile::tempdir().unwrap();
    let key = key();
    let audit = Audit::open(dir.path(), copy(&key)).unwrap();
    let mut tasks = Vec::new();
    for t in 0..32 {
        let audit = audit.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                audit.record(vec![read_event(t * 1000 + i)]).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // A blocking thread's caller is answered too (through a task on this runtime).
    let blocking = audit.clone();
    tokio::task::spawn_blocking(move || blocking.record_blocking(vec![read_event(999_999)])).await.unwrap().unwrap();
    let audit2 = audit.clone();
    tokio::task::spawn_blocking(move || audit2.shutdown()).await.unwrap();
    assert!(matches!(audit.record(vec![read_event(1)]).await, Err(AuditError::WriterGone)));
    drop(audit);

    let report = verify(dir.path(), key.verifier_text()).unwrap();
    assert_eq!(report.entries, 801);
    assert_eq!(report.unsigned, 0, "shutdown signs a final checkpoint");
    assert_eq!(report.last_checkpoint.unwrap().0, 801);
    // Every event is there once.
    let mut out = Vec::new();
    vaidya_audit::export(dir.path(), 0, i64::MAX, &mut out).unwrap();
    let tokens: BTreeSet<String> = out
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice::<serde_json::Value>(l).unwrap()["agent"][0]["altId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(tokens.len(), 801);
}

#[test]
fn reopening_continues_the_chain_and_reports_find_the_patient() {
    let dir = tempfile::tempdir().unwrap();
    let key = key();
    filled(dir.path(), &key, 20);
    // Reopen: the writer resumes from the stored tip (tree hashes read back from the table).
    let audit = Audit::open(dir.path(), copy(&key)).unwrap();
    // A second writer on the same directory is refused.
    assert!(matches!(Audit::open(dir.path(), copy(&key)), Err(AuditError::Locked(_))));
    let mut btg = read_event(21);
    btg.action = Action::BreakGlass;
    btg.reason = Some("emergency".into());
    audit.record_blocking(vec![btg, read_event(22)]).unwrap();
    // Reports see events whose index rows are still staged, beside merged ones.
    let live: Vec<String> =
        vaidya_audit::report_for_patient(dir.path(), "p1").unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(live, ["1", "6", "11", "16", "21"]);
    drop(audit);
    let report = verify(dir.path(), key.verifier_text()).unwrap();
    assert_eq!(report.entries, 22);
    assert_eq!(report.unsigned, 0);

    // p1 is read by events 1, 6, 11, 16, 21 (break-glass).
    let events = vaidya_audit::report_for_patient(dir.path(), "p1").unwrap();
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["1", "6", "11", "16", "21"]);
    assert_eq!(ReportRow::from_event(&events[4]).action, "break-glass");
    assert!(vaidya_audit::report_for_patient(dir.path(), "nobody").unwrap().is_empty());
    let by_user = vaidya_audit::report_for_user(dir.path(), "user2").unwrap();
    assert_eq!(by_user.len(), 7); // 2, 5, 8, 11, 14, 17, 20

    // The stored entries are data-ledger entries: author = user, id = seq (the fifth frame of
    // the first journal segment: magic, then [u32 length][entry][32-byte leaf hash] each).
    let journal = std::fs::read(dir.path().join("journal").join(format!("{:020}.log", 1))).unwrap();
    let mut at = 8;
    for _ in 0..4 {
        at += 36 + u32::from_le_bytes(journal[at..at + 4].try_into().unwrap()) as usize;
    }
    let len = u32::from_le_bytes(journal[at..at + 4].try_into().unwrap()) as usize;
    let e = Entry::decode(&journal[at + 4..at + 4 + len]).unwrap();
    assert_eq!((e.author.as_str(), e.resource_type.as_str(), e.resource_id.as_str(), e.version), ("user2", "AuditEvent", "5", 1));
}

#[test]
fn export_selects_by_commit_time() {
    let dir = tempfile::tempdir().unwrap();
    let key = key();
    let audit = Audit::open(dir.path(), copy(&key)).unwrap();
    audit.record_blocking((1..=5).map(read_event).collect()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(30));
    let mid = vaidya_audit::now_ms();
    std::thread::sleep(std::time::Duration::from_millis(30));
    audit.record_blocking((6..=8).map(read_event).collect()).unwrap();
    drop(audit);
    let count = |since, until| {
        let mut out = Vec::new();
        let n = vaidya_audit::export(dir.path(), since, until, &mut out).unwrap();
        assert_eq!(out.iter().filter(|b| **b == b'\n').count() as u64, n);
        n
    };
    assert_eq!(count(0, i64::MAX), 8);
    assert_eq!(count(0, mid), 5);
    assert_eq!(count(mid, i64::MAX), 3);
    assert_eq!(count(i64::MAX - 1, i64::MAX), 0);
}

#[test]
fn limits_refuse_oversized_and_malformed_events_whole() {
    let dir = tempfile::tempdir().unwrap();
    let audit = Audit::open(dir.path(), key()).unwrap();
    let mut big = read_event(1);
    big.returned = (0..20_000).map(|i| format!("Observation/{i:064}")).collect();
    assert!(matches!(audit.record_blocking(vec![read_event(2), big]), Err(AuditError::TooLarge { .. })));
    let mut bad = read_event(1);
    bad.patients = vec!["Patient/x".into()];
    assert!(matches!(audit.record_blocking(vec![bad]), Err(AuditError::Invalid(_))));
    let mut long = read_event(1);
    long.who.user = Some("x".repeat(1000));
    assert!(matches!(audit.record_blocking(vec![long]), Err(AuditError::Invalid(_))));
    audit.record_blocking(vec![]).unwrap();
    let r = AuditRecord::new(Action::Logout, Outcome::Allowed);
    audit.record_blocking(vec![r]).unwrap();
    audit.shutdown();
    // Nothing of a refused call was written.
    let mut out = Vec::new();
    assert_eq!(vaidya_audit::export(dir.path(), 0, i64::MAX, &mut out).unwrap(), 1);
}

#[test]
fn the_software_cannot_update_or_delete_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), &key(), 3);
    let conn = rusqlite::Connection::open(dir.path().join(vaidya_audit::DB_FILE)).unwrap();
    for sql in ["DELETE FROM checkpoint", "UPDATE checkpoint SET note = 'x'"] {
        let err = conn.execute(sql, []).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
}

#[test]
fn audit_fits_in_axum_state_and_its_future_can_be_spawned() {
    fn state<T: Clone + Send + Sync + 'static>(_: &T) {}
    fn spawnable<F: std::future::Future + Send + 'static>(_: F) {}
    let dir = tempfile::tempdir().unwrap();
    let audit = Audit::open(dir.path(), key()).unwrap();
    state(&audit);
    spawnable(audit.record(vec![]));
    drop(audit);
    // An audit ledger with nothing in it verifies, with no checkpoint.
    let k = key();
    let dir = tempfile::tempdir().unwrap();
    Audit::open(dir.path(), copy(&k)).unwrap().shutdown();
    let r = verify(dir.path(), k.verifier_text()).unwrap();
    assert_eq!((r.entries, r.checkpoints, r.unsigned), (0, 0, 0));
}

#[test]
fn a_failed_write_records_nothing_refuses_what_follows_and_a_restart_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let k = key();
    filled(dir.path(), &k, 3);
    let segment = dir.path().join("journal").join(format!("{:020}.log", 1));
    let aside = dir.path().join("aside.log");
    let audit = Audit::open(dir.path(), copy(&k)).unwrap();
    // A fault at the first write after opening: the segment cannot be opened for appending.
    std::fs::rename(&segment, &aside).unwrap();
    std::fs::create_dir(&segment).unwrap();
    let err = audit.record_blocking(vec![read_event(4)]).unwrap_err();
    assert!(matches!(err, AuditError::CommitFailed(_)), "{err}");
    assert_eq!(audit.stats().failed_commits, 1);
    // The journal's end is now unknown: everything after is refused, never half-recorded.
    assert!(matches!(audit.record_blocking(vec![read_event(5)]), Err(AuditError::CommitFailed(_))));
    drop(audit);
    std::fs::remove_dir(&segment).unwrap();
    std::fs::rename(&aside, &segment).unwrap();
    let audit = Audit::open(dir.path(), copy(&k)).unwrap();
    audit.record_blocking((6..=8).map(read_event).collect()).unwrap();
    drop(audit);
    let r = verify(dir.path(), k.verifier_text()).unwrap();
    assert_eq!(r.entries, 6, "the failed calls left nothing behind and numbering continued");
}
