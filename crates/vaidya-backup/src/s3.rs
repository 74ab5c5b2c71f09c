//! S3-compatible object storage with Object Lock (see `S3Target`).
//!
//! Requests are signed with AWS's SigV4 signer and sent with ureq (blocking; the shipper and
//! restore have their own threads); URLs are path-style (`{endpoint}/{bucket}/{key}`), which
//! every S3-compatible server understands and which needs no DNS per bucket.

mod sigv4;
mod xml;

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use md5::Digest as _;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::target::{ObjectVersion, Safety, Target, TargetError};
use sigv4::{Signer, encode};

/// Time to open a TCP (and TLS) connection: a bucket that does not answer in this long is down.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for a whole request, body included: a 64 MiB segment needs about 75 KB/s to make it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Time from the request sent to the response's first byte (a stuck server, not a slow link).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2 * 60);
/// Largest object `get` reads into memory; segments are far smaller.
pub const MAX_GET_BYTES: u64 = 1 << 30;
/// S3's limit for a single PutObject (larger objects need multipart uploads, which we do not
/// use: segments are small).
pub const MAX_PUT_BYTES: usize = 5 << 30;
/// Largest XML response read (a listing page of 1000 versions is about 400 KB).
const MAX_XML_BYTES: u64 = 16 << 20;
/// Largest error body read; S3's error documents are a few hundred bytes.
const MAX_ERROR_BYTES: u64 = 1 << 20;
/// S3 allows retention of at most 100 years.
const MAX_RETENTION_DAYS: u32 = 36_500;
/// Listing pages followed before giving up (1000 versions a page: a billion versions).
const MAX_LIST_PAGES: usize = 1_000_000;

/// Where and how to reach the bucket. Build it from the server's configuration.
#[derive(Clone)]
pub struct S3Config {
    /// `http://127.0.0.1:8333`, `https://s3.ap-south-1.amazonaws.com`; no bucket in it.
    pub endpoint: String,
    pub bucket: String,
    /// The signing region (`ap-south-1`; any value for most S3-compatible servers).
    pub region: String,
    /// Prepended to every key (`hospital/`); may be empty.
    pub prefix: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Object Lock retention (COMPLIANCE mode) set on each object written; `None` leaves it
    /// to the bucket's default retention.
    pub retention_days: Option<u32>,
    /// The target's name in messages and metrics.
    pub name: String,
}

/// By hand, so that the secret key never reaches a log.
impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("retention_days", &self.retention_days)
            .finish()
    }
}

/// A bucket on S3 or an S3-compatible server (SeaweedFS, MinIO, Ceph) as a backup target.
pub struct S3Target {
    config: S3Config,
    /// The endpoint without a trailing `/`.
    endpoint: String,
    signer: Signer,
    agent: ureq::Agent,
    /// Versions asked for per listing page (S3's maximum, 1000, unless a test lowers it).
    page_size: u32,
}

impl fmt::Debug for S3Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Target").field("config", &self.config).finish_non_exhaustive()
    }
}

/// A response: its status, the version id S3 gave a written object, and the body read.
pub(crate) struct Reply {
    pub status: u16,
    pub version_id: Option<String>,
    pub body: Vec<u8>,
}

impl Reply {
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// What an S3 error document says.
struct S3Error {
    code: String,
    message: String,
}

impl S3Target {
    pub fn new(config: S3Config) -> Result<Self, TargetError> {
        let invalid = |message: String| TargetError::Refused { target: config.name.clone(), message };
        let endpoint = config.endpoint.trim_end_matches('/').to_string();
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
            || endpoint.contains(['?', '#'])
        {
            return Err(invalid(format!(
                "endpoint {:?} must be an http:// or https:// URL without a query",
                config.endpoint
            )));
        }
        if config.bucket.is_empty() || config.bucket.contains('/') {
            return Err(invalid(format!("bucket name {:?} is not valid", config.bucket)));
        }
        if config.region.is_empty() || config.access_key_id.is_empty() {
            return Err(invalid("region and access key id must be set".into()));
        }
        if let Some(days) = config.retention_days
            && !(1..=MAX_RETENTION_DAYS).contains(&days)
        {
            return Err(invalid(format!(
                "retention of {days} days is outside 1..={MAX_RETENTION_DAYS}"
            )));
        }
        let agent = ureq::Agent::config_builder()
            // S3 answers errors with an XML document we want to read, not a transport error.
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            .timeout_recv_response(Some(RESPONSE_TIMEOUT))
            // A redirect (wrong region) would drop the signature's validity; report it instead.
            .max_redirects(0)
            .max_redirects_will_error(false)
            .user_agent("vaidya-backup")
            .build()
            .new_agent();
        let signer = Signer::new(&config.access_key_id, &config.secret_access_key, &config.region);
        Ok(S3Target { endpoint, signer, agent, page_size: 1000, config })
    }

