//! Axum handlers for the FHIR REST interactions.

use super::ops::{self, Outcome};
use super::visibility::{Viewer, search_conditions, visible};
use super::wire::{self, BundleWriter, Return};
use super::authorize;
use super::params::{Params, required};
use vaidya_policy::Action;
use super::{check_id, check_type, new_id, parse_json, prepare};
use crate::app::{AppState, Principal};
use crate::error::ApiError;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, middleware};
use serde_json::json;
use vaidya_fhir::outcome::{Issue, IssueType, operation_outcome};
use vaidya_store::read::HistoryScope;
use vaidya_store::search::{self, Handling, parse_query};

pub fn router(state: AppState, max_body: usize) -> Router<AppState> {
    let authed = Router::new()
        .route("/", axum::routing::post(bundle))
        .route("/_history", get(history_system))
        .route("/{rtype}", get(search_get).post(create))
        .route("/{rtype}/_search", axum::routing::post(search_post))
        .route("/{rtype}/_history", get(history_type))
        .route("/{rtype}/{id}", get(read).put(update).delete(delete).post(type_operation))
        .route("/{rtype}/{id}/_history", get(history_instance))
        .route("/{rtype}/{id}/{operation}", axum::routing::post(instance_operation))
        .route("/{rtype}/{id}/_history/{vid}", get(vread))
        // Bulk Data `$export`: kick-off, approval, status and files (fhir/export.rs).
        .merge(super::export::routes(&state))
        // On a department node, writes go to the core, or to the node's downtime branch.
        .route_layer(middleware::from_fn_with_state(state.clone(), crate::node::link::gate))
        // The audit record is inside authentication (it knows the account), around the handler.
        .route_layer(middleware::from_fn_with_state(state.clone(), crate::audit::record))
        .route_layer(middleware::from_fn_with_state(state, crate::app::authenticate));
    Router::new()
        .route("/metadata", get(super::capability::metadata))
        .merge(authed)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(move |req: axum::extract::Request, next: middleware::Next| {
            refuse_announced_oversize(req, next, max_body)
        }))
}

/// Refuse a body whose Content-Length already exceeds the limit, before reading any of it
/// (bodies without a length are cut off at the limit as they are read).
async fn refuse_announced_oversize(req: axum::extract::Request, next: middleware::Next, max_body: usize) -> Response {
    let announced = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max_body as u64) {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            IssueType::TooLong,
            format!("the request body exceeds the size limit of {max_body} bytes"),
        )
        .into_response();
    }
    next.run(req).await
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, IssueType::NotSupported, "this interaction is not supported here")
}

/// The body, or an OperationOutcome saying why it could not be read (too large, cut off).
fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, IssueType::TooLong, "the request body exceeds the size limit")
        } else {
            ApiError::bad_request(format!("cannot read the request body: {e}"))
        }
    })
}

fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

fn format_param(pairs: &[(String, String)]) -> Option<&str> {
    pairs.iter().find(|(k, _)| k == "_format").map(|(_, v)| v.as_str())
}

fn write_response(o: Outcome, headers: &HeaderMap, base: &str) -> Response {
    let location = (o.status == StatusCode::CREATED).then(|| o.location(base));
    match wire::prefer_return(headers, Return::Representation) {
        Return::Representation => wire::resource_response(o.status, o.content.unwrap_or_default(), o.version, o.time_ms, location),
        Return::Minimal => wire::resource_response(o.status, Vec::new(), o.version, o.time_ms, location),
        Return::OperationOutcome => {
            let oo = operation_outcome(&[Issue::information(
                IssueType::Informational,
                format!("{}/{} version {} stored", o.resource_type, o.id, o.version),
            )]);
            wire::resource_response(o.status, serde_json::to_vec(&oo).expect("serialises"), o.version, o.time_ms, location)
        }
    }
}

