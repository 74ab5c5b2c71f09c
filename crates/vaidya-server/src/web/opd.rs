//! The OPD: a department's day (its slots, the bookings and the queue), booking, walk-in
//! tokens, check-in, calling the next patient, and the waiting hall's queue board.
//!
//! Everything goes through the FHIR API as the signed-in person: the day is
//! `Appointment?actor=HealthcareService/{dept}&date=...&_include=Appointment:patient` and the
//! department's Schedules' `Slot`s; a booking is `POST Appointment` (the booking rule in
//! `fhir/booking.rs` keeps a full slot from being overbooked); a walk-in is
//! `HealthcareService/{dept}/$walk-in`; check-in, call, consultation, done and no-show are
//! `Appointment/{id}/$queue` (the queue's rules in `vaidya_domain::QueueState`). So the desk
//! can do only what the policies let its role do, and every step is audited.
//!
//! The queue board (`/ui/opd/{dept}/board`) is for a screen in the waiting hall: token numbers
//! only (no names), large, reloading itself every [`BOARD_REFRESH_SECONDS`] with a `<meta
//! refresh>` (pages carry no scripts).
//!
//! A booking or walk-in form carries a random key, as registration's does: the same form posted
//! twice (a double click, a reload) makes one appointment ([`super::registration::Submitted`]).

use super::fhir_call::{Fhir, fhir_id, outcome_message, uhid_of};
use super::i18n::Key;
use super::registration::Submitted;
use super::{Ctx, Signed, csrf_ok, form_fields, render, signed_in, to_login};
use crate::app::AppState;
use crate::auth::Peer;
use crate::print::format::Zone;
use askama::Template;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use vaidya_domain::schedule::LocalDate;
use vaidya_domain::{QueueState, Uhid};

/// Seconds between the queue board's reloads.
pub const BOARD_REFRESH_SECONDS: u32 = 10;
/// Appointments shown for one department and day at most.
const MAX_APPOINTMENTS: usize = 500;
/// Slots listed for one department and day at most.
const MAX_SLOTS: usize = 300;

/// One appointment in the day's list.
pub struct Row {
    pub id: String,
    pub time: String,
    pub token: String,
    /// The Patient's id (for the chart link).
    pub patient_id: String,
    pub patient: String,
    pub uhid: String,
    pub walk_in: bool,
    /// The FHIR status (`booked`, `arrived`, `fulfilled`, `noshow`, `cancelled`).
    pub status: String,
    /// The queue state (`waiting`, `called`, ...), or "" before check-in.
    pub state: String,
    /// What the desk may do next: (queue state to move to, button text).
    pub next: Vec<(&'static str, &'static str)>,
}

/// One slot of the day.
pub struct SlotRow {
    pub id: String,
    pub time: String,
    pub doctor: String,
    pub free: bool,
}

fn state_word(ctx: &Ctx, state: &str, status: &str) -> &'static str {
    match (state, status) {
        ("waiting", _) => ctx.t(Key::QWaiting),
        ("called", _) => ctx.t(Key::QCalled),
        ("in-consultation", _) => ctx.t(Key::QInConsultation),
        ("done", _) => ctx.t(Key::QDone),
        ("no-show", _) => ctx.t(Key::QNoShow),
        (_, "cancelled") => ctx.t(Key::QCancelled),
        _ => ctx.t(Key::QBooked),
    }
}

impl Row {
    pub fn state_text(&self, ctx: &Ctx) -> &'static str {
        state_word(ctx, &self.state, &self.status)
    }
}

fn zone(app: &AppState) -> Zone {
    Zone::from_config(&app.config.timezone)
}

/// `HH:MM` in the hospital's zone of a FHIR instant ("" if unreadable).
fn hhmm(zone: &Zone, instant: &str) -> String {
    vaidya_fhir::datetime::parse_date_range(instant).and_then(|(ms, _)| zone.time_of(ms)).map(|t| t.to_string()).unwrap_or_default()
}

fn person_name(resource: &Value) -> String {
    crate::print::format::person_names(resource).0.unwrap_or_default()
}

