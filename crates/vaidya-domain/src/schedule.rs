//! Calendar types and weekly OPD schedules that generate appointment slots.
//!
//! The small `Weekday`, `LocalDate` and `LocalTime` types are written here rather than taken from
//! `chrono`/`time` to keep this crate dependency-free; they cover exactly what OPD scheduling
//! needs (proleptic Gregorian dates, minutes in a day, fixed UTC offsets).
//!
//! Time zones: storage is UTC, screens show the hospital's local time. India Standard Time is
//! UTC+05:30 all year (no daylight saving), so a fixed offset in minutes is exact for India; it
//! is a parameter ([`IST_OFFSET_MINUTES`] is the usual value) rather than a constant so that a
//! deployment elsewhere, or a test, can pass its own.

use std::fmt;
use std::str::FromStr;

/// India Standard Time, UTC+05:30, in minutes.
pub const IST_OFFSET_MINUTES: i32 = 330;

const MS_PER_MINUTE: i64 = 60_000;
const MINUTES_PER_DAY: i64 = 1440;

/// A day of the week, Monday first (ISO 8601).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    pub const ALL: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];

    /// 0 for Monday through 6 for Sunday.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Why a date, time or schedule is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("{year:04}-{month:02}-{day:02} is not a date (years 1-9999)")]
    InvalidDate { year: i32, month: u8, day: u8 },
    #[error("the date is outside the years 1-9999")]
    DateOutOfRange,
    #[error("{hour:02}:{minute:02} is not a time of day")]
    InvalidTime { hour: u8, minute: u8 },
    #[error("could not read {0:?}: expected YYYY-MM-DD or HH:MM")]
    Unparsable(String),
    #[error("a schedule needs at least one day of the week")]
    NoDays,
    #[error("session start {start} must be before its end {end}")]
    StartNotBeforeEnd { start: LocalTime, end: LocalTime },
    #[error("slot length {0} minutes is outside 5 to 240")]
    SlotLengthOutOfRange(u16),
    #[error("{slot} minute slots do not divide the {session} minute session evenly")]
    SlotLengthDoesNotDivide { slot: u16, session: u16 },
    #[error("slot capacity {0} is outside 1 to 500")]
    CapacityOutOfRange(u16),
}

/// A calendar date (proleptic Gregorian, years 1-9999), valid by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalDate {
    year: i32,
    month: u8,
    day: u8,
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

impl LocalDate {
    pub fn new(year: i32, month: u8, day: u8) -> Result<LocalDate, ScheduleError> {
        if !(1..=9999).contains(&year) || day == 0 || day > days_in_month(year, month) {
            return Err(ScheduleError::InvalidDate { year, month, day });
        }
        Ok(LocalDate { year, month, day })
    }

    pub fn year(&self) -> i32 {
        self.year
    }
    pub fn month(&self) -> u8 {
        self.month
    }
    pub fn day(&self) -> u8 {
        self.day
    }

    /// Days since 1970-01-01 (negative before). Howard Hinnant's `days_from_civil`: exact for
    /// the whole proleptic Gregorian calendar with integer arithmetic only.
    pub fn days_since_epoch(&self) -> i64 {
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The inverse of [`days_since_epoch`](Self::days_since_epoch) (`civil_from_days`).
    pub fn from_days_since_epoch(days: i64) -> Result<LocalDate, ScheduleError> {
        // 0001-01-01 ..= 9999-12-31; also keeps the arithmetic below far from overflow.
        if !(-719_162..=2_932_896).contains(&days) {
            return Err(ScheduleError::DateOutOfRange);
        }
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        // In range by the check above, so these conversions cannot truncate.
        LocalDate::new(year as i32, month as u8, day as u8)
    }

    /// The day of the week. 1970-01-01 was a Thursday.
    pub fn weekday(&self) -> Weekday {
        let idx = (self.days_since_epoch() + 3).rem_euclid(7);
        Weekday::ALL[idx as usize]
    }

    /// The date `days` later (earlier if negative); an error only past the year 9999 or before 1.
    pub fn add_days(&self, days: i64) -> Result<LocalDate, ScheduleError> {
        LocalDate::from_days_since_epoch(self.days_since_epoch().saturating_add(days))
    }
}

impl fmt::Display for LocalDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl FromStr for LocalDate {
    type Err = ScheduleError;
    /// `YYYY-MM-DD`.
    fn from_str(s: &str) -> Result<LocalDate, ScheduleError> {
        let bad = || ScheduleError::Unparsable(s.to_string());
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(bad());
        }
        let num = |r: std::ops::Range<usize>| -> Result<u32, ScheduleError> {
            let part = &s[r];
            if part.bytes().all(|c| c.is_ascii_digit()) {
                part.parse().map_err(|_| bad())
            } else {
                Err(bad())
            }
        };
        LocalDate::new(num(0..4)? as i32, num(5..7)? as u8, num(8..10)? as u8)
    }
}

