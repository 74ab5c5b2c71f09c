//! Staff identity over HTTP: `/auth/login`, `/auth/logout`, `/auth/password`,
//! `/auth/totp/enrol`, `/auth/totp/confirm` (JSON, not FHIR), and the bearer-token check that
//! every authenticated route uses ([`bearer`]).
//!
//! Rules (the pure ones are in `vaidya-access`: `lockout`, `totp`, `password`, `scope`):
//! - A login gives a session token (`vdy_<id>_<secret>`, kind `session`) that ends after
//!   `[auth] session_max_seconds` (12 h) or `session_idle_seconds` (30 min) unused.
//! - A wrong password, or a missing, wrong or reused TOTP code, is one 401 with one message
//!   (which of them is not said) and counts towards the lockout; while locked (423 with
//!   Retry-After), nothing is checked at all.
//! - An account with TOTP must give a code; roles admin, privacy-officer and auditor must have
//!   TOTP, and until an operator enrols them (`vaidya user totp`) their login is refused (403).
//! - A disabled account cannot log in, and none of its tokens work.
//! - Tokens made with `vaidya token` (kind `api`) need no second factor: making one is an
//!   operator's action on the server's own machine, with access to the data directory.
//!
//! - Single sign-on through an OpenID Connect provider (`/auth/oidc/login`, optional, `[oidc]`
//!   in the config) gives the same sessions to existing accounts: rules in [`oidc`].
//!
//! Every outcome is an [`events::AuthEvent`] given to [`events::record_auth_event`].

pub mod accounts;
mod cache;
pub mod events;
pub mod oidc;
pub mod scopes;

pub use cache::TokenCache;

use crate::app::{AppState, Principal};
use crate::error::ApiError;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use events::{Action, Client, Outcome, Reason, record_auth_event};
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use vaidya_access::{lockout, password, scope::ScopeSet, totp};
use vaidya_store::tokens::{self, KIND_SESSION, LoginRow, TokenRow};

/// Roles that may not log in without a second factor.
pub const TOTP_REQUIRED_ROLES: [&str; 3] = ["admin", "privacy-officer", "auditor"];

/// One message for every wrong credential, so that a guesser learns nothing from it.
const BAD_CREDENTIALS: &str = "the user name, password or TOTP code is not right";

pub fn router(state: AppState) -> Router<AppState> {
    let mut routes = Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/password", post(change_password))
        .route("/totp/enrol", post(totp_enrol))
        .route("/totp/confirm", post(totp_confirm));
    // Single sign-on, when configured (`vaidya serve` has checked the settings at start).
    if let Some(c) = &state.config.oidc {
        match oidc::Settings::from_config(c) {
            Ok(s) => routes = routes.nest("/oidc", oidc::router(std::sync::Arc::new(oidc::Oidc::new(s)))),
            Err(e) => tracing::error!(target: "vaidya::auth", "single sign-on is off: {e}"),
        }
    }
    routes.layer(DefaultBodyLimit::max(16 * 1024))
}

/// A valid bearer token and what it carries.
pub struct Bearer {
    pub principal: Principal,
    pub row: TokenRow,
}

/// Check a presented bearer token: known, secret matches, not revoked or expired, a session
/// not idle too long, its account not disabled, its scopes readable. Notes the use (at most
/// about once a minute per token, off the request's path) for idle expiry and `token --list`.
pub fn bearer(app: &AppState, token: &str) -> Result<Option<Bearer>, ApiError> {
    let Some((id, secret)) = vaidya_access::token::parse(token) else { return Ok(None) };
    let Some(row) = app.tokens.find(id, || app.read_now(|conn| Ok(tokens::find_token(conn, id)?)))? else { return Ok(None) };
    if !vaidya_access::token::matches(secret, &row.secret_hash) {
        return Ok(None);
    }
    let now = vaidya_store::now_ms();
    if row.revoked_ms.is_some() || row.expires_ms.is_some_and(|e| e <= now) || row.user_disabled_ms.is_some() {
        return Ok(None);
    }
    let idle_ms = (app.config.auth.session_idle_seconds as i64).saturating_mul(1000);
    let last_used = row.last_used_ms.unwrap_or(row.created_ms);
    let session = tokens::is_session(&row.kind);
    if session && now - last_used >= idle_ms {
        return Ok(None);
    }
    let scopes = match row.scopes.as_deref().map(ScopeSet::parse) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => {
            tracing::error!(token_id = row.id, "stored scopes do not parse ({e}); token refused");
            return Ok(None);
        }
    };
    let granularity = if session { (idle_ms / 10).clamp(1, 60_000) } else { 60_000 };
    if row.last_used_ms.is_none_or(|t| now - t >= granularity) {
        let (id, store) = (row.id.clone(), app.store.clone());
        // Fire and forget: the writer commits it with whatever else it is writing. Submitted
        // from the blocking pool, as a full writer queue would block the submitting thread.
        // On PostgreSQL a reader's connection writes it (it is not ledgered), so that a
        // session used only on a server that does not write stays alive.
        tokio::task::spawn_blocking(move || {
            if let vaidya_store::Location::Postgres(_) = store.location() {
                let _ = store.read(|c| tokens::touch_token(c, &id, now));
                return;
            }
            let (reply, _) = tokio::sync::oneshot::channel::<Result<(), vaidya_store::StoreError>>();
            let _ = store.submit(move |tx| tokens::touch_token(tx.conn(), &id, now), reply);
        });
    }
    let principal = Principal { user: row.user.clone(), role: row.role.clone(), token_id: row.id.clone(), patient: row.patient.clone(), department: row.department.clone(), practitioner: row.practitioner.clone(), scopes };
    Ok(Some(Bearer { principal, row }))
}

