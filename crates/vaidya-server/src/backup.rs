//! Backups in the server: the `[backup]` targets, the shipper started by `vaidya serve`, its
//! status (for `/metrics`, `vaidya backup status` and alerts), and naming a target on the
//! command line.

use crate::config::{Backup, BackupTarget, Config, TargetKind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use vaidya_backup::segment::Ledger;
use vaidya_backup::ship::{ShipConfig, Shipper, TargetStatus};
use vaidya_backup::snapshotter::SnapshotPolicy;
use vaidya_backup::source::{AuditSource, DataSource, Source};
use vaidya_backup::target::Target;

/// Where backup state lives in a data directory: per-target positions and the status file.
pub const BACKUP_DIR: &str = "backup";
/// The status the running server writes every second.
pub const STATUS_FILE: &str = "status.json";

pub fn backup_dir(data: &Path) -> PathBuf {
    data.join(BACKUP_DIR)
}

/// The configured targets, built (credentials read).
pub fn targets(b: &Backup) -> Result<Vec<Arc<dyn Target>>, String> {
    if b.targets.is_empty() {
        return Err("[backup] names no [[backup.target]]".into());
    }
    let mut seen = std::collections::HashSet::new();
    b.targets
        .iter()
        .map(|t| {
            if !seen.insert(t.name.clone()) {
                return Err(format!("[[backup.target]] name '{}' is used twice", t.name));
            }
            target(t)
        })
        .collect()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// One configured target.
pub fn target(t: &BackupTarget) -> Result<Arc<dyn Target>, String> {
    if !valid_name(&t.name) {
        return Err(format!("[[backup.target]] name '{}': use letters, digits, '-' and '_' (at most 64)", t.name));
    }
    match t.kind {
        TargetKind::Dir => {
            let path = t.path.as_ref().ok_or_else(|| format!("backup target '{}' (dir) needs `path`", t.name))?;
            Ok(Arc::new(vaidya_backup::dir::DirTarget::new(&t.name, path)))
        }
        TargetKind::S3 => {
            let need = |v: &Option<String>, what: &str| v.clone().ok_or_else(|| format!("backup target '{}' (s3) needs `{what}`", t.name));
            let endpoint = need(&t.endpoint, "endpoint")?;
            let bucket = need(&t.bucket, "bucket")?;
            let key_id = secret(&t.name, "access_key_id", &t.access_key_id_env, &t.access_key_id_file)?;
            let secret_key = secret(&t.name, "secret_access_key", &t.secret_access_key_env, &t.secret_access_key_file)?;
            s3_target(&t.name, endpoint, bucket, t.region.clone(), t.prefix.clone(), key_id, secret_key, t.retention_days)
        }
    }
}

/// A credential from exactly one of an environment variable and a file.
fn secret(target: &str, what: &str, env: &Option<String>, file: &Option<PathBuf>) -> Result<String, String> {
    match (env, file) {
        (Some(var), None) => {
            std::env::var(var).map_err(|_| format!("backup target '{target}': environment variable {var} ({what}) is not set"))
        }
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .map_err(|e| format!("backup target '{target}': cannot read {what} from {}: {e}", path.display())),
        _ => Err(format!("backup target '{target}' (s3) needs exactly one of `{what}_env` and `{what}_file`")),
    }
}

#[allow(clippy::too_many_arguments)]
fn s3_target(
    name: &str,
    endpoint: String,
    bucket: String,
    region: String,
    prefix: String,
    access_key_id: String,
    secret_access_key: String,
    retention_days: Option<u32>,
) -> Result<Arc<dyn Target>, String> {
    let config = vaidya_backup::s3::S3Config {
        endpoint,
        bucket,
        region,
        prefix,
        access_key_id,
        secret_access_key,
        retention_days,
        name: name.to_string(),
    };
    Ok(Arc::new(vaidya_backup::s3::S3Target::new(config).map_err(|e| e.to_string())?))
}

/// A target named on the command line: a configured target's name, `s3://BUCKET/PREFIX?endpoint=URL&region=R`
/// (credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or a directory (`dir:PATH`,
/// a path with a `/`, or an existing directory).
pub fn target_from_spec(spec: &str, config: &Config) -> Result<Arc<dyn Target>, String> {
    if let Some(t) = config.backup.as_ref().and_then(|b| b.targets.iter().find(|t| t.name == spec)) {
        return target(t);
    }
    if let Some(rest) = spec.strip_prefix("s3://") {
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        let mut endpoint = None;
        let mut region = "us-east-1".to_string();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "endpoint" => endpoint = Some(v.into_owned()),
                "region" => region = v.into_owned(),
                other => {
                    return Err(format!("--from {spec}: unknown parameter '{other}' (endpoint, region)"));
                }
            }
        }
        let endpoint = endpoint.ok_or_else(|| format!("--from {spec}: add ?endpoint=https://..."))?;
        let env = |v: &str| std::env::var(v).map_err(|_| format!("--from {spec}: set {v} (the S3 credentials to read the bucket)"));
        let prefix = if prefix.is_empty() || prefix.ends_with('/') { prefix.to_string() } else { format!("{prefix}/") };
        return s3_target(
            "restore-source",
            endpoint,
            bucket.to_string(),
            region,
            prefix,
            env("AWS_ACCESS_KEY_ID")?,
            env("AWS_SECRET_ACCESS_KEY")?,
            None,
        );
    }
    if let Some(path) = spec.strip_prefix("dir:").or((spec.contains('/') || Path::new(spec).is_dir()).then_some(spec)) {
        return Ok(Arc::new(vaidya_backup::dir::DirTarget::new("restore-source", Path::new(path))));
    }
    Err(format!("--from {spec}: not a configured backup target, an s3:// address or a directory"))
}

