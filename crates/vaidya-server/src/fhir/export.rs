//! FHIR Bulk Data `$export` (Bulk Data Access IG v2, the asynchronous request pattern), with a
//! second person's approval before any data leaves.
//!
//! Why approval: a bulk export is the largest disclosure the system can make in one request,
//! and the issue it answers asks that nobody can make one alone. So every export job, system,
//! `Patient` or `Group` level, waits until a privacy officer other than the requester approves
//! it. Patient-level is every patient's record, as large as system level; and a Group's
//! membership is written by the same integration accounts that export, so a Group would be a
//! way around an approval that only system-level exports needed.
//!
//! The flow:
//! - kick-off: `GET /fhir/$export`, `GET /fhir/Patient/$export`, `GET /fhir/Group/{id}/$export`
//!   with `Prefer: respond-async` (else 400); parameters `_type` (comma list of resource
//!   types), `_since` (an instant; resources last updated at or after it) and `_outputFormat`
//!   (`application/fhir+ndjson` or its abbreviations); anything else is refused (400), not
//!   ignored. Answer: 202 with `Content-Location: <base>/$export-status/{job}`.
//! - who may kick off: the Cedar policies decide, action `export` on each type asked for
//!   (`machine-export`: integration accounts within their read scopes, never the audit trail).
//!   People do not bulk-export records; a type the policies refuse, named in `_type`, is 403;
//!   left to the default (every type with data), it is left out.
//! - approval: `POST /fhir/$export-status/{job}/$approve` or `$reject` (optional Parameters
//!   `reason`), by an account with role `privacy-officer` that is not the requester (the
//!   administrator runs the set-up and never reads records, so is not the one to let them
//!   out). Until then status polling answers 202 with `X-Progress: awaiting approval`.
//!   `GET /fhir/$export-status` lists the jobs: all of them to a privacy officer, one's own to
//!   anyone else.
//!   A Group export takes the Group's active members as they are at the kick-off.
//! - work: a tokio task takes one of `[export] max_running` slots, then a blocking thread reads
//!   one WAL snapshot on its own read-only connection (no pooled reader is held) and writes one
//!   NDJSON file per type under `<data>/exports/{job}/`, a new file every
//!   `max_resources_per_file` resources. Each record is checked as the requester's `read` and
//!   `export` by the policies (with the patient's labels: VIP and very restricted patients stay
//!   out) and against the release rule; each patient's facts are looked up once per job, and
//!   the policies are asked by the patient's attributes unless a policy names a patient
//!   (`Policies::decide_by_attributes`).
//! - status: `GET /fhir/$export-status/{job}`: 202 with `X-Progress` while waiting or running,
//!   200 with the manifest when done (`transactionTime` is when the snapshot was taken: every
//!   exported version is older), 403 with the reason when rejected, 500 when failed. The
//!   requester and privacy officers may poll (a manifest holds no patient data);
//!   `DELETE` (requester or privacy officer) cancels and removes the files.
//! - download: `GET /fhir/$export-file/{job}/{file}`, requester only, with the bearer token
//!   (`requiresAccessToken: true`), streamed as `application/fhir+ndjson`.
//! - audit: the kick-off, approval or rejection, status polls, cancellation and each download
//!   are recorded by the audit middleware like every `/fhir` request (action `export` for the
//!   kick-off and downloads); the end of a job is recorded here under the requester's name
//!   (`export`, allowed or failed, naming the approver and the counts), with every exported
//!   patient named (in events of at most [`PATIENTS_PER_EVENT`]), so that `vaidya audit report
//!   --patient` shows that a patient's records left in an export.
//! - limits (`[export]` in the config): at most `max_jobs` unfinished (awaiting approval,
//!   queued or running) jobs (429 beyond), `max_running` running at once, job ids are 122
//!   random bits (UUIDv4). A job awaiting approval lapses after `expire_seconds` (a day by default),
//!   and a finished job and its files are removed `expire_seconds` after it finished (checked on every export
//!   request). Jobs live in memory: a restart forgets them and removes their files, and the
//!   client kicks off again.

