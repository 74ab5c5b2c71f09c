//! `run-opd` and `run-patients`: the hospital-workflow benchmarks end to end, each against a
//! `vaidya serve` it starts on a fresh data directory, as a Markdown report on stdout
//! (progress on stderr). `scripts/bench opd` and `scripts/bench patients` run them.

use crate::all::{self, Row, Server};
use crate::gen_patients::{self, GenPatientsArgs, Manifest};
use crate::load::{self, LoadOpts};
use crate::opd::{self, OpdShape};
use crate::patients;
use crate::sys::{self, mib};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(clap::Args, Clone, Debug)]
pub struct SuiteOpts {
    /// The vaidya binary.
    #[arg(long, value_name = "PATH", default_value = "target/release/vaidya")]
    pub vaidya: PathBuf,
    /// Work directory (generated data, data directories, logs); made for vaidya-bench only.
    #[arg(long, value_name = "DIR")]
    pub work: PathBuf,
    /// Seconds of load.
    #[arg(long, default_value_t = 30.0)]
    pub seconds: f64,
    /// Runtime threads of the load generator (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// A line to add to the report's header (repeatable), e.g. the commit.
    #[arg(long, value_name = "TEXT")]
    pub note: Vec<String>,
}

#[derive(clap::Args, Clone, Debug)]
pub struct RunOpdArgs {
    #[command(flatten)]
    pub suite: SuiteOpts,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub clients: u32,
    #[command(flatten)]
    pub shape: OpdShape,
}

#[derive(clap::Args, Clone, Debug)]
pub struct RunPatientsArgs {
    #[command(flatten)]
    pub suite: SuiteOpts,
    /// Concurrent clients: one search run per value (and per total mode), e.g. `4,16`.
    #[arg(long, value_delimiter = ',', default_values_t = [4u32, 16], value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub clients: Vec<u32>,
    /// Patients to generate and import.
    #[arg(long, default_value_t = 1_000_000)]
    pub count: u64,
    /// Seed of the generated patients.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Patients per NDJSON file.
    #[arg(long, default_value_t = 50_000)]
    pub per_file: u64,
    /// Page size of every search (`_count`).
    #[arg(long, default_value_t = 20)]
    pub page: u32,
}

fn header(title: &str, s: &SuiteOpts, settings: &str) -> Result<(), String> {
    if !s.vaidya.is_file() {
        return Err(format!("{}: no such file (cargo build --release --bin vaidya)", s.vaidya.display()));
    }
    all::prepare_work(&s.work)?;
    let version =
        Command::new(&s.vaidya).arg("--version").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
    println!("## {title}\n");
    for line in sys::machine() {
        println!("- {line}");
    }
    for n in &s.note {
        println!("- {n}");
    }
    println!("- Server: {} ({version})", s.vaidya.display());
    println!("- Settings: {settings}\n");
    Ok(())
}

fn load_opts(s: &SuiteOpts, clients: u32, server: &Server, token: String) -> LoadOpts {
    LoadOpts { base: server.base.clone(), token, clients, seconds: s.seconds, max_requests: None, timeout: 30, threads: s.threads }
}

