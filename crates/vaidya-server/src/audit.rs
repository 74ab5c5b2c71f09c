//! Every request to the FHIR API and for a printed document is recorded in the audit ledger
//! (`vaidya-audit`) as an AuditEvent, allowed or refused, and the record is durable before the
//! response leaves: a response whose record cannot be written is not sent (503).
//!
//! The middleware [`record`] runs inside authentication (it knows the account) and around the
//! handler: it reads the action and the record from the method and path, the outcome from the
//! status, and what only the handler knows (the ids a search returned, the patients touched)
//! from an [`Audited`] the handler leaves in the response's extensions. Requests refused for
//! want of valid credentials are recorded by the authentication middleware ([`unauthenticated`]).
//! The exfiltration guard (`guard.rs`) sits here too, so that what it refuses is recorded like
//! any other refusal.

use crate::app::{AppState, Principal};
use crate::error::ApiError;
use crate::guard::{Admit, Sent};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use vaidya_audit::{Action, AuditRecord, Outcome, Source, Who};
use vaidya_fhir::outcome::IssueType;

/// What a handler knows of the records it touched.
#[derive(Debug, Clone, Default)]
pub struct Audited {
    /// References returned by a search or history (`Observation/o1`).
    pub returned: Vec<String>,
    /// Ids of the patients whose records were read or changed.
    pub patients: Vec<String>,
}

impl Audited {
    pub fn patient(id: Option<String>) -> Audited {
        Audited { returned: vec![], patients: id.into_iter().collect() }
    }
}

/// Leave `audited` for the audit middleware on a response.
pub fn attach(mut resp: Response, audited: Audited) -> Response {
    resp.extensions_mut().insert(audited);
    resp
}

/// The action and the record it acted on, from the method and the path below `/fhir` or `/print`.
fn classify(method: &Method, path: &str, printing: bool) -> (Action, Vec<String>) {
    let parts: Vec<&str> = path.trim_matches('/').split('/').filter(|p| !p.is_empty()).collect();
    let what = |n: usize| if parts.len() >= n { vec![parts[..n].join("/")] } else { vec![] };
    if printing {
        return (Action::Print, what(2));
    }
    match (method.as_str(), parts.as_slice()) {
        // Bulk Data export (fhir/export.rs): the kick-off and each file are data leaving.
        ("GET", ["$export"]) => (Action::Export, vec![]),
        ("GET", [_, "$export"]) => (Action::Export, what(1)),
        ("GET", [_, _, "$export"]) => (Action::Export, what(2)),
        ("GET", ["$export-file", _, _]) => (Action::Export, vec![parts.join("/")]),
        ("GET", ["$export-status", ..]) => (Action::Operation("$export-status".into()), what(2)),
        // A department node following the ledger (/node/feed): every record leaves, in order.
        ("GET", ["feed"]) => (Action::Operation("node-feed".into()), vec![]),
        ("GET", ["handback"]) => (Action::Operation("node-handback-status".into()), vec![]),
        ("POST", ["handback"]) => (Action::Operation("node-handback".into()), vec![]),
        ("GET", ["reconciliation"]) => (Action::Operation("reconciliation-queue".into()), vec![]),
        ("POST", ["reconciliation", _]) => (Action::Operation("reconcile".into()), vec![format!("Task/{}", parts[1])]),
        ("POST", []) => (Action::Transaction, vec![]),
        ("GET", ["_history"]) | ("GET", [_, "_history"]) => (Action::History, what(1)),
        ("GET", [_, _, "_history"]) => (Action::History, what(2)),
        ("GET", [_, _, "_history", _]) => (Action::VRead, vec![parts.join("/")]),
        ("GET", [_]) | ("POST", [_, "_search"]) => (Action::Search, what(1)),
        ("GET", [_, _]) => (Action::Read, what(2)),
        ("POST", [_]) => (Action::Create, what(1)),
        ("POST", [_, op]) if op.starts_with('$') => (Action::Operation(op.to_string()), what(1)),
        ("POST", [_, _, op]) => (Action::Operation(op.to_string()), what(2)),
        ("PUT", _) => (Action::Update, what(2)),
        ("DELETE", _) => (Action::Delete, what(2)),
        _ => (Action::Operation(format!("{method} {path}")), vec![]),
    }
}

fn source(req: &Request) -> Source {
    let address = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
    let user_agent = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|s| s.chars().take(256).collect());
    Source { address, user_agent }
}

fn outcome(status: StatusCode) -> Outcome {
    match status.as_u16() {
        s if s < 400 => Outcome::Allowed,
        401 | 403 => Outcome::Denied(status.to_string()),
        _ => Outcome::Failed(status.to_string()),
    }
}

