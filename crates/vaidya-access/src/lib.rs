//! Authentication: bearer tokens, password hashing, the TOTP second factor, lockout rules and
//! token scopes. (Cedar policies, break-the-glass and the audit ledger arrive with the rest of
//! the access issue.)
//!
//! Architecture invariant: no storage, IO or HTTP here. Callers keep the hashes, secrets and
//! counters this crate makes and pass in the time.

pub mod lockout;
pub mod password;
pub mod scope;
pub mod token;
pub mod totp;
