//! A DiagnosticReport for printing: [`load`] reads the report and what it points to (patient,
//! order, specimens, results, the people named) in one read snapshot; [`view`] turns them into
//! the page's view model, plain strings that the template escapes.

use super::format::{self, Flag, Zone, str_of};
use crate::error::ApiError;
use crate::fhir::UHID_SYSTEM;
use crate::fhir::lab::{SPECIMEN_BARCODE_SYSTEM, VERIFIED_BY_URL};
use askama::Template;
use axum::http::StatusCode;
use serde_json::Value;
use std::collections::HashMap;
use vaidya_domain::age;
use vaidya_domain::schedule::LocalDate;
use vaidya_fhir::outcome::IssueType;

/// Report statuses meaning the report has been released to the patient and may be printed.
pub use crate::fhir::visibility::RELEASED_REPORT as RELEASED;

/// Results a report may list, and members a panel may have, that are printed (a bound on
/// the work one request can ask for).
const MAX_RESULTS: usize = 500;

/// Everything the printed report shows, as stored.
#[derive(Debug, Default)]
pub struct Sources {
    pub report: Value,
    pub version: u64,
    pub patient: Option<Value>,
    pub requests: Vec<Value>,
    pub specimens: Vec<Value>,
    /// The report's results in order; `None` where the Observation cannot be read.
    pub results: Vec<Loaded>,
    /// Display names of the people and organisations referenced, by reference string.
    pub names: HashMap<String, String>,
    /// The accounts that entered the results (authors of their first versions in the ledger).
    pub entered_by: Vec<String>,
}

/// A result as loaded: the Observation (or `None`), and its panel members, if any.
#[derive(Debug, Default)]
pub struct Loaded {
    pub reference: String,
    pub observation: Option<Value>,
    pub members: Vec<Loaded>,
}

/// Load a released report and everything it shows: 404 if unknown, 410 if deleted, 409 if
/// it is not released.
pub fn load(conn: &impl vaidya_store::Db, id: &str, viewer: &crate::fhir::visibility::Viewer) -> Result<Sources, ApiError> {
    let stored = match vaidya_store::read::current(conn, "DiagnosticReport", id)? {
        None => return Err(ApiError::not_found(format!("DiagnosticReport/{id} is not known"))),
        Some(s) if s.deleted => {
            return Err(ApiError::new(StatusCode::GONE, IssueType::Deleted, format!("DiagnosticReport/{id} is deleted")));
        }
        // A patient's account prints only their own reports; others' are not there for them.
        Some(s) if matches!(viewer, crate::fhir::visibility::Viewer::Patient(_)) && !crate::fhir::visibility::visible(viewer, "DiagnosticReport", &s.content) => {
            return Err(ApiError::not_found(format!("DiagnosticReport/{id} is not known")));
        }
        Some(s) => s,
    };
    let report: Value = serde_json::from_slice(&stored.content).map_err(|e| ApiError::internal(e.to_string()))?;
    let status = report["status"].as_str().unwrap_or("unknown");
    if !RELEASED.contains(&status) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            IssueType::BusinessRule,
            format!(
                "DiagnosticReport/{id} is {status}: it has not been released, and only released reports \
                 (final, amended, corrected or appended) can be printed"
            ),
        ));
    }
    let mut src = Sources { version: stored.version, ..Sources::default() };
    let mut names = HashMap::new();

    if let Some((rtype, p)) = resolve(conn, &report, &report["subject"])?
        && rtype == "Patient"
    {
        src.patient = Some(p);
    }
    for r in refs(&report, "basedOn") {
        if let Some((rtype, sr)) = resolve(conn, &report, r)?
            && rtype == "ServiceRequest"
        {
            name_of(conn, &sr, &sr["requester"], &mut names)?;
            src.requests.push(sr);
        }
    }
    for r in refs(&report, "performer").chain(refs(&report, "resultsInterpreter")) {
        name_of(conn, &report, r, &mut names)?;
    }

    let mut specimen_refs: Vec<&Value> = refs(&report, "specimen").collect();
    let mut entered_by: Vec<String> = vec![];
    let mut load_obs = |reference: &Value, specimen_refs: &mut Vec<Value>| -> Result<Loaded, ApiError> {
        let text = reference["reference"].as_str().unwrap_or_default().to_string();
        let Some((rtype, obs)) = resolve(conn, &report, reference)? else {
            return Ok(Loaded { reference: text, ..Loaded::default() });
        };
        if rtype != "Observation" {
            return Ok(Loaded { reference: text, ..Loaded::default() });
        }
        if let Some(id) = obs["id"].as_str()
            && let Some(first) = vaidya_store::read::version(conn, "Observation", id, 1)?
            && !entered_by.contains(&first.author)
        {
            entered_by.push(first.author);
        }
        if obs["specimen"].is_object() {
            specimen_refs.push(obs["specimen"].clone());
        }
        Ok(Loaded { reference: text, observation: Some(obs), members: vec![] })
    };
    let mut extra_specimens: Vec<Value> = vec![];
    let mut count = 0;
    for r in refs(&report, "result") {
        if count >= MAX_RESULTS {
            break;
        }
        count += 1;
        let mut loaded = load_obs(r, &mut extra_specimens)?;
        let members: Vec<Value> = loaded.observation.as_ref().map(|o| refs(o, "hasMember").cloned().collect()).unwrap_or_default();
        for m in members {
            if count >= MAX_RESULTS {
                break;
            }
            count += 1;
            loaded.members.push(load_obs(&m, &mut extra_specimens)?);
        }
        src.results.push(loaded);
    }
    specimen_refs.extend(extra_specimens.iter());
    let mut seen = vec![];
    for r in specimen_refs {
        let key = r["reference"].as_str().unwrap_or_default();
        if key.is_empty() || seen.contains(&key) {
            continue;
        }
        seen.push(key);
        if let Some((rtype, s)) = resolve(conn, &report, r)?
            && rtype == "Specimen"
        {
            src.specimens.push(s);
        }
    }
    src.entered_by = entered_by;
    src.names = names;
    src.report = report;
    Ok(src)
}

