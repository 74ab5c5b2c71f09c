//! Every FHIR interaction is allowed by an explicit policy or refused: this module describes
//! the request to the hospital's Cedar policies (`vaidya-policy`) and turns a refusal into an
//! error. It maps the signed-in account to an [`Actor`], a stored or submitted resource to a
//! [`Target`] (its category, its patient with their confidentiality and departments of care,
//! whether it is a released result), and asks.
//!
//! Where the checks run: reads and searches on the reader that serves them; writes inside the
//! writer's job, against the current version, so that what is checked is what is changed.
//! Resources the server makes itself on a user's behalf (a booking's charge, a consultation's
//! Encounter) are part of the permitted action and are not checked again.
//!
//! A refusal is 403 with the deciding policy named, except where the record's existence itself
//! is protected (a VIP or very restricted patient): then 404, as for a record that does not exist.

use crate::app::Principal;
use crate::error::ApiError;
use axum::http::StatusCode;
use serde_json::Value;
use vaidya_fhir::outcome::IssueType;
use vaidya_policy::{Action, Actor, Category, Facts, PatientFacts, Policies, Role, Target};

pub(super) const CONFIDENTIALITY: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
pub(super) const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const ENCOUNTER_DEPARTMENT: &str = "https://vaidya.dev/fhir/StructureDefinition/encounter-department";

/// The policies' view of the signed-in account. An unknown role gets the patient role's
/// nothing-but-own rights with no patient: it can do nothing.
pub fn actor(who: &Principal) -> Actor {
    let role: Role = who.role.parse().unwrap_or(Role::Patient);
    // A machine client (an integration, an analyser; made by the operator at the server's
    // console) acts within its token's scopes, which `auth::scopes::check` has already applied
    // to the request's type; a token without scopes has the account's full reach.
    let machine = role == Role::Machine;
    Actor {
        user: who.user.clone(),
        role,
        department: who.department.clone(),
        patient: who.patient.clone(),
        practitioner: who.practitioner.clone(),
        scope_read: machine,
        scope_write: machine,
    }
}

/// The Patient a resource belongs to: the Patient itself, an Appointment's patient participant,
/// or the `subject`/`patient` reference of anything else.
pub fn patient_of(rtype: &str, resource: &Value) -> Option<String> {
    let strip = |r: &str| r.strip_prefix("Patient/").map(str::to_string);
    match rtype {
        "Patient" => resource["id"].as_str().map(str::to_string),
        "Appointment" => resource["participant"].as_array()?.iter().find_map(|p| strip(p["actor"]["reference"].as_str()?)),
        _ => ["subject", "patient", "beneficiary"].iter().find_map(|f| strip(resource[*f]["reference"].as_str()?)),
    }
}

/// Whether resources of this type can belong to a patient (it has a `patient` search parameter).
pub(super) fn in_patient_compartment(rtype: &str) -> bool {
    rtype == "Patient" || vaidya_fhir::search_params::search_param(rtype, "patient").is_some()
}

/// "V" > "R" > "N" from a resource's `meta.security`, and whether it carries the celebrity label.
fn labels(resource: &Value) -> (&'static str, bool) {
    let mut level = "N";
    let mut vip = false;
    for l in resource["meta"]["security"].as_array().into_iter().flatten() {
        match (l["system"].as_str(), l["code"].as_str()) {
            (Some(CONFIDENTIALITY), Some("V")) => level = "V",
            (Some(CONFIDENTIALITY), Some("R")) if level == "N" => level = "R",
            (Some(ACT_CODE), Some("CEL")) => vip = true,
            _ => {}
        }
    }
    (level, vip)
}

fn stricter(a: &'static str, b: &'static str) -> &'static str {
    if a == "V" || b == "V" {
        "V"
    } else if a == "R" || b == "R" {
        "R"
    } else {
        "N"
    }
}

