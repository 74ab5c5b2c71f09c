//! A believable demo hospital, loaded by `vaidya serve --demo` into an empty data directory so
//! that a newcomer sees a working hospital at once: departments, doctors with weekly OPD
//! schedules and their slots for the coming week, a tariff and test catalogue, staff accounts,
//! patients (names in English and Devanagari), appointments with their charges, a released lab
//! report (printable at `/print/DiagnosticReport/report-1`), and bills (one paid, one waiting at the counter).
//!
//! Everything goes in as one FHIR transaction Bundle through the same validation and ledger
//! as any client's data.

use serde_json::{Value, json};
use vaidya_domain::schedule::{IST_OFFSET_MINUTES, LocalDate, LocalTime, Weekday, WeeklySchedule, from_utc_ms, to_utc_ms};
use vaidya_domain::Uhid;

/// Days of OPD slots the demo creates, from today (hospital time).
const DEMO_DAYS: u32 = 7;

/// The demo hospital's departments: (id, name, Hindi name, SNOMED CT specialty code).
const DEPARTMENTS: [(&str, &str, &str, &str); 7] = [
    ("gen-med", "General Medicine", "सामान्य चिकित्सा", "419192003"),
    ("paeds", "Paediatrics", "बाल रोग", "394537008"),
    ("ortho", "Orthopaedics", "अस्थि रोग", "394801008"),
    ("cardio", "Cardiology", "हृदय रोग", "394579002"),
    ("ent", "ENT", "नाक, कान, गला", "418960008"),
    ("lab", "Laboratory", "प्रयोगशाला", "708196005"),
    ("radio", "Radiology", "रेडियोलॉजी", "394914008"),
];

/// A demo doctor: (id, given, family, Hindi name, department id, OPD weekdays (0 = Monday)).
type Doctor = (&'static str, &'static str, &'static str, &'static str, &'static str, &'static [u8]);

const DOCTORS: [Doctor; 8] = [
    ("dr-sharma", "Anjali", "Sharma", "डॉ. अंजलि शर्मा", "gen-med", &[0, 3]),
    ("dr-khan", "Imran", "Khan", "डॉ. इमरान ख़ान", "gen-med", &[1, 4]),
    ("dr-iyer", "Lakshmi", "Iyer", "डॉ. लक्ष्मी अय्यर", "paeds", &[0, 2, 4]),
    ("dr-singh", "Harpreet", "Singh", "डॉ. हरप्रीत सिंह", "ortho", &[1, 3]),
    ("dr-menon", "Ravi", "Menon", "डॉ. रवि मेनन", "cardio", &[2, 5]),
    ("dr-das", "Sunita", "Das", "डॉ. सुनीता दास", "ent", &[0, 3]),
    ("dr-verma", "Alok", "Verma", "डॉ. आलोक वर्मा", "lab", &[]),
    ("dr-bose", "Meera", "Bose", "डॉ. मीरा बोस", "radio", &[]),
];

/// Tariff of services that are not tests: (code, display, price in paise, billable event).
/// AIIMS New Delhi charges ₹10 for OPD registration; consultations are free.
const SERVICE_TARIFF: [(&str, &str, i64, &str); 2] = [
    ("opd-registration", "OPD registration", 1_000, crate::fhir::charges::EVENT_REGISTRATION),
    ("opd-consultation", "OPD consultation", 0, crate::fhir::charges::EVENT_CONSULTATION),
];

