//! Vaidya on PostgreSQL, driven through the real binary: several `vaidya serve` share one
//! database; one writes, the others serve reads, and one of them takes over when the writer
//! dies. Every acknowledged write is there afterwards and the ledger verifies.

mod common;
#[path = "../../vaidya-store/tests/common/pg.rs"]
mod pg;

use common::Server;
use serde_json::json;
use std::time::{Duration, Instant};

fn patient(family: &str) -> serde_json::Value {
    json!({"resourceType": "Patient", "name": [{"family": family, "given": ["Asha"]}], "gender": "female", "birthDate": "1984-02-11"})
}

/// `GET /healthz/writer`'s status on a server.
fn writer_status(s: &Server) -> u16 {
    s.request("GET", &s.base.replace("/fhir", "/healthz/writer"), None, &[]).status
}

/// A second data directory holding the first one's ledger key (every server of one
/// database signs with the same key).
fn dir_with_keys_of(first: &Server) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("keys")).unwrap();
    for f in ["ledger.key", "ledger.pub"] {
        std::fs::copy(first.data().join("keys").join(f), dir.path().join("keys").join(f)).unwrap();
    }
    dir
}

#[test]
fn servers_share_a_postgres_database_one_writes_and_another_takes_over_when_it_dies() {
    let db = pg::TestPg::start();
    let url = db.fresh_database();
    let env = [("VAIDYA_DATABASE", url.as_str())];
    let mut a = Server::start_with_env(tempfile::tempdir().unwrap(), &[], &env);
    assert!(a.admin_password.is_some(), "the first server made the admin account in PostgreSQL");
    assert!(!a.data().join("vaidya.db").exists(), "no SQLite file: the data is in PostgreSQL");
    let mut b = Server::start_with_env(dir_with_keys_of(&a), &[], &env);
    assert!(b.admin_password.is_none(), "the second server found the accounts there");
    assert_eq!((writer_status(&a), writer_status(&b)), (200, 503), "one writer");

    // Written through the writer, read through the other; the other refuses writes clearly.
    let created = a.post("/Patient", &patient("Sharma"));
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_str().unwrap().to_string();
    let read = b.get(&format!("/Patient/{id}"));
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.json()["name"][0]["family"], "Sharma");
    let refused = b.post("/Patient", &patient("Kumar"));
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(refused.body.contains("writer lock"), "{}", refused.body);
    assert_eq!(b.get("/Patient?family=kumar").json()["total"], 0, "the refused write changed nothing");

    // The writer dies; the other takes the lock over and writes.
    for i in 0..20 {
        assert_eq!(a.post("/Patient", &patient(&format!("Iyer{i}"))).status, 201);
    }
    a.kill9();
    let killed = Instant::now();
    while writer_status(&b) != 200 {
        assert!(killed.elapsed() < Duration::from_secs(30), "the second server did not take over");
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = b.post("/Patient", &patient("Kumar"));
    assert_eq!(after.status, 201, "{}", after.body);
    eprintln!("took over and wrote {:.2} s after the writer was killed", killed.elapsed().as_secs_f64());
    let all = b.get("/Patient?_count=100&_total=accurate").json();
    assert_eq!(all["total"], 22, "every acknowledged write is there");
    assert_eq!(b.get(&format!("/Patient/{id}")).status, 200);

    // The ledger verifies (offline, with the key of the data directory).
    b.stop();
    let out = b.vaidya(&["verify", "--data", b.data().to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("entries:     22"), "{text}");

    // A server with another ledger key is refused: it would sign what nobody can verify.
    let stranger = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(stranger.path())
        .env("VAIDYA_DATABASE", &url)
        .env("VAIDYA_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("signed by another key"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_password_in_the_database_url_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .args(["--database", "postgres://vaidya:s3cret@localhost/vaidya"])
        .env("VAIDYA_LOG", "warn")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("database_password_file") && !err.contains("s3cret"), "{err}");
}


#[test]
fn a_hospital_moves_to_postgres_and_back_with_the_same_ledger() {
    let db = pg::TestPg::start();
    let url = db.fresh_database();
    let mut s = Server::start();
    let mut ids = vec![];
    for family in ["Sharma", "Iyer", "Kumar"] {
        let r = s.post("/Patient", &patient(family));
        assert_eq!(r.status, 201, "{}", r.body);
        ids.push(r.json()["id"].as_str().unwrap().to_string());
    }
    assert_eq!(s.delete(&format!("/Patient/{}", ids[2])).status, 204);
    s.stop();
    let on_sqlite = common::verified(s.data(), None);
    assert_eq!(on_sqlite.len(), 3, "{on_sqlite:?}");

    let data = s.data().to_str().unwrap().to_string();
    let out = s.vaidya(&["migrate", "--data", &data, "--to-postgres", &url]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(common::verified(s.data(), Some(&url)), on_sqlite, "the same entries, root and checkpoint on PostgreSQL");
    // A second migration into the same database is refused: it is not empty.
    let again = s.vaidya(&["migrate", "--data", &data, "--to-postgres", &url]);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("empty"));

    // The server runs on PostgreSQL now; the tokens made before still work.
    s.env = vec![("VAIDYA_DATABASE".into(), url.clone())];
    s.spawn();
    let read = s.get(&format!("/Patient/{}", ids[0]));
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(s.get(&format!("/Patient/{}", ids[2])).status, 410, "deleted stays deleted");
    assert_eq!(s.get("/Patient?family=iyer").json()["total"], 1);
    assert_eq!(s.post("/Patient", &patient("Das")).status, 201);
    s.stop();
    let on_postgres = common::verified(s.data(), Some(&url));

    // And back to SQLite, in a new data directory with the same key.
    let back = dir_with_keys_of(&s);
    let out = s.vaidya(&["migrate", "--data", back.path().to_str().unwrap(), "--from-postgres", &url]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    s.env.clear();
    assert_eq!(common::verified(back.path(), None), on_postgres, "the same ledger back on SQLite");
}
