//! The registration desk: find a patient first (UHID, mobile number or name), and register a
//! new one with the duplicate check, then the UHID slip. Everything goes through the FHIR API
//! as the signed-in clerk (`Patient?...`, `Patient/$duplicates`, `POST Patient`).
//!
//! Forms: every field is checked here and its error shown next to it; a form carries a random
//! key, and a key already used shows the patient it registered instead of registering again
//! (a double click, a reload, a second tab): [`Submitted`].

use super::fhir_call::{Fhir, outcome_message};
use super::i18n::Key;
use super::{Ctx, csrf_ok, form_fields, render, signed_in, to_login};
use crate::app::AppState;
use crate::auth::Peer;
use askama::Template;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use vaidya_domain::{Mobile, Uhid};

/// Patients listed for one search.
const SHOWN: usize = 50;
/// Form keys remembered (the oldest are forgotten first when full).
const MAX_KEYS: usize = 50_000;

/// Form keys already submitted: `None` while the registration runs, then the Patient id.
#[derive(Default)]
pub struct Submitted(Mutex<HashMap<String, Option<String>>>);

impl Submitted {
    /// Claim a form key before doing what the form asks: `Err` when it was used already, with
    /// what it made (`Some`), or `None` while that is still being saved.
    pub(super) fn claim(&self, key: &str) -> Result<(), Option<String>> {
        let mut keys = self.0.lock().expect("not poisoned");
        match keys.get(key) {
            Some(done) => Err(done.clone()),
            None => {
                if keys.len() >= MAX_KEYS {
                    keys.clear();
                }
                keys.insert(key.to_string(), None);
                Ok(())
            }
        }
    }

    /// After the form's work: remember what it made, or free the key if it failed.
    pub(super) fn settle(&self, key: &str, made: Option<String>) {
        let mut keys = self.0.lock().expect("not poisoned");
        match made {
            Some(m) => {
                keys.insert(key.to_string(), Some(m));
            }
            None => {
                keys.remove(key);
            }
        }
    }
}

/// One patient in a list.
pub struct Found {
    pub id: String,
    pub uhid: String,
    pub name: String,
    pub gender: String,
    pub birth: String,
    pub mobile: String,
    pub why: String,
}

/// The sex as the page's language says it.
fn sex_label(lang: super::i18n::Lang, code: &str) -> String {
    let key = match code {
        "male" => Key::Male,
        "female" => Key::Female,
        "other" => Key::OtherSex,
        "unknown" => Key::UnknownSex,
        other => return other.to_string(),
    };
    lang.t(key).to_string()
}

fn found_of(p: &Value, why: &str, lang: super::i18n::Lang) -> Found {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let uhid = p["identifier"].as_array().into_iter().flatten().find(|i| i["system"] == crate::fhir::UHID_SYSTEM).map(|i| s(&i["value"]));
    let names = p["name"].as_array().cloned().unwrap_or_default();
    let name = names
        .iter()
        .map(|n| match n["text"].as_str() {
            Some(t) => t.to_string(),
            None => {
                let given: Vec<String> = n["given"].as_array().into_iter().flatten().filter_map(|g| g.as_str().map(str::to_string)).collect();
                format!("{} {}", given.join(" "), n["family"].as_str().unwrap_or_default()).trim().to_string()
            }
        })
        .filter(|n| !n.is_empty())
        .collect::<Vec<_>>()
        .join(" / ");
    let mobile = p["telecom"].as_array().into_iter().flatten().find(|t| t["system"] == "phone").map(|t| s(&t["value"])).unwrap_or_default();
    Found { id: s(&p["id"]), uhid: uhid.unwrap_or_default(), name, gender: sex_label(lang, p["gender"].as_str().unwrap_or_default()), birth: s(&p["birthDate"]), mobile, why: why.to_string() }
}

#[derive(Template)]
#[template(path = "web/registration.html")]
struct SearchPage<'a> {
    ctx: &'a Ctx,
    q: &'a str,
    error: Option<String>,
    found: Option<Vec<Found>>,
}

