//! The exfiltration guard (per-account read rate, distinct-patient anomaly rule with
//! suspension) and the audit records of the operator's account commands, against the real
//! binary.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn config(dir: &std::path::Path, access: &str) -> String {
    let path = dir.join("vaidya.toml");
    std::fs::write(&path, format!("[access]\n{access}")).unwrap();
    path.to_str().unwrap().to_string()
}

/// `vaidya` run by the operating-system user `operator` (through sudo, as far as it can tell).
fn as_operator(operator: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN).args(args).env("VAIDYA_LOG", "warn").env("SUDO_USER", operator).output().unwrap()
}

fn ok(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// `vaidya audit report --user NAME --json`: the AuditEvents.
fn report(s: &Server, user: &str) -> Vec<Value> {
    let data = s.data().to_str().unwrap();
    let text = ok(&s.vaidya(&["audit", "report", "--data", data, "--user", user, "--json"]));
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The report once it holds at least `n` events (the operator's commands reach a running
/// server's ledger through its inbox, within about a second).
fn report_with(s: &Server, user: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = report(s, user);
        if events.len() >= n || Instant::now() > deadline {
            return events;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn action(e: &Value) -> String {
    e["subtype"].as_array().unwrap().iter().find(|c| c["system"] == "https://vaidya.dev/fhir/CodeSystem/audit-action").unwrap()["code"]
        .as_str()
        .unwrap()
        .to_string()
}

fn verify(s: &Server) {
    let out = s.vaidya(&["audit", "verify", "--data", s.data().to_str().unwrap()]);
    ok(&out);
}

fn metric(s: &Server, name: &str) -> u64 {
    let body = raw_request(&ureq::Agent::new_with_defaults(), "GET", &s.base.replace("/fhir", "/metrics"), None, &[]).body;
    body.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).unwrap_or_else(|| panic!("{name} in {body}")).parse().unwrap()
}

#[test]
fn a_clerk_reading_too_many_patients_is_suspended_alerted_and_reinstated() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "distinct_patients_per_hour = 5\nreads_per_minute = 6000\nread_burst = 1000\n");
    let log = dir.path().join("server.log");
    let mut s = Server::start_logging(tempfile::tempdir().unwrap(), &["--config", &cfg], log);
    let data = s.data().to_str().unwrap().to_string();
    for i in 1..=8 {
        let p = json!({"resourceType": "Patient", "id": format!("p{i}"), "name": [{"family": format!("Family{i}")}]});
        assert_eq!(s.put(&format!("/Patient/p{i}"), &p).status, 201);
    }
    let clerk = s.add_user("reg.clerk", "registration", &[]);
    let read = |token: &str, id: &str| s.request_as(token, "GET", &format!("/Patient/{id}"), None);

    for i in 1..=5 {
        assert_eq!(read(&clerk, &format!("p{i}")).status, 200);
    }
    // Reading the same patients again is not more patients; a search naming them neither.
    assert_eq!(read(&clerk, "p1").status, 200);
    let r = s.request_as(&clerk, "GET", "/Patient?_id=p2,p3", None);
    assert_eq!(r.status, 200, "{}", r.body);
    // The integration (role machine) reads everyone: exempt.
    for i in 1..=8 {
        assert_eq!(read(&s.token, &format!("p{i}")).status, 200);
    }
    assert_eq!(metric(&s, "vaidya_account_suspensions_total"), 0);

    // The sixth distinct patient: the account is suspended and this response withheld.
    let crossing = read(&clerk, "p6");
    assert_eq!(crossing.status, 403, "{}", crossing.body);
    let outcome = crossing.assert_outcome();
    assert!(outcome.to_string().contains("suspended"), "{outcome}");
    assert!(!crossing.body.contains("Family6"), "the patient's data never leaves: {}", crossing.body);
    assert_eq!(read(&clerk, "p1").status, 401, "its tokens are revoked");
    assert_eq!(metric(&s, "vaidya_account_suspensions_total"), 1);
    let alert = s.log_text().lines().find(|l| l.contains("vaidya::alert") && l.contains("ACCOUNT SUSPENDED")).map(str::to_string);
    let alert = alert.unwrap_or_else(|| panic!("an alert line in the log:\n{}", s.log_text()));
    assert!(alert.contains("reg.clerk") && alert.contains("distinct_patients=6") && alert.contains("window_minutes=60") && alert.contains("limit=5"), "{alert}");

    // The clerk's trail: five reads allowed, the crossing read denied, the suspension with its reason.
    let events = report(&s, "reg.clerk");
    let suspension = events.iter().find(|e| action(e) == "account-suspend").unwrap_or_else(|| panic!("the suspension is recorded: {events:#?}\n{}", s.log_text()));
    assert_eq!(suspension["type"]["code"], "110113");
    assert_eq!(suspension["outcome"], "0");
    assert!(suspension["purposeOfEvent"][0]["text"].as_str().unwrap().contains("6 distinct patients"), "{suspension}");
    assert!(events.iter().any(|e| action(e) == "read" && e["outcome"] == "4"
        && e["outcomeDesc"].as_str().unwrap().starts_with("account suspended")
        && e.to_string().contains("Patient/p6")), "the refused read is recorded");

    // Re-enabled by the privacy officer's operator: the account works again with a new token,
    // starting a fresh window; the revoked token stays revoked.
    ok(&as_operator("priya.it", &["user", "enable", "--data", &data, "--name", "reg.clerk"]));
    assert_eq!(read(&clerk, "p1").status, 401);
    let out = as_operator("priya.it", &["token", "--data", &data, "--user", "reg.clerk"]);
    let fresh = ok(&out).trim().to_string();
    assert_eq!(read(&fresh, "p7").status, 200);
    assert_eq!(read(&fresh, "p8").status, 200);

    let ops = report_with(&s, "os:priya.it", 2);
    let names: Vec<String> = ops.iter().map(action).collect();
    assert_eq!(names, ["user-enable", "token-issue"]);
    assert!(ops.iter().all(|e| e["entity"][0]["what"]["identifier"]["value"] == "reg.clerk"), "{ops:?}");
    verify(&s);
    s.stop();
    verify(&s);
}

#[test]
fn reading_faster_than_the_limit_gets_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    // One read a minute after a burst of three: no test machine is slow enough to refill.
    let cfg = config(dir.path(), "reads_per_minute = 1\nread_burst = 3\n");
    let s = Server::start_with(tempfile::tempdir().unwrap(), &["--config", &cfg]);
    assert_eq!(s.put("/Patient/p1", &json!({"resourceType": "Patient", "id": "p1"})).status, 201);
    let clerk = s.add_user("reg.fast", "registration", &[]);
    for _ in 0..3 {
        assert_eq!(s.request_as(&clerk, "GET", "/Patient/p1", None).status, 200);
    }
    let r = s.request_as(&clerk, "GET", "/Patient?_id=p1", None);
    assert_eq!(r.status, 429, "{}", r.body);
    let retry: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(r.assert_outcome()["issue"][0]["code"], "throttled");
    assert_eq!(metric(&s, "vaidya_rate_limited_total"), 1);
    // Writes are not reads; another account has its own bucket; machines have no limit here.
    let p2 = json!({"resourceType": "Patient", "id": "p2"});
    assert_eq!(s.request_as(&clerk, "PUT", "/Patient/p2", Some(&p2)).status, 201);
    let other = s.add_user("reg.slow", "registration", &[]);
    assert_eq!(s.request_as(&other, "GET", "/Patient/p1", None).status, 200);
    for _ in 0..20 {
        assert_eq!(s.get("/Patient/p1").status, 200);
    }
    // The refusal is in the audit trail, as denied.
    let events = report(&s, "reg.fast");
    let refused: Vec<&Value> = events.iter().filter(|e| e["outcome"] == "4").collect();
    assert_eq!(refused.len(), 1, "{events:?}");
    assert_eq!(action(refused[0]), "search");
    assert!(refused[0]["outcomeDesc"].as_str().unwrap().contains("429"), "{}", refused[0]);
}

#[test]
fn operator_commands_are_in_the_audit_ledger_whether_or_not_the_server_runs() {
    let mut s = Server::start();
    let data = s.data().to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        let mut all = vec![args[0], args[1]];
        all.extend_from_slice(&["--data", &data]);
        all.extend_from_slice(&args[2..]);
        as_operator("asha.ops", &all)
    };
    let run_token = |args: &[&str]| {
        let mut all = vec!["token", "--data", &data];
        all.extend_from_slice(args);
        as_operator("asha.ops", &all)
    };
    ok(&run(&["user", "add", "--name", "nurse.kiran", "--role", "nurse"]));
    ok(&run(&["user", "totp", "--name", "nurse.kiran"]));
    ok(&run(&["user", "unlock", "--name", "nurse.kiran"]));
    ok(&run(&["user", "disable", "--name", "nurse.kiran"]));
    ok(&run(&["user", "enable", "--name", "nurse.kiran"]));
    let out = run_token(&["--user", "nurse.kiran"]);
    let token = ok(&out).trim().to_string();
    let id = token.split('_').nth(1).unwrap().to_string();
    ok(&run_token(&["--revoke", &id]));
    ok(&run_token(&["--revoke-user", "nurse.kiran"]));
    // A command that fails is recorded as failed.
    let failed = run(&["user", "disable", "--name", "ghost"]);
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("no account named 'ghost'"));

    let events = report_with(&s, "os:asha.ops", 9);
    let names: Vec<String> = events.iter().map(action).collect();
    assert_eq!(names, ["user-add", "user-totp", "user-unlock", "user-disable", "user-enable", "token-issue", "token-revoke", "token-revoke", "user-disable"]);
    for e in &events[..8] {
        assert_eq!(e["entity"][0]["what"]["identifier"]["value"], "nurse.kiran", "{e}");
        assert_eq!(e["outcome"], "0", "{e}");
        assert_eq!(e["agent"][0]["role"][0]["text"], "operator");
        assert!(e["agent"][0]["altId"].as_str().unwrap().starts_with("uid "), "{e}");
    }
    assert!(events[5]["purposeOfEvent"][0]["text"].as_str().unwrap().contains(&id), "the token's id: {}", events[5]);
    assert_eq!(events[8]["outcome"], "8");
    assert_eq!(events[8]["entity"][0]["what"]["identifier"]["value"], "ghost");
    assert!(!events.iter().any(|e| e.to_string().contains(&token)), "the token's secret is never recorded");
    // Commands from several operators at once, while the server records its own requests:
    // every record lands once, and the chain is whole.
    std::thread::scope(|scope| {
        for k in 0..4 {
            let data = data.clone();
            scope.spawn(move || {
                for _ in 0..3 {
                    ok(&as_operator(&format!("op{k}"), &["token", "--data", &data, "--user", "nurse.kiran"]));
                }
            });
        }
        for _ in 0..30 {
            assert_eq!(s.get("/Patient?_count=1").status, 200);
        }
    });
    for k in 0..4 {
        let events = report_with(&s, &format!("os:op{k}"), 3);
        assert_eq!(events.iter().filter(|e| action(e) == "token-issue").count(), 3, "{events:?}");
    }
    verify(&s);

    // With the server stopped, the command appends itself, and the server starts after it.
    s.stop();
    ok(&run(&["user", "disable", "--name", "nurse.kiran"]));
    assert_eq!(report(&s, "os:asha.ops").len(), 10);
    verify(&s);
    s.spawn();
    ok(&run(&["user", "enable", "--name", "nurse.kiran"]));
    assert_eq!(report_with(&s, "os:asha.ops", 11).len(), 11);
    verify(&s);
}
