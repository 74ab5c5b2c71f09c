//! `Paise`: money as a whole number of paise (1 rupee = 100 paise).
//!
//! Integers, never floating point: `0.1 + 0.2` rupees must be exactly 30 paise on a bill and in
//! the ledger. All arithmetic is checked and returns `Option`, and there is deliberately no
//! `Add`/`Sub`/`Sum` operator implementation, so an overflow can never wrap or panic silently
//! in billing code: the caller has to decide what an overflow means.
//!
//! Display uses the Indian format: rupee sign, lakh/crore digit grouping (last three digits,
//! then groups of two), always two decimals: `₹1,23,45,678.90`, negative `-₹12.50`.
//!
//! Parsing takes rupee strings as staff type them: optional `-`, optional `₹` with optional
//! spaces after it, digits with optional commas between digits (both Indian `1,23,456` and
//! Western `123,456` grouping are accepted, since both are typed; the grouping is not checked),
//! and at most two decimals. `"1234.5"` is 1234 rupees 50 paise.

use std::fmt;
use std::str::FromStr;

/// An amount of money in paise. May be negative (e.g. a net figure); callers that need a
/// positive amount check it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Paise(pub i64);

impl Paise {
    pub const ZERO: Paise = Paise(0);

    /// Whole rupees, checked.
    pub fn from_rupees(rupees: i64) -> Option<Paise> {
        rupees.checked_mul(100).map(Paise)
    }

    pub fn as_i64(self) -> i64 {
        self.0
    }

    pub fn is_positive(self) -> bool {
        self.0 > 0
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    pub fn checked_add(self, other: Paise) -> Option<Paise> {
        self.0.checked_add(other.0).map(Paise)
    }

    pub fn checked_sub(self, other: Paise) -> Option<Paise> {
        self.0.checked_sub(other.0).map(Paise)
    }

    /// The amount times a quantity (a line's unit price times units dispensed).
    pub fn checked_mul(self, qty: u32) -> Option<Paise> {
        self.0.checked_mul(i64::from(qty)).map(Paise)
    }

    /// The sum of the amounts, or `None` if any partial sum overflows.
    // Named like `Iterator::sum` on purpose: it is the checked replacement for it.
    #[allow(clippy::should_implement_trait)]
    pub fn sum<I: IntoIterator<Item = Paise>>(iter: I) -> Option<Paise> {
        iter.into_iter().try_fold(Paise::ZERO, Paise::checked_add)
    }
}

impl fmt::Display for Paise {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // unsigned_abs: i64::MIN has no positive i64 counterpart.
        let magnitude = self.0.unsigned_abs();
        let rupees = (magnitude / 100).to_string();
        let paise = magnitude % 100;
        if self.0 < 0 {
            f.write_str("-")?;
        }
        f.write_str("₹")?;
        // Indian grouping: the last three digits form one group, the rest go in pairs.
        let (head, last3) = rupees.split_at(rupees.len().saturating_sub(3));
        let first_pair = head.len() % 2;
        for (i, c) in head.chars().enumerate() {
            if i > 0 && (i + 2 - first_pair) % 2 == 0 {
                f.write_str(",")?;
            }
            write!(f, "{c}")?;
        }
        if !head.is_empty() {
            f.write_str(",")?;
        }
        write!(f, "{last3}.{paise:02}")
    }
}

/// Why a rupee string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount is empty")]
    Empty,
    #[error("amount contains {0:?}; expected digits, commas, one '.', an optional ₹ and '-'")]
    InvalidChar(char),
    #[error("amount has no digits before the decimal point")]
    NoRupees,
    #[error("a comma must sit between two digits")]
    MisplacedComma,
    #[error("amount has {0} decimals; at most 2 (paise) are allowed")]
    TooManyDecimals(usize),
    #[error("amount has a '.' but no decimals after it")]
    MissingDecimals,
    #[error("amount is too large")]
    Overflow,
}

