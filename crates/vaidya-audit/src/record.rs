//! What one audit record says, and the FHIR R4 AuditEvent it becomes.
//!
//! An [`AuditRecord`] answers who (user, role, token or session), from where (IP address, user
//! agent), did what (the action and the resources, the query and the ids it returned), to which
//! patients, why (purpose and reason, e.g. break-the-glass), when, and with what outcome
//! (allowed, denied, failed). [`AuditRecord::to_fhir`] turns it into an AuditEvent:
//!
//! | record | AuditEvent |
//! |---|---|
//! | `action` | `type` + `subtype` (+ `action` C/R/U/D/E): FHIR interactions are type `rest` (`http://terminology.hl7.org/CodeSystem/audit-event-type`) with a `http://hl7.org/fhir/restful-interaction` subtype; export/print are DICOM `110106` Export; login/logout DICOM `110114` User Authentication with `110122`/`110123`; break-the-glass DICOM `110113` Security Alert with `110127` Emergency Override Started. Every event also carries the subtype `https://vaidya.dev/fhir/CodeSystem/audit-action` with [`Action::code`]. |
//! | `time_ms` | `recorded` (UTC, milliseconds) |
//! | `outcome` | `outcome` `0` allowed, `4` denied, `8` failed; the reason in `outcomeDesc` |
//! | `who`, `source` | `agent[0]` (requestor, human user): `who.identifier` (system `https://vaidya.dev/fhir/sid/user`), `name`, `role.text`, `altId` (token or session id), `network.address` (type `2` for an IP address, `1` for a name), the user agent in the extension `https://vaidya.dev/fhir/StructureDefinition/audit-user-agent` |
//! | `patients` | one `entity` each: `what` = `Patient/<id>`, type `1` Person, role `1` Patient |
//! | `what` | one `entity` each (unless it is one of the patients): type `2` System Object, role `4` Domain Resource |
//! | `query`, `returned` | one `entity`, role `24` Query: `query` (base64 of the query string), `description` (the query string), `detail` `returned` = the returned references separated by spaces |
//! | `purpose`, `reason` | `purposeOfEvent` and the requestor's `purposeOfUse`: v3 ActReason codes (`BTG` + `ETREAT` for break-the-glass), the reason as `text` |
//!
//! `source.observer` is this server ([`OBSERVER`]), type `4` Application Server.

use base64::Engine;
use serde_json::{Map, Value, json};

/// `source.observer.display` of every event.
pub const OBSERVER: &str = "Vaidya HIS";
/// Identifier system of staff and patient user names (`agent.who.identifier.system`).
pub const USER_SYSTEM: &str = "https://vaidya.dev/fhir/sid/user";
/// Code system of [`Action::code`] (one `subtype` coding on every event).
pub const ACTION_SYSTEM: &str = "https://vaidya.dev/fhir/CodeSystem/audit-action";
/// Extension on the requestor agent carrying the HTTP user agent.
pub const USER_AGENT_EXTENSION: &str = "https://vaidya.dev/fhir/StructureDefinition/audit-user-agent";
/// The name used for an event with no known user (a request without a valid token).
pub const ANONYMOUS: &str = "anonymous";

const AUDIT_EVENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const RESTFUL_INTERACTION: &str = "http://hl7.org/fhir/restful-interaction";
const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";

/// What was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Read,
    VRead,
    Search,
    History,
    Create,
    Update,
    Patch,
    Delete,
    /// A FHIR operation such as `$merge` or `$pay` (the `$` is added if missing).
    Operation(String),
    Transaction,
    Batch,
    /// Data leaving the system in bulk (NDJSON, a report download, an audit export).
    Export,
    /// A printed document (`/print/...`).
    Print,
    Login,
    LoginFailed,
    Logout,
    /// Break-the-glass: access outside the user's normal rights, with a stated reason.
    BreakGlass,
}

impl Action {
    /// The short name shown in reports and stored as the `audit-action` subtype.
    pub fn code(&self) -> String {
        match self {
            Action::Read => "read".into(),
            Action::VRead => "vread".into(),
            Action::Search => "search".into(),
            Action::History => "history".into(),
            Action::Create => "create".into(),
            Action::Update => "update".into(),
            Action::Patch => "patch".into(),
            Action::Delete => "delete".into(),
            Action::Operation(name) if name.starts_with('$') => name.clone(),
            Action::Operation(name) => format!("${name}"),
            Action::Transaction => "transaction".into(),
            Action::Batch => "batch".into(),
            Action::Export => "export".into(),
            Action::Print => "print".into(),
            Action::Login => "login".into(),
            Action::LoginFailed => "login-failed".into(),
            Action::Logout => "logout".into(),
            Action::BreakGlass => "break-glass".into(),
        }
    }

