//! The reconciliation queue: what a hand-back could not apply by itself, for a person to
//! settle. Each item is a FHIR Task in the ledger (so it is backed up, tamper-evident and
//! visible on every node): code `conflict` (a unit of downtime writes not applied: a slot
//! booked at the core and on the node, a record changed on both sides) or `duplicate-patient`
//! (a patient registered on the node who looks like one already here: applied, merge
//! suggested). The node's entries travel in the Task's `input`, so nothing is dropped.
//!
//! - `GET /node/reconciliation[?status=open|all]`: the items (admin).
//! - `POST /node/reconciliation/{id}` `{"decision": ..., "note": ...}` (admin): `apply` the
//!   node's versions over the core's (not for a slot booking: book the patient again and say
//!   `settled`), `merge` the node's patient into the suggested one, `discard` the node's
//!   writes (the core's records stand), or `settled` by hand (a note says how). The Task's new
//!   version records who decided what, and when.

use crate::app::{AppState, Principal};
use crate::error::ApiError;
use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use vaidya_backup::restore::PreparedEntry;
use vaidya_fhir::outcome::IssueType;
use vaidya_ledger::Op;
use vaidya_store::WriteTx;

/// The code system of reconciliation items.
pub const CODE_SYSTEM: &str = "https://vaidya.dev/fhir/CodeSystem/reconciliation";
/// Identifies the node entries an item came from: `<node account>:<first>-<last>`.
pub const HANDBACK_SYSTEM: &str = "https://vaidya.dev/fhir/sid/hand-back";
/// The longest note a person may leave with a decision.
const MAX_NOTE: usize = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Conflict,
    DuplicatePatient,
}

impl Kind {
    fn code(self) -> &'static str {
        match self {
            Kind::Conflict => "conflict",
            Kind::DuplicatePatient => "duplicate-patient",
        }
    }
}

/// Raise an item for `unit` (entries a node wrote in one transaction); its Task id.
pub fn raise(tx: &mut WriteTx<'_>, node: &str, kind: Kind, reason: &str, unit: &[PreparedEntry], merge_into: Option<String>) -> Result<String, ApiError> {
    let (first, last) = (unit[0].entry.seq, unit[unit.len() - 1].entry.seq);
    let now = vaidya_fhir::datetime::format_instant(vaidya_store::now_ms());
    let mut input: Vec<Value> = unit
        .iter()
        .map(|p| {
            let e = &p.entry;
            let entry = json!({
                "seq": e.seq,
                "time": vaidya_fhir::datetime::format_instant(e.time_ms),
                "author": e.author,
                "op": if e.op == Op::Put { "put" } else { "delete" },
                "resource": format!("{}/{}", e.resource_type, e.resource_id),
                "version": e.version,
                "content": serde_json::from_slice::<Value>(&e.content).unwrap_or(Value::Null),
            });
            json!({"type": {"text": "node-entry"}, "valueString": entry.to_string()})
        })
        .collect();
    if let Some(target) = &merge_into {
        input.push(json!({"type": {"text": "merge-into"}, "valueReference": {"reference": target}}));
    }
    let mut task = json!({
        "resourceType": "Task",
        "identifier": [{"system": HANDBACK_SYSTEM, "value": format!("{node}:{first}-{last}")}],
        "status": "requested",
        "intent": "order",
        "priority": "urgent",
        "code": {"coding": [{"system": CODE_SYSTEM, "code": kind.code()}], "text": match kind {
            Kind::Conflict => "Downtime entries not applied: settle by hand",
            Kind::DuplicatePatient => "Patient registered in downtime may already exist: merge?",
        }},
        "description": reason,
        "authoredOn": now,
        "lastModified": now,
        "requester": {"display": node},
        "input": input,
    });
    if let Some(patient) = patient_of(unit) {
        task["for"] = json!({"reference": patient});
    }
    let id = crate::fhir::new_id();
    let p = crate::fhir::prepare_trusted(task);
    tx.create(node, "Task", &id, &p.body, &p.index)?;
    Ok(id)
}

