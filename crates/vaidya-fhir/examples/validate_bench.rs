//! Validation throughput on the Synthea resources (about 16,000 of them).
//!
//! `cargo run --release -p vaidya-fhir --example validate_bench -- [ROUNDS [THREADS]]`
//!
//! Each round validates every resource of every Synthea bundle once; the resources are parsed
//! beforehand, so this measures validation alone. With THREADS > 1, each thread validates the
//! whole set, as parallel import workers would.

use serde_json::Value;
use std::path::Path;
use std::time::Instant;
use vaidya_fhir::validate::validate_resource;

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args
        .next()
        .map_or(10, |arg| arg.parse().expect("ROUNDS is a number"));
    let threads: usize = args
        .next()
        .map_or(2, |arg| arg.parse().expect("THREADS is a number"));

    let start = Instant::now();
    vaidya_fhir::model::Model::r4();
    println!(
        "model loaded in {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3
    );

    let resources = load_synthea();
    let bytes: usize = resources
        .iter()
        .map(|r| serde_json::to_string(r).unwrap().len())
        .sum();
    println!(
        "{} resources, {:.1} MB as compact JSON",
        resources.len(),
        bytes as f64 / 1e6
    );

    // Warm up outside the measurement.
    let invalid = resources
        .iter()
        .filter(|r| validate_resource(r).is_err())
        .count();
    assert_eq!(invalid, 0, "all Synthea resources are expected to be valid");

    let single = measure(&resources, rounds, 1);
    println!(
        "1 thread:  {single:>9.0} resources/s ({:.2} µs per resource)",
        1e6 / single
    );
    if threads > 1 {
        let parallel = measure(&resources, rounds, threads);
        println!("{threads} threads: {parallel:>9.0} resources/s");
    }
}

/// Resources validated per second, over `rounds` passes by each of `threads` threads.
fn measure(resources: &[Value], rounds: usize, threads: usize) -> f64 {
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                for _ in 0..rounds {
                    for resource in resources {
                        std::hint::black_box(
                            validate_resource(std::hint::black_box(resource)).is_ok(),
                        );
                    }
                }
            });
        }
    });
    (resources.len() * rounds * threads) as f64 / start.elapsed().as_secs_f64()
}

fn load_synthea() -> Vec<Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/synthea-r4");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    let mut resources = Vec::new();
    for path in paths {
        let bundle: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        if let Some(Value::Array(entries)) = bundle.get("entry") {
            resources.extend(
                entries
                    .iter()
                    .filter_map(|entry| entry.get("resource").cloned()),
            );
        }
    }
    resources
}