fn extension_code<'a>(r: &'a Value, url: &str) -> Option<&'a str> {
    r["extension"].as_array()?.iter().find(|e| e["url"] == url)?["valueCode"].as_str()
}

fn rows_of(ctx: &Ctx, zone: &Zone, bundle: &Value) -> Vec<Row> {
    let entries: Vec<&Value> = bundle["entry"].as_array().into_iter().flatten().map(|e| &e["resource"]).collect();
    let patients: HashMap<String, &Value> =
        entries.iter().filter(|r| r["resourceType"] == "Patient").filter_map(|p| Some((format!("Patient/{}", p["id"].as_str()?), *p))).collect();
    entries
        .iter()
        .filter(|r| r["resourceType"] == "Appointment")
        .map(|a| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            let patient_ref = a["participant"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["actor"]["reference"].as_str())
                .find(|r| r.starts_with("Patient/"))
                .unwrap_or_default();
            let patient = patients.get(patient_ref).copied();
            let token = a["identifier"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|i| i["system"] == crate::fhir::queue::TOKEN_SYSTEM)
                .map(|i| s(&i["value"]))
                .unwrap_or_default();
            let state = extension_code(a, crate::fhir::queue::QUEUE_STATE_URL).unwrap_or_default().to_string();
            let status = s(&a["status"]);
            let next: Vec<(&'static str, &'static str)> = match (state.as_str(), status.as_str()) {
                ("", "booked") => vec![("waiting", ctx.t(Key::CheckIn))],
                ("waiting", _) => vec![("called", ctx.t(Key::Call)), ("no-show", ctx.t(Key::MarkNoShow))],
                ("called", _) => vec![("in-consultation", ctx.t(Key::StartConsultation)), ("waiting", ctx.t(Key::BackToWaiting)), ("no-show", ctx.t(Key::MarkNoShow))],
                ("in-consultation", _) => vec![("done", ctx.t(Key::MarkDone))],
                _ => vec![],
            };
            let walk_in = a.pointer("/appointmentType/coding/0/code").and_then(Value::as_str) == Some("WALKIN");
            Row {
                id: s(&a["id"]),
                time: hhmm(zone, a["start"].as_str().unwrap_or_default()),
                token,
                patient_id: patient_ref.trim_start_matches("Patient/").to_string(),
                patient: patient.map(person_name).unwrap_or_default(),
                uhid: patient.map(uhid_of).unwrap_or_default(),
                walk_in,
                status,
                state,
                next,
            }
        })
        .collect()
}

/// What the day page needs, read through the FHIR API.
struct Day {
    name: String,
    rows: Vec<Row>,
    slots: Vec<SlotRow>,
}

/// One request at a department's desk: who asks, through which API, about which department.
struct Desk<'a> {
    app: &'a AppState,
    fhir: &'a Fhir,
    s: &'a Signed,
    headers: &'a HeaderMap,
    peer: Option<std::net::SocketAddr>,
    ctx: &'a Ctx,
    dept: &'a str,
}

