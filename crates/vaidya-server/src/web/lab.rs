//! The laboratory: the worklist by status (to collect, to enter, to verify, to release,
//! released), sample collection with a barcode (typed, or scanned into the field, which a
//! scanner does by typing), result entry with reference ranges and the flags they give,
//! verification by a second person, release, and the printable report.
//!
//! Through the FHIR API as the signed-in technician: `ServiceRequest/{id}/$collect`, a
//! transaction Bundle of the results (Observations) and their DiagnosticReport (all or
//! nothing), `DiagnosticReport/{id}/$verify` (refused to whoever entered a result) and
//! `$release`; the printed report is `/print/DiagnosticReport/{id}`, called in-process.

use super::fhir_call::{Fhir, Screen, entries, fhir_id, uhid_of};
use super::i18n::Key;
use super::registration::Submitted;
use super::{Ctx, csrf_ok, form_fields, render, signed_in, to_login};
use crate::app::AppState;
use crate::auth::Peer;
use crate::print::format::{self as fmt, Zone};
use askama::Template;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Orders on the worklist at most (oldest first).
const MAX_ORDERS: usize = 100;
/// Result rows on the entry form.
pub const RESULT_ROWS: usize = 6;
const UCUM: &str = "http://unitsofmeasure.org";

/// One line of the worklist.
pub struct Work {
    pub request: String,
    pub report: String,
    pub test: String,
    pub patient: String,
    pub uhid: String,
    pub when: String,
    pub barcode: String,
}

#[derive(Template)]
#[template(path = "web/lab.html")]
struct WorklistPage<'a> {
    ctx: &'a Ctx,
    collect: Vec<Work>,
    enter: Vec<Work>,
    verify: Vec<Work>,
    release: Vec<Work>,
    released: Vec<Work>,
    error: Option<String>,
    notice: Option<String>,
}

struct Lab<'a>(Screen<'a>);

impl<'a> std::ops::Deref for Lab<'a> {
    type Target = Screen<'a>;
    fn deref(&self) -> &Screen<'a> {
        &self.0
    }
}

impl Lab<'_> {
    async fn worklist(&self, status: StatusCode, error: Option<String>, notice: Option<String>) -> Response {
        let empty = |error| WorklistPage { ctx: self.ctx, collect: vec![], enter: vec![], verify: vec![], release: vec![], released: vec![], error, notice: None };
        match self.read_worklist().await {
            Ok(mut page) => {
                page.error = error;
                page.notice = notice;
                render(self.app, self.ctx, status, &page)
            }
            Err((st, message)) => render(self.app, self.ctx, st, &empty(Some(message))),
        }
    }

    async fn read_worklist(&self) -> Result<WorklistPage<'_>, (StatusCode, String)> {
        let zone = Zone::from_config(&self.app.config.timezone);
        let orders = self.get(&format!("/ServiceRequest?status=active&_include=ServiceRequest:subject&_sort=authored&_count={MAX_ORDERS}")).await?;
        let patients: HashMap<String, &Value> =
            entries(&orders).filter(|r| r["resourceType"] == "Patient").filter_map(|p| Some((format!("Patient/{}", p["id"].as_str()?), p))).collect();
        let requests: Vec<&Value> = entries(&orders).filter(|r| r["resourceType"] == "ServiceRequest").collect();
        let refs: Vec<String> = requests.iter().filter_map(|r| r["id"].as_str()).map(|id| format!("ServiceRequest/{id}")).collect();
        let (mut specimens, mut reports): (HashMap<String, String>, HashMap<String, &Value>) = (HashMap::new(), HashMap::new());
        let (found_specimens, found_reports);
        if refs.is_empty() {
            (found_specimens, found_reports) = (Value::Null, Value::Null);
        } else {
            // R4 has no Specimen search by request: the patients' specimens, matched below.
            let mut subjects: Vec<&str> = requests.iter().filter_map(|r| r["subject"]["reference"].as_str()).collect();
            subjects.sort_unstable();
            subjects.dedup();
            found_specimens = self.get(&format!("/Specimen?patient={}&_sort=-collected&_count={}", subjects.join(","), MAX_ORDERS * 5)).await?;
            found_reports = self.get(&format!("/DiagnosticReport?based-on={}&_count={}", refs.join(","), MAX_ORDERS * 2)).await?;
        }
        for sp in entries(&found_specimens) {
            let barcode = sp["accessionIdentifier"]["value"].as_str().unwrap_or_default().to_string();
            for r in sp["request"].as_array().into_iter().flatten().filter_map(|r| r["reference"].as_str()) {
                specimens.insert(r.to_string(), barcode.clone());
            }
        }
        for dr in entries(&found_reports) {
            for r in dr["basedOn"].as_array().into_iter().flatten().filter_map(|r| r["reference"].as_str()) {
                reports.insert(r.to_string(), dr);
            }
        }
        let mut page = WorklistPage { ctx: self.ctx, collect: vec![], enter: vec![], verify: vec![], release: vec![], released: vec![], error: None, notice: None };
        let mut seen = HashSet::new();
        for r in requests {
            let Some(id) = r["id"].as_str() else { continue };
            if !seen.insert(id.to_string()) {
                continue;
            }
            let key = format!("ServiceRequest/{id}");
            let patient = r["subject"]["reference"].as_str().and_then(|p| patients.get(p)).copied();
            let report = reports.get(&key).copied();
            let work = Work {
                request: id.to_string(),
                report: report.and_then(|d| d["id"].as_str()).unwrap_or_default().to_string(),
                test: fmt::concept(&r["code"]).unwrap_or_default(),
                patient: patient.map(|p| fmt::person_names(p).0.unwrap_or_default()).unwrap_or_default(),
                uhid: patient.map(uhid_of).unwrap_or_default(),
                when: r["authoredOn"].as_str().map(|t| zone.fhir(t)).unwrap_or_default(),
                barcode: specimens.get(&key).cloned().unwrap_or_default(),
            };
            match report {
                None if work.barcode.is_empty() => page.collect.push(work),
                None => page.enter.push(work),
                Some(d) if crate::fhir::visibility::RELEASED_REPORT.contains(&d["status"].as_str().unwrap_or_default()) => page.released.push(work),
                Some(d) if verified(d) => page.release.push(work),
                Some(_) => page.verify.push(work),
            }
        }
        Ok(page)
    }
}