use super::authorize::{self, FactsCache};
use super::visibility::{Viewer, visible};
use super::wire;
use crate::app::{AppState, Principal};
use crate::audit::{Audited, attach};
use crate::error::ApiError;
use axum::Extension;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::path::{Path as FsPath, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use vaidya_access::scope::Access;
use vaidya_fhir::outcome::{Issue, IssueType, operation_outcome};
use vaidya_policy::{Action, Facts};

pub const NDJSON: &str = "application/fhir+ndjson";
/// Patients named per audit event at the end of a job (an event is at most 256 KiB).
pub const PATIENTS_PER_EVENT: usize = 500;
/// The role that approves exports.
const APPROVER_ROLE: &str = "privacy-officer";

/// The routes, merged into the authenticated `/fhir` router (inside authentication and audit).
pub fn routes(state: &AppState) -> Router<AppState> {
    let jobs = Arc::new(Jobs::new(&state.config));
    Router::new()
        .route("/$export", get(kick_off_system))
        .route("/Patient/$export", get(kick_off_patient))
        .route("/Group/{id}/$export", get(kick_off_group))
        .route("/$export-status", get(list))
        .route("/$export-status/{job}", get(status).delete(cancel))
        .route("/$export-status/{job}/{op}", post(decide))
        .route("/$export-file/{job}/{file}", get(download))
        .layer(Extension(jobs))
}

/// Which records an export is of.
#[derive(Debug, Clone, PartialEq)]
pub enum Level {
    /// Everything (of the types asked for).
    System,
    /// Records that belong to a patient.
    Patient,
    /// Records of the Group's member patients.
    Group { id: String, members: HashSet<String> },
}

/// What to export, as checked at kick-off.
#[derive(Debug, Clone)]
pub struct Spec {
    pub level: Level,
    pub types: Vec<String>,
    pub since_ms: Option<i64>,
    pub max_per_file: usize,
}

#[derive(Debug, Clone)]
enum State_ {
    AwaitingApproval,
    Queued,
    Running,
    Done(Manifest),
    Failed(String),
    Rejected { by: String, reason: Option<String> },
}

impl State_ {
    fn code(&self) -> &'static str {
        match self {
            State_::AwaitingApproval => "awaiting-approval",
            State_::Queued => "queued",
            State_::Running => "running",
            State_::Done(_) => "completed",
            State_::Failed(_) => "failed",
            State_::Rejected { .. } => "rejected",
        }
    }
    fn finished(&self) -> bool {
        matches!(self, State_::Done(_) | State_::Failed(_) | State_::Rejected { .. })
    }
}

/// One written NDJSON file.
#[derive(Debug, Clone)]
pub struct OutFile {
    pub rtype: String,
    pub name: String,
    pub count: u64,
}

/// What the worker made.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub transaction_ms: i64,
    pub files: Vec<OutFile>,
    /// Records the policies or the release rule kept out.
    pub withheld: u64,
}

/// Progress the worker reports while it runs.
#[derive(Default)]
pub struct Progress {
    pub written: AtomicU64,
    pub current: Mutex<String>,
    pub cancel: AtomicBool,
}

struct Job {
    id: String,
    owner: Principal,
    request: String,
    base: String,
    spec: Spec,
    state: State_,
    created_ms: i64,
    finished_ms: Option<i64>,
    approved_by: Option<String>,
    progress: Arc<Progress>,
}

/// The export jobs of this server process.
pub struct Jobs {
    jobs: Mutex<HashMap<String, Job>>,
    root: PathBuf,
    running: Arc<tokio::sync::Semaphore>,
    max_jobs: usize,
    max_per_file: usize,
    expire_ms: i64,
}

impl Jobs {
    fn new(config: &crate::config::Config) -> Jobs {
        let root = config.data.join("exports");
        // Jobs do not outlive the process; neither do their files.
        if root.exists()
            && let Err(e) = std::fs::remove_dir_all(&root)
        {
            tracing::warn!(target: "vaidya::export", "cannot remove old export files in {}: {e}", root.display());
        }
        let e = &config.export;
        Jobs {
            jobs: Mutex::new(HashMap::new()),
            root,
            running: Arc::new(tokio::sync::Semaphore::new(e.max_running.max(1))),
            max_jobs: e.max_jobs.max(1),
            max_per_file: e.max_resources_per_file.max(1),
            expire_ms: i64::try_from(e.expire_seconds).unwrap_or(i64::MAX / 1000).saturating_mul(1000),
        }
    }

    fn dir(&self, job: &str) -> PathBuf {
        self.root.join(job)
    }

    /// Forget lapsed and expired jobs and remove their files.
    fn sweep(&self) {
        let now = vaidya_store::now_ms();
        let mut gone = vec![];
        self.jobs.lock().expect("jobs lock").retain(|id, j| {
            let since = match (&j.state, j.finished_ms) {
                (State_::AwaitingApproval, _) => Some(j.created_ms),
                (s, Some(f)) if s.finished() => Some(f),
                _ => None,
            };
            let keep = since.is_none_or(|t| now - t < self.expire_ms);
            if !keep {
                gone.push(id.clone());
            }
            keep
        });
        for id in gone {
            remove_dir(&self.dir(&id));
        }
    }
}

/// An error's diagnostics, for a status answer and the audit record.
fn message(e: &ApiError) -> String {
    e.issues.iter().map(|i| i.diagnostics.as_str()).collect::<Vec<_>>().join("; ")
}

fn remove_dir(dir: &FsPath) {
    if dir.exists()
        && let Err(e) = std::fs::remove_dir_all(dir)
    {
        tracing::warn!(target: "vaidya::export", "cannot remove {}: {e}", dir.display());
    }
}