impl Desk<'_> {
    async fn get(&self, path: String) -> (StatusCode, Value) {
        self.fhir.get(&self.s.token, self.headers, self.peer, &path).await
    }

    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.fhir.post(&self.s.token, self.headers, self.peer, path, body).await
    }

    async fn read_day(&self, date: LocalDate, with_slots: bool) -> Result<Day, (StatusCode, String)> {
    let (ctx, dept) = (self.ctx, self.dept);
    let zone = zone(self.app);
    let get = |path: String| self.get(path);
    let (status, service) = get(format!("/HealthcareService/{dept}")).await;
    if !status.is_success() {
        return Err((status, outcome_message(ctx, &service)));
    }
    let name = service["name"].as_str().unwrap_or(dept).to_string();
    let (status, bundle) =
        get(format!("/Appointment?actor=HealthcareService/{dept}&{}&_include=Appointment:patient&_sort=date&_count={MAX_APPOINTMENTS}", zone.day_query("date", date))).await;
    if !status.is_success() {
        return Err((status, outcome_message(ctx, &bundle)));
    }
    let mut rows = rows_of(ctx, &zone, &bundle);
    // Walk-ins and checked-in patients by token, then the rest by time.
    rows.sort_by(|a, b| (a.token.is_empty(), &a.token, &a.time).cmp(&(b.token.is_empty(), &b.token, &b.time)));
    let mut slots = Vec::new();
    if with_slots {
        let (status, schedules) = get(format!("/Schedule?actor=HealthcareService/{dept}&_count=50")).await;
        if !status.is_success() {
            return Err((status, outcome_message(ctx, &schedules)));
        }
        for sch in schedules["entry"].as_array().into_iter().flatten().map(|e| &e["resource"]) {
            let Some(id) = sch["id"].as_str() else { continue };
            let doctor_ref = sch["actor"].as_array().into_iter().flatten().filter_map(|a| a["reference"].as_str()).find(|r| r.starts_with("Practitioner/"));
            let doctor = match doctor_ref {
                Some(r) => {
                    let (st, p) = get(format!("/{r}")).await;
                    if st.is_success() { person_name(&p) } else { String::new() }
                }
                None => String::new(),
            };
            let (status, found) = get(format!("/Slot?schedule=Schedule/{id}&{}&_sort=start&_count={MAX_SLOTS}", zone.day_query("start", date))).await;
            if !status.is_success() {
                return Err((status, outcome_message(ctx, &found)));
            }
            for slot in found["entry"].as_array().into_iter().flatten().map(|e| &e["resource"]) {
                slots.push(SlotRow {
                    id: slot["id"].as_str().unwrap_or_default().to_string(),
                    time: hhmm(&zone, slot["start"].as_str().unwrap_or_default()),
                    doctor: doctor.clone(),
                    free: slot["status"] == "free",
                });
            }
        }
        slots.sort_by(|a, b| (&a.time, &a.doctor).cmp(&(&b.time, &b.doctor)));
    }
    Ok(Day { name, rows, slots })
    }

    /// The day page, with what just happened or went wrong.
    async fn page(&self, date: LocalDate, status: StatusCode, error: Option<String>, notice: Option<String>, uhid: &str) -> Response {
        self.page_with(date, status, error, None, notice, uhid).await
    }

    async fn page_with(&self, date: LocalDate, status: StatusCode, error: Option<String>, field_error: Option<(&'static str, String)>, notice: Option<String>, uhid: &str) -> Response {
        let (app, ctx, dept) = (self.app, self.ctx, self.dept);
        let (day, status, error) = match self.read_day(date, true).await {
            Ok(day) => (day, status, error),
            Err((st, message)) => (Day { name: dept.to_string(), rows: vec![], slots: vec![] }, st, Some(message)),
        };
        let page = DayPage {
            ctx,
            dept,
            clinician: self.clinician(),
            name: day.name,
            date: date.to_string(),
            today: date == today(app),
            rows: day.rows,
            slots: day.slots,
            walk_key: new_key(),
            book_key: new_key(),
            error,
            field_error,
            notice,
            uhid: uhid.to_string(),
        };
        render(app, ctx, status, &page)
    }

    fn clinician(&self) -> bool {
        matches!(self.s.principal.role.as_str(), "doctor" | "nurse")
    }

    /// The day page with an error.
    async fn refuse(&self, date: LocalDate, status: StatusCode, message: String, uhid: &str) -> Response {
        self.page(date, status, Some(message), None, uhid).await
    }

    /// The day page with an error beside form `form`'s fields (what was typed kept).
    async fn refuse_at(&self, form: &'static str, date: LocalDate, status: StatusCode, message: String, uhid: &str) -> Response {
        self.page_with(date, status, None, Some((form, message)), None, uhid).await
    }

    /// The patient a UHID names: `Ok(None)` if there is none.
    async fn patient_by_uhid(&self, uhid: &Uhid) -> Result<Option<String>, String> {
        let (status, bundle) = self.get(format!("/Patient?identifier={}|{uhid}&_count=2", crate::fhir::UHID_SYSTEM)).await;
        if !status.is_success() {
            return Err(outcome_message(self.ctx, &bundle));
        }
        Ok(bundle["entry"].as_array().and_then(|e| e.first()).and_then(|e| e["resource"]["id"].as_str()).map(str::to_string))
    }

    /// Shared by booking and walk-in: the checks before anything is written; the form key (now
    /// claimed) and the patient's id.
    async fn begin(&self, p: &Posted, submitted: &Submitted) -> Result<(String, String), Stop> {
        let key = (p.field)("key");
        if key.len() != 32 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Stop::Page(StatusCode::BAD_REQUEST, self.ctx.t(Key::FormExpired).into()));
        }
        let Ok(uhid) = (p.field)("uhid").trim().parse::<Uhid>() else {
            return Err(Stop::Page(StatusCode::UNPROCESSABLE_ENTITY, self.ctx.t(Key::BadUhid).into()));
        };
        let patient = match self.patient_by_uhid(&uhid).await {
            Ok(Some(id)) => id,
            Ok(None) => return Err(Stop::Page(StatusCode::UNPROCESSABLE_ENTITY, self.ctx.t(Key::NoSuchUhid).into())),
            Err(message) => return Err(Stop::Page(StatusCode::FORBIDDEN, message)),
        };
        match submitted.claim(&key) {
            Ok(()) => Ok((key, patient)),
            Err(Some(done)) => Err(Stop::Done(back_to_day(self.dept, p.date, Some(&done)))),
            Err(None) => Err(Stop::Page(StatusCode::CONFLICT, self.ctx.t(Key::BeingSaved).into())),
        }
    }

    /// Move one appointment in the queue, then back to the day.
    async fn move_in_queue(&self, p: &Posted, id: &str, to: QueueState) -> Response {
        let params = json!({"resourceType": "Parameters", "parameter": [{"name": "state", "valueCode": to.as_str()}]});
        let (status, answer) = self.post(&format!("/Appointment/{id}/$queue"), &params).await;
        if !status.is_success() {
            return self.refuse(p.date, status, outcome_message(self.ctx, &answer), "").await;
        }
        let token = token_of(&answer);
        back_to_day(self.dept, p.date, token.as_deref().filter(|_| to == QueueState::Waiting))
    }
}

