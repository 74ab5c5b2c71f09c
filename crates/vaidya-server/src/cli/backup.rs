//! `vaidya backup`: check targets, show shipping status, make a key pair.

use super::DataArgs;
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(after_help = "Set up backups in the [backup] section of the configuration file (docs/OPERATIONS.md, Backups).\n\n\
Examples:\n  vaidya backup keygen --out /media/usb/vaidya-backup.key   # on an offline machine\n  \
vaidya backup check --config /etc/vaidya/vaidya.toml\n  vaidya backup status --data /srv/vaidya")]
pub struct BackupArgs {
    #[command(subcommand)]
    command: BackupCommand,
}

#[derive(clap::Subcommand)]
enum BackupCommand {
    /// Inspect each configured target and refuse to call it safe if Object Lock or versioning
    /// is off, or if the server's credentials can delete. Exit status 1 if any is unsafe.
    Check {
        #[command(flatten)]
        data: DataArgs,
        /// Only this target.
        #[arg(long, value_name = "NAME")]
        target: Option<String>,
    },
    /// What each target has confirmed, how far behind it is, failures, and anything found in
    /// it that Vaidya never writes (from the running server's status file). Exit status 1 if a
    /// target is behind or shows such objects.
    Status {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Make an age key pair for backups: the private key to FILE (keep it offline, two
    /// copies), the public key (age1...) printed for `[backup] recipients`.
    Keygen {
        /// Where to write the private key (must not exist).
        #[arg(long, value_name = "FILE")]
        out: std::path::PathBuf,
    },
}

pub fn run(args: BackupArgs) -> Result<ExitCode, String> {
    match args.command {
        BackupCommand::Check { data, target } => check(&data, target.as_deref()),
        BackupCommand::Status { data } => status(&data),
        BackupCommand::Keygen { out } => keygen(&out),
    }
}

fn check(data: &DataArgs, only: Option<&str>) -> Result<ExitCode, String> {
    let config = data.load()?;
    let b = config.backup.as_ref().ok_or("no [backup] section in the configuration (pass --config FILE)")?;
    vaidya_backup::seal::Recipients::parse(&b.recipients).map_err(|e| format!("[backup] recipients: {e}"))?;
    let mut unsafe_targets = 0;
    for t in &b.targets {
        if only.is_some_and(|n| n != t.name) {
            continue;
        }
        println!("target {} ({:?})", t.name, t.kind);
        let target = crate::backup::target(t)?;
        match target.check() {
            Ok(safety) => {
                for f in &safety.facts {
                    println!("  {f}");
                }
                if safety.problems.is_empty() {
                    println!("  SAFE: objects are locked and these credentials cannot delete them");
                } else {
                    unsafe_targets += 1;
                    for p in &safety.problems {
                        println!("  UNSAFE: {p}");
                    }
                }
            }
            Err(e) => {
                unsafe_targets += 1;
                println!("  UNSAFE: the target could not be checked: {e}");
            }
        }
    }
    Ok(if unsafe_targets == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn status(data: &DataArgs) -> Result<ExitCode, String> {
    let config = data.load()?;
    let path = crate::backup::backup_dir(&config.data).join(crate::backup::STATUS_FILE);
    let text =
        std::fs::read(&path).map_err(|e| format!("{}: {e} (is `vaidya serve` running with [backup] configured?)", path.display()))?;
    let doc: serde_json::Value = serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let now = vaidya_store::now_ms();
    let written = doc["written_ms"].as_i64().unwrap_or(0);
    let mut trouble = false;
    if now - written > 10_000 {
        trouble = true;
        println!("WARNING: the status was written {} s ago: is the server running?", (now - written) / 1000);
    }
    let lag_alert = std::time::Duration::from_secs(config.backup.as_ref().map_or(60, |b| b.lag_alert_seconds));
    let targets: Vec<vaidya_backup::ship::TargetStatus> =
        serde_json::from_value(doc["targets"].clone()).map_err(|e| format!("{}: {e}", path.display()))?;
    for t in &targets {
        println!("target {}", t.target);
        for (name, l) in [("data", &t.data), ("audit", &t.audit)] {
            let when = if l.shipped_ms > 0 {
                format!("{} ({} s ago)", vaidya_fhir::datetime::format_instant(l.shipped_ms), (now - l.shipped_ms) / 1000)
            } else {
                "not since the server started".into()
            };
            println!(
                "  {name:<5} shipped {} of {} signed entries; last confirmed {when}; lag p50 {} ms, p99 {} ms, max {} ms over {} entries",
                l.shipped, l.checkpointed, l.lag.p50_ms, l.lag.p99_ms, l.lag.max_ms, l.lag.entries
            );
        }
        println!("  failures {}{}", t.failures, t.last_error.as_ref().map(|e| format!(" (last: {e})")).unwrap_or_default());
        if crate::backup::is_behind(t, now, lag_alert) {
            trouble = true;
            println!("  ALERT: behind by more than {} s", lag_alert.as_secs());
        }
        let a = &t.anomalies;
        if a.any() {
            trouble = true;
            println!(
                "  ALERT: {} delete markers, {} overwritten objects, {} unexpected objects at the last scan:",
                a.delete_markers, a.overwritten, a.unexpected
            );
            for e in &a.examples {
                println!("    {e}");
            }
        } else if a.scanned_ms > 0 {
            println!("  last scan {}: nothing unexpected", vaidya_fhir::datetime::format_instant(a.scanned_ms));
        }
    }
    if let Ok(snap) = serde_json::from_value::<vaidya_backup::snapshotter::SnapshotStatus>(doc["snapshot"].clone()) {
        if snap.made_ms > 0 {
            println!(
                "database snapshot: {} entries, made {} ({:.1} MiB database, {:.1} MiB sealed per target, {:.1} s to make and put)",
                snap.entries,
                vaidya_fhir::datetime::format_instant(snap.made_ms),
                snap.db_bytes as f64 / (1 << 20) as f64,
                snap.sealed_bytes as f64 / (1 << 20) as f64,
                snap.took_ms as f64 / 1000.0
            );
        } else {
            println!("database snapshot: none yet");
        }
        if let Some(e) = &snap.last_error {
            trouble = true;
            println!("  ALERT: the last snapshot failed ({} failures): {e}", snap.failures);
        }
    }
    Ok(if trouble { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn keygen(out: &std::path::Path) -> Result<ExitCode, String> {
    let (identity, recipient) = vaidya_backup::seal::Identity::generate();
    let created = vaidya_fhir::datetime::format_instant(vaidya_store::now_ms());
    crate::datadir::write_private(out, &format!("# created: {created}\n# public key: {recipient}\n{identity}"))
        .map_err(|e| e.to_string())?;
    println!("private key written to {} (keep it OFF the server: two copies, in two places)", out.display());
    println!("public key for [backup] recipients: {recipient}");
    Ok(ExitCode::SUCCESS)
}
