//! The billing counter: a patient's open charges, making the invoice, taking a payment (cash,
//! UPI, card) with its receipt to print, a refund, and the day-end cash report.
//!
//! Through the FHIR API as the signed-in cashier: `ChargeItem?subject=...` (the billable ones),
//! `Invoice/$gather`, `Invoice/{id}/$pay` and `$refund` (each with a random key, so a payment
//! posted twice is taken once: the server records a key once), and `Invoice/$cash-report`.
//! Amounts are typed in rupees (`250` or `250.50`) and handled as integer paise.

use super::fhir_call::{Fhir, Screen, entries, fhir_id};
use super::i18n::Key;
use super::{Ctx, csrf_ok, form_fields, render, signed_in, to_login};
use crate::app::AppState;
use crate::auth::Peer;
use crate::fhir::billing::{PAYMENT_URL, REFUND_URL, sub};
use crate::print::format::{self as fmt, Zone};
use askama::Template;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Value, json};
use vaidya_domain::schedule::LocalDate;
use vaidya_domain::{Paise, Uhid};

/// The counter payments are taken at (one per server for now; a hospital with several names
/// them in the API's `counter` parameter).
const COUNTER: &str = "OPD-1";

/// Money as the page shows it (`₹1,250.00`), or "" if unreadable.
fn shown(money: &Value) -> String {
    crate::fhir::billing::paise(money, "").map(|p| p.to_string()).unwrap_or_default()
}

fn paise_of(money: &Value) -> Paise {
    crate::fhir::billing::paise(money, "").unwrap_or(Paise(0))
}

/// An amount typed in rupees: positive, at most two decimals.
fn typed_amount(s: &str) -> Option<Paise> {
    let s = s.trim().trim_start_matches('₹').replace(',', "");
    if s.is_empty() || s.len() > 12 || !s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    s.parse::<Paise>().ok().filter(|p| p.0 > 0)
}

pub struct Charge {
    pub what: String,
    pub when: String,
    pub quantity: String,
    pub price: String,
}

pub struct Receipt {
    pub number: String,
    pub kind: &'static str,
    pub amount: String,
    pub mode: String,
    pub when: String,
    pub by: String,
}

pub struct Bill {
    pub id: String,
    pub date: String,
    pub status: String,
    pub total: String,
    pub paid: String,
    pub due: String,
    /// What is owed, in rupees as a form value (`250.00`), "" if nothing.
    pub due_value: String,
    pub receipts: Vec<Receipt>,
}

#[derive(Template)]
#[template(path = "web/billing.html")]
struct CounterPage<'a> {
    ctx: &'a Ctx,
    uhid: String,
    patient: Option<(String, String)>,
    charges: Vec<Charge>,
    bills: Vec<Bill>,
    key: String,
    error: Option<String>,
    /// An error about one invoice's payment or refund form (`pay-<id>`, `refund-<id>`),
    /// shown beside it.
    form_error: Option<(String, String)>,
    notice: Option<String>,
}

impl CounterPage<'_> {
    pub fn error_for(&self, action: &str, invoice: &str) -> Option<&str> {
        self.form_error.as_ref().filter(|(f, _)| f.strip_prefix(action).and_then(|r| r.strip_prefix('-')) == Some(invoice)).map(|(_, m)| m.as_str())
    }
}

struct Counter<'a>(Screen<'a>);

impl<'a> std::ops::Deref for Counter<'a> {
    type Target = Screen<'a>;
    fn deref(&self) -> &Screen<'a> {
        &self.0
    }
}

fn key() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

pub(super) fn bill_of(inv: &Value, zone: &Zone, ctx: &Ctx) -> Bill {
    let total = paise_of(&inv["totalGross"]);
    let mut paid = 0i64;
    let mut receipts = Vec::new();
    for e in inv["extension"].as_array().into_iter().flatten() {
        let (kind, sign) = if e["url"] == PAYMENT_URL {
            (ctx.t(Key::Payment), 1)
        } else if e["url"] == REFUND_URL {
            (ctx.t(Key::Refund), -1)
        } else {
            continue;
        };
        let text = |u: &str| sub(e, u).and_then(|v| v["valueString"].as_str().or(v["valueCode"].as_str()).or(v["valueDateTime"].as_str())).unwrap_or_default().to_string();
        let amount = sub(e, "amount").map(|m| paise_of(&m["valueMoney"])).unwrap_or(Paise(0));
        paid += sign * amount.0;
        receipts.push(Receipt { number: text("receipt"), kind, amount: amount.to_string(), mode: text("mode"), when: zone.fhir(&text("time")), by: text("cashier") });
    }
    let due = Paise((total.0 - paid).max(0));
    Bill {
        id: inv["id"].as_str().unwrap_or_default().to_string(),
        date: inv["date"].as_str().map(|d| zone.fhir(d)).unwrap_or_default(),
        status: inv["status"].as_str().unwrap_or_default().to_string(),
        total: total.to_string(),
        paid: Paise(paid).to_string(),
        due: due.to_string(),
        due_value: if due.0 > 0 { format!("{}.{:02}", due.0 / 100, due.0 % 100) } else { String::new() },
        receipts,
    }
}