/// The patient a unit is about: the first Patient it writes, or the first patient its
/// resources name (`subject`, `patient`, `beneficiary`, an Appointment's participant).
fn patient_of(unit: &[PreparedEntry]) -> Option<String> {
    if let Some(p) = unit.iter().find(|p| p.entry.resource_type == "Patient") {
        return Some(format!("Patient/{}", p.entry.resource_id));
    }
    unit.iter().find_map(|p| {
        let v: Value = serde_json::from_slice(&p.entry.content).ok()?;
        let direct = ["subject", "patient", "beneficiary"].iter().find_map(|k| v[*k]["reference"].as_str().map(str::to_string));
        direct
            .or_else(|| v["participant"].as_array()?.iter().find_map(|pa| pa["actor"]["reference"].as_str().filter(|r| r.starts_with("Patient/")).map(str::to_string)))
            .filter(|r| r.starts_with("Patient/"))
    })
}

fn only_admins(who: &Principal) -> Result<(), ApiError> {
    if who.role != "admin" {
        return Err(ApiError::new(StatusCode::FORBIDDEN, IssueType::Forbidden, "the reconciliation queue is settled by an administrator"));
    }
    Ok(())
}

/// `GET /node/reconciliation`.
pub async fn list(State(app): State<AppState>, Extension(who): Extension<Principal>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    only_admins(&who)?;
    let mut open_only = true;
    for (k, v) in form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        match (k.as_ref(), v.as_ref()) {
            ("status", "open") => open_only = true,
            ("status", "all") => open_only = false,
            (k, v) => return Err(ApiError::bad_request(format!("unknown parameter {k}={v} (status=open|all)"))),
        }
    }
    let items = app.read(move |conn| items(conn, open_only)).await?;
    Ok(axum::Json(json!({"items": items})).into_response())
}

/// The queue's items (open ones, or all), oldest first, as JSON summaries.
pub fn items(conn: &impl vaidya_store::Db, open_only: bool) -> Result<Vec<Value>, ApiError> {
    let mut pairs = vec![("code", format!("{CODE_SYSTEM}|")), ("_sort", "authored-on".to_string()), ("_count", "1000".to_string())];
    if open_only {
        pairs.push(("status", "requested".to_string()));
    }
    Ok(crate::fhir::find(conn, "Task", &pairs)?.into_iter().map(|(id, t)| summary(&id, &t)).collect())
}

fn summary(id: &str, t: &Value) -> Value {
    json!({
        "id": id,
        "kind": t["code"]["coding"][0]["code"],
        "status": t["status"],
        "description": t["description"],
        "node": t["requester"]["display"],
        "from": t["identifier"][0]["value"],
        "patient": t["for"]["reference"],
        "raised": t["authoredOn"],
        "entries": t["input"].as_array().map_or(0, |i| i.iter().filter(|x| x["type"]["text"] == "node-entry").count()),
        "decision": t["businessStatus"]["text"],
        "decided_by": t["owner"]["display"],
    })
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Decision {
    decision: String,
    #[serde(default)]
    note: String,
}

/// `POST /node/reconciliation/{id}`.
pub async fn settle(State(app): State<AppState>, Extension(who): Extension<Principal>, Path(id): Path<String>, body: axum::body::Bytes) -> Result<Response, ApiError> {
    only_admins(&who)?;
    let d: Decision = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("the body must be {{\"decision\": apply|merge|discard|settled, \"note\": text}}: {e}")))?;
    let task = settle_as(&app, &who.user, &id, &d.decision, &d.note).await?;
    Ok(axum::Json(task).into_response())
}

