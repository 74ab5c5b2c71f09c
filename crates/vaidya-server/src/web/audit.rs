//! "Who accessed a record": the audit trail of one patient's record, by UHID, for the privacy
//! officer and auditors (read through `GET /fhir/AuditEvent?patient.identifier=`, so the
//! policies decide and the look itself is recorded).

use super::fhir_call::{Fhir, outcome_message};
use super::i18n::Key;
use super::{Ctx, render, signed_in, to_login};
use crate::app::AppState;
use crate::auth::Peer;
use askama::Template;
use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use vaidya_audit::ReportRow;

/// Events shown on one page (the newest).
const SHOWN: usize = 1_000;

pub struct Row {
    pub time: String,
    pub user: String,
    pub role: String,
    pub action: String,
    pub outcome: String,
    pub denied: bool,
    pub from: String,
    pub why: String,
    pub what: String,
}

#[derive(Template)]
#[template(path = "web/audit.html")]
struct AuditPage<'a> {
    ctx: &'a Ctx,
    uhid: &'a str,
    error: Option<String>,
    rows: Option<Vec<Row>>,
    total: u64,
}

pub async fn page(State(app): State<AppState>, Extension(fhir): Extension<Fhir>, peer: Peer, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let uhid = super::form_fields(q.unwrap_or_default().as_bytes())("uhid").trim().to_string();
    // (Serializers are not Send: each is finished inside a block, before any await.)
    let path = { form_urlencoded::Serializer::new("/ui/audit?".to_string()).append_pair("uhid", &uhid).finish() };
    let ctx = Ctx::of(&app, &headers, &path);
    let Some(s) = signed_in(&app, &headers) else { return to_login(&ctx.path) };
    if uhid.is_empty() {
        return render(&app, &ctx, StatusCode::OK, &AuditPage { ctx: &ctx, uhid: "", error: None, rows: None, total: 0 });
    }
    let query = {
        form_urlencoded::Serializer::new(String::new()).append_pair("patient.identifier", &uhid).append_pair("_count", &SHOWN.to_string()).finish()
    };
    let (status, answer) = fhir.get(&s.token, &headers, peer.map(|p| p.0.0), &format!("/AuditEvent?{query}")).await;
    if !status.is_success() {
        let error = Some(outcome_message(&ctx, &answer));
        return render(&app, &ctx, status, &AuditPage { ctx: &ctx, uhid: &uhid, error, rows: None, total: 0 });
    }
    let rows = rows_of(&app, &answer);
    let total = answer["total"].as_u64().unwrap_or(0);
    render(&app, &ctx, StatusCode::OK, &AuditPage { ctx: &ctx, uhid: &uhid, error: None, rows: Some(rows), total })
}

/// The table rows of a Bundle of AuditEvents (times in the hospital's zone).
pub fn rows_of(app: &AppState, answer: &serde_json::Value) -> Vec<Row> {
    let zone = crate::print::format::Zone::from_config(&app.config.timezone);
    answer["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let r = ReportRow::from_event(&e["resource"]);
            Row {
                time: r.time_ms.map(|t| zone.date_time(t)).unwrap_or_default(),
                denied: !r.outcome.starts_with("allowed"),
                user: r.user,
                role: r.role,
                action: r.action,
                outcome: r.outcome,
                from: r.address,
                why: r.reason,
                what: r.what,
            }
        })
        .collect()
}
