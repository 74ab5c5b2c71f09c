//! `vaidya import`: bulk loading through the same validation, indexing and ledger as the API.
//!
//! Parsing, validation and index extraction run on worker threads, one file (or NDJSON chunk)
//! at a time; the writer commits their jobs in groups. Bounded queues keep memory flat however
//! many files are given.

use crate::cli::DataArgs;
use crate::datadir;
use crate::error::ApiError;
use crate::fhir::bundle::{PreparedTransaction, prepare_for_import};
use crate::fhir::charges::IMPORT_AUTHOR;
use crate::fhir::{Prepared, check_id, new_id, prepare};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use vaidya_store::Store;

#[derive(clap::Args)]
#[command(after_help = "The server must not be running on the same data directory (import takes its lock).\n\
Transaction Bundles are all-or-nothing each; in NDJSON every line is one resource (kept with its id if it has one).\n\
Example: vaidya import --data /srv/vaidya ../shared/data/synthea-r4")]
pub struct ImportArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Files or directories (.json transaction Bundles, .ndjson resources).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Worker threads for parsing and validation (default: all cores).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// How to maintain the search indexes: `rebuild` drops them and rebuilds them once at the
    /// end (fast for large loads), `live` updates them row by row (better for a small import
    /// into a large database), `auto` rebuilds when the input is larger than the database.
    #[arg(long, value_enum, default_value_t = IndexMode::Auto)]
    index_mode: IndexMode,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum IndexMode {
    Auto,
    Rebuild,
    Live,
}

/// Resources per writer job when importing NDJSON.
const NDJSON_CHUNK: usize = 500;
/// Prepared jobs waiting for the writer at most (bounds memory).
const IN_FLIGHT: usize = 32;
/// Largest single import file accepted.
const MAX_FILE_BYTES: u64 = 512 * 1024 * 1024;

/// A submitted job: its label, its resource count, and where its result will arrive.
type Pending = (String, usize, tokio::sync::oneshot::Receiver<Result<usize, ApiError>>);

/// What workers send to the submitting thread.
enum Msg {
    Work(String, Result<Work, String>),
    FileDone,
}

/// One unit of work for the writer.
enum Work {
    Transaction(PreparedTransaction),
    Resources(Vec<(Option<String>, Prepared)>),
}

impl Work {
    fn resources(&self) -> usize {
        match self {
            Work::Transaction(t) => t.resource_count(),
            Work::Resources(r) => r.len(),
        }
    }

    fn cannot_fail_midway(&self) -> bool {
        match self {
            Work::Transaction(t) => t.only_plain_creates(),
            // Creates, and updates without preconditions; but a booking can be refused.
            Work::Resources(items) => items.iter().all(|(_, p)| p.resource_type != "Appointment"),
        }
    }
}

#[derive(Default)]
struct Totals {
    files: usize,
    resources: u64,
    failures: Vec<String>,
}

pub fn run(args: ImportArgs) -> Result<ExitCode, String> {
    let config = args.data.load()?;
    let _lock = datadir::lock_or_create(&config.data).map_err(|e| e.to_string())?;
    let (key, created) = datadir::init(&config).map_err(|e| e.to_string())?;
    if let Some(c) = created {
        println!("Created a new data directory at {}; admin one-time password: {}", config.data.display(), c.admin_password);
    }
    let files = collect_files(&args.paths)?;
    let location = config.location()?;
    let rebuild = match args.index_mode {
        IndexMode::Rebuild => true,
        IndexMode::Live => false,
        IndexMode::Auto => match &location {
            vaidya_store::Location::File(db) => input_bytes(&files) > db_bytes(db),
            vaidya_store::Location::Postgres(_) => {
                let size = store_size(&location)?;
                size == 0
            }
        },
    };
    let store = Arc::new(Store::open_location(location.clone(), key, Default::default()).map_err(|e| format!("{}: {e}", location.describe()))?);
    if !store.is_writer() {
        return Err(format!("a Vaidya server is writing to {}: import through it, or stop it first", location.describe()));
    }
    let workers = args.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())).max(1);
    let started = Instant::now();
    if rebuild {
        store.begin_bulk_load().map_err(|e| e.to_string())?;
    }
    let totals = import_files(&store, files, workers, config.limits.max_bundle_entries);
    if rebuild {
        let t = Instant::now();
        store.end_bulk_load().map_err(|e| format!("rebuilding the search indexes failed: {e} (they are rebuilt at the next start)"))?;
        tracing::info!(seconds = t.elapsed().as_secs_f64(), "search indexes rebuilt");
    }
    store.shutdown();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "imported {} resources from {} files in {secs:.2}s ({:.0} resources/s)",
        totals.resources,
        totals.files,
        totals.resources as f64 / secs.max(1e-9)
    );
    for f in &totals.failures {
        eprintln!("FAILED: {f}");
    }
    if totals.failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{} item(s) were refused; nothing of a refused Bundle or chunk was written", totals.failures.len());
        Ok(ExitCode::FAILURE)
    }
}