fn verified(report: &Value) -> bool {
    report["extension"].as_array().into_iter().flatten().any(|e| e["url"] == crate::fhir::lab::VERIFIED_BY_URL)
}

macro_rules! lab_for {
    ($app:ident, $fhir:ident, $peer:ident, $headers:ident, $path:expr, $ctx:ident, $s:ident, $lab:ident) => {
        let $ctx = Ctx::of(&$app, &$headers, $path);
        let Some($s) = signed_in(&$app, &$headers) else { return to_login(&$ctx.path) };
        let $lab = Lab(Screen::new(&$app, &$fhir, &$s, &$headers, $peer, &$ctx));
    };
}

/// `GET /ui/lab`: the worklist.
pub async fn worklist(State(app): State<AppState>, Extension(fhir): Extension<Fhir>, peer: Peer, headers: HeaderMap) -> Response {
    lab_for!(app, fhir, peer, headers, "/ui/lab", ctx, s, lab);
    lab.worklist(StatusCode::OK, None, None).await
}

/// `POST /ui/lab/collect`: collect an order's sample (with the barcode typed or scanned, or the
/// day's next number when left empty).
pub async fn collect(State(app): State<AppState>, Extension(fhir): Extension<Fhir>, peer: Peer, headers: HeaderMap, body: Bytes) -> Response {
    lab_for!(app, fhir, peer, headers, "/ui/lab", ctx, s, lab);
    let field = form_fields(&body);
    if !csrf_ok(&headers, &field("csrf")) {
        return lab.worklist(StatusCode::FORBIDDEN, Some(ctx.t(Key::FormExpired).into()), None).await;
    }
    let request = field("request");
    let Some(request) = fhir_id(&request) else { return lab.worklist(StatusCode::BAD_REQUEST, Some(ctx.t(Key::FormExpired).into()), None).await };
    let barcode = field("barcode").trim().to_string();
    let params = if barcode.is_empty() {
        json!({"resourceType": "Parameters"})
    } else {
        json!({"resourceType": "Parameters", "parameter": [{"name": "barcode", "valueString": barcode}]})
    };
    match lab.post(&format!("/ServiceRequest/{request}/$collect"), &params).await {
        Ok(specimen) => {
            let code = specimen["accessionIdentifier"]["value"].as_str().unwrap_or_default();
            lab.worklist(StatusCode::OK, None, Some(format!("{} {code}", ctx.t(Key::Collected)))).await
        }
        Err((status, message)) => lab.worklist(status, Some(message), None).await,
    }
}

