//! FHIR search: parsing a query string into typed predicates ([`parse`]) and running them
//! against the index tables ([`exec`]).
//!
//! Everything is driven by the R4 SearchParameter definitions in `vaidya-fhir`; nothing here
//! knows a resource type by name.

pub mod exec;
pub mod parse;

pub use exec::{Found, SearchOutcome, run};
pub use parse::{Handling, Query, SearchError, parse_query};

/// Page size when the client gives no `_count`.
pub const DEFAULT_COUNT: usize = 50;
/// Largest `_count` accepted; more is refused rather than silently served.
pub const MAX_COUNT: usize = 1_000;
/// Deepest offset for paging (offset paging costs grow with depth).
pub const MAX_OFFSET: usize = 100_000;
/// Search parameters (incl. repeats) in one query at most.
pub const MAX_PARAMS: usize = 64;
/// Comma-separated alternatives in one parameter at most.
pub const MAX_OR_VALUES: usize = 128;
/// `_include` + `_revinclude` directives at most, and resources they add to a page at most.
pub const MAX_INCLUDES: usize = 16;
pub const MAX_INCLUDED_RESOURCES: usize = 2_000;
/// Longest single parameter value.
pub const MAX_VALUE_LEN: usize = 1_024;
