//! `all`: the whole suite end to end, as a Markdown report on stdout (progress on stderr).
//!
//! 1. generate the Nx Synthea set (kept in the work directory and reused by later runs);
//! 2. `vaidya import` of the 1x set, then of the Nx set, each into a fresh data directory;
//! 3. `vaidya serve` on the Nx data directory, then `tx` and `read` against it;
//! 4. SIGTERM to the server, which must exit cleanly.

use crate::gen_synthea::{self, GenArgs};
use crate::load::{self, LoadOpts, Report};
use crate::sys::{self, mib};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone)]
pub struct AllArgs {
    /// The vaidya binary.
    #[arg(long, value_name = "PATH", default_value = "target/release/vaidya")]
    pub vaidya: PathBuf,
    /// Directory of Synthea transaction Bundles.
    #[arg(long, value_name = "DIR", default_value = "../shared/data/synthea-r4")]
    pub synthea: PathBuf,
    /// Copies of the Synthea set for the large import and the server's data.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub copies: u32,
    /// Work directory (generated data, data directories, logs); made for vaidya-bench only.
    #[arg(long, value_name = "DIR")]
    pub work: PathBuf,
    /// Seed for the generated copies.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Concurrent clients for tx and read.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub clients: u32,
    /// Seconds for each of tx and read.
    #[arg(long, default_value_t = 20.0)]
    pub seconds: f64,
    /// Ids the read benchmark goes round-robin over.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub read_ids: u64,
    /// Runtime threads of the load generator (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// A line to add to the report's header (repeatable), e.g. the commit.
    #[arg(long, value_name = "TEXT")]
    pub note: Vec<String>,
    /// Run Vaidya on PostgreSQL: a key-value connection string to an administrative database
    /// (e.g. `host=/tmp/pg port=5432 user=vaidya dbname=postgres`); each data directory gets a
    /// fresh database of its own name there (scripts/bench-pg starts such a server).
    #[arg(long, value_name = "CONN")]
    pub postgres_admin: Option<String>,
}

/// The PostgreSQL database of each data directory, when the suite runs on PostgreSQL: every
/// `vaidya` command on that directory gets it as `VAIDYA_DATABASE`.
static DATABASES: std::sync::Mutex<Vec<(PathBuf, String)>> = std::sync::Mutex::new(Vec::new());

/// A fresh database for `data` on the server `admin` names (dropped first if it exists).
pub(crate) fn fresh_database(admin: &str, data: &Path) -> Result<(), String> {
    let name: String = data
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("data")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
        .collect();
    let name = format!("bench_{name}");
    let mut client = postgres::Client::connect(admin, postgres::NoTls).map_err(|e| format!("PostgreSQL {admin}: {e}"))?;
    // Two statements: CREATE DATABASE cannot run inside the implicit transaction of a batch.
    for sql in [format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"), format!("CREATE DATABASE {name}")] {
        client.batch_execute(&sql).map_err(|e| format!("{sql}: {}", e.as_db_error().map_or(e.to_string(), |d| d.message().to_string())))?;
    }
    let mut dbs = DATABASES.lock().expect("not poisoned");
    dbs.retain(|(d, _)| d != data);
    dbs.push((data.to_path_buf(), format!("{admin} dbname={name}")));
    Ok(())
}

/// `vaidya` with the environment for data directory `data`.
pub(crate) fn vaidya_on(vaidya: &Path, data: &Path) -> Command {
    let mut command = Command::new(vaidya);
    if let Some((_, url)) = DATABASES.lock().expect("not poisoned").iter().find(|(d, _)| d == data) {
        command.env("VAIDYA_DATABASE", url);
    }
    command
}

pub(crate) const MARKER: &str = ".vaidya-bench-work";

pub(crate) struct Row {
    pub name: String,
    pub work: String,
    pub seconds: f64,
    pub throughput: String,
    pub latencies: [Option<f64>; 4],
    pub failed: u64,
    pub rss_kib: Option<u64>,
    pub cpu: String,
}

