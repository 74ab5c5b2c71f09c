//! `run-export`: Bulk Data `$export` throughput end to end (issue 9 asks for at least 50,000
//! resources/s to NDJSON). Imports the Synthea set (N copies) into a fresh data directory,
//! starts `vaidya serve`, kicks off a system-level `$export` as an integration account, has a
//! privacy officer approve it, and times from the approval to the manifest (polling every
//! 5 ms): the export worker's snapshot read, policy checks, NDJSON writes and fsyncs, and the
//! audit record of the job's end. Then it downloads every file once and times that too.

use crate::all::{self, Server};
use crate::gen_synthea::{self, GenArgs};
use crate::http::{self, Client};
use crate::sys;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use hyper::{Method, Request, StatusCode};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone, Debug)]
pub struct RunExportArgs {
    /// The vaidya binary.
    #[arg(long, value_name = "PATH", default_value = "target/release/vaidya")]
    pub vaidya: PathBuf,
    /// Directory of Synthea transaction Bundles.
    #[arg(long, value_name = "DIR", default_value = "../shared/data/synthea-r4")]
    pub synthea: PathBuf,
    /// Copies of the Synthea set to import (1: the sample as it is).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub copies: u32,
    /// Work directory (generated data, data directory, logs); made for vaidya-bench only.
    #[arg(long, value_name = "DIR")]
    pub work: PathBuf,
    /// Exports to run one after the other on the same data (the best and each are reported).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,
}

fn add_user(vaidya: &Path, data: &Path, name: &str, role: &str) -> Result<String, String> {
    let add = Command::new(vaidya).args(["user", "add", "--name", name, "--role", role, "--data"]).arg(data).stdin(Stdio::null()).output().map_err(|e| e.to_string())?;
    let err = String::from_utf8_lossy(&add.stderr);
    if !add.status.success() && !err.contains("already exists") {
        return Err(format!("vaidya user add {name}: {}", err.trim()));
    }
    let out = Command::new(vaidya).args(["token", "--user", name, "--data"]).arg(data).stdin(Stdio::null()).output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("vaidya token {name}: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// One request; (status, a header, body).
async fn call(client: &Client, method: Method, url: &str, token: &str, prefer_async: bool, header: &str) -> Result<(StatusCode, Option<String>, Bytes), String> {
    let mut req = Request::builder().method(method).uri(url).header(AUTHORIZATION, http::bearer(token)?).header(ACCEPT, HeaderValue::from_static(http::FHIR_JSON));
    if prefer_async {
        req = req.header("prefer", "respond-async");
    }
    let req = req.body(Full::new(Bytes::new())).map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let h = resp.headers().get(header).and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, h, body))
}

struct Run {
    resources: u64,
    files: usize,
    bytes: u64,
    export_s: f64,
    download_s: f64,
}

async fn one_export(client: &Client, base: &str, data: &Path, machine: &str, po: &str) -> Result<Run, String> {
    let (status, location, body) = call(client, Method::GET, &format!("{base}/$export"), machine, true, "content-location").await?;
    if status != StatusCode::ACCEPTED {
        return Err(format!("kick-off: {}", http::describe_failure(status, &body)));
    }
    let status_url = location.ok_or("kick-off without Content-Location")?;
    let started = Instant::now();
    let (status, _, body) = call(client, Method::POST, &format!("{status_url}/$approve"), po, false, "x").await?;
    if status != StatusCode::OK {
        return Err(format!("approve: {}", http::describe_failure(status, &body)));
    }
    let manifest: serde_json::Value = loop {
        let (status, _, body) = call(client, Method::GET, &status_url, machine, false, "x").await?;
        match status {
            StatusCode::ACCEPTED => tokio::time::sleep(Duration::from_millis(5)).await,
            StatusCode::OK => break serde_json::from_slice(&body).map_err(|e| e.to_string())?,
            _ => return Err(format!("status: {}", http::describe_failure(status, &body))),
        }
        if started.elapsed() > Duration::from_secs(3600) {
            return Err("the export did not finish within an hour".into());
        }
    };
    let export_s = started.elapsed().as_secs_f64();
    let output = manifest["output"].as_array().cloned().unwrap_or_default();
    let resources = output.iter().map(|o| o["count"].as_u64().unwrap_or(0)).sum();
    let job = status_url.rsplit('/').next().unwrap_or_default();
    let bytes = std::fs::read_dir(data.join("exports").join(job))
        .map(|d| d.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0);
    let started = Instant::now();
    for o in &output {
        let (status, _, body) = call(client, Method::GET, o["url"].as_str().unwrap_or_default(), machine, false, "x").await?;
        if status != StatusCode::OK {
            return Err(format!("download: {}", http::describe_failure(status, &body)));
        }
    }
    let download_s = started.elapsed().as_secs_f64();
    // Remove the job (and its files) so that runs do not add up on disk.
    let _ = call(client, Method::DELETE, &status_url, machine, false, "x").await?;
    Ok(Run { resources, files: output.len(), bytes, export_s, download_s })
}

