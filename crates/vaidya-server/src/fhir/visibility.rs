//! Who sees which clinical records. Unreleased results stay in the laboratory. A DiagnosticReport is seen outside the lab only
//! once released (`final`, `amended`, `corrected`, `appended`), and an Observation only once
//! it is no longer `registered` or `preliminary` (entered, not yet verified and released).
//! Lab and radiology staff see everything they work on; so do integrations (role `machine`).
//! The administrator sees no patient's records at all (the Cedar policies, `fhir::authorize`).
//!
//! The rule is applied where resources leave the server: reads and vreads answer 404 (as for a
//! resource that does not exist, so that its existence is not given away), searches carry an
//! extra status condition (so that counts and pages stay right), and history listings and
//! included resources leave hidden versions out.
//!
//! A patient's own account (role `patient`, linked to their Patient) reads only their own
//! Patient, appointments, encounters, orders, released reports and results, charges and
//! invoices: every search of those types is narrowed to them, any other type is refused, and
//! nothing can be written. The full access policy (roles, VIP labels, break-the-glass) is the
//! access issue's work; these rules are the floor it builds on.

use crate::app::Principal;
use crate::error::ApiError;
use axum::http::{Method, StatusCode};
use serde::Deserialize;
use std::borrow::Cow;
use vaidya_fhir::outcome::IssueType;

/// Who is looking, as far as these rules care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    /// Lab and radiology staff, and integrations: every status.
    Lab,
    /// Everyone else on the staff: released results only.
    Clinical,
    /// A patient's own account (the Patient id): their own records of a few kinds, released
    /// results only, read-only.
    Patient(String),
}

impl Viewer {
    pub fn of(who: &Principal) -> Viewer {
        match (who.role.as_str(), &who.patient) {
            ("patient", Some(id)) => Viewer::Patient(id.clone()),
            // A patient account without its Patient sees nothing of anyone's (refused earlier).
            ("patient", None) => Viewer::Patient(String::new()),
            ("lab" | "radiology" | "machine", _) => Viewer::Lab,
            _ => Viewer::Clinical,
        }
    }
}

/// The statuses of a released DiagnosticReport (the one list the lab, print and access checks use).
pub const RELEASED_REPORT: [&str; 4] = ["final", "amended", "corrected", "appended"];
const UNRELEASED_OBSERVATION: [&str; 2] = ["registered", "preliminary"];

/// What a patient may read of their own, and the search parameter that keeps a search of
/// that type to them.
const PATIENT_TYPES: [(&str, &str); 8] = [
    ("Patient", "_id"),
    ("Appointment", "patient"),
    ("Encounter", "patient"),
    ("ServiceRequest", "patient"),
    ("DiagnosticReport", "patient"),
    ("Observation", "patient"),
    ("ChargeItem", "patient"),
    ("Invoice", "patient"),
];

#[derive(Deserialize)]
struct Reference<'a> {
    #[serde(borrow)]
    reference: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Participant<'a> {
    #[serde(borrow)]
    actor: Option<Reference<'a>>,
}

/// The few fields these rules read; the rest of the document is skipped, not built.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow)]
    subject: Option<Reference<'a>>,
    #[serde(borrow)]
    participant: Option<Vec<Participant<'a>>>,
}

/// Whether a result with this status is released (anything that is not a result is).
pub fn released(rtype: &str, status: &str) -> bool {
    match rtype {
        "DiagnosticReport" => RELEASED_REPORT.contains(&status),
        "Observation" => !UNRELEASED_OBSERVATION.contains(&status),
        _ => true,
    }
}

/// What a patient's account sees of the directory, to book from the portal (no patient in them).
pub const PATIENT_DIRECTORY: [&str; 4] = ["HealthcareService", "Practitioner", "Schedule", "Slot"];