/// Write the record and wait until it is durable; if it cannot be written, the response is
/// replaced by 503: nothing leaves unrecorded.
pub async fn durable(app: &AppState, record: AuditRecord, resp: Response) -> Response {
    match app.audit.record(vec![record]).await {
        Ok(()) => resp,
        Err(e) => {
            tracing::error!(target: "vaidya::audit", "audit record not written, response withheld: {e}");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, IssueType::Transient, "the audit trail cannot be written; nothing is served without it").into_response()
        }
    }
}

/// The audit middleware for authenticated routes. It also applies the exfiltration guard
/// (`guard.rs`) to reads: the rate limit before the handler, the distinct-patient rule on the
/// patients its response carries; what the guard refuses is recorded as denied.
pub async fn record(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let printing = req.uri().path().starts_with("/DiagnosticReport") && req.extensions().get::<Printing>().is_some();
    let (action, what) = classify(req.method(), req.uri().path(), printing);
    let query = req.uri().query().map(|q| format!("{}?{q}", req.uri().path().trim_start_matches('/')));
    let src = source(&req);
    let principal = req.extensions().get::<Principal>().map(|p| (p.user.clone(), p.role.clone(), p.token_id.clone()));
    let guarded = principal.is_some() && crate::guard::is_read(req.method(), &action);
    let who = principal.map(|(user, role, session)| Who { user: Some(user), role: Some(role), session: Some(session) });
    let mut ticket = None;
    if guarded && let Some(w) = &who {
        match app.guard.admit(w.user.as_deref().unwrap_or_default(), w.role.as_deref().unwrap_or_default()) {
            Admit::Go(t) => ticket = Some(t),
            Admit::Wait(seconds) => {
                app.metrics.rate_limited.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut rec = AuditRecord::new(action, Outcome::Denied(format!("429 Too Many Requests: over the account's read rate (retry after {seconds} s)")));
                rec.who = who.unwrap_or_default();
                rec.source = src;
                rec.what = what;
                let mut resp = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    IssueType::Throttled,
                    format!("this account is reading faster than allowed ([access] reads_per_minute); try again in {seconds} s"),
                )
                .into_response();
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                return durable(&app, rec, resp).await;
            }
        }
    }
    let mut resp = next.run(req).await;
    let audited = resp.extensions_mut().remove::<Audited>().unwrap_or_default();
    let mut refusal = None;
    if let (Some(t), Some(w)) = (ticket, &who)
        && resp.status().is_success()
    {
        let (user, role) = (w.user.as_deref().unwrap_or_default(), w.role.as_deref().unwrap_or_default());
        match app.guard.sent(user, role, t, &audited.patients) {
            Sent::Fine => {}
            Sent::Crossed { distinct } => refusal = Some(crate::guard::suspend(&app, w, src.clone(), distinct).await),
            Sent::Suspended => refusal = Some("account suspended while this request ran".to_string()),
        }
    }
    if refusal.is_some() {
        // The data this handler produced does not leave.
        resp = ApiError::new(
            StatusCode::FORBIDDEN,
            IssueType::Forbidden,
            "this account has been suspended for an unusual pattern of access; the privacy officer has been alerted",
        )
        .into_response();
    }
    let outcome = match refusal {
        Some(reason) => Outcome::Denied(reason),
        // The policies refused, and the client was told "not found" (a protected record).
        None if resp.extensions().get::<crate::error::HiddenRefusal>().is_some() => {
            Outcome::Denied("404 Not Found (refused by the access policies; answered as unknown)".to_string())
        }
        None => outcome(resp.status()),
    };
    let mut rec = AuditRecord::new(action, outcome);
    rec.who = who.unwrap_or_default();
    rec.source = src;
    rec.what = what;
    rec.query = query.filter(|_| matches!(rec.action, Action::Search | Action::History | Action::Export));
    rec.returned = audited.returned;
    rec.patients = audited.patients;
    if rec.patients.is_empty() && rec.outcome != Outcome::Allowed {
        // A refused attempt on a record is still an attempt on its patient's record: look the
        // patient up (refusals are few, so the extra read is cheap).
        rec.patients.extend(rec.what.first().and_then(|w| patient_of_reference(&app, w)));
    }
    rec.patients.sort();
    rec.patients.dedup();
    mark_break_glass(&app, &mut rec);
    durable(&app, rec, resp).await
}