    /// AuditEvent.action: C create, R read, U update, D delete, E execute.
    fn fhir_action(&self) -> &'static str {
        match self {
            Action::Read | Action::VRead | Action::History | Action::Export | Action::Print => "R",
            Action::Create => "C",
            Action::Update | Action::Patch => "U",
            Action::Delete => "D",
            _ => "E",
        }
    }

    /// (type, subtypes) codings.
    fn fhir_type(&self) -> (Value, Vec<Value>) {
        let rest = || coding(AUDIT_EVENT_TYPE, "rest", "Restful Operation");
        let interaction = |code: &str| coding(RESTFUL_INTERACTION, code, code);
        match self {
            Action::Read => (rest(), vec![interaction("read")]),
            Action::VRead => (rest(), vec![interaction("vread")]),
            Action::Search => (rest(), vec![interaction("search")]),
            Action::History => (rest(), vec![interaction("history")]),
            Action::Create => (rest(), vec![interaction("create")]),
            Action::Update => (rest(), vec![interaction("update")]),
            Action::Patch => (rest(), vec![interaction("patch")]),
            Action::Delete => (rest(), vec![interaction("delete")]),
            Action::Operation(_) => (rest(), vec![interaction("operation")]),
            Action::Transaction => (rest(), vec![interaction("transaction")]),
            Action::Batch => (rest(), vec![interaction("batch")]),
            Action::Export | Action::Print => (coding(DCM, "110106", "Export"), vec![]),
            Action::Login | Action::LoginFailed => {
                (coding(DCM, "110114", "User Authentication"), vec![coding(DCM, "110122", "Login")])
            }
            Action::Logout => (coding(DCM, "110114", "User Authentication"), vec![coding(DCM, "110123", "Logout")]),
            Action::BreakGlass => {
                (coding(DCM, "110113", "Security Alert"), vec![coding(DCM, "110127", "Emergency Override Started")])
            }
        }
    }
}

/// Whether it was allowed, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed and done (AuditEvent outcome `0`).
    Allowed,
    /// Refused by authentication or policy (outcome `4`), with the reason.
    Denied(String),
    /// Allowed but failed (outcome `8`), with the reason (e.g. `not found`, `invalid resource`).
    Failed(String),
}

impl Outcome {
    pub fn code(&self) -> &'static str {
        match self {
            Outcome::Allowed => "0",
            Outcome::Denied(_) => "4",
            Outcome::Failed(_) => "8",
        }
    }
}

/// Who acted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Who {
    /// User name (staff or patient account); `None` for a request with no valid credentials.
    pub user: Option<String>,
    /// The role the user acted in (`doctor`, `nurse`, `lab`, `billing`, `patient`, `admin`, ...).
    pub role: Option<String>,
    /// The bearer token id or web session id used.
    pub session: Option<String>,
}

/// Where the request came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    /// Client IP address (or host name).
    pub address: Option<String>,
    /// HTTP `User-Agent`.
    pub user_agent: Option<String>,
}

/// Why (v3 ActReason purpose of use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `TREAT`
    Treatment,
    /// Break-the-glass: `BTG` and `ETREAT` (emergency treatment).
    BreakTheGlass,
    /// `HPAYMT`
    Payment,
    /// `HOPERAT`
    Operations,
    /// `PATRQT`: the patient asked (their own portal, a records request).
    PatientRequest,
}

impl Purpose {
    fn codings(self) -> Vec<Value> {
        match self {
            Purpose::Treatment => vec![coding(ACT_REASON, "TREAT", "treatment")],
            Purpose::BreakTheGlass => {
                vec![coding(ACT_REASON, "BTG", "break the glass"), coding(ACT_REASON, "ETREAT", "Emergency Treatment")]
            }
            Purpose::Payment => vec![coding(ACT_REASON, "HPAYMT", "healthcare payment")],
            Purpose::Operations => vec![coding(ACT_REASON, "HOPERAT", "healthcare operations")],
            Purpose::PatientRequest => vec![coding(ACT_REASON, "PATRQT", "patient requested")],
        }
    }
}