/// Stop the server and add what it used to the notes; false if it did not exit cleanly.
fn stop(server: &mut Server, logs: &Path, notes: &mut Vec<String>) -> Result<bool, String> {
    if let Some((anon, file)) = sys::rss_split_kib(server.child.id()) {
        notes.push(format!("vaidya serve resident memory at the end: {} anonymous + {} file-backed (mmap, page cache).", mib(anon), mib(file)));
    }
    eprintln!("[bench] stopping the server (SIGTERM)");
    let log = logs.join("serve.log");
    Ok(match server.stop()? {
        (Some(u), secs) => {
            let clean = u.code == Some(0);
            notes.push(format!(
                "vaidya serve: peak RSS {}, CPU {:.1} s in all; after SIGTERM it exited in {secs:.1} s with {}.",
                mib(u.max_rss_kib),
                u.cpu_seconds,
                all::describe_exit(&u)
            ));
            if let Some(w) = all::writer_stats(&std::fs::read_to_string(&log).unwrap_or_default()) {
                notes.push(format!("vaidya serve: {w} (over its whole run)."));
            }
            if !clean {
                notes.push(format!("DEFECT: vaidya serve did not exit cleanly on SIGTERM; see {}", log.display()));
            }
            clean
        }
        (None, secs) => {
            notes.push(format!("DEFECT: vaidya serve did not exit within {secs:.0} s of SIGTERM and was killed"));
            false
        }
    })
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

pub fn run_opd(args: &RunOpdArgs) -> Result<bool, String> {
    let s = &args.suite;
    let sh = &args.shape;
    header(
        "OPD morning rush",
        s,
        &format!(
            "{} clients for {} s; {} departments x {} doctors, {} days of slots, {} places per {}-minute slot; {}% of clients contend for the earliest free slot",
            args.clients, s.seconds, sh.departments, sh.doctors, sh.days, sh.capacity, sh.slot_minutes, sh.hot_percent
        ),
    )?;
    let logs = s.work.join("logs-opd");
    std::fs::create_dir_all(&logs).map_err(|e| e.to_string())?;
    let data = s.work.join("data-opd");
    all::fresh_dir(&s.work, &data)?;
    let mut notes = vec![];
    eprintln!("[bench] starting vaidya serve on a fresh {}", data.display());
    // The first start creates the data directory; `vaidya token` needs it to exist.
    let mut server = Server::start(&s.vaidya, &data, &logs.join("serve.log"))?;
    let token = all::token(&s.vaidya, &data)?;
    let opts = load_opts(s, args.clients, &server, token);
    let pid = server.child.id();
    let me = std::process::id();
    let rt = load::runtime(s.threads)?;
    let outcome = rt.block_on(async {
        let base = crate::http::Base::parse(&opts.base)?;
        let auth = crate::http::bearer(&opts.token)?;
        let client = crate::http::client(4);
        eprintln!("[bench] setup: departments, doctors, schedules, $generate-slots");
        let setup = opd::setup(&client, &auth, &base, sh).await?;
        eprintln!("[bench] rush: {} clients for {} s (load average {})", args.clients, s.seconds, sys::load_average());
        let (s0, b0) = (sys::cpu_seconds(pid).unwrap_or(0.0), sys::cpu_seconds(me).unwrap_or(0.0));
        let r = opd::rush(&opts, sh, &setup).await?;
        let (s1, b1) = (sys::cpu_seconds(pid).unwrap_or(0.0), sys::cpu_seconds(me).unwrap_or(0.0));
        eprintln!("[bench] verifying every slot");
        let v = opd::verify(&opts, 8).await?;
        Ok::<_, String>((setup, r, v, s1 - s0, b1 - b0))
    });
    drop(rt);
    let mut ok = true;
    match outcome {
        Ok((setup, r, v, server_cpu, bench_cpu)) => {
            print!("{}", opd::markdown(&setup, sh, &r, &v));
            notes.push(format!(
                "During the rush: vaidya serve used {server_cpu:.1} CPU-s, vaidya-bench {bench_cpu:.1} CPU-s (of {:.0} available on {} cores); server peak RSS so far {}.",
                r.seconds * std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64),
                std::thread::available_parallelism().map_or(1, |n| n.get()),
                sys::peak_rss_kib(pid).map_or("?".into(), mib)
            ));
            let target = r.rate() >= 500.0 && r.rec.steps.get("book").and_then(|b| b.percentile_ms(99.0)).is_some_and(|p| p < 50.0);
            notes.push(format!(
                "Target (>= 500 bookings/s, booking p99 < 50 ms, 0 overbooked): {}.",
                if target && v.overbooked.is_empty() { "met" } else { "NOT met" }
            ));
            ok &= v.overbooked.is_empty() && r.rec.failed() == 0;
        }
        Err(e) => {
            notes.push(format!("the OPD run could not complete: {e}"));
            ok = false;
        }
    }
    ok &= stop(&mut server, &logs, &mut notes)?;
    notes.push(format!("Data directory: {} ({:.0} MiB). Load average at the end: {}. Logs: {}", data.display(), dir_size(&data) as f64 / 1048576.0, sys::load_average(), logs.display()));
    all::finish(&notes);
    Ok(ok)
}

