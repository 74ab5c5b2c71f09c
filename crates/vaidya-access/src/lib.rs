//! Authentication: bearer tokens and password hashing. (Roles, Cedar policies, break-the-glass
//! and the audit ledger arrive with the access issue.)
//!
//! Architecture invariant: no storage here. Callers keep the hashes this crate makes.

pub mod password;
pub mod token;
