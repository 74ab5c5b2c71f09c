//! `transaction` and `batch` Bundles (POST /fhir, and `vaidya import`).
//!
//! A transaction is prepared (ids assigned, `urn:uuid:` references resolved, every resource
//! validated and indexed) before it reaches the writer, then runs as one writer job: all of it
//! commits or none of it does. A batch runs each entry as its own job.
//!
//! Every entry is checked against the access policies as the same interaction on its own
//! would be ([`Caller`]): a write against the current version and the content as resolved
//! (references to other entries already rewritten, so an entry cannot reach a patient by a
//! `urn:uuid:` the policies did not see), a read or search as on the REST API, protected
//! records left out of searches and their totals. In a transaction one refusal refuses the
//! whole Bundle; in a batch it is that entry's answer.

use super::authorize;
use super::ops::{self, Outcome};
use super::visibility::{Viewer, visible};
use super::wire::{self, BundleWriter, Return};
use super::{Prepared, check_id, check_type, new_id, prepare, prepare_with, rewrite_references};
use crate::error::ApiError;
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use vaidya_fhir::outcome::{IssueType, operation_outcome};
use vaidya_store::search::{Handling, Query, parse_query};
use vaidya_policy::{Action, Actor, Policies};
use vaidya_store::{Store, WriteTx};

/// Who runs a Bundle, and the policies its entries are checked against (`None` for the
/// operator's own loads, such as the demo hospital, which are not requests).
#[derive(Clone)]
pub struct Caller {
    pub author: String,
    pub viewer: Viewer,
    pub checks: Option<(Actor, Policies)>,
}

impl Caller {
    /// May this write go ahead? `content`: the entry's resource as resolved (POST/PUT).
    fn check_write(&self, conn: &impl vaidya_store::Db, method: Method, rtype: &str, id: &str, content: Option<&[u8]>) -> Result<Option<String>, ApiError> {
        let Some((actor, policies)) = &self.checks else { return Ok(None) };
        let what = format!("{rtype}/{id}");
        let current = vaidya_store::read::current(conn, rtype, id)?.filter(|s| !s.deleted);
        let mut patient = None;
        let action = match (&current, method) {
            (Some(cur), Method::Delete) => {
                return authorize::check_stored(conn, policies, actor, Action::Delete, rtype, id, &cur.content);
            }
            (None, Method::Delete) => return Ok(None),
            (Some(cur), _) => {
                patient = authorize::check_stored(conn, policies, actor, Action::Update, rtype, id, &cur.content)?;
                Action::Update
            }
            (None, _) => Action::Create,
        };
        if let Some(content) = content {
            if actor.role == vaidya_policy::Role::Patient {
                let resource: serde_json::Value = serde_json::from_slice(content).map_err(|e| ApiError::bad_request(format!("{what}: {e}")))?;
                super::booking::check_patient_booking(actor.role, rtype, &resource)?;
            }
            let target = authorize::complete(conn, actor, &authorize::describe_stored(rtype, content)?)?;
            authorize::check(policies, actor, action, &target, &what)?;
            patient = target.patient.map(|p| p.id).or(patient);
        }
        Ok(patient)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Method {
    // Declared in the order a transaction processes them (FHIR R4 3.1.0.11.2).
    Delete,
    Post,
    Put,
    Get,
}

/// One entry, parsed and checked.
struct Entry {
    index: usize,
    method: Method,
    rtype: String,
    /// Target id: assigned for POST, from the URL for PUT/DELETE/GET-read.
    id: Option<String>,
    /// For GET searches: the parsed query.
    query: Option<Query>,
    resource: Option<Value>,
    if_none_exist: Option<Query>,
    if_match: Option<u64>,
    full_url: Option<String>,
}

fn entry_error(index: usize, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(format!("Bundle.entry[{index}]: {}", message.into()))
}

/// Process a transaction or batch Bundle; returns the response Bundle's bytes.
/// Process a transaction or batch Bundle; returns the response Bundle's bytes and the
/// patients whose records it read or changed (for the audit record).
pub async fn process(store: &Arc<Store>, caller: Caller, bundle: Value, base: &str, ret: Return, max_entries: usize) -> Result<(Vec<u8>, Vec<String>), ApiError> {
    let kind = check_bundle(&bundle, max_entries)?;
    let entries = parse_entries(bundle)?;
    match kind {
        "transaction" => {
            let (entries, prepared) = tokio::task::spawn_blocking(move || prepare_transaction(entries))
                .await
                .map_err(|e| ApiError::internal(e.to_string()))??;
            let (outcomes, patients) = store.write(move |tx| run_transaction(tx, &caller, entries, prepared)).await?;
            Ok((response_bundle("transaction-response", &outcomes, base, ret), patients))
        }
        _ => Ok(run_batch(store, &caller, entries, base, ret).await),
    }
}

/// Check the envelope; returns the Bundle type.
pub fn check_bundle(bundle: &Value, max_entries: usize) -> Result<&'static str, ApiError> {
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(ApiError::bad_request("POST /fhir takes a Bundle of type transaction or batch"));
    }
    let kind = match bundle.get("type").and_then(Value::as_str) {
        Some("transaction") => "transaction",
        Some("batch") => "batch",
        other => return Err(ApiError::bad_request(format!("Bundle.type must be transaction or batch, not {other:?}"))),
    };
    let n = bundle.get("entry").and_then(Value::as_array).map_or(0, Vec::len);
    if n > max_entries {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            IssueType::TooCosts,
            format!("the Bundle has {n} entries; at most {max_entries} are accepted"),
        ));
    }
    Ok(kind)
}

