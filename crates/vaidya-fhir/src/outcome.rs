//! Issues found while processing FHIR input, and their wire form, the OperationOutcome resource
//! (https://hl7.org/fhir/R4/operationoutcome.html).

use serde_json::{Map, Value, json};
use std::fmt;

/// One problem (or note) about the input: what kind, how bad, where, and a human explanation.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub severity: Severity,
    pub code: IssueType,
    /// FHIRPath-like location of the problem, e.g. `Patient.name[0].given[1]`.
    pub expression: Option<String>,
    pub diagnostics: String,
}

impl Issue {
    pub fn new(severity: Severity, code: IssueType, diagnostics: impl Into<String>) -> Self {
        Issue {
            severity,
            code,
            expression: None,
            diagnostics: diagnostics.into(),
        }
    }

    pub fn fatal(code: IssueType, diagnostics: impl Into<String>) -> Self {
        Self::new(Severity::Fatal, code, diagnostics)
    }

    pub fn error(code: IssueType, diagnostics: impl Into<String>) -> Self {
        Self::new(Severity::Error, code, diagnostics)
    }

    pub fn warning(code: IssueType, diagnostics: impl Into<String>) -> Self {
        Self::new(Severity::Warning, code, diagnostics)
    }

    pub fn information(code: IssueType, diagnostics: impl Into<String>) -> Self {
        Self::new(Severity::Information, code, diagnostics)
    }

    /// The same issue, located at `expression`.
    pub fn at(mut self, expression: impl Into<String>) -> Self {
        self.expression = Some(expression.into());
        self
    }

    /// Whether the issue makes the input unacceptable (fatal or error).
    pub fn is_error(&self) -> bool {
        matches!(self.severity, Severity::Fatal | Severity::Error)
    }

    /// The issue as an `OperationOutcome.issue` element.
    pub fn to_json(&self) -> Value {
        let mut issue = Map::new();
        issue.insert("severity".into(), Value::from(self.severity.as_str()));
        issue.insert("code".into(), Value::from(self.code.as_str()));
        if !self.diagnostics.is_empty() {
            issue.insert("diagnostics".into(), Value::from(self.diagnostics.as_str()));
        }
        if let Some(expression) = &self.expression {
            issue.insert("expression".into(), json!([expression]));
        }
        Value::Object(issue)
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.severity.as_str(), self.code.as_str())?;
        if let Some(expression) = &self.expression {
            write!(f, " at {expression}")?;
        }
        write!(f, ": {}", self.diagnostics)
    }
}

/// https://hl7.org/fhir/R4/valueset-issue-severity.html
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

impl Severity {
    /// The wire code.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// https://hl7.org/fhir/R4/valueset-issue-type.html
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IssueType {
    Invalid,
    Structure,
    Required,
    Value,
    Invariant,
    Security,
    Login,
    Unknown,
    Expired,
    Forbidden,
    Suppressed,
    Processing,
    NotSupported,
    Duplicate,
    MultipleMatches,
    NotFound,
    Deleted,
    TooLong,
    CodeInvalid,
    Extension,
    TooCosts,
    BusinessRule,
    Conflict,
    Transient,
    LockError,
    NoStore,
    Exception,
    Timeout,
    Incomplete,
    Throttled,
    Informational,
}

impl IssueType {
    /// The wire code. (`TooCosts` is spelled `too-costly` on the wire.)
    pub fn as_str(self) -> &'static str {
        use IssueType::*;
        match self {
            Invalid => "invalid",
            Structure => "structure",
            Required => "required",
            Value => "value",
            Invariant => "invariant",
            Security => "security",
            Login => "login",
            Unknown => "unknown",
            Expired => "expired",
            Forbidden => "forbidden",
            Suppressed => "suppressed",
            Processing => "processing",
            NotSupported => "not-supported",
            Duplicate => "duplicate",
            MultipleMatches => "multiple-matches",
            NotFound => "not-found",
            Deleted => "deleted",
            TooLong => "too-long",
            CodeInvalid => "code-invalid",
            Extension => "extension",
            TooCosts => "too-costly",
            BusinessRule => "business-rule",
            Conflict => "conflict",
            Transient => "transient",
            LockError => "lock-error",
            NoStore => "no-store",
            Exception => "exception",
            Timeout => "timeout",
            Incomplete => "incomplete",
            Throttled => "throttled",
            Informational => "informational",
        }
    }
}

/// An OperationOutcome resource reporting `issues`. R4 requires at least one issue, so an empty
/// list is reported as a single informational "all OK" issue.
pub fn operation_outcome(issues: &[Issue]) -> Value {
    let issues: Vec<Value> = if issues.is_empty() {
        vec![Issue::information(IssueType::Informational, "All OK").to_json()]
    } else {
        issues.iter().map(Issue::to_json).collect()
    };
    json!({ "resourceType": "OperationOutcome", "issue": issues })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_codes_follow_the_issue_type_value_set() {
        let cases = [
            (IssueType::TooLong, "too-long"),
            (IssueType::CodeInvalid, "code-invalid"),
            (IssueType::NotSupported, "not-supported"),
            (IssueType::MultipleMatches, "multiple-matches"),
            (IssueType::BusinessRule, "business-rule"),
            (IssueType::LockError, "lock-error"),
            (IssueType::NoStore, "no-store"),
            (IssueType::TooCosts, "too-costly"),
            (IssueType::NotFound, "not-found"),
            (IssueType::Informational, "informational"),
        ];
        for (code, wire) in cases {
            assert_eq!(code.as_str(), wire);
        }
    }

    #[test]
    fn outcome_carries_severity_code_diagnostics_and_expression() {
        let issue = Issue::error(
            IssueType::Required,
            "minimum cardinality 1 not met for 'status'",
        )
        .at("Observation");
        let outcome = operation_outcome(&[issue, Issue::warning(IssueType::Value, "odd")]);
        assert_eq!(
            outcome,
            json!({
                "resourceType": "OperationOutcome",
                "issue": [
                    { "severity": "error", "code": "required",
                      "diagnostics": "minimum cardinality 1 not met for 'status'", "expression": ["Observation"] },
                    { "severity": "warning", "code": "value", "diagnostics": "odd" }
                ]
            })
        );
    }

    #[test]
    fn empty_outcome_still_has_an_issue() {
        let outcome = operation_outcome(&[]);
        assert_eq!(outcome["issue"][0]["severity"], "information");
        assert_eq!(outcome["issue"][0]["code"], "informational");
    }

    #[test]
    fn display_names_location_and_message() {
        let issue = Issue::error(IssueType::Structure, "unknown element 'foo'").at("Patient.foo");
        assert_eq!(
            issue.to_string(),
            "error (structure) at Patient.foo: unknown element 'foo'"
        );
        assert!(issue.is_error());
        assert!(!Issue::warning(IssueType::Value, "x").is_error());
    }
}