/// Who has the patient in their care: the departments of their appointments and encounters,
/// and whether `practitioner` takes part in one of them.
fn care_of(conn: &impl vaidya_store::Db, patient: &str, practitioner: Option<&str>) -> Result<(Vec<String>, bool), ApiError> {
    let mut departments = vec![];
    let mut in_care = false;
    let me = practitioner.map(|p| format!("Practitioner/{p}"));
    let is_me = |r: Option<&str>| me.is_some() && r == me.as_deref();
    let q = [("patient", format!("Patient/{patient}")), ("_count", "1000".to_string())];
    for (_, appt) in super::find(conn, "Appointment", &q)? {
        for p in appt["participant"].as_array().into_iter().flatten() {
            let r = p["actor"]["reference"].as_str();
            if let Some(d) = r.and_then(|r| r.strip_prefix("HealthcareService/")) {
                departments.push(d.to_string());
            }
            in_care |= is_me(r);
        }
    }
    for (_, enc) in super::find(conn, "Encounter", &q)? {
        for e in enc["extension"].as_array().into_iter().flatten().filter(|e| e["url"] == ENCOUNTER_DEPARTMENT) {
            if let Some(d) = e["valueReference"]["reference"].as_str().and_then(|r| r.strip_prefix("HealthcareService/")) {
                departments.push(d.to_string());
            }
        }
        for p in enc["participant"].as_array().into_iter().flatten() {
            in_care |= is_me(p["individual"]["reference"].as_str());
        }
    }
    departments.sort();
    departments.dedup();
    Ok((departments, in_care))
}

