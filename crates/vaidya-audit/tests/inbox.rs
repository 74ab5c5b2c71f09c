//! A second process's events while the ledger's writer runs: they go through the inbox, are
//! appended exactly once, in order, and the ledger still verifies.

mod common;

use common::{key, read_event};
use std::time::{Duration, Instant};
use vaidya_audit::{Action, Audit, AuditRecord, Delivery, Outcome, ToolAudit, Who};

fn account_event(op: &str, target: &str) -> AuditRecord {
    let mut r = AuditRecord::new(Action::Account(op.into()), Outcome::Allowed);
    r.who = Who { user: Some("os:operator".into()), role: Some("operator".into()), session: Some("uid 1000".into()) };
    r.target_user = Some(target.into());
    r
}

fn wait_for(dir: &std::path::Path, user: &str, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = vaidya_audit::report_for_user(dir, user).unwrap();
        if events.len() >= n || Instant::now() > deadline {
            return events;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_second_writer_goes_through_the_inbox_and_the_chain_stays_whole() {
    let dir = tempfile::tempdir().unwrap();
    let k = key();
    let verifier = k.verifier_text().to_string();
    let audit = Audit::open(dir.path(), vaidya_ledger::LedgerKey::from_private(k.private_text()).unwrap()).unwrap();
    audit.record_blocking((0..20).map(read_event).collect()).unwrap();

    // The lock is held: a tool gets the inbox, never a second appender.
    let tool = ToolAudit::open(dir.path(), key()).unwrap();
    assert!(matches!(tool, ToolAudit::Inbox(_)));
    let ops = ["user-add", "user-disable", "user-enable", "token-issue"];
    for (i, op) in ops.iter().enumerate() {
        assert_eq!(tool.record(vec![account_event(op, "clerk1")]).unwrap(), Delivery::Queued);
        // The server keeps appending its own events meanwhile.
        audit.record_blocking(vec![read_event(100 + i)]).unwrap();
    }
    let events = wait_for(dir.path(), "os:operator", ops.len());
    let codes: Vec<&str> = events.iter().map(|e| e["subtype"][1]["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ops, "each inbox event appended once, in order");
    assert_eq!(events[0]["entity"][0]["what"]["identifier"]["value"], "clerk1");
    drop(tool);

    audit.shutdown();
    let report = vaidya_audit::verify(dir.path(), &verifier).unwrap();
    assert_eq!(report.entries, 20 + 4 + 4);
    assert_eq!(report.unsigned, 0);

    // Without a writer running, the tool appends itself (and signs at shutdown).
    drop(audit);
    let tool = ToolAudit::open(dir.path(), vaidya_ledger::LedgerKey::from_private(k.private_text()).unwrap()).unwrap();
    assert!(matches!(tool, ToolAudit::Writer(_)));
    assert_eq!(tool.record(vec![account_event("user-unlock", "clerk1")]).unwrap(), Delivery::Appended);
    drop(tool);
    let report = vaidya_audit::verify(dir.path(), &verifier).unwrap();
    assert_eq!(report.entries, 29);
    assert_eq!(report.unsigned, 0);
    assert_eq!(vaidya_audit::report_for_user(dir.path(), "os:operator").unwrap().len(), 5);
}

#[test]
fn rows_not_written_by_the_recorder_are_kept_aside_not_appended() {
    let dir = tempfile::tempdir().unwrap();
    let k = key();
    let verifier = k.verifier_text().to_string();
    let audit = Audit::open(dir.path(), vaidya_ledger::LedgerKey::from_private(k.private_text()).unwrap()).unwrap();
    let tool = ToolAudit::open(dir.path(), key()).unwrap();
    let ToolAudit::Inbox(conn) = &tool else { panic!("the writer holds the lock") };
    // A forged row whose requestor is not its user, then a good event.
    let forged = account_event("user-add", "x").to_fhir_json();
    conn.execute("INSERT INTO inbox (time_ms, user, json) VALUES (0, 'someone-else', ?1)", [forged]).unwrap();
    tool.record(vec![account_event("user-enable", "clerk1")]).unwrap();
    let events = wait_for(dir.path(), "os:operator", 1);
    assert_eq!(events.len(), 1);
    assert!(vaidya_audit::report_for_user(dir.path(), "someone-else").unwrap().is_empty());
    let rejected: String = conn.query_row("SELECT rejected FROM inbox WHERE user = 'someone-else'", [], |r| r.get(0)).unwrap();
    assert!(rejected.contains("requestor"), "{rejected}");
    drop(tool);
    audit.shutdown();
    assert_eq!(vaidya_audit::verify(dir.path(), &verifier).unwrap().entries, 1);
}

#[test]
fn an_inbox_row_whose_entry_was_flushed_just_before_a_crash_is_not_appended_twice() {
    // The crash window: the writer flushed the row's entry but died before deleting the row
    // (and before the next checkpoint). Built here by hand: the row appended by the writer as
    // usual, the final checkpoint removed, the row put back into the inbox.
    let dir = tempfile::tempdir().unwrap();
    let k = key();
    let verifier = k.verifier_text().to_string();
    let copy = || vaidya_ledger::LedgerKey::from_private(k.private_text()).unwrap();
    let audit = Audit::open(dir.path(), copy()).unwrap();
    audit.record_blocking(vec![read_event(1)]).unwrap();
    drop(audit);
    let audit = Audit::open(dir.path(), copy()).unwrap();
    let event = account_event("user-add", "clerk9");
    let tool = ToolAudit::open(dir.path(), copy()).unwrap();
    assert!(matches!(tool, ToolAudit::Inbox(_)), "the writer holds the lock");
    tool.record(vec![event.clone()]).unwrap();
    wait_for(dir.path(), "os:operator", 1);
    drop(tool);
    drop(audit);
    let conn = rusqlite::Connection::open(dir.path().join(vaidya_audit::DB_FILE)).unwrap();
    conn.execute_batch("DROP TRIGGER checkpoint_no_delete; DELETE FROM checkpoint WHERE tree_size = 2;").unwrap();
    conn.execute("INSERT INTO inbox (time_ms, user, json) VALUES (0, 'os:operator', ?1)", [event.to_fhir_json()]).unwrap();
    // A different event still waiting is appended as usual.
    conn.execute("INSERT INTO inbox (time_ms, user, json) VALUES (0, 'os:operator', ?1)", [account_event("user-add", "clerk10").to_fhir_json()])
        .unwrap();
    drop(conn);
    let audit = Audit::open(dir.path(), copy()).unwrap();
    let events = wait_for(dir.path(), "os:operator", 2);
    drop(audit);
    let targets: Vec<&str> = events.iter().map(|e| e["entity"][0]["what"]["identifier"]["value"].as_str().unwrap()).collect();
    assert_eq!(targets, ["clerk9", "clerk10"], "clerk9 once, clerk10 appended");
    let waiting: i64 = rusqlite::Connection::open(dir.path().join(vaidya_audit::DB_FILE))
        .unwrap()
        .query_row("SELECT count(*) FROM inbox", [], |r| r.get(0))
        .unwrap();
    assert_eq!(waiting, 0);
    assert_eq!(vaidya_audit::verify(dir.path(), &verifier).unwrap().entries, 3);
}
