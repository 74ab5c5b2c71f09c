//! ABHA identifiers: India's Ayushman Bharat Health Account number and address.
//!
//! # What is checked, and what is not
//!
//! * [`AbhaNumber`]: exactly 14 decimal digits, shown `XX-XXXX-XXXX-XXXX`; input may carry
//!   hyphens or spaces anywhere. **No check digit or issuer prefix is verified**: we do not have
//!   an authoritative published checksum rule for ABHA numbers, and refusing a real patient's
//!   number on an invented rule would be worse than accepting a mistyped one. Whether a
//!   well-formed number exists is for the ABDM gateway to say, not this crate.
//! * [`AbhaAddress`]: `local@domain`, where the local part is 8-18 characters of ASCII letters,
//!   digits, `.` and `_`, not starting or ending with `.` or `_`, and the domain is `abdm`
//!   (production) or `sbx` (the ABDM sandbox). Vaidya stores the address in lower case so that
//!   the same address typed in a different case compares equal (a Vaidya choice; ABDM treats
//!   addresses case-insensitively in practice, but this crate does not rely on that).

use std::fmt;
use std::str::FromStr;

/// Number of digits in an ABHA number.
pub const ABHA_DIGITS: usize = 14;

/// Why an ABHA number could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AbhaNumberError {
    #[error("ABHA number is empty")]
    Empty,
    #[error("ABHA number contains {0:?}; only digits, hyphens and spaces are allowed")]
    NonDigit(char),
    #[error("ABHA number has {found} digits; it must have 14")]
    WrongLength { found: usize },
}

/// A 14-digit ABHA number (format only; see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AbhaNumber([u8; ABHA_DIGITS]);

impl AbhaNumber {
    /// The fourteen digits, without separators.
    pub fn digits(&self) -> String {
        self.0.iter().map(|d| char::from(b'0' + d)).collect()
    }
}

impl FromStr for AbhaNumber {
    type Err = AbhaNumberError;

    fn from_str(s: &str) -> Result<AbhaNumber, AbhaNumberError> {
        let mut digits = Vec::with_capacity(ABHA_DIGITS);
        for c in s.chars() {
            match c {
                '-' | ' ' => {}
                '0'..='9' => digits.push(c as u8 - b'0'),
                other => return Err(AbhaNumberError::NonDigit(other)),
            }
        }
        if digits.is_empty() {
            return Err(AbhaNumberError::Empty);
        }
        let found = digits.len();
        let digits: [u8; ABHA_DIGITS] = digits
            .try_into()
            .map_err(|_| AbhaNumberError::WrongLength { found })?;
        Ok(AbhaNumber(digits))
    }
}

impl TryFrom<&str> for AbhaNumber {
    type Error = AbhaNumberError;
    fn try_from(s: &str) -> Result<AbhaNumber, AbhaNumberError> {
        s.parse()
    }
}

impl fmt::Display for AbhaNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // XX-XXXX-XXXX-XXXX: hyphens before digits 3, 7 and 11.
        for (i, d) in self.0.iter().enumerate() {
            if matches!(i, 2 | 6 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// The ABDM domains an ABHA address may belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AbhaDomain {
    /// `@abdm`, production.
    Abdm,
    /// `@sbx`, the ABDM sandbox; never valid for a real patient, but needed for integration tests.
    Sandbox,
}

impl AbhaDomain {
    pub fn as_str(&self) -> &'static str {
        match self {
            AbhaDomain::Abdm => "abdm",
            AbhaDomain::Sandbox => "sbx",
        }
    }
}

/// Why an ABHA address could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AbhaAddressError {
    #[error("ABHA address must be of the form name@abdm (exactly one '@')")]
    NotOneAt,
    #[error("ABHA address name has {found} characters; it must have 8 to 18")]
    LocalLength { found: usize },
    #[error("ABHA address name contains {0:?}; only letters, digits, '.' and '_' are allowed")]
    LocalChar(char),
    #[error("ABHA address name must not start or end with '.' or '_'")]
    LocalEdge,
    #[error("ABHA address domain {0:?} is not 'abdm' or 'sbx'")]
    UnknownDomain(String),
}

/// An ABHA address such as `ravi.kumar@abdm`, stored in lower case.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AbhaAddress {
    local: String,
    domain: AbhaDomain,
}

impl AbhaAddress {
    /// The part before `@`, lower-cased.
    pub fn local(&self) -> &str {
        &self.local
    }

    pub fn domain(&self) -> AbhaDomain {
        self.domain
    }
}

impl FromStr for AbhaAddress {
    type Err = AbhaAddressError;

    fn from_str(s: &str) -> Result<AbhaAddress, AbhaAddressError> {
        let s = s.trim();
        let mut parts = s.split('@');
        let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(AbhaAddressError::NotOneAt);
        };
        if let Some(bad) = local
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '.' || *c == '_'))
        {
            return Err(AbhaAddressError::LocalChar(bad));
        }
        // All characters are ASCII now, so byte length is character count.
        if !(8..=18).contains(&local.len()) {
            return Err(AbhaAddressError::LocalLength { found: local.len() });
        }
        let edge = |c: Option<char>| matches!(c, Some('.' | '_'));
        if edge(local.chars().next()) || edge(local.chars().last()) {
            return Err(AbhaAddressError::LocalEdge);
        }
        let domain = match domain.to_ascii_lowercase().as_str() {
            "abdm" => AbhaDomain::Abdm,
            "sbx" => AbhaDomain::Sandbox,
            _ => return Err(AbhaAddressError::UnknownDomain(domain.to_string())),
        };
        Ok(AbhaAddress {
            local: local.to_ascii_lowercase(),
            domain,
        })
    }
}