/// Whether `viewer` may see this stored resource.
pub fn visible(viewer: &Viewer, rtype: &str, content: &[u8]) -> bool {
    let results = matches!(rtype, "DiagnosticReport" | "Observation");
    match viewer {
        Viewer::Lab => true,
        Viewer::Clinical if !results => true,
        _ => {
            let Ok(head) = serde_json::from_slice::<Head<'_>>(content) else { return false };
            if !released(rtype, head.status.as_deref().unwrap_or_default()) {
                return false;
            }
            match viewer {
                Viewer::Patient(_) if PATIENT_DIRECTORY.contains(&rtype) => true,
                Viewer::Patient(own) => is_patients(own, rtype, &head),
                _ => true,
            }
        }
    }
}

fn is_patients(own: &str, rtype: &str, head: &Head<'_>) -> bool {
    if own.is_empty() || !PATIENT_TYPES.iter().any(|(t, _)| *t == rtype) {
        return false;
    }
    let me = format!("Patient/{own}");
    match rtype {
        "Patient" => head.id.as_deref() == Some(own),
        "Appointment" => head
            .participant
            .iter()
            .flatten()
            .any(|p| p.actor.as_ref().and_then(|a| a.reference.as_deref()) == Some(me.as_str())),
        _ => head.subject.as_ref().and_then(|s| s.reference.as_deref()) == Some(me.as_str()),
    }
}

fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, IssueType::Forbidden, message)
}

/// The search conditions that keep what `viewer` may not see out of a search of `rtype`;
/// a type a patient may not search at all is refused.
pub fn search_conditions(viewer: &Viewer, rtype: &str) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = vec![];
    if *viewer != Viewer::Lab {
        match rtype {
            "DiagnosticReport" => out.push(("status".to_string(), RELEASED_REPORT.join(","))),
            "Observation" => out.extend(UNRELEASED_OBSERVATION.iter().map(|s| ("status:not".to_string(), s.to_string()))),
            _ => {}
        }
    }
    if let Viewer::Patient(own) = viewer
        && !PATIENT_DIRECTORY.contains(&rtype)
    {
        let (_, param) = PATIENT_TYPES
            .iter()
            .find(|(t, _)| *t == rtype)
            .ok_or_else(|| forbidden(format!("a patient's account cannot search {rtype}")))?;
        out.push((param.to_string(), if *param == "_id" { own.clone() } else { format!("Patient/{own}") }));
    }
    Ok(out)
}

