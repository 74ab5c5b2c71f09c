//! `opd`: the OPD morning rush against a running server.
//!
//! Setup (idempotent: fixed ids, PUT): a hospital Organization; per department an Organization
//! and a HealthcareService; per doctor a Practitioner, a PractitionerRole and a Schedule whose
//! Slots come from `Schedule/{id}/$generate-slots` (every day from tomorrow, 09:00-13:00 IST).
//!
//! Load: C clients, each in a loop: register a new patient (`POST Patient` without UHID: the
//! server issues it), book (`POST Appointment`, status booked, one Slot; 409 when full: try
//! another slot), check in (`POST Appointment/{id}/$queue` state `waiting`: the patient arrives
//! and gets the department's token). A share of the clients ("hot") all want the earliest
//! place with the same doctors: they walk one shared order of slots (the first doctor's, then
//! the next doctor's...) from where they last found room, so that they keep contending for the
//! last places of the same slot for the whole run.
//!
//! Verification, independent of the server's own counting: for every Slot, page through
//! `Appointment?slot=Slot/{id}` and count the appointments whose status holds a place (booked,
//! arrived, checked-in, fulfilled) against the Slot's capacity extension. Any overbooked slot
//! fails the run.

use crate::gen_patients::{self, Rng};
use crate::http::{self, Base, Client};
use crate::load::LoadOpts;
use crate::steps::{Recorder, urlencode};
use hyper::body::Bytes;
use hyper::header::HeaderValue;
use hyper::{Method, StatusCode, Uri};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vaidya_domain::schedule::{IST_OFFSET_MINUTES, from_utc_ms};

pub const CAPACITY_URL: &str = "https://vaidya.dev/fhir/StructureDefinition/slot-capacity";
/// Appointment statuses that hold a place in a slot.
pub const HOLDING: [&str; 4] = ["booked", "arrived", "checked-in", "fulfilled"];

const DEPARTMENTS: [(&str, &str); 12] = [
    ("gen-med", "General Medicine"),
    ("paeds", "Paediatrics"),
    ("ortho", "Orthopaedics"),
    ("obgyn", "Obstetrics and Gynaecology"),
    ("ent", "ENT"),
    ("ophth", "Ophthalmology"),
    ("derma", "Dermatology"),
    ("cardio", "Cardiology"),
    ("psych", "Psychiatry"),
    ("dental", "Dental"),
    ("surgery", "General Surgery"),
    ("neuro", "Neurology"),
];

#[derive(clap::Args, Clone, Debug)]
pub struct OpdArgs {
    #[command(flatten)]
    pub opts: LoadOpts,
    #[command(flatten)]
    pub shape: OpdShape,
}