impl TryFrom<&str> for AbhaAddress {
    type Error = AbhaAddressError;
    fn try_from(s: &str) -> Result<AbhaAddress, AbhaAddressError> {
        s.parse()
    }
}

impl fmt::Display for AbhaAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn number_parses_and_formats() {
        for text in [
            "91-1234-5678-9012",
            "91123456789012",
            "91 1234 5678 9012",
            " 9112-3456-789012 ",
        ] {
            let n: AbhaNumber = text.parse().unwrap();
            assert_eq!(n.to_string(), "91-1234-5678-9012", "{text}");
            assert_eq!(n.digits(), "91123456789012");
        }
        assert_eq!(
            AbhaNumber::try_from("00-0000-0000-0000")
                .unwrap()
                .to_string(),
            "00-0000-0000-0000"
        );
    }

    #[test]
    fn number_refusals() {
        let cases: &[(&str, AbhaNumberError)] = &[
            ("", AbhaNumberError::Empty),
            ("  ", AbhaNumberError::Empty),
            (
                "91-1234-5678-901",
                AbhaNumberError::WrongLength { found: 13 },
            ),
            (
                "91-1234-5678-90123",
                AbhaNumberError::WrongLength { found: 15 },
            ),
            ("91-1234-5678-901X", AbhaNumberError::NonDigit('X')),
            ("91.1234.5678.9012", AbhaNumberError::NonDigit('.')),
            ("९१-1234-5678-9012", AbhaNumberError::NonDigit('९')),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<AbhaNumber>().as_ref(), Err(want), "{text:?}");
        }
    }

    #[test]
    fn address_accepts_and_normalises() {
        let cases = [
            ("ravi.kumar@abdm", "ravi.kumar@abdm", AbhaDomain::Abdm),
            (
                "Ravi_Kumar1985@ABDM",
                "ravi_kumar1985@abdm",
                AbhaDomain::Abdm,
            ),
            ("abcdefgh@sbx", "abcdefgh@sbx", AbhaDomain::Sandbox),
            (
                "a23456789012345678@abdm",
                "a23456789012345678@abdm",
                AbhaDomain::Abdm,
            ),
            ("  12345678@abdm ", "12345678@abdm", AbhaDomain::Abdm),
        ];
        for (text, shown, domain) in cases {
            let a: AbhaAddress = text.parse().unwrap();
            assert_eq!(a.to_string(), shown);
            assert_eq!(a.domain(), domain);
            assert_eq!(a.local(), shown.split('@').next().unwrap());
        }
    }

    #[test]
    fn address_refusals() {
        let cases: &[(&str, AbhaAddressError)] = &[
            ("ravikumar", AbhaAddressError::NotOneAt),
            ("ravi@kumar@abdm", AbhaAddressError::NotOneAt),
            ("abcdefg@abdm", AbhaAddressError::LocalLength { found: 7 }),
            (
                "a234567890123456789@abdm",
                AbhaAddressError::LocalLength { found: 19 },
            ),
            ("@abdm", AbhaAddressError::LocalLength { found: 0 }),
            ("ravi-kumar@abdm", AbhaAddressError::LocalChar('-')),
            ("ravi kumar@abdm", AbhaAddressError::LocalChar(' ')),
            ("रविकुमार1234@abdm", AbhaAddressError::LocalChar('र')),
            (".ravikumar@abdm", AbhaAddressError::LocalEdge),
            ("ravikumar_@abdm", AbhaAddressError::LocalEdge),
            ("_ravikumar.@sbx", AbhaAddressError::LocalEdge),
            (
                "ravikumar@gmail",
                AbhaAddressError::UnknownDomain("gmail".into()),
            ),
            ("ravikumar@", AbhaAddressError::UnknownDomain(String::new())),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<AbhaAddress>().as_ref(), Err(want), "{text:?}");
        }
    }

    proptest! {
        #[test]
        fn number_round_trips(digits in "[0-9]{14}") {
            let n: AbhaNumber = digits.parse().unwrap();
            prop_assert_eq!(n.digits(), digits);
            prop_assert_eq!(n.to_string().parse::<AbhaNumber>(), Ok(n));
        }

        #[test]
        fn address_round_trips(local in "[a-z0-9][a-z0-9._]{6,16}[a-z0-9]", sbx in any::<bool>()) {
            let text = format!("{local}@{}", if sbx { "sbx" } else { "abdm" });
            let a: AbhaAddress = text.parse().unwrap();
            prop_assert_eq!(a.to_string(), text.clone());
            prop_assert_eq!(a.to_string().parse::<AbhaAddress>(), Ok(a));
        }
    }
}
