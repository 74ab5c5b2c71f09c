//! `GET /fhir/AuditEvent?patient=Patient/<id>` (or `patient.identifier=<UHID>`): the audit trail of one patient's record, read
//! from the audit ledger (not the clinical store): who accessed it, when, from where and why,
//! newest first, as FHIR AuditEvents. For the privacy officer and auditors (any patient:
//! policy `oversight`) and for a patient's own account (their own record only: policy
//! `patient-own-access-log`); everyone else is refused. Looking is itself recorded, as a
//! search naming the patient.

use super::authorize;
use super::wire::{self, BundleWriter};
use crate::app::{AppState, Principal};
use crate::error::ApiError;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;
use vaidya_policy::Action;

/// Events in one answer unless `_count` says otherwise.
pub const DEFAULT_COUNT: usize = 100;
/// Most events in one answer (the newest; `vaidya audit report` gives everything).
pub const MAX_COUNT: usize = 1_000;

pub async fn search(app: AppState, who: Principal, pairs: Vec<(String, String)>, headers: HeaderMap) -> Result<Response, ApiError> {
    let mut patient = None;
    let mut uhid = None;
    let mut count = DEFAULT_COUNT;
    for (k, v) in &pairs {
        match k.as_str() {
            "patient" | "entity" => {
                let id = v.strip_prefix("Patient/").unwrap_or(v);
                super::check_id(id).map_err(|_| ApiError::bad_request(format!("{k} '{v}' is not a Patient reference")))?;
                if patient.replace(id.to_string()).is_some() {
                    return Err(ApiError::bad_request("give one patient"));
                }
            }
            "patient.identifier" => {
                let value = v.strip_prefix(&format!("{}|", super::UHID_SYSTEM)).unwrap_or(v);
                if uhid.replace(value.to_string()).is_some() {
                    return Err(ApiError::bad_request("give one patient"));
                }
            }
            "_count" => {
                count = v.parse().ok().filter(|n| *n <= MAX_COUNT).ok_or_else(|| {
                    ApiError::bad_request(format!("_count '{v}' is not a number from 0 to {MAX_COUNT}"))
                })?;
            }
            "_format" => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "AuditEvent is searched by patient or patient.identifier (and _count) only; '{other}' is not supported"
                )));
            }
        }
    }
    if patient.is_some() == uhid.is_some() {
        return Err(ApiError::bad_request(
            "AuditEvent needs one of patient=Patient/<id> or patient.identifier=<UHID>: the trail is read one patient at a time",
        ));
    }
    let actor = authorize::actor(&who);
    let policies = app.policies.clone();
    let patient = app
        .read(move |conn| {
            let patient = match (patient, uhid) {
                (Some(id), _) => id,
                (None, Some(u)) => super::registration::patient_for_uhid(conn, &u).map_err(ApiError::bad_request)?,
                (None, None) => unreachable!("one of the two, checked above"),
            };
            let named = vec![("patient".to_string(), format!("Patient/{patient}"))];
            let target = authorize::target_of_search(conn, &actor, "AuditEvent", &named)?;
            authorize::check(&policies, &actor, Action::Search, &target, "this patient's audit trail")?;
            Ok(patient)
        })
        .await?;

    let dir = vaidya_audit::audit_dir(&app.config.data);
    let id = patient.clone();
    let mut events = tokio::task::spawn_blocking(move || vaidya_audit::report_for_patient(&dir, &id))
        .await
        .map_err(|e| ApiError::internal(format!("audit report task failed: {e}")))?
        .map_err(|e| ApiError::internal(format!("the audit trail cannot be read: {e}")))?;
    let total = events.len();
    events.reverse(); // newest first
    events.truncate(count);

    let base = wire::base_url(&headers);
    let self_link = format!("{base}/AuditEvent?patient=Patient/{patient}&_count={count}");
    let mut w = BundleWriter::new(wire::bundle_head("searchset", Some(total as u64), &[("self", self_link)]));
    let mut returned = Vec::with_capacity(events.len());
    for ev in &events {
        let id = ev.get("id").and_then(|i| i.as_str()).unwrap_or_default();
        returned.push(format!("AuditEvent/{id}"));
        let bytes = serde_json::to_vec(ev).map_err(|e| ApiError::internal(e.to_string()))?;
        w.entry(json!({"fullUrl": format!("{base}/AuditEvent/{id}"), "search": {"mode": "match"}}), Some(&bytes));
    }
    let audited = crate::audit::Audited { returned, patients: vec![patient] };
    Ok(crate::audit::attach(wire::raw_json_response(StatusCode::OK, w.finish()), audited))
}
