//! What one audit record says, and the FHIR R4 AuditEvent it becomes.
//!
//! An [`AuditRecord`] answers who (user, role, token or session), from where (IP address, user
//! agent), did what (the action and the resources, the query and the ids it returned), to which
//! patients, why (purpose and reason, e.g. break-the-glass), when, and with what outcome
//! (allowed, denied, failed). [`AuditRecord::to_fhir`] turns it into an AuditEvent:
//!
//! | record | AuditEvent |
//! |---|---|
//! | `action` | `type` + `subtype` (+ `action` C/R/U/D/E): FHIR interactions are type `rest` (`http://terminology.hl7.org/CodeSystem/audit-event-type`) with a `http://hl7.org/fhir/restful-interaction` subtype; export/print are DICOM `110106` Export; login/logout DICOM `110114` User Authentication with `110122`/`110123`; break-the-glass DICOM `110113` Security Alert with `110127` Emergency Override Started; account changes (an operator's `vaidya user`/`vaidya token`, a suspension by the exfiltration guard) DICOM `110113` Security Alert with `110137` User Security Attributes Changed. Every event also carries the subtype `https://vaidya.dev/fhir/CodeSystem/audit-action` with [`Action::code`]. |
//! | `time_ms` | `recorded` (UTC, milliseconds) |
//! | `outcome` | `outcome` `0` allowed, `4` denied, `8` failed; the reason in `outcomeDesc` |
//! | `who`, `source` | `agent[0]` (requestor, human user): `who.identifier` (system `https://vaidya.dev/fhir/sid/user`), `name`, `role.text`, `altId` (token or session id), `network.address` (type `2` for an IP address, `1` for a name), the user agent in the extension `https://vaidya.dev/fhir/StructureDefinition/audit-user-agent` |
//! | `patients` | one `entity` each: `what` = `Patient/<id>`, type `1` Person, role `1` Patient |
//! | `what` | one `entity` each (unless it is one of the patients): type `2` System Object, role `4` Domain Resource |
//! | `query`, `returned` | one `entity`, role `24` Query: `query` (base64 of the query string), `description` (the query string), `detail` `returned` = the returned references separated by spaces |
//! | `target_user` | one `entity`: `what.identifier` = the account name (system `https://vaidya.dev/fhir/sid/user`), type `1` Person, role `11` Security User |
//! | `purpose`, `reason` | `purposeOfEvent` and the requestor's `purposeOfUse`: v3 ActReason codes (`BTG` + `ETREAT` for break-the-glass), the reason as `text` |
//!
//! `source.observer` is this server ([`OBSERVER`]), type `4` Application Server.

use base64::Engine;
use serde_json::Value;

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
    /// A change to an account's security attributes (`user-add`, `user-disable`, `token-issue`,
    /// `account-suspend`, ...): by an operator's command line or by the server's exfiltration
    /// guard. The code is stored as given; the account acted on is [`AuditRecord::target_user`].
    Account(String),
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
            Action::Account(code) => code.clone(),
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

    /// (type, standard subtype) codings.
    fn fhir_type(&self) -> (Code, Option<Code>) {
        const REST: Code = (AUDIT_EVENT_TYPE, "rest", "Restful Operation");
        let interaction = |code: &'static str| Some((RESTFUL_INTERACTION, code, code));
        match self {
            Action::Read => (REST, interaction("read")),
            Action::VRead => (REST, interaction("vread")),
            Action::Search => (REST, interaction("search")),
            Action::History => (REST, interaction("history")),
            Action::Create => (REST, interaction("create")),
            Action::Update => (REST, interaction("update")),
            Action::Patch => (REST, interaction("patch")),
            Action::Delete => (REST, interaction("delete")),
            Action::Operation(_) => (REST, interaction("operation")),
            Action::Transaction => (REST, interaction("transaction")),
            Action::Batch => (REST, interaction("batch")),
            Action::Export | Action::Print => ((DCM, "110106", "Export"), None),
            Action::Login | Action::LoginFailed => ((DCM, "110114", "User Authentication"), Some((DCM, "110122", "Login"))),
            Action::Logout => ((DCM, "110114", "User Authentication"), Some((DCM, "110123", "Logout"))),
            Action::BreakGlass => ((DCM, "110113", "Security Alert"), Some((DCM, "110127", "Emergency Override Started"))),
            Action::Account(_) => ((DCM, "110113", "Security Alert"), Some((DCM, "110137", "User Security Attributes Changed"))),
        }
    }
}