/// One audited event. See the module documentation for how each field appears in FHIR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// When it happened: milliseconds since the Unix epoch, UTC.
    pub time_ms: i64,
    pub action: Action,
    pub outcome: Outcome,
    pub who: Who,
    pub source: Source,
    /// Resources acted on, as references (`Patient/123`, `Observation/abc/_history/2`).
    pub what: Vec<String>,
    /// For a search: the query string (`Patient?identifier=...`).
    pub query: Option<String>,
    /// For a search: the references it returned.
    pub returned: Vec<String>,
    /// Ids of the Patients whose records were touched (also through returned or included
    /// resources): these make `vaidya audit report --patient` find the event.
    pub patients: Vec<String>,
    pub purpose: Option<Purpose>,
    /// Free-text reason given by the user (required for break-the-glass).
    pub reason: Option<String>,
}

impl AuditRecord {
    /// An event happening now, by nobody in particular, touching nothing yet; fill in the rest.
    pub fn new(action: Action, outcome: Outcome) -> AuditRecord {
        AuditRecord {
            time_ms: now_ms(),
            action,
            outcome,
            who: Who::default(),
            source: Source::default(),
            what: Vec::new(),
            query: None,
            returned: Vec::new(),
            patients: Vec::new(),
            purpose: None,
            reason: None,
        }
    }

    /// The user name recorded as the ledger entry's author and in the user index.
    pub fn user(&self) -> &str {
        self.who.user.as_deref().filter(|u| !u.is_empty()).unwrap_or(ANONYMOUS)
    }

    /// The FHIR R4 AuditEvent (without `id`: the audit ledger gives each event its sequence
    /// number as id when it is stored).
    pub fn to_fhir(&self) -> Value {
        let mut ev = Map::new();
        ev.insert("resourceType".into(), "AuditEvent".into());
        let (ty, mut subtypes) = self.action.fhir_type();
        ev.insert("type".into(), ty);
        subtypes.push(coding(ACTION_SYSTEM, &self.action.code(), &self.action.code()));
        ev.insert("subtype".into(), Value::Array(subtypes));
        ev.insert("action".into(), self.action.fhir_action().into());
        ev.insert("recorded".into(), format_instant(self.time_ms).into());
        ev.insert("outcome".into(), self.outcome.code().into());
        match &self.outcome {
            Outcome::Denied(r) | Outcome::Failed(r) if !r.is_empty() => {
                ev.insert("outcomeDesc".into(), r.as_str().into());
            }
            _ => {}
        }
        let purpose = self.purpose_of_use();
        if let Some(p) = &purpose {
            ev.insert("purposeOfEvent".into(), Value::Array(vec![p.clone()]));
        }
        ev.insert("agent".into(), Value::Array(vec![self.requestor(purpose)]));
        ev.insert(
            "source".into(),
            json!({
                "observer": {"display": OBSERVER},
                "type": [coding("http://terminology.hl7.org/CodeSystem/security-source-type", "4", "Application Server")]
            }),
        );
        let entities = self.entities();
        if !entities.is_empty() {
            ev.insert("entity".into(), Value::Array(entities));
        }
        Value::Object(ev)
    }

    fn purpose_of_use(&self) -> Option<Value> {
        let reason = self.reason.as_deref().filter(|r| !r.is_empty());
        if self.purpose.is_none() && reason.is_none() {
            return None;
        }
        let mut cc = Map::new();
        if let Some(p) = self.purpose {
            cc.insert("coding".into(), Value::Array(p.codings()));
        }
        if let Some(r) = reason {
            cc.insert("text".into(), r.into());
        }
        Some(Value::Object(cc))
    }

    fn requestor(&self, purpose: Option<Value>) -> Value {
        let mut a = Map::new();
        if let Some(ua) = self.source.user_agent.as_deref().filter(|s| !s.is_empty()) {
            a.insert("extension".into(), json!([{"url": USER_AGENT_EXTENSION, "valueString": ua}]));
        }
        a.insert(
            "type".into(),
            json!({"coding": [coding("http://terminology.hl7.org/CodeSystem/extra-security-role-type", "humanuser", "human user")]}),
        );
        if let Some(role) = self.who.role.as_deref().filter(|s| !s.is_empty()) {
            a.insert("role".into(), json!([{"text": role}]));
        }
        let user = self.user();
        a.insert("who".into(), json!({"identifier": {"system": USER_SYSTEM, "value": user}, "display": user}));
        if let Some(s) = self.who.session.as_deref().filter(|s| !s.is_empty()) {
            a.insert("altId".into(), s.into());
        }
        a.insert("name".into(), user.into());
        a.insert("requestor".into(), true.into());
        if let Some(addr) = self.source.address.as_deref().filter(|s| !s.is_empty()) {
            let kind = if addr.parse::<std::net::IpAddr>().is_ok() { "2" } else { "1" };
            a.insert("network".into(), json!({"address": addr, "type": kind}));
        }
        if let Some(p) = purpose {
            a.insert("purposeOfUse".into(), Value::Array(vec![p]));
        }
        Value::Object(a)
    }