#[derive(clap::Args, Clone, Debug)]
pub struct OpdShape {
    /// Departments (at most 12).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=12))]
    pub departments: u32,
    /// Doctors (each with an OPD Schedule) per department.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub doctors: u32,
    /// Days of slots, from tomorrow.
    #[arg(long, default_value_t = 14, value_parser = clap::value_parser!(u32).range(1..=90))]
    pub days: u32,
    /// Patients per slot.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub capacity: u32,
    /// Minutes per slot (09:00-13:00).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(5..=60))]
    pub slot_minutes: u32,
    /// Percentage of clients that all want the earliest free slot (in one shared order of
    /// doctors and slots), and so keep contending for the same last places.
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub hot_percent: u32,
    /// Seed for patients and slot choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Debug, Clone)]
pub struct SlotInfo {
    pub id: String,
    pub start: String,
    pub end: String,
    pub capacity: u64,
}

#[derive(Debug, Clone)]
pub struct Doctor {
    pub dept: String,
    pub practitioner: String,
    pub slots: Vec<SlotInfo>,
}

pub struct Setup {
    pub doctors: Vec<Doctor>,
    /// (doctor, slot) in the order the popular-slot clients want them.
    pub hot: Vec<(usize, usize)>,
    pub slots: usize,
    pub places: u64,
    pub seconds: f64,
}

async fn call(client: &Client, auth: &HeaderValue, method: Method, url: &str, body: Option<&Value>) -> Result<(StatusCode, Bytes), String> {
    let uri: Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    http::send(client, method, uri, auth, body.map(|b| Bytes::from(b.to_string()))).await.map_err(|e| format!("{url}: {e}"))
}

async fn put(client: &Client, auth: &HeaderValue, base: &Base, resource: Value) -> Result<(), String> {
    let url = format!("{}/{}/{}", base.url, resource["resourceType"].as_str().unwrap_or(""), resource["id"].as_str().unwrap_or(""));
    let (status, body) = call(client, auth, Method::PUT, &url, Some(&resource)).await?;
    if !status.is_success() {
        return Err(format!("PUT {url}: {}", http::describe_failure(status, &body)));
    }
    Ok(())
}

fn json_of(body: &[u8], what: &str) -> Result<Value, String> {
    serde_json::from_slice(body).map_err(|e| format!("{what}: not JSON: {e}"))
}

/// All resources of a search, following `next` links.
pub async fn search_all(client: &Client, auth: &HeaderValue, base: &Base, first: &str) -> Result<Vec<Value>, String> {
    let mut out = vec![];
    let mut url = first.to_string();
    for _ in 0..10_000 {
        let (status, body) = call(client, auth, Method::GET, &url, None).await?;
        if status != StatusCode::OK {
            return Err(format!("GET {url}: {}", http::describe_failure(status, &body)));
        }
        let v = json_of(&body, &url)?;
        for e in v["entry"].as_array().into_iter().flatten() {
            if e["search"]["mode"].as_str().unwrap_or("match") == "match" {
                out.push(e["resource"].clone());
            }
        }
        let next = v["link"].as_array().into_iter().flatten().find(|l| l["relation"] == "next").and_then(|l| l["url"].as_str());
        match next {
            Some(n) => url = base.same_origin(n)?,
            None => return Ok(out),
        }
    }
    Err(format!("{first}: more than 10,000 pages"))
}

fn capacity_of(slot: &Value) -> u64 {
    slot["extension"].as_array().and_then(|l| l.iter().find(|e| e["url"] == CAPACITY_URL)).and_then(|e| e["valueUnsignedInt"].as_u64()).unwrap_or(1)
}

/// Tomorrow in India (slots must not be in the past).
fn tomorrow_ist() -> Result<String, String> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?.as_millis() as i64;
    let (today, _) = from_utc_ms(now, IST_OFFSET_MINUTES).map_err(|e| e.to_string())?;
    Ok(today.add_days(1).map_err(|e| e.to_string())?.to_string())
}

