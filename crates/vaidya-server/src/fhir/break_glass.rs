//! Break-the-glass: `POST /fhir/Patient/{id}/$break-glass` with a `reason`. A clinician
//! outside a patient's care may open that patient's records in an emergency: the grant lasts
//! `[access] break_glass_seconds`, is stored (durably) and recorded in the audit ledger with
//! the reason and purpose "break the glass", and is reported at once: an error-level log line at
//! target `vaidya::alert` and the `vaidya_break_glass_total` counter on `/metrics`, on which the
//! privacy officer's monitoring alerts. `vaidya audit report --user NAME` and `--patient` list
//! every such access for review. The policies decide who may ask (`break-glass-clinicians`) and
//! honour an active grant (`context.break_glass`), VIP records included.

use crate::app::{AppState, Principal};
use crate::error::ApiError;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;
use std::sync::atomic::Ordering;
use vaidya_fhir::outcome::IssueType;
use vaidya_store::grants::Grant;

pub async fn grant(app: &AppState, who: &Principal, patient: &str, reason: String) -> Result<Response, ApiError> {
    let now = vaidya_store::now_ms();
    let expires_ms = now.saturating_add(i64::try_from(app.config.access.break_glass_seconds).unwrap_or(i64::MAX / 2).saturating_mul(1000));
    let g = Grant { user: who.user.clone(), patient: patient.to_string(), reason: reason.clone(), granted_ms: now, expires_ms };
    let g2 = g.clone();
    app.store
        .write(move |tx| {
            super::load_live(tx.conn(), "Patient", &g2.patient)?;
            vaidya_store::grants::insert(tx.conn(), &g2)?;
            Ok::<(), ApiError>(())
        })
        .await?;
    let mut rec = vaidya_audit::AuditRecord::new(vaidya_audit::Action::BreakGlass, vaidya_audit::Outcome::Allowed);
    rec.who = vaidya_audit::Who { user: Some(who.user.clone()), role: Some(who.role.clone()), session: Some(who.token_id.clone()) };
    rec.what = vec![format!("Patient/{patient}")];
    rec.patients = vec![patient.to_string()];
    rec.purpose = Some(vaidya_audit::Purpose::BreakTheGlass);
    rec.reason = Some(reason.clone());
    app.audit.record(vec![rec]).await.map_err(|e| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, IssueType::Transient, format!("the audit trail cannot be written, so no grant is given: {e}"))
    })?;
    app.metrics.break_glass.fetch_add(1, Ordering::Relaxed);
    let until = vaidya_fhir::datetime::format_instant(expires_ms);
    tracing::error!(target: "vaidya::alert", user = %who.user, role = %who.role, patient = %patient, until = %until, reason = %reason,
        "BREAK-THE-GLASS: emergency access to a patient's records outside normal rights");
    app.alerts.raise("break-glass", json!({"user": who.user, "role": who.role, "patient": patient, "until": until, "reason": reason}));
    Ok(super::wire::json_response(
        StatusCode::OK,
        &json!({"resourceType": "Parameters", "parameter": [
            {"name": "patient", "valueReference": {"reference": format!("Patient/{patient}")}},
            {"name": "expires", "valueInstant": until},
            {"name": "reason", "valueString": g.reason}
        ]}),
    ))
}
