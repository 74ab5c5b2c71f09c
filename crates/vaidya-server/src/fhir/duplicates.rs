//! Duplicate check and merge of Patients.
//!
//! `Patient/$duplicates` takes a Patient about to be registered and returns the likely
//! existing records: the same ABHA number, or the same mobile with a similar name (a name part
//! in common, or one starting with another; compared case- and accent-insensitively, Devanagari
//! included). Registration desks call it before a new UHID is issued.
//!
//! `Patient/$merge` (Parameters `source`, `target` as references) marks the source inactive
//! and `replaced-by` the target, links the target back (`replaces`), in one transaction; both
//! histories stay in the ledger.

use super::{Prepared, UHID_SYSTEM, prepare};
use crate::error::ApiError;
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use vaidya_domain::{AbhaNumber, Mobile};
use vaidya_fhir::index::normalize_string;
use vaidya_fhir::outcome::IssueType;
use vaidya_store::search::{Handling, parse_query};

/// Identifier system of ABHA numbers, as in the ABDM implementation guide's examples.
pub const ABHA_SYSTEM: &str = "https://healthid.ndhm.gov.in";

/// Candidates examined at most per rule (a mobile shared by a large family is common).
const MAX_CANDIDATES: usize = 200;

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, IssueType::Invalid, message)
}

/// The normalised name parts of a Patient (family, given, text split into words).
fn name_parts(patient: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for name in patient["name"].as_array().into_iter().flatten() {
        let mut words: Vec<&str> = vec![];
        if let Some(f) = name["family"].as_str() {
            words.push(f);
        }
        for g in name["given"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            words.push(g);
        }
        if let Some(t) = name["text"].as_str() {
            words.push(t);
        }
        for w in words {
            for part in normalize_string(w).split_whitespace() {
                if part.chars().count() >= 2 {
                    out.insert(part.to_string());
                }
            }
        }
    }
    out
}

/// Two names are similar if a part of one equals, or starts, a part of the other.
fn similar(a: &BTreeSet<String>, b: &BTreeSet<String>) -> bool {
    a.iter().any(|x| b.iter().any(|y| x == y || (x.chars().count() >= 3 && y.starts_with(x.as_str())) || (y.chars().count() >= 3 && x.starts_with(y.as_str()))))
}

fn mobiles(patient: &Value) -> Vec<Mobile> {
    patient["telecom"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["system"] == "phone" || t["system"] == "sms")
        .filter_map(|t| t["value"].as_str()?.parse::<Mobile>().ok())
        .collect()
}

fn abhas(patient: &Value) -> Result<Vec<AbhaNumber>, ApiError> {
    let mut out = vec![];
    for (i, id) in patient["identifier"].as_array().into_iter().flatten().enumerate() {
        if id["system"] == ABHA_SYSTEM {
            let v = id["value"].as_str().unwrap_or_default();
            out.push(v.parse::<AbhaNumber>().map_err(|e| bad(format!("Patient.identifier[{i}].value: '{v}' is not an ABHA number: {e}")))?);
        }
    }
    Ok(out)
}

/// Search with a few (name, value) pairs; returns the found Patients' JSON.
fn find(conn: &impl vaidya_store::Db, pairs: &[(&str, String)]) -> Result<Vec<Value>, ApiError> {
    let mut pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    pairs.push(("_count".into(), MAX_CANDIDATES.to_string()));
    let q = parse_query("Patient", &pairs, Handling::Strict)?;
    vaidya_store::search::run(conn, &q)?
        .matches
        .into_iter()
        .map(|m| serde_json::from_slice(&m.content).map_err(|e| ApiError::internal(e.to_string())))
        .collect()
}

