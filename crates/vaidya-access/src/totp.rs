//! The second factor: time-based one-time passwords (RFC 6238) through the `totp-rs` crate,
//! with the parameters every authenticator app understands: HMAC-SHA-1, 6 digits, a 30 s time
//! step, and one step of clock skew either way.
//!
//! RFC 6238 §5.2 says a code must be accepted only once. The caller keeps, per account, the
//! last time step it accepted and passes it to [`verify`], which refuses any step at or before
//! it; the caller then stores the new step (with a conditional update, so that two requests
//! racing with one code cannot both win).
//!
//! Secrets are 160 random bits (the RFC 4226 recommendation), kept as unpadded base32 (the
//! form authenticator apps take).

use rand::RngCore;
use totp_rs::{Algorithm, Builder, Secret, Totp};

pub const DIGITS: u8 = 6;
pub const STEP_SECONDS: u64 = 30;
pub const SKEW_STEPS: u64 = 1;
const SECRET_BYTES: usize = 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TotpError {
    #[error("the stored TOTP secret is not valid base32 of at least 128 bits")]
    BadSecret,
    #[error("the account name or issuer cannot be put in an otpauth URI")]
    BadLabel,
}

/// What a presented code turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Valid for this time step, later than any accepted before: store `step` as the last one.
    Accepted { step: u64 },
    /// Valid, but for a step already used (or older): a replay.
    Reused,
    /// Not a valid code now.
    Wrong,
}

/// A new random secret, base32 without padding.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    Secret::new_stack(bytes).to_base32()
}

/// `skew`: the steps either side that `Totp::check` accepts ([`verify`] walks the window itself
/// with 0, so that it knows exactly which step matched).
fn totp(secret_base32: &str, account: &str, issuer: Option<&str>, skew: u64) -> Result<Totp, TotpError> {
    let secret = Secret::try_from_base32(secret_base32.trim()).map_err(|_| TotpError::BadSecret)?;
    let mut b = Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS)
        .with_skew(skew as u16)
        .with_step_duration(STEP_SECONDS)
        .with_secret(secret)
        .with_account_name(account);
    if let Some(i) = issuer {
        b = b.with_issuer(Some(i));
    }
    b.build().map_err(|e| match e {
        totp_rs::TotpError::InvalidAccountName { .. } | totp_rs::TotpError::InvalidIssuer { .. } => TotpError::BadLabel,
        _ => TotpError::BadSecret,
    })
}

/// The `otpauth://totp/ISSUER:ACCOUNT?secret=...&issuer=ISSUER` URI authenticator apps read
/// (usually from a QR code). A `:` in the issuer (not allowed there) becomes a space.
pub fn otpauth_uri(secret_base32: &str, account: &str, issuer: &str) -> Result<String, TotpError> {
    let issuer = issuer.replace(':', " ");
    totp(secret_base32, account, Some(issuer.trim()), SKEW_STEPS)?.to_url().map_err(|_| TotpError::BadLabel)
}

/// The code for the time `unix_seconds` (what an authenticator app would show then).
pub fn code_at(secret_base32: &str, unix_seconds: u64) -> Result<String, TotpError> {
    Ok(totp(secret_base32, "", None, SKEW_STEPS)?.generate(unix_seconds).to_string())
}

/// The time step of `unix_seconds`.
pub fn step_of(unix_seconds: u64) -> u64 {
    unix_seconds / STEP_SECONDS
}

