//! Vaidya's hospital rules, as pure functions and types that are valid by construction.
//!
//! **Architecture invariant:** no IO, no HTTP, no SQL, no FHIR JSON, and no serde derives on
//! domain types. This crate decides what is a valid UHID, a bookable slot or a payable invoice;
//! other crates map these types to and from FHIR and storage. Keeping it pure keeps its tests
//! fast (unit and property tests, no fixtures) and keeps the rules in one place that every
//! entry point - web UI, FHIR API, department node during an outage - must go through.
//!
//! **Parse, don't validate:** every identifier is parsed once, at the edge, into a type that
//! cannot hold an invalid value (`FromStr`/`TryFrom<&str>` to get in, `Display` to get out).
//!
//! Map:
//! - [`uhid`]: the hospital's Unique Health ID, with issuer code and Damm check digit.
//! - [`abha`]: ABHA number (14 digits) and ABHA address (`name@abdm`).
//! - [`mobile`]: Indian mobile numbers, normalised to `+91XXXXXXXXXX`.
//! - [`money`]: `Paise`, integer money with checked arithmetic and Indian formatting.
//! - [`schedule`]: dates, times, UTC conversion, weekly OPD schedules and their slots.
//! - [`booking`]: a slot's load; never overbooked, never booked in the past.
//! - [`charges`]: a charge's price (tariff or by hand, with a reason) and its billable-billed-aborted life.
//! - [`billing`]: invoices, payments, refunds, cancellation and fee waivers.
//! - [`cash`]: the day-end cash report per counter and cashier.
//! - [`queue`]: the OPD queue: tokens and the waiting-called-seen-done states.
//! - [`age`]: a patient's age on a date (years, or months and days for infants).

pub mod abha;
pub mod age;
pub mod billing;
pub mod booking;
pub mod cash;
pub mod charges;
pub mod mobile;
pub mod money;
pub mod queue;
pub mod schedule;
pub mod uhid;

pub use abha::{AbhaAddress, AbhaNumber};
pub use age::Age;
pub use billing::{Invoice, InvoiceStatus, PaymentMode};
pub use charges::{ChargePrice, ChargeStatus, PriceSource};
pub use booking::{BookingError, SlotLoad, SlotStatus};
pub use mobile::Mobile;
pub use money::Paise;
pub use queue::{QueueState, QueueToken};
pub use schedule::{LocalDate, LocalTime, SlotSpec, Weekday, WeeklySchedule, to_utc_ms};
pub use uhid::Uhid;