    pub fn config(&self) -> &S3Config {
        &self.config
    }

    /// Lowers the listing page size (S3's is 1000), so that a test can exercise pagination
    /// without writing thousands of objects.
    pub fn with_page_size(mut self, page_size: u32) -> Self {
        self.page_size = page_size.clamp(1, 1000);
        self
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{}", self.config.prefix, key)
    }

    /// Sends one signed request to the bucket (`key` `None`) or to an object, and reads the
    /// response body: up to `MAX_GET_BYTES` for an object's GET, `MAX_XML_BYTES` for the rest
    /// and `MAX_ERROR_BYTES` for errors. Any HTTP status comes back as a `Reply`; only
    /// transport failures are errors here.
    pub(crate) fn request(
        &self,
        op: &str,
        method: &str,
        key: Option<&str>,
        query: &[(&str, &str)],
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Result<Reply, TargetError> {
        let mut url = format!("{}/{}", self.endpoint, encode(&self.config.bucket, false));
        if let Some(key) = key {
            url.push('/');
            url.push_str(&encode(key, true));
        }
        for (i, (k, v)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&encode(k, false));
            // Flags such as `?versions` go bare, as AWS's own SDKs send them.
            if !v.is_empty() {
                url.push('=');
                url.push_str(&encode(v, false));
            }
        }
        let signed = self
            .signer
            .sign(method, &url, headers, body)
            .map_err(|message| TargetError::Refused { target: self.config.name.clone(), message })?;
        let mut builder = ureq::http::Request::builder().method(method).uri(&url);
        for (k, v) in headers {
            builder = builder.header(*k, v.as_str());
        }
        for (k, v) in &signed {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let bad_request = |e: ureq::http::Error| TargetError::Refused {
            target: self.config.name.clone(),
            message: format!("{op}: cannot build the request: {e}"),
        };
        let sent = if method == "PUT" || method == "POST" {
            self.agent.run(builder.body(body).map_err(bad_request)?)
        } else {
            self.agent.run(builder.body(()).map_err(bad_request)?)
        };
        let mut response = sent.map_err(|e| self.transport_error(op, e))?;
        let status = response.status().as_u16();
        let version_id = response
            .headers()
            .get("x-amz-version-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let limit = match (status, method, key) {
            (200..=299, "GET", Some(_)) => MAX_GET_BYTES,
            (200..=299, _, _) => MAX_XML_BYTES,
            _ => MAX_ERROR_BYTES,
        };
        let body = match response.body_mut().with_config().limit(limit).read_to_vec() {
            Ok(body) => body,
            // An error's status says enough without its (oversized) document.
            Err(ureq::Error::BodyExceedsLimit(_)) if limit == MAX_ERROR_BYTES => Vec::new(),
            Err(ureq::Error::BodyExceedsLimit(_)) => {
                return Err(TargetError::Refused {
                    target: self.config.name.clone(),
                    message: format!("{op}: the response is larger than the {limit}-byte limit"),
                });
            }
            Err(e) => return Err(self.transport_error(op, e)),
        };
        Ok(Reply { status, version_id, body })
    }

    fn transport_error(&self, op: &str, e: ureq::Error) -> TargetError {
        TargetError::Unreachable {
            target: self.config.name.clone(),
            message: format!("{op}: cannot reach S3 at {}: {e}", self.endpoint),
        }
    }

    /// The error for a non-2xx reply: S3 said no (`Refused`, with its code and message), or is
    /// unavailable for now (5xx: `Unreachable`, worth retrying).
    fn error(&self, op: &str, reply: &Reply) -> TargetError {
        let detail = match parse_error(&reply.body) {
            Some(e) if e.message.is_empty() => e.code,
            Some(e) => format!("{}: {}", e.code, e.message),
            None => "no error document".to_string(),
        };
        let message = format!("{op}: S3 answered HTTP {} ({detail})", reply.status);
        if reply.status >= 500 {
            TargetError::Unreachable { target: self.config.name.clone(), message }
        } else {
            TargetError::Refused { target: self.config.name.clone(), message }
        }
    }

    fn xml(&self, op: &str, reply: &Reply) -> Result<xml::Element, TargetError> {
        xml::parse(&reply.body).map_err(|e| TargetError::Refused {
            target: self.config.name.clone(),
            message: format!("{op}: cannot read S3's answer: {e}"),
        })
    }

    /// PutObject; returns the version id S3 gave the object (none without versioning).
    fn put_object(&self, full_key: &str, body: &[u8]) -> Result<Option<String>, TargetError> {
        if body.len() > MAX_PUT_BYTES {
            return Err(TargetError::Refused {
                target: self.config.name.clone(),
                message: format!("{full_key}: {} bytes exceed S3's single-put limit", body.len()),
            });
        }
        let mut headers = vec![
            ("content-type", "application/octet-stream".to_string()),
            // Object Lock puts must carry an integrity checksum; Content-MD5 is the one
            // every S3-compatible server knows.
            ("content-md5", content_md5(body)),
        ];
        if let Some(days) = self.config.retention_days {
            headers.push(("x-amz-object-lock-mode", "COMPLIANCE".to_string()));
            headers.push(("x-amz-object-lock-retain-until-date", retain_until(days)?));
        }
        let op = format!("put {full_key}");
        let reply = self.request(&op, "PUT", Some(full_key), &[], &headers, body)?;
        if !reply.ok() {
            return Err(self.error(&op, &reply));
        }
        Ok(reply.version_id)
    }

    /// DELETE of an object (a delete marker where versioning is on) or of one version.
    fn delete(&self, full_key: &str, version_id: Option<&str>) -> Result<Reply, TargetError> {
        let query: Vec<(&str, &str)> = version_id.map(|v| ("versionId", v)).into_iter().collect();
        self.request(&format!("delete {full_key}"), "DELETE", Some(full_key), &query, &[], &[])
    }

    /// One page of ListObjectVersions: the entries, in the server's order, and the (key,
    /// version id) marker where the next page starts.
    #[allow(clippy::type_complexity)]
    fn list_page(
        &self,
        full_prefix: &str,
        marker: Option<&(String, String)>,
    ) -> Result<(Vec<ObjectVersion>, Option<(String, String)>), TargetError> {
        let page_size = self.page_size.to_string();
        let mut query = vec![("versions", ""), ("prefix", full_prefix), ("max-keys", page_size.as_str())];
        if let Some((key, version)) = marker {
            query.push(("key-marker", key));
            if !version.is_empty() {
                query.push(("version-id-marker", version));
            }
        }
        let op = format!("list versions under {full_prefix:?}");
        let reply = self.request(&op, "GET", None, &query, &[], &[])?;
        if !reply.ok() {
            return Err(self.error(&op, &reply));
        }
        let root = self.xml(&op, &reply)?;
        let bad = |what: String| TargetError::Refused {
            target: self.config.name.clone(),
            message: format!("{op}: S3's listing {what}"),
        };
        if root.name != "ListVersionsResult" {
            return Err(bad(format!("is a <{}>, not a <ListVersionsResult>", root.name)));
        }
        let mut entries = Vec::new();
        for child in &root.children {
            let delete_marker = match child.name.as_str() {
                "Version" => false,
                "DeleteMarker" => true,
                _ => continue,
            };
            let key = child.text_of("Key").ok_or_else(|| bad("has an entry without a key".into()))?;
            let last_modified = child
                .text_of("LastModified")
                .ok_or_else(|| bad(format!("has no LastModified for {key}")))?;
            let last_modified_ms = OffsetDateTime::parse(last_modified, &Rfc3339)
                .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
                .map_err(|e| bad(format!("has a bad LastModified {last_modified:?}: {e}")))?;
            let size = match child.text_of("Size") {
                Some(s) => s.parse::<u64>().map_err(|_| bad(format!("has a bad Size {s:?}")))?,
                None => 0,
            };
            let version_id = child.text_of("VersionId").filter(|v| !v.is_empty()).map(str::to_owned);
            let key = key
                .strip_prefix(&self.config.prefix)
                .ok_or_else(|| bad(format!("has {key:?}, outside the prefix")))?
                .to_string();
            entries.push(ObjectVersion { key, version_id, delete_marker, size, last_modified_ms });
        }
        if root.text_of("IsTruncated") != Some("true") {
            return Ok((entries, None));
        }
        let next_key = root.text_of("NextKeyMarker").filter(|k| !k.is_empty());
        let Some(next_key) = next_key else {
            return Err(bad("is truncated but gives no NextKeyMarker".into()));
        };
        let next_version = root.text_of("NextVersionIdMarker").unwrap_or("").to_string();
        Ok((entries, Some((next_key.to_string(), next_version))))
    }

    /// A bucket setting read by `check`: the parsed document, or the error's code for the
    /// facts (None when the server says the setting does not exist, `absent_code`).
    fn bucket_setting(
        &self,
        op: &str,
        flag: &str,
        absent_code: &str,
    ) -> Result<Result<Option<xml::Element>, String>, TargetError> {
        let reply = self.request(op, "GET", None, &[(flag, "")], &[], &[])?;
        if reply.ok() {
            return Ok(Ok(Some(self.xml(op, &reply)?)));
        }
        let code = parse_error(&reply.body).map(|e| e.code).unwrap_or_default();
        if code == absent_code {
            return Ok(Ok(None));
        }
        match self.error(op, &reply) {
            e @ TargetError::Unreachable { .. } => Err(e),
            _ if code.is_empty() => Ok(Err(format!("HTTP {}", reply.status))),
            _ => Ok(Err(code)),
        }
    }

    fn check_versioning(&self, safety: &mut Safety) -> Result<(), TargetError> {
        let bucket = &self.config.bucket;
        match self.bucket_setting("read the versioning setting", "versioning", "")? {
            Ok(doc) => {
                let status = doc.as_ref().and_then(|d| d.text_of("Status")).unwrap_or("");
                let shown = if status.is_empty() { "never enabled" } else { status };
                safety.facts.push(format!("versioning: {shown}"));
                if status != "Enabled" {
                    safety.problems.push(format!(
                        "Versioning is not enabled on bucket {bucket} ({shown}), so a backup can \
                         be overwritten or deleted for good."
                    ));
                }
            }
            Err(code) => safety.problems.push(format!(
                "The versioning setting of bucket {bucket} could not be read ({code}), so the \
                 check cannot confirm that old backups are kept."
            )),
        }
        Ok(())
    }

    fn check_object_lock(&self, safety: &mut Safety) -> Result<(), TargetError> {
        let bucket = &self.config.bucket;
        let op = "read the Object Lock configuration";
        let doc = match self.bucket_setting(op, "object-lock", "ObjectLockConfigurationNotFoundError")? {
            Ok(Some(doc)) => doc,
            Ok(None) => {
                safety.facts.push("object lock: not configured".into());
                safety.problems.push(format!(
                    "Object Lock is not enabled on bucket {bucket}, so nothing stops stolen \
                     credentials from deleting backups; create the bucket with Object Lock \
                     (COMPLIANCE mode)."
                ));
                return Ok(());
            }
            Err(code) => {
                safety.problems.push(format!(
                    "The Object Lock configuration of bucket {bucket} could not be read ({code}), \
                     so the check cannot confirm that backups are locked."
                ));
                return Ok(());
            }
        };
        let enabled = doc.text_of("ObjectLockEnabled") == Some("Enabled");
        let default = doc.child("Rule").and_then(|r| r.child("DefaultRetention"));
        let mode = default.and_then(|d| d.text_of("Mode")).unwrap_or("");
        let period = default.and_then(|d| {
            d.text_of("Days")
                .map(|n| count(n, "day"))
                .or_else(|| d.text_of("Years").map(|n| count(n, "year")))
        });
        safety.facts.push(format!(
            "object lock: {}; default retention: {}",
            if enabled { "Enabled" } else { "not enabled" },
            match (&period, mode) {
                (Some(p), m) => format!("{m} {p}"),
                (None, _) => "none".to_string(),
            }
        ));
        if let Some(days) = self.config.retention_days {
            let days = count(&days.to_string(), "day");
            safety.facts.push(format!("retention set by Vaidya on each backup: COMPLIANCE {days}"));
        }
        if !enabled {
            safety.problems.push(format!(
                "Object Lock is not enabled on bucket {bucket}, so nothing stops stolen \
                 credentials from deleting backups; create the bucket with Object Lock \
                 (COMPLIANCE mode)."
            ));
        } else if default.is_some() && mode != "COMPLIANCE" {
            safety.problems.push(format!(
                "The default retention of bucket {bucket} is {mode} mode, which an administrator \
                 account can lift; set it to COMPLIANCE."
            ));
        } else if default.is_none() && self.config.retention_days.is_none() {
            safety.problems.push(format!(
                "Bucket {bucket} has no default retention and Vaidya sets none \
                 (retention_days), so backups are stored unlocked."
            ));
        }
        Ok(())
    }

    /// Writes a probe object and tries to delete it, as stolen credentials would.
    fn check_deletes(&self, safety: &mut Safety) -> Result<(), TargetError> {
        let probe = format!("{}probe/{:016x}", self.config.prefix, rand::random::<u64>());
        let version = match self.put_object(&probe, b"vaidya backup check probe\n") {
            Ok(version) => version,
            Err(e @ TargetError::Unreachable { .. }) => return Err(e),
            Err(e) => {
                safety.problems.push(format!(
                    "The server's credentials cannot write to the bucket, so no backup can be \
                     shipped ({e})."
                ));
                return Ok(());
            }
        };
        safety.facts.push(format!(
            "probe object written: {probe} (version {})",
            version.as_deref().unwrap_or("none")
        ));

        let reply = self.delete(&probe, None)?;
        if reply.ok() {
            safety.problems.push(
                "The server's credentials can delete backups (a test delete succeeded); give \
                 them permission to write and read only, not to delete."
                    .into(),
            );
        } else {
            safety.facts.push(format!("delete without a version id: refused ({})", code_of(&reply)));
        }

        let Some(version) = version else {
            safety.facts.push("the probe has no version id, so there is no version to protect".into());
            return Ok(());
        };
        let reply = self.delete(&probe, Some(&version))?;
        if reply.ok() {
            safety.problems.push(
                "The server's credentials permanently destroyed a stored backup version: backups \
                 are NOT safe from ransomware; lock the bucket in COMPLIANCE mode and do not \
                 allow these credentials to delete versions."
                    .into(),
            );
        } else {
            safety.facts.push(format!("delete of a locked version: refused ({})", code_of(&reply)));
        }
        Ok(())
    }
}

impl Target for S3Target {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn put(&self, key: &str, body: &[u8]) -> Result<(), TargetError> {
        self.put_object(&self.full_key(key), body).map(|_| ())
    }