// --- kick-off ----------------------------------------------------------------------------------

async fn kick_off_system(
    State(app): State<AppState>,
    Extension(jobs): Extension<Arc<Jobs>>,
    Extension(who): Extension<Principal>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    kick_off(app, jobs, who, raw, headers, None).await
}

async fn kick_off_patient(
    State(app): State<AppState>,
    Extension(jobs): Extension<Arc<Jobs>>,
    Extension(who): Extension<Principal>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    kick_off(app, jobs, who, raw, headers, Some(None)).await
}

async fn kick_off_group(
    State(app): State<AppState>,
    Extension(jobs): Extension<Arc<Jobs>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    super::check_id(&id)?;
    kick_off(app, jobs, who, raw, headers, Some(Some(id))).await
}

/// The kick-off parameters, checked.
#[derive(Debug, PartialEq)]
pub struct KickOff {
    pub types: Option<Vec<String>>,
    pub since_ms: Option<i64>,
}

/// Parse the kick-off's query. Unknown parameters are refused: an export that silently
/// ignored a filter would hand out more than was asked for.
pub fn parse_kick_off(pairs: &[(String, String)]) -> Result<KickOff, ApiError> {
    let mut types: Option<Vec<String>> = None;
    let mut since_ms = None;
    for (k, v) in pairs {
        match k.as_str() {
            "_type" => {
                let list = types.get_or_insert_with(Vec::new);
                for t in v.split(',').map(str::trim) {
                    if t.is_empty() {
                        return Err(ApiError::bad_request("_type has an empty entry; give resource types separated by commas"));
                    }
                    if !vaidya_fhir::model::Model::r4().is_resource_type(t) {
                        return Err(ApiError::new(StatusCode::BAD_REQUEST, IssueType::NotSupported, format!("_type: '{t}' is not a FHIR R4 resource type")));
                    }
                    if !list.iter().any(|x| x == t) {
                        list.push(t.to_string());
                    }
                }
            }
            "_since" => {
                if since_ms.is_some() {
                    return Err(ApiError::bad_request("_since is given more than once"));
                }
                // A `+` of a zone offset sent unencoded arrives as a space.
                let v = v.replace(' ', "+");
                since_ms = Some(parse_instant(&v).ok_or_else(|| {
                    ApiError::new(StatusCode::BAD_REQUEST, IssueType::Value, format!("_since: '{v}' is not a FHIR instant (e.g. 2026-01-31T10:00:00Z)"))
                })?);
            }
            "_outputFormat" => {
                if !matches!(v.as_str(), "application/fhir+ndjson" | "application/ndjson" | "ndjson") {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        IssueType::NotSupported,
                        format!("_outputFormat: '{v}' is not supported; only application/fhir+ndjson"),
                    ));
                }
            }
            "_typeFilter" | "_elements" | "patient" | "includeAssociatedData" | "_until" | "organizeOutputBy" | "allowPartialManifests" => {
                return Err(ApiError::new(StatusCode::BAD_REQUEST, IssueType::NotSupported, format!("the export parameter {k} is not supported")));
            }
            other => {
                return Err(ApiError::new(StatusCode::BAD_REQUEST, IssueType::NotSupported, format!("unknown export parameter '{other}'")));
            }
        }
    }
    Ok(KickOff { types, since_ms })
}

/// A FHIR instant: a date, a time to the second at least, and a zone.
fn parse_instant(s: &str) -> Option<i64> {
    let (_, time) = s.split_once('T')?;
    let zoned = time.ends_with('Z') || time.contains('+') || time.contains('-');
    if !zoned || time.len() < 9 {
        return None;
    }
    vaidya_fhir::datetime::parse_date_range(s).map(|(start, _)| start)
}

fn wants_async(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
}

fn scopes_allow(who: &Principal, rtype: &str) -> bool {
    who.scopes.as_ref().is_none_or(|s| s.allows(rtype, Access::Read))
}