/// `GET /ui/registration?q=`: the desk's first screen, a search.
pub async fn search(State(app): State<AppState>, Extension(fhir): Extension<Fhir>, peer: Peer, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let q = form_fields(raw.unwrap_or_default().as_bytes())("q").trim().to_string();
    let path = { form_urlencoded::Serializer::new("/ui/registration?".to_string()).append_pair("q", &q).finish() };
    let ctx = Ctx::of(&app, &headers, &path);
    let Some(s) = signed_in(&app, &headers) else { return to_login(&ctx.path) };
    if q.is_empty() {
        return render(&app, &ctx, StatusCode::OK, &SearchPage { ctx: &ctx, q: "", error: None, found: None });
    }
    let (param, value) = if let Ok(u) = q.parse::<Uhid>() {
        ("identifier", format!("{}|{u}", crate::fhir::UHID_SYSTEM))
    } else if let Ok(m) = q.parse::<Mobile>() {
        ("phone", m.to_string())
    } else if q.chars().filter(|c| c.is_alphabetic()).count() >= 2 && q.chars().count() <= 100 {
        ("name", q.clone())
    } else {
        let error = Some(ctx.t(Key::SearchHow).to_string());
        return render(&app, &ctx, StatusCode::BAD_REQUEST, &SearchPage { ctx: &ctx, q: &q, error, found: None });
    };
    let query = { form_urlencoded::Serializer::new(String::new()).append_pair(param, &value).append_pair("_count", &SHOWN.to_string()).finish() };
    let (status, answer) = fhir.get(&s.token, &headers, peer.map(|p| p.0.0), &format!("/Patient?{query}")).await;
    if !status.is_success() {
        return render(&app, &ctx, status, &SearchPage { ctx: &ctx, q: &q, error: Some(outcome_message(&ctx, &answer)), found: None });
    }
    let found = answer["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| found_of(&e["resource"], "", ctx.lang))
        .collect();
    render(&app, &ctx, StatusCode::OK, &SearchPage { ctx: &ctx, q: &q, error: None, found: Some(found) })
}

/// What the clerk typed, and what is wrong with it, field by field.
#[derive(Default)]
pub struct Form {
    pub key: String,
    pub given: String,
    pub family: String,
    pub gender: String,
    pub birth: String,
    pub age: String,
    pub mobile: String,
    pub errors: HashMap<&'static str, &'static str>,
}

impl Form {
    fn from_body(body: &[u8]) -> Form {
        let f = form_fields(body);
        Form {
            key: f("key"),
            given: f("given").trim().to_string(),
            family: f("family").trim().to_string(),
            gender: f("gender"),
            birth: f("birth").trim().to_string(),
            age: f("age").trim().to_string(),
            mobile: f("mobile").trim().to_string(),
            errors: HashMap::new(),
        }
    }

    pub fn error(&self, field: &str) -> Option<&'static str> {
        self.errors.get(field).copied()
    }

    /// The Patient to register, or the errors (in `self.errors`, as [`Key`] texts).
    fn check(&mut self, lang: super::i18n::Lang, today: vaidya_domain::schedule::LocalDate) -> Option<Value> {
        let t = |k| lang.t(k);
        let name_ok = |s: &str| s.chars().count() <= 100 && !s.chars().any(|c| c.is_control() || "<>{}[]\\\"".contains(c));
        if self.given.is_empty() {
            self.errors.insert("given", t(Key::NeedName));
        } else if !name_ok(&self.given) {
            self.errors.insert("given", t(Key::BadName));
        }
        if !name_ok(&self.family) {
            self.errors.insert("family", t(Key::BadName));
        }
        if !["male", "female", "other", "unknown"].contains(&self.gender.as_str()) {
            self.errors.insert("gender", t(Key::NeedGender));
        }
        let birth = match (self.birth.is_empty(), self.age.is_empty()) {
            (false, _) => match self.birth.parse::<vaidya_domain::schedule::LocalDate>() {
                Ok(d) if d <= today && d.year() >= 1880 => Some(d.to_string()),
                _ => {
                    self.errors.insert("birth", t(Key::BadBirth));
                    None
                }
            },
            (true, false) => match self.age.parse::<i32>() {
                Ok(a) if (0..=130).contains(&a) => Some(format!("{:04}", today.year() - a)),
                _ => {
                    self.errors.insert("age", t(Key::BadAge));
                    None
                }
            },
            (true, true) => {
                self.errors.insert("birth", t(Key::NeedBirth));
                None
            }
        };
        let mobile = if self.mobile.is_empty() {
            None
        } else {
            match self.mobile.parse::<Mobile>() {
                Ok(m) => Some(m.to_string()),
                Err(_) => {
                    self.errors.insert("mobile", t(Key::BadMobile));
                    None
                }
            }
        };
        if !self.errors.is_empty() {
            return None;
        }
        let mut name = json!({"use": "official", "given": [self.given]});
        if !self.family.is_empty() {
            name["family"] = json!(self.family);
        }
        let mut p = json!({"resourceType": "Patient", "active": true, "name": [name], "gender": self.gender, "birthDate": birth});
        if let Some(m) = mobile {
            p["telecom"] = json!([{"system": "phone", "use": "mobile", "value": m}]);
        }
        Some(p)
    }
}

