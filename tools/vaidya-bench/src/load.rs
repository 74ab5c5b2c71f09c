//! `tx` and `read`: closed-loop load from N concurrent clients, bounded by time and count.

use crate::http::{self, Base, Client};
use hyper::body::Bytes;
use hyper::header::HeaderValue;
use hyper::{Method, StatusCode, Uri};
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone, Debug)]
pub struct LoadOpts {
    /// FHIR base URL of the server (must be on this machine).
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080/fhir")]
    pub base: String,
    /// Bearer token (`vaidya token --user admin`).
    #[arg(long, value_name = "TOKEN", env = "VAIDYA_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Concurrent clients, each with one request in flight.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub clients: u32,
    /// Stop issuing requests after this many seconds.
    #[arg(long, default_value_t = 20.0, value_parser = parse_seconds)]
    pub seconds: f64,
    /// Stop after this many requests in total (whichever comes first).
    #[arg(long, value_name = "N")]
    pub max_requests: Option<u64>,
    /// Count a request as failed after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub timeout: u64,
    /// Runtime worker threads (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.1..=3600.0).contains(&v) { Ok(v) } else { Err("must be between 0.1 and 3600".into()) }
}

#[derive(clap::Args, Clone, Debug)]
pub struct TxArgs {
    #[command(flatten)]
    pub opts: LoadOpts,
}

#[derive(clap::Args, Clone, Debug)]
pub struct ReadArgs {
    #[command(flatten)]
    pub opts: LoadOpts,
    /// Resource type to read.
    #[arg(long = "type", value_name = "TYPE", default_value = "Patient")]
    pub rtype: String,
    /// Read up to N ids (found by searching the type; Patients are created if there are none).
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub ids_from_search: u64,
}

/// What one load run measured.
pub struct Report {
    pub what: String,
    pub clients: u32,
    pub ok: u64,
    pub failed: u64,
    pub seconds: f64,
    /// Latencies of the successful requests in microseconds, sorted.
    pub latencies_us: Vec<u32>,
    /// Distinct failure descriptions with counts, most frequent first.
    pub failures: Vec<(String, u64)>,
}

impl Report {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.seconds.max(1e-9)
    }

    /// Latency percentile in milliseconds (nearest rank).
    pub fn percentile_ms(&self, p: f64) -> Option<f64> {
        crate::load::nearest_rank_ms(&self.latencies_us, p)
    }

    pub fn max_ms(&self) -> Option<f64> {
        self.latencies_us.last().map(|&u| u as f64 / 1000.0)
    }

    pub fn print(&self, unit: &str) {
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        println!("{}: {} clients for {:.1}s", self.what, self.clients, self.seconds);
        println!("  {} ok, {} failed: {:.1} {unit}/s", self.ok, self.failed, self.rate());
        println!(
            "  latency ms: p50 {}  p90 {}  p99 {}  max {}",
            ms(self.percentile_ms(50.0)),
            ms(self.percentile_ms(90.0)),
            ms(self.percentile_ms(99.0)),
            ms(self.max_ms())
        );
        for (what, n) in &self.failures {
            println!("  failed {n}x: {what}");
        }
    }
}

/// Distinct failure descriptions kept per client (more are counted as "other").
const MAX_DISTINCT_FAILURES: usize = 16;