async fn kick_off(
    app: AppState,
    jobs: Arc<Jobs>,
    who: Principal,
    raw: Option<String>,
    headers: HeaderMap,
    // None: system level; Some(None): Patient; Some(Some(id)): Group.
    level: Option<Option<String>>,
) -> Result<Response, ApiError> {
    wire::check_accept(&headers, None)?;
    if !wants_async(&headers) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, IssueType::Required, "$export is asynchronous: send `Prefer: respond-async`"));
    }
    let pairs: Vec<(String, String)> = raw.as_deref().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    let KickOff { types: asked_types, since_ms } = parse_kick_off(&pairs)?;
    jobs.sweep();
    let actor = authorize::actor(&who);
    let policies = app.policies.clone();
    let who2 = who.clone();
    let (spec_level, types) = app
        .read(move |conn| {
            let level = match &level {
                None => Level::System,
                Some(None) => Level::Patient,
                Some(Some(id)) => {
                    let group = vaidya_store::read::current(conn, "Group", id)?
                        .filter(|s| !s.deleted)
                        .ok_or_else(|| ApiError::not_found(format!("Group/{id} is not known")))?;
                    authorize::check_stored(conn, &policies, &actor, Action::Read, "Group", id, &group.content)?;
                    let value: Value = serde_json::from_slice(&group.content).map_err(|e| ApiError::internal(e.to_string()))?;
                    Level::Group { id: id.clone(), members: group_members(&value) }
                }
            };
            let compartment_only = level != Level::System;
            let may = |t: &str| -> Result<Result<(), ApiError>, ApiError> {
                if !scopes_allow(&who2, t) {
                    return Ok(Err(ApiError::new(StatusCode::FORBIDDEN, IssueType::Forbidden, format!("the token's scopes do not allow reading {t}"))));
                }
                let target = authorize::target_of_search(conn, &actor, t, &[])?;
                Ok(authorize::check(&policies, &actor, Action::Export, &target, &format!("{t} records")))
            };
            let types = match &asked_types {
                Some(list) => {
                    for t in list {
                        if compartment_only && !authorize::in_patient_compartment(t) {
                            return Err(ApiError::bad_request(format!("_type: {t} records do not belong to patients; a Patient or Group export has none")));
                        }
                        may(t)??;
                    }
                    list.clone()
                }
                None => {
                    let mut list = vec![];
                    for t in vaidya_fhir::model::Model::r4().resource_types() {
                        if (compartment_only && !authorize::in_patient_compartment(t)) || !vaidya_store::scan::type_present(conn, t)? {
                            continue;
                        }
                        if may(t)?.is_ok() {
                            list.push(t.to_string());
                        }
                    }
                    if list.is_empty() {
                        // Nothing permitted: say why, rather than export nothing (an empty
                        // store with a permitted account gives an empty export).
                        may("Patient")??;
                    }
                    list
                }
            };
            Ok((level, types))
        })
        .await?;
    let job_id = uuid::Uuid::new_v4().simple().to_string();
    let base = wire::base_url(&headers);
    let path = match &spec_level {
        Level::System => "$export".to_string(),
        Level::Patient => "Patient/$export".to_string(),
        Level::Group { id, .. } => format!("Group/{id}/$export"),
    };
    let request = match raw.as_deref().filter(|q| !q.is_empty()) {
        Some(q) => format!("{base}/{path}?{q}"),
        None => format!("{base}/{path}"),
    };
    {
        let mut all = jobs.jobs.lock().expect("jobs lock");
        let open = all.values().filter(|j| !j.state.finished()).count();
        if open >= jobs.max_jobs {
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                IssueType::Throttled,
                format!("{open} export jobs are already waiting or running (the limit is {}); try again later", jobs.max_jobs),
            )
            .into_response();
            e.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            return Ok(e);
        }
        all.insert(
            job_id.clone(),
            Job {
                id: job_id.clone(),
                owner: who.clone(),
                request: request.clone(),
                base: base.clone(),
                spec: Spec { level: spec_level, types: types.clone(), since_ms, max_per_file: jobs.max_per_file },
                state: State_::AwaitingApproval,
                created_ms: vaidya_store::now_ms(),
                finished_ms: None,
                approved_by: None,
                progress: Arc::new(Progress::default()),
            },
        );
    }
    tracing::warn!(target: "vaidya::export", job = %job_id, user = %who.user, request = %request,
        "bulk export requested; it waits for a privacy officer's approval (POST /fhir/$export-status/{job_id}/$approve)");
    let msg = format!("export job {job_id} of {} type(s) accepted; it starts when a privacy officer approves it", types.len());
    let mut resp = wire::json_response(StatusCode::ACCEPTED, &operation_outcome(&[Issue::information(IssueType::Informational, msg)]));
    let location = format!("{base}/$export-status/{job_id}");
    resp.headers_mut().insert(header::CONTENT_LOCATION, HeaderValue::from_str(&location).map_err(|e| ApiError::internal(e.to_string()))?);
    let audited = Audited { returned: vec![format!("$export-status/{job_id}")], patients: vec![] };
    Ok(attach(resp, audited))
}

/// The Patients a Group lists as members (`member.entity`), inactive members left out.
pub fn group_members(group: &Value) -> HashSet<String> {
    group["member"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["inactive"].as_bool() != Some(true))
        .filter_map(|m| m["entity"]["reference"].as_str()?.strip_prefix("Patient/").map(str::to_string))
        .collect()
}

// --- approval ----------------------------------------------------------------------------------