/// The Reference values in `resource[key]` (one or a list).
fn refs<'a>(resource: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> + use<'a> {
    let v = &resource[key];
    let list: &'a [Value] = match v {
        Value::Array(a) => a.as_slice(),
        Value::Object(_) => std::slice::from_ref(v),
        _ => &[],
    };
    list.iter().filter(|r| r.is_object())
}

/// The resource a Reference points to, with its type: a contained one (`#id`), the live
/// current version of `Type/id`, or the version named by `Type/id/_history/n`. Absolute URLs
/// are not followed: they name another server's resources, which are not ours to print.
fn resolve(conn: &impl vaidya_store::Db, context: &Value, reference: &Value) -> Result<Option<(String, Value)>, ApiError> {
    let Some(r) = reference["reference"].as_str() else { return Ok(None) };
    if let Some(local) = r.strip_prefix('#') {
        let found = context["contained"].as_array().into_iter().flatten().find(|c| c["id"] == local);
        return Ok(found.and_then(|c| Some((c["resourceType"].as_str()?.to_string(), c.clone()))));
    }
    let (path, version) = match r.split_once("/_history/") {
        Some((p, v)) => match v.parse::<u64>() {
            Ok(v) => (p, Some(v)),
            Err(_) => return Ok(None),
        },
        None => (r, None),
    };
    let Some((rtype, id)) = path.split_once('/') else { return Ok(None) };
    if !crate::fhir::is_valid_id(id) || crate::fhir::check_type(rtype).is_err() {
        return Ok(None);
    }
    let stored = match version {
        Some(v) => vaidya_store::read::version(conn, rtype, id, v)?,
        None => vaidya_store::read::current(conn, rtype, id)?,
    };
    match stored {
        Some(s) if !s.deleted => {
            let v = serde_json::from_slice(&s.content).map_err(|e| ApiError::internal(e.to_string()))?;
            Ok(Some((rtype.to_string(), v)))
        }
        _ => Ok(None),
    }
}