pub fn run(args: &RunExportArgs) -> Result<bool, String> {
    if !args.vaidya.is_file() {
        return Err(format!("{}: no such file (cargo build --release --bin vaidya)", args.vaidya.display()));
    }
    all::prepare_work(&args.work)?;
    let input = if args.copies == 1 {
        args.synthea.clone()
    } else {
        let out = args.work.join(format!("synthea-x{}", args.copies));
        if !out.join(".complete").is_file() {
            all::fresh_dir(&args.work, &out)?;
            let g = gen_synthea::run(&GenArgs { from: args.synthea.clone(), copies: args.copies, out: out.clone(), seed: 1, threads: None, overwrite: false })?;
            std::fs::write(out.join(".complete"), g.describe()).map_err(|e| e.to_string())?;
        }
        out
    };
    let logs = args.work.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| e.to_string())?;
    let data = args.work.join(format!("export-data-x{}", args.copies));
    all::fresh_dir(&args.work, &data)?;
    eprintln!("[bench] vaidya import of {} into {}", input.display(), data.display());
    let (row, ok, notes) = all::import(&args.vaidya, &data, &input, &logs.join("export-import.log"), &format!("{}x", args.copies))?;
    if !ok {
        return Err(format!("the import failed: {}", notes.join("; ")));
    }
    let machine = add_user(&args.vaidya, &data, "bench-export", "machine")?;
    let po = add_user(&args.vaidya, &data, "bench-privacy", "privacy-officer")?;
    let mut server = Server::start(&args.vaidya, &data, &logs.join("export-serve.log"))?;
    let rt = crate::load::runtime(Some(2))?;
    let client = http::client(2);
    let mut runs = vec![];
    for i in 0..args.runs {
        let r = rt.block_on(one_export(&client, &server.base, &data, &machine, &po))?;
        eprintln!("[bench] export {}: {} resources in {} files ({:.0} MiB) in {:.3} s", i + 1, r.resources, r.files, r.bytes as f64 / 1048576.0, r.export_s);
        runs.push(r);
    }
    server.stop()?;
    println!("## Bulk Data $export\n");
    for line in sys::machine() {
        println!("- {line}");
    }
    println!("- Data: Synthea {}x ({}), imported by `vaidya import`", args.copies, row.work);
    println!("- From the privacy officer's approval to the manifest (system level, all types, one integration account), then every file downloaded once\n");
    println!("| run | resources | files | NDJSON MiB | export s | resources/s | download s | download MiB/s |");
    println!("|---|---|---|---|---|---|---|---|");
    for (i, r) in runs.iter().enumerate() {
        println!(
            "| {} | {} | {} | {:.0} | {:.3} | {:.0} | {:.3} | {:.0} |",
            i + 1,
            r.resources,
            r.files,
            r.bytes as f64 / 1048576.0,
            r.export_s,
            r.resources as f64 / r.export_s.max(1e-9),
            r.download_s,
            r.bytes as f64 / 1048576.0 / r.download_s.max(1e-9)
        );
    }
    let best = runs.iter().map(|r| r.resources as f64 / r.export_s.max(1e-9)).fold(0.0, f64::max);
    println!("\nBest: {best:.0} resources/s (target: 50,000 resources/s).");
    Ok(true)
}