/// Run `work(client, seq)` in a closed loop on `clients` tasks until time or count runs out.
pub async fn drive<F, Fut>(what: String, opts: &LoadOpts, work: F) -> Report
where
    F: Fn(u32, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let work = Arc::new(work);
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(opts.seconds);
    let timeout = Duration::from_secs(opts.timeout.max(1));
    let max = opts.max_requests;
    let mut tasks = Vec::with_capacity(opts.clients as usize);
    for c in 0..opts.clients {
        let (work, issued) = (work.clone(), issued.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(4096);
            let mut failures: HashMap<String, u64> = HashMap::new();
            let (mut ok, mut failed) = (0u64, 0u64);
            let mut seq = 0u64;
            while Instant::now() < deadline {
                if max.is_some_and(|m| issued.fetch_add(1, Ordering::Relaxed) >= m) {
                    break;
                }
                let t0 = Instant::now();
                let outcome = match tokio::time::timeout(timeout, work(c, seq)).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("no response within {}s", timeout.as_secs())),
                };
                seq += 1;
                match outcome {
                    Ok(()) => {
                        ok += 1;
                        lat.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    }
                    Err(e) => {
                        failed += 1;
                        let key =
                            if failures.len() < MAX_DISTINCT_FAILURES || failures.contains_key(&e) { e } else { "(other failures)".into() };
                        *failures.entry(key).or_default() += 1;
                        // Do not spin on a server that refuses connections.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            (ok, failed, lat, failures)
        }));
    }
    let mut report = Report { what, clients: opts.clients, ok: 0, failed: 0, seconds: 0.0, latencies_us: vec![], failures: vec![] };
    let mut failures: HashMap<String, u64> = HashMap::new();
    for t in tasks {
        match t.await {
            Ok((ok, failed, lat, f)) => {
                report.ok += ok;
                report.failed += failed;
                report.latencies_us.extend(lat);
                for (k, v) in f {
                    *failures.entry(k).or_default() += v;
                }
            }
            Err(e) => {
                report.failed += 1;
                *failures.entry(format!("client task failed: {e}")).or_default() += 1;
            }
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.latencies_us.sort_unstable();
    report.failures = failures.into_iter().collect();
    report.failures.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    report
}

pub fn runtime(threads: Option<usize>) -> Result<tokio::runtime::Runtime, String> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        b.worker_threads(n.max(1));
    }
    b.enable_all().build().map_err(|e| e.to_string())
}

/// A run id, different on every run, so identifiers never repeat between runs.
fn run_id() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos ^ ((std::process::id() as u64) << 32);
    // splitmix64 finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d049bb133111eb);
    x ^ (x >> 31)
}

/// The transaction Bundle for one request: a new Patient and a haemoglobin Observation on it.
pub fn tx_body(run: u64, client: u32, seq: u64) -> String {
    let uuid = format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        run >> 32,
        (run >> 16) & 0xffff,
        client & 0xfff,
        (seq >> 48) & 0xfff,
        seq & 0xffff_ffff_ffff
    );
    let hb = 11.0 + (seq % 60) as f64 / 10.0;
    format!(
        r#"{{"resourceType":"Bundle","type":"transaction","entry":[{{"fullUrl":"urn:uuid:{uuid}","resource":{{"resourceType":"Patient","identifier":[{{"system":"urn:vaidya-bench:patient","value":"bench-{run:016x}-{client}-{seq}"}}],"active":true,"name":[{{"family":"Benchmark","given":["C{client}","S{seq}"]}}],"gender":"female","birthDate":"1980-01-01"}},"request":{{"method":"POST","url":"Patient"}}}},{{"resource":{{"resourceType":"Observation","status":"final","category":[{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory","display":"Laboratory"}}]}}],"code":{{"coding":[{{"system":"http://loinc.org","code":"718-7","display":"Hemoglobin [Mass/volume] in Blood"}}],"text":"Haemoglobin"}},"subject":{{"reference":"urn:uuid:{uuid}"}},"effectiveDateTime":"2024-01-01T10:00:00Z","valueQuantity":{{"value":{hb:.1},"unit":"g/dL","system":"http://unitsofmeasure.org","code":"g/dL"}}}},"request":{{"method":"POST","url":"Observation"}}}}]}}"#
    )
}

/// Check a transaction-response for the two creates of `tx_body`.
pub fn check_tx_response(status: StatusCode, body: &[u8]) -> Result<(), String> {
    if status != StatusCode::OK {
        return Err(http::describe_failure(status, body));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("HTTP 200 but the body is not JSON: {e}"))?;
    if v.get("resourceType").and_then(Value::as_str) != Some("Bundle")
        || v.get("type").and_then(Value::as_str) != Some("transaction-response")
    {
        return Err("HTTP 200 but the body is not a transaction-response Bundle".into());
    }
    let entries = v.get("entry").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    if entries.len() != 2 {
        return Err(format!("transaction-response has {} entries, not 2", entries.len()));
    }
    for (i, e) in entries.iter().enumerate() {
        let s = e.pointer("/response/status").and_then(Value::as_str).unwrap_or("");
        if !s.starts_with("201") {
            return Err(format!("transaction-response entry {i} has status '{s}', not 201"));
        }
    }
    Ok(())
}

