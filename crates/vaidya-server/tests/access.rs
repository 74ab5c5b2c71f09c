//! Every interaction is allowed by an explicit policy (Cedar, `vaidya-policy`) or refused, over
//! HTTP with real accounts: the administrator is not a clinician, doctors see their
//! department's patients, VIP records are invisible outside the care relationship.

mod common;
use common::*;
use serde_json::{Value, json};

const CAPACITY: &str = "https://vaidya.dev/fhir/StructureDefinition/slot-capacity";

fn book(s: &Server, patient: &str, dept: &str, slot: &str) {
    let slot_body = json!({"resourceType": "Slot", "id": slot, "schedule": {"reference": "Schedule/opd"}, "status": "free",
        "start": "2099-02-02T09:00:00+05:30", "end": "2099-02-02T09:10:00+05:30", "extension": [{"url": CAPACITY, "valueUnsignedInt": 5}]});
    assert_eq!(s.put(&format!("/Slot/{slot}"), &slot_body).status, 201);
    let r = s.post("/Appointment", &json!({"resourceType": "Appointment", "status": "booked", "slot": [{"reference": format!("Slot/{slot}")}],
        "participant": [{"actor": {"reference": format!("Patient/{patient}")}, "status": "accepted"},
                        {"actor": {"reference": format!("HealthcareService/{dept}")}, "status": "accepted"}]}));
    assert_eq!(r.status, 201, "{}", r.body);
}

fn observation(s: &Server, patient: &str) -> String {
    let r = s.post("/Observation", &json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]}, "subject": {"reference": format!("Patient/{patient}")},
        "valueQuantity": {"value": 13.1, "unit": "g/dL"}}));
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["id"].as_str().unwrap().to_string()
}