/// A time of day to the minute, 00:00-23:59, valid by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalTime {
    minute_of_day: u16,
}

impl LocalTime {
    pub fn new(hour: u8, minute: u8) -> Result<LocalTime, ScheduleError> {
        if hour > 23 || minute > 59 {
            return Err(ScheduleError::InvalidTime { hour, minute });
        }
        Ok(LocalTime {
            minute_of_day: u16::from(hour) * 60 + u16::from(minute),
        })
    }

    pub fn hour(&self) -> u8 {
        (self.minute_of_day / 60) as u8
    }
    pub fn minute(&self) -> u8 {
        (self.minute_of_day % 60) as u8
    }
    /// Minutes since midnight, 0-1439.
    pub fn minute_of_day(&self) -> u16 {
        self.minute_of_day
    }

    fn from_minute_of_day(m: u16) -> LocalTime {
        debug_assert!(m < 1440);
        LocalTime { minute_of_day: m }
    }
}

impl fmt::Display for LocalTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour(), self.minute())
    }
}

impl FromStr for LocalTime {
    type Err = ScheduleError;
    /// `HH:MM`.
    fn from_str(s: &str) -> Result<LocalTime, ScheduleError> {
        let bad = || ScheduleError::Unparsable(s.to_string());
        let (h, m) = s.split_once(':').ok_or_else(bad)?;
        if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|c| c.is_ascii_digit())
        {
            return Err(bad());
        }
        LocalTime::new(h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?)
    }
}

/// The UTC instant, in milliseconds since the Unix epoch, of local `date` `time` in a zone
/// `offset_minutes` ahead of UTC (330 for IST).
pub fn to_utc_ms(date: LocalDate, time: LocalTime, offset_minutes: i32) -> i64 {
    let local_minutes = date.days_since_epoch() * MINUTES_PER_DAY + i64::from(time.minute_of_day);
    (local_minutes - i64::from(offset_minutes)) * MS_PER_MINUTE
}

/// The local date and time (truncated to the minute) of a UTC instant, for display.
pub fn from_utc_ms(
    utc_ms: i64,
    offset_minutes: i32,
) -> Result<(LocalDate, LocalTime), ScheduleError> {
    let local_minutes = utc_ms.div_euclid(MS_PER_MINUTE) + i64::from(offset_minutes);
    let date = LocalDate::from_days_since_epoch(local_minutes.div_euclid(MINUTES_PER_DAY))?;
    let time = LocalTime::from_minute_of_day(local_minutes.rem_euclid(MINUTES_PER_DAY) as u16);
    Ok((date, time))
}

/// One generated appointment slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotSpec {
    pub date: LocalDate,
    pub start: LocalTime,
    pub end: LocalTime,
    pub capacity: u16,
}

impl SlotSpec {
    /// The slot's start as a UTC instant, for storage and for the "not in the past" check.
    pub fn start_utc_ms(&self, offset_minutes: i32) -> i64 {
        to_utc_ms(self.date, self.start, offset_minutes)
    }
}

