//! The request as the server describes it, and its translation into Cedar entities.

use crate::PolicyError;
use cedar_policy::{Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression, Schema};
use std::collections::{HashMap, HashSet};
use std::str::FromStr;

/// The roles Vaidya knows. `Machine` is an integration or analyser acting under token scopes;
/// `Node` a department node, which follows the ledger (`/node/feed`) and has no FHIR access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Registration,
    Doctor,
    Nurse,
    Lab,
    Radiology,
    Billing,
    Admin,
    PrivacyOfficer,
    Auditor,
    Patient,
    Machine,
    Node,
}

impl Role {
    pub const ALL: [Role; 12] = [
        Role::Registration,
        Role::Doctor,
        Role::Nurse,
        Role::Lab,
        Role::Radiology,
        Role::Billing,
        Role::Admin,
        Role::PrivacyOfficer,
        Role::Auditor,
        Role::Patient,
        Role::Machine,
        Role::Node,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Registration => "registration",
            Role::Doctor => "doctor",
            Role::Nurse => "nurse",
            Role::Lab => "lab",
            Role::Radiology => "radiology",
            Role::Billing => "billing",
            Role::Admin => "admin",
            Role::PrivacyOfficer => "privacy-officer",
            Role::Auditor => "auditor",
            Role::Patient => "patient",
            Role::Machine => "machine",
            Role::Node => "node",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| format!("unknown role '{s}'"))
    }
}

/// What is being done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Read,
    Search,
    Create,
    Update,
    Delete,
    /// A named operation (`$pay`, `$queue`, ...).
    Operate,
    /// Cancelling a booking.
    Cancel,
    Export,
    /// Emergency access outside one's normal rights.
    BreakGlass,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Search => "search",
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Operate => "operate",
            Action::Cancel => "cancel",
            Action::Export => "export",
            Action::BreakGlass => "break-glass",
        }
    }
}

/// What kind of data a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// Observations, reports, diagnoses, orders, encounters, notes...
    Clinical,
    /// The Patient record itself.
    Demographic,
    /// Appointments.
    Scheduling,
    /// Charges, invoices, accounts.
    Financial,
    /// Departments, people, schedules, slots, the tariff and catalogue, terminology.
    Directory,
    /// AuditEvents.
    Audit,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Clinical => "clinical",
            Category::Demographic => "demographic",
            Category::Scheduling => "scheduling",
            Category::Financial => "financial",
            Category::Directory => "directory",
            Category::Audit => "audit",
        }
    }

    /// The category of a FHIR resource type. Types not named here that can belong to a patient
    /// count as clinical; the rest as directory.
    pub fn of_type(rtype: &str, patient_compartment: bool) -> Category {
        match rtype {
            "Patient" | "RelatedPerson" | "Person" => Category::Demographic,
            "Appointment" | "AppointmentResponse" => Category::Scheduling,
            "ChargeItem" | "Invoice" | "Account" | "PaymentReconciliation" | "PaymentNotice" | "Claim" | "ClaimResponse"
            | "Coverage" | "CoverageEligibilityRequest" | "CoverageEligibilityResponse" | "ExplanationOfBenefit" => Category::Financial,
            "AuditEvent" | "Provenance" => Category::Audit,
            "Slot" | "Schedule" | "Organization" | "HealthcareService" | "Practitioner" | "PractitionerRole" | "Location"
            | "Endpoint" | "ChargeItemDefinition" | "ActivityDefinition" | "PlanDefinition" | "ValueSet" | "CodeSystem"
            | "ConceptMap" | "StructureDefinition" | "SearchParameter" | "OperationDefinition" | "Questionnaire" => Category::Directory,
            _ if patient_compartment => Category::Clinical,
            _ => Category::Directory,
        }
    }
}

/// The signed-in account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Actor {
    pub user: String,
    pub role: Role,
    pub department: Option<String>,
    /// For a patient's own account: their Patient id.
    pub patient: Option<String>,
    /// For a clinician: the Practitioner they are (whose appointments and encounters put a
    /// patient in their care). Not given to Cedar: the server turns it into `in_care`.
    pub practitioner: Option<String>,
    /// For a machine client: whether its scopes allow reading / writing the target's type.
    pub scope_read: bool,
    pub scope_write: bool,
}

/// A patient as the policies see them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PatientFacts {
    pub id: String,
    /// Departments with this patient in their care (appointments, encounters there).
    pub departments: Vec<String>,
    /// "N", "R" or "V" (FHIR v3 Confidentiality).
    pub confidentiality: String,
    pub vip: bool,
    /// The deciding account holds an active break-the-glass grant for this patient.
    pub glass_broken: bool,
    /// The deciding account's Practitioner has an appointment or encounter with this patient.
    pub in_care: bool,
}

/// The record acted on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub kind: String,
    pub category: Category,
    pub patient: Option<PatientFacts>,
    /// False for unreleased results (preliminary reports and observations).
    pub released: bool,
}

