//! `GET /fhir/metadata`: what this server really supports, generated from the same model and
//! search parameter definitions the server runs on.

use super::wire;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use vaidya_fhir::model::Model;
use vaidya_fhir::search_params::{ParamType, search_params};

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
            json!({
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
            })
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
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "security": {
                "cors": false,
                "description": "Every interaction except this CapabilityStatement needs a bearer token (`vaidya token`)."
            },
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
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
