//! FHIR search end to end: every parameter type, modifiers, prefixes, chaining, includes,
//! sorting and paging.

mod common;
use common::*;
use serde_json::{Value, json};

fn ids(bundle: &Value, rtype: &str) -> Vec<String> {
    let mut v: Vec<String> = bundle["entry"]
        .as_array()
        .map(|a| a.iter().filter(|e| e["resource"]["resourceType"] == rtype).map(|e| e["resource"]["id"].as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn put(s: &Server, body: Value) {
    let path = format!("/{}/{}", body["resourceType"].as_str().unwrap(), body["id"].as_str().unwrap());
    let r = s.put(&path, &body);
    assert!(r.status == 201 || r.status == 200, "{path}: {}", r.body);
}

fn fixture() -> Server {
    let s = Server::start();
    put(&s, json!({"resourceType": "Organization", "id": "aiims", "name": "AIIMS New Delhi"}));
    put(&s, json!({"resourceType": "Patient", "id": "p1", "active": true, "gender": "female", "birthDate": "1980-05-17",
        "identifier": [{"system": "https://vaidya.example/uhid", "value": "UH0001"}],
        "name": [{"family": "Sharma", "given": ["Asha"]}], "managingOrganization": {"reference": "Organization/aiims"},
        "telecom": [{"system": "phone", "value": "9800000001"}]}));
    put(&s, json!({"resourceType": "Patient", "id": "p2", "gender": "male", "birthDate": "1992",
        "identifier": [{"system": "https://vaidya.example/uhid", "value": "UH0002"}],
        "name": [{"family": "Müller", "given": ["Ravi"]}]}));
    put(&s, json!({"resourceType": "Patient", "id": "p3", "gender": "female", "birthDate": "2001-01-01",
        "name": [{"family": "शर्मा", "given": ["सीता"]}]}));
    for (id, pid, value, date) in [("o1", "p1", 13.2, "2024-01-10"), ("o2", "p1", 9.8, "2024-03-05T10:00:00+05:30"), ("o3", "p2", 15.0, "2023-12-31")] {
        put(&s, json!({"resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "718-7", "display": "Hemoglobin"}], "text": "Haemoglobin"},
            "subject": {"reference": format!("Patient/{pid}")}, "effectiveDateTime": date,
            "valueQuantity": {"value": value, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"}}));
    }
    put(&s, json!({"resourceType": "Observation", "id": "o4", "status": "preliminary",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]}, "subject": {"reference": "Patient/p3"}}));
    s
}

#[test]
fn every_parameter_type_and_modifier() {
    let s = fixture();
    let q = |query: &str, rtype: &str| {
        let r = s.get(&format!("/{rtype}?{query}"));
        assert_eq!(r.status, 200, "{query}: {}", r.body);
        ids(&r.json(), rtype)
    };
    // string: starts-with, case and accent insensitive; :exact; :contains; Devanagari
    assert_eq!(q("name=shar", "Patient"), vec!["p1"]);
    assert_eq!(q("family=muller", "Patient"), vec!["p2"]);
    assert_eq!(q("family:exact=Müller", "Patient"), vec!["p2"]);
    assert_eq!(q("family:exact=muller", "Patient"), Vec::<String>::new());
    assert_eq!(q("name:contains=arm", "Patient"), vec!["p1"]);
    assert_eq!(q("name=शर्", "Patient"), vec!["p3"]);
    // token: code, system|code, |code-less, :not, boolean, ContactPoint
    assert_eq!(q("identifier=UH0002", "Patient"), vec!["p2"]);
    assert_eq!(q("identifier=https://vaidya.example/uhid|UH0001", "Patient"), vec!["p1"]);
    assert_eq!(q("identifier=http://other|UH0001", "Patient"), Vec::<String>::new());
    assert_eq!(q("gender:not=female", "Patient"), vec!["p2"]);
    assert_eq!(q("gender=female,male", "Patient"), vec!["p1", "p2", "p3"]);
    assert_eq!(q("active=true", "Patient"), vec!["p1"]);
    assert_eq!(q("phone=9800000001", "Patient"), vec!["p1"]);
    assert_eq!(q("code=http://loinc.org|718-7", "Observation"), vec!["o1", "o2", "o3"]);
    assert_eq!(q("code:text=haemo", "Observation"), vec!["o1", "o2", "o3"]);
    // date with prefixes and precision
    assert_eq!(q("birthdate=1992", "Patient"), vec!["p2"]);
    assert_eq!(q("birthdate=lt1990-01-01", "Patient"), vec!["p1"]);
    assert_eq!(q("birthdate=ge1992-06-01", "Patient"), vec!["p2", "p3"]);
    assert_eq!(q("date=2024", "Observation"), vec!["o1", "o2"]);
    assert_eq!(q("date=ge2024-02-01&date=le2024-12-31", "Observation"), vec!["o2"]);
    // quantity and number-like comparisons
    assert_eq!(q("value-quantity=gt13", "Observation"), vec!["o1", "o3"]);
    assert_eq!(q("value-quantity=13.2|http://unitsofmeasure.org|g/dL", "Observation"), vec!["o1"]);
    assert_eq!(q("value-quantity=le10", "Observation"), vec!["o2"]);
    // reference: Type/id, bare id, :Type
    assert_eq!(q("subject=Patient/p1", "Observation"), vec!["o1", "o2"]);
    assert_eq!(q("patient=p2", "Observation"), vec!["o3"]);
    assert_eq!(q("subject:Patient=p3", "Observation"), vec!["o4"]);
    // :missing
    assert_eq!(q("value-quantity:missing=true", "Observation"), vec!["o4"]);
    assert_eq!(q("birthdate:missing=false", "Patient"), vec!["p1", "p2", "p3"]);
    // _id and _lastUpdated
    assert_eq!(q("_id=p1,p3", "Patient"), vec!["p1", "p3"]);
    assert_eq!(q("_lastUpdated=gt2000-01-01", "Patient").len(), 3);
    assert_eq!(q("_lastUpdated=lt2000-01-01", "Patient").len(), 0);
    // status token on Observation
    assert_eq!(q("status=preliminary", "Observation"), vec!["o4"]);
}

#[test]
fn chains_includes_sort_paging_and_count() {
    let s = fixture();
    // chained one level
    let b = s.get("/Observation?subject.identifier=https://vaidya.example/uhid|UH0001").json();
    assert_eq!(ids(&b, "Observation"), vec!["o1", "o2"]);
    let b = s.get("/Observation?subject:Patient.name=müller").json();
    assert_eq!(ids(&b, "Observation"), vec!["o3"]);
    // _include and _revinclude
    let b = s.get("/Observation?code=718-7&_include=Observation:subject").json();
    assert_eq!(ids(&b, "Patient"), vec!["p1", "p2"]);
    assert!(b["entry"].as_array().unwrap().iter().any(|e| e["search"]["mode"] == "include"));
    let b = s.get("/Patient?_id=p1&_revinclude=Observation:subject").json();
    assert_eq!(ids(&b, "Observation"), vec!["o1", "o2"]);
    let b = s.get("/Patient?_id=p1&_include=Patient:organization").json();
    assert_eq!(ids(&b, "Organization"), vec!["aiims"]);
    // _sort
    let b = s.get("/Observation?code=718-7&_sort=-date").json();
    let order: Vec<&str> = b["entry"].as_array().unwrap().iter().map(|e| e["resource"]["id"].as_str().unwrap()).collect();
    assert_eq!(order, vec!["o2", "o1", "o3"]);
    let b = s.get("/Patient?_sort=birthdate").json();
    let order: Vec<&str> = b["entry"].as_array().unwrap().iter().map(|e| e["resource"]["id"].as_str().unwrap()).collect();
    assert_eq!(order, vec!["p1", "p2", "p3"]);
    // paging with links
    let b = s.get("/Observation?_count=2&_sort=_id").json();
    assert_eq!(b["total"], 4);
    assert_eq!(b["entry"].as_array().unwrap().len(), 2);
    let next = b["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").unwrap()["url"].as_str().unwrap().to_string();
    let b2 = s.get(&next).json();
    let page2: Vec<&str> = b2["entry"].as_array().unwrap().iter().map(|e| e["resource"]["id"].as_str().unwrap()).collect();
    assert_eq!(page2, vec!["o3", "o4"]);
    assert!(b2["link"].as_array().unwrap().iter().all(|l| l["relation"] != "next"));
    // _summary=count
    let b = s.get("/Observation?_summary=count").json();
    assert_eq!(b["total"], 4);
    assert!(b.get("entry").is_none());
    // POST _search
    let r = s.request("POST", "/Patient/_search", Some("gender=male"), &[("Content-Type", "application/x-www-form-urlencoded")]);
    assert_eq!(ids(&r.json(), "Patient"), vec!["p2"]);
}

#[test]
fn unknown_parameters_are_refused_or_ignored_as_prefer_says() {
    let s = fixture();
    let r = s.get("/Patient?shoe-size=9");
    assert_eq!(r.status, 400);
    assert!(r.assert_outcome().to_string().contains("shoe-size"));
    let r = s.request("GET", "/Patient?shoe-size=9&gender=male", None, &[("Prefer", "handling=lenient")]);
    assert_eq!(r.status, 200, "{}", r.body);
    let b = r.json();
    assert_eq!(ids(&b, "Patient"), vec!["p2"]);
    assert!(b.to_string().contains("shoe-size"), "ignored parameter not reported");
}

#[test]
fn deleted_resources_leave_search_results() {
    let s = fixture();
    assert_eq!(s.delete("/Observation/o1").status, 204);
    let b = s.get("/Observation?subject=Patient/p1").json();
    assert_eq!(ids(&b, "Observation"), vec!["o2"]);
    // an update re-indexes: the old value no longer matches, the new one does
    let mut o2 = s.get("/Observation/o2").json();
    o2["status"] = json!("amended");
    assert_eq!(s.put("/Observation/o2", &o2).status, 200);
    assert!(ids(&s.get("/Observation?status=final").json(), "Observation").iter().all(|i| i != "o2"));
    assert_eq!(ids(&s.get("/Observation?status=amended").json(), "Observation"), vec!["o2"]);
}
