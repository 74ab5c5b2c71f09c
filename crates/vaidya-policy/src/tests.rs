//! The default policies, decided for every role against every kind of action on normal,
//! restricted and VIP records. Each row states the expected answer; the table is the policy's
//! specification in a form a privacy officer can read.

use super::*;

fn actor(role: Role) -> Actor {
    let department = match role {
        Role::Doctor | Role::Nurse => Some("gen-med".to_string()),
        Role::Lab => Some("lab".to_string()),
        _ => None,
    };
    let patient = (role == Role::Patient).then(|| "p-own".to_string());
    Actor { user: format!("{}-user", role.as_str()), role, department, patient, practitioner: None, scope_read: false, scope_write: false }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    /// A patient of gen-med (the doctor's and nurse's department).
    OfGenMed,
    /// A patient only ENT has seen.
    Elsewhere,
    /// The patient account's own record.
    Own,
}

fn patient(who: Who, confidentiality: &str, vip: bool) -> PatientFacts {
    let (id, departments) = match who {
        Who::OfGenMed => ("p-gm", vec!["gen-med".to_string()]),
        Who::Elsewhere => ("p-ent", vec!["ent".to_string()]),
        Who::Own => ("p-own", vec!["gen-med".to_string()]),
    };
    PatientFacts { id: id.into(), departments, confidentiality: confidentiality.into(), vip, glass_broken: false, in_care: false }
}

fn target(kind: &str, who: Option<(Who, &str, bool)>) -> Target {
    let patient = who.map(|(w, c, v)| patient(w, c, v));
    Target { kind: kind.into(), category: Category::of_type(kind, true), patient, released: true }
}

fn allowed(role: Role, action: Action, t: &Target, facts: Facts) -> bool {
    Policies::builtin().decide(&actor(role), action, t, facts).unwrap().allowed
}

const NO: Facts = Facts { in_care: false, break_glass: false };

#[test]
fn the_builtin_policies_validate_against_the_schema() {
    load(DEFAULT_SCHEMA, DEFAULT_POLICIES, None).unwrap();
}