impl Row {
    pub fn header() -> &'static str {
        "| Benchmark | Work | Time | Throughput | p50 ms | p90 ms | p99 ms | max ms | Failed | Peak RSS | CPU s |\n\
         |---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|"
    }

    pub fn markdown(&self) -> String {
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        format!(
            "| {} | {} | {:.1} s | {} | {} | {} | {} | {} | {} | {} | {} |",
            self.name,
            self.work,
            self.seconds,
            self.throughput,
            ms(self.latencies[0]),
            ms(self.latencies[1]),
            ms(self.latencies[2]),
            ms(self.latencies[3]),
            self.failed,
            self.rss_kib.map_or("-".into(), mib),
            self.cpu
        )
    }
}

pub fn run(args: &AllArgs) -> Result<bool, String> {
    if !args.vaidya.is_file() {
        return Err(format!("{}: no such file (cargo build --release --bin vaidya)", args.vaidya.display()));
    }
    if !args.synthea.is_dir() {
        return Err(format!("{}: no such directory", args.synthea.display()));
    }
    prepare_work(&args.work)?;
    let version = Command::new(&args.vaidya)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();

    println!("## Vaidya benchmarks\n");
    for line in sys::machine() {
        println!("- {line}");
    }
    for n in &args.note {
        println!("- {n}");
    }
    println!("- Server: {} ({version})", args.vaidya.display());
    match &args.postgres_admin {
        Some(admin) => println!("- Database: PostgreSQL ({admin}), a fresh database per data directory"),
        None => println!("- Database: SQLite, a file in each data directory"),
    }
    println!(
        "- Settings: Synthea {}x from {}, seed {}; tx and read with {} clients for {} s each\n",
        args.copies,
        args.synthea.display(),
        args.seed,
        args.clients,
        args.seconds
    );
    println!("{}", Row::header());
    let mut notes: Vec<String> = vec![];
    let mut all_ok = true;
    let emit = |row: &Row| {
        println!("{}", row.markdown());
        use std::io::Write;
        let _ = std::io::stdout().flush();
    };

    // 1. The generated set, reused when a complete one with the same settings exists.
    let generated = args.work.join(format!("synthea-x{}-seed{}", args.copies, args.seed));
    let done_marker = generated.join(".complete");
    if done_marker.is_file() {
        eprintln!("[bench] reusing {}", generated.display());
        notes.push(format!("The {}x set was generated by an earlier run ({}).", args.copies, generated.display()));
    } else {
        if generated.exists() {
            std::fs::remove_dir_all(&generated).map_err(|e| format!("{}: {e}", generated.display()))?;
        }
        eprintln!("[bench] generating {} copies of {} into {}", args.copies, args.synthea.display(), generated.display());
        let cpu0 = sys::cpu_seconds(std::process::id()).unwrap_or(0.0);
        let g = gen_synthea::run(&GenArgs {
            from: args.synthea.clone(),
            copies: args.copies,
            out: generated.clone(),
            seed: args.seed,
            threads: None,
            overwrite: false,
        })?;
        std::fs::write(&done_marker, g.describe()).map_err(|e| e.to_string())?;
        let cpu = sys::cpu_seconds(std::process::id()).unwrap_or(0.0) - cpu0;
        emit(&Row {
            name: format!("gen-synthea {}x (vaidya-bench)", args.copies),
            work: format!("{} files, {} resources, {:.0} MiB", g.files, g.resources, g.bytes as f64 / 1048576.0),
            seconds: g.seconds,
            throughput: format!("{:.0} resources/s", g.resources as f64 / g.seconds.max(1e-9)),
            latencies: [None; 4],
            failed: 0,
            rss_kib: None,
            cpu: format!("{cpu:.1}"),
        });
    }

    // 2. Imports.
    let logs = args.work.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| e.to_string())?;
    let data_1x = args.work.join("data-x1");
    let data_nx = args.work.join(format!("data-x{}", args.copies));
    for (label, input, data) in [("1x", &args.synthea, &data_1x), (&*format!("{}x", args.copies), &generated, &data_nx)] {
        fresh_dir(&args.work, data)?;
        if let Some(admin) = &args.postgres_admin {
            fresh_database(admin, data)?;
        }
        eprintln!("[bench] vaidya import of the {label} set into {}", data.display());
        let log = logs.join(format!("import-{label}.log"));
        let (row, ok, mut n) = import(&args.vaidya, data, input, &log, label)?;
        emit(&row);
        all_ok &= ok;
        notes.append(&mut n);
    }

    // 3. The server on the Nx data.
    let token = token(&args.vaidya, &data_nx)?;
    eprintln!("[bench] starting vaidya serve on {}", data_nx.display());
    let mut server = Server::start(&args.vaidya, &data_nx, &logs.join("serve.log"))?;
    eprintln!("[bench] server at {}", server.base);
    let rt = load::runtime(args.threads)?;
    let opts = LoadOpts {
        base: server.base.clone(),
        token,
        clients: args.clients,
        seconds: args.seconds,
        max_requests: None,
        timeout: 30,
        threads: args.threads,
    };
    let pid = server.child.id();
    let me = std::process::id();

    let phase = |name: &str, report: &Report, unit: &str, server_cpu: f64, bench_cpu: f64| Row {
        name: name.to_string(),
        work: format!("{} {unit}, {} clients", report.ok, report.clients),
        seconds: report.seconds,
        throughput: format!("{:.1} {unit}/s", report.rate()),
        latencies: [report.percentile_ms(50.0), report.percentile_ms(90.0), report.percentile_ms(99.0), report.max_ms()],
        failed: report.failed,
        rss_kib: sys::peak_rss_kib(pid),
        cpu: format!("server {server_cpu:.1}, bench {bench_cpu:.1}"),
    };
    let failure_notes = |name: &str, r: &Report, notes: &mut Vec<String>| {
        if let Some((anon, file)) = sys::rss_split_kib(pid) {
            notes.push(format!(
                "{name}: vaidya serve resident memory at the end: {} anonymous + {} file-backed (mmap, page cache).",
                mib(anon),
                mib(file)
            ));
        }
        for (what, n) in r.failures.iter().take(8) {
            notes.push(format!("{name}: {n} request(s) failed: {what}"));
        }
    };

    eprintln!("[bench] tx: {} clients for {} s (load average {})", args.clients, args.seconds, sys::load_average());
    let (s0, b0) = (sys::cpu_seconds(pid).unwrap_or(0.0), sys::cpu_seconds(me).unwrap_or(0.0));
    let tx = rt.block_on(load::tx(&opts));
    let (s1, b1) = (sys::cpu_seconds(pid).unwrap_or(0.0), sys::cpu_seconds(me).unwrap_or(0.0));
    match tx {
        Ok(r) => {
            emit(&phase("tx: POST transaction (Patient + Observation)", &r, "tx", s1 - s0, b1 - b0));
            all_ok &= r.failed == 0;
            failure_notes("tx", &r, &mut notes);
        }
        Err(e) => {
            all_ok = false;
            notes.push(format!("tx could not run: {e}"));
        }
    }
    if let Some(gone) = server.exited()? {
        notes.push(format!("DEFECT: the server exited during tx: {gone}; see {}", logs.join("serve.log").display()));
        finish(&notes);
        return Ok(false);
    }

    eprintln!("[bench] read: {} clients for {} s (load average {})", args.clients, args.seconds, sys::load_average());
    let (s0, b0) = (sys::cpu_seconds(pid).unwrap_or(0.0), sys::cpu_seconds(me).unwrap_or(0.0));
    let read = rt.block_on(load::read(&opts, "Patient", args.read_ids));
    let (s1, b1) = (sys::cpu_seconds(pid).unwrap_or(0.0), sys::cpu_seconds(me).unwrap_or(0.0));
    match read {
        Ok(r) => {
            let name = format!("read: GET Patient/id ({} ids)", distinct_ids(&r));
            emit(&phase(&name, &r, "reads", s1 - s0, b1 - b0));
            all_ok &= r.failed == 0;
            failure_notes("read", &r, &mut notes);
        }
        Err(e) => {
            all_ok = false;
            notes.push(format!("read could not run: {e}"));
        }
    }
    drop(rt);

    // 4. Stop the server.
    eprintln!("[bench] stopping the server (SIGTERM)");
    match server.stop()? {
        (Some(u), secs) => {
            let clean = u.code == Some(0);
            all_ok &= clean;
            notes.push(format!(
                "vaidya serve: peak RSS {}, CPU {:.1} s in all; after SIGTERM it exited in {secs:.1} s with {}.",
                mib(u.max_rss_kib),
                u.cpu_seconds,
                describe_exit(&u)
            ));
            if let Some(w) = writer_stats(&std::fs::read_to_string(logs.join("serve.log")).unwrap_or_default()) {
                notes.push(format!("vaidya serve: {w} (over its whole run)."));
            }
            if !clean {
                notes.push(format!("DEFECT: vaidya serve did not exit cleanly on SIGTERM; see {}", logs.join("serve.log").display()));
            }
        }
        (None, secs) => {
            all_ok = false;
            notes.push(format!("DEFECT: vaidya serve did not exit within {secs:.0} s of SIGTERM and was killed"));
        }
    }
    notes.push(format!("Load average at the end: {}. Logs: {}", sys::load_average(), logs.display()));
    finish(&notes);
    Ok(all_ok)
}