impl Counter<'_> {
    /// The patient with this UHID: (id, name).
    async fn patient(&self, uhid: &Uhid) -> Result<Option<(String, String)>, (StatusCode, String)> {
        let found = self.get(&format!("/Patient?identifier={}|{uhid}&_count=2", crate::fhir::UHID_SYSTEM)).await?;
        Ok(entries(&found).next().map(|p| (p["id"].as_str().unwrap_or_default().to_string(), fmt::person_names(p).0.unwrap_or_default())))
    }

    async fn page(&self, uhid: &str, status: StatusCode, error: Option<String>, notice: Option<String>) -> Response {
        self.page_with(uhid, status, error, None, notice).await
    }

    /// The counter with an error beside one invoice's form.
    async fn refuse_form(&self, uhid: &str, form: String, status: StatusCode, message: String) -> Response {
        self.page_with(uhid, status, None, Some((form, message)), None).await
    }

    async fn page_with(&self, uhid: &str, status: StatusCode, error: Option<String>, form_error: Option<(String, String)>, notice: Option<String>) -> Response {
        let mut page = CounterPage { ctx: self.ctx, uhid: uhid.to_string(), patient: None, charges: vec![], bills: vec![], key: key(), error, form_error, notice };
        if uhid.is_empty() {
            return render(self.app, self.ctx, status, &page);
        }
        let Ok(parsed) = uhid.parse::<Uhid>() else {
            page.error = Some(self.ctx.t(Key::BadUhid).into());
            return render(self.app, self.ctx, StatusCode::BAD_REQUEST, &page);
        };
        match self.read(&parsed, &mut page).await {
            Ok(()) => render(self.app, self.ctx, status, &page),
            Err((st, message)) => {
                page.error = Some(message);
                render(self.app, self.ctx, st, &page)
            }
        }
    }

    async fn read(&self, uhid: &Uhid, page: &mut CounterPage<'_>) -> Result<(), (StatusCode, String)> {
        let zone = Zone::from_config(&self.app.config.timezone);
        let Some((id, name)) = self.patient(uhid).await? else {
            page.error = Some(self.ctx.t(Key::NoSuchUhid).into());
            return Ok(());
        };
        // R4 has no ChargeItem search by status: the patient's charges, the billable ones kept.
        let charges = self.get(&format!("/ChargeItem?subject=Patient/{id}&_count=1000")).await?;
        page.charges = entries(&charges)
            .filter(|c| c["status"] == "billable")
            .map(|c| Charge {
                what: fmt::concept(&c["code"]).unwrap_or_default(),
                when: c["occurrenceDateTime"].as_str().or(c["enteredDate"].as_str()).map(|t| zone.fhir(t)).unwrap_or_default(),
                quantity: c["quantity"]["value"].as_f64().map(|q| q.to_string()).unwrap_or_else(|| "1".into()),
                price: c["extension"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|e| e["url"] == crate::fhir::charges::UNIT_PRICE_URL)
                    .map(|e| shown(&e["valueMoney"]))
                    .unwrap_or_default(),
            })
            .collect();
        let invoices = self.get(&format!("/Invoice?subject=Patient/{id}&_sort=-date&_count=20")).await?;
        page.bills = entries(&invoices).map(|i| bill_of(i, &zone, self.ctx)).collect();
        page.patient = Some((id, name));
        Ok(())
    }
}

macro_rules! counter_for {
    ($app:ident, $fhir:ident, $peer:ident, $headers:ident, $path:expr, $ctx:ident, $s:ident, $counter:ident) => {
        let $ctx = Ctx::of(&$app, &$headers, $path);
        let Some($s) = signed_in(&$app, &$headers) else { return to_login(&$ctx.path) };
        let $counter = Counter(Screen::new(&$app, &$fhir, &$s, &$headers, $peer, &$ctx));
    };
}

/// `GET /ui/billing?uhid=`: the counter, with a patient's charges and bills.
pub async fn page(State(app): State<AppState>, Extension(fhir): Extension<Fhir>, peer: Peer, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    counter_for!(app, fhir, peer, headers, "/ui/billing", ctx, s, counter);
    let field = form_fields(raw.unwrap_or_default().as_bytes());
    let uhid = field("uhid").trim().to_string();
    let notice = match field("receipt").as_str() {
        "" => None,
        r => Some(format!("{} {r}", ctx.t(Key::ReceiptNo))),
    };
    counter.page(&uhid, StatusCode::OK, None, notice).await
}