/// Start shipping if `[backup]` is configured; in sync mode, gate the store's writes.
pub fn start(config: &Config, store: &Arc<vaidya_store::Store>, key: &vaidya_ledger::LedgerKey) -> Result<Option<Arc<Shipper>>, String> {
    let Some(b) = &config.backup else {
        tracing::warn!("no [backup] configured: the ledger is NOT shipped anywhere (docs/OPERATIONS.md, Backups)");
        return Ok(None);
    };
    let recipients = vaidya_backup::seal::Recipients::parse(&b.recipients).map_err(|e| format!("[backup] recipients: {e}"))?;
    let targets = targets(b)?;
    let key = Arc::new(vaidya_ledger::LedgerKey::from_private(key.private_text()).map_err(|e| e.to_string())?);
    let location = config.location()?;
    // Snapshots are copies of the SQLite file; a PostgreSQL database is shipped as segments
    // only (a restore replays them all).
    let snapshots = match &location {
        vaidya_store::Location::File(db) => snapshot_policy(b, db),
        vaidya_store::Location::Postgres(_) => None,
    };
    let audit = vaidya_audit::audit_dir(&config.data);
    let writer = store.clone();
    let sources: vaidya_backup::ship::SourceFactory = Box::new(move |ledger| -> Box<dyn Source> {
        match ledger {
            Ledger::Data => Box::new(WriterOnly { inner: DataSource::at(location.clone()), store: writer.clone() }),
            Ledger::Audit => Box::new(AuditSource::new(&audit)),
        }
    });
    let ship = ShipConfig {
        recipients,
        state_dir: backup_dir(&config.data),
        scan_every: Duration::from_secs(b.scan_seconds.max(1)),
        key,
        snapshots,
    };
    let names: Vec<String> = targets.iter().map(|t| t.name().to_string()).collect();
    let shipper = Arc::new(Shipper::start(ship, targets, sources, store.checkpoints()).map_err(|e| e.to_string())?);
    if b.mode == crate::config::BackupMode::Sync {
        store.gate_writes_on(shipper.shipped(), Duration::from_secs(b.sync_timeout_seconds.max(1)));
    }
    tracing::info!("backups: shipping both ledgers to {} ({:?} mode)", names.join(", "), b.mode);
    Ok(Some(shipper))
}

