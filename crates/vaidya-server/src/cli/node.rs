//! `vaidya node`: a department node following the core's ledger.

use crate::app::{AppParts, AppState, Metrics};
use crate::config::Config;
use crate::datadir;
use crate::node::follow::{FollowConfig, Follower};
use crate::node::link::NodeLink;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(clap::Args)]
#[command(after_help = "Serves a department (its staff sign in here, at /ui, with their usual accounts) from a replica\n\
of the core's data ledger, followed over HTTP (GET <core>/node/feed, a long poll) and checked\n\
against checkpoints signed by the core's key before anything is applied: a feed that fails a\n\
check is refused whole and raised as an ALERT. Reads are answered here; saves go to the core.\n\n\
DOWNTIME: when the core has not answered for --downtime-after seconds (or while a file named\n\
DOWNTIME exists in DIR: an operator's switch), every page says DOWNTIME MODE and the node keeps\n\
working on its own: registration (UHIDs with this node's issuer code), appointments, tokens,\n\
check-in, charges and receipts (numbers with -Nnn-), lab collection and results, notes. These\n\
are kept in the node's own ledger, signed with its key (DIR/keys/node.key). When the core\n\
answers again they are handed back in order; what cannot be applied goes to the core's\n\
reconciliation queue for a person (/ui/reconciliation on the core). The node's\n\
/node/outage says what happened to each; /healthz, /metrics and /node/status its state.\n\n\
Set up, on the core (then copy its keys/ledger.pub and the token to the node):\n  \
vaidya user add --data /srv/vaidya --name node-cardiology --role node\n  \
vaidya token --data /srv/vaidya --user node-cardiology > node.token\n\n\
Example:\n  vaidya node --core https://his.hospital.example --core-key ledger.pub --token-file node.token \\\n      \
--issuer 7 --department cardiology --data /srv/vaidya-node --listen 0.0.0.0:8090")]
pub struct NodeArgs {
    /// The core's base URL.
    #[arg(long, value_name = "URL")]
    core: String,
    /// The core's ledger public key: the text of its keys/ledger.pub, or that file.
    #[arg(long, value_name = "KEY|FILE")]
    core_key: String,
    /// A file holding the token of the core account (role node) this node signs in as.
    #[arg(long, value_name = "FILE", env = "VAIDYA_NODE_TOKEN_FILE")]
    token_file: PathBuf,
    /// The UHID issuer code (01-99) this node registers patients with while the core is down;
    /// claimed at the core on first contact: the core refuses a code another node holds.
    #[arg(long, value_name = "NN", value_parser = clap::value_parser!(u8).range(1..=99))]
    issuer: u8,
    /// The department this node serves (a HealthcareService id or name, shown on its pages).
    #[arg(long, value_name = "NAME")]
    department: String,
    /// The node's data directory (the replica with any downtime entries, the core's public
    /// key, the node's own key, its audit ledger).
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Downtime mode when the core has not answered for this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=3600))]
    downtime_after: u64,
    /// Downtime entries per hand-back request at most (each ends at a checkpoint the node
    /// signed, so a request may hold a little more when one write is large).
    #[arg(long, value_name = "ENTRIES", default_value_t = crate::node::sendback::BATCH_ENTRIES, value_parser = clap::value_parser!(u64).range(1..=20000))]
    handback_batch: u64,
    /// Minutes between rewrites of the downtime sheets (DIR/sheets: HTML and PDF to print);
    /// they are also rewritten at every switch to downtime.
    #[arg(long, value_name = "MINUTES", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1440))]
    sheets_every: u64,
    /// Address the node's web UI (/ui), FHIR API (/fhir), /healthz and /metrics listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8090")]
    listen: std::net::SocketAddr,
}