fn back(uhid: &str, receipt: Option<&str>) -> Response {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("uhid", uhid);
    if let Some(r) = receipt {
        q.append_pair("receipt", r);
    }
    Redirect::to(&format!("/ui/billing?{}", q.finish())).into_response()
}

/// `POST /ui/billing/{action}`: `invoice` (bill the open charges), `pay`, `refund`.
pub async fn act(State(app): State<AppState>, Extension(fhir): Extension<Fhir>, peer: Peer, headers: HeaderMap, Path(action): Path<String>, body: Bytes) -> Response {
    counter_for!(app, fhir, peer, headers, "/ui/billing", ctx, s, counter);
    let field = form_fields(&body);
    let uhid = field("uhid").trim().to_string();
    if !csrf_ok(&headers, &field("csrf")) {
        return counter.page(&uhid, StatusCode::FORBIDDEN, Some(ctx.t(Key::FormExpired).into()), None).await;
    }
    let Ok(parsed) = uhid.parse::<Uhid>() else { return counter.page(&uhid, StatusCode::BAD_REQUEST, Some(ctx.t(Key::BadUhid).into()), None).await };
    let result = match action.as_str() {
        "invoice" => match counter.patient(&parsed).await {
            Ok(Some((id, _))) => {
                let params = json!({"resourceType": "Parameters", "parameter": [{"name": "patient", "valueReference": {"reference": format!("Patient/{id}")}}]});
                counter.post("/Invoice/$gather", &params).await.map(|_| None)
            }
            Ok(None) => Err((StatusCode::UNPROCESSABLE_ENTITY, ctx.t(Key::NoSuchUhid).to_string())),
            Err(e) => Err(e),
        },
        "pay" | "refund" => {
            let invoice = field("invoice");
            let Some(invoice) = fhir_id(&invoice) else { return counter.page(&uhid, StatusCode::BAD_REQUEST, Some(ctx.t(Key::FormExpired).into()), None).await };
            let form = format!("{action}-{invoice}");
            let Some(amount) = typed_amount(&field("amount")) else {
                return counter.refuse_form(&uhid, form, StatusCode::UNPROCESSABLE_ENTITY, ctx.t(Key::BadAmount).into()).await;
            };
            let key = field("key");
            if key.len() != 32 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
                return counter.page(&uhid, StatusCode::BAD_REQUEST, Some(ctx.t(Key::FormExpired).into()), None).await;
            }
            let mut params = vec![
                json!({"name": "amount", "valueMoney": crate::fhir::billing::money(amount)}),
                json!({"name": "key", "valueString": key}),
                json!({"name": "counter", "valueString": COUNTER}),
            ];
            if action == "pay" {
                let mode = field("mode");
                if !["cash", "upi", "card"].contains(&mode.as_str()) {
                    return counter.refuse_form(&uhid, form, StatusCode::UNPROCESSABLE_ENTITY, ctx.t(Key::ChooseMode).into()).await;
                }
                params.push(json!({"name": "mode", "valueCode": mode}));
            } else {
                let reason = field("reason").trim().to_string();
                if reason.is_empty() || reason.chars().count() > 500 {
                    return counter.refuse_form(&uhid, form, StatusCode::UNPROCESSABLE_ENTITY, ctx.t(Key::NeedReason).into()).await;
                }
                params.push(json!({"name": "reason", "valueString": reason}));
            }
            let op = if action == "pay" { "$pay" } else { "$refund" };
            let done = counter.post(&format!("/Invoice/{invoice}/{op}"), &json!({"resourceType": "Parameters", "parameter": params})).await.map(|inv| {
                // The receipt just made: the last payment or refund with this form's key.
                inv["extension"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|e| sub(e, "key").and_then(|k| k["valueString"].as_str()) == Some(key.as_str()))
                    .filter_map(|e| sub(e, "receipt").and_then(|r| r["valueString"].as_str()).map(str::to_string))
                    .next_back()
            });
            if let Err((status, message)) = done {
                return counter.refuse_form(&uhid, form, status, message).await;
            }
            done
        }
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    match result {
        Ok(receipt) => back(&uhid, receipt.as_deref()),
        Err((status, message)) => counter.page(&uhid, status, Some(message), None).await,
    }
}

#[derive(Template)]
#[template(path = "web/receipt.html")]
struct ReceiptPage<'a> {
    ctx: &'a Ctx,
    patient: String,
    uhid: String,
    invoice: String,
    receipt: Receipt,
    bill: Bill,
}