/// The job if `who` may see it (its requester, or a privacy officer); else 404, so that job
/// ids cannot be probed.
fn visible_job<'a>(all: &'a mut HashMap<String, Job>, id: &str, who: &Principal) -> Result<&'a mut Job, ApiError> {
    match all.get_mut(id) {
        Some(j) if j.owner.user == who.user || who.role == APPROVER_ROLE => Ok(j),
        _ => Err(ApiError::not_found(format!("no export job {id}"))),
    }
}

async fn decide(
    State(app): State<AppState>,
    Extension(jobs): Extension<Arc<Jobs>>,
    Extension(who): Extension<Principal>,
    Path((id, op)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    wire::check_accept(&headers, None)?;
    let approve = match op.as_str() {
        "$approve" => true,
        "$reject" => false,
        _ => return Err(ApiError::new(StatusCode::NOT_FOUND, IssueType::NotSupported, format!("no operation {op} on an export job; $approve or $reject"))),
    };
    let reason = if body.is_empty() {
        None
    } else {
        wire::check_content_type(&headers)?;
        let params = super::parse_json(&body)?;
        super::params::Params::new(&op, &params)?.text("reason", 500)?
    };
    jobs.sweep();
    let mut all = jobs.jobs.lock().expect("jobs lock");
    let job = visible_job(&mut all, &id, &who)?;
    if job.owner.user == who.user {
        return Err(ApiError::new(StatusCode::FORBIDDEN, IssueType::Forbidden, "a second person approves an export: the requester cannot decide on their own job"));
    }
    if who.role != APPROVER_ROLE {
        return Err(ApiError::new(StatusCode::FORBIDDEN, IssueType::Forbidden, format!("only a {APPROVER_ROLE} approves or rejects exports")));
    }
    if !matches!(job.state, State_::AwaitingApproval) {
        return Err(ApiError::new(StatusCode::CONFLICT, IssueType::Conflict, format!("export job {id} is {}, not awaiting approval", job.state.code())));
    }
    let decision = if approve {
        job.state = State_::Queued;
        job.approved_by = Some(who.user.clone());
        start(&app, &jobs, job);
        "approved"
    } else {
        job.state = State_::Rejected { by: who.user.clone(), reason: reason.clone() };
        job.finished_ms = Some(vaidya_store::now_ms());
        "rejected"
    };
    tracing::warn!(target: "vaidya::export", job = %id, by = %who.user, requester = %job.owner.user, "bulk export {decision}");
    let mut parameters = vec![
        json!({"name": "job", "valueString": id}),
        json!({"name": "decision", "valueCode": decision}),
        json!({"name": "requester", "valueString": job.owner.user}),
    ];
    if let Some(r) = reason {
        parameters.push(json!({"name": "reason", "valueString": r}));
    }
    Ok(wire::json_response(StatusCode::OK, &json!({"resourceType": "Parameters", "parameter": parameters})))
}

/// Run an approved job: wait for a slot, export on a blocking thread, record the outcome.
fn start(app: &AppState, jobs: &Arc<Jobs>, job: &Job) {
    let (app, jobs) = (app.clone(), jobs.clone());
    let (id, owner, spec, progress) = (job.id.clone(), job.owner.clone(), job.spec.clone(), job.progress.clone());
    let approver = job.approved_by.clone().unwrap_or_default();
    tokio::spawn(async move {
        let Ok(_permit) = jobs.running.clone().acquire_owned().await else { return };
        if progress.cancel.load(Ordering::Relaxed) {
            return;
        }
        if let Some(j) = jobs.jobs.lock().expect("jobs lock").get_mut(&id) {
            j.state = State_::Running;
        }
        let dir = jobs.dir(&id);
        let (store_path, policies, who, dir2, progress2) = (app.store.location().clone(), app.policies.clone(), owner.clone(), dir.clone(), progress.clone());
        let began = std::time::Instant::now();
        let result = tokio::task::spawn_blocking(move || run(&store_path, &dir2, &spec, &who, &policies, &progress2))
            .await
            .unwrap_or_else(|e| Err(ApiError::internal(format!("export task failed: {e}"))));
        if let Ok((m, _)) = &result {
            let n: u64 = m.files.iter().map(|f| f.count).sum();
            let secs = began.elapsed().as_secs_f64();
            tracing::info!(target: "vaidya::export", job = %id, resources = n, files = m.files.len(), withheld = m.withheld,
                "export written in {secs:.3} s ({:.0} resources/s)", n as f64 / secs.max(1e-9));
        }
        if progress.cancel.load(Ordering::Relaxed) {
            remove_dir(&dir);
            return;
        }
        let recorded = record_end(&app, &owner, &id, &approver, &result).await;
        let state = match (result, recorded) {
            (Ok((manifest, _)), Ok(())) => State_::Done(manifest),
            (Ok(_), Err(e)) => {
                remove_dir(&dir);
                State_::Failed(format!("the audit trail cannot be written, so the export is not released: {e}"))
            }
            (Err(e), _) => {
                remove_dir(&dir);
                tracing::error!(target: "vaidya::export", job = %id, "export failed: {}", message(&e));
                State_::Failed(message(&e))
            }
        };
        if let Some(j) = jobs.jobs.lock().expect("jobs lock").get_mut(&id) {
            j.state = state;
            j.finished_ms = Some(vaidya_store::now_ms());
        }
    });
}

/// The audit events of a finished job, under the requester's name.
async fn record_end(app: &AppState, owner: &Principal, id: &str, approver: &str, result: &Result<(Manifest, BTreeSet<String>), ApiError>) -> Result<(), String> {
    let base = |outcome| {
        let mut rec = vaidya_audit::AuditRecord::new(vaidya_audit::Action::Export, outcome);
        rec.who = vaidya_audit::Who { user: Some(owner.user.clone()), role: Some(owner.role.clone()), session: Some(owner.token_id.clone()) };
        rec.what = vec![format!("$export-status/{id}")];
        rec
    };
    let mut records = vec![];
    match result {
        Ok((m, patients)) => {
            let total: u64 = m.files.iter().map(|f| f.count).sum();
            let types: BTreeSet<&str> = m.files.iter().map(|f| f.rtype.as_str()).collect();
            let reason = format!(
                "bulk export {id} completed: {total} resources of {} type(s) in {} file(s), {} withheld by policy, {} patient(s); approved by {approver}",
                types.len(),
                m.files.len(),
                m.withheld,
                patients.len()
            );
            let patients: Vec<String> = patients.iter().cloned().collect();
            let chunks: Vec<&[String]> = if patients.is_empty() { vec![&[]] } else { patients.chunks(PATIENTS_PER_EVENT).collect() };
            for chunk in chunks {
                let mut rec = base(vaidya_audit::Outcome::Allowed);
                rec.reason = Some(reason.clone());
                rec.patients = chunk.to_vec();
                records.push(rec);
            }
        }
        Err(e) => {
            let mut rec = base(vaidya_audit::Outcome::Failed(message(e)));
            rec.reason = Some(format!("bulk export {id} failed; approved by {approver}"));
            records.push(rec);
        }
    }
    for batch in records.chunks(1_000) {
        app.audit.record(batch.to_vec()).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

// --- the worker --------------------------------------------------------------------------------

/// An NDJSON file being written.
struct Writer {
    file: std::io::BufWriter<std::fs::File>,
    name: String,
    count: u64,
}

/// Export `spec` for `who` into `dir`: one snapshot, one file per type (split every
/// `max_per_file` records). Returns the manifest and the patients whose records were written.
pub fn run(
    store: &vaidya_store::Location,
    dir: &FsPath,
    spec: &Spec,
    who: &Principal,
    policies: &vaidya_policy::Policies,
    progress: &Progress,
) -> Result<(Manifest, BTreeSet<String>), ApiError> {
    std::fs::create_dir_all(dir).map_err(|e| ApiError::internal(format!("cannot create {}: {e}", dir.display())))?;
    let conn = store.open_reader()?;
    let actor = authorize::actor(who);
    let viewer = Viewer::of(who);
    let mut cache = FactsCache::default();
    let mut patients = BTreeSet::new();
    let mut files = vec![];
    let mut withheld = 0u64;
    let io = |e: std::io::Error| ApiError::internal(format!("writing the export: {e}"));
    let transaction_ms = vaidya_store::scan::in_snapshot(&conn, |conn, at| -> Result<i64, ApiError> {
        for rtype in &spec.types {
            *progress.current.lock().expect("progress lock") = rtype.clone();
            let mut part = 0usize;
            let mut out: Option<Writer> = None;
            vaidya_store::scan::current_of_type(conn, rtype, spec.since_ms, |_id, _version, _updated, content| -> Result<bool, ApiError> {
                if progress.cancel.load(Ordering::Relaxed) {
                    return Ok(false);
                }
                let d = authorize::describe_stored(rtype, content)?;
                let patient = authorize::described_patient(&d);
                let wanted = match (&spec.level, &patient) {
                    (Level::System, _) => true,
                    (Level::Patient, p) => p.is_some(),
                    (Level::Group { members, .. }, Some(p)) => members.contains(p),
                    (Level::Group { .. }, None) => false,
                };
                if !wanted {
                    return Ok(true);
                }
                let target = authorize::complete_cached(conn, &actor, &d, &mut cache)?;
                let decide = |action| policies.decide_by_attributes(&actor, action, &target, Facts::default()).map(|v| v.allowed).map_err(|e| ApiError::internal(e.to_string()));
                if !visible(&viewer, rtype, content) || !decide(Action::Read)? || !decide(Action::Export)? {
                    withheld += 1;
                    return Ok(true);
                }
                if out.as_ref().is_none_or(|w| w.count as usize >= spec.max_per_file) {
                    if let Some(w) = out.take() {
                        files.push(finish(w)?);
                    }
                    part += 1;
                    let name = format!("{rtype}-{part}.ndjson");
                    let f = std::fs::File::create(dir.join(&name)).map_err(io)?;
                    out = Some(Writer { file: std::io::BufWriter::with_capacity(1 << 20, f), name, count: 0 });
                }
                let w = out.as_mut().expect("opened above");
                if content.contains(&b'\n') {
                    // Stored JSON is compact; should a body ever hold a raw newline, it is
                    // re-serialised, since NDJSON is one resource per line.
                    let v: Value = serde_json::from_slice(content).map_err(|e| ApiError::internal(e.to_string()))?;
                    serde_json::to_writer(&mut w.file, &v).map_err(|e| ApiError::internal(e.to_string()))?;
                } else {
                    w.file.write_all(content).map_err(io)?;
                }
                w.file.write_all(b"\n").map_err(io)?;
                w.count += 1;
                if let Some(p) = patient {
                    patients.insert(p);
                }
                progress.written.fetch_add(1, Ordering::Relaxed);
                Ok(true)
            })?;
            if let Some(w) = out.take() {
                files.push(finish(w)?);
            }
            if progress.cancel.load(Ordering::Relaxed) {
                break;
            }
        }
        Ok(at)
    })?;
    Ok((Manifest { transaction_ms, files, withheld }, patients))
}

fn finish(w: Writer) -> Result<OutFile, ApiError> {
    let rtype = w.name.rsplit_once('-').map(|(t, _)| t.to_string()).unwrap_or_default();
    let f = w.file.into_inner().map_err(|e| ApiError::internal(format!("writing the export: {e}")))?;
    f.sync_all().map_err(|e| ApiError::internal(format!("writing the export: {e}")))?;
    Ok(OutFile { rtype, name: w.name, count: w.count })
}

// --- status, cancel, list, download ------------------------------------------------------------

fn manifest_json(job: &Job, m: &Manifest) -> Value {
    let output: Vec<Value> = m
        .files
        .iter()
        .map(|f| json!({"type": f.rtype, "url": format!("{}/$export-file/{}/{}", job.base, job.id, f.name), "count": f.count}))
        .collect();
    json!({
        "transactionTime": vaidya_fhir::datetime::format_instant(m.transaction_ms),
        "request": job.request,
        "requiresAccessToken": true,
        "output": output,
        "error": [],
        "extension": {"https://vaidya.dev/fhir/StructureDefinition/export-approved-by": job.approved_by}
    })
}

fn progress_response(text: String) -> Response {
    let mut resp = StatusCode::ACCEPTED.into_response();
    let h = resp.headers_mut();
    h.insert("x-progress", HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("in progress")));
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    resp
}

async fn status(
    Extension(jobs): Extension<Arc<Jobs>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    jobs.sweep();
    let mut all = jobs.jobs.lock().expect("jobs lock");
    let job = visible_job(&mut all, &id, &who)?;
    match &job.state {
        State_::AwaitingApproval => Ok(progress_response("awaiting approval".into())),
        State_::Queued => Ok(progress_response("approved, waiting for a free export slot".into())),
        State_::Running => {
            let current = job.progress.current.lock().expect("progress lock").clone();
            Ok(progress_response(format!("exporting {current}: {} resources written", job.progress.written.load(Ordering::Relaxed))))
        }
        State_::Done(m) => {
            let mut resp = wire::json_response(StatusCode::OK, &manifest_json(job, m));
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            if let Some(f) = job.finished_ms {
                let expires = std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(f + jobs.expire_ms).unwrap_or(0));
                if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(expires)) {
                    resp.headers_mut().insert(header::EXPIRES, v);
                }
            }
            Ok(resp)
        }
        State_::Failed(why) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, IssueType::Exception, format!("export job {id} failed: {why}"))),
        State_::Rejected { by, reason } => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            IssueType::Forbidden,
            format!("export job {id} was rejected by {by}{}", reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default()),
        )),
    }
}

