//! Login events: every login (success or failure, with the reason), lockout, logout, password
//! change and TOTP enrolment becomes an [`AuthEvent`], handed to [`record_auth_event`].
//!
//! Never put a password, a TOTP code, a TOTP secret or a token's secret into an event: the
//! fields below are everything an event may carry.

use crate::app::AppState;
use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Login,
    Logout,
    /// The account was locked by this failure (recorded after the failed login itself).
    Lockout,
    PasswordChange,
    TotpEnrol,
    TotpConfirm,
    /// A single sign-on through the OpenID Connect provider (`/auth/oidc/callback`).
    OidcLogin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

/// Why a login (or a password change, or a TOTP confirmation) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    UnknownUser,
    BadPassword,
    /// A TOTP code missing or wrong.
    BadTotp,
    /// A TOTP code for a time step already used: a replay.
    TotpReused,
    /// The role needs a second factor and the account has none yet.
    TotpNotEnrolled,
    /// Locked after failures: nothing was checked.
    Locked,
    /// Suspended by an operator (or by the exfiltration guard).
    Disabled,
    /// A new password that breaks the rules.
    WeakPassword,
    /// Single sign-on: the callback's `state` is unknown, used already or expired (a forged,
    /// replayed or stale callback).
    OidcBadState,
    /// Single sign-on: the provider said no (the user refused, the provider's own error, or a
    /// code it would not exchange: expired, used, or injected from another sign-in).
    OidcDenied,
    /// Single sign-on: the provider could not be reached, or the code exchange failed.
    OidcProviderError,
    /// Single sign-on: the ID token did not verify (signature, issuer, audience, expiry, nonce).
    OidcBadIdToken,
    /// Single sign-on: the ID token lacks the configured claim naming the account.
    OidcMissingClaim,
    /// Single sign-on: no local account has the name the provider gave.
    OidcUnknownAccount,
    /// Single sign-on: the account needs a second factor and the provider reported none (`amr`).
    OidcNoSecondFactor,
    /// Single sign-on: the account is not a staff member's (a patient's own, or a machine's).
    OidcNotStaff,
    /// The patient portal: a one-time code sent by SMS was wrong, used, or expired.
    BadCode,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Login => "login",
            Action::Logout => "logout",
            Action::Lockout => "lockout",
            Action::PasswordChange => "password-change",
            Action::TotpEnrol => "totp-enrol",
            Action::TotpConfirm => "totp-confirm",
            Action::OidcLogin => "oidc-login",
        }
    }
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::UnknownUser => "unknown-user",
            Reason::BadPassword => "bad-password",
            Reason::BadTotp => "bad-totp",
            Reason::TotpReused => "totp-reused",
            Reason::TotpNotEnrolled => "totp-not-enrolled",
            Reason::Locked => "locked",
            Reason::Disabled => "disabled",
            Reason::BadCode => "bad-code",
            Reason::WeakPassword => "weak-password",
            Reason::OidcBadState => "oidc-bad-state",
            Reason::OidcDenied => "oidc-denied",
            Reason::OidcProviderError => "oidc-provider-error",
            Reason::OidcBadIdToken => "oidc-bad-id-token",
            Reason::OidcMissingClaim => "oidc-missing-claim",
            Reason::OidcUnknownAccount => "oidc-unknown-account",
            Reason::OidcNoSecondFactor => "oidc-no-second-factor",
            Reason::OidcNotStaff => "oidc-not-staff",
        }
    }
}

/// One authentication event.
#[derive(Debug, Clone)]
pub struct AuthEvent {
    /// Milliseconds since the Unix epoch (UTC).
    pub time_ms: i64,
    pub action: Action,
    /// The account name as given (for an unknown user, what was typed; at most 64 characters).
    pub user: String,
    pub outcome: Outcome,
    pub reason: Option<Reason>,
    /// The client's address: the TCP peer, or the first `X-Forwarded-For` address when
    /// `[auth] trust_forwarded_for` is set.
    pub source_ip: Option<String>,
    /// The `User-Agent` header (at most 256 characters).
    pub user_agent: Option<String>,
    /// The session or token concerned (its id, never its secret).
    pub token_id: Option<String>,
    /// For a lockout: until when.
    pub locked_until_ms: Option<i64>,
    /// What else the record should say, for people reading it (a single sign-on names the
    /// provider and its subject). Never a secret.
    pub detail: Option<String>,
}

