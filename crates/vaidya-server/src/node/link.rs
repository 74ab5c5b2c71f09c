//! A department node serving its department: the whole web UI and FHIR API, over its replica.
//!
//! Reads are always answered here, from the replica. Writes depend on the mode:
//! - online: forwarded to the core (`/fhir`, with the node's token and the signed-in person
//!   named in `X-Vaidya-Act-As`: the core applies that person's policies and records the
//!   access under their name), and answered once the replica has the core's entries for
//!   them, so that the next page shows what was just entered;
//! - downtime: written here, on the node's branch (see `follow.rs`), with the same code and
//!   policies as the core;
//! - handing back: refused for the few seconds it takes (503, try again).
//!
//! Every page carries a banner saying which node this is and, in downtime, that the core is
//! unreachable and since when.

use super::follow::{FollowStatus, Mode};
use crate::app::{AppState, Principal};
use crate::error::ApiError;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vaidya_fhir::outcome::IssueType;

/// The header naming the person a node forwards a write for.
pub const ACT_AS_HEADER: &str = "x-vaidya-act-as";
/// The core's ledger size after a forwarded write (the node waits for its replica to have it).
pub const LEDGER_SIZE_HEADER: &str = "x-vaidya-ledger-size";
/// How long a forwarded write may take at the core.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a node waits for its replica to show a forwarded write before answering anyway.
const CATCH_UP_WAIT: Duration = Duration::from_secs(3);
/// Roles that never work through a node (nor sign in at one): they sign in at the core.
pub const NOT_THROUGH_NODES: [&str; 5] = ["admin", "privacy-officer", "auditor", "node", "patient"];

/// What the node's app knows of the node.
pub struct NodeLink {
    pub department: String,
    pub issuer: u8,
    pub core: String,
    pub token: String,
    pub status: Arc<Mutex<FollowStatus>>,
    /// Held (shared) by each write made in downtime, and taken (exclusive) by the follower to
    /// leave downtime: a hand-back never starts while a downtime write is half done.
    pub writes: Arc<tokio::sync::RwLock<()>>,
    pub agent: ureq::Agent,
}

impl NodeLink {
    pub fn new(department: String, issuer: u8, core: String, token: String, status: Arc<Mutex<FollowStatus>>, writes: Arc<tokio::sync::RwLock<()>>) -> NodeLink {
        let agent = ureq::Agent::config_builder().timeout_global(Some(FORWARD_TIMEOUT)).http_status_as_error(false).build().into();
        NodeLink { department, issuer, core, token, status, writes, agent }
    }

    pub fn status(&self) -> FollowStatus {
        self.status.lock().expect("not poisoned").clone()
    }

    pub fn mode(&self) -> Mode {
        self.status.lock().expect("not poisoned").mode
    }
}

/// Whether a FHIR request only reads.
fn is_read(method: &Method, path: &str) -> bool {
    method == Method::GET || method == Method::HEAD || (method == Method::POST && path.ends_with("/_search"))
}

/// Around the FHIR API on a node (inside authentication): send writes where the mode says.
pub async fn gate(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let Some(node) = app.node.clone() else { return next.run(req).await };
    if is_read(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    match node.mode() {
        Mode::Online => forward(&app, &node, req).await.unwrap_or_else(IntoResponse::into_response),
        Mode::Downtime => {
            let _writing = node.writes.clone().read_owned().await;
            if node.mode() != Mode::Downtime {
                return handing_back().into_response();
            }
            next.run(req).await
        }
        Mode::HandingBack => handing_back().into_response(),
    }
}

fn handing_back() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        IssueType::Transient,
        "the core is back and this node is handing back its downtime entries: try again in a few seconds",
    )
}

