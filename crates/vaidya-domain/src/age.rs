//! A patient's age on a given date, as Indian hospital documents print it: whole years from
//! one year on, whole months under a year, days under a month (newborns).

use crate::schedule::LocalDate;
use std::fmt;

/// Completed years, months or days between a birth date and a later date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Age {
    Years(u32),
    Months(u32),
    Days(u32),
}

/// The age on `on` of someone born on `birth`; `None` if `on` is before `birth`.
///
/// Someone born on 29 February has their birthday on 1 March in common years (they are not a
/// year old on 28 February), which is how birthdays are counted in completed months and days.
pub fn age_on(birth: LocalDate, on: LocalDate) -> Option<Age> {
    if on < birth {
        return None;
    }
    let before_day_in_month = (on.day()) < birth.day();
    let months = (on.year() - birth.year()) * 12 + i32::from(on.month()) - i32::from(birth.month()) - i32::from(before_day_in_month);
    let months = u32::try_from(months).ok()?;
    if months >= 12 {
        Some(Age::Years(months / 12))
    } else if months >= 1 {
        Some(Age::Months(months))
    } else {
        u32::try_from(on.days_since_epoch() - birth.days_since_epoch()).ok().map(Age::Days)
    }
}

/// The age from a birth year alone (FHIR allows `birthDate` to be just `YYYY`): the year
/// difference, which may be one more than the completed years.
pub fn age_from_year(birth_year: i32, on: LocalDate) -> Option<Age> {
    u32::try_from(on.year() - birth_year).ok().map(Age::Years)
}

impl fmt::Display for Age {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (n, unit) = match *self {
            Age::Years(n) => (n, "year"),
            Age::Months(n) => (n, "month"),
            Age::Days(n) => (n, "day"),
        };
        write!(f, "{n} {unit}{}", if n == 1 { "" } else { "s" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> LocalDate {
        s.parse().unwrap()
    }

    #[test]
    fn years_months_days() {
        assert_eq!(age_on(d("1975-08-02"), d("2026-11-20")), Some(Age::Years(51)));
        assert_eq!(age_on(d("1975-11-21"), d("2026-11-20")), Some(Age::Years(50)));
        assert_eq!(age_on(d("1975-11-20"), d("2026-11-20")), Some(Age::Years(51)));
        assert_eq!(age_on(d("2026-03-25"), d("2026-11-20")), Some(Age::Months(7)));
        assert_eq!(age_on(d("2026-11-01"), d("2026-11-20")), Some(Age::Days(19)));
        assert_eq!(age_on(d("2026-10-25"), d("2026-11-20")), Some(Age::Days(26)));
        assert_eq!(age_on(d("2026-11-20"), d("2026-11-20")), Some(Age::Days(0)));
        assert_eq!(age_on(d("2026-11-21"), d("2026-11-20")), None);
    }

    #[test]
    fn leap_day_birthdays_come_on_the_first_of_march() {
        assert_eq!(age_on(d("2024-02-29"), d("2025-02-28")), Some(Age::Months(11)));
        assert_eq!(age_on(d("2024-02-29"), d("2025-03-01")), Some(Age::Years(1)));
    }

    #[test]
    fn shown_with_plural_units() {
        assert_eq!(Age::Years(1).to_string(), "1 year");
        assert_eq!(Age::Months(7).to_string(), "7 months");
        assert_eq!(Age::Days(0).to_string(), "0 days");
        assert_eq!(age_from_year(1968, d("2026-01-01")), Some(Age::Years(58)));
    }
}