/// Settle item `id` with `decision` as `user` (checked here: the API and the screen share it).
pub async fn settle_as(app: &AppState, user: &str, id: &str, decision: &str, note: &str) -> Result<Value, ApiError> {
    crate::fhir::check_id(id)?;
    if note.chars().count() > MAX_NOTE || note.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ApiError::bad_request(format!("the note is at most {MAX_NOTE} characters of text")));
    }
    if !["apply", "merge", "discard", "settled"].contains(&decision) {
        return Err(ApiError::bad_request(format!("decision '{decision}' is not one of apply, merge, discard, settled")));
    }
    if decision == "settled" && note.trim().is_empty() {
        return Err(ApiError::bad_request("say in the note how it was settled"));
    }
    let (user, id, decision, note) = (user.to_string(), id.to_string(), decision.to_string(), note.trim().to_string());
    app.store.write(move |tx| decide(tx, &user, &id, &decision, &note)).await
}

fn decide(tx: &mut WriteTx<'_>, user: &str, id: &str, decision: &str, note: &str) -> Result<Value, ApiError> {
    let (mut task, _) = crate::fhir::load_live(tx.conn(), "Task", id)?;
    if task["code"]["coding"][0]["system"] != CODE_SYSTEM {
        return Err(ApiError::not_found(format!("Task/{id} is not a reconciliation item")));
    }
    if task["status"] != "requested" {
        return Err(ApiError::new(StatusCode::CONFLICT, IssueType::Conflict, format!("Task/{id} was settled already ({})", task["businessStatus"]["text"])));
    }
    let kind = task["code"]["coding"][0]["code"].as_str().unwrap_or_default().to_string();
    let entries: Vec<Value> = task["input"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["type"]["text"] == "node-entry")
        .filter_map(|i| serde_json::from_str(i["valueString"].as_str()?).ok())
        .collect();
    let unprocessable = |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, IssueType::BusinessRule, m);
    match decision {
        "apply" => {
            if kind != "conflict" {
                return Err(unprocessable("only a conflict is applied; a suggested merge is merged, discarded or settled".into()));
            }
            if entries.iter().any(|e| e["resource"].as_str().is_some_and(|r| r.starts_with("Slot/"))) {
                return Err(unprocessable("a booking whose slot was taken is not applied over it: book the patient again, then mark this settled".into()));
            }
            for e in &entries {
                let (rtype, rid) = e["resource"].as_str().and_then(|r| r.split_once('/')).ok_or_else(|| ApiError::internal("an item's entry names no resource"))?;
                if e["op"] == "delete" {
                    tx.delete(user, rtype, rid)?;
                } else {
                    let p = crate::fhir::prepare(e["content"].clone())?;
                    tx.put(user, rtype, rid, &p.body, &p.index)?;
                }
            }
        }
        "merge" => {
            if kind != "duplicate-patient" {
                return Err(unprocessable("only a suggested merge is merged".into()));
            }
            let source = task["for"]["reference"].as_str().and_then(|r| r.strip_prefix("Patient/")).map(str::to_string);
            let target = task["input"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|i| i["type"]["text"] == "merge-into")
                .and_then(|i| i["valueReference"]["reference"].as_str()?.strip_prefix("Patient/").map(str::to_string));
            let (Some(source), Some(target)) = (source, target) else { return Err(ApiError::internal("the item names no patients to merge")) };
            crate::fhir::duplicates::merge(tx, user, &source, &target)?;
        }
        _ => {}
    }
    let now = vaidya_fhir::datetime::format_instant(vaidya_store::now_ms());
    task["status"] = json!(if decision == "discard" { "cancelled" } else { "completed" });
    task["businessStatus"] = json!({"text": decision});
    task["owner"] = json!({"display": user});
    task["lastModified"] = json!(now);
    if !note.is_empty() {
        task["note"] = json!([{"authorString": user, "time": now, "text": note}]);
    }
    let p = crate::fhir::prepare(task)?;
    let written = tx.put(user, "Task", id, &p.body, &p.index)?;
    let stored: Value = serde_json::from_slice(&written.content).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(summary(id, &stored))
}