/// One row of the result entry form, as typed.
#[derive(Default, Clone)]
pub struct ResultRow {
    pub name: String,
    pub code: String,
    pub value: String,
    pub unit: String,
    pub low: String,
    pub high: String,
    pub error: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "web/lab_results.html")]
struct ResultsPage<'a> {
    ctx: &'a Ctx,
    request: &'a str,
    test: String,
    patient: String,
    barcode: String,
    rows: Vec<ResultRow>,
    key: String,
    error: Option<String>,
}

/// A number as typed into a result field (`12.5`, `-1`, `0.3`), or `None`.
fn number(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-') {
        return None;
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The flag a value gets from its range: `L` below, `H` above, `N` within.
pub fn flag(value: f64, low: Option<f64>, high: Option<f64>) -> &'static str {
    match (low, high) {
        (Some(l), _) if value < l => "L",
        (_, Some(h)) if value > h => "H",
        _ => "N",
    }
}

impl ResultRow {
    fn from_form(field: &dyn Fn(&str) -> String, i: usize) -> ResultRow {
        let f = |n: &str| field(&format!("{n}{i}")).trim().to_string();
        ResultRow { name: f("name"), code: f("code"), value: f("value"), unit: f("unit"), low: f("low"), high: f("high"), error: None }
    }

    fn is_blank(&self) -> bool {
        self.value.is_empty() && self.name.is_empty()
    }

    /// The Observation this row makes, or the reason it cannot (in `self.error`).
    fn check(&mut self, ctx: &Ctx) -> Option<(f64, Option<f64>, Option<f64>)> {
        let text_ok = |s: &str, max: usize| s.chars().count() <= max && !s.chars().any(|c| c.is_control() || "<>{}".contains(c));
        let loinc_ok = self.code.is_empty() || (self.code.len() <= 12 && self.code.bytes().all(|b| b.is_ascii_digit() || b == b'-'));
        let value = number(&self.value);
        let low = if self.low.is_empty() { Some(None) } else { number(&self.low).map(Some) };
        let high = if self.high.is_empty() { Some(None) } else { number(&self.high).map(Some) };
        self.error = match (value, low, high) {
            _ if self.name.is_empty() || !text_ok(&self.name, 100) => Some(ctx.t(Key::ResultNeedsName)),
            _ if !loinc_ok => Some(ctx.t(Key::BadLoinc)),
            (None, _, _) => Some(ctx.t(Key::BadValue)),
            (_, None, _) | (_, _, None) => Some(ctx.t(Key::BadRange)),
            (_, Some(Some(l)), Some(Some(h))) if l > h => Some(ctx.t(Key::BadRange)),
            _ if self.unit.is_empty() || !text_ok(&self.unit, 20) => Some(ctx.t(Key::NeedUnit)),
            _ => None,
        };
        match (self.error, value, low, high) {
            (None, Some(v), Some(l), Some(h)) => Some((v, l, h)),
            _ => None,
        }
    }
}

/// The Specimen collected for order `request` (R4 has no search by request: the patient's,
/// newest first, matched here).
async fn specimen_of(lab: &Lab<'_>, order: &Value, request: &str) -> Option<Value> {
    let patient = order["subject"]["reference"].as_str()?;
    let found = lab.get(&format!("/Specimen?patient={patient}&_sort=-collected&_count=200")).await.ok()?;
    let wanted = format!("ServiceRequest/{request}");
    entries(&found).find(|s| s["request"].as_array().into_iter().flatten().any(|r| r["reference"] == wanted.as_str())).cloned()
}

