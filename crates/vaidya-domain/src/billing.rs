//! Invoices: charges, payments, refunds, cancellation and fee waivers.
//!
//! The money rules, each enforced by the only methods that change an invoice:
//!
//! * the total is always the sum of `unit_price * quantity` over the lines: it is computed, never
//!   stored, so it cannot drift from the lines;
//! * lines are added only while the invoice is a draft: once issued, what the patient was shown
//!   is what they owe (a correction is a cancellation and a new invoice);
//! * a payment is positive, carries a receipt number unique within the invoice, and never exceeds
//!   the balance, so the balance never goes negative and no change is owed back by the system;
//! * a refund is positive and never exceeds what was paid minus what was already refunded;
//! * a fee waiver records who approved it and why, and writes off exactly the balance at that
//!   moment, bringing it to zero; there is at most one per invoice;
//! * cancellation needs a reason and is refused while any money is held (payments minus refunds
//!   must be zero: refund first), and a cancelled invoice takes no payments.
//!
//! So at all times `balance == total - paid + refunded - waived` and `0 <= balance <= total`.
//!
//! Overflow: every amount is checked when it enters, so the sums used later cannot overflow; the
//! `expect`s below state those invariants rather than handle a reachable case.

use crate::money::Paise;

/// How a payment was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentMode {
    Cash,
    Upi,
    Card,
}

/// Where an invoice is in its life. `Paid` means nothing is owed, whether by payment, by waiver
/// or both; `PartlyPaid` means something was paid or waived but a balance remains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvoiceStatus {
    Draft,
    Issued,
    PartlyPaid,
    Paid,
    Cancelled,
}

/// One charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceLine {
    description: String,
    unit_price: Paise,
    quantity: u32,
}

impl InvoiceLine {
    pub fn description(&self) -> &str {
        &self.description
    }
    pub fn unit_price(&self) -> Paise {
        self.unit_price
    }
    pub fn quantity(&self) -> u32 {
        self.quantity
    }
    /// `unit_price * quantity`; checked when the line was added.
    pub fn amount(&self) -> Paise {
        self.unit_price
            .checked_mul(self.quantity)
            .expect("invariant: line amount checked in add_line")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub mode: PaymentMode,
    pub amount: Paise,
    pub receipt: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub amount: Paise,
    pub receipt: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiver {
    /// The balance written off.
    pub amount: Paise,
    pub approver: String,
    pub reason: String,
}

/// Why an invoice operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillingError {
    #[error("a charge needs a description")]
    EmptyDescription,
    #[error("a charge needs a quantity of at least 1")]
    ZeroQuantity,
    #[error("a charge cannot have a negative unit price ({0})")]
    NegativePrice(Paise),
    #[error("the amount is too large")]
    Overflow,
    #[error("the invoice is no longer a draft, so charges cannot be changed")]
    NotDraft,
    #[error("an invoice needs at least one charge before it is issued")]
    NoLines,
    #[error("the invoice has not been issued yet")]
    NotIssued,
    #[error("the invoice is cancelled")]
    Cancelled,
    #[error("the amount must be more than zero, not {0}")]
    NonPositiveAmount(Paise),
    #[error("a receipt number is required")]
    EmptyReceipt,
    #[error("receipt {0} is already recorded on this invoice")]
    DuplicateReceipt(String),
    #[error("payment of {amount} is more than the balance of {balance}")]
    ExceedsBalance { amount: Paise, balance: Paise },
    #[error("refund of {amount} is more than the {refundable} paid and not yet refunded")]
    RefundExceedsPaid { amount: Paise, refundable: Paise },
    #[error("a reason is required")]
    EmptyReason,
    #[error("the invoice still holds {0} paid; refund it before cancelling")]
    HoldsPayment(Paise),
    #[error("a fee waiver needs the name of the approver")]
    EmptyApprover,
    #[error("the invoice already has a fee waiver")]
    AlreadyWaived,
    #[error("nothing is owed, so there is nothing to waive")]
    NothingToWaive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Draft,
    Issued,
    Cancelled,
}

/// An invoice. Every field is private: the only way to change it is through the methods that
/// enforce the rules in the module doc. A refused operation leaves the invoice unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    stage: Stage,
    lines: Vec<InvoiceLine>,
    payments: Vec<Payment>,
    refunds: Vec<Refund>,
    waiver: Option<Waiver>,
    cancel_reason: Option<String>,
}

