//! The patient portal's records: my appointments, my released reports (to view, print or
//! download), my bills and receipts. (Signing in and "who has seen my record" are in
//! `patient.rs`.)
//!
//! Read through the FHIR API with the patient's own session: the policy `patient-own` lets a
//! patient read and search only their own records, and reports reach them only once released,
//! so these pages cannot show anything else whatever the URL says.

use super::fhir_call::{Fhir, Printer, outcome_message};
use super::i18n::Key;
use super::{Ctx, Signed, render, signed_in, to_login};
use crate::app::AppState;
use crate::auth::Peer;
use crate::print::format::{self as fmt, Zone};
use askama::Template;
use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::Value;

fn entries(bundle: &Value) -> impl Iterator<Item = &Value> {
    bundle["entry"].as_array().into_iter().flatten().map(|e| &e["resource"])
}

/// The signed-in patient and their Patient id.
fn patient_of(app: &AppState, headers: &HeaderMap) -> Option<(Signed, String)> {
    let s = signed_in(app, headers)?;
    let id = s.principal.patient.clone().filter(|_| s.principal.role == "patient")?;
    Some((s, id))
}

/// Where to send a browser that is not a signed-in patient: staff home, or sign in.
fn elsewhere(app: &AppState, headers: &HeaderMap, path: &str) -> Response {
    match signed_in(app, headers) {
        Some(_) => Redirect::to("/ui/").into_response(),
        None => to_login(path),
    }
}

pub struct Visit {
    pub when: String,
    pub with: String,
    pub status: String,
    pub token: String,
}

#[derive(Template)]
#[template(path = "web/my_appointments.html")]
struct AppointmentsPage<'a> {
    ctx: &'a Ctx,
    visits: Vec<Visit>,
    error: Option<String>,
}

/// A participant's name for the patient: its display, else its id (`gen-med`, `dr-sharma`).
fn who(appt: &Value, prefix: &str) -> Option<String> {
    appt["participant"].as_array()?.iter().find_map(|p| {
        let r = p["actor"]["reference"].as_str()?.strip_prefix(prefix)?;
        Some(p["actor"]["display"].as_str().unwrap_or(r).to_string())
    })
}

/// `GET /ui/my/appointments`.
pub async fn appointments(State(app): State<AppState>, Extension(fhir): Extension<Fhir>, peer: Peer, headers: HeaderMap) -> Response {
    let ctx = Ctx::of(&app, &headers, "/ui/my/appointments");
    let Some((s, me)) = patient_of(&app, &headers) else { return elsewhere(&app, &headers, &ctx.path) };
    let zone = Zone::from_config(&app.config.timezone);
    let (status, found) = fhir.get(&s.token, &headers, peer.map(|p| p.0.0), &format!("/Appointment?patient=Patient/{me}&_sort=-date&_count=100")).await;
    if !status.is_success() {
        return render(&app, &ctx, status, &AppointmentsPage { ctx: &ctx, visits: vec![], error: Some(outcome_message(&found)) });
    }
    let visits = entries(&found)
        .map(|a| {
            let with = [who(a, "Practitioner/"), who(a, "HealthcareService/")].into_iter().flatten().collect::<Vec<_>>().join(" · ");
            let token = a["identifier"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|i| i["system"] == crate::fhir::queue::TOKEN_SYSTEM)
                .and_then(|i| i["value"].as_str())
                .unwrap_or_default()
                .to_string();
            Visit { when: a["start"].as_str().map(|t| zone.fhir(t)).unwrap_or_default(), with, status: a["status"].as_str().unwrap_or_default().to_string(), token }
        })
        .collect();
    render(&app, &ctx, StatusCode::OK, &AppointmentsPage { ctx: &ctx, visits, error: None })
}

pub struct ReportLine {
    pub id: String,
    pub name: String,
    pub when: String,
}

#[derive(Template)]
#[template(path = "web/my_reports.html")]
struct ReportsPage<'a> {
    ctx: &'a Ctx,
    reports: Vec<ReportLine>,
    error: Option<String>,
}

