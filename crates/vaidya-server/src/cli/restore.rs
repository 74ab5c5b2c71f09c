//! `vaidya restore` and `vaidya drill`.

use crate::datadir;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use vaidya_backup::restore::{Plan, Report, Until};
use vaidya_backup::segment::Ledger;

#[derive(clap::Args)]
#[command(after_help = "Rebuilds a complete data directory (data ledger, every resource and search index, accounts,\n\
audit ledger) from a backup target alone, checking every signature and the Merkle tree from\n\
segment to segment. Object versions are listed, so delete markers and overwritten objects cannot\n\
hide or replace what the server put; they are reported. Ends by printing the last entry, its time\n\
and the checkpoint hash: compare them with what you expect before starting the server on NEWDIR.\n\n\
When the target holds database snapshots (made by the server beside the segments), the newest one\n\
within --at/--seq is copied back and its whole ledger checked against its signed manifest and the\n\
segments' checkpoints; only the entries after it are replayed. --no-snapshot replays every entry.\n\n\
TARGET: a target name from the config file, s3://BUCKET/PREFIX?endpoint=URL&region=R (credentials\n\
from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: read-only ones are enough), or a directory.\n\n\
Examples:\n  vaidya restore --from bucket --config /etc/vaidya/vaidya.toml --identity /media/usb/backup.key --data /srv/vaidya-restored\n  \
vaidya restore --from 's3://hospital-backup/vaidya/?endpoint=https://s3.ap-south-1.amazonaws.com&region=ap-south-1' \\\n      \
--identity backup.key --data /srv/restored --at 2026-11-27T09:00:00+05:30\n  vaidya restore --from /mnt/backup-disk/vaidya --identity backup.key --data ./restored --seq 120000")]
pub struct RestoreArgs {
    /// The backup target to restore from.
    #[arg(long, value_name = "TARGET")]
    from: String,
    /// The age identity file (the private key kept offline).
    #[arg(long, value_name = "KEYFILE")]
    identity: PathBuf,
    /// The new data directory to create (must not exist, or be empty).
    #[arg(long, value_name = "NEWDIR")]
    data: PathBuf,
    /// Restore as of this time (FHIR dateTime with a zone, e.g. 2026-11-27T09:00:00+05:30):
    /// every entry committed at or before it.
    #[arg(long, value_name = "TIME", conflicts_with = "seq")]
    at: Option<String>,
    /// Restore up to and including data-ledger entry N (the audit ledger up to its time).
    #[arg(long, value_name = "N")]
    seq: Option<u64>,
    /// The ledger's public key as kept offline (keys/ledger.pub of the lost server), to trust
    /// only segments it signed; default: the one key the target holds.
    #[arg(long, value_name = "KEY")]
    verifier: Option<String>,
    /// Configuration file (names targets; the restored directory uses the default key paths).
    #[arg(long, value_name = "FILE", env = "VAIDYA_CONFIG")]
    config: Option<PathBuf>,
    /// Ignore database snapshots: rebuild everything by replaying every ledger entry (slower;
    /// trusts nothing but the segments).
    #[arg(long)]
    no_snapshot: bool,
    /// Restore into this (empty) PostgreSQL database instead of a SQLite file in NEWDIR (which
    /// then holds the keys and the audit ledger). Snapshots are SQLite files: every entry is
    /// replayed. The password comes from `database_password_file` in the config file.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
}

pub fn run(args: RestoreArgs) -> Result<ExitCode, String> {
    let config = crate::config::Config::load(args.config.as_deref()).map_err(|e| e.to_string())?;
    let until = match (&args.at, args.seq) {
        (Some(t), _) => Until::Time(
            vaidya_fhir::datetime::parse_date_range(t)
                .map(|(_, hi)| hi)
                .ok_or_else(|| format!("--at {t}: not a date and time (e.g. 2026-11-27T09:00:00+05:30)"))?,
        ),
        (None, Some(0)) => return Err("--seq must be at least 1".into()),
        (None, Some(n)) => Until::Seq(n),
        (None, None) => Until::Latest,
    };
    let started = Instant::now();
    let target = crate::backup::target_from_spec(&args.from, &config)?;
    let database = match &args.database {
        None => None,
        Some(url) => Some(crate::config::Config { database: Some(url.clone()), ..config.clone() }.location()?),
    };
    let snapshots = !args.no_snapshot && database.is_none();
    let report = restore_into(target, &args.identity, &args.data, database.as_ref(), args.verifier.as_deref(), until, snapshots, true)?;
    print_report(&report, started);
    println!("Restored into {}. Everyone signs in again: tokens and sessions are not in backups.", args.data.display());
    let db = args.database.as_ref().map(|u| format!(" --database {u}")).unwrap_or_default();
    println!("Check it with `vaidya verify --data {0}{db}` and start it with `vaidya serve --data {0}{db}`.", args.data.display());
    Ok(ExitCode::SUCCESS)
}

