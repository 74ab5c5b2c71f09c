//! Registration: every Patient's UHIDs are checked and written in their canonical form
//! (`NNNN-NNNN-NNNN`), and a Patient created without one gets the next UHID of this process's
//! issuer (the core's, or a department node's in downtime: `crate::numbering`), inside the
//! writer's transaction so that two registrations never get the same one.

use super::{Prepared, UHID_SYSTEM};
use crate::error::ApiError;
use serde_json::Value;
use vaidya_domain::Uhid;
use vaidya_domain::uhid::SERIAL_LIMIT;
use vaidya_fhir::outcome::{Issue, IssueType};
use vaidya_store::{Body, WriteTx};

/// Check and normalise the UHIDs of a Patient; `true` if it carries at least one.
pub fn normalise_uhids(patient: &mut Value) -> Result<bool, ApiError> {
    let mut found = false;
    let Some(identifiers) = patient.get_mut("identifier").and_then(Value::as_array_mut) else { return Ok(false) };
    for (i, identifier) in identifiers.iter_mut().enumerate() {
        if identifier.get("system").and_then(Value::as_str) != Some(UHID_SYSTEM) {
            continue;
        }
        let Some(value) = identifier.get("value").and_then(Value::as_str) else { continue };
        let uhid: Uhid = value.parse().map_err(|e| {
            ApiError::invalid_resource(vec![
                Issue::error(IssueType::Value, format!("'{value}' is not a valid UHID: {e}")).at(format!("Patient.identifier[{i}].value")),
            ])
        })?;
        identifier["value"] = Value::String(uhid.to_string());
        found = true;
    }
    Ok(found)
}

/// Write a Patient's Indian mobile numbers in one spelling (`+91XXXXXXXXXX`), however they
/// were typed, so that a search by mobile finds them; other phone numbers stay as given.
pub fn normalise_mobiles(patient: &mut Value) {
    let Some(telecoms) = patient.get_mut("telecom").and_then(Value::as_array_mut) else { return };
    for t in telecoms.iter_mut().filter(|t| t["system"] == "phone") {
        if let Some(m) = t["value"].as_str().and_then(|v| v.parse::<vaidya_domain::Mobile>().ok()) {
            t["value"] = Value::String(m.to_string());
        }
    }
}

/// A `phone` search value as typed at a counter (`98100 00002`, `09810000002`) in the stored
/// spelling; anything that is not an Indian mobile is searched as given.
pub fn normalise_phone_search(value: &str) -> String {
    value
        .split(',')
        .map(|v| v.parse::<vaidya_domain::Mobile>().map_or_else(|_| v.to_string(), |m| m.to_string()))
        .collect::<Vec<_>>()
        .join(",")
}

/// Name of the counter holding the last UHID serial this process's issuer gave out.
fn uhid_sequence() -> String {
    match crate::numbering::issuer() {
        0 => "uhid-central".to_string(),
        n => format!("{}uhid", crate::numbering::node_prefix(n)),
    }
}

/// The last serial this issuer gave out: the counter, or on first use the greatest of its
/// UHIDs in the search index (a database written before the counter existed; a node's first
/// downtime of the day after its counter came back from the core).
fn last_serial(tx: &WriteTx<'_>) -> Result<u64, ApiError> {
    if let Some(v) = tx.sequence(&uhid_sequence())? {
        return Ok(v);
    }
    let issuer = crate::numbering::issuer();
    let last = vaidya_store::search::exec::max_token_code(
        tx.conn(),
        "Patient",
        "identifier",
        UHID_SYSTEM,
        &Uhid::new(issuer, 0).expect("serial 0 is valid").to_string(),
        &Uhid::new(issuer, SERIAL_LIMIT - 1).expect("the last serial is valid").to_string(),
    )?;
    match last {
        None => Ok(0),
        Some(code) => Ok(code.parse::<Uhid>().map_err(|e| ApiError::internal(format!("stored UHID '{code}': {e}")))?.serial()),
    }
}

