//! The patient portal: signing in with a UHID or mobile number and a one-time code sent by SMS
//! to the mobile number registered on the patient's record, and "who has seen my record".
//!
//! Rules: a code is 6 digits, lives [`CODE_TTL_MS`], allows [`MAX_ATTEMPTS`] tries, and at most
//! [`MAX_SENDS`] codes are sent to one patient in [`SEND_WINDOW_MS`]; codes are kept hashed, in
//! memory only (a restart forgets them: ask for a new one). Whether a UHID or mobile number is
//! registered is not revealed: the page says the same when nothing could be sent. A signed-in
//! patient has the account `pt-<Patient id>` (role `patient`, made on first sign-in), whose
//! sessions are like staff sessions; every sign-in, good or bad, is an auth event.

use super::fhir_call::{Fhir, outcome_message};
use super::i18n::Key;
use super::{Ctx, SESSION_COOKIE, csrf_ok, form_fields, render, set_cookie, signed_in, to_login};
use crate::app::AppState;
use crate::auth::Peer;
use crate::auth::events::{Action, Outcome, Reason, record_auth_event};
use crate::sms::Gateway;
use askama::Template;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use vaidya_domain::Mobile;

pub const CODE_TTL_MS: i64 = 5 * 60_000;
pub const MAX_ATTEMPTS: u8 = 5;
pub const MAX_SENDS: usize = 3;
pub const SEND_WINDOW_MS: i64 = 15 * 60_000;
/// Codes waiting at most (older ones are dropped first when full).
const MAX_PENDING: usize = 100_000;

/// Codes sent and not yet used, by challenge (a random id the code page carries).
#[derive(Default)]
pub struct Codes {
    pending: Mutex<HashMap<String, Pending>>,
    sends: Mutex<HashMap<String, Vec<i64>>>,
}

struct Pending {
    patient: String,
    code_hash: [u8; 32],
    expires_ms: i64,
    attempts_left: u8,
}

/// The portal's pieces shared by its pages.
#[derive(Clone)]
pub struct Portal {
    pub codes: Arc<Codes>,
    pub sms: Arc<dyn Gateway>,
}

#[derive(Template)]
#[template(path = "web/patient_login.html")]
struct LoginPage<'a> {
    ctx: &'a Ctx,
    who: &'a str,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "web/patient_code.html")]
struct CodePage<'a> {
    ctx: &'a Ctx,
    challenge: &'a str,
    masked: &'a str,
    error: Option<String>,
}

pub async fn login_page(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let ctx = Ctx::of(&app, &headers, "/ui/patient/login");
    render(&app, &ctx, StatusCode::OK, &LoginPage { ctx: &ctx, who: "", error: None })
}

/// Step 1: a UHID or mobile number; a code goes to the registered mobile.
pub async fn send_code(State(app): State<AppState>, Extension(portal): Extension<Portal>, headers: HeaderMap, body: Bytes) -> Response {
    let ctx = Ctx::of(&app, &headers, "/ui/patient/login");
    let field = form_fields(&body);
    let who = field("who").trim().to_string();
    let again = |status, error: String| render(&app, &ctx, status, &LoginPage { ctx: &ctx, who: &who, error: Some(error) });
    if !csrf_ok(&headers, &field("csrf")) {
        return again(StatusCode::FORBIDDEN, ctx.t(Key::FormExpired).into());
    }
    let by_uhid = who.parse::<vaidya_domain::Uhid>().ok();
    let by_mobile = who.parse::<Mobile>().ok();
    if by_uhid.is_none() && by_mobile.is_none() {
        return again(StatusCode::BAD_REQUEST, ctx.t(Key::NotUhidOrMobile).into());
    }
    let found = app
        .read(move |conn| -> Result<Option<(String, Mobile)>, crate::error::ApiError> {
            let id = match (by_uhid, by_mobile) {
                (Some(u), _) => crate::fhir::registration::patient_for_uhid(conn, &u.to_string()).ok(),
                (None, Some(m)) => {
                    let pairs = vec![("phone".to_string(), m.to_string())];
                    let q = vaidya_store::search::parse_query("Patient", &pairs, vaidya_store::search::Handling::Strict)?;
                    let found = vaidya_store::search::run(conn, &q)?;
                    // Several patients on one mobile (a family): the UHID must say which.
                    match found.matches.as_slice() {
                        [one] => Some(one.id.clone()),
                        _ => None,
                    }
                }
                (None, None) => None,
            };
            let Some(id) = id else { return Ok(None) };
            let Some(stored) = vaidya_store::read::current(conn, "Patient", &id)? else { return Ok(None) };
            let patient: Value = serde_json::from_slice(&stored.content).unwrap_or(Value::Null);
            Ok(mobile_of(&patient).map(|m| (id, m)))
        })
        .await;
    let not_sent = || again(StatusCode::OK, ctx.t(Key::CodeNotSent).into());
    let (patient, mobile) = match found {
        Ok(Some(p)) => p,
        Ok(None) => return not_sent(),
        Err(e) => {
            tracing::error!("patient sign-in lookup failed: {:?}", e.issues);
            return again(StatusCode::INTERNAL_SERVER_ERROR, ctx.t(Key::TryLater).into());
        }
    };
    let now = vaidya_store::now_ms();
    {
        let mut sends = portal.codes.sends.lock().expect("not poisoned");
        let times = sends.entry(patient.clone()).or_default();
        times.retain(|t| now - t < SEND_WINDOW_MS);
        if times.len() >= MAX_SENDS {
            return again(StatusCode::TOO_MANY_REQUESTS, ctx.t(Key::TooManyCodes).into());
        }
        times.push(now);
    }
    let code = format!("{:06}", uuid::Uuid::new_v4().as_u128() % 1_000_000);
    let challenge = uuid::Uuid::new_v4().simple().to_string();
    let text = format!("{}: your sign-in code is {code}. It expires in 5 minutes. Do not share it with anyone.", app.config.hospital_name);
    if let Err(e) = portal.sms.send(&mobile, &text) {
        tracing::error!("the sign-in code could not be sent: {e}");
        return again(StatusCode::SERVICE_UNAVAILABLE, ctx.t(Key::TryLater).into());
    }
    {
        let mut pending = portal.codes.pending.lock().expect("not poisoned");
        pending.retain(|_, p| p.expires_ms > now);
        if pending.len() >= MAX_PENDING {
            pending.clear();
        }
        pending.insert(challenge.clone(), Pending { patient, code_hash: vaidya_access::token::hash_secret(&code), expires_ms: now + CODE_TTL_MS, attempts_left: MAX_ATTEMPTS });
    }
    let national = mobile.national();
    let masked = format!("******{}", &national[national.len() - 4..]);
    render(&app, &ctx, StatusCode::OK, &CodePage { ctx: &ctx, challenge: &challenge, masked: &masked, error: None })
}

