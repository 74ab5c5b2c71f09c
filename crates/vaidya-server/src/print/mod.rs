//! Printable documents, as HTML pages with print CSS (A4): `GET /print/DiagnosticReport/{id}`
//! is a released lab or radiology report with the hospital's header, the patient, the order and
//! sample, the results with their ranges and flags, and who entered and verified them.
//!
//! Pages are askama templates (`crates/vaidya-server/templates/`, compiled into the binary,
//! every value HTML-escaped); [`report`] turns stored resources into the page's view model and
//! [`format`] turns FHIR data types into text. Pages are served with a Content-Security-Policy
//! that allows no scripts and no external resources, as a second line behind escaping.

pub mod format;
pub mod report;

use crate::app::{AppState, Principal};
use crate::error::ApiError;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router, middleware};

/// The routes under `/print`, behind the same bearer-token authentication as `/fhir`.
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/DiagnosticReport/{id}", get(diagnostic_report))
        .route_layer(middleware::from_fn_with_state(state.clone(), crate::audit::record))
        .route_layer(middleware::from_fn(crate::audit::mark_printing))
        .route_layer(middleware::from_fn_with_state(state, crate::app::authenticate))
}

async fn diagnostic_report(State(app): State<AppState>, Extension(who): Extension<Principal>, Path(id): Path<String>) -> Response {
    let hospital = app.config.hospital_name.clone();
    match render_report(app, who, id).await {
        Ok(html) => html_response(StatusCode::OK, html),
        Err(e) => error_page(&hospital, e),
    }
}

async fn render_report(app: AppState, who: Principal, id: String) -> Result<String, ApiError> {
    crate::fhir::check_id(&id)?;
    let viewer = crate::fhir::visibility::Viewer::of(&who);
    let (actor, policies) = (crate::fhir::authorize::actor(&who), app.policies.clone());
    let sources = app
        .read(move |conn| {
            let sources = report::load(conn, &id, &viewer)?;
            // Printing a report is reading it (the policies' view of the report's patient).
            if let Some(stored) = vaidya_store::read::current(conn, "DiagnosticReport", &id)? {
                crate::fhir::authorize::check_stored(conn, &policies, &actor, vaidya_policy::Action::Read, "DiagnosticReport", &id, &stored.content)?;
            }
            Ok(sources)
        })
        .await?;
    let ctx = report::Context {
        hospital: app.config.hospital_name.clone(),
        zone: format::Zone::from_config(&app.config.timezone),
        now_ms: vaidya_store::now_ms(),
        printed_by: who.user,
    };
    report::view(&sources, &ctx).render().map_err(|e| ApiError::internal(format!("the report page did not render: {e}")))
}

/// A short page saying why there is nothing to print, with the error's status.
#[derive(Template)]
#[template(path = "print/message.html")]
struct MessagePage<'a> {
    hospital: &'a str,
    heading: String,
    message: String,
}

fn error_page(hospital: &str, e: ApiError) -> Response {
    if e.status.is_server_error() {
        tracing::error!("print: {:?}", e.issues);
    }
    let heading = match e.status {
        StatusCode::CONFLICT => "Not released".to_string(),
        s => format!("{} {}", s.as_u16(), s.canonical_reason().unwrap_or("Error")),
    };
    let message = e.issues.iter().map(|i| i.diagnostics.as_str()).collect::<Vec<_>>().join(" ");
    match (MessagePage { hospital, heading, message }).render() {
        Ok(html) => html_response(e.status, html),
        Err(_) => e.into_response(),
    }
}

/// An HTML page: no caching (it holds patient data), no scripts, nothing loaded from elsewhere.
fn html_response(status: StatusCode, html: String) -> Response {
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    );
    resp
}