async fn results_page(lab: &Lab<'_>, request: &str, rows: Option<Vec<ResultRow>>, status: StatusCode, error: Option<String>) -> Response {
    let order = match lab.get(&format!("/ServiceRequest/{request}")).await {
        Ok(o) => o,
        Err((st, message)) => return lab.worklist(st, Some(message), None).await,
    };
    let patient = match order["subject"]["reference"].as_str() {
        Some(p) => lab.get(&format!("/{p}")).await.map(|p| format!("{} · {}", fmt::person_names(&p).0.unwrap_or_default(), uhid_of(&p))).unwrap_or_default(),
        None => String::new(),
    };
    let barcode = specimen_of(lab, &order, request).await.map(|s| s["accessionIdentifier"]["value"].as_str().unwrap_or_default().to_string()).unwrap_or_default();
    let rows = rows.unwrap_or_else(|| {
        let mut rows = vec![ResultRow::default(); RESULT_ROWS];
        rows[0].name = fmt::concept(&order["code"]).unwrap_or_default();
        rows[0].code = order.pointer("/code/coding/0/code").and_then(Value::as_str).unwrap_or_default().to_string();
        rows
    });
    let page = ResultsPage {
        ctx: lab.ctx,
        request,
        test: fmt::concept(&order["code"]).unwrap_or_default(),
        patient,
        barcode,
        rows,
        key: uuid::Uuid::new_v4().simple().to_string(),
        error,
    };
    render(lab.app, lab.ctx, status, &page)
}

/// `GET /ui/lab/results/{request}`: the result entry form.
pub async fn results_form(State(app): State<AppState>, Extension(fhir): Extension<Fhir>, peer: Peer, headers: HeaderMap, Path(request): Path<String>) -> Response {
    let Some(request) = fhir_id(&request) else { return StatusCode::NOT_FOUND.into_response() };
    lab_for!(app, fhir, peer, headers, &format!("/ui/lab/results/{request}"), ctx, s, lab);
    results_page(&lab, request, None, StatusCode::OK, None).await
}

