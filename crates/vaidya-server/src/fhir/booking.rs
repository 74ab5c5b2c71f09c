//! OPD booking through plain FHIR: an Appointment whose status holds a place (booked, arrived,
//! checked-in, fulfilled) takes one place in every Slot it names. It runs inside the writer's
//! job, so two bookings can never both take the last place: the count and the write are one
//! transaction, and transactions are serial.
//!
//! A Slot's capacity is the extension [`SLOT_CAPACITY_URL`] (valueUnsignedInt, default 1).
//! The Slot's status follows its bookings: `busy` when full, `free` otherwise.

use super::Prepared;
use crate::error::ApiError;
use axum::http::StatusCode;
use serde_json::Value;
use std::collections::BTreeSet;
use vaidya_fhir::index::IndexValue;
use vaidya_fhir::outcome::IssueType;
use vaidya_fhir::search_params::SearchParam;
use vaidya_domain::booking::{BookingError, SlotLoad, SlotStatus};
use vaidya_store::WriteTx;
use vaidya_store::search::{Handling, parse_query};

pub const SLOT_CAPACITY_URL: &str = "https://vaidya.dev/fhir/StructureDefinition/slot-capacity";

/// Appointment statuses that hold a place in their slots.
const HOLDING: [&str; 4] = ["booked", "arrived", "checked-in", "fulfilled"];

/// What one version of an Appointment holds: its slots, if its status holds places.
#[derive(Debug, Default, Clone, PartialEq)]
struct Holds {
    slots: BTreeSet<String>,
}