pub async fn setup(client: &Client, auth: &HeaderValue, base: &Base, shape: &OpdShape) -> Result<Setup, String> {
    let started = Instant::now();
    put(client, auth, base, json!({"resourceType": "Organization", "id": "hospital", "active": true, "name": "Vaidya Bench Hospital, New Delhi"})).await?;
    // A tariff, as in a real hospital: every registration and booking then also makes its charge
    // (a ChargeItem) in the same transaction.
    for (code, rupees) in [("opd-registration", 10), ("opd-consultation", 100)] {
        put(client, auth, base, json!({"resourceType": "ChargeItemDefinition", "id": format!("tariff-{code}"), "status": "active",
            "url": format!("https://vaidya.dev/bench/tariff/{code}"), "code": {"text": code},
            "useContext": [{"code": {"system": "http://terminology.hl7.org/CodeSystem/usage-context-type", "code": "focus"},
                "valueCodeableConcept": {"coding": [{"system": "https://vaidya.dev/fhir/CodeSystem/billable-event", "code": code}]}}],
            "propertyGroup": [{"priceComponent": [{"type": "base", "amount": {"value": rupees, "currency": "INR"}}]}]}))
        .await?;
    }
    let from = tomorrow_ist()?;
    let mut doctors = vec![];
    let mut names = Rng::new(shape.seed, 0, 0xd0c);
    for (dept, dept_name) in DEPARTMENTS.iter().take(shape.departments as usize) {
        put(client, auth, base, json!({"resourceType": "Organization", "id": format!("dept-{dept}"), "active": true, "name": dept_name,
            "partOf": {"reference": "Organization/hospital"}}))
        .await?;
        put(client, auth, base, json!({"resourceType": "HealthcareService", "id": dept, "active": true, "name": format!("{dept_name} OPD"),
            "providedBy": {"reference": format!("Organization/dept-{dept}")}}))
        .await?;
        for d in 0..shape.doctors {
            let dr = format!("dr-{dept}-{d}");
            let p = gen_patients::person(shape.seed ^ 0xd0c7, names.below(1 << 40));
            put(client, auth, base, json!({"resourceType": "Practitioner", "id": dr, "active": true,
                "name": [{"prefix": ["Dr."], "family": p.family.latin, "given": [p.given[0].latin]},
                         {"prefix": ["डॉ."], "family": p.family.devanagari, "given": [p.given[0].devanagari]}]}))
            .await?;
            put(client, auth, base, json!({"resourceType": "PractitionerRole", "id": format!("role-{dept}-{d}"), "active": true,
                "practitioner": {"reference": format!("Practitioner/{dr}")}, "organization": {"reference": format!("Organization/dept-{dept}")},
                "healthcareService": [{"reference": format!("HealthcareService/{dept}")}]}))
            .await?;
            let schedule = format!("opd-{dept}-{d}");
            put(client, auth, base, json!({"resourceType": "Schedule", "id": schedule, "active": true,
                "actor": [{"reference": format!("Practitioner/{dr}")}, {"reference": format!("HealthcareService/{dept}")}],
                "comment": format!("{dept_name} OPD, 09:00-13:00")}))
            .await?;
            let mut params: Vec<Value> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"].iter().map(|d| json!({"name": "day", "valueCode": d})).collect();
            params.extend([
                json!({"name": "start", "valueTime": "09:00:00"}),
                json!({"name": "end", "valueTime": "13:00:00"}),
                json!({"name": "slotMinutes", "valuePositiveInt": shape.slot_minutes}),
                json!({"name": "capacity", "valuePositiveInt": shape.capacity}),
                json!({"name": "from", "valueDate": from}),
                json!({"name": "days", "valuePositiveInt": shape.days}),
            ]);
            let url = format!("{}/Schedule/{schedule}/$generate-slots", base.url);
            let (status, body) = call(client, auth, Method::POST, &url, Some(&json!({"resourceType": "Parameters", "parameter": params}))).await?;
            if status != StatusCode::OK {
                return Err(format!("POST {url}: {}", http::describe_failure(status, &body)));
            }
            let found = search_all(client, auth, base, &format!("{}/Slot?schedule=Schedule/{schedule}&_count=1000", base.url)).await?;
            let mut slots: Vec<SlotInfo> = found
                .iter()
                .filter(|s| s["status"] == "free" || s["status"] == "busy")
                .map(|s| SlotInfo {
                    id: s["id"].as_str().unwrap_or_default().to_string(),
                    start: s["start"].as_str().unwrap_or_default().to_string(),
                    end: s["end"].as_str().unwrap_or_default().to_string(),
                    capacity: capacity_of(s),
                })
                .filter(|s| s.start.as_str() >= from.as_str())
                .collect();
            slots.sort_by(|a, b| a.start.cmp(&b.start).then_with(|| a.id.cmp(&b.id)));
            if slots.is_empty() {
                return Err(format!("Schedule/{schedule} has no bookable slots after $generate-slots"));
            }
            doctors.push(Doctor { dept: dept.to_string(), practitioner: dr, slots });
        }
    }
    // The popular order: every slot of the first doctor by time, then the next doctor's...
    let hot = doctors.iter().enumerate().flat_map(|(d, doc)| (0..doc.slots.len()).map(move |s| (d, s))).collect();
    let slots = doctors.iter().map(|d| d.slots.len()).sum();
    let places = doctors.iter().flat_map(|d| &d.slots).map(|s| s.capacity).sum();
    Ok(Setup { doctors, hot, slots, places, seconds: started.elapsed().as_secs_f64() })
}

