//! `gen-synthea`: N distinct copies of the Synthea transaction Bundles.
//!
//! Every string that is a UUID, or `urn:uuid:` + a UUID (fullUrls, references, resource ids, and
//! identifiers that are UUIDs) is replaced by a UUID derived from (seed, copy, original UUID), so
//! one copy stays internally consistent and different copies share nothing. Other identifier
//! values of the resources (SSN, driver's licence, passport, NPI, DICOM study UIDs) get a copy
//! suffix so that they are unique per copy too. The output is deterministic given `--seed`.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

#[derive(clap::Args, Clone)]
pub struct GenArgs {
    /// Directory of Synthea transaction Bundles (*.json).
    #[arg(long, value_name = "DIR", default_value = "../shared/data/synthea-r4")]
    pub from: PathBuf,
    /// Number of copies to write (each copy is a distinct set of patients).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub copies: u32,
    /// Output directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Seed for the new UUIDs; the same seed gives the same files.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Worker threads (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Write into an output directory that already holds files (same-named files are replaced).
    #[arg(long)]
    pub overwrite: bool,
}

pub struct GenSummary {
    pub input_files: usize,
    pub files: usize,
    pub resources: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub out: PathBuf,
}

impl GenSummary {
    pub fn describe(&self) -> String {
        format!(
            "wrote {} files ({} resources, {:.1} MiB) from {} input files to {} in {:.2}s",
            self.files,
            self.resources,
            self.bytes as f64 / (1024.0 * 1024.0),
            self.input_files,
            self.out.display(),
            self.seconds
        )
    }
}