async fn cancel(Extension(jobs): Extension<Arc<Jobs>>, Extension(who): Extension<Principal>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let mut all = jobs.jobs.lock().expect("jobs lock");
    visible_job(&mut all, &id, &who)?;
    let job = all.remove(&id).expect("found above");
    job.progress.cancel.store(true, Ordering::Relaxed);
    // A running job's task removes what it wrote when it sees the flag; the rest goes now.
    if !matches!(job.state, State_::Running) {
        remove_dir(&jobs.dir(&id));
    }
    drop(all);
    let msg = format!("export job {id} cancelled; its files are removed");
    Ok(wire::json_response(StatusCode::ACCEPTED, &operation_outcome(&[Issue::information(IssueType::Informational, msg)])))
}

async fn list(Extension(jobs): Extension<Arc<Jobs>>, Extension(who): Extension<Principal>) -> Result<Response, ApiError> {
    jobs.sweep();
    let all = jobs.jobs.lock().expect("jobs lock");
    let mut mine: Vec<&Job> = all.values().filter(|j| who.role == APPROVER_ROLE || j.owner.user == who.user).collect();
    mine.sort_by_key(|j| j.created_ms);
    let parameter: Vec<Value> = mine
        .iter()
        .map(|j| {
            json!({"name": "job", "part": [
                {"name": "id", "valueString": j.id},
                {"name": "status", "valueCode": j.state.code()},
                {"name": "requester", "valueString": j.owner.user},
                {"name": "request", "valueUri": j.request},
                {"name": "requested", "valueInstant": vaidya_fhir::datetime::format_instant(j.created_ms)}
            ]})
        })
        .collect();
    Ok(wire::json_response(StatusCode::OK, &json!({"resourceType": "Parameters", "parameter": parameter})))
}