pub fn appointment(doctor: &Doctor, slot: &SlotInfo, patient: &str) -> Value {
    json!({"resourceType": "Appointment", "status": "booked",
        "serviceType": [{"text": doctor.dept}],
        "start": slot.start, "end": slot.end, "slot": [{"reference": format!("Slot/{}", slot.id)}],
        "participant": [
            {"actor": {"reference": format!("Patient/{patient}")}, "status": "accepted"},
            {"actor": {"reference": format!("Practitioner/{}", doctor.practitioner)}, "status": "accepted"},
            {"actor": {"reference": format!("HealthcareService/{}", doctor.dept)}, "status": "accepted"}]})
}

const CHECK_IN: &str = r#"{"resourceType":"Parameters","parameter":[{"name":"state","valueCode":"waiting"}]}"#;
/// Booking attempts per patient before giving up (all tried slots full).
const MAX_ATTEMPTS: u32 = 40;

pub struct OpdReport {
    pub rec: Recorder,
    pub seconds: f64,
    pub clients: u32,
    pub hot_clients: u32,
}

impl OpdReport {
    pub fn bookings(&self) -> u64 {
        self.rec.steps.get("book").map_or(0, |s| s.ok)
    }

    pub fn rate(&self) -> f64 {
        self.bookings() as f64 / self.seconds.max(1e-9)
    }
}