fn parse_entries(mut bundle: Value) -> Result<Vec<Entry>, ApiError> {
    let raw = match bundle.get_mut("entry") {
        None => vec![],
        Some(Value::Array(a)) => std::mem::take(a),
        Some(_) => return Err(ApiError::bad_request("Bundle.entry must be an array")),
    };
    let mut out = Vec::with_capacity(raw.len());
    for (index, mut e) in raw.into_iter().enumerate() {
        let request = e.get("request").ok_or_else(|| entry_error(index, "has no request"))?;
        let method = match request.get("method").and_then(Value::as_str) {
            Some("GET") => Method::Get,
            Some("POST") => Method::Post,
            Some("PUT") => Method::Put,
            Some("DELETE") => Method::Delete,
            Some(m) => return Err(entry_error(index, format!("method {m} is not supported in bundles"))),
            None => return Err(entry_error(index, "request.method is missing")),
        };
        let url = request.get("url").and_then(Value::as_str).ok_or_else(|| entry_error(index, "request.url is missing"))?.to_string();
        let if_match = match request.get("ifMatch").and_then(Value::as_str) {
            Some(s) => Some(wire::parse_etag(s).ok_or_else(|| entry_error(index, format!("ifMatch '{s}' is not an ETag")))?),
            None => None,
        };
        let if_none_exist_text = request.get("ifNoneExist").and_then(Value::as_str).map(str::to_string);
        let full_url = e.get("fullUrl").and_then(Value::as_str).map(str::to_string);
        let resource = e.get_mut("resource").map(Value::take);
        let (path, query) = match url.split_once('?') {
            Some((p, q)) => (p.trim_start_matches('/').to_string(), Some(q.to_string())),
            None => (url.trim_start_matches('/').to_string(), None),
        };
        let mut parts = path.split('/');
        let rtype = parts.next().unwrap_or_default().to_string();
        check_type(&rtype).map_err(|e| e.within(&format!("Bundle.entry[{index}]")))?;
        let id = parts.next().map(str::to_string);
        if parts.next().is_some() {
            return Err(entry_error(index, format!("request.url '{url}' is not Type, Type/id or Type?query")));
        }
        if let Some(id) = &id {
            check_id(id).map_err(|e| e.within(&format!("Bundle.entry[{index}]")))?;
        }
        let pairs = |q: &str| -> Vec<(String, String)> { form_urlencoded::parse(q.as_bytes()).into_owned().collect() };
        let mut entry = Entry { index, method, rtype, id, query: None, resource, if_none_exist: None, if_match, full_url };
        match method {
            Method::Post => {
                if entry.id.is_some() {
                    return Err(entry_error(index, "POST goes to Type, not Type/id"));
                }
                if let Some(q) = if_none_exist_text {
                    let q = q.split_once('?').map_or(q.as_str(), |(_, q)| q).to_string();
                    let mut parsed = parse_query(&entry.rtype, &pairs(&q), Handling::Strict)
                        .map_err(|e| ApiError::from(e).within(&format!("Bundle.entry[{index}].request.ifNoneExist")))?;
                    parsed.count = 2;
                    entry.if_none_exist = Some(parsed);
                }
                entry.id = Some(new_id());
            }
            Method::Put | Method::Delete => {
                if entry.id.is_none() {
                    return Err(entry_error(index, "conditional update and delete are not supported; give Type/id"));
                }
            }
            Method::Get => {
                if entry.id.is_none() {
                    let q = parse_query(&entry.rtype, &pairs(query.as_deref().unwrap_or("")), Handling::Strict)
                        .map_err(|e| ApiError::from(e).within(&format!("Bundle.entry[{index}].request.url")))?;
                    entry.query = Some(q);
                }
            }
        }
        if matches!(method, Method::Post | Method::Put) {
            let r = entry.resource.as_mut().ok_or_else(|| entry_error(index, "has no resource"))?;
            if r.get("resourceType").and_then(Value::as_str) != Some(entry.rtype.as_str()) {
                return Err(entry_error(index, format!("resource is not a {}", entry.rtype)));
            }
            match method {
                Method::Post => {
                    if let Some(obj) = r.as_object_mut() {
                        obj.remove("id");
                    }
                }
                _ => {
                    if r.get("id").and_then(Value::as_str) != entry.id.as_deref() {
                        return Err(entry_error(index, "resource.id must equal the id in request.url"));
                    }
                }
            }
        }
        out.push(entry);
    }
    Ok(out)
}