/// The first mobile number on a Patient (`telecom` phone, `use` mobile first).
fn mobile_of(patient: &Value) -> Option<Mobile> {
    let phones: Vec<&Value> = patient["telecom"].as_array().into_iter().flatten().filter(|t| t["system"] == "phone").collect();
    let mobile_first = phones.iter().filter(|t| t["use"] == "mobile").chain(phones.iter().filter(|t| t["use"] != "mobile"));
    mobile_first.filter_map(|t| t["value"].as_str()).find_map(|v| v.parse::<Mobile>().ok())
}

/// Step 2: the code; a session for the patient's own account.
pub async fn verify_code(State(app): State<AppState>, Extension(portal): Extension<Portal>, peer: Peer, headers: HeaderMap, body: Bytes) -> Response {
    let ctx = Ctx::of(&app, &headers, "/ui/patient/login");
    let field = form_fields(&body);
    let (challenge, code) = (field("challenge"), field("code").trim().to_string());
    let who = crate::auth::client(&app, &headers, &peer);
    if !csrf_ok(&headers, &field("csrf")) {
        return render(&app, &ctx, StatusCode::FORBIDDEN, &LoginPage { ctx: &ctx, who: "", error: Some(ctx.t(Key::FormExpired).into()) });
    }
    let now = vaidya_store::now_ms();
    let checked = {
        let mut pending = portal.codes.pending.lock().expect("not poisoned");
        match pending.get_mut(&challenge) {
            None => Err(None),
            Some(p) if p.expires_ms <= now => {
                pending.remove(&challenge);
                Err(None)
            }
            Some(p) => {
                if vaidya_access::token::matches(&code, &p.code_hash) {
                    Ok(pending.remove(&challenge).expect("present").patient)
                } else {
                    p.attempts_left = p.attempts_left.saturating_sub(1);
                    let patient = p.patient.clone();
                    if p.attempts_left == 0 {
                        pending.remove(&challenge);
                        Err(Some((patient, false)))
                    } else {
                        Err(Some((patient, true)))
                    }
                }
            }
        }
    };
    let patient = match checked {
        Ok(p) => p,
        Err(failed) => {
            let (user, retry) = match &failed {
                Some((p, retry)) => (account_name(p), *retry),
                None => ("unknown".to_string(), false),
            };
            record_auth_event(&app, who.event(Action::Login, &user, Outcome::Failure, Some(Reason::BadCode)));
            if retry {
                let masked = String::new();
                return render(&app, &ctx, StatusCode::UNAUTHORIZED, &CodePage { ctx: &ctx, challenge: &challenge, masked: &masked, error: Some(ctx.t(Key::WrongCode).into()) });
            }
            return render(&app, &ctx, StatusCode::UNAUTHORIZED, &LoginPage { ctx: &ctx, who: "", error: Some(ctx.t(Key::CodeExpired).into()) });
        }
    };
    let name = account_name(&patient);
    let t = vaidya_access::token::generate();
    let expires = now + (app.config.auth.session_max_seconds as i64).saturating_mul(1000);
    let (n, p, id, secret_hash) = (name.clone(), patient.clone(), t.id.clone(), t.secret_hash);
    let started = app
        .store
        .write(move |tx| -> Result<bool, vaidya_store::StoreError> {
            let c = tx.conn();
            if vaidya_store::tokens::insert_user(c, &n, "patient", None, None, false)? {
                vaidya_store::tokens::set_user_patient(c, &n, &p)?;
            }
            // An existing account of that name must be this patient's own, and enabled.
            let Some(row) = vaidya_store::tokens::find_login(c, &n)? else { return Ok(false) };
            if row.role != "patient" || row.disabled_ms.is_some() || vaidya_store::tokens::user_patient(c, &n)?.as_deref() != Some(p.as_str()) {
                return Ok(false);
            }
            vaidya_store::tokens::record_login_success(c, &n)?;
            vaidya_store::tokens::insert_token_of_kind(c, &id, &secret_hash, &n, Some(expires), vaidya_store::tokens::KIND_SESSION, None)?;
            Ok(true)
        })
        .await;
    match started {
        Ok(true) => {
            let mut e = who.event(Action::Login, &name, Outcome::Success, None);
            e.token_id = Some(t.id.clone());
            record_auth_event(&app, e);
            super::redirect_with_cookie("/ui/", set_cookie(&app, SESSION_COOKIE, &t.text, Some(app.config.auth.session_max_seconds)))
        }
        Ok(false) => {
            record_auth_event(&app, who.event(Action::Login, &name, Outcome::Failure, Some(Reason::Disabled)));
            render(&app, &ctx, StatusCode::FORBIDDEN, &LoginPage { ctx: &ctx, who: "", error: Some(ctx.t(Key::AccountBlocked).into()) })
        }
        Err(e) => {
            tracing::error!("patient session could not be started: {e}");
            render(&app, &ctx, StatusCode::INTERNAL_SERVER_ERROR, &LoginPage { ctx: &ctx, who: "", error: Some(ctx.t(Key::TryLater).into()) })
        }
    }
}