fn input_bytes(files: &[PathBuf]) -> u64 {
    files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum()
}

/// Ledger entries already in a PostgreSQL database (an empty one gets its indexes rebuilt
/// once at the end, as a large import into SQLite does).
fn store_size(location: &vaidya_store::Location) -> Result<u64, String> {
    let conn = location.open_reader().map_err(|e| format!("{}: {e}", location.describe()))?;
    match vaidya_store::read::ledger_size(&conn) {
        Ok(n) => Ok(n),
        // A new database has no tables yet.
        Err(_) => Ok(0),
    }
}

fn db_bytes(db: &Path) -> u64 {
    std::fs::metadata(db).map_or(0, |m| m.len())
}

fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = vec![];
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| matches!(f.extension().and_then(|e| e.to_str()), Some("json" | "ndjson")))
                .collect();
            found.sort();
            out.extend(found);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            return Err(format!("{}: no such file or directory", p.display()));
        }
    }
    Ok(out)
}

fn import_files(store: &Arc<Store>, files: Vec<PathBuf>, workers: usize, max_entries: usize) -> Totals {
    let bar = ProgressBar::new(files.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} files, {msg} [{elapsed_precise}]").expect("valid template"),
    );
    let (file_tx, file_rx) = crossbeam_channel::unbounded::<PathBuf>();
    let (work_tx, work_rx) = crossbeam_channel::bounded::<Msg>(IN_FLIGHT);
    let nfiles = files.len();
    for f in files {
        file_tx.send(f).expect("receiver alive");
    }
    drop(file_tx);
    let mut totals = Totals { files: nfiles, ..Totals::default() };
    std::thread::scope(|s| {
        for _ in 0..workers {
            let (file_rx, work_tx) = (file_rx.clone(), work_tx.clone());
            s.spawn(move || {
                for path in file_rx {
                    let label = path.display().to_string();
                    let done = read_file(&path, max_entries, &mut |label, w| {
                        let _ = work_tx.send(Msg::Work(label, w));
                    });
                    if let Err(e) = done {
                        let _ = work_tx.send(Msg::Work(label, Err(e)));
                    }
                    let _ = work_tx.send(Msg::FileDone);
                }
            });
        }
        drop(work_tx);
        // Submit jobs as they come; collect replies without waiting for each commit, so the
        // writer always has a group to commit.
        let mut pending: std::collections::VecDeque<Pending> = Default::default();
        let finish = |totals: &mut Totals, (label, n, rx): Pending| {
            match rx.blocking_recv() {
                Ok(Ok(_)) => totals.resources += n as u64,
                Ok(Err(e)) => totals.failures.push(format!("{label}: {}", describe(&e))),
                Err(_) => totals.failures.push(format!("{label}: the writer stopped")),
            }
        };
        for msg in work_rx {
            let (label, work) = match msg {
                Msg::FileDone => {
                    bar.inc(1);
                    bar.set_message(format!("{} resources", totals.resources));
                    continue;
                }
                Msg::Work(label, work) => (label, work),
            };
            let work = match work {
                Ok(w) => w,
                Err(e) => {
                    totals.failures.push(format!("{label}: {e}"));
                    continue;
                }
            };
            let n = work.resources();
            let (reply, rx) = tokio::sync::oneshot::channel();
            // Plain creates cannot fail half-way except through a fault: they skip the
            // per-job savepoint (see Store::submit_unguarded).
            let submitted = if work.cannot_fail_midway() {
                store.submit_unguarded(move |tx| run_work(tx, work), reply)
            } else {
                store.submit(move |tx| run_work(tx, work), reply)
            };
            if let Err(e) = submitted {
                totals.failures.push(format!("{label}: {e}"));
                continue;
            }
            pending.push_back((label, n, rx));
            while pending.len() > IN_FLIGHT {
                finish(&mut totals, pending.pop_front().expect("non-empty"));
            }
        }
        while let Some(p) = pending.pop_front() {
            finish(&mut totals, p);
        }
    });
    bar.finish_and_clear();
    totals
}