/// Resolve references between entries, then validate and index every resource.
fn prepare_transaction(mut entries: Vec<Entry>) -> Result<(Vec<Entry>, HashMap<usize, Prepared>), ApiError> {
    let mut map: HashMap<String, String> = HashMap::new();
    for e in &entries {
        if let (Some(full), Some(id), Method::Post | Method::Put) = (&e.full_url, &e.id, e.method) {
            let target = format!("{}/{}", e.rtype, id);
            if map.insert(full.clone(), target).is_some() {
                return Err(entry_error(e.index, format!("fullUrl '{full}' appears twice")));
            }
        }
    }
    // Only a conditional create can change references after preparation; keep the parsed
    // resources for that case alone.
    let keep = entries.iter().any(|e| e.if_none_exist.is_some());
    let mut prepared = HashMap::new();
    for e in &mut entries {
        let Some(mut resource) = e.resource.take() else { continue };
        if !matches!(e.method, Method::Post | Method::Put) {
            continue;
        }
        let mut unresolved = vec![];
        rewrite_references(&mut resource, &|r| map.get(r).cloned(), &mut unresolved);
        if let Some(r) = unresolved.first() {
            return Err(entry_error(e.index, format!("reference '{r}' does not resolve to any entry of this Bundle")));
        }
        let p = prepare_with(resource, keep).map_err(|err| err.within(&format!("Bundle.entry[{}].resource", e.index)))?;
        prepared.insert(e.index, p);
    }
    Ok((entries, prepared))
}

/// One entry's result for the response Bundle.
pub enum EntryResult {
    Written(Outcome),
    Read { status: StatusCode, content: Vec<u8> },
    Failed(ApiError),
}