#[derive(Template)]
#[template(path = "web/register.html")]
struct RegisterPage<'a> {
    ctx: &'a Ctx,
    form: &'a Form,
    duplicates: Vec<Found>,
    error: Option<String>,
}

/// `GET /ui/registration/new`: an empty form with a fresh key.
pub async fn new_form(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let ctx = Ctx::of(&app, &headers, "/ui/registration/new");
    if signed_in(&app, &headers).is_none() {
        return to_login(&ctx.path);
    }
    let form = Form { key: uuid::Uuid::new_v4().simple().to_string(), ..Form::default() };
    render(&app, &ctx, StatusCode::OK, &RegisterPage { ctx: &ctx, form: &form, duplicates: vec![], error: None })
}

/// `POST /ui/registration/new`: check, look for duplicates (unless the clerk has seen them and
/// confirms), register, and show the slip.
pub async fn register(
    State(app): State<AppState>,
    Extension(fhir): Extension<Fhir>,
    Extension(submitted): Extension<Arc<Submitted>>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ctx = Ctx::of(&app, &headers, "/ui/registration/new");
    let Some(s) = signed_in(&app, &headers) else { return to_login(&ctx.path) };
    let fields = form_fields(&body);
    let mut form = Form::from_body(&body);
    let page = |form: &Form, status, duplicates, error| render(&app, &ctx, status, &RegisterPage { ctx: &ctx, form, duplicates, error });
    if !csrf_ok(&headers, &fields("csrf")) {
        return page(&form, StatusCode::FORBIDDEN, vec![], Some(ctx.t(Key::FormExpired).into()));
    }
    if form.key.len() != 32 || !form.key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return page(&form, StatusCode::BAD_REQUEST, vec![], Some(ctx.t(Key::FormExpired).into()));
    }
    let today = crate::print::format::Zone::from_config(&app.config.timezone).date_of(vaidya_store::now_ms()).expect("now is a date");
    let Some(patient) = form.check(ctx.lang, today) else {
        return page(&form, StatusCode::UNPROCESSABLE_ENTITY, vec![], None);
    };
    let peer = peer.map(|p| p.0.0);
    // The same form again: the patient it registered, not a second one.
    let used = |keys: &HashMap<String, Option<String>>| match keys.get(&form.key) {
        Some(Some(id)) => Some(Redirect::to(&format!("/ui/registration/slip?id={id}")).into_response()),
        Some(None) => Some(page(&form, StatusCode::CONFLICT, vec![], Some(ctx.t(Key::BeingSaved).into()))),
        None => None,
    };
    if let Some(resp) = used(&submitted.0.lock().expect("not poisoned")) {
        return resp;
    }
    // Possible duplicates first, unless the clerk has seen them and says this is someone else.
    if fields("confirm") != "yes" {
        let (status, answer) = fhir.post(&s.token, &headers, peer, "/Patient/$duplicates", &patient).await;
        if !status.is_success() {
            return page(&form, status, vec![], Some(outcome_message(&ctx, &answer)));
        }
        let duplicates: Vec<Found> = answer["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| found_of(&e["resource"], e.pointer("/search/extension/0/valueString").and_then(Value::as_str).unwrap_or_default(), ctx.lang))
            .collect();
        if !duplicates.is_empty() {
            return page(&form, StatusCode::OK, duplicates, None);
        }
    }
    {
        let mut keys = submitted.0.lock().expect("not poisoned");
        if let Some(resp) = used(&keys) {
            return resp;
        }
        if keys.len() >= MAX_KEYS {
            keys.clear();
        }
        keys.insert(form.key.clone(), None);
    }
    let (status, answer) = fhir.post(&s.token, &headers, peer, "/Patient", &patient).await;
    let mut keys = submitted.0.lock().expect("not poisoned");
    match answer["id"].as_str().filter(|_| status.is_success()) {
        Some(id) => {
            keys.insert(form.key.clone(), Some(id.to_string()));
            Redirect::to(&format!("/ui/registration/slip?id={id}")).into_response()
        }
        None => {
            keys.remove(&form.key);
            drop(keys);
            page(&form, status, vec![], Some(outcome_message(&ctx, &answer)))
        }
    }
}