/// Record the display name of a referenced person or organisation: the Reference's own
/// `display`, else the name of what it points to (a PractitionerRole's practitioner).
fn name_of(conn: &impl vaidya_store::Db, context: &Value, reference: &Value, names: &mut HashMap<String, String>) -> Result<(), ApiError> {
    let Some(key) = reference["reference"].as_str().or_else(|| str_of(reference, "display")) else { return Ok(()) };
    if names.contains_key(key) {
        return Ok(());
    }
    let name = match str_of(reference, "display") {
        Some(d) => Some(d.to_string()),
        None => match resolve(conn, context, reference)? {
            Some((rtype, r)) if rtype == "PractitionerRole" => match resolve(conn, &r, &r["practitioner"])? {
                Some((_, p)) => format::person_names(&p).0,
                None => None,
            },
            Some((rtype, r)) if matches!(rtype.as_str(), "Practitioner" | "Patient" | "RelatedPerson") => format::person_names(&r).0,
            Some((_, r)) => str_of(&r, "name").map(str::to_string),
            None => None,
        },
    };
    names.insert(key.to_string(), name.unwrap_or_else(|| key.to_string()));
    Ok(())
}

/// What the page needs besides the stored data.
pub struct Context {
    pub hospital: String,
    pub zone: Zone,
    pub now_ms: i64,
    pub printed_by: String,
}

/// The printed page of a released DiagnosticReport.
#[derive(Debug, Template)]
#[template(path = "print/diagnostic_report.html")]
pub struct ReportPage {
    pub hospital: String,
    /// "Laboratory report", "Radiology report" or "Diagnostic report".
    pub kind: String,
    /// The test or panel (DiagnosticReport.code).
    pub title: String,
    pub category: Option<String>,
    pub report_id: String,
    pub version: u64,
    /// The status code (`final`, `amended`, ...) and in words.
    pub status_code: String,
    pub status: String,
    /// A release after the first (amended, corrected, appended): said in a banner.
    pub revised: bool,
    pub patient: PatientView,
    pub order: OrderView,
    pub rows: Vec<ResultRow>,
    pub conclusion: Option<String>,
    pub conclusion_codes: Vec<String>,
    pub effective: Option<String>,
    pub issued: Option<String>,
    pub performers: Vec<String>,
    pub interpreters: Vec<String>,
    pub entered_by: Vec<String>,
    pub verified_by: Option<String>,
    pub printed: String,
    pub printed_by: String,
}

#[derive(Debug, Default)]
pub struct PatientView {
    pub name: String,
    /// The name as written in another script (e.g. Devanagari), if recorded.
    pub other_name: Option<String>,
    pub uhid: Option<String>,
    pub sex: Option<String>,
    pub age: Option<String>,
    pub birth_date: Option<String>,
    pub mobile: Option<String>,
}

#[derive(Debug, Default)]
pub struct OrderView {
    pub requesters: Vec<String>,
    pub ordered: Option<String>,
    pub specimens: Vec<SpecimenView>,
}

#[derive(Debug)]
pub struct SpecimenView {
    pub barcode: Option<String>,
    pub kind: Option<String>,
    pub collected: Option<String>,
}

#[derive(Debug)]
pub struct ResultRow {
    pub name: String,
    /// A component or panel member, printed under its parent.
    pub nested: bool,
    /// A panel's own row, with its members below.
    pub heading: bool,
    pub value: String,
    pub ranges: Vec<String>,
    pub flags: Vec<Flag>,
    pub status: String,
    /// Entered in error or cancelled: printed struck through, never to be read as a result.
    pub withdrawn: bool,
    pub notes: Vec<String>,
}

impl ResultRow {
    pub fn abnormal(&self) -> bool {
        !self.flags.is_empty()
    }
    pub fn critical(&self) -> bool {
        self.flags.iter().any(|f| f.critical)
    }
}

