//! `vaidya import` of NDJSON: resources kept with their ids, bad lines named, nothing of a
//! refused chunk written.

mod common;
use common::*;

fn run(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = std::process::Command::new(BIN).args(args).env("VAIDYA_LOG", "warn").output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
}

#[test]
fn ndjson_lines_are_validated_and_refused_chunks_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let data = data_dir.path().to_path_buf();
    let good = dir.path().join("good.ndjson");
    std::fs::write(
        &good,
        concat!(
            r#"{"resourceType":"Patient","id":"nd-1","name":[{"family":"Joshi"}]}"#, "\n",
            "\n",
            r#"{"resourceType":"Patient","name":[{"family":"Pillai"}]}"#, "\n",
            r#"{"resourceType":"Organization","id":"nd-org","name":"AIIMS"}"#, "\n",
        ),
    )
    .unwrap();
    let bad = dir.path().join("bad.ndjson");
    std::fs::write(
        &bad,
        concat!(
            r#"{"resourceType":"Patient","id":"nd-2","name":[{"family":"Rao"}]}"#, "\n",
            r#"{"resourceType":"Patient","birthDate":"1980-02-30"}"#, "\n",
            "{not json\n",
        ),
    )
    .unwrap();
    let (ok, out) = run(&["import".as_ref(), "--data".as_ref(), data.as_os_str(), good.as_os_str(), bad.as_os_str()]);
    assert!(!ok, "a refused line makes the exit status non-zero: {out}");
    assert!(out.contains("imported 3 resources"), "{out}");
    assert!(out.contains("bad.ndjson lines 1-3: line 2"), "the bad line is named: {out}");
    assert!(out.contains("birthDate"), "{out}");

    let (ok, report) = run(&["verify".as_ref(), "--data".as_ref(), data.as_os_str()]);
    assert!(ok, "{report}");
    assert!(report.contains("resources:   3"), "nothing of the refused chunk was written: {report}");

    // Ids given in the file are kept; the others were assigned.
    let s = Server::start_in(data_dir);
    assert_eq!(s.get("/Patient/nd-1").json()["name"][0]["family"], "Joshi");
    assert_eq!(s.get("/Organization/nd-org").status, 200);
    assert_eq!(s.get("/Patient/nd-2").status, 404);
    assert_eq!(s.get("/Patient?family=pillai").json()["total"], 1);
}