/// An error on `/auth`: JSON `{"error": ...}` with a status (and Retry-After when locked).
pub struct AuthError {
    status: StatusCode,
    message: String,
    retry_after_ms: Option<i64>,
}

impl AuthError {
    /// What to tell the person (never which of password or code was wrong).
    pub fn message(&self) -> &str {
        &self.message
    }
    pub fn status(&self) -> StatusCode {
        self.status
    }
    fn new(status: StatusCode, message: impl Into<String>) -> AuthError {
        AuthError { status, message: message.into(), retry_after_ms: None }
    }
    fn bad_credentials() -> AuthError {
        AuthError::new(StatusCode::UNAUTHORIZED, BAD_CREDENTIALS)
    }
    fn locked(until_ms: i64, now: i64) -> AuthError {
        AuthError {
            status: StatusCode::LOCKED,
            message: format!(
                "the account is locked after repeated failed logins until {}; try again then, or ask an administrator (`vaidya user unlock`)",
                vaidya_fhir::datetime::format_instant(until_ms)
            ),
            retry_after_ms: Some((until_ms - now).max(0)),
        }
    }
}

impl From<ApiError> for AuthError {
    fn from(e: ApiError) -> AuthError {
        let message = e.issues.first().map(|i| i.diagnostics.clone()).unwrap_or_else(|| "internal error".into());
        AuthError::new(e.status, message)
    }
}

impl From<vaidya_store::StoreError> for AuthError {
    fn from(e: vaidya_store::StoreError) -> AuthError {
        ApiError::from(e).into()
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.message});
        if let Some(ms) = self.retry_after_ms {
            let secs = (ms + 999) / 1000;
            body["retry_after_seconds"] = json!(secs);
        }
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(ms) = self.retry_after_ms {
            let secs = (ms + 999) / 1000;
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1) as u64));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"vaidya\""));
        }
        resp
    }
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, AuthError> {
    serde_json::from_slice(body).map_err(|e| AuthError::new(StatusCode::BAD_REQUEST, format!("the request body is not the expected JSON: {e}")))
}

pub type Peer = Option<axum::Extension<ConnectInfo<SocketAddr>>>;

pub fn client(app: &AppState, headers: &HeaderMap, peer: &Peer) -> Client {
    Client::of(app, headers, peer.as_ref().map(|p| p.0.0))
}

/// The caller of a bearer route on `/auth` (any valid token; sessions needing a password
/// change are let through here, as this is where it is changed).
fn caller(app: &AppState, headers: &HeaderMap) -> Result<Bearer, AuthError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let invalid = || AuthError::new(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
    bearer(app, token.ok_or_else(invalid)?)?.ok_or_else(invalid)
}

async fn write<T: Send + 'static>(
    app: &AppState,
    f: impl FnOnce(&vaidya_store::Conn) -> Result<T, vaidya_store::StoreError> + Send + 'static,
) -> Result<T, AuthError> {
    Ok(app.store.write(move |tx| f(tx.conn())).await?)
}

async fn verify_password(password: String, hash: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || match hash {
        Some(h) => password::verify(&password, &h),
        None => {
            password::verify_nothing(&password);
            false
        }
    })
    .await
    .unwrap_or(false)
}