#[test]
fn roles_departments_and_vip_labels_decide_who_sees_what() {
    let s = Server::start();
    assert_eq!(s.put("/Schedule/opd", &json!({"resourceType": "Schedule", "id": "opd", "actor": [{"reference": "Practitioner/d"}]})).status, 201);
    for p in ["mine", "theirs"] {
        assert_eq!(s.put(&format!("/Patient/{p}"), &json!({"resourceType": "Patient", "id": p, "name": [{"family": "Verma"}]})).status, 201);
    }
    let vip = json!({"resourceType": "Patient", "id": "vip", "name": [{"family": "Verma"}],
        "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "CEL"}]}});
    assert_eq!(s.put("/Patient/vip", &vip).status, 201);
    book(&s, "mine", "gen-med", "s1");
    book(&s, "theirs", "ent", "s2");
    book(&s, "vip", "gen-med", "s3");
    let (obs_mine, obs_theirs, obs_vip) = (observation(&s, "mine"), observation(&s, "theirs"), observation(&s, "vip"));

    let admin = s.make_token("admin");
    let doctor = s.add_user("dr.rao", "doctor", &["--department", "gen-med"]);
    let clerk = s.add_user("reg.asha", "registration", &[]);
    let cashier = s.add_user("cash.ravi", "billing", &[]);
    let get = |token: &str, path: &str| s.request_as(token, "GET", path, None);

    // The administrator sets the hospital up but reads no patient's record.
    let r = s.request_as(&admin, "PUT", "/HealthcareService/cardio", Some(&json!({"resourceType": "HealthcareService", "id": "cardio", "name": "Cardiology"})));
    assert_eq!(r.status, 201, "{}", r.body);
    let r = get(&admin, "/Patient/mine");
    assert_eq!(r.status, 403);
    assert!(r.body.contains("admin-not-clinical"), "the refusal names the policy: {}", r.body);
    assert_eq!(get(&admin, &format!("/Observation/{obs_mine}")).status, 403);
    assert_eq!(get(&admin, "/Patient?name=verma").status, 403);

    // A doctor reads the clinical records of their department's patients, not another's.
    assert_eq!(get(&doctor, &format!("/Observation/{obs_mine}")).status, 200);
    assert_eq!(get(&doctor, &format!("/Observation/{obs_theirs}")).status, 403);
    assert_eq!(get(&doctor, "/Observation?patient=Patient/mine").json()["total"], 1);
    assert_eq!(get(&doctor, "/Observation?patient=Patient/theirs").status, 403);
    assert_eq!(get(&doctor, "/Observation?code=718-7").status, 403, "a clinical search names a patient");
    assert_eq!(get(&doctor, "/Practitioner").status, 200, "the directory is open to staff");
    let before = s.ledger_size();
    let r = s.request_as(&doctor, "POST", "/Observation", Some(&json!({"resourceType": "Observation", "status": "final",
        "code": {"text": "note"}, "subject": {"reference": "Patient/theirs"}})));
    assert_eq!(r.status, 403);
    assert_eq!(s.ledger_size(), before, "a refused write changes nothing");

    // A VIP's records are not there for anyone outside the care relationship: not even their
    // department's doctor without an encounter, nor registration.
    assert_eq!(get(&doctor, &format!("/Observation/{obs_vip}")).status, 404);
    assert_eq!(get(&clerk, "/Patient/vip").status, 404);
    let found = get(&clerk, "/Patient?name=verma").json();
    let ids: Vec<&str> = found["entry"].as_array().unwrap().iter().filter_map(|e| e["resource"]["id"].as_str()).collect();
    assert!(ids.contains(&"mine") && !ids.contains(&"vip"), "{ids:?}");
    // Nor in the counts: "3 Vermas, 2 shown" would tell that a protected Verma exists.
    assert_eq!(found["total"], 2, "{found}");
    assert_eq!(get(&clerk, "/Patient?name=verma&_summary=count").json()["total"], 2);
    assert_eq!(get(&clerk, "/Patient?_count=0").json()["total"], 2);
    assert!(!found.to_string().contains("vip"), "not even in the links: {found}");
    // ... nor their appointments, which registration otherwise sees.
    let appts = get(&clerk, "/Appointment").json();
    assert_eq!(appts["total"], 2, "{appts}");
    assert_eq!(get(&clerk, "/Appointment?_summary=count").json()["total"], 2);
    // Once a doctor has broken the glass for the VIP, the VIP counts for that doctor alone.
    let params = json!({"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": "unconscious in casualty, identity check"}]});
    assert_eq!(s.request_as(&doctor, "POST", "/Patient/vip/$break-glass", Some(&params)).status, 200);
    assert_eq!(get(&doctor, "/Patient?name=verma&_summary=count").json()["total"], 3);
    assert_eq!(get(&clerk, "/Patient?name=verma&_summary=count").json()["total"], 2);
    // A record labelled on its own (a restricted note about an ordinary patient) is hidden
    // from those who may not see it, in the total too.
    let restricted = json!({"resourceType": "Appointment", "status": "proposed", "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "V"}]},
        "participant": [{"actor": {"reference": "Patient/theirs"}, "status": "needs-action"}]});
    assert_eq!(s.post("/Appointment", &restricted).status, 201);
    assert_eq!(get(&clerk, "/Appointment?_summary=count").json()["total"], 2);
    assert_eq!(get(&doctor, "/Appointment?patient=Patient/mine&_summary=count").json()["total"], 1);

    // Billing sees money, not medicine.
    assert_eq!(get(&cashier, &format!("/Observation/{obs_mine}")).status, 403);
    assert_eq!(get(&cashier, "/Invoice").status, 200);

    // Bundles: every entry is checked as the same interaction on its own would be.
    let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Patient/mine"}},
        {"request": {"method": "GET", "url": format!("Observation/{obs_theirs}")}},
        {"request": {"method": "GET", "url": format!("Observation/{obs_vip}")}},
        {"request": {"method": "GET", "url": "Observation?patient=Patient/mine"}},
        {"request": {"method": "GET", "url": "Observation?code=718-7"}}]});
    let r = s.request_as(&doctor, "POST", "", Some(&bundle));
    assert_eq!(r.status, 200, "{}", r.body);
    let statuses: Vec<String> = r.json()["entry"].as_array().unwrap().iter().map(|e| e["response"]["status"].as_str().unwrap().to_string()).collect();
    // (The doctor broke the glass for the VIP above.)
    assert!(statuses[0].starts_with("200") && statuses[1].starts_with("403") && statuses[2].starts_with("200"), "{statuses:?}");
    let clerk_batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Patient/vip"}}, {"request": {"method": "GET", "url": "Patient?name=verma"}}]});
    let rc = s.request_as(&clerk, "POST", "", Some(&clerk_batch));
    assert_eq!(rc.status, 200, "{}", rc.body);
    assert!(rc.json()["entry"][0]["response"]["status"].as_str().unwrap().starts_with("404"), "{}", rc.body);
    assert_eq!(rc.json()["entry"][1]["resource"]["total"], 2, "the VIP is not counted in a Bundle either: {}", rc.body);
    assert!(statuses[3].starts_with("200") && statuses[4].starts_with("403"), "a clinical search names a patient, in a Bundle too: {statuses:?}");
    assert_eq!(r.json()["entry"][3]["resource"]["total"], 1, "{}", r.body);
    let tx = |patient: &str| json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:8c1f3e52-0d8a-4c55-9a53-2f0f5a6b7c81", "request": {"method": "POST", "url": "Observation"},
         "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "pulse"}, "subject": {"reference": format!("Patient/{patient}")}}}]});
    let before = s.ledger_size();
    let r = s.request_as(&doctor, "POST", "", Some(&tx("theirs")));
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(s.ledger_size(), before, "one refused entry refuses the whole transaction");
    let r = s.request_as(&doctor, "POST", "", Some(&tx("mine")));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(s.post("", &bundle).status, 200);
    let _: Value = get(&doctor, "/Patient/mine").json();
}

