//! `vaidya node`: a department node following the core's ledger.

use crate::datadir;
use crate::node::follow::{FollowConfig, FollowStatus, Follower};
use axum::extract::State;
use axum::routing::get;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[derive(clap::Args)]
#[command(after_help = "Follows the core's data ledger over HTTP (GET <core>/node/feed, a long poll) into a replica\n\
in DIR, checking every entry against checkpoints signed by the core's key before it is applied:\n\
a feed that fails a check is refused whole and raised as an ALERT. The node's /healthz and\n\
/metrics say how far behind the core it is.\n\n\
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
    /// The node's data directory (the replica, and the core's public key).
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Downtime mode when the core has not answered for this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=3600))]
    downtime_after: u64,
    /// Address for the node's /healthz, /metrics and /status.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8090")]
    listen: std::net::SocketAddr,
}

#[derive(Clone)]
struct NodeState {
    department: Arc<String>,
    status: Arc<Mutex<FollowStatus>>,
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
    let store = Arc::new(vaidya_store::Store::open_replica(&datadir::db_path(&args.data)).map_err(|e| e.to_string())?);
    let stop = Arc::new(AtomicBool::new(false));
    let downtime_after = std::time::Duration::from_secs(args.downtime_after);
    let config = FollowConfig { core: args.core.clone(), token, verifier, downtime_after, issuer: args.issuer };
    let follower = Follower::new(config, store.clone(), stop.clone())?;
    let status = follower.status();
    let thread = std::thread::Builder::new().name("vaidya-node-follow".into()).spawn(move || follower.run()).map_err(|e| e.to_string())?;
    let state = NodeState { department: Arc::new(args.department.clone()), status };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().map_err(|e| e.to_string())?;
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen).await.map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let bound = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(department = %args.department, core = %args.core, "Vaidya node listening on http://{bound}");
        println!("Vaidya node listening on http://{bound}");
        let app = axum::Router::new()
            .route("/healthz", get(healthz))
            .route("/metrics", get(metrics))
            .route("/status", get(status_json))
            .with_state(state);
        axum::serve(listener, app).with_graceful_shutdown(crate::cli::serve::shutdown_signal()).await.map_err(|e| e.to_string())
    });
    stop.store(true, Ordering::Release);
    let _ = thread.join();
    store.shutdown();
    served.map(|()| ExitCode::SUCCESS)
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

async fn healthz(State(s): State<NodeState>) -> String {
    let st = s.status.lock().expect("not poisoned").clone();
    format!(
        "ok node mode={} department={} ledger_entries={} core_entries={} lag_ms={} refused={}\n",
        st.mode.as_str(),
        s.department,
        st.entries,
        st.core_entries,
        st.last_lag_ms,
        st.refused
    )
}

/// The follower's whole status, the last failure and refusal with their reasons (JSON).
async fn status_json(State(s): State<NodeState>) -> axum::Json<FollowStatus> {
    axum::Json(s.status.lock().expect("not poisoned").clone())
}

async fn metrics(State(s): State<NodeState>) -> String {
    let st = s.status.lock().expect("not poisoned").clone();
    let behind = st.core_entries.saturating_sub(st.entries);
    let answered = st.core_answered_ms as f64 / 1000.0;
    format!(
        "# HELP vaidya_node_downtime 1 while the node is in downtime mode (the core does not answer).\n# TYPE vaidya_node_downtime gauge\nvaidya_node_downtime {}\n\
         # HELP vaidya_node_downtimes_total Switches to downtime mode since start.\n# TYPE vaidya_node_downtimes_total counter\nvaidya_node_downtimes_total {}\n\
         # HELP vaidya_node_entries Ledger entries in the node's replica.\n# TYPE vaidya_node_entries gauge\nvaidya_node_entries {}\n\
         # HELP vaidya_node_core_entries The core's signed ledger as last heard.\n# TYPE vaidya_node_core_entries gauge\nvaidya_node_core_entries {}\n\
         # HELP vaidya_node_behind_entries Entries the core has signed that the replica lacks.\n# TYPE vaidya_node_behind_entries gauge\nvaidya_node_behind_entries {behind}\n\
         # HELP vaidya_node_lag_seconds Commit-to-replica lag of the last entry applied.\n# TYPE vaidya_node_lag_seconds gauge\nvaidya_node_lag_seconds {}\n\
         # HELP vaidya_node_lag_p99_seconds Commit-to-replica lag, 99th percentile since start.\n# TYPE vaidya_node_lag_p99_seconds gauge\nvaidya_node_lag_p99_seconds {}\n\
         # HELP vaidya_node_core_answered_timestamp_seconds When the core last answered.\n# TYPE vaidya_node_core_answered_timestamp_seconds gauge\nvaidya_node_core_answered_timestamp_seconds {answered}\n\
         # HELP vaidya_node_failures_total Feed requests that failed (core unreachable).\n# TYPE vaidya_node_failures_total counter\nvaidya_node_failures_total {}\n\
         # HELP vaidya_node_state_updates_total Times the accounts, grants and counters were updated from the core.\n# TYPE vaidya_node_state_updates_total counter\nvaidya_node_state_updates_total {}\n\
         # HELP vaidya_node_refused_total Feeds refused by a check (alert on increase).\n# TYPE vaidya_node_refused_total counter\nvaidya_node_refused_total {}\n",
        u8::from(st.mode == crate::node::follow::Mode::Downtime),
        st.downtimes,
        st.entries,
        st.core_entries,
        st.last_lag_ms as f64 / 1000.0,
        st.lag.p99_ms as f64 / 1000.0,
        st.failures,
        st.state_updates,
        st.refused
    )
}
