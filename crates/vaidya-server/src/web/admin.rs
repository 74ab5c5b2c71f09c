//! The administrator's screens: departments, doctors, OPD schedules (with their slots), the
//! tariff, and staff accounts.
//!
//! The directory is written through the FHIR API as the signed-in administrator (the policy
//! `directory-admin`): `PUT HealthcareService/{id}`, `PUT Practitioner/{id}` with its
//! PractitionerRole, `PUT Schedule/{id}` then `Schedule/{id}/$generate-slots`, and `PUT
//! ChargeItemDefinition/{id}` for a price. Accounts are made as `vaidya user add` makes them
//! (`auth::accounts`), in the server's own transaction, and recorded in the audit ledger
//! (`user-add`, naming the account) before the one-time password is shown, once. An
//! administrator never reads patients' records: nothing here touches them.

use super::fhir_call::{Fhir, Screen, entries};
use super::i18n::Key;
use super::{Ctx, Signed, csrf_ok, form_fields, render, signed_in, to_login};
use crate::app::AppState;
use crate::auth::Peer;
use crate::print::format as fmt;
use askama::Template;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Value, json};

/// Plain text typed into a name field: at most `max` characters, no markup or control characters.
fn plain(s: &str, max: usize) -> Option<String> {
    let s = s.trim();
    (!s.is_empty() && s.chars().count() <= max && !s.chars().any(|c| c.is_control() || "<>{}[]\\\"".contains(c))).then(|| s.to_string())
}

pub struct Department {
    pub id: String,
    pub name: String,
    pub hindi: String,
}

pub struct Doctor {
    pub id: String,
    pub name: String,
    pub department: String,
    pub schedule: String,
}

pub struct Price {
    pub id: String,
    pub title: String,
    pub price: String,
}

pub struct Account {
    pub name: String,
    pub role: String,
    pub department: String,
    pub state: String,
}

#[derive(Template)]
#[template(path = "web/admin.html")]
struct AdminPage<'a> {
    ctx: &'a Ctx,
    departments: Vec<Department>,
    doctors: Vec<Doctor>,
    tariff: Vec<Price>,
    accounts: Vec<Account>,
    roles: &'static [&'static str],
    error: Option<String>,
    /// An error about one form (`department`, `doctor`, `schedule`, `price`, `account`), shown
    /// beside it.
    form_error: Option<(&'static str, String)>,
    notice: Option<String>,
    /// A new account's one-time password, shown once: (account, password).
    created: Option<(String, String)>,
}

impl AdminPage<'_> {
    pub fn error_for(&self, form: &str) -> Option<&str> {
        self.form_error.as_ref().filter(|(f, _)| *f == form).map(|(_, m)| m.as_str())
    }
}

struct Admin<'a>(Screen<'a>);

impl<'a> std::ops::Deref for Admin<'a> {
    type Target = Screen<'a>;
    fn deref(&self) -> &Screen<'a> {
        &self.0
    }
}