/// The data ledger as shipped by the server that writes it: with several servers on one
/// PostgreSQL database, the others ship nothing of it until one of them takes over (and then
/// ships from where its own record says; ranges shipped twice are harmless).
struct WriterOnly {
    inner: DataSource,
    store: Arc<vaidya_store::Store>,
}

impl Source for WriterOnly {
    fn ledger(&self) -> Ledger {
        self.inner.ledger()
    }

    fn next(&mut self, after: u64, with_state: bool) -> Result<Option<vaidya_backup::source::Range>, vaidya_backup::source::SourceError> {
        if !self.store.is_writer() {
            return Ok(None);
        }
        self.inner.next(after, with_state)
    }

    fn checkpointed(&mut self) -> Result<u64, vaidya_backup::source::SourceError> {
        self.inner.checkpointed()
    }
}

/// When to put a database snapshot into the targets; `None` when both counts are 0.
fn snapshot_policy(b: &crate::config::Backup, db: &Path) -> Option<SnapshotPolicy> {
    if b.snapshot_every_entries == 0 && b.snapshot_every_hours == 0 {
        return None;
    }
    Some(SnapshotPolicy {
        db: db.to_path_buf(),
        every_entries: if b.snapshot_every_entries == 0 { u64::MAX } else { b.snapshot_every_entries },
        every: if b.snapshot_every_hours == 0 { Duration::MAX } else { Duration::from_secs(b.snapshot_every_hours.saturating_mul(3600)) },
    })
}

/// The sizes of the data and audit ledgers at their last signed checkpoints (0 if unreadable).
pub fn signed_sizes(data: &Path, location: &vaidya_store::Location) -> (u64, u64) {
    let mut d = DataSource::at(location.clone());
    let mut a = AuditSource::new(&vaidya_audit::audit_dir(data));
    (d.checkpointed().unwrap_or(0), a.checkpointed().unwrap_or(0))
}

/// Every second: write the status file, and alert when a target falls behind or shows
/// objects or versions Vaidya never writes (once per condition, again when it clears).
pub fn watch(shipper: Arc<Shipper>, data: PathBuf, lag_alert: Duration, alerts: crate::alerts::Alerts) {
    std::thread::Builder::new()
        .name("vaidya-backup-status".into())
        .spawn(move || {
            let mut behind: std::collections::HashSet<String> = Default::default();
            let mut anomalous: std::collections::HashSet<String> = Default::default();
            loop {
                std::thread::sleep(Duration::from_secs(1));
                let status = shipper.status();
                if let Err(e) = write_status(&data, &shipper) {
                    tracing::warn!("cannot write the backup status file: {e}");
                }
                let now = vaidya_store::now_ms();
                for t in &status {
                    let late = is_behind(t, now, lag_alert);
                    if late && behind.insert(t.target.clone()) {
                        tracing::error!(target: "vaidya::alert", backup_target = %t.target, "ALERT: backup target is behind: {}", describe_lag(t, now));
                        alerts.raise("backup-behind", serde_json::json!({"target": t.target, "detail": describe_lag(t, now)}));
                    } else if !late && behind.remove(&t.target) {
                        tracing::info!(backup_target = %t.target, "backup target caught up");
                    }
                    if t.anomalies.any() && anomalous.insert(t.target.clone()) {
                        let detail = t.anomalies.examples.join("; ");
                        tracing::error!(target: "vaidya::alert", backup_target = %t.target, "ALERT: backup target holds objects or versions Vaidya never writes: {detail}");
                        alerts.raise("backup-tampering", serde_json::json!({"target": t.target, "detail": detail}));
                    }
                }
            }
        })
        .expect("the backup status thread starts");
}

