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
use vaidya_domain::charges::ChargeStatus;
use vaidya_fhir::outcome::{Issue, IssueType};
use super::params::{Params, required};
use vaidya_store::{Body, WriteTx};

pub const PAYMENT_URL: &str = "https://vaidya.dev/fhir/StructureDefinition/invoice-payment";
pub const REFUND_URL: &str = "https://vaidya.dev/fhir/StructureDefinition/invoice-refund";
pub const WAIVER_URL: &str = "https://vaidya.dev/fhir/StructureDefinition/invoice-waiver";

fn invalid(at: String, message: String) -> ApiError {
    ApiError { status: StatusCode::UNPROCESSABLE_ENTITY, issues: vec![Issue::error(IssueType::Invalid, message).at(at)], hidden_refusal: false }
}

fn refused(e: BillingError) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, IssueType::BusinessRule, e.to_string())
}

/// Money in INR as paise; `at` names the element for errors.
pub fn paise(money: &Value, at: &str) -> Result<Paise, ApiError> {
    if money["currency"].as_str().is_some_and(|c| c != "INR") {
        return Err(invalid(at.to_string(), "amounts are in INR".into()));
    }
    let value = money.get("value").filter(|v| v.is_number()).ok_or_else(|| invalid(at.to_string(), "an amount needs a value".into()))?;
    value.to_string().parse::<Paise>().map_err(|e| invalid(format!("{at}.value"), format!("{value} is not an amount in rupees and paise: {e}")))
}

pub fn money(p: Paise) -> Value {
    let text = format!("{}{}.{:02}", if p.0 < 0 { "-" } else { "" }, p.0.unsigned_abs() / 100, p.0.unsigned_abs() % 100);
    json!({"value": serde_json::from_str::<Value>(&text).expect("a decimal literal"), "currency": "INR"})
}

pub fn mode(code: &str) -> Option<PaymentMode> {
    match code {
        "cash" => Some(PaymentMode::Cash),
        "upi" => Some(PaymentMode::Upi),
        "card" => Some(PaymentMode::Card),
        _ => None,
    }
}

/// A sub-extension of a complex extension, by its url.
pub fn sub<'a>(ext: &'a Value, url: &str) -> Option<&'a Value> {
    ext["extension"].as_array()?.iter().find(|e| e["url"] == url)
}

/// What a line is for: its concept, or the code of its price (lines made from charges).
fn line_description(line: &Value, base: &Value) -> String {
    [&line["chargeItemCodeableConcept"], &base["code"]]
        .iter()
        .find_map(|c| c["text"].as_str().or_else(|| c["coding"][0]["display"].as_str()))
        .unwrap_or("charge")
        .to_string()
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
        let description = line_description(line, base);
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

/// Before an Invoice is written: lines that reference charges take their price from them (a
/// charge must be the invoice's patient's and not on another invoice), and the totals must be
/// (or become) the sum of the lines.
pub fn before_write(tx: &WriteTx<'_>, p: &mut super::Prepared, id: &str) -> Result<(), ApiError> {
    let Some(resource) = p.resource.as_mut() else { return Ok(()) };
    let subject = resource["subject"]["reference"].as_str().map(str::to_string);
    for (i, line) in resource["lineItem"].as_array_mut().into_iter().flatten().enumerate() {
        let Some(charge_id) = charge_of_line(line) else { continue };
        let at = format!("Invoice.lineItem[{i}].chargeItemReference");
        let (charge, _) = super::load_live(tx.conn(), "ChargeItem", &charge_id).map_err(|_| invalid(at.clone(), format!("ChargeItem/{charge_id} is not known")))?;
        if subject.is_none() || charge["subject"]["reference"].as_str() != subject.as_deref() {
            return Err(invalid(at, format!("ChargeItem/{charge_id} is not for this invoice's subject")));
        }
        let status = super::charges::status(&charge)?;
        let mine = super::charges::billed_on(&charge) == Some(id);
        if !(status == ChargeStatus::Billable || (status == ChargeStatus::Billed && mine)) {
            return Err(ApiError::new(StatusCode::CONFLICT, IssueType::BusinessRule, format!("ChargeItem/{charge_id} is {status}{}, so it cannot be billed here",
                super::charges::billed_on(&charge).map(|inv| format!(" on Invoice/{inv}")).unwrap_or_default())));
        }
        let base = json!({"type": "base", "code": charge["code"].clone(), "amount": money(super::charges::unit_price(&charge)?), "factor": super::charges::quantity(&charge)?});
        match line["priceComponent"].as_array().and_then(|pcs| pcs.iter().find(|pc| pc["type"] == "base")) {
            Some(sent) if sent["amount"].get("value").is_some() => {
                let sent_price = paise(&sent["amount"], &format!("Invoice.lineItem[{i}].priceComponent.amount"))?;
                let sent_qty = sent.get("factor").and_then(Value::as_u64).unwrap_or(1);
                if sent_price != super::charges::unit_price(&charge)? || sent_qty != u64::from(super::charges::quantity(&charge)?) {
                    return Err(invalid(format!("Invoice.lineItem[{i}].priceComponent"), format!("the line's price differs from ChargeItem/{charge_id}'s")));
                }
            }
            _ => line["priceComponent"] = json!([base]),
        }
    }
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

fn charge_of_line(line: &Value) -> Option<String> {
    line["chargeItemReference"]["reference"].as_str()?.strip_prefix("ChargeItem/").map(str::to_string)
}

/// After an Invoice is written: the charges on its lines are billed on it, or, once it is
/// cancelled, billable again.
pub fn after_write(tx: &mut WriteTx<'_>, author: &str, id: &str, invoice: &Value) -> Result<(), ApiError> {
    let cancelled = invoice["status"] == "cancelled";
    for line in invoice["lineItem"].as_array().into_iter().flatten() {
        let Some(charge_id) = charge_of_line(line) else { continue };
        let (charge, _) = super::load_live(tx.conn(), "ChargeItem", &charge_id)?;
        let on_this = super::charges::billed_on(&charge) == Some(id);
        if cancelled && on_this {
            super::charges::set_billed(tx, author, &charge_id, None)?;
        } else if !cancelled && !on_this {
            super::charges::set_billed(tx, author, &charge_id, Some(id))?;
        }
    }
    Ok(())
}

/// `Invoice/$gather`: a new issued Invoice with every billable charge of a patient.
pub fn gather(tx: &mut WriteTx<'_>, author: &str, patient: &str, id: &str) -> Result<super::ops::Outcome, ApiError> {
    super::load_live(tx.conn(), "Patient", patient)?;
    let charges = super::find(tx.conn(), "ChargeItem", &[("subject", format!("Patient/{patient}")), ("_count", "1000".into())])?;
    let lines: Vec<Value> = charges
        .iter()
        .filter(|(_, c)| c["status"] == "billable")
        .enumerate()
        .map(|(i, (cid, _))| json!({"sequence": i + 1, "chargeItemReference": {"reference": format!("ChargeItem/{cid}")}}))
        .collect();
    if lines.is_empty() {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, IssueType::BusinessRule, format!("Patient/{patient} has no charges waiting to be billed")));
    }
    let invoice = json!({
        "resourceType": "Invoice",
        "status": "issued",
        "subject": {"reference": format!("Patient/{patient}")},
        "date": vaidya_fhir::datetime::format_instant(vaidya_store::now_ms()),
        "lineItem": lines
    });
    super::ops::create(tx, author, super::prepare(invoice)?, id, None)
}