pub fn run(args: NodeArgs) -> Result<ExitCode, String> {
    if !(args.core.starts_with("http://") || args.core.starts_with("https://")) || args.core.contains(['?', '#', ' ']) {
        return Err(format!("--core {}: not a base URL (http://HOST:PORT or https://HOST)", args.core));
    }
    let verifier = core_key(&args.core_key)?;
    // name+id+key (the key's base64 may hold '+' itself).
    let parts: Vec<&str> = verifier.splitn(3, '+').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(format!("--core-key: '{verifier}' is not a ledger public key (name+id+key, the core's keys/ledger.pub)"));
    }
    let token = std::fs::read_to_string(&args.token_file).map_err(|e| format!("{}: {e}", args.token_file.display()))?.trim().to_string();
    if token.is_empty() {
        return Err(format!("{} is empty: it should hold the node account's token", args.token_file.display()));
    }
    std::fs::create_dir_all(&args.data).map_err(|e| format!("{}: {e}", args.data.display()))?;
    let _lock = datadir::lock_or_create(&args.data).map_err(|e| e.to_string())?;
    keep_core_key(&args.data, &verifier)?;
    let node_key = node_key(&args.data, args.issuer)?;
    let node_verifier = node_key.verifier_text().to_string();
    let audit_key = vaidya_ledger::LedgerKey::from_private(node_key.private_text()).map_err(|e| e.to_string())?;
    // Numbers given out here in downtime (UHIDs, receipts, specimens) are this node's own.
    crate::numbering::act_as_node(args.issuer);
    let db = datadir::db_path(&args.data);
    let store = Arc::new(vaidya_store::Store::open_node(&db, node_key).map_err(|e| e.to_string())?);
    store
        .write_blocking(|tx| vaidya_store::Db::execute_batch(tx.conn(), &crate::node::sendback::TABLES.join(";\n")))
        .map_err(|e| e.to_string())?;
    let audit = vaidya_audit::Audit::open_in_data_dir(&args.data, audit_key).map_err(|e| format!("the node's audit ledger: {e}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(tokio::sync::RwLock::new(()));
    let config = FollowConfig {
        core: args.core.clone(),
        token: token.clone(),
        verifier,
        downtime_after: std::time::Duration::from_secs(args.downtime_after),
        issuer: args.issuer,
        node_verifier,
        switch_file: args.data.join(DOWNTIME_SWITCH),
        writes: writes.clone(),
        handback_batch: args.handback_batch,
    };
    let follower = Follower::new(config, store.clone(), stop.clone())?;
    let status = follower.status();
    let thread = std::thread::Builder::new().name("vaidya-node-follow".into()).spawn(move || follower.run()).map_err(|e| e.to_string())?;
    let app_config = Config { data: args.data.clone(), listen: args.listen, ..Config::default() };
    let sheets = {
        let (store, status, stop) = (store.clone(), status.clone(), stop.clone());
        let (dir, hospital, department) = (args.data.join("sheets"), app_config.hospital_name.clone(), args.department.clone());
        let zone = crate::print::format::Zone::from_config(&app_config.timezone);
        let (issuer, every) = (args.issuer, std::time::Duration::from_secs(args.sheets_every * 60));
        std::thread::Builder::new()
            .name("vaidya-node-sheets".into())
            .spawn(move || crate::node::sheets::keep_current(store, dir, status, hospital, department, issuer, zone, every, stop))
            .map_err(|e| e.to_string())?
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    let metrics = Arc::new(Metrics::default());
    let alerts = {
        let _inside = runtime.enter();
        crate::alerts::Alerts::start(&app_config.alerts, &app_config.hospital_name, metrics.clone())?
    };
    let link = NodeLink::new(args.department.clone(), args.issuer, args.core.clone(), token, status, writes);
    let state = AppState::new(AppParts {
        store: store.clone(),
        policies: app_config.policies()?,
        guard: Arc::new(crate::guard::Guard::new(crate::guard::Limits::from_config(&app_config.access))),
        tokens: crate::auth::TokenCache::open(&db).map_err(|e| e.to_string())?,
        config: Arc::new(app_config),
        metrics,
        audit: audit.clone(),
        alerts,
        backup: None,
        node: Some(Arc::new(link)),
    });
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen).await.map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let bound = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(department = %args.department, core = %args.core, "Vaidya node listening on http://{bound}");
        println!("Vaidya node listening on http://{bound}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        axum::serve(listener, crate::app::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>())
            .with_graceful_shutdown(crate::cli::serve::shutdown_signal())
            .await
            .map_err(|e| e.to_string())
    });
    stop.store(true, Ordering::Release);
    let _ = thread.join();
    let _ = sheets.join();
    store.shutdown();
    audit.shutdown();
    served.map(|()| ExitCode::SUCCESS)
}

/// While this file is in the node's data directory, the node is in downtime mode.
pub const DOWNTIME_SWITCH: &str = "DOWNTIME";

/// The node's own ledger key (`keys/node.key`, made on the first start; its public half in
/// `keys/node.pub`): it signs the node's downtime branch and its audit ledger.
fn node_key(data: &std::path::Path, issuer: u8) -> Result<vaidya_ledger::LedgerKey, String> {
    let private = data.join(datadir::NODE_KEY_FILE);
    let key = if private.exists() {
        let text = std::fs::read_to_string(&private).map_err(|e| format!("{}: {e}", private.display()))?;
        vaidya_ledger::LedgerKey::from_private(text.trim()).map_err(|e| format!("{}: {e}", private.display()))?
    } else {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let key = vaidya_ledger::LedgerKey::generate(&format!("vaidya.local/node-{issuer:02}/{}", &id[..12]));
        datadir::write_private(&private, key.private_text()).map_err(|e| e.to_string())?;
        key
    };
    let public = data.join("keys/node.pub");
    std::fs::write(&public, format!("{}\n", key.verifier_text())).map_err(|e| format!("{}: {e}", public.display()))?;
    Ok(key)
}

/// The key as given, or read from the file named.
fn core_key(arg: &str) -> Result<String, String> {
    let path = std::path::Path::new(arg);
    let text = if path.is_file() { std::fs::read_to_string(path).map_err(|e| format!("{arg}: {e}"))? } else { arg.to_string() };
    Ok(text.trim().to_string())
}

/// The replica is checked with the core's key (`vaidya verify --data DIR` too): keep it, and
/// refuse a different one for an existing replica.
fn keep_core_key(data: &std::path::Path, verifier: &str) -> Result<(), String> {
    let path = data.join(datadir::VERIFIER_FILE);
    match std::fs::read_to_string(&path) {
        Ok(kept) if kept.trim() == verifier => Ok(()),
        Ok(kept) => Err(format!(
            "{} follows the ledger of {}, not of {verifier}: use a new data directory for another core",
            data.display(),
            kept.trim()
        )),
        Err(_) => {
            std::fs::create_dir_all(path.parent().expect("keys/ has a parent")).map_err(|e| e.to_string())?;
            std::fs::write(&path, format!("{verifier}\n")).map_err(|e| format!("{}: {e}", path.display()))
        }
    }
}
