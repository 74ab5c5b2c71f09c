//! The patient portal's records: my appointments, my released reports (to view, print or
//! download), my bills and receipts. (Signing in and "who has seen my record" are in
//! `patient.rs`.)
//!
//! Read through the FHIR API with the patient's own session: the policy `patient-own` lets a
//! patient read and search only their own records, and reports reach them only once released,
//! so these pages cannot show anything else whatever the URL says.

use super::fhir_call::{Fhir, Printer, entries, outcome_message};
use super::i18n::Key;
use super::registration::Submitted;
use super::{Ctx, Signed, csrf_ok, form_fields, render, signed_in, to_login};
use crate::app::AppState;
use crate::auth::Peer;
use crate::print::format::{self as fmt, Zone};
use askama::Template;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Value, json};
use std::sync::Arc;
use vaidya_domain::schedule::LocalDate;

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
    pub id: String,
    pub when: String,
    pub with: String,
    pub status: String,
    pub token: String,
    /// Booked, not begun, not checked in: the patient may cancel it.
    pub cancellable: bool,
}

#[derive(Template)]
#[template(path = "web/my_appointments.html")]
struct AppointmentsPage<'a> {
    ctx: &'a Ctx,
    visits: Vec<Visit>,
    error: Option<String>,
    notice: Option<String>,
}

/// A participant's name for the patient: its display, else its id (`gen-med`, `dr-sharma`).
fn who(appt: &Value, prefix: &str) -> Option<String> {
    appt["participant"].as_array()?.iter().find_map(|p| {
        let r = p["actor"]["reference"].as_str()?.strip_prefix(prefix)?;
        Some(p["actor"]["display"].as_str().unwrap_or(r).to_string())
    })
}

/// `GET /ui/my/appointments`.
pub async fn appointments(State(app): State<AppState>, Extension(fhir): Extension<Fhir>, peer: Peer, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let ctx = Ctx::of(&app, &headers, "/ui/my/appointments");
    let Some((s, me)) = patient_of(&app, &headers) else { return elsewhere(&app, &headers, &ctx.path) };
    let field = form_fields(raw.unwrap_or_default().as_bytes());
    let notice = if field("booked") == "1" {
        Some(ctx.t(Key::BookedNotice).to_string())
    } else if field("cancelled") == "1" {
        Some(ctx.t(Key::CancelledNotice).to_string())
    } else {
        None
    };
    appointments_page(&app, &fhir, &s, &me, &headers, peer.map(|p| p.0.0), &ctx, StatusCode::OK, None, notice).await
}

#[allow(clippy::too_many_arguments)]
async fn appointments_page(app: &AppState, fhir: &Fhir, s: &Signed, me: &str, headers: &HeaderMap, peer: Option<std::net::SocketAddr>, ctx: &Ctx, status: StatusCode, error: Option<String>, notice: Option<String>) -> Response {
    let zone = Zone::from_config(&app.config.timezone);
    let (st, found) = fhir.get(&s.token, headers, peer, &format!("/Appointment?patient=Patient/{me}&_sort=-date&_count=100")).await;
    if !st.is_success() {
        return render(app, ctx, st, &AppointmentsPage { ctx, visits: vec![], error: Some(outcome_message(ctx, &found)), notice: None });
    }
    let now = vaidya_store::now_ms();
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
            let start = a["start"].as_str().and_then(vaidya_fhir::datetime::parse_date_range).map(|(ms, _)| ms);
            let checked_in = a["extension"].as_array().into_iter().flatten().any(|e| e["url"] == crate::fhir::queue::QUEUE_STATE_URL);
            let cancellable = a["status"] == "booked" && !checked_in && start.is_some_and(|t| t > now);
            Visit {
                id: a["id"].as_str().unwrap_or_default().to_string(),
                when: a["start"].as_str().map(|t| zone.fhir(t)).unwrap_or_default(),
                with,
                status: a["status"].as_str().unwrap_or_default().to_string(),
                token,
                cancellable,
            }
        })
        .collect();
    render(app, ctx, status, &AppointmentsPage { ctx, visits, error, notice })
}