    fn list_versions(&self, prefix: &str) -> Result<Vec<ObjectVersion>, TargetError> {
        let full_prefix = self.full_key(prefix);
        let mut all = Vec::new();
        let mut marker: Option<(String, String)> = None;
        for _ in 0..MAX_LIST_PAGES {
            let (entries, next) = self.list_page(&full_prefix, marker.as_ref())?;
            all.extend(entries);
            match next {
                // Kept in the server's order, which is the one the trait promises: S3 (and
                // SeaweedFS) list by key, then newest first, markers among versions. Not
                // re-sorted: LastModified has whole seconds, and only the server knows the
                // order of two versions written in the same second.
                None => return Ok(all),
                Some(next) if marker.as_ref() == Some(&next) => {
                    return Err(TargetError::Refused {
                        target: self.config.name.clone(),
                        message: format!("listing {full_prefix:?} does not advance past {next:?}"),
                    });
                }
                Some(next) => marker = Some(next),
            }
        }
        Err(TargetError::Refused {
            target: self.config.name.clone(),
            message: format!("listing {full_prefix:?} has more than {MAX_LIST_PAGES} pages"),
        })
    }

    fn get(&self, key: &str, version_id: Option<&str>) -> Result<Vec<u8>, TargetError> {
        let full_key = self.full_key(key);
        let query: Vec<(&str, &str)> = version_id.map(|v| ("versionId", v)).into_iter().collect();
        let op = match version_id {
            Some(v) => format!("get {full_key} version {v}"),
            None => format!("get {full_key}"),
        };
        let reply = self.request(&op, "GET", Some(&full_key), &query, &[], &[])?;
        match reply.status {
            200..=299 => Ok(reply.body),
            404 => Err(TargetError::NotFound { target: self.config.name.clone(), key: key.to_string() }),
            _ => Err(self.error(&op, &reply)),
        }
    }

