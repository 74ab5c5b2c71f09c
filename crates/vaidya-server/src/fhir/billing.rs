//! Billing over FHIR, with the rules in the domain's `Invoice`.
//!
//! An Invoice's lines are `lineItem[]`, each with a `base` priceComponent (Money in INR, at most
//! two decimals) and an optional `factor` (the quantity). The server computes `totalNet` and
//! `totalGross` from the lines (a client-sent total that differs is refused): the total always
//! equals the lines. Payments (`Invoice/{id}/$pay`: amount, mode cash|upi|card, and an
//! idempotency key) are recorded on the Invoice as `payment` extensions with the day's next
//! receipt number; every payment is a new version of the Invoice in the ledger. A retried
//! payment with the same key is recorded once. The Invoice's status becomes `balanced` when
//! nothing is owed.

use crate::error::ApiError;
use axum::http::StatusCode;
use serde_json::{Value, json};
use vaidya_domain::billing::{BillingError, Invoice, PaymentMode};
use vaidya_domain::schedule::{IST_OFFSET_MINUTES, from_utc_ms};
use vaidya_domain::Paise;
use vaidya_fhir::outcome::{Issue, IssueType};
use vaidya_store::{Body, WriteTx};

pub const PAYMENT_URL: &str = "https://vaidya.dev/fhir/StructureDefinition/invoice-payment";

fn invalid(at: String, message: String) -> ApiError {
    ApiError { status: StatusCode::UNPROCESSABLE_ENTITY, issues: vec![Issue::error(IssueType::Invalid, message).at(at)] }
}

fn refused(e: BillingError) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, IssueType::BusinessRule, e.to_string())
}

/// Money in INR as paise; `at` names the element for errors.
fn paise(money: &Value, at: &str) -> Result<Paise, ApiError> {
    if money["currency"].as_str().is_some_and(|c| c != "INR") {
        return Err(invalid(at.to_string(), "amounts are in INR".into()));
    }
    let value = money.get("value").filter(|v| v.is_number()).ok_or_else(|| invalid(at.to_string(), "an amount needs a value".into()))?;
    value.to_string().parse::<Paise>().map_err(|e| invalid(format!("{at}.value"), format!("{value} is not an amount in rupees and paise: {e}")))
}

fn money(p: Paise) -> Value {
    let text = format!("{}{}.{:02}", if p.0 < 0 { "-" } else { "" }, p.0.unsigned_abs() / 100, p.0.unsigned_abs() % 100);
    json!({"value": serde_json::from_str::<Value>(&text).expect("a decimal literal"), "currency": "INR"})
}

fn mode(code: &str) -> Option<PaymentMode> {
    match code {
        "cash" => Some(PaymentMode::Cash),
        "upi" => Some(PaymentMode::Upi),
        "card" => Some(PaymentMode::Card),
        _ => None,
    }
}

fn sub<'a>(ext: &'a Value, url: &str) -> Option<&'a Value> {
    ext["extension"].as_array()?.iter().find(|e| e["url"] == url)
}

/// The domain's view of a FHIR Invoice: its lines, its stage, and the payments recorded on it.
pub fn to_domain(invoice: &Value) -> Result<Invoice, ApiError> {
    let mut d = Invoice::new();
    for (i, line) in invoice["lineItem"].as_array().into_iter().flatten().enumerate() {
        let at = format!("Invoice.lineItem[{i}]");
        let base = line["priceComponent"]
            .as_array()
            .and_then(|pcs| pcs.iter().find(|pc| pc["type"] == "base"))
            .ok_or_else(|| invalid(at.clone(), "a line needs a base priceComponent".into()))?;
        let unit = paise(&base["amount"], &format!("{at}.priceComponent.amount"))?;
        let quantity = match base.get("factor") {
            None => 1,
            Some(f) => f.as_u64().and_then(|q| u32::try_from(q).ok()).ok_or_else(|| invalid(format!("{at}.priceComponent.factor"), "the quantity must be a whole number".into()))?,
        };
        let concept = &line["chargeItemCodeableConcept"];
        let description = concept["text"].as_str().or_else(|| concept["coding"][0]["display"].as_str()).unwrap_or("charge").to_string();
        d.add_line(&description, unit, quantity).map_err(|e| invalid(at, e.to_string()))?;
    }
    let status = invoice["status"].as_str().unwrap_or("draft");
    if status != "draft" {
        d.issue().map_err(|e| invalid("Invoice.lineItem".into(), e.to_string()))?;
    }
    for ext in invoice["extension"].as_array().into_iter().flatten().filter(|e| e["url"] == PAYMENT_URL) {
        let m = sub(ext, "mode").and_then(|m| m["valueCode"].as_str()).and_then(mode).ok_or_else(|| ApiError::internal("stored payment without a mode"))?;
        let amount = paise(&sub(ext, "amount").map(|a| a["valueMoney"].clone()).unwrap_or_default(), "payment")?;
        let receipt = sub(ext, "receipt").and_then(|r| r["valueString"].as_str()).unwrap_or_default();
        d.pay(m, amount, receipt).map_err(|e| ApiError::internal(format!("stored payment does not replay: {e}")))?;
    }
    if status == "cancelled" {
        d.cancel(invoice["cancelledReason"].as_str().unwrap_or("cancelled")).map_err(refused)?;
    }
    Ok(d)
}

