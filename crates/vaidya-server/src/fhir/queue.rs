//! The OPD queue over FHIR. A walk-in (`HealthcareService/{dept}/$walk-in`) or a booked
//! patient checking in (`Appointment/{id}/$queue` with state `waiting`) gets the department's
//! next token for the day; the doctor's desk then moves the Appointment through the queue
//! (`called`, `in-consultation`, `done`, `no-show`) with the same operation. The rules are the
//! domain's [`QueueState`]; the state is an extension on the Appointment, and its FHIR status
//! follows (arrived while queued, fulfilled when done, noshow). The consultation's Encounter
//! opens and closes with it (see [`super::consultation`]).
//!
//! Today's queue of a department is a plain search:
//! `Appointment?actor=HealthcareService/{dept}&date=YYYY-MM-DD&_sort=date`.

use crate::error::ApiError;
use axum::http::StatusCode;
use serde_json::{Value, json};
use vaidya_domain::schedule::{IST_OFFSET_MINUTES, from_utc_ms};
use vaidya_domain::{QueueState, QueueToken};
use vaidya_fhir::outcome::IssueType;
use vaidya_store::WriteTx;

pub const QUEUE_STATE_URL: &str = "https://vaidya.dev/fhir/StructureDefinition/opd-queue-state";
pub const TOKEN_SYSTEM: &str = "https://vaidya.dev/fhir/sid/opd-token";

fn unprocessable(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, IssueType::BusinessRule, message)
}

fn load(tx: &WriteTx<'_>, rtype: &str, id: &str) -> Result<Value, ApiError> {
    Ok(super::load_live(tx.conn(), rtype, id)?.0)
}

/// The department's next token today (hospital time), counted in the same transaction.
fn next_token(tx: &mut WriteTx<'_>, dept: &str) -> Result<QueueToken, ApiError> {
    let (today, _) = from_utc_ms(vaidya_store::now_ms(), IST_OFFSET_MINUTES).map_err(|e| ApiError::internal(e.to_string()))?;
    let key = format!("opd-token:{dept}:{today}");
    let n = tx.sequence(&key)?.unwrap_or(0) + 1;
    let token = QueueToken::new(dept, n).map_err(|e| unprocessable(e.to_string()))?;
    tx.set_sequence(&key, n)?;
    Ok(token)
}

fn queue_state(appt: &Value) -> Option<QueueState> {
    appt["extension"].as_array()?.iter().find(|e| e["url"] == QUEUE_STATE_URL)?["valueCode"].as_str()?.parse().ok()
}

fn set_queue_state(appt: &mut Value, state: QueueState) {
    let ext = json!({"url": QUEUE_STATE_URL, "valueCode": state.as_str()});
    match appt["extension"].as_array_mut() {
        Some(list) => {
            list.retain(|e| e["url"] != QUEUE_STATE_URL);
            list.push(ext);
        }
        None => appt["extension"] = Value::Array(vec![ext]),
    }
    appt["status"] = json!(match state {
        QueueState::Done => "fulfilled",
        QueueState::NoShow => "noshow",
        _ => "arrived",
    });
}

fn department_of(appt: &Value) -> Option<String> {
    appt["participant"].as_array()?.iter().find_map(|p| p["actor"]["reference"].as_str()?.strip_prefix("HealthcareService/").map(str::to_string))
}

/// A walk-in: a new Appointment in the department's queue with today's next token.
pub fn walk_in(tx: &mut WriteTx<'_>, author: &str, dept: &str, patient: &str, practitioner: Option<&str>, id: &str) -> Result<super::ops::Outcome, ApiError> {
    load(tx, "HealthcareService", dept)?;
    load(tx, "Patient", patient)?;
    if let Some(p) = practitioner {
        load(tx, "Practitioner", p)?;
    }
    let token = next_token(tx, dept)?;
    let mut participants = vec![
        json!({"actor": {"reference": format!("Patient/{patient}")}, "status": "accepted"}),
        json!({"actor": {"reference": format!("HealthcareService/{dept}")}, "status": "accepted"}),
    ];
    if let Some(p) = practitioner {
        participants.push(json!({"actor": {"reference": format!("Practitioner/{p}")}, "status": "accepted"}));
    }
    let mut appt = json!({
        "resourceType": "Appointment",
        "identifier": [{"system": TOKEN_SYSTEM, "value": token.to_string()}],
        "status": "arrived",
        "appointmentType": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0276", "code": "WALKIN"}]},
        "start": vaidya_fhir::datetime::format_instant(vaidya_store::now_ms()),
        "participant": participants
    });
    set_queue_state(&mut appt, QueueState::Waiting);
    super::ops::save(tx, author, id, appt)
}

/// Move an Appointment in the queue. `waiting` on a booked appointment is its check-in and
/// gives it a token.
pub fn move_to(tx: &mut WriteTx<'_>, author: &str, id: &str, to: QueueState) -> Result<super::ops::Outcome, ApiError> {
    let mut appt = load(tx, "Appointment", id)?;
    match queue_state(&appt) {
        Some(from) => {
            from.advance(to).map_err(|e| ApiError::new(StatusCode::CONFLICT, IssueType::BusinessRule, e.to_string()))?;
        }
        None => {
            if to != QueueState::Waiting {
                return Err(ApiError::new(StatusCode::CONFLICT, IssueType::BusinessRule, "the patient has not checked in yet"));
            }
            if appt["status"] != "booked" {
                return Err(ApiError::new(StatusCode::CONFLICT, IssueType::BusinessRule, format!("a {} appointment cannot check in", appt["status"])));
            }
            let dept = department_of(&appt).ok_or_else(|| unprocessable("the appointment names no department (HealthcareService)"))?;
            let token = next_token(tx, &dept)?;
            let ids = appt["identifier"].as_array_mut();
            let token_id = json!({"system": TOKEN_SYSTEM, "value": token.to_string()});
            match ids {
                Some(l) => l.push(token_id),
                None => appt["identifier"] = Value::Array(vec![token_id]),
            }
        }
    }
    set_queue_state(&mut appt, to);
    match to {
        QueueState::InConsultation => super::consultation::open(tx, author, id, &appt)?,
        QueueState::Done => super::consultation::close(tx, author, id)?,
        _ => {}
    }
    super::ops::save(tx, author, id, appt)
}
