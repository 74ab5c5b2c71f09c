//! The web UI under `/ui`: server-rendered pages (askama templates in `templates/web/`) for
//! staff and patients, in English and Hindi.
//!
//! How a page gets its data: it calls the FHIR API in-process (`fhir_call.rs`) with the
//! signed-in person's own session token, so every screen is decided by the same Cedar policies
//! and leaves the same audit records as an API client would; a page never reads the database
//! behind the policies' back.
//!
//! Sessions and forms:
//! - Signing in (`login.rs`) starts the same session as `POST /auth/login`; its token travels
//!   in the cookie `vaidya_session` (HttpOnly, SameSite=Strict, `Secure` unless
//!   `[auth] secure_cookies = false`, path `/ui`).
//! - Every form carries a CSRF token equal to the cookie `vaidya_csrf` (random, HttpOnly,
//!   SameSite=Strict), and every POST is refused unless the two match: another site can
//!   neither read the cookie nor send it.
//! - Pages are sent with a Content-Security-Policy that allows no scripts and nothing from
//!   other origins; values are HTML-escaped by the templates.
//!
//! Screens: `login.rs` (sign in, sign out), `home` below, `audit.rs` (who accessed a record:
//! privacy officer and auditors), `registration.rs` (the registration desk), `opd.rs` (a
//! department's day, booking, walk-in tokens, the queue and its board), `chart.rs` (the
//! doctor's chart of a patient, and notes, diagnoses and orders during a visit), `lab.rs`
//! (the laboratory's worklist, collection, result entry, verification, release, printing),
//! `billing.rs` (the billing counter: charges, invoice, payment, receipt, refund, day end),
//! `admin.rs` (departments, doctors, schedules, tariff, staff accounts), `reconciliation.rs`
//! (what department nodes handed back that a person must settle), `patient.rs` (the
//! patient portal's sign-in and access log), `portal.rs` (the patient's appointments, reports
//! and bills).

mod admin;
mod audit;
mod billing;
mod chart;
mod fhir_call;
pub mod i18n;
mod lab;
mod login;
mod opd;
pub mod patient;
mod portal;
mod reconciliation;
mod registration;

use crate::app::{AppState, Principal};
use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use fhir_call::Fhir;
use i18n::{Key, Lang};

pub const SESSION_COOKIE: &str = "vaidya_session";
pub const CSRF_COOKIE: &str = "vaidya_csrf";
pub const LANG_COOKIE: &str = "vaidya_lang";
/// Largest form body accepted.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

const CSS: &str = include_str!("../../templates/web/app.css");
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn router(state: AppState) -> Router<AppState> {
    let fhir = Fhir::new(&state);
    let portal = patient::Portal {
        codes: std::sync::Arc::new(patient::Codes::default()),
        sms: std::sync::Arc::new(crate::sms::Outbox::new(crate::sms::outbox_dir(&state.config.data))),
    };
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(home))
        .route("/ui/login", get(login::page).post(login::submit))
        .route("/ui/logout", post(login::logout))
        .route("/ui/password", get(login::password_page).post(login::change_password))
        .route("/ui/lang", get(switch_lang))
        .route("/ui/audit", get(audit::page))
        .route("/ui/patient/login", get(patient::login_page).post(patient::send_code))
        .route("/ui/patient/code", post(patient::verify_code))
        .route("/ui/my/access", get(patient::my_access))
        .route("/ui/my/appointments", get(portal::appointments))
        .route("/ui/my/cancel", post(portal::cancel))
        .route("/ui/my/book", get(portal::book_form).post(portal::book))
        .route("/ui/my/reports", get(portal::reports))
        .route("/ui/my/report/{id}", get(portal::report))
        .route("/ui/my/report/{id}/download", get(portal::download))
        .route("/ui/my/bills", get(portal::bills))
        .route("/ui/registration", get(registration::search))
        .route("/ui/registration/new", get(registration::new_form).post(registration::register))
        .route("/ui/registration/slip", get(registration::slip))
        .route("/ui/chart/{patient}", get(chart::page))
        .route("/ui/chart/{patient}/{what}", post(chart::write))
        .route("/ui/admin", get(admin::page))
        .route("/ui/admin/done", get(admin::done))
        .route("/ui/admin/{what}", post(admin::act))
        .route("/ui/reconciliation", get(reconciliation::page))
        .route("/ui/reconciliation/{id}", post(reconciliation::settle))
        .route("/ui/billing", get(billing::page))
        .route("/ui/billing/day", get(billing::day_end))
        .route("/ui/billing/receipt/{invoice}/{receipt}", get(billing::receipt))
        .route("/ui/billing/{action}", post(billing::act))
        .route("/ui/lab", get(lab::worklist))
        .route("/ui/lab/collect", post(lab::collect))
        .route("/ui/lab/results/{request}", get(lab::results_form).post(lab::enter_results))
        .route("/ui/lab/report/{id}/{step}", post(lab::report_step))
        .route("/ui/lab/print/{id}", get(lab::print))
        .route("/ui/opd", get(opd::departments))
        .route("/ui/opd/{dept}", get(opd::day))
        .route("/ui/opd/{dept}/board", get(opd::board))
        .route("/ui/opd/{dept}/walk-in", post(opd::walk_in))
        .route("/ui/opd/{dept}/book", post(opd::book))
        .route("/ui/opd/{dept}/queue", post(opd::queue))
        .route("/ui/opd/{dept}/next", post(opd::call_next))
        .route("/ui/static/app.css", get(css))
        .layer(axum::Extension(fhir))
        .layer(axum::Extension(fhir_call::Printer::new(&state)))
        .layer(axum::Extension(portal))
        .layer(axum::Extension(std::sync::Arc::new(registration::Submitted::default())))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM_BYTES))
}

