//! End-to-end tests of the FHIR REST API against the real binary.

mod common;
use common::*;
use serde_json::{Value, json};

fn patient(family: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "https://vaidya.example/uhid", "value": format!("UH-{family}")}],
        "name": [{"family": family, "given": ["Asha"]}],
        "gender": "female",
        "birthDate": "1980-05-17",
        "telecom": [{"system": "phone", "value": "+919800000001"}]
    })
}

#[test]
fn requests_without_a_valid_token_are_refused() {
    let s = Server::start();
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    for auth in [None, Some("Bearer nonsense"), Some("Bearer vdy_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), Some("Basic YWRtaW46eA==")] {
        let headers: Vec<(&str, &str)> = auth.map(|a| vec![("Authorization", a)]).unwrap_or_default();
        let r = raw_request(&agent, "GET", &format!("{}/Patient", s.base), None, &headers);
        assert_eq!(r.status, 401, "{auth:?}");
        r.assert_outcome();
        assert!(r.header("www-authenticate").is_some());
    }
    // The CapabilityStatement is public, as FHIR clients fetch it before they authenticate.
    let r = raw_request(&agent, "GET", &format!("{}/metadata", s.base), None, &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["resourceType"], "CapabilityStatement");
    // A valid token works, and stops working once revoked.
    assert_eq!(s.get("/Patient").status, 200);
    let id = s.token.split('_').nth(1).unwrap();
    let out = s.vaidya(&["token", "--data", s.data().to_str().unwrap(), "--revoke", id]);
    assert!(out.status.success());
    assert_eq!(s.get("/Patient").status, 401);
}

#[test]
fn first_start_prints_a_one_time_admin_password_once() {
    let mut s = Server::start();
    assert!(s.admin_password.as_ref().is_some_and(|p| p.len() >= 16));
    s.stop();
    s.admin_password = None;
    s.spawn();
    assert!(s.admin_password.is_none(), "password shown again on restart");
}

#[test]
fn create_read_update_vread_delete_history() {
    let s = Server::start();
    let r = s.post("/Patient", &patient("Sharma"));
    assert_eq!(r.status, 201, "{}", r.body);
    let created = r.json();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["meta"]["versionId"], "1");
    assert!(r.header("location").unwrap().ends_with(&format!("/Patient/{id}/_history/1")));
    assert_eq!(r.header("etag"), Some("W/\"1\""));

    let r = s.get(&format!("/Patient/{id}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["name"][0]["family"], "Sharma");
    assert!(r.header("last-modified").is_some());

    let mut updated = r.json();
    updated["name"][0]["family"] = json!("Verma");
    let r = s.request("PUT", &format!("/Patient/{id}"), Some(&updated.to_string()), &[("If-Match", "W/\"1\""), ("Content-Type", "application/fhir+json")]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["meta"]["versionId"], "2");
    // A stale If-Match is refused and changes nothing.
    let before = s.ledger_size();
    let r = s.request("PUT", &format!("/Patient/{id}"), Some(&updated.to_string()), &[("If-Match", "W/\"1\""), ("Content-Type", "application/fhir+json")]);
    assert_eq!(r.status, 412);
    r.assert_outcome();
    assert_eq!(s.ledger_size(), before);

    let r = s.get(&format!("/Patient/{id}/_history/1"));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["name"][0]["family"], "Sharma");

    assert_eq!(s.delete(&format!("/Patient/{id}")).status, 204);
    assert_eq!(s.get(&format!("/Patient/{id}")).status, 410);
    assert_eq!(s.get("/Patient/does-not-exist").status, 404);

    let h = s.get(&format!("/Patient/{id}/_history")).json();
    assert_eq!(h["type"], "history");
    assert_eq!(h["total"], 3);
    let methods: Vec<&str> = h["entry"].as_array().unwrap().iter().map(|e| e["request"]["method"].as_str().unwrap()).collect();
    assert_eq!(methods, vec!["DELETE", "PUT", "POST"]);
    let th = s.get("/Patient/_history").json();
    assert_eq!(th["total"], 3);
    assert!(s.get("/_history").json()["total"].as_u64().unwrap() >= 3);
}

#[test]
fn update_can_create_with_a_client_id_and_needs_matching_ids() {
    let s = Server::start();
    let mut p = patient("Iyer");
    p["id"] = json!("uhid-123");
    let r = s.put("/Patient/uhid-123", &p);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(s.get("/Patient/uhid-123").status, 200);
    assert_eq!(s.put("/Patient/other", &p).status, 400);
    let mut no_id = patient("Iyer");
    no_id.as_object_mut().unwrap().remove("id");
    assert_eq!(s.put("/Patient/uhid-123", &no_id).status, 400);
}

#[test]
fn conditional_create_does_not_duplicate() {
    let s = Server::start();
    let cond = [("If-None-Exist", "identifier=https://vaidya.example/uhid|UH-Rao"), ("Content-Type", "application/fhir+json")];
    let body = patient("Rao").to_string();
    let first = s.request("POST", "/Patient", Some(&body), &cond);
    assert_eq!(first.status, 201, "{}", first.body);
    let second = s.request("POST", "/Patient", Some(&body), &cond);
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(first.json()["id"], second.json()["id"]);
    assert_eq!(s.get("/Patient?identifier=UH-Rao").json()["total"], 1);
}

#[test]
fn invalid_resources_are_refused_with_the_element_named_and_nothing_written() {
    let s = Server::start();
    let before = s.ledger_size();
    let cases: Vec<(Value, &str)> = vec![
        (json!({"resourceType": "Patient", "birthDate": "1980-13-45"}), "birthDate"),
        (json!({"resourceType": "Patient", "gender": "unknown-gender"}), "gender"),
        (json!({"resourceType": "Patient", "foo": 1}), "foo"),
        (json!({"resourceType": "Patient", "active": "yes"}), "active"),
        (json!({"resourceType": "Observation", "code": {"text": "x"}}), "status"),
    ];
    for (body, element) in cases {
        let rtype = body["resourceType"].as_str().unwrap().to_string();
        let r = s.post(&format!("/{rtype}"), &body);
        assert!(r.status == 400 || r.status == 422, "{body}: {} {}", r.status, r.body);
        let oo = r.assert_outcome();
        assert!(oo.to_string().contains(element), "{element} not named in {oo}");
    }
    assert_eq!(s.ledger_size(), before);
}

#[test]
fn bad_input_of_every_kind_gets_an_outcome_and_changes_nothing() {
    let s = Server::start();
    s.post("/Patient", &patient("Base"));
    let before = s.ledger_size();
    let json_ct = ("Content-Type", "application/fhir+json");
    // (method, path, body, headers)
    type Case<'a> = (&'a str, &'a str, Option<String>, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case> = vec![
        ("POST", "/Patient", Some("{not json".into()), vec![json_ct]),
        ("POST", "/Patient", Some("[1,2,3]".into()), vec![json_ct]),
        ("POST", "/Patient", Some("".into()), vec![json_ct]),
        ("POST", "/Patient", Some(r#"{"resourceType":"Observation","status":"final","code":{"text":"x"}}"#.into()), vec![json_ct]),
        ("POST", "/Unicorn", Some(r#"{"resourceType":"Unicorn"}"#.into()), vec![json_ct]),
        ("POST", "/Patient", Some(r#"{"resourceType":"Patient"}"#.into()), vec![("Content-Type", "application/xml")]),
        ("GET", "/Patient?_count=100000", None, vec![]),
        ("GET", "/Patient?nonsense=1", None, vec![]),
        ("GET", "/Patient?birthdate=notadate", None, vec![]),
        ("GET", "/Patient/a%20b", None, vec![]),
        ("GET", "/Patient?_format=xml", None, vec![]),
        ("POST", "", Some(r#"{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:missing"}},"request":{"method":"POST","url":"Observation"}}]}"#.into()), vec![json_ct]),
        ("POST", "", Some(r#"{"resourceType":"Bundle","type":"collection"}"#.into()), vec![json_ct]),
        ("DELETE", "/Patient", None, vec![]),
    ];
    for (method, path, body, headers) in cases {
        let r = s.request(method, path, body.as_deref(), &headers);
        assert!((400..500).contains(&r.status), "{method} {path}: {} {}", r.status, &r.body[..r.body.len().min(300)]);
        r.assert_outcome();
    }
    // An oversized body is refused from its Content-Length alone. (Sent by hand: the server
    // answers before reading the body, and an HTTP client still writing it would see the
    // connection close instead of the answer.)
    let (status, body) = oversized_post(&s, 17 * 1024 * 1024);
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("OperationOutcome") && body.contains("size limit"), "{body}");

    // Hostile strings in search values are data, not SQL or markup.
    for v in ["' OR 1=1 --", "\"; DROP TABLE resource; --", "<script>alert(1)</script>", "%00", "\u{202e}"] {
        let path = format!("/Patient?name={}", form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>());
        let r = s.get(&path);
        assert_eq!(r.status, 200, "{v}: {}", r.body);
        assert_eq!(r.json()["total"], 0, "{v}");
    }
    assert_eq!(s.ledger_size(), before);
    assert_eq!(s.get("/Patient").json()["total"], 1);
}

/// POST a body of `len` bytes announced by Content-Length, sending only the head, and return
/// the status and body of the answer.
fn oversized_post(s: &Server, len: usize) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = s.base.trim_start_matches("http://").trim_end_matches("/fhir").to_string();
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    write!(
        conn,
        "POST /fhir/Patient HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/fhir+json\r\nContent-Length: {len}\r\n\r\n",
        s.token
    )
    .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the connection closes or the announced answer body has arrived.
    loop {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&answer);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let want = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap()));
            if want.is_some_and(|w| body.len() >= w) {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

#[test]
fn transaction_resolves_references_and_is_all_or_nothing() {
    let s = Server::start();
    let bundle = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:aaaaaaaa-0000-0000-0000-000000000001", "resource": patient("Gupta"), "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:aaaaaaaa-0000-0000-0000-000000000002",
             "resource": {"resourceType": "Observation", "status": "final",
                          "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
                          "subject": {"reference": "urn:uuid:aaaaaaaa-0000-0000-0000-000000000001"},
                          "valueQuantity": {"value": 13.2, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"}},
             "request": {"method": "POST", "url": "Observation"}}
        ]
    });
    let r = s.post("", &bundle);
    assert_eq!(r.status, 200, "{}", r.body);
    let out = r.json();
    assert_eq!(out["type"], "transaction-response");
    let loc = out["entry"][0]["response"]["location"].as_str().unwrap();
    let pid = loc.split("/Patient/").nth(1).unwrap().split('/').next().unwrap();
    let obs = s.get(&format!("/Observation?subject=Patient/{pid}")).json();
    assert_eq!(obs["total"], 1);
    assert_eq!(obs["entry"][0]["resource"]["subject"]["reference"], format!("Patient/{pid}"));

    // One bad entry: nothing of the Bundle is written.
    let before = s.ledger_size();
    let mut bad = bundle.clone();
    bad["entry"][1]["resource"]["status"] = json!("not-a-status");
    let r = s.post("", &bad);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("entry[1]"), "{}", r.body);
    assert_eq!(s.ledger_size(), before);
}

#[test]
fn batch_entries_succeed_or_fail_alone() {
    let s = Server::start();
    let bundle = json!({
        "resourceType": "Bundle", "type": "batch",
        "entry": [
            {"resource": patient("Nair"), "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Patient", "gender": "nope"}, "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "GET", "url": "Patient/missing"}}
        ]
    });
    let r = s.post("", &bundle);
    assert_eq!(r.status, 200, "{}", r.body);
    let out = r.json();
    assert_eq!(out["type"], "batch-response");
    assert!(out["entry"][0]["response"]["status"].as_str().unwrap().starts_with("201"));
    assert!(out["entry"][1]["response"]["status"].as_str().unwrap().starts_with("400"));
    assert!(out["entry"][2]["response"]["status"].as_str().unwrap().starts_with("404"));
    assert_eq!(s.get("/Patient").json()["total"], 1);
}
