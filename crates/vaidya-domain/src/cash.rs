//! The day-end cash report: what each counter and each cashier took in, by payment mode, and
//! what they paid back, so that the cash in each drawer can be counted against it.
//!
//! The report is built from the day's money events (payments and refunds, each with its
//! receipt number). Every receipt is counted once: the same event seen twice (it is read from
//! every stored version of an invoice) is ignored, but two different events under one receipt
//! number are refused, since that would mean the receipt book is wrong.

use crate::billing::PaymentMode;
use crate::money::Paise;
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

/// Payment or refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    In,
    Out,
}

/// One payment or refund at a counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CashEvent {
    pub receipt: String,
    pub counter: String,
    pub cashier: String,
    pub direction: Direction,
    pub mode: PaymentMode,
    pub amount: Paise,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CashError {
    #[error("receipt {0} appears on two different payments")]
    ConflictingReceipt(String),
    #[error("a money event needs a positive amount, not {0}")]
    NonPositive(Paise),
    #[error("the day's total overflows")]
    Overflow,
}

/// Money by payment mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByMode {
    pub cash: Paise,
    pub upi: Paise,
    pub card: Paise,
}

impl ByMode {
    fn add(&mut self, mode: PaymentMode, amount: Paise) -> Result<(), CashError> {
        let slot = match mode {
            PaymentMode::Cash => &mut self.cash,
            PaymentMode::Upi => &mut self.upi,
            PaymentMode::Card => &mut self.card,
        };
        *slot = slot.checked_add(amount).ok_or(CashError::Overflow)?;
        Ok(())
    }

    pub fn total(&self) -> Paise {
        Paise::sum([self.cash, self.upi, self.card]).expect("each part was checked when added")
    }
}

/// What one cashier did at one counter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Takings {
    pub payments: u32,
    pub collected: ByMode,
    pub refunds: u32,
    pub refunded: ByMode,
}

impl Takings {
    /// What the drawer should hold in cash: cash collected minus cash paid back.
    pub fn cash_in_drawer(&self) -> Paise {
        self.collected.cash.checked_sub(self.refunded.cash).expect("bounded by the checked totals")
    }

    /// Collected minus refunded, all modes.
    pub fn net(&self) -> Paise {
        self.collected.total().checked_sub(self.refunded.total()).expect("bounded by the checked totals")
    }

    fn add(&mut self, e: &CashEvent) -> Result<(), CashError> {
        match e.direction {
            Direction::In => {
                self.payments += 1;
                self.collected.add(e.mode, e.amount)
            }
            Direction::Out => {
                self.refunds += 1;
                self.refunded.add(e.mode, e.amount)
            }
        }
    }
}

/// The day's report, built event by event.
#[derive(Debug, Clone, Default)]
pub struct DayReport {
    seen: BTreeMap<String, CashEvent>,
    rows: BTreeMap<(String, String), Takings>,
    total: Takings,
}

impl DayReport {
    pub fn new() -> DayReport {
        DayReport::default()
    }

    /// Count an event; the same event again is ignored.
    pub fn add(&mut self, event: CashEvent) -> Result<(), CashError> {
        if !event.amount.is_positive() {
            return Err(CashError::NonPositive(event.amount));
        }
        match self.seen.entry(event.receipt.clone()) {
            Entry::Occupied(o) if *o.get() == event => return Ok(()),
            Entry::Occupied(_) => return Err(CashError::ConflictingReceipt(event.receipt)),
            Entry::Vacant(v) => {
                v.insert(event.clone());
            }
        }
        // Check on a copy first, so that a refused event changes nothing.
        let key = (event.counter.clone(), event.cashier.clone());
        let mut row = self.rows.get(&key).cloned().unwrap_or_default();
        let mut total = self.total.clone();
        row.add(&event)?;
        total.add(&event)?;
        self.rows.insert(key, row);
        self.total = total;
        Ok(())
    }

    /// One row per (counter, cashier), in order of counter then cashier.
    pub fn rows(&self) -> impl Iterator<Item = (&str, &str, &Takings)> {
        self.rows.iter().map(|((c, k), t)| (c.as_str(), k.as_str(), t))
    }

