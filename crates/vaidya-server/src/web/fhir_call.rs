//! The FHIR API, called in-process by the web UI's pages as the signed-in person: the request
//! goes through the same authentication, Cedar policies, exfiltration guard and audit record as
//! one from any API client, with the browser's address and user agent as its source.

use crate::app::AppState;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode, header};
use serde_json::Value;
use std::net::SocketAddr;
use tower::ServiceExt;

/// Largest FHIR answer a page reads.
const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

#[derive(Clone)]
pub struct Fhir(axum::Router);

impl Fhir {
    pub fn new(state: &AppState) -> Fhir {
        Fhir(crate::fhir::rest::router(state.clone(), state.config.limits.max_body_bytes).with_state(state.clone()))
    }

    /// `GET` a path below `/fhir` (with its query) with the session `token`, on behalf of the
    /// browser request whose `headers` and `peer` are given: the status and the JSON answer
    /// (an OperationOutcome when refused).
    pub async fn get(&self, token: &str, headers: &HeaderMap, peer: Option<SocketAddr>, path: &str) -> (StatusCode, Value) {
        self.call("GET", token, headers, peer, path, None).await
    }

    /// `POST` a FHIR resource (JSON) to a path below `/fhir`, as [`Fhir::get`] does a read.
    pub async fn post(&self, token: &str, headers: &HeaderMap, peer: Option<SocketAddr>, path: &str, body: &Value) -> (StatusCode, Value) {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        self.call("POST", token, headers, peer, path, Some(bytes)).await
    }

    /// `PUT` a FHIR resource (JSON) to a path below `/fhir` (create or update with its id).
    pub async fn put(&self, token: &str, headers: &HeaderMap, peer: Option<SocketAddr>, path: &str, body: &Value) -> (StatusCode, Value) {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        self.call("PUT", token, headers, peer, path, Some(bytes)).await
    }

    async fn call(&self, method: &str, token: &str, headers: &HeaderMap, peer: Option<SocketAddr>, path: &str, body: Option<Vec<u8>>) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path).header(header::AUTHORIZATION, format!("Bearer {token}"));
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/fhir+json");
        }
        for name in [header::USER_AGENT, header::HOST] {
            if let Some(v) = headers.get(&name) {
                req = req.header(name, v);
            }
        }
        let Ok(mut req) = req.header(header::ACCEPT, "application/fhir+json").body(body.map(Body::from).unwrap_or_else(Body::empty)) else {
            return (StatusCode::BAD_REQUEST, Value::Null);
        };
        if let Some(addr) = peer {
            req.extensions_mut().insert(ConnectInfo(addr));
        }
        let resp = match self.0.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = resp.status();
        match axum::body::to_bytes(resp.into_body(), MAX_ANSWER_BYTES).await {
            Ok(bytes) => (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)),
            Err(e) => {
                tracing::error!("reading a FHIR answer for a page failed: {e}");
                (StatusCode::INTERNAL_SERVER_ERROR, Value::Null)
            }
        }
    }
}

/// The message of an OperationOutcome (its first issue's diagnostics), for showing on a page.
pub fn outcome_message(ctx: &super::Ctx, v: &Value) -> String {
    let detail = v.pointer("/issue/0/diagnostics").and_then(Value::as_str).unwrap_or("the request was refused");
    match ctx.lang {
        super::i18n::Lang::En => detail.to_string(),
        // The server's own explanation is in English; say in Hindi what kind of refusal it is.
        super::i18n::Lang::Hi => {
            let kind = match v.pointer("/issue/0/code").and_then(Value::as_str) {
                Some("forbidden" | "security" | "login") => "अनुमति नहीं है",
                Some("not-found") => "नहीं मिला",
                Some("business-rule" | "conflict" | "duplicate") => "नियम के कारण नहीं हो सका",
                Some("invalid" | "structure" | "required" | "value" | "invariant") => "दी गई जानकारी सही नहीं है",
                Some("throttled") => "बहुत अधिक अनुरोध; थोड़ी देर बाद प्रयास करें",
                _ => "अनुरोध पूरा नहीं हो सका",
            };
            format!("{kind} ({detail})")
        }
    }
}