/// `POST /ui/my/cancel`: cancel one of my bookings.
pub async fn cancel(State(app): State<AppState>, Extension(fhir): Extension<Fhir>, peer: Peer, headers: HeaderMap, body: Bytes) -> Response {
    let ctx = Ctx::of(&app, &headers, "/ui/my/appointments");
    let Some((s, me)) = patient_of(&app, &headers) else { return elsewhere(&app, &headers, &ctx.path) };
    let peer = peer.map(|p| p.0.0);
    let field = form_fields(&body);
    let id = field("appointment");
    if !csrf_ok(&headers, &field("csrf")) || !crate::fhir::is_valid_id(&id) {
        return appointments_page(&app, &fhir, &s, &me, &headers, peer, &ctx, StatusCode::FORBIDDEN, Some(ctx.t(Key::FormExpired).into()), None).await;
    }
    let params = json!({"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": "cancelled by the patient in the portal"}]});
    let (status, answer) = fhir.post(&s.token, &headers, peer, &format!("/Appointment/{id}/$cancel"), &params).await;
    if !status.is_success() {
        return appointments_page(&app, &fhir, &s, &me, &headers, peer, &ctx, status, Some(outcome_message(&ctx, &answer)), None).await;
    }
    Redirect::to("/ui/my/appointments?cancelled=1").into_response()
}

pub struct FreeSlot {
    pub id: String,
    pub time: String,
    pub doctor: String,
}

#[derive(Template)]
#[template(path = "web/my_book.html")]
struct BookPage<'a> {
    ctx: &'a Ctx,
    departments: Vec<(String, String)>,
    dept: String,
    date: String,
    slots: Vec<FreeSlot>,
    key: String,
    error: Option<String>,
}

#[allow(clippy::too_many_arguments)]
async fn book_page(app: &AppState, fhir: &Fhir, s: &Signed, headers: &HeaderMap, peer: Option<std::net::SocketAddr>, ctx: &Ctx, dept: &str, date: LocalDate, status: StatusCode, error: Option<String>) -> Response {
    let zone = Zone::from_config(&app.config.timezone);
    let get = |path: String| async move { fhir.get(&s.token, headers, peer, &path).await };
    let (st, services) = get("/HealthcareService?active=true&_sort=name&_count=100".to_string()).await;
    let departments: Vec<(String, String)> = if st.is_success() {
        entries(&services).filter_map(|h| Some((h["id"].as_str()?.to_string(), h["name"].as_str().unwrap_or_default().to_string()))).collect()
    } else {
        vec![]
    };
    let mut slots = vec![];
    if crate::fhir::is_valid_id(dept) {
        let (_, schedules) = get(format!("/Schedule?actor=HealthcareService/{dept}&_count=50")).await;
        for sch in entries(&schedules) {
            let Some(sid) = sch["id"].as_str() else { continue };
            let doctor = match sch["actor"].as_array().into_iter().flatten().filter_map(|a| a["reference"].as_str()).find(|r| r.starts_with("Practitioner/")) {
                Some(r) => {
                    let (st, p) = get(format!("/{r}")).await;
                    if st.is_success() { fmt::person_names(&p).0.unwrap_or_default() } else { String::new() }
                }
                None => String::new(),
            };
            let (_, found) = get(format!("/Slot?schedule=Schedule/{sid}&{}&status=free&_sort=start&_count=200", zone.day_query("start", date))).await;
            let now = vaidya_store::now_ms();
            for slot in entries(&found) {
                let Some(start) = slot["start"].as_str() else { continue };
                if vaidya_fhir::datetime::parse_date_range(start).is_some_and(|(ms, _)| ms <= now) {
                    continue;
                }
                slots.push(FreeSlot { id: slot["id"].as_str().unwrap_or_default().to_string(), time: zone.fhir(start), doctor: doctor.clone() });
            }
        }
        slots.sort_by(|a, b| a.time.cmp(&b.time));
    }
    let key = uuid::Uuid::new_v4().simple().to_string();
    render(app, ctx, status, &BookPage { ctx, departments, dept: dept.to_string(), date: date.to_string(), slots, key, error })
}

fn today(app: &AppState) -> LocalDate {
    Zone::from_config(&app.config.timezone).date_of(vaidya_store::now_ms()).expect("now is a date")
}

/// `GET /ui/my/book?dept=&date=`: choose a department and day, then a free time.
pub async fn book_form(State(app): State<AppState>, Extension(fhir): Extension<Fhir>, peer: Peer, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let ctx = Ctx::of(&app, &headers, "/ui/my/book");
    let Some((s, _)) = patient_of(&app, &headers) else { return elsewhere(&app, &headers, &ctx.path) };
    let field = form_fields(raw.unwrap_or_default().as_bytes());
    let (date, error) = match field("date").as_str() {
        "" => (today(&app), None),
        d => match d.parse::<LocalDate>() {
            Ok(d) => (d, None),
            Err(_) => (today(&app), Some(ctx.t(Key::BadDate).to_string())),
        },
    };
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    book_page(&app, &fhir, &s, &headers, peer.map(|p| p.0.0), &ctx, &field("dept"), date, status, error).await
}

