//! A token's scopes at the FHIR and print surfaces: the minimal, path-based check. A scope
//! only takes rights away from the account's role; the role's own rules still apply.
//!
//! HOOK for the policy layer: when per-role policies arrive they should take
//! `Principal::scopes` into account themselves (per resource, inside Bundles and includes);
//! until then [`check`] refuses what it cannot judge from the path: a Bundle or a system-level
//! request needs `*` scopes, and `_include`/`_revinclude` (which pull in other types) need
//! `*.read`.

use crate::app::Principal;
use crate::error::ApiError;
use axum::http::{Method, StatusCode, Uri};
use vaidya_access::scope::Access;
use vaidya_fhir::outcome::IssueType;

/// May `who` make this request, as far as the token's scopes go? `uri` is as the nested
/// router sees it (`/Patient/p1`, without `/fhir` or `/print`).
pub fn check(who: &Principal, method: &Method, uri: &Uri) -> Result<(), ApiError> {
    let Some(scopes) = &who.scopes else { return Ok(()) };
    // An export job's status and files: fhir/export.rs lets only the job's requester (and
    // privacy officers, for the status) near them, and checked its types against these scopes
    // when it was kicked off.
    if uri.path().starts_with("/$export-status") || uri.path().starts_with("/$export-file/") {
        return Ok(());
    }
    let mut segments = uri.path().trim_start_matches('/').split('/');
    let first = segments.next().unwrap_or("");
    let second = segments.next();
    let access = if *method == Method::GET || *method == Method::HEAD || (*method == Method::POST && second == Some("_search")) {
        Access::Read
    } else {
        Access::Write
    };
    let system_level = first.is_empty() || !first.starts_with(|c: char| c.is_ascii_uppercase());
    let includes = uri.query().is_some_and(|q| q.contains("_include") || q.contains("_revinclude"));
    let allowed = if system_level {
        scopes.allows_all(Access::Read) && (access == Access::Read || scopes.allows_all(Access::Write))
    } else {
        scopes.allows(first, access) && (!includes || scopes.allows_all(Access::Read))
    };
    if allowed {
        Ok(())
    } else {
        let what = if system_level { "this system-level request".to_string() } else { format!("{} of {first}", if access == Access::Read { "reading" } else { "writing" }) };
        Err(ApiError::new(StatusCode::FORBIDDEN, IssueType::Forbidden, format!("the token's scopes ({scopes}) do not allow {what}")))
    }
}

// Tested in tests/auth.rs (`scope_gate_by_path`), beside the end-to-end scope tests.