async fn create(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(rtype): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    check_type(&rtype)?;
    wire::check_accept(&headers, format_param(&query_pairs(raw.as_deref())))?;
    wire::check_content_type(&headers)?;
    let mut resource = parse_json(&body_bytes(body)?)?;
    if resource.get("resourceType").and_then(|v| v.as_str()) != Some(rtype.as_str()) {
        return Err(ApiError::bad_request(format!("the body's resourceType must be {rtype}")));
    }
    // On create the server assigns the id; one sent by the client is ignored, as R4 says.
    if let Some(obj) = resource.as_object_mut() {
        obj.remove("id");
    }
    let if_none_exist = match headers.get("if-none-exist") {
        None => None,
        Some(v) => {
            let q = v.to_str().map_err(|_| ApiError::bad_request("If-None-Exist is not text"))?;
            let q = q.split_once('?').map_or(q, |(_, q)| q);
            let mut parsed = parse_query(&rtype, &query_pairs(Some(q)), Handling::Strict)?;
            parsed.count = 2; // enough to tell one match from many
            Some(parsed)
        }
    };
    let base = wire::base_url(&headers);
    let described = authorize::describe(&rtype, &resource);
    super::booking::check_patient_booking(authorize::actor(&who).role, &rtype, &resource)?;
    let patient = authorize::described_patient(&described);
    let prepared = tokio::task::spawn_blocking(move || prepare(resource))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    let id = new_id();
    let (actor, policies) = (authorize::actor(&who), app.policies.clone());
    let outcome = app
        .store
        .write(move |tx| {
            let target = authorize::complete(tx.conn(), &actor, &described)?;
            authorize::check(&policies, &actor, Action::Create, &target, &format!("a new {rtype}"))?;
            ops::create(tx, &who.user, prepared, &id, if_none_exist.as_ref())
        })
        .await?;
    // A new Patient is its own patient: its id exists only now (or it is the one If-None-Exist found).
    let patient = if outcome.resource_type == "Patient" { Some(outcome.id.clone()) } else { patient };
    Ok(crate::audit::attach(write_response(outcome, &headers, &base), crate::audit::Audited::patient(patient)))
}