/// The page for `src` (a released report, as [`load`] gives it).
pub fn view(src: &Sources, ctx: &Context) -> ReportPage {
    let r = &src.report;
    let zone = ctx.zone;
    let status_code = r["status"].as_str().unwrap_or_default().to_string();
    let categories: Vec<&Value> = r["category"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
    let name = |reference: &Value| -> Option<String> {
        let key = reference["reference"].as_str().or_else(|| str_of(reference, "display"))?;
        src.names.get(key).cloned()
    };
    let names = |key: &str| -> Vec<String> { refs(r, key).filter_map(name).collect() };

    // The report's date: when it was issued, else when the sample was taken, else now.
    let report_ms = str_of(r, "issued")
        .or_else(|| str_of(r, "effectiveDateTime"))
        .or_else(|| str_of(&r["effectivePeriod"], "start"))
        .and_then(vaidya_fhir::datetime::parse_date_range)
        .map_or(ctx.now_ms, |(start, _)| start);
    let report_date = zone.date_of(report_ms);

    let verified_by = r["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["url"] == VERIFIED_BY_URL)
        .filter_map(|e| str_of(e, "valueString"))
        .collect::<Vec<_>>();

    ReportPage {
        hospital: ctx.hospital.clone(),
        kind: report_kind(&categories).to_string(),
        title: format::concept(&r["code"]).unwrap_or_else(|| "Report".to_string()),
        category: categories.iter().filter_map(|c| format::concept(c)).next(),
        report_id: r["id"].as_str().unwrap_or_default().to_string(),
        version: src.version,
        status: format::status_word(&status_code),
        revised: status_code != "final",
        status_code,
        patient: patient_view(src.patient.as_ref(), report_date),
        order: OrderView {
            requesters: src.requests.iter().filter_map(|sr| name(&sr["requester"])).collect(),
            ordered: src.requests.iter().find_map(|sr| str_of(sr, "authoredOn")).map(|t| zone.fhir(t)),
            specimens: src.specimens.iter().map(|s| specimen_view(s, zone)).collect(),
        },
        rows: src.results.iter().flat_map(result_rows).collect(),
        conclusion: str_of(r, "conclusion").map(str::to_string),
        conclusion_codes: r["conclusionCode"].as_array().into_iter().flatten().filter_map(format::concept).collect(),
        effective: str_of(r, "effectiveDateTime").or_else(|| str_of(&r["effectivePeriod"], "start")).map(|t| zone.fhir(t)),
        issued: str_of(r, "issued").map(|t| zone.fhir(t)),
        performers: names("performer"),
        interpreters: names("resultsInterpreter"),
        entered_by: src.entered_by.clone(),
        verified_by: (!verified_by.is_empty()).then(|| verified_by.join(", ")),
        printed: zone.date_time(ctx.now_ms),
        printed_by: ctx.printed_by.clone(),
    }
}

/// Laboratory or radiology, from the report's category (HL7 v2 table 0074 codes).
fn report_kind(categories: &[&Value]) -> &'static str {
    let codes: Vec<&str> = categories
        .iter()
        .flat_map(|c| c["coding"].as_array().into_iter().flatten())
        .filter_map(|c| c["code"].as_str())
        .collect();
    if codes.iter().any(|c| matches!(*c, "RAD" | "RX" | "CT" | "NMR" | "NMS" | "RUS" | "VUS" | "OUS" | "XRC" | "CUS")) {
        "Radiology report"
    } else if codes.iter().any(|c| matches!(*c, "LAB" | "HM" | "CH" | "MB" | "MCB" | "MYC" | "PAR" | "SP" | "CP" | "SR" | "BLB" | "URN" | "VR" | "TX" | "HEM" | "IMM" | "SER")) {
        "Laboratory report"
    } else {
        "Diagnostic report"
    }
}

fn patient_view(p: Option<&Value>, on: Option<LocalDate>) -> PatientView {
    let Some(p) = p else { return PatientView { name: "(patient record not available)".into(), ..PatientView::default() } };
    let (name, other_name) = format::person_names(p);
    let uhid = p["identifier"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["system"] == UHID_SYSTEM)
        .and_then(|i| str_of(i, "value"))
        .map(str::to_string);
    let sex = str_of(p, "gender").map(|g| match g {
        "male" => "Male".to_string(),
        "female" => "Female".to_string(),
        "other" => "Other".to_string(),
        other => format::status_word(other),
    });
    let birth = str_of(p, "birthDate");
    let age = birth.zip(on).and_then(|(b, on)| {
        let a = match b.len() {
            10 => age::age_on(b.parse().ok()?, on),
            7 => age::age_on(format!("{b}-01").parse().ok()?, on),
            4 => age::age_from_year(b.parse().ok()?, on),
            _ => None,
        };
        a.map(|a| a.to_string())
    });
    let phones: Vec<&Value> =
        p["telecom"].as_array().into_iter().flatten().filter(|t| t["system"] == "phone" && t["period"]["end"].is_null()).collect();
    let mobile = phones.iter().find(|t| t["use"] == "mobile").or(phones.first()).and_then(|t| str_of(t, "value")).map(str::to_string);
    PatientView {
        name: name.unwrap_or_else(|| "(name not recorded)".into()),
        other_name,
        uhid,
        sex,
        age,
        birth_date: birth.map(|b| b.parse().map_or_else(|_| b.to_string(), format::date)),
        mobile,
    }
}

fn specimen_view(s: &Value, zone: Zone) -> SpecimenView {
    let barcode = s["identifier"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["system"] == SPECIMEN_BARCODE_SYSTEM)
        .or_else(|| s.get("accessionIdentifier"))
        .and_then(|i| str_of(i, "value"))
        .map(str::to_string);
    SpecimenView {
        barcode,
        kind: s.get("type").and_then(format::concept),
        collected: str_of(&s["collection"], "collectedDateTime")
            .or_else(|| str_of(&s["collection"]["collectedPeriod"], "start"))
            .map(|t| zone.fhir(t)),
    }
}

/// The rows of one result: the Observation, then its components or panel members.
fn result_rows(l: &Loaded) -> Vec<ResultRow> {
    let Some(o) = &l.observation else {
        return vec![missing_row(&l.reference, false)];
    };
    let mut rows = vec![row(o, false)];
    let components: Vec<&Value> = o["component"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
    for c in &components {
        let mut sub = row(c, true);
        sub.status = String::new();
        rows.push(sub);
    }
    for m in &l.members {
        match &m.observation {
            Some(mo) => rows.push(row(mo, true)),
            None => rows.push(missing_row(&m.reference, true)),
        }
    }
    if (!components.is_empty() || !l.members.is_empty()) && rows[0].value.is_empty() {
        rows[0].heading = true;
    }
    rows
}

fn row(o: &Value, nested: bool) -> ResultRow {
    ResultRow {
        name: format::concept(&o["code"]).unwrap_or_else(|| "(unnamed test)".into()),
        nested,
        heading: false,
        value: format::observation_value(o).unwrap_or_default(),
        ranges: format::reference_ranges(o),
        flags: format::flags(o),
        status: o["status"].as_str().map(format::status_word).unwrap_or_default(),
        withdrawn: matches!(o["status"].as_str(), Some("entered-in-error" | "cancelled")),
        notes: o["note"].as_array().into_iter().flatten().filter_map(|n| str_of(n, "text")).map(str::to_string).collect(),
    }
}

fn missing_row(reference: &str, nested: bool) -> ResultRow {
    ResultRow {
        name: format!("{reference} (result not available)"),
        nested,
        heading: false,
        value: String::new(),
        ranges: vec![],
        flags: vec![],
        status: String::new(),
        withdrawn: false,
        notes: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sources() -> Sources {
        let obs: Value = serde_json::from_str(
            r#"{"resourceType": "Observation", "id": "o1", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "718-7", "display": "Hemoglobin"}]},
                "valueQuantity": {"value": 17.2, "unit": "g/dL"},
                "referenceRange": [{"low": {"value": 12.0, "unit": "g/dL"}, "high": {"value": 15.5, "unit": "g/dL"}}],
                "interpretation": [{"coding": [{"code": "H"}]}]}"#,
        )
        .unwrap();
        Sources {
            report: json!({"resourceType": "DiagnosticReport", "id": "r1", "status": "amended",
                "code": {"text": "Haemoglobin <script>"}, "issued": "2026-11-20T06:30:00Z",
                "category": [{"coding": [{"code": "HM", "display": "Haematology"}]}],
                "performer": [{"reference": "Practitioner/d"}],
                "extension": [{"url": VERIFIED_BY_URL, "valueString": "verifier"}]}),
            version: 4,
            patient: Some(json!({"name": [{"family": "Devi", "given": ["Sita"]}], "gender": "female", "birthDate": "1975-08-02",
                "identifier": [{"system": UHID_SYSTEM, "value": "0000-0000-0013"}],
                "telecom": [{"system": "phone", "value": "+919810000002", "use": "mobile"}]})),
            results: vec![Loaded { reference: "Observation/o1".into(), observation: Some(obs), members: vec![] }],
            names: HashMap::from([("Practitioner/d".to_string(), "Dr. Alok Verma".to_string())]),
            entered_by: vec!["admin".into()],
            ..Sources::default()
        }
    }

    fn ctx() -> Context {
        Context { hospital: "Demo & Co".into(), zone: Zone::IST, now_ms: 0, printed_by: "admin".into() }
    }

    #[test]
    fn the_view_model_has_what_the_page_shows() {
        let v = view(&sources(), &ctx());
        assert_eq!(v.kind, "Laboratory report");
        assert_eq!(v.patient.age.as_deref(), Some("51 years"));
        assert_eq!(v.patient.sex.as_deref(), Some("Female"));
        assert_eq!(v.issued.as_deref(), Some("20 Nov 2026, 12:00 IST"));
        assert_eq!(v.rows[0].value, "17.2 g/dL");
        assert_eq!(v.rows[0].ranges, vec!["12.0–15.5 g/dL"]);
        assert_eq!(v.rows[0].flags[0].word, "High");
        assert_eq!(v.performers, vec!["Dr. Alok Verma"]);
        assert_eq!(v.verified_by.as_deref(), Some("verifier"));
        assert!(v.revised);
    }

    #[test]
    fn withdrawn_missing_and_panel_results() {
        let mut src = sources();
        let mut withdrawn = src.results[0].observation.clone().unwrap();
        withdrawn["status"] = json!("entered-in-error");
        let panel = json!({"resourceType": "Observation", "status": "final", "code": {"text": "Lipid profile"}});
        src.results.push(Loaded { reference: "Observation/o2".into(), observation: Some(withdrawn), members: vec![] });
        src.results.push(Loaded { reference: "Observation/gone".into(), observation: None, members: vec![] });
        src.results.push(Loaded {
            reference: "Observation/p".into(),
            observation: Some(panel),
            members: vec![Loaded {
                reference: "Observation/m".into(),
                observation: Some(json!({"status": "final", "code": {"text": "HDL"}, "valueQuantity": {"value": 50, "unit": "mg/dL"}})),
                members: vec![],
            }],
        });
        let v = view(&src, &ctx());
        assert!(!v.rows[0].withdrawn && v.rows[1].withdrawn);
        assert_eq!(v.rows[1].status, "Entered in error");
        assert!(v.rows[2].name.contains("Observation/gone") && v.rows[2].value.is_empty());
        assert!(v.rows[3].heading && !v.rows[3].nested);
        assert!(v.rows[4].nested && v.rows[4].value == "50 mg/dL");
        let html = v.render().unwrap();
        assert!(html.contains("withdrawn"));
    }

    #[test]
    fn the_page_escapes_what_it_prints() {
        let html = view(&sources(), &ctx()).render().unwrap();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("Demo &#38; Co") || html.contains("Demo &amp; Co"), "{html}");
        assert!(html.contains("Amended"));
    }
}