/// Restore from `target` into a new directory `data` (from the newest usable database snapshot
/// when `snapshots`), the database a SQLite file there or the empty PostgreSQL `database`;
/// prints progress when `verbose`.
#[allow(clippy::too_many_arguments)]
pub fn restore_into(
    target: Arc<dyn vaidya_backup::target::Target>,
    identity_file: &Path,
    data: &Path,
    database: Option<&vaidya_store::Location>,
    verifier: Option<&str>,
    until: Until,
    snapshots: bool,
    verbose: bool,
) -> Result<Report, String> {
    if data.exists() && std::fs::read_dir(data).map_err(|e| format!("{}: {e}", data.display()))?.next().is_some() {
        return Err(format!("{} exists and is not empty: restore into a new directory", data.display()));
    }
    let text = std::fs::read_to_string(identity_file).map_err(|e| format!("{}: {e}", identity_file.display()))?;
    let identity = vaidya_backup::seal::Identity::parse(&text).map_err(|e| format!("{}: {e}", identity_file.display()))?;
    if verbose {
        println!("Listing every object version in {} ...", target.name());
    }
    let plan = Plan::prepare(target, identity, verifier).map_err(|e| format!("restore refused: {e}"))?;
    let (data_segs, audit_segs) = plan.segments();
    if verbose {
        println!(
            "{} objects, {:.1} MiB: {data_segs} data and {audit_segs} audit segments, {} database snapshots; ledger key {}",
            plan.objects,
            plan.bytes as f64 / (1 << 20) as f64,
            plan.snapshots(),
            plan.key().verifier_text()
        );
        let a = &plan.anomalies;
        if a.any() {
            println!(
                "WARNING: the target holds {} delete markers, {} overwritten objects and {} objects Vaidya never writes; \
                 they are ignored (the first version of each object is used). Investigate:",
                a.delete_markers, a.overwritten, a.unexpected
            );
            for e in a.examples.iter().take(20) {
                println!("  {e}");
            }
        }
    }
    std::fs::create_dir_all(data).map_err(|e| format!("{}: {e}", data.display()))?;
    let marker = data.join(datadir::RESTORE_MARKER);
    std::fs::write(&marker, "a restore into this directory has not finished\n").map_err(|e| format!("{}: {e}", marker.display()))?;
    let lock = datadir::lock_or_create(data).map_err(|e| e.to_string())?;
    let config = crate::config::Config { data: data.to_path_buf(), ..Default::default() };
    datadir::install_key(&config, plan.key()).map_err(|e| e.to_string())?;
    let key = vaidya_ledger::LedgerKey::from_private(plan.key().private_text()).map_err(|e| e.to_string())?;
    let (from, skipped) = if snapshots {
        if verbose && plan.snapshots() > 0 {
            println!("Fetching and checking the newest database snapshot ...");
        }
        plan.restore_snapshot(&datadir::db_path(data), until).map_err(|e| format!("restore FAILED: {e}"))?
    } else {
        (None, Vec::new())
    };
    if verbose {
        // Said at once, so that it is seen even if the restore then fails.
        for s in &skipped {
            println!("WARNING: database snapshot passed over (investigate): {s}");
        }
        if let Some(f) = &from {
            println!(
                "database snapshot {}: {} entries, {:.1} MiB, checked in {:.1} s; replaying what follows it",
                f.folder,
                f.manifest.entries,
                f.manifest.bytes as f64 / (1 << 20) as f64,
                f.took.as_secs_f64()
            );
        }
    }
    let options = vaidya_store::StoreOptions { restoring: true, ..Default::default() };
    let location = database.cloned().unwrap_or_else(|| vaidya_store::Location::File(datadir::db_path(data)));
    let store = vaidya_store::Store::open_location(location.clone(), key, options).map_err(|e| format!("{}: {e}", location.describe()))?;
    if !store.is_writer() {
        return Err(format!("a Vaidya server is running on {}: restore into an empty database no server uses", location.describe()));
    }
    let existing = store.read(vaidya_store::read::ledger_size).map_err(|e| e.to_string())?;
    if existing > 0 && from.is_none() {
        return Err(format!("{} already holds {existing} ledger entries: restore into an empty database", location.describe()));
    }
    let last_print = std::sync::Mutex::new(Instant::now());
    let progress = |ledger: Ledger, n: u64| {
        let mut last = last_print.lock().expect("not poisoned");
        if verbose && last.elapsed().as_secs() >= 2 {
            *last = Instant::now();
            println!("  {} ledger: {n} entries", ledger.folder());
        }
    };
    let result = plan.run(&store, &vaidya_audit::audit_dir(data), until, from.as_ref(), &progress);
    store.shutdown();
    drop(store);
    // The restore wrote without fsync (SQLite): flush the database before calling it done.
    if let vaidya_store::Location::File(db) = &location {
        let flushing = Instant::now();
        std::fs::File::open(db).and_then(|f| f.sync_all()).map_err(|e| format!("{}: {e}", db.display()))?;
        if verbose {
            println!("flushed the database to disk in {:.1} s", flushing.elapsed().as_secs_f64());
        }
    }
    let report = result.map_err(|e| format!("restore FAILED: {e}\n{} is incomplete: delete it before trying again", data.display()))?;
    drop(lock);
    std::fs::remove_file(&marker).map_err(|e| format!("{}: {e}", marker.display()))?;
    Ok(report)
}