/// The test catalogue: (code, LOINC code, display, department, specimen, price in paise).
/// Each test is an ActivityDefinition (what can be ordered) and a ChargeItemDefinition (its
/// price, found by the LOINC code when it is ordered).
const TESTS: [(&str, &str, &str, &str, &str, i64); 9] = [
    ("cbc", "58410-2", "CBC panel - Blood by Automated count", "lab", "Whole blood (EDTA)", 15_000),
    ("hb", "718-7", "Hemoglobin [Mass/volume] in Blood", "lab", "Whole blood (EDTA)", 5_000),
    ("fbs", "1558-6", "Fasting glucose [Mass/volume] in Serum or Plasma", "lab", "Plasma (fluoride)", 4_000),
    ("hba1c", "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "lab", "Whole blood (EDTA)", 30_000),
    ("lipid", "57698-3", "Lipid panel with direct LDL - Serum or Plasma", "lab", "Serum", 20_000),
    ("lft", "24325-3", "Hepatic function panel - Serum or Plasma", "lab", "Serum", 25_000),
    ("kft", "24362-6", "Renal function panel - Serum or Plasma", "lab", "Serum", 25_000),
    ("ecg", "11524-6", "EKG study", "cardio", "", 5_000),
    ("xray-chest", "36643-5", "XR Chest 2 Views", "radio", "", 10_000),
];

/// Staff accounts the demo creates: (name, role, department).
pub const STAFF: [(&str, &str, Option<&str>); 6] = [
    ("reg.asha", "registration", None),
    ("dr.sharma", "doctor", Some("gen-med")),
    ("lab.verma", "lab", Some("lab")),
    ("lab.bose", "lab", Some("lab")),
    ("cash.ravi", "billing", None),
    ("nurse.mary", "nurse", Some("gen-med")),
];

/// Patients: (id, given, family, Hindi name, gender, birth date, mobile).
const PATIENTS: [(&str, &str, &str, &str, &str, &str, &str); 8] = [
    ("pt-1", "Ramesh", "Kumar", "रमेश कुमार", "male", "1968-03-14", "+919810000001"),
    ("pt-2", "Sita", "Devi", "सीता देवी", "female", "1975-08-02", "+919810000002"),
    ("pt-3", "Mohammed", "Rafi", "मोहम्मद रफ़ी", "male", "1990-11-20", "+919810000003"),
    ("pt-4", "Priya", "Nair", "प्रिया नायर", "female", "2016-06-30", "+919810000004"),
    ("pt-5", "Gurpreet", "Kaur", "गुरप्रीत कौर", "female", "1983-01-09", "+919810000005"),
    ("pt-6", "Arjun", "Reddy", "अर्जुन रेड्डी", "male", "2001-12-25", "+919810000006"),
    ("pt-7", "Kamla", "Bai", "कमला बाई", "female", "1952-04-18", "+919810000007"),
    ("pt-8", "Vikram", "Joshi", "विक्रम जोशी", "male", "1979-09-05", "+919810000008"),
];

fn entry(resource: Value) -> Value {
    let rtype = resource["resourceType"].as_str().expect("demo resources have a type").to_string();
    let id = resource["id"].as_str().expect("demo resources have an id").to_string();
    json!({"fullUrl": format!("{rtype}/{id}"), "resource": resource, "request": {"method": "PUT", "url": format!("{rtype}/{id}")}})
}

/// Rupees with two decimals, as FHIR's Money.value is a decimal (paise stay integers inside).
fn rupees(paise: i64) -> Value {
    let text = format!("{}.{:02}", paise / 100, paise % 100);
    serde_json::from_str(&text).expect("a decimal literal")
}

/// One OPD slot to create: (id, schedule id, start, end) as RFC 3339 instants.
pub struct DemoSlot {
    pub id: String,
    pub schedule: String,
    pub start: String,
    pub end: String,
    pub capacity: u16,
}

/// The demo hospital for a start at `now_ms`: slots from today (IST) for a week.
pub fn hospital(now_ms: i64) -> Value {
    let (today, _) = from_utc_ms(now_ms, IST_OFFSET_MINUTES).expect("the clock is within the calendar");
    let slots = opd_slots(today, now_ms);
    let uhids: Vec<String> = (1..=PATIENTS.len() as u64)
        .map(|serial| Uhid::new(vaidya_domain::uhid::CENTRAL_ISSUER, serial).expect("small serials are valid").to_string())
        .collect();
    bundle(&slots, &uhids)
}

/// Each doctor's weekly OPD (09:00-13:00, 10-minute slots, two patients a slot), as slots
/// from `today` for [`DEMO_DAYS`] days, leaving out those already begun at `now_ms`.
fn opd_slots(today: LocalDate, now_ms: i64) -> Vec<DemoSlot> {
    let at = |h, m| LocalTime::new(h, m).expect("valid demo time");
    let mut out = vec![];
    for (doctor, _, _, _, _, days) in DOCTORS {
        if days.is_empty() {
            continue;
        }
        let weekdays: Vec<Weekday> = days.iter().map(|&d| Weekday::ALL[d as usize]).collect();
        let schedule = WeeklySchedule::new(&weekdays, at(9, 0), at(13, 0), 10, 2).expect("the demo schedule is valid");
        for spec in schedule.slots(today, DEMO_DAYS) {
            let start_ms = spec.start_utc_ms(IST_OFFSET_MINUTES);
            if start_ms <= now_ms {
                continue;
            }
            let end_ms = to_utc_ms(spec.date, spec.end, IST_OFFSET_MINUTES);
            out.push(DemoSlot {
                id: format!("{doctor}-{}-{:02}{:02}", spec.date, spec.start.hour(), spec.start.minute()),
                schedule: format!("{doctor}-opd"),
                start: vaidya_fhir::datetime::format_instant(start_ms),
                end: vaidya_fhir::datetime::format_instant(end_ms),
                capacity: spec.capacity,
            });
        }
    }
    out
}

/// The doctor whose OPD a demo slot belongs to (its schedule is `<doctor>-opd`).
fn doctor_of(slot: &DemoSlot) -> &str {
    slot.schedule.strip_suffix("-opd").unwrap_or(&slot.schedule)
}

/// The department of a demo slot's doctor.
fn department_of(slot: &DemoSlot) -> &'static str {
    DOCTORS.iter().find(|d| d.0 == doctor_of(slot)).map(|d| d.4).unwrap_or("gen-med")
}