    fn check(&self) -> Result<Safety, TargetError> {
        let mut safety = Safety::default();
        safety.facts.push(format!(
            "bucket {} at {} (prefix {:?})",
            self.config.bucket, self.endpoint, self.config.prefix
        ));
        self.check_versioning(&mut safety)?;
        self.check_object_lock(&mut safety)?;
        self.check_deletes(&mut safety)?;
        Ok(safety)
    }
}

/// The `Content-MD5` header value: base64 of the body's MD5.
pub(crate) fn content_md5(body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body))
}

/// Now plus `days`, whole seconds, RFC 3339 UTC (`2026-01-31T10:00:00Z`).
fn retain_until(days: u32) -> Result<String, TargetError> {
    let now = OffsetDateTime::now_utc();
    let until = now.replace_nanosecond(0).unwrap_or(now) + time::Duration::days(i64::from(days));
    until.format(&Rfc3339).map_err(|e| TargetError::Refused {
        target: String::new(),
        message: format!("cannot format the retention date: {e}"),
    })
}

fn parse_error(body: &[u8]) -> Option<S3Error> {
    let root = xml::parse(body).ok()?;
    if root.name != "Error" {
        return None;
    }
    Some(S3Error {
        code: root.text_of("Code").unwrap_or("").to_string(),
        message: root.text_of("Message").unwrap_or("").to_string(),
    })
}