pub async fn rush(opts: &LoadOpts, shape: &OpdShape, setup: &Setup) -> Result<OpdReport, String> {
    let base = Base::parse(&opts.base)?;
    let auth = http::bearer(&opts.token)?;
    let client = http::client(opts.clients as usize);
    let doctors = Arc::new(setup.doctors.clone());
    let hot = Arc::new(setup.hot.clone());
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(opts.seconds);
    let timeout = Duration::from_secs(opts.timeout.max(1));
    let hot_clients = (opts.clients as u64 * shape.hot_percent as u64).div_ceil(100) as u32;
    let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mut tasks = vec![];
    for c in 0..opts.clients {
        let (client, auth, doctors, hot) = (client.clone(), auth.clone(), doctors.clone(), hot.clone());
        let urls = (format!("{}/Patient", base.url), format!("{}/Appointment", base.url), base.url.clone());
        let seed = shape.seed;
        let max = opts.max_requests.map(|m| m.div_ceil(opts.clients as u64));
        let is_hot = c < hot_clients && !hot.is_empty();
        tasks.push(tokio::spawn(async move {
            let mut rec = Recorder::default();
            let mut rng = Rng::new(seed ^ run, c as u64, 0x0bd);
            let mut seq = 0u64;
            // Where in the popular order this client last found room.
            let mut frontier = 0usize;
            let send = |method: Method, url: String, body: Option<Bytes>| {
                let (client, auth) = (client.clone(), auth.clone());
                async move {
                    let uri: Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
                    match tokio::time::timeout(timeout, http::send(&client, method, uri, &auth, body)).await {
                        Ok(r) => r,
                        Err(_) => Err(format!("no response within {}s", timeout.as_secs())),
                    }
                }
            };
            'patients: while Instant::now() < deadline && max.is_none_or(|m| seq < m) {
                seq += 1;
                // 1. Registration: a new patient; the server issues the UHID.
                let person = gen_patients::person(seed ^ run, ((c as u64) << 32) | seq);
                let t0 = Instant::now();
                let patient = match send(Method::POST, urls.0.clone(), Some(Bytes::from(person.to_fhir(false).to_string()))).await {
                    Ok((StatusCode::CREATED, body)) => match serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["id"].as_str().map(str::to_string)) {
                        Some(id) => {
                            rec.ok("register", t0);
                            id
                        }
                        None => {
                            rec.fail("register", "201 without the Patient's id in the body".into());
                            continue;
                        }
                    },
                    Ok((status, body)) => {
                        rec.fail("register", http::describe_failure(status, &body));
                        continue;
                    }
                    Err(e) => {
                        rec.fail("register", e);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                // 2. Booking: hot clients the earliest slot in the popular order that they have
                //    not seen full; others a random doctor's slot from a random point on. A full
                //    slot (409) sends the patient to the next one.
                let mut d = rng.below(doctors.len() as u64) as usize;
                let mut s = rng.below(doctors[d].slots.len() as u64) as usize;
                let mut appointment_id = None;
                let mut walking = is_hot && frontier < hot.len();
                for attempt in 0..MAX_ATTEMPTS {
                    if walking {
                        if frontier < hot.len() {
                            (d, s) = hot[frontier];
                        } else {
                            walking = false;
                        }
                    } else if attempt > 0 && attempt % 8 == 0 {
                        d = rng.below(doctors.len() as u64) as usize;
                        s = rng.below(doctors[d].slots.len() as u64) as usize;
                    }
                    let doctor = &doctors[d];
                    let body = appointment(doctor, &doctor.slots[s], &patient).to_string();
                    let t0 = Instant::now();
                    match send(Method::POST, urls.1.clone(), Some(Bytes::from(body))).await {
                        Ok((StatusCode::CREATED, body)) => {
                            match serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["id"].as_str().map(str::to_string)) {
                                Some(id) => {
                                    rec.ok("book", t0);
                                    appointment_id = Some(id);
                                }
                                None => rec.fail("book", "201 without the Appointment's id in the body".into()),
                            }
                            break;
                        }
                        Ok((StatusCode::CONFLICT, _)) => {
                            // The slot is full: an expected answer in a rush, timed on its own.
                            rec.ok("book: 409 slot full", t0);
                            if walking {
                                rec.count("409 to popular-slot clients", 1);
                                frontier += 1;
                            } else {
                                rec.count("409 to other clients", 1);
                                s = (s + 1) % doctor.slots.len();
                            }
                        }
                        Ok((status, body)) => {
                            rec.fail("book", http::describe_failure(status, &body));
                            continue 'patients;
                        }
                        Err(e) => {
                            rec.fail("book", e);
                            continue 'patients;
                        }
                    }
                }
                let Some(appt) = appointment_id else {
                    rec.count("patients who found no free slot", 1);
                    continue;
                };
                // 3. Check-in at the department: the patient arrives and gets a token.
                let t0 = Instant::now();
                let url = format!("{}/Appointment/{appt}/$queue", urls.2);
                match send(Method::POST, url, Some(Bytes::from_static(CHECK_IN.as_bytes()))).await {
                    Ok((StatusCode::OK, _)) => rec.ok("check-in", t0),
                    Ok((status, body)) => rec.fail("check-in", http::describe_failure(status, &body)),
                    Err(e) => rec.fail("check-in", e),
                }
            }
            rec
        }));
    }
    let mut rec = Recorder::default();
    for t in tasks {
        match t.await {
            Ok(r) => rec.merge(r),
            Err(e) => rec.fail("client", format!("client task failed: {e}")),
        }
    }
    rec.finish();
    Ok(OpdReport { rec, seconds: started.elapsed().as_secs_f64(), clients: opts.clients, hot_clients })
}

/// The independent count: slots checked, overbooked slots (with examples), places held in all,
/// full slots whose status is not `busy`, and how long it took.
pub struct Verification {
    pub slots: usize,
    pub overbooked: Vec<String>,
    pub held: u64,
    pub appointments_seen: u64,
    pub status_mismatches: usize,
    /// ChargeItems the server made (one per registration and one per booking, from the tariff).
    pub charges: u64,
    pub seconds: f64,
}

