//! Durable audit events per second, and `Audit::record` latency, with N concurrent callers.
//!
//! ```sh
//! cargo bench -p vaidya-audit --bench record                  # 1, 8 and 64 callers, 10 s each
//! cargo bench -p vaidya-audit --bench record -- --callers 64 --secs 20 --dir /var/tmp
//! ```
//!
//! Each caller is a tokio task (2 worker threads, like the server on this machine) that
//! records one realistic event (a doctor reading a Patient: user, role, token, IP address, user
//! agent, purpose) at a time and waits until it is durable, as a request handler would. The
//! ledger is a fresh audit directory in `--dir` (default: the system temp dir; use the disk the
//! data directory lives on).

use std::time::{Duration, Instant};
use vaidya_audit::{Action, Audit, AuditRecord, Outcome, Purpose, Source, Who};

fn event(caller: usize, i: u64) -> AuditRecord {
    let patient = format!("0192f3a1-7c4e-7b21-9d3e-{:012x}", (caller as u64) << 32 | (i % 100_000));
    AuditRecord {
        time_ms: vaidya_audit::now_ms(),
        action: Action::Read,
        outcome: Outcome::Allowed,
        who: Who {
            user: Some(format!("dr.sharma{}", caller % 50)),
            role: Some("doctor".into()),
            session: Some(format!("tok_{:016x}", caller)),
        },
        source: Source {
            address: Some(format!("10.20.{}.{}", caller % 256, i % 250)),
            user_agent: Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0".into()),
        },
        what: vec![format!("Patient/{patient}")],
        query: None,
        returned: vec![],
        patients: vec![patient],
        purpose: Some(Purpose::Treatment),
        reason: None,
        target_user: None,
    }
}

struct Args {
    callers: Vec<usize>,
    secs: u64,
    dir: std::path::PathBuf,
}

fn args() -> Args {
    let mut a = Args { callers: vec![1, 8, 64], secs: 10, dir: std::env::temp_dir() };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--callers" => a.callers = it.next().expect("--callers N,N").split(',').map(|n| n.parse().expect("number")).collect(),
            "--secs" => a.secs = it.next().expect("--secs N").parse().expect("number"),
            "--dir" => a.dir = it.next().expect("--dir DIR").into(),
            _ => {} // `cargo bench` passes --bench
        }
    }
    a
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn main() {
    let a = args();
    // What a caller spends before the writer sees the event: the compact record it stores, and
    // (for comparison) the AuditEvent JSON written from it when the entry is read or exported.
    let n = 50_000u64;
    let started = Instant::now();
    let mut bytes = 0usize;
    for i in 0..n {
        bytes += vaidya_audit::compact::encode(&event(1, i)).len();
    }
    let compact_us = started.elapsed().as_secs_f64() * 1e6 / n as f64;
    let started = Instant::now();
    let mut json_bytes = 0usize;
    for i in 0..n {
        json_bytes += event(1, i).to_fhir_json().len();
    }
    println!(
        "serialise: {compact_us:.2} us/event on the caller, {} bytes stored per event (its AuditEvent JSON, written when read: {:.2} us, {} bytes)",
        bytes / n as usize,
        started.elapsed().as_secs_f64() * 1e6 / n as f64,
        json_bytes / n as usize
    );
    println!("| callers | events | seconds | events/s | p50 ms | p99 ms | max ms | flushes | events/flush | disk bytes/event | flusher busy | of which write | syncs | ms/sync | audit threads' CPU µs/event |");
    println!("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    let mut verified = Vec::new();
    for &callers in &a.callers {
        let dir = tempfile::Builder::new().prefix("vaidya-audit-bench").tempdir_in(&a.dir).expect("temp dir");
        let key = vaidya_ledger::LedgerKey::generate("vaidya.bench/audit");
        let audit = Audit::open(dir.path(), vaidya_ledger::LedgerKey::from_private(key.private_text()).unwrap()).expect("open");
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let written_before = write_bytes();
        let cpu_before = audit_threads_cpu_us();
        let deadline = Instant::now() + Duration::from_secs(a.secs);
        let started = Instant::now();
        let latencies: Vec<u32> = rt.block_on(async {
            let mut tasks = Vec::new();
            for c in 0..callers {
                let audit = audit.clone();
                tasks.push(tokio::spawn(async move {
                    let mut lat = Vec::with_capacity(100_000);
                    let mut i = 0u64;
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        audit.record(vec![event(c, i)]).await.expect("recorded");
                        lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        i += 1;
                    }
                    lat
                }));
            }
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap());
            }
            all
        });
        let secs = started.elapsed().as_secs_f64();
        let stats = audit.stats();
        let cpu = audit_threads_cpu_us() - cpu_before;
        let written = write_bytes() - written_before;
        let mut sorted = latencies;
        sorted.sort_unstable();
        println!(
            "| {callers} | {} | {secs:.1} | {:.0} | {:.2} | {:.2} | {:.1} | {} | {:.1} | {} | {:.0}% | {:.0}% | {} | {:.2} | {:.1} |",
            sorted.len(),
            sorted.len() as f64 / secs,
            percentile(&sorted, 0.50),
            percentile(&sorted, 0.99),
            sorted.last().copied().unwrap_or(0) as f64 / 1000.0,
            stats.commits,
            stats.events as f64 / stats.commits.max(1) as f64,
            written / stats.events.max(1),
            stats.busy_us as f64 / 1e4 / secs,
            stats.commit_us as f64 / 1e4 / secs,
            stats.syncs,
            stats.sync_us as f64 / 1e3 / stats.syncs.max(1) as f64,
            cpu as f64 / stats.events.max(1) as f64,
        );
        drop(rt);
        audit.shutdown();
        let t = Instant::now();
        let report = vaidya_audit::verify(dir.path(), key.verifier_text()).expect("the ledger verifies");
        verified.push(format!("{callers} callers: {} entries verified in {:.2}s", report.entries, t.elapsed().as_secs_f64()));
    }
    for v in verified {
        println!("verify: {v}");
    }
}

/// Bytes this process has caused to be written to storage (Linux `/proc/self/io`).
fn write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("write_bytes: ").and_then(|v| v.trim().parse().ok())))
        .unwrap_or(0)
}

/// CPU time (user + system, µs) of this process's audit threads (writer, flusher, indexer),
/// from `/proc/self/task/*/stat`.
fn audit_threads_cpu_us() -> u64 {
    let tick_us = 1_000_000 / 100; // USER_HZ is 100 on Linux
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        if !stat[open + 1..close].starts_with("vaidya-audit") {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // After the name: state is field 3 of stat(5); utime and stime are fields 14 and 15.
        let (ut, st): (u64, u64) = (fields[11].parse().unwrap_or(0), fields[12].parse().unwrap_or(0));
        total += (ut + st) * tick_us;
    }
    total
}