/// Facts of the moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Facts {
    /// The account's person has an appointment or encounter with the target's patient.
    pub in_care: bool,
    /// A break-the-glass grant is active for this account and the target's patient.
    pub break_glass: bool,
}

fn uid(kind: &str, id: &str) -> Result<EntityUid, PolicyError> {
    let name = EntityTypeName::from_str(&format!("Vaidya::{kind}")).map_err(|e| PolicyError::Request(e.to_string()))?;
    let id = EntityId::from_str(id).map_err(|e| PolicyError::Request(e.to_string()))?;
    Ok(EntityUid::from_type_name_and_id(name, id))
}

fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_string())
}

fn entity(uid: EntityUid, attrs: HashMap<String, RestrictedExpression>, parents: HashSet<EntityUid>) -> Result<Entity, PolicyError> {
    Entity::new(uid, attrs, parents).map_err(|e| PolicyError::Request(e.to_string()))
}

/// Build the Cedar request and entities for one decision, checked against the schema.
pub(crate) fn to_cedar(actor: &Actor, action: Action, target: &Target, facts: Facts, schema: &Schema) -> Result<(cedar_policy::Request, Entities), PolicyError> {
    let mut entities = vec![];
    let mut departments: HashSet<String> = HashSet::new();

    let patient_uid = match &target.patient {
        Some(p) => {
            let uid = uid("Patient", &p.id)?;
            let parents = p.departments.iter().map(|d| uid_dept(d)).collect::<Result<HashSet<_>, _>>()?;
            departments.extend(p.departments.iter().cloned());
            let attrs = HashMap::from([
                ("confidentiality".to_string(), string(&p.confidentiality)),
                ("vip".to_string(), RestrictedExpression::new_bool(p.vip)),
            ]);
            entities.push(entity(uid.clone(), attrs, parents)?);
            Some(uid)
        }
        None => None,
    };

    // A patient account's own Patient, when the target is not theirs (or names no patient).
    let own_uid = match &actor.patient {
        Some(own) => {
            let uid = uid("Patient", own)?;
            if patient_uid.as_ref() != Some(&uid) {
                let attrs = HashMap::from([
                    ("confidentiality".to_string(), string("N")),
                    ("vip".to_string(), RestrictedExpression::new_bool(false)),
                ]);
                entities.push(entity(uid.clone(), attrs, HashSet::new())?);
            }
            Some(uid)
        }
        None => None,
    };

    let user_uid = uid("User", &actor.user)?;
    let mut user_attrs = HashMap::from([
        ("role".to_string(), string(actor.role.as_str())),
        ("scope_read".to_string(), RestrictedExpression::new_bool(actor.scope_read)),
        ("scope_write".to_string(), RestrictedExpression::new_bool(actor.scope_write)),
    ]);
    let mut user_parents = HashSet::new();
    if let Some(d) = &actor.department {
        let d_uid = uid_dept(d)?;
        user_attrs.insert("department".to_string(), RestrictedExpression::new_entity_uid(d_uid.clone()));
        user_parents.insert(d_uid);
        departments.insert(d.clone());
    }
    if let Some(own) = own_uid {
        user_attrs.insert("patient".to_string(), RestrictedExpression::new_entity_uid(own));
    }
    entities.push(entity(user_uid.clone(), user_attrs, user_parents)?);
    for d in departments {
        entities.push(Entity::new_no_attrs(uid_dept(&d)?, HashSet::new()));
    }

    let record_uid = uid("Record", &target.kind)?;
    let mut record_attrs = HashMap::from([
        ("kind".to_string(), string(&target.kind)),
        ("category".to_string(), string(target.category.as_str())),
        ("released".to_string(), RestrictedExpression::new_bool(target.released)),
    ]);
    if let Some(p) = patient_uid {
        record_attrs.insert("patient".to_string(), RestrictedExpression::new_entity_uid(p));
    }
    entities.push(entity(record_uid.clone(), record_attrs, HashSet::new())?);

    let entities = Entities::from_entities(entities, Some(schema)).map_err(|e| PolicyError::Request(e.to_string()))?;
    let context = Context::from_pairs([
        ("in_care".to_string(), RestrictedExpression::new_bool(facts.in_care || target.patient.as_ref().is_some_and(|p| p.in_care))),
        (
            "break_glass".to_string(),
            RestrictedExpression::new_bool(facts.break_glass || target.patient.as_ref().is_some_and(|p| p.glass_broken)),
        ),
    ])
    .map_err(|e| PolicyError::Request(e.to_string()))?;
    let action_uid = EntityUid::from_str(&format!("Vaidya::Action::\"{}\"", action.as_str())).map_err(|e| PolicyError::Request(e.to_string()))?;
    let request = cedar_policy::Request::new(user_uid, action_uid, record_uid, context, Some(schema)).map_err(|e| PolicyError::Request(e.to_string()))?;
    Ok((request, entities))
}

fn uid_dept(d: &str) -> Result<EntityUid, PolicyError> {
    uid("Department", d)
}
