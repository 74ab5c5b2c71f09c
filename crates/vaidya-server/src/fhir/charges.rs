//! Charges over FHIR: the tariff (ChargeItemDefinition), charges (ChargeItem) made
//! automatically when a service is given, and the rules every ChargeItem write goes through.
//!
//! **The tariff.** Each ChargeItemDefinition (status `active`) prices one service: its base
//! `priceComponent` in INR, and in `useContext` (code `focus`) the concepts it prices: a test's
//! LOINC code, or one of the hospital's billable events
//! (`https://vaidya.dev/fhir/CodeSystem/billable-event`: `opd-registration`,
//! `opd-consultation`). So `ChargeItemDefinition?context=http://loinc.org|58410-2` finds the
//! price of a CBC.
//!
//! **Automatic charges.** Inside the same transaction as the service itself:
//! registering a Patient charges `opd-registration`; an Appointment that is booked (or a
//! walk-in) charges `opd-consultation`; a ServiceRequest (an order) charges the tariff entry of
//! its code. Each charge names its source in an identifier
//! (`https://vaidya.dev/fhir/sid/charge-source|Appointment/{id}`), so a source is charged once
//! however often it is updated. A cancelled appointment or revoked order aborts its charge if
//! it is not yet billed. A service without a tariff entry is not charged. Bulk imports
//! (migrations of past data) make no charges.
//!
//! **Every ChargeItem write** (automatic, or manual by billing staff) fixes the unit price: the
//! tariff's price via `definitionCanonical`, or a price set by hand (`priceOverride` with
//! `overrideReason`). The price is recorded in the `charge-unit-price` extension and kept when
//! the tariff later changes. Status moves by the domain's [`ChargeStatus`] rules.

use super::billing::{money, paise};
use super::{Prepared, find, prepare_trusted};
use crate::error::ApiError;
use axum::http::StatusCode;
use serde_json::{Value, json};
use vaidya_domain::charges::{ChargePrice, ChargeStatus, PriceSource};
use vaidya_domain::Paise;
use vaidya_fhir::outcome::{Issue, IssueType};
use vaidya_store::{Body, WriteTx};

pub const EVENT_SYSTEM: &str = "https://vaidya.dev/fhir/CodeSystem/billable-event";
pub const EVENT_REGISTRATION: &str = "opd-registration";
pub const EVENT_CONSULTATION: &str = "opd-consultation";
pub const SOURCE_SYSTEM: &str = "https://vaidya.dev/fhir/sid/charge-source";
pub const UNIT_PRICE_URL: &str = "https://vaidya.dev/fhir/StructureDefinition/charge-unit-price";
pub const BILLED_ON_URL: &str = "https://vaidya.dev/fhir/StructureDefinition/charge-billed-on";

/// The author of bulk imports, which make no automatic charges.
pub const IMPORT_AUTHOR: &str = "import";

fn invalid(at: &str, message: impl Into<String>) -> ApiError {
    ApiError { status: StatusCode::UNPROCESSABLE_ENTITY, issues: vec![Issue::error(IssueType::Invalid, message).at(at.to_string())], hidden_refusal: false }
}

/// One priced service of the tariff.
#[derive(Debug, Clone)]
pub struct TariffEntry {
    pub url: String,
    pub code: Value,
    pub price: Paise,
}

fn tariff_entry(def: &Value) -> Result<TariffEntry, ApiError> {
    let url = def["url"].as_str().unwrap_or_default().to_string();
    let base = def["propertyGroup"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["priceComponent"].as_array().into_iter().flatten())
        .find(|pc| pc["type"] == "base")
        .ok_or_else(|| invalid("ChargeItemDefinition.propertyGroup", format!("tariff entry {url} has no base price")))?;
    Ok(TariffEntry { url, code: def["code"].clone(), price: paise(&base["amount"], "ChargeItemDefinition.propertyGroup.priceComponent.amount")? })
}

