//! Care continues while the core is down: a real core and two real department nodes on
//! loopback. Staff sign in at their node and work through it; the core is killed (SIGKILL);
//! both nodes keep working in downtime mode, including a double booking of one slot (one on
//! each node) and a patient registered on both; the core returns; every downtime entry reaches
//! the core or its reconciliation queue, no UHID is issued twice, a person settles the queue,
//! and every ledger verifies. Then hand-backs cut short (the node killed, then the core killed,
//! in the middle) lose and duplicate nothing.

mod common;

use common::node::{Node, host_port, proxy};
use common::{BIN, Server, raw_request};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const UHID: &str = "https://vaidya.dev/fhir/sid/uhid";

fn patient(family: &str, given: &str, mobile: Option<&str>) -> Value {
    let mut p = json!({"resourceType": "Patient", "name": [{"family": family, "given": [given]}], "gender": "female", "birthDate": "1980-05-05"});
    if let Some(m) = mobile {
        p["telecom"] = json!([{"system": "phone", "value": m, "use": "mobile"}]);
    }
    p
}

fn appointment(slot: &str, patient: &str) -> Value {
    json!({"resourceType": "Appointment", "status": "booked", "slot": [{"reference": format!("Slot/{slot}")}],
           "participant": [{"actor": {"reference": format!("Patient/{patient}")}, "status": "accepted"}]})
}

fn uhid_of(p: &Value) -> String {
    p["identifier"].as_array().into_iter().flatten().find(|i| i["system"] == UHID).and_then(|i| i["value"].as_str()).unwrap_or_default().to_string()
}