/// The account a patient signs in to: `pt-<Patient id>` (a hash of a very long id).
pub fn account_name(patient_id: &str) -> String {
    if patient_id.len() <= 61 {
        format!("pt-{patient_id}")
    } else {
        format!("pt-{}", &hex_of(&Sha256::digest(patient_id.as_bytes()))[..32])
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Template)]
#[template(path = "web/my_access.html")]
struct MyAccessPage<'a> {
    ctx: &'a Ctx,
    error: Option<String>,
    rows: Vec<super::audit::Row>,
    total: u64,
}

/// "Who has seen my record": the patient's own audit trail.
pub async fn my_access(State(app): State<AppState>, Extension(fhir): Extension<Fhir>, peer: Peer, headers: HeaderMap) -> Response {
    let ctx = Ctx::of(&app, &headers, "/ui/my/access");
    let Some(s) = signed_in(&app, &headers) else { return to_login("/ui/my/access") };
    let Some(own) = s.principal.patient.clone().filter(|_| s.principal.role == "patient") else {
        return Redirect::to("/ui/").into_response();
    };
    let (status, answer) = fhir.get(&s.token, &headers, peer.map(|p| p.0.0), &format!("/AuditEvent?patient=Patient/{own}&_count=1000")).await;
    if !status.is_success() {
        return render(&app, &ctx, status, &MyAccessPage { ctx: &ctx, error: Some(outcome_message(&ctx, &answer)), rows: vec![], total: 0 });
    }
    let rows = super::audit::rows_of(&app, &answer);
    let total = answer["total"].as_u64().unwrap_or(0);
    render(&app, &ctx, StatusCode::OK, &MyAccessPage { ctx: &ctx, error: None, rows, total })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_code_goes_to_the_registered_mobile_number() {
        let p = json!({"telecom": [
            {"system": "email", "value": "sita@example.org"},
            {"system": "phone", "use": "home", "value": "011 2345 6789"},
            {"system": "phone", "use": "home", "value": "+91 91234 56789"},
            {"system": "phone", "use": "mobile", "value": "98765-43210"}
        ]});
        assert_eq!(mobile_of(&p).map(|m| m.national()), Some("9876543210".to_string()), "the mobile one first");
        let home_only = json!({"telecom": [{"system": "phone", "value": "9123456789"}]});
        assert_eq!(mobile_of(&home_only).map(|m| m.national()), Some("9123456789".to_string()));
        assert_eq!(mobile_of(&json!({"telecom": [{"system": "phone", "value": "011 2345 6789"}]})), None, "a landline gets no SMS");
        assert_eq!(mobile_of(&json!({})), None);
    }

    #[test]
    fn a_patients_account_name_is_valid_for_any_patient_id() {
        assert_eq!(account_name("pt-1"), "pt-pt-1");
        let long = "a".repeat(64);
        let name = account_name(&long);
        assert!(name.len() <= 64 && name.starts_with("pt-") && name != account_name(&"b".repeat(64)));
    }
}