/// Check a tariff entry before it is stored: one base price in INR, not negative.
pub fn check_tariff(def: &Value) -> Result<(), ApiError> {
    let e = tariff_entry(def)?;
    if e.price.is_negative() {
        return Err(invalid("ChargeItemDefinition.propertyGroup.priceComponent.amount", "a price cannot be negative"));
    }
    Ok(())
}

/// The active tariff entry pricing `system|code`, if any.
pub fn tariff_for(conn: &impl vaidya_store::Db, system: &str, code: &str) -> Result<Option<TariffEntry>, ApiError> {
    let found = find(conn, "ChargeItemDefinition", &[("context", format!("{system}|{code}")), ("status", "active".into()), ("_count", "1".into())])?;
    found.first().map(|(_, def)| tariff_entry(def)).transpose()
}

fn tariff_by_url(conn: &impl vaidya_store::Db, url: &str) -> Result<Option<TariffEntry>, ApiError> {
    let found = find(conn, "ChargeItemDefinition", &[("url", url.to_string()), ("_count", "1".into())])?;
    found.first().map(|(_, def)| tariff_entry(def)).transpose()
}

fn extension<'a>(resource: &'a Value, url: &str) -> Option<&'a Value> {
    resource["extension"].as_array()?.iter().find(|e| e["url"] == url)
}

fn set_extension(resource: &mut Value, ext: Value) {
    let url = ext["url"].clone();
    match resource["extension"].as_array_mut() {
        Some(list) => {
            list.retain(|e| e["url"] != url);
            list.push(ext);
        }
        None => resource["extension"] = Value::Array(vec![ext]),
    }
}

fn remove_extension(resource: &mut Value, url: &str) {
    if let Some(list) = resource["extension"].as_array_mut() {
        list.retain(|e| e["url"] != url);
        if list.is_empty() {
            resource.as_object_mut().expect("a resource is an object").remove("extension");
        }
    }
}

/// A charge's unit price as recorded on it.
pub fn unit_price(charge: &Value) -> Result<Paise, ApiError> {
    let ext = extension(charge, UNIT_PRICE_URL).ok_or_else(|| ApiError::internal("a stored charge has no unit price"))?;
    paise(&ext["valueMoney"], "ChargeItem.extension(charge-unit-price)")
}

pub fn quantity(charge: &Value) -> Result<u32, ApiError> {
    match charge.get("quantity") {
        None => Ok(1),
        Some(q) => q["value"]
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| invalid("ChargeItem.quantity.value", "the quantity must be a whole number")),
    }
}

pub fn status(charge: &Value) -> Result<ChargeStatus, ApiError> {
    let s = charge["status"].as_str().unwrap_or_default();
    s.parse().map_err(|e: vaidya_domain::charges::ChargeError| invalid("ChargeItem.status", e.to_string()))
}

/// The invoice a billed charge is on.
pub fn billed_on(charge: &Value) -> Option<&str> {
    extension(charge, BILLED_ON_URL)?["valueReference"]["reference"].as_str()?.strip_prefix("Invoice/")
}