#[derive(Template)]
#[template(path = "web/slip.html")]
struct SlipPage<'a> {
    ctx: &'a Ctx,
    p: Found,
    registered: String,
    /// The UHID as a QR code (inline SVG made here from the UHID's digits only).
    qr: String,
}

/// A QR code of `text` as an inline `<svg>` element.
fn qr_svg(text: &str) -> String {
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(code) => {
            let svg = code.render::<qrcode::render::svg::Color>().min_dimensions(120, 120).quiet_zone(true).build();
            // Inline in HTML: the element without the XML declaration.
            svg.find("<svg").map(|i| svg[i..].to_string()).unwrap_or_default()
        }
        Err(_) => String::new(),
    }
}

/// `GET /ui/registration/slip?id=`: the UHID slip to print and hand over.
pub async fn slip(State(app): State<AppState>, Extension(fhir): Extension<Fhir>, peer: Peer, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let id = form_fields(raw.unwrap_or_default().as_bytes())("id");
    let path = { form_urlencoded::Serializer::new("/ui/registration/slip?".to_string()).append_pair("id", &id).finish() };
    let ctx = Ctx::of(&app, &headers, &path);
    let Some(s) = signed_in(&app, &headers) else { return to_login(&ctx.path) };
    if crate::fhir::check_id(&id).is_err() {
        return Redirect::to("/ui/registration").into_response();
    }
    let (status, answer) = fhir.get(&s.token, &headers, peer.map(|p| p.0.0), &format!("/Patient/{id}")).await;
    if !status.is_success() {
        let error = Some(outcome_message(&ctx, &answer));
        return render(&app, &ctx, status, &SearchPage { ctx: &ctx, q: "", error, found: None });
    }
    let zone = crate::print::format::Zone::from_config(&app.config.timezone);
    let registered = answer.pointer("/meta/lastUpdated").and_then(Value::as_str).map(|t| zone.fhir(t)).unwrap_or_default();
    let p = found_of(&answer, "", ctx.lang);
    let qr = qr_svg(&p.uhid.chars().filter(char::is_ascii_digit).collect::<String>());
    render(&app, &ctx, StatusCode::OK, &SlipPage { ctx: &ctx, p, registered, qr })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::i18n::Lang;

    fn form(given: &str, gender: &str, birth: &str, age: &str, mobile: &str) -> Form {
        Form { given: given.into(), gender: gender.into(), birth: birth.into(), age: age.into(), mobile: mobile.into(), ..Form::default() }
    }

    #[test]
    fn the_slip_carries_the_uhid_as_a_qr_code() {
        let svg = qr_svg("100000000019");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>") && svg.contains("<path"), "{svg}");
        assert_eq!(svg, qr_svg("100000000019"), "the same UHID, the same code");
        assert_ne!(svg, qr_svg("100000000027"));
    }

    #[test]
    fn the_form_is_checked_field_by_field_on_the_server() {
        let today: vaidya_domain::schedule::LocalDate = "2026-11-27".parse().unwrap();
        let mut f = form("Sita", "female", "1975-08-02", "", "+91 98100 00002");
        let p = f.check(Lang::En, today).expect("valid");
        assert_eq!(p["birthDate"], "1975-08-02");
        assert_eq!(p["telecom"][0]["value"], "+919810000002");
        assert!(p.get("identifier").is_none(), "the UHID is issued by the server");

        let mut f = form("Ram", "male", "", "40", "");
        assert_eq!(f.check(Lang::En, today).unwrap()["birthDate"], "1986", "an age gives the year of birth");

        let mut f = form("", "x", "2027-01-01", "", "12345");
        assert!(f.check(Lang::Hi, today).is_none());
        let wrong: Vec<&str> = ["given", "gender", "birth", "mobile"].into_iter().filter(|k| f.error(k).is_some()).collect();
        assert_eq!(wrong, ["given", "gender", "birth", "mobile"]);
        assert_eq!(f.error("given"), Some(Lang::Hi.t(Key::NeedName)), "in the page's language");

        let mut f = form("<script>", "male", "", "131", "");
        assert!(f.check(Lang::En, today).is_none());
        assert!(f.error("given").is_some() && f.error("age").is_some());
        let mut f = form("Asha", "female", "", "", "");
        assert!(f.check(Lang::En, today).is_none());
        assert!(f.error("birth").is_some(), "a date of birth or an age is needed");
    }
}