/// An access by a clinician who holds a break-the-glass grant for one of its patients is
/// recorded with that purpose of use, so that the privacy officer's review lists every access
/// made in the emergency window, not only the grant (`vaidya audit report --break-glass`).
fn mark_break_glass(app: &AppState, rec: &mut AuditRecord) {
    let clinician = matches!(rec.who.role.as_deref(), Some("doctor" | "nurse"));
    if rec.purpose.is_some() || !clinician || rec.patients.is_empty() {
        return;
    }
    let Some(user) = rec.who.user.clone() else { return };
    let now = vaidya_store::now_ms();
    let under_grant = app.read_now(|conn| {
        for p in &rec.patients {
            if vaidya_store::grants::active(conn, &user, p, now)? {
                return Ok(true);
            }
        }
        Ok(false)
    });
    if under_grant.unwrap_or(false) {
        rec.purpose = Some(vaidya_audit::Purpose::BreakTheGlass);
    }
}

fn patient_of_reference(app: &AppState, reference: &str) -> Option<String> {
    let (rtype, id) = reference.split_once('/')?;
    let id = id.split('/').next()?;
    let stored = app.read_now(|conn| Ok(vaidya_store::read::current(conn, rtype, id)?)).ok()??;
    let resource: serde_json::Value = serde_json::from_slice(&stored.content).ok()?;
    crate::fhir::authorize::patient_of(rtype, &resource)
}

/// Marks requests under `/print`, so that the shared middleware records them as printing.
#[derive(Clone, Copy)]
pub struct Printing;

pub async fn mark_printing(mut req: Request, next: Next) -> Response {
    req.extensions_mut().insert(Printing);
    next.run(req).await
}

/// The record of a request refused before it reached a handler: without valid credentials
/// (`who` is none), or by a rule of the account's kind (a patient's account writing, a token's
/// scopes). Built before any await, so that the request itself is not held across one.
pub fn refused(req: &Request, who: Option<&Principal>, status: StatusCode) -> AuditRecord {
    let (action, what) = classify(req.method(), req.uri().path(), false);
    let why = if who.is_some() { status.to_string() } else { "no valid bearer token".to_string() };
    let mut rec = AuditRecord::new(action, Outcome::Denied(why));
    rec.who = who.map(|p| Who { user: Some(p.user.clone()), role: Some(p.role.clone()), session: Some(p.token_id.clone()) }).unwrap_or_default();
    rec.source = source(req);
    rec.what = what;
    rec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_from_method_and_path() {
        let c = |m: Method, p: &str| classify(&m, p, false);
        assert_eq!(c(Method::GET, "/Patient/p1"), (Action::Read, vec!["Patient/p1".to_string()]));
        assert_eq!(c(Method::GET, "/Patient"), (Action::Search, vec!["Patient".to_string()]));
        assert_eq!(c(Method::POST, "/Patient/_search"), (Action::Search, vec!["Patient".to_string()]));
        assert_eq!(c(Method::GET, "/Patient/p1/_history/2"), (Action::VRead, vec!["Patient/p1/_history/2".to_string()]));
        assert_eq!(c(Method::GET, "/Patient/p1/_history").0, Action::History);
        assert_eq!(c(Method::GET, "/_history").0, Action::History);
        assert_eq!(c(Method::POST, "/Invoice/i1/$pay"), (Action::Operation("$pay".into()), vec!["Invoice/i1".to_string()]));
        assert_eq!(c(Method::POST, "/Invoice/$gather"), (Action::Operation("$gather".into()), vec!["Invoice".to_string()]));
        assert_eq!(c(Method::PUT, "/Patient/p1").0, Action::Update);
        assert_eq!(c(Method::DELETE, "/Patient/p1").0, Action::Delete);
        assert_eq!(c(Method::GET, "/$export"), (Action::Export, vec![]));
        assert_eq!(c(Method::GET, "/Group/g1/$export"), (Action::Export, vec!["Group/g1".to_string()]));
        assert_eq!(c(Method::GET, "/$export-file/j1/Patient-1.ndjson"), (Action::Export, vec!["$export-file/j1/Patient-1.ndjson".to_string()]));
        assert_eq!(c(Method::GET, "/Patient/$export").0, Action::Export);
        assert_eq!(c(Method::POST, "/").0, Action::Transaction);
        assert_eq!(c(Method::GET, "/feed"), (Action::Operation("node-feed".into()), vec![]));
        assert_eq!(classify(&Method::GET, "/DiagnosticReport/r1", true), (Action::Print, vec!["DiagnosticReport/r1".to_string()]));
        assert_eq!(outcome(StatusCode::FORBIDDEN), Outcome::Denied("403 Forbidden".into()));
        assert_eq!(outcome(StatusCode::OK), Outcome::Allowed);
    }
}
