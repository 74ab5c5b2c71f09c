//! Single sign-on for staff with OpenID Connect (optional: on when the config has `[oidc]`).
//!
//! `GET /auth/oidc/login` sends the browser (302) to the provider's authorization endpoint:
//! authorization code flow with PKCE (S256), a random `state` and `nonce`. What the callback
//! needs (PKCE verifier, nonce) is kept here, in memory, keyed by `state`: at most
//! [`MAX_PENDING`] sign-ins in progress (the oldest is dropped when full) for at most
//! [`PENDING_SECONDS`]; a `state` is used once. A restart forgets them (the user starts again).
//!
//! `GET /auth/oidc/callback?code&state` takes the `state` back (unknown, used or expired:
//! refused), exchanges the code at the provider's token endpoint (client secret, PKCE verifier),
//! and verifies the ID token with `openidconnect`: signature against the provider's JWKS (RS256),
//! issuer, audience (our client id), expiry, nonce. It then takes the configured claim
//! (`username_claim`, default `preferred_username`) as the name of a local account.
//!
//! Rules (least privilege: the provider says who someone is, never what they may do):
//! - The account must exist already (`vaidya user add`) and not be disabled or locked. Its role,
//!   department and every other right come from Vaidya's own account, never from the provider's
//!   claims; an unknown name is refused, never created.
//! - Staff only: accounts of role `patient` (a patient's own) and `machine` (an integration,
//!   which uses tokens) are refused, so that a staff directory entry that happens to carry the
//!   same name never opens them.
//! - A second factor: an account whose role requires one (admin, privacy-officer, auditor:
//!   [`super::TOTP_REQUIRED_ROLES`]) or that has TOTP enrolled signs on only if the ID token's
//!   `amr` (RFC 8176) contains `mfa`, `otp` or `hwk`, i.e. the provider says a second factor was
//!   used. Otherwise the sign-on is refused (403) and the person logs in with password and TOTP
//!   at `/auth/login` instead: Vaidya does not weaken its own rule because the provider is
//!   trusted, nor ask for the local code in the middle of a provider's flow.
//! - Success gives a session token exactly as `/auth/login` does (the same absolute and idle
//!   expiry), of kind `sso-session`: the local password was not used, so a pending change of the
//!   one-time password does not hold it back. The answer is the same JSON as `/auth/login`'s
//!   (the web UI will add a cookie).
//! - Every outcome is an [`AuthEvent`](super::events::AuthEvent) with action `oidc-login`
//!   (audit ledger: login / login-failed), failures with a reason `oidc-bad-state`,
//!   `oidc-denied`, `oidc-provider-error`, `oidc-bad-id-token`, `oidc-missing-claim`,
//!   `oidc-unknown-account`, `oidc-not-staff`, `oidc-no-second-factor` (or `disabled`,
//!   `locked`); a success names the provider and the subject (`sub`) in the record, so the
//!   provider's own logs can be matched. Starting a sign-in records nothing (it proves nothing).
//!
//! The provider's metadata and keys are fetched on first use and kept for [`METADATA_SECONDS`]
//! (or until an ID token fails to verify, in case the keys were rotated), so Vaidya starts (and
//! password logins work) while the provider is down. The HTTP client
//! (`ureq`, rustls) follows no redirects and talks `https` only, except to a loopback address
//! (a provider on the same machine, the tests): production issuers must be `https`.

use super::events::{Action, Client, Outcome, Reason, record_auth_event};
use super::{AuthError, Peer, TOTP_REQUIRED_ROLES, client, write};
use crate::app::AppState;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreProviderMetadata};
use openidconnect::url::{self, Url};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, HttpRequest, HttpResponse, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vaidya_store::tokens::{self, KIND_SSO_SESSION};