pub async fn tx(opts: &LoadOpts) -> Result<Report, String> {
    let base = Base::parse(&opts.base)?;
    let auth = http::bearer(&opts.token)?;
    let client = http::client(opts.clients as usize);
    let uri: Uri = base.url.parse().map_err(|e| format!("{e}"))?;
    let run = run_id();
    let what = format!("tx (Patient + Observation transaction) against {}", base.url);
    Ok(drive(what, opts, move |c, seq| {
        let (client, uri, auth) = (client.clone(), uri.clone(), auth.clone());
        async move {
            let body = Bytes::from(tx_body(run, c, seq));
            let (status, resp) = http::send(&client, Method::POST, uri, &auth, Some(body)).await?;
            check_tx_response(status, &resp)
        }
    })
    .await)
}

pub async fn read(opts: &LoadOpts, rtype: &str, max_ids: u64) -> Result<Report, String> {
    if rtype.is_empty() || !rtype.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(format!("'{rtype}' is not a resource type"));
    }
    let base = Base::parse(&opts.base)?;
    let auth = http::bearer(&opts.token)?;
    let client = http::client(opts.clients as usize);
    let mut ids = collect_ids(&client, &base, &auth, rtype, max_ids as usize).await?;
    if ids.is_empty() {
        if rtype != "Patient" {
            return Err(format!("there are no {rtype} resources to read; only Patients can be created by vaidya-bench"));
        }
        let n = max_ids.min(1000) as usize;
        eprintln!("no Patients found; creating {n}");
        create_patients(&client, &base, &auth, n).await?;
        ids = collect_ids(&client, &base, &auth, rtype, max_ids as usize).await?;
        if ids.is_empty() {
            return Err("created Patients, but a search still finds none".into());
        }
    }
    let uris: Vec<Uri> = ids
        .iter()
        .map(|id| format!("{}/{rtype}/{id}", base.url).parse::<Uri>().map_err(|e| format!("id '{id}': {e}")))
        .collect::<Result<_, _>>()?;
    let uris = Arc::new(uris);
    let clients = opts.clients as u64;
    let what = format!("read {rtype} by id ({} distinct ids) against {}", uris.len(), base.url);
    Ok(drive(what, opts, move |c, seq| {
        let (client, uris, auth) = (client.clone(), uris.clone(), auth.clone());
        async move {
            // Client c reads ids c, c+clients, c+2*clients, ... so together they go round-robin.
            let i = ((c as u64 + seq.wrapping_mul(clients)) % uris.len() as u64) as usize;
            let (status, body) = http::send(&client, Method::GET, uris[i].clone(), &auth, None).await?;
            if status != StatusCode::OK {
                return Err(http::describe_failure(status, &body));
            }
            if body.is_empty() {
                return Err("HTTP 200 with an empty body".into());
            }
            Ok(())
        }
    })
    .await)
}

/// Up to `max` ids of `rtype`, by searching and following `next` links (bounded in pages).
pub async fn collect_ids(client: &Client, base: &Base, auth: &HeaderValue, rtype: &str, max: usize) -> Result<Vec<String>, String> {
    let mut ids = Vec::new();
    let mut url = format!("{}/{rtype}?_count={}", base.url, max.clamp(1, 1000));
    for _page in 0..2000 {
        let uri: Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let (status, body) = http::send(client, Method::GET, uri, auth, None).await.map_err(|e| format!("GET {url}: {e}"))?;
        if status != StatusCode::OK {
            return Err(format!("GET {url}: {}", http::describe_failure(status, &body)));
        }
        let v: Value = serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not JSON: {e}"))?;
        let before = ids.len();
        for e in v.get("entry").and_then(Value::as_array).into_iter().flatten() {
            let mode = e.pointer("/search/mode").and_then(Value::as_str).unwrap_or("match");
            if let (Some(id), "match") = (e.pointer("/resource/id").and_then(Value::as_str), mode) {
                ids.push(id.to_string());
            }
        }
        if ids.len() >= max {
            ids.truncate(max);
            break;
        }
        let next = v
            .get("link")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|l| l.get("relation").and_then(Value::as_str) == Some("next"))
            .and_then(|l| l.get("url").and_then(Value::as_str));
        match next {
            Some(n) if ids.len() > before => url = base.same_origin(n)?,
            _ => break,
        }
    }
    Ok(ids)
}