    /// Per counter, all its cashiers together.
    pub fn by_counter(&self) -> BTreeMap<&str, Takings> {
        let mut out: BTreeMap<&str, Takings> = BTreeMap::new();
        for ((counter, _), t) in &self.rows {
            let o = out.entry(counter).or_default();
            o.payments += t.payments;
            o.refunds += t.refunds;
            for (mine, theirs) in [(&mut o.collected, &t.collected), (&mut o.refunded, &t.refunded)] {
                mine.cash = mine.cash.checked_add(theirs.cash).expect("bounded by the total");
                mine.upi = mine.upi.checked_add(theirs.upi).expect("bounded by the total");
                mine.card = mine.card.checked_add(theirs.card).expect("bounded by the total");
            }
        }
        out
    }

    pub fn total(&self) -> &Takings {
        &self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ev(receipt: &str, counter: &str, cashier: &str, direction: Direction, mode: PaymentMode, amount: i64) -> CashEvent {
        CashEvent { receipt: receipt.into(), counter: counter.into(), cashier: cashier.into(), direction, mode, amount: Paise(amount) }
    }

    #[test]
    fn counts_each_receipt_once_per_counter_and_cashier() {
        let mut r = DayReport::new();
        r.add(ev("R1", "OPD-1", "asha", Direction::In, PaymentMode::Cash, 1_000)).unwrap();
        r.add(ev("R1", "OPD-1", "asha", Direction::In, PaymentMode::Cash, 1_000)).unwrap(); // seen again
        r.add(ev("R2", "OPD-1", "asha", Direction::In, PaymentMode::Upi, 15_000)).unwrap();
        r.add(ev("R3", "OPD-1", "ravi", Direction::In, PaymentMode::Card, 20_000)).unwrap();
        r.add(ev("R4", "OPD-2", "asha", Direction::Out, PaymentMode::Cash, 500)).unwrap();
        let rows: Vec<_> = r.rows().collect();
        assert_eq!(rows.len(), 3);
        let (c, k, t) = rows[0];
        assert_eq!((c, k), ("OPD-1", "asha"));
        assert_eq!((t.payments, t.collected.cash, t.collected.upi, t.cash_in_drawer()), (2, Paise(1_000), Paise(15_000), Paise(1_000)));
        assert_eq!(rows[2].2.cash_in_drawer(), Paise(-500));
        assert_eq!(r.total().net(), Paise(1_000 + 15_000 + 20_000 - 500));
        assert_eq!(r.by_counter()["OPD-1"].collected.total(), Paise(36_000));
        let err = r.add(ev("R1", "OPD-9", "x", Direction::In, PaymentMode::Cash, 7)).unwrap_err();
        assert_eq!(err, CashError::ConflictingReceipt("R1".into()));
        assert_eq!(r.add(ev("R9", "a", "b", Direction::In, PaymentMode::Cash, 0)), Err(CashError::NonPositive(Paise(0))));
    }

    proptest! {
        /// The total is the sum of the rows, and net = collected - refunded, whatever arrives
        /// (duplicates included).
        #[test]
        fn totals_are_the_sum_of_rows(events in proptest::collection::vec((0u8..20, 0u8..3, 0u8..3, any::<bool>(), 0u8..3, 1i64..100_000), 0..60)) {
            let mut r = DayReport::new();
            for (receipt, counter, cashier, out, mode, amount) in events {
                let mode = [PaymentMode::Cash, PaymentMode::Upi, PaymentMode::Card][mode as usize];
                let dir = if out { Direction::Out } else { Direction::In };
                let _ = r.add(ev(&format!("R{receipt}"), &format!("C{counter}"), &format!("K{cashier}"), dir, mode, amount));
            }
            let collected: i64 = r.rows().map(|(_, _, t)| t.collected.total().0).sum();
            let refunded: i64 = r.rows().map(|(_, _, t)| t.refunded.total().0).sum();
            prop_assert_eq!(r.total().collected.total().0, collected);
            prop_assert_eq!(r.total().refunded.total().0, refunded);
            prop_assert_eq!(r.total().net().0, collected - refunded);
            let by_counter: i64 = r.by_counter().values().map(|t| t.net().0).sum();
            prop_assert_eq!(by_counter, collected - refunded);
            prop_assert!(r.seen.len() <= 20);
        }
    }
}