/// A money operation on an invoice. Payments and refunds happen at a counter (`OPD-1`); the
/// cashier is the signed-in user.
pub enum MoneyOp {
    Pay { amount: Paise, mode: String, key: String, counter: String },
    Refund { amount: Paise, mode: String, reason: String, key: String, counter: String },
    Waive { approver: String, reason: String },
    Cancel { reason: String },
}

/// The counter when none is named.
pub const DEFAULT_COUNTER: &str = "main";

/// Read the Parameters of `$pay`, `$refund`, `$waive` or `$cancel`.
pub fn parse_money_op(operation: &str, params: &Value) -> Result<MoneyOp, ApiError> {
    let p = Params::new(operation, params)?;
    let amount = || -> Result<Paise, ApiError> { paise(required(p.money("amount")?, "amount")?, "amount") };
    let mode = |default: Option<&'static str>| -> Result<String, ApiError> {
        match p.code("mode")?.or(default) {
            Some(m) if self::mode(m).is_some() => Ok(m.to_string()),
            _ => Err(ApiError::bad_request("parameter 'mode' must be cash, upi or card")),
        }
    };
    let counter = || -> Result<String, ApiError> { Ok(p.text("counter", 64)?.unwrap_or_else(|| DEFAULT_COUNTER.to_string())) };
    let text = |name: &str, max: usize| -> Result<String, ApiError> { required(p.text(name, max)?, name) };
    Ok(match operation {
        "$pay" => MoneyOp::Pay { amount: amount()?, mode: mode(None)?, key: text("key", 128)?, counter: counter()? },
        "$refund" => MoneyOp::Refund { amount: amount()?, mode: mode(Some("cash"))?, reason: text("reason", 500)?, key: text("key", 128)?, counter: counter()? },
        "$waive" => MoneyOp::Waive { approver: text("approver", 128)?, reason: text("reason", 500)? },
        "$cancel" => MoneyOp::Cancel { reason: text("reason", 500)? },
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
    let key = crate::numbering::counter(&format!("receipt:{today}"));
    let n = tx.sequence(&key)?.unwrap_or(0) + 1;
    tx.set_sequence(&key, n)?;
    Ok(crate::numbering::daily_number('R', today, n))
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
        MoneyOp::Pay { amount, mode: m, key, counter } => {
            let receipt = next_receipt(tx)?;
            d.pay(mode(&m).expect("checked when parsed"), amount, &receipt).map_err(refused)?;
            json!({"url": PAYMENT_URL, "extension": [
                {"url": "mode", "valueCode": m}, {"url": "amount", "valueMoney": money(amount)},
                {"url": "receipt", "valueString": receipt}, {"url": "key", "valueString": key}, {"url": "time", "valueDateTime": now},
                {"url": "counter", "valueString": counter}, {"url": "cashier", "valueString": author}]})
        }
        MoneyOp::Refund { amount, mode: m, reason, key, counter } => {
            let receipt = next_receipt(tx)?;
            d.refund(amount, &receipt, &reason).map_err(refused)?;
            json!({"url": REFUND_URL, "extension": [
                {"url": "amount", "valueMoney": money(amount)}, {"url": "receipt", "valueString": receipt},
                {"url": "reason", "valueString": reason}, {"url": "key", "valueString": key}, {"url": "time", "valueDateTime": now},
                {"url": "mode", "valueCode": m}, {"url": "counter", "valueString": counter}, {"url": "cashier", "valueString": author}]})
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
