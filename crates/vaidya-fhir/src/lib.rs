//! The FHIR R4 wire format: the resource model (from the official StructureDefinitions),
//! validation, search parameter definitions and index value extraction, OperationOutcome.
//!
//! Architecture invariant: this crate knows nothing of HTTP, SQL or the ledger. It works on
//! `serde_json::Value` and returns plain data.

pub mod model;
pub mod validate;
pub mod outcome;
pub mod fhirpath;
pub mod search_params;
pub mod index;
pub mod datetime;