impl Admin<'_> {
    async fn page(&self, status: StatusCode, error: Option<String>, notice: Option<String>, created: Option<(String, String)>) -> Response {
        self.page_with(status, error, None, notice, created).await
    }

    async fn page_with(&self, status: StatusCode, error: Option<String>, form_error: Option<(&'static str, String)>, notice: Option<String>, created: Option<(String, String)>) -> Response {
        let mut page = AdminPage {
            ctx: self.ctx,
            departments: vec![],
            doctors: vec![],
            tariff: vec![],
            accounts: vec![],
            roles: &crate::auth::accounts::ROLES,
            error,
            form_error,
            notice,
            created,
        };
        if let Err((st, message)) = self.read(&mut page).await {
            page.error = Some(message);
            return render(self.app, self.ctx, st, &page);
        }
        render(self.app, self.ctx, status, &page)
    }

    async fn read(&self, page: &mut AdminPage<'_>) -> Result<(), (StatusCode, String)> {
        let services = self.get("/HealthcareService?_sort=name&_count=200").await?;
        page.departments = entries(&services)
            .map(|h| Department {
                id: h["id"].as_str().unwrap_or_default().into(),
                name: h["name"].as_str().unwrap_or_default().into(),
                hindi: h["comment"].as_str().unwrap_or_default().into(),
            })
            .collect();
        let roles = self.get("/PractitionerRole?_include=PractitionerRole:practitioner&_count=500").await?;
        let schedules = self.get("/Schedule?_count=500").await?;
        let practitioners: Vec<&Value> = entries(&roles).filter(|r| r["resourceType"] == "Practitioner").collect();
        page.doctors = practitioners
            .iter()
            .map(|p| {
                let id = p["id"].as_str().unwrap_or_default().to_string();
                let me = format!("Practitioner/{id}");
                let department = entries(&roles)
                    .filter(|r| r["resourceType"] == "PractitionerRole" && r["practitioner"]["reference"] == me.as_str())
                    .filter_map(|r| r["healthcareService"][0]["reference"].as_str().map(|d| d.trim_start_matches("HealthcareService/").to_string()))
                    .next()
                    .unwrap_or_default();
                let schedule = entries(&schedules)
                    .filter(|s| s["actor"].as_array().into_iter().flatten().any(|a| a["reference"] == me.as_str()))
                    .filter_map(|s| s["comment"].as_str().map(str::to_string))
                    .next()
                    .unwrap_or_default();
                Doctor { name: fmt::person_names(p).0.unwrap_or_default(), id, department, schedule }
            })
            .collect();
        page.doctors.sort_by(|a, b| (&a.department, &a.name).cmp(&(&b.department, &b.name)));
        let tariff = self.get("/ChargeItemDefinition?_count=500").await?;
        page.tariff = entries(&tariff)
            .map(|c| Price {
                id: c["id"].as_str().unwrap_or_default().into(),
                title: c["title"].as_str().unwrap_or_default().into(),
                price: c.pointer("/propertyGroup/0/priceComponent/0/amount").map(|m| crate::fhir::billing::paise(m, "").map(|p| p.to_string()).unwrap_or_default()).unwrap_or_default(),
            })
            .collect();
        page.tariff.sort_by(|a, b| a.title.cmp(&b.title));
        page.accounts = self
            .app
            .read(|conn| Ok(vaidya_store::tokens::list_users(conn)?))
            .await
            .map_err(|e| (e.status, format!("{:?}", e.issues)))?
            .into_iter()
            .filter(|u| u.role != "patient")
            .map(|u| Account {
                state: if u.disabled_ms.is_some() { "disabled".into() } else if u.must_change_password { "one-time-password".into() } else { "active".into() },
                name: u.name,
                role: u.role,
                department: u.department.unwrap_or_default(),
            })
            .collect();
        Ok(())
    }
}

/// What a change did: the notice to show, and a new account's one-time password (shown once);
/// or why it was refused.
type Change = Result<(String, Option<(String, String)>), (StatusCode, String)>;

fn admin_only(s: &Signed) -> bool {
    s.principal.role == "admin"
}

/// `GET /ui/admin`.
pub async fn page(State(app): State<AppState>, Extension(fhir): Extension<Fhir>, peer: Peer, headers: HeaderMap) -> Response {
    let ctx = Ctx::of(&app, &headers, "/ui/admin");
    let Some(s) = signed_in(&app, &headers) else { return to_login(&ctx.path) };
    let admin = Admin(Screen::new(&app, &fhir, &s, &headers, peer, &ctx));
    if !admin_only(&s) {
        return admin.page(StatusCode::FORBIDDEN, Some(ctx.t(Key::AdminOnly).into()), None, None).await;
    }
    admin.page(StatusCode::OK, None, None, None).await
}