fn distinct_ids(r: &Report) -> String {
    // "read Patient by id (N distinct ids) against ..."
    r.what.split('(').nth(1).and_then(|s| s.split_whitespace().next()).unwrap_or("?").to_string()
}

pub(crate) fn finish(notes: &[String]) {
    println!();
    for n in notes {
        println!("- {n}");
    }
}

/// Make sure `work` is ours: a new or empty directory gets the marker; otherwise it must have it.
pub(crate) fn prepare_work(work: &Path) -> Result<(), String> {
    let marker = work.join(MARKER);
    if work.exists() {
        let empty = std::fs::read_dir(work).map_err(|e| format!("{}: {e}", work.display()))?.next().is_none();
        if !empty && !marker.exists() {
            return Err(format!("{} is not empty and was not made by vaidya-bench; give a new directory", work.display()));
        }
    }
    std::fs::create_dir_all(work).map_err(|e| format!("{}: {e}", work.display()))?;
    std::fs::write(&marker, "Work directory of vaidya-bench; its contents are removed and remade by `vaidya-bench all`.\n")
        .map_err(|e| e.to_string())
}

/// Remove `dir` (a child of the marked work directory) if it exists.
pub(crate) fn fresh_dir(work: &Path, dir: &Path) -> Result<(), String> {
    assert!(dir.starts_with(work) && work.join(MARKER).exists(), "only directories inside the work directory are removed");
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    Ok(())
}