/// Count a failure and record it (and the lockout, if this failure caused one).
async fn count_failure(app: &AppState, who: &Client, action: Action, name: &str, reason: Reason) -> Result<(), AuthError> {
    let now = vaidya_store::now_ms();
    let n = name.to_string();
    let counted = write(app, move |c| tokens::record_login_failure(c, &n, now, lockout::lock_duration_ms)).await?;
    record_auth_event(app, who.event(action, name, Outcome::Failure, Some(reason)));
    if let Some((failures, Some(until))) = counted
        && failures >= lockout::THRESHOLD
    {
        let mut e = who.event(Action::Lockout, name, Outcome::Failure, Some(reason));
        e.locked_until_ms = Some(until);
        record_auth_event(app, e);
    }
    Ok(())
}

fn lock_gate(row: &LoginRow, now: i64) -> lockout::Gate {
    lockout::gate(&lockout::State { failures: row.failed_logins, locked_until_ms: row.locked_until_ms }, now)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    user: String,
    password: String,
    #[serde(default)]
    totp: Option<String>,
}

async fn login(State(app): State<AppState>, peer: Peer, headers: HeaderMap, body: Bytes) -> Response {
    let who = client(&app, &headers, &peer);
    match do_login(&app, &who, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn do_login(app: &AppState, who: &Client, body: &Bytes) -> Result<Response, AuthError> {
    let b: LoginBody = parse_body(body)?;
    let s = start_session(app, who, b.user, b.password, b.totp).await?;
    Ok(axum::Json(json!({
        "token": s.token,
        "expires": vaidya_fhir::datetime::format_instant(s.expires_ms),
        "idle_timeout_seconds": app.config.auth.session_idle_seconds,
        "must_change_password": s.must_change_password,
    }))
    .into_response())
}

/// A session a login started.
pub struct Session {
    /// The bearer token (`vdy_<id>_<secret>`).
    pub token: String,
    pub expires_ms: i64,
    pub must_change_password: bool,
}

/// Check a staff login (password, lockout, disabled account, TOTP where enrolled or required)
/// and start a session: the one login rule behind `/auth/login` and the web UI's login form.
/// Every outcome is recorded.
pub async fn start_session(app: &AppState, who: &Client, user: String, password: String, totp: Option<String>) -> Result<Session, AuthError> {
    let b = LoginBody { user, password, totp };
    if b.user.is_empty() || b.user.len() > 64 || b.password.len() > 1024 {
        return Err(AuthError::bad_credentials());
    }
    let name = b.user.clone();
    let row = app.read(move |c| Ok(tokens::find_login(c, &name)?)).await?;
    let Some(row) = row else {
        verify_password(b.password, None).await;
        record_auth_event(app, who.event(Action::Login, &b.user, Outcome::Failure, Some(Reason::UnknownUser)));
        return Err(AuthError::bad_credentials());
    };
    let now = vaidya_store::now_ms();
    if let lockout::Gate::Locked { until_ms } = lock_gate(&row, now) {
        record_auth_event(app, who.event(Action::Login, &row.name, Outcome::Failure, Some(Reason::Locked)));
        return Err(AuthError::locked(until_ms, now));
    }
    if !verify_password(b.password, row.password_hash.clone()).await {
        count_failure(app, who, Action::Login, &row.name, Reason::BadPassword).await?;
        return Err(AuthError::bad_credentials());
    }
    if row.disabled_ms.is_some() {
        record_auth_event(app, who.event(Action::Login, &row.name, Outcome::Failure, Some(Reason::Disabled)));
        return Err(AuthError::new(StatusCode::FORBIDDEN, "this account is disabled; ask an administrator"));
    }
    if app.node.is_some() && crate::node::link::NOT_THROUGH_NODES.contains(&row.role.as_str()) {
        // A department node's copy of the accounts and records is for the department's work;
        // oversight and set-up happen at the core, where they are recorded and kept.
        return Err(AuthError::new(StatusCode::FORBIDDEN, "this account signs in at the core, not at a department node"));
    }
    match &row.totp_secret {
        Some(secret) => {
            let code = b.totp.as_deref().unwrap_or("");
            let unix = (now / 1000) as u64;
            let last = row.totp_last_step.map(|s| s.max(0) as u64);
            let check = totp::verify(secret, code, unix, last).map_err(|e| {
                tracing::error!(user = row.name, "stored TOTP secret unusable: {e}");
                AuthError::new(StatusCode::INTERNAL_SERVER_ERROR, "the account's second factor is damaged; ask an administrator to enrol it again")
            })?;
            let reason = match check {
                totp::Check::Accepted { step } => {
                    let n = row.name.clone();
                    if write(app, move |c| tokens::accept_totp_step(c, &n, step as i64)).await? { None } else { Some(Reason::TotpReused) }
                }
                totp::Check::Reused => Some(Reason::TotpReused),
                totp::Check::Wrong => Some(Reason::BadTotp),
            };
            if let Some(reason) = reason {
                count_failure(app, who, Action::Login, &row.name, reason).await?;
                return Err(AuthError::bad_credentials());
            }
        }
        None if TOTP_REQUIRED_ROLES.contains(&row.role.as_str()) => {
            record_auth_event(app, who.event(Action::Login, &row.name, Outcome::Failure, Some(Reason::TotpNotEnrolled)));
            return Err(AuthError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "the role '{}' needs a second factor (TOTP) and this account has none yet; an operator enrols it with `vaidya user totp --name {}`",
                    row.role, row.name
                ),
            ));
        }
        None => {}
    }
    // Success: a new session.
    let t = vaidya_access::token::generate();
    let expires = now + (app.config.auth.session_max_seconds as i64).saturating_mul(1000);
    let (n, id, hash) = (row.name.clone(), t.id.clone(), t.secret_hash);
    write(app, move |c| {
        tokens::record_login_success(c, &n)?;
        tokens::insert_token_of_kind(c, &id, &hash, &n, Some(expires), KIND_SESSION, None)
    })
    .await?;
    let mut e = who.event(Action::Login, &row.name, Outcome::Success, None);
    e.token_id = Some(t.id.clone());
    record_auth_event(app, e);
    Ok(Session { token: t.text, expires_ms: expires, must_change_password: row.must_change_password })
}

