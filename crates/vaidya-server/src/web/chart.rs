//! The doctor's chart of one patient: who they are, past visits, diagnoses, orders, notes, and
//! results with the trend of each repeated test and which results are new; and, during a
//! consultation, writing a note, a diagnosis and an order.
//!
//! Everything is read and written through the FHIR API as the signed-in clinician, so the
//! policies decide (a doctor sees the patients in their care; unreleased results are the lab's
//! alone) and every look is audited. What is written during a visit names the visit's
//! Encounter (opened when the OPD queue moves the patient to the consultation), and the server
//! refuses an entry for another patient in it.
//!
//! "New" results: those issued after the end of the patient's last finished visit (all of them
//! if there was none), i.e. what the doctor has not had the chance to see in a consultation.

use super::fhir_call::{Fhir, Screen, entries, fhir_id};
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
use std::collections::BTreeMap;
use std::sync::Arc;

/// Results read for a chart at most (newest first).
const MAX_RESULTS: usize = 500;
/// Earlier values shown beside a test's latest.
const TREND_POINTS: usize = 8;
/// Longest note, diagnosis text (characters).
const MAX_NOTE_CHARS: usize = 4_000;
const MAX_DIAGNOSIS_CHARS: usize = 200;

/// One test's results over time.
pub struct Trend {
    pub name: String,
    pub latest: String,
    pub flag: String,
    pub range: String,
    pub when: String,
    pub new: bool,
    /// Earlier values, newest first.
    pub earlier: Vec<String>,
    /// An inline SVG line of the numeric values, oldest to newest ("" when fewer than two).
    pub sparkline: String,
    /// `↑`, `↓` or `→` against the previous value ("" if none).
    pub direction: &'static str,
}

/// A line of a list (visit, diagnosis, order, note): when, what, and a status.
pub struct Line {
    pub when: String,
    pub what: String,
    pub status: String,
}

#[derive(Template)]
#[template(path = "web/chart.html")]
struct ChartPage<'a> {
    ctx: &'a Ctx,
    id: &'a str,
    name: String,
    uhid: String,
    sex: String,
    birth: String,
    mobile: String,
    /// The visit in progress, if any: what the forms write into.
    encounter: Option<String>,
    visits: Vec<Line>,
    diagnoses: Vec<Line>,
    orders: Vec<Line>,
    notes: Vec<Line>,
    trends: Vec<Trend>,
    tests: Vec<(String, String)>,
    keys: [String; 3],
    error: Option<String>,
    /// An error about one form's field: (`note`, `diagnosis` or `order`, the message).
    field_error: Option<(&'static str, String)>,
    notice: Option<String>,
}

impl ChartPage<'_> {
    /// The error to show beside form `form`'s field, if any.
    pub fn error_for(&self, form: &str) -> Option<&str> {
        self.field_error.as_ref().filter(|(f, _)| *f == form).map(|(_, m)| m.as_str())
    }
}

struct Chart<'a> {
    screen: Screen<'a>,
    id: &'a str,
}

impl<'a> std::ops::Deref for Chart<'a> {
    type Target = Screen<'a>;
    fn deref(&self) -> &Screen<'a> {
        &self.screen
    }
}

fn zone(app: &AppState) -> Zone {
    Zone::from_config(&app.config.timezone)
}

fn instant_ms(v: &Value) -> Option<i64> {
    vaidya_fhir::datetime::parse_date_range(v.as_str()?).map(|(ms, _)| ms)
}

fn concept_text(c: &Value) -> String {
    fmt::concept(c).unwrap_or_default()
}

