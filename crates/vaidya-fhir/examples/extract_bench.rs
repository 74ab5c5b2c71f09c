//! Throughput of search index extraction over the Synthea sample (about 16,000 resources).
//!
//! `cargo run --release -p vaidya-fhir --example extract_bench [ROUNDS]`
//!
//! Parses every bundle once, then runs `extract_all` over all resources ROUNDS times (default 5)
//! on one thread and prints resources per second, overall and per resource type.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;
use vaidya_fhir::index::extract_all;

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/synthea-r4");
    let resources = load_resources(&dir);
    println!("{} resources from {}", resources.len(), dir.display());

    // First use parses the embedded definitions and compiles every expression: time it apart.
    let start = Instant::now();
    let values = extract_all(&resources[0]).len();
    println!(
        "first call (loads and compiles the definitions): {:.1} ms, {values} values",
        ms(start)
    );

    let mut total_values = 0;
    let start = Instant::now();
    for _ in 0..rounds {
        for r in &resources {
            total_values += extract_all(r).len();
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let n = (resources.len() * rounds) as f64;
    println!(
        "{rounds} rounds: {:.0} resources/s on one thread ({:.2} µs per resource, {:.1} index values per resource)",
        n / seconds,
        seconds * 1e6 / n,
        total_values as f64 / n
    );
    per_type(&resources);
}

/// Time per resource type, one round, slowest first.
fn per_type(resources: &[serde_json::Value]) {
    let mut by_type: BTreeMap<&str, (usize, f64)> = BTreeMap::new();
    for r in resources {
        let t = r["resourceType"].as_str().unwrap_or("?");
        let start = Instant::now();
        std::hint::black_box(extract_all(r));
        let entry = by_type.entry(t).or_default();
        entry.0 += 1;
        entry.1 += start.elapsed().as_secs_f64();
    }
    let mut rows: Vec<_> = by_type.into_iter().collect();
    rows.sort_by(|a, b| (b.1.1 / b.1.0 as f64).total_cmp(&(a.1.1 / a.1.0 as f64)));
    for (t, (count, seconds)) in rows {
        println!(
            "  {t:<20} {count:>6} resources  {:>7.2} µs each",
            seconds * 1e6 / count as f64
        );
    }
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

fn load_resources(dir: &Path) -> Vec<serde_json::Value> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (the Synthea sample data is required)",
                dir.display()
            )
        })
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut bundle: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Some(entries) = bundle.get_mut("entry").and_then(|e| e.as_array_mut()) {
            out.extend(
                entries
                    .iter_mut()
                    .filter_map(|e| e.get_mut("resource").map(serde_json::Value::take)),
            );
        }
    }
    out
}