/// "1 day", "30 days".
fn count(n: &str, unit: &str) -> String {
    if n == "1" { format!("1 {unit}") } else { format!("{n} {unit}s") }
}

/// The S3 error code of a reply, or its HTTP status when it has none.
fn code_of(reply: &Reply) -> String {
    match parse_error(&reply.body) {
        Some(e) if !e.code.is_empty() => e.code,
        _ => format!("HTTP {}", reply.status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> S3Config {
        S3Config {
            endpoint: "http://127.0.0.1:1/".into(),
            bucket: "b".into(),
            region: "us-east-1".into(),
            prefix: "hospital/".into(),
            access_key_id: "AKID".into(),
            secret_access_key: "very-secret-key".into(),
            retention_days: Some(30),
            name: "bucket".into(),
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let target = S3Target::new(config()).unwrap();
        let shown = format!("{target:?} {:?}", target.config());
        assert!(!shown.contains("very-secret-key"), "{shown}");
        assert!(shown.contains("AKID"));
    }

    #[test]
    fn rejects_bad_configuration() {
        let bad = |f: fn(&mut S3Config)| {
            let mut c = config();
            f(&mut c);
            S3Target::new(c).is_err()
        };
        assert!(bad(|c| c.endpoint = "127.0.0.1:8333".into()));
        assert!(bad(|c| c.bucket = String::new()));
        assert!(bad(|c| c.retention_days = Some(0)));
        assert!(!bad(|c| c.retention_days = None));
    }

    #[test]
    fn md5_and_retention_formats() {
        // RFC 1864's example digest of the empty body.
        assert_eq!(content_md5(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
        let until = retain_until(1).unwrap();
        assert!(until.ends_with('Z') && !until.contains('.'), "{until}");
        let parsed = OffsetDateTime::parse(&until, &Rfc3339).unwrap();
        let ahead = parsed - OffsetDateTime::now_utc();
        assert!(ahead > time::Duration::hours(23) && ahead <= time::Duration::days(1), "{ahead}");
    }

    #[test]
    fn reads_s3_error_documents() {
        let doc = b"<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>Access Denied.</Message><Resource>/b/k</Resource></Error>";
        let e = parse_error(doc).unwrap();
        assert_eq!((e.code.as_str(), e.message.as_str()), ("AccessDenied", "Access Denied."));
        assert!(parse_error(b"<html>nope</html>").is_none());
        assert!(parse_error(b"").is_none());
    }
}