impl FromStr for Paise {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Paise, MoneyError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(MoneyError::Empty);
        }
        let (negative, s) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let s = match s.strip_prefix('₹') {
            Some(rest) => rest.trim_start(),
            None => s,
        };
        let (int_part, frac_part) = match s.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (s, None),
        };
        if let Some(bad) = s
            .chars()
            .find(|c| !(c.is_ascii_digit() || *c == ',' || *c == '.'))
        {
            return Err(MoneyError::InvalidChar(bad));
        }
        if int_part.is_empty() {
            return Err(MoneyError::NoRupees);
        }
        // Commas only between digits: no leading, trailing or doubled comma.
        if int_part.split(',').any(str::is_empty) {
            return Err(MoneyError::MisplacedComma);
        }
        // Accumulate in i128 so that i64::MIN (whose magnitude exceeds i64::MAX) still parses.
        let mut total: i128 = 0;
        for c in int_part.chars().filter(char::is_ascii_digit) {
            total = total * 10 + i128::from(c as u8 - b'0');
            if total > i128::from(i64::MAX) + 1 {
                return Err(MoneyError::Overflow);
            }
        }
        total *= 100;
        if let Some(frac) = frac_part {
            if let Some(bad) = frac.chars().find(|c| !c.is_ascii_digit()) {
                return Err(MoneyError::InvalidChar(bad));
            }
            match frac.len() {
                0 => return Err(MoneyError::MissingDecimals),
                1 => total += 10 * i128::from(frac.as_bytes()[0] - b'0'),
                2 => total += i128::from(frac[..2].parse::<u8>().unwrap_or(0)),
                n => return Err(MoneyError::TooManyDecimals(n)),
            }
        }
        if negative {
            total = -total;
        }
        i64::try_from(total)
            .map(Paise)
            .map_err(|_| MoneyError::Overflow)
    }
}

impl TryFrom<&str> for Paise {
    type Error = MoneyError;
    fn try_from(s: &str) -> Result<Paise, MoneyError> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn displays_in_indian_format() {
        let cases: &[(i64, &str)] = &[
            (0, "₹0.00"),
            (5, "₹0.05"),
            (1250, "₹12.50"),
            (-1250, "-₹12.50"),
            (-5, "-₹0.05"),
            (99_999, "₹999.99"),
            (100_000, "₹1,000.00"),
            (1_234_550, "₹12,345.50"),
            (12_345_678, "₹1,23,456.78"),
            (1_234_567_890, "₹1,23,45,678.90"),
            (100_000_000_000, "₹1,00,00,00,000.00"),
        ];
        for (paise, want) in cases {
            assert_eq!(Paise(*paise).to_string(), *want, "{paise}");
        }
        assert_eq!(Paise(i64::MAX).to_string(), "₹92,23,37,20,36,85,47,758.07");
        assert_eq!(Paise(i64::MIN).to_string(), "-₹92,23,37,20,36,85,47,758.08");
    }

    #[test]
    fn parses_rupee_strings() {
        let cases: &[(&str, i64)] = &[
            ("1234.5", 123_450),
            ("1,234.50", 123_450),
            ("₹ 12", 1200),
            ("₹12", 1200),
            ("  ₹1,23,45,678.90 ", 1_234_567_890),
            ("-₹12.50", -1250),
            ("-12.5", -1250),
            ("0.05", 5),
            ("0", 0),
            ("007", 700),
            ("92233720368547758.07", i64::MAX),
            ("-92233720368547758.08", i64::MIN),
        ];
        for (text, paise) in cases {
            assert_eq!(text.parse::<Paise>(), Ok(Paise(*paise)), "{text:?}");
        }
    }

