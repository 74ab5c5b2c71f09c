//! The rule that a slot is never overbooked, and never booked in the past.
//!
//! This is the rule only. Two counters booking the last place at the same moment is a
//! concurrency problem that the store solves by applying [`SlotLoad::book`] to the current load
//! inside one serialised write (read load, book, write load, all in one transaction); because
//! the rule itself is a pure function of the load, the store cannot apply it half-way.

/// Why a booking operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookingError {
    #[error("the slot is full")]
    Full,
    #[error("the slot has no bookings to cancel")]
    NothingToCancel,
    #[error("the slot has already started and can no longer be booked")]
    InThePast,
    #[error("slot capacity must be at least 1")]
    ZeroCapacity,
    #[error("{booked} bookings exceed the slot capacity {capacity}")]
    OverCapacity { capacity: u16, booked: u16 },
}

/// Whether a slot can still take a booking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotStatus {
    Free,
    /// Full: `booked == capacity`.
    Busy,
}

/// How many of a slot's places are taken. Invariant: `booked <= capacity` and `capacity >= 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotLoad {
    capacity: u16,
    booked: u16,
}

impl SlotLoad {
    /// An empty slot.
    pub fn new(capacity: u16) -> Result<SlotLoad, BookingError> {
        SlotLoad::with_booked(capacity, 0)
    }

    /// A slot with `booked` places already taken (as loaded from storage); refused if that
    /// breaks the invariant, so corrupted state is noticed rather than carried on.
    pub fn with_booked(capacity: u16, booked: u16) -> Result<SlotLoad, BookingError> {
        if capacity == 0 {
            return Err(BookingError::ZeroCapacity);
        }
        if booked > capacity {
            return Err(BookingError::OverCapacity { capacity, booked });
        }
        Ok(SlotLoad { capacity, booked })
    }

    pub fn capacity(&self) -> u16 {
        self.capacity
    }
    pub fn booked(&self) -> u16 {
        self.booked
    }
    pub fn remaining(&self) -> u16 {
        self.capacity - self.booked
    }

    pub fn status(&self) -> SlotStatus {
        if self.booked >= self.capacity {
            SlotStatus::Busy
        } else {
            SlotStatus::Free
        }
    }

    /// Take one place.
    pub fn book(&mut self) -> Result<(), BookingError> {
        if self.status() == SlotStatus::Busy {
            return Err(BookingError::Full);
        }
        self.booked += 1;
        Ok(())
    }

    /// Take one place in a slot starting at `slot_start_ms` (UTC), given the clock `now_ms`.
    /// A slot that has started is refused: its queue is already running at the clinic, and a
    /// patient arriving now is a walk-in, not an appointment.
    pub fn book_at(&mut self, slot_start_ms: i64, now_ms: i64) -> Result<(), BookingError> {
        check_not_past(slot_start_ms, now_ms)?;
        self.book()
    }

    /// Give one place back.
    pub fn cancel(&mut self) -> Result<(), BookingError> {
        if self.booked == 0 {
            return Err(BookingError::NothingToCancel);
        }
        self.booked -= 1;
        Ok(())
    }
}

/// Refuse a slot that starts at or before `now_ms`.
pub fn check_not_past(slot_start_ms: i64, now_ms: i64) -> Result<(), BookingError> {
    if slot_start_ms <= now_ms {
        return Err(BookingError::InThePast);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fills_up_then_refuses() {
        let mut s = SlotLoad::new(2).unwrap();
        assert_eq!(s.status(), SlotStatus::Free);
        assert_eq!(s.book(), Ok(()));
        assert_eq!(s.status(), SlotStatus::Free);
        assert_eq!(s.remaining(), 1);
        assert_eq!(s.book(), Ok(()));
        assert_eq!(s.status(), SlotStatus::Busy);
        assert_eq!(s.book(), Err(BookingError::Full));
        assert_eq!(s.booked(), 2);
        assert_eq!(s.cancel(), Ok(()));
        assert_eq!(s.status(), SlotStatus::Free);
        assert_eq!(s.cancel(), Ok(()));
        assert_eq!(s.cancel(), Err(BookingError::NothingToCancel));
        assert_eq!(s.booked(), 0);
    }

    #[test]
    fn construction_refusals() {
        let cases = [
            (0, 0, Err(BookingError::ZeroCapacity)),
            (
                2,
                3,
                Err(BookingError::OverCapacity {
                    capacity: 2,
                    booked: 3,
                }),
            ),
            (2, 2, Ok(SlotStatus::Busy)),
            (u16::MAX, u16::MAX, Ok(SlotStatus::Busy)),
            (3, 1, Ok(SlotStatus::Free)),
        ];
        for (cap, booked, want) in cases {
            assert_eq!(
                SlotLoad::with_booked(cap, booked).map(|s| s.status()),
                want,
                "{cap}/{booked}"
            );
        }
        assert_eq!(SlotLoad::new(0), Err(BookingError::ZeroCapacity));
        let mut full = SlotLoad::with_booked(u16::MAX, u16::MAX).unwrap();
        assert_eq!(full.book(), Err(BookingError::Full));
    }

    #[test]
    fn past_slots_cannot_be_booked() {
        let start = 1_795_750_200_000;
        let cases = [
            (start - 1, Ok(())),
            (start, Err(BookingError::InThePast)),
            (start + 60_000, Err(BookingError::InThePast)),
        ];
        for (now, want) in cases {
            let mut s = SlotLoad::new(1).unwrap();
            assert_eq!(s.book_at(start, now), want, "now {now}");
            assert_eq!(s.booked(), u16::from(want.is_ok()));
        }
        // A full slot in the future still says Full.
        let mut s = SlotLoad::with_booked(1, 1).unwrap();
        assert_eq!(s.book_at(start, start - 1), Err(BookingError::Full));
    }

    proptest! {
        #[test]
        fn never_overbooked(cap in 1u16..20, ops in proptest::collection::vec(any::<bool>(), 0..200)) {
            let mut s = SlotLoad::new(cap).unwrap();
            let (mut booked_ok, mut cancelled_ok) = (0i64, 0i64);
            for book in ops {
                let before = s;
                if book {
                    match s.book() {
                        Ok(()) => booked_ok += 1,
                        Err(e) => { prop_assert_eq!(e, BookingError::Full); prop_assert_eq!(before.booked(), cap); prop_assert_eq!(s, before); }
                    }
                } else {
                    match s.cancel() {
                        Ok(()) => cancelled_ok += 1,
                        Err(e) => { prop_assert_eq!(e, BookingError::NothingToCancel); prop_assert_eq!(before.booked(), 0); prop_assert_eq!(s, before); }
                    }
                }
                prop_assert!(s.booked() <= s.capacity());
                prop_assert_eq!(booked_ok - cancelled_ok, i64::from(s.booked()));
                prop_assert_eq!(s.status() == SlotStatus::Busy, s.booked() == cap);
            }
        }
    }
}
