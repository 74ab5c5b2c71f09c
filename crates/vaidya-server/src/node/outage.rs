//! `GET /node/outage` on a department node: the outage report. For each downtime: when it
//! began and ended, how many entries were made on the node, and what became of each unit
//! handed back (applied at the core, with where; or queued for a person, with the Task and
//! why); and what is still waiting on the node now. Staff accounts of the node only.

use crate::app::{AppState, Principal};
use crate::error::ApiError;
use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub async fn report(State(app): State<AppState>, Extension(who): Extension<Principal>) -> Result<Response, ApiError> {
    if who.patient.is_some() || who.role == crate::guard::NODE_ROLE {
        return Err(ApiError::new(axum::http::StatusCode::FORBIDDEN, vaidya_fhir::outcome::IssueType::Forbidden, "the outage report is for the hospital's staff"));
    }
    let waiting = app.node.as_ref().map(|n| n.status().branch_entries).unwrap_or(0);
    let outages = app.read(read).await?;
    Ok(axum::Json(json!({"waiting_to_hand_back": waiting, "outages": outages})).into_response())
}

fn read(conn: &vaidya_store::Conn) -> Result<Vec<Value>, ApiError> {
    let conn = conn.require_sqlite("the outage report")?;
    let e = |e: rusqlite::Error| ApiError::internal(e.to_string());
    let mut outages: Vec<Value> = conn
        .prepare("SELECT fork, started_ms, ended_ms, entries, units, applied, queued FROM node_outage ORDER BY started_ms DESC LIMIT 100")
        .map_err(e)?
        .query_map([], |r| {
            let t = |ms: i64| vaidya_fhir::datetime::format_instant(ms);
            Ok(json!({
                "fork": r.get::<_, i64>(0)?, "started": t(r.get(1)?), "ended": t(r.get(2)?), "entries": r.get::<_, i64>(3)?,
                "units": r.get::<_, i64>(4)?, "applied": r.get::<_, i64>(5)?, "queued": r.get::<_, i64>(6)?,
            }))
        })
        .map_err(e)?
        .collect::<Result<_, _>>()
        .map_err(e)?;
    let mut units = conn
        .prepare("SELECT first, last, outcome, core_first, core_last, task, reason FROM node_handback_unit WHERE fork = ?1 ORDER BY first")
        .map_err(e)?;
    for o in &mut outages {
        let fork = o["fork"].as_i64().unwrap_or_default();
        let list: Vec<Value> = units
            .query_map([fork], |r| {
                Ok(json!({
                    "entries": [r.get::<_, i64>(0)?, r.get::<_, i64>(1)?], "outcome": r.get::<_, String>(2)?,
                    "core_entries": r.get::<_, Option<i64>>(3)?.zip(r.get::<_, Option<i64>>(4)?).map(|(a, b)| json!([a, b])),
                    "task": r.get::<_, Option<String>>(5)?, "reason": r.get::<_, Option<String>>(6)?,
                }))
            })
            .map_err(e)?
            .collect::<Result<_, _>>()
            .map_err(e)?;
        o["handed_back"] = Value::Array(list);
    }
    Ok(outages)
}
