//! Fast in-process tests of the HTTP surface: the router is called directly with
//! `tower::ServiceExt::oneshot`, no sockets and no child process.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::sync::Arc;
use tower::ServiceExt;
use vaidya_server::app::{AppParts, AppState, Metrics, router};
use vaidya_server::config::Config;
use vaidya_server::datadir;

struct App {
    _dir: tempfile::TempDir,
    state: AppState,
    token: String,
}

fn app() -> App {
    let dir = tempfile::tempdir().unwrap();
    let config = Config { data: dir.path().to_path_buf(), ..Config::default() };
    let (key, created) = datadir::init(&config).unwrap();
    assert!(created.is_some(), "a first start creates the admin account");
    let audit_key = vaidya_ledger::LedgerKey::from_private(key.private_text()).unwrap();
    let audit = vaidya_audit::Audit::open_in_data_dir(&config.data, audit_key).unwrap();
    let store = vaidya_store::Store::open(&datadir::db_path(&config.data), key).unwrap();
    let conn = vaidya_store::open_admin(&datadir::db_path(&config.data)).unwrap();
    let t = vaidya_access::token::generate();
    // An integration account: the administrator may not read patients' records.
    vaidya_store::tokens::insert_user(&conn, "integration", "machine", None, None, false).unwrap();
    vaidya_store::tokens::insert_token(&conn, &t.id, &t.secret_hash, "integration", None).unwrap();
    let guard = Arc::new(vaidya_server::guard::Guard::new(vaidya_server::guard::Limits::from_config(&config.access)));
    let metrics = Arc::new(Metrics::default());
    let alerts = vaidya_server::alerts::Alerts::log_only(metrics.clone());
    let tokens = vaidya_server::auth::TokenCache::open(&datadir::db_path(&config.data)).unwrap();
    let state = AppState::new(AppParts {
        store: Arc::new(store),
        config: Arc::new(config),
        metrics,
        policies: vaidya_policy::Policies::builtin(),
        audit,
        guard,
        alerts,
        tokens,
        backup: None,
        node: None,
    });
    App { _dir: dir, state, token: t.text }
}

async fn call(app: &App, method: &str, uri: &str, body: Option<Value>, auth: bool) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri).header(header::HOST, "localhost");
    if auth {
        req = req.header(header::AUTHORIZATION, format!("Bearer {}", app.token));
    }
    let req = match body {
        Some(b) => req.header(header::CONTENT_TYPE, "application/fhir+json").body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let resp = router(app.state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
    (status, value)
}

#[tokio::test]
async fn metadata_is_public_and_everything_else_needs_a_token() {
    let app = app();
    let (status, cs) = call(&app, "GET", "/fhir/metadata", None, false).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cs["fhirVersion"], "4.0.1");
    let patient = cs["rest"][0]["resource"].as_array().unwrap().iter().find(|r| r["type"] == "Patient").unwrap();
    assert!(patient["searchParam"].as_array().unwrap().iter().any(|p| p["name"] == "birthdate"));
    let (status, oo) = call(&app, "GET", "/fhir/Patient", None, false).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(oo["resourceType"], "OperationOutcome");
}

#[tokio::test]
async fn create_then_read_and_search() {
    let app = app();
    let (status, created) =
        call(&app, "POST", "/fhir/Patient", Some(json!({"resourceType": "Patient", "name": [{"family": "Kapoor"}]})), true).await;
    assert_eq!(status, StatusCode::CREATED);
    let id = created["id"].as_str().unwrap();
    let (status, read) = call(&app, "GET", &format!("/fhir/Patient/{id}"), None, true).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read, created);
    let (status, bundle) = call(&app, "GET", "/fhir/Patient?family=kap", None, true).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bundle["total"], 1);
    assert_eq!(bundle["entry"][0]["fullUrl"], format!("http://localhost/fhir/Patient/{id}"));
}

#[tokio::test]
async fn unknown_routes_methods_and_types_get_outcomes() {
    let app = app();
    for (method, uri, expected) in [
        ("GET", "/nowhere", StatusCode::NOT_FOUND),
        ("GET", "/fhir/Unicorn/1", StatusCode::NOT_FOUND),
        ("PATCH", "/fhir/Patient/1", StatusCode::METHOD_NOT_ALLOWED),
        ("GET", "/fhir/Patient/1/_history/x", StatusCode::BAD_REQUEST),
    ] {
        let (status, oo) = call(&app, method, uri, None, true).await;
        assert_eq!(status, expected, "{method} {uri}");
        assert_eq!(oo["resourceType"], "OperationOutcome", "{method} {uri}");
    }
}