/// An Appointment's queue token.
fn token_of(appointment: &Value) -> Option<String> {
    appointment["identifier"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["system"] == crate::fhir::queue::TOKEN_SYSTEM)
        .and_then(|i| i["value"].as_str())
        .map(str::to_string)
}

#[derive(Template)]
#[template(path = "web/opd_departments.html")]
struct DepartmentsPage<'a> {
    ctx: &'a Ctx,
    departments: Vec<(String, String)>,
    error: Option<String>,
}

/// `GET /ui/opd`: the departments.
pub async fn departments(State(app): State<AppState>, Extension(fhir): Extension<Fhir>, peer: Peer, headers: HeaderMap) -> Response {
    let ctx = Ctx::of(&app, &headers, "/ui/opd");
    let Some(s) = signed_in(&app, &headers) else { return to_login(&ctx.path) };
    let (status, bundle) = fhir.get(&s.token, &headers, peer.map(|p| p.0.0), "/HealthcareService?active=true&_sort=name&_count=100").await;
    if !status.is_success() {
        return render(&app, &ctx, status, &DepartmentsPage { ctx: &ctx, departments: vec![], error: Some(outcome_message(&ctx, &bundle)) });
    }
    let departments = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e["resource"]["id"].as_str()?.to_string(), e["resource"]["name"].as_str().unwrap_or_default().to_string())))
        .collect();
    render(&app, &ctx, StatusCode::OK, &DepartmentsPage { ctx: &ctx, departments, error: None })
}

#[derive(Template)]
#[template(path = "web/opd_day.html")]
struct DayPage<'a> {
    ctx: &'a Ctx,
    dept: &'a str,
    name: String,
    date: String,
    today: bool,
    rows: Vec<Row>,
    slots: Vec<SlotRow>,
    /// Whether names link to the chart (doctors and nurses).
    clinician: bool,
    /// Fresh form keys for the walk-in and booking forms.
    walk_key: String,
    book_key: String,
    error: Option<String>,
    /// An error about one form (`walk-in` or `book`), shown beside its fields.
    field_error: Option<(&'static str, String)>,
    /// What was just done (a token given, a patient called).
    notice: Option<String>,
    uhid: String,
}