/// Check `code` at time `unix_seconds` against the secret, refusing a step at or before
/// `last_step` (the last one this account accepted, if any).
pub fn verify(secret_base32: &str, code: &str, unix_seconds: u64, last_step: Option<u64>) -> Result<Check, TotpError> {
    let t = totp(secret_base32, "", None, 0)?;
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Check::Wrong);
    }
    // Every step in the window is tried (not only the first match), so that a fresh step is
    // accepted even if an older step of the window happens to have the same code.
    let origin = step_of(unix_seconds);
    let mut reused = false;
    for step in origin.saturating_sub(SKEW_STEPS)..=origin + SKEW_STEPS {
        if t.check(code, step * STEP_SECONDS).is_some() {
            if last_step.is_some_and(|last| step <= last) {
                reused = true;
            } else {
                return Ok(Check::Accepted { step });
            }
        }
    }
    Ok(if reused { Check::Reused } else { Check::Wrong })
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 6238 Appendix B, SHA-1 (secret "12345678901234567890"), last 6 digits.
    const RFC_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    #[test]
    fn rfc_6238_test_vectors() {
        for (t, code) in [(59, "287082"), (1111111109, "081804"), (1111111111, "050471"), (1234567890, "005924"), (2000000000, "279037")] {
            assert_eq!(code_at(RFC_SECRET, t).unwrap(), code, "t={t}");
        }
    }

    #[test]
    fn a_code_is_accepted_once_and_its_step_cannot_be_replayed() {
        let s = generate_secret();
        let now = 1_800_000_015;
        let code = code_at(&s, now).unwrap();
        let Check::Accepted { step } = verify(&s, &code, now, None).unwrap() else { panic!("fresh code refused") };
        assert_eq!(step, step_of(now));
        // The same code again (even a few seconds later, same step) is a replay.
        assert_eq!(verify(&s, &code, now + 5, Some(step)).unwrap(), Check::Reused);
        // The previous step's code, still inside the skew window, is older than the last one.
        let older = code_at(&s, now - STEP_SECONDS).unwrap();
        if older != code {
            assert_eq!(verify(&s, &older, now, Some(step)).unwrap(), Check::Reused);
        }
        // The next step's code is fine.
        let next = code_at(&s, now + STEP_SECONDS).unwrap();
        assert_eq!(verify(&s, &next, now + STEP_SECONDS, Some(step)).unwrap(), Check::Accepted { step: step + 1 });
    }

    #[test]
    fn one_step_of_skew_either_way_and_no_more() {
        let s = generate_secret();
        let now = 1_800_000_000;
        for (offset, ok) in [(-60i64, false), (-30, true), (0, true), (30, true), (60, false)] {
            let code = code_at(&s, (now as i64 + offset) as u64).unwrap();
            let got = verify(&s, &code, now, None).unwrap();
            // A collision with an in-window code (one in a million) would make this flaky; the
            // secret is random, so compare against the window's own codes to be exact.
            let in_window = (-1..=1).any(|k| code_at(&s, (now as i64 + 30 * k) as u64).unwrap() == code);
            assert_eq!(matches!(got, Check::Accepted { .. }), ok || in_window, "offset {offset}");
        }
    }

    #[test]
    fn malformed_codes_and_secrets() {
        let s = generate_secret();
        for bad in ["", "12345", "1234567", "abcdef", "12 456"] {
            assert_eq!(verify(&s, bad, 1_800_000_000, None).unwrap(), Check::Wrong, "{bad:?}");
        }
        assert_eq!(verify("not base32!", "123456", 0, None), Err(TotpError::BadSecret));
        assert_eq!(verify("GEZDGNBV", "123456", 0, None), Err(TotpError::BadSecret), "too short a secret");
    }

    #[test]
    fn otpauth_uri_for_apps() {
        let s = generate_secret();
        assert_eq!(s.len(), 32);
        let uri = otpauth_uri(&s, "asha.lab", "AIIMS: New Delhi").unwrap();
        assert!(uri.starts_with("otpauth://totp/AIIMS%20%20New%20Delhi:asha.lab?secret="), "{uri}");
        assert!(uri.contains(&format!("secret={s}")));
        assert!(uri.contains("issuer=AIIMS%20%20New%20Delhi"));
        assert_eq!(otpauth_uri(&s, "a:b", "x"), Err(TotpError::BadLabel));
    }
}