fn holds_from_index(index: &[(&'static SearchParam, IndexValue)]) -> Holds {
    let holding = index.iter().any(|(p, v)| {
        p.code == "status" && matches!(v, IndexValue::Token { code: Some(c), .. } if HOLDING.contains(&c.as_str()))
    });
    if !holding {
        return Holds::default();
    }
    let slots = index
        .iter()
        .filter(|(p, _)| p.code == "slot")
        .filter_map(|(_, v)| match v {
            IndexValue::Reference { target_type: Some(t), target_id: Some(id), .. } if t == "Slot" => Some(id.clone()),
            _ => None,
        })
        .collect();
    Holds { slots }
}

/// What the stored (current) version of an appointment holds.
fn current_holds(tx: &WriteTx<'_>, id: &str) -> Result<Holds, ApiError> {
    let Some(stored) = vaidya_store::read::current(tx.conn(), "Appointment", id)? else { return Ok(Holds::default()) };
    if stored.deleted {
        return Ok(Holds::default());
    }
    let v: Value = serde_json::from_slice(&stored.content).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(holds_from_index(&vaidya_fhir::index::extract_all(&v)))
}

/// A Slot as booking sees it.
struct SlotView {
    resource: Value,
    capacity: u16,
    status: String,
    start_ms: Option<i64>,
}

impl SlotView {
    /// The domain's view of this slot's places, given how many are taken. A slot holding
    /// more than its capacity (capacity lowered after bookings) counts as full.
    fn load(&self, taken: u64) -> Result<SlotLoad, BookingError> {
        let taken = u16::try_from(taken).unwrap_or(u16::MAX);
        SlotLoad::with_booked(self.capacity, taken.min(self.capacity))
    }
}

fn load_slot(tx: &WriteTx<'_>, id: &str) -> Result<Option<SlotView>, ApiError> {
    let Some(stored) = vaidya_store::read::current(tx.conn(), "Slot", id)? else { return Ok(None) };
    if stored.deleted {
        return Ok(None);
    }
    let resource: Value = serde_json::from_slice(&stored.content).map_err(|e| ApiError::internal(e.to_string()))?;
    let capacity = resource["extension"]
        .as_array()
        .and_then(|exts| exts.iter().find(|e| e["url"] == SLOT_CAPACITY_URL))
        .and_then(|e| e["valueUnsignedInt"].as_u64())
        .map_or(1, |c| u16::try_from(c).unwrap_or(u16::MAX));
    let status = resource["status"].as_str().unwrap_or_default().to_string();
    let start_ms = resource["start"].as_str().and_then(vaidya_fhir::datetime::parse_date_range).map(|(lo, _)| lo);
    Ok(Some(SlotView { resource, capacity, status, start_ms }))
}

/// Appointments currently holding a place in a slot (as committed so far in this transaction).
fn holders(tx: &WriteTx<'_>, slot_id: &str) -> Result<u64, ApiError> {
    let pairs = vec![
        ("slot".to_string(), format!("Slot/{slot_id}")),
        ("status".to_string(), HOLDING.join(",")),
        ("_summary".to_string(), "count".to_string()),
    ];
    let q = parse_query("Appointment", &pairs, Handling::Strict)?;
    Ok(vaidya_store::search::run(tx.conn(), &q)?.total)
}

fn refuse(status: StatusCode, code: IssueType, message: String) -> ApiError {
    ApiError::new(status, code, message)
}

/// Check that the new version of appointment `id` may take the places it asks for, before it
/// is written. Returns the slots whose status must be refreshed after the write.
pub fn before_write(tx: &WriteTx<'_>, id: &str, new: Option<&Prepared>) -> Result<BTreeSet<String>, ApiError> {
    let old = current_holds(tx, id)?;
    let new = new.map(|p| holds_from_index(&p.index)).unwrap_or_default();
    let now = vaidya_store::now_ms();
    for slot_id in new.slots.difference(&old.slots) {
        let Some(slot) = load_slot(tx, slot_id)? else {
            return Err(refuse(StatusCode::UNPROCESSABLE_ENTITY, IssueType::NotFound, format!("Slot/{slot_id} does not exist")));
        };
        if slot.status != "free" && slot.status != "busy" {
            return Err(refuse(
                StatusCode::CONFLICT,
                IssueType::BusinessRule,
                format!("Slot/{slot_id} is {} and cannot be booked", slot.status),
            ));
        }
        let taken = holders(tx, slot_id)?;
        let booked = slot.load(taken).and_then(|mut load| match slot.start_ms {
            Some(start) => load.book_at(start, now),
            None => load.book(),
        });
        match booked {
            Ok(()) => {}
            Err(BookingError::InThePast) => {
                return Err(refuse(StatusCode::UNPROCESSABLE_ENTITY, IssueType::BusinessRule, format!("Slot/{slot_id} is in the past")));
            }
            Err(e) => {
                return Err(refuse(
                    StatusCode::CONFLICT,
                    IssueType::Conflict,
                    format!("Slot/{slot_id} is full ({taken} of {} places taken): {e}", slot.capacity),
                ));
            }
        }
    }
    Ok(old.slots.union(&new.slots).cloned().collect())
}

/// After the appointment's write: set each affected slot `busy` when full, `free` otherwise.
pub fn refresh_slots(tx: &mut WriteTx<'_>, author: &str, slots: &BTreeSet<String>) -> Result<(), ApiError> {
    for slot_id in slots {
        let Some(mut slot) = load_slot(tx, slot_id)? else { continue };
        if slot.status != "free" && slot.status != "busy" {
            continue; // blocked or entered-in-error slots keep what staff set
        }
        let wanted = match slot.load(holders(tx, slot_id)?).map(|l| l.status()) {
            Ok(SlotStatus::Free) => "free",
            Ok(SlotStatus::Busy) | Err(_) => "busy",
        };
        if slot.status != wanted {
            slot.resource["status"] = Value::String(wanted.to_string());
            let index = vaidya_fhir::index::extract_all(&slot.resource);
            tx.put(author, "Slot", slot_id, &vaidya_store::Body::from_resource(&slot.resource), &index)?;
        }
    }
    Ok(())
}

/// What a patient may write from the portal: a booking of their own, nothing more. A patient's
/// new Appointment must be `booked` into a slot, without queue tokens or states (those are the
/// desk's), naming no other patient. (The policies decide whose it may be; this decides what it
/// may say.)
pub fn check_patient_booking(role: vaidya_policy::Role, rtype: &str, resource: &Value) -> Result<(), ApiError> {
    if role != vaidya_policy::Role::Patient || rtype != "Appointment" {
        return Ok(());
    }
    let refuse = |why: &str| Err(ApiError::new(StatusCode::FORBIDDEN, IssueType::Forbidden, format!("a patient's booking {why}")));
    if resource["status"] != "booked" {
        return refuse("must have status 'booked'");
    }
    if resource["slot"].as_array().is_none_or(|s| s.is_empty()) {
        return refuse("must name a slot");
    }
    if resource.get("identifier").is_some() || resource.get("extension").is_some() || resource.get("appointmentType").is_some() {
        return refuse("may not carry identifiers, extensions or an appointment type (queue tokens are given at check-in)");
    }
    Ok(())
}

/// `Appointment/{id}/$cancel`: a booking that has not begun is cancelled and its place in the
/// slot freed. Once the patient has checked in (a queue state), the desk's queue decides.
pub fn cancel(tx: &mut WriteTx<'_>, author: &str, id: &str, reason: Option<String>) -> Result<super::ops::Outcome, ApiError> {
    let (mut appt, _) = super::load_live(tx.conn(), "Appointment", id)?;
    if appt["status"] != "booked" {
        return Err(ApiError::new(StatusCode::CONFLICT, IssueType::BusinessRule, format!("a {} appointment cannot be cancelled", appt["status"].as_str().unwrap_or("?"))));
    }
    if appt["extension"].as_array().into_iter().flatten().any(|e| e["url"] == super::queue::QUEUE_STATE_URL) {
        return Err(ApiError::new(StatusCode::CONFLICT, IssueType::BusinessRule, "the patient has checked in; the queue decides now"));
    }
    appt["status"] = serde_json::json!("cancelled");
    if let Some(r) = reason {
        appt["cancelationReason"] = serde_json::json!({"text": r});
    }
    super::ops::save(tx, author, id, appt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_holding_statuses_hold_their_slots() {
        let appt = |status: &str| {
            json!({"resourceType": "Appointment", "status": status, "slot": [{"reference": "Slot/s1"}, {"reference": "Slot/s2"}],
                   "participant": [{"actor": {"reference": "Patient/p"}, "status": "accepted"}]})
        };
        let booked = holds_from_index(&vaidya_fhir::index::extract_all(&appt("booked")));
        assert_eq!(booked.slots.into_iter().collect::<Vec<_>>(), vec!["s1", "s2"]);
        for s in ["cancelled", "noshow", "proposed", "entered-in-error"] {
            assert!(holds_from_index(&vaidya_fhir::index::extract_all(&appt(s))).slots.is_empty(), "{s}");
        }
    }
}
