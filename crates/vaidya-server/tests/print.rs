//! The printable report: a lab report taken through order, collection, results, verification
//! by a second person and release, then printed; what is refused (unreleased, unknown, invalid,
//! no token); and hostile text in any field printed as text, never as markup.

mod common;
use common::*;
use scraper::{ElementRef, Html, Selector};
use serde_json::{Value, json};
use vaidya_domain::schedule::{IST_OFFSET_MINUTES, from_utc_ms};

const HOSPITAL: &str = "St. Mary's <Hospital> & Research Centre";

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

fn as_user(s: &Server, token: &str, method: &str, path: &str, body: &Value) -> Resp {
    let auth = format!("Bearer {token}");
    raw_request(&agent(), method, &format!("{}{path}", s.base), Some(&body.to_string()), &[("Authorization", &auth), ("Content-Type", "application/fhir+json")])
}

/// `GET /print/...` with `token`, or with none.
fn print(s: &Server, token: Option<&str>, path: &str) -> Resp {
    let url = format!("{}/print{path}", s.base.trim_end_matches("/fhir"));
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    raw_request(&agent(), "GET", &url, None, &headers)
}

fn sel(s: &str) -> Selector {
    Selector::parse(s).unwrap_or_else(|e| panic!("selector {s}: {e:?}"))
}

fn text(e: ElementRef<'_>) -> String {
    e.text().collect::<String>().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The text of the one element matching `selector`.
fn one(doc: &Html, selector: &str) -> String {
    let found: Vec<ElementRef<'_>> = doc.select(&sel(selector)).collect();
    assert_eq!(found.len(), 1, "{selector}: {} matches in {}", found.len(), doc.html());
    text(found[0])
}

/// The results table's row for the test named `name`.
fn row<'a>(doc: &'a Html, name: &str) -> ElementRef<'a> {
    doc.select(&sel("table.results tbody tr"))
        .find(|r| r.select(&sel("td.test")).next().is_some_and(|t| text(t).contains(name)))
        .unwrap_or_else(|| panic!("no row for {name} in {}", doc.html()))
}

fn cell(r: ElementRef<'_>, class: &str) -> String {
    text(r.select(&sel(&format!("td.{class}"))).next().unwrap_or_else(|| panic!("no td.{class}")))
}

/// An instant as the hospital reads it: `27 Nov 2026, 13:05 IST`.
fn ist(instant: &str) -> String {
    let (ms, _) = vaidya_fhir::datetime::parse_date_range(instant).expect("an instant");
    let (d, t) = from_utc_ms(ms, IST_OFFSET_MINUTES).unwrap();
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!("{} {} {}, {t} IST", d.day(), months[usize::from(d.month()) - 1], d.year())
}

fn loinc(code: &str, display: &str) -> Value {
    json!({"coding": [{"system": "http://loinc.org", "code": code, "display": display}]})
}

fn interpretation(code: &str) -> Value {
    json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": code}]}])
}

fn qty(value: f64, unit: &str) -> Value {
    json!({"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit})
}

struct Flow {
    report_id: String,
    uhid: String,
    barcode: String,
}

/// A patient's order taken to a preliminary report with `results` (Observation bodies without
/// subject, basedOn or specimen), all entered by the admin.
fn order_and_results(s: &Server, patient: Value, report_text: &str, results: Vec<Value>) -> Flow {
    let created = s.post("/Patient", &patient);
    assert_eq!(created.status, 201, "{}", created.body);
    let patient = created.json();
    let pid = patient["id"].as_str().unwrap().to_string();
    let uhid = patient["identifier"].as_array().unwrap().iter().find(|i| i["system"] == "https://vaidya.dev/fhir/sid/uhid").unwrap()["value"]
        .as_str()
        .unwrap()
        .to_string();
    let doctor = s.post("/Practitioner", &json!({"resourceType": "Practitioner", "name": [{"family": "Sharma", "given": ["Anjali"], "prefix": ["Dr."]}]})).json();
    let order = s.post("/ServiceRequest", &json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order",
        "code": loinc("58410-2", "CBC panel"), "subject": {"reference": format!("Patient/{pid}")},
        "requester": {"reference": format!("Practitioner/{}", doctor["id"].as_str().unwrap())},
        "authoredOn": "2026-11-20T04:30:00Z"})).json();
    let sr = order["id"].as_str().unwrap().to_string();
    let specimen = s.post(&format!("/ServiceRequest/{sr}/$collect"), &json!({"resourceType": "Parameters"}));
    assert_eq!(specimen.status, 201, "{}", specimen.body);
    let specimen = specimen.json();
    let barcode = specimen["accessionIdentifier"]["value"].as_str().unwrap().to_string();
    let mut refs = vec![];
    for mut obs in results {
        obs["resourceType"] = json!("Observation");
        obs["status"] = json!("preliminary");
        obs["subject"] = json!({"reference": format!("Patient/{pid}")});
        obs["basedOn"] = json!([{"reference": format!("ServiceRequest/{sr}")}]);
        obs["specimen"] = json!({"reference": format!("Specimen/{}", specimen["id"].as_str().unwrap())});
        let r = s.post("/Observation", &obs);
        assert_eq!(r.status, 201, "{}", r.body);
        refs.push(json!({"reference": format!("Observation/{}", r.json()["id"].as_str().unwrap())}));
    }
    let report = s.post("/DiagnosticReport", &json!({"resourceType": "DiagnosticReport", "status": "preliminary",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "HM", "display": "Haematology"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}], "text": report_text},
        "subject": {"reference": format!("Patient/{pid}")}, "basedOn": [{"reference": format!("ServiceRequest/{sr}")}],
        "result": refs}));
    assert_eq!(report.status, 201, "{}", report.body);
    Flow { report_id: report.json()["id"].as_str().unwrap().to_string(), uhid, barcode }
}