impl Chart<'_> {
    /// The visit in progress (the newest, if several).
    async fn open_encounter(&self) -> Result<Option<String>, (StatusCode, String)> {
        let found = self.get(&format!("/Encounter?patient=Patient/{}&status=in-progress&_sort=-date&_count=1", self.id)).await?;
        Ok(entries(&found).next().and_then(|e| e["id"].as_str()).map(str::to_string))
    }

    async fn page(&self, status: StatusCode, error: Option<String>, notice: Option<String>) -> Response {
        self.page_with(status, error, None, notice).await
    }

    /// The chart with an error beside one form's field.
    async fn field_error(&self, status: StatusCode, form: &'static str, message: String) -> Response {
        self.page_with(status, None, Some((form, message)), None).await
    }

    async fn page_with(&self, status: StatusCode, error: Option<String>, field_error: Option<(&'static str, String)>, notice: Option<String>) -> Response {
        match self.read(error, notice).await {
            Ok(mut page) => {
                page.field_error = field_error;
                render(self.app, self.ctx, status, &page)
            }
            Err((st, message)) => {
                let empty = ChartPage {
                    ctx: self.ctx,
                    id: self.id,
                    name: String::new(),
                    uhid: String::new(),
                    sex: String::new(),
                    birth: String::new(),
                    mobile: String::new(),
                    encounter: None,
                    visits: vec![],
                    diagnoses: vec![],
                    orders: vec![],
                    notes: vec![],
                    trends: vec![],
                    tests: vec![],
                    keys: keys(),
                    error: Some(message),
                    field_error: None,
                    notice: None,
                };
                render(self.app, self.ctx, st, &empty)
            }
        }
    }

    async fn read(&self, error: Option<String>, notice: Option<String>) -> Result<ChartPage<'_>, (StatusCode, String)> {
        let zone = zone(self.app);
        let id = self.id;
        let patient = self.get(&format!("/Patient/{id}")).await?;
        let when = |v: &Value| v.as_str().map(|t| zone.fhir(t)).unwrap_or_default();
        let encounters = self.get(&format!("/Encounter?patient=Patient/{id}&_sort=-date&_count=20")).await?;
        let mut encounter = None;
        let mut last_visit_end: Option<i64> = None;
        let visits = entries(&encounters)
            .map(|e| {
                let status = e["status"].as_str().unwrap_or_default().to_string();
                if status == "in-progress" && encounter.is_none() {
                    encounter = e["id"].as_str().map(str::to_string);
                }
                if status == "finished" {
                    let end = instant_ms(&e["period"]["end"]);
                    last_visit_end = last_visit_end.max(end);
                }
                let what = e["serviceProvider"]["display"]
                    .as_str()
                    .or(e["type"][0]["text"].as_str())
                    .unwrap_or(e["class"]["code"].as_str().unwrap_or_default())
                    .to_string();
                Line { when: when(&e["period"]["start"]), what, status }
            })
            .collect();
        let conditions = self.get(&format!("/Condition?patient=Patient/{id}&_sort=-recorded-date&_count=50")).await?;
        let diagnoses = entries(&conditions)
            .map(|c| Line { when: when(&c["recordedDate"]), what: concept_text(&c["code"]), status: concept_text(&c["verificationStatus"]) })
            .collect();
        let requests = self.get(&format!("/ServiceRequest?patient=Patient/{id}&_sort=-authored&_count=50")).await?;
        let orders = entries(&requests)
            .map(|r| Line { when: when(&r["authoredOn"]), what: concept_text(&r["code"]), status: r["status"].as_str().unwrap_or_default().to_string() })
            .collect();
        let impressions = self.get(&format!("/ClinicalImpression?patient=Patient/{id}&_sort=-date&_count=20")).await?;
        let notes = entries(&impressions)
            .map(|n| {
                let mut text = n["summary"].as_str().unwrap_or_default().to_string();
                for extra in n["note"].as_array().into_iter().flatten().filter_map(|x| x["text"].as_str()) {
                    text.push_str(" — ");
                    text.push_str(extra);
                }
                Line { when: when(&n["date"]), what: text, status: n["status"].as_str().unwrap_or_default().to_string() }
            })
            .collect();
        let observations = self.get(&format!("/Observation?patient=Patient/{id}&_sort=-date&_count={MAX_RESULTS}")).await?;
        let trends = trends_of(&observations, &zone, last_visit_end);
        let catalogue = self.get("/ActivityDefinition?status=active&_sort=title&_count=200").await.unwrap_or(Value::Null);
        let tests = entries(&catalogue)
            .filter(|a| a["kind"] == "ServiceRequest")
            .filter_map(|a| Some((a["id"].as_str()?.to_string(), a["title"].as_str().unwrap_or_default().to_string())))
            .collect();
        let (name, _) = fmt::person_names(&patient);
        let uhid = super::fhir_call::uhid_of(&patient);
        let mobile = patient["telecom"].as_array().into_iter().flatten().find(|t| t["system"] == "phone").and_then(|t| t["value"].as_str()).unwrap_or_default().to_string();
        Ok(ChartPage {
            ctx: self.ctx,
            id,
            name: name.unwrap_or_default(),
            uhid,
            sex: patient["gender"].as_str().unwrap_or_default().to_string(),
            birth: patient["birthDate"].as_str().unwrap_or_default().to_string(),
            mobile,
            encounter,
            visits,
            diagnoses,
            orders,
            notes,
            trends,
            tests,
            keys: keys(),
            error,
            field_error: None,
            notice,
        })
    }
}

fn keys() -> [String; 3] {
    std::array::from_fn(|_| uuid::Uuid::new_v4().simple().to_string())
}