async fn create_patients(client: &Client, base: &Base, auth: &HeaderValue, n: usize) -> Result<(), String> {
    let uri: Uri = format!("{}/Patient", base.url).parse().map_err(|e| format!("{e}"))?;
    let run = run_id();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        if set.len() >= 16 {
            set.join_next().await.expect("non-empty").map_err(|e| e.to_string())??;
        }
        let (client, uri, auth) = (client.clone(), uri.clone(), auth.clone());
        set.spawn(async move {
            let body = format!(
                r#"{{"resourceType":"Patient","identifier":[{{"system":"urn:vaidya-bench:patient","value":"read-{run:016x}-{i}"}}],"name":[{{"family":"Benchmark","given":["R{i}"]}}]}}"#
            );
            let (status, resp) = http::send(&client, Method::POST, uri, &auth, Some(Bytes::from(body))).await?;
            if status != StatusCode::CREATED {
                return Err(format!("creating a Patient: {}", http::describe_failure(status, &resp)));
            }
            Ok::<(), String>(())
        });
    }
    while let Some(r) = set.join_next().await {
        r.map_err(|e| e.to_string())??;
    }
    Ok(())
}

pub fn run_tx_command(args: &TxArgs) -> Result<bool, String> {
    let rt = runtime(args.opts.threads)?;
    let report = rt.block_on(tx(&args.opts))?;
    report.print("transactions");
    Ok(report.failed == 0)
}

pub fn run_read_command(args: &ReadArgs) -> Result<bool, String> {
    let rt = runtime(args.opts.threads)?;
    let report = rt.block_on(read(&args.opts, &args.rtype, args.ids_from_search))?;
    report.print("reads");
    Ok(report.failed == 0)
}

/// The `p`th percentile in milliseconds (nearest rank) of latencies in microseconds, sorted.
pub fn nearest_rank_ms(sorted_us: &[u32], p: f64) -> Option<f64> {
    let n = sorted_us.len();
    if n == 0 {
        return None;
    }
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    Some(sorted_us[rank.clamp(1, n) - 1] as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tx_body_is_a_valid_transaction() {
        let b: Value = serde_json::from_str(&tx_body(0x0123_4567_89ab_cdef, 5, 77)).unwrap();
        assert_eq!(b["type"], "transaction");
        let full = b["entry"][0]["fullUrl"].as_str().unwrap();
        assert!(crate::gen_synthea::is_uuid(full.strip_prefix("urn:uuid:").unwrap()));
        assert_eq!(b["entry"][1]["resource"]["subject"]["reference"], full);
        assert_eq!(b["entry"][1]["resource"]["code"]["coding"][0]["code"], "718-7");
        assert_eq!(b["entry"][0]["resource"]["identifier"][0]["value"], "bench-0123456789abcdef-5-77");
        assert_ne!(tx_body(1, 5, 77), tx_body(1, 5, 78));
    }

    #[test]
    fn checks_transaction_responses() {
        let good = br#"{"resourceType":"Bundle","type":"transaction-response","entry":[{"response":{"status":"201 Created"}},{"response":{"status":"201 Created"}}]}"#;
        assert!(check_tx_response(StatusCode::OK, good).is_ok());
        assert!(check_tx_response(StatusCode::BAD_REQUEST, good).is_err());
        assert!(check_tx_response(StatusCode::OK, br#"{"resourceType":"Bundle","type":"batch-response","entry":[]}"#).is_err());
    }

    #[test]
    fn percentiles() {
        let r = Report {
            what: String::new(),
            clients: 1,
            ok: 100,
            failed: 0,
            seconds: 2.0,
            latencies_us: (1..=100).map(|i| i * 1000).collect(),
            failures: vec![],
        };
        assert_eq!(r.percentile_ms(50.0), Some(50.0));
        assert_eq!(r.percentile_ms(99.0), Some(99.0));
        assert_eq!(r.max_ms(), Some(100.0));
        assert_eq!(r.rate(), 50.0);
    }
}

