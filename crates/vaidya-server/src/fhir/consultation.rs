//! The consultation: when the doctor's desk moves an OPD Appointment to `in-consultation`, an
//! Encounter (class AMB, `in-progress`) is opened for it; `done` finishes it. What the doctor
//! records during the visit is plain FHIR that names the Encounter: notes (ClinicalImpression),
//! diagnoses (Condition), orders (ServiceRequest), results (Observation). Each must be about
//! the Encounter's own patient: a wrong-patient entry is refused.
//!
//! Find a visit's Encounter with `Encounter?appointment=Appointment/{id}`, and what was
//! recorded in it with `Condition?encounter=Encounter/{id}` (and so on).

use crate::error::ApiError;
use axum::http::StatusCode;
use serde_json::{Value, json};
use vaidya_fhir::outcome::{Issue, IssueType};
use vaidya_store::WriteTx;

fn encounter_of(tx: &WriteTx<'_>, appointment: &str) -> Result<Option<(String, Value)>, ApiError> {
    Ok(super::find(tx.conn(), "Encounter", &[("appointment", format!("Appointment/{appointment}"))])?.into_iter().next())
}

fn actor<'a>(appt: &'a Value, prefix: &str) -> Option<&'a str> {
    appt["participant"].as_array()?.iter().find_map(|p| p["actor"]["reference"].as_str().filter(|r| r.starts_with(prefix)))
}

/// Open the Encounter of an Appointment whose consultation begins (once: a second call finds it).
pub fn open(tx: &mut WriteTx<'_>, author: &str, appointment: &str, appt: &Value) -> Result<(), ApiError> {
    if encounter_of(tx, appointment)?.is_some() {
        return Ok(());
    }
    let patient = actor(appt, "Patient/").ok_or_else(|| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, IssueType::BusinessRule, "the appointment names no patient"))?;
    let mut encounter = json!({
        "resourceType": "Encounter",
        "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
        "subject": {"reference": patient},
        "appointment": [{"reference": format!("Appointment/{appointment}")}],
        "period": {"start": vaidya_fhir::datetime::format_instant(vaidya_store::now_ms())}
    });
    if let Some(doctor) = actor(appt, "Practitioner/") {
        encounter["participant"] = json!([{"individual": {"reference": doctor}}]);
    }
    if let Some(dept) = actor(appt, "HealthcareService/") {
        encounter["serviceType"] = json!({"text": dept});
        encounter["extension"] = json!([{"url": "https://vaidya.dev/fhir/StructureDefinition/encounter-department", "valueReference": {"reference": dept}}]);
    }
    super::ops::create(tx, author, super::prepare_trusted(encounter), &super::new_id(), None)?;
    Ok(())
}

/// Finish the Encounter of an Appointment whose consultation is done.
pub fn close(tx: &mut WriteTx<'_>, author: &str, appointment: &str) -> Result<(), ApiError> {
    let Some((id, mut encounter)) = encounter_of(tx, appointment)? else { return Ok(()) };
    if encounter["status"] != "in-progress" {
        return Ok(());
    }
    encounter["status"] = json!("finished");
    encounter["period"]["end"] = json!(vaidya_fhir::datetime::format_instant(vaidya_store::now_ms()));
    super::ops::save(tx, author, &id, encounter)?;
    Ok(())
}

/// The resources a doctor records in a consultation, and where their patient is.
fn subject_of(rtype: &str, resource: &Value) -> Option<String> {
    let field = match rtype {
        "Condition" | "ServiceRequest" | "ClinicalImpression" | "Observation" | "Procedure" | "MedicationRequest" => "subject",
        _ => return None,
    };
    resource[field]["reference"].as_str().map(str::to_string)
}

/// Before a resource that names an Encounter is written: it must be about the same patient.
pub fn check_same_patient(tx: &WriteTx<'_>, rtype: &str, resource: &Value) -> Result<(), ApiError> {
    let Some(enc) = resource["encounter"]["reference"].as_str().and_then(|r| r.strip_prefix("Encounter/")) else { return Ok(()) };
    let Some(subject) = subject_of(rtype, resource) else { return Ok(()) };
    let Some(stored) = vaidya_store::read::current(tx.conn(), "Encounter", enc)?.filter(|s| !s.deleted) else { return Ok(()) };
    let encounter: Value = serde_json::from_slice(&stored.content).map_err(|e| ApiError::internal(e.to_string()))?;
    let theirs = encounter["subject"]["reference"].as_str().unwrap_or_default();
    if theirs != subject {
        return Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            issues: vec![Issue::error(IssueType::BusinessRule, format!("Encounter/{enc} is {theirs}'s visit, not {subject}'s")).at(format!("{rtype}.subject"))],
            hidden_refusal: false,
        });
    }
    Ok(())
}
