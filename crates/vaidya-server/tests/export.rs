//! Bulk Data `$export` end to end against the real binary: the asynchronous kick-off, a
//! privacy officer's approval (never the requester's own), status, NDJSON downloads, `_type`,
//! `_since`, Patient and Group level, cancellation, rejection, and the audit trail of it all.

mod common;

use common::{Resp, Server, raw_request};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const PREFER: (&str, &str) = ("Prefer", "respond-async");
const ACCEPT: (&str, &str) = ("Accept", "application/fhir+json");

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(60))).build().into()
}

fn call(s: &Server, token: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let url = if path.starts_with("http") { path.to_string() } else { format!("{}{}", s.base, path) };
    let auth = format!("Bearer {token}");
    let mut all = vec![("Authorization", auth.as_str())];
    all.extend_from_slice(headers);
    raw_request(&agent(), method, &url, None, &all)
}

/// Kick off an export; the status URL.
fn kick_off(s: &Server, token: &str, path: &str) -> String {
    let r = call(s, token, "GET", path, &[PREFER, ACCEPT]);
    assert_eq!(r.status, 202, "{path}: {}", r.body);
    let location = r.header("content-location").expect("Content-Location").to_string();
    assert!(location.contains("/fhir/$export-status/"), "{location}");
    location
}

fn approve(s: &Server, token: &str, status_url: &str) -> Resp {
    s.request_as(token, "POST", &format!("{status_url}/$approve"), None)
}

/// Poll until the manifest is there (a bounded number of polls; no timing is asserted).
fn manifest(s: &Server, token: &str, status_url: &str) -> Value {
    for _ in 0..600 {
        let r = call(s, token, "GET", status_url, &[]);
        match r.status {
            202 => {
                assert!(r.header("x-progress").is_some(), "202 carries X-Progress");
                std::thread::sleep(Duration::from_millis(50));
            }
            200 => return r.json(),
            other => panic!("status {other}: {}", r.body),
        }
    }
    panic!("the export did not finish after 600 polls");
}

/// Counts per type in a manifest, summed over its files.
fn counts(m: &Value) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for o in m["output"].as_array().expect("output") {
        *out.entry(o["type"].as_str().unwrap().to_string()).or_default() += o["count"].as_u64().unwrap();
    }
    out
}

/// Download every file of a manifest; the ids per type, checking each line is a resource of
/// the file's type and that each file holds as many as the manifest says.
fn download_all(s: &Server, token: &str, m: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for o in m["output"].as_array().unwrap() {
        let r = call(s, token, "GET", o["url"].as_str().unwrap(), &[]);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.header("content-type"), Some("application/fhir+ndjson"));
        let rtype = o["type"].as_str().unwrap();
        let lines: Vec<&str> = r.body.lines().collect();
        assert_eq!(lines.len() as u64, o["count"].as_u64().unwrap(), "{}", o["url"]);
        for line in lines {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            assert_eq!(v["resourceType"], rtype);
            assert!(out.entry(rtype.to_string()).or_default().insert(v["id"].as_str().unwrap().to_string()), "a resource exported twice");
        }
    }
    out
}

fn ids(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// How many of a type the account can see, by a search (`_summary=count`).
fn total(s: &Server, token: &str, rtype: &str) -> u64 {
    let r = s.request_as(token, "GET", &format!("/{rtype}?_summary=count"), None);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["total"].as_u64().unwrap()
}

fn obs(id: &str, patient: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final", "code": {"text": "pulse"},
        "subject": {"reference": format!("Patient/{patient}")}, "valueQuantity": {"value": 72, "unit": "/min"}})
}