    #[test]
    fn parse_refusals() {
        let cases: &[(&str, MoneyError)] = &[
            ("", MoneyError::Empty),
            ("   ", MoneyError::Empty),
            ("₹", MoneyError::NoRupees),
            (".50", MoneyError::NoRupees),
            ("12.345", MoneyError::TooManyDecimals(3)),
            ("12.", MoneyError::MissingDecimals),
            ("12.3.4", MoneyError::InvalidChar('.')),
            ("1,,234", MoneyError::MisplacedComma),
            (",234", MoneyError::MisplacedComma),
            ("1234,", MoneyError::MisplacedComma),
            ("12.5,0", MoneyError::InvalidChar(',')),
            ("abc", MoneyError::InvalidChar('a')),
            ("Rs 12", MoneyError::InvalidChar('R')),
            ("12 rupees", MoneyError::InvalidChar(' ')),
            ("1 234", MoneyError::InvalidChar(' ')),
            ("--12", MoneyError::InvalidChar('-')),
            ("+12", MoneyError::InvalidChar('+')),
            ("1e5", MoneyError::InvalidChar('e')),
            ("92233720368547758.08", MoneyError::Overflow),
            ("-92233720368547758.09", MoneyError::Overflow),
            ("99999999999999999999999", MoneyError::Overflow),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<Paise>().as_ref(), Err(want), "{text:?}");
        }
    }

    #[test]
    fn checked_arithmetic() {
        assert_eq!(Paise(100).checked_add(Paise(250)), Some(Paise(350)));
        assert_eq!(Paise(i64::MAX).checked_add(Paise(1)), None);
        assert_eq!(Paise(100).checked_sub(Paise(250)), Some(Paise(-150)));
        assert_eq!(Paise(i64::MIN).checked_sub(Paise(1)), None);
        assert_eq!(Paise(1250).checked_mul(3), Some(Paise(3750)));
        assert_eq!(Paise(i64::MAX / 2 + 1).checked_mul(2), None);
        assert_eq!(Paise(7).checked_mul(0), Some(Paise::ZERO));
        assert_eq!(Paise::from_rupees(12), Some(Paise(1200)));
        assert_eq!(Paise::from_rupees(i64::MAX), None);
        assert_eq!(Paise::sum([Paise(1), Paise(2), Paise(3)]), Some(Paise(6)));
        assert_eq!(Paise::sum(Vec::new()), Some(Paise::ZERO));
        assert_eq!(Paise::sum([Paise(i64::MAX), Paise(1), Paise(-1)]), None);
        assert!(Paise(1).is_positive() && !Paise(0).is_positive() && Paise(-1).is_negative());
    }

    proptest! {
        #[test]
        fn parse_display_round_trips(x in any::<i64>()) {
            prop_assert_eq!(Paise(x).to_string().parse::<Paise>(), Ok(Paise(x)));
        }

        #[test]
        fn addition_never_silently_overflows(a in any::<i64>(), b in any::<i64>()) {
            let exact = i128::from(a) + i128::from(b);
            match Paise(a).checked_add(Paise(b)) {
                Some(sum) => prop_assert_eq!(i128::from(sum.0), exact),
                None => prop_assert!(i64::try_from(exact).is_err()),
            }
        }

        #[test]
        fn sum_is_exact_or_none(xs in proptest::collection::vec(any::<i64>(), 0..8)) {
            // Partial sums are checked in order, so None means some prefix left the i64 range.
            let mut exact: i128 = 0;
            let mut fits = true;
            for x in &xs {
                exact += i128::from(*x);
                fits &= i64::try_from(exact).is_ok();
            }
            match Paise::sum(xs.iter().copied().map(Paise)) {
                Some(s) => { prop_assert!(fits); prop_assert_eq!(i128::from(s.0), exact); }
                None => prop_assert!(!fits),
            }
        }

        #[test]
        fn multiplication_is_exact_or_none(a in any::<i64>(), q in any::<u32>()) {
            let exact = i128::from(a) * i128::from(q);
            match Paise(a).checked_mul(q) {
                Some(p) => prop_assert_eq!(i128::from(p.0), exact),
                None => prop_assert!(i64::try_from(exact).is_err()),
            }
        }
    }
}
