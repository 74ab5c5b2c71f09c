//! The FHIR R4 REST API at `/fhir`: interactions (this module and [`bundle`]), their HTTP
//! surface ([`rest`]), and the CapabilityStatement ([`capability`]).

pub mod audit_trail;
pub mod authorize;
pub mod billing;
pub mod booking;
pub mod break_glass;
pub mod cash;
pub mod charges;
pub mod consultation;
pub mod bundle;
pub mod duplicates;
pub mod export;
pub mod lab;
pub mod operations;
pub mod ops;
pub mod params;
pub mod protected;
pub mod queue;
pub mod registration;
pub mod capability;
pub mod rest;
pub mod visibility;
pub mod wire;

use crate::error::ApiError;
use axum::http::StatusCode;
use serde_json::Value;
use vaidya_fhir::index::IndexValue;
use vaidya_fhir::model::Model;
use vaidya_fhir::outcome::IssueType;
use vaidya_fhir::search_params::SearchParam;
use vaidya_store::Body;

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// Identifier system of the hospital's UHID (see `vaidya_domain::uhid` for the format).
pub const UHID_SYSTEM: &str = "https://vaidya.dev/fhir/sid/uhid";

/// A resource checked, serialised and indexed outside the writer, ready to be stored.
pub struct Prepared {
    pub resource_type: String,
    pub body: Body,
    pub index: Vec<(&'static SearchParam, IndexValue)>,
    /// The parsed resource, kept only where it may still change inside the writer (references
    /// to a conditional create that found an existing resource).
    pub resource: Option<Value>,
}

impl Prepared {
    /// Rewrite references in the kept resource and recompute what depends on them.
    pub fn redirect_references(&mut self, map: &dyn Fn(&str) -> Option<String>) {
        if let Some(resource) = &mut self.resource {
            let mut unresolved = vec![];
            rewrite_references(resource, map, &mut unresolved);
            self.body = Body::from_resource(resource);
            self.index = vaidya_fhir::index::extract_all(resource);
        }
    }
}

/// Validate a resource, serialise it and compute its search index values. Costly work happens
/// here, on the caller's thread, so that the single writer only writes.
pub fn prepare(resource: Value) -> Result<Prepared, ApiError> {
    prepare_with(resource, false)
}

pub fn prepare_with(mut resource: Value, keep_resource: bool) -> Result<Prepared, ApiError> {
    vaidya_fhir::validate::validate_resource(&resource).map_err(ApiError::invalid_resource)?;
    // A Patient without a UHID is kept parsed: the writer gives it one if it is a create.
    if resource["resourceType"] == "ChargeItemDefinition" && resource.get("useContext").is_some() {
        charges::check_tariff(&resource)?; // a broken tariff entry would stop every charge it prices
    }
    if resource["resourceType"] == "Patient" {
        registration::normalise_mobiles(&mut resource);
    }
    let keep_resource = keep_resource
        || resource["resourceType"] == "Invoice"
        || resource["resourceType"] == "ChargeItem"
        || resource.get("encounter").is_some()
        || (resource["resourceType"] == "Patient" && !registration::normalise_uhids(&mut resource)?);
    let resource_type = resource["resourceType"].as_str().expect("validated resources have a resourceType").to_string();
    let index = vaidya_fhir::index::extract_all(&resource);
    let body = Body::from_resource(&resource);
    Ok(Prepared { resource_type, body, index, resource: keep_resource.then_some(resource) })
}

/// Prepare a resource the server itself built from checked parts (a charge, an encounter):
/// validation is skipped where it costs the single writer time on every booking; debug builds
/// (and so the tests) still validate it.
pub fn prepare_trusted(resource: Value) -> Prepared {
    debug_assert!(
        vaidya_fhir::validate::validate_resource(&resource).is_ok(),
        "a server-built resource is invalid: {:?}",
        vaidya_fhir::validate::validate_resource(&resource).err()
    );
    let resource_type = resource["resourceType"].as_str().expect("server-built resources have a resourceType").to_string();
    let index = vaidya_fhir::index::extract_all(&resource);
    let body = Body::from_resource(&resource);
    Prepared { resource_type, body, index, resource: Some(resource) }
}

/// The live (not deleted) current version of a resource inside a write job, parsed, with its
/// stored form; 422 if there is none, since operations name resources that must exist.
pub fn load_live(conn: &impl vaidya_store::Db, rtype: &str, id: &str) -> Result<(Value, vaidya_store::Stored), ApiError> {
    let stored = vaidya_store::read::current(conn, rtype, id)?
        .filter(|s| !s.deleted)
        .ok_or_else(|| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, IssueType::NotFound, format!("{rtype}/{id} is not known")))?;
    let value = serde_json::from_slice(&stored.content).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((value, stored))
}