/// A coding: (system, code, display).
type Code = (&'static str, &'static str, &'static str);

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
    fn codings(self) -> &'static [Code] {
        match self {
            Purpose::Treatment => &[(ACT_REASON, "TREAT", "treatment")],
            Purpose::BreakTheGlass => &[(ACT_REASON, "BTG", "break the glass"), (ACT_REASON, "ETREAT", "Emergency Treatment")],
            Purpose::Payment => &[(ACT_REASON, "HPAYMT", "healthcare payment")],
            Purpose::Operations => &[(ACT_REASON, "HOPERAT", "healthcare operations")],
            Purpose::PatientRequest => &[(ACT_REASON, "PATRQT", "patient requested")],
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
    /// For [`Action::Account`]: the account acted on (an entity identified by user name, role
    /// `11` Security User).
    pub target_user: Option<String>,
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
            target_user: None,
        }
    }

    /// The user name recorded as the ledger entry's author and in the user index.
    pub fn user(&self) -> &str {
        self.who.user.as_deref().filter(|u| !u.is_empty()).unwrap_or(ANONYMOUS)
    }

    /// The FHIR R4 AuditEvent (without `id`: the audit ledger gives each event its sequence
    /// number as id when it is stored).
    pub fn to_fhir(&self) -> Value {
        serde_json::from_slice(&self.to_fhir_json()).expect("the AuditEvent writer writes valid JSON")
    }

    /// [`AuditRecord::to_fhir`] as compact JSON bytes, written directly (several times faster
    /// than building a `Value`: this runs on every audited request). It is what is stored,
    /// after the ledger inserts `"id"`; `to_fhir` is parsed from it, so the two cannot differ.
    pub fn to_fhir_json(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(1536);
        o.extend_from_slice(br#"{"resourceType":"AuditEvent","type":"#);
        let (ty, subtype) = self.action.fhir_type();
        coding(&mut o, ty);
        o.extend_from_slice(br#","subtype":["#);
        if let Some(st) = subtype {
            coding(&mut o, st);
            o.push(b',');
        }
        let code = self.action.code();
        o.extend_from_slice(br#"{"system":"#);
        string(&mut o, ACTION_SYSTEM);
        o.extend_from_slice(br#","code":"#);
        string(&mut o, &code);
        o.extend_from_slice(br#","display":"#);
        string(&mut o, &code);
        o.extend_from_slice(br#"}],"action":""#);
        o.extend_from_slice(self.action.fhir_action().as_bytes());
        o.extend_from_slice(br#"","recorded":""#);
        o.extend_from_slice(format_instant(self.time_ms).as_bytes());
        o.extend_from_slice(br#"","outcome":""#);
        o.extend_from_slice(self.outcome.code().as_bytes());
        o.push(b'"');
        match &self.outcome {
            Outcome::Denied(r) | Outcome::Failed(r) if !r.is_empty() => {
                o.extend_from_slice(br#","outcomeDesc":"#);
                string(&mut o, r);
            }
            _ => {}
        }
        let reason = self.reason.as_deref().filter(|r| !r.is_empty());
        let has_purpose = self.purpose.is_some() || reason.is_some();
        if has_purpose {
            o.extend_from_slice(br#","purposeOfEvent":["#);
            self.purpose_of_use(&mut o, reason);
            o.push(b']');
        }
        o.extend_from_slice(br#","agent":["#);
        self.requestor(&mut o, has_purpose, reason);
        o.extend_from_slice(br#"],"source":{"observer":{"display":"#);
        string(&mut o, OBSERVER);
        o.extend_from_slice(br#"},"type":["#);
        coding(&mut o, ("http://terminology.hl7.org/CodeSystem/security-source-type", "4", "Application Server"));
        o.extend_from_slice(b"]}");
        self.entities(&mut o);
        o.push(b'}');
        o
    }

    fn purpose_of_use(&self, o: &mut Vec<u8>, reason: Option<&str>) {
        o.push(b'{');
        if let Some(p) = self.purpose {
            o.extend_from_slice(br#""coding":["#);
            for (i, c) in p.codings().iter().enumerate() {
                if i > 0 {
                    o.push(b',');
                }
                coding(o, *c);
            }
            o.push(b']');
        }
        if let Some(r) = reason {
            if self.purpose.is_some() {
                o.push(b',');
            }
            o.extend_from_slice(br#""text":"#);
            string(o, r);
        }
        o.push(b'}');
    }

    fn requestor(&self, o: &mut Vec<u8>, has_purpose: bool, reason: Option<&str>) {
        o.push(b'{');
        if let Some(ua) = self.source.user_agent.as_deref().filter(|s| !s.is_empty()) {
            o.extend_from_slice(br#""extension":[{"url":"#);
            string(o, USER_AGENT_EXTENSION);
            o.extend_from_slice(br#","valueString":"#);
            string(o, ua);
            o.extend_from_slice(b"}],");
        }
        o.extend_from_slice(br#""type":{"coding":["#);
        coding(o, ("http://terminology.hl7.org/CodeSystem/extra-security-role-type", "humanuser", "human user"));
        o.extend_from_slice(b"]}");
        if let Some(role) = self.who.role.as_deref().filter(|s| !s.is_empty()) {
            o.extend_from_slice(br#","role":[{"text":"#);
            string(o, role);
            o.extend_from_slice(b"}]");
        }
        let user = self.user();
        o.extend_from_slice(br#","who":{"identifier":{"system":"#);
        string(o, USER_SYSTEM);
        o.extend_from_slice(br#","value":"#);
        string(o, user);
        o.extend_from_slice(br#"},"display":"#);
        string(o, user);
        o.push(b'}');
        if let Some(s) = self.who.session.as_deref().filter(|s| !s.is_empty()) {
            o.extend_from_slice(br#","altId":"#);
            string(o, s);
        }
        o.extend_from_slice(br#","name":"#);
        string(o, user);
        o.extend_from_slice(br#","requestor":true"#);
        if let Some(addr) = self.source.address.as_deref().filter(|s| !s.is_empty()) {
            let kind: &[u8] = if addr.parse::<std::net::IpAddr>().is_ok() { b"2" } else { b"1" };
            o.extend_from_slice(br#","network":{"address":"#);
            string(o, addr);
            o.extend_from_slice(br#","type":""#);
            o.extend_from_slice(kind);
            o.extend_from_slice(br#""}"#);
        }
        if has_purpose {
            o.extend_from_slice(br#","purposeOfUse":["#);
            self.purpose_of_use(o, reason);
            o.push(b']');
        }
        o.push(b'}');
    }

    fn entities(&self, o: &mut Vec<u8>) {
        let mut n = 0usize;
        let mut open = |o: &mut Vec<u8>| {
            o.extend_from_slice(if n == 0 { br#","entity":["# as &[u8] } else { b"," });
            n += 1;
        };
        let mut patient_refs: Vec<String> = Vec::with_capacity(self.patients.len());
        for p in &self.patients {
            let r = format!("Patient/{p}");
            if patient_refs.contains(&r) {
                continue;
            }
            open(o);
            entity(o, &r, (ENTITY_TYPE, "1", "Person"), (OBJECT_ROLE, "1", "Patient"));
            patient_refs.push(r);
        }
        for w in &self.what {
            if w.is_empty() || patient_refs.iter().any(|p| p == w) {
                continue;
            }
            open(o);
            entity(o, w, (ENTITY_TYPE, "2", "System Object"), (OBJECT_ROLE, "4", "Domain Resource"));
        }
        if let Some(account) = self.target_user.as_deref().filter(|a| !a.is_empty()) {
            open(o);
            o.extend_from_slice(br#"{"what":{"identifier":{"system":"#);
            string(o, USER_SYSTEM);
            o.extend_from_slice(br#","value":"#);
            string(o, account);
            o.extend_from_slice(br#"},"display":"#);
            string(o, account);
            o.extend_from_slice(br#"},"type":"#);
            coding(o, (ENTITY_TYPE, "1", "Person"));
            o.extend_from_slice(br#","role":"#);
            coding(o, (OBJECT_ROLE, "11", "Security User"));
            o.push(b'}');
        }
        let query = self.query.as_deref().filter(|q| !q.is_empty());
        if query.is_some() || !self.returned.is_empty() {
            open(o);
            o.extend_from_slice(br#"{"type":"#);
            coding(o, (ENTITY_TYPE, "2", "System Object"));
            o.extend_from_slice(br#","role":"#);
            coding(o, (OBJECT_ROLE, "24", "Query"));
            if let Some(q) = query {
                o.extend_from_slice(br#","description":"#);
                string(o, q);
                o.extend_from_slice(br#","query":""#);
                o.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(q).as_bytes());
                o.push(b'"');
            }
            if !self.returned.is_empty() {
                o.extend_from_slice(br#","detail":[{"type":"returned","valueString":"#);
                string(o, &self.returned.join(" "));
                o.extend_from_slice(b"}]");
            }
            o.push(b'}');
        }
        if n > 0 {
            o.push(b']');
        }
    }
}

fn entity(o: &mut Vec<u8>, reference: &str, ty: Code, role: Code) {
    o.extend_from_slice(br#"{"what":{"reference":"#);
    string(o, reference);
    o.extend_from_slice(br#"},"type":"#);
    coding(o, ty);
    o.extend_from_slice(br#","role":"#);
    coding(o, role);
    o.push(b'}');
}

fn coding(o: &mut Vec<u8>, (system, code, display): Code) {
    o.extend_from_slice(br#"{"system":"#);
    string(o, system);
    o.extend_from_slice(br#","code":"#);
    string(o, code);
    o.extend_from_slice(br#","display":"#);
    string(o, display);
    o.push(b'}');
}

/// A JSON string literal (RFC 8259 escaping: `"`, `\` and control characters).
fn string(o: &mut Vec<u8>, s: &str) {
    o.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        o.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            o.extend_from_slice(format!("\\u{b:04x}").as_bytes());
        } else {
            o.extend_from_slice(esc);
        }
        start = i + 1;
    }
    o.extend_from_slice(&bytes[start..]);
    o.push(b'"');
}

/// Current time in milliseconds since the Unix epoch (UTC).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// `2026-11-27T08:10:00.123Z`
pub fn format_instant(ms: i64) -> String {
    let (date, time) = split(ms);
    format!("{date}T{time}.{:03}Z", ms.rem_euclid(1000))
}

/// A time at a fixed offset from UTC (e.g. IST, +330 minutes) as `2026-11-27 13:40:00`.
pub fn format_local(ms: i64, offset_minutes: i32) -> String {
    let (date, time) = split(ms + offset_minutes as i64 * 60_000);
    format!("{date} {time}")
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
    fn strings_are_escaped() {
        let mut r = AuditRecord::new(Action::Operation("$x\"y".into()), Outcome::Denied("a\\b\n\t\u{1}\"ü/".into()));
        r.who.user = Some("dr \"quote\"".into());
        r.reason = Some("line1\r\nline2".into());
        let v = r.to_fhir();
        assert_eq!(v["outcomeDesc"], "a\\b\n\t\u{1}\"ü/");
        assert_eq!(v["agent"][0]["name"], "dr \"quote\"");
        assert_eq!(v["purposeOfEvent"][0]["text"], "line1\r\nline2");
        assert_eq!(v["subtype"][1]["code"], "$x\"y");
    }

    #[test]
    fn account_changes_name_the_account() {
        let mut r = AuditRecord::new(Action::Account("user-disable".into()), Outcome::Allowed);
        r.who = Who { user: Some("os:asha".into()), role: Some("operator".into()), session: Some("uid 1000".into()) };
        r.target_user = Some("clerk1".into());
        let v = r.to_fhir();
        assert_eq!(v["type"]["code"], "110113");
        assert_eq!(v["subtype"][0]["code"], "110137");
        assert_eq!(v["subtype"][1]["code"], "user-disable");
        assert_eq!(v["entity"][0]["what"]["identifier"]["value"], "clerk1");
        assert_eq!(v["entity"][0]["what"]["identifier"]["system"], USER_SYSTEM);
        assert_eq!(v["entity"][0]["role"]["code"], "11");
        assert_eq!(v["agent"][0]["name"], "os:asha");
    }

    #[test]
    fn the_json_starts_with_the_resource_type() {
        let r = AuditRecord::new(Action::Read, Outcome::Allowed);
        assert!(r.to_fhir_json().starts_with(br#"{"resourceType":"AuditEvent","#));
    }
}