#[test]
fn bulk_export_needs_a_second_persons_approval_and_exports_what_is_stored() {
    let cfg_dir = tempfile::tempdir().unwrap();
    let config = cfg_dir.path().join("vaidya.toml");
    // Small files, so that splitting is exercised.
    std::fs::write(&config, "[export]\nmax_resources_per_file = 2\n").unwrap();
    let config_arg = config.to_str().unwrap().to_string();
    let mut s = Server::start_with(tempfile::tempdir().unwrap(), &["--config", &config_arg]);
    let machine = s.token.clone();

    for (id, label) in [("p1", None), ("p2", None), ("vip", Some("V"))] {
        let mut p = json!({"resourceType": "Patient", "id": id, "name": [{"family": format!("Family-{id}")}]});
        if let Some(l) = label {
            p["meta"] = json!({"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": l}]});
        }
        assert_eq!(s.put(&format!("/Patient/{id}"), &p).status, 201);
    }
    for (id, patient) in [("o1", "p1"), ("o2", "p1"), ("o3", "p2"), ("ovip", "vip")] {
        assert_eq!(s.put(&format!("/Observation/{id}"), &obs(id, patient)).status, 201);
    }
    assert_eq!(s.put("/Organization/org1", &json!({"resourceType": "Organization", "id": "org1", "name": "Lab partner"})).status, 201);
    let group = json!({"resourceType": "Group", "id": "g1", "type": "person", "actual": true,
        "member": [{"entity": {"reference": "Patient/p1"}}]});
    assert_eq!(s.put("/Group/g1", &group).status, 201);
    // Something written later, for `_since`.
    std::thread::sleep(Duration::from_millis(30));
    let late = s.put("/Observation/olate", &obs("olate", "p2"));
    assert_eq!(late.status, 201);
    let since = late.json()["meta"]["lastUpdated"].as_str().unwrap().to_string();

    let clerk = s.add_user("reg.clerk", "registration", &[]);
    let po = s.add_user("po.priya", "privacy-officer", &[]);
    let other_machine = s.add_user("etl.other", "machine", &[]);
    let admin = s.make_token("admin");

    // Bad kick-offs are refused with an OperationOutcome.
    let r = call(&s, &machine, "GET", "/$export", &[ACCEPT]);
    assert_eq!(r.status, 400, "no Prefer: respond-async");
    assert!(r.assert_outcome().to_string().contains("respond-async"));
    for bad in ["/$export?_type=Observation,Nonsense", "/$export?_since=last-week", "/$export?_outputFormat=text/csv", "/$export?_typeFilter=x",
        "/Patient/$export?_type=Organization"] {
        let r = call(&s, &machine, "GET", bad, &[PREFER, ACCEPT]);
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        r.assert_outcome();
    }
    // People do not bulk-export records: the policies permit it to integrations only.
    for token in [&clerk, &po, &admin] {
        let r = call(&s, token, "GET", "/$export", &[PREFER, ACCEPT]);
        assert_eq!(r.status, 403, "{}", r.body);
        r.assert_outcome();
    }
    let r = call(&s, &machine, "GET", "/$export?_type=AuditEvent", &[PREFER, ACCEPT]);
    assert_eq!(r.status, 403, "the audit trail is not exported: {}", r.body);

    // System level: waits for approval.
    let job = kick_off(&s, &machine, "/$export");
    let r = call(&s, &machine, "GET", &job, &[]);
    assert_eq!(r.status, 202);
    assert_eq!(r.header("x-progress"), Some("awaiting approval"));
    // Nobody else sees the job; the requester cannot approve it; nor can another integration or the admin.
    assert_eq!(call(&s, &clerk, "GET", &job, &[]).status, 404);
    let r = approve(&s, &machine, &job);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("second person"), "{}", r.body);
    assert_eq!(approve(&s, &other_machine, &job).status, 404);
    assert_eq!(approve(&s, &admin, &job).status, 404);
    assert_eq!(call(&s, &machine, "GET", &job, &[]).status, 202, "still waiting");
    // The privacy officer sees the queue and approves.
    let queue = s.request_as(&po, "GET", "/$export-status", None).json();
    assert!(queue.to_string().contains("awaiting-approval") && queue.to_string().contains("integration"), "{queue}");
    let r = approve(&s, &po, &job);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(approve(&s, &po, &job).status, 409, "decided once");

    let m = manifest(&s, &machine, &job);
    assert_eq!(m["requiresAccessToken"], true);
    assert!(m["request"].as_str().unwrap().ends_with("/fhir/$export"), "{m}");
    assert!(m["transactionTime"].as_str().unwrap() >= since.as_str());
    assert_eq!(m["error"], json!([]));
    // Counts are what is stored, as the requester may see it (the VIP patient is left out).
    let c = counts(&m);
    for rtype in ["Patient", "Observation", "Organization", "Group"] {
        assert_eq!(c.get(rtype).copied(), Some(total(&s, &machine, rtype)), "{rtype}: {m}");
    }
    assert_eq!(c["Observation"], 4);
    assert!(!c.contains_key("AuditEvent"), "{m}");
    let obs_files = m["output"].as_array().unwrap().iter().filter(|o| o["type"] == "Observation").count();
    assert_eq!(obs_files, 2, "4 Observations at 2 per file: {m}");
    // Only the requester downloads; a privacy officer polls but does not read the data.
    let url = m["output"][0]["url"].as_str().unwrap().to_string();
    assert_eq!(call(&s, &clerk, "GET", &url, &[]).status, 404);
    assert_eq!(call(&s, &po, "GET", &url, &[]).status, 403);
    assert_eq!(call(&s, &po, "GET", &job, &[]).status, 200);
    let got = download_all(&s, &machine, &m);
    assert_eq!(got["Patient"], ids(&["p1", "p2"]));
    assert_eq!(got["Observation"], ids(&["o1", "o2", "o3", "olate"]));
    assert_eq!(got["Organization"], ids(&["org1"]));
    let bad_file = url.rsplit_once('/').unwrap().0.to_string() + "/..%2Fsecret.ndjson";
    assert_eq!(call(&s, &machine, "GET", &bad_file, &[]).status, 404);

    // `_type` and `_since` narrow.
    let job = kick_off(&s, &machine, &format!("/$export?_type=Observation,Patient&_since={}", since.replace('+', "%2B")));
    assert_eq!(approve(&s, &po, &job).status, 200);
    let m = manifest(&s, &machine, &job);
    assert_eq!(counts(&m), BTreeMap::from([("Observation".to_string(), 1)]), "{m}");
    assert_eq!(download_all(&s, &machine, &m)["Observation"], ids(&["olate"]));

    // Patient level: records that belong to patients, of every such type.
    let job = kick_off(&s, &machine, "/Patient/$export?_type=Patient,Observation");
    assert_eq!(call(&s, &machine, "GET", &job, &[]).header("x-progress"), Some("awaiting approval"), "Patient level waits too");
    assert_eq!(approve(&s, &po, &job).status, 200);
    let m = manifest(&s, &machine, &job);
    let got = download_all(&s, &machine, &m);
    assert_eq!(got["Patient"], ids(&["p1", "p2"]));
    assert_eq!(got["Observation"], ids(&["o1", "o2", "o3", "olate"]));
    let job = kick_off(&s, &machine, "/Patient/$export");
    assert_eq!(approve(&s, &po, &job).status, 200);
    let c = counts(&manifest(&s, &machine, &job));
    assert!(!c.contains_key("Organization") && !c.contains_key("Group") && c["Observation"] == 4, "{c:?}");

    // Group level: the members' records only.
    let job = kick_off(&s, &machine, "/Group/g1/$export");
    assert_eq!(approve(&s, &po, &job).status, 200);
    let got = download_all(&s, &machine, &manifest(&s, &machine, &job));
    assert_eq!(got["Patient"], ids(&["p1"]));
    assert_eq!(got["Observation"], ids(&["o1", "o2"]));
    assert_eq!(call(&s, &machine, "GET", "/Group/nope/$export", &[PREFER, ACCEPT]).status, 404);

    // Rejection, with a reason.
    let job = kick_off(&s, &machine, "/$export?_type=Patient");
    let reason = json!({"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": "no data-sharing agreement on file"}]});
    assert_eq!(s.request_as(&po, "POST", &format!("{job}/$reject"), Some(&reason)).status, 200);
    let r = call(&s, &machine, "GET", &job, &[]);
    assert_eq!(r.status, 403);
    assert!(r.body.contains("no data-sharing agreement"), "{}", r.body);

    // Cancellation removes the job.
    let job = kick_off(&s, &machine, "/$export?_type=Organization");
    assert_eq!(call(&s, &machine, "DELETE", &job, &[]).status, 202);
    assert_eq!(call(&s, &machine, "GET", &job, &[]).status, 404);
    assert_eq!(approve(&s, &po, &job).status, 404);

    // The CapabilityStatement names the operation.
    let cs = s.get("/metadata").json();
    assert!(cs["rest"][0]["operation"].as_array().unwrap().iter().any(|o| o["name"] == "export"), "system-level $export");

    // The audit trail: kick-offs and downloads (action `export`), the approvals and the
    // rejection under the privacy officer's name, each job's end under the requester's with
    // the patients whose records left.
    s.stop();
    let data = s.data().to_str().unwrap().to_string();
    let report = |args: &[&str]| -> Vec<Value> {
        let mut all = vec!["audit", "report", "--data", data.as_str(), "--json"];
        all.extend_from_slice(args);
        let out = s.vaidya(&all);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let action = |e: &Value| -> String {
        e["subtype"].as_array().unwrap().iter().find(|c| c["system"] == "https://vaidya.dev/fhir/CodeSystem/audit-action").unwrap()["code"].as_str().unwrap().to_string()
    };
    let mine = report(&["--user", "integration"]);
    let exports: Vec<&Value> = mine.iter().filter(|e| action(e) == "export").collect();
    let text = |list: &[&Value]| list.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n");
    assert!(exports.iter().any(|e| e.to_string().contains("_since")), "a kick-off with its query: {}", text(&exports));
    assert!(exports.iter().any(|e| e.to_string().contains("$export-file/")), "downloads: {}", text(&exports));
    let ends: Vec<&&Value> = exports.iter().filter(|e| e.to_string().contains("completed")).collect();
    assert_eq!(ends.len(), 5, "one end per approved job: {}", text(&exports));
    assert!(ends.iter().all(|e| e.to_string().contains("approved by po.priya")));
    let po_events = report(&["--user", "po.priya"]);
    let decided: Vec<String> = po_events.iter().filter(|e| e["outcome"] == "0").map(action).filter(|a| a == "$approve" || a == "$reject").collect();
    assert_eq!(decided.iter().filter(|a| *a == "$approve").count(), 5, "{decided:?}");
    assert_eq!(decided.iter().filter(|a| *a == "$reject").count(), 1, "{decided:?}");
    let refused = report(&["--user", "reg.clerk"]);
    assert!(refused.iter().any(|e| action(e) == "export" && e["outcome"] == "4"), "the clerk's refused kick-off");
    let p1 = report(&["--patient-id", "p1"]);
    assert!(p1.iter().any(|e| action(e) == "export" && e.to_string().contains("completed")), "p1's records left in an export");
    let vip = report(&["--patient-id", "vip"]);
    assert!(!vip.iter().any(|e| action(e) == "export" && e.to_string().contains("completed")), "the VIP's did not");
}