/// Forward a write to the core for the signed-in person; answer with the core's answer once
/// the replica has caught up with it.
async fn forward(app: &AppState, node: &Arc<NodeLink>, req: Request) -> Result<Response, ApiError> {
    let who = req.extensions().get::<Principal>().cloned().ok_or_else(|| ApiError::internal("a forwarded write without a caller"))?;
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, app.config.limits.max_body_bytes)
        .await
        .map_err(|e| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, IssueType::TooLong, format!("the request body: {e}")))?;
    let path = parts.uri.path_and_query().map_or(parts.uri.path(), |p| p.as_str()).to_string();
    let url = format!("{}/fhir{}", node.core.trim_end_matches('/'), path);
    let passed: Vec<(String, String)> = [header::CONTENT_TYPE, header::ACCEPT, header::IF_MATCH, header::IF_NONE_MATCH, header::HeaderName::from_static("if-none-exist"), header::HeaderName::from_static("prefer")]
        .iter()
        .filter_map(|h| parts.headers.get(h).and_then(|v| v.to_str().ok()).map(|v| (h.to_string(), v.to_string())))
        .collect();
    let (agent, token, method, user) = (node.agent.clone(), node.token.clone(), parts.method.clone(), who.user.clone());
    let answer = tokio::task::spawn_blocking(move || -> Result<(u16, HeaderMap, Vec<u8>), String> {
        let mut b = axum::http::Request::builder().method(method.as_str()).uri(&url).header("Authorization", format!("Bearer {token}")).header(ACT_AS_HEADER, &user);
        for (k, v) in &passed {
            b = b.header(k.as_str(), v.as_str());
        }
        let request = b.body(bytes.to_vec()).map_err(|e| e.to_string())?;
        let resp = agent.run(request).map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().with_config().limit(64 << 20).read_to_vec().map_err(|e| e.to_string())?;
        Ok((status, headers, body))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            IssueType::Transient,
            format!("the core did not take the write ({e}); if it stays silent this node switches to downtime mode within seconds: check whether it was saved, then try again"),
        )
    })?;
    let (status, headers, body) = answer;
    if let Some(size) = headers.get(LEDGER_SIZE_HEADER).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok()) {
        let mut signed = app.store.checkpoints();
        let _ = tokio::time::timeout(CATCH_UP_WAIT, signed.wait_for(|n| *n >= size)).await;
    }
    let mut resp = Response::builder().status(status);
    for h in [header::CONTENT_TYPE, header::ETAG, header::LAST_MODIFIED] {
        if let Some(v) = headers.get(&h) {
            resp = resp.header(h, v);
        }
    }
    // A new record's address, at this node (the client's base), not the core's.
    let here = crate::fhir::wire::base_url(&parts.headers);
    for h in [header::LOCATION, header::CONTENT_LOCATION] {
        if let Some((_, rest)) = headers.get(&h).and_then(|v| v.to_str().ok()).and_then(|v| v.split_once("/fhir/")) {
            resp = resp.header(h, format!("{here}/{rest}"));
        }
    }
    resp.body(Body::from(body)).map_err(|e| ApiError::internal(e.to_string()))
}

/// On the core: the principal a node's write acts for (header [`ACT_AS_HEADER`]): a staff
/// account in good standing that may act through a node; only a node account may ask.
pub fn act_as(app: &AppState, node: &Principal, user: &str) -> Result<Principal, ApiError> {
    let forbidden = |m: String| ApiError::new(StatusCode::FORBIDDEN, IssueType::Forbidden, m);
    if node.role != crate::guard::NODE_ROLE {
        return Err(forbidden(format!("only a department node's account acts for another (this is '{}')", node.user)));
    }
    let name = user.to_string();
    let row = app.read_now(move |conn| {
        use vaidya_store::Db;
        Ok(conn.query_opt(
            "SELECT role, department, patient, practitioner, disabled_ms FROM api_user WHERE name = ?1",
            &vaidya_store::sql_params![&name],
            |r| Ok((r.get::<String>(0)?, r.get::<Option<String>>(1)?, r.get::<Option<String>>(2)?, r.get::<Option<String>>(3)?, r.get::<Option<i64>>(4)?)),
        )?)
    })?;
    let Some((role, department, patient, practitioner, disabled)) = row else { return Err(forbidden(format!("no account '{user}' here"))) };
    if disabled.is_some() {
        return Err(forbidden(format!("the account '{user}' is disabled")));
    }
    if NOT_THROUGH_NODES.contains(&role.as_str()) {
        return Err(forbidden(format!("a {role} account signs in at the core, not through a department node")));
    }
    Ok(Principal { user: user.to_string(), role, token_id: node.token_id.clone(), patient, department, practitioner, scopes: None })
}

/// The banner every page of a node's UI carries (HTML), or nothing on the core.
pub fn banner(app: &AppState) -> Option<String> {
    let node = app.node.as_ref()?;
    let s = node.status();
    let dept = crate::app::html_escape(&node.department);
    Some(match s.mode {
        Mode::Online => format!(
            "<div class=\"node-banner\" role=\"status\">Department node: {dept} &middot; following the core ({} ms behind)</div>",
            s.last_lag_ms
        ),
        Mode::Downtime => {
            let zone = crate::print::format::Zone::from_config(&app.config.timezone);
            let since = s.downtime_since_ms.map(|ms| zone.date_time(ms)).unwrap_or_default();
            format!(
                "<div class=\"node-banner downtime\" role=\"alert\"><strong>DOWNTIME MODE</strong> since {since}: the core does not answer. \
                 {dept} keeps working on this node (new UHIDs and receipts from its own range); everything entered is handed back to the core when it returns.</div>"
            )
        }
        Mode::HandingBack => "<div class=\"node-banner downtime\" role=\"alert\"><strong>The core is back:</strong> handing back the entries made in downtime. Saving is paused for a few seconds.</div>".to_string(),
    })
}

/// Insert the node banner right after `<body...>`.
pub fn with_banner(html: String, banner: &str) -> String {
    match html.find("<body").and_then(|i| html[i..].find('>').map(|j| i + j + 1)) {
        Some(at) => format!("{}{banner}{}", &html[..at], &html[at..]),
        None => html,
    }
}

