//! One error type for the HTTP API: every failure leaves as an OperationOutcome with the
//! status that says what kind of failure it was.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use vaidya_fhir::outcome::{Issue, IssueType, operation_outcome};
use vaidya_store::StoreError;
use vaidya_store::search::SearchError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub issues: Vec<Issue>,
    /// A refusal by the access policies answered as "not found", so that the record's
    /// existence is not betrayed; the audit trail records it as denied ([`HiddenRefusal`]).
    pub hidden_refusal: bool,
}

/// Left on a response that says 404 for a record the policies refused (see
/// [`ApiError::hidden`]); never sent to the client.
#[derive(Debug, Clone, Copy)]
pub struct HiddenRefusal;

impl ApiError {
    pub fn new(status: StatusCode, code: IssueType, message: impl Into<String>) -> ApiError {
        ApiError { status, issues: vec![Issue::error(code, message)], hidden_refusal: false }
    }
    /// 404 for a record that exists but that the policies refuse to show.
    pub fn hidden(message: impl Into<String>) -> ApiError {
        ApiError { hidden_refusal: true, ..ApiError::not_found(message) }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, IssueType::Invalid, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, IssueType::NotFound, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, IssueType::Login, message)
    }
    pub fn invalid_resource(issues: Vec<Issue>) -> ApiError {
        ApiError { status: StatusCode::BAD_REQUEST, issues, hidden_refusal: false }
    }
    /// The issues' diagnostics as one line (for logs and messages to operators).
    pub fn message(&self) -> String {
        self.issues.iter().map(|i| i.diagnostics.as_str()).collect::<Vec<_>>().join("; ")
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, IssueType::Exception, message)
    }
    /// Prefix every issue's expression, e.g. with `Bundle.entry[3].resource`.
    pub fn within(mut self, prefix: &str) -> ApiError {
        for issue in &mut self.issues {
            issue.diagnostics = format!("{prefix}: {}", issue.diagnostics);
        }
        self
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        // A server that does not hold the writer's lock refusing a write is routine.
        if matches!(e, StoreError::NotWriter) {
            tracing::debug!("{e}");
        } else {
            tracing::error!("store error: {e}");
        }
        match e {
            StoreError::WriterGone | StoreError::CommitFailed(_) | StoreError::NotShipped(_) | StoreError::NotWriter => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, IssueType::Transient, e.to_string())
            }
            StoreError::Postgres(pg) if pg.is_closed() || pg.code().is_none() => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                IssueType::Transient,
                "the database cannot be reached just now (a failover?); try again in a few seconds",
            ),
            _ => ApiError::internal("internal storage error; the event was logged"),
        }
    }
}

impl From<SearchError> for ApiError {
    fn from(e: SearchError) -> ApiError {
        let code = match &e {
            SearchError::UnknownParam(..) => IssueType::NotSupported,
            SearchError::NotSupported { .. } => IssueType::NotSupported,
            SearchError::BadValue { .. } => IssueType::Invalid,
            SearchError::TooMuch(_) => IssueType::TooCosts,
        };
        ApiError::new(StatusCode::BAD_REQUEST, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&operation_outcome(&self.issues)).expect("JSON value serialises");
        let mut resp = (self.status, body).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(crate::fhir::FHIR_JSON));
        if self.hidden_refusal {
            resp.extensions_mut().insert(HiddenRefusal);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"vaidya\""));
        }
        resp
    }
}