/// `POST /ui/lab/results/{request}`: the results and their report, in one transaction.
pub async fn enter_results(
    State(app): State<AppState>,
    Extension(fhir): Extension<Fhir>,
    Extension(submitted): Extension<Arc<Submitted>>,
    peer: Peer,
    headers: HeaderMap,
    Path(request): Path<String>,
    body: Bytes,
) -> Response {
    let Some(request) = fhir_id(&request) else { return StatusCode::NOT_FOUND.into_response() };
    lab_for!(app, fhir, peer, headers, &format!("/ui/lab/results/{request}"), ctx, s, lab);
    let field = form_fields(&body);
    if !csrf_ok(&headers, &field("csrf")) {
        return results_page(&lab, request, None, StatusCode::FORBIDDEN, Some(ctx.t(Key::FormExpired).into())).await;
    }
    let key = field("key");
    if key.len() != 32 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return results_page(&lab, request, None, StatusCode::BAD_REQUEST, Some(ctx.t(Key::FormExpired).into())).await;
    }
    let mut rows: Vec<ResultRow> = (0..RESULT_ROWS).map(|i| ResultRow::from_form(&field, i)).collect();
    let mut checked = Vec::new();
    for row in rows.iter_mut().filter(|r| !r.is_blank()) {
        if let Some(v) = row.check(&ctx) {
            checked.push((row.clone(), v));
        }
    }
    if rows.iter().any(|r| r.error.is_some()) {
        return results_page(&lab, request, Some(rows), StatusCode::UNPROCESSABLE_ENTITY, None).await;
    }
    if checked.is_empty() {
        return results_page(&lab, request, Some(rows), StatusCode::UNPROCESSABLE_ENTITY, Some(ctx.t(Key::NoResultsEntered).into())).await;
    }
    let order = match lab.get(&format!("/ServiceRequest/{request}")).await {
        Ok(o) => o,
        Err((st, message)) => return results_page(&lab, request, Some(rows), st, Some(message)).await,
    };
    let specimen = specimen_of(&lab, &order, request).await.and_then(|s| s["id"].as_str().map(str::to_string));
    let Some(specimen) = specimen else {
        return results_page(&lab, request, Some(rows), StatusCode::CONFLICT, Some(ctx.t(Key::CollectFirst).into())).await;
    };
    let now = vaidya_fhir::datetime::format_instant(vaidya_store::now_ms());
    let qty = |v: f64, unit: &str| json!({"value": v, "unit": unit, "system": UCUM, "code": unit});
    let mut bundle_entries = Vec::new();
    let mut result_refs = Vec::new();
    for (row, (value, low, high)) in &checked {
        let full_url = format!("urn:uuid:{}", uuid::Uuid::new_v4());
        let mut code = json!({"text": row.name});
        if !row.code.is_empty() {
            code["coding"] = json!([{"system": "http://loinc.org", "code": row.code, "display": row.name}]);
        }
        let mut range = json!({});
        if let Some(l) = low {
            range["low"] = qty(*l, &row.unit);
        }
        if let Some(h) = high {
            range["high"] = qty(*h, &row.unit);
        }
        let mut obs = json!({"resourceType": "Observation", "status": "preliminary", "code": code,
            "subject": order["subject"], "basedOn": [{"reference": format!("ServiceRequest/{request}")}],
            "specimen": {"reference": format!("Specimen/{specimen}")}, "effectiveDateTime": now, "issued": now,
            "valueQuantity": qty(*value, &row.unit)});
        if low.is_some() || high.is_some() {
            obs["referenceRange"] = json!([range]);
            obs["interpretation"] = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": flag(*value, *low, *high)}]}]);
        }
        result_refs.push(json!({"reference": full_url}));
        bundle_entries.push(json!({"fullUrl": full_url, "resource": obs, "request": {"method": "POST", "url": "Observation"}}));
    }
    let report = json!({"resourceType": "DiagnosticReport", "status": "preliminary", "code": order["code"], "subject": order["subject"],
        "basedOn": [{"reference": format!("ServiceRequest/{request}")}], "specimen": [{"reference": format!("Specimen/{specimen}")}],
        "effectiveDateTime": now, "result": result_refs});
    bundle_entries.push(json!({"fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()), "resource": report, "request": {"method": "POST", "url": "DiagnosticReport"}}));
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": bundle_entries});
    match submitted.claim(&key) {
        Ok(()) => {}
        Err(Some(_)) => return Redirect::to("/ui/lab").into_response(),
        Err(None) => return results_page(&lab, request, Some(rows), StatusCode::CONFLICT, Some(ctx.t(Key::BeingSaved).into())).await,
    }
    match lab.post("/", &bundle).await {
        Ok(_) => {
            submitted.settle(&key, Some(request.to_string()));
            Redirect::to("/ui/lab").into_response()
        }
        Err((status, message)) => {
            submitted.settle(&key, None);
            results_page(&lab, request, Some(rows), status, Some(message)).await
        }
    }
}

/// `POST /ui/lab/report/{id}/{verify|release}`.
pub async fn report_step(State(app): State<AppState>, Extension(fhir): Extension<Fhir>, peer: Peer, headers: HeaderMap, Path((id, step)): Path<(String, String)>, body: Bytes) -> Response {
    let (Some(id), Some(op)) = (fhir_id(&id), match step.as_str() {
        "verify" => Some("$verify"),
        "release" => Some("$release"),
        _ => None,
    }) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    lab_for!(app, fhir, peer, headers, "/ui/lab", ctx, s, lab);
    if !csrf_ok(&headers, &form_fields(&body)("csrf")) {
        return lab.worklist(StatusCode::FORBIDDEN, Some(ctx.t(Key::FormExpired).into()), None).await;
    }
    match lab.post(&format!("/DiagnosticReport/{id}/{op}"), &json!({"resourceType": "Parameters"})).await {
        Ok(_) => Redirect::to("/ui/lab").into_response(),
        Err((status, message)) => lab.worklist(status, Some(message), None).await,
    }
}

/// `GET /ui/lab/print/{report}`: the printable report (the `/print` page, as the signed-in person).
pub async fn print(State(app): State<AppState>, Extension(printer): Extension<super::fhir_call::Printer>, peer: Peer, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let Some(id) = fhir_id(&id) else { return StatusCode::NOT_FOUND.into_response() };
    let ctx = Ctx::of(&app, &headers, &format!("/ui/lab/print/{id}"));
    let Some(s) = signed_in(&app, &headers) else { return to_login(&ctx.path) };
    printer.report(&s.token, &headers, peer.map(|p| p.0.0), id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_follow_the_range() {
        assert_eq!(flag(9.6, Some(12.0), Some(15.5)), "L");
        assert_eq!(flag(16.0, Some(12.0), Some(15.5)), "H");
        assert_eq!(flag(13.0, Some(12.0), Some(15.5)), "N");
        assert_eq!(flag(13.0, None, None), "N");
    }

    #[test]
    fn numbers_are_plain_decimals() {
        assert_eq!(number(" 12.5 "), Some(12.5));
        assert_eq!(number("-1"), Some(-1.0));
        for bad in ["", "1e309", "NaN", "inf", "12,5", "1e3", "<5"] {
            assert_eq!(number(bad), None, "{bad}");
        }
    }
}
