#![allow(dead_code)]

use std::path::Path;
use vaidya_audit::{Action, Audit, AuditRecord, Outcome, Purpose, Source, Who};
use vaidya_ledger::LedgerKey;

pub const T0: i64 = 1_764_230_400_000; // 2025-11-27T08:00:00Z

pub fn key() -> LedgerKey {
    LedgerKey::generate("vaidya.test/ledger")
}

/// A read of Patient `p{i % 5}` by `user{i % 3}`.
pub fn read_event(i: usize) -> AuditRecord {
    let patient = format!("p{}", i % 5);
    AuditRecord {
        time_ms: T0 + i as i64,
        action: Action::Read,
        outcome: Outcome::Allowed,
        who: Who { user: Some(format!("user{}", i % 3)), role: Some("doctor".into()), session: Some(format!("tok{i}")) },
        source: Source { address: Some("10.1.2.3".into()), user_agent: Some("Mozilla/5.0".into()) },
        what: vec![format!("Patient/{patient}")],
        query: None,
        returned: vec![],
        patients: vec![patient],
        purpose: Some(Purpose::Treatment),
        reason: None,
        target_user: None,
    }
}

/// Every kind of event, with every field used somewhere.
pub fn all_kinds() -> Vec<AuditRecord> {
    let base = read_event(1);
    let actions = [
        Action::Read,
        Action::VRead,
        Action::Search,
        Action::History,
        Action::Create,
        Action::Update,
        Action::Patch,
        Action::Delete,
        Action::Operation("merge".into()),
        Action::Operation("$pay".into()),
        Action::Transaction,
        Action::Batch,
        Action::Export,
        Action::Print,
        Action::Login,
        Action::LoginFailed,
        Action::Logout,
        Action::BreakGlass,
        Action::Account("user-disable".into()),
    ];
    let mut out = Vec::new();
    for (i, action) in actions.into_iter().enumerate() {
        let mut r = AuditRecord { action: action.clone(), ..base.clone() };
        r.outcome = match i % 3 {
            0 => Outcome::Allowed,
            1 => Outcome::Denied("role nurse may not delete Patient".into()),
            _ => Outcome::Failed("not found".into()),
        };
        match action {
            Action::Search => {
                r.what = vec![];
                r.query = Some("Patient?identifier=https://vaidya.dev/fhir/sid/uhid|100000000019&_count=20".into());
                r.returned = vec!["Patient/p1".into(), "Patient/p2".into()];
                r.patients = vec!["p1".into(), "p2".into()];
            }
            Action::Login | Action::LoginFailed | Action::Logout => {
                r.what = vec![];
                r.patients = vec![];
                r.purpose = None;
                if action == Action::LoginFailed {
                    r.who = Who { user: Some("nobody".into()), role: None, session: None };
                    r.source.address = Some("reception-pc-7".into());
                }
            }
            Action::BreakGlass => {
                r.purpose = Some(Purpose::BreakTheGlass);
                r.reason = Some("unconscious patient in casualty, consultant not reachable".into());
                r.what = vec!["Patient/p1".into(), "DiagnosticReport/r9".into()];
            }
            Action::Account(_) => {
                r.who = Who { user: Some("os:asha".into()), role: Some("operator".into()), session: Some("uid 1000".into()) };
                r.what = vec![];
                r.patients = vec![];
                r.purpose = None;
                r.target_user = Some("clerk1".into());
                r.reason = Some("left the hospital".into());
            }
            Action::Create => {
                r.who = Who::default(); // anonymous, denied
                r.source = Source { address: Some("::1".into()), user_agent: None };
                r.what = vec!["Observation/o1".into()];
            }
            _ => {}
        }
        out.push(r);
    }
    out
}

/// A fresh audit directory with `n` read events (in calls of 7), closed with a final checkpoint.
pub fn filled(dir: &Path, key: &LedgerKey, n: usize) {
    let audit = Audit::open(dir, LedgerKey::from_private(key.private_text()).unwrap()).unwrap();
    let events: Vec<AuditRecord> = (1..=n).map(read_event).collect();
    for chunk in events.chunks(7) {
        audit.record_blocking(chunk.to_vec()).unwrap();
    }
    audit.shutdown();
}