/// Before an Invoice is written: its totals must be (or become) the sum of its lines.
pub fn before_write(p: &mut super::Prepared) -> Result<(), ApiError> {
    let Some(resource) = p.resource.as_mut() else { return Ok(()) };
    let total = to_domain(resource)?.total();
    for field in ["totalNet", "totalGross"] {
        if let Some(sent) = resource.get(field) {
            let sent = paise(sent, &format!("Invoice.{field}"))?;
            if sent != total {
                return Err(invalid(format!("Invoice.{field}"), format!("{field} {sent} differs from the lines' total {total}")));
            }
        }
        resource[field] = money(total);
    }
    p.body = Body::from_resource(resource);
    p.index = vaidya_fhir::index::extract_all(resource);
    Ok(())
}

/// The payment request of `$pay`.
pub struct PayRequest {
    pub amount: Paise,
    pub mode: String,
    pub key: String,
}

pub fn parse_pay(params: &Value) -> Result<PayRequest, ApiError> {
    if params["resourceType"] != "Parameters" {
        return Err(ApiError::bad_request("$pay takes a Parameters resource"));
    }
    let find = |name: &str| params["parameter"].as_array().into_iter().flatten().find(|p| p["name"] == name);
    let amount = paise(&find("amount").map(|p| p["valueMoney"].clone()).ok_or_else(|| ApiError::bad_request("parameter 'amount' (valueMoney) is required"))?, "amount")?;
    let mode = find("mode").and_then(|p| p["valueCode"].as_str()).filter(|m| self::mode(m).is_some()).ok_or_else(|| ApiError::bad_request("parameter 'mode' must be cash, upi or card"))?;
    let key = find("key").and_then(|p| p["valueString"].as_str()).filter(|k| !k.is_empty() && k.len() <= 128).ok_or_else(|| ApiError::bad_request("parameter 'key' (valueString, an idempotency key of at most 128 characters) is required"))?;
    Ok(PayRequest { amount, mode: mode.to_string(), key: key.to_string() })
}

/// Record a payment (once per key) inside the writer.
pub fn pay(tx: &mut WriteTx<'_>, author: &str, id: &str, req: PayRequest) -> Result<super::ops::Outcome, ApiError> {
    let stored = vaidya_store::read::current(tx.conn(), "Invoice", id)?
        .filter(|s| !s.deleted)
        .ok_or_else(|| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, IssueType::NotFound, format!("Invoice/{id} is not known")))?;
    let mut invoice: Value = serde_json::from_slice(&stored.content).map_err(|e| ApiError::internal(e.to_string()))?;
    let already = invoice["extension"].as_array().into_iter().flatten().any(|e| {
        e["url"] == PAYMENT_URL && sub(e, "key").and_then(|k| k["valueString"].as_str()) == Some(req.key.as_str())
    });
    if already {
        return Ok(super::ops::Outcome {
            status: StatusCode::OK,
            resource_type: "Invoice".into(),
            id: id.to_string(),
            version: stored.version,
            time_ms: stored.time_ms,
            content: Some(stored.content),
        });
    }
    let mut d = to_domain(&invoice)?;
    let (today, _) = from_utc_ms(vaidya_store::now_ms(), IST_OFFSET_MINUTES).map_err(|e| ApiError::internal(e.to_string()))?;
    let key = format!("receipt:{today}");
    let n = tx.sequence(&key)?.unwrap_or(0) + 1;
    let receipt = format!("R{}{:05}", today.to_string().replace('-', ""), n);
    d.pay(mode(&req.mode).expect("checked when parsed"), req.amount, &receipt).map_err(refused)?;
    tx.set_sequence(&key, n)?;
    let ext = json!({"url": PAYMENT_URL, "extension": [
        {"url": "mode", "valueCode": req.mode},
        {"url": "amount", "valueMoney": money(req.amount)},
        {"url": "receipt", "valueString": receipt},
        {"url": "key", "valueString": req.key},
        {"url": "time", "valueDateTime": vaidya_fhir::datetime::format_instant(vaidya_store::now_ms())}
    ]});
    match invoice["extension"].as_array_mut() {
        Some(l) => l.push(ext),
        None => invoice["extension"] = Value::Array(vec![ext]),
    }
    if d.balance() == Paise::ZERO {
        invoice["status"] = json!("balanced");
    }
    super::ops::update(tx, author, super::prepare(invoice)?, id, None)
}
