//! Charges: what a patient owes for one service, before it is on an invoice.
//!
//! A charge is created when a service is given (registration, a consultation booked, a test
//! ordered) or by billing staff by hand. Its unit price is fixed when it is created: taken from
//! the tariff, or set by hand with a reason. A later tariff change does not alter charges
//! already made, so what the patient was told is what they are billed.
//!
//! A charge's life:
//!
//! ```text
//!  billable ──bill──▶ billed ──unbill (its invoice cancelled)──▶ billable
//!     │
//!     └──abort (service cancelled)──▶ aborted
//! ```
//!
//! A billed charge cannot be aborted (the money question is then the invoice's: refund or
//! cancel it), and a charge is on at most one live invoice at a time.

use crate::money::Paise;
use std::fmt;
use std::str::FromStr;

/// The largest quantity on one charge (guards against a mistyped `1000000`).
pub const MAX_QUANTITY: u32 = 1_000;

/// Where a charge is in its life (the FHIR ChargeItem status codes used here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChargeStatus {
    Billable,
    Billed,
    Aborted,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChargeError {
    #[error("a charge's price cannot be negative ({0})")]
    NegativePrice(Paise),
    #[error("a charge's quantity must be 1 to {MAX_QUANTITY}, not {0}")]
    BadQuantity(u32),
    #[error("the amount overflows")]
    Overflow,
    #[error("a price set by hand needs a reason")]
    OverrideWithoutReason,
    #[error("a {0} charge cannot be billed")]
    NotBillable(ChargeStatus),
    #[error("a {0} charge is not on an invoice")]
    NotBilled(ChargeStatus),
    #[error("a {0} charge cannot be aborted (cancel or refund its invoice instead)")]
    CannotAbort(ChargeStatus),
    #[error("'{0}' is not a charge status (billable, billed or aborted)")]
    UnknownStatus(String),
}

impl ChargeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ChargeStatus::Billable => "billable",
            ChargeStatus::Billed => "billed",
            ChargeStatus::Aborted => "aborted",
        }
    }

    /// Put on an invoice.
    pub fn bill(self) -> Result<ChargeStatus, ChargeError> {
        match self {
            ChargeStatus::Billable => Ok(ChargeStatus::Billed),
            other => Err(ChargeError::NotBillable(other)),
        }
    }

    /// Taken off an invoice that was cancelled: billable again.
    pub fn unbill(self) -> Result<ChargeStatus, ChargeError> {
        match self {
            ChargeStatus::Billed => Ok(ChargeStatus::Billable),
            other => Err(ChargeError::NotBilled(other)),
        }
    }

    /// The service was not given (appointment cancelled, order revoked). Aborting an aborted
    /// charge changes nothing.
    pub fn abort(self) -> Result<ChargeStatus, ChargeError> {
        match self {
            ChargeStatus::Billable | ChargeStatus::Aborted => Ok(ChargeStatus::Aborted),
            ChargeStatus::Billed => Err(ChargeError::CannotAbort(self)),
        }
    }
}

impl fmt::Display for ChargeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChargeStatus {
    type Err = ChargeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "billable" => Ok(ChargeStatus::Billable),
            "billed" => Ok(ChargeStatus::Billed),
            "aborted" => Ok(ChargeStatus::Aborted),
            other => Err(ChargeError::UnknownStatus(other.to_string())),
        }
    }
}

/// Where a charge's unit price came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriceSource {
    /// The tariff's price when the charge was made.
    Tariff(Paise),
    /// Set by billing staff, with the reason (a package rate, a correction).
    Override { price: Paise, reason: String },
}

/// A charge's price: unit price times quantity, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargePrice {
    unit_price: Paise,
    quantity: u32,
}

impl ChargePrice {
    pub fn new(source: &PriceSource, quantity: u32) -> Result<ChargePrice, ChargeError> {
        let unit_price = match source {
            PriceSource::Tariff(p) => *p,
            PriceSource::Override { price, reason } => {
                if reason.trim().is_empty() {
                    return Err(ChargeError::OverrideWithoutReason);
                }
                *price
            }
        };
        if unit_price.is_negative() {
            return Err(ChargeError::NegativePrice(unit_price));
        }
        if quantity == 0 || quantity > MAX_QUANTITY {
            return Err(ChargeError::BadQuantity(quantity));
        }
        unit_price.checked_mul(quantity).ok_or(ChargeError::Overflow)?;
        Ok(ChargePrice { unit_price, quantity })
    }