fn verify(data: &std::path::Path) {
    let out = Command::new(BIN).args(["verify", "--data", data.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "verify {}: {}{}", data.display(), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// Every Patient at the core (id, resource), paging through the search.
fn all_patients(core: &Server) -> Vec<Value> {
    let mut out = Vec::new();
    let mut next = Some("/Patient?_count=500".to_string());
    while let Some(path) = next {
        let page = core.get(&path).json();
        out.extend(page["entry"].as_array().into_iter().flatten().map(|e| e["resource"].clone()));
        next = page["link"].as_array().into_iter().flatten().find(|l| l["relation"] == "next").and_then(|l| l["url"].as_str()).map(str::to_string);
    }
    out
}

fn admin_json(core: &Server, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let root = core.base.trim_end_matches("/fhir").to_string();
    let auth = format!("Bearer {}", core.make_token("admin"));
    let text = body.map(|b| b.to_string());
    let r = raw_request(&ureq::Agent::config_builder().http_status_as_error(false).build().into(), method, &format!("{root}{path}"), text.as_deref(), &[("Authorization", auth.as_str()), ("Content-Type", "application/json")]);
    let v = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    (r.status, v)
}

/// The administrator signed in to the web UI (second factor and all), with the cookies a
/// browser would keep.
struct AdminBrowser {
    root: String,
    cookies: String,
    csrf: String,
    agent: ureq::Agent,
}

impl AdminBrowser {
    fn sign_in(core: &Server) -> AdminBrowser {
        let root = core.base.trim_end_matches("/fhir").to_string();
        let data = core.data().to_str().unwrap();
        let out = Command::new(BIN).args(["user", "totp", "--data", data, "--name", "admin"]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let secret = text.lines().find_map(|l| l.trim().strip_prefix("Secret:")).unwrap_or_else(|| panic!("{text}")).trim().to_string();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
        // The first sign-in changes the one-time password.
        let once = core.admin_password.clone().expect("the first start printed the admin's password");
        let body = json!({"user": "admin", "password": once, "totp": vaidya_access::totp::code_at(&secret, now).unwrap()}).to_string();
        let r = raw_request(&agent, "POST", &format!("{root}/auth/login"), Some(&body), &[("Content-Type", "application/json")]);
        assert_eq!(r.status, 200, "{}", r.body);
        let token = r.json()["token"].as_str().unwrap().to_string();
        let password = "Admin-password-for-the-test-1";
        let body = json!({"old": once, "new": password}).to_string();
        let r = raw_request(&agent, "POST", &format!("{root}/auth/password"), Some(&body), &[("Content-Type", "application/json"), ("Authorization", &format!("Bearer {token}"))]);
        assert_eq!(r.status, 200, "{}", r.body);
        // The browser: the sign-in page sets the CSRF cookie; the form signs in.
        let r = raw_request(&agent, "GET", &format!("{root}/ui/login"), None, &[]);
        let csrf = cookie(&r, "vaidya_csrf");
        let code = vaidya_access::totp::code_at(&secret, now + 30).unwrap();
        let form = format!("user=admin&password={password}&totp={code}&next=%2Fui%2F&csrf={csrf}");
        let r = raw_request(&agent, "POST", &format!("{root}/ui/login"), Some(&form), &[("Content-Type", "application/x-www-form-urlencoded"), ("Cookie", &format!("vaidya_csrf={csrf}"))]);
        assert!(r.status == 303 || r.status == 302, "{} {}", r.status, r.body);
        let session = cookie(&r, "vaidya_session");
        AdminBrowser { root, cookies: format!("vaidya_csrf={csrf}; vaidya_session={session}"), csrf, agent }
    }

    fn get(&self, path: &str) -> String {
        let r = raw_request(&self.agent, "GET", &format!("{}{path}", self.root), None, &[("Cookie", &self.cookies)]);
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }

    fn post(&self, path: &str, form: &str) -> String {
        let r = raw_request(&self.agent, "POST", &format!("{}{path}", self.root), Some(form), &[("Cookie", &self.cookies), ("Content-Type", "application/x-www-form-urlencoded")]);
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }
}

fn cookie(r: &common::Resp, name: &str) -> String {
    r.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .find_map(|(_, v)| v.strip_prefix(&format!("{name}=")).map(|rest| rest.split(';').next().unwrap_or("").to_string()))
        .unwrap_or_else(|| panic!("no {name} cookie: {:?}", r.headers))
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_nodes_keep_working_through_a_core_outage_and_everything_reaches_the_core_or_a_person() {
    let mut core = Server::start();
    let target = Arc::new(Mutex::new(host_port(&core.base)));
    let via = proxy(target.clone());
    let core_key = core.data().join("keys/ledger.pub").to_str().unwrap().to_string();
    let (token_a, token_b) = (core.add_user("node-opd-a", "node", &[]), core.add_user("node-opd-b", "node", &[]));
    let password = core.staff_with_password("reg.asha", "registration", &["--department", "cardiology"]);
    let password_b = core.staff_with_password("reg.bina", "registration", &["--department", "cardiology"]);
    let cashier_password = core.staff_with_password("cash.chitra", "billing", &[]);
    // The day's schedule, and a patient registered before anything happens.
    assert_eq!(core.put("/Schedule/opd-card", &json!({"resourceType": "Schedule", "id": "opd-card", "actor": [{"reference": "Practitioner/dr-rao"}]})).status, 201);
    for s in ["s1", "s2"] {
        let slot = json!({"resourceType": "Slot", "id": s, "schedule": {"reference": "Schedule/opd-card"}, "status": "free",
                          "start": "2099-01-05T09:00:00+05:30", "end": "2099-01-05T09:10:00+05:30"});
        assert_eq!(core.put(&format!("/Slot/{s}"), &slot).status, 201);
    }
    let meera = core.post("/Patient", &patient("Sharma", "Meera", Some("9812345678"))).json();
    let meera_id = meera["id"].as_str().unwrap().to_string();
    let order = json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order", "priority": "urgent",
                       "code": {"text": "Complete blood count"}, "subject": {"reference": format!("Patient/{meera_id}")}});
    assert_eq!(core.post("/ServiceRequest", &order).status, 201);

    let work = tempfile::tempdir().unwrap();
    let (data_a, data_b) = (work.path().join("node-a"), work.path().join("node-b"));
    let a = Node::start_as(&via, &core_key, &token_a, &data_a, 7);
    let b = Node::start_as(&via, &core_key, &token_b, &data_b, 8);
    std::thread::sleep(Duration::from_millis(400));
    a.wait_for("vaidya_node_entries", core.ledger_size());
    b.wait_for("vaidya_node_entries", core.ledger_size());
    wait_until("the staff accounts at the nodes", || a.metric("vaidya_node_state_updates_total") >= 1 && b.metric("vaidya_node_state_updates_total") >= 1);

    // Online: staff sign in at their node; a registration there is saved at the core (a central
    // UHID) and shows on the node at once.
    let asha = a.login("reg.asha", &password);
    let bina = b.login("reg.bina", &password_b);
    let (cash_a, cash_b) = (a.login("cash.chitra", &cashier_password), b.login("cash.chitra", &cashier_password));
    // Accounts are the core's: a password changed on a node would not last, so it is refused.
    let body = json!({"old": password, "new": "Another-long-password-1"}).to_string();
    let auth = format!("Bearer {asha}");
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let r = raw_request(&agent, "POST", &format!("{}/auth/password", a.base), Some(&body), &[("Authorization", auth.as_str()), ("Content-Type", "application/json")]);
    assert_eq!(r.status, 403, "{}", r.body);
    let r = a.fhir(&asha, "POST", "/Patient", Some(&patient("Online", "Omkar", None)));
    assert_eq!(r.status, 201, "{}", r.body);
    let online = r.json();
    let location = r.header("location").unwrap_or_default().to_string();
    assert!(location.starts_with(&format!("{}/fhir/Patient/", a.base)), "the new record's address is at the node: {location}");
    assert!(uhid_of(&online).starts_with("00"), "a central UHID: {online}");
    let online_id = online["id"].as_str().unwrap();
    assert_eq!(core.get(&format!("/Patient/{online_id}")).status, 200, "saved at the core");
    let r = a.fhir(&asha, "GET", &format!("/Patient/{online_id}"), None);
    assert_eq!(r.status, 200, "and on the node at once: {}", r.body);
    // What the node forwards is done as the person, under their rights: registration may not
    // write a lab result, through a node or not.
    let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "Hb"}, "subject": {"reference": format!("Patient/{online_id}")}});
    assert_eq!(a.fhir(&asha, "POST", "/Observation", Some(&obs)).status, 403);

    // The core dies. Both nodes switch to downtime and keep working.
    core.kill9();
    let died = Instant::now();
    a.wait_health("mode=downtime");
    b.wait_health("mode=downtime");
    assert!(died.elapsed() < Duration::from_secs(10), "downtime mode within seconds");
    let page = a.get("/ui/login");
    assert!(page.contains("DOWNTIME MODE"), "every page says so: {page}");
    // The downtime sheets were rewritten at the switch: the pending lab order is on paper.
    let sheets = data_a.join("sheets");
    wait_until("the downtime sheets", || std::fs::read_to_string(sheets.join("lab.html")).is_ok_and(|t| t.contains("DOWNTIME")));
    let lab = std::fs::read_to_string(sheets.join("lab.html")).unwrap();
    assert!(lab.contains("Complete blood count") && lab.contains(&uhid_of(&meera)), "{lab}");
    for f in ["opd", "ward", "lab", "forms"] {
        assert!(std::fs::read(sheets.join(format!("{f}.pdf"))).unwrap().starts_with(b"%PDF-"), "{f}.pdf");
    }
    assert!(std::fs::read_to_string(sheets.join("forms.html")).unwrap().contains("REG-07-"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&sheets).unwrap().permissions().mode() & 0o777, 0o700, "the node's user only");
    }

    // Node A: a new patient, booked into slot s1; Meera's address added.
    let r = a.fhir(&asha, "POST", "/Patient", Some(&patient("Kumar", "Ravi", Some("9900011111"))));
    assert_eq!(r.status, 201, "{}", r.body);
    let ravi = r.json();
    assert!(uhid_of(&ravi).starts_with("07"), "node A's own UHID range: {ravi}");
    let ravi_id = ravi["id"].as_str().unwrap().to_string();
    assert_eq!(a.fhir(&asha, "POST", "/Appointment", Some(&appointment("s1", &ravi_id))).status, 201);
    let mut m = a.fhir(&asha, "GET", &format!("/Patient/{meera_id}"), None).json();
    m["address"] = json!([{"city": "New Delhi", "postalCode": "110029"}]);
    assert_eq!(a.fhir(&asha, "PUT", &format!("/Patient/{meera_id}"), Some(&m)).status, 200);
    // Node B: Meera registered again (she did not bring her card), and another patient booked
    // into the same slot s1 (B cannot know A booked it); s2 too.
    let r = b.fhir(&bina, "POST", "/Patient", Some(&patient("Sharma", "Meera", Some("9812345678"))));
    assert_eq!(r.status, 201, "{}", r.body);
    let meera_again = r.json();
    assert!(uhid_of(&meera_again).starts_with("08"), "node B's own UHID range: {meera_again}");
    let sunil = b.fhir(&bina, "POST", "/Patient", Some(&patient("Verma", "Sunil", None))).json();
    let sunil_id = sunil["id"].as_str().unwrap().to_string();
    assert_eq!(b.fhir(&bina, "POST", "/Appointment", Some(&appointment("s1", &sunil_id))).status, 201, "s1 is free as far as B knows");
    assert_eq!(b.fhir(&bina, "POST", "/Appointment", Some(&appointment("s2", &sunil_id))).status, 201);
    // Meera's record changed on B too (both nodes changed version 1).
    let mut m = b.fhir(&bina, "GET", &format!("/Patient/{meera_id}"), None).json();
    m["gender"] = json!("other");
    assert_eq!(b.fhir(&bina, "PUT", &format!("/Patient/{meera_id}"), Some(&m)).status, 200);
    // A new patient registered on both nodes (he went from one counter to the other).
    let kiran_a = a.fhir(&asha, "POST", "/Patient", Some(&patient("Joshi", "Kiran", Some("9700000001")))).json();
    let kiran_b = b.fhir(&bina, "POST", "/Patient", Some(&patient("Joshi", "Kiran", Some("9700000001")))).json();
    // Cash taken at both nodes: receipts from each node's own range.
    let mut receipts = Vec::new();
    for (node, token, key) in [(&a, &cash_a, "a-1"), (&b, &cash_b, "b-1")] {
        let invoice = json!({"resourceType": "Invoice", "status": "issued", "subject": {"reference": format!("Patient/{meera_id}")},
            "lineItem": [{"chargeItemCodeableConcept": {"text": "OPD registration"}, "priceComponent": [{"type": "base", "amount": {"value": 10, "currency": "INR"}, "factor": 1}]}]});
        let r = node.fhir(token, "POST", "/Invoice", Some(&invoice));
        assert_eq!(r.status, 201, "{}", r.body);
        let pay = json!({"resourceType": "Parameters", "parameter": [{"name": "amount", "valueMoney": {"value": 10, "currency": "INR"}},
                         {"name": "mode", "valueCode": "cash"}, {"name": "key", "valueString": key}]});
        let r = node.fhir(token, "POST", &format!("/Invoice/{}/$pay", r.json()["id"].as_str().unwrap()), Some(&pay));
        assert_eq!(r.status, 200, "{}", r.body);
        receipts.push(r.json()["extension"][0]["extension"].as_array().unwrap().iter().find(|x| x["url"] == "receipt").unwrap()["valueString"].as_str().unwrap().to_string());
    }
    assert!(receipts[0].contains("-N07-") && receipts[1].contains("-N08-"), "{receipts:?}");
    // More registrations on both, so that UHIDs run on.
    let mut downtime_uhids = vec![uhid_of(&ravi), uhid_of(&meera_again), uhid_of(&sunil), uhid_of(&kiran_a), uhid_of(&kiran_b)];
    for i in 0..10 {
        let (node, token) = if i % 2 == 0 { (&a, &asha) } else { (&b, &bina) };
        let r = node.fhir(token, "POST", "/Patient", Some(&patient("Downtime", &format!("P{i}"), None)));
        assert_eq!(r.status, 201, "{}", r.body);
        downtime_uhids.push(uhid_of(&r.json()));
    }
    let waiting_a = a.metric("vaidya_node_downtime_entries");
    let waiting_b = b.metric("vaidya_node_downtime_entries");
    assert!(waiting_a > 0 && waiting_b > 0, "entries wait on both nodes: {waiting_a} {waiting_b}");

    // The core returns (same data, another port behind the same address).
    core.spawn();
    *target.lock().unwrap() = host_port(&core.base);
    a.wait_health("mode=online");
    b.wait_health("mode=online");
    assert_eq!(a.metric("vaidya_node_downtime_entries"), 0);
    assert_eq!(b.metric("vaidya_node_downtime_entries"), 0);

    // Every downtime entry reached the core or the queue: each node's report accounts for
    // every unit, and the numbers add up.
    let report = |node: &Node, token: &str| -> Value {
        let auth = format!("Bearer {token}");
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let r = raw_request(&agent, "GET", &format!("{}/node/outage", node.base), None, &[("Authorization", auth.as_str())]);
        let r = if r.status == 200 { r } else { panic!("{} {}", r.status, r.body) };
        r.json()
    };
    let ra = report(&a, &asha);
    let rb = report(&b, &bina);
    for (r, waiting) in [(&ra, waiting_a), (&rb, waiting_b)] {
        let o = &r["outages"][0];
        assert_eq!(o["entries"].as_u64(), Some(waiting), "{r}");
        let units = o["handed_back"].as_array().unwrap();
        assert_eq!(units.len() as u64, o["units"].as_u64().unwrap());
        let covered: u64 = units.iter().map(|u| u["entries"][1].as_u64().unwrap() - u["entries"][0].as_u64().unwrap() + 1).sum();
        assert_eq!(covered, waiting, "the units cover every entry");
        assert!(units.iter().all(|u| u["outcome"] == "applied" || (u["outcome"] == "queued" && u["task"].is_string())), "{r}");
    }
    // Slot s1 has exactly one booking at the core; the other is in the queue, with the patient
    // and the reason.
    let s1 = core.get("/Appointment?slot=Slot/s1&status=booked").json();
    assert_eq!(s1["total"], 1, "{s1}");
    let booked = s1["entry"][0]["resource"]["participant"][0]["actor"]["reference"].as_str().unwrap().to_string();
    assert!(booked == format!("Patient/{ravi_id}") || booked == format!("Patient/{sunil_id}"));
    assert_eq!(core.get("/Appointment?slot=Slot/s2&status=booked").json()["total"], 1, "an undisputed booking is applied");
    let (status, queue) = admin_json(&core, "GET", "/node/reconciliation", None);
    assert_eq!(status, 200, "{queue}");
    let items = queue["items"].as_array().unwrap().clone();
    let item = |kind: &str, about: &str| -> Value {
        items.iter().find(|i| i["kind"] == kind && i["description"].as_str().unwrap().contains(about)).unwrap_or_else(|| panic!("no {kind} item about {about}: {queue}")).clone()
    };
    assert_eq!(items.len(), 4, "a double booking, a record changed on both sides, two likely duplicates: {queue}");
    let conflict = item("conflict", "Slot/s1");
    let changed_twice = item("conflict", &format!("Patient/{meera_id}"));
    let loser = if booked.ends_with(&ravi_id) { &sunil_id } else { &ravi_id };
    let dup = item("duplicate-patient", &meera_id);
    let (ka, kb) = (kiran_a["id"].as_str().unwrap(), kiran_b["id"].as_str().unwrap());
    let kiran_dup = items.iter().find(|i| i["kind"] == "duplicate-patient" && (i["description"].as_str().unwrap().contains(&format!("Patient/{ka}, registered")) || i["description"].as_str().unwrap().contains(&format!("Patient/{kb}, registered")))).unwrap_or_else(|| panic!("{queue}")).clone();
    // Meera's record: one node's change is at the core, the other's waits in the queue.
    let m = core.get(&format!("/Patient/{meera_id}")).json();
    let a_first = m["address"][0]["postalCode"] == "110029";
    assert!(a_first != (m["gender"] == "other"), "exactly one of the two changes applied: {m}");
    // No receipt number twice: the core has both, distinct from its own.
    let invoices = core.get("/Invoice?_count=100").json();
    let all_receipts: Vec<String> = invoices["entry"].as_array().unwrap().iter().flat_map(|e| {
        e["resource"]["extension"].as_array().into_iter().flatten().filter_map(|x| x["extension"].as_array()?.iter().find(|y| y["url"] == "receipt")?["valueString"].as_str().map(str::to_string)).collect::<Vec<_>>()
    }).collect();
    assert_eq!(all_receipts.iter().collect::<BTreeSet<_>>().len(), all_receipts.len(), "{all_receipts:?}");
    assert!(receipts.iter().all(|r| all_receipts.contains(r)), "{all_receipts:?}");
    let patients = all_patients(&core);
    let uhids: Vec<String> = patients.iter().map(uhid_of).collect();
    let distinct: BTreeSet<&String> = uhids.iter().collect();
    assert_eq!(distinct.len(), uhids.len(), "no UHID issued twice: {uhids:?}");
    for u in &downtime_uhids {
        assert!(uhids.contains(u), "the downtime UHID {u} is at the core");
    }
    assert!(patients.iter().any(|p| p["id"] == loser.as_str()), "the patient of the queued booking is registered all the same");

    // A person settles the queue, and the decisions are recorded.
    let (status, _) = admin_json(&core, "POST", &format!("/node/reconciliation/{}", conflict["id"].as_str().unwrap()), Some(&json!({"decision": "apply"})));
    assert_eq!(status, 422, "a booking is not applied over a taken slot");
    // On the administrator's screen: the item, and its settling (with the CSRF token).
    let web = AdminBrowser::sign_in(&core);
    let page = web.get("/ui/reconciliation");
    let conflict_id = conflict["id"].as_str().unwrap();
    assert!(page.contains(&format!("id=\"item-{conflict_id}\"")) && page.contains("Slot/s1"), "{page}");
    // ...at the core only: an administrator does not sign in at a department node.
    let body = json!({"user": "admin", "password": "Admin-password-for-the-test-1"}).to_string();
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    wait_until("the administrator's new password at the node", || {
        let r = raw_request(&agent, "POST", &format!("{}/auth/login", a.base), Some(&body), &[("Content-Type", "application/json")]);
        r.status == 403 && r.body.contains("signs in at the core")
    });
    let form = format!("csrf={}&decision=settled&note=rebooked+into+the+09%3A10+slot+by+phone", web.csrf);
    let done = web.post(&format!("/ui/reconciliation/{conflict_id}"), &form);
    assert!(done.contains("Settled, and recorded.") && !done.contains(&format!("id=\"item-{conflict_id}\"")), "{done}");
    let (_, all) = admin_json(&core, "GET", "/node/reconciliation?status=all", None);
    let settled = all["items"].as_array().unwrap().iter().find(|i| i["id"] == conflict_id).unwrap().clone();
    assert_eq!((settled["decision"].as_str(), settled["decided_by"].as_str()), (Some("settled"), Some("admin")), "{settled}");
    let (status, merged) = admin_json(&core, "POST", &format!("/node/reconciliation/{}", dup["id"].as_str().unwrap()), Some(&json!({"decision": "merge"})));
    assert_eq!(status, 200, "{merged}");
    let again_id = meera_again["id"].as_str().unwrap();
    assert_eq!(core.get(&format!("/Patient/{again_id}")).json()["active"], false, "merged into the first record");
    // The record changed on both sides: the person applies the queued node's version.
    let (status, applied) = admin_json(&core, "POST", &format!("/node/reconciliation/{}", changed_twice["id"].as_str().unwrap()), Some(&json!({"decision": "apply", "note": "the later correction"})));
    assert_eq!(status, 200, "{applied}");
    let m = core.get(&format!("/Patient/{meera_id}")).json();
    if a_first {
        assert_eq!(m["gender"], "other", "B's change, applied by a person: {m}");
    } else {
        assert_eq!(m["address"][0]["postalCode"], "110029", "A's change, applied by a person: {m}");
    }
    let (status, _) = admin_json(&core, "POST", &format!("/node/reconciliation/{}", kiran_dup["id"].as_str().unwrap()), Some(&json!({"decision": "merge"})));
    assert_eq!(status, 200);
    let (status, again) = admin_json(&core, "POST", &format!("/node/reconciliation/{}", dup["id"].as_str().unwrap()), Some(&json!({"decision": "discard"})));
    assert_eq!(status, 409, "settled once: {again}");
    assert_eq!(admin_json(&core, "GET", "/node/reconciliation", None).1["items"], json!([]));
    let (_, all) = admin_json(&core, "GET", "/node/reconciliation?status=all", None);
    assert_eq!(all["items"].as_array().unwrap().len(), 4);
    // Only an administrator sees or settles the queue.
    let root = core.base.trim_end_matches("/fhir").to_string();
    let r = raw_request(&ureq::Agent::config_builder().http_status_as_error(false).build().into(), "GET", &format!("{root}/node/reconciliation"), None, &[("Authorization", &format!("Bearer {token_a}"))]);
    assert_eq!(r.status, 403);

    // The nodes follow the core again: the handed-back records are on both.
    std::thread::sleep(Duration::from_millis(400));
    let size = core.ledger_size();
    a.wait_for("vaidya_node_entries", size);
    b.wait_for("vaidya_node_entries", size);
    assert_eq!(b.fhir(&bina, "GET", &format!("/Patient/{ravi_id}"), None).status, 200, "A's downtime patient reaches B");
    a.stop();
    b.stop();
    core.stop();
    verify(core.data());
    verify(&data_a);
    verify(&data_b);
}