/// What every page knows about the request: language, CSRF token, the signed-in person.
pub struct Ctx {
    pub lang: Lang,
    pub csrf: String,
    /// A new CSRF cookie to set (the browser had none).
    new_csrf: bool,
    pub hospital: String,
    pub path: String,
}

impl Ctx {
    pub fn of(app: &AppState, headers: &HeaderMap, path: &str) -> Ctx {
        let lang = cookie(headers, LANG_COOKIE).map(Lang::from_code).unwrap_or_default();
        let (csrf, new_csrf) = match cookie(headers, CSRF_COOKIE).filter(|c| c.len() == 32 && c.bytes().all(|b| b.is_ascii_hexdigit())) {
            Some(c) => (c.to_string(), false),
            None => (uuid::Uuid::new_v4().simple().to_string(), true),
        };
        Ctx { lang, csrf, new_csrf, hospital: app.config.hospital_name.clone(), path: path.to_string() }
    }

    pub fn t(&self, key: Key) -> &'static str {
        self.lang.t(key)
    }

    /// A record's code (a status, a sex, a payment mode) in the page's language.
    pub fn code(&self, code: &str) -> String {
        self.lang.word_for(code)
    }

    /// The link that shows this page in the other language.
    pub fn switch_href(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        s.append_pair("to", self.lang.other().code());
        s.append_pair("next", &self.path);
        format!("/ui/lang?{}", s.finish())
    }
}

/// The signed-in person, from the session cookie (a valid, unexpired session of an enabled
/// account), with the token for calls to the FHIR API.
pub struct Signed {
    pub principal: Principal,
    pub token: String,
}

pub fn signed_in(app: &AppState, headers: &HeaderMap) -> Option<Signed> {
    let (bearer, token) = session(app, headers)?;
    if bearer.row.must_change_password {
        return None;
    }
    Some(Signed { principal: bearer.principal, token: token.to_string() })
}

/// The valid session behind the cookie and its token, one-time-password sessions included
/// (only the password page and sign-out take those; every other page uses [`signed_in`]).
pub fn session<'a>(app: &AppState, headers: &'a HeaderMap) -> Option<(crate::auth::Bearer, &'a str)> {
    let token = cookie(headers, SESSION_COOKIE)?;
    Some((crate::auth::bearer(app, token).ok().flatten()?, token))
}

/// A posted form or a query string (`application/x-www-form-urlencoded`): a field's value by
/// name, `""` if absent (the first if repeated).
pub fn form_fields(body: &[u8]) -> impl Fn(&str) -> String + use<> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default()
}

/// A cookie's value from the request (the first of that name).
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `Set-Cookie` for one of our cookies.
pub fn set_cookie(app: &AppState, name: &str, value: &str, max_age_seconds: Option<u64>) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/ui; HttpOnly; SameSite=Strict");
    if app.config.auth.secure_cookies {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age_seconds {
        c.push_str(&format!("; Max-Age={age}"));
    }
    HeaderValue::from_str(&c).expect("cookie values are token characters")
}