impl Default for Invoice {
    fn default() -> Self {
        Invoice::new()
    }
}

/// Trimmed text, or the given error if nothing is left.
fn required(text: &str, err: BillingError) -> Result<String, BillingError> {
    let t = text.trim();
    if t.is_empty() {
        Err(err)
    } else {
        Ok(t.to_string())
    }
}

fn sum(amounts: impl Iterator<Item = Paise>) -> Paise {
    Paise::sum(amounts).expect("invariant: sums checked when amounts were recorded")
}

impl Invoice {
    /// An empty draft.
    pub fn new() -> Invoice {
        Invoice {
            stage: Stage::Draft,
            lines: Vec::new(),
            payments: Vec::new(),
            refunds: Vec::new(),
            waiver: None,
            cancel_reason: None,
        }
    }

    pub fn lines(&self) -> &[InvoiceLine] {
        &self.lines
    }
    pub fn payments(&self) -> &[Payment] {
        &self.payments
    }
    pub fn refunds(&self) -> &[Refund] {
        &self.refunds
    }
    pub fn waiver(&self) -> Option<&Waiver> {
        self.waiver.as_ref()
    }
    pub fn cancel_reason(&self) -> Option<&str> {
        self.cancel_reason.as_deref()
    }

    /// The sum of the lines' amounts.
    pub fn total(&self) -> Paise {
        sum(self.lines.iter().map(InvoiceLine::amount))
    }
    /// Everything received, before refunds.
    pub fn paid(&self) -> Paise {
        sum(self.payments.iter().map(|p| p.amount))
    }
    pub fn refunded(&self) -> Paise {
        sum(self.refunds.iter().map(|r| r.amount))
    }
    pub fn waived(&self) -> Paise {
        self.waiver.as_ref().map_or(Paise::ZERO, |w| w.amount)
    }
    /// Money the hospital holds for this invoice: paid minus refunded, never negative.
    pub fn net_paid(&self) -> Paise {
        self.paid()
            .checked_sub(self.refunded())
            .expect("invariant: refunds never exceed payments")
    }

    /// `total - paid + refunded - waived`; between zero and the total. For a cancelled invoice
    /// this is what was owed at cancellation, and is no longer collectable.
    pub fn balance(&self) -> Paise {
        let b = i128::from(self.total().0)
            - i128::from(self.net_paid().0)
            - i128::from(self.waived().0);
        Paise(i64::try_from(b).expect("invariant: 0 <= balance <= total"))
    }

    pub fn status(&self) -> InvoiceStatus {
        match self.stage {
            Stage::Draft => InvoiceStatus::Draft,
            Stage::Cancelled => InvoiceStatus::Cancelled,
            Stage::Issued if self.balance() == Paise::ZERO => InvoiceStatus::Paid,
            Stage::Issued if self.net_paid().is_positive() || self.waiver.is_some() => {
                InvoiceStatus::PartlyPaid
            }
            Stage::Issued => InvoiceStatus::Issued,
        }
    }

    /// Add a charge to a draft.
    pub fn add_line(
        &mut self,
        description: &str,
        unit_price: Paise,
        quantity: u32,
    ) -> Result<(), BillingError> {
        self.require_stage(Stage::Draft)?;
        let description = required(description, BillingError::EmptyDescription)?;
        if quantity == 0 {
            return Err(BillingError::ZeroQuantity);
        }
        if unit_price.is_negative() {
            return Err(BillingError::NegativePrice(unit_price));
        }
        let amount = unit_price
            .checked_mul(quantity)
            .ok_or(BillingError::Overflow)?;
        self.total()
            .checked_add(amount)
            .ok_or(BillingError::Overflow)?;
        self.lines.push(InvoiceLine {
            description,
            unit_price,
            quantity,
        });
        Ok(())
    }

    /// Freeze the lines and make the invoice payable.
    pub fn issue(&mut self) -> Result<(), BillingError> {
        self.require_stage(Stage::Draft)?;
        if self.lines.is_empty() {
            return Err(BillingError::NoLines);
        }
        self.stage = Stage::Issued;
        Ok(())
    }

