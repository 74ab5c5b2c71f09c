//! Lockout after failed logins: pure rules, no clock and no storage (the caller passes the
//! time and keeps the state per account).
//!
//! - Five consecutive failures lock the account for one minute.
//! - Every further failure (counted once the lock has run out: while locked, nothing is even
//!   checked) locks it again for twice as long as the one before, up to one hour.
//! - A success resets the count.
//!
//! A password guesser therefore gets 5 tries, then one try a minute, two minutes, four ...,
//! and after about seven hours of trying one an hour; a real user who mistypes a few times is
//! not hindered.

/// Consecutive failures that lock the account.
pub const THRESHOLD: u32 = 5;
/// The first lock.
pub const BASE_LOCK_MS: i64 = 60_000;
/// The longest lock.
pub const MAX_LOCK_MS: i64 = 3_600_000;

/// An account's login state as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct State {
    /// Consecutive failures since the last success.
    pub failures: u32,
    /// Locked until this time (ms since the Unix epoch), if locked.
    pub locked_until_ms: Option<i64>,
}

/// May a login be tried now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Open,
    /// Refuse without checking anything; the client may try again at `until_ms`.
    Locked { until_ms: i64 },
}

/// How long the `failures`-th consecutive failure locks the account (`None`: not at all).
pub fn lock_duration_ms(failures: u32) -> Option<i64> {
    if failures < THRESHOLD {
        return None;
    }
    let doublings = (failures - THRESHOLD).min(20);
    Some((BASE_LOCK_MS << doublings).min(MAX_LOCK_MS))
}

pub fn gate(state: &State, now_ms: i64) -> Gate {
    match state.locked_until_ms {
        Some(until) if until > now_ms => Gate::Locked { until_ms: until },
        _ => Gate::Open,
    }
}

/// The state after a failed attempt at `now_ms` (only call this when [`gate`] was open).
pub fn after_failure(state: &State, now_ms: i64) -> State {
    let failures = state.failures.saturating_add(1);
    State { failures, locked_until_ms: lock_duration_ms(failures).map(|d| now_ms + d).or(state.locked_until_ms) }
}

/// The state after a successful login.
pub fn after_success() -> State {
    State::default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn five_failures_lock_for_a_minute_then_doubling_to_an_hour() {
        let expected = [None, None, None, None, Some(60_000), Some(120_000), Some(240_000), Some(480_000), Some(960_000), Some(1_920_000), Some(3_600_000), Some(3_600_000)];
        for (i, e) in expected.iter().enumerate() {
            assert_eq!(lock_duration_ms(i as u32 + 1), *e, "failure {}", i + 1);
        }
        assert_eq!(lock_duration_ms(0), None);
        assert_eq!(lock_duration_ms(u32::MAX), Some(MAX_LOCK_MS));
    }

    #[test]
    fn locked_until_the_time_passes() {
        let mut s = State::default();
        for t in 0..5 {
            assert_eq!(gate(&s, t), Gate::Open);
            s = after_failure(&s, t);
        }
        assert_eq!(gate(&s, 4), Gate::Locked { until_ms: 60_004 });
        assert_eq!(gate(&s, 60_003), Gate::Locked { until_ms: 60_004 });
        assert_eq!(gate(&s, 60_004), Gate::Open);
        s = after_failure(&s, 70_000);
        assert_eq!(gate(&s, 70_000), Gate::Locked { until_ms: 190_000 });
        assert_eq!(after_success(), State::default());
    }

    proptest! {
        /// Whatever the history, the lock never exceeds an hour from the last failure, and never
        /// begins before the fifth consecutive failure.
        #[test]
        fn lock_is_bounded(times in proptest::collection::vec(0i64..10_000_000, 0..40)) {
            let mut times = times;
            times.sort();
            let mut s = State::default();
            for (n, t) in times.iter().enumerate() {
                if gate(&s, *t) != Gate::Open { continue; }
                s = after_failure(&s, *t);
                match gate(&s, *t) {
                    Gate::Locked { until_ms } => {
                        prop_assert!(s.failures >= THRESHOLD);
                        prop_assert!(until_ms - t <= MAX_LOCK_MS && until_ms - t >= BASE_LOCK_MS);
                    }
                    Gate::Open => prop_assert!(s.failures < THRESHOLD, "failure {n} left it open"),
                }
            }
        }

        /// Each further failure locks at least as long as the one before (back-off never shrinks).
        #[test]
        fn back_off_is_monotonic(n in 0u32..1000) {
            let a = lock_duration_ms(n).unwrap_or(0);
            let b = lock_duration_ms(n + 1).unwrap_or(0);
            prop_assert!(b >= a);
            prop_assert!(b <= MAX_LOCK_MS);
        }

        /// A success wipes the slate: the next four failures never lock.
        #[test]
        fn success_resets(before in 0u32..50, start in 0i64..1_000_000) {
            let mut s = State { failures: before, locked_until_ms: None };
            s = after_failure(&s, start);
            let _ = s;
            let mut s = after_success();
            for k in 0..(THRESHOLD - 1) as i64 {
                s = after_failure(&s, start + k);
                prop_assert_eq!(gate(&s, start + k), Gate::Open);
            }
        }

        /// An attacker who retries the moment each lock ends gets few guesses: at most
        /// 5 + log2(60) + hours elapsed.
        #[test]
        fn guesses_are_rate_limited(hours in 1i64..48) {
            let end = hours * 3_600_000;
            let (mut s, mut t, mut guesses) = (State::default(), 0i64, 0i64);
            while t < end {
                match gate(&s, t) {
                    Gate::Open => { s = after_failure(&s, t); guesses += 1; }
                    Gate::Locked { until_ms } => t = until_ms,
                }
            }
            prop_assert!(guesses <= THRESHOLD as i64 + 7 + hours, "{guesses} guesses in {hours} h");
        }
    }
}
