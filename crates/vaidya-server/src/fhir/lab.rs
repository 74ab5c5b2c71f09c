//! The laboratory flow over FHIR: a ServiceRequest's sample is collected with a barcode
//! (`ServiceRequest/{id}/$collect` makes the Specimen), results are entered as Observations
//! (plain FHIR, status `preliminary`) gathered by a DiagnosticReport, which a second person
//! verifies (`DiagnosticReport/{id}/$verify`: never the one who entered a result) before it is
//! released (`DiagnosticReport/{id}/$release`: the report and its results become `final`).
//! Only released (final or amended) reports are meant for the patient's eyes.

use super::prepare;
use crate::error::ApiError;
use axum::http::StatusCode;
use serde_json::{Value, json};
use vaidya_domain::schedule::{IST_OFFSET_MINUTES, from_utc_ms};
use vaidya_fhir::outcome::IssueType;
use vaidya_store::WriteTx;

pub const SPECIMEN_BARCODE_SYSTEM: &str = "https://vaidya.dev/fhir/sid/specimen-barcode";
pub const VERIFIED_BY_URL: &str = "https://vaidya.dev/fhir/StructureDefinition/verified-by";

fn conflict(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, IssueType::BusinessRule, message)
}

/// The current version of a resource and who wrote it.
fn load(tx: &WriteTx<'_>, rtype: &str, id: &str) -> Result<(Value, String), ApiError> {
    let (value, stored) = super::load_live(tx.conn(), rtype, id)?;
    Ok((value, stored.author))
}

/// A barcode as printed on the tube: 12 characters, letters and digits.
fn valid_barcode(b: &str) -> bool {
    (6..=32).contains(&b.len()) && b.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
}

/// Collect the sample of a ServiceRequest: a Specimen with `barcode`, or the day's next one.
pub fn collect(tx: &mut WriteTx<'_>, author: &str, request_id: &str, barcode: Option<String>, specimen_id: &str) -> Result<super::ops::Outcome, ApiError> {
    let (mut request, _) = load(tx, "ServiceRequest", request_id)?;
    let status = request["status"].as_str().unwrap_or_default().to_string();
    if status != "active" && status != "draft" {
        return Err(conflict(format!("a {status} request cannot have a sample collected")));
    }
    let now = vaidya_store::now_ms();
    let barcode = match barcode {
        Some(b) if valid_barcode(&b) => b,
        Some(b) => return Err(ApiError::bad_request(format!("'{b}' is not a specimen barcode (6-32 letters, digits, '-')"))),
        None => {
            let (today, _) = from_utc_ms(now, IST_OFFSET_MINUTES).map_err(|e| ApiError::internal(e.to_string()))?;
            let key = crate::numbering::counter(&format!("specimen:{today}"));
            let n = tx.sequence(&key)?.unwrap_or(0) + 1;
            tx.set_sequence(&key, n)?;
            crate::numbering::daily_number('S', today, n)
        }
    };
    let pairs = vec![("identifier".to_string(), format!("{SPECIMEN_BARCODE_SYSTEM}|{barcode}")), ("_summary".to_string(), "count".to_string())];
    let q = vaidya_store::search::parse_query("Specimen", &pairs, vaidya_store::search::Handling::Strict)?;
    if vaidya_store::search::run(tx.conn(), &q)?.total > 0 {
        return Err(conflict(format!("barcode {barcode} is already on another specimen")));
    }
    let specimen = json!({
        "resourceType": "Specimen",
        "identifier": [{"system": SPECIMEN_BARCODE_SYSTEM, "value": barcode}],
        "accessionIdentifier": {"system": SPECIMEN_BARCODE_SYSTEM, "value": barcode},
        "status": "available",
        "subject": request["subject"].clone(),
        "request": [{"reference": format!("ServiceRequest/{request_id}")}],
        "collection": {"collectedDateTime": vaidya_fhir::datetime::format_instant(now)}
    });
    let out = super::ops::create(tx, author, prepare(specimen)?, specimen_id, None)?;
    if status == "draft" {
        request["status"] = json!("active");
        super::ops::save(tx, author, request_id, request)?;
    }
    Ok(out)
}

fn result_ids(report: &Value) -> Vec<String> {
    report["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["reference"].as_str()?.strip_prefix("Observation/").map(str::to_string))
        .collect()
}

fn verified_by(report: &Value) -> Option<String> {
    report["extension"].as_array()?.iter().find(|e| e["url"] == VERIFIED_BY_URL)?["valueString"].as_str().map(str::to_string)
}

/// Verify a report: by someone who entered none of its results.
pub fn verify(tx: &mut WriteTx<'_>, user: &str, report_id: &str) -> Result<super::ops::Outcome, ApiError> {
    let (mut report, _) = load(tx, "DiagnosticReport", report_id)?;
    let status = report["status"].as_str().unwrap_or_default().to_string();
    if !matches!(status.as_str(), "registered" | "partial" | "preliminary") {
        return Err(conflict(format!("a {status} report cannot be verified")));
    }
    if verified_by(&report).is_some() {
        return Err(conflict("the report is already verified"));
    }
    let results = result_ids(&report);
    if results.is_empty() {
        return Err(conflict("the report has no results to verify"));
    }
    for id in &results {
        let (_, entered_by) = load(tx, "Observation", id)?;
        if entered_by == user {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                IssueType::Forbidden,
                format!("{user} entered Observation/{id}; a second person must verify"),
            ));
        }
    }
    let ext = json!({"url": VERIFIED_BY_URL, "valueString": user});
    match report["extension"].as_array_mut() {
        Some(l) => l.push(ext),
        None => report["extension"] = Value::Array(vec![ext]),
    }
    super::ops::save(tx, user, report_id, report)
}

/// Release a verified report: it and its results become final.
pub fn release(tx: &mut WriteTx<'_>, user: &str, report_id: &str) -> Result<super::ops::Outcome, ApiError> {
    let (mut report, _) = load(tx, "DiagnosticReport", report_id)?;
    if verified_by(&report).is_none() {
        return Err(conflict("an unverified report cannot be released"));
    }
    let status = report["status"].as_str().unwrap_or_default().to_string();
    if super::visibility::RELEASED_REPORT.contains(&status.as_str()) {
        return Err(conflict("the report is already released"));
    }
    for id in result_ids(&report) {
        let (mut obs, _) = load(tx, "Observation", &id)?;
        if obs["status"] != "final" {
            obs["status"] = json!("final");
            super::ops::save(tx, user, &id, obs)?;
        }
    }
    report["status"] = json!("final");
    report["issued"] = json!(vaidya_fhir::datetime::format_instant(vaidya_store::now_ms()));
    super::ops::save(tx, user, report_id, report)
}
