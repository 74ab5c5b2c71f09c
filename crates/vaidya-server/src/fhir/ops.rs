//! The write interactions as they run inside the writer's transaction, shared by the REST
//! handlers and by transaction/batch Bundles.

use super::{Prepared, billing, booking, charges, consultation, registration};
use serde_json::Value;
use std::collections::BTreeSet;
use crate::error::ApiError;
use axum::http::StatusCode;
use vaidya_fhir::outcome::IssueType;
use vaidya_store::WriteTx;
use vaidya_store::search::Query;

/// What a write interaction did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: StatusCode,
    pub resource_type: String,
    pub id: String,
    pub version: u64,
    pub time_ms: i64,
    /// The resource as stored now (none after a delete).
    pub content: Option<Vec<u8>>,
}

impl Outcome {
    pub fn location(&self, base: &str) -> String {
        format!("{base}/{}/{}/_history/{}", self.resource_type, self.id, self.version)
    }
}

/// Create, or with `if_none_exist`, create only if nothing matches (conditional create).
pub fn create(tx: &mut WriteTx<'_>, author: &str, mut p: Prepared, id: &str, if_none_exist: Option<&Query>) -> Result<Outcome, ApiError> {
    if let Some(q) = if_none_exist {
        let found = vaidya_store::search::run(tx.conn(), q)?;
        match found.total {
            0 => {}
            1 => {
                let m = &found.matches[0];
                let cur = vaidya_store::read::current(tx.conn(), &m.resource_type, &m.id)?
                    .ok_or_else(|| ApiError::internal("matched resource vanished"))?;
                return Ok(Outcome {
                    status: StatusCode::OK,
                    resource_type: m.resource_type.clone(),
                    id: m.id.clone(),
                    version: cur.version,
                    time_ms: cur.time_ms,
                    content: Some(cur.content),
                });
            }
            n => {
                return Err(ApiError::new(
                    StatusCode::PRECONDITION_FAILED,
                    IssueType::MultipleMatches,
                    format!("If-None-Exist matches {n} resources; the create was not done"),
                ));
            }
        }
    }
    let rtype = p.resource_type.clone();
    let slots = before(tx, author, &mut p, id, true)?;
    // `id` was just made by the server (UUIDv7): no need to look for an existing resource.
    let w = tx.create(author, &rtype, id, &p.body, &p.index)?;
    // Only an Invoice needs its parsed form afterwards; the rest is dropped off the writer thread.
    let kept = if rtype == "Invoice" { p.resource.take() } else { None };
    tx.dispose(p);
    after(tx, author, &rtype, id, kept, &w.content, w.version, &slots)?;
    Ok(Outcome { status: StatusCode::CREATED, resource_type: rtype, id: id.to_string(), version: w.version, time_ms: w.time_ms, content: Some(w.content) })
}

/// Update (or create with a client-chosen id), checking `If-Match` when given.
pub fn update(tx: &mut WriteTx<'_>, author: &str, mut p: Prepared, id: &str, if_match: Option<u64>) -> Result<Outcome, ApiError> {
    let rtype = p.resource_type.clone();
    let current = tx.current(&rtype, id)?;
    if let Some(expected) = if_match {
        let actual = current.as_ref().map(|c| c.version);
        if actual != Some(expected) {
            return Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                IssueType::Conflict,
                format!(
                    "If-Match expects version {expected} of {rtype}/{id}, the current version is {}",
                    actual.map_or("none".to_string(), |v| v.to_string())
                ),
            ));
        }
    }
    let existed = current.is_some_and(|c| !c.deleted);
    let slots = before(tx, author, &mut p, id, !existed)?;
    let w = tx.put(author, &rtype, id, &p.body, &p.index)?;
    // Only an Invoice needs its parsed form afterwards; the rest is dropped off the writer thread.
    let kept = if rtype == "Invoice" { p.resource.take() } else { None };
    tx.dispose(p);
    after(tx, author, &rtype, id, kept, &w.content, w.version, &slots)?;
    Ok(Outcome {
        status: if existed { StatusCode::OK } else { StatusCode::CREATED },
        resource_type: rtype,
        id: id.to_string(),
        version: w.version,
        time_ms: w.time_ms,
        content: Some(w.content),
    })
}

/// The hospital's rules that run before a resource is stored. Returns the Slots whose load
/// the write changes (an Appointment's).
fn before(tx: &mut WriteTx<'_>, author: &str, p: &mut Prepared, id: &str, creating: bool) -> Result<BTreeSet<String>, ApiError> {
    match p.resource_type.as_str() {
        "Patient" => registration::before_write(tx, p, creating)?,
        "Invoice" => billing::before_write(tx, p, id)?,
        "ChargeItem" => charges::before_write(tx, p, id)?,
        "Appointment" => return booking::before_write(tx, id, Some(p)),
        _ => {}
    }
    // Imported records are past care, checked where they came from; the lookup per resource
    // would slow a bulk load that must run at tens of thousands of resources a second.
    if let Some(r) = p.resource.as_ref().filter(|_| author != charges::IMPORT_AUTHOR) {
        consultation::check_same_patient(tx, &p.resource_type, r)?;
    }
    Ok(BTreeSet::new())
}

/// What follows a write in the same transaction: slots' status, charges for the service the
/// resource records, and an invoice's charges marked billed (or billable again).
#[allow(clippy::too_many_arguments)]
fn after(
    tx: &mut WriteTx<'_>,
    author: &str,
    rtype: &str,
    id: &str,
    kept: Option<Value>,
    content: &[u8],
    version: u64,
    slots: &BTreeSet<String>,
) -> Result<(), ApiError> {
    booking::refresh_slots(tx, author, slots)?;
    if rtype == "Invoice"
        && let Some(invoice) = kept {
            billing::after_write(tx, author, id, &invoice)?;
        }
    charges::after_write(tx, author, rtype, id, content, version)
}

/// Store `resource` as the next version of `id` (or its first) through the ordinary update
/// path, hospital rules included; for operations that change a resource they loaded.
pub fn save(tx: &mut WriteTx<'_>, author: &str, id: &str, resource: serde_json::Value) -> Result<Outcome, ApiError> {
    update(tx, author, super::prepare(resource)?, id, None)
}

/// Delete; deleting what is absent or already deleted succeeds and changes nothing.
pub fn delete(tx: &mut WriteTx<'_>, author: &str, rtype: &str, id: &str) -> Result<Outcome, ApiError> {
    let slots = if rtype == "Appointment" { booking::before_write(tx, id, None)? } else { Default::default() };
    let w = tx.delete(author, rtype, id)?;
    booking::refresh_slots(tx, author, &slots)?;
    if w.is_some() {
        charges::after_delete(tx, author, rtype, id)?;
    }
    Ok(Outcome {
        status: StatusCode::NO_CONTENT,
        resource_type: rtype.to_string(),
        id: id.to_string(),
        version: w.as_ref().map_or(0, |w| w.version),
        time_ms: w.as_ref().map_or(0, |w| w.time_ms),
        content: None,
    })
}
