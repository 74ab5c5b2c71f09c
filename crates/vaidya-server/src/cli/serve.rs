//! `vaidya serve`

use super::DataArgs;
use crate::app::{AppParts, AppState, Metrics, router};
use crate::datadir;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Args)]
#[command(after_help = "The first start creates the data directory (database, ledger signing key in keys/, an `admin`\n\
account) and prints the admin's one-time password once. Stop with Ctrl-C or SIGTERM: a final\n\
checkpoint is signed. Logs go to stderr; set VAIDYA_LOG=debug for more.\n\n\
Examples:\n  vaidya serve                                   # ./vaidya-data, http://127.0.0.1:8080\n  vaidya serve --data /srv/vaidya --listen 0.0.0.0:8080\n  vaidya serve --config /etc/vaidya/vaidya.toml")]
pub struct ServeArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Address to listen on [default: 127.0.0.1:8080]. Overrides `listen` in the config file.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Load a demo hospital (departments, doctors and their OPD slots for the coming week, a
    /// tariff, patients, appointments, a lab report) if the data directory is empty.
    #[arg(long)]
    demo: bool,
}

pub fn run(args: ServeArgs) -> Result<ExitCode, String> {
    let mut config = args.data.load()?;
    if let Some(l) = args.listen {
        config.listen = l;
    }
    // Single sign-on settings are checked (and the client secret read) before anything starts.
    if let Some(o) = &config.oidc {
        crate::auth::oidc::Settings::from_config(o)?;
        tracing::info!("single sign-on through the OpenID Connect provider {}", o.issuer);
    }
    let lock = datadir::lock_or_create(&config.data).map_err(|e| e.to_string())?;
    let (key, created) = datadir::init(&config).map_err(|e| e.to_string())?;
    if let Some(c) = created {
        // Printed once, on the first start only; it is not stored anywhere in clear.
        println!("Created a new Vaidya data directory at {}", config.data.display());
        println!("Administrator account: admin");
        println!("One-time password:     {}", c.admin_password);
        println!("(change it at first login; it is shown only this once)");
        println!("API token for scripts: vaidya token --data {} --user admin", config.data.display());
    }
    // The audit ledger signs its checkpoints with the same key as the data ledger.
    let audit_key = vaidya_ledger::LedgerKey::from_private(key.private_text()).map_err(|e| e.to_string())?;
    let audit = open_audit(&config.data, audit_key)?;
    config.access.check()?;
    let sync_backups = config.backup.as_ref().is_some_and(|b| b.mode == crate::config::BackupMode::Sync);
    let options = vaidya_store::StoreOptions { checkpoint_every_commit: sync_backups, ..Default::default() };
    let key_for_backup = vaidya_ledger::LedgerKey::from_private(key.private_text()).map_err(|e| e.to_string())?;
    let location = config.location()?;
    let verifier = key.verifier_text().to_string();
    let store = vaidya_store::Store::open_location(location.clone(), key, options).map_err(|e| format!("the database {}: {e}", location.describe()))?;
    let store = Arc::new(store);
    if let vaidya_store::Location::Postgres(_) = &location {
        check_ledger_key(&store, &verifier)?;
        tracing::info!(writer = store.is_writer(), "the database is PostgreSQL: {}", location.describe());
    }
    let backup = crate::backup::start(&config, &store, &key_for_backup)?;
    let policies = config.policies()?;
    if let Some(dir) = config.access.policy_dir.clone() {
        watch_policies(policies.clone(), dir, config.access.policy_reload_seconds.max(1));
    }
    let guard = Arc::new(crate::guard::Guard::new(crate::guard::Limits::from_config(&config.access)));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    let metrics = Arc::new(Metrics::default());
    // The alert delivery task runs on the server's runtime.
    let alerts = {
        let _inside = runtime.enter();
        crate::alerts::Alerts::start(&config.alerts, &config.hospital_name, metrics.clone())?
    };
    let tokens = crate::auth::TokenCache::for_location(&location).map_err(|e| e.to_string())?;
    if let (Some(shipper), Some(b)) = (&backup, &config.backup) {
        crate::backup::watch(shipper.clone(), config.data.clone(), std::time::Duration::from_secs(b.lag_alert_seconds), alerts.clone());
    }
    let state = AppState::new(AppParts {
        store: store.clone(),
        config: Arc::new(config.clone()),
        metrics,
        policies,
        audit: audit.clone(),
        guard,
        alerts,
        tokens,
        backup: backup.clone(),
        node: None,
    });
    let demo = args.demo;
    let demo_store = store.clone();
    let demo_data = config.data.clone();
    let demo_location = location.clone();
    let data_dir = config.data.clone();
    let result = runtime.block_on(async move {
        if demo {
            load_demo(&demo_store, &demo_data, &demo_location).await?;
        }
        let listener =
            tokio::net::TcpListener::bind(config.listen).await.map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
        let bound = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!("Vaidya listening on http://{bound}");
        // Tests and scripts read this line to learn the port when started with port 0.
        println!("Vaidya is listening on http://{bound} (FHIR API at /fhir)");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        axum::serve(listener, router(state).into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(|e| e.to_string())
    });
    // Sign a last checkpoint and flush before the lock is released.
    store.shutdown();
    audit.shutdown();
    if let Some(shipper) = backup {
        // Ship the final checkpoints too, so that a clean stop leaves nothing behind.
        let (data_end, audit_end) = crate::backup::signed_sizes(&data_dir, &location);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let done = shipper.status().iter().all(|t| t.data.shipped >= data_end && t.audit.shipped >= audit_end);
            if done || std::time::Instant::now() > deadline {
                if !done {
                    tracing::warn!("stopping with backup shipping unfinished; it resumes at the next start");
                }
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        shipper.stop();
        if let Err(e) = crate::backup::write_status(&data_dir, &shipper) {
            tracing::warn!("cannot write the backup status file: {e}");
        }
    }
    drop(lock);
    result.map(|()| ExitCode::SUCCESS)
}

/// Load the demo hospital into an empty ledger (a second start with --demo changes nothing).
async fn load_demo(store: &Arc<vaidya_store::Store>, data: &std::path::Path, location: &vaidya_store::Location) -> Result<(), String> {
    let entries = {
        let s = store.clone();
        tokio::task::spawn_blocking(move || s.read(vaidya_store::read::ledger_size))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?
    };
    if entries > 0 {
        println!("Demo: the data directory already holds {entries} ledger entries; nothing loaded");
        return Ok(());
    }
    let bundle = crate::demo::hospital(vaidya_store::now_ms());
    let demo = crate::fhir::bundle::Caller { author: "demo".into(), viewer: crate::fhir::visibility::Viewer::Lab, checks: None };
    let (out, _) = crate::fhir::bundle::process(store, demo, bundle, "http://localhost/fhir", crate::fhir::wire::Return::Minimal, 100_000)
        .await
        .map_err(|e| format!("the demo hospital did not load: {:?}", e.issues))?;
    let n = serde_json::from_slice::<serde_json::Value>(&out).ok().and_then(|v| v["entry"].as_array().map(Vec::len)).unwrap_or(0);
    store.write(crate::demo::bills).await.map_err(|e| format!("the demo bills did not load: {:?}", e.issues))?;
    println!(
        "Demo hospital loaded: {n} resources (departments, doctors, OPD slots for the coming week, tariff, test catalogue, patients, bills)"
    );
    let conn = vaidya_store::open_admin_at(location).map_err(|e| e.to_string())?;
    println!("Demo staff accounts (one-time passwords, shown only now; API tokens: vaidya token --data {} --user NAME):", data.display());
    for (name, role, dept) in crate::demo::STAFF {
        let password = vaidya_access::password::generate_one_time();
        let hash = vaidya_access::password::hash(&password);
        vaidya_store::tokens::insert_user(&conn, name, role, dept, Some(&hash), true).map_err(|e| e.to_string())?;
        println!("  {name:<11} {role:<13} {password}");
    }
    println!("Demo lab report, printable with a bearer token: /print/DiagnosticReport/report-1");
    Ok(())
}

/// Several servers share one PostgreSQL database, each with the same ledger key (copied from
/// the first): a server with another key would sign checkpoints nobody can verify. Refused.
fn check_ledger_key(store: &vaidya_store::Store, verifier: &str) -> Result<(), String> {
    use vaidya_store::Db;
    let note: Option<String> = store
        .read(|c| c.query_value("SELECT note FROM checkpoint ORDER BY tree_size DESC LIMIT 1", &[]))
        .map_err(|e| e.to_string())?;
    match note {
        Some(n) if vaidya_ledger::verify_checkpoint(&n, verifier).is_err() => Err(format!(
            "the ledger in this database is signed by another key than {verifier}: every server of one database \
             uses the same ledger key (copy keys/ledger.key from the first server, or set keys.ledger_key_file)"
        )),
        _ => Ok(()),
    }
}

/// Reload the policy directory when it changes; a change that does not validate is refused
/// and logged, and the policies in force stay.
fn watch_policies(policies: vaidya_policy::Policies, dir: std::path::PathBuf, every_s: u64) {
    std::thread::Builder::new()
        .name("policy-reload".into())
        .spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(every_s));
                match policies.reload_if_changed() {
                    Ok(true) => tracing::info!(target: "vaidya::policy", "access policies reloaded from {}", dir.display()),
                    Ok(false) => {}
                    Err(e) => tracing::error!(target: "vaidya::policy", "access policies in {} NOT reloaded (the previous ones stay in force): {e}", dir.display()),
                }
            }
        })
        .expect("the policy reload thread starts");
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}

/// Open the audit ledger. A `vaidya user`/`vaidya token` command run while no server was up
/// holds it for a moment (it appends its own record); wait for that rather than fail.
fn open_audit(data: &std::path::Path, key: vaidya_ledger::LedgerKey) -> Result<vaidya_audit::Audit, String> {
    let text = key.private_text().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut key = Some(key);
    loop {
        let k = match key.take() {
            Some(k) => k,
            None => vaidya_ledger::LedgerKey::from_private(&text).map_err(|e| e.to_string())?,
        };
        match vaidya_audit::Audit::open_in_data_dir(data, k) {
            Err(vaidya_audit::AuditError::Locked(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            other => return other.map_err(|e| format!("the audit ledger: {e}")),
        }
    }
}
