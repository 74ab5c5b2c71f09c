//! `Uhid`: the hospital's Unique Health ID, the key a patient is known by at every counter.
//!
//! # Format
//!
//! Twelve decimal digits, shown as `NNNN-NNNN-NNNN`:
//!
//! | digits | meaning |
//! |---|---|
//! | 1-2  | issuer (site) code: `00` is the central server; `01`-`99` are reserved ranges for department nodes that issue UHIDs while the central server is unreachable, so that two issuers can never hand out the same number |
//! | 3-11 | serial number within the issuer, `000000000`-`999999999` |
//! | 12   | Damm check digit computed over digits 1-11 |
//!
//! Example: issuer `00`, serial `1` is `0000-0000-0013`.
//!
//! # Why a Damm check digit
//!
//! UHIDs are read aloud, copied from cards and typed at busy counters. The check digit turns the
//! two commonest typing mistakes into a refusal instead of a different patient's record. Damm's
//! algorithm (a totally anti-symmetric quasigroup of order 10) detects **every** single-digit
//! substitution and **every** transposition of two adjacent digits, with one decimal check digit
//! and no letters. Luhn, the usual alternative, misses the adjacent transposition `09` <-> `90`,
//! and Verhoeff needs larger tables for the same guarantee. The property tests below check both
//! guarantees on random UHIDs.
//!
//! # Parsing
//!
//! Input may carry hyphens or spaces anywhere (staff type it either way); anything else that is
//! not a digit is refused, as is a wrong number of digits or a wrong check digit.

use std::fmt;
use std::str::FromStr;

/// The Damm quasigroup table (Damm 2004, as published with the algorithm).
const DAMM: [[u8; 10]; 10] = [
    [0, 3, 1, 7, 5, 9, 8, 6, 4, 2],
    [7, 0, 9, 2, 1, 5, 4, 8, 6, 3],
    [4, 2, 0, 6, 8, 7, 1, 3, 5, 9],
    [1, 7, 5, 0, 9, 8, 3, 4, 2, 6],
    [6, 1, 2, 3, 0, 4, 5, 9, 7, 8],
    [3, 6, 7, 4, 2, 0, 9, 5, 8, 1],
    [5, 8, 6, 9, 7, 2, 0, 1, 3, 4],
    [8, 9, 4, 5, 3, 6, 2, 0, 1, 7],
    [9, 4, 3, 8, 6, 1, 7, 2, 0, 5],
    [2, 5, 8, 1, 4, 3, 6, 7, 9, 0],
];

/// The Damm check digit of `digits` (each 0-9). Appending it makes the whole sequence check to 0.
pub fn damm_check_digit(digits: &[u8]) -> u8 {
    digits
        .iter()
        .fold(0u8, |interim, &d| DAMM[interim as usize][d as usize])
}

/// Number of digits in a UHID, check digit included.
pub const UHID_DIGITS: usize = 12;
/// Serials are nine digits: `0..SERIAL_LIMIT`.
pub const SERIAL_LIMIT: u64 = 1_000_000_000;
/// The issuer code of the central server.
pub const CENTRAL_ISSUER: u8 = 0;

/// Why a UHID could not be made or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UhidError {
    #[error("UHID issuer code {0} is out of range (00-99)")]
    IssuerOutOfRange(u8),
    #[error("UHID serial {0} is out of range (at most 9 digits)")]
    SerialOutOfRange(u64),
    #[error("UHID is empty")]
    Empty,
    #[error("UHID contains {0:?}; only digits, hyphens and spaces are allowed")]
    NonDigit(char),
    #[error("UHID has {found} digits; it must have 12")]
    WrongLength { found: usize },
    #[error("UHID check digit is wrong: the number was probably mistyped")]
    BadCheckDigit,
}

/// A Unique Health ID, valid by construction (issuer in range, serial in range, check digit
/// right). The check digit is not stored: it is a function of issuer and serial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uhid {
    issuer: u8,
    serial: u32,
}

impl Uhid {
    /// Mint the UHID for `serial` from `issuer`.
    pub fn new(issuer: u8, serial: u64) -> Result<Uhid, UhidError> {
        if issuer > 99 {
            return Err(UhidError::IssuerOutOfRange(issuer));
        }
        if serial >= SERIAL_LIMIT {
            return Err(UhidError::SerialOutOfRange(serial));
        }
        // serial < 10^9 < 2^32, so this cannot truncate.
        Ok(Uhid {
            issuer,
            serial: serial as u32,
        })
    }

    /// The issuer (site) code, 0-99.
    pub fn issuer(&self) -> u8 {
        self.issuer
    }

    /// The serial within the issuer, below 10^9.
    pub fn serial(&self) -> u64 {
        u64::from(self.serial)
    }

    /// The check digit (the twelfth digit).
    pub fn check_digit(&self) -> u8 {
        self.digits()[UHID_DIGITS - 1]
    }

    /// All twelve digits, check digit last.
    pub fn digits(&self) -> [u8; UHID_DIGITS] {
        let mut out = [0u8; UHID_DIGITS];
        let body = u64::from(self.issuer) * SERIAL_LIMIT + u64::from(self.serial);
        let mut rest = body;
        for slot in out[..UHID_DIGITS - 1].iter_mut().rev() {
            *slot = (rest % 10) as u8;
            rest /= 10;
        }
        out[UHID_DIGITS - 1] = damm_check_digit(&out[..UHID_DIGITS - 1]);
        out
    }
}

impl FromStr for Uhid {
    type Err = UhidError;