#[test]
fn the_matrix() {
    use Action::*;
    use Role::*;
    let obs = |who: Who| target("Observation", Some((who, "N", false)));
    let patient_rec = |who: Who| target("Patient", Some((who, "N", false)));
    let invoice = |who: Who| target("Invoice", Some((who, "N", false)));
    let appt = |who: Who| target("Appointment", Some((who, "N", false)));
    let dept = target("HealthcareService", None);
    let audit = target("AuditEvent", None);
    let trail = |who: Who| target("AuditEvent", Some((who, "N", false)));
    // (role, action, target, expected)
    let rows: Vec<(Role, Action, Target, bool)> = vec![
        // Registration: patients and appointments, not clinical records.
        (Registration, Create, patient_rec(Who::Elsewhere), true),
        (Registration, Search, target("Patient", None), true),
        (Registration, Create, appt(Who::Elsewhere), true),
        (Registration, Read, obs(Who::OfGenMed), false),
        (Registration, Update, dept.clone(), false),
        // Doctors: clinical records of their department's patients only.
        (Doctor, Read, obs(Who::OfGenMed), true),
        (Doctor, Create, obs(Who::OfGenMed), true),
        (Doctor, Read, obs(Who::Elsewhere), false),
        (Doctor, Search, target("Observation", None), false),
        (Doctor, Read, patient_rec(Who::Elsewhere), true),
        (Doctor, Delete, obs(Who::OfGenMed), false),
        (Doctor, Read, invoice(Who::OfGenMed), false),
        (Nurse, Read, obs(Who::OfGenMed), true),
        (Nurse, Read, obs(Who::Elsewhere), false),
        // The lab works across departments.
        (Lab, Read, obs(Who::Elsewhere), true),
        (Lab, Search, target("ServiceRequest", None), true),
        (Lab, Read, invoice(Who::Elsewhere), false),
        // Billing: money and demographics, nothing clinical.
        (Billing, Read, invoice(Who::Elsewhere), true),
        (Billing, Operate, invoice(Who::Elsewhere), true),
        (Billing, Read, obs(Who::OfGenMed), false),
        // The administrator runs the set-up and never reads a patient's record.
        (Admin, Create, dept.clone(), true),
        (Admin, Update, target("ChargeItemDefinition", None), true),
        (Admin, Read, patient_rec(Who::OfGenMed), false),
        (Admin, Read, obs(Who::OfGenMed), false),
        (Admin, Search, target("Patient", None), false),
        (Admin, Read, audit.clone(), false),
        // Oversight reads the audit trail, not records; nobody writes it.
        (PrivacyOfficer, Read, audit.clone(), true),
        (Auditor, Export, audit.clone(), true),
        (Auditor, Read, obs(Who::OfGenMed), false),
        (PrivacyOfficer, Update, audit.clone(), false),
        (Admin, Delete, audit.clone(), false),
        (PrivacyOfficer, Search, trail(Who::OfGenMed), true),
        (Doctor, Search, trail(Who::OfGenMed), false),
        (Registration, Search, trail(Who::Elsewhere), false),
        (Admin, Search, trail(Who::OfGenMed), false),
        // A patient sees who accessed their own record, no one else's.
        (Patient, Search, trail(Who::Own), true),
        (Patient, Search, trail(Who::OfGenMed), false),
        (Patient, Create, trail(Who::Own), false),
        // A patient reads their own records, released ones, and nothing else.
        (Patient, Read, obs(Who::Own), true),
        (Patient, Read, invoice(Who::Own), true),
        (Patient, Read, obs(Who::OfGenMed), false),
        (Patient, Create, obs(Who::Own), false),
        (Patient, Read, dept.clone(), true),
        (Patient, Update, dept.clone(), false),
        (Patient, Read, target("ChargeItemDefinition", None), false),
        // A patient books and cancels their own appointments, no one else's, and does not
        // move them through the queue.
        (Patient, Create, appt(Who::Own), true),
        (Patient, Cancel, appt(Who::Own), true),
        (Patient, Operate, appt(Who::Own), false),
        (Patient, Update, appt(Who::Own), false),
        (Patient, Create, appt(Who::OfGenMed), false),
        (Patient, Cancel, appt(Who::OfGenMed), false),
        (Registration, Cancel, appt(Who::Elsewhere), true),
        // Only clinicians may break the glass.
        (Doctor, BreakGlass, patient_rec(Who::Elsewhere), true),
        (Nurse, BreakGlass, patient_rec(Who::Elsewhere), true),
        (Registration, BreakGlass, patient_rec(Who::Elsewhere), false),
        (Admin, BreakGlass, patient_rec(Who::Elsewhere), false),
        // Everyone on the staff reads the directory.
        (Nurse, Search, target("Practitioner", None), true),
        (Billing, Read, target("ChargeItemDefinition", None), true),
    ];
    let mut wrong = vec![];
    for (role, action, t, expected) in &rows {
        if allowed(*role, *action, t, NO) != *expected {
            wrong.push(format!("{} {} {} ({:?}): expected {}", role.as_str(), action.as_str(), t.kind, t.patient.as_ref().map(|p| &p.id), expected));
        }
    }
    assert!(wrong.is_empty(), "policy matrix differs:\n{}", wrong.join("\n"));
}

#[test]
fn bulk_export_is_for_integrations_within_their_scopes() {
    let mut machine = actor(Role::Machine);
    machine.scope_read = true;
    let p = Policies::builtin();
    let may = |a: &Actor, t: &Target| p.decide(a, Action::Export, t, NO).unwrap().allowed;
    let obs = target("Observation", Some((Who::Elsewhere, "N", false)));
    assert!(may(&machine, &obs));
    assert!(may(&machine, &target("Observation", None)), "the kick-off asks for a type");
    assert!(may(&machine, &target("Organization", None)));
    assert!(!may(&machine, &target("AuditEvent", None)), "the audit trail is not bulk-exported");
    assert!(!may(&machine, &target("Observation", Some((Who::Elsewhere, "N", true)))), "VIPs stay out");
    assert!(!may(&machine, &target("Observation", Some((Who::Elsewhere, "V", false)))));
    machine.scope_read = false;
    assert!(!may(&machine, &obs), "not beyond the token's scopes");
    for role in [Role::Registration, Role::Doctor, Role::Lab, Role::Billing, Role::Admin, Role::PrivacyOfficer, Role::Auditor, Role::Patient] {
        assert!(!may(&actor(role), &obs), "{role:?} may not bulk-export records");
    }
}