/// Before a ChargeItem is written: a patient, a status the domain allows from the current
/// one, and a unit price fixed from the tariff or by hand.
pub fn before_write(tx: &WriteTx<'_>, p: &mut Prepared, id: &str) -> Result<(), ApiError> {
    let Some(charge) = p.resource.as_mut() else { return Ok(()) };
    if !charge["subject"]["reference"].as_str().is_some_and(|r| r.starts_with("Patient/")) {
        return Err(invalid("ChargeItem.subject", "a charge is for a Patient"));
    }
    let to = status(charge)?;
    let current = vaidya_store::read::current(tx.conn(), "ChargeItem", id)?
        .filter(|s| !s.deleted)
        .map(|s| serde_json::from_slice::<Value>(&s.content))
        .transpose()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let refused = |e: vaidya_domain::charges::ChargeError| ApiError::new(StatusCode::CONFLICT, IssueType::BusinessRule, e.to_string());
    match &current {
        None if to != ChargeStatus::Billable => return Err(invalid("ChargeItem.status", "a new charge is billable")),
        None => {}
        Some(cur) => {
            let from = status(cur)?;
            if from != to {
                match to {
                    ChargeStatus::Billed => from.bill(),
                    ChargeStatus::Billable => from.unbill(),
                    ChargeStatus::Aborted => from.abort(),
                }
                .map_err(refused)?;
            }
        }
    }
    if to == ChargeStatus::Billed && billed_on(charge).is_none() {
        return Err(invalid("ChargeItem.status", "a charge is billed by putting it on an invoice"));
    }
    if charge.get("factorOverride").is_some() {
        return Err(invalid("ChargeItem.factorOverride", "a factor is not supported: set the price by hand (priceOverride with overrideReason)"));
    }
    let qty = quantity(charge)?;
    let definition = charge["definitionCanonical"][0].as_str().map(str::to_string);
    let source = if let Some(price) = charge.get("priceOverride") {
        let reason = charge["overrideReason"].as_str().unwrap_or_default().to_string();
        PriceSource::Override { price: paise(price, "ChargeItem.priceOverride")?, reason }
    } else if let Some(url) = definition {
        let unchanged = current.as_ref().filter(|c| c["definitionCanonical"][0].as_str() == Some(&url) && c.get("priceOverride").is_none());
        match unchanged {
            // The price was fixed when the charge was made; a tariff change since does not alter it.
            Some(c) => PriceSource::Tariff(unit_price(c)?),
            None => {
                let entry = tariff_by_url(tx.conn(), &url)?.ok_or_else(|| invalid("ChargeItem.definitionCanonical", format!("{url} is not in the tariff")))?;
                PriceSource::Tariff(entry.price)
            }
        }
    } else {
        return Err(invalid(
            "ChargeItem",
            "a charge needs a tariff entry (definitionCanonical) or a price set by hand (priceOverride with overrideReason)",
        ));
    };
    let price = ChargePrice::new(&source, qty).map_err(|e| invalid("ChargeItem.priceOverride", e.to_string()))?;
    set_extension(charge, json!({"url": UNIT_PRICE_URL, "valueMoney": money(price.unit_price())}));
    p.body = Body::from_resource(charge);
    p.index = vaidya_fhir::index::extract_all(charge);
    Ok(())
}

/// The charge made for `source` (`Appointment/x`), if any.
fn charge_of(tx: &WriteTx<'_>, source: &str) -> Result<Option<(String, Value)>, ApiError> {
    Ok(find(tx.conn(), "ChargeItem", &[("identifier", format!("{SOURCE_SYSTEM}|{source}"))])?.into_iter().next())
}

fn patient_of_appointment(appt: &Value) -> Option<&str> {
    appt["participant"].as_array()?.iter().find_map(|p| p["actor"]["reference"].as_str().filter(|r| r.starts_with("Patient/")))
}

