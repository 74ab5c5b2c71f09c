//! Backups end to end, with a directory target: the real server ships, `vaidya restore`
//! rebuilds a new data directory from the target alone, and the restored server serves what
//! was acknowledged. Refusals: a wrong key, an altered segment, a missing segment. Synchronous
//! mode: a write is answered only once the target has it. (The attack against an object-locked
//! bucket is in `backup_attack.rs`.)

mod common;
#[path = "../../vaidya-store/tests/common/pg.rs"]
mod pg;

use common::{BIN, Server};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

fn vaidya(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).env("VAIDYA_LOG", "warn").output().expect("vaidya runs")
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A key pair made by `vaidya backup keygen`: (identity file, public key).
fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let file = dir.join(name);
    let out = vaidya(&["backup", "keygen", "--out", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let recipient = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("public key for [backup] recipients: ").map(str::to_string))
        .expect("the public key is printed");
    (file, recipient)
}

/// A config file shipping to the directory `target`.
fn config(dir: &Path, recipient: &str, target: &Path, extra: &str) -> PathBuf {
    let file = dir.join("vaidya.toml");
    std::fs::write(
        &file,
        format!(
            "[backup]\nrecipients = [\"{recipient}\"]\n{extra}\n[[backup.target]]\nname = \"copy\"\nkind = \"dir\"\npath = \"{}\"\n",
            target.display()
        ),
    )
    .unwrap();
    file
}

fn patient(family: &str) -> Value {
    json!({"resourceType": "Patient", "name": [{"family": family, "given": ["Asha"]}], "gender": "female", "birthDate": "1980-01-01"})
}

fn uhid(p: &Value) -> String {
    p["identifier"].as_array().unwrap().iter().find(|i| i["type"]["text"] == "UHID").expect("a UHID")["value"].as_str().unwrap().to_string()
}