/// Where a request came from, as far as events say.
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl Client {
    pub fn of(app: &AppState, headers: &axum::http::HeaderMap, peer: Option<SocketAddr>) -> Client {
        let forwarded = app
            .config
            .auth
            .trust_forwarded_for
            .then(|| headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()))
            .flatten()
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| v.parse::<std::net::IpAddr>().is_ok())
            .map(str::to_string);
        let user_agent = headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(256).collect());
        Client { ip: forwarded.or(peer.map(|p| p.ip().to_string())), user_agent }
    }

    pub fn event(&self, action: Action, user: &str, outcome: Outcome, reason: Option<Reason>) -> AuthEvent {
        AuthEvent {
            time_ms: vaidya_store::now_ms(),
            action,
            user: user.chars().take(64).collect(),
            outcome,
            reason,
            source_ip: self.ip.clone(),
            user_agent: self.user_agent.clone(),
            token_id: None,
            locked_until_ms: None,
            detail: None,
        }
    }
}

/// The one place authentication events leave the auth module: the audit ledger (durable
/// before the caller answers; a login is rare enough that waiting for the commit on this
/// thread costs nothing that matters) and a `tracing` event at target `vaidya::auth`.
pub fn record_auth_event(app: &AppState, event: AuthEvent) {
    let (action, outcome) = match (event.action, event.outcome) {
        (Action::Login | Action::OidcLogin, Outcome::Success) => (vaidya_audit::Action::Login, vaidya_audit::Outcome::Allowed),
        (Action::Login | Action::OidcLogin, Outcome::Failure) => {
            (vaidya_audit::Action::LoginFailed, vaidya_audit::Outcome::Denied(event.reason.map(Reason::as_str).unwrap_or("refused").to_string()))
        }
        (Action::Logout, _) => (vaidya_audit::Action::Logout, vaidya_audit::Outcome::Allowed),
        (other, Outcome::Success) => (vaidya_audit::Action::Operation(other.as_str().to_string()), vaidya_audit::Outcome::Allowed),
        (other, Outcome::Failure) => (
            vaidya_audit::Action::Operation(other.as_str().to_string()),
            vaidya_audit::Outcome::Denied(event.reason.map(Reason::as_str).unwrap_or("refused").to_string()),
        ),
    };
    let mut rec = vaidya_audit::AuditRecord::new(action, outcome);
    rec.time_ms = event.time_ms;
    rec.who = vaidya_audit::Who { user: Some(event.user.clone()), role: None, session: event.token_id.clone() };
    rec.source = vaidya_audit::Source { address: event.source_ip.clone(), user_agent: event.user_agent.clone() };
    rec.reason = event.detail.clone();
    // Wait for the commit without stalling the runtime: on the server's multi-threaded runtime
    // this worker steps aside while it waits; elsewhere the write is handed off.
    use tokio::runtime::{Handle, RuntimeFlavor};
    let written = match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(|| app.audit.record_blocking(vec![rec])),
        Ok(_) => {
            tokio::spawn(app.audit.record(vec![rec]));
            Ok(())
        }
        Err(_) => app.audit.record_blocking(vec![rec]),
    };
    if let Err(e) = written {
        tracing::error!(target: "vaidya::audit", "an authentication event was not written to the audit ledger: {e}");
    }
    let reason = event.reason.map(Reason::as_str).unwrap_or("");
    let ip = event.source_ip.as_deref().unwrap_or("");
    let agent = event.user_agent.as_deref().unwrap_or("");
    let token = event.token_id.as_deref().unwrap_or("");
    let until = event.locked_until_ms.map(vaidya_fhir::datetime::format_instant).unwrap_or_default();
    let detail = event.detail.as_deref().unwrap_or("");
    match event.outcome {
        Outcome::Success => tracing::info!(target: "vaidya::auth", action = event.action.as_str(), user = ?event.user,
            outcome = "success", source_ip = ip, user_agent = ?agent, token_id = token, detail = ?detail, time_ms = event.time_ms),
        Outcome::Failure => tracing::warn!(target: "vaidya::auth", action = event.action.as_str(), user = ?event.user,
            outcome = "failure", reason, source_ip = ip, user_agent = ?agent, token_id = token, locked_until = until,
            detail = ?detail, time_ms = event.time_ms),
    }
}
