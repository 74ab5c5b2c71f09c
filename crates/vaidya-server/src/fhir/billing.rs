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
pub const REFUND_URL: &str = "https://vaidya.dev/fhir/StructureDefinition/invoice-refund";
pub const WAIVER_URL: &str = "https://vaidya.dev/fhir/StructureDefinition/invoice-waiver";

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
    // Money events replay in the order they happened (a refund is bounded by what was paid
    // before it).
    let text = |ext: &Value, name: &str| sub(ext, name).and_then(|v| v["valueString"].as_str()).unwrap_or_default().to_string();
    let amount = |ext: &Value| paise(&sub(ext, "amount").map(|a| a["valueMoney"].clone()).unwrap_or_default(), "stored amount");
    let replay = |e: BillingError| ApiError::internal(format!("a stored payment event does not replay: {e}"));
    for ext in invoice["extension"].as_array().into_iter().flatten() {
        if ext["url"] == PAYMENT_URL {
            let m = sub(ext, "mode").and_then(|m| m["valueCode"].as_str()).and_then(mode).ok_or_else(|| ApiError::internal("stored payment without a mode"))?;
            d.pay(m, amount(ext)?, &text(ext, "receipt")).map_err(replay)?;
        } else if ext["url"] == REFUND_URL {
            d.refund(amount(ext)?, &text(ext, "receipt"), &text(ext, "reason")).map_err(replay)?;
        } else if ext["url"] == WAIVER_URL {
            d.waive(&text(ext, "approver"), &text(ext, "reason")).map_err(replay)?;
        }
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

/// A money operation on an invoice.
pub enum MoneyOp {
    Pay { amount: Paise, mode: String, key: String },
    Refund { amount: Paise, reason: String, key: String },
    Waive { approver: String, reason: String },
    Cancel { reason: String },
}

fn param<'a>(params: &'a Value, name: &str) -> Option<&'a Value> {
    params["parameter"].as_array().into_iter().flatten().find(|p| p["name"] == name)
}

fn param_text(params: &Value, name: &str, max: usize) -> Result<String, ApiError> {
    param(params, name)
        .and_then(|p| p["valueString"].as_str())
        .filter(|v| !v.trim().is_empty() && v.len() <= max)
        .map(str::to_string)
        .ok_or_else(|| ApiError::bad_request(format!("parameter '{name}' (valueString, at most {max} characters) is required")))
}

fn param_amount(params: &Value) -> Result<Paise, ApiError> {
    paise(&param(params, "amount").map(|p| p["valueMoney"].clone()).ok_or_else(|| ApiError::bad_request("parameter 'amount' (valueMoney) is required"))?, "amount")
}

/// Read the Parameters of `$pay`, `$refund`, `$waive` or `$cancel`.
pub fn parse_money_op(operation: &str, params: &Value) -> Result<MoneyOp, ApiError> {
    if params["resourceType"] != "Parameters" {
        return Err(ApiError::bad_request(format!("{operation} takes a Parameters resource")));
    }
    Ok(match operation {
        "$pay" => {
            let mode = param(params, "mode").and_then(|p| p["valueCode"].as_str()).filter(|m| self::mode(m).is_some());
            let mode = mode.ok_or_else(|| ApiError::bad_request("parameter 'mode' must be cash, upi or card"))?.to_string();
            MoneyOp::Pay { amount: param_amount(params)?, mode, key: param_text(params, "key", 128)? }
        }
        "$refund" => MoneyOp::Refund { amount: param_amount(params)?, reason: param_text(params, "reason", 500)?, key: param_text(params, "key", 128)? },
        "$waive" => MoneyOp::Waive { approver: param_text(params, "approver", 128)?, reason: param_text(params, "reason", 500)? },
        "$cancel" => MoneyOp::Cancel { reason: param_text(params, "reason", 500)? },
        other => return Err(ApiError::new(StatusCode::NOT_FOUND, IssueType::NotSupported, format!("no operation {other} on Invoice"))),
    })
}

fn has_key(invoice: &Value, key: &str) -> bool {
    invoice["extension"].as_array().into_iter().flatten().any(|e| {
        (e["url"] == PAYMENT_URL || e["url"] == REFUND_URL) && sub(e, "key").and_then(|k| k["valueString"].as_str()) == Some(key)
    })
}

/// The day's next receipt number (payments and refunds share the sequence).
fn next_receipt(tx: &mut WriteTx<'_>) -> Result<String, ApiError> {
    let (today, _) = from_utc_ms(vaidya_store::now_ms(), IST_OFFSET_MINUTES).map_err(|e| ApiError::internal(e.to_string()))?;
    let key = format!("receipt:{today}");
    let n = tx.sequence(&key)?.unwrap_or(0) + 1;
    tx.set_sequence(&key, n)?;
    Ok(format!("R{}{:05}", today.to_string().replace('-', ""), n))
}

/// Apply a money operation inside the writer; a retried payment or refund (same key) is
/// answered with the invoice as it is and writes nothing.
pub fn apply(tx: &mut WriteTx<'_>, author: &str, id: &str, op: MoneyOp) -> Result<super::ops::Outcome, ApiError> {
    let (mut invoice, stored) = super::load_live(tx.conn(), "Invoice", id)?;
    if let MoneyOp::Pay { key, .. } | MoneyOp::Refund { key, .. } = &op
        && has_key(&invoice, key) {
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
    let now = vaidya_fhir::datetime::format_instant(vaidya_store::now_ms());
    let ext = match op {
        MoneyOp::Pay { amount, mode: m, key } => {
            let receipt = next_receipt(tx)?;
            d.pay(mode(&m).expect("checked when parsed"), amount, &receipt).map_err(refused)?;
            json!({"url": PAYMENT_URL, "extension": [
                {"url": "mode", "valueCode": m}, {"url": "amount", "valueMoney": money(amount)},
                {"url": "receipt", "valueString": receipt}, {"url": "key", "valueString": key}, {"url": "time", "valueDateTime": now}]})
        }
        MoneyOp::Refund { amount, reason, key } => {
            let receipt = next_receipt(tx)?;
            d.refund(amount, &receipt, &reason).map_err(refused)?;
            json!({"url": REFUND_URL, "extension": [
                {"url": "amount", "valueMoney": money(amount)}, {"url": "receipt", "valueString": receipt},
                {"url": "reason", "valueString": reason}, {"url": "key", "valueString": key}, {"url": "time", "valueDateTime": now}]})
        }
        MoneyOp::Waive { approver, reason } => {
            d.waive(&approver, &reason).map_err(refused)?;
            json!({"url": WAIVER_URL, "extension": [
                {"url": "approver", "valueString": approver}, {"url": "reason", "valueString": reason}, {"url": "time", "valueDateTime": now}]})
        }
        MoneyOp::Cancel { reason } => {
            d.cancel(&reason).map_err(refused)?;
            invoice["status"] = json!("cancelled");
            invoice["cancelledReason"] = json!(reason);
            return super::ops::save(tx, author, id, invoice);
        }
    };
    match invoice["extension"].as_array_mut() {
        Some(l) => l.push(ext),
        None => invoice["extension"] = Value::Array(vec![ext]),
    }
    invoice["status"] = json!(if d.balance() == Paise::ZERO { "balanced" } else { "issued" });
    super::ops::save(tx, author, id, invoice)
}