/// A patient's own account reads, and books and cancels its own appointments (`POST
/// /fhir/Appointment`, `POST /fhir/Appointment/{id}/$cancel`; the policies and
/// `booking::check_patient_booking` decide whose and what): no other writes, operations,
/// batches or history.
pub fn check_patient_request(who: &Principal, method: &Method, path: &str) -> Result<(), ApiError> {
    if who.role != "patient" {
        return Ok(());
    }
    if who.patient.is_none() {
        return Err(forbidden("this patient account is not linked to a patient record"));
    }
    if method == Method::POST {
        // The path as the FHIR router sees it (`/Appointment`), or with its mount point.
        let path = path.strip_prefix("/fhir").unwrap_or(path);
        let rest = path.strip_prefix("/Appointment").unwrap_or("-");
        let cancel = rest.strip_prefix('/').and_then(|r| r.strip_suffix("/$cancel")).is_some_and(|id| !id.is_empty() && !id.contains('/'));
        if rest.is_empty() || cancel {
            return Ok(());
        }
    }
    if method != Method::GET && method != Method::HEAD {
        return Err(forbidden("a patient's account can only read, and book or cancel its own appointments"));
    }
    if path.contains("/_history") || path.contains('$') {
        return Err(forbidden("a patient's account can read records, not their history or operations"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staff_outside_the_lab_see_released_results_only() {
        let report = |s: &str| format!(r#"{{"resourceType":"DiagnosticReport","status":"{s}","text":{{"div":"x"}}}}"#);
        let (clin, lab) = (Viewer::Clinical, Viewer::Lab);
        assert!(!visible(&clin, "DiagnosticReport", report("preliminary").as_bytes()));
        assert!(!visible(&clin, "DiagnosticReport", report("registered").as_bytes()));
        assert!(visible(&clin, "DiagnosticReport", report("final").as_bytes()));
        assert!(visible(&clin, "DiagnosticReport", report("amended").as_bytes()));
        assert!(visible(&lab, "DiagnosticReport", report("preliminary").as_bytes()));
        assert!(!visible(&clin, "Observation", br#"{"status":"preliminary"}"#));
        assert!(visible(&clin, "Observation", br#"{"status":"final"}"#));
        assert!(visible(&clin, "Patient", br#"{"status":"preliminary"}"#));
        // No status at all (not valid FHIR for these types) is not released.
        assert!(!visible(&clin, "DiagnosticReport", br#"{"id":"x"}"#));
        assert_eq!(search_conditions(&clin, "DiagnosticReport").unwrap().len(), 1);
        assert!(search_conditions(&lab, "DiagnosticReport").unwrap().is_empty());
    }

    #[test]
    fn a_patient_sees_their_own_released_records_only() {
        let me = Viewer::Patient("p1".into());
        assert!(visible(&me, "Patient", br#"{"resourceType":"Patient","id":"p1"}"#));
        assert!(!visible(&me, "Patient", br#"{"resourceType":"Patient","id":"p2"}"#));
        assert!(visible(&me, "DiagnosticReport", br#"{"status":"final","subject":{"reference":"Patient/p1"}}"#));
        assert!(!visible(&me, "DiagnosticReport", br#"{"status":"preliminary","subject":{"reference":"Patient/p1"}}"#));
        assert!(!visible(&me, "DiagnosticReport", br#"{"status":"final","subject":{"reference":"Patient/p2"}}"#));
        assert!(visible(&me, "Appointment", br#"{"participant":[{"actor":{"reference":"Practitioner/d"}},{"actor":{"reference":"Patient/p1"}}]}"#));
        assert!(!visible(&me, "Appointment", br#"{"participant":[{"actor":{"reference":"Patient/p2"}}]}"#));
        // Escaped strings are read too (they cannot be borrowed).
        assert!(visible(&me, "Invoice", br#"{"subject":{"reference":"Patient\/p1"}}"#));
        assert!(!visible(&me, "Organization", br#"{"id":"p1"}"#));
        // The OPD directory, to book from the portal: seen, and searched without a patient.
        assert!(visible(&me, "Practitioner", br#"{"id":"d1"}"#));
        assert!(search_conditions(&me, "Slot").unwrap().is_empty());
        assert!(!visible(&Viewer::Patient(String::new()), "Patient", br#"{"id":""}"#));
        assert_eq!(search_conditions(&me, "Invoice").unwrap(), vec![("patient".to_string(), "Patient/p1".to_string())]);
        assert_eq!(search_conditions(&me, "Patient").unwrap(), vec![("_id".to_string(), "p1".to_string())]);
        assert!(search_conditions(&me, "Organization").is_err());
        let who = |role: &str, patient: Option<&str>| Principal { user: "u".into(), role: role.into(), token_id: "t".into(), patient: patient.map(str::to_string), department: None, practitioner: None, scopes: None };
        assert!(check_patient_request(&who("patient", Some("p1")), &Method::GET, "/fhir/Invoice").is_ok());
        assert!(check_patient_request(&who("patient", Some("p1")), &Method::POST, "/fhir/Invoice").is_err());
        assert!(check_patient_request(&who("patient", Some("p1")), &Method::POST, "/fhir/Appointment").is_ok());
        assert!(check_patient_request(&who("patient", Some("p1")), &Method::POST, "/fhir/Appointment/a1/$cancel").is_ok());
        assert!(check_patient_request(&who("patient", Some("p1")), &Method::POST, "/fhir/Appointment/a1/$queue").is_err());
        assert!(check_patient_request(&who("patient", Some("p1")), &Method::POST, "/fhir/Appointment/a1/x/$cancel").is_err());
        assert!(check_patient_request(&who("patient", Some("p1")), &Method::PUT, "/fhir/Appointment/a1").is_err());
        assert!(check_patient_request(&who("patient", Some("p1")), &Method::GET, "/fhir/Patient/p1/_history").is_err());
        assert!(check_patient_request(&who("patient", None), &Method::GET, "/fhir/Patient/p1").is_err());
        assert!(check_patient_request(&who("doctor", None), &Method::POST, "/fhir/Invoice").is_ok());
    }
}