/// Whether a posted form's CSRF field matches the browser's cookie (compared in constant time).
pub fn csrf_ok(headers: &HeaderMap, posted: &str) -> bool {
    let Some(expected) = cookie(headers, CSRF_COOKIE) else { return false };
    expected.len() == posted.len() && expected.bytes().zip(posted.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// An HTML page with the UI's security headers (and the CSRF cookie if the browser had none).
pub fn page(app: &AppState, ctx: &Ctx, status: StatusCode, html: String) -> Response {
    let html = match crate::node::link::banner(app) {
        Some(banner) => crate::node::link::with_banner(html, &banner),
        None => html,
    };
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if ctx.new_csrf {
        h.append(header::SET_COOKIE, set_cookie(app, CSRF_COOKIE, &ctx.csrf, None));
    }
    resp
}

pub fn render(app: &AppState, ctx: &Ctx, status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => page(app, ctx, status, html),
        Err(e) => {
            tracing::error!("page template failed: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be drawn").into_response()
        }
    }
}

/// A redirect to `to` that sets one cookie (a session, a sign-out, a language).
pub fn redirect_with_cookie(to: &str, cookie: HeaderValue) -> Response {
    let mut resp = Redirect::to(to).into_response();
    resp.headers_mut().append(header::SET_COOKIE, cookie);
    resp
}

/// To the sign-in page, coming back to `next` afterwards.
pub fn to_login(next: &str) -> Response {
    let mut s = form_urlencoded::Serializer::new(String::new());
    s.append_pair("next", next);
    Redirect::to(&format!("/ui/login?{}", s.finish())).into_response()
}

/// A path to go on to after signing in or switching language: only pages of this UI.
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with("/ui/") && !n.starts_with("/ui//") && !n.contains('\\') => n,
        _ => "/ui/",
    }
}

#[derive(Template)]
#[template(path = "web/home.html")]
struct HomePage<'a> {
    ctx: &'a Ctx,
    user: &'a str,
    role: &'a str,
    oversight: bool,
    patient: bool,
    desk: bool,
    opd: bool,
    lab: bool,
    billing: bool,
    admin: bool,
}

async fn home(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let ctx = Ctx::of(&app, &headers, "/ui/");
    let Some(s) = signed_in(&app, &headers) else { return to_login("/ui/") };
    let oversight = matches!(s.principal.role.as_str(), "privacy-officer" | "auditor");
    let patient = s.principal.role == "patient";
    let desk = s.principal.role == "registration";
    let opd = matches!(s.principal.role.as_str(), "registration" | "doctor" | "nurse");
    let lab = matches!(s.principal.role.as_str(), "lab" | "radiology");
    let billing = s.principal.role == "billing";
    let admin = s.principal.role == "admin";
    render(&app, &ctx, StatusCode::OK, &HomePage { ctx: &ctx, user: &s.principal.user, role: &s.principal.role, oversight, patient, desk, opd, lab, billing, admin })
}

async fn switch_lang(State(app): State<AppState>, axum::extract::RawQuery(q): axum::extract::RawQuery) -> Response {
    let field = form_fields(q.unwrap_or_default().as_bytes());
    let lang = Lang::from_code(&field("to"));
    redirect_with_cookie(safe_next(Some(&field("next"))), set_cookie(&app, LANG_COOKIE, lang.code(), Some(365 * 24 * 3600)))
}