/// Behind: entries signed more than `lag` ago are not confirmed by the target.
pub fn is_behind(t: &TargetStatus, now_ms: i64, lag: Duration) -> bool {
    let waiting = |l: &vaidya_backup::ship::LedgerStatus| l.checkpointed > l.shipped;
    let since = t.data.shipped_ms.min(t.audit.shipped_ms);
    (waiting(&t.data) || waiting(&t.audit)) && now_ms - since > lag.as_millis() as i64
}

fn describe_lag(t: &TargetStatus, now_ms: i64) -> String {
    format!(
        "data {} of {} entries shipped, audit {} of {}; last confirmed put {} s ago; {} failures (last: {})",
        t.data.shipped,
        t.data.checkpointed,
        t.audit.shipped,
        t.audit.checkpointed,
        (now_ms - t.data.shipped_ms.max(t.audit.shipped_ms)) / 1000,
        t.failures,
        t.last_error.as_deref().unwrap_or("none")
    )
}

/// Write the status file (every second while serving, and once more after the last ship).
pub fn write_status(data: &Path, shipper: &Shipper) -> std::io::Result<()> {
    let dir = backup_dir(data);
    std::fs::create_dir_all(&dir)?;
    let tmp = dir.join("status.json.tmp");
    let doc = serde_json::json!({
        "written_ms": vaidya_store::now_ms(),
        "targets": shipper.status(),
        "snapshot": shipper.snapshot_status(),
    });
    std::fs::write(&tmp, serde_json::to_vec_pretty(&doc).expect("status serialises"))?;
    std::fs::rename(tmp, dir.join(STATUS_FILE))
}

/// `/metrics` lines for the backups.
pub fn metrics(shipper: Option<&Shipper>) -> String {
    let Some(s) = shipper else {
        return "# HELP vaidya_backup_configured Whether backups are configured.\n# TYPE vaidya_backup_configured gauge\nvaidya_backup_configured 0\n".into();
    };
    let mut out = String::from(
        "# HELP vaidya_backup_configured Whether backups are configured.\n# TYPE vaidya_backup_configured gauge\nvaidya_backup_configured 1\n\
         # HELP vaidya_backup_shipped_entries Entries the target has confirmed.\n# TYPE vaidya_backup_shipped_entries gauge\n\
         # HELP vaidya_backup_signed_entries Entries signed by the server (ready to ship).\n# TYPE vaidya_backup_signed_entries gauge\n\
         # HELP vaidya_backup_last_shipped_timestamp_seconds When the target last confirmed a segment.\n# TYPE vaidya_backup_last_shipped_timestamp_seconds gauge\n\
         # HELP vaidya_backup_lag_p99_seconds Commit-to-confirmed lag, 99th percentile since start.\n# TYPE vaidya_backup_lag_p99_seconds gauge\n\
         # HELP vaidya_backup_failures_total Failed puts or listings (alert on increase).\n# TYPE vaidya_backup_failures_total counter\n\
         # HELP vaidya_backup_anomalies Delete markers, overwritten and unexpected objects seen at the last scan (alert if above 0).\n# TYPE vaidya_backup_anomalies gauge\n",
    );
    if let Some(snap) = s.snapshot_status() {
        out.push_str(&format!(
            "# HELP vaidya_backup_snapshot_entries Ledger entries in the last database snapshot put into every target.\n# TYPE vaidya_backup_snapshot_entries gauge\n\
             vaidya_backup_snapshot_entries {}\n\
             # HELP vaidya_backup_snapshot_timestamp_seconds When the last database snapshot was made.\n# TYPE vaidya_backup_snapshot_timestamp_seconds gauge\n\
             vaidya_backup_snapshot_timestamp_seconds {}\n\
             # HELP vaidya_backup_snapshot_failures_total Database snapshots that failed (alert on increase).\n# TYPE vaidya_backup_snapshot_failures_total counter\n\
             vaidya_backup_snapshot_failures_total {}\n",
            snap.entries,
            snap.made_ms as f64 / 1000.0,
            snap.failures
        ));
    }
    for t in s.status() {
        for (ledger, l) in [("data", &t.data), ("audit", &t.audit)] {
            let labels = format!("target=\"{}\",ledger=\"{ledger}\"", t.target);
            out.push_str(&format!(
                "vaidya_backup_shipped_entries{{{labels}}} {}\nvaidya_backup_signed_entries{{{labels}}} {}\nvaidya_backup_last_shipped_timestamp_seconds{{{labels}}} {}\nvaidya_backup_lag_p99_seconds{{{labels}}} {}\n",
                l.shipped,
                l.checkpointed,
                l.shipped_ms as f64 / 1000.0,
                l.lag.p99_ms as f64 / 1000.0
            ));
        }
        let a = &t.anomalies;
        out.push_str(&format!(
            "vaidya_backup_failures_total{{target=\"{0}\"}} {1}\nvaidya_backup_anomalies{{target=\"{0}\",kind=\"delete_marker\"}} {2}\nvaidya_backup_anomalies{{target=\"{0}\",kind=\"overwritten\"}} {3}\nvaidya_backup_anomalies{{target=\"{0}\",kind=\"unexpected\"}} {4}\n",
            t.target, t.failures, a.delete_markers, a.overwritten, a.unexpected
        ));
    }
    out
}