async fn logout(State(app): State<AppState>, peer: Peer, headers: HeaderMap) -> Response {
    let who = client(&app, &headers, &peer);
    let run = async {
        let b = caller(&app, &headers)?;
        end_session(&app, &who, &b).await?;
        Ok::<_, AuthError>(axum::Json(json!({"logged_out": true})).into_response())
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// End the session `b` was presented with: its token is revoked and the logout recorded.
pub async fn end_session(app: &AppState, who: &Client, b: &Bearer) -> Result<(), AuthError> {
    let id = b.row.id.clone();
    write(app, move |c| tokens::revoke_token(c, &id)).await?;
    let mut e = who.event(Action::Logout, &b.row.user, Outcome::Success, None);
    e.token_id = Some(b.row.id.clone());
    record_auth_event(app, e);
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    old: String,
    new: String,
}

/// A bearer route that only a login session may use (not an operator's API token).
fn session_caller(app: &AppState, headers: &HeaderMap) -> Result<Bearer, AuthError> {
    let b = caller(app, headers)?;
    if !tokens::is_session(&b.row.kind) {
        return Err(AuthError::new(StatusCode::FORBIDDEN, "this needs a login session (POST /auth/login), not an API token"));
    }
    Ok(b)
}

async fn change_password(State(app): State<AppState>, peer: Peer, headers: HeaderMap, body: Bytes) -> Response {
    let who = client(&app, &headers, &peer);
    let run = async {
        let caller = session_caller(&app, &headers)?;
        let b: PasswordBody = parse_body(&body)?;
        let revoked = change_password_of(&app, &who, &caller, b.old, b.new).await?;
        Ok::<_, AuthError>(axum::Json(json!({"changed": true, "other_sessions_ended": revoked})).into_response())
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// Accounts are the core's: a department node has a copy, replaced whenever the core's
/// changes, so a password or second factor set on a node would silently not last.
fn changed_at_the_core_only(app: &AppState) -> Result<(), AuthError> {
    match app.node {
        Some(_) => Err(AuthError::new(StatusCode::FORBIDDEN, "passwords and second factors are changed at the core's sign-in, not at a department node")),
        None => Ok(()),
    }
}

/// Change the password of the account whose session `caller` is (the old one must be right,
/// the new one must pass the rules); the account's other sessions end. The one rule behind
/// `POST /auth/password` and the web UI's password page. Returns the sessions ended.
pub async fn change_password_of(app: &AppState, who: &Client, caller: &Bearer, old: String, new: String) -> Result<usize, AuthError> {
    changed_at_the_core_only(app)?;
    let name = caller.row.user.clone();
    let n = name.clone();
    let row = app.read(move |c| Ok(tokens::find_login(c, &n)?)).await?.ok_or_else(AuthError::bad_credentials)?;
    let now = vaidya_store::now_ms();
    if let lockout::Gate::Locked { until_ms } = lock_gate(&row, now) {
        record_auth_event(app, who.event(Action::PasswordChange, &name, Outcome::Failure, Some(Reason::Locked)));
        return Err(AuthError::locked(until_ms, now));
    }
    if old.len() > 1024 || !verify_password(old.clone(), row.password_hash.clone()).await {
        count_failure(app, who, Action::PasswordChange, &name, Reason::BadPassword).await?;
        return Err(AuthError::new(StatusCode::UNAUTHORIZED, "the old password is not right"));
    }
    if let Err(why) = password::check_new(&new, &old) {
        record_auth_event(app, who.event(Action::PasswordChange, &name, Outcome::Failure, Some(Reason::WeakPassword)));
        return Err(AuthError::new(StatusCode::BAD_REQUEST, why));
    }
    let hash = tokio::task::spawn_blocking(move || password::hash(&new))
        .await
        .map_err(|e| AuthError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("hashing failed: {e}")))?;
    let (n, keep) = (name.clone(), caller.row.id.clone());
    let revoked = write(app, move |c| {
        tokens::set_password(c, &n, &hash)?;
        tokens::record_login_success(c, &n)?;
        tokens::revoke_other_sessions(c, &n, &keep)
    })
    .await?;
    let mut e = who.event(Action::PasswordChange, &name, Outcome::Success, None);
    e.token_id = Some(caller.row.id.clone());
    record_auth_event(app, e);
    Ok(revoked)
}

async fn totp_enrol(State(app): State<AppState>, peer: Peer, headers: HeaderMap) -> Response {
    let who = client(&app, &headers, &peer);
    let run = async {
        changed_at_the_core_only(&app)?;
        let caller = session_caller(&app, &headers)?;
        let name = caller.row.user.clone();
        let n = name.clone();
        let row = app.read(move |c| Ok(tokens::find_login(c, &n)?)).await?.ok_or_else(AuthError::bad_credentials)?;
        if row.totp_secret.is_some() {
            return Err(AuthError::new(
                StatusCode::CONFLICT,
                format!("this account already has a second factor; an operator replaces it with `vaidya user totp --name {name}`"),
            ));
        }
        let secret = totp::generate_secret();
        let uri = totp::otpauth_uri(&secret, &name, &app.config.auth.totp_issuer)
            .map_err(|e| AuthError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let (n, s) = (name.clone(), secret.clone());
        write(&app, move |c| tokens::set_totp_pending(c, &n, &s)).await?;
        record_auth_event(&app, who.event(Action::TotpEnrol, &name, Outcome::Success, None));
        Ok::<_, AuthError>(
            axum::Json(json!({
                "secret": secret,
                "otpauth_uri": uri,
                "confirm": "POST /auth/totp/confirm {\"code\": \"123456\"} with a code from the app to switch it on",
            }))
            .into_response(),
        )
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmBody {
    code: String,
}

async fn totp_confirm(State(app): State<AppState>, peer: Peer, headers: HeaderMap, body: Bytes) -> Response {
    let who = client(&app, &headers, &peer);
    let run = async {
        changed_at_the_core_only(&app)?;
        let caller = session_caller(&app, &headers)?;
        let b: ConfirmBody = parse_body(&body)?;
        let name = caller.row.user.clone();
        let n = name.clone();
        let row = app.read(move |c| Ok(tokens::find_login(c, &n)?)).await?.ok_or_else(AuthError::bad_credentials)?;
        let Some(pending) = row.totp_pending else {
            return Err(AuthError::new(StatusCode::CONFLICT, "no enrolment is pending; start with POST /auth/totp/enrol"));
        };
        let unix = (vaidya_store::now_ms() / 1000) as u64;
        match totp::verify(&pending, &b.code, unix, None) {
            Ok(totp::Check::Accepted { step }) => {
                let (n, s) = (name.clone(), pending.clone());
                if !write(&app, move |c| tokens::confirm_totp(c, &n, &s, step as i64)).await? {
                    return Err(AuthError::new(StatusCode::CONFLICT, "the enrolment changed meanwhile; start again"));
                }
                record_auth_event(&app, who.event(Action::TotpConfirm, &name, Outcome::Success, None));
                Ok(axum::Json(json!({"enrolled": true})).into_response())
            }
            _ => {
                record_auth_event(&app, who.event(Action::TotpConfirm, &name, Outcome::Failure, Some(Reason::BadTotp)));
                Err(AuthError::new(StatusCode::BAD_REQUEST, "the code does not match the new secret; check the app's clock and try the next code"))
            }
        }
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}