fn run_transaction(
    tx: &mut WriteTx<'_>,
    caller: &Caller,
    mut entries: Vec<Entry>,
    mut prepared: HashMap<usize, Prepared>,
) -> Result<(Vec<EntryResult>, Vec<String>), ApiError> {
    let author = caller.author.as_str();
    let mut patients = vec![];
    let n = entries.len();
    // Conditional creates first: one that finds a match becomes a no-op, and references to it
    // must then point at the resource that already exists.
    let mut redirect: HashMap<String, String> = HashMap::new();
    let mut results: Vec<Option<EntryResult>> = (0..n).map(|_| None).collect();
    for e in entries.iter().filter(|e| e.if_none_exist.is_some()) {
        let q = e.if_none_exist.as_ref().expect("filtered");
        let found = vaidya_store::search::run(tx.conn(), q)?;
        match found.total {
            0 => {}
            1 => {
                let m = &found.matches[0];
                redirect.insert(format!("{}/{}", e.rtype, e.id.as_deref().unwrap_or("")), format!("{}/{}", m.resource_type, m.id));
                let cur = vaidya_store::read::current(tx.conn(), &m.resource_type, &m.id)?
                    .ok_or_else(|| ApiError::internal("matched resource vanished"))?;
                prepared.remove(&e.index);
                results[e.index] = Some(EntryResult::Written(Outcome {
                    status: StatusCode::OK,
                    resource_type: m.resource_type.clone(),
                    id: m.id.clone(),
                    version: cur.version,
                    time_ms: cur.time_ms,
                    content: Some(cur.content),
                }));
            }
            k => {
                return Err(ApiError::new(
                    StatusCode::PRECONDITION_FAILED,
                    IssueType::MultipleMatches,
                    format!("Bundle.entry[{}]: ifNoneExist matches {k} resources", e.index),
                ));
            }
        }
    }
    if !redirect.is_empty() {
        for p in prepared.values_mut() {
            p.redirect_references(&|r| redirect.get(r).cloned());
        }
    }
    entries.sort_by_key(|e| (e.method, e.index));
    for e in &entries {
        if results[e.index].is_some() {
            continue;
        }
        let at = |err: ApiError| err.within(&format!("Bundle.entry[{}]", e.index));
        let id = e.id.clone().unwrap_or_default();
        let result = match e.method {
            Method::Delete => {
                patients.extend(caller.check_write(tx.conn(), e.method, &e.rtype, &id, None).map_err(at)?);
                EntryResult::Written(ops::delete(tx, author, &e.rtype, &id).map_err(at)?)
            }
            Method::Post | Method::Put => {
                let p = prepared.remove(&e.index).expect("prepared every POST and PUT");
                let content = p.body.preview(&e.rtype, &id);
                patients.extend(caller.check_write(tx.conn(), e.method, &e.rtype, &id, Some(&content)).map_err(at)?);
                if e.method == Method::Post {
                    EntryResult::Written(ops::create(tx, author, p, &id, None).map_err(at)?)
                } else {
                    EntryResult::Written(ops::update(tx, author, p, &id, e.if_match).map_err(at)?)
                }
            }
            Method::Get => {
                let (result, read) = read_entry(tx.conn(), e, caller).map_err(at)?;
                patients.extend(read);
                result
            }
        };
        results[e.index] = Some(result);
    }
    Ok((results.into_iter().map(|r| r.expect("every entry ran")).collect(), patients))
}