/// Data segment objects in a directory target, sorted.
fn data_segments(target: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(target.join("data")).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

#[test]
fn a_server_restored_from_its_backup_has_every_acknowledged_write_and_works() {
    let work = tempfile::tempdir().unwrap();
    let target = work.path().join("target");
    let (identity, recipient) = keygen(work.path(), "backup.key");
    let cfg = config(work.path(), &recipient, &target, "");
    let mut s = Server::start_with(tempfile::tempdir().unwrap(), &["--config", cfg.to_str().unwrap()]);
    // Acknowledged writes: creates, an update, a delete, in bursts (several segments).
    let mut ids = Vec::new();
    let mut uhids = Vec::new();
    for burst in 0..3 {
        for i in 0..10 {
            let r = s.post("/Patient", &patient(&format!("Backup{burst}x{i}")));
            assert_eq!(r.status, 201, "{}", r.body);
            let v = r.json();
            uhids.push(uhid(&v));
            ids.push(v["id"].as_str().unwrap().to_string());
        }
        std::thread::sleep(std::time::Duration::from_millis(400));
    }
    let mut changed = s.get(&format!("/Patient/{}", ids[0])).json();
    changed["gender"] = json!("other");
    assert_eq!(s.put(&format!("/Patient/{}", ids[0]), &changed).status, 200);
    assert_eq!(s.delete(&format!("/Patient/{}", ids[1])).status, 204);
    let doctor = s.add_user("asha", "doctor", &["--department", "cardiology"]);
    assert_eq!(s.request_as(&doctor, "GET", "/metadata", None).status, 200);
    let entries = s.ledger_size();
    // The shipper reports its position; /metrics has it too.
    let metrics = common::raw_request(&ureq::Agent::new_with_defaults(), "GET", &s.base.replace("/fhir", "/metrics"), None, &[]);
    assert!(metrics.body.contains("vaidya_backup_shipped_entries{target=\"copy\",ledger=\"data\"}"), "{}", metrics.body);
    s.stop();
    assert!(data_segments(&target).len() >= 2, "writes in bursts make several segments");
    let status = vaidya(&["backup", "status", "--data", s.data().to_str().unwrap()]);
    assert!(text(&status).contains(&format!("shipped {entries} of {entries} signed entries")), "{}", text(&status));

    // The server's disk is lost: restore on a new directory from the target alone.
    let restored = work.path().join("restored");
    let out = vaidya(&[
        "restore",
        "--from",
        &format!("dir:{}", target.display()),
        "--identity",
        identity.to_str().unwrap(),
        "--data",
        restored.to_str().unwrap(),
    ]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains(&format!("data ledger: {entries} entries")), "{said}");
    assert!(said.contains("accounts, grants and counters: restored"), "{said}");
    assert!(!restored.join("RESTORE-INCOMPLETE").exists());
    let verify = vaidya(&["verify", "--data", restored.to_str().unwrap()]);
    assert!(verify.status.success(), "{}", text(&verify));
    let audit = vaidya(&["audit", "verify", "--data", restored.to_str().unwrap()]);
    assert!(audit.status.success(), "{}", text(&audit));
    // A second restore into the same directory is refused.
    let again = vaidya(&[
        "restore",
        "--from",
        target.to_str().unwrap(),
        "--identity",
        identity.to_str().unwrap(),
        "--data",
        restored.to_str().unwrap(),
    ]);
    assert!(!again.status.success() && text(&again).contains("not empty"), "{}", text(&again));

    // The restored server serves the workflows: every write is there, searches work (indexes),
    // accounts came back, and the UHID counter continues without reusing a number.
    let dir = tempfile::TempDir::with_prefix_in("restored-", work.path()).unwrap();
    std::fs::remove_dir(dir.path()).unwrap();
    std::fs::rename(&restored, dir.path()).unwrap();
    let r = Server::start_in(dir);
    for (i, id) in ids.iter().enumerate() {
        let got = r.get(&format!("/Patient/{id}"));
        match i {
            1 => assert_eq!(got.status, 410, "the deleted patient stays deleted"),
            0 => assert_eq!(got.json()["gender"], "other", "the update is there"),
            _ => assert_eq!(got.status, 200, "{id}: {}", got.body),
        }
    }
    let found = r.get("/Patient?family=Backup2x7").json();
    assert_eq!(found["total"], 1, "{found}");
    let doctor = r.make_token("asha");
    assert_eq!(r.request_as(&doctor, "GET", "/metadata", None).status, 200, "the doctor's account was restored");
    let fresh = r.post("/Patient", &patient("AfterRestore"));
    assert_eq!(fresh.status, 201, "{}", fresh.body);
    let new_uhid = uhid(&fresh.json());
    assert!(!uhids.contains(&new_uhid), "UHID {new_uhid} was issued before the loss");
}

#[test]
fn restore_refuses_a_wrong_key_an_altered_segment_and_a_gap_and_stops_where_asked() {
    let work = tempfile::tempdir().unwrap();
    let target = work.path().join("target");
    let (identity, recipient) = keygen(work.path(), "backup.key");
    let cfg = config(work.path(), &recipient, &target, "");
    let mut s = Server::start_with(tempfile::tempdir().unwrap(), &["--config", cfg.to_str().unwrap()]);
    for burst in 0..3 {
        for i in 0..5 {
            assert_eq!(s.post("/Patient", &patient(&format!("Gap{burst}x{i}"))).status, 201);
        }
        std::thread::sleep(std::time::Duration::from_millis(400));
    }
    s.stop();
    let segments = data_segments(&target);
    assert!(segments.len() >= 3, "{segments:?}");
    let restore = |from: &Path, key: &Path, into: &str, extra: &[&str]| {
        let data = work.path().join(into);
        let mut args =
            vec!["restore", "--from", from.to_str().unwrap(), "--identity", key.to_str().unwrap(), "--data", data.to_str().unwrap()];
        args.extend_from_slice(extra);
        vaidya(&args)
    };

    // The wrong key: said plainly, nothing restored.
    let (other, _) = keygen(work.path(), "other.key");
    let out = restore(&target, &other, "wrong-key", &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("wrong key"), "{}", text(&out));

    // A segment altered in the target is named.
    let altered = work.path().join("altered");
    copy_dir(&target, &altered);
    let victim = altered.join("data").join(segments[1].file_name().unwrap());
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&victim, bytes).unwrap();
    let out = restore(&altered, &identity, "from-altered", &[]);
    assert!(!out.status.success());
    let name = segments[1].file_name().unwrap().to_str().unwrap();
    assert!(text(&out).contains(name) && text(&out).contains("damaged or altered"), "{}", text(&out));
    assert!(work.path().join("from-altered/RESTORE-INCOMPLETE").exists(), "an unfinished restore is marked");
    let serve = vaidya(&["serve", "--data", work.path().join("from-altered").to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    assert!(!serve.status.success() && text(&serve).contains("unfinished restore"), "{}", text(&serve));

    // A missing segment is a gap, named with the entries it held.
    let gapped = work.path().join("gapped");
    copy_dir(&target, &gapped);
    std::fs::remove_file(gapped.join("data").join(segments[1].file_name().unwrap())).unwrap();
    let out = restore(&gapped, &identity, "from-gapped", &[]);
    assert!(!out.status.success());
    let said = text(&out);
    assert!(said.contains("are missing") && said.contains(segments[2].file_name().unwrap().to_str().unwrap()), "{said}");

    // Up to a chosen entry: exactly that many.
    let out = restore(&target, &identity, "to-seq-7", &["--seq", "7"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("data ledger: 7 entries"), "{}", text(&out));
    assert!(vaidya(&["verify", "--data", work.path().join("to-seq-7").to_str().unwrap()]).status.success());
    // Bad arguments change nothing.
    let out = restore(&target, &identity, "bad-at", &["--at", "yesterday"]);
    assert!(!out.status.success() && text(&out).contains("--at yesterday"), "{}", text(&out));
    assert!(!work.path().join("bad-at").exists());
}

#[test]
fn synchronous_backups_answer_a_write_once_the_target_has_it_and_not_before() {
    let work = tempfile::tempdir().unwrap();
    let target = work.path().join("target");
    let (_identity, recipient) = keygen(work.path(), "backup.key");
    let cfg = config(work.path(), &recipient, &target, "mode = \"sync\"\nsync_timeout_seconds = 2");
    let s = Server::start_with(tempfile::tempdir().unwrap(), &["--config", cfg.to_str().unwrap()]);
    for i in 0..5 {
        let r = s.post("/Patient", &patient(&format!("Sync{i}")));
        assert_eq!(r.status, 201, "{}", r.body);
        // At the moment of the answer, a segment in the target holds the write's entry.
        let size = s.ledger_size();
        let shipped = data_segments(&target)
            .iter()
            .filter_map(|p| p.file_name()?.to_str()?.split('-').nth(1)?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        assert!(shipped >= size, "answered before the backup had entry {size} (shipped to {shipped})");
    }
    // The target goes away: a write is not acknowledged, and says why.
    std::fs::rename(&target, work.path().join("moved")).unwrap();
    std::fs::write(&target, b"not a directory").unwrap();
    let r = s.post("/Patient", &patient("Unshipped"));
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("backup target has not confirmed"), "{}", r.body);
}

/// The "data ledger: ..." line of a restore's report without the count of segments replayed:
/// entries, the last entry and its time, the last checkpoint and its root.
fn data_line(said: &str) -> String {
    let line = said.lines().find(|l| l.starts_with("data ledger:")).unwrap_or_else(|| panic!("no data ledger line: {said}"));
    let (entries, rest) = line.split_once(" from ").unwrap();
    format!("{entries}{}", &rest[rest.find(';').unwrap()..])
}

#[test]
fn a_restore_starts_from_the_last_database_snapshot_and_replays_only_what_follows() {
    let work = tempfile::tempdir().unwrap();
    let target = work.path().join("target");
    let (identity, recipient) = keygen(work.path(), "backup.key");
    let cfg = config(work.path(), &recipient, &target, "snapshot_every_entries = 20");
    let mut s = Server::start_with(tempfile::tempdir().unwrap(), &["--config", cfg.to_str().unwrap()]);
    let mut ids = Vec::new();
    for i in 0..25 {
        let r = s.post("/Patient", &patient(&format!("Snap{i}")));
        assert_eq!(r.status, 201, "{}", r.body);
        ids.push(r.json()["id"].as_str().unwrap().to_string());
    }
    // The snapshot thread looks once a second; the status says when one is in every target.
    let data = s.data().to_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let snapshot_entries: u64 = loop {
        let said = text(&vaidya(&["backup", "status", "--data", &data]));
        if let Some(n) = said.lines().find_map(|l| l.strip_prefix("database snapshot: ")?.split(' ').next()?.parse().ok()) {
            break n;
        }
        assert!(std::time::Instant::now() < deadline, "no snapshot was made: {said}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(snapshot_entries >= 20, "{snapshot_entries}");
    // After the snapshot: an update, a delete, new patients, a new account.
    let mut changed = s.get(&format!("/Patient/{}", ids[0])).json();
    changed["gender"] = json!("other");
    assert_eq!(s.put(&format!("/Patient/{}", ids[0]), &changed).status, 200);
    assert_eq!(s.delete(&format!("/Patient/{}", ids[1])).status, 204);
    for i in 0..5 {
        assert_eq!(s.post("/Patient", &patient(&format!("After{i}"))).status, 201);
    }
    s.add_user("dr.after", "doctor", &["--department", "cardiology"]);
    let entries = s.ledger_size();
    s.stop();
    let parts: Vec<PathBuf> = std::fs::read_dir(target.join("snapshot"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().map(|e| e.unwrap().path()))
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("part-"))
        .collect();
    assert!(!parts.is_empty());

    let restore = |from: &Path, into: &str, extra: &[&str]| {
        let dir = work.path().join(into);
        let mut args =
            vec!["restore", "--from", from.to_str().unwrap(), "--identity", identity.to_str().unwrap(), "--data", dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = vaidya(&args);
        let said = text(&out);
        assert!(out.status.success(), "{said}");
        assert!(vaidya(&["verify", "--data", dir.to_str().unwrap()]).status.success(), "the restored database verifies in full");
        said
    };
    let from_snapshot = restore(&target, "from-snapshot", &[]);
    assert!(from_snapshot.contains(&format!("started from database snapshot snapshot/{snapshot_entries:020}-")), "{from_snapshot}");
    assert!(data_line(&from_snapshot).starts_with(&format!("data ledger: {entries} entries")), "{from_snapshot}");
    let replayed = restore(&target, "replayed", &["--no-snapshot"]);
    assert!(!replayed.contains("started from database snapshot"), "{replayed}");
    assert_eq!(data_line(&from_snapshot), data_line(&replayed), "the same ledger either way");

    // A snapshot part altered in the target: passed over (named), and everything replayed.
    let altered = work.path().join("altered");
    copy_dir(&target, &altered);
    let victim = altered.join(parts[0].strip_prefix(&target).unwrap());
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&victim, bytes).unwrap();
    let said = restore(&altered, "from-altered", &[]);
    assert!(said.contains("snapshot passed over") && said.contains("altered or replaced"), "{said}");
    assert_eq!(data_line(&said), data_line(&replayed));

    // Before the snapshot's end, the snapshot cannot be used: replay up to the entry asked for.
    let early = restore(&target, "early", &["--seq", "10"]);
    assert!(!early.contains("started from database snapshot") && early.contains("data ledger: 10 entries"), "{early}");

    // The restored server has everything, the later account included, and searches work.
    let dir = tempfile::TempDir::with_prefix_in("served-", work.path()).unwrap();
    std::fs::remove_dir(dir.path()).unwrap();
    std::fs::rename(work.path().join("from-snapshot"), dir.path()).unwrap();
    let r = Server::start_in(dir);
    assert_eq!(r.get(&format!("/Patient/{}", ids[0])).json()["gender"], "other");
    assert_eq!(r.get(&format!("/Patient/{}", ids[1])).status, 410);
    assert_eq!(r.get("/Patient?family=After4").json()["total"], 1);
    assert_eq!(r.get("/Patient?family=Snap24").json()["total"], 1);
    let doctor = r.make_token("dr.after");
    assert_eq!(r.request_as(&doctor, "GET", "/metadata", None).status, 200, "an account made after the snapshot");
    assert_eq!(r.post("/Patient", &patient("AfterRestore")).status, 201);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// A backup written by Vaidya when the segment format was first made (tests/fixtures/backup-v1:
/// six patients, a doctor's account, the audit of it all, and the offline key that opens it).
/// Every later Vaidya must restore it to the same ledgers: change the segment format only with
/// a reader for this one.
#[test]
fn a_backup_made_by_the_first_segment_format_still_restores() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/backup-v1");
    let work = tempfile::tempdir().unwrap();
    let restored = work.path().join("restored");
    let out = vaidya(&[
        "restore",
        "--from",
        fixture.join("target").to_str().unwrap(),
        "--identity",
        fixture.join("offline.key").to_str().unwrap(),
        "--data",
        restored.to_str().unwrap(),
    ]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("data ledger: 6 entries from 2 segments; last entry 6 at 2026-11-27T19:23:17.098Z (UTC); checkpoint at 6 entries, root 66437bf84065c492c02676ca775a73a4b4a55dcbb84247d4677040b4ef55a7e4"), "{said}");
    assert!(said.contains("audit ledger: 10 entries from 3 segments; last entry 10 at 2026-11-27T19:23:17.309Z (UTC); checkpoint at 10 entries, root bdf09872b94ff06aeeb35931faf578de3c9e3db93577398c2c87dac3befbca76"), "{said}");
    assert!(vaidya(&["verify", "--data", restored.to_str().unwrap()]).status.success());
    let dir = tempfile::TempDir::with_prefix_in("served-", work.path()).unwrap();
    std::fs::remove_dir(dir.path()).unwrap();
    std::fs::rename(&restored, dir.path()).unwrap();
    let r = Server::start_in(dir);
    for i in 1..=6 {
        assert_eq!(r.get(&format!("/Patient?family=Fixture{i}")).json()["total"], 1, "Fixture{i}");
    }
    let doctor = r.make_token("dr.fixture");
    assert_eq!(r.request_as(&doctor, "GET", "/metadata", None).status, 200);
}

#[test]
fn a_drill_restores_the_latest_backup_and_compares_it_with_the_live_server() {
    let work = tempfile::tempdir().unwrap();
    let target = work.path().join("target");
    let (identity, recipient) = keygen(work.path(), "backup.key");
    let cfg = config(work.path(), &recipient, &target, "mode = \"sync\"");
    let s = Server::start_with(tempfile::tempdir().unwrap(), &["--config", cfg.to_str().unwrap()]);
    for i in 0..5 {
        assert_eq!(s.post("/Patient", &patient(&format!("Drill{i}"))).status, 201);
    }
    // The audit ledger is checkpointed within a fraction of a second; let it ship.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let live = s.base.trim_end_matches("/fhir").to_string();
    let prom = work.path().join("drill.prom");
    let drill = |live: &str| {
        vaidya(&[
            "drill",
            "--from",
            target.to_str().unwrap(),
            "--identity",
            identity.to_str().unwrap(),
            "--live",
            live,
            "--metrics-file",
            prom.to_str().unwrap(),
            "--scratch",
            work.path().join("scratch").to_str().unwrap(),
        ])
    };
    let out = drill(&live);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("DRILL PASSED") && text(&out).contains("data root at"), "{}", text(&out));
    let metrics = std::fs::read_to_string(&prom).unwrap();
    assert!(metrics.contains("vaidya_drill_success 1"), "{metrics}");
    assert!(!work.path().join("scratch").exists(), "the scratch copy is removed");
    // Against another hospital's server the roots differ: the drill fails and says so.
    let other = Server::start();
    for i in 0..8 {
        assert_eq!(other.post("/Patient", &patient(&format!("Other{i}"))).status, 201);
    }
    let out = drill(other.base.trim_end_matches("/fhir"));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("DRILL FAILED") && text(&out).contains("DIFFER"), "{}", text(&out));
    assert!(std::fs::read_to_string(&prom).unwrap().contains("vaidya_drill_success 0"));
    // The roots endpoint refuses what it does not know.
    let agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    for q in ["ledger=data", "ledger=data&size=0", "ledger=nope&size=1", "ledger=data&size=999999", "ledger=data&size=1&x=1", "size=x"] {
        let r = common::raw_request(&agent, "GET", &format!("{live}/ledger/root?{q}"), None, &[]);
        assert!(r.status == 400 || r.status == 404, "{q}: {} {}", r.status, r.body);
    }
}

/// Restore `target` into an empty PostgreSQL database (and a new directory for the keys and
/// the audit ledger); the restored ledger's verify lines.
fn restore_into_postgres(target: &Path, identity: &Path, url: &str) -> (tempfile::TempDir, Vec<String>) {
    let holder = tempfile::tempdir().unwrap();
    let data = holder.path().join("restored");
    let out = vaidya(&["restore", "--from", target.to_str().unwrap(), "--identity", identity.to_str().unwrap(), "--data", data.to_str().unwrap(), "--database", url]);
    assert!(out.status.success(), "{}", text(&out));
    let lines = common::verified(&data, Some(url));
    (holder, lines)
}

#[test]
fn a_postgres_hospital_is_backed_up_and_restored_and_a_sqlite_backup_restores_into_postgres() {
    let db = pg::TestPg::start();
    let work = tempfile::tempdir().unwrap();
    let (identity, recipient) = keygen(work.path(), "backup.key");

    // A hospital on PostgreSQL ships its ledger; a restore from the target alone, into another
    // PostgreSQL database, has the same entries, root and checkpoint.
    let live = db.fresh_database();
    let target = work.path().join("target-pg");
    let cfg = config(work.path(), &recipient, &target, "");
    let mut s = Server::start_with_env(tempfile::tempdir().unwrap(), &["--config", cfg.to_str().unwrap()], &[("VAIDYA_DATABASE", live.as_str())]);
    for i in 0..12 {
        assert_eq!(s.post("/Patient", &patient(&format!("Pg{i}"))).status, 201);
    }
    s.stop(); // ships the last checkpoint
    let (_restored, lines) = restore_into_postgres(&target, &identity, &db.fresh_database());
    assert_eq!(lines, common::verified(s.data(), Some(&live)));
    assert!(lines[0].ends_with(" 12"), "{lines:?}");

    // A hospital on SQLite: its backup restores into PostgreSQL.
    let target = work.path().join("target-sqlite");
    let cfg = config(work.path(), &recipient, &target, "");
    let mut s = Server::start_with(tempfile::tempdir().unwrap(), &["--config", cfg.to_str().unwrap()]);
    for i in 0..7 {
        assert_eq!(s.post("/Patient", &patient(&format!("Lite{i}"))).status, 201);
    }
    s.stop();
    let (restored, lines) = restore_into_postgres(&target, &identity, &db.fresh_database());
    assert_eq!(lines, common::verified(s.data(), None));
    assert!(restored.path().join("restored/keys/ledger.key").exists(), "the keys are in the new directory");
}