/// `POST /ui/my/book`: book the chosen slot for me.
pub async fn book(
    State(app): State<AppState>,
    Extension(fhir): Extension<Fhir>,
    Extension(submitted): Extension<Arc<Submitted>>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ctx = Ctx::of(&app, &headers, "/ui/my/book");
    let Some((s, me)) = patient_of(&app, &headers) else { return elsewhere(&app, &headers, &ctx.path) };
    let peer = peer.map(|p| p.0.0);
    let field = form_fields(&body);
    let (dept, slot_id, key) = (field("dept"), field("slot"), field("key"));
    let date = field("date").parse::<LocalDate>().unwrap_or_else(|_| today(&app));
    let again = |status, message: String| book_page(&app, &fhir, &s, &headers, peer, &ctx, &dept, date, status, Some(message));
    if !csrf_ok(&headers, &field("csrf")) || key.len() != 32 || !key.bytes().all(|b| b.is_ascii_hexdigit()) || !crate::fhir::is_valid_id(&dept) {
        return again(StatusCode::FORBIDDEN, ctx.t(Key::FormExpired).into()).await;
    }
    if !crate::fhir::is_valid_id(&slot_id) {
        return again(StatusCode::UNPROCESSABLE_ENTITY, ctx.t(Key::ChooseSlot).into()).await;
    }
    let (status, slot) = fhir.get(&s.token, &headers, peer, &format!("/Slot/{slot_id}")).await;
    if !status.is_success() {
        return again(status, outcome_message(&ctx, &slot)).await;
    }
    let (_, service) = fhir.get(&s.token, &headers, peer, &format!("/HealthcareService/{dept}")).await;
    let mut participants = vec![
        json!({"actor": {"reference": format!("Patient/{me}")}, "status": "accepted"}),
        json!({"actor": {"reference": format!("HealthcareService/{dept}"), "display": service["name"]}, "status": "accepted"}),
    ];
    if let Some(schedule) = slot["schedule"]["reference"].as_str() {
        let (_, sch) = fhir.get(&s.token, &headers, peer, &format!("/{schedule}")).await;
        if let Some(doctor) = sch["actor"].as_array().into_iter().flatten().filter_map(|a| a["reference"].as_str()).find(|r| r.starts_with("Practitioner/")) {
            let (_, p) = fhir.get(&s.token, &headers, peer, &format!("/{doctor}")).await;
            participants.push(json!({"actor": {"reference": doctor, "display": fmt::person_names(&p).0.unwrap_or_default()}, "status": "accepted"}));
        }
    }
    match submitted.claim(&key) {
        Ok(()) => {}
        Err(Some(_)) => return Redirect::to("/ui/my/appointments").into_response(),
        Err(None) => return again(StatusCode::CONFLICT, ctx.t(Key::BeingSaved).into()).await,
    }
    let appointment = json!({"resourceType": "Appointment", "status": "booked", "slot": [{"reference": format!("Slot/{slot_id}")}],
        "start": slot["start"], "end": slot["end"], "participant": participants});
    let (status, answer) = fhir.post(&s.token, &headers, peer, "/Appointment", &appointment).await;
    match answer["id"].as_str().filter(|_| status.is_success()) {
        Some(id) => {
            submitted.settle(&key, Some(id.to_string()));
            Redirect::to("/ui/my/appointments?booked=1").into_response()
        }
        None => {
            submitted.settle(&key, None);
            again(status, outcome_message(&ctx, &answer)).await
        }
    }
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
        return render(&app, &ctx, status, &ReportsPage { ctx: &ctx, reports: vec![], error: Some(outcome_message(&ctx, &found)) });
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
        return render(&app, &ctx, status, &BillsPage { ctx: &ctx, bills: vec![], error: Some(outcome_message(&ctx, &found)) });
    }
    let bills = entries(&found).map(|i| super::billing::bill_of(i, &zone, &ctx)).collect();
    render(&app, &ctx, StatusCode::OK, &BillsPage { ctx: &ctx, bills, error: None })
}