    fn entities(&self) -> Vec<Value> {
        let mut out = Vec::with_capacity(self.patients.len() + self.what.len() + 1);
        let mut patient_refs = Vec::with_capacity(self.patients.len());
        for p in &self.patients {
            let r = format!("Patient/{p}");
            if patient_refs.contains(&r) {
                continue;
            }
            out.push(json!({
                "what": {"reference": r},
                "type": coding(ENTITY_TYPE, "1", "Person"),
                "role": coding(OBJECT_ROLE, "1", "Patient"),
            }));
            patient_refs.push(r);
        }
        for w in &self.what {
            if w.is_empty() || patient_refs.iter().any(|p| p == w) {
                continue;
            }
            out.push(json!({
                "what": {"reference": w},
                "type": coding(ENTITY_TYPE, "2", "System Object"),
                "role": coding(OBJECT_ROLE, "4", "Domain Resource"),
            }));
        }
        let query = self.query.as_deref().filter(|q| !q.is_empty());
        if query.is_some() || !self.returned.is_empty() {
            let mut e = Map::new();
            e.insert("type".into(), coding(ENTITY_TYPE, "2", "System Object"));
            e.insert("role".into(), coding(OBJECT_ROLE, "24", "Query"));
            if let Some(q) = query {
                e.insert("description".into(), q.into());
                e.insert("query".into(), base64::engine::general_purpose::STANDARD.encode(q).into());
            }
            if !self.returned.is_empty() {
                e.insert("detail".into(), json!([{"type": "returned", "valueString": self.returned.join(" ")}]));
            }
            out.push(Value::Object(e));
        }
        out
    }
}

fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({"system": system, "code": code, "display": display})
}

/// Current time in milliseconds since the Unix epoch (UTC).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// `2026-11-27T08:10:00.123Z`
pub fn format_instant(ms: i64) -> String {
    format_with_offset(ms, 0, "Z")
}

/// A time at a fixed offset from UTC: `2026-11-27 13:40:00` style when `suffix` is empty.
pub fn format_local(ms: i64, offset_minutes: i32) -> String {
    let (date, time) = split(ms + offset_minutes as i64 * 60_000);
    format!("{date} {time}")
}

fn format_with_offset(ms: i64, offset_minutes: i32, suffix: &str) -> String {
    let local = ms + offset_minutes as i64 * 60_000;
    let (date, time) = split(local);
    format!("{date}T{time}.{:03}{suffix}", local.rem_euclid(1000))
}

fn split(ms: i64) -> (String, String) {
    let secs = ms.div_euclid(1000);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    (format!("{y:04}-{m:02}-{d:02}"), format!("{:02}:{:02}:{:02}", sod / 3600, sod / 60 % 60, sod % 60))
}

/// Parse what [`format_instant`] writes (and any `YYYY-MM-DDTHH:MM:SS[.fff]Z`).
pub fn parse_instant(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || !s.ends_with('Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let days = days_from_civil(num(0..4)?, num(5..7)? as u32, num(8..10)? as u32)?;
    let mut ms = ((days * 24 + num(11..13)?) * 60 + num(14..16)?) * 60_000 + num(17..19)? * 1000;
    if b[19] == b'.' {
        let frac = &s[20..s.len() - 1];
        let digits: String = frac.chars().chain("000".chars()).take(3).collect();
        ms += digits.parse::<i64>().ok()?;
    }
    Some(ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (`None` if the date does not exist).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> Option<i64> {
    let dim = [31, if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&m) || d == 0 || d > dim[(m - 1) as usize] {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_round_trip() {
        for ms in [0, 1_764_230_400_123, 951_782_400_000 /* 2000-02-29 */, 4_102_444_799_999] {
            assert_eq!(parse_instant(&format_instant(ms)), Some(ms), "{}", format_instant(ms));
        }
        assert_eq!(format_instant(1_764_230_400_123), "2025-11-27T08:00:00.123Z");
        assert_eq!(format_local(1_764_230_400_123, 330), "2025-11-27 13:30:00");
        assert_eq!(days_from_civil(2025, 2, 29), None);
    }

    #[test]
    fn the_json_starts_with_the_resource_type() {
        let r = AuditRecord::new(Action::Read, Outcome::Allowed);
        let bytes = serde_json::to_vec(&r.to_fhir()).unwrap();
        assert!(bytes.starts_with(br#"{"resourceType":"AuditEvent","#));
    }
}