/// `GET /ui/my/reports`: the released reports (the only ones a patient's search returns).
pub async fn reports(State(app): State<AppState>, Extension(fhir): Extension<Fhir>, peer: Peer, headers: HeaderMap) -> Response {
    let ctx = Ctx::of(&app, &headers, "/ui/my/reports");
    let Some((s, me)) = patient_of(&app, &headers) else { return elsewhere(&app, &headers, &ctx.path) };
    let zone = Zone::from_config(&app.config.timezone);
    let (status, found) = fhir.get(&s.token, &headers, peer.map(|p| p.0.0), &format!("/DiagnosticReport?patient=Patient/{me}&_sort=-date&_count=100")).await;
    if !status.is_success() {
        return render(&app, &ctx, status, &ReportsPage { ctx: &ctx, reports: vec![], error: Some(outcome_message(&found)) });
    }
    let reports = entries(&found)
        .map(|r| ReportLine {
            id: r["id"].as_str().unwrap_or_default().to_string(),
            name: fmt::concept(&r["code"]).unwrap_or_default(),
            when: r["issued"].as_str().or(r["effectiveDateTime"].as_str()).map(|t| zone.fhir(t)).unwrap_or_default(),
        })
        .collect();
    render(&app, &ctx, StatusCode::OK, &ReportsPage { ctx: &ctx, reports, error: None })
}

/// `GET /ui/my/report/{id}` (to view and print) and `/ui/my/report/{id}/download` (the same
/// page as a file to keep).
pub async fn report(State(app): State<AppState>, Extension(printer): Extension<Printer>, peer: Peer, headers: HeaderMap, Path(id): Path<String>) -> Response {
    show_report(app, printer, peer, headers, id, false).await
}

pub async fn download(State(app): State<AppState>, Extension(printer): Extension<Printer>, peer: Peer, headers: HeaderMap, Path(id): Path<String>) -> Response {
    show_report(app, printer, peer, headers, id, true).await
}

async fn show_report(app: AppState, printer: Printer, peer: Peer, headers: HeaderMap, id: String, attachment: bool) -> Response {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
        return StatusCode::NOT_FOUND.into_response();
    }
    let Some((s, _)) = patient_of(&app, &headers) else { return elsewhere(&app, &headers, &format!("/ui/my/report/{id}")) };
    let mut resp = printer.report(&s.token, &headers, peer.map(|p| p.0.0), &id).await;
    if attachment && resp.status().is_success() {
        let disposition = format!("attachment; filename=\"report-{id}.html\"");
        if let Ok(v) = HeaderValue::from_str(&disposition) {
            resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
    }
    resp
}

#[derive(Template)]
#[template(path = "web/my_bills.html")]
struct BillsPage<'a> {
    ctx: &'a Ctx,
    bills: Vec<super::billing::Bill>,
    error: Option<String>,
}

/// `GET /ui/my/bills`: my invoices, what is paid and due, and the receipts to print.
pub async fn bills(State(app): State<AppState>, Extension(fhir): Extension<Fhir>, peer: Peer, headers: HeaderMap) -> Response {
    let ctx = Ctx::of(&app, &headers, "/ui/my/bills");
    let Some((s, me)) = patient_of(&app, &headers) else { return elsewhere(&app, &headers, &ctx.path) };
    let zone = Zone::from_config(&app.config.timezone);
    let (status, found) = fhir.get(&s.token, &headers, peer.map(|p| p.0.0), &format!("/Invoice?subject=Patient/{me}&_sort=-date&_count=50")).await;
    if !status.is_success() {
        return render(&app, &ctx, status, &BillsPage { ctx: &ctx, bills: vec![], error: Some(outcome_message(&found)) });
    }
    let bills = entries(&found).map(|i| super::billing::bill_of(i, &zone, &ctx)).collect();
    render(&app, &ctx, StatusCode::OK, &BillsPage { ctx: &ctx, bills, error: None })
}
