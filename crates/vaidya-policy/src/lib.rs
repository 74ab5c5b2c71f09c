//! Who may do what, decided by Cedar policies.
//!
//! The server describes each request as a [`Request`]: the signed-in account ([`Actor`]), the
//! [`Action`], the record acted on ([`Target`]: its FHIR type, its category, its patient with
//! their departments of care and confidentiality) and two facts of the moment ([`Facts`]: a care
//! relationship, an active break-the-glass grant). [`Policies::decide`] turns that into Cedar
//! entities and asks the policy set. Cedar denies whatever no policy permits, and a `forbid`
//! beats any `permit`.
//!
//! The default schema and policies (`policies/` in this crate) are compiled in. A hospital may
//! keep its own in a directory (`schema.cedarschema` and any number of `*.cedar` files): they
//! are validated against the schema when loaded, and [`Policies::reload_if_changed`] swaps in a
//! changed set only if it validates, so a typo never leaves the hospital without policies.
//!
//! Decisions are remembered ([`DECISION_CACHE_ENTRIES`]): Cedar's answer is a function of the
//! policy set and the request alone, and the cache key is the whole request (account, action,
//! record, patient facts, facts of the moment), so a remembered answer is the answer Cedar
//! would give. A reload starts a new cache. Why: building the entities and evaluating the
//! policies costs tens of microseconds, as much as serving a read, while a clinician opening
//! a chart asks the same question for each of the patient's records.
//!
//! **Architecture invariant:** no IO except reading the policy directory; no HTTP, SQL or FHIR
//! JSON. The server maps FHIR to [`Target`] and the store to [`Facts`].

mod model;

pub use model::{Action, Actor, Category, Facts, PatientFacts, Role, Target};

use cedar_policy::{Authorizer, Decision, Entities, PolicySet, Schema, ValidationMode, Validator};
use std::path::{Path, PathBuf};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

/// The schema compiled into the binary.
pub const DEFAULT_SCHEMA: &str = include_str!("../policies/schema.cedarschema");
/// The default policies compiled into the binary.
pub const DEFAULT_POLICIES: &str = include_str!("../policies/vaidya.cedar");

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("the policy schema does not parse: {0}")]
    Schema(String),
    #[error("the policies do not parse: {0}")]
    Parse(String),
    #[error("the policies do not validate against the schema: {0}")]
    Invalid(String),
    #[error("cannot read {path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{0}")]
    Request(String),
}

/// The patient id [`Policies::decide_by_attributes`] asks with (not a valid FHIR id, so no real
/// patient has it).
const ANY_PATIENT: &str = "_any";

/// Most decisions remembered per policy set; when full, the cache starts again empty (cheap,
/// and the working set of a busy hour refills it in moments).
pub const DECISION_CACHE_ENTRIES: usize = 32_768;

/// A validated policy set, its schema, and the decisions made with it.
struct Loaded {
    schema: Schema,
    policies: PolicySet,
    /// Where it came from and the newest modification time of its files (for hot reload).
    source: Option<(PathBuf, SystemTime)>,
    decisions: Mutex<HashMap<Question, Verdict>>,
    /// Some policy names a particular Patient (an entity literal of type `Vaidya::Patient`, or a
    /// type test on it): then a patient's id can change a decision.
    names_patients: bool,
}

/// Everything a decision depends on besides the policy set: the cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Question {
    actor: Actor,
    action: Action,
    target: Target,
    facts: Facts,
}

/// The decision and the policies that made it (for the audit record and for explanations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// Ids (`@id`) of the policies that decided: the permits that allowed, or the forbids that
    /// denied (empty when nothing permitted).
    pub reasons: Vec<String>,
}

/// The hospital's policies, shared by every request and swapped whole on reload.
#[derive(Clone)]
pub struct Policies {
    current: Arc<RwLock<Arc<Loaded>>>,
    authorizer: Arc<Authorizer>,
}

fn load(schema_text: &str, policy_text: &str, source: Option<(PathBuf, SystemTime)>) -> Result<Loaded, PolicyError> {
    let (schema, _warnings) = Schema::from_cedarschema_str(schema_text).map_err(|e| PolicyError::Schema(format!("{e:?}")))?;
    let policies: PolicySet = policy_text.parse().map_err(|e| PolicyError::Parse(format!("{e:?}")))?;
    let result = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
    if !result.validation_passed() {
        let errors: Vec<String> = result.validation_errors().map(|e| e.to_string()).collect();
        return Err(PolicyError::Invalid(errors.join("; ")));
    }
    // Read from each policy's JSON form, where every entity literal and type test spells its
    // type in full; a policy that cannot be shown as JSON counts as naming patients.
    let names_patients = policies.policies().any(|p| p.to_json().map_or(true, |j| j.to_string().contains("\"Vaidya::Patient\"")));
    Ok(Loaded { schema, policies, source, decisions: Mutex::new(HashMap::new()), names_patients })
}

fn read(path: &Path) -> Result<String, PolicyError> {
    std::fs::read_to_string(path).map_err(|error| PolicyError::Io { path: path.to_path_buf(), error })
}