/// The `imported N resources from F files in S s (R resources/s)` line.
#[derive(Debug, PartialEq)]
pub struct Imported {
    pub resources: u64,
    pub files: u64,
    pub seconds: f64,
    pub rate: f64,
}

pub fn parse_imported(stdout: &str) -> Option<Imported> {
    let line = stdout.lines().find(|l| l.starts_with("imported "))?;
    let t: Vec<&str> = line.split_whitespace().collect();
    let resources = t.get(1)?.parse().ok()?;
    let files = t.get(4)?.parse().ok()?;
    let seconds = t.get(7)?.trim_end_matches('s').parse().ok()?;
    let open = t.iter().position(|w| w.starts_with('('))?;
    let rate = t[open].trim_start_matches('(').parse().ok()?;
    Some(Imported { resources, files, seconds, rate })
}

pub(crate) fn import(vaidya: &Path, data: &Path, input: &Path, log: &Path, label: &str) -> Result<(Row, bool, Vec<String>), String> {
    import_named(vaidya, data, input, log, label, &format!("import Synthea {label} (vaidya import)"))
}

pub(crate) fn import_named(
    vaidya: &Path,
    data: &Path,
    input: &Path,
    log: &Path,
    label: &str,
    name: &str,
) -> Result<(Row, bool, Vec<String>), String> {
    let log_file = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let started = Instant::now();
    let mut command = vaidya_on(vaidya, data);
    command
        .env("VAIDYA_LOG", CHILD_LOG)
        .env("NO_COLOR", "1")
        .arg("import")
        .arg("--data")
        .arg(data)
        .arg(input)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file);
    die_with_parent(&mut command);
    let mut child = command.spawn().map_err(|e| format!("{}: {e}", vaidya.display()))?;
    let mut out = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let usage = sys::wait_with_usage(&mut child, None)?.expect("waited without timeout");
    let wall = started.elapsed().as_secs_f64();
    let stdout = reader.join().unwrap_or_default();
    let log_text = std::fs::read_to_string(log).unwrap_or_default();
    let refused: Vec<&str> = log_text.lines().filter(|l| l.starts_with("FAILED:")).collect();
    let mut notes = vec![];
    let parsed = parse_imported(&stdout);
    let ok = usage.code == Some(0) && parsed.is_some() && refused.is_empty();
    if !ok {
        notes.push(format!("DEFECT? import {label}: {}; {} refused item(s); see {}", describe_exit(&usage), refused.len(), log.display()));
        for r in refused.iter().take(5) {
            notes.push(format!("import {label}: {}", r.chars().take(300).collect::<String>()));
        }
        if parsed.is_none() {
            let tail: Vec<&str> = log_text.lines().rev().take(5).collect();
            notes.push(format!(
                "import {label}: no `imported ...` line; stderr ends: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            ));
        }
    }
    notes.push(format!(
        "import {label}: the process took {wall:.1} s from start to exit ({:.1} s CPU){}.",
        usage.cpu_seconds,
        writer_stats(&log_text).map_or(String::new(), |w| format!("; {w}"))
    ));
    let row = match parsed {
        Some(p) => Row {
            name: name.to_string(),
            work: format!("{} resources, {} files", p.resources, p.files),
            seconds: p.seconds,
            throughput: format!("{:.0} resources/s", p.rate),
            latencies: [None; 4],
            failed: refused.len() as u64,
            rss_kib: Some(usage.max_rss_kib),
            cpu: format!("{:.1}", usage.cpu_seconds),
        },
        None => Row {
            name: name.to_string(),
            work: "failed".into(),
            seconds: wall,
            throughput: "-".into(),
            latencies: [None; 4],
            failed: refused.len().max(1) as u64,
            rss_kib: Some(usage.max_rss_kib),
            cpu: format!("{:.1}", usage.cpu_seconds),
        },
    };
    Ok((row, ok, notes))
}

/// SIGTERM the child if vaidya-bench dies (e.g. killed by `timeout`), so no server is left behind.
fn die_with_parent(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches only the child being started.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}

/// The writer's own account of how busy it was (`writer stopping` at debug level), if logged.
pub(crate) fn writer_stats(log: &str) -> Option<String> {
    let line = log.lines().rev().find(|l| l.contains("writer stopping"))?;
    let plain = strip_ansi(line);
    let field = |k: &str| plain.split_whitespace().find_map(|w| w.strip_prefix(k)?.strip_prefix('=')?.parse::<i64>().ok());
    let busy = field("busy_ms")?;
    let mut s = format!("writer busy {:.1} s in {} commits", busy as f64 / 1000.0, field("commits")?);
    if let Some(cpu) = field("cpu_ms").filter(|&c| c >= 0) {
        s.push_str(&format!(", writer thread CPU {:.1} s", cpu as f64 / 1000.0));
    }
    Some(s)
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ ... final byte in @..~
            for d in chars.by_ref() {
                if ('@'..='~').contains(&d) && d != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Log settings for the children: info, plus the writer's statistics when it stops.
const CHILD_LOG: &str = "info,vaidya_store::writer=debug";

pub(crate) fn describe_exit(u: &sys::Usage) -> String {
    match (u.code, u.signal) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "unknown exit".into(),
    }
}

/// A token of the load generator's integration account (role `machine`), made on first use:
/// the administrator may not read or write patients' records.
pub(crate) fn token(vaidya: &Path, data: &Path) -> Result<String, String> {
    let add = vaidya_on(vaidya, data)
        .args(["user", "add", "--name", "bench", "--role", "machine", "--data"])
        .arg(data)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", vaidya.display()))?;
    let err = String::from_utf8_lossy(&add.stderr);
    if !add.status.success() && !err.contains("already exists") {
        return Err(format!("vaidya user add failed: {}", err.trim()));
    }
    let out = vaidya_on(vaidya, data)
        .args(["token", "--user", "bench", "--data"])
        .arg(data)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", vaidya.display()))?;
    if !out.status.success() {
        return Err(format!("vaidya token failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(str::to_string)
        .ok_or_else(|| "vaidya token printed nothing".into())
}

/// A running `vaidya serve`; killed on drop if not stopped.
pub(crate) struct Server {
    pub child: Child,
    pub base: String,
    stopped: bool,
}

impl Server {
    pub fn start(vaidya: &Path, data: &Path, log: &Path) -> Result<Server, String> {
        let log_file = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut command = vaidya_on(vaidya, data);
        command
            .env("VAIDYA_LOG", CHILD_LOG)
            .env("NO_COLOR", "1")
            .arg("serve")
            .arg("--data")
            .arg(data)
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        die_with_parent(&mut command);
        let mut child = command.spawn().map_err(|e| format!("{}: {e}", vaidya.display()))?;
        let out = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        // Read until the listening line, then keep draining so the server never blocks on stdout.
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("Vaidya is listening on ").nth(1) {
                    let url = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send(url);
                }
            }
        });
        let mut server = Server { child, base: String::new(), stopped: false };
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(url) if url.starts_with("http://127.0.0.1:") => {
                server.base = format!("{}/fhir", url.trim_end_matches('/'));
                Ok(server)
            }
            Ok(url) => Err(format!("the server says it listens on '{url}', not on 127.0.0.1")),
            Err(_) => {
                let tail = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(5).collect();
                Err(format!(
                    "vaidya serve did not report that it was listening; its log ends: {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
                ))
            }
        }
    }

    /// If the server has exited, how.
    pub fn exited(&mut self) -> Result<Option<String>, String> {
        match sys::wait_with_usage(&mut self.child, Some(Duration::ZERO))? {
            Some(u) => {
                self.stopped = true;
                Ok(Some(describe_exit(&u)))
            }
            None => Ok(None),
        }
    }

    /// SIGTERM, then wait up to 60 s (then SIGKILL). Returns the usage if it exited by itself.
    pub fn stop(&mut self) -> Result<(Option<sys::Usage>, f64), String> {
        let started = Instant::now();
        sys::signal(&self.child, libc::SIGTERM);
        let u = sys::wait_with_usage(&mut self.child, Some(Duration::from_secs(60)))?;
        let secs = started.elapsed().as_secs_f64();
        if u.is_none() {
            sys::signal(&self.child, libc::SIGKILL);
            let _ = sys::wait_with_usage(&mut self.child, None);
        }
        self.stopped = true;
        Ok((u, secs))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.stopped {
            sys::signal(&self.child, libc::SIGKILL);
            let _ = sys::wait_with_usage(&mut self.child, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_import_line() {
        let out = "Created a new data directory at x; admin one-time password: y\nimported 15928 resources from 116 files in 12.34s (1291 resources/s)\n";
        assert_eq!(parse_imported(out), Some(Imported { resources: 15928, files: 116, seconds: 12.34, rate: 1291.0 }));
        let spaced = "imported 10 resources from 1 files in 2.00 s (5 resources/s)";
        assert_eq!(parse_imported(spaced).map(|i| (i.seconds, i.rate)), Some((2.0, 5.0)));
        assert_eq!(parse_imported("nothing here"), None);
    }

    #[test]
    fn parses_writer_stats() {
        let log = "\u{1b}[2m2026-11-27T04:41:51Z\u{1b}[0m \u{1b}[34mDEBUG\u{1b}[0m \u{1b}[2mvaidya_store::writer\u{1b}[0m\u{1b}[2m:\u{1b}[0m writer stopping \u{1b}[3mcommits\u{1b}[0m\u{1b}[2m=\u{1b}[0m12 \u{1b}[3mbusy_ms\u{1b}[0m\u{1b}[2m=\u{1b}[0m3400 \u{1b}[3mcpu_ms\u{1b}[0m\u{1b}[2m=\u{1b}[0m2100 entries=5";
        assert_eq!(writer_stats(log).as_deref(), Some("writer busy 3.4 s in 12 commits, writer thread CPU 2.1 s"));
        assert_eq!(
            writer_stats("x DEBUG writer stopping commits=1 busy_ms=5 cpu_ms=-1").as_deref(),
            Some("writer busy 0.0 s in 1 commits")
        );
        assert_eq!(writer_stats("nothing"), None);
    }
}
