//! HTTP details of the FHIR API: headers in (Accept, Content-Type, Prefer, If-Match) and
//! responses out (resources with ETag and Last-Modified, Bundles assembled from stored bytes).

use super::FHIR_JSON;
use crate::error::ApiError;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::time::{Duration, UNIX_EPOCH};
use vaidya_fhir::outcome::IssueType;

/// Refuse formats other than JSON (`Accept` and `_format`).
pub fn check_accept(headers: &HeaderMap, format: Option<&str>) -> Result<(), ApiError> {
    let json_like = |s: &str| {
        let s = s.trim().to_ascii_lowercase();
        s.is_empty() || s.contains("json") || s.starts_with("*/*") || s.starts_with("application/*") || s == "json"
    };
    if let Some(f) = format
        && !json_like(f) {
            return Err(ApiError::new(StatusCode::NOT_ACCEPTABLE, IssueType::NotSupported, "only JSON is supported (_format)"));
        }
    if let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())
        && !accept.split(',').any(|a| json_like(a.split(';').next().unwrap_or(""))) {
            return Err(ApiError::new(StatusCode::NOT_ACCEPTABLE, IssueType::NotSupported, "only application/fhir+json is supported"));
        }
    Ok(())
}

/// Refuse request bodies that do not say they are JSON.
pub fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        None => Ok(()),
        Some(ct) if ct.to_ascii_lowercase().contains("json") => Ok(()),
        Some(ct) => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IssueType::NotSupported,
            format!("content type '{ct}' is not supported; send application/fhir+json"),
        )),
    }
}

/// `Prefer: return=...`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Return {
    Minimal,
    Representation,
    OperationOutcome,
}

fn prefer_tokens(headers: &HeaderMap) -> impl Iterator<Item = String> + '_ {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .map(|s| s.trim().to_ascii_lowercase())
}

pub fn prefer_return(headers: &HeaderMap, default: Return) -> Return {
    prefer_tokens(headers)
        .find_map(|t| match t.as_str() {
            "return=minimal" => Some(Return::Minimal),
            "return=representation" => Some(Return::Representation),
            "return=operationoutcome" => Some(Return::OperationOutcome),
            _ => None,
        })
        .unwrap_or(default)
}

pub fn prefer_lenient(headers: &HeaderMap) -> bool {
    prefer_tokens(headers).any(|t| t == "handling=lenient")
}

/// `If-Match: W/"3"` -> 3.
pub fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else { return Ok(None) };
    let s = v.to_str().unwrap_or("");
    parse_etag(s).map(Some).ok_or_else(|| ApiError::bad_request(format!("If-Match '{s}' is not an ETag like W/\"3\"")))
}

pub fn parse_etag(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s.strip_prefix("W/").unwrap_or(s);
    s.strip_prefix('"')?.strip_suffix('"')?.parse().ok()
}

pub fn etag(version: u64) -> String {
    format!("W/\"{version}\"")
}

pub fn http_date(ms: i64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
}

/// The base URL the client used, for `fullUrl` and links.
pub fn base_url(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).filter(|h| {
        !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
    });
    format!("http://{}/fhir", host.unwrap_or("localhost"))
}

/// A stored resource as a response: body as stored, ETag, Last-Modified, optional Location.
pub fn resource_response(status: StatusCode, content: Vec<u8>, version: u64, time_ms: i64, location: Option<String>) -> Response {
    let mut resp = (status, content).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    insert(h, header::ETAG, &etag(version));
    insert(h, header::LAST_MODIFIED, &http_date(time_ms));
    if let Some(loc) = location {
        insert(h, header::LOCATION, &loc);
        insert(h, header::CONTENT_LOCATION, &loc);
    }
    resp
}

pub fn json_response(status: StatusCode, value: &Value) -> Response {
    let mut resp = (status, serde_json::to_vec(value).expect("JSON serialises")).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    resp
}

pub fn raw_json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    resp
}

fn insert(h: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

/// Assembles a Bundle as bytes, splicing stored resources in without re-parsing them.
pub struct BundleWriter {
    out: Vec<u8>,
    entries: usize,
}

impl BundleWriter {
    /// `head` holds the Bundle's fields other than `entry` (resourceType, type, total, link...).
    pub fn new(head: Value) -> BundleWriter {
        let mut out = serde_json::to_vec(&head).expect("JSON serialises");
        out.pop(); // reopen the object: drop its closing brace
        out.extend_from_slice(b",\"entry\":[");
        BundleWriter { out, entries: 0 }
    }

    /// Add an entry: `fields` are its members other than `resource` (fullUrl, search, request,
    /// response); `resource` is spliced in as stored, if any.
    pub fn entry(&mut self, fields: Value, resource: Option<&[u8]>) {
        if self.entries > 0 {
            self.out.push(b',');
        }
        self.entries += 1;
        let mut f = serde_json::to_vec(&fields).expect("JSON serialises");
        match resource {
            Some(r) if !r.is_empty() => {
                f.pop();
                if f.len() > 1 {
                    f.push(b',');
                }
                f.extend_from_slice(b"\"resource\":");
                f.extend_from_slice(r);
                f.push(b'}');
            }
            _ => {}
        }
        self.out.extend_from_slice(&f);
    }

    pub fn finish(mut self) -> Vec<u8> {
        if self.entries == 0 {
            // "entry": [] is not valid FHIR; remove the opened array.
            let cut = self.out.len() - b",\"entry\":[".len();
            self.out.truncate(cut);
            self.out.push(b'}');
        } else {
            self.out.extend_from_slice(b"]}");
        }
        self.out
    }
}

pub fn bundle_head(kind: &str, total: Option<u64>, links: &[(&str, String)]) -> Value {
    let mut head = json!({"resourceType": "Bundle", "id": super::new_id(), "meta": {"lastUpdated": vaidya_fhir::datetime::format_instant(vaidya_fhir::datetime::now_ms())}, "type": kind});
    if let Some(t) = total {
        head["total"] = json!(t);
    }
    if !links.is_empty() {
        head["link"] = Value::Array(links.iter().map(|(rel, url)| json!({"relation": rel, "url": url})).collect());
    }
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_writer_splices_resources_into_valid_json() {
        let mut w = BundleWriter::new(bundle_head("searchset", Some(2), &[("self", "http://x/fhir/Patient".into())]));
        w.entry(json!({"fullUrl": "http://x/fhir/Patient/1"}), Some(br#"{"resourceType":"Patient","id":"1"}"#));
        w.entry(json!({"response": {"status": "204 No Content"}}), None);
        let v: Value = serde_json::from_slice(&w.finish()).unwrap();
        assert_eq!(v["entry"][0]["resource"]["id"], "1");
        assert_eq!(v["entry"][1]["response"]["status"], "204 No Content");
        assert_eq!(v["total"], 2);
        let empty: Value = serde_json::from_slice(&BundleWriter::new(bundle_head("searchset", Some(0), &[])).finish()).unwrap();
        assert!(empty.get("entry").is_none());
        vaidya_fhir::validate::validate_resource(&v).unwrap();
    }

    #[test]
    fn etags_parse() {
        assert_eq!(parse_etag("W/\"12\""), Some(12));
        assert_eq!(parse_etag("\"3\""), Some(3));
        assert_eq!(parse_etag("3"), None);
    }
}