impl DayPage<'_> {
    pub fn error_for(&self, form: &str) -> Option<&str> {
        self.field_error.as_ref().filter(|(f, _)| *f == form).map(|(_, m)| m.as_str())
    }
}

fn today(app: &AppState) -> LocalDate {
    zone(app).date_of(vaidya_store::now_ms()).expect("now is a date")
}

fn new_key() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// `GET /ui/opd/{dept}?date=YYYY-MM-DD` (today by default): the department's day.
pub async fn day(State(app): State<AppState>, Extension(fhir): Extension<Fhir>, peer: Peer, headers: HeaderMap, Path(dept): Path<String>, RawQuery(raw): RawQuery) -> Response {
    let Some(dept) = fhir_id(&dept) else { return StatusCode::NOT_FOUND.into_response() };
    let field = form_fields(raw.unwrap_or_default().as_bytes());
    let ctx = Ctx::of(&app, &headers, &format!("/ui/opd/{dept}"));
    let Some(s) = signed_in(&app, &headers) else { return to_login(&ctx.path) };
    let desk = Desk { app: &app, fhir: &fhir, s: &s, headers: &headers, peer: peer.map(|p| p.0.0), ctx: &ctx, dept };
    let date = match field("date").as_str() {
        "" => today(&app),
        d => match d.parse::<LocalDate>() {
            Ok(d) => d,
            Err(_) => return desk.refuse(today(&app), StatusCode::BAD_REQUEST, ctx.t(Key::BadDate).into(), "").await,
        },
    };
    let notice = match field("done").as_str() {
        "" => None,
        done => Some(format!("{} {done}", ctx.t(Key::TokenGiven))),
    };
    desk.page(date, StatusCode::OK, None, notice, "").await
}

#[derive(Template)]
#[template(path = "web/opd_board.html")]
struct BoardPage<'a> {
    ctx: &'a Ctx,
    name: String,
    refresh: u32,
    calling: Vec<String>,
    waiting: Vec<String>,
    error: Option<String>,
}

/// `GET /ui/opd/{dept}/board`: today's queue for the waiting hall's screen.
pub async fn board(State(app): State<AppState>, Extension(fhir): Extension<Fhir>, peer: Peer, headers: HeaderMap, Path(dept): Path<String>) -> Response {
    let Some(dept) = fhir_id(&dept) else { return StatusCode::NOT_FOUND.into_response() };
    let ctx = Ctx::of(&app, &headers, &format!("/ui/opd/{dept}/board"));
    let Some(s) = signed_in(&app, &headers) else { return to_login(&ctx.path) };
    let desk = Desk { app: &app, fhir: &fhir, s: &s, headers: &headers, peer: peer.map(|p| p.0.0), ctx: &ctx, dept };
    let page = |name, calling, waiting, error, status| render(&app, &ctx, status, &BoardPage { ctx: &ctx, name, refresh: BOARD_REFRESH_SECONDS, calling, waiting, error });
    match desk.read_day(today(&app), false).await {
        Ok(day) => {
            let tokens = |states: &[&str]| -> Vec<String> { day.rows.iter().filter(|r| states.contains(&r.state.as_str()) && !r.token.is_empty()).map(|r| r.token.clone()).collect() };
            page(day.name.clone(), tokens(&["called", "in-consultation"]), tokens(&["waiting"]), None, StatusCode::OK)
        }
        Err((status, message)) => page(dept.to_string(), vec![], vec![], Some(message), status),
    }
}

/// What a posted OPD form says (its CSRF token checked), and the day it was posted from.
struct Posted {
    field: Box<dyn Fn(&str) -> String + Send + Sync>,
    date: LocalDate,
}

fn posted(app: &AppState, headers: &HeaderMap, body: &[u8]) -> Option<Posted> {
    let field = form_fields(body);
    if !csrf_ok(headers, &field("csrf")) {
        return None;
    }
    let date = field("date").parse::<LocalDate>().unwrap_or_else(|_| today(app));
    Some(Posted { field: Box::new(field), date })
}

