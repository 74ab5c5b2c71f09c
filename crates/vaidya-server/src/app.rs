//! The HTTP application: shared state, the router, authentication, health and metrics.

use crate::config::Config;
use crate::error::ApiError;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use vaidya_store::Store;

/// What every request handler shares. Cheap to clone (one `Arc`): axum clones the state for
/// every middleware layer of every request.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl std::ops::Deref for AppState {
    type Target = AppParts;
    fn deref(&self) -> &AppParts {
        &self.0
    }
}

impl AppState {
    pub fn new(parts: AppParts) -> AppState {
        AppState(Arc::new(parts))
    }
}

pub struct AppParts {
    pub store: Arc<Store>,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    /// The access policies every interaction is checked against (swapped whole on reload).
    pub policies: vaidya_policy::Policies,
    /// The audit ledger every access is recorded in before its response leaves.
    pub audit: vaidya_audit::Audit,
    /// The privacy officer's alerts (log, and the webhook if configured).
    pub alerts: crate::alerts::Alerts,
    /// The exfiltration guard: per-account read rate and distinct-patient anomaly rule.
    pub guard: Arc<crate::guard::Guard>,
    /// Bearer tokens already looked up, valid until anything is committed to the database.
    pub tokens: crate::auth::TokenCache,
    /// The backup shipper, when `[backup]` is configured.
    pub backup: Option<Arc<vaidya_backup::ship::Shipper>>,
    /// On a department node (`vaidya node`): the link to the core and the node's mode.
    pub node: Option<Arc<crate::node::link::NodeLink>>,
}

/// Counters for `/metrics` (Prometheus text format).
#[derive(Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    pub responses_4xx: AtomicU64,
    pub responses_5xx: AtomicU64,
    pub auth_failures: AtomicU64,
    /// Break-the-glass grants made: every one is an alert for the privacy officer.
    pub break_glass: AtomicU64,
    /// Reads refused by the per-account rate limit (429).
    pub rate_limited: AtomicU64,
    /// Accounts suspended by the anomaly rule: every one is an alert for the privacy officer.
    pub account_suspensions: AtomicU64,
    /// Alerts that could not be delivered to the `[alerts]` webhook.
    pub alert_delivery_failures: AtomicU64,
}

/// Who is calling, as established from their bearer token.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: String,
    pub role: String,
    pub token_id: String,
    /// For a patient's own account: their Patient id.
    pub patient: Option<String>,
    /// The department (HealthcareService id) a staff account works in.
    pub department: Option<String>,
    /// The Practitioner a clinician's account is (for the care relationship).
    pub practitioner: Option<String>,
    /// The token's SMART scopes; `None`: whatever the role may do. Checked by path in
    /// `auth::scopes::check` (the hook the policy layer takes over).
    pub scopes: Option<vaidya_access::scope::ScopeSet>,
}

impl AppState {
    /// Run a short point read (a primary-key lookup) right here on the async worker. Cheaper
    /// than a hop to the blocking pool for reads that take microseconds; never use it for
    /// searches or scans, which go through [`AppState::read`].
    pub fn read_now<T>(&self, f: impl FnOnce(&vaidya_store::Conn) -> Result<T, ApiError>) -> Result<T, ApiError> {
        self.store.read(f)
    }

    /// Run a read on the blocking pool with a reader connection.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&vaidya_store::Conn) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.read(f))
            .await
        .map_err(|e| ApiError::internal(format!("read task failed: {e}")))?
    }
}

pub fn router(state: AppState) -> Router {
    let max_body = state.config.limits.max_body_bytes;
    let fhir = crate::fhir::rest::router(state.clone(), max_body);
    Router::new()
        .route("/", get(home))
        .route("/healthz", get(healthz))
        .route("/healthz/writer", get(healthz_writer))
        .route("/metrics", get(metrics))
        .route("/ledger/root", get(crate::backup::ledger_root))
        .nest("/node", if state.node.is_some() { crate::node::node_side_router(state.clone()) } else { crate::node::router(state.clone()) })
        .nest("/fhir", fhir)
        .nest("/print", crate::print::router(state.clone()))
        .nest("/auth", crate::auth::router(state.clone()))
        .merge(crate::web::router(state.clone()))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), count_requests))
        .with_state(state)
}

