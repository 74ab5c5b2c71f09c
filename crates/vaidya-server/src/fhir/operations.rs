//! Named operations (`$name`) on resource instances.
//!
//! `Schedule/{id}/$generate-slots`: turn a weekly OPD pattern into Slots, e.g. Mon and Thu
//! 09:00-13:00, 10-minute slots, 2 patients each, for the next 4 weeks. The pattern is checked
//! by the domain's `WeeklySchedule`; Slot ids are derived from schedule, date and time, so
//! running the operation again creates only what is missing and never touches a booked slot.

use super::{Prepared, check_id, prepare};
use crate::error::ApiError;
use axum::http::StatusCode;
use serde_json::{Value, json};
use vaidya_domain::schedule::{IST_OFFSET_MINUTES, LocalDate, LocalTime, Weekday, WeeklySchedule, to_utc_ms};
use vaidya_fhir::outcome::IssueType;

/// Days one call may cover at most, and slots it may create at most.
pub const MAX_DAYS: u32 = 366;
pub const MAX_SLOTS: usize = 20_000;

/// The operation's input, read from a Parameters resource.
pub struct SlotRequest {
    pub schedule: WeeklySchedule,
    pub from: LocalDate,
    pub days: u32,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, IssueType::Invalid, message)
}

fn weekday(code: &str) -> Option<Weekday> {
    let i = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"].iter().position(|d| *d == code)?;
    Some(Weekday::ALL[i])
}

/// Read `day` (repeated; mon..sun), `start` and `end` (time), `slotMinutes`, `capacity`,
/// `from` (date) and `days` from a Parameters resource.
pub fn parse_slot_request(params: &Value) -> Result<SlotRequest, ApiError> {
    if params.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(bad("$generate-slots takes a Parameters resource"));
    }
    let list = params.get("parameter").and_then(Value::as_array).ok_or_else(|| bad("Parameters.parameter is missing"))?;
    let (mut days, mut start, mut end, mut minutes, mut capacity, mut from, mut count) = (vec![], None, None, None, None, None, None);
    for p in list {
        let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
        let text = |key: &str| p.get(key).and_then(Value::as_str).ok_or_else(|| bad(format!("parameter '{name}' needs {key}")));
        let number = |key: &str| p.get(key).and_then(Value::as_u64).ok_or_else(|| bad(format!("parameter '{name}' needs {key}")));
        match name {
            "day" => days.push(weekday(text("valueCode")?).ok_or_else(|| bad("day must be one of mon tue wed thu fri sat sun"))?),
            "start" => start = Some(text("valueTime")?.to_string()),
            "end" => end = Some(text("valueTime")?.to_string()),
            "slotMinutes" => minutes = Some(number("valuePositiveInt")?),
            "capacity" => capacity = Some(number("valuePositiveInt")?),
            "from" => from = Some(text("valueDate")?.to_string()),
            "days" => count = Some(number("valuePositiveInt")?),
            other => return Err(bad(format!("unknown parameter '{other}'"))),
        }
    }
    let time = |t: Option<String>, name: &str| -> Result<LocalTime, ApiError> {
        let t = t.ok_or_else(|| bad(format!("parameter '{name}' is required")))?;
        // FHIR times are HH:MM:SS; schedules work in whole minutes.
        let hm = t.strip_suffix(":00").unwrap_or(&t);
        hm.parse().map_err(|e| bad(format!("{name}: {e}")))
    };
    let small = |v: Option<u64>, name: &str| -> Result<u16, ApiError> {
        let v = v.ok_or_else(|| bad(format!("parameter '{name}' is required")))?;
        u16::try_from(v).map_err(|_| bad(format!("{name} is too large")))
    };
    let schedule = WeeklySchedule::new(&days, time(start, "start")?, time(end, "end")?, small(minutes, "slotMinutes")?, small(capacity, "capacity")?)
        .map_err(|e| bad(e.to_string()))?;
    let from: LocalDate = from.ok_or_else(|| bad("parameter 'from' is required"))?.parse().map_err(|e: vaidya_domain::schedule::ScheduleError| bad(e.to_string()))?;
    let days = u32::try_from(count.ok_or_else(|| bad("parameter 'days' is required"))?).unwrap_or(u32::MAX);
    if days == 0 || days > MAX_DAYS {
        return Err(bad(format!("days must be 1 to {MAX_DAYS}")));
    }
    Ok(SlotRequest { schedule, from, days })
}

/// The Slots a request describes for schedule `schedule_id`, ready to store, or an error if
/// there are too many for one call.
pub fn prepare_slots(schedule_id: &str, req: &SlotRequest) -> Result<Vec<(String, Prepared)>, ApiError> {
    check_id(schedule_id)?;
    // Slot ids are `{schedule}-{YYYY-MM-DD}-{HHMM}` and ids have at most 64 characters.
    if schedule_id.len() > 48 {
        return Err(bad("$generate-slots needs a Schedule id of at most 48 characters"));
    }
    let specs = req.schedule.slots(req.from, req.days);
    if specs.len() > MAX_SLOTS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            IssueType::TooCosts,
            format!("this would make {} slots; at most {MAX_SLOTS} per call", specs.len()),
        ));
    }
    let mut out = Vec::with_capacity(specs.len());
    for spec in specs {
        let start = to_utc_ms(spec.date, spec.start, IST_OFFSET_MINUTES);
        let end = to_utc_ms(spec.date, spec.end, IST_OFFSET_MINUTES);
        let id = format!("{schedule_id}-{}-{:02}{:02}", spec.date, spec.start.hour(), spec.start.minute());
        let slot = json!({
            "resourceType": "Slot", "id": id, "schedule": {"reference": format!("Schedule/{schedule_id}")},
            "status": "free",
            "start": vaidya_fhir::datetime::format_instant(start), "end": vaidya_fhir::datetime::format_instant(end),
            "extension": [{"url": super::booking::SLOT_CAPACITY_URL, "valueUnsignedInt": spec.capacity}]
        });
        out.push((id, prepare(slot)?));
    }
    Ok(out)
}

/// Inside the writer: store the slots that do not exist yet. Returns (created, already there).
pub fn store_slots(tx: &mut vaidya_store::WriteTx<'_>, author: &str, schedule_id: &str, slots: Vec<(String, Prepared)>) -> Result<(usize, usize), ApiError> {
    match vaidya_store::read::current(tx.conn(), "Schedule", schedule_id)? {
        Some(s) if !s.deleted => {}
        _ => return Err(ApiError::not_found(format!("Schedule/{schedule_id} is not known"))),
    }
    let (mut created, mut existing) = (0, 0);
    for (id, p) in slots {
        if tx.current("Slot", &id)?.is_some_and(|c| !c.deleted) {
            existing += 1;
            continue;
        }
        tx.put(author, "Slot", &id, &p.body, &p.index)?;
        tx.dispose(p);
        created += 1;
    }
    Ok((created, existing))
}
