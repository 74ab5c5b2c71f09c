//! Unreleased results stay in the laboratory. A DiagnosticReport is seen outside the lab only
//! once released (`final`, `amended`, `corrected`, `appended`), and an Observation only once
//! it is no longer `registered` or `preliminary` (entered, not yet verified and released).
//! Lab and radiology staff see everything they work on; so does `admin` until the access-policy
//! work gives each role its own least privilege.
//!
//! The rule is applied where resources leave the server: reads and vreads answer 404 (as for a
//! resource that does not exist, so that its existence is not given away), searches carry an
//! extra status condition (so that counts and pages stay right), and history listings and
//! included resources leave hidden versions out.

use serde::Deserialize;

/// Who is looking, as far as this rule cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    /// Lab and radiology staff (and admin): every status.
    Lab,
    /// Everyone else: released results only.
    Clinical,
}

impl Viewer {
    pub fn of_role(role: &str) -> Viewer {
        match role {
            "lab" | "radiology" | "admin" => Viewer::Lab,
            _ => Viewer::Clinical,
        }
    }
}

const RELEASED_REPORT: [&str; 4] = ["final", "amended", "corrected", "appended"];
const UNRELEASED_OBSERVATION: [&str; 2] = ["registered", "preliminary"];

#[derive(Deserialize)]
struct StatusOnly<'a> {
    #[serde(borrow)]
    status: Option<&'a str>,
}

/// Whether `viewer` may see this stored resource.
pub fn visible(viewer: Viewer, rtype: &str, content: &[u8]) -> bool {
    if viewer == Viewer::Lab || !matches!(rtype, "DiagnosticReport" | "Observation") {
        return true;
    }
    // Only the status is needed: skip building the whole document.
    let status = serde_json::from_slice::<StatusOnly<'_>>(content).ok().and_then(|s| s.status).unwrap_or_default();
    match rtype {
        "DiagnosticReport" => RELEASED_REPORT.contains(&status),
        _ => !UNRELEASED_OBSERVATION.contains(&status),
    }
}

/// The search conditions that keep hidden results out of `viewer`'s searches of `rtype`.
pub fn search_conditions(viewer: Viewer, rtype: &str) -> Vec<(String, String)> {
    match (viewer, rtype) {
        (Viewer::Lab, _) => vec![],
        (_, "DiagnosticReport") => vec![("status".into(), RELEASED_REPORT.join(","))],
        (_, "Observation") => UNRELEASED_OBSERVATION.iter().map(|s| ("status:not".to_string(), s.to_string())).collect(),
        _ => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clinical_staff_see_released_results_only() {
        let report = |s: &str| format!(r#"{{"resourceType":"DiagnosticReport","status":"{s}","text":{{"div":"x"}}}}"#);
        assert!(!visible(Viewer::Clinical, "DiagnosticReport", report("preliminary").as_bytes()));
        assert!(!visible(Viewer::Clinical, "DiagnosticReport", report("registered").as_bytes()));
        assert!(visible(Viewer::Clinical, "DiagnosticReport", report("final").as_bytes()));
        assert!(visible(Viewer::Clinical, "DiagnosticReport", report("amended").as_bytes()));
        assert!(visible(Viewer::Lab, "DiagnosticReport", report("preliminary").as_bytes()));
        assert!(!visible(Viewer::Clinical, "Observation", br#"{"status":"preliminary"}"#));
        assert!(visible(Viewer::Clinical, "Observation", br#"{"status":"final"}"#));
        assert!(visible(Viewer::Clinical, "Patient", br#"{"status":"preliminary"}"#));
        // No status at all (not valid FHIR for these types) is not released.
        assert!(!visible(Viewer::Clinical, "DiagnosticReport", br#"{"id":"x"}"#));
        assert_eq!(Viewer::of_role("doctor"), Viewer::Clinical);
        assert_eq!(Viewer::of_role("lab"), Viewer::Lab);
        assert_eq!(search_conditions(Viewer::Clinical, "DiagnosticReport").len(), 1);
        assert!(search_conditions(Viewer::Lab, "DiagnosticReport").is_empty());
    }
}
