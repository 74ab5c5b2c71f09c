//! The reconciliation queue for a person (administrator): `GET /ui/reconciliation` lists what
//! department nodes handed back and the core could not apply by itself, each with the choices
//! that fit it; `POST /ui/reconciliation/{id}` settles one (`node::reconcile`), recorded in the
//! item's Task under the person's name.

use super::i18n::Key;
use super::{Ctx, csrf_ok, form_fields, render, signed_in, to_login};
use crate::app::AppState;
use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

pub struct Item {
    pub id: String,
    pub kind: String,
    pub node: String,
    pub raised: String,
    pub patient: String,
    pub description: String,
    pub decisions: Vec<&'static str>,
}

#[derive(Template)]
#[template(path = "web/reconciliation.html")]
struct Page<'a> {
    ctx: &'a Ctx,
    items: Vec<Item>,
    error: Option<String>,
    notice: Option<String>,
}

async fn show(app: &AppState, ctx: &Ctx, status: StatusCode, error: Option<String>, notice: Option<String>) -> Response {
    let listed = app.read(|conn| crate::node::reconcile::items(conn, true)).await;
    let zone = crate::print::format::Zone::from_config(&app.config.timezone);
    let (items, error) = match listed {
        Ok(list) => (
            list.iter()
                .map(|v| {
                    let kind = v["kind"].as_str().unwrap_or_default().to_string();
                    let decisions = if kind == "duplicate-patient" { vec!["merge", "discard", "settled"] } else { vec!["settled", "apply", "discard"] };
                    Item {
                        id: v["id"].as_str().unwrap_or_default().into(),
                        node: v["node"].as_str().unwrap_or_default().into(),
                        raised: v["raised"].as_str().map(|t| zone.fhir(t)).unwrap_or_default(),
                        patient: v["patient"].as_str().unwrap_or_default().into(),
                        description: v["description"].as_str().unwrap_or_default().into(),
                        kind,
                        decisions,
                    }
                })
                .collect(),
            error,
        ),
        Err(e) => (vec![], Some(e.message())),
    };
    render(app, ctx, status, &Page { ctx, items, error, notice })
}

/// `GET /ui/reconciliation`.
pub async fn page(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let ctx = Ctx::of(&app, &headers, "/ui/reconciliation");
    let Some(s) = signed_in(&app, &headers) else { return to_login(&ctx.path) };
    if s.principal.role != "admin" || app.node.is_some() {
        return show_refused(&app, &ctx).await;
    }
    show(&app, &ctx, StatusCode::OK, None, None).await
}

async fn show_refused(app: &AppState, ctx: &Ctx) -> Response {
    render(app, ctx, StatusCode::FORBIDDEN, &Page { ctx, items: vec![], error: Some(ctx.t(Key::AdminOnly).into()), notice: None })
}

/// `POST /ui/reconciliation/{id}`: `decision`, `note`.
pub async fn settle(State(app): State<AppState>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    let ctx = Ctx::of(&app, &headers, "/ui/reconciliation");
    let Some(s) = signed_in(&app, &headers) else { return to_login(&ctx.path) };
    if s.principal.role != "admin" || app.node.is_some() {
        return show_refused(&app, &ctx).await;
    }
    let field = form_fields(&body);
    if !csrf_ok(&headers, &field("csrf")) {
        return show(&app, &ctx, StatusCode::FORBIDDEN, Some(ctx.t(Key::FormExpired).into()), None).await;
    }
    match crate::node::reconcile::settle_as(&app, &s.principal.user, &id, &field("decision"), &field("note")).await {
        Ok(_) => show(&app, &ctx, StatusCode::OK, None, Some(ctx.t(Key::SettledNotice).into())).await,
        Err(e) => show(&app, &ctx, e.status, Some(e.message()), None).await,
    }
}