/// The likely existing records for `patient`, each with the reason it was picked.
pub fn likely_duplicates(conn: &impl vaidya_store::Db, patient: &Value) -> Result<Vec<(Value, &'static str)>, ApiError> {
    if patient["resourceType"] != "Patient" {
        return Err(bad("$duplicates takes a Patient"));
    }
    let mut out: Vec<(Value, &'static str)> = vec![];
    let mut seen = BTreeSet::new();
    for abha in abhas(patient)? {
        for found in find(conn, &[("identifier", format!("{ABHA_SYSTEM}|{abha}"))])? {
            if seen.insert(found["id"].as_str().unwrap_or_default().to_string()) {
                out.push((found, "same ABHA number"));
            }
        }
    }
    let names = name_parts(patient);
    for mobile in mobiles(patient) {
        // Stored numbers may be written with or without +91.
        for found in find(conn, &[("phone", format!("{mobile},{}", mobile.national()))])? {
            let id = found["id"].as_str().unwrap_or_default().to_string();
            if !seen.contains(&id) && similar(&names, &name_parts(&found)) {
                seen.insert(id);
                out.push((found, "same mobile and a similar name"));
            }
        }
    }
    Ok(out)
}

/// The source and target Patients of a `$merge`, as ids.
pub fn parse_merge(params: &Value) -> Result<(String, String), ApiError> {
    let p = super::params::Params::new("$merge", params)?;
    let reference = |name: &str| super::params::required(p.reference(name, "Patient")?, name);
    let (source, target) = (reference("source")?, reference("target")?);
    if source == target {
        return Err(bad("source and target are the same Patient"));
    }
    Ok((source, target))
}

/// Inside the writer: link and retire. Both must exist and be active.
pub fn merge(tx: &mut vaidya_store::WriteTx<'_>, author: &str, source: &str, target: &str) -> Result<(), ApiError> {
    let load = |id: &str| -> Result<Value, ApiError> { Ok(super::load_live(tx.conn(), "Patient", id)?.0) };
    let (mut src, mut tgt) = (load(source)?, load(target)?);
    for (p, id) in [(&src, source), (&tgt, target)] {
        if p["active"] == false {
            return Err(ApiError::new(StatusCode::CONFLICT, IssueType::BusinessRule, format!("Patient/{id} is inactive (already merged?)")));
        }
    }
    src["active"] = json!(false);
    push_link(&mut src, target, "replaced-by");
    push_link(&mut tgt, source, "replaces");
    // The retired record keeps its UHID for lookups; the surviving one lists it too, so that
    // a search by either UHID finds the surviving record.
    if let Some(uhids) = src["identifier"].as_array() {
        let moved: Vec<Value> = uhids
            .iter()
            .filter(|i| i["system"] == UHID_SYSTEM)
            .map(|i| json!({"use": "old", "system": UHID_SYSTEM, "value": i["value"]}))
            .collect();
        let list = tgt["identifier"].as_array_mut();
        match list {
            Some(l) => l.extend(moved),
            None => tgt["identifier"] = Value::Array(moved),
        }
    }
    for (id, resource) in [(source, src), (target, tgt)] {
        let p: Prepared = prepare(resource)?;
        tx.put(author, "Patient", id, &p.body, &p.index)?;
        tx.dispose(p);
    }
    Ok(())
}

fn push_link(patient: &mut Value, other: &str, kind: &str) {
    let link = json!({"other": {"reference": format!("Patient/{other}")}, "type": kind});
    match patient["link"].as_array_mut() {
        Some(l) => l.push(link),
        None => patient["link"] = Value::Array(vec![link]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_similar_on_a_shared_or_prefixed_part() {
        let n = |v: Value| name_parts(&json!({"name": [v]}));
        assert!(similar(&n(json!({"family": "Kumar", "given": ["Ramesh"]})), &n(json!({"given": ["ramesh"]}))));
        assert!(similar(&n(json!({"text": "Ramesh K"})), &n(json!({"given": ["Rameshwar"]}))));
        assert!(similar(&n(json!({"text": "सीता देवी"})), &n(json!({"text": "सीता"}))));
        assert!(!similar(&n(json!({"given": ["Sita"]})), &n(json!({"given": ["Gita"]}))));
    }
}