    pub fn unit_price(&self) -> Paise {
        self.unit_price
    }

    pub fn quantity(&self) -> u32 {
        self.quantity
    }

    pub fn amount(&self) -> Paise {
        self.unit_price.checked_mul(self.quantity).expect("checked in new")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn life_of_a_charge() {
        let s = ChargeStatus::Billable;
        assert_eq!(s.bill(), Ok(ChargeStatus::Billed));
        assert_eq!(s.bill().unwrap().bill(), Err(ChargeError::NotBillable(ChargeStatus::Billed)));
        assert_eq!(s.bill().unwrap().abort(), Err(ChargeError::CannotAbort(ChargeStatus::Billed)));
        assert_eq!(s.bill().unwrap().unbill(), Ok(ChargeStatus::Billable));
        assert_eq!(s.abort(), Ok(ChargeStatus::Aborted));
        assert_eq!(ChargeStatus::Aborted.abort(), Ok(ChargeStatus::Aborted));
        assert_eq!(ChargeStatus::Aborted.bill(), Err(ChargeError::NotBillable(ChargeStatus::Aborted)));
        assert_eq!(ChargeStatus::Billable.unbill(), Err(ChargeError::NotBilled(ChargeStatus::Billable)));
        for s in [ChargeStatus::Billable, ChargeStatus::Billed, ChargeStatus::Aborted] {
            assert_eq!(s.as_str().parse::<ChargeStatus>(), Ok(s));
        }
        assert!("planned".parse::<ChargeStatus>().is_err());
    }

    #[test]
    fn prices() {
        let p = ChargePrice::new(&PriceSource::Tariff(Paise(15_000)), 2).unwrap();
        assert_eq!(p.amount(), Paise(30_000));
        assert_eq!(ChargePrice::new(&PriceSource::Tariff(Paise(-1)), 1), Err(ChargeError::NegativePrice(Paise(-1))));
        assert_eq!(ChargePrice::new(&PriceSource::Tariff(Paise(1)), 0), Err(ChargeError::BadQuantity(0)));
        assert_eq!(ChargePrice::new(&PriceSource::Tariff(Paise(1)), MAX_QUANTITY + 1), Err(ChargeError::BadQuantity(MAX_QUANTITY + 1)));
        let no_reason = PriceSource::Override { price: Paise(100), reason: "  ".into() };
        assert_eq!(ChargePrice::new(&no_reason, 1), Err(ChargeError::OverrideWithoutReason));
        let ok = PriceSource::Override { price: Paise(0), reason: "BPL card".into() };
        assert_eq!(ChargePrice::new(&ok, 1).unwrap().amount(), Paise::ZERO);
        assert_eq!(ChargePrice::new(&PriceSource::Tariff(Paise(i64::MAX)), 2), Err(ChargeError::Overflow));
    }

    proptest! {
        /// Whatever sequence of bill/unbill/abort is tried, a billed charge is never aborted
        /// and an aborted charge never becomes billed.
        #[test]
        fn aborted_never_billed(steps in proptest::collection::vec(0u8..3, 0..40)) {
            let mut s = ChargeStatus::Billable;
            for step in steps {
                let before = s;
                let next = match step { 0 => s.bill(), 1 => s.unbill(), _ => s.abort() };
                if let Ok(n) = next {
                    prop_assert!(!(before == ChargeStatus::Billed && n == ChargeStatus::Aborted));
                    prop_assert!(!(before == ChargeStatus::Aborted && n != ChargeStatus::Aborted));
                    s = n;
                }
            }
        }

        #[test]
        fn amount_is_price_times_quantity(price in 0i64..10_000_000, qty in 1u32..=MAX_QUANTITY) {
            let p = ChargePrice::new(&PriceSource::Tariff(Paise(price)), qty).unwrap();
            prop_assert_eq!(p.amount(), Paise(price * qty as i64));
        }
    }
}