    /// Record a payment against the balance.
    pub fn pay(
        &mut self,
        mode: PaymentMode,
        amount: Paise,
        receipt: &str,
    ) -> Result<(), BillingError> {
        self.require_stage(Stage::Issued)?;
        positive(amount)?;
        let receipt = self.new_receipt(receipt)?;
        let balance = self.balance();
        if amount > balance {
            return Err(BillingError::ExceedsBalance { amount, balance });
        }
        // Repeated pay/refund cycles could in principle push the running sum past i64.
        self.paid()
            .checked_add(amount)
            .ok_or(BillingError::Overflow)?;
        self.payments.push(Payment {
            mode,
            amount,
            receipt,
        });
        Ok(())
    }

    /// Give money back, at most what is held.
    pub fn refund(
        &mut self,
        amount: Paise,
        receipt: &str,
        reason: &str,
    ) -> Result<(), BillingError> {
        self.require_stage(Stage::Issued)?;
        positive(amount)?;
        let receipt = self.new_receipt(receipt)?;
        let reason = required(reason, BillingError::EmptyReason)?;
        let refundable = self.net_paid();
        if amount > refundable {
            return Err(BillingError::RefundExceedsPaid { amount, refundable });
        }
        self.refunds.push(Refund {
            amount,
            receipt,
            reason,
        });
        Ok(())
    }

    /// Write off the whole remaining balance for a patient who cannot pay.
    pub fn waive(&mut self, approver: &str, reason: &str) -> Result<(), BillingError> {
        self.require_stage(Stage::Issued)?;
        let approver = required(approver, BillingError::EmptyApprover)?;
        let reason = required(reason, BillingError::EmptyReason)?;
        if self.waiver.is_some() {
            return Err(BillingError::AlreadyWaived);
        }
        let amount = self.balance();
        if amount == Paise::ZERO {
            return Err(BillingError::NothingToWaive);
        }
        self.waiver = Some(Waiver {
            amount,
            approver,
            reason,
        });
        Ok(())
    }

    /// Cancel a draft or issued invoice that holds no money.
    pub fn cancel(&mut self, reason: &str) -> Result<(), BillingError> {
        if self.stage == Stage::Cancelled {
            return Err(BillingError::Cancelled);
        }
        let reason = required(reason, BillingError::EmptyReason)?;
        let held = self.net_paid();
        if held != Paise::ZERO {
            return Err(BillingError::HoldsPayment(held));
        }
        self.stage = Stage::Cancelled;
        self.cancel_reason = Some(reason);
        Ok(())
    }

    fn require_stage(&self, want: Stage) -> Result<(), BillingError> {
        match (self.stage, want) {
            (have, want) if have == want => Ok(()),
            (Stage::Cancelled, _) => Err(BillingError::Cancelled),
            (Stage::Draft, _) => Err(BillingError::NotIssued),
            (Stage::Issued, _) => Err(BillingError::NotDraft),
        }
    }

    /// A trimmed, non-empty receipt number not already used on this invoice (a double-submitted
    /// form must not record the same money twice).
    fn new_receipt(&self, receipt: &str) -> Result<String, BillingError> {
        let receipt = required(receipt, BillingError::EmptyReceipt)?;
        let used = self
            .payments
            .iter()
            .map(|p| &p.receipt)
            .chain(self.refunds.iter().map(|r| &r.receipt));
        if used.into_iter().any(|r| *r == receipt) {
            return Err(BillingError::DuplicateReceipt(receipt));
        }
        Ok(receipt)
    }
}

