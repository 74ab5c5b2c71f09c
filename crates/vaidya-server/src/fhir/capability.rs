//! `GET /fhir/metadata`: what this server really supports, generated from the same model and
//! search parameter definitions the server runs on.

use super::wire;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use vaidya_fhir::model::Model;
use vaidya_fhir::search_params::{ParamType, search_params};

/// The hospital's operations, by resource type: (type, name, what it does).
pub const OPERATIONS: [(&str, &str, &str); 18] = [
    ("Schedule", "generate-slots", "instance: Slots from a weekly OPD pattern (idempotent)"),
    ("Patient", "duplicates", "type: likely existing patients for a registration (same ABHA, or mobile and similar name)"),
    ("Patient", "merge", "type: merge source into target, keeping both histories, with Patient.link"),
    ("Patient", "break-glass", "instance: emergency access to this patient's records for a limited time, with a reason; audited and alerted"),
    ("HealthcareService", "walk-in", "instance: a walk-in Appointment with the department's next token of the day"),
    ("Appointment", "queue", "instance: move through the OPD queue (waiting, called, in-consultation, done, no-show); opens and closes the Encounter"),
    ("Appointment", "cancel", "instance: cancel a booking that has not begun (not after check-in), freeing its place in the slot; a patient may cancel their own"),
    ("ServiceRequest", "collect", "instance: collect the sample: a Specimen with a unique barcode"),
    ("DiagnosticReport", "verify", "instance: verification by someone who entered none of the results"),
    ("DiagnosticReport", "release", "instance: release a verified report; it and its results become final"),
    ("Invoice", "gather", "type: an issued Invoice of a patient's billable charges"),
    ("Invoice", "pay", "instance: a payment (cash, upi, card) at a counter, once per idempotency key, with a receipt"),
    ("Invoice", "refund", "instance: a refund with a reason, once per idempotency key, with a receipt"),
    ("Invoice", "waive", "instance: waive the balance, with the approver and a reason"),
    ("Invoice", "cancel", "instance: cancel with a reason while no money is held"),
    ("Invoice", "cash-report", "type: the day-end cash report per counter and cashier for a date"),
    ("Patient", "export", "type: Bulk Data export of every patient's records as NDJSON (asynchronous; a privacy officer approves each job)"),
    ("Group", "export", "instance: Bulk Data export of the Group's member patients' records as NDJSON (asynchronous; a privacy officer approves each job)"),
];

pub fn capability_statement(base: &str) -> Value {
    let resources: Vec<Value> = Model::r4()
        .resource_types()
        .map(|t| {
            // Exactly the parameters the search engine can run (composites of two parts with a
            // token first, and `near`; not the few R4 parameters without an expression).
            let params: Vec<Value> = search_params(t)
                .filter(|p| vaidya_store::search::parse::table_of(p).is_some())
                .map(|p| json!({"name": p.code, "definition": p.url, "type": p.kind.as_str()}))
                .collect();
            let ref_params: Vec<String> = search_params(t)
                .filter(|p| p.kind == ParamType::Reference)
                .map(|p| format!("{t}:{}", p.code))
                .collect();
            let operations: Vec<Value> = OPERATIONS
                .iter()
                .filter(|(ty, _, _)| *ty == t)
                .map(|(ty, name, doc)| json!({"name": name, "definition": format!("https://vaidya.dev/fhir/OperationDefinition/{ty}-{name}"), "documentation": doc}))
                .collect();
            let mut resource = json!({
                "type": t,
                "interaction": [
                    {"code": "read"}, {"code": "vread"}, {"code": "update"}, {"code": "delete"},
                    {"code": "history-instance"}, {"code": "history-type"}, {"code": "create"}, {"code": "search-type"}
                ],
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalRead": "not-supported",
                "conditionalUpdate": false,
                "conditionalDelete": "not-supported",
                "searchInclude": ref_params.iter().cloned().chain(std::iter::once(format!("{t}:*"))).collect::<Vec<_>>(),
                "searchRevInclude": ["*"],
                "searchParam": params
            });
            if !operations.is_empty() {
                resource["operation"] = Value::Array(operations);
            }
            if t == "AuditEvent" {
                // Served from the audit ledger (fhir/audit_trail.rs): searched, never written.
                resource = json!({
                    "type": t,
                    "documentation": "The audit trail of one patient's record, newest first, from the audit ledger: for the privacy officer, auditors, and the patient's own account. Written only by the server.",
                    "interaction": [{"code": "search-type"}],
                    "searchParam": [{"name": "patient", "definition": "http://hl7.org/fhir/SearchParameter/AuditEvent-patient", "type": "reference",
                                     "documentation": "Required: one Patient"}]
                });
            }
            resource
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-27",
        "publisher": "Vaidya",
        "kind": "instance",
        "software": {"name": "Vaidya", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "Vaidya hospital information system", "url": base},
        "fhirVersion": "4.0.1",
        "instantiates": ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"],
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "security": {
                "cors": false,
                "description": "Every interaction except this CapabilityStatement needs a bearer token (`vaidya token`)."
            },
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
            "operation": [{
                "name": "export",
                "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
                "documentation": "Bulk Data export (kick-off with Prefer: respond-async; _type, _since, _outputFormat=application/fhir+ndjson). Every job waits for a privacy officer's approval: POST $export-status/{job}/$approve or $reject. Status at $export-status/{job}, files at $export-file/{job}/{file} with the bearer token."
            }],
            "searchParam": [
                {"name": "_id", "type": "token", "definition": "http://hl7.org/fhir/SearchParameter/Resource-id"},
                {"name": "_lastUpdated", "type": "date", "definition": "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated"},
                {"name": "_count", "type": "number"},
                {"name": "_sort", "type": "string"},
                {"name": "_include", "type": "string"},
                {"name": "_revinclude", "type": "string"},
                {"name": "_summary", "type": "token", "documentation": "count and false only"}
            ]
        }]
    })
}

pub async fn metadata(headers: HeaderMap) -> Response {
    static CACHE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let body = CACHE.get_or_init(|| serde_json::to_vec(&capability_statement("/fhir")).expect("serialises"));
    let _ = headers;
    wire::raw_json_response(StatusCode::OK, body.clone())
}