/// Sign-ins in progress kept at once.
pub const MAX_PENDING: usize = 10_000;
/// How long a sign-in may take between `/auth/oidc/login` and the callback.
pub const PENDING_SECONDS: u64 = 600;
/// How long the provider's metadata and signing keys are kept before they are fetched again.
pub const METADATA_SECONDS: u64 = 600;
/// `amr` values that say a second factor was used (RFC 8176).
pub const SECOND_FACTOR_AMR: [&str; 3] = ["mfa", "otp", "hwk"];
/// Roles that never sign on through the provider.
pub const NOT_STAFF: [&str; 3] = ["patient", "machine", "node"];
/// Largest answer read from the provider.
const MAX_RESPONSE_BYTES: u64 = 1024 * 1024;

/// The `[oidc]` configuration, checked.
#[derive(Debug)]
pub struct Settings {
    issuer: IssuerUrl,
    client_id: ClientId,
    secret: ClientSecret,
    redirect: RedirectUrl,
    claim: String,
    scopes: Vec<Scope>,
}

/// `https`, or `http` to a loopback host.
fn secure_enough(url: &Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => match url.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

impl Settings {
    /// Check `[oidc]` and read the client secret; every error says which setting and why.
    pub fn from_config(c: &crate::config::Oidc) -> Result<Settings, String> {
        let issuer = Url::parse(&c.issuer).map_err(|e| format!("[oidc] issuer {:?} is not a URL: {e}", c.issuer))?;
        if !secure_enough(&issuer) {
            return Err(format!(
                "[oidc] issuer {:?} must be https (plain http is allowed only to a loopback address such as 127.0.0.1)",
                c.issuer
            ));
        }
        if issuer.query().is_some() || issuer.fragment().is_some() {
            return Err(format!("[oidc] issuer {:?} must have no query or fragment", c.issuer));
        }
        // The issuer is compared with the ID token's `iss` as written, so keep the text.
        let issuer = IssuerUrl::new(c.issuer.clone()).map_err(|e| format!("[oidc] issuer {:?}: {e}", c.issuer))?;
        if c.client_id.trim().is_empty() {
            return Err("[oidc] client_id is empty".into());
        }
        let secret = match (&c.client_secret_file, &c.client_secret_env) {
            (Some(f), None) => std::fs::read_to_string(f)
                .map_err(|e| format!("[oidc] client_secret_file {}: cannot read it: {e}", f.display()))?,
            (None, Some(v)) => std::env::var(v)
                .map_err(|_| format!("[oidc] client_secret_env: the environment variable {v} is not set (or not UTF-8)"))?,
            (Some(_), Some(_)) => return Err("[oidc] give the client secret one way: client_secret_file or client_secret_env, not both".into()),
            (None, None) => return Err("[oidc] the client secret is missing: set client_secret_file (a path) or client_secret_env (a variable name)".into()),
        };
        let secret = secret.trim().to_string();
        if secret.is_empty() {
            return Err("[oidc] the client secret is empty".into());
        }
        let redirect = Url::parse(&c.redirect_url).map_err(|e| format!("[oidc] redirect_url {:?} is not a URL: {e}", c.redirect_url))?;
        if !secure_enough(&redirect) {
            return Err(format!(
                "[oidc] redirect_url {:?} must be https (plain http is allowed only to a loopback address such as 127.0.0.1)",
                c.redirect_url
            ));
        }
        if redirect.path() != "/auth/oidc/callback" && !redirect.path().ends_with("/auth/oidc/callback") {
            return Err(format!("[oidc] redirect_url {:?} must end with /auth/oidc/callback (Vaidya's public base URL + /auth/oidc/callback)", c.redirect_url));
        }
        let redirect = RedirectUrl::new(c.redirect_url.clone()).map_err(|e| format!("[oidc] redirect_url: {e}"))?;
        if c.username_claim.trim().is_empty() {
            return Err("[oidc] username_claim is empty".into());
        }
        let mut scopes = Vec::new();
        for s in &c.scopes {
            if s.is_empty() || s.contains(char::is_whitespace) {
                return Err(format!("[oidc] scopes: {s:?} is not one scope (no spaces; list each scope as its own string)"));
            }
            if s != "openid" {
                scopes.push(Scope::new(s.clone()));
            }
        }
        Ok(Settings {
            issuer,
            client_id: ClientId::new(c.client_id.clone()),
            secret: ClientSecret::new(secret),
            redirect,
            claim: c.username_claim.clone(),
            scopes,
        })
    }
}

/// A sign-in between `/auth/oidc/login` and the callback.
struct Pending {
    started: Instant,
    verifier: PkceCodeVerifier,
    nonce: Nonce,
}

/// Single sign-on state: settings, the provider's metadata (fetched on use) and the sign-ins in
/// progress.
pub struct Oidc {
    settings: Settings,
    http: ureq::Agent,
    metadata: tokio::sync::Mutex<Option<(Instant, CoreProviderMetadata)>>,
    pending: Mutex<HashMap<String, Pending>>,
}

/// A failed exchange with the provider (transport, refused URL, oversized answer).
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("refused to call {0}: not https (plain http only to a loopback address)")]
    Insecure(String),
    #[error("{0}")]
    Transport(String),
}