fn positive(amount: Paise) -> Result<(), BillingError> {
    if amount.is_positive() {
        Ok(())
    } else {
        Err(BillingError::NonPositiveAmount(amount))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rs(rupees: i64) -> Paise {
        Paise::from_rupees(rupees).unwrap()
    }

    /// OPD registration ₹10 and two blood tests at ₹150: ₹310.
    fn issued() -> Invoice {
        let mut inv = Invoice::new();
        inv.add_line("OPD registration", rs(10), 1).unwrap();
        inv.add_line("CBC", rs(150), 2).unwrap();
        inv.issue().unwrap();
        inv
    }

    #[test]
    fn total_is_the_sum_of_lines() {
        let inv = issued();
        assert_eq!(inv.total(), rs(310));
        assert_eq!(inv.lines()[1].amount(), rs(300));
        assert_eq!(inv.lines()[1].description(), "CBC");
        assert_eq!(
            (inv.lines()[1].unit_price(), inv.lines()[1].quantity()),
            (rs(150), 2)
        );
        assert_eq!(inv.balance(), rs(310));
        assert_eq!(inv.status(), InvoiceStatus::Issued);
    }

    #[test]
    fn partial_payment_then_full() {
        let mut inv = issued();
        inv.pay(PaymentMode::Cash, rs(100), "R-1").unwrap();
        assert_eq!(inv.status(), InvoiceStatus::PartlyPaid);
        assert_eq!(inv.balance(), rs(210));
        inv.pay(PaymentMode::Upi, rs(210), "R-2").unwrap();
        assert_eq!(inv.status(), InvoiceStatus::Paid);
        assert_eq!(inv.balance(), Paise::ZERO);
        assert_eq!(inv.paid(), rs(310));
        assert_eq!(
            inv.payments()[1],
            Payment {
                mode: PaymentMode::Upi,
                amount: rs(210),
                receipt: "R-2".into()
            }
        );
    }

    #[test]
    fn refund_reopens_balance_and_allows_cancel() {
        let mut inv = issued();
        inv.pay(PaymentMode::Card, rs(310), "R-1").unwrap();
        inv.refund(rs(300), "RF-1", "test not done").unwrap();
        assert_eq!(inv.status(), InvoiceStatus::PartlyPaid);
        assert_eq!(inv.balance(), rs(300));
        assert_eq!(
            inv.cancel("duplicate visit"),
            Err(BillingError::HoldsPayment(rs(10)))
        );
        inv.refund(rs(10), "RF-2", "visit cancelled").unwrap();
        assert_eq!(inv.net_paid(), Paise::ZERO);
        assert_eq!(inv.status(), InvoiceStatus::Issued);
        inv.cancel("  duplicate visit ").unwrap();
        assert_eq!(inv.status(), InvoiceStatus::Cancelled);
        assert_eq!(inv.cancel_reason(), Some("duplicate visit"));
        assert_eq!(inv.refunds().len(), 2);
    }

    #[test]
    fn waiver_clears_the_balance_and_records_the_approver() {
        let mut inv = issued();
        inv.pay(PaymentMode::Cash, rs(10), "R-1").unwrap();
        inv.waive("Dr. Meena Sharma (MS)", "BPL card holder")
            .unwrap();
        assert_eq!(inv.balance(), Paise::ZERO);
        assert_eq!(inv.status(), InvoiceStatus::Paid);
        let w = inv.waiver().unwrap();
        assert_eq!(
            (w.amount, w.approver.as_str(), w.reason.as_str()),
            (rs(300), "Dr. Meena Sharma (MS)", "BPL card holder")
        );
        assert_eq!(inv.waived(), rs(300));
        // A later refund of what was paid reopens only that part.
        inv.refund(rs(10), "RF-1", "overcharged").unwrap();
        assert_eq!(inv.balance(), rs(10));
        assert_eq!(inv.status(), InvoiceStatus::PartlyPaid);
    }

    #[test]
    fn zero_total_invoice_is_paid_on_issue() {
        let mut inv = Invoice::default();
        inv.add_line("Free camp consultation", Paise::ZERO, 1)
            .unwrap();
        inv.issue().unwrap();
        assert_eq!(inv.status(), InvoiceStatus::Paid);
        assert_eq!(inv.waive("MS", "camp"), Err(BillingError::NothingToWaive));
    }

    /// Each refused operation, on a named starting invoice, with the error it must give; the
    /// invoice must be unchanged afterwards.
    #[test]
    fn refusals() {
        type Op = fn(&mut Invoice) -> Result<(), BillingError>;
        let draft = || Invoice::new();
        let paid_100 = || {
            let mut i = issued();
            i.pay(PaymentMode::Cash, rs(100), "R-1").unwrap();
            i
        };
        let cancelled = || {
            let mut i = issued();
            i.cancel("wrong patient").unwrap();
            i
        };
        let waived = || {
            let mut i = issued();
            i.waive("MS", "BPL").unwrap();
            i
        };
        let cases: Vec<(&str, Invoice, Op, BillingError)> = vec![
            (
                "empty description",
                draft(),
                |i| i.add_line("  ", rs(1), 1),
                BillingError::EmptyDescription,
            ),
            (
                "zero quantity",
                draft(),
                |i| i.add_line("X-ray", rs(1), 0),
                BillingError::ZeroQuantity,
            ),
            (
                "negative price",
                draft(),
                |i| i.add_line("X-ray", Paise(-1), 1),
                BillingError::NegativePrice(Paise(-1)),
            ),
            (
                "line overflow",
                draft(),
                |i| i.add_line("X-ray", Paise(i64::MAX), 2),
                BillingError::Overflow,
            ),
            (
                "total overflow",
                {
                    let mut i = draft();
                    i.add_line("A", Paise(i64::MAX), 1).unwrap();
                    i
                },
                |i| i.add_line("B", Paise(1), 1),
                BillingError::Overflow,
            ),
            (
                "line after issue",
                issued(),
                |i| i.add_line("X-ray", rs(1), 1),
                BillingError::NotDraft,
            ),
            (
                "issue twice",
                issued(),
                |i| i.issue(),
                BillingError::NotDraft,
            ),
            ("issue empty", draft(), |i| i.issue(), BillingError::NoLines),
            (
                "pay a draft",
                draft(),
                |i| i.pay(PaymentMode::Cash, rs(1), "R"),
                BillingError::NotIssued,
            ),
            (
                "pay cancelled",
                cancelled(),
                |i| i.pay(PaymentMode::Cash, rs(1), "R"),
                BillingError::Cancelled,
            ),
            (
                "pay zero",
                issued(),
                |i| i.pay(PaymentMode::Cash, Paise::ZERO, "R"),
                BillingError::NonPositiveAmount(Paise::ZERO),
            ),
            (
                "pay negative",
                issued(),
                |i| i.pay(PaymentMode::Upi, Paise(-5), "R"),
                BillingError::NonPositiveAmount(Paise(-5)),
            ),
            (
                "pay no receipt",
                issued(),
                |i| i.pay(PaymentMode::Card, rs(1), " "),
                BillingError::EmptyReceipt,
            ),
            (
                "pay duplicate receipt",
                paid_100(),
                |i| i.pay(PaymentMode::Card, rs(1), "R-1"),
                BillingError::DuplicateReceipt("R-1".into()),
            ),
            (
                "pay over balance",
                paid_100(),
                |i| i.pay(PaymentMode::Cash, rs(211), "R-2"),
                BillingError::ExceedsBalance {
                    amount: rs(211),
                    balance: rs(210),
                },
            ),
            (
                "pay a waived invoice",
                waived(),
                |i| i.pay(PaymentMode::Cash, Paise(1), "R-2"),
                BillingError::ExceedsBalance {
                    amount: Paise(1),
                    balance: Paise::ZERO,
                },
            ),
            (
                "refund a draft",
                draft(),
                |i| i.refund(rs(1), "RF", "x"),
                BillingError::NotIssued,
            ),
            (
                "refund cancelled",
                cancelled(),
                |i| i.refund(rs(1), "RF", "x"),
                BillingError::Cancelled,
            ),
            (
                "refund nothing paid",
                issued(),
                |i| i.refund(rs(1), "RF", "x"),
                BillingError::RefundExceedsPaid {
                    amount: rs(1),
                    refundable: Paise::ZERO,
                },
            ),
            (
                "refund too much",
                paid_100(),
                |i| i.refund(Paise(10_001), "RF", "x"),
                BillingError::RefundExceedsPaid {
                    amount: Paise(10_001),
                    refundable: rs(100),
                },
            ),
            (
                "refund zero",
                paid_100(),
                |i| i.refund(Paise::ZERO, "RF", "x"),
                BillingError::NonPositiveAmount(Paise::ZERO),
            ),
            (
                "refund no receipt",
                paid_100(),
                |i| i.refund(rs(1), "", "x"),
                BillingError::EmptyReceipt,
            ),
            (
                "refund reuses payment receipt",
                paid_100(),
                |i| i.refund(rs(1), "R-1", "x"),
                BillingError::DuplicateReceipt("R-1".into()),
            ),
            (
                "refund no reason",
                paid_100(),
                |i| i.refund(rs(1), "RF", " "),
                BillingError::EmptyReason,
            ),
            (
                "waive a draft",
                draft(),
                |i| i.waive("MS", "BPL"),
                BillingError::NotIssued,
            ),
            (
                "waive cancelled",
                cancelled(),
                |i| i.waive("MS", "BPL"),
                BillingError::Cancelled,
            ),
            (
                "waive no approver",
                issued(),
                |i| i.waive(" ", "BPL"),
                BillingError::EmptyApprover,
            ),
            (
                "waive no reason",
                issued(),
                |i| i.waive("MS", ""),
                BillingError::EmptyReason,
            ),
            (
                "waive twice",
                waived(),
                |i| i.waive("MS", "again"),
                BillingError::AlreadyWaived,
            ),
            (
                "waive fully paid",
                {
                    let mut i = issued();
                    i.pay(PaymentMode::Cash, rs(310), "R-1").unwrap();
                    i
                },
                |i| i.waive("MS", "BPL"),
                BillingError::NothingToWaive,
            ),
            (
                "cancel no reason",
                issued(),
                |i| i.cancel("   "),
                BillingError::EmptyReason,
            ),
            (
                "cancel holding money",
                paid_100(),
                |i| i.cancel("wrong patient"),
                BillingError::HoldsPayment(rs(100)),
            ),
            (
                "cancel twice",
                cancelled(),
                |i| i.cancel("again"),
                BillingError::Cancelled,
            ),
        ];
        for (name, mut inv, op, want) in cases {
            let before = inv.clone();
            assert_eq!(op(&mut inv), Err(want), "{name}");
            assert_eq!(
                inv, before,
                "{name}: a refused operation changed the invoice"
            );
        }
    }

    #[test]
    fn cancelling_a_draft_is_allowed() {
        let mut inv = Invoice::new();
        inv.add_line("X-ray", rs(100), 1).unwrap();
        inv.cancel("entered twice").unwrap();
        assert_eq!(inv.status(), InvoiceStatus::Cancelled);
        assert_eq!(inv.add_line("X", rs(1), 1), Err(BillingError::Cancelled));
    }

    #[test]
    fn error_messages_are_readable() {
        let e = BillingError::ExceedsBalance {
            amount: rs(211),
            balance: rs(210),
        };
        assert_eq!(
            e.to_string(),
            "payment of ₹211.00 is more than the balance of ₹210.00"
        );
        assert_eq!(
            BillingError::HoldsPayment(Paise(1050)).to_string(),
            "the invoice still holds ₹10.50 paid; refund it before cancelling"
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Line(i64, u32),
        Issue,
        Pay(u8, i64),
        Refund(i64),
        Waive,
        Cancel,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0i64..100_000, 1u32..5).prop_map(|(p, q)| Op::Line(p, q)),
            1 => Just(Op::Issue),
            4 => (0u8..3, -10i64..300_000).prop_map(|(m, a)| Op::Pay(m, a)),
            2 => (-10i64..300_000).prop_map(Op::Refund),
            1 => Just(Op::Waive),
            1 => Just(Op::Cancel),
        ]
    }

    proptest! {
        #[test]
        fn money_invariants_hold_under_any_sequence(ops in proptest::collection::vec(op(), 0..60)) {
            let mut inv = Invoice::new();
            for (n, op) in ops.into_iter().enumerate() {
                let receipt = format!("R-{n}");
                let before = inv.clone();
                let result = match op {
                    Op::Line(p, q) => inv.add_line("charge", Paise(p), q),
                    Op::Issue => inv.issue(),
                    Op::Pay(m, a) => {
                        let mode = [PaymentMode::Cash, PaymentMode::Upi, PaymentMode::Card][usize::from(m)];
                        inv.pay(mode, Paise(a), &receipt)
                    }
                    Op::Refund(a) => inv.refund(Paise(a), &receipt, "reason"),
                    Op::Waive => inv.waive("approver", "reason"),
                    Op::Cancel => inv.cancel("reason"),
                };
                if result.is_err() {
                    prop_assert_eq!(&inv, &before);
                }
                let lines: i128 = inv.lines().iter().map(|l| i128::from(l.unit_price().0) * i128::from(l.quantity())).sum();
                let paid: i128 = inv.payments().iter().map(|p| i128::from(p.amount.0)).sum();
                let refunded: i128 = inv.refunds().iter().map(|r| i128::from(r.amount.0)).sum();
                let waived = i128::from(inv.waived().0);
                prop_assert_eq!(i128::from(inv.total().0), lines);
                prop_assert!(refunded <= paid);
                prop_assert_eq!(i128::from(inv.balance().0), lines - paid + refunded - waived);
                prop_assert!(inv.balance() >= Paise::ZERO && inv.balance() <= inv.total());
                prop_assert!(inv.payments().iter().all(|p| p.amount.is_positive()));
                prop_assert!(inv.refunds().iter().all(|r| r.amount.is_positive()));
                if inv.status() == InvoiceStatus::Cancelled {
                    prop_assert_eq!(inv.net_paid(), Paise::ZERO);
                }
                if inv.status() == InvoiceStatus::Paid {
                    prop_assert_eq!(inv.balance(), Paise::ZERO);
                }
            }
        }
    }
}
