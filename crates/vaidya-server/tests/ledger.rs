//! The ledger end to end: verification, tamper detection, crash safety, bulk import.

mod common;
use common::*;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

fn verify(data: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new(BIN).args(["verify", "--data"]).arg(data).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
}

#[test]
fn verify_passes_then_names_the_entry_whose_byte_was_flipped() {
    let mut s = Server::start();
    for i in 0..20 {
        let r = s.post("/Patient", &json!({"resourceType": "Patient", "name": [{"family": format!("Family{i:03}Marker")}]}));
        assert_eq!(r.status, 201);
    }
    s.stop();
    let (ok, out) = verify(s.data());
    assert!(ok, "{out}");
    assert!(out.contains("entries:     20"), "{out}");

    // Flip one byte inside the stored JSON of the 7th patient (ledger entry 7). Every copy in
    // the file is flipped, since SQLite may leave stale copies in free pages.
    let db = s.data().join("vaidya.db");
    let mut bytes = std::fs::read(&db).unwrap();
    let needle = br#""family":"Family006Marker""#;
    let hits: Vec<usize> = bytes.windows(needle.len()).enumerate().filter(|(_, w)| w == needle).map(|(i, _)| i).collect();
    assert!(!hits.is_empty(), "content present in the file");
    for at in hits {
        bytes[at + 10] ^= 0x01; // 'F' -> 'G'
    }
    std::fs::write(&db, &bytes).unwrap();

    let (ok, out) = verify(s.data());
    assert!(!ok, "tampering went unnoticed: {out}");
    assert!(out.contains("FIRST BAD ENTRY: 7"), "{out}");
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let mut s = Server::start();
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    for round in 0..4 {
        let stop = Arc::new(AtomicBool::new(false));
        let base = s.base.clone();
        let token = s.token.clone();
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let (stop, acked, base, token) = (stop.clone(), acknowledged.clone(), base.clone(), token.clone());
                std::thread::spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .timeout_global(Some(std::time::Duration::from_secs(5)))
                        .build()
                        .into();
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) && i < 2_000 {
                        i += 1;
                        let id = format!("r{round}-w{w}-{i}");
                        let body = json!({"resourceType": "Patient", "id": id, "name": [{"family": id}]}).to_string();
                        let auth = format!("Bearer {token}");
                        let req = ureq::http::Request::builder()
                            .method("PUT")
                            .uri(format!("{base}/Patient/{id}"))
                            .header("Authorization", auth)
                            .header("Content-Type", "application/fhir+json")
                            .body(body)
                            .unwrap();
                        match agent.run(req) {
                            Ok(r) if r.status().as_u16() == 201 => acked.lock().unwrap().push(id),
                            Ok(r) => panic!("unexpected status {}", r.status()),
                            Err(_) => break, // the server died mid-request: not acknowledged
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(300 + 150 * round));
        s.kill9();
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().unwrap();
        }
        s.spawn();
    }
    let acked = acknowledged.lock().unwrap().clone();
    assert!(acked.len() > 50, "the load was too light to mean anything: {}", acked.len());
    for id in &acked {
        assert_eq!(s.get(&format!("/Patient/{id}")).status, 200, "acknowledged write {id} lost");
    }
    s.stop();
    let (ok, out) = verify(s.data());
    assert!(ok, "{out}");
}

#[test]
fn synthea_bundles_all_import_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let synthea = shared_data().join("synthea-r4");
    let out = std::process::Command::new(BIN).args(["import", "--data"]).arg(dir.path()).arg(&synthea).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("imported 16240 resources from 115 files"), "{text}");
    let (ok, report) = verify(dir.path());
    assert!(ok, "{report}");
    assert!(report.contains("entries:     16240"), "{report}");

    // A second run of import while... the data directory lock refuses a concurrent writer.
    let _lock_holder = {
        let f = std::fs::File::options().write(true).open(dir.path().join("LOCK")).unwrap();
        f.try_lock().unwrap();
        f
    };
    let out = std::process::Command::new(BIN).args(["import", "--data"]).arg(dir.path()).arg(&synthea).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use"), "{}", String::from_utf8_lossy(&out.stderr));
}
