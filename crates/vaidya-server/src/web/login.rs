//! Signing in and out of the web UI (staff accounts; the rules are `auth::start_session`'s).

use super::i18n::Key;
use super::{Ctx, SESSION_COOKIE, csrf_ok, redirect_with_cookie, render, safe_next, set_cookie, signed_in};
use crate::app::AppState;
use crate::auth::Peer;
use askama::Template;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

#[derive(Template)]
#[template(path = "web/login.html")]
struct LoginPage<'a> {
    ctx: &'a Ctx,
    user: &'a str,
    next: &'a str,
    error: Option<String>,
}

pub async fn page(State(app): State<AppState>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let ctx = Ctx::of(&app, &headers, "/ui/login");
    let next = safe_next(Some(&super::form_fields(q.unwrap_or_default().as_bytes())("next"))).to_string();
    if signed_in(&app, &headers).is_some() {
        return Redirect::to(&next).into_response();
    }
    render(&app, &ctx, StatusCode::OK, &LoginPage { ctx: &ctx, user: "", next: &next, error: None })
}

struct LoginForm {
    user: String,
    password: String,
    totp: String,
    next: String,
    csrf: String,
}

pub async fn submit(State(app): State<AppState>, peer: Peer, headers: HeaderMap, body: Bytes) -> Response {
    let ctx = Ctx::of(&app, &headers, "/ui/login");
    let field = super::form_fields(&body);
    let f = LoginForm { user: field("user"), password: field("password"), totp: field("totp"), next: field("next"), csrf: field("csrf") };
    let next = safe_next(Some(&f.next)).to_string();
    if !csrf_ok(&headers, &f.csrf) {
        let error = Some(ctx.t(Key::FormExpired).to_string());
        return render(&app, &ctx, StatusCode::FORBIDDEN, &LoginPage { ctx: &ctx, user: &f.user, next: &next, error });
    }
    let who = crate::auth::client(&app, &headers, &peer);
    let totp = Some(f.totp.trim().to_string()).filter(|t| !t.is_empty());
    match crate::auth::start_session(&app, &who, f.user.trim().to_string(), f.password, totp).await {
        Ok(s) => {
            // A one-time password: the session may only choose a new one (`signed_in` refuses it
            // everywhere else), so the way on is the password page.
            let to = if s.must_change_password { password_url(&next) } else { next.clone() };
            redirect_with_cookie(&to, set_cookie(&app, SESSION_COOKIE, &s.token, Some(app.config.auth.session_max_seconds)))
        }
        Err(e) => render(&app, &ctx, e.status(), &LoginPage { ctx: &ctx, user: &f.user, next: &next, error: Some(e.message().to_string()) }),
    }
}

pub async fn logout(State(app): State<AppState>, peer: Peer, headers: HeaderMap, body: Bytes) -> Response {
    if !csrf_ok(&headers, &super::form_fields(&body)("csrf")) {
        return (StatusCode::FORBIDDEN, "This form has expired; go back and try again.").into_response();
    }
    if let Some((b, _)) = super::session(&app, &headers) {
        let who = crate::auth::client(&app, &headers, &peer);
        if let Err(e) = crate::auth::end_session(&app, &who, &b).await {
            tracing::error!("sign-out could not end the session: {}", e.message());
        }
    }
    redirect_with_cookie("/ui/login", set_cookie(&app, SESSION_COOKIE, "", Some(0)))
}

fn password_url(next: &str) -> String {
    let q = { form_urlencoded::Serializer::new(String::new()).append_pair("next", next).finish() };
    format!("/ui/password?{q}")
}

#[derive(Template)]
#[template(path = "web/password.html")]
struct PasswordPage<'a> {
    ctx: &'a Ctx,
    next: &'a str,
    /// (field, message): the error and the field it belongs to.
    error: Option<(&'static str, String)>,
}

pub async fn password_page(State(app): State<AppState>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let next = safe_next(Some(&super::form_fields(q.unwrap_or_default().as_bytes())("next"))).to_string();
    let ctx = Ctx::of(&app, &headers, &password_url(&next));
    if super::session(&app, &headers).is_none() {
        return super::to_login(&ctx.path);
    }
    render(&app, &ctx, StatusCode::OK, &PasswordPage { ctx: &ctx, next: &next, error: None })
}

pub async fn change_password(State(app): State<AppState>, peer: Peer, headers: HeaderMap, body: Bytes) -> Response {
    let field = super::form_fields(&body);
    let next = safe_next(Some(&field("next"))).to_string();
    let ctx = Ctx::of(&app, &headers, &password_url(&next));
    let again = |status, error| render(&app, &ctx, status, &PasswordPage { ctx: &ctx, next: &next, error: Some(error) });
    if !csrf_ok(&headers, &field("csrf")) {
        return again(StatusCode::FORBIDDEN, ("old", ctx.t(Key::FormExpired).to_string()));
    }
    let Some((b, _)) = super::session(&app, &headers) else { return super::to_login(&ctx.path) };
    let (old, new) = (field("old"), field("new"));
    if new != field("repeat") {
        return again(StatusCode::UNPROCESSABLE_ENTITY, ("repeat", ctx.t(Key::PasswordsDiffer).to_string()));
    }
    let who = crate::auth::client(&app, &headers, &peer);
    match crate::auth::change_password_of(&app, &who, &b, old, new).await {
        Ok(_) => Redirect::to(&next).into_response(),
        Err(e) if e.status() == StatusCode::BAD_REQUEST => again(e.status(), ("new", e.message().to_string())),
        Err(e) => again(e.status(), ("old", e.message().to_string())),
    }
}
