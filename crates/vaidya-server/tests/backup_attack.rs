//! The 2022 incident, played against a real object store (SeaweedFS with Object Lock, on
//! loopback): Vaidya ships synchronously to a locked bucket while a workload of registrations,
//! bookings, results and payments runs; the attacker, holding the server's own S3 credentials
//! (and then the bucket admin's), deletes, overwrites with garbage and adds delete markers, and
//! encrypts every file of the data directory; the hospital restores on a fresh directory with
//! the offline key, and every acknowledged write is there, verified, and served.

mod common;

use common::{BIN, Server, tariff};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use vaidya_backup::seaweed::{LOCKED_BUCKET, Seaweed};
use vaidya_backup::target::Target;

const EVENTS: &str = "https://vaidya.dev/fhir/CodeSystem/billable-event";
const PREFIX: &str = "hospital/";

fn vaidya(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(BIN);
    c.args(args).env("VAIDYA_LOG", "warn");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("vaidya runs")
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let file = dir.join(name);
    let out = vaidya(&["backup", "keygen", "--out", file.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let recipient = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("public key for [backup] recipients: ").map(str::to_string))
        .unwrap();
    (file, recipient)
}

fn params(list: Value) -> Value {
    json!({"resourceType": "Parameters", "parameter": list})
}

fn id_of(r: &common::Resp) -> String {
    r.json()["id"].as_str().unwrap_or_else(|| panic!("no id in {}", r.body)).to_string()
}

/// What the workload was told had been done.
#[derive(Default)]
struct Acknowledged {
    patients: Vec<(String, String)>,
    appointments: Vec<String>,
    observations: Vec<String>,
    invoices: Vec<String>,
}

fn set_up(s: &Server) {
    for r in [
        json!({"resourceType": "Organization", "id": "aiims", "name": "AIIMS"}),
        json!({"resourceType": "HealthcareService", "id": "gen-med", "name": "General Medicine", "providedBy": {"reference": "Organization/aiims"}}),
        json!({"resourceType": "Practitioner", "id": "dr-sharma", "name": [{"family": "Sharma"}]}),
        json!({"resourceType": "Schedule", "id": "sharma-opd", "actor": [{"reference": "Practitioner/dr-sharma"}, {"reference": "HealthcareService/gen-med"}]}),
        tariff("reg", EVENTS, "opd-registration", 10.0),
    ] {
        let path = format!("/{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
        assert_eq!(s.put(&path, &r).status, 201, "{path}");
    }
}

/// One patient's visit: registration, a booking, a result, a paid bill.
fn visit(s: &Server, i: usize, ack: &mut Acknowledged) {
    let r = s.post("/Patient", &json!({"resourceType": "Patient", "name": [{"family": format!("Attack{i}"), "given": ["Ravi"]}], "gender": "male", "birthDate": "1970-05-05"}));
    assert_eq!(r.status, 201, "{}", r.body);
    let p = r.json();
    let pid = p["id"].as_str().unwrap().to_string();
    let uhid =
        p["identifier"].as_array().unwrap().iter().find(|x| x["type"]["text"] == "UHID").unwrap()["value"].as_str().unwrap().to_string();
    ack.patients.push((pid.clone(), uhid));
    let slot = json!({"resourceType": "Slot", "id": format!("slot-{i}"), "schedule": {"reference": "Schedule/sharma-opd"}, "status": "free",
        "start": format!("2099-03-02T09:{:02}:00+05:30", i % 60), "end": format!("2099-03-02T09:{:02}:59+05:30", i % 60)});
    assert_eq!(s.put(&format!("/Slot/slot-{i}"), &slot).status, 201);
    let r = s.post(
        "/Appointment",
        &json!({"resourceType": "Appointment", "status": "booked", "slot": [{"reference": format!("Slot/slot-{i}")}],
        "participant": [{"actor": {"reference": format!("Patient/{pid}")}, "status": "accepted"},
                        {"actor": {"reference": "Practitioner/dr-sharma"}, "status": "accepted"},
                        {"actor": {"reference": "HealthcareService/gen-med"}, "status": "accepted"}]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    ack.appointments.push(id_of(&r));
    let r = s.post(
        "/Observation",
        &json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]}, "subject": {"reference": format!("Patient/{pid}")},
        "valueQuantity": {"value": 9.0 + i as f64 / 10.0, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    ack.observations.push(id_of(&r));
    let r = s.post("/Invoice/$gather", &params(json!([{"name": "patient", "valueReference": {"reference": format!("Patient/{pid}")}}])));
    assert_eq!(r.status, 201, "{}", r.body);
    let inv = id_of(&r);
    let r = s.post(
        &format!("/Invoice/{inv}/$pay"),
        &params(json!([
        {"name": "amount", "valueMoney": {"value": 10, "currency": "INR"}}, {"name": "mode", "valueCode": "cash"},
        {"name": "counter", "valueString": "OPD-1"}, {"name": "key", "valueString": format!("pay-{i}")}])),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "balanced");
    ack.invoices.push(inv);
}

fn overwrite_every_file(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            n += overwrite_every_file(&path);
        } else {
            let len = std::fs::metadata(&path).unwrap().len() as usize;
            let junk: Vec<u8> = (0..len.max(16)).map(|i| (i * 7 + 13) as u8 ^ 0xA5).collect();
            std::fs::write(&path, junk).unwrap();
            n += 1;
        }
    }
    n
}

#[test]
fn ransomware_with_the_servers_credentials_cannot_take_the_backups() {
    let weed = Seaweed::start();
    let work = tempfile::tempdir().unwrap();
    let (identity, recipient) = keygen(work.path(), "offline.key");
    let secret_file = work.path().join("s3-secret");
    std::fs::write(&secret_file, &weed.server.secret_access_key).unwrap();
    let key_id_file = work.path().join("s3-key-id");
    std::fs::write(&key_id_file, &weed.server.access_key_id).unwrap();
    let cfg = work.path().join("vaidya.toml");
    std::fs::write(
        &cfg,
        format!(
            "[backup]\nrecipients = [\"{recipient}\"]\nmode = \"sync\"\nscan_seconds = 1\nsnapshot_every_entries = 60\n\
             [[backup.target]]\nname = \"bucket\"\nkind = \"s3\"\nendpoint = \"{}\"\nbucket = \"{LOCKED_BUCKET}\"\nprefix = \"{PREFIX}\"\n\
             retention_days = 1\naccess_key_id_file = \"{}\"\nsecret_access_key_file = \"{}\"\n",
            weed.endpoint(),
            key_id_file.display(),
            secret_file.display()
        ),
    )
    .unwrap();
    // The target is safe by `vaidya backup check`: locked, versioned, and these credentials
    // cannot delete.
    let check = vaidya(&["backup", "check", "--config", cfg.to_str().unwrap()], &[]);
    assert!(check.status.success() && text(&check).contains("SAFE"), "{}", text(&check));

    // 1. Vaidya ships synchronously while the hospital works; every acknowledged write is noted.
    let mut s = Server::start_with(tempfile::tempdir().unwrap(), &["--config", cfg.to_str().unwrap()]);
    set_up(&s);
    let mut ack = Acknowledged::default();
    for i in 0..25 {
        visit(&s, i, &mut ack);
    }
    let bucket = vaidya_backup::s3::S3Target::new(weed.config(LOCKED_BUCKET, &weed.server, PREFIX)).unwrap();
    let before_attack = bucket.list_versions("").unwrap();
    assert!(before_attack.iter().any(|v| v.key.starts_with("data/")) && before_attack.iter().any(|v| v.key.starts_with("audit/")));

    // 2. The attacker holds the server's S3 credentials: deletes are refused, overwrites make
    //    new versions. With the bucket admin's credentials too: delete markers, but a locked
    //    version still cannot be destroyed.
    let mut refused = 0;
    for v in &before_attack {
        let full = format!("{PREFIX}{}", v.key);
        let (status, _) = weed.delete_as(&weed.server, LOCKED_BUCKET, &full, None);
        refused += usize::from(status == 403);
        bucket.put(&v.key, b"encrypted by the attacker, pay 50 BTC").unwrap();
        let (status, _) = weed.delete_as(&weed.admin, LOCKED_BUCKET, &full, v.version_id.as_deref());
        assert_eq!(status, 403, "a locked version of {full} was destroyed");
        let (status, body) = weed.delete_as(&weed.admin, LOCKED_BUCKET, &full, None);
        assert!(status == 204 || status == 200, "delete marker on {full}: {status} {body}");
    }
    assert_eq!(refused, before_attack.len(), "the server's credentials cannot delete");
    // The running server notices at its next scan of the bucket.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let m = common::raw_request(&ureq::Agent::new_with_defaults(), "GET", &s.base.replace("/fhir", "/metrics"), None, &[]);
        let line = m
            .body
            .lines()
            .find(|l| l.starts_with("vaidya_backup_anomalies{target=\"bucket\",kind=\"delete_marker\"}"))
            .unwrap_or("")
            .to_string();
        if line.split_whitespace().nth(1).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0) > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no alert on delete markers: {}", m.body);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // ... and then encrypts every file of the data directory and the server dies.
    s.kill9();
    let data = s.data().to_path_buf();
    assert!(overwrite_every_file(&data) > 3);

    // 3. On a fresh directory, from the bucket alone, with the offline key (read credentials).
    let restored = work.path().join("restored");
    let from = format!("s3://{LOCKED_BUCKET}/{PREFIX}?endpoint={}", weed.endpoint());
    let creds =
        [("AWS_ACCESS_KEY_ID", weed.server.access_key_id.as_str()), ("AWS_SECRET_ACCESS_KEY", weed.server.secret_access_key.as_str())];
    // The wrong key is refused plainly.
    let (wrong, _) = keygen(work.path(), "wrong.key");
    let out = vaidya(
        &["restore", "--from", &from, "--identity", wrong.to_str().unwrap(), "--data", work.path().join("w").to_str().unwrap()],
        &creds,
    );
    assert!(!out.status.success() && text(&out).contains("wrong key"), "{}", text(&out));
    let out = vaidya(&["restore", "--from", &from, "--identity", identity.to_str().unwrap(), "--data", restored.to_str().unwrap()], &creds);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("delete markers") && said.contains("overwritten"), "the attack is reported: {said}");
    // Database snapshots were made while the hospital worked; the first version of each of
    // their objects is what the restore starts from (the attacker's versions are ignored).
    assert!(said.contains("started from database snapshot"), "{said}");
    assert!(!said.contains("snapshot passed over: snapshot/") || said.contains("interrupted upload"), "{said}");
    assert!(vaidya(&["verify", "--data", restored.to_str().unwrap()], &[]).status.success());
    assert!(vaidya(&["audit", "verify", "--data", restored.to_str().unwrap()], &[]).status.success());

    // 4. Every acknowledged write is there (synchronous mode: all of them), and the restored
    //    server serves the workflows again.
    let dir = tempfile::TempDir::with_prefix_in("served-", work.path()).unwrap();
    std::fs::remove_dir(dir.path()).unwrap();
    std::fs::rename(&restored, dir.path()).unwrap();
    let r = Server::start_in(dir);
    for (pid, uhid) in &ack.patients {
        let p = r.get(&format!("/Patient/{pid}"));
        assert_eq!(p.status, 200, "patient {pid}");
        assert!(p.body.contains(uhid.as_str()));
    }
    for a in &ack.appointments {
        assert_eq!(r.get(&format!("/Appointment/{a}")).json()["status"], "booked", "appointment {a}");
    }
    for o in &ack.observations {
        assert_eq!(r.get(&format!("/Observation/{o}")).status, 200, "result {o}");
    }
    for inv in &ack.invoices {
        assert_eq!(r.get(&format!("/Invoice/{inv}")).json()["status"], "balanced", "invoice {inv}");
    }
    let mut more = Acknowledged::default();
    visit(&r, 99, &mut more);
    assert!(!ack.patients.iter().any(|(_, u)| *u == more.patients[0].1), "a UHID was issued twice");
}