/// The blocking HTTP client `openidconnect` calls: no redirects, https (or loopback), bounded.
fn call(agent: &ureq::Agent, req: HttpRequest) -> Result<HttpResponse, HttpError> {
    let target = req.uri().to_string();
    match Url::parse(&target) {
        Ok(u) if secure_enough(&u) => {}
        _ => return Err(HttpError::Insecure(target)),
    }
    let mut resp = agent.run(req).map_err(|e| HttpError::Transport(format!("{target}: {e}")))?;
    let mut out = HttpResponse::new(Vec::new());
    *out.status_mut() = resp.status();
    *out.headers_mut() = resp.headers().clone();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE_BYTES)
        .read_to_vec()
        .map_err(|e| HttpError::Transport(format!("{target}: {e}")))?;
    *out.body_mut() = body;
    Ok(out)
}

/// Why a callback failed: the reason recorded, the status and message the client gets, and who
/// it was about (when known).
struct Refusal {
    reason: Reason,
    status: StatusCode,
    message: String,
    user: Option<String>,
}

impl Refusal {
    fn new(reason: Reason, status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal { reason, status, message: message.into(), user: None }
    }
    fn about(mut self, user: &str) -> Refusal {
        self.user = Some(user.to_string());
        self
    }
}

/// What the provider vouched for, after verification.
struct Verified {
    subject: String,
    /// The configured claim's value: the local account's name.
    name: Option<String>,
    amr: Vec<String>,
}

