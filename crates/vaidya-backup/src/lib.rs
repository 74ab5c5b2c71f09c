//! Backups that ransomware cannot take: the ledgers (data and audit) are shipped as segments,
//! compressed and encrypted to keys the server does not hold, to storage the server cannot
//! delete or overwrite; and restored, verified, from that storage alone.
//!
//! Architecture invariant: no HTTP server and no FHIR here. The server hands this crate the
//! sources (what to ship) and the targets (where to); this crate never decides what a record
//! means.

pub mod seal;
pub mod segment;
pub mod source;
pub mod ship;
pub mod snapshot;
pub mod snapshotter;
pub mod restore;
pub mod target;
pub mod dir;
pub mod s3;
#[cfg(feature = "test-support")]
pub mod seaweed;
