//! SMART on FHIR (v1) style scopes for tokens: `<context>/<Type|*>.<read|write|*>`, e.g.
//! `system/Observation.write` for a lab analyser that only posts results, or
//! `system/*.read` for a reporting integration.
//!
//! The context (`system`, `user`, `patient`) is parsed and kept; [`ScopeSet::allows`] looks only
//! at the resource type and the access, because narrowing `patient/` scopes to a patient's
//! compartment and `user/` scopes to the user's own rights is the policy layer's work (a scope
//! only ever takes rights away from the account's role, never adds any).
//!
//! Architecture invariant: no knowledge of which resource types exist; the caller checks a
//! named type against the FHIR model if it wants to.

use std::fmt;

/// What a request does to a resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    System,
    User,
    Patient,
}

/// `read`, `write` or `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Read,
    Write,
    All,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub context: Context,
    /// `None` for `*` (every type).
    pub resource_type: Option<String>,
    pub permission: Permission,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScopeError {
    #[error("'{0}' is not a scope: expected system/, user/ or patient/, then Type.read, Type.write or Type.* (Type may be *)")]
    Malformed(String),
    #[error("no scopes given")]
    Empty,
}

impl Scope {
    pub fn parse(text: &str) -> Result<Scope, ScopeError> {
        let bad = || ScopeError::Malformed(text.to_string());
        let (context, rest) = text.split_once('/').ok_or_else(bad)?;
        let context = match context {
            "system" => Context::System,
            "user" => Context::User,
            "patient" => Context::Patient,
            _ => return Err(bad()),
        };
        let (rtype, permission) = rest.rsplit_once('.').ok_or_else(bad)?;
        let permission = match permission {
            "read" => Permission::Read,
            "write" => Permission::Write,
            "*" => Permission::All,
            _ => return Err(bad()),
        };
        let resource_type = match rtype {
            "*" => None,
            t if t.len() <= 64
                && t.starts_with(|c: char| c.is_ascii_uppercase())
                && t.bytes().all(|b| b.is_ascii_alphanumeric()) =>
            {
                Some(t.to_string())
            }
            _ => return Err(bad()),
        };
        Ok(Scope { context, resource_type, permission })
    }

    /// Does this scope permit `access` to resources of type `resource_type`?
    pub fn allows(&self, resource_type: &str, access: Access) -> bool {
        self.resource_type.as_deref().is_none_or(|t| t == resource_type) && self.permits(access)
    }

    /// Does this scope permit `access` to every type (`*`)? For requests that may touch any
    /// type, such as a transaction Bundle or system history.
    pub fn allows_all(&self, access: Access) -> bool {
        self.resource_type.is_none() && self.permits(access)
    }

    fn permits(&self, access: Access) -> bool {
        matches!((self.permission, access), (Permission::All, _) | (Permission::Read, Access::Read) | (Permission::Write, Access::Write))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let context = match self.context {
            Context::System => "system",
            Context::User => "user",
            Context::Patient => "patient",
        };
        let permission = match self.permission {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::All => "*",
        };
        write!(f, "{context}/{}.{permission}", self.resource_type.as_deref().unwrap_or("*"))
    }
}

/// The scopes of one token (space-separated in text, as in OAuth 2.0). A request is allowed if
/// any scope allows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeSet(Vec<Scope>);

impl ScopeSet {
    /// Parse space-separated scopes; at least one, each valid. Duplicates are dropped.
    pub fn parse(text: &str) -> Result<ScopeSet, ScopeError> {
        let mut scopes: Vec<Scope> = Vec::new();
        for s in text.split_ascii_whitespace() {
            let s = Scope::parse(s)?;
            if !scopes.contains(&s) {
                scopes.push(s);
            }
        }
        if scopes.is_empty() {
            return Err(ScopeError::Empty);
        }
        Ok(ScopeSet(scopes))
    }

    pub fn allows(&self, resource_type: &str, access: Access) -> bool {
        self.0.iter().any(|s| s.allows(resource_type, access))
    }

    pub fn allows_all(&self, access: Access) -> bool {
        self.0.iter().any(|s| s.allows_all(access))
    }

    pub fn scopes(&self) -> &[Scope] {
        &self.0
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{s}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_smart_v1_scopes() {
        let s = Scope::parse("system/Observation.write").unwrap();
        assert_eq!(s, Scope { context: Context::System, resource_type: Some("Observation".into()), permission: Permission::Write });
        assert_eq!(Scope::parse("user/*.read").unwrap().resource_type, None);
        assert_eq!(Scope::parse("patient/Patient.*").unwrap().permission, Permission::All);
        for text in ["system/Observation.write", "user/*.read", "patient/Patient.*", "system/*.*"] {
            assert_eq!(Scope::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn refuses_malformed_scopes() {
        for bad in ["", "Observation.read", "system/Observation", "system/Observation.delete", "admin/Patient.read",
            "system/observation.read", "system/Obs-ervation.read", "system/.read", "system/Patient.read.x", "openid", "system/Patient.cruds"] {
            assert!(Scope::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(ScopeSet::parse("  "), Err(ScopeError::Empty));
        assert!(ScopeSet::parse("system/Patient.read nonsense").is_err());
    }

    #[test]
    fn a_set_allows_what_any_scope_allows() {
        let set = ScopeSet::parse("system/Observation.write system/Patient.read system/Patient.read").unwrap();
        assert_eq!(set.to_string(), "system/Observation.write system/Patient.read");
        assert!(set.allows("Observation", Access::Write));
        assert!(!set.allows("Observation", Access::Read));
        assert!(set.allows("Patient", Access::Read));
        assert!(!set.allows("Patient", Access::Write));
        assert!(!set.allows("Encounter", Access::Read));
        assert!(!set.allows_all(Access::Read));
        let all_read = ScopeSet::parse("system/*.read").unwrap();
        assert!(all_read.allows("Encounter", Access::Read) && !all_read.allows("Encounter", Access::Write));
        assert!(all_read.allows_all(Access::Read) && !all_read.allows_all(Access::Write));
        let everything = ScopeSet::parse("user/*.*").unwrap();
        assert!(everything.allows_all(Access::Read) && everything.allows_all(Access::Write));
    }
}