pub async fn verify(opts: &LoadOpts, concurrency: usize) -> Result<Verification, String> {
    let started = Instant::now();
    let base = Base::parse(&opts.base)?;
    let auth = http::bearer(&opts.token)?;
    let client = http::client(concurrency);
    let slots = search_all(&client, &auth, &base, &format!("{}/Slot?_count=1000", base.url)).await?;
    let slots = Arc::new(slots);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = vec![];
    for _ in 0..concurrency.max(1) {
        let (client, auth, base, slots, next) = (client.clone(), auth.clone(), base.clone(), slots.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let (mut over, mut held, mut seen, mut mismatched) = (vec![], 0u64, 0u64, 0usize);
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(slot) = slots.get(i) else { break };
                let id = slot["id"].as_str().unwrap_or_default();
                let url = format!("{}/Appointment?slot={}&_count=1000", base.url, urlencode(&format!("Slot/{id}")));
                let appts = search_all(&client, &auth, &base, &url).await?;
                seen += appts.len() as u64;
                let v = judge_slot(slot, &appts);
                held += v.holding;
                if v.holding > v.capacity {
                    over.push(format!("Slot/{id}: {} appointments hold a place, capacity {}", v.holding, v.capacity));
                }
                mismatched += usize::from(v.status_disagrees);
            }
            Ok::<_, String>((over, held, seen, mismatched))
        }));
    }
    let mut v = Verification { slots: slots.len(), overbooked: vec![], held: 0, appointments_seen: 0, status_mismatches: 0, charges: 0, seconds: 0.0 };
    let url = format!("{}/ChargeItem?_summary=count", base.url);
    let (status, body) = call(&client, &auth, Method::GET, &url, None).await?;
    if status != StatusCode::OK {
        return Err(format!("GET {url}: {}", http::describe_failure(status, &body)));
    }
    v.charges = json_of(&body, &url)?["total"].as_u64().unwrap_or(0);
    for t in tasks {
        let (over, held, seen, mismatched) = t.await.map_err(|e| e.to_string())??;
        v.overbooked.extend(over);
        v.held += held;
        v.appointments_seen += seen;
        v.status_mismatches += mismatched;
    }
    v.seconds = started.elapsed().as_secs_f64();
    Ok(v)
}

/// One slot as the verification sees it.
#[derive(Debug, PartialEq)]
pub struct SlotVerdict {
    pub holding: u64,
    pub capacity: u64,
    /// `busy` while not full, or `free` while full.
    pub status_disagrees: bool,
}

/// Count the appointments (all those naming the slot) that hold a place in it.
pub fn judge_slot(slot: &Value, appointments: &[Value]) -> SlotVerdict {
    let holding = appointments.iter().filter(|a| a["status"].as_str().is_some_and(|s| HOLDING.contains(&s))).count() as u64;
    let capacity = capacity_of(slot);
    let status = slot["status"].as_str().unwrap_or_default();
    let status_disagrees = (status == "busy" || status == "free") && (status == "busy") != (holding >= capacity);
    SlotVerdict { holding, capacity, status_disagrees }
}