async fn css() -> Response {
    let mut resp = CSS.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pages_of_this_ui_are_places_to_go_next() {
        assert_eq!(safe_next(Some("/ui/audit?uhid=1")), "/ui/audit?uhid=1");
        for away in ["https://evil.example/", "//evil.example/ui/", "/ui//evil.example", "/ui/\\evil", "/fhir/Patient", "", "ui/"] {
            assert_eq!(safe_next(Some(away)), "/ui/", "{away}");
        }
        assert_eq!(safe_next(None), "/ui/");
    }

    #[test]
    fn cookies_and_csrf_fields_are_read_exactly() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; vaidya_csrf=0123456789abcdef0123456789abcdef"));
        h.append(header::COOKIE, HeaderValue::from_static("vaidya_session=vdy_x_y"));
        assert_eq!(cookie(&h, "vaidya_session"), Some("vdy_x_y"));
        assert_eq!(cookie(&h, "vaidya"), None);
        assert!(csrf_ok(&h, "0123456789abcdef0123456789abcdef"));
        assert!(!csrf_ok(&h, "0123456789abcdef0123456789abcdee"));
        assert!(!csrf_ok(&h, ""));
        assert!(!csrf_ok(&HeaderMap::new(), ""), "no cookie, no form");
        let field = form_fields(b"user=reg.asha&password=a%20b%26c&user=second");
        assert_eq!((field("user"), field("password"), field("totp")), ("reg.asha".into(), "a b&c".into(), String::new()));
    }

    #[test]
    fn every_text_has_both_languages() {
        use Key::*;
        let keys = [
            SignIn, User, Password, TotpCode, TotpHint, SignOut, SignedInAs, Home, Switch, AuditTrail, AuditIntro, Uhid, Show, Time, Who,
            Role, Action, Outcome, From, Why, Records, NoEvents, Events, NothingHereYet, FormExpired, PatientSignIn,
            StaffSignIn, UhidOrMobile, UhidOrMobileHint, SendCode, Code, CodeSentTo, NotUhidOrMobile, CodeNotSent, TooManyCodes, WrongCode,
            CodeExpired, AccountBlocked, TryLater, MyAccess, MyAccessIntro,
            RegistrationDesk, FindPatient, SearchLabel, Search, SearchHow, NoneFound, RegisterNew, Name, GivenName, FamilyName, Sex, Male, Female, OtherSex, UnknownSex, BirthDate, AgeYears, Mobile, Register, PossibleDuplicates, NotADuplicate, MatchReason, NeedName, BadName, NeedGender, BadBirth, BadAge, NeedBirth, BadMobile, BeingSaved, UhidSlip, Registered, Print,
            ChangePassword, ChangePasswordIntro, OldPassword, NewPassword, RepeatPassword, PasswordsDiffer, Save,
            Opd, QueueBoard, Date, Queue, CallNext, NoAppointments, Token, QueueState, WalkIn, GiveToken, Book, Slot, ChooseSlot, Slots, NoSlots, Doctor, SlotFree, SlotFull, NowCalling, Administration, AdminOnly, BadId, Saved, ChooseDays, BadScheduleNumbers, BadTimes, SlotsMade, NoPatientAccounts, NameTaken, AccountMade, Doctors, Tariff, StaffAccounts, Id, HindiName, AddDepartment, AddDoctor, WeeklyOpd, Start, End, SlotMinutes, Capacity, DaysAhead, MakeSlots, NewPrice, SetPrice, AccountState, PractitionerRecord, MakeAccount, OneTimeShown, BookedNotice, CancelledNotice, CancelBooking, Department, ChooseDepartment, NoFreeSlots, MyAppointments, MyReports, MyBills, View, Download, NoBills, BillingCounter, DayEnd, OpenCharges, NoCharges, Item, Quantity, Price, MakeInvoice, Invoices, Total, Paid, Due, AmountRupees, Mode, CashWord, CardWord, Pay, Reason, RefundAction, Payment, Refund, ReceiptNo, Cashier, Payments, Refunded, Drawer, Net, BadAmount, ChooseMode, NeedReason, Laboratory, ToCollect, ToEnter, ToVerify, ToRelease, Released, Ordered, Barcode, ScanOrLeaveEmpty, Collect, Collected, EnterResults, Verify, Release, Value, Unit, Low, High, FlagsHint, SaveResults, ResultNeedsName, BadLoinc, BadValue, BadRange, NeedUnit, NoResultsEntered, CollectFirst, Chart, Results, NoResults, Test, Latest, Range, Trend, New, ThisVisit, Note, Diagnosis, Provisional, OrderTest, ChooseTest, Order, VisitHint, NoVisitOpen, Diagnoses, Orders, Notes, Visits, NoteLength, DiagnosisLength, QWaiting, QCalled, QInConsultation, QDone, QNoShow, QCancelled, QBooked, CheckIn, Call, MarkNoShow, StartConsultation, BackToWaiting, MarkDone, BadDate, TokenGiven, BadUhid, NoSuchUhid, NobodyWaiting,
        ];
        for k in keys {
            let (en, hi) = (Lang::En.t(k), Lang::Hi.t(k));
            assert!(!en.is_empty() && !hi.is_empty() && en != hi, "{k:?}");
        }
        // Hindi is written in Devanagari (U+0900-U+097F), apart from the switch, which names English.
        assert!(Lang::Hi.t(SignIn).chars().any(|c| ('\u{0900}'..='\u{097F}').contains(&c)));
    }
}