/// A GET entry, checked as the same read or search on its own would be; with the patients
/// whose records it returns.
fn read_entry(conn: &impl vaidya_store::Db, e: &Entry, caller: &Caller) -> Result<(EntryResult, Vec<String>), ApiError> {
    let viewer = &caller.viewer;
    match (&e.id, &e.query) {
        (Some(id), _) => match vaidya_store::read::current(conn, &e.rtype, id)? {
            Some(s) if !s.deleted && visible(viewer, &e.rtype, &s.content) => {
                let patient = match &caller.checks {
                    Some((actor, policies)) => authorize::check_stored(conn, policies, actor, Action::Read, &e.rtype, id, &s.content)?,
                    None => None,
                };
                Ok((EntryResult::Read { status: StatusCode::OK, content: s.content }, patient.into_iter().collect()))
            }
            Some(s) if !s.deleted => Err(ApiError::not_found(format!("{}/{id} is not known", e.rtype))),
            Some(_) => Err(ApiError::new(StatusCode::GONE, IssueType::Deleted, format!("{}/{id} was deleted", e.rtype))),
            None => Err(ApiError::not_found(format!("{}/{id} is not known", e.rtype))),
        },
        (None, Some(q)) => {
            let mut q = q.clone();
            if let Some((actor, policies)) = &caller.checks {
                // As on the REST API: the search as a whole, then what it may not show (in
                // the total too), then each match.
                let target = authorize::target_of_search(conn, actor, &e.rtype, &q.applied)?;
                authorize::check(policies, actor, Action::Search, &target, &format!("{} records", e.rtype))?;
                q.preds.extend(super::protected::exclusions(conn, policies, actor, &q)?);
            }
            let found = vaidya_store::search::run(conn, &q)?;
            let mut patients = vec![];
            let mut facts = authorize::FactsCache::default();
            let mut w = BundleWriter::new(wire::bundle_head("searchset", Some(found.total), &[]));
            for m in found.matches.iter().filter(|m| visible(viewer, &m.resource_type, &m.content)) {
                if let Some((actor, policies)) = &caller.checks {
                    let (ok, patient) = authorize::may_read(conn, policies, actor, &m.resource_type, &m.content, &mut facts)?;
                    if !ok {
                        continue;
                    }
                    patients.extend(patient);
                }
                w.entry(json!({"search": {"mode": "match"}}), Some(&m.content));
            }
            Ok((EntryResult::Read { status: StatusCode::OK, content: w.finish() }, patients))
        }
        (None, None) => Err(ApiError::bad_request("GET entry without id or query")),
    }
}

async fn run_batch(store: &Arc<Store>, caller: &Caller, entries: Vec<Entry>, base: &str, ret: Return) -> (Vec<u8>, Vec<String>) {
    let mut results = Vec::with_capacity(entries.len());
    let mut patients = vec![];
    for mut e in entries {
        let result = async {
            let resource = e.resource.take();
            match e.method {
                Method::Get => {
                    let store = store.clone();
                    let caller = caller.clone();
                    let (result, read) = tokio::task::spawn_blocking(move || store.read(|conn| read_entry(conn, &e, &caller)))
                        .await
                        .map_err(|err| ApiError::internal(err.to_string()))??;
                    patients.extend(read);
                    Ok(result)
                }
                Method::Delete => {
                    let (caller, rtype, id) = (caller.clone(), e.rtype.clone(), e.id.clone().unwrap_or_default());
                    let (o, patient) = store
                        .write(move |tx| {
                            let patient = caller.check_write(tx.conn(), Method::Delete, &rtype, &id, None)?;
                            Ok::<_, ApiError>((ops::delete(tx, &caller.author, &rtype, &id)?, patient))
                        })
                        .await?;
                    patients.extend(patient);
                    Ok(EntryResult::Written(o))
                }
                Method::Post | Method::Put => {
                    let mut resource = resource.ok_or_else(|| ApiError::bad_request("no resource"))?;
                    let mut unresolved = vec![];
                    rewrite_references(&mut resource, &|_| None, &mut unresolved);
                    if let Some(r) = unresolved.first() {
                        return Err(ApiError::bad_request(format!("reference '{r}' cannot be resolved inside a batch")));
                    }
                    let p = prepare(resource)?;
                    let (caller, rtype, id, method, if_match, cond) =
                        (caller.clone(), e.rtype.clone(), e.id.clone().unwrap_or_default(), e.method, e.if_match, e.if_none_exist.take());
                    let (o, patient) = store
                        .write(move |tx| {
                            let content = p.body.preview(&rtype, &id);
                            let patient = caller.check_write(tx.conn(), method, &rtype, &id, Some(&content))?;
                            let o = match method {
                                Method::Post => ops::create(tx, &caller.author, p, &id, cond.as_ref()),
                                _ => ops::update(tx, &caller.author, p, &id, if_match),
                            }?;
                            Ok::<_, ApiError>((o, patient))
                        })
                        .await?;
                    patients.extend(patient);
                    Ok(EntryResult::Written(o))
                }
            }
        }
        .await;
        results.push(result.unwrap_or_else(EntryResult::Failed));
    }
    (response_bundle("batch-response", &results, base, ret), patients)
}