/// Resources of `rtype` matching search parameters, as (id, parsed resource); for rules that
/// look things up inside a write job.
pub fn find(conn: &impl vaidya_store::Db, rtype: &str, pairs: &[(&str, String)]) -> Result<Vec<(String, Value)>, ApiError> {
    // The matches are all that is wanted: no count of them (`_total=none`).
    let pairs: Vec<(String, String)> =
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).chain(std::iter::once(("_total".to_string(), "none".to_string()))).collect();
    let q = vaidya_store::search::parse_query(rtype, &pairs, vaidya_store::search::Handling::Strict)?;
    vaidya_store::search::run(conn, &q)?
        .matches
        .into_iter()
        .map(|m| Ok((m.id, serde_json::from_slice(&m.content).map_err(|e| ApiError::internal(e.to_string()))?)))
        .collect()
}

/// A new server-assigned id: a UUIDv7 (RFC 9562), which starts with the creation time. New
/// resources then land at the end of every id-keyed index instead of at random places in it,
/// which keeps writes fast as the database grows to tens of millions of resources. (It tells
/// no more than `meta.lastUpdated` of version 1 already does.)
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// FHIR ids: 1 to 64 of `A-Z a-z 0-9 - .`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

pub fn check_type(rtype: &str) -> Result<(), ApiError> {
    if Model::r4().is_resource_type(rtype) {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, IssueType::NotSupported, format!("unknown resource type '{rtype}'")))
    }
}

pub fn check_id(id: &str) -> Result<(), ApiError> {
    if is_valid_id(id) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!("'{id}' is not a valid FHIR id (1-64 of A-Z a-z 0-9 - .)")))
    }
}

/// Parse a request body as one JSON resource.
pub fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, IssueType::Required, "the request has no body"));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, IssueType::Structure, format!("the body is not valid JSON: {e}"))
    })
}

/// Rewrite every `reference` in `value` through `map` (used for `urn:uuid:` references inside
/// a transaction). Returns the references that looked like `urn:uuid:` but were not mapped.
pub fn rewrite_references(value: &mut Value, map: &dyn Fn(&str) -> Option<String>, unresolved: &mut Vec<String>) {
    match value {
        Value::Object(obj) => {
            for (k, v) in obj.iter_mut() {
                if k == "reference"
                    && let Value::String(s) = v {
                        if let Some(new) = map(s) {
                            *s = new;
                        } else if s.starts_with("urn:uuid:") || s.starts_with("urn:oid:") {
                            unresolved.push(s.clone());
                        }
                        continue;
                    }
                rewrite_references(v, map, unresolved);
            }
        }
        Value::Array(items) => {
            for v in items {
                rewrite_references(v, map, unresolved);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(is_valid_id("a-b.C9"));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("a/b"));
        assert!(!is_valid_id(&"x".repeat(65)));
        assert!(is_valid_id(&new_id()));
    }

    #[test]
    fn rewrites_nested_references_and_reports_unresolved() {
        let mut v = serde_json::json!({"subject": {"reference": "urn:uuid:1"}, "x": [{"reference": "urn:uuid:2"}], "reference": 3});
        let mut unresolved = vec![];
        rewrite_references(&mut v, &|s| (s == "urn:uuid:1").then(|| "Patient/a".to_string()), &mut unresolved);
        assert_eq!(v["subject"]["reference"], "Patient/a");
        assert_eq!(unresolved, vec!["urn:uuid:2"]);
    }
}