fn back_to_day(dept: &str, date: LocalDate, done: Option<&str>) -> Response {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("date", &date.to_string());
    if let Some(d) = done {
        q.append_pair("done", d);
    }
    Redirect::to(&format!("/ui/opd/{dept}?{}", q.finish())).into_response()
}

/// Why a booking or walk-in did not go ahead.
enum Stop {
    /// Show the day again with this error.
    Page(StatusCode, String),
    /// The form was used already: go to what it made.
    Done(Response),
}

/// The start of every OPD form handler: the department, the signed-in person, the posted form.
macro_rules! desk_for_post {
    ($app:ident, $fhir:ident, $peer:ident, $headers:ident, $dept:ident, $body:ident, $ctx:ident, $s:ident, $desk:ident, $p:ident) => {
        let Some($dept) = fhir_id(&$dept) else { return StatusCode::NOT_FOUND.into_response() };
        let $ctx = Ctx::of(&$app, &$headers, &format!("/ui/opd/{}", $dept));
        let Some($s) = signed_in(&$app, &$headers) else { return to_login(&$ctx.path) };
        let $desk = Desk { app: &$app, fhir: &$fhir, s: &$s, headers: &$headers, peer: $peer.map(|p| p.0.0), ctx: &$ctx, dept: $dept };
        let Some($p) = posted(&$app, &$headers, &$body) else {
            return $desk.refuse(today(&$app), StatusCode::FORBIDDEN, $ctx.t(Key::FormExpired).into(), "").await;
        };
    };
}

/// `POST /ui/opd/{dept}/walk-in`: today's next token for a patient without a booking.
pub async fn walk_in(
    State(app): State<AppState>,
    Extension(fhir): Extension<Fhir>,
    Extension(submitted): Extension<Arc<Submitted>>,
    peer: Peer,
    headers: HeaderMap,
    Path(dept): Path<String>,
    body: Bytes,
) -> Response {
    desk_for_post!(app, fhir, peer, headers, dept, body, ctx, s, desk, p);
    let uhid = (p.field)("uhid");
    let (key, patient) = match desk.begin(&p, &submitted).await {
        Ok(v) => v,
        Err(Stop::Done(resp)) => return resp,
        Err(Stop::Page(status, message)) => return desk.refuse_at("walk-in", p.date, status, message, &uhid).await,
    };
    let params = json!({"resourceType": "Parameters", "parameter": [{"name": "patient", "valueReference": {"reference": format!("Patient/{patient}")}}]});
    let (status, answer) = desk.post(&format!("/HealthcareService/{dept}/$walk-in"), &params).await;
    let token = token_of(&answer).filter(|_| status.is_success());
    submitted.settle(&key, token.clone());
    match token {
        Some(t) => back_to_day(dept, p.date, Some(&t)),
        None => desk.refuse_at("walk-in", p.date, status, outcome_message(&ctx, &answer), &uhid).await,
    }
}