/// Group results by test (newest first in `bundle`), one trend each, tests with new results first.
fn trends_of(bundle: &Value, zone: &Zone, since: Option<i64>) -> Vec<Trend> {
    let mut by_test: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for o in entries(bundle).filter(|o| o["resourceType"] == "Observation") {
        let key = o.pointer("/code/coding/0/code").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| concept_text(&o["code"]));
        by_test.entry(key).or_default().push(o);
    }
    let mut out: Vec<(i64, Trend)> = by_test
        .into_values()
        .map(|mut list| {
            let at = |o: &Value| instant_ms(&o["effectiveDateTime"]).or(instant_ms(&o["issued"])).unwrap_or(0);
            list.sort_by_key(|o| std::cmp::Reverse(at(o)));
            let latest = list[0];
            let issued = instant_ms(&latest["issued"]).unwrap_or(at(latest));
            let numbers: Vec<f64> = list.iter().rev().filter_map(|o| o["valueQuantity"]["value"].as_f64()).collect();
            let direction = match (numbers.len(), numbers.last(), numbers.len().checked_sub(2).and_then(|i| numbers.get(i))) {
                (2.., Some(now), Some(before)) if now > before => "↑",
                (2.., Some(now), Some(before)) if now < before => "↓",
                (2.., _, _) => "→",
                _ => "",
            };
            let trend = Trend {
                name: concept_text(&latest["code"]),
                latest: fmt::observation_value(latest).unwrap_or_default(),
                flag: fmt::flags(latest).iter().map(|f| f.word.clone()).collect::<Vec<_>>().join(" "),
                range: fmt::reference_ranges(latest).join("; "),
                when: zone.date_time(at(latest)),
                new: since.is_none_or(|s| issued > s),
                earlier: list.iter().skip(1).take(TREND_POINTS).filter_map(|o| fmt::observation_value(o)).collect(),
                sparkline: sparkline(&numbers[numbers.len().saturating_sub(TREND_POINTS + 1)..]),
                direction,
            };
            (issued, trend)
        })
        .collect();
    out.sort_by_key(|(issued, t)| std::cmp::Reverse((t.new, *issued)));
    out.into_iter().map(|(_, t)| t).collect()
}

/// A small line chart of `values` (oldest first) as an inline SVG element, made here from
/// numbers only (nothing from the record is written into it).
fn sparkline(values: &[f64]) -> String {
    if values.len() < 2 || values.iter().any(|v| !v.is_finite()) {
        return String::new();
    }
    let (w, h, pad) = (120.0, 28.0, 3.0);
    let lo = values.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let span = if hi > lo { hi - lo } else { 1.0 };
    let step = (w - 2.0 * pad) / (values.len() - 1) as f64;
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{:.1},{:.1}", pad + i as f64 * step, h - pad - (v - lo) / span * (h - 2.0 * pad)))
        .collect();
    format!(
        r#"<svg class="spark" width="{w}" height="{h}" viewBox="0 0 {w} {h}" aria-hidden="true"><polyline fill="none" stroke="currentColor" stroke-width="2" points="{}"/></svg>"#,
        points.join(" ")
    )
}

macro_rules! chart_for {
    ($app:ident, $fhir:ident, $peer:ident, $headers:ident, $id:ident, $ctx:ident, $s:ident, $chart:ident) => {
        let Some($id) = fhir_id(&$id) else { return StatusCode::NOT_FOUND.into_response() };
        let $ctx = Ctx::of(&$app, &$headers, &format!("/ui/chart/{}", $id));
        let Some($s) = signed_in(&$app, &$headers) else { return to_login(&$ctx.path) };
        let $chart = Chart { screen: Screen::new(&$app, &$fhir, &$s, &$headers, $peer, &$ctx), id: $id };
    };
}

/// `GET /ui/chart/{patient}`: the chart.
pub async fn page(State(app): State<AppState>, Extension(fhir): Extension<Fhir>, peer: Peer, headers: HeaderMap, Path(id): Path<String>) -> Response {
    chart_for!(app, fhir, peer, headers, id, ctx, s, chart);
    chart.page(StatusCode::OK, None, None).await
}

/// What the doctor writes during a visit.
#[derive(Clone, Copy)]
pub enum Entry {
    Note,
    Diagnosis,
    Order,
}