fn response_bundle(kind: &str, results: &[EntryResult], base: &str, ret: Return) -> Vec<u8> {
    let mut w = BundleWriter::new(wire::bundle_head(kind, None, &[]));
    for r in results {
        match r {
            EntryResult::Written(o) => {
                let mut response = json!({"status": status_line(o.status)});
                if o.status != StatusCode::NO_CONTENT {
                    response["location"] = json!(o.location(base));
                    response["etag"] = json!(wire::etag(o.version));
                    response["lastModified"] = json!(vaidya_fhir::datetime::format_instant(o.time_ms));
                }
                let mut fields = json!({"response": response});
                if o.content.is_some() {
                    fields["fullUrl"] = json!(format!("{base}/{}/{}", o.resource_type, o.id));
                }
                let body = if ret == Return::Representation { o.content.as_deref() } else { None };
                w.entry(fields, body);
            }
            EntryResult::Read { status, content } => w.entry(json!({"response": {"status": status_line(*status)}}), Some(content)),
            EntryResult::Failed(err) => {
                let outcome = operation_outcome(&err.issues);
                w.entry(json!({"response": {"status": status_line(err.status), "outcome": outcome}}), None);
            }
        }
    }
    w.finish()
}

fn status_line(s: StatusCode) -> String {
    format!("{} {}", s.as_u16(), s.canonical_reason().unwrap_or(""))
}

/// For `vaidya import`: prepare a transaction Bundle fully (no async, no HTTP), so that many
/// can be prepared in parallel while the writer commits.
pub fn prepare_for_import(bundle: Value, max_entries: usize) -> Result<PreparedTransaction, ApiError> {
    let kind = check_bundle(&bundle, max_entries)?;
    if kind != "transaction" {
        return Err(ApiError::bad_request("import takes transaction Bundles"));
    }
    let entries = parse_entries(bundle)?;
    let (entries, prepared) = prepare_transaction(entries)?;
    Ok(PreparedTransaction { entries, prepared })
}

pub struct PreparedTransaction {
    entries: Vec<Entry>,
    prepared: HashMap<usize, Prepared>,
}

impl PreparedTransaction {
    pub fn resource_count(&self) -> usize {
        self.prepared.len()
    }

    /// Only unconditional creates: the transaction cannot fail once it has started writing,
    /// except through a fault, so it needs no savepoint of its own.
    pub fn only_plain_creates(&self) -> bool {
        // Appointments are excluded: a booking can be refused (slot full) after earlier
        // entries were written.
        self.entries.iter().all(|e| e.method == Method::Post && e.if_none_exist.is_none() && e.rtype != "Appointment")
    }

    /// Run inside a writer job; returns the number of entries written.
    pub fn run(self, tx: &mut WriteTx<'_>, author: &str) -> Result<usize, ApiError> {
        // An import is the operator's own load (`vaidya import`), not a request: not checked.
        let operator = Caller { author: author.to_string(), viewer: Viewer::Lab, checks: None };
        Ok(run_transaction(tx, &operator, self.entries, self.prepared)?.0.len())
    }
}