/// `POST /ui/opd/{dept}/book`: book a slot of the day for a patient.
pub async fn book(
    State(app): State<AppState>,
    Extension(fhir): Extension<Fhir>,
    Extension(submitted): Extension<Arc<Submitted>>,
    peer: Peer,
    headers: HeaderMap,
    Path(dept): Path<String>,
    body: Bytes,
) -> Response {
    desk_for_post!(app, fhir, peer, headers, dept, body, ctx, s, desk, p);
    let uhid = (p.field)("uhid");
    let slot_id = (p.field)("slot");
    let Some(slot_id) = fhir_id(&slot_id) else {
        return desk.refuse_at("book", p.date, StatusCode::UNPROCESSABLE_ENTITY, ctx.t(Key::ChooseSlot).into(), &uhid).await;
    };
    // The slot, and its schedule's doctor: the appointment names them and the department.
    let (status, slot) = desk.get(format!("/Slot/{slot_id}")).await;
    if !status.is_success() {
        return desk.refuse_at("book", p.date, status, outcome_message(&ctx, &slot), &uhid).await;
    }
    let (key, patient) = match desk.begin(&p, &submitted).await {
        Ok(v) => v,
        Err(Stop::Done(resp)) => return resp,
        Err(Stop::Page(status, message)) => return desk.refuse_at("book", p.date, status, message, &uhid).await,
    };
    let mut participants = vec![
        json!({"actor": {"reference": format!("Patient/{patient}")}, "status": "accepted"}),
        json!({"actor": {"reference": format!("HealthcareService/{dept}")}, "status": "accepted"}),
    ];
    if let Some(schedule) = slot["schedule"]["reference"].as_str() {
        let (st, sch) = desk.get(format!("/{schedule}")).await;
        if st.is_success()
            && let Some(doctor) = sch["actor"].as_array().into_iter().flatten().filter_map(|a| a["reference"].as_str()).find(|r| r.starts_with("Practitioner/"))
        {
            participants.push(json!({"actor": {"reference": doctor}, "status": "accepted"}));
        }
    }
    let appointment = json!({
        "resourceType": "Appointment", "status": "booked",
        "slot": [{"reference": format!("Slot/{slot_id}")}],
        "start": slot["start"], "end": slot["end"],
        "participant": participants
    });
    let (status, answer) = desk.post("/Appointment", &appointment).await;
    let made = answer["id"].as_str().filter(|_| status.is_success()).map(|_| hhmm(&zone(&app), slot["start"].as_str().unwrap_or_default()));
    submitted.settle(&key, made.clone());
    match made {
        Some(time) => back_to_day(dept, p.date, Some(&time)),
        None => desk.refuse_at("book", p.date, status, outcome_message(&ctx, &answer), &uhid).await,
    }
}

/// `POST /ui/opd/{dept}/queue`: move one appointment in the queue (check in, call, start,
/// done, no-show).
pub async fn queue(State(app): State<AppState>, Extension(fhir): Extension<Fhir>, peer: Peer, headers: HeaderMap, Path(dept): Path<String>, body: Bytes) -> Response {
    desk_for_post!(app, fhir, peer, headers, dept, body, ctx, s, desk, p);
    let id = (p.field)("appointment");
    let (Some(id), Ok(to)) = (fhir_id(&id), (p.field)("to").parse::<QueueState>()) else {
        return desk.refuse(p.date, StatusCode::BAD_REQUEST, ctx.t(Key::FormExpired).into(), "").await;
    };
    desk.move_in_queue(&p, id, to).await
}

/// `POST /ui/opd/{dept}/next`: call the waiting patient with the lowest token.
pub async fn call_next(State(app): State<AppState>, Extension(fhir): Extension<Fhir>, peer: Peer, headers: HeaderMap, Path(dept): Path<String>, body: Bytes) -> Response {
    desk_for_post!(app, fhir, peer, headers, dept, body, ctx, s, desk, p);
    let day = match desk.read_day(today(&app), false).await {
        Ok(d) => d,
        Err((status, message)) => return desk.refuse(p.date, status, message, "").await,
    };
    let Some(next) = day.rows.iter().filter(|r| r.state == "waiting" && !r.token.is_empty()).min_by_key(|r| token_number(&r.token)) else {
        return desk.refuse(p.date, StatusCode::CONFLICT, ctx.t(Key::NobodyWaiting).into(), "").await;
    };
    desk.move_in_queue(&p, &next.id, QueueState::Called).await
}

/// The number of a token such as `GM-017` (tokens of one department and day differ only in it).
fn token_number(token: &str) -> u32 {
    token.rsplit('-').next().and_then(|n| n.parse().ok()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_urls_are_fhir_ids_or_nothing() {
        assert_eq!(fhir_id("gen-med"), Some("gen-med"));
        for bad in ["", "a/b", "../x", "a b", "<x>", &"a".repeat(65)] {
            assert_eq!(fhir_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn tokens_order_by_their_number() {
        assert!(token_number("GM-009") < token_number("GM-010"));
        assert_eq!(token_number("junk"), u32::MAX);
    }
}