/// The facts about a patient that the policies need. Departments are looked up only for roles
/// whose rights depend on them.
/// `record_is_patient`: the record is the Patient itself, whose labels are `record_labels`
/// already (no need to read it again).
fn patient_facts(
    conn: &impl vaidya_store::Db,
    actor: &Actor,
    patient: &str,
    record_labels: (&'static str, bool),
    record_is_patient: bool,
) -> Result<PatientFacts, ApiError> {
    let (level, vip) = if record_is_patient {
        ("N", false)
    } else {
        match vaidya_store::read::current(conn, "Patient", patient)?.filter(|s| !s.deleted) {
            Some(s) => labels(&serde_json::from_slice::<Value>(&s.content).map_err(|e| ApiError::internal(e.to_string()))?),
            None => ("N", false),
        }
    };
    let clinician = matches!(actor.role, Role::Doctor | Role::Nurse);
    let (departments, in_care) = if clinician { care_of(conn, patient, actor.practitioner.as_deref())? } else { (vec![], false) };
    let glass_broken = clinician && vaidya_store::grants::active(conn, &actor.user, patient, vaidya_store::now_ms())?;
    Ok(PatientFacts {
        id: patient.to_string(),
        departments,
        confidentiality: stricter(level, record_labels.0).to_string(),
        vip: vip || record_labels.1,
        glass_broken,
        in_care,
    })
}

fn released(rtype: &str, resource: &Value) -> bool {
    super::visibility::released(rtype, resource["status"].as_str().unwrap_or_default())
}

/// What can be said of a resource without the store: its kind, whose it is, its own labels,
/// whether it is a released result. Computed before a write job, completed inside it.
#[derive(Debug, Clone)]
pub struct Described {
    kind: String,
    patient: Option<String>,
    labels: (&'static str, bool),
    released: bool,
}

pub fn describe(rtype: &str, resource: &Value) -> Described {
    Described { kind: rtype.to_string(), patient: patient_of(rtype, resource), labels: labels(resource), released: released(rtype, resource) }
}

/// [`describe`] for stored JSON, without building a `serde_json::Value` of the whole
/// resource: only the few elements the policies need are decoded, the rest is skipped. A
/// read's description is on every request's path, and a full parse of a large resource cost
/// more than the rest of the check.
pub fn describe_stored(rtype: &str, content: &[u8]) -> Result<Described, ApiError> {
    let brief: brief::Resource = serde_json::from_slice(content).map_err(|e| ApiError::internal(format!("stored {rtype} unreadable: {e}")))?;
    Ok(brief.describe(rtype))
}

/// The description of a stored Patient without labels, found without decoding it: a Patient is
/// its own patient and is always "released", and a stored resource whose bytes lack
/// `"security"` has no `meta.security`, since stored JSON is written by serde_json, which
/// escapes no letter (so the key cannot be spelt otherwise). Why: reading a patient's record is
/// the commonest request, Synthea-sized Patients are several KB, and decoding one to find no
/// labels was a third of the authorization's cost. `None`: decode it ([`describe_stored`]).
fn unlabelled_patient(rtype: &str, id: &str, content: &[u8]) -> Option<Described> {
    if rtype != "Patient" || memchr::memmem::find(content, br#""security""#).is_some() {
        return None;
    }
    Some(Described { kind: "Patient".to_string(), patient: Some(id.to_string()), labels: ("N", false), released: true })
}

/// The elements of a resource that [`describe`] looks at, and nothing else.
mod brief {
    use serde::Deserialize;

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub(super) struct Resource {
        id: Option<String>,
        status: Lenient<String>,
        meta: Meta,
        subject: Lenient<Reference>,
        patient: Lenient<Reference>,
        beneficiary: Lenient<Reference>,
        participant: Lenient<Vec<Participant>>,
    }

    /// An element whose shape differs between resource types (`Account.subject` is a list,
    /// `Observation.subject` one reference): anything but the expected shape counts as absent,
    /// as `Value` indexing would.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Lenient<T> {
        Is(T),
        Other(serde::de::IgnoredAny),
    }

    impl<T> Default for Lenient<T> {
        fn default() -> Self {
            Lenient::Other(serde::de::IgnoredAny)
        }
    }

    impl<T> Lenient<T> {
        fn get(&self) -> Option<&T> {
            match self {
                Lenient::Is(t) => Some(t),
                Lenient::Other(_) => None,
            }
        }
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Meta {
        security: Vec<Coding>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Coding {
        system: Option<String>,
        code: Option<String>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Reference {
        reference: Option<String>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Participant {
        actor: Lenient<Reference>,
    }

    impl Resource {
        pub(super) fn describe(self, rtype: &str) -> super::Described {
            let strip = |r: &Lenient<Reference>| r.get()?.reference.as_deref()?.strip_prefix("Patient/").map(str::to_string);
            let patient = match rtype {
                "Patient" => self.id.clone(),
                "Appointment" => self.participant.get().into_iter().flatten().find_map(|p| strip(&p.actor)),
                _ => [&self.subject, &self.patient, &self.beneficiary].into_iter().find_map(strip),
            };
            let mut level = "N";
            let mut vip = false;
            for l in &self.meta.security {
                match (l.system.as_deref(), l.code.as_deref()) {
                    (Some(super::CONFIDENTIALITY), Some("V")) => level = "V",
                    (Some(super::CONFIDENTIALITY), Some("R")) if level == "N" => level = "R",
                    (Some(super::ACT_CODE), Some("CEL")) => vip = true,
                    _ => {}
                }
            }
            let released = crate::fhir::visibility::released(rtype, self.status.get().map(String::as_str).unwrap_or_default());
            super::Described { kind: rtype.to_string(), patient, labels: (level, vip), released }
        }
    }
}

/// Complete a description with the patient's facts from the store.
pub fn complete(conn: &impl vaidya_store::Db, actor: &Actor, d: &Described) -> Result<Target, ApiError> {
    let patient = match &d.patient {
        Some(p) => Some(patient_facts(conn, actor, p, d.labels, d.kind == "Patient")?),
        None => None,
    };
    Ok(Target { kind: d.kind.clone(), category: Category::of_type(&d.kind, in_patient_compartment(&d.kind)), patient, released: d.released })
}

/// Patients' facts remembered across many records (a bulk export), so that each patient is
/// looked up once, not once per record. Bounded: when full it starts again.
#[derive(Default)]
pub struct FactsCache(std::collections::HashMap<String, PatientFacts>);

impl FactsCache {
    const MAX: usize = 100_000;
}

/// [`complete`] with each patient's facts looked up once per [`FactsCache`]. The record's own
/// labels are still applied to it alone.
pub fn complete_cached(conn: &impl vaidya_store::Db, actor: &Actor, d: &Described, cache: &mut FactsCache) -> Result<Target, ApiError> {
    let patient = match &d.patient {
        Some(p) => {
            let base = match cache.0.get(p) {
                Some(f) => f.clone(),
                None => {
                    let f = patient_facts(conn, actor, p, ("N", false), false)?;
                    if cache.0.len() >= FactsCache::MAX {
                        cache.0.clear();
                    }
                    cache.0.insert(p.clone(), f.clone());
                    f
                }
            };
            let confidentiality = stricter(confidentiality_level(&base.confidentiality), d.labels.0).to_string();
            Some(PatientFacts { confidentiality, vip: base.vip || d.labels.1, ..base })
        }
        None => None,
    };
    Ok(Target { kind: d.kind.clone(), category: Category::of_type(&d.kind, in_patient_compartment(&d.kind)), patient, released: d.released })
}

fn confidentiality_level(s: &str) -> &'static str {
    match s {
        "V" => "V",
        "R" => "R",
        _ => "N",
    }
}

/// The target of an action on one resource (stored or submitted).
pub fn target_of(conn: &impl vaidya_store::Db, actor: &Actor, rtype: &str, resource: &Value) -> Result<Target, ApiError> {
    complete(conn, actor, &describe(rtype, resource))
}

/// Check an action on a stored resource (its current content); on success, the id of the
/// patient it belongs to (for the audit record).
pub fn check_stored(conn: &impl vaidya_store::Db, policies: &Policies, actor: &Actor, action: Action, rtype: &str, id: &str, content: &[u8]) -> Result<Option<String>, ApiError> {
    let described = match unlabelled_patient(rtype, id, content) {
        Some(d) => d,
        None => describe_stored(rtype, content)?,
    };
    let target = complete(conn, actor, &described)?;
    check(policies, actor, action, &target, &format!("{rtype}/{id}"))?;
    Ok(target.patient.map(|p| p.id))
}

/// The patient a description names (for the audit record).
pub fn described_patient(d: &Described) -> Option<String> {
    d.patient.clone()
}

/// Whether looking this up needs searches (departments of care): then it belongs on the
/// blocking pool, not on an async worker.
pub fn needs_search(actor: &Actor) -> bool {
    matches!(actor.role, Role::Doctor | Role::Nurse)
}

/// The target of a search: the type, and the patient if the query names one.
pub fn target_of_search(conn: &impl vaidya_store::Db, actor: &Actor, rtype: &str, pairs: &[(String, String)]) -> Result<Target, ApiError> {
    let named = pairs.iter().find_map(|(k, v)| match (rtype, k.as_str()) {
        ("Patient", "_id") => Some(v.clone()).filter(|id| !id.contains(',')),
        (_, "patient" | "subject") => v.strip_prefix("Patient/").map(str::to_string).filter(|id| !id.contains(',')),
        _ => None,
    });
    let patient = match named {
        Some(p) => Some(patient_facts(conn, actor, &p, ("N", false), false)?),
        None => None,
    };
    Ok(Target { kind: rtype.to_string(), category: Category::of_type(rtype, in_patient_compartment(rtype)), patient, released: true })
}

/// Ask the policies; a refusal becomes 403 naming the deciding policy, or 404 where the
/// record's existence is itself protected.
pub fn check(policies: &Policies, actor: &Actor, action: Action, target: &Target, what: &str) -> Result<(), ApiError> {
    let verdict = policies.decide(actor, action, target, Facts::default()).map_err(|e| ApiError::internal(e.to_string()))?;
    if verdict.allowed {
        return Ok(());
    }
    // A protected patient's records, and anyone else's records to a patient, are not there.
    let hidden = target.patient.as_ref().is_some_and(|p| p.vip || p.confidentiality == "V") || actor.role == Role::Patient;
    if hidden && action == Action::Read {
        return Err(ApiError::hidden(format!("{what} is not known")));
    }
    let why = if verdict.reasons.is_empty() { "no policy permits it".to_string() } else { format!("refused by policy {}", verdict.reasons.join(", ")) };
    Err(ApiError::new(StatusCode::FORBIDDEN, IssueType::Forbidden, format!("{} may not {} {what}: {why}", actor.role.as_str(), action.as_str())))
}

/// Whether `actor` may read this stored resource (for filtering search and history results),
/// and whose it is. `facts`: one per request, so that the matches of a search, which mostly
/// share a patient, look that patient up once (a clinician's departments of care are two
/// searches).
pub fn may_read(conn: &impl vaidya_store::Db, policies: &Policies, actor: &Actor, rtype: &str, content: &[u8], facts: &mut FactsCache) -> Result<(bool, Option<String>), ApiError> {
    let target = complete_cached(conn, actor, &describe_stored(rtype, content)?, facts)?;
    let allowed = policies.decide(actor, Action::Read, &target, Facts::default()).map_err(|e| ApiError::internal(e.to_string()))?.allowed;
    Ok((allowed, target.patient.map(|p| p.id)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_patient_without_labels_is_described_without_decoding_as_decoding_would() {
        let plain = br#"{"resourceType":"Patient","id":"p1","meta":{"versionId":"2"},"name":[{"text":"Asha security"}]}"#;
        let fast = unlabelled_patient("Patient", "p1", plain).expect("no labels");
        let slow = describe_stored("Patient", plain).unwrap();
        assert_eq!((fast.patient, fast.labels, fast.released), (slow.patient, slow.labels, slow.released));
        let vip = format!(r#"{{"resourceType":"Patient","id":"p2","meta":{{"security":[{{"system":"{ACT_CODE}","code":"CEL"}}]}}}}"#);
        assert!(unlabelled_patient("Patient", "p2", vip.as_bytes()).is_none(), "labels: decode");
        assert_eq!(describe_stored("Patient", vip.as_bytes()).unwrap().labels, ("N", true));
        assert!(unlabelled_patient("Observation", "o1", plain).is_none(), "only Patients");
    }

    #[test]
    fn whose_record_it_is() {
        assert_eq!(patient_of("Patient", &json!({"id": "p1"})).as_deref(), Some("p1"));
        assert_eq!(patient_of("Observation", &json!({"subject": {"reference": "Patient/p2"}})).as_deref(), Some("p2"));
        assert_eq!(patient_of("AllergyIntolerance", &json!({"patient": {"reference": "Patient/p3"}})).as_deref(), Some("p3"));
        assert_eq!(patient_of("Observation", &json!({"subject": {"reference": "Group/g"}})), None);
        assert_eq!(
            patient_of("Appointment", &json!({"participant": [{"actor": {"reference": "Practitioner/d"}}, {"actor": {"reference": "Patient/p4"}}]})).as_deref(),
            Some("p4")
        );
        assert!(in_patient_compartment("Observation"));
        assert!(!in_patient_compartment("Organization"));
    }

    /// The quick description of stored JSON says what the full one says, for every official
    /// example resource (all types, all shapes of `subject`, `patient`, `participant`).
    #[test]
    fn stored_descriptions_match_full_ones() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/fhir-r4-core/examples");
        let mut compared = 0;
        let mut with_patient = 0;
        for entry in std::fs::read_dir(&dir).expect("the official examples (../shared/data)") {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            let Ok(resource) = serde_json::from_slice::<Value>(&bytes) else { continue };
            let Some(rtype) = resource["resourceType"].as_str() else { continue };
            let full = describe(rtype, &resource);
            let quick = describe_stored(rtype, &bytes).unwrap_or_else(|e| panic!("{rtype}: {e:?}"));
            assert_eq!(
                (&quick.kind, &quick.patient, quick.labels, quick.released),
                (&full.kind, &full.patient, full.labels, full.released),
                "{rtype}/{}",
                resource["id"]
            );
            compared += 1;
            with_patient += full.patient.is_some() as usize;
        }
        assert!(compared > 250 && with_patient > 50, "{compared} examples, {with_patient} with a patient");
    }

    #[test]
    fn confidentiality_labels() {
        let r = json!({"meta": {"security": [{"system": CONFIDENTIALITY, "code": "R"}, {"system": ACT_CODE, "code": "CEL"}]}});
        assert_eq!(labels(&r), ("R", true));
        assert_eq!(labels(&json!({})), ("N", false));
        assert_eq!(stricter("R", "V"), "V");
        assert_eq!(stricter("N", "R"), "R");
    }
}