/// `GET /ledger/root?ledger=data|audit&size=N`: the Merkle root of a ledger at `size` entries,
/// for restore drills run elsewhere. Roots say nothing about what the entries hold (they are
/// what signed checkpoints publish), so this needs no sign-in.
pub async fn ledger_root(
    axum::extract::State(app): axum::extract::State<crate::app::AppState>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Result<axum::Json<serde_json::Value>, crate::error::ApiError> {
    use crate::error::ApiError;
    let mut ledger = None;
    let mut size = None;
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "ledger" => ledger = Some(v.into_owned()),
            "size" => size = Some(v.parse::<u64>().map_err(|_| ApiError::bad_request(format!("size '{v}' is not a number")))?),
            other => {
                return Err(ApiError::bad_request(format!("unknown parameter '{other}' (ledger, size)")));
            }
        }
    }
    let size = size.filter(|n| *n > 0).ok_or_else(|| ApiError::bad_request("size (at least 1) is required"))?;
    let root = match ledger.as_deref() {
        Some("data") => {
            app.read(move |conn| {
                if size > vaidya_store::read::ledger_size(conn)? {
                    return Err(ApiError::not_found(format!("the data ledger has fewer than {size} entries")));
                }
                Ok(vaidya_store::merkle_root(conn, size)?)
            })
            .await?
        }
        Some("audit") => {
            let dir = vaidya_audit::audit_dir(&app.config.data);
            let vkey = crate::datadir::verifier_key(&app.config.data).map_err(|e| ApiError::internal(e.to_string()))?;
            tokio::task::spawn_blocking(move || -> Result<vaidya_ledger::Hash, ApiError> {
                let db = vaidya_audit::ship::open_checkpoints(&dir).map_err(|e| ApiError::internal(e.to_string()))?;
                let cp = vaidya_audit::ship::checkpoint_at(&db, size)
                    .map_err(|e| ApiError::internal(e.to_string()))?
                    .ok_or_else(|| ApiError::not_found(format!("no audit checkpoint at {size} entries")))?;
                let signed = vaidya_ledger::verify_checkpoint(&cp.note, &vkey).map_err(|e| ApiError::internal(e.to_string()))?;
                Ok(signed.root)
            })
            .await
            .map_err(|e| ApiError::internal(e.to_string()))??
        }
        _ => return Err(ApiError::bad_request("ledger must be 'data' or 'audit'")),
    };
    Ok(axum::Json(serde_json::json!({"ledger": ledger, "size": size, "root": hex::encode(root.0)})))
}