#[test]
fn every_access_allowed_or_refused_is_in_the_audit_trail() {
    let mut s = Server::start();
    assert_eq!(s.put("/Patient/p1", &json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Khan"}]})).status, 201);
    let obs = observation(&s, "p1");
    let admin = s.make_token("admin");
    assert_eq!(s.request_as(&admin, "GET", &format!("/Observation/{obs}"), None).status, 403);
    assert_eq!(s.get("/Observation?patient=Patient/p1").status, 200);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    assert_eq!(raw_request(&agent, "GET", &format!("{}/Patient/p1", s.base), None, &[]).status, 401);
    // A login and a failed one.
    let data = s.data().to_str().unwrap().to_string();
    let out = s.vaidya(&["user", "add", "--data", &data, "--name", "reg.meena", "--role", "registration"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let password = text.lines().find_map(|l| l.strip_prefix("One-time password: ")).unwrap().trim().to_string();
    let login = |pw: &str| {
        let body = json!({"user": "reg.meena", "password": pw}).to_string();
        raw_request(&agent, "POST", &s.base.replace("/fhir", "/auth/login"), Some(&body), &[("Content-Type", "application/json")]).status
    };
    assert_eq!(login("wrong password"), 401);
    assert_eq!(login(&password), 200);
    s.stop();
    let out = s.vaidya(&["audit", "report", "--data", &data, "--user", "reg.meena", "--json"]);
    let logins = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(logins.lines().count(), 2, "{logins}");
    assert!(logins.contains("bad-password") || logins.contains("bad_password") || logins.contains("password"), "{logins}");

    let out = s.vaidya(&["audit", "verify", "--data", &data]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let out = s.vaidya(&["audit", "report", "--data", &data, "--patient-id", "p1", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let text: Vec<String> = events.iter().map(|e| e.to_string()).collect();
    // The create by the integration, the admin's refused read, the search with what it returned.
    assert!(events.len() >= 4, "{text:#?}");
    assert!(text.iter().any(|e| e.contains("\"admin\"") && e.contains("\"outcome\":\"4\"")), "the refusal is recorded: {text:#?}");
    assert!(text.iter().any(|e| e.contains("integration") && e.contains(&format!("Observation/{obs}")) && e.contains("search")), "{text:#?}");
    // The unauthenticated request is recorded too (anonymous), though it names no patient.
    let out = s.vaidya(&["audit", "report", "--data", &data, "--user", "anonymous", "--json"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Patient/p1"), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn break_the_glass_opens_a_record_for_a_while_and_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vaidya.toml");
    std::fs::write(&config, "[access]\nbreak_glass_seconds = 3\n").unwrap();
    let config_arg = config.to_str().unwrap().to_string();
    let data = tempfile::tempdir().unwrap();
    let mut s = Server::start_with(data, &["--config", &config_arg]);
    assert_eq!(s.put("/Schedule/opd", &json!({"resourceType": "Schedule", "id": "opd", "actor": [{"reference": "Practitioner/d"}]})).status, 201);
    assert_eq!(s.put("/Patient/other", &json!({"resourceType": "Patient", "id": "other"})).status, 201);
    let vip = json!({"resourceType": "Patient", "id": "vip",
        "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "V"}]}});
    assert_eq!(s.put("/Patient/vip", &vip).status, 201);
    book(&s, "other", "ent", "s1");
    book(&s, "vip", "gen-med", "s2");
    let (obs_other, obs_vip) = (observation(&s, "other"), observation(&s, "vip"));
    let doctor = s.add_user("dr.emergency", "doctor", &["--department", "gen-med"]);
    let clerk = s.add_user("reg.night", "registration", &[]);
    let get = |path: &str| s.request_as(&doctor, "GET", path, None).status;
    let glass = |token: &str, patient: &str, reason: Option<&str>| {
        let params = match reason {
            Some(r) => json!({"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": r}]}),
            None => json!({"resourceType": "Parameters"}),
        };
        s.request_as(token, "POST", &format!("/Patient/{patient}/$break-glass"), Some(&params))
    };

    assert_eq!(get(&format!("/Observation/{obs_other}")), 403);
    assert_eq!(get(&format!("/Observation/{obs_vip}")), 404);
    assert_eq!(glass(&doctor, "other", None).status, 400, "a reason is required");
    assert_eq!(glass(&doctor, "other", Some("urgent")).status, 400, "and must say something");
    assert_eq!(glass(&clerk, "other", Some("patient collapsed at the counter")).status, 403, "only clinicians");
    let r = glass(&doctor, "other", Some("unconscious in casualty, allergy history needed"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["parameter"][1]["valueInstant"].is_string());
    assert_eq!(get(&format!("/Observation/{obs_other}")), 200, "open during the grant");
    assert_eq!(glass(&doctor, "vip", Some("cardiac arrest on ward 4, needs history")).status, 200);
    assert_eq!(get(&format!("/Observation/{obs_vip}")), 200);
    let metrics = raw_request(&ureq::Agent::new_with_defaults(), "GET", &s.base.replace("/fhir", "/metrics"), None, &[]).body;
    assert!(metrics.contains("vaidya_break_glass_total 2"), "{metrics}");

    // The grant runs out.
    std::thread::sleep(std::time::Duration::from_millis(3_500));
    assert_eq!(get(&format!("/Observation/{obs_other}")), 403);
    assert_eq!(get(&format!("/Observation/{obs_vip}")), 404);

    s.stop();
    let data = s.data().to_str().unwrap().to_string();
    let out = s.vaidya(&["audit", "report", "--data", &data, "--user", "dr.emergency", "--json"]);
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(report.contains("BTG") && report.contains("unconscious in casualty"), "every grant is listed with its reason: {report}");
    // The VIP's record answered "not found" before the grant is, in the trail, a refusal.
    let mine: Vec<vaidya_audit::ReportRow> = report.lines().map(|l| vaidya_audit::ReportRow::from_event(&serde_json::from_str(l).unwrap())).collect();
    assert!(mine.iter().any(|r| r.action == "read" && r.outcome.starts_with("denied") && r.outcome.contains("404")), "{mine:#?}");

    // The privacy officer's review: both grants and the two reads made under them, and
    // nothing else (not the refused reads before the grants, nor those after they ran out).
    let out = s.vaidya(&["audit", "report", "--data", &data, "--break-glass", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let review: Vec<Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let rows: Vec<vaidya_audit::ReportRow> = review.iter().map(vaidya_audit::ReportRow::from_event).collect();
    assert_eq!(rows.iter().filter(|r| r.action == "break-glass").count(), 2, "{rows:#?}");
    let reads: Vec<&vaidya_audit::ReportRow> = rows.iter().filter(|r| r.action == "read").collect();
    assert_eq!(reads.len(), 2, "{rows:#?}");
    assert!(reads.iter().all(|r| r.outcome == "allowed" && r.user == "dr.emergency"), "{rows:#?}");
    let table = s.vaidya(&["audit", "report", "--data", &data, "--break-glass", "--since", "2000-01-01"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("4 events"), "{}", String::from_utf8_lossy(&table.stdout));
    let bad = s.vaidya(&["audit", "report", "--data", &data, "--break-glass", "--since", "yesterday"]);
    assert!(!bad.status.success());
}

#[test]
fn a_clinician_sees_the_patients_they_see_themselves() {
    let s = Server::start();
    assert_eq!(s.put("/Schedule/opd", &json!({"resourceType": "Schedule", "id": "opd", "actor": [{"reference": "Practitioner/d"}]})).status, 201);
    let vip = json!({"resourceType": "Patient", "id": "vip", "name": [{"family": "Sharma"}],
        "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "CEL"}]}});
    assert_eq!(s.put("/Patient/vip", &vip).status, 201);
    assert_eq!(s.put("/Patient/ward", &json!({"resourceType": "Patient", "id": "ward", "name": [{"family": "Das"}]})).status, 201);
    // The VIP's appointment in gen-med is with Dr Mehta; the ward patient's encounter (ENT) too.
    let slot = json!({"resourceType": "Slot", "id": "s1", "schedule": {"reference": "Schedule/opd"}, "status": "free",
        "start": "2099-02-02T09:00:00+05:30", "end": "2099-02-02T09:10:00+05:30", "extension": [{"url": CAPACITY, "valueUnsignedInt": 5}]});
    assert_eq!(s.put("/Slot/s1", &slot).status, 201);
    let r = s.post("/Appointment", &json!({"resourceType": "Appointment", "status": "booked", "slot": [{"reference": "Slot/s1"}],
        "participant": [{"actor": {"reference": "Patient/vip"}, "status": "accepted"},
                        {"actor": {"reference": "Practitioner/dr-mehta"}, "status": "accepted"},
                        {"actor": {"reference": "HealthcareService/gen-med"}, "status": "accepted"}]}));
    assert_eq!(r.status, 201, "{}", r.body);
    let r = s.post("/Encounter", &json!({"resourceType": "Encounter", "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": "Patient/ward"}, "participant": [{"individual": {"reference": "Practitioner/dr-mehta"}}]}));
    assert_eq!(r.status, 201, "{}", r.body);
    let (obs_vip, obs_ward) = (observation(&s, "vip"), observation(&s, "ward"));

    let mehta = s.add_user("dr.mehta", "doctor", &["--department", "cardio", "--practitioner", "dr-mehta"]);
    let colleague = s.add_user("dr.other", "doctor", &["--department", "gen-med", "--practitioner", "dr-other"]);
    let nameless = s.add_user("dr.nameless", "doctor", &["--department", "cardio"]);
    let get = |token: &str, path: &str| s.request_as(token, "GET", path, None);

    // Their own patients, in whatever department: the VIP included.
    assert_eq!(get(&mehta, &format!("/Observation/{obs_vip}")).status, 200);
    assert_eq!(get(&mehta, &format!("/Observation/{obs_ward}")).status, 200);
    assert_eq!(get(&mehta, "/Observation?patient=Patient/vip").json()["total"], 1);
    // A colleague of the VIP's department without an appointment or encounter of their own:
    // the VIP is not there; a doctor whose account names no Practitioner has no patients of
    // their own.
    assert_eq!(get(&colleague, &format!("/Observation/{obs_vip}")).status, 404);
    assert_eq!(get(&colleague, &format!("/Observation/{obs_ward}")).status, 403);
    assert_eq!(get(&nameless, &format!("/Observation/{obs_ward}")).status, 403);

    // The account's Practitioner is checked when it is made.
    let data = s.data().to_str().unwrap().to_string();
    let out = s.vaidya(&["user", "add", "--data", &data, "--name", "clerk.x", "--role", "registration", "--practitioner", "dr-x"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("only for"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_privacy_officer_and_the_patient_see_who_accessed_the_record() {
    let s = Server::start();
    for p in ["p1", "p2"] {
        assert_eq!(s.put(&format!("/Patient/{p}"), &json!({"resourceType": "Patient", "id": p, "name": [{"family": "Iyer"}]})).status, 201);
    }
    let obs = observation(&s, "p1");
    let admin = s.make_token("admin");
    let officer = s.add_user("po.kavita", "privacy-officer", &[]);
    let clerk = s.add_user("reg.asha", "registration", &[]);
    let own = s.add_user("p.one", "patient", &["--patient", "p1"]);
    assert_eq!(s.request_as(&admin, "GET", &format!("/Observation/{obs}"), None).status, 403);
    assert_eq!(s.request_as(&clerk, "GET", "/Patient/p1", None).status, 200);
    let get = |token: &str, path: &str| s.request_as(token, "GET", path, None);

    let r = get(&officer, "/AuditEvent?patient=Patient/p1");
    assert_eq!(r.status, 200, "{}", r.body);
    let bundle = r.json();
    let events: Vec<&Value> = bundle["entry"].as_array().unwrap().iter().map(|e| &e["resource"]).collect();
    assert!(events.len() >= 3, "the create, the clerk's read and the administrator's refusal: {}", r.body);
    assert_eq!(bundle["total"].as_u64().unwrap() as usize, events.len());
    let by = |e: &Value| e["agent"][0]["name"].as_str().unwrap_or_default().to_string();
    assert_eq!(by(events[0]), "reg.asha", "newest first");
    assert!(events.iter().any(|e| by(e) == "admin" && e["outcome"] == "4"), "the refusal is shown: {}", r.body);
    assert!(events.iter().all(|e| e["resourceType"] == "AuditEvent"
        && e["entity"].as_array().unwrap().iter().any(|x| x["what"]["reference"] == "Patient/p1")));
    let r = get(&officer, "/AuditEvent?patient=p1&_count=1");
    assert_eq!(r.json()["entry"].as_array().unwrap().len(), 1);
    assert!(r.json()["total"].as_u64().unwrap() >= 4, "the total counts every event, including the officer's own look");

    // The patient sees the trail of their own record, not another's.
    let r = get(&own, "/AuditEvent?patient=Patient/p1");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("po.kavita"), "the privacy officer's looks are in the patient's view too");
    assert_eq!(get(&own, "/AuditEvent?patient=Patient/p2").status, 403);
    // Staff outside oversight, the administrator included, are refused.
    assert_eq!(get(&clerk, "/AuditEvent?patient=Patient/p1").status, 403);
    assert_eq!(get(&admin, "/AuditEvent?patient=Patient/p1").status, 403);
    // Bad queries: a clear 400, nothing read.
    for bad in ["/AuditEvent", "/AuditEvent?patient=Patient/p1&date=ge2020", "/AuditEvent?patient=Patient/p1&_count=5000", "/AuditEvent?patient=Patient/a%20b"] {
        let r = get(&officer, bad);
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert!(r.body.contains("OperationOutcome"), "{}", r.body);
    }
}