/// The schema and policy texts of a directory, and the newest modification time among them.
fn read_dir(dir: &Path) -> Result<(String, String, SystemTime), PolicyError> {
    let io = |error| PolicyError::Io { path: dir.to_path_buf(), error };
    let schema_path = dir.join("schema.cedarschema");
    let schema = read(&schema_path)?;
    let mut newest = std::fs::metadata(&schema_path).and_then(|m| m.modified()).map_err(io)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cedar"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(PolicyError::Parse(format!("{} has no *.cedar policy files", dir.display())));
    }
    let mut text = String::new();
    for f in &files {
        text.push_str(&read(f)?);
        text.push('\n');
        let modified = std::fs::metadata(f).and_then(|m| m.modified()).map_err(io)?;
        newest = newest.max(modified);
    }
    Ok((schema, text, newest))
}

impl Policies {
    fn new(loaded: Loaded) -> Policies {
        Policies { current: Arc::new(RwLock::new(Arc::new(loaded))), authorizer: Arc::new(Authorizer::new()) }
    }

    /// The default schema and policies compiled into the binary.
    pub fn builtin() -> Policies {
        Policies::new(load(DEFAULT_SCHEMA, DEFAULT_POLICIES, None).expect("the built-in policies validate (tested)"))
    }

    /// Policies from a directory: `schema.cedarschema` and every `*.cedar` file, validated.
    pub fn from_dir(dir: &Path) -> Result<Policies, PolicyError> {
        let (schema, text, modified) = read_dir(dir)?;
        Ok(Policies::new(load(&schema, &text, Some((dir.to_path_buf(), modified)))?))
    }

    /// Reload from the directory if a file changed since the last load. A changed set that does
    /// not validate is refused and the current one stays. `Ok(true)` when a new set is in force.
    pub fn reload_if_changed(&self) -> Result<bool, PolicyError> {
        let current = self.current.read().expect("policy lock").clone();
        let Some((dir, loaded_at)) = &current.source else { return Ok(false) };
        let (schema, text, modified) = read_dir(dir)?;
        if modified <= *loaded_at {
            return Ok(false);
        }
        let fresh = load(&schema, &text, Some((dir.clone(), modified)))?;
        *self.current.write().expect("policy lock") = Arc::new(fresh);
        Ok(true)
    }

    /// Decide one request.
    pub fn decide(&self, actor: &Actor, action: Action, target: &Target, facts: Facts) -> Result<Verdict, PolicyError> {
        let loaded = self.current.read().expect("policy lock").clone();
        let question = Question { actor: actor.clone(), action, target: target.clone(), facts };
        if let Some(v) = loaded.decisions.lock().expect("decision cache lock").get(&question) {
            return Ok(v.clone());
        }
        let verdict = Self::evaluate(&loaded, &self.authorizer, actor, action, target, facts)?;
        let mut cache = loaded.decisions.lock().expect("decision cache lock");
        if cache.len() >= DECISION_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(question, verdict.clone());
        Ok(verdict)
    }

    /// [`Policies::decide`] for many records of many patients at once (a bulk export): when no
    /// policy in force names a particular patient and the account is not a patient's own, a
    /// patient's id cannot change the answer (Cedar sees the patient only through their
    /// attributes and departments, which stay in the question), so the question is asked with
    /// the id left out and one answer serves every patient alike. Otherwise it is
    /// [`Policies::decide`]. Why: an export meets tens of thousands of patients, and a Cedar
    /// evaluation for each (type, patient) took most of its time and flushed the cache that
    /// interactive requests rely on.
    pub fn decide_by_attributes(&self, actor: &Actor, action: Action, target: &Target, facts: Facts) -> Result<Verdict, PolicyError> {
        let names_patients = self.current.read().expect("policy lock").names_patients;
        if names_patients || actor.patient.is_some() || target.patient.is_none() {
            return self.decide(actor, action, target, facts);
        }
        let mut anonymous = target.clone();
        if let Some(p) = anonymous.patient.as_mut() {
            p.id = ANY_PATIENT.to_string();
        }
        self.decide(actor, action, &anonymous, facts)
    }

    /// Ask Cedar (no cache).
    fn evaluate(loaded: &Loaded, authorizer: &Authorizer, actor: &Actor, action: Action, target: &Target, facts: Facts) -> Result<Verdict, PolicyError> {
        let (request, entities): (cedar_policy::Request, Entities) = model::to_cedar(actor, action, target, facts, &loaded.schema)?;
        let response = authorizer.is_authorized(&request, &loaded.policies, &entities);
        let reasons = response.diagnostics().reason().map(|id| {
            loaded.policies.policy(id).and_then(|p| p.annotation("id").map(str::to_string)).unwrap_or_else(|| id.to_string())
        });
        let mut reasons: Vec<String> = reasons.collect();
        reasons.sort();
        if let Some(e) = response.diagnostics().errors().next() {
            // An evaluation error in a policy counts as that policy not applying (Cedar's rule);
            // it is logged so that a faulty hospital policy is noticed.
            tracing::warn!(target: "vaidya::policy", "policy evaluation error: {e}");
        }
        Ok(Verdict { allowed: response.decision() == Decision::Allow, reasons })
    }
}

#[cfg(test)]
mod tests;