#[test]
fn scoped_tokens_job_limits_and_expiry() {
    let cfg_dir = tempfile::tempdir().unwrap();
    let config = cfg_dir.path().join("vaidya.toml");
    std::fs::write(&config, "[export]\nmax_jobs = 2\nexpire_seconds = 3\n").unwrap();
    let config_arg = config.to_str().unwrap().to_string();
    let s = Server::start_with(tempfile::tempdir().unwrap(), &["--config", &config_arg]);
    let machine = s.token.clone();
    assert_eq!(s.put("/Patient/p1", &json!({"resourceType": "Patient", "id": "p1"})).status, 201);
    assert_eq!(s.put("/Observation/o1", &obs("o1", "p1")).status, 201);
    let enc = json!({"resourceType": "Encounter", "id": "e1", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}, "subject": {"reference": "Patient/p1"}});
    assert_eq!(s.put("/Encounter/e1", &enc).status, 201);
    let po = s.add_user("po.priya", "privacy-officer", &[]);
    s.add_user("etl.scoped", "machine", &[]);
    let data = s.data().to_str().unwrap().to_string();
    let out = s.vaidya(&["token", "--data", &data, "--user", "etl.scoped", "--scope", "system/Patient.read system/Observation.read"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let scoped = String::from_utf8(out.stdout).unwrap().trim().to_string();

    // A token's scopes narrow an export: the whole system needs `*` scopes, a type outside
    // them is refused, and by default only the types within them are exported.
    assert_eq!(call(&s, &scoped, "GET", "/$export", &[PREFER, ACCEPT]).status, 403);
    let r = call(&s, &scoped, "GET", "/Patient/$export?_type=Encounter", &[PREFER, ACCEPT]);
    assert_eq!(r.status, 403, "{}", r.body);
    let job = kick_off(&s, &scoped, "/Patient/$export");
    assert_eq!(approve(&s, &po, &job).status, 200);
    let m = manifest(&s, &scoped, &job);
    assert_eq!(counts(&m), BTreeMap::from([("Observation".to_string(), 1), ("Patient".to_string(), 1)]), "no Encounter: {m}");
    assert_eq!(download_all(&s, &scoped, &m)["Observation"], ids(&["o1"]));
    let job_id = job.rsplit('/').next().unwrap().to_string();
    assert!(s.data().join("exports").join(&job_id).is_dir());

    // At most `max_jobs` unfinished jobs (the finished one does not count).
    let waiting = kick_off(&s, &machine, "/$export");
    kick_off(&s, &machine, "/$export?_type=Patient");
    let r = call(&s, &machine, "GET", "/$export", &[PREFER, ACCEPT]);
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("retry-after").is_some());
    r.assert_outcome();

    // Jobs expire: unapproved ones lapse, finished ones go with their files.
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(call(&s, &scoped, "GET", &job, &[]).status, 404);
    assert!(!s.data().join("exports").join(&job_id).exists(), "the files are removed");
    assert_eq!(approve(&s, &po, &waiting).status, 404, "a lapsed request cannot be approved");
    kick_off(&s, &machine, "/$export");
}