fn print_report(r: &Report, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    for (name, l) in [("data", &r.data), ("audit", &r.audit)] {
        println!(
            "{name} ledger: {} entries from {} segments; last entry {} at {} (UTC); checkpoint at {} entries, root {}",
            l.entries,
            l.segments,
            l.entries,
            if l.last_time_ms > 0 { vaidya_fhir::datetime::format_instant(l.last_time_ms) } else { "-".into() },
            l.checkpoint_size,
            if l.checkpoint_root.is_empty() { "-" } else { &l.checkpoint_root }
        );
    }
    if r.duplicates > 0 {
        println!("{} duplicate segments were checked against the restored ledgers and skipped", r.duplicates);
    }
    println!("accounts, grants and counters: {}", if r.state_restored { "restored" } else { "NOT in the backup" });
    let mut replayed = r.data.entries;
    if let Some((folder, entries, db_bytes, sealed_bytes, took)) = &r.snapshot {
        replayed -= entries;
        println!(
            "started from database snapshot {folder}: {entries} entries, a {:.1} MiB database from {:.1} MiB sealed, fetched and checked in {:.1} s",
            *db_bytes as f64 / (1 << 20) as f64,
            *sealed_bytes as f64 / (1 << 20) as f64,
            took.as_secs_f64()
        );
    }
    for (from, to) in &r.missing_under_snapshot {
        println!("WARNING: no segment in the target holds data entries {from} to {to} (the snapshot did): investigate");
    }
    println!(
        "restored in {secs:.1} s ({:.0} data entries/s overall): {replayed} data ledger entries replayed in {:.1} s, search indexes built in {:.1} s, audit ledger in {:.1} s",
        r.data.entries as f64 / secs.max(1e-9),
        r.replay.as_secs_f64(),
        r.indexes.as_secs_f64(),
        r.audit_time.as_secs_f64()
    );
}

#[derive(clap::Args)]
#[command(after_help = "Restores the latest backup into a scratch directory and checks that its Merkle roots equal the\n\
live server's at the same points (asked over HTTP: GET <live>/ledger/root). Run it on the machine that\n\
holds the offline key, not on the server. Exit status 0 only if the restore verified and the roots\n\
match. With --metrics-file, writes the outcome in the Prometheus text format (for node_exporter's\n\
textfile collector); with --every, repeats on a schedule.\n\n\
Example:\n  vaidya drill --from bucket --config drill.toml --identity /media/usb/backup.key \\\n      \
--live https://his.hospital.example --metrics-file /var/lib/node_exporter/textfile/vaidya_drill.prom --every 24")]
pub struct DrillArgs {
    /// The backup target (as for `vaidya restore`).
    #[arg(long, value_name = "TARGET")]
    from: String,
    /// The age identity file.
    #[arg(long, value_name = "KEYFILE")]
    identity: PathBuf,
    /// The live server's base URL.
    #[arg(long, value_name = "URL")]
    live: String,
    /// Scratch directory to restore into (made and removed); default: one under the system's
    /// temporary directory.
    #[arg(long, value_name = "DIR")]
    scratch: Option<PathBuf>,
    /// Write the outcome here in the Prometheus text format.
    #[arg(long, value_name = "FILE")]
    metrics_file: Option<PathBuf>,
    /// Repeat every this many hours (runs until stopped).
    #[arg(long, value_name = "HOURS")]
    every: Option<u64>,
    #[arg(long, value_name = "FILE", env = "VAIDYA_CONFIG")]
    config: Option<PathBuf>,
}