/// After a resource is written: make or abort the charge for the service it records.
/// `version` is the version just written: a first version cannot have been charged before.
pub fn after_write(tx: &mut WriteTx<'_>, author: &str, rtype: &str, id: &str, content: &[u8], version: u64) -> Result<(), ApiError> {
    let created = version == 1;
    if author == IMPORT_AUTHOR || !matches!(rtype, "Patient" | "Appointment" | "ServiceRequest") {
        return Ok(());
    }
    let source = format!("{rtype}/{id}");
    if rtype == "Patient" {
        // Registration is the first version; nothing in the record itself needs reading.
        return if created { charge(tx, author, &source, &source, &[(EVENT_SYSTEM, EVENT_REGISTRATION)], None, true) } else { Ok(()) };
    }
    let r: Value = serde_json::from_slice(content).map_err(|e| ApiError::internal(e.to_string()))?;
    let status = r["status"].as_str().unwrap_or_default();
    match rtype {
        "Appointment" => match status {
            "booked" | "arrived" | "checked-in" | "fulfilled" => {
                let Some(patient) = patient_of_appointment(&r) else { return Ok(()) };
                charge(tx, author, &source, patient, &[(EVENT_SYSTEM, EVENT_CONSULTATION)], r["start"].as_str(), created)
            }
            "cancelled" | "noshow" | "entered-in-error" => abort(tx, author, &source),
            _ => Ok(()),
        },
        "ServiceRequest" => match status {
            "draft" | "active" | "completed" => {
                let Some(patient) = r["subject"]["reference"].as_str().filter(|s| s.starts_with("Patient/")) else { return Ok(()) };
                let codes: Vec<(&str, &str)> = r["code"]["coding"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| Some((c["system"].as_str()?, c["code"].as_str()?)))
                    .collect();
                charge(tx, author, &source, patient, &codes, r["authoredOn"].as_str(), created)
            }
            "revoked" | "entered-in-error" => abort(tx, author, &source),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// After a resource is deleted: a deleted appointment or order was not a service given.
pub fn after_delete(tx: &mut WriteTx<'_>, author: &str, rtype: &str, id: &str) -> Result<(), ApiError> {
    if author == IMPORT_AUTHOR || !matches!(rtype, "Appointment" | "ServiceRequest") {
        return Ok(());
    }
    abort(tx, author, &format!("{rtype}/{id}"))
}

/// Charge `patient` for `source` at the first of `concepts` that the tariff prices, unless
/// the source was charged before.
fn charge(tx: &mut WriteTx<'_>, author: &str, source: &str, patient: &str, concepts: &[(&str, &str)], when: Option<&str>, first_version: bool) -> Result<(), ApiError> {
    if !first_version && charge_of(tx, source)?.is_some() {
        return Ok(());
    }
    let mut entry = None;
    for (system, code) in concepts {
        if let Some(e) = tariff_for(tx.conn(), system, code)? {
            entry = Some(e);
            break;
        }
    }
    let Some(entry) = entry else { return Ok(()) };
    let now = vaidya_fhir::datetime::format_instant(vaidya_store::now_ms());
    let item = json!({
        "resourceType": "ChargeItem",
        "identifier": [{"system": SOURCE_SYSTEM, "value": source}],
        "definitionCanonical": [entry.url],
        "status": "billable",
        "code": entry.code,
        "subject": {"reference": patient},
        "occurrenceDateTime": when.unwrap_or(&now),
        "enteredDate": now,
        "quantity": {"value": 1},
        "supportingInformation": [{"reference": source}]
    });
    super::ops::create(tx, author, prepare_trusted(item), &super::new_id(), None)?;
    Ok(())
}

/// The service was not given: abort its charge if it is not yet on an invoice (a billed one is
/// for the cashier: refund or cancel the invoice).
fn abort(tx: &mut WriteTx<'_>, author: &str, source: &str) -> Result<(), ApiError> {
    let Some((id, mut item)) = charge_of(tx, source)? else { return Ok(()) };
    if status(&item)? != ChargeStatus::Billable {
        return Ok(());
    }
    item["status"] = json!("aborted");
    super::ops::save(tx, author, &id, item)?;
    Ok(())
}

/// Put a charge on an invoice, or take it off one (the invoice was cancelled).
pub fn set_billed(tx: &mut WriteTx<'_>, author: &str, id: &str, invoice: Option<&str>) -> Result<(), ApiError> {
    let (mut item, _) = super::load_live(tx.conn(), "ChargeItem", id)?;
    match invoice {
        Some(inv) => {
            item["status"] = json!("billed");
            set_extension(&mut item, json!({"url": BILLED_ON_URL, "valueReference": {"reference": format!("Invoice/{inv}")}}));
        }
        None => {
            item["status"] = json!("billable");
            remove_extension(&mut item, BILLED_ON_URL);
        }
    }
    super::ops::save(tx, author, id, item)?;
    Ok(())
}
