//! What a search must leave out for the account that runs it, so that a protected patient (a
//! VIP, a restricted or very restricted record) is absent from the total and from
//! `_summary=count`, not only from the page: "there are 3 Vermas, you see 2" would say that a
//! protected Verma exists.
//!
//! Two probes per search, both driven by the `_security` label index and so cheap while
//! protected records are few: (1) the records of the searched type that match the query and
//! carry a label themselves, each decided as a read; (2) the labelled Patients, each decided
//! as a read of a record of the searched type of theirs. What the policies refuse becomes a
//! condition of the real search (`NotIds`, or a negated `patient` reference), which the Bundle's
//! links never show. The page filter in `rest.rs` stays as the second line of defence.

use super::authorize;
use crate::error::ApiError;
use axum::http::StatusCode;
use vaidya_fhir::outcome::IssueType;
use vaidya_policy::{Action, Actor, Facts, Policies, Target};
use vaidya_store::search::parse::{Pred, Table, Value};
use vaidya_store::search::{Query, run};

/// Most protected patients, and most labelled records matching one search, that a search
/// considers; beyond that the search is refused (narrower searches still work) rather than
/// slowed down for everyone.
pub const MAX_PROTECTED: usize = 2_000;

/// Labels that protect a record: restricted, very restricted, celebrity.
fn labelled(rtype: &str) -> Pred {
    let token = |system: &str, code: &str| Value::Token { system: Some(system.to_string()), code: Some(code.to_string()) };
    Pred::Index {
        rtype: rtype.to_string(),
        code: "_security".to_string(),
        table: Table::Token,
        values: vec![
            token(authorize::CONFIDENTIALITY, "R"),
            token(authorize::CONFIDENTIALITY, "V"),
            token(authorize::ACT_CODE, "CEL"),
        ],
        negate: false,
    }
}

fn probe(rtype: &str, preds: Vec<Pred>) -> Query {
    Query {
        resource_type: rtype.to_string(),
        preds,
        sort: vec![],
        count: MAX_PROTECTED + 1,
        offset: 0,
        summary_count: false,
        omit_total: true,
        includes: vec![],
        revincludes: vec![],
        ignored: vec![],
        applied: vec![],
    }
}

fn too_many() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        IssueType::TooCosts,
        format!("this search touches more than {MAX_PROTECTED} protected records; narrow it (for example by patient)"),
    )
}

/// The conditions to add to `q` so that it finds only what `actor` may read.
pub fn exclusions(conn: &impl vaidya_store::Db, policies: &Policies, actor: &Actor, q: &Query) -> Result<Vec<Pred>, ApiError> {
    let rtype = q.resource_type.as_str();
    let mut out = vec![];

    let mut preds = q.preds.clone();
    preds.push(labelled(rtype));
    let found = run(conn, &probe(rtype, preds))?;
    if found.matches.len() > MAX_PROTECTED {
        return Err(too_many());
    }
    let mut hidden = vec![];
    let mut facts = authorize::FactsCache::default();
    for m in found.matches {
        if !authorize::may_read(conn, policies, actor, rtype, &m.content, &mut facts)?.0 {
            hidden.push(m.id);
        }
    }
    if !hidden.is_empty() {
        out.push(Pred::NotIds(hidden));
    }

    if rtype != "Patient" && authorize::in_patient_compartment(rtype) {
        let patients = run(conn, &probe("Patient", vec![labelled("Patient")]))?;
        if patients.matches.len() > MAX_PROTECTED {
            return Err(too_many());
        }
        let mut hidden = vec![];
        for p in patients.matches {
            let d = authorize::describe_stored("Patient", &p.content)?;
            // One of their records of this type, unlabelled itself and released: what the
            // policies say of it is what they say of all the rest (labelled ones are above).
            let mut target: Target = authorize::complete(conn, actor, &d)?;
            target.kind = rtype.to_string();
            target.category = vaidya_policy::Category::of_type(rtype, true);
            if !policies.decide(actor, Action::Read, &target, Facts::default()).map_err(|e| ApiError::internal(e.to_string()))?.allowed {
                hidden.push(Value::Ref(vec![format!("Patient/{}", p.id)]));
            }
        }
        if !hidden.is_empty() {
            out.push(Pred::Index { rtype: rtype.to_string(), code: "patient".to_string(), table: Table::Ref, values: hidden, negate: true });
        }
    }
    Ok(out)
}
