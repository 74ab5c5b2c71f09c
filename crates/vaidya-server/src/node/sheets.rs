//! Downtime sheets: paper for when even the node is gone. A department node keeps, in
//! `<data>/sheets/`, printable HTML and PDF files of what its staff need to work on paper:
//! today's OPD list per doctor, the ward census with each inpatient's active orders and
//! medication chart, the pending lab orders, and blank numbered forms for registration and lab
//! requests. They are rewritten every few minutes and at every switch to downtime, each file
//! replaced whole (written beside it, then renamed), so that a printer always finds a complete,
//! recent set, even if the node's process has died. The folder holds patients' data: it is
//! made readable by the node's own user only.
//!
//! The sheets are read straight from the replica (the node's own process, not a person): the
//! files are for the department's printer, and leave the machine only on paper.

use crate::app::html_escape;
use crate::print::format::{self, Zone};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use vaidya_domain::schedule::LocalDate;
use vaidya_store::{Conn, Store};

/// How many blank forms of each kind a set carries.
pub const BLANK_FORMS: usize = 20;
/// Rows one table shows at most (a department's day; the search's page limit).
const MAX_ROWS: usize = 1000;

/// A printable document: a title and tables.
#[derive(Debug, Clone, PartialEq)]
pub struct Sheet {
    pub file: &'static str,
    pub title: String,
    pub note: String,
    pub sections: Vec<Section>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub heading: String,
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

/// What the sheets are made for.
pub struct Context<'a> {
    pub hospital: &'a str,
    pub department: &'a str,
    pub issuer: u8,
    pub zone: Zone,
    pub now_ms: i64,
    pub downtime: bool,
}

/// Write the whole set into `dir` (created, owner-only). The files written.
pub fn write_all(store: &Store, dir: &Path, cx: &Context<'_>) -> Result<Vec<PathBuf>, String> {
    let today = cx.zone.date_of(cx.now_ms).ok_or("the date today is out of range")?;
    let sheets = store
        .read(|conn| -> Result<Vec<Sheet>, crate::error::ApiError> {
            let made = (|| Ok::<_, String>(vec![opd(conn, cx, today)?, ward(conn, cx)?, lab(conn, cx)?, forms(cx, today)]))();
            made.map_err(crate::error::ApiError::internal)
        })
        .map_err(|e| format!("reading the replica: {}", e.message()))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut written = Vec::new();
    for s in &sheets {
        written.push(replace(dir, &format!("{}.html", s.file), html(s, cx).as_bytes())?);
        written.push(replace(dir, &format!("{}.pdf", s.file), &pdf(s, cx))?);
    }
    written.push(replace(dir, "index.html", index(&sheets, cx).as_bytes())?);
    Ok(written)
}