    fn from_str(s: &str) -> Result<Uhid, UhidError> {
        let mut digits = Vec::with_capacity(UHID_DIGITS);
        for c in s.chars() {
            match c {
                '-' | ' ' => {}
                '0'..='9' => digits.push(c as u8 - b'0'),
                other => return Err(UhidError::NonDigit(other)),
            }
        }
        if digits.is_empty() {
            return Err(UhidError::Empty);
        }
        if digits.len() != UHID_DIGITS {
            return Err(UhidError::WrongLength {
                found: digits.len(),
            });
        }
        // A valid Damm sequence, check digit included, reduces to 0.
        if damm_check_digit(&digits) != 0 {
            return Err(UhidError::BadCheckDigit);
        }
        let issuer = digits[0] * 10 + digits[1];
        let serial = digits[2..11]
            .iter()
            .fold(0u64, |n, &d| n * 10 + u64::from(d));
        Uhid::new(issuer, serial)
    }
}

impl TryFrom<&str> for Uhid {
    type Error = UhidError;
    fn try_from(s: &str) -> Result<Uhid, UhidError> {
        s.parse()
    }
}

impl fmt::Display for Uhid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.digits();
        for (i, digit) in d.iter().enumerate() {
            if i > 0 && i % 4 == 0 {
                f.write_str("-")?;
            }
            write!(f, "{digit}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn damm_matches_published_example() {
        // The worked example from Damm's algorithm description: 572 -> check digit 4.
        assert_eq!(damm_check_digit(&[5, 7, 2]), 4);
        assert_eq!(damm_check_digit(&[5, 7, 2, 4]), 0);
    }

    #[test]
    fn formats_with_hyphens_and_check_digit() {
        let u = Uhid::new(0, 1).unwrap();
        assert_eq!(u.to_string(), "0000-0000-0013");
        assert_eq!(u.check_digit(), 3);
        let u = Uhid::new(99, 999_999_999).unwrap();
        assert_eq!(u.issuer(), 99);
        assert_eq!(u.serial(), 999_999_999);
        assert!(u.to_string().starts_with("9999-9999-999"));
    }

    #[test]
    fn parses_with_or_without_separators() {
        let u = Uhid::new(7, 123_456_789).unwrap();
        let shown = u.to_string();
        let bare: String = shown.chars().filter(|c| *c != '-').collect();
        let spaced = shown.replace('-', " ");
        for text in [shown.as_str(), bare.as_str(), spaced.as_str()] {
            assert_eq!(text.parse::<Uhid>(), Ok(u), "{text}");
        }
        assert_eq!(Uhid::try_from(shown.as_str()), Ok(u));
    }

    #[test]
    fn refuses_bad_input_with_specific_errors() {
        let cases: &[(&str, UhidError)] = &[
            ("", UhidError::Empty),
            ("- -", UhidError::Empty),
            ("0000-0000-001", UhidError::WrongLength { found: 11 }),
            ("0000-0000-00130", UhidError::WrongLength { found: 13 }),
            ("0000-0000-001O", UhidError::NonDigit('O')),
            ("0000_0000_0013", UhidError::NonDigit('_')),
            ("+000000000013", UhidError::NonDigit('+')),
            ("0000-0000-0014", UhidError::BadCheckDigit),
            ("0000-0000-0103", UhidError::BadCheckDigit),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<Uhid>().as_ref(), Err(want), "{text:?}");
        }
    }

    #[test]
    fn new_refuses_out_of_range_parts() {
        assert_eq!(Uhid::new(100, 0), Err(UhidError::IssuerOutOfRange(100)));
        assert_eq!(
            Uhid::new(0, SERIAL_LIMIT),
            Err(UhidError::SerialOutOfRange(SERIAL_LIMIT))
        );
        assert!(Uhid::new(99, SERIAL_LIMIT - 1).is_ok());
    }

    #[test]
    fn different_issuers_never_collide() {
        let a = Uhid::new(0, 42).unwrap();
        let b = Uhid::new(1, 42).unwrap();
        assert_ne!(a, b);
        assert_ne!(a.to_string(), b.to_string());
    }

    fn any_uhid() -> impl Strategy<Value = Uhid> {
        (0u8..=99, 0u64..SERIAL_LIMIT).prop_map(|(i, s)| Uhid::new(i, s).unwrap())
    }

    fn text_of(digits: &[u8]) -> String {
        digits.iter().map(|d| char::from(b'0' + d)).collect()
    }

    proptest! {
        #[test]
        fn every_uhid_round_trips(u in any_uhid()) {
            prop_assert_eq!(u.to_string().parse::<Uhid>(), Ok(u));
            prop_assert_eq!(text_of(&u.digits()).parse::<Uhid>(), Ok(u));
        }

        #[test]
        fn every_single_digit_substitution_is_refused(
            u in any_uhid(), pos in 0usize..UHID_DIGITS, delta in 1u8..10,
        ) {
            let mut d = u.digits();
            d[pos] = (d[pos] + delta) % 10;
            prop_assert_eq!(text_of(&d).parse::<Uhid>(), Err(UhidError::BadCheckDigit));
        }

        #[test]
        fn every_adjacent_transposition_is_refused(u in any_uhid(), pos in 0usize..UHID_DIGITS - 1) {
            let mut d = u.digits();
            prop_assume!(d[pos] != d[pos + 1]);
            d.swap(pos, pos + 1);
            prop_assert_eq!(text_of(&d).parse::<Uhid>(), Err(UhidError::BadCheckDigit));
        }
    }

    #[test]
    fn exhaustive_adjacent_transpositions_in_the_table() {
        // The guarantee behind the property test, checked on every starting state and digit
        // pair: swapping two different adjacent digits always changes the running state.
        for state in 0..10usize {
            for a in 0..10usize {
                for b in 0..10usize {
                    if a != b {
                        assert_ne!(
                            DAMM[DAMM[state][a] as usize][b],
                            DAMM[DAMM[state][b] as usize][a]
                        );
                    }
                }
            }
        }
    }
}