impl Oidc {
    pub fn new(settings: Settings) -> Oidc {
        let http = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(15)))
            .user_agent("vaidya-sso")
            .build()
            .into();
        Oidc { settings, http, metadata: tokio::sync::Mutex::new(None), pending: Mutex::new(HashMap::new()) }
    }

    /// The provider's metadata (discovery document and JWKS), fetched when missing or old.
    async fn metadata(&self) -> Result<CoreProviderMetadata, String> {
        let mut slot = self.metadata.lock().await;
        if let Some((at, m)) = slot.as_ref()
            && at.elapsed() < Duration::from_secs(METADATA_SECONDS)
        {
            return Ok(m.clone());
        }
        let (issuer, agent) = (self.settings.issuer.clone(), self.http.clone());
        let fetched = tokio::task::spawn_blocking(move || CoreProviderMetadata::discover(&issuer, &|r| call(&agent, r)))
            .await
            .map_err(|e| format!("discovery task failed: {e}"))?
            .map_err(|e| format!("discovery at {} failed: {}", self.settings.issuer.as_str(), error_chain(&e)))?;
        *slot = Some((Instant::now(), fetched.clone()));
        Ok(fetched)
    }

    fn client(&self, metadata: CoreProviderMetadata) -> CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    > {
        CoreClient::from_provider_metadata(metadata, self.settings.client_id.clone(), Some(self.settings.secret.clone()))
            .set_redirect_uri(self.settings.redirect.clone())
    }

    /// Keep a new sign-in; drops expired ones, and the oldest when full.
    fn remember(&self, state: String, pending: Pending) {
        let mut map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let ttl = Duration::from_secs(PENDING_SECONDS);
        map.retain(|_, p| p.started.elapsed() < ttl);
        if map.len() >= MAX_PENDING {
            if let Some(oldest) = map.iter().min_by_key(|(_, p)| p.started).map(|(k, _)| k.clone()) {
                map.remove(&oldest);
            }
            tracing::warn!(target: "vaidya::auth", "{MAX_PENDING} single sign-ins in progress; the oldest was dropped");
        }
        map.insert(state, pending);
    }

    /// Take a sign-in back by its `state` (once; none if unknown or expired).
    fn take(&self, state: &str) -> Option<Pending> {
        let mut map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(state).filter(|p| p.started.elapsed() < Duration::from_secs(PENDING_SECONDS))
    }

    /// Exchange the code and verify the ID token.
    async fn exchange(&self, code: String, pending: Pending) -> Result<Verified, Refusal> {
        let metadata = self
            .metadata()
            .await
            .map_err(|e| Refusal::new(Reason::OidcProviderError, StatusCode::BAD_GATEWAY, format!("the sign-on provider cannot be reached: {e}")))?;
        let client = self.client(metadata);
        let agent = self.http.clone();
        let claim = self.settings.claim.clone();
        tokio::task::spawn_blocking(move || {
            let http = |r| call(&agent, r);
            let request = client.exchange_code(AuthorizationCode::new(code)).map_err(|e| {
                Refusal::new(Reason::OidcProviderError, StatusCode::BAD_GATEWAY, format!("the provider names no token endpoint: {e}"))
            })?;
            let tokens = request.set_pkce_verifier(pending.verifier).request(&http).map_err(|e| match &e {
                // The provider answered and refused the code (e.g. `invalid_grant`: expired, used,
                // or made for another PKCE challenge: an injected code).
                openidconnect::RequestTokenError::ServerResponse(r) => Refusal::new(
                    Reason::OidcDenied,
                    StatusCode::UNAUTHORIZED,
                    format!("the provider refused the code exchange: {}", r.error().as_ref()),
                ),
                _ => Refusal::new(Reason::OidcProviderError, StatusCode::BAD_GATEWAY, format!("the code exchange with the provider failed: {}", error_chain(&e))),
            })?;
            let id_token = tokens
                .id_token()
                .ok_or_else(|| Refusal::new(Reason::OidcBadIdToken, StatusCode::UNAUTHORIZED, "the provider returned no ID token"))?;
            let verifier = client.id_token_verifier();
            let claims = id_token.claims(&verifier, &pending.nonce).map_err(|e| {
                Refusal::new(Reason::OidcBadIdToken, StatusCode::UNAUTHORIZED, format!("the ID token does not verify: {}", error_chain(&e)))
            })?;
            let amr = claims.auth_method_refs().map(|v| v.iter().map(|a| a.as_str().to_string()).collect()).unwrap_or_default();
            Ok(Verified { subject: claims.subject().as_str().to_string(), name: claim_value(id_token, &claim), amr })
        })
        .await
        .map_err(|e| Refusal::new(Reason::OidcProviderError, StatusCode::INTERNAL_SERVER_ERROR, format!("the sign-on task failed: {e}")))?
    }
}

/// The configured claim of an ID token whose signature has been verified: a non-empty string.
fn claim_value(id_token: &CoreIdToken, claim: &str) -> Option<String> {
    use base64::Engine;
    let text = id_token.to_string();
    let payload = text.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get(claim)?.as_str().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

/// An error and its causes on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cur = c.source();
    }
    text
}

/// Whether `amr` says a second factor was used.
pub fn second_factor(amr: &[String]) -> bool {
    amr.iter().any(|a| SECOND_FACTOR_AMR.contains(&a.as_str()))
}

/// The routes under `/auth/oidc`.
pub fn router(oidc: Arc<Oidc>) -> Router<AppState> {
    Router::new()
        .route("/login", get(login))
        .route("/callback", get(callback))
        .layer(axum::Extension(oidc))
}