async fn count_requests(State(app): State<AppState>, req: Request, next: Next) -> Response {
    app.metrics.requests.fetch_add(1, Ordering::Relaxed);
    let resp = next.run(req).await;
    if resp.status().is_client_error() {
        app.metrics.responses_4xx.fetch_add(1, Ordering::Relaxed);
    } else if resp.status().is_server_error() {
        app.metrics.responses_5xx.fetch_add(1, Ordering::Relaxed);
    }
    resp
}

/// Bearer-token authentication for the FHIR API.
pub async fn authenticate(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|t| t.trim().to_string());
    let Some(token) = presented else {
        app.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
        let resp = ApiError::unauthorized("a bearer token is required (see `vaidya token --help`)").into_response();
        let rec = crate::audit::refused(&req, None, resp.status());
        return crate::audit::durable(&app, rec, resp).await;
    };
    let acting = req.headers().get(crate::node::link::ACT_AS_HEADER).map(|v| v.to_str().map(str::to_string));
    let acted = acting.is_some();
    let checked = match (check_token(&app, &token), acting) {
        (Ok(Some(node)), Some(Ok(user))) => crate::node::link::act_as(&app, &node, &user).map(Some),
        (Ok(Some(_)), Some(Err(_))) => Err(ApiError::bad_request("the act-as header is not text")),
        (other, _) => other,
    };
    match checked {
        Ok(Some(p)) => {
            let rule = crate::fhir::visibility::check_patient_request(&p, req.method(), req.uri().path())
                .and_then(|()| crate::auth::scopes::check(&p, req.method(), req.uri()));
            if let Err(e) = rule {
                let resp = e.into_response();
                let rec = crate::audit::refused(&req, Some(&p), resp.status());
                return crate::audit::durable(&app, rec, resp).await;
            }
            req.extensions_mut().insert(p);
            let mut resp = next.run(req).await;
            if acted {
                // A write a department node forwarded: say how far the ledger is after it, so
                // that the node can wait for its replica to show it.
                if let Ok(n) = app.read_now(|conn| Ok(vaidya_store::read::ledger_size(conn)?))
                    && let Ok(v) = axum::http::HeaderValue::from_str(&n.to_string())
                {
                    resp.headers_mut().insert(crate::node::link::LEDGER_SIZE_HEADER, v);
                }
            }
            resp
        }
        Ok(None) => {
            app.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
            let resp = ApiError::unauthorized("the bearer token is not valid (unknown, expired, idle, revoked, or its account disabled)").into_response();
            let rec = crate::audit::refused(&req, None, resp.status());
            crate::audit::durable(&app, rec, resp).await
        }
        Err(e) => {
            let resp = e.into_response();
            let rec = crate::audit::refused(&req, None, resp.status());
            crate::audit::durable(&app, rec, resp).await
        }
    }
}

/// Look the token up (a primary-key read, done in place: it takes microseconds); the rules
/// (expiry, idle sessions, disabled accounts, scopes) are `auth::bearer`'s. A login session
/// whose password must still be changed may only do that (on `/auth/password`).
fn check_token(app: &AppState, token: &str) -> Result<Option<Principal>, ApiError> {
    match crate::auth::bearer(app, token)? {
        Some(b) if b.row.kind == vaidya_store::tokens::KIND_SESSION && b.row.must_change_password => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            vaidya_fhir::outcome::IssueType::Security,
            "change the one-time password first (POST /auth/password), then use this session",
        )),
        Some(b) => Ok(Some(b.principal)),
        None => Ok(None),
    }
}