/// A clinic's recurring weekly session, e.g. "Mon and Thu 09:00-13:00, 10-minute slots, two
/// patients per slot". Valid by construction: fields are private so a schedule that would
/// generate overlapping, partial or empty slots cannot exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeeklySchedule {
    /// Indexed by `Weekday::index`; a set, so listing a day twice cannot double its slots.
    days: [bool; 7],
    start: LocalTime,
    end: LocalTime,
    slot_minutes: u16,
    capacity: u16,
}

impl WeeklySchedule {
    pub fn new(
        days: &[Weekday],
        start: LocalTime,
        end: LocalTime,
        slot_minutes: u16,
        capacity: u16,
    ) -> Result<WeeklySchedule, ScheduleError> {
        if days.is_empty() {
            return Err(ScheduleError::NoDays);
        }
        if start >= end {
            return Err(ScheduleError::StartNotBeforeEnd { start, end });
        }
        if !(5..=240).contains(&slot_minutes) {
            return Err(ScheduleError::SlotLengthOutOfRange(slot_minutes));
        }
        let session = end.minute_of_day - start.minute_of_day;
        if !session.is_multiple_of(slot_minutes) {
            return Err(ScheduleError::SlotLengthDoesNotDivide {
                slot: slot_minutes,
                session,
            });
        }
        if !(1..=500).contains(&capacity) {
            return Err(ScheduleError::CapacityOutOfRange(capacity));
        }
        let mut set = [false; 7];
        for d in days {
            set[d.index()] = true;
        }
        Ok(WeeklySchedule {
            days: set,
            start,
            end,
            slot_minutes,
            capacity,
        })
    }

    /// The days of the week, Monday first, without duplicates.
    pub fn days(&self) -> Vec<Weekday> {
        Weekday::ALL
            .into_iter()
            .filter(|d| self.days[d.index()])
            .collect()
    }
    pub fn start(&self) -> LocalTime {
        self.start
    }
    pub fn end(&self) -> LocalTime {
        self.end
    }
    pub fn slot_minutes(&self) -> u16 {
        self.slot_minutes
    }
    pub fn capacity(&self) -> u16 {
        self.capacity
    }

    /// Slots per session day.
    pub fn slots_per_day(&self) -> u16 {
        (self.end.minute_of_day - self.start.minute_of_day) / self.slot_minutes
    }