#[test]
fn a_hand_back_cut_short_on_either_side_resumes_and_nothing_is_lost_or_doubled() {
    let mut core = Server::start();
    let target = Arc::new(Mutex::new(host_port(&core.base)));
    let via = proxy(target.clone());
    let core_key = core.data().join("keys/ledger.pub").to_str().unwrap().to_string();
    let node_token = core.add_user("node-ward", "node", &[]);
    let password = core.staff_with_password("reg.ward", "registration", &["--department", "cardiology"]);
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("node");
    let batch = ["--handback-batch", "40"];
    let node = Node::start_with(&via, &core_key, &node_token, &data, 9, &batch);
    std::thread::sleep(Duration::from_millis(400));
    node.wait_for("vaidya_node_entries", core.ledger_size());
    wait_until("the staff account at the node", || node.metric("vaidya_node_state_updates_total") >= 1);
    let token = node.login("reg.ward", &password);

    // Downtime, by the operator's switch this time (the core stays up but unseen).
    std::fs::write(data.join("DOWNTIME"), "").unwrap();
    node.wait_health("mode=downtime");
    let n = 600;
    for i in 0..n {
        let r = node.fhir(&token, "POST", "/Patient", Some(&patient("Cut", &format!("N{i:04}"), None)));
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let count = |core: &Server| core.get("/Patient?family=Cut&_summary=count").json()["total"].as_u64().unwrap();
    assert_eq!(count(&core), 0, "nothing reached the core yet");

    // The switch is lifted; the node is killed in the middle of its hand-back.
    let start = core.ledger_size();
    std::fs::remove_file(data.join("DOWNTIME")).unwrap();
    wait_until("the hand-back to begin", || core.ledger_size() > start);
    node.kill9();
    let part = count(&core);
    assert!(part > 0 && part < n, "cut in the middle ({part} of {n} taken)");
    // Restarted, it resumes where the core says it stopped.
    let node = Node::start_with(&via, &core_key, &node_token, &data, 9, &batch);
    node.wait_health("mode=online");
    assert_eq!(count(&core), n, "every downtime registration once");

    // Again, and this time the core dies in the middle of it.
    std::fs::write(data.join("DOWNTIME"), "").unwrap();
    node.wait_health("mode=downtime");
    let token = node.login("reg.ward", &password);
    for i in 0..n {
        let r = node.fhir(&token, "POST", "/Patient", Some(&patient("Cut", &format!("M{i:04}"), None)));
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let start = core.ledger_size();
    std::fs::remove_file(data.join("DOWNTIME")).unwrap();
    wait_until("the second hand-back to begin", || core.ledger_size() > start);
    core.kill9();
    std::thread::sleep(Duration::from_millis(500));
    core.spawn();
    *target.lock().unwrap() = host_port(&core.base);
    node.wait_health("mode=online");
    assert_eq!(count(&core), 2 * n, "every downtime registration once, after the core's death too");
    let uhids: Vec<String> = all_patients(&core).iter().map(uhid_of).collect();
    assert_eq!(uhids.iter().collect::<BTreeSet<_>>().len(), uhids.len(), "no UHID twice");
    assert!(uhids.iter().all(|u| u.starts_with("09")), "all from the node's range");
    std::thread::sleep(Duration::from_millis(400));
    node.wait_for("vaidya_node_entries", core.ledger_size());
    node.stop();
    core.stop();
    verify(core.data());
    verify(&data);
}

fn params(pairs: &[(&str, Value)]) -> Value {
    json!({"resourceType": "Parameters", "parameter": pairs.iter().map(|(n, v)| {
        let mut p = json!({"name": n});
        for (k, val) in v.as_object().unwrap() { p[k] = val.clone(); }
        p
    }).collect::<Vec<_>>()})
}

#[test]
fn a_department_s_whole_day_works_on_the_node_in_downtime_and_reaches_the_core() {
    let core = Server::start();
    let core_key = core.data().join("keys/ledger.pub").to_str().unwrap().to_string();
    let node_token = core.add_user("node-gm", "node", &[]);
    for (path, body) in [
        ("/HealthcareService/gen-med", json!({"resourceType": "HealthcareService", "id": "gen-med", "name": "General Medicine"})),
        ("/Practitioner/dr-sharma", json!({"resourceType": "Practitioner", "id": "dr-sharma"})),
        ("/Patient/p1", json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Iyer"}]})),
    ] {
        assert_eq!(core.put(path, &body).status, 201, "{path}");
    }
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("node");
    let node = Node::start_as(&core.base.replace("/fhir", ""), &core_key, &node_token, &data, 9);
    std::thread::sleep(Duration::from_millis(400));
    node.wait_for("vaidya_node_entries", core.ledger_size());
    // A machine client of the department (the integration account), with a token of the node's.
    wait_until("the accounts at the node", || node.metric("vaidya_node_state_updates_total") >= 1);
    let out = Command::new(BIN).args(["token", "--data", data.to_str().unwrap(), "--user", "integration"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();

    std::fs::write(data.join("DOWNTIME"), "").unwrap();
    node.wait_health("mode=downtime");
    let ok = |r: common::Resp, what: &str| -> Value {
        assert!(r.status == 200 || r.status == 201, "{what}: {} {}", r.status, r.body);
        r.json()
    };
    // Registration, a walk-in token, the queue (called, in consultation: the visit opens).
    let ravi = ok(node.fhir(&token, "POST", "/Patient", Some(&patient("Rao", "Ravi", None))), "registration");
    let ravi_id = ravi["id"].as_str().unwrap().to_string();
    assert!(uhid_of(&ravi).starts_with("09"), "{ravi}");
    let walk_in = |p: &str| params(&[("patient", json!({"valueReference": {"reference": p}})), ("practitioner", json!({"valueReference": {"reference": "Practitioner/dr-sharma"}}))]);
    let appt = ok(node.fhir(&token, "POST", "/HealthcareService/gen-med/$walk-in", Some(&walk_in(&format!("Patient/{ravi_id}")))), "walk-in");
    let appt_id = appt["id"].as_str().unwrap().to_string();
    let token_no = appt["identifier"][0]["value"].as_str().unwrap().to_string();
    for st in ["called", "in-consultation"] {
        ok(node.fhir(&token, "POST", &format!("/Appointment/{appt_id}/$queue"), Some(&params(&[("state", json!({"valueCode": st}))]))), st);
    }
    let enc = ok(node.fhir(&token, "GET", &format!("/Encounter?appointment=Appointment/{appt_id}"), None), "the visit");
    let enc_id = enc["entry"][0]["resource"]["id"].as_str().unwrap().to_string();
    // A note, a lab order collected with a barcode, its result.
    let note = json!({"resourceType": "ClinicalImpression", "status": "completed", "subject": {"reference": format!("Patient/{ravi_id}")},
                      "encounter": {"reference": format!("Encounter/{enc_id}")}, "summary": "Fever for 3 days; CBC ordered."});
    ok(node.fhir(&token, "POST", "/ClinicalImpression", Some(&note)), "note");
    let order = json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order", "code": {"text": "CBC"},
                       "subject": {"reference": format!("Patient/{ravi_id}")}});
    let sr = ok(node.fhir(&token, "POST", "/ServiceRequest", Some(&order)), "order");
    let sr_id = sr["id"].as_str().unwrap();
    let specimen = ok(node.fhir(&token, "POST", &format!("/ServiceRequest/{sr_id}/$collect"), Some(&json!({"resourceType": "Parameters"}))), "collection");
    let barcode = specimen["accessionIdentifier"]["value"].as_str().unwrap().to_string();
    assert!(barcode.contains("-N09-"), "the node's own specimen numbers: {barcode}");
    let result = json!({"resourceType": "Observation", "status": "preliminary", "code": {"text": "Haemoglobin"},
                        "subject": {"reference": format!("Patient/{ravi_id}")}, "basedOn": [{"reference": format!("ServiceRequest/{sr_id}")}],
                        "valueQuantity": {"value": 11.2, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"}});
    ok(node.fhir(&token, "POST", "/Observation", Some(&result)), "result");
    // A charge paid in cash: the receipt number is the node's own.
    let invoice = json!({"resourceType": "Invoice", "status": "issued", "subject": {"reference": format!("Patient/{ravi_id}")},
        "lineItem": [{"chargeItemCodeableConcept": {"text": "OPD consultation"}, "priceComponent": [{"type": "base", "amount": {"value": 100, "currency": "INR"}, "factor": 1}]}]});
    let inv = ok(node.fhir(&token, "POST", "/Invoice", Some(&invoice)), "invoice");
    let inv_id = inv["id"].as_str().unwrap().to_string();
    let pay = json!({"resourceType": "Parameters", "parameter": [{"name": "amount", "valueMoney": {"value": 100, "currency": "INR"}},
                     {"name": "mode", "valueCode": "cash"}, {"name": "key", "valueString": "node-counter-1"}]});
    let paid = ok(node.fhir(&token, "POST", &format!("/Invoice/{inv_id}/$pay"), Some(&pay)), "payment");
    let receipt = paid["extension"][0]["extension"].as_array().unwrap().iter().find(|x| x["url"] == "receipt").unwrap()["valueString"].as_str().unwrap().to_string();
    assert!(receipt.contains("-N09-"), "the node's own receipt numbers: {receipt}");

    // The core is seen again: all of it is there, as entered, with the node's numbers.
    std::fs::remove_file(data.join("DOWNTIME")).unwrap();
    node.wait_health("mode=online");
    assert_eq!(core.get(&format!("/Patient/{ravi_id}")).json()["identifier"], ravi["identifier"]);
    let a = core.get(&format!("/Appointment/{appt_id}")).json();
    assert_eq!(a["identifier"][0]["value"], token_no.as_str());
    assert_eq!(core.get(&format!("/Encounter/{enc_id}")).json()["status"], "in-progress");
    assert_eq!(core.get(&format!("/ClinicalImpression?encounter=Encounter/{enc_id}")).json()["total"], 1);
    assert_eq!(core.get(&format!("/Specimen?accession={barcode}")).json()["total"], 1);
    assert_eq!(core.get(&format!("/Observation?based-on=ServiceRequest/{sr_id}")).json()["total"], 1);
    let inv_core = core.get(&format!("/Invoice/{inv_id}")).json();
    assert_eq!(inv_core["status"], "balanced", "{inv_core}");
    // The core's own numbers go on from where they were: the day's next token is not the node's.
    let p2 = core.post("/Patient", &patient("Core", "After", None)).json();
    let next = core.post("/HealthcareService/gen-med/$walk-in", &walk_in(&format!("Patient/{}", p2["id"].as_str().unwrap()))).json();
    assert_ne!(next["identifier"][0]["value"], token_no.as_str(), "no queue token given out twice");
    node.stop();
    verify(&data);
}