pub fn run(args: &GenArgs) -> Result<GenSummary, String> {
    let started = Instant::now();
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&args.from)
        .map_err(|e| format!("{}: {e}", args.from.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().and_then(|e| e.to_str()) == Some("json"))
        .collect();
    inputs.sort();
    if inputs.is_empty() {
        return Err(format!("{}: no .json files", args.from.display()));
    }
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    if !args.overwrite && std::fs::read_dir(&args.out).map_err(|e| e.to_string())?.next().is_some() {
        return Err(format!("{} is not empty (use --overwrite to write into it anyway)", args.out.display()));
    }
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())).max(1);
    let next = AtomicUsize::new(0);
    let totals = Mutex::new((0usize, 0u64, 0u64));
    let first_error: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.min(inputs.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= inputs.len() || first_error.lock().unwrap().is_some() {
                        break;
                    }
                    match copy_file(&inputs[i], &args.out, args.copies, args.seed) {
                        Ok((files, resources, bytes)) => {
                            let mut t = totals.lock().unwrap();
                            t.0 += files;
                            t.1 += resources;
                            t.2 += bytes;
                        }
                        Err(e) => {
                            first_error.lock().unwrap().get_or_insert(format!("{}: {e}", inputs[i].display()));
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap() {
        return Err(e);
    }
    let (files, resources, bytes) = totals.into_inner().unwrap();
    Ok(GenSummary { input_files: inputs.len(), files, resources, bytes, seconds: started.elapsed().as_secs_f64(), out: args.out.clone() })
}

/// Write all copies of one input file; returns (files, resources, bytes) written.
fn copy_file(input: &Path, out: &Path, copies: u32, seed: u64) -> Result<(usize, u64, u64), String> {
    let text = std::fs::read(input).map_err(|e| e.to_string())?;
    let bundle: Value = serde_json::from_slice(&text).map_err(|e| format!("not valid JSON: {e}"))?;
    drop(text);
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err("not a Bundle".into());
    }
    let entries = bundle.get("entry").and_then(Value::as_array).map_or(0, Vec::len) as u64;
    let stem = input.file_stem().and_then(|s| s.to_str()).ok_or("file name is not UTF-8")?;
    let mut bytes = 0;
    for copy in 0..copies {
        let mut b = bundle.clone();
        transform(&mut b, seed, copy);
        let path = out.join(format!("{stem}-c{copy:04}.json"));
        let data = serde_json::to_vec(&b).map_err(|e| e.to_string())?;
        let mut f = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        f.write_all(&data).map_err(|e| format!("{}: {e}", path.display()))?;
        bytes += data.len() as u64;
    }
    Ok((copies as usize, entries * copies as u64, bytes))
}

/// Make copy number `copy` of one Bundle, in place.
pub fn transform(bundle: &mut Value, seed: u64, copy: u32) {
    // Identifiers first, while UUID-valued ones are still recognisable as such.
    if let Some(entries) = bundle.get_mut("entry").and_then(Value::as_array_mut) {
        for e in entries {
            if let Some(ids) = e.pointer_mut("/resource/identifier").and_then(Value::as_array_mut) {
                for id in ids {
                    if let Some(Value::String(v)) = id.get_mut("value") {
                        suffix_identifier(v, copy);
                    }
                }
            }
        }
    }
    remap_uuids(bundle, seed, copy);
}

fn suffix_identifier(v: &mut String, copy: u32) {
    if is_uuid(v) || v.strip_prefix("urn:uuid:").is_some_and(is_uuid) {
        // Replaced by a fresh UUID in remap_uuids.
    } else if v.starts_with("urn:oid:") {
        // Keep it a valid OID: add an arc.
        v.push_str(&format!(".{}", copy + 1));
    } else {
        v.push_str(&format!("-c{copy}"));
    }
}

fn remap_uuids(v: &mut Value, seed: u64, copy: u32) {
    match v {
        Value::String(s) => {
            if is_uuid(s) {
                *s = derived_uuid(seed, copy, s);
            } else if let Some(u) = s.strip_prefix("urn:uuid:").filter(|u| is_uuid(u)) {
                *s = format!("urn:uuid:{}", derived_uuid(seed, copy, u));
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| remap_uuids(x, seed, copy)),
        Value::Object(o) => o.iter_mut().for_each(|(_, x)| remap_uuids(x, seed, copy)),
        _ => {}
    }
}

pub fn is_uuid(s: &str) -> bool {
    s.len() == 36 && s.bytes().enumerate().all(|(i, b)| if matches!(i, 8 | 13 | 18 | 23) { b == b'-' } else { b.is_ascii_hexdigit() })
}

/// A version-4-shaped UUID from SHA-256(seed, copy, original UUID in lower case).
pub fn derived_uuid(seed: u64, copy: u32, original: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"vaidya-bench gen-synthea v1\0");
    h.update(seed.to_le_bytes());
    h.update(copy.to_le_bytes());
    h.update(original.to_ascii_lowercase().as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    format_uuid(&b)
}

pub fn format_uuid(b: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{byte:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({
            "resourceType": "Bundle", "type": "transaction",
            "entry": [
                {"fullUrl": "urn:uuid:018f428e-34f6-4707-8009-5ad742f901e7",
                 "resource": {"resourceType": "Patient", "id": "018f428e-34f6-4707-8009-5ad742f901e7",
                    "identifier": [
                        {"system": "https://github.com/synthetichealth/synthea", "value": "e925b0f3-8006-43f6-aa31-94bd215e55e7"},
                        {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-22-1962"}]},
                 "request": {"method": "POST", "url": "Patient"}},
                {"fullUrl": "urn:uuid:11111111-2222-3333-4444-555555555555",
                 "resource": {"resourceType": "Observation", "id": "11111111-2222-3333-4444-555555555555",
                    "subject": {"reference": "urn:uuid:018f428e-34f6-4707-8009-5ad742f901e7"}},
                 "request": {"method": "POST", "url": "Observation"}},
                {"fullUrl": "urn:uuid:21111111-2222-3333-4444-555555555555",
                 "resource": {"resourceType": "ImagingStudy", "id": "21111111-2222-3333-4444-555555555555",
                    "identifier": [{"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.840.99999999"}]},
                 "request": {"method": "POST", "url": "ImagingStudy"}}
            ]
        })
    }

    #[test]
    fn copies_are_consistent_distinct_and_deterministic() {
        let orig = sample();
        let mut a = orig.clone();
        transform(&mut a, 7, 0);
        let mut b = orig.clone();
        transform(&mut b, 7, 1);
        let mut a2 = orig.clone();
        transform(&mut a2, 7, 0);
        assert_eq!(a, a2, "deterministic");
        let full = a["entry"][0]["fullUrl"].as_str().unwrap();
        let id = a["entry"][0]["resource"]["id"].as_str().unwrap();
        assert_eq!(full, format!("urn:uuid:{id}"));
        assert!(is_uuid(id));
        assert_ne!(id, "018f428e-34f6-4707-8009-5ad742f901e7");
        assert_eq!(a["entry"][1]["resource"]["subject"]["reference"].as_str().unwrap(), full);
        assert_ne!(b["entry"][0]["fullUrl"], a["entry"][0]["fullUrl"]);
        assert_eq!(a["entry"][0]["resource"]["identifier"][1]["value"], "999-22-1962-c0");
        assert_eq!(b["entry"][0]["resource"]["identifier"][1]["value"], "999-22-1962-c1");
        assert_ne!(a["entry"][0]["resource"]["identifier"][0]["value"], b["entry"][0]["resource"]["identifier"][0]["value"]);
        assert!(is_uuid(a["entry"][0]["resource"]["identifier"][0]["value"].as_str().unwrap()));
        assert_eq!(b["entry"][2]["resource"]["identifier"][0]["value"], "urn:oid:1.2.840.99999999.2");
        let mut c = orig.clone();
        transform(&mut c, 8, 0);
        assert_ne!(c["entry"][0]["fullUrl"], a["entry"][0]["fullUrl"], "seed matters");
    }

    #[test]
    fn uuid_shape() {
        let u = derived_uuid(1, 2, "018F428E-34F6-4707-8009-5AD742F901E7");
        assert!(is_uuid(&u));
        assert_eq!(&u[14..15], "4");
        assert_eq!(u, derived_uuid(1, 2, "018f428e-34f6-4707-8009-5ad742f901e7"));
        assert!(!is_uuid("018f428e-34f6-4707-8009-5ad742f901e"));
        assert!(!is_uuid("018f428e034f6-4707-8009-5ad742f901e7"));
    }
}