async fn update(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((rtype, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    check_type(&rtype)?;
    check_id(&id)?;
    wire::check_accept(&headers, None)?;
    wire::check_content_type(&headers)?;
    let resource = parse_json(&body_bytes(body)?)?;
    if resource.get("resourceType").and_then(|v| v.as_str()) != Some(rtype.as_str()) {
        return Err(ApiError::bad_request(format!("the body's resourceType must be {rtype}")));
    }
    match resource.get("id").and_then(|v| v.as_str()) {
        Some(body_id) if body_id == id => {}
        Some(body_id) => return Err(ApiError::bad_request(format!("the body's id '{body_id}' differs from the URL's '{id}'"))),
        None => return Err(ApiError::bad_request("an update must carry the resource's id in the body")),
    }
    let if_match = wire::if_match(&headers)?;
    let base = wire::base_url(&headers);
    let described = authorize::describe(&rtype, &resource);
    super::booking::check_patient_booking(authorize::actor(&who).role, &rtype, &resource)?;
    let patient = authorize::described_patient(&described);
    let prepared = tokio::task::spawn_blocking(move || prepare(resource))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    let (actor, policies) = (authorize::actor(&who), app.policies.clone());
    let outcome = app
        .store
        .write(move |tx| {
            // Both what the record is and what it becomes must be the caller's to change (a
            // record cannot be moved to, or taken from, a patient out of reach).
            let what = format!("{rtype}/{id}");
            let action = match vaidya_store::read::current(tx.conn(), &rtype, &id)?.filter(|s| !s.deleted) {
                Some(cur) => {
                    authorize::check_stored(tx.conn(), &policies, &actor, Action::Update, &rtype, &id, &cur.content)?;
                    Action::Update
                }
                None => Action::Create,
            };
            authorize::check(&policies, &actor, action, &authorize::complete(tx.conn(), &actor, &described)?, &what)?;
            ops::update(tx, &who.user, prepared, &id, if_match)
        })
        .await?;
    Ok(crate::audit::attach(write_response(outcome, &headers, &base), crate::audit::Audited::patient(patient)))
}

async fn delete(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((rtype, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    check_type(&rtype)?;
    check_id(&id)?;
    let (actor, policies) = (authorize::actor(&who), app.policies.clone());
    app.store
        .write(move |tx| {
            if let Some(cur) = vaidya_store::read::current(tx.conn(), &rtype, &id)?.filter(|s| !s.deleted) {
                authorize::check_stored(tx.conn(), &policies, &actor, Action::Delete, &rtype, &id, &cur.content)?;
            }
            ops::delete(tx, &who.user, &rtype, &id)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn read(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((rtype, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_type(&rtype)?;
    check_id(&id)?;
    wire::check_accept(&headers, format_param(&query_pairs(raw.as_deref())))?;
    let what = format!("{rtype}/{id}");
    let (stored, patient) = read_checked(&app, &who, &rtype, &id, None).await?;
    stored_response(stored, &what).map(|r| crate::audit::attach(r, crate::audit::Audited::patient(patient)))
}

/// Read the current version (or `version`) and check the policies allow the caller to read it.
async fn read_checked(app: &AppState, who: &Principal, rtype: &str, id: &str, version: Option<u64>) -> Result<(Option<vaidya_store::Stored>, Option<String>), ApiError> {
    let actor = authorize::actor(who);
    let needs_search = authorize::needs_search(&actor);
    let viewer = Viewer::of(who);
    let policies = app.policies.clone();
    let (rtype, id) = (rtype.to_string(), id.to_string());
    let job = move |conn: &vaidya_store::Conn| -> Result<(Option<vaidya_store::Stored>, Option<String>), ApiError> {
        let stored = match version {
            None => vaidya_store::read::current(conn, &rtype, &id)?,
            Some(v) => vaidya_store::read::version(conn, &rtype, &id, v)?,
        };
        let mut patient = None;
        if let Some(s) = stored.as_ref().filter(|s| !s.deleted) {
            // An unreleased result outside the lab is answered as absent, before the policies.
            if !visible(&viewer, &rtype, &s.content) {
                return Ok((None, None));
            }
            patient = authorize::check_stored(conn, &policies, &actor, Action::Read, &rtype, &id, &s.content)?;
        }
        Ok((stored, patient))
    };
    // Point reads stay on the async worker; a check that needs searches goes to the pool.
    if needs_search { app.read(job).await } else { app.read_now(job) }
}

fn filter_ok<T>(items: Vec<T>, keep: &mut impl FnMut(&T) -> Result<bool, ApiError>) -> Result<Vec<T>, ApiError> {
    let mut out = Vec::with_capacity(items.len());
    for it in items {
        if keep(&it)? {
            out.push(it);
        }
    }
    Ok(out)
}

/// A stored version as a response: 404 if there is none, 410 if it is a deletion.
fn stored_response(stored: Option<vaidya_store::Stored>, what: &str) -> Result<Response, ApiError> {
    match stored {
        None => Err(ApiError::not_found(format!("{what} is not known"))),
        Some(s) if s.deleted => Err(ApiError::new(StatusCode::GONE, IssueType::Deleted, format!("{what} is deleted"))),
        Some(s) => Ok(wire::resource_response(StatusCode::OK, s.content, s.version, s.time_ms, None)),
    }
}

async fn vread(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((rtype, id, vid)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_type(&rtype)?;
    check_id(&id)?;
    wire::check_accept(&headers, format_param(&query_pairs(raw.as_deref())))?;
    let version: u64 = vid.parse().map_err(|_| ApiError::bad_request(format!("'{vid}' is not a version number")))?;
    let (stored, patient) = read_checked(&app, &who, &rtype, &id, Some(version)).await?;
    stored_response(stored, &format!("version {version} of {rtype}/{id}"))
        .map(|r| crate::audit::attach(r, crate::audit::Audited::patient(patient)))
}

async fn search_get(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(rtype): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_type(&rtype)?;
    search_common(app, who, rtype, query_pairs(raw.as_deref()), headers).await
}

async fn search_post(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(rtype): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    check_type(&rtype)?;
    let body = body_bytes(body)?;
    let mut pairs = query_pairs(raw.as_deref());
    pairs.extend(form_urlencoded::parse(&body).into_owned());
    search_common(app, who, rtype, pairs, headers).await
}

async fn search_common(app: AppState, who: Principal, rtype: String, mut pairs: Vec<(String, String)>, headers: HeaderMap) -> Result<Response, ApiError> {
    wire::check_accept(&headers, format_param(&pairs))?;
    if rtype == "AuditEvent" {
        // The audit trail lives in the audit ledger, not in the clinical store.
        return super::audit_trail::search(app, who, pairs, headers).await;
    }
    let viewer = Viewer::of(&who);
    for (_, v) in pairs.iter_mut().filter(|(k, _)| k == "phone") {
        *v = super::registration::normalise_phone_search(v);
    }
    pairs.extend(search_conditions(&viewer, &rtype)?);
    let handling = if wire::prefer_lenient(&headers) { Handling::Lenient } else { Handling::Strict };
    let q = parse_query(&rtype, &pairs, handling)?;
    let base = wire::base_url(&headers);
    let q2 = q.clone();
    let actor = authorize::actor(&who);
    let policies = app.policies.clone();
    let (rtype2, pairs2) = (rtype.clone(), pairs.clone());
    let found = app
        .read(move |conn| {
            let target = authorize::target_of_search(conn, &actor, &rtype2, &pairs2)?;
            authorize::check(&policies, &actor, Action::Search, &target, &format!("{rtype2} records"))?;
            let mut q2 = q2;
            q2.preds.extend(super::protected::exclusions(conn, &policies, &actor, &q2)?);
            let mut found = search::run(conn, &q2)?;
            // What the policies refuse one by one (another patient's record among included
            // ones, a protected patient) is left out; the patients of the rest are audited.
            let mut patients = target.patient.iter().map(|p| p.id.clone()).collect::<Vec<_>>();
            let mut facts = authorize::FactsCache::default();
            let mut keep = |m: &search::Found| {
                let (ok, patient) = authorize::may_read(conn, &policies, &actor, &m.resource_type, &m.content, &mut facts)?;
                if ok {
                    patients.extend(patient);
                }
                Ok(ok)
            };
            found.matches = filter_ok(std::mem::take(&mut found.matches), &mut keep)?;
            found.included = filter_ok(std::mem::take(&mut found.included), &mut keep)?;
            Ok((found, patients))
        })
        .await?;
    let (found, patients) = found;
    let returned: Vec<String> = found.matches.iter().chain(found.included.iter()).map(|m| format!("{}/{}", m.resource_type, m.id)).collect();
    let audited = crate::audit::Audited { returned, patients };

    let link = |offset: usize| {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &q.applied {
            if k != "_offset" {
                s.append_pair(k, v);
            }
        }
        if offset > 0 {
            s.append_pair("_offset", &offset.to_string());
        }
        let qs = s.finish();
        if qs.is_empty() { format!("{base}/{rtype}") } else { format!("{base}/{rtype}?{qs}") }
    };
    let mut links = vec![("self", link(q.offset))];
    if found.has_more {
        links.push(("next", link(q.offset + q.count)));
    }
    if q.offset > 0 {
        links.push(("previous", link(q.offset.saturating_sub(q.count))));
    }
    let mut w = BundleWriter::new(wire::bundle_head("searchset", (!found.total_omitted).then_some(found.total), &links));
    for m in &found.matches {
        w.entry(json!({"fullUrl": format!("{base}/{}/{}", m.resource_type, m.id), "search": {"mode": "match"}}), Some(&m.content));
    }
    for m in found.included.iter().filter(|m| visible(&viewer, &m.resource_type, &m.content)) {
        w.entry(json!({"fullUrl": format!("{base}/{}/{}", m.resource_type, m.id), "search": {"mode": "include"}}), Some(&m.content));
    }
    if !q.ignored.is_empty() {
        let oo = operation_outcome(&[Issue::warning(
            IssueType::NotSupported,
            format!("these parameters were ignored: {}", q.ignored.join(", ")),
        )]);
        w.entry(json!({"search": {"mode": "outcome"}}), Some(&serde_json::to_vec(&oo).expect("serialises")));
    }
    Ok(crate::audit::attach(wire::raw_json_response(StatusCode::OK, w.finish()), audited))
}

const HISTORY_MAX_COUNT: usize = 1_000;

async fn history_common(app: AppState, who: Principal, scope: (Option<String>, Option<String>), raw: Option<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    wire::check_accept(&headers, format_param(&pairs))?;
    let mut count = search::DEFAULT_COUNT;
    let mut offset = 0usize;
    let mut since = None;
    for (k, v) in &pairs {
        match k.as_str() {
            "_count" => {
                count = v.parse().map_err(|_| ApiError::bad_request(format!("_count '{v}' is not a number")))?;
                if count > HISTORY_MAX_COUNT {
                    return Err(ApiError::bad_request(format!("_count may be at most {HISTORY_MAX_COUNT}")));
                }
            }
            "_offset" => {
                offset = v.parse().map_err(|_| ApiError::bad_request(format!("_offset '{v}' is not a number")))?;
                if offset > search::MAX_OFFSET {
                    return Err(ApiError::bad_request(format!("_offset may be at most {}", search::MAX_OFFSET)));
                }
            }
            "_since" => {
                since = Some(
                    vaidya_fhir::datetime::parse_date_range(v)
                        .ok_or_else(|| ApiError::bad_request(format!("_since '{v}' is not an instant")))?
                        .0,
                )
            }
            "_format" | "_pretty" => {}
            other => return Err(ApiError::new(StatusCode::BAD_REQUEST, IssueType::NotSupported, format!("unknown history parameter '{other}'"))),
        }
    }
    let base = wire::base_url(&headers);
    let (t, i) = scope.clone();
    let actor = authorize::actor(&who);
    let policies = app.policies.clone();
    let (items, total) = app
        .read(move |conn| {
            // The history of a record is read like the record; of a type, like a search of it
            // across patients; of the whole server, only by an integration.
            match (&t, &i) {
                (Some(t), Some(i)) => match vaidya_store::read::current(conn, t, i)?.filter(|s| !s.deleted) {
                    Some(cur) => {
                        authorize::check_stored(conn, &policies, &actor, Action::Read, t, i, &cur.content)?;
                    }
                    None => authorize::check(&policies, &actor, Action::Search, &authorize::target_of_search(conn, &actor, t, &[])?, &format!("{t} records"))?,
                },
                (Some(t), None) => authorize::check(&policies, &actor, Action::Search, &authorize::target_of_search(conn, &actor, t, &[])?, &format!("{t} records"))?,
                _ if actor.role == vaidya_policy::Role::Machine => {}
                _ => return Err(ApiError::new(StatusCode::FORBIDDEN, IssueType::Forbidden, "the whole server's history is for integrations only")),
            }
            let scope = match (&t, &i) {
                (Some(t), Some(i)) => HistoryScope::Instance(t, i),
                (Some(t), None) => HistoryScope::Type(t),
                _ => HistoryScope::System,
            };
            let (items, total) = vaidya_store::read::history(conn, scope, since, count, offset)?;
            let mut facts = authorize::FactsCache::default();
            let mut keep = |it: &vaidya_store::read::HistoryItem| {
                if it.stored.deleted { Ok(true) } else { Ok(authorize::may_read(conn, &policies, &actor, &it.resource_type, &it.stored.content, &mut facts)?.0) }
            };
            Ok((filter_ok(items, &mut keep)?, total))
        })
        .await?;
    let path = match &scope {
        (Some(t), Some(i)) => format!("{base}/{t}/{i}/_history"),
        (Some(t), None) => format!("{base}/{t}/_history"),
        _ => format!("{base}/_history"),
    };
    let mut links = vec![("self", format!("{path}?_count={count}&_offset={offset}"))];
    if (offset + items.len()) < total as usize && items.len() == count {
        links.push(("next", format!("{path}?_count={count}&_offset={}", offset + count)));
    }
    let mut w = BundleWriter::new(wire::bundle_head("history", Some(total), &links));
    let viewer = Viewer::of(&who);
    for it in items.iter().filter(|it| it.stored.deleted || visible(&viewer, &it.resource_type, &it.stored.content)) {
        let url = format!("{}/{}", it.resource_type, it.id);
        let (method, status) = if it.stored.deleted {
            ("DELETE", "204 No Content")
        } else if it.stored.version == 1 {
            ("POST", "201 Created")
        } else {
            ("PUT", "200 OK")
        };
        let request_url = if method == "POST" { it.resource_type.clone() } else { url.clone() };
        w.entry(
            json!({
                "fullUrl": format!("{base}/{url}"),
                "request": {"method": method, "url": request_url},
                "response": {"status": status, "etag": wire::etag(it.stored.version), "lastModified": vaidya_fhir::datetime::format_instant(it.stored.time_ms)}
            }),
            if it.stored.deleted { None } else { Some(&it.stored.content) },
        );
    }
    Ok(wire::raw_json_response(StatusCode::OK, w.finish()))
}

async fn history_system(State(app): State<AppState>, Extension(who): Extension<Principal>, RawQuery(raw): RawQuery, headers: HeaderMap) -> Result<Response, ApiError> {
    history_common(app, who, (None, None), raw, headers).await
}

async fn history_type(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(rtype): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_type(&rtype)?;
    history_common(app, who, (Some(rtype), None), raw, headers).await
}

async fn history_instance(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((rtype, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_type(&rtype)?;
    check_id(&id)?;
    history_common(app, who, (Some(rtype), Some(id)), raw, headers).await
}

/// `POST /fhir/{type}/${operation}` (the router sees the operation in the id position).
async fn type_operation(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((rtype, operation)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    check_type(&rtype)?;
    wire::check_accept(&headers, None)?;
    wire::check_content_type(&headers)?;
    let base = wire::base_url(&headers);
    // What each type-level operation amounts to, for the policies.
    let action = match (rtype.as_str(), operation.as_str()) {
        ("Patient", "$duplicates") => Action::Search,
        ("Patient", "$merge") => Action::Update,
        _ => Action::Operate,
    };
    let (actor, policies, t) = (authorize::actor(&who), app.policies.clone(), rtype.clone());
    app.read(move |conn| {
        let target = authorize::target_of_search(conn, &actor, &t, &[])?;
        authorize::check(&policies, &actor, action, &target, &format!("{t} records"))
    })
    .await?;
    match (rtype.as_str(), operation.as_str()) {
        ("Patient", "$duplicates") => {
            let patient = parse_json(&body_bytes(body)?)?;
            let found = app.read(move |conn| super::duplicates::likely_duplicates(conn, &patient)).await?;
            let mut w = BundleWriter::new(wire::bundle_head("searchset", Some(found.len() as u64), &[]));
            for (resource, why) in &found {
                let id = resource["id"].as_str().unwrap_or_default();
                w.entry(
                    json!({"fullUrl": format!("{base}/Patient/{id}"), "search": {"mode": "match", "extension": [
                        {"url": "https://vaidya.dev/fhir/StructureDefinition/match-reason", "valueString": why}]}}),
                    Some(&serde_json::to_vec(resource).expect("serialises")),
                );
            }
            Ok(wire::raw_json_response(StatusCode::OK, w.finish()))
        }
        ("Patient", "$merge") => {
            let (source, target) = super::duplicates::parse_merge(&parse_json(&body_bytes(body)?)?)?;
            let (s2, t2) = (source.clone(), target.clone());
            app.store.write(move |tx| super::duplicates::merge(tx, &who.user, &s2, &t2)).await?;
            Ok(wire::json_response(
                StatusCode::OK,
                &json!({"resourceType": "Parameters", "parameter": [
                    {"name": "source", "valueReference": {"reference": format!("Patient/{source}")}},
                    {"name": "target", "valueReference": {"reference": format!("Patient/{target}")}}
                ]}),
            ))
        }
        ("Invoice", "$gather") => {
            let params = parse_json(&body_bytes(body)?)?;
            let patient = required(Params::new("$gather", &params)?.reference("patient", "Patient")?, "patient")?;
            let new = new_id();
            let o = app.store.write(move |tx| super::billing::gather(tx, &who.user, &patient, &new)).await?;
            Ok(write_response(o, &headers, &base))
        }
        ("Invoice", "$cash-report") => {
            let params = parse_json(&body_bytes(body)?)?;
            let date = required(Params::new("$cash-report", &params)?.date("date")?, "date")?;
            let date: vaidya_domain::LocalDate = date.parse().map_err(|e| ApiError::bad_request(format!("date '{date}': {e}")))?;
            let report = app.read(move |conn| super::cash::day_report(conn, date)).await?;
            Ok(wire::json_response(StatusCode::OK, &super::cash::to_parameters(date, &report)))
        }
        _ if operation.starts_with('$') => {
            Err(ApiError::new(StatusCode::NOT_FOUND, IssueType::NotSupported, format!("no operation {operation} on {rtype}")))
        }
        _ => Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, IssueType::NotSupported, "POST goes to the type (create) or to an operation")),
    }
}

/// `POST /fhir/{type}/{id}/${operation}`.
async fn instance_operation(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((rtype, id, operation)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    check_type(&rtype)?;
    check_id(&id)?;
    wire::check_accept(&headers, None)?;
    wire::check_content_type(&headers)?;
    authorize_operation(&app, &who, &rtype, &id, &operation).await?;
    match (rtype.as_str(), operation.as_str()) {
        ("Schedule", "$generate-slots") => {
            let params = parse_json(&body_bytes(body)?)?;
            let slots = tokio::task::spawn_blocking(move || {
                let req = super::operations::parse_slot_request(&params)?;
                super::operations::prepare_slots(&id, &req).map(|s| (id, s))
            })
            .await
            .map_err(|e| ApiError::internal(e.to_string()))??;
            let (schedule_id, slots) = slots;
            let (created, existing) =
                app.store.write(move |tx| super::operations::store_slots(tx, &who.user, &schedule_id, slots)).await?;
            Ok(wire::json_response(
                StatusCode::OK,
                &json!({"resourceType": "Parameters", "parameter": [
                    {"name": "created", "valueInteger": created},
                    {"name": "existing", "valueInteger": existing}
                ]}),
            ))
        }
        ("HealthcareService", "$walk-in") => {
            let params = parse_json(&body_bytes(body)?)?;
            let p = Params::new("$walk-in", &params)?;
            let patient = required(p.reference("patient", "Patient")?, "patient")?;
            let practitioner = p.reference("practitioner", "Practitioner")?;
            let base = wire::base_url(&headers);
            let new = new_id();
            let o = app
                .store
                .write(move |tx| super::queue::walk_in(tx, &who.user, &id, &patient, practitioner.as_deref(), &new))
                .await?;
            Ok(write_response(o, &headers, &base))
        }
        ("ServiceRequest", "$collect") => {
            let params = parse_json(&body_bytes(body)?)?;
            let barcode = Params::new("$collect", &params)?.text("barcode", 64)?;
            let base = wire::base_url(&headers);
            let new = new_id();
            let o = app.store.write(move |tx| super::lab::collect(tx, &who.user, &id, barcode, &new)).await?;
            Ok(write_response(o, &headers, &base))
        }
        ("DiagnosticReport", "$verify") | ("DiagnosticReport", "$release") => {
            let base = wire::base_url(&headers);
            let release = operation == "$release";
            let o = app
                .store
                .write(move |tx| if release { super::lab::release(tx, &who.user, &id) } else { super::lab::verify(tx, &who.user, &id) })
                .await?;
            Ok(write_response(o, &headers, &base))
        }
        ("Invoice", "$pay" | "$refund" | "$waive" | "$cancel") => {
            let op = super::billing::parse_money_op(&operation, &parse_json(&body_bytes(body)?)?)?;
            let base = wire::base_url(&headers);
            let o = app.store.write(move |tx| super::billing::apply(tx, &who.user, &id, op)).await?;
            Ok(write_response(o, &headers, &base))
        }
        ("Patient", "$break-glass") => {
            let params = parse_json(&body_bytes(body)?)?;
            let reason = required(Params::new("$break-glass", &params)?.text("reason", 500)?, "reason")?;
            if reason.chars().count() < 10 {
                return Err(ApiError::bad_request("say why this is an emergency (a reason of at least 10 characters)"));
            }
            super::break_glass::grant(&app, &who, &id, reason).await
        }
        ("Appointment", "$cancel") => {
            let params = parse_json(&body_bytes(body)?)?;
            let reason = Params::new("$cancel", &params)?.text("reason", 500)?;
            let base = wire::base_url(&headers);
            let o = app.store.write(move |tx| super::booking::cancel(tx, &who.user, &id, reason)).await?;
            Ok(write_response(o, &headers, &base))
        }
        ("Appointment", "$queue") => {
            let params = parse_json(&body_bytes(body)?)?;
            let state = required(Params::new("$queue", &params)?.code("state")?, "state")?;
            let state: vaidya_domain::QueueState = state.parse().map_err(|e: vaidya_domain::queue::QueueError| ApiError::bad_request(e.to_string()))?;
            let base = wire::base_url(&headers);
            let o = app.store.write(move |tx| super::queue::move_to(tx, &who.user, &id, state)).await?;
            Ok(write_response(o, &headers, &base))
        }
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, IssueType::NotSupported, format!("no operation {operation} on {rtype}"))),
    }
}

/// May the caller run this operation on this record? An operation on a record is checked as
/// `operate` on it (an Appointment's `$cancel` as `cancel`, `$break-glass` as `break-glass`); a walk-in, which
/// makes an Appointment in a department, as making one.
async fn authorize_operation(app: &AppState, who: &Principal, rtype: &str, id: &str, operation: &str) -> Result<(), ApiError> {
    let (actor, policies) = (authorize::actor(who), app.policies.clone());
    let (rtype, id, operation) = (rtype.to_string(), id.to_string(), operation.to_string());
    app.read(move |conn| {
        if rtype == "HealthcareService" && operation == "$walk-in" {
            let target = authorize::target_of_search(conn, &actor, "Appointment", &[])?;
            return authorize::check(&policies, &actor, Action::Create, &target, "a walk-in Appointment");
        }
        let action = match (rtype.as_str(), operation.as_str()) {
            (_, "$break-glass") => Action::BreakGlass,
            ("Appointment", "$cancel") => Action::Cancel,
            _ => Action::Operate,
        };
        match vaidya_store::read::current(conn, &rtype, &id)?.filter(|s| !s.deleted) {
            Some(cur) => authorize::check_stored(conn, &policies, &actor, action, &rtype, &id, &cur.content).map(|_| ()),
            // The operation itself answers that the record is not known.
            None => Ok(()),
        }
    })
    .await
}

async fn bundle(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    wire::check_accept(&headers, None)?;
    wire::check_content_type(&headers)?;
    let value = parse_json(&body_bytes(body)?)?;
    let base = wire::base_url(&headers);
    let ret = wire::prefer_return(&headers, Return::Minimal);
    let max_entries = app.config.limits.max_bundle_entries;
    let caller = super::bundle::Caller { author: who.user.clone(), viewer: Viewer::of(&who), checks: Some((authorize::actor(&who), app.policies.clone())) };
    let (out, mut patients) = super::bundle::process(&app.store, caller, value, &base, ret, max_entries).await?;
    patients.sort();
    patients.dedup();
    let audited = crate::audit::Audited { returned: vec![], patients };
    Ok(crate::audit::attach(wire::raw_json_response(StatusCode::OK, out), audited))
}