pub fn drill(args: DrillArgs) -> Result<ExitCode, String> {
    let config = crate::config::Config::load(args.config.as_deref()).map_err(|e| e.to_string())?;
    loop {
        let started = Instant::now();
        let outcome = drill_once(&args, &config);
        let secs = started.elapsed().as_secs_f64();
        match &outcome {
            Ok(o) => println!("DRILL PASSED in {secs:.1} s: {o}"),
            Err(e) => println!("DRILL FAILED after {secs:.1} s: {e}"),
        }
        if let Some(path) = &args.metrics_file {
            write_drill_metrics(path, outcome.is_ok(), secs).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        match args.every {
            None => {
                return Ok(if outcome.is_ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
            }
            Some(h) => std::thread::sleep(std::time::Duration::from_secs(h.max(1) * 3600)),
        }
    }
}

fn drill_once(args: &DrillArgs, config: &crate::config::Config) -> Result<String, String> {
    let scratch = match &args.scratch {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("vaidya-drill-{}", uuid::Uuid::new_v4().simple())),
    };
    let target = crate::backup::target_from_spec(&args.from, config)?;
    let result = (|| {
        let report = restore_into(target, &args.identity, &scratch, None, None, Until::Latest, true, false)?;
        let mut checked = Vec::new();
        for (ledger, l) in [("data", &report.data), ("audit", &report.audit)] {
            if l.checkpoint_size == 0 {
                continue;
            }
            let live = live_root(&args.live, ledger, l.checkpoint_size)?;
            if live != l.checkpoint_root {
                return Err(format!(
                    "the {ledger} ledger restored from the backup has root {} at {} entries, the live server {live}: the backup and the live ledger DIFFER",
                    l.checkpoint_root, l.checkpoint_size
                ));
            }
            checked.push(format!("{ledger} root at {} entries matches the live server ({})", l.checkpoint_size, &live[..16]));
        }
        if checked.is_empty() {
            return Err("the backup holds no checkpoint to compare".into());
        }
        Ok(format!("{}; {} data and {} audit entries restored", checked.join("; "), report.data.entries, report.audit.entries))
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// The live server's Merkle root of `ledger` at `size` entries (hex).
fn live_root(base: &str, ledger: &str, size: u64) -> Result<String, String> {
    let url = format!("{}/ledger/root?ledger={ledger}&size={size}", base.trim_end_matches('/'));
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(std::time::Duration::from_secs(30))).build().into();
    let body = agent
        .get(&url)
        .call()
        .map_err(|e| format!("asking the live server {url}: {e}"))?
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("reading {url}: {e}"))?;
    let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("{url}: {e}"))?;
    v["root"].as_str().map(str::to_string).ok_or_else(|| format!("{url} answered without a root: {body}"))
}

fn write_drill_metrics(path: &Path, ok: bool, secs: f64) -> std::io::Result<()> {
    let now = vaidya_store::now_ms() as f64 / 1000.0;
    let mut text = format!(
        "# HELP vaidya_drill_success Whether the last restore drill verified and matched the live server.\n# TYPE vaidya_drill_success gauge\nvaidya_drill_success {}\n\
         # HELP vaidya_drill_duration_seconds How long the last drill took.\n# TYPE vaidya_drill_duration_seconds gauge\nvaidya_drill_duration_seconds {secs:.3}\n\
         # HELP vaidya_drill_last_run_timestamp_seconds When the last drill ended.\n# TYPE vaidya_drill_last_run_timestamp_seconds gauge\nvaidya_drill_last_run_timestamp_seconds {now:.3}\n",
        u8::from(ok)
    );
    if ok {
        text.push_str(&format!("# HELP vaidya_drill_last_success_timestamp_seconds When a drill last passed.\n# TYPE vaidya_drill_last_success_timestamp_seconds gauge\nvaidya_drill_last_success_timestamp_seconds {now:.3}\n"));
    }
    let tmp = path.with_extension("prom.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, path)
}