#[test]
fn decisions_by_attributes_are_the_decisions_unless_a_policy_names_a_patient() {
    // The built-in policies name no patient: every answer by attributes is the answer.
    let p = Policies::builtin();
    assert!(!p.current.read().unwrap().names_patients, "the built-in policies name no patient");
    let mut machine = actor(Role::Machine);
    machine.scope_read = true;
    for role_actor in [machine.clone(), actor(Role::Doctor), actor(Role::Lab), actor(Role::Billing)] {
        for kind in ["Observation", "Patient", "Invoice"] {
            for who in [Who::OfGenMed, Who::Elsewhere] {
                for (c, vip) in [("N", false), ("R", false), ("V", false), ("N", true)] {
                    let t = target(kind, Some((who, c, vip)));
                    for action in [Action::Read, Action::Export] {
                        assert_eq!(p.decide_by_attributes(&role_actor, action, &t, NO).unwrap(), p.decide(&role_actor, action, &t, NO).unwrap());
                    }
                }
            }
        }
    }
    // A hospital policy that singles out one patient is honoured: then ids are asked.
    let dir = std::env::temp_dir().join(format!("vaidya-policy-names-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("schema.cedarschema"), DEFAULT_SCHEMA).unwrap();
    let extra = "@id(\"no-export-of-p-ent\") forbid(principal, action == Vaidya::Action::\"export\", resource) when { resource has patient && resource.patient == Vaidya::Patient::\"p-ent\" };";
    std::fs::write(dir.join("vaidya.cedar"), format!("{DEFAULT_POLICIES}\n{extra}")).unwrap();
    let named = Policies::from_dir(&dir).unwrap();
    assert!(named.current.read().unwrap().names_patients);
    std::fs::remove_dir_all(&dir).unwrap();
    let gm = target("Observation", Some((Who::OfGenMed, "N", false)));
    let ent = target("Observation", Some((Who::Elsewhere, "N", false)));
    // Same attributes apart from departments: make them equal so that only the id differs.
    let mut ent_like_gm = ent.clone();
    ent_like_gm.patient.as_mut().unwrap().departments = gm.patient.as_ref().unwrap().departments.clone();
    assert!(named.decide_by_attributes(&machine, Action::Export, &gm, NO).unwrap().allowed);
    assert!(!named.decide_by_attributes(&machine, Action::Export, &ent_like_gm, NO).unwrap().allowed, "the named patient stays out");
}

#[test]
fn unreleased_results_stay_in_the_lab() {
    let mut t = target("DiagnosticReport", Some((Who::OfGenMed, "N", false)));
    t.released = false;
    assert!(!allowed(Role::Doctor, Action::Read, &t, NO));
    assert!(allowed(Role::Lab, Action::Read, &t, NO));
    let mut own = target("DiagnosticReport", Some((Who::Own, "N", false)));
    own.released = false;
    assert!(!allowed(Role::Patient, Action::Read, &own, NO));
}

#[test]
fn vip_and_restricted_records_need_care_or_break_the_glass() {
    let vip = target("Observation", Some((Who::OfGenMed, "N", true)));
    let very = target("Observation", Some((Who::OfGenMed, "V", false)));
    let restricted_elsewhere = target("Observation", Some((Who::Elsewhere, "R", false)));
    for t in [&vip, &very] {
        // Even the patient's department sees a VIP only in an actual care relationship.
        assert!(!allowed(Role::Doctor, Action::Read, t, NO), "{t:?}");
        assert!(allowed(Role::Doctor, Action::Read, t, Facts { in_care: true, break_glass: false }));
        assert!(allowed(Role::Doctor, Action::Read, t, Facts { in_care: false, break_glass: true }));
        assert!(!allowed(Role::Lab, Action::Read, t, NO), "the lab too needs the care relationship");
        assert!(!allowed(Role::Registration, Action::Read, &target("Patient", Some((Who::OfGenMed, "V", true))), NO));
    }
    assert!(!allowed(Role::Doctor, Action::Read, &restricted_elsewhere, NO));
    assert!(allowed(Role::Doctor, Action::Read, &restricted_elsewhere, Facts { in_care: false, break_glass: true }));
    // Break-the-glass opens a normal record of another department too.
    assert!(allowed(Role::Doctor, Action::Read, &target("Observation", Some((Who::Elsewhere, "N", false))), Facts { in_care: false, break_glass: true }));
    // A VIP patient still sees their own records.
    let own_vip = target("Observation", Some((Who::Own, "V", true)));
    assert!(allowed(Role::Patient, Action::Read, &own_vip, NO));
}

#[test]
fn machine_clients_act_within_their_scopes() {
    let mut m = actor(Role::Machine);
    let obs = target("Observation", Some((Who::Elsewhere, "N", false)));
    let p = Policies::builtin();
    assert!(!p.decide(&m, Action::Create, &obs, NO).unwrap().allowed);
    m.scope_write = true;
    assert!(p.decide(&m, Action::Create, &obs, NO).unwrap().allowed);
    assert!(!p.decide(&m, Action::Read, &obs, NO).unwrap().allowed);
    assert!(!p.decide(&m, Action::Create, &target("AuditEvent", None), NO).unwrap().allowed);
    let vip = target("Observation", Some((Who::Elsewhere, "N", true)));
    assert!(p.decide(&m, Action::Create, &vip, NO).unwrap().allowed, "an analyser's result for a VIP is stored");
    m.scope_read = true;
    assert!(!p.decide(&m, Action::Read, &vip, NO).unwrap().allowed, "but not read back without a grant");
    assert!(!p.decide(&m, Action::Update, &vip, NO).unwrap().allowed);
}

#[test]
fn the_verdict_names_the_deciding_policy() {
    let p = Policies::builtin();
    let v = p.decide(&actor(Role::Admin), Action::Read, &target("Patient", Some((Who::OfGenMed, "N", false))), NO).unwrap();
    assert_eq!(v, Verdict { allowed: false, reasons: vec!["admin-not-clinical".to_string()] });
    let v = p.decide(&actor(Role::Doctor), Action::Read, &target("Observation", Some((Who::OfGenMed, "N", false))), NO).unwrap();
    assert_eq!(v.reasons, vec!["clinical-care".to_string()]);
}

#[test]
fn a_policy_directory_is_validated_and_reloaded_only_when_valid() {
    let dir = std::env::temp_dir().join(format!("vaidya-policy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("schema.cedarschema"), DEFAULT_SCHEMA).unwrap();
    std::fs::write(dir.join("base.cedar"), DEFAULT_POLICIES).unwrap();
    let p = Policies::from_dir(&dir).unwrap();
    let billing_obs = target("Observation", Some((Who::OfGenMed, "N", false)));
    let billing = actor(Role::Billing);
    assert!(!p.decide(&billing, Action::Read, &billing_obs, NO).unwrap().allowed);
    assert!(!p.reload_if_changed().unwrap(), "nothing changed");

    // A broken file is refused and the old set stays in force.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(dir.join("extra.cedar"), "permit(principal, action, resource) when { resource.no_such_attribute };").unwrap();
    assert!(matches!(p.reload_if_changed(), Err(PolicyError::Invalid(_))));
    assert!(!p.decide(&billing, Action::Read, &billing_obs, NO).unwrap().allowed);

    // A valid change takes effect.
    std::fs::write(
        dir.join("extra.cedar"),
        "@id(\"billing-sees-results\") permit(principal, action == Vaidya::Action::\"read\", resource) when { principal.role == \"billing\" && resource.kind == \"Observation\" };",
    )
    .unwrap();
    assert!(p.reload_if_changed().unwrap());
    assert!(p.decide(&billing, Action::Read, &billing_obs, NO).unwrap().allowed);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(Policies::from_dir(&dir).is_err());
}

#[test]
fn remembered_decisions_are_the_decisions_cedar_makes() {
    // The cache (filled in the first round, consulted in the second) against Cedar asked
    // directly, over every role, action and kind of record.
    let shared = Policies::builtin();
    let loaded = shared.current.read().unwrap().clone();
    let actions = [Action::Read, Action::Search, Action::Create, Action::Update, Action::Delete, Action::Operate, Action::Cancel, Action::Export, Action::BreakGlass];
    let mut targets = vec![target("HealthcareService", None)];
    for kind in ["Observation", "Patient", "Invoice", "Appointment"] {
        for who in [Who::OfGenMed, Who::Elsewhere, Who::Own] {
            for (c, vip) in [("N", false), ("R", false), ("V", false), ("N", true)] {
                targets.push(target(kind, Some((who, c, vip))));
            }
        }
    }
    let mut unreleased = target("Observation", Some((Who::OfGenMed, "N", false)));
    unreleased.released = false;
    targets.push(unreleased);
    let mut allowed_count = 0;
    for _round in 0..2 {
        for role in Role::ALL {
            for action in actions {
                for t in &targets {
                    for facts in [NO, Facts { in_care: true, break_glass: false }, Facts { in_care: false, break_glass: true }] {
                        let remembered = shared.decide(&actor(role), action, t, facts).unwrap();
                        let fresh = Policies::evaluate(&loaded, &shared.authorizer, &actor(role), action, t, facts).unwrap();
                        assert_eq!(remembered, fresh, "{role:?} {action:?} {t:?} {facts:?}");
                        allowed_count += remembered.allowed as usize;
                    }
                }
            }
        }
    }
    // Both answers occur, so the comparison above compared something.
    assert!(allowed_count > 0 && allowed_count < 2 * Role::ALL.len() * actions.len() * targets.len() * 3);
}