fn no_store(mut resp: Response) -> Response {
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn login(State(app): State<AppState>, axum::Extension(oidc): axum::Extension<Arc<Oidc>>, peer: Peer, headers: HeaderMap) -> Response {
    let metadata = match oidc.metadata().await {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(target: "vaidya::auth", "single sign-on unavailable: {e}");
            let who = client(&app, &headers, &peer);
            let mut ev = who.event(Action::OidcLogin, vaidya_audit::ANONYMOUS, Outcome::Failure, Some(Reason::OidcProviderError));
            ev.detail = Some(format!("provider {} unreachable", oidc.settings.issuer.as_str()));
            record_auth_event(&app, ev);
            return no_store(
                AuthError::new(StatusCode::BAD_GATEWAY, "the sign-on provider cannot be reached now; log in with a password (POST /auth/login) or try again later")
                    .into_response(),
            );
        }
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let sso = oidc.client(metadata);
    let mut request = sso.authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random);
    for s in &oidc.settings.scopes {
        request = request.add_scope(s.clone());
    }
    let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
    oidc.remember(state.secret().clone(), Pending { started: Instant::now(), verifier, nonce });
    let location = match HeaderValue::from_str(url.as_str()) {
        Ok(l) => l,
        Err(_) => return AuthError::new(StatusCode::BAD_GATEWAY, "the provider's authorization URL is not usable").into_response(),
    };
    no_store((StatusCode::FOUND, [(header::LOCATION, location)]).into_response())
}

async fn callback(
    State(app): State<AppState>,
    axum::Extension(oidc): axum::Extension<Arc<Oidc>>,
    peer: Peer,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let who = client(&app, &headers, &peer);
    let resp = match sign_on(&app, &oidc, &who, &q).await {
        Ok(r) => r,
        Err(r) => {
            let mut ev = who.event(Action::OidcLogin, r.user.as_deref().unwrap_or(vaidya_audit::ANONYMOUS), Outcome::Failure, Some(r.reason));
            ev.detail = Some(format!("single sign-on via {}: {}", oidc.settings.issuer.as_str(), r.message));
            record_auth_event(&app, ev);
            AuthError::new(r.status, r.message).into_response()
        }
    };
    no_store(resp)
}