/// `POST /ui/admin/{what}`: `department`, `doctor`, `schedule`, `price`, `account`.
pub async fn act(State(app): State<AppState>, Extension(fhir): Extension<Fhir>, peer: Peer, headers: HeaderMap, Path(what): Path<String>, body: Bytes) -> Response {
    let ctx = Ctx::of(&app, &headers, "/ui/admin");
    let Some(s) = signed_in(&app, &headers) else { return to_login(&ctx.path) };
    let admin = Admin(Screen::new(&app, &fhir, &s, &headers, peer, &ctx));
    let field = form_fields(&body);
    if !csrf_ok(&headers, &field("csrf")) {
        return admin.page(StatusCode::FORBIDDEN, Some(ctx.t(Key::FormExpired).into()), None, None).await;
    }
    if !admin_only(&s) {
        return admin.page(StatusCode::FORBIDDEN, Some(ctx.t(Key::AdminOnly).into()), None, None).await;
    }
    let bad = |m: &str| Err((StatusCode::UNPROCESSABLE_ENTITY, m.to_string()));
    let result: Change = match what.as_str() {
        "department" => {
            let (id, name, hindi) = (field("id"), plain(&field("name"), 100), field("hindi"));
            match name {
                _ if !crate::fhir::is_valid_id(&id) => bad(ctx.t(Key::BadId)),
                None => bad(ctx.t(Key::BadName)),
                Some(name) => {
                    let mut service = json!({"resourceType": "HealthcareService", "id": id, "active": true, "name": name});
                    if let Some(h) = plain(&hindi, 100) {
                        service["comment"] = json!(h);
                    }
                    admin.put(&format!("/HealthcareService/{id}"), &service).await.map(|_| (format!("{} {name}", ctx.t(Key::Saved)), None))
                }
            }
        }
        "doctor" => {
            let (id, given, family, dept) = (field("id"), plain(&field("given"), 100), plain(&field("family"), 100), field("department"));
            match (given, family) {
                _ if !crate::fhir::is_valid_id(&id) || !crate::fhir::is_valid_id(&dept) => bad(ctx.t(Key::BadId)),
                (Some(given), Some(family)) => {
                    let doctor = json!({"resourceType": "Practitioner", "id": id, "active": true, "name": [{"use": "official", "family": family, "given": [given], "prefix": ["Dr."]}]});
                    let role = json!({"resourceType": "PractitionerRole", "id": format!("{id}-role"), "active": true,
                        "practitioner": {"reference": format!("Practitioner/{id}")}, "healthcareService": [{"reference": format!("HealthcareService/{dept}")}]});
                    match admin.get(&format!("/HealthcareService/{dept}")).await {
                        Err(e) => Err(e),
                        Ok(_) => match admin.put(&format!("/Practitioner/{id}"), &doctor).await {
                            Err(e) => Err(e),
                            Ok(_) => admin.put(&format!("/PractitionerRole/{id}-role"), &role).await.map(|_| (format!("{} Dr. {given} {family}", ctx.t(Key::Saved)), None)),
                        },
                    }
                }
                _ => bad(ctx.t(Key::BadName)),
            }
        }
        "schedule" => schedule(&admin, &field).await,
        "price" => {
            let id = field("id");
            let amount = field("price").trim().trim_start_matches('₹').replace(',', "").parse::<vaidya_domain::Paise>().ok().filter(|p| p.0 >= 0);
            match amount {
                _ if !crate::fhir::is_valid_id(&id) => bad(ctx.t(Key::BadId)),
                None => bad(ctx.t(Key::BadAmount)),
                Some(paise) => match admin.get(&format!("/ChargeItemDefinition/{id}")).await {
                    Err(e) => Err(e),
                    Ok(mut def) => {
                        def["propertyGroup"] = json!([{"priceComponent": [{"type": "base", "amount": crate::fhir::billing::money(paise)}]}]);
                        admin.put(&format!("/ChargeItemDefinition/{id}"), &def).await.map(|_| (format!("{} {} {paise}", ctx.t(Key::Saved), def["title"].as_str().unwrap_or_default()), None))
                    }
                },
            }
        }
        "account" => account(&admin, &field).await,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    match result {
        Ok((notice, None)) => {
            let mut q = form_urlencoded::Serializer::new(String::new());
            q.append_pair("done", &notice);
            Redirect::to(&format!("/ui/admin/done?{}", q.finish())).into_response()
        }
        // A one-time password is shown on this answer, not after a redirect: it is never in a URL.
        Ok((notice, Some(created))) => admin.page(StatusCode::OK, None, Some(notice), Some(created)).await,
        Err((status, message)) => {
            let form = ["department", "doctor", "schedule", "price", "account"].into_iter().find(|f| *f == what);
            match form {
                Some(f) => admin.page_with(status, None, Some((f, message)), None, None).await,
                None => admin.page(status, Some(message), None, None).await,
            }
        }
    }
}

/// `GET /ui/admin/done?done=`: the admin page after a change, saying what was done.
pub async fn done(State(app): State<AppState>, Extension(fhir): Extension<Fhir>, peer: Peer, headers: HeaderMap, axum::extract::RawQuery(raw): axum::extract::RawQuery) -> Response {
    let ctx = Ctx::of(&app, &headers, "/ui/admin");
    let Some(s) = signed_in(&app, &headers) else { return to_login(&ctx.path) };
    let admin = Admin(Screen::new(&app, &fhir, &s, &headers, peer, &ctx));
    if !admin_only(&s) {
        return admin.page(StatusCode::FORBIDDEN, Some(ctx.t(Key::AdminOnly).into()), None, None).await;
    }
    let notice = form_fields(raw.unwrap_or_default().as_bytes())("done");
    admin.page(StatusCode::OK, None, plain(&notice, 300), None).await
}

/// A doctor's weekly OPD: the Schedule (named `<doctor>-opd`, with the doctor and their
/// department), then its slots from today for the days asked.
async fn schedule(admin: &Admin<'_>, field: &(dyn Fn(&str) -> String + Sync)) -> Change {
    let ctx = admin.ctx;
    let bad = |m: &str| Err((StatusCode::UNPROCESSABLE_ENTITY, m.to_string()));
    let (doctor, dept) = (field("doctor"), field("department"));
    if !crate::fhir::is_valid_id(&doctor) || !crate::fhir::is_valid_id(&dept) {
        return bad(ctx.t(Key::BadId));
    }
    let days: Vec<&str> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"].into_iter().filter(|d| field(&format!("day-{d}")) == "on").collect();
    if days.is_empty() {
        return bad(ctx.t(Key::ChooseDays));
    }
    let number = |name: &str, max: u64| field(name).trim().parse::<u64>().ok().filter(|n| (1..=max).contains(n));
    let (Some(minutes), Some(capacity), Some(ahead)) = (number("minutes", 240), number("capacity", 50), number("ahead", 90)) else {
        return bad(ctx.t(Key::BadScheduleNumbers));
    };
    let (start, end) = (field("start"), field("end"));
    let time_ok = |t: &str| t.len() == 5 && t.as_bytes()[2] == b':' && t.bytes().enumerate().all(|(i, b)| i == 2 || b.is_ascii_digit());
    if !time_ok(&start) || !time_ok(&end) || start >= end {
        return bad(ctx.t(Key::BadTimes));
    }
    let id = format!("{doctor}-opd");
    let comment = format!("OPD {} {start}-{end}, {minutes}-minute slots, {capacity} a slot", days.join(" "));
    let schedule = json!({"resourceType": "Schedule", "id": id, "active": true,
        "actor": [{"reference": format!("Practitioner/{doctor}")}, {"reference": format!("HealthcareService/{dept}")}], "comment": comment});
    admin.put(&format!("/Schedule/{id}"), &schedule).await?;
    let today = crate::print::format::Zone::from_config(&admin.app.config.timezone).date_of(vaidya_store::now_ms()).expect("now is a date");
    let mut params: Vec<Value> = days.iter().map(|d| json!({"name": "day", "valueCode": d})).collect();
    params.extend([
        json!({"name": "start", "valueTime": format!("{start}:00")}),
        json!({"name": "end", "valueTime": format!("{end}:00")}),
        json!({"name": "slotMinutes", "valuePositiveInt": minutes}),
        json!({"name": "capacity", "valuePositiveInt": capacity}),
        json!({"name": "from", "valueDate": today.to_string()}),
        json!({"name": "days", "valuePositiveInt": ahead}),
    ]);
    let made = admin.post(&format!("/Schedule/{id}/$generate-slots"), &json!({"resourceType": "Parameters", "parameter": params})).await?;
    let count = made["parameter"].as_array().into_iter().flatten().find(|p| p["name"] == "created").and_then(|p| p["valueInteger"].as_i64()).unwrap_or(0);
    Ok((format!("{} {comment} ({count} {})", ctx.t(Key::Saved), ctx.t(Key::SlotsMade)), None))
}

/// A staff account, made as `vaidya user add` makes it, recorded in the audit ledger first.
async fn account(admin: &Admin<'_>, field: &(dyn Fn(&str) -> String + Sync)) -> Change {
    let (name, role) = (field("name").trim().to_string(), field("role"));
    let opt = |v: String| Some(v.trim().to_string()).filter(|v| !v.is_empty());
    let (department, practitioner) = (opt(field("department")), opt(field("practitioner")));
    if role == "patient" {
        return Err((StatusCode::UNPROCESSABLE_ENTITY, admin.ctx.t(Key::NoPatientAccounts).into()));
    }
    crate::auth::accounts::check_new(&name, &role, department.as_deref(), None, practitioner.as_deref()).map_err(|e| (StatusCode::UNPROCESSABLE_ENTITY, e))?;
    let (n, r, d, p) = (name.clone(), role.clone(), department.clone(), practitioner.clone());
    let made = admin
        .app
        .store
        .write(move |tx| crate::auth::accounts::insert(tx.conn(), &n, &r, d.as_deref(), None, p.as_deref()))
        .await
        .map_err(|e: vaidya_store::StoreError| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let Some(password) = made else {
        return Err((StatusCode::CONFLICT, format!("{} '{name}'", admin.ctx.t(Key::NameTaken))));
    };
    let mut rec = vaidya_audit::AuditRecord::new(vaidya_audit::Action::Account("user-add".into()), vaidya_audit::Outcome::Allowed);
    rec.who = vaidya_audit::Who {
        user: Some(admin.s.principal.user.clone()),
        role: Some(admin.s.principal.role.clone()),
        session: Some(admin.s.principal.token_id.clone()),
    };
    rec.source = vaidya_audit::Source { address: admin.peer.map(|p| p.ip().to_string()), user_agent: admin.headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_string) };
    rec.target_user = Some(name.clone());
    rec.reason = Some(format!("role {role}{}", department.as_deref().map(|d| format!(" in {d}")).unwrap_or_default()));
    if let Err(e) = admin.app.audit.record(vec![rec]).await {
        // The account exists, but its password is not shown without its audit record: it
        // cannot be used; the operator disables it (`vaidya user disable`).
        tracing::error!("account {name} made but its audit record failed: {e}");
        return Err((StatusCode::SERVICE_UNAVAILABLE, format!("the audit trail cannot be written: {e}")));
    }
    Ok((format!("{} {name} ({role})", admin.ctx.t(Key::AccountMade)), Some((name, password))))
}
