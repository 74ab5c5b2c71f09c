//! `Mobile`: an Indian mobile number, the patient's main contact and the channel for OTPs and
//! report links.
//!
//! Accepted input: the 10-digit national number (first digit 6-9, as all Indian mobile numbers
//! are), optionally preceded by `+91`, `91` or a trunk `0`, with spaces or hyphens anywhere.
//! Stored and shown in E.164 form, `+91XXXXXXXXXX`, so that one number has one spelling.
//!
//! A bare `91` prefix is only taken as the country code when it leaves exactly ten digits: a
//! ten-digit number that itself starts with 91 (e.g. `9123456789`) is kept as is.

use std::fmt;
use std::str::FromStr;

/// Why a mobile number could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MobileError {
    #[error("mobile number is empty")]
    Empty,
    #[error(
        "mobile number contains {0:?}; only digits, spaces, hyphens and a leading +91 are allowed"
    )]
    InvalidChar(char),
    #[error("mobile number has {found} digits after the prefix; it must have 10")]
    WrongLength { found: usize },
    #[error("Indian mobile numbers start with 6, 7, 8 or 9, not {0}")]
    BadFirstDigit(char),
}

/// An Indian mobile number, valid by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mobile(u64);

impl Mobile {
    /// The ten-digit national number, without country code.
    pub fn national(&self) -> String {
        format!("{:010}", self.0)
    }
}

impl FromStr for Mobile {
    type Err = MobileError;

    fn from_str(s: &str) -> Result<Mobile, MobileError> {
        let s = s.trim();
        let (plus, rest) = match s.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let mut digits = String::with_capacity(12);
        for c in rest.chars() {
            match c {
                ' ' | '-' => {}
                '0'..='9' => digits.push(c),
                other => return Err(MobileError::InvalidChar(other)),
            }
        }
        if digits.is_empty() {
            return Err(MobileError::Empty);
        }
        let national = if plus {
            // After '+', only the Indian country code is accepted.
            match digits.strip_prefix("91") {
                Some(n) => n,
                None => return Err(MobileError::InvalidChar('+')),
            }
        } else if digits.len() == 12 && digits.starts_with("91") {
            &digits[2..]
        } else if digits.len() == 11 && digits.starts_with('0') {
            &digits[1..]
        } else {
            &digits
        };
        if national.len() != 10 {
            return Err(MobileError::WrongLength {
                found: national.len(),
            });
        }
        let first = national.chars().next().unwrap_or('0');
        if !matches!(first, '6'..='9') {
            return Err(MobileError::BadFirstDigit(first));
        }
        // Ten ASCII digits always fit in u64.
        national
            .parse()
            .map(Mobile)
            .map_err(|_| MobileError::WrongLength {
                found: national.len(),
            })
    }
}

impl TryFrom<&str> for Mobile {
    type Error = MobileError;
    fn try_from(s: &str) -> Result<Mobile, MobileError> {
        s.parse()
    }
}

impl fmt::Display for Mobile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+91{:010}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_common_spellings() {
        for text in [
            "9876543210",
            "+919876543210",
            "+91 98765 43210",
            "+91-98765-43210",
            "919876543210",
            "09876543210",
            " 98765-43210 ",
        ] {
            let m: Mobile = text.parse().unwrap();
            assert_eq!(m.to_string(), "+919876543210", "{text}");
            assert_eq!(m.national(), "9876543210");
        }
        // A national number that itself starts with 91 is not mistaken for a country code.
        assert_eq!(
            Mobile::try_from("9123456789").unwrap().to_string(),
            "+919123456789"
        );
        assert_eq!(
            Mobile::try_from("+919123456789").unwrap().national(),
            "9123456789"
        );
        assert_eq!(
            "6000000000".parse::<Mobile>().unwrap().national(),
            "6000000000"
        );
    }

    #[test]
    fn refusals() {
        let cases: &[(&str, MobileError)] = &[
            ("", MobileError::Empty),
            ("+", MobileError::Empty),
            ("987654321", MobileError::WrongLength { found: 9 }),
            ("98765432101", MobileError::WrongLength { found: 11 }),
            ("+9198765432", MobileError::WrongLength { found: 8 }),
            ("0919876543210", MobileError::WrongLength { found: 13 }),
            ("5876543210", MobileError::BadFirstDigit('5')),
            ("01234567890", MobileError::BadFirstDigit('1')),
            ("+915876543210", MobileError::BadFirstDigit('5')),
            ("+449876543210", MobileError::InvalidChar('+')),
            ("98765.43210", MobileError::InvalidChar('.')),
            ("(98765) 43210", MobileError::InvalidChar('(')),
            ("98765+43210", MobileError::InvalidChar('+')),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<Mobile>().as_ref(), Err(want), "{text:?}");
        }
    }

    proptest! {
        #[test]
        fn round_trips(national in "[6-9][0-9]{9}") {
            let m: Mobile = national.parse().unwrap();
            prop_assert_eq!(m.national(), national);
            prop_assert_eq!(m.to_string().parse::<Mobile>(), Ok(m));
        }
    }
}