    /// The slots on the `days` consecutive dates beginning with `from`, in time order. Dates past
    /// the year 9999 are not generated.
    pub fn slots(&self, from: LocalDate, days: u32) -> Vec<SlotSpec> {
        let mut out = Vec::new();
        for offset in 0..i64::from(days) {
            let Ok(date) = from.add_days(offset) else {
                break;
            };
            if !self.days[date.weekday().index()] {
                continue;
            }
            let mut m = self.start.minute_of_day;
            while m < self.end.minute_of_day {
                let next = m + self.slot_minutes;
                out.push(SlotSpec {
                    date,
                    start: LocalTime::from_minute_of_day(m),
                    end: LocalTime::from_minute_of_day(next),
                    capacity: self.capacity,
                });
                m = next;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(y: i32, m: u8, day: u8) -> LocalDate {
        LocalDate::new(y, m, day).unwrap()
    }
    fn t(h: u8, m: u8) -> LocalTime {
        LocalTime::new(h, m).unwrap()
    }

    #[test]
    fn date_validation() {
        assert!(LocalDate::new(2024, 2, 29).is_ok());
        assert!(LocalDate::new(2000, 2, 29).is_ok());
        for (y, m, day) in [
            (2026, 2, 29),
            (1900, 2, 29),
            (2026, 4, 31),
            (2026, 13, 1),
            (2026, 0, 1),
            (2026, 1, 0),
            (0, 1, 1),
            (10_000, 1, 1),
        ] {
            assert_eq!(
                LocalDate::new(y, m, day),
                Err(ScheduleError::InvalidDate {
                    year: y,
                    month: m,
                    day
                }),
                "{y}-{m}-{day}"
            );
        }
    }

    #[test]
    fn weekdays_of_known_dates() {
        // Checked against Python's datetime.date(...).strftime('%A').
        let cases = [
            (d(1970, 1, 1), Weekday::Thu),
            (d(2000, 1, 1), Weekday::Sat),
            (d(2024, 2, 29), Weekday::Thu),
            (d(2026, 6, 1), Weekday::Mon),
            (d(2026, 11, 27), Weekday::Fri),
        ];
        for (date, want) in cases {
            assert_eq!(date.weekday(), want, "{date}");
        }
    }

    #[test]
    fn adding_days_crosses_months_and_years() {
        assert_eq!(d(2024, 2, 28).add_days(2), Ok(d(2024, 3, 1)));
        assert_eq!(d(2026, 12, 31).add_days(1), Ok(d(2027, 1, 1)));
        assert_eq!(d(2026, 1, 1).add_days(365), Ok(d(2027, 1, 1)));
        assert_eq!(d(2026, 3, 1).add_days(-1), Ok(d(2026, 2, 28)));
        assert_eq!(
            d(9999, 12, 31).add_days(1),
            Err(ScheduleError::DateOutOfRange)
        );
        assert_eq!(d(1, 1, 1).add_days(-1), Err(ScheduleError::DateOutOfRange));
        assert_eq!(
            d(2026, 1, 1).add_days(i64::MAX),
            Err(ScheduleError::DateOutOfRange)
        );
        assert_eq!(
            d(2026, 1, 1).add_days(i64::MIN),
            Err(ScheduleError::DateOutOfRange)
        );
        assert_eq!(from_utc_ms(i64::MAX, 0), Err(ScheduleError::DateOutOfRange));
        assert_eq!(d(1970, 1, 1).days_since_epoch(), 0);
    }

    #[test]
    fn time_validation_and_parsing() {
        assert_eq!(
            LocalTime::new(24, 0),
            Err(ScheduleError::InvalidTime {
                hour: 24,
                minute: 0
            })
        );
        assert_eq!(
            LocalTime::new(9, 60),
            Err(ScheduleError::InvalidTime {
                hour: 9,
                minute: 60
            })
        );
        assert_eq!("09:30".parse(), Ok(t(9, 30)));
        assert_eq!(t(23, 59).to_string(), "23:59");
        assert_eq!("2026-11-27".parse(), Ok(d(2026, 11, 27)));
        assert_eq!(d(2026, 1, 5).to_string(), "2026-01-05");
        for bad in ["9:30", "09-30", "0930", "09:3a", "+9:30", ""] {
            assert_eq!(
                bad.parse::<LocalTime>(),
                Err(ScheduleError::Unparsable(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(
            "25:00".parse::<LocalTime>(),
            Err(ScheduleError::InvalidTime {
                hour: 25,
                minute: 0
            })
        );
        for bad in [
            "2026-1-05",
            "2026/01/05",
            "20260105",
            "2026-01-0x",
            "+026-01-05",
        ] {
            assert_eq!(
                bad.parse::<LocalDate>(),
                Err(ScheduleError::Unparsable(bad.into())),
                "{bad}"
            );
        }
        assert!(matches!(
            "2026-02-30".parse::<LocalDate>(),
            Err(ScheduleError::InvalidDate { .. })
        ));
    }

    #[test]
    fn utc_conversion_matches_known_instants() {
        // Each expected value computed with Python:
        // int(datetime(..., tzinfo=timezone(timedelta(hours=5, minutes=30))).timestamp() * 1000)
        // 2026-11-27 09:00 IST = 2026-11-27T03:30:00Z.
        assert_eq!(
            to_utc_ms(d(2026, 11, 27), t(9, 0), IST_OFFSET_MINUTES),
            1_795_750_200_000
        );
        assert_eq!(to_utc_ms(d(1970, 1, 1), t(5, 30), IST_OFFSET_MINUTES), 0);
        // 2024-03-01 00:15 IST is still 29 February in UTC.
        assert_eq!(
            to_utc_ms(d(2024, 3, 1), t(0, 15), IST_OFFSET_MINUTES),
            1_709_232_300_000
        );
        assert_eq!(to_utc_ms(d(2000, 2, 29), t(0, 0), 0), 951_782_400_000);
        assert_eq!(to_utc_ms(d(1969, 12, 31), t(23, 0), 0), -3_600_000);
    }

    #[test]
    fn utc_back_to_local() {
        assert_eq!(
            from_utc_ms(1_795_750_200_000, IST_OFFSET_MINUTES),
            Ok((d(2026, 11, 27), t(9, 0)))
        );
        // 59.999 s past a minute is still that minute; before the epoch floors, not truncates.
        assert_eq!(from_utc_ms(59_999, 0), Ok((d(1970, 1, 1), t(0, 0))));
        assert_eq!(from_utc_ms(-1, 0), Ok((d(1969, 12, 31), t(23, 59))));
    }

    #[test]
    fn mon_thu_clinic_generates_24_slots_a_day() {
        let s =
            WeeklySchedule::new(&[Weekday::Mon, Weekday::Thu], t(9, 0), t(13, 0), 10, 2).unwrap();
        assert_eq!(s.slots_per_day(), 24);
        // 2026-06-01 is a Monday; one week holds Mon 1 June and Thu 4 June.
        let week = s.slots(d(2026, 6, 1), 7);
        assert_eq!(week.len(), 48);
        assert_eq!(week.iter().filter(|x| x.date == d(2026, 6, 1)).count(), 24);
        assert_eq!(week.iter().filter(|x| x.date == d(2026, 6, 4)).count(), 24);
        assert_eq!(
            week[0],
            SlotSpec {
                date: d(2026, 6, 1),
                start: t(9, 0),
                end: t(9, 10),
                capacity: 2
            }
        );
        assert_eq!(week[23].end, t(13, 0));
        assert!(
            week.iter()
                .all(|x| x.capacity == 2 && x.date.weekday() != Weekday::Tue)
        );
        // Starting mid-week (Tuesday) for 7 days still covers one Thursday and one Monday.
        assert_eq!(s.slots(d(2026, 6, 2), 7).len(), 48);
        assert_eq!(s.slots(d(2026, 6, 2), 1).len(), 0);
        assert_eq!(s.slots(d(2026, 6, 1), 0).len(), 0);
        assert_eq!(
            week[0].start_utc_ms(IST_OFFSET_MINUTES),
            to_utc_ms(d(2026, 6, 1), t(9, 0), 330)
        );
    }

    #[test]
    fn duplicate_days_do_not_double_slots() {
        let s = WeeklySchedule::new(
            &[Weekday::Thu, Weekday::Mon, Weekday::Thu],
            t(9, 0),
            t(10, 0),
            30,
            1,
        )
        .unwrap();
        assert_eq!(s.days(), vec![Weekday::Mon, Weekday::Thu]);
        assert_eq!(s.slots(d(2026, 6, 1), 7).len(), 4);
    }

    #[test]
    fn schedule_refusals() {
        // (days, start, end, slot minutes, capacity, expected error)
        type Case<'a> = (&'a [Weekday], LocalTime, LocalTime, u16, u16, ScheduleError);
        let mon = &[Weekday::Mon][..];
        let cases: Vec<Case> = vec![
            (&[], t(9, 0), t(13, 0), 10, 2, ScheduleError::NoDays),
            (
                mon,
                t(13, 0),
                t(9, 0),
                10,
                2,
                ScheduleError::StartNotBeforeEnd {
                    start: t(13, 0),
                    end: t(9, 0),
                },
            ),
            (
                mon,
                t(9, 0),
                t(9, 0),
                10,
                2,
                ScheduleError::StartNotBeforeEnd {
                    start: t(9, 0),
                    end: t(9, 0),
                },
            ),
            (
                mon,
                t(9, 0),
                t(13, 0),
                4,
                2,
                ScheduleError::SlotLengthOutOfRange(4),
            ),
            (
                mon,
                t(9, 0),
                t(23, 0),
                241,
                2,
                ScheduleError::SlotLengthOutOfRange(241),
            ),
            (
                mon,
                t(9, 0),
                t(13, 0),
                7,
                2,
                ScheduleError::SlotLengthDoesNotDivide {
                    slot: 7,
                    session: 240,
                },
            ),
            (
                mon,
                t(9, 0),
                t(9, 30),
                60,
                2,
                ScheduleError::SlotLengthDoesNotDivide {
                    slot: 60,
                    session: 30,
                },
            ),
            (
                mon,
                t(9, 0),
                t(13, 0),
                10,
                0,
                ScheduleError::CapacityOutOfRange(0),
            ),
            (
                mon,
                t(9, 0),
                t(13, 0),
                10,
                501,
                ScheduleError::CapacityOutOfRange(501),
            ),
        ];
        for (days, start, end, slot, cap, want) in cases {
            assert_eq!(
                WeeklySchedule::new(days, start, end, slot, cap),
                Err(want.clone()),
                "{want}"
            );
        }
        // The boundaries themselves are allowed.
        assert!(WeeklySchedule::new(mon, t(9, 0), t(13, 0), 240, 500).is_ok());
        assert!(WeeklySchedule::new(mon, t(9, 0), t(9, 5), 5, 1).is_ok());
    }

    proptest! {
        #[test]
        fn days_since_epoch_round_trips(days in -719_162i64..2_932_896) {
            // The range is 0001-01-01 ..= 9999-12-31.
            let date = LocalDate::from_days_since_epoch(days).unwrap();
            prop_assert_eq!(date.days_since_epoch(), days);
            prop_assert_eq!(date.to_string().parse::<LocalDate>(), Ok(date));
            let next = date.add_days(1);
            if let Ok(next) = next {
                prop_assert!(next > date);
                prop_assert_eq!(next.weekday().index(), (date.weekday().index() + 1) % 7);
            }
        }

        #[test]
        fn utc_round_trips(days in 0i64..30_000, minute in 0u16..1440, offset in -720i32..=840) {
            let date = LocalDate::from_days_since_epoch(days).unwrap();
            let time = LocalTime::from_minute_of_day(minute);
            let ms = to_utc_ms(date, time, offset);
            prop_assert_eq!(from_utc_ms(ms, offset), Ok((date, time)));
        }

        #[test]
        fn generated_slots_tile_the_session(
            start in 0u16..1200, slot in 5u16..=240, n in 1u16..20, cap in 1u16..=500,
            mask in 1u8..128, from in 20_000i64..21_000, span in 0u32..30,
        ) {
            let end = start + slot * n;
            prop_assume!(end < 1440);
            let days: Vec<Weekday> = Weekday::ALL.into_iter().filter(|d| mask & (1 << d.index()) != 0).collect();
            let s = WeeklySchedule::new(&days, LocalTime::from_minute_of_day(start), LocalTime::from_minute_of_day(end), slot, cap).unwrap();
            let from = LocalDate::from_days_since_epoch(from).unwrap();
            let slots = s.slots(from, span);
            let session_days = (0..i64::from(span))
                .filter(|k| days.contains(&from.add_days(*k).unwrap().weekday()))
                .count();
            prop_assert_eq!(slots.len(), session_days * usize::from(n));
            for pair in slots.windows(2) {
                // Strictly increasing, and within a day each slot starts where the previous ended.
                prop_assert!((pair[0].date, pair[0].start) < (pair[1].date, pair[1].start));
                if pair[0].date == pair[1].date {
                    prop_assert_eq!(pair[0].end, pair[1].start);
                }
            }
            for x in &slots {
                prop_assert_eq!(x.end.minute_of_day() - x.start.minute_of_day(), slot);
                prop_assert!(x.start >= s.start() && x.end <= s.end());
            }
        }
    }
}