/// `GET /ui/billing/receipt/{invoice}/{receipt}`: a receipt to print.
pub async fn receipt(State(app): State<AppState>, Extension(fhir): Extension<Fhir>, peer: Peer, headers: HeaderMap, Path((invoice, number)): Path<(String, String)>) -> Response {
    let Some(invoice) = fhir_id(&invoice) else { return StatusCode::NOT_FOUND.into_response() };
    counter_for!(app, fhir, peer, headers, &format!("/ui/billing/receipt/{invoice}/{number}"), ctx, s, counter);
    let zone = Zone::from_config(&app.config.timezone);
    let inv = match counter.get(&format!("/Invoice/{invoice}")).await {
        Ok(i) => i,
        Err((status, message)) => return (status, message).into_response(),
    };
    let mut bill = bill_of(&inv, &zone, &ctx);
    let Some(pos) = bill.receipts.iter().position(|r| r.number == number) else { return StatusCode::NOT_FOUND.into_response() };
    let receipt = bill.receipts.remove(pos);
    let (patient, uhid) = match inv["subject"]["reference"].as_str() {
        Some(p) => match counter.get(&format!("/{p}")).await {
            Ok(p) => (
                fmt::person_names(&p).0.unwrap_or_default(),
                super::fhir_call::uhid_of(&p),
            ),
            Err(_) => (String::new(), String::new()),
        },
        None => (String::new(), String::new()),
    };
    render(&app, &ctx, StatusCode::OK, &ReceiptPage { ctx: &ctx, patient, uhid, invoice: invoice.to_string(), receipt, bill })
}

/// One row of the day-end report.
pub struct Takings {
    pub who: String,
    pub payments: String,
    pub cash: String,
    pub upi: String,
    pub card: String,
    pub refunded: String,
    pub drawer: String,
    pub net: String,
}

#[derive(Template)]
#[template(path = "web/day_end.html")]
struct DayEndPage<'a> {
    ctx: &'a Ctx,
    date: String,
    rows: Vec<Takings>,
    total: Option<Takings>,
    error: Option<String>,
}

fn takings(who: String, parts: &Value) -> Takings {
    let part = |name: &str| parts.as_array().into_iter().flatten().find(|p| p["name"] == name);
    let m = |name: &str| part(name).map(|p| shown(&p["valueMoney"])).unwrap_or_default();
    Takings {
        who,
        payments: part("payments").and_then(|p| p["valueInteger"].as_i64()).unwrap_or(0).to_string(),
        cash: m("cash"),
        upi: m("upi"),
        card: m("card"),
        refunded: m("refunded"),
        drawer: m("cash-in-drawer"),
        net: m("net"),
    }
}

/// `GET /ui/billing/day?date=`: the day-end cash report (today by default).
pub async fn day_end(State(app): State<AppState>, Extension(fhir): Extension<Fhir>, peer: Peer, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    counter_for!(app, fhir, peer, headers, "/ui/billing/day", ctx, s, counter);
    let field = form_fields(raw.unwrap_or_default().as_bytes());
    let today = Zone::from_config(&app.config.timezone).date_of(vaidya_store::now_ms()).expect("now is a date");
    let page = |date: String, rows, total, error, status| render(&app, &ctx, status, &DayEndPage { ctx: &ctx, date, rows, total, error });
    let date = match field("date").as_str() {
        "" => today,
        d => match d.parse::<LocalDate>() {
            Ok(d) => d,
            Err(_) => return page(d.to_string(), vec![], None, Some(ctx.t(Key::BadDate).into()), StatusCode::BAD_REQUEST),
        },
    };
    let params = json!({"resourceType": "Parameters", "parameter": [{"name": "date", "valueDate": date.to_string()}]});
    match counter.post("/Invoice/$cash-report", &params).await {
        Ok(report) => {
            let all = report["parameter"].as_array().cloned().unwrap_or_default();
            let text = |parts: &Value, name: &str| parts.as_array().into_iter().flatten().find(|p| p["name"] == name).and_then(|p| p["valueString"].as_str()).unwrap_or_default().to_string();
            let rows = all
                .iter()
                .filter(|p| p["name"] == "cashier")
                .map(|p| takings(format!("{} · {}", text(&p["part"], "counter"), text(&p["part"], "cashier")), &p["part"]))
                .collect();
            let total = all.iter().find(|p| p["name"] == "total").map(|p| takings(ctx.t(Key::Total).to_string(), &p["part"]));
            page(date.to_string(), rows, total, None, StatusCode::OK)
        }
        Err((status, message)) => page(date.to_string(), vec![], None, Some(message), status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_typed_in_rupees_with_at_most_two_decimals() {
        assert_eq!(typed_amount("250"), Some(Paise(25_000)));
        assert_eq!(typed_amount("₹1,250.50"), Some(Paise(125_050)));
        for bad in ["", "0", "-5", "1.234", "abc", "1e3", "99999999999999"] {
            assert_eq!(typed_amount(bad), None, "{bad}");
        }
    }
}