async fn home(State(app): State<AppState>) -> Html<String> {
    // The staff web UI arrives with its own issue; until then this page says where things are.
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Vaidya</title></head>\
         <body><h1>Vaidya — {}</h1><p>FHIR R4 API: <a href=\"/fhir/metadata\">/fhir</a>. \
         Health: <a href=\"/healthz\">/healthz</a>. Metrics: <a href=\"/metrics\">/metrics</a>.</p></body></html>",
        html_escape(&app.config.hospital_name)
    ))
}

/// Text for HTML built by hand (a template escapes by itself).
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

async fn healthz(State(app): State<AppState>) -> Response {
    if let Some(node) = &app.node {
        return crate::node::link::healthz(node);
    }
    match app.read(|conn| Ok(vaidya_store::read::ledger_size(conn)?)).await {
        Ok(n) => (StatusCode::OK, format!("ok ledger_entries={n}\n")).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response(),
    }
}

/// `GET /healthz/writer`: 200 on the server that writes now, 503 on one that serves reads
/// only (PostgreSQL with several servers): a load balancer sends writes where this says 200.
async fn healthz_writer(State(app): State<AppState>) -> Response {
    if app.node.is_none() && app.store.is_writer() {
        (StatusCode::OK, "writer\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not the writer: reads only\n").into_response()
    }
}

async fn metrics(State(app): State<AppState>) -> Response {
    let size = app.read(|conn| Ok(vaidya_store::read::ledger_size(conn)?)).await.unwrap_or(0);
    let m = &app.metrics;
    let body = format!(
        "# HELP vaidya_http_requests_total HTTP requests received.\n# TYPE vaidya_http_requests_total counter\nvaidya_http_requests_total {}\n\
         # HELP vaidya_http_responses_4xx_total Responses with a 4xx status.\n# TYPE vaidya_http_responses_4xx_total counter\nvaidya_http_responses_4xx_total {}\n\
         # HELP vaidya_http_responses_5xx_total Responses with a 5xx status.\n# TYPE vaidya_http_responses_5xx_total counter\nvaidya_http_responses_5xx_total {}\n\
         # HELP vaidya_auth_failures_total Requests refused for a missing or invalid token.\n# TYPE vaidya_auth_failures_total counter\nvaidya_auth_failures_total {}\n\
         # HELP vaidya_break_glass_total Break-the-glass grants (alert on any increase).\n# TYPE vaidya_break_glass_total counter\nvaidya_break_glass_total {}\n\
         # HELP vaidya_rate_limited_total Reads refused by the per-account read-rate limit.\n# TYPE vaidya_rate_limited_total counter\nvaidya_rate_limited_total {}\n\
         # HELP vaidya_account_suspensions_total Accounts suspended by the exfiltration guard (alert on any increase).\n# TYPE vaidya_account_suspensions_total counter\nvaidya_account_suspensions_total {}\n\
         # HELP vaidya_alert_delivery_failures_total Alerts the webhook did not take (alert on any increase).\n# TYPE vaidya_alert_delivery_failures_total counter\nvaidya_alert_delivery_failures_total {}\n\
         # HELP vaidya_ledger_entries Entries in the data ledger.\n# TYPE vaidya_ledger_entries gauge\nvaidya_ledger_entries {}\n",
        m.requests.load(Ordering::Relaxed),
        m.responses_4xx.load(Ordering::Relaxed),
        m.responses_5xx.load(Ordering::Relaxed),
        m.auth_failures.load(Ordering::Relaxed),
        m.break_glass.load(Ordering::Relaxed),
        m.rate_limited.load(Ordering::Relaxed),
        m.account_suspensions.load(Ordering::Relaxed),
        m.alert_delivery_failures.load(Ordering::Relaxed),
        size
    );
    let mut body = body + &crate::backup::metrics(app.backup.as_deref());
    if let Some(node) = &app.node {
        // Counted now, not as the follower last saw it: a write a moment ago is in it.
        let waiting = app.read(|conn| Ok(crate::node::sendback::branch(conn)?)).await.ok().flatten().map_or(0, |(fork, _, size)| size - fork);
        body += &crate::node::link::metrics(node, waiting);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}