fn describe(e: &ApiError) -> String {
    e.issues.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("; ")
}

fn run_work(tx: &mut vaidya_store::WriteTx<'_>, work: Work) -> Result<usize, ApiError> {
    match work {
        Work::Transaction(t) => t.run(tx, IMPORT_AUTHOR),
        Work::Resources(items) => {
            let n = items.len();
            for (id, p) in items {
                match id {
                    Some(id) => crate::fhir::ops::update(tx, IMPORT_AUTHOR, p, &id, None)?,
                    None => crate::fhir::ops::create(tx, IMPORT_AUTHOR, p, &new_id(), None)?,
                };
            }
            Ok(n)
        }
    }
}

/// Read one file and hand its work units to `emit`.
fn read_file(path: &Path, max_entries: usize, emit: &mut dyn FnMut(String, Result<Work, String>)) -> Result<(), String> {
    let label = path.display().to_string();
    let size = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if size > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes; split it"));
    }
    if path.extension().and_then(|e| e.to_str()) == Some("ndjson") {
        return read_ndjson(path, emit);
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    drop(bytes);
    let work = prepare_for_import(value, max_entries).map(Work::Transaction).map_err(|e| describe(&e));
    emit(label, work);
    Ok(())
}

fn read_ndjson(path: &Path, emit: &mut dyn FnMut(String, Result<Work, String>)) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let reader = std::io::BufReader::new(file);
    let mut chunk = Vec::with_capacity(NDJSON_CHUNK);
    let mut first_line = 1;
    let mut chunk_failed: Option<String> = None;
    let mut flush = |chunk: &mut Vec<(Option<String>, Prepared)>, first: usize, last: usize, failed: &mut Option<String>| {
        let label = format!("{} lines {first}-{last}", path.display());
        match failed.take() {
            Some(e) => emit(label, Err(e)),
            None => emit(label, Ok(Work::Resources(std::mem::take(chunk)))),
        }
        chunk.clear();
    };
    let mut line_no = 0;
    for line in reader.lines() {
        line_no += 1;
        let line = line.map_err(|e| format!("line {line_no}: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        if chunk_failed.is_none() {
            match prepare_line(&line) {
                Ok(item) => chunk.push(item),
                Err(e) => chunk_failed = Some(format!("line {line_no}: {e}")),
            }
        }
        if chunk.len() >= NDJSON_CHUNK || (chunk_failed.is_some() && line_no - first_line + 1 >= NDJSON_CHUNK) {
            flush(&mut chunk, first_line, line_no, &mut chunk_failed);
            first_line = line_no + 1;
        }
    }
    if !chunk.is_empty() || chunk_failed.is_some() {
        flush(&mut chunk, first_line, line_no, &mut chunk_failed);
    }
    Ok(())
}

fn prepare_line(line: &str) -> Result<(Option<String>, Prepared), String> {
    let value: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
    let id = value.get("id").and_then(|v| v.as_str()).map(str::to_string);
    if let Some(id) = &id {
        check_id(id).map_err(|e| describe(&e))?;
    }
    let p = prepare(value).map_err(|e| describe(&e))?;
    Ok((id, p))
}
