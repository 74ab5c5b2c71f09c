//! The day-end cash report (`POST /fhir/Invoice/$cash-report` with a `date`): what each counter
//! and cashier collected that day (hospital time), by mode, and what they refunded.
//!
//! Every payment and refund is recorded on its Invoice with its receipt, counter, cashier and
//! time, and every such change is a version of the Invoice in the ledger. So the report reads
//! the Invoice versions written during the day and counts each receipt of that day once, with
//! the domain's [`DayReport`]: nothing is kept on the side that could disagree with the
//! invoices.

use super::billing::{PAYMENT_URL, REFUND_URL, mode, money, paise, sub};
use crate::error::ApiError;
use serde_json::{Value, json};
use vaidya_domain::billing::PaymentMode;
use vaidya_domain::cash::{CashEvent, DayReport, Direction, Takings};
use vaidya_domain::schedule::{IST_OFFSET_MINUTES, LocalDate, LocalTime, to_utc_ms};

/// The most Invoice versions one day's report reads (about 40 payments a minute around the
/// clock); a larger day is refused rather than answered slowly or partly.
pub const MAX_VERSIONS_PER_DAY: usize = 500_000;

/// The report of `date` (hospital time).
pub fn day_report(conn: &impl vaidya_store::Db, date: LocalDate) -> Result<DayReport, ApiError> {
    let midnight = LocalTime::new(0, 0).expect("valid");
    let from = to_utc_ms(date, midnight, IST_OFFSET_MINUTES);
    let next = date.add_days(1).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let until = to_utc_ms(next, midnight, IST_OFFSET_MINUTES);
    let versions = vaidya_store::read::type_versions_between(conn, "Invoice", from, until, MAX_VERSIONS_PER_DAY + 1)?;
    if versions.len() > MAX_VERSIONS_PER_DAY {
        return Err(ApiError::bad_request(format!("more than {MAX_VERSIONS_PER_DAY} invoice changes on {date}: too many for one report")));
    }
    let mut report = DayReport::new();
    for v in versions.iter().filter(|v| !v.deleted) {
        let invoice: Value = serde_json::from_slice(&v.content).map_err(|e| ApiError::internal(e.to_string()))?;
        for ext in invoice["extension"].as_array().into_iter().flatten() {
            let direction = if ext["url"] == PAYMENT_URL {
                Direction::In
            } else if ext["url"] == REFUND_URL {
                Direction::Out
            } else {
                continue;
            };
            let text = |name: &str| sub(ext, name).and_then(|e| e["valueString"].as_str()).map(str::to_string);
            let time = sub(ext, "time").and_then(|t| t["valueDateTime"].as_str()).and_then(vaidya_fhir::datetime::parse_date_range).map(|(at, _)| at);
            if !time.is_some_and(|t| (from..until).contains(&t)) {
                continue; // an earlier day's payment, carried on this version
            }
            let m = sub(ext, "mode").and_then(|m| m["valueCode"].as_str()).and_then(mode).unwrap_or(PaymentMode::Cash);
            let amount = paise(&sub(ext, "amount").map(|a| a["valueMoney"].clone()).unwrap_or_default(), "stored amount")?;
            let event = CashEvent {
                receipt: text("receipt").unwrap_or_default(),
                counter: text("counter").unwrap_or_else(|| super::billing::DEFAULT_COUNTER.to_string()),
                cashier: text("cashier").unwrap_or_else(|| v.author.clone()),
                direction,
                mode: m,
                amount,
            };
            report.add(event).map_err(|e| ApiError::internal(format!("the day's receipts do not add up: {e}")))?;
        }
    }
    Ok(report)
}

fn takings_parts(t: &Takings) -> Vec<Value> {
    vec![
        json!({"name": "payments", "valueInteger": t.payments}),
        json!({"name": "cash", "valueMoney": money(t.collected.cash)}),
        json!({"name": "upi", "valueMoney": money(t.collected.upi)}),
        json!({"name": "card", "valueMoney": money(t.collected.card)}),
        json!({"name": "collected", "valueMoney": money(t.collected.total())}),
        json!({"name": "refunds", "valueInteger": t.refunds}),
        json!({"name": "refunded", "valueMoney": money(t.refunded.total())}),
        json!({"name": "refunded-cash", "valueMoney": money(t.refunded.cash)}),
        json!({"name": "cash-in-drawer", "valueMoney": money(t.cash_in_drawer())}),
        json!({"name": "net", "valueMoney": money(t.net())}),
    ]
}

/// The report as a Parameters resource: a `cashier` part per counter and cashier, a `counter`
/// part per counter, and the day's `total`.
pub fn to_parameters(date: LocalDate, report: &DayReport) -> Value {
    let mut params = vec![json!({"name": "date", "valueDate": date.to_string()})];
    for (counter, cashier, t) in report.rows() {
        let mut parts = vec![json!({"name": "counter", "valueString": counter}), json!({"name": "cashier", "valueString": cashier})];
        parts.extend(takings_parts(t));
        params.push(json!({"name": "cashier", "part": parts}));
    }
    for (counter, t) in report.by_counter() {
        let mut parts = vec![json!({"name": "counter", "valueString": counter})];
        parts.extend(takings_parts(&t));
        params.push(json!({"name": "counter", "part": parts}));
    }
    params.push(json!({"name": "total", "part": takings_parts(report.total())}));
    json!({"resourceType": "Parameters", "parameter": params})
}