/// The printable documents (`/print/...`), called in-process by the web UI as the signed-in
/// person, as [`Fhir`] calls the API.
#[derive(Clone)]
pub struct Printer(axum::Router);

impl Printer {
    pub fn new(state: &AppState) -> Printer {
        Printer(crate::print::router(state.clone()).with_state(state.clone()))
    }

    /// The printable page of DiagnosticReport `id`, as `/print` answers it (its own security
    /// headers included).
    pub async fn report(&self, token: &str, headers: &HeaderMap, peer: Option<SocketAddr>, id: &str) -> axum::response::Response {
        let mut req = Request::builder().method("GET").uri(format!("/DiagnosticReport/{id}")).header(header::AUTHORIZATION, format!("Bearer {token}"));
        for name in [header::USER_AGENT, header::HOST] {
            if let Some(v) = headers.get(&name) {
                req = req.header(name, v);
            }
        }
        let Ok(mut req) = req.body(Body::empty()) else {
            return axum::response::IntoResponse::into_response(StatusCode::BAD_REQUEST);
        };
        if let Some(addr) = peer {
            req.extensions_mut().insert(ConnectInfo(addr));
        }
        match self.0.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        }
    }
}

/// One page's calls to the API as its signed-in person, with refusals as (status, message in
/// the page's language): what every screen module's requests go through.
pub struct Api<'a> {
    pub fhir: &'a Fhir,
    pub token: &'a str,
    pub headers: &'a HeaderMap,
    pub peer: Option<SocketAddr>,
    pub ctx: &'a super::Ctx,
}

impl Api<'_> {
    fn answer(&self, (status, v): (StatusCode, Value)) -> Result<Value, (StatusCode, String)> {
        if status.is_success() { Ok(v) } else { Err((status, outcome_message(self.ctx, &v))) }
    }

    pub async fn get(&self, path: &str) -> Result<Value, (StatusCode, String)> {
        self.answer(self.fhir.get(self.token, self.headers, self.peer, path).await)
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, (StatusCode, String)> {
        self.answer(self.fhir.post(self.token, self.headers, self.peer, path, body).await)
    }

    pub async fn put(&self, path: &str, body: &Value) -> Result<Value, (StatusCode, String)> {
        self.answer(self.fhir.put(self.token, self.headers, self.peer, path, body).await)
    }
}

/// The resources of a search Bundle.
pub fn entries(bundle: &Value) -> impl Iterator<Item = &Value> {
    bundle["entry"].as_array().into_iter().flatten().map(|e| &e["resource"])
}

/// A Patient's UHID ("" if none).
pub fn uhid_of(patient: &Value) -> String {
    patient["identifier"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["system"] == crate::fhir::UHID_SYSTEM)
        .and_then(|i| i["value"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// A FHIR id as a URL or form gives it, or `None` (then the page is not found or the form refused).
pub fn fhir_id(s: &str) -> Option<&str> {
    crate::fhir::is_valid_id(s).then_some(s)
}

/// One request to a screen: the server, the signed-in person and their request, the page's
/// context, and their calls to the API. Each screen module's own struct (`Chart`, `Lab`,
/// `Counter`, `Admin`) wraps one and reaches it through `Deref`.
pub struct Screen<'a> {
    pub app: &'a crate::app::AppState,
    pub fhir: &'a Fhir,
    pub s: &'a super::Signed,
    pub headers: &'a HeaderMap,
    pub peer: Option<SocketAddr>,
    pub ctx: &'a super::Ctx,
}

impl<'a> Screen<'a> {
    pub fn new(app: &'a crate::app::AppState, fhir: &'a Fhir, s: &'a super::Signed, headers: &'a HeaderMap, peer: crate::auth::Peer, ctx: &'a super::Ctx) -> Screen<'a> {
        Screen { app, fhir, s, headers, peer: peer.map(|p| p.0.0), ctx }
    }

    pub fn api(&self) -> Api<'_> {
        Api { fhir: self.fhir, token: &self.s.token, headers: self.headers, peer: self.peer, ctx: self.ctx }
    }

    pub async fn get(&self, path: &str) -> Result<Value, (StatusCode, String)> {
        self.api().get(path).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, (StatusCode, String)> {
        self.api().post(path, body).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Result<Value, (StatusCode, String)> {
        self.api().put(path, body).await
    }
}