/// The demo hospital as a transaction Bundle. `slots` are the generated OPD slots; `uhids`
/// the patients' UHIDs, one per patient in order.
pub fn bundle(slots: &[DemoSlot], uhids: &[String]) -> Value {
    let mut entries = vec![entry(json!({
        "resourceType": "Organization", "id": "hospital", "active": true,
        "name": "Vaidya Demo Hospital, New Delhi", "alias": ["वैद्य डेमो अस्पताल"],
        "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "prov"}]}],
        "telecom": [{"system": "phone", "value": "+91-11-26588500"}],
        "address": [{"line": ["Ansari Nagar"], "city": "New Delhi", "state": "Delhi", "postalCode": "110029", "country": "IN"}]
    }))];
    for (id, name, hindi, snomed) in DEPARTMENTS {
        entries.push(entry(json!({
            "resourceType": "HealthcareService", "id": id, "active": true,
            "providedBy": {"reference": "Organization/hospital"}, "name": name, "comment": hindi,
            "specialty": [{"coding": [{"system": "http://snomed.info/sct", "code": snomed, "display": name}]}]
        })));
    }
    for (id, given, family, hindi, dept, days) in DOCTORS {
        entries.push(entry(json!({
            "resourceType": "Practitioner", "id": id, "active": true,
            "name": [{"use": "official", "family": family, "given": [given], "prefix": ["Dr."]}, {"use": "usual", "text": hindi}]
        })));
        entries.push(entry(json!({
            "resourceType": "PractitionerRole", "id": format!("{id}-role"), "active": true,
            "practitioner": {"reference": format!("Practitioner/{id}")},
            "organization": {"reference": "Organization/hospital"},
            "healthcareService": [{"reference": format!("HealthcareService/{dept}")}]
        })));
        if !days.is_empty() {
            entries.push(entry(json!({
                "resourceType": "Schedule", "id": format!("{id}-opd"), "active": true,
                "actor": [{"reference": format!("Practitioner/{id}")}, {"reference": format!("HealthcareService/{dept}")}],
                "comment": "OPD 09:00-13:00, 10-minute slots"
            })));
        }
    }
    for s in slots {
        entries.push(entry(json!({
            "resourceType": "Slot", "id": s.id, "schedule": {"reference": format!("Schedule/{}", s.schedule)},
            "status": "free", "start": s.start, "end": s.end,
            "extension": [{"url": crate::fhir::booking::SLOT_CAPACITY_URL, "valueUnsignedInt": s.capacity}]
        })));
    }
    // Tariff entries go in before patients and orders, which are charged by them.
    let tariff = "https://vaidya.dev/demo/tariff";
    let focus = |system: &str, code: &str, display: &str| {
        json!([{"code": {"system": "http://terminology.hl7.org/CodeSystem/usage-context-type", "code": "focus"},
                "valueCodeableConcept": {"coding": [{"system": system, "code": code, "display": display}]}}])
    };
    let price = |paise: i64| json!([{"priceComponent": [{"type": "base", "amount": {"value": rupees(paise), "currency": "INR"}}]}]);
    for (code, display, paise, event) in SERVICE_TARIFF {
        entries.push(entry(json!({
            "resourceType": "ChargeItemDefinition", "id": format!("tariff-{code}"), "status": "active",
            "url": format!("{tariff}/{code}"), "title": display,
            "code": {"coding": [{"system": tariff, "code": code, "display": display}], "text": display},
            "useContext": focus(crate::fhir::charges::EVENT_SYSTEM, event, display),
            "propertyGroup": price(paise)
        })));
    }
    for (code, loinc, display, dept, specimen, paise) in TESTS {
        let mut activity = json!({
            "resourceType": "ActivityDefinition", "id": format!("test-{code}"), "status": "active",
            "url": format!("https://vaidya.dev/demo/catalogue/{code}"), "name": code.replace('-', "_").to_uppercase(), "title": display,
            "kind": "ServiceRequest",
            "code": {"coding": [{"system": "http://loinc.org", "code": loinc, "display": display}], "text": display},
            "topic": [{"text": if dept == "radio" { "Radiology" } else if dept == "lab" { "Laboratory" } else { "Cardiology" }}]
        });
        if !specimen.is_empty() {
            activity["description"] = json!(format!("Specimen: {specimen}"));
        }
        entries.push(entry(activity));
        entries.push(entry(json!({
            "resourceType": "ChargeItemDefinition", "id": format!("tariff-{code}"), "status": "active",
            "url": format!("{tariff}/{code}"), "title": display,
            "code": {"coding": [{"system": tariff, "code": code, "display": display}], "text": display},
            "useContext": focus("http://loinc.org", loinc, display),
            "propertyGroup": price(paise)
        })));
    }
    for (i, (id, given, family, hindi, gender, birth, mobile)) in PATIENTS.iter().enumerate() {
        let mut identifiers = vec![];
        if let Some(uhid) = uhids.get(i) {
            identifiers.push(json!({"system": crate::fhir::UHID_SYSTEM, "value": uhid}));
        }
        entries.push(entry(json!({
            "resourceType": "Patient", "id": id, "active": true, "identifier": identifiers,
            "name": [{"use": "official", "family": family, "given": [given]}, {"use": "usual", "text": hindi}],
            "gender": gender, "birthDate": birth, "telecom": [{"system": "phone", "value": mobile, "use": "mobile"}],
            "address": [{"city": "New Delhi", "state": "Delhi", "country": "IN"}],
            "managingOrganization": {"reference": "Organization/hospital"}
        })));
    }
    // A few bookings in the first slots, and one released haemoglobin result, ordered, collected
    // and verified as the laboratory flow does it.
    for (n, s) in slots.iter().take(3).enumerate() {
        entries.push(entry(json!({
            "resourceType": "Appointment", "id": format!("appt-{}", n + 1), "status": "booked",
            "slot": [{"reference": format!("Slot/{}", s.id)}], "start": s.start, "end": s.end,
            "participant": [
                {"actor": {"reference": format!("Patient/pt-{}", n + 1)}, "status": "accepted"},
                {"actor": {"reference": format!("Practitioner/{}", doctor_of(s))}, "status": "accepted"},
                {"actor": {"reference": format!("HealthcareService/{}", department_of(s))}, "status": "accepted"}
            ]
        })));
    }
    entries.push(entry(json!({
        "resourceType": "ServiceRequest", "id": "order-cbc-1", "status": "completed", "intent": "order",
        "instantiatesCanonical": ["https://vaidya.dev/demo/catalogue/cbc"],
        "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2", "display": "CBC panel - Blood by Automated count"}]},
        "subject": {"reference": "Patient/pt-2"}, "requester": {"reference": "Practitioner/dr-khan"},
        "authoredOn": "2026-11-20T09:40:00+05:30"
    })));
    entries.push(entry(json!({
        "resourceType": "Specimen", "id": "specimen-1", "status": "available",
        "identifier": [{"system": crate::fhir::lab::SPECIMEN_BARCODE_SYSTEM, "value": "S2026112000001"}],
        "accessionIdentifier": {"system": crate::fhir::lab::SPECIMEN_BARCODE_SYSTEM, "value": "S2026112000001"},
        "type": {"text": "Whole blood (EDTA)"}, "subject": {"reference": "Patient/pt-2"},
        "request": [{"reference": "ServiceRequest/order-cbc-1"}],
        "collection": {"collectedDateTime": "2026-11-20T10:15:00+05:30"}
    })));
    entries.push(entry(json!({
        "resourceType": "Observation", "id": "obs-hb-1", "status": "final",
        "basedOn": [{"reference": "ServiceRequest/order-cbc-1"}], "specimen": {"reference": "Specimen/specimen-1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7", "display": "Hemoglobin [Mass/volume] in Blood"}]},
        "subject": {"reference": "Patient/pt-2"}, "effectiveDateTime": "2026-11-20T10:15:00+05:30",
        "valueQuantity": {"value": 10.8, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"},
        "referenceRange": [{"low": {"value": 12.0, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"},
                            "high": {"value": 15.5, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"}}],
        "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "L"}]}]
    })));
    entries.push(entry(json!({
        "resourceType": "DiagnosticReport", "id": "report-1", "status": "final",
        "extension": [{"url": crate::fhir::lab::VERIFIED_BY_URL, "valueString": "dr-verma"}],
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "HM", "display": "Haematology"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2", "display": "CBC panel - Blood by Automated count"}]},
        "subject": {"reference": "Patient/pt-2"}, "basedOn": [{"reference": "ServiceRequest/order-cbc-1"}],
        "effectiveDateTime": "2026-11-20T10:15:00+05:30", "issued": "2026-11-20T12:00:00+05:30",
        "specimen": [{"reference": "Specimen/specimen-1"}],
        "conclusion": "Haemoglobin below the reference range: mild anaemia.",
        "performer": [{"reference": "Practitioner/dr-verma"}], "result": [{"reference": "Observation/obs-hb-1"}]
    })));
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

/// After the hospital is loaded: bills for the first two patients, from the charges their
/// registration, appointment and test made: Ramesh's paid in cash at counter OPD-1, Sita's
/// waiting at the counter.
pub fn bills(tx: &mut vaidya_store::WriteTx<'_>) -> Result<(), crate::error::ApiError> {
    use crate::fhir::billing::{MoneyOp, apply, gather};
    let paid = crate::fhir::new_id();
    let o = gather(tx, "cash.ravi", "pt-1", &paid)?;
    let invoice: Value = serde_json::from_slice(o.content.as_deref().unwrap_or_default()).map_err(|e| crate::error::ApiError::internal(e.to_string()))?;
    let total = crate::fhir::billing::paise(&invoice["totalGross"], "Invoice.totalGross")?;
    if total.is_positive() {
        let pay = MoneyOp::Pay { amount: total, mode: "cash".into(), key: "demo-pt-1".into(), counter: "OPD-1".into() };
        apply(tx, "cash.ravi", &paid, pay)?;
    }
    gather(tx, "cash.ravi", "pt-2", &crate::fhir::new_id())?;
    Ok(())
}