/// `GET /healthz` on a node.
pub fn healthz(node: &NodeLink) -> Response {
    let st = node.status();
    let text = format!(
        "ok node mode={} department={} ledger_entries={} core_entries={} lag_ms={} refused={}\n",
        st.mode.as_str(),
        node.department,
        st.entries,
        st.core_entries,
        st.last_lag_ms,
        st.refused
    );
    (StatusCode::OK, text).into_response()
}

/// `GET /node/status` on a node: the follower's whole status (JSON).
pub async fn status_json(State(app): State<AppState>) -> Response {
    match &app.node {
        Some(node) => axum::Json(node.status()).into_response(),
        None => crate::app::not_found().await.into_response(),
    }
}

/// The node's lines of `/metrics`; `waiting`: its downtime entries not yet handed back.
pub fn metrics(node: &NodeLink, waiting: u64) -> String {
    let st = node.status();
    let behind = st.core_entries.saturating_sub(st.entries);
    let answered = st.core_answered_ms as f64 / 1000.0;
    format!(
        "# HELP vaidya_node_downtime 1 while the node is in downtime mode (the core does not answer).\n# TYPE vaidya_node_downtime gauge\nvaidya_node_downtime {}\n\
         # HELP vaidya_node_downtimes_total Switches to downtime mode since start.\n# TYPE vaidya_node_downtimes_total counter\nvaidya_node_downtimes_total {}\n\
         # HELP vaidya_node_entries Ledger entries in the node's replica.\n# TYPE vaidya_node_entries gauge\nvaidya_node_entries {}\n\
         # HELP vaidya_node_core_entries The core's signed ledger as last heard.\n# TYPE vaidya_node_core_entries gauge\nvaidya_node_core_entries {}\n\
         # HELP vaidya_node_behind_entries Entries the core has signed that the replica lacks.\n# TYPE vaidya_node_behind_entries gauge\nvaidya_node_behind_entries {behind}\n\
         # HELP vaidya_node_lag_seconds Commit-to-replica lag of the last entry applied.\n# TYPE vaidya_node_lag_seconds gauge\nvaidya_node_lag_seconds {}\n\
         # HELP vaidya_node_lag_p99_seconds Commit-to-replica lag, 99th percentile since start.\n# TYPE vaidya_node_lag_p99_seconds gauge\nvaidya_node_lag_p99_seconds {}\n\
         # HELP vaidya_node_core_answered_timestamp_seconds When the core last answered.\n# TYPE vaidya_node_core_answered_timestamp_seconds gauge\nvaidya_node_core_answered_timestamp_seconds {answered}\n\
         # HELP vaidya_node_failures_total Feed requests that failed (core unreachable).\n# TYPE vaidya_node_failures_total counter\nvaidya_node_failures_total {}\n\
         # HELP vaidya_node_state_updates_total Times the accounts, grants and counters were updated from the core.\n# TYPE vaidya_node_state_updates_total counter\nvaidya_node_state_updates_total {}\n\
         # HELP vaidya_node_refused_total Feeds refused by a check (alert on increase).\n# TYPE vaidya_node_refused_total counter\nvaidya_node_refused_total {}\n\
         # HELP vaidya_node_downtime_entries Entries made on this node in downtime, not yet handed back.\n# TYPE vaidya_node_downtime_entries gauge\nvaidya_node_downtime_entries {}\n\
         # HELP vaidya_node_handed_back_total Downtime entries handed back to the core since start.\n# TYPE vaidya_node_handed_back_total counter\nvaidya_node_handed_back_total {}\n\
         # HELP vaidya_node_queued_total Units of downtime entries the core queued for a person since start.\n# TYPE vaidya_node_queued_total counter\nvaidya_node_queued_total {}\n",
        u8::from(st.mode != Mode::Online),
        st.downtimes,
        st.entries,
        st.core_entries,
        st.last_lag_ms as f64 / 1000.0,
        st.lag.p99_ms as f64 / 1000.0,
        st.failures,
        st.state_updates,
        st.refused,
        waiting,
        st.handed_back,
        st.queued,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_goes_right_after_the_body_tag_and_writes_are_told_from_reads() {
        let page = "<html><head><title>t</title></head><body class=\"x\"><h1>Hi</h1></body></html>".to_string();
        assert_eq!(with_banner(page, "<div>B</div>"), "<html><head><title>t</title></head><body class=\"x\"><div>B</div><h1>Hi</h1></body></html>");
        assert_eq!(with_banner("no body".into(), "<div>B</div>"), "no body");
        assert!(is_read(&Method::GET, "/Patient"));
        assert!(is_read(&Method::POST, "/Patient/_search"));
        assert!(!is_read(&Method::POST, "/Patient"));
        assert!(!is_read(&Method::PUT, "/Patient/1"));
        assert!(!is_read(&Method::POST, "/Appointment/1/$checkin"));
    }
}