/// Write `bytes` to `dir/name` whole: beside it first, then renamed over it.
fn replace(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, String> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

fn find(conn: &Conn, rtype: &str, pairs: &[(&str, String)]) -> Result<Vec<(String, Value)>, String> {
    let mut pairs = pairs.to_vec();
    pairs.push(("_count", MAX_ROWS.to_string()));
    crate::fhir::find(conn, rtype, &pairs).map_err(|e| format!("{rtype}: {}", e.message()))
}

fn read(conn: &Conn, reference: &str) -> Option<Value> {
    let (rtype, id) = reference.split_once('/')?;
    let stored = vaidya_store::read::current(conn, rtype, id).ok()??;
    if stored.deleted {
        return None;
    }
    serde_json::from_slice(&stored.content).ok()
}

/// Name and UHID of a patient reference.
fn who(conn: &Conn, reference: Option<&str>) -> (String, String) {
    let Some(p) = reference.and_then(|r| read(conn, r)) else { return (reference.unwrap_or("").to_string(), String::new()) };
    let name = p["name"].as_array().and_then(|n| n.first()).and_then(format::human_name).unwrap_or_default();
    let uhid = p["identifier"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["system"] == crate::fhir::UHID_SYSTEM)
        .and_then(|i| i["value"].as_str())
        .unwrap_or("")
        .to_string();
    (name, uhid)
}

fn day_range(cx: &Context<'_>, param: &'static str, day: LocalDate) -> [(&'static str, String); 2] {
    let [lo, hi] = cx.zone.day_bounds(day);
    [(param, format!("ge{lo}")), (param, format!("lt{hi}"))]
}

fn time_text(cx: &Context<'_>, value: Option<&str>) -> String {
    value.and_then(vaidya_fhir::datetime::parse_date_range).and_then(|(ms, _)| cx.zone.time_of(ms)).map(|t| t.to_string()).unwrap_or_default()
}

/// Today's appointments, one section per doctor (the actor of the slot's schedule).
fn opd(conn: &Conn, cx: &Context<'_>, today: LocalDate) -> Result<Sheet, String> {
    let mut by_doctor: BTreeMap<String, Vec<(String, Vec<String>)>> = BTreeMap::new();
    for (_, appt) in find(conn, "Appointment", &day_range(cx, "date", today))? {
        let status = appt["status"].as_str().unwrap_or("").to_string();
        if matches!(status.as_str(), "cancelled" | "entered-in-error") {
            continue;
        }
        let patient = appt["participant"].as_array().into_iter().flatten().find_map(|p| p["actor"]["reference"].as_str().filter(|r| r.starts_with("Patient/")));
        let doctor = appt["slot"][0]["reference"]
            .as_str()
            .and_then(|s| read(conn, s))
            .and_then(|slot| slot["schedule"]["reference"].as_str().and_then(|s| read(conn, s)))
            .and_then(|sched| sched["actor"].as_array()?.iter().find_map(|a| a["reference"].as_str().filter(|r| r.starts_with("Practitioner/")).map(str::to_string)))
            .map(|r| read(conn, &r).and_then(|p| p["name"].as_array()?.first().and_then(format::human_name)).unwrap_or(r))
            .unwrap_or_else(|| "(no doctor named)".to_string());
        let start = appt["start"].as_str().map(str::to_string).or_else(|| appt["slot"][0]["reference"].as_str().and_then(|s| read(conn, s)).and_then(|s| s["start"].as_str().map(str::to_string)));
        let token = appt["extension"].as_array().into_iter().flatten().find(|e| e["url"].as_str().is_some_and(|u| u.ends_with("queue-token"))).and_then(|e| e["valueString"].as_str()).unwrap_or("").to_string();
        let (name, uhid) = who(conn, patient);
        let time = time_text(cx, start.as_deref());
        by_doctor.entry(doctor).or_default().push((time.clone(), vec![time, token, name, uhid, status, String::new()]));
    }
    let sections = by_doctor
        .into_iter()
        .map(|(doctor, mut rows)| {
            rows.sort();
            Section { heading: doctor, columns: vec!["Time", "Token", "Patient", "UHID", "Status", "Seen / notes"], rows: rows.into_iter().map(|r| r.1).collect() }
        })
        .collect();
    Ok(Sheet { file: "opd", title: format!("OPD list, {}", format::date(today)), note: "Appointments of the day, by doctor.".into(), sections })
}

/// Inpatients (encounters in progress, class inpatient), each with active orders and medicines.
fn ward(conn: &Conn, cx: &Context<'_>) -> Result<Sheet, String> {
    let mut sections = Vec::new();
    let mut census = Vec::new();
    for (_, enc) in find(conn, "Encounter", &[("status", "in-progress".to_string()), ("class", "IMP".to_string())])? {
        let patient = enc["subject"]["reference"].as_str().map(str::to_string);
        let (name, uhid) = who(conn, patient.as_deref());
        let bed = enc["location"][0]["location"]["display"].as_str().or(enc["location"][0]["location"]["reference"].as_str()).unwrap_or("").to_string();
        let since = enc["period"]["start"].as_str().map(|s| cx.zone.fhir(s)).unwrap_or_default();
        census.push(vec![bed.clone(), name.clone(), uhid.clone(), since]);
        let Some(patient) = patient else { continue };
        let mut rows = Vec::new();
        for (_, sr) in find(conn, "ServiceRequest", &[("subject", patient.clone()), ("status", "active".to_string())])? {
            rows.push(vec!["Order".into(), sr["code"].get("text").and_then(Value::as_str).map(str::to_string).or_else(|| format::concept(&sr["code"])).unwrap_or_default(), sr["priority"].as_str().unwrap_or("").to_string(), String::new()]);
        }
        for (_, mr) in find(conn, "MedicationRequest", &[("subject", patient.clone()), ("status", "active".to_string())])? {
            let medicine = format::concept(&mr["medicationCodeableConcept"]).unwrap_or_default();
            let dose = mr["dosageInstruction"][0]["text"].as_str().unwrap_or("").to_string();
            rows.push(vec!["Medicine".into(), medicine, dose, String::new()]);
        }
        sections.push(Section { heading: format!("{bed} {name} {uhid}"), columns: vec!["Kind", "What", "Priority / dose", "Given / done (time, initials)"], rows });
    }
    sections.insert(0, Section { heading: "Census".into(), columns: vec!["Bed", "Patient", "UHID", "Admitted"], rows: census });
    Ok(Sheet { file: "ward", title: "Ward census and medication chart".into(), note: "Inpatients now, with their active orders and medicines.".into(), sections })
}

/// Lab orders not yet completed.
fn lab(conn: &Conn, cx: &Context<'_>) -> Result<Sheet, String> {
    let mut rows = Vec::new();
    for (_, sr) in find(conn, "ServiceRequest", &[("status", "active".to_string()), ("_sort", "authored".to_string())])? {
        let (name, uhid) = who(conn, sr["subject"]["reference"].as_str());
        let test = sr["code"].get("text").and_then(Value::as_str).map(str::to_string).or_else(|| format::concept(&sr["code"])).unwrap_or_default();
        let ordered = sr["authoredOn"].as_str().map(|s| cx.zone.fhir(s)).unwrap_or_default();
        rows.push(vec![ordered, name, uhid, test, sr["priority"].as_str().unwrap_or("routine").to_string(), String::new()]);
    }
    let section = Section { heading: "Pending orders".into(), columns: vec!["Ordered", "Patient", "UHID", "Test", "Priority", "Sample / result"], rows };
    Ok(Sheet { file: "lab", title: "Pending lab orders".into(), note: "Orders not yet completed.".into(), sections: vec![section] })
}

/// Blank forms, numbered `REG-07-20261128-001`, `LAB-07-...`: the node's code and the day make
/// every number unique; a person enters the form's number with it afterwards.
fn forms(cx: &Context<'_>, today: LocalDate) -> Sheet {
    let day = today.to_string().replace('-', "");
    let blank = |kind: &str, fields: &[&str]| -> Vec<Vec<String>> {
        (1..=BLANK_FORMS).map(|i| std::iter::once(format!("{kind}-{:02}-{day}-{i:03}", cx.issuer)).chain(fields.iter().map(|_| String::new())).collect()).collect()
    };
    let reg = ["Name", "Age / sex", "Mobile", "Address", "UHID given later"];
    let lab = ["Patient / UHID", "Test(s)", "Sample, time", "Ordered by"];
    Sheet {
        file: "forms",
        title: "Blank numbered forms".into(),
        note: "One row per patient or request; keep the number: it is entered with the form when the system is back.".into(),
        sections: vec![
            Section { heading: "Registration".into(), columns: std::iter::once("Form no.").chain(reg).collect(), rows: blank("REG", &reg) },
            Section { heading: "Lab request".into(), columns: std::iter::once("Form no.").chain(lab).collect(), rows: blank("LAB", &lab) },
        ],
    }
}

/// Keep the set current until `stop`: every `every`, and at once when the node switches to
/// downtime. A failure is logged and tried again at the next turn.
#[allow(clippy::too_many_arguments)]
pub fn keep_current(
    store: std::sync::Arc<Store>,
    dir: PathBuf,
    status: std::sync::Arc<std::sync::Mutex<super::follow::FollowStatus>>,
    hospital: String,
    department: String,
    issuer: u8,
    zone: Zone,
    every: std::time::Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let mut last: Option<std::time::Instant> = None;
    let mut downtimes_seen = u64::MAX;
    while !stop.load(std::sync::atomic::Ordering::Acquire) {
        let (mode, downtimes) = {
            let s = status.lock().expect("not poisoned");
            (s.mode, s.downtimes)
        };
        let switched = downtimes != downtimes_seen && mode == super::follow::Mode::Downtime;
        if switched || last.is_none_or(|t| t.elapsed() >= every) {
            let cx = Context { hospital: &hospital, department: &department, issuer, zone, now_ms: vaidya_store::now_ms(), downtime: mode != super::follow::Mode::Online };
            match write_all(&store, &dir, &cx) {
                Ok(files) => tracing::debug!(files = files.len(), downtime = cx.downtime, "downtime sheets written"),
                Err(e) => tracing::error!("downtime sheets not written: {e}"),
            }
            last = Some(std::time::Instant::now());
            downtimes_seen = downtimes;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}


fn header_text(cx: &Context<'_>) -> String {
    format!(
        "{} - {} - printed {}{}",
        cx.hospital,
        cx.department,
        cx.zone.date_time(cx.now_ms),
        if cx.downtime { " - DOWNTIME" } else { "" }
    )
}

/// The sheet as an HTML page (A4, no scripts, everything escaped).
pub fn html(s: &Sheet, cx: &Context<'_>) -> String {
    let mut out = String::with_capacity(8192);
    out.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>");
    out.push_str(&html_escape(&s.title));
    out.push_str("</title><style>@page{size:A4;margin:12mm}body{font:11pt sans-serif}table{border-collapse:collapse;width:100%;margin-bottom:1em}th,td{border:1px solid #444;padding:3px 5px;text-align:left;vertical-align:top}td{height:1.4em}h2{page-break-after:avoid}section{page-break-inside:auto}</style></head><body>");
    out.push_str(&format!("<p>{}</p><h1>{}</h1><p>{}</p>", html_escape(&header_text(cx)), html_escape(&s.title), html_escape(&s.note)));
    if s.sections.iter().all(|x| x.rows.is_empty()) && s.sections.len() <= 1 {
        out.push_str("<p><em>Nothing recorded.</em></p>");
    }
    for sec in &s.sections {
        out.push_str(&format!("<section><h2>{}</h2><table><thead><tr>", html_escape(&sec.heading)));
        for c in &sec.columns {
            out.push_str(&format!("<th>{}</th>", html_escape(c)));
        }
        out.push_str("</tr></thead><tbody>");
        if sec.rows.is_empty() {
            out.push_str(&format!("<tr><td colspan=\"{}\"><em>none</em></td></tr>", sec.columns.len()));
        }
        for r in &sec.rows {
            out.push_str("<tr>");
            for v in r {
                out.push_str(&format!("<td>{}</td>", html_escape(v)));
            }
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table></section>");
    }
    out.push_str("</body></html>\n");
    out
}

fn index(sheets: &[Sheet], cx: &Context<'_>) -> String {
    let mut out = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Downtime sheets</title></head><body><h1>Downtime sheets: {}</h1><p>{}</p><ul>",
        html_escape(cx.department),
        html_escape(&format!("{}, written {}", cx.hospital, cx.zone.date_time(cx.now_ms)))
    );
    for s in sheets {
        out.push_str(&format!("<li><a href=\"{0}.html\">{1}</a> (<a href=\"{0}.pdf\">PDF</a>)</li>", s.file, html_escape(&s.title)));
    }
    out.push_str("</ul></body></html>\n");
    out
}

/// Text the PDF's standard font can show: printable ASCII; anything else (Devanagari names,
/// which the HTML sheet shows as they are) becomes `?`.
fn pdf_text(s: &str) -> Vec<u8> {
    s.chars().map(|c| if (' '..='~').contains(&c) { c as u8 } else { b'?' }).collect()
}

/// The sheet as a PDF: A4 landscape, Helvetica, a grid per section, as many pages as needed.
pub fn pdf(s: &Sheet, cx: &Context<'_>) -> Vec<u8> {
    use pdf_writer::{Content, Name, Pdf, Rect, Ref, Str};
    const W: f32 = 842.0;
    const H: f32 = 595.0;
    const MARGIN: f32 = 36.0;
    const ROW: f32 = 16.0;
    const SIZE: f32 = 9.0;
    let font = Name(b"F1");
    let bold = Name(b"F2");
    let mut pages: Vec<Content> = Vec::new();
    let mut page = Content::new();
    let mut y = H - MARGIN;
    let text = |c: &mut Content, f: Name, size: f32, x: f32, y: f32, t: &str| {
        c.begin_text();
        c.set_font(f, size);
        c.next_line(x, y);
        c.show(Str(&pdf_text(t)));
        c.end_text();
    };
    let header = |c: &mut Content, y: &mut f32, page_no: usize| {
        text(c, font, 8.0, MARGIN, *y, &format!("{}   page {page_no}", header_text(cx)));
        *y -= 20.0;
        text(c, bold, 14.0, MARGIN, *y, &s.title);
        *y -= 22.0;
    };
    header(&mut page, &mut y, 1);
    for sec in &s.sections {
        let width = (W - 2.0 * MARGIN) / sec.columns.len().max(1) as f32;
        // Characters that fit a column (Helvetica at 9 pt is about 5 pt a character).
        let fits = ((width - 6.0) / 5.0).max(3.0) as usize;
        let clip = |v: &str| if v.chars().count() > fits { v.chars().take(fits.saturating_sub(1)).collect::<String>() + "." } else { v.to_string() };
        let rows: Vec<Vec<String>> = if sec.rows.is_empty() { vec![vec!["none".to_string()]] } else { sec.rows.clone() };
        let mut first = true;
        for r in std::iter::once(None).chain(rows.iter().map(Some)) {
            if y < MARGIN + ROW * 2.0 {
                pages.push(std::mem::replace(&mut page, Content::new()));
                y = H - MARGIN;
                header(&mut page, &mut y, pages.len() + 1);
                first = true;
            }
            if first {
                text(&mut page, bold, 11.0, MARGIN, y, &sec.heading);
                y -= ROW;
                first = false;
                if r.is_some() {
                    // a continued section repeats its column headings
                    for (i, c) in sec.columns.iter().enumerate() {
                        text(&mut page, bold, SIZE, MARGIN + 3.0 + i as f32 * width, y + 4.0, c);
                    }
                    page.rect(MARGIN, y, W - 2.0 * MARGIN, ROW).stroke();
                    y -= ROW;
                }
            }
            match r {
                None => {
                    for (i, c) in sec.columns.iter().enumerate() {
                        text(&mut page, bold, SIZE, MARGIN + 3.0 + i as f32 * width, y + 4.0, c);
                    }
                }
                Some(r) => {
                    for (i, v) in r.iter().enumerate() {
                        text(&mut page, font, SIZE, MARGIN + 3.0 + i as f32 * width, y + 4.0, &clip(v));
                    }
                }
            }
            page.set_line_width(0.5);
            page.rect(MARGIN, y, W - 2.0 * MARGIN, ROW).stroke();
            for i in 1..sec.columns.len() {
                let x = MARGIN + i as f32 * width;
                page.move_to(x, y).line_to(x, y + ROW).stroke();
            }
            y -= ROW;
        }
        y -= ROW;
    }
    pages.push(page);
    let mut pdf = Pdf::new();
    let (catalog, tree, f1, f2) = (Ref::new(1), Ref::new(2), Ref::new(3), Ref::new(4));
    let ids: Vec<(Ref, Ref)> = (0..pages.len()).map(|i| (Ref::new(5 + 2 * i as i32), Ref::new(6 + 2 * i as i32))).collect();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree).kids(ids.iter().map(|(p, _)| *p)).count(ids.len() as i32);
    pdf.type1_font(f1).base_font(Name(b"Helvetica"));
    pdf.type1_font(f2).base_font(Name(b"Helvetica-Bold"));
    for ((page_id, content_id), content) in ids.iter().zip(pages) {
        let mut p = pdf.page(*page_id);
        p.media_box(Rect::new(0.0, 0.0, W, H));
        p.parent(tree);
        p.contents(*content_id);
        p.resources().fonts().pair(font, f1).pair(bold, f2);
        drop(p);
        pdf.stream(*content_id, &content.finish());
    }
    pdf.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> Context<'static> {
        Context { hospital: "AIIMS <Test>", department: "cardiology", issuer: 7, zone: Zone::IST, now_ms: 1_795_000_000_000, downtime: true }
    }

    #[test]
    fn a_sheet_is_escaped_html_and_a_pdf_with_a_page_per_screenful() {
        let rows = (0..100).map(|i| vec![format!("{i:02}:00"), format!("<b>Patient {i}</b>"), "राम".to_string()]).collect();
        let s = Sheet { file: "opd", title: "OPD list".into(), note: String::new(), sections: vec![Section { heading: "Dr <Rao>".into(), columns: vec!["Time", "Patient", "Name"], rows }] };
        let h = html(&s, &cx());
        assert!(h.contains("Dr &lt;Rao&gt;") && h.contains("&lt;b&gt;Patient 7&lt;/b&gt;") && h.contains("राम") && h.contains("DOWNTIME"), "{h}");
        assert!(!h.contains("<b>Patient"));
        let p = pdf(&s, &cx());
        assert!(p.starts_with(b"%PDF-"));
        let text = String::from_utf8_lossy(&p);
        // 100 rows of 16 pt on landscape A4 (about 30 a page): four pages, each one listed.
        let count: usize = text.split("/Count ").nth(1).and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next()).and_then(|n| n.parse().ok()).unwrap();
        assert_eq!(count, 4, "{text}");
        assert_eq!(text.matches("/Type /Page\n").count() + text.matches("/Type /Page ").count() + text.matches("/Type /Page>").count(), 4);
        assert_eq!(pdf_text("Ravi राम"), b"Ravi ???".to_vec());
    }

    #[test]
    fn blank_forms_carry_the_node_and_the_day_in_their_numbers() {
        let s = forms(&cx(), LocalDate::new(2026, 11, 28).unwrap());
        let numbers: Vec<&String> = s.sections.iter().flat_map(|x| x.rows.iter().map(|r| &r[0])).collect();
        assert_eq!(numbers.len(), 2 * BLANK_FORMS);
        assert_eq!(numbers[0], "REG-07-20261128-001");
        assert_eq!(numbers[BLANK_FORMS], "LAB-07-20261128-001");
        assert_eq!(numbers.iter().collect::<std::collections::BTreeSet<_>>().len(), numbers.len());
    }
}