/// `POST /ui/chart/{patient}/{note|diagnosis|order}`: write into the visit in progress.
pub async fn write(
    State(app): State<AppState>,
    Extension(fhir): Extension<Fhir>,
    Extension(submitted): Extension<Arc<Submitted>>,
    peer: Peer,
    headers: HeaderMap,
    Path((id, what)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    chart_for!(app, fhir, peer, headers, id, ctx, s, chart);
    let entry = match what.as_str() {
        "note" => Entry::Note,
        "diagnosis" => Entry::Diagnosis,
        "order" => Entry::Order,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let field = form_fields(&body);
    if !csrf_ok(&headers, &field("csrf")) {
        return chart.page(StatusCode::FORBIDDEN, Some(ctx.t(Key::FormExpired).into()), None).await;
    }
    let key = field("key");
    if key.len() != 32 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return chart.page(StatusCode::BAD_REQUEST, Some(ctx.t(Key::FormExpired).into()), None).await;
    }
    let encounter = match chart.open_encounter().await {
        Ok(Some(e)) => e,
        Ok(None) => return chart.page(StatusCode::CONFLICT, Some(ctx.t(Key::NoVisitOpen).into()), None).await,
        Err((status, message)) => return chart.page(status, Some(message), None).await,
    };
    let in_visit = |mut r: Value| {
        r["subject"] = json!({"reference": format!("Patient/{id}")});
        r["encounter"] = json!({"reference": format!("Encounter/{encounter}")});
        r
    };
    let now = vaidya_fhir::datetime::format_instant(vaidya_store::now_ms());
    let (path, resource) = match entry {
        Entry::Note => {
            let text = field("text").trim().to_string();
            if text.is_empty() || text.chars().count() > MAX_NOTE_CHARS {
                return chart.field_error(StatusCode::UNPROCESSABLE_ENTITY, "note", ctx.t(Key::NoteLength).into()).await;
            }
            ("/ClinicalImpression", in_visit(json!({"resourceType": "ClinicalImpression", "status": "completed", "date": now, "summary": text})))
        }
        Entry::Diagnosis => {
            let text = field("text").trim().to_string();
            if text.is_empty() || text.chars().count() > MAX_DIAGNOSIS_CHARS || text.chars().any(char::is_control) {
                return chart.field_error(StatusCode::UNPROCESSABLE_ENTITY, "diagnosis", ctx.t(Key::DiagnosisLength).into()).await;
            }
            let verification = if field("provisional") == "yes" { "provisional" } else { "confirmed" };
            (
                "/Condition",
                in_visit(json!({"resourceType": "Condition", "recordedDate": now,
                    "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                    "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": verification}], "text": verification},
                    "code": {"text": text}})),
            )
        }
        Entry::Order => {
            let test = field("test");
            let Some(test) = fhir_id(&test) else {
                return chart.field_error(StatusCode::UNPROCESSABLE_ENTITY, "order", ctx.t(Key::ChooseTest).into()).await;
            };
            let activity = match chart.get(&format!("/ActivityDefinition/{test}")).await {
                Ok(a) => a,
                Err((status, message)) => return chart.page(status, Some(message), None).await,
            };
            let mut order = in_visit(json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order", "authoredOn": now,
                "instantiatesCanonical": [activity["url"]], "code": activity["code"]}));
            if let Some(p) = &s.principal.practitioner {
                order["requester"] = json!({"reference": format!("Practitioner/{p}")});
            }
            ("/ServiceRequest", order)
        }
    };
    match submitted.claim(&key) {
        Ok(()) => {}
        Err(Some(_)) => return Redirect::to(&format!("/ui/chart/{id}")).into_response(),
        Err(None) => return chart.page(StatusCode::CONFLICT, Some(ctx.t(Key::BeingSaved).into()), None).await,
    }
    match chart.post(path, &resource).await {
        Ok(made) => {
            submitted.settle(&key, made["id"].as_str().map(str::to_string));
            Redirect::to(&format!("/ui/chart/{id}")).into_response()
        }
        Err((status, message)) => {
            submitted.settle(&key, None);
            chart.page(status, Some(message), None).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparkline_is_numbers_only_and_needs_two_points() {
        assert_eq!(sparkline(&[1.0]), "");
        assert_eq!(sparkline(&[1.0, f64::NAN]), "");
        let svg = sparkline(&[9.6, 10.4, 11.8]);
        assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{svg}");
        assert!(svg.is_ascii(), "{svg}");
    }

    #[test]
    fn results_group_by_test_with_the_newest_first_and_a_direction() {
        let obs = |code: &str, v: f64, t: &str| {
            json!({"resource": {"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": code}]},
                "effectiveDateTime": t, "issued": t, "valueQuantity": {"value": v, "unit": "g/dL"}}})
        };
        let bundle = json!({"entry": [obs("718-7", 11.8, "2026-11-20T10:00:00Z"), obs("718-7", 9.6, "2026-10-01T10:00:00Z"), obs("2345-7", 5.5, "2026-09-01T10:00:00Z")]});
        let since = vaidya_fhir::datetime::parse_date_range("2026-11-01T00:00:00Z").map(|(ms, _)| ms);
        let t = trends_of(&bundle, &Zone::IST, since);
        assert_eq!(t.len(), 2);
        assert!(t[0].new && !t[1].new, "the test with a result after the last visit comes first, marked new");
        assert_eq!((t[0].direction, t[0].earlier.len()), ("↑", 1));
        assert!(t[0].latest.contains("11.8"), "{}", t[0].latest);
        assert_eq!(t[1].direction, "");
    }
}