/// The Markdown summary of one OPD run (setup, load, verification).
pub fn markdown(setup: &Setup, shape: &OpdShape, r: &OpdReport, v: &Verification) -> String {
    let mut s = format!(
        "Setup: {} departments x {} doctors, {} days of 09:00-13:00 slots of {} min with {} places each: {} slots, {} places ({:.1} s).\n\
         Load: {} clients for {:.1} s ({} of them want the earliest free slot in one shared order of {} slots).\n\n",
        shape.departments,
        shape.doctors,
        shape.days,
        shape.slot_minutes,
        shape.capacity,
        setup.slots,
        setup.places,
        setup.seconds,
        r.clients,
        r.seconds,
        r.hot_clients,
        setup.hot.len()
    );
    s.push_str(&r.rec.markdown(r.seconds, &["register", "book", "book: 409 slot full", "check-in"]));
    s.push_str(&format!("\n**Bookings: {} in {:.1} s = {:.1} bookings/s.**", r.bookings(), r.seconds, r.rate()));
    if let Some(b) = r.rec.steps.get("book") {
        s.push_str(&format!(" Booking p99 {:.1} ms.", b.percentile_ms(99.0).unwrap_or(f64::NAN)));
    }
    s.push('\n');
    let counters: Vec<String> = r.rec.counters.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    if !counters.is_empty() {
        s.push_str(&format!("Counts: {}.\n", counters.join("; ")));
    }
    s.push_str(&format!(
        "\nVerification ({:.1} s): {} slots checked one by one with `Appointment?slot=Slot/id`; {} appointments seen, {} hold a place; \
         **overbooked slots: {}**; full/free slots whose status disagrees: {}. \
         Charges made from the tariff: {} (registrations + bookings: {}).\n",
        v.seconds,
        v.slots,
        v.appointments_seen,
        v.held,
        v.overbooked.len(),
        v.status_mismatches,
        v.charges,
        r.rec.steps.get("register").map_or(0, |s| s.ok) + r.bookings()
    ));
    for o in v.overbooked.iter().take(10) {
        s.push_str(&format!("- OVERBOOKED: {o}\n"));
    }
    for l in r.rec.failure_lines().iter().take(10) {
        s.push_str(&format!("- {l}\n"));
    }
    s
}

pub fn run_command(args: &OpdArgs) -> Result<bool, String> {
    let rt = crate::load::runtime(args.opts.threads)?;
    rt.block_on(async {
        let base = Base::parse(&args.opts.base)?;
        let auth = http::bearer(&args.opts.token)?;
        let client = http::client(4);
        eprintln!("[opd] setting up departments, doctors, schedules and slots");
        let setup = setup(&client, &auth, &base, &args.shape).await?;
        eprintln!("[opd] rush: {} clients for {} s", args.opts.clients, args.opts.seconds);
        let r = rush(&args.opts, &args.shape, &setup).await?;
        eprintln!("[opd] verifying every slot");
        let v = verify(&args.opts, 8).await?;
        print!("{}", markdown(&setup, &args.shape, &r, &v));
        Ok(v.overbooked.is_empty() && r.rec.failed() == 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appointment_names_slot_patient_and_department() {
        let d = Doctor { dept: "ortho".into(), practitioner: "dr-ortho-0".into(), slots: vec![] };
        let s = SlotInfo { id: "opd-ortho-0-2099-01-05-0900".into(), start: "2099-01-05T03:30:00.000Z".into(), end: "x".into(), capacity: 4 };
        let a = appointment(&d, &s, "p1");
        assert_eq!(a["status"], "booked");
        assert_eq!(a["slot"][0]["reference"], "Slot/opd-ortho-0-2099-01-05-0900");
        assert_eq!(a["participant"][0]["actor"]["reference"], "Patient/p1");
        assert_eq!(a["participant"][2]["actor"]["reference"], "HealthcareService/ortho");
        assert_eq!(capacity_of(&json!({"extension": [{"url": CAPACITY_URL, "valueUnsignedInt": 4}]})), 4);
        assert_eq!(capacity_of(&json!({})), 1);
    }

    #[test]
    fn the_verification_sees_an_overbooked_slot() {
        let slot = |status: &str| json!({"status": status, "extension": [{"url": CAPACITY_URL, "valueUnsignedInt": 2}]});
        let appt = |status: &str| json!({"resourceType": "Appointment", "status": status});
        let some = [appt("booked"), appt("cancelled"), appt("arrived"), appt("noshow"), appt("fulfilled")];
        assert_eq!(judge_slot(&slot("busy"), &some), SlotVerdict { holding: 3, capacity: 2, status_disagrees: false });
        assert_eq!(judge_slot(&slot("free"), &some[..2]), SlotVerdict { holding: 1, capacity: 2, status_disagrees: false });
        assert!(judge_slot(&slot("busy"), &some[..2]).status_disagrees);
        assert!(judge_slot(&slot("free"), &some[..3]).status_disagrees);
        assert!(!judge_slot(&slot("busy-unavailable"), &[]).status_disagrees);
    }
}