pub fn run_patients(args: &RunPatientsArgs) -> Result<bool, String> {
    let s = &args.suite;
    header(
        &format!("Patient search at {} patients", args.count),
        s,
        &format!(
            "gen-patients seed {}, {} patients; search with {:?} clients for {} s each, with and without the total, `_count={}`",
            args.seed, args.count, args.clients, s.seconds, args.page
        ),
    )?;
    let mut notes = vec![];
    let mut ok = true;
    println!("{}", Row::header());
    let emit = |row: &Row| {
        println!("{}", row.markdown());
        use std::io::Write;
        let _ = std::io::stdout().flush();
    };

    // 1. The generated patients, reused when a complete set with the same settings exists.
    let generated = s.work.join(format!("patients-{}-seed{}", args.count, args.seed));
    let wanted = Manifest { seed: args.seed, count: args.count, per_file: args.per_file };
    if Manifest::read(&generated).ok().as_ref() == Some(&wanted) {
        eprintln!("[bench] reusing {}", generated.display());
        notes.push(format!("The patients were generated by an earlier run ({}).", generated.display()));
    } else {
        all::fresh_dir(&s.work, &generated)?;
        eprintln!("[bench] generating {} patients into {}", args.count, generated.display());
        let cpu0 = sys::cpu_seconds(std::process::id()).unwrap_or(0.0);
        let g = gen_patients::run(&GenPatientsArgs {
            count: args.count,
            out: generated.clone(),
            seed: args.seed,
            per_file: args.per_file,
            threads: None,
            overwrite: false,
        })?;
        emit(&Row {
            name: "gen-patients (vaidya-bench)".into(),
            work: format!("{} patients, {} files, {:.0} MiB", g.patients, g.files, g.bytes as f64 / 1048576.0),
            seconds: g.seconds,
            throughput: format!("{:.0} patients/s", g.patients as f64 / g.seconds.max(1e-9)),
            latencies: [None; 4],
            failed: 0,
            rss_kib: None,
            cpu: format!("{:.1}", sys::cpu_seconds(std::process::id()).unwrap_or(0.0) - cpu0),
        });
    }

    // 2. Import into a fresh data directory.
    let logs = s.work.join("logs-patients");
    std::fs::create_dir_all(&logs).map_err(|e| e.to_string())?;
    let data = s.work.join("data-patients");
    all::fresh_dir(&s.work, &data)?;
    eprintln!("[bench] vaidya import of {} patients into {}", args.count, data.display());
    let (row, imported, mut n) =
        all::import_named(&s.vaidya, &data, &generated, &logs.join("import.log"), "patients", &format!("import {} patients (vaidya import)", args.count))?;
    emit(&row);
    notes.append(&mut n);
    notes.push(format!("Data directory after the import: {:.0} MiB.", dir_size(&data) as f64 / 1048576.0));
    if !imported {
        all::finish(&notes);
        return Ok(false);
    }

    // 3. Serve and search.
    let token = all::token(&s.vaidya, &data)?;
    eprintln!("[bench] starting vaidya serve on {}", data.display());
    let mut server = Server::start(&s.vaidya, &data, &logs.join("serve.log"))?;
    let (pid, me) = (server.child.id(), std::process::id());
    let rt = load::runtime(s.threads)?;
    let modes = [(false, "with the exact `Bundle.total` (the default)"), (true, "with `_total=none` (one page, no count)")];
    for (clients, (no_total, label)) in args.clients.iter().flat_map(|c| modes.iter().map(move |m| (*c, *m))) {
        let opts = load_opts(s, clients, &server, token.clone());
        let label = format!("{label}, {clients} clients");
        eprintln!("[bench] search {label} for {} s (load average {})", s.seconds, sys::load_average());
        let (s0, b0) = (sys::cpu_seconds(pid).unwrap_or(0.0), sys::cpu_seconds(me).unwrap_or(0.0));
        let r = rt.block_on(patients::search_load(&opts, args.seed, args.count, args.page, no_total));
        let (s1, b1) = (sys::cpu_seconds(pid).unwrap_or(0.0), sys::cpu_seconds(me).unwrap_or(0.0));
        println!();
        match r {
            Ok(r) => {
                println!("Search {label}, {:.1} s:\n", r.seconds);
                print!("{}", r.markdown());
                println!(
                    "\nMatches per search (average {}): {}.",
                    if no_total { "on the first page" } else { "Bundle.total" },
                    r.matches_line()
                );
                notes.push(format!(
                    "Search {label}: vaidya serve used {:.1} CPU-s, vaidya-bench {:.1} CPU-s; server peak RSS so far {}.",
                    s1 - s0,
                    b1 - b0,
                    sys::peak_rss_kib(pid).map_or("?".into(), mib)
                ));
                let worst = r.worst_p99();
                notes.push(format!(
                    "Target (p99 < 10 ms for every kind of search) {label}: {} (worst p99 {}).",
                    if worst.is_some_and(|w| w < 10.0) { "met" } else { "NOT met" },
                    worst.map_or("-".into(), |w| format!("{w:.1} ms"))
                ));
                for l in r.rec.failure_lines().iter().take(10) {
                    notes.push(l.clone());
                }
                ok &= r.rec.failed() == 0;
            }
            Err(e) => {
                notes.push(format!("search load {label} could not run: {e}"));
                ok = false;
            }
        }
    }
    drop(rt);
    ok &= stop(&mut server, &logs, &mut notes)?;
    notes.push(format!("Load average at the end: {}. Logs: {}", sys::load_average(), logs.display()));
    all::finish(&notes);
    Ok(ok)
}