/// Before a Patient is written: give it the next central UHID if it is being created without
/// one, and make sure the counter never falls behind a central UHID it carries (one entered by
/// hand or migrated), so that no UHID is ever issued twice.
pub fn before_write(tx: &mut WriteTx<'_>, p: &mut Prepared, creating: bool) -> Result<(), ApiError> {
    let mut last = last_serial(tx)?;
    let carried = own_serials(&p.index);
    if let Some(max) = carried.iter().max()
        && *max > last {
            last = *max;
            tx.set_sequence(&uhid_sequence(), last)?;
        }
    let Some(resource) = p.resource.as_mut().filter(|_| creating && carried.is_empty()) else { return Ok(()) };
    if has_uhid(resource) {
        return Ok(()); // a UHID of another issuer (a department node's downtime range)
    }
    let uhid = Uhid::new(crate::numbering::issuer(), last + 1).map_err(|e| ApiError::internal(format!("no UHID left to issue: {e}")))?;
    tx.set_sequence(&uhid_sequence(), last + 1)?;
    let identifier = serde_json::json!({
        "use": "official",
        "type": {"text": "UHID"},
        "system": UHID_SYSTEM,
        "value": uhid.to_string()
    });
    // Appended, so that the identifiers the client sent keep their places.
    match resource.get_mut("identifier").and_then(Value::as_array_mut) {
        Some(list) => list.push(identifier),
        None => {
            resource["identifier"] = Value::Array(vec![identifier]);
        }
    }
    p.body = Body::from_resource(resource);
    p.index = vaidya_fhir::index::extract_all(resource);
    Ok(())
}

fn has_uhid(resource: &Value) -> bool {
    resource["identifier"].as_array().is_some_and(|ids| ids.iter().any(|i| i["system"] == UHID_SYSTEM))
}

/// Serials of this issuer's UHIDs among a Patient's index values.
fn own_serials(index: &[(&'static vaidya_fhir::search_params::SearchParam, vaidya_fhir::index::IndexValue)]) -> Vec<u64> {
    index
        .iter()
        .filter(|(p, _)| p.code == "identifier")
        .filter_map(|(_, v)| match v {
            vaidya_fhir::index::IndexValue::Token { system: Some(s), code: Some(c), .. } if s == UHID_SYSTEM => c.parse::<Uhid>().ok(),
            _ => None,
        })
        .filter(|u| u.issuer() == crate::numbering::issuer())
        .map(|u| u.serial())
        .collect()
}

/// The Patient id of the patient with `uhid` (any written form): an error naming the problem if
/// it is not a UHID, nobody has it, or (after a bad import) several do.
pub fn patient_for_uhid(conn: &impl vaidya_store::Db, uhid: &str) -> Result<String, String> {
    let normal = uhid.parse::<vaidya_domain::Uhid>().map_err(|e| format!("'{uhid}' is not a valid UHID: {e}"))?.to_string();
    let pairs = vec![("identifier".to_string(), format!("{UHID_SYSTEM}|{normal}"))];
    let q = vaidya_store::search::parse_query("Patient", &pairs, vaidya_store::search::Handling::Strict).map_err(|e| e.to_string())?;
    let found = vaidya_store::search::run(conn, &q).map_err(|e| e.to_string())?;
    match found.matches.as_slice() {
        [] => Err(format!("no patient has UHID {normal}")),
        [one] => Ok(one.id.clone()),
        many => Err(format!(
            "{} patients have UHID {normal} ({})",
            many.len(),
            many.iter().map(|f| f.id.as_str()).collect::<Vec<_>>().join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mobiles_have_one_spelling() {
        let mut p = json!({"resourceType": "Patient", "telecom": [{"system": "phone", "value": "098100 00002"},
            {"system": "phone", "value": "+91-11-26588500"}, {"system": "email", "value": "9810000002"}]});
        normalise_mobiles(&mut p);
        assert_eq!(p["telecom"][0]["value"], "+919810000002");
        assert_eq!(p["telecom"][1]["value"], "+91-11-26588500");
        assert_eq!(p["telecom"][2]["value"], "9810000002");
        assert_eq!(normalise_phone_search("9810000002,+91-11-26588500"), "+919810000002,+91-11-26588500");
    }

    #[test]
    fn uhids_are_normalised_and_mistyped_ones_refused() {
        let mut p = json!({"resourceType": "Patient", "identifier": [
            {"system": "http://other", "value": "x"}, {"system": UHID_SYSTEM, "value": "0000 0000 0013"}]});
        assert!(normalise_uhids(&mut p).unwrap());
        assert_eq!(p["identifier"][1]["value"], "0000-0000-0013");
        let mut typo = json!({"resourceType": "Patient", "identifier": [{"system": UHID_SYSTEM, "value": "0000-0000-0031"}]});
        let err = normalise_uhids(&mut typo).unwrap_err();
        assert_eq!(err.issues[0].expression.as_deref(), Some("Patient.identifier[0].value"));
        assert!(!normalise_uhids(&mut json!({"resourceType": "Patient"})).unwrap());
    }
}