fn verify_and_release(s: &Server, verifier: &str, dr: &str) -> Value {
    let empty = json!({"resourceType": "Parameters"});
    let r = as_user(s, verifier, "POST", &format!("/DiagnosticReport/{dr}/$verify"), &empty);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s.post(&format!("/DiagnosticReport/{dr}/$release"), &empty);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

fn start() -> (Server, String) {
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("vaidya.toml");
    std::fs::write(&config, format!("hospital_name = {}\ntimezone = \"Asia/Kolkata\"\n", toml_string(HOSPITAL))).unwrap();
    let s = Server::start_with(tempfile::tempdir().unwrap(), &["--config", config.to_str().unwrap()]);
    let data = s.data().to_str().unwrap().to_string();
    let out = s.vaidya(&["user", "add", "--data", &data, "--name", "verifier", "--role", "lab", "--department", "lab"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let verifier = s.make_token("verifier");
    (s, verifier)
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[test]
fn a_released_report_prints_with_everything_on_it() {
    let (s, verifier) = start();
    let patient = json!({"resourceType": "Patient", "name": [{"use": "official", "family": "Devi", "given": ["Sita"]}, {"use": "usual", "text": "सीता देवी"}],
        "gender": "female", "birthDate": "1975-08-02", "telecom": [{"system": "phone", "value": "+919810000002", "use": "mobile"}]});
    let results = vec![
        json!({"code": loinc("718-7", "Hemoglobin [Mass/volume] in Blood"), "valueQuantity": qty(17.2, "g/dL"),
               "referenceRange": [{"low": qty(12.0, "g/dL"), "high": qty(15.5, "g/dL")}], "interpretation": interpretation("H")}),
        json!({"code": loinc("6690-2", "Leukocytes [#/volume] in Blood"), "valueQuantity": qty(7.5, "10*3/uL"),
               "referenceRange": [{"low": qty(4.0, "10*3/uL"), "high": qty(11.0, "10*3/uL")}], "interpretation": interpretation("N")}),
        json!({"code": loinc("882-1", "ABO and Rh group"), "valueCodeableConcept": {"text": "B Rh(D) positive"},
               "referenceRange": [{"text": "Not applicable"}]}),
    ];
    let flow = order_and_results(&s, patient, "Complete blood count", results);
    let dr = flow.report_id.as_str();

    // Not released yet: 409, as a page that says so; also after verification alone.
    let r = print(&s, Some(&s.token), &format!("/DiagnosticReport/{dr}"));
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(r.body.contains("not been released"), "{}", r.body);

    // Verified by a second person and released: it prints.
    let released = verify_and_release(&s, &verifier, dr);
    let r = print(&s, Some(&s.token), &format!("/DiagnosticReport/{dr}"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(r.header("content-security-policy").is_some_and(|c| c.contains("default-src 'none'")));
    let doc = Html::parse_document(&r.body);

    assert_eq!(one(&doc, ".letterhead .hospital"), HOSPITAL);
    assert!(one(&doc, "title").contains(&flow.uhid));
    assert_eq!(one(&doc, "h1#report-title"), "Complete blood count");
    assert!(one(&doc, ".doc-kind").contains("Laboratory report"));
    // Patient.
    assert_eq!(one(&doc, "#patient .patient-name"), "Sita Devi (सीता देवी)");
    assert_eq!(one(&doc, "#patient .uhid"), flow.uhid);
    let (today, _) = from_utc_ms(vaidya_fhir::datetime::parse_date_range(released["issued"].as_str().unwrap()).unwrap().0, IST_OFFSET_MINUTES).unwrap();
    let age = vaidya_domain::age::age_on("1975-08-02".parse().unwrap(), today).unwrap();
    assert_eq!(one(&doc, "#patient .age-sex"), format!("{age} / Female"));
    assert!(age.to_string().ends_with("years"));
    assert_eq!(one(&doc, "#patient .mobile"), "+919810000002");
    // Order and sample.
    assert_eq!(one(&doc, "#order .requester"), "Dr. Anjali Sharma");
    assert_eq!(one(&doc, "#order .ordered"), "20 Nov 2026, 10:00 IST");
    assert_eq!(one(&doc, "#order .barcode"), flow.barcode);
    assert_eq!(one(&doc, "#order .report-status"), "Final");
    assert_eq!(one(&doc, "#order .issued"), ist(released["issued"].as_str().unwrap()));
    assert!(one(&doc, "#order .issued").ends_with(" IST"));
    assert!(doc.select(&sel("#status-banner")).next().is_none());

    // Results: value with unit, range, flag; the high one stands out.
    assert_eq!(doc.select(&sel("table.results tbody tr")).count(), 3);
    let hb = row(&doc, "Hemoglobin");
    assert_eq!(cell(hb, "value"), "17.2 g/dL");
    assert_eq!(cell(hb, "range"), "12.0–15.5 g/dL");
    assert_eq!(cell(hb, "flag-cell"), "High");
    assert_eq!(cell(hb, "status"), "Final");
    assert!(hb.value().has_class("abnormal", scraper::CaseSensitivity::CaseSensitive));
    assert!(hb.select(&sel("td.value strong")).next().is_some(), "an abnormal value is bold");
    assert!(hb.select(&sel("td.flag-cell strong.flag")).next().is_some(), "the flag is bold");
    let wbc = row(&doc, "Leukocytes");
    assert_eq!(cell(wbc, "value"), "7.5 10*3/uL");
    assert_eq!(cell(wbc, "range"), "4.0–11.0 10*3/uL");
    assert_eq!(cell(wbc, "flag-cell"), "", "normal results carry no flag");
    assert!(!wbc.value().has_class("abnormal", scraper::CaseSensitivity::CaseSensitive));
    let abo = row(&doc, "ABO and Rh group");
    assert_eq!(cell(abo, "value"), "B Rh(D) positive");
    assert_eq!(cell(abo, "range"), "Not applicable");

    // Who entered and who verified; the footer says when it was printed and by whom.
    assert_eq!(one(&doc, ".signoff .entered-by"), "integration");
    assert_eq!(one(&doc, ".signoff .verified-by"), "verifier");
    let printed = one(&doc, "footer .printed");
    assert!(printed.starts_with("Printed ") && printed.ends_with(" IST by integration"), "{printed}");
    assert!(one(&doc, "footer .report-ref").contains(dr));

    // Print CSS inline, nothing fetched from elsewhere, no scripts.
    let style = one(&doc, "style");
    assert!(style.contains("@page") && style.contains("size: A4") && style.contains("@media print"), "{style}");
    assert!(doc.select(&sel("script, link, img, iframe, nav")).next().is_none());
    assert!(!r.body.contains("http://") && !r.body.contains("https://"), "no external references");

    // Another user prints it too (same authentication as /fhir).
    let r = print(&s, Some(&verifier), &format!("/DiagnosticReport/{dr}"));
    assert_eq!(r.status, 200);
    assert!(Html::parse_document(&r.body).select(&sel("footer .printed")).next().is_some_and(|p| text(p).ends_with("by verifier")));

    // An amended report says so, visibly.
    let mut amended = s.get(&format!("/DiagnosticReport/{dr}")).json();
    amended["status"] = json!("amended");
    amended["conclusion"] = json!("Haemoglobin above range; repeat in 4 weeks.");
    assert_eq!(s.put(&format!("/DiagnosticReport/{dr}"), &amended).status, 200);
    let r = print(&s, Some(&s.token), &format!("/DiagnosticReport/{dr}"));
    assert_eq!(r.status, 200, "{}", r.body);
    let doc = Html::parse_document(&r.body);
    assert!(one(&doc, "#status-banner").starts_with("Amended report"));
    assert_eq!(one(&doc, "#order .report-status"), "Amended");
    assert!(one(&doc, "#conclusion").contains("Haemoglobin above range; repeat in 4 weeks."));
}

#[test]
fn refusals_unreleased_unknown_invalid_and_without_a_token() {
    let (s, _) = start();
    let flow = order_and_results(
        &s,
        json!({"resourceType": "Patient", "name": [{"family": "Kumar", "given": ["Ramesh"]}], "gender": "male", "birthDate": "1968-03-14"}),
        "Haemoglobin",
        vec![json!({"code": loinc("718-7", "Hemoglobin"), "valueQuantity": qty(13.0, "g/dL")})],
    );
    let path = format!("/DiagnosticReport/{}", flow.report_id);
    let r = print(&s, None, &path);
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(print(&s, Some("vdy_nope_nope"), &path).status, 401);
    let r = print(&s, Some(&s.token), &path);
    assert_eq!(r.status, 409);
    let doc = Html::parse_document(&r.body);
    assert_eq!(one(&doc, "h1"), "Not released");
    assert!(one(&doc, ".message").contains("preliminary"));
    assert!(doc.select(&sel("table.results")).next().is_none(), "nothing of the report is shown");
    assert!(!r.body.contains("Ramesh"));

    let r = print(&s, Some(&s.token), "/DiagnosticReport/no-such-report");
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(print(&s, Some(&s.token), "/DiagnosticReport/not_a_valid_id").status, 400);
    assert_eq!(print(&s, Some(&s.token), "/DiagnosticReport/x/y").status, 404);

    // A deleted report is gone.
    assert_eq!(s.delete(&path).status, 204);
    assert_eq!(print(&s, Some(&s.token), &path).status, 410);
}

#[test]
fn hostile_text_is_printed_as_text() {
    let (s, verifier) = start();
    let name = "<script>alert('name')</script>";
    let patient = json!({"resourceType": "Patient", "name": [{"family": "O'Brien & <b>Sons</b>", "given": [name]}], "gender": "male", "birthDate": "2026-11-01",
        "telecom": [{"system": "phone", "value": "\"><script>alert(1)</script>", "use": "mobile"}]});
    let results = vec![json!({"code": {"text": "<img src=x onerror=alert('test')>"}, "valueString": "</td></tr></table><script>alert('value')</script>",
        "referenceRange": [{"text": "<style>body{display:none}</style>"}], "note": [{"text": "<a href=\"javascript:alert(1)\">x</a>"}],
        "interpretation": [{"text": "<b onmouseover=alert(1)>odd</b>"}]})];
    let flow = order_and_results(&s, patient, "<script>alert('title')</script>", results);
    let dr = flow.report_id;
    let released = verify_and_release(&s, &verifier, &dr);
    let mut report = released.clone();
    report["status"] = json!("amended");
    report["conclusion"] = json!("<iframe src=\"https://evil.example\"></iframe>");
    assert_eq!(s.put(&format!("/DiagnosticReport/{dr}"), &report).status, 200);

    let r = print(&s, Some(&s.token), &format!("/DiagnosticReport/{dr}"));
    assert_eq!(r.status, 200, "{}", r.body);
    let lower = r.body.to_lowercase();
    for tag in ["<script", "<img", "<iframe", "<a href", "<b onmouseover", "<b>sons", "</td></tr></table><"] {
        assert!(!lower.contains(tag), "{tag} came through unescaped");
    }
    assert_eq!(lower.matches("<style").count(), 1, "only the page's own style element");
    let doc = Html::parse_document(&r.body);
    assert!(doc.select(&sel("script, img, iframe, a")).next().is_none());
    // The hostile text is there, as text.
    assert_eq!(one(&doc, "#patient .patient-name"), format!("{name} O'Brien & <b>Sons</b>"));
    assert_eq!(one(&doc, "#patient .mobile"), "\"><script>alert(1)</script>");
    assert!(one(&doc, "#patient .age-sex").ends_with(" / Male"));
    assert_eq!(one(&doc, "h1#report-title"), "<script>alert('title')</script>");
    let hostile = row(&doc, "<img src=x onerror=alert('test')>");
    assert_eq!(cell(hostile, "value"), "</td></tr></table><script>alert('value')</script>");
    assert_eq!(cell(hostile, "range"), "<style>body{display:none}</style>");
    assert_eq!(cell(hostile, "flag-cell"), "<b onmouseover=alert(1)>odd</b>");
    assert!(cell(hostile, "test").contains("<a href=\"javascript:alert(1)\">x</a>"));
    assert!(one(&doc, "#conclusion").contains("<iframe src=\"https://evil.example\"></iframe>"));
    assert_eq!(one(&doc, ".letterhead .hospital"), HOSPITAL);
}