/// Chunks of a file read on a blocking thread, as a body stream.
struct Chunks(tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>);

impl futures_core::Stream for Chunks {
    type Item = std::io::Result<Bytes>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

async fn download(
    Extension(jobs): Extension<Arc<Jobs>>,
    Extension(who): Extension<Principal>,
    Path((id, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let path = {
        let mut all = jobs.jobs.lock().expect("jobs lock");
        let job = visible_job(&mut all, &id, &who)?;
        if job.owner.user != who.user {
            return Err(ApiError::new(StatusCode::FORBIDDEN, IssueType::Forbidden, "only the account that requested an export downloads its files"));
        }
        let State_::Done(m) = &job.state else {
            return Err(ApiError::new(StatusCode::CONFLICT, IssueType::Conflict, format!("export job {id} is {}", job.state.code())));
        };
        // Only names the manifest lists: nothing else under the data directory can be asked for.
        let f = m.files.iter().find(|f| f.name == file).ok_or_else(|| ApiError::not_found(format!("export job {id} has no file {file}")))?;
        jobs.dir(&id).join(&f.name)
    };
    let f = std::fs::File::open(&path).map_err(|e| ApiError::new(StatusCode::GONE, IssueType::Deleted, format!("the file is gone: {e}")))?;
    let len = f.metadata().map(|m| m.len()).ok();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut f = f;
        loop {
            let mut buf = vec![0u8; 256 * 1024];
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                        break; // the client went away
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(Chunks(rx)));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(len) = len {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    // The audit middleware records the download (action `export`, the file named); the
    // patients in it are named by the job's end event.
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(q.as_bytes()).into_owned().collect()
    }

    #[test]
    fn kick_off_parameters() {
        let k = parse_kick_off(&pairs("_type=Patient,Observation&_type=Patient&_outputFormat=ndjson&_since=2026-01-02T03:04:05Z")).unwrap();
        assert_eq!(k.types, Some(vec!["Patient".to_string(), "Observation".to_string()]));
        assert_eq!(k.since_ms, vaidya_fhir::datetime::parse_date_range("2026-01-02T03:04:05Z").map(|r| r.0));
        assert_eq!(parse_kick_off(&[]).unwrap(), KickOff { types: None, since_ms: None });
        for bad in ["_type=Patient,Nonsense", "_type=", "_type=Patient,,Observation", "_since=2026-01-02", "_since=yesterday",
            "_since=2026-01-02T03:04", "_outputFormat=text/csv", "_typeFilter=Observation%3Fstatus%3Dfinal", "foo=bar"] {
            assert!(parse_kick_off(&pairs(bad)).is_err(), "{bad} should be refused");
        }
        let ist = parse_kick_off(&pairs("_since=2026-01-02T03:04:05.123%2B05:30")).unwrap().since_ms;
        assert_eq!(ist, vaidya_fhir::datetime::parse_date_range("2026-01-01T21:34:05.123Z").map(|r| r.0));
        assert_eq!(parse_kick_off(&pairs("_since=2026-01-02T03:04:05.123+05:30")).unwrap().since_ms, ist, "an unencoded + is read as one");
    }

    #[test]
    fn prefer_header() {
        let mut h = HeaderMap::new();
        assert!(!wants_async(&h));
        h.insert("prefer", HeaderValue::from_static("return=minimal, respond-async"));
        assert!(wants_async(&h));
        h.insert("prefer", HeaderValue::from_static("respond-sync"));
        assert!(!wants_async(&h));
    }

    #[test]
    fn group_members_are_active_patients() {
        let g = json!({"resourceType": "Group", "member": [
            {"entity": {"reference": "Patient/a"}},
            {"entity": {"reference": "Patient/b"}, "inactive": true},
            {"entity": {"reference": "Practitioner/c"}}
        ]});
        assert_eq!(group_members(&g), HashSet::from(["a".to_string()]));
    }
}