async fn sign_on(app: &AppState, oidc: &Oidc, who: &Client, q: &HashMap<String, String>) -> Result<Response, Refusal> {
    let bad_state = || {
        Refusal::new(Reason::OidcBadState, StatusCode::BAD_REQUEST, "this sign-on is unknown, expired or already used; start again at /auth/oidc/login")
    };
    let state = q.get("state").filter(|s| !s.is_empty() && s.len() <= 512).ok_or_else(bad_state)?;
    let pending = oidc.take(state).ok_or_else(bad_state)?;
    // RFC 9207: a provider that names itself must be ours (mix-up defence).
    if let Some(iss) = q.get("iss")
        && iss != oidc.settings.issuer.as_str()
    {
        return Err(Refusal::new(Reason::OidcBadState, StatusCode::BAD_REQUEST, format!("the answer comes from another issuer ({iss})")));
    }
    if let Some(error) = q.get("error") {
        let text: String = q.get("error_description").map(|d| format!("{error}: {d}")).unwrap_or_else(|| error.clone()).chars().take(200).collect();
        return Err(Refusal::new(Reason::OidcDenied, StatusCode::UNAUTHORIZED, format!("the sign-on provider refused: {text}")));
    }
    let code = q.get("code").filter(|c| !c.is_empty() && c.len() <= 2048).ok_or_else(|| {
        Refusal::new(Reason::OidcDenied, StatusCode::BAD_REQUEST, "the provider's answer has no authorization code")
    })?;
    let verified = match oidc.exchange(code.clone(), pending).await {
        Ok(v) => v,
        Err(r) => {
            if r.reason == Reason::OidcBadIdToken {
                // Perhaps the provider has rotated its signing keys: fetch them anew next time.
                *oidc.metadata.lock().await = None;
            }
            return Err(r);
        }
    };
    let issuer = oidc.settings.issuer.as_str();
    let Some(name) = verified.name.clone() else {
        return Err(Refusal::new(
            Reason::OidcMissingClaim,
            StatusCode::FORBIDDEN,
            format!("the ID token has no claim {:?} naming the account (subject {:?})", oidc.settings.claim, verified.subject),
        ));
    };
    if name.chars().count() > 64 {
        return Err(Refusal::new(Reason::OidcUnknownAccount, StatusCode::FORBIDDEN, "no account has this name"));
    }
    let n = name.clone();
    let row = app.read(move |c| Ok(tokens::find_login(c, &n)?)).await.map_err(|e| {
        let e = AuthError::from(e);
        Refusal::new(Reason::OidcProviderError, e.status, e.message)
    })?;
    let Some(row) = row else {
        return Err(Refusal::new(
            Reason::OidcUnknownAccount,
            StatusCode::FORBIDDEN,
            format!("no Vaidya account is named {name:?}; an administrator creates it first (`vaidya user add`)"),
        )
        .about(&name));
    };
    if NOT_STAFF.contains(&row.role.as_str()) {
        return Err(Refusal::new(
            Reason::OidcNotStaff,
            StatusCode::FORBIDDEN,
            format!("single sign-on is for staff; the account {:?} (role {}) cannot use it", row.name, row.role),
        )
        .about(&row.name));
    }
    if row.disabled_ms.is_some() {
        return Err(Refusal::new(Reason::Disabled, StatusCode::FORBIDDEN, "this account is disabled; ask an administrator").about(&row.name));
    }
    let now = vaidya_store::now_ms();
    if let vaidya_access::lockout::Gate::Locked { .. } = super::lock_gate(&row, now) {
        return Err(Refusal::new(
            Reason::Locked,
            StatusCode::LOCKED,
            "the account is locked after repeated failed logins; try again later, or ask an administrator (`vaidya user unlock`)",
        )
        .about(&row.name));
    }
    let needs_second = TOTP_REQUIRED_ROLES.contains(&row.role.as_str()) || row.totp_secret.is_some();
    if needs_second && !second_factor(&verified.amr) {
        return Err(Refusal::new(
            Reason::OidcNoSecondFactor,
            StatusCode::FORBIDDEN,
            format!(
                "this account needs a second factor and the sign-on provider reported none (amr: {:?}); sign on with the provider's second factor, or log in with password and TOTP at /auth/login",
                verified.amr
            ),
        )
        .about(&row.name));
    }
    // Success: a session like a password login's.
    let t = vaidya_access::token::generate();
    let expires = now + (app.config.auth.session_max_seconds as i64).saturating_mul(1000);
    let (n, id, hash) = (row.name.clone(), t.id.clone(), t.secret_hash);
    write(app, move |c| tokens::insert_token_of_kind(c, &id, &hash, &n, Some(expires), KIND_SSO_SESSION, None)).await.map_err(|e| {
        Refusal::new(Reason::OidcProviderError, e.status, e.message).about(&row.name)
    })?;
    let mut e = who.event(Action::OidcLogin, &row.name, Outcome::Success, None);
    e.token_id = Some(t.id.clone());
    e.detail = Some(format!("single sign-on via {issuer} (subject {:?}, amr {:?})", verified.subject, verified.amr));
    record_auth_event(app, e);
    Ok(axum::Json(json!({
        "token": t.text,
        "expires": vaidya_fhir::datetime::format_instant(expires),
        "idle_timeout_seconds": app.config.auth.session_idle_seconds,
        "must_change_password": false,
        "user": row.name,
        "role": row.role,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A secret file (with a newline and spaces around the secret, as editors leave them).
    fn secret_file() -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), " s3cret\n").unwrap();
        f
    }

    fn config(issuer: &str, redirect: &str, secret: &tempfile::NamedTempFile) -> crate::config::Oidc {
        crate::config::Oidc {
            issuer: issuer.into(),
            client_id: "vaidya".into(),
            client_secret_file: Some(secret.path().to_path_buf()),
            client_secret_env: None,
            redirect_url: redirect.into(),
            username_claim: "preferred_username".into(),
            scopes: vec!["profile".into()],
        }
    }

    #[test]
    fn settings_refuse_what_is_unsafe_or_unclear() {
        let secret = secret_file();
        let ok = Settings::from_config(&config("https://idp.example/realms/x", "https://his.example/auth/oidc/callback", &secret)).unwrap();
        assert_eq!(ok.secret.secret(), "s3cret");
        assert!(Settings::from_config(&config("http://127.0.0.1:9000", "http://127.0.0.1:8080/auth/oidc/callback", &secret)).is_ok());
        assert!(Settings::from_config(&config("http://localhost:9000", "http://[::1]:8080/auth/oidc/callback", &secret)).is_ok());
        let err = |i: &str, r: &str| Settings::from_config(&config(i, r, &secret)).unwrap_err();
        assert!(err("http://idp.example", "https://his.example/auth/oidc/callback").contains("must be https"));
        assert!(err("not a url", "https://his.example/auth/oidc/callback").contains("is not a URL"));
        assert!(err("https://idp.example", "http://his.example/auth/oidc/callback").contains("redirect_url"));
        assert!(err("https://idp.example", "https://his.example/callback").contains("/auth/oidc/callback"));
        let mut both = config("https://idp.example", "https://his.example/auth/oidc/callback", &secret);
        both.client_secret_env = Some("VAIDYA_OIDC_UNIT_TEST_UNSET".into());
        assert!(Settings::from_config(&both).unwrap_err().contains("not both"));
        both.client_secret_file = None;
        assert!(Settings::from_config(&both).unwrap_err().contains("is not set"));
        both.client_secret_env = None;
        assert!(Settings::from_config(&both).unwrap_err().contains("secret is missing"));
        both.client_secret_file = Some("/nonexistent/oidc-secret".into());
        assert!(Settings::from_config(&both).unwrap_err().contains("cannot read"));
        let empty = tempfile::NamedTempFile::new().unwrap();
        both.client_secret_file = Some(empty.path().to_path_buf());
        assert!(Settings::from_config(&both).unwrap_err().contains("empty"));
        let mut scopes = config("https://idp.example", "https://his.example/auth/oidc/callback", &secret);
        scopes.scopes = vec!["profile email".into()];
        assert!(Settings::from_config(&scopes).unwrap_err().contains("not one scope"));
        // The secret is never in the settings' Debug output.
        assert!(!format!("{ok:?}").contains("s3cret"));
    }

    #[test]
    fn second_factor_rule() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(second_factor(&v(&["pwd", "otp"])));
        assert!(second_factor(&v(&["mfa"])));
        assert!(second_factor(&v(&["hwk", "pin"])));
        assert!(!second_factor(&v(&["pwd"])));
        assert!(!second_factor(&v(&[])));
    }

    #[test]
    fn pending_sign_ins_are_single_use() {
        let secret = secret_file();
        let c = config("https://idp.example", "https://his.example/auth/oidc/callback", &secret);
        let o = Oidc::new(Settings::from_config(&c).unwrap());
        let p = || Pending { started: Instant::now(), verifier: PkceCodeVerifier::new("v".repeat(43)), nonce: Nonce::new("n".into()) };
        o.remember("s1".into(), p());
        assert!(o.take("s2").is_none());
        assert!(o.take("s1").is_some());
        assert!(o.take("s1").is_none(), "a state is used once");
        // Expired sign-ins are not given back.
        if let Some(started) = Instant::now().checked_sub(Duration::from_secs(PENDING_SECONDS + 1)) {
            o.remember("old".into(), Pending { started, ..p() });
            assert!(o.take("old").is_none());
        }
        // Bounded: the oldest goes when full.
        for i in 0..MAX_PENDING + 5 {
            o.remember(format!("k{i}"), p());
        }
        assert_eq!(o.pending.lock().unwrap().len(), MAX_PENDING);
    }
}
