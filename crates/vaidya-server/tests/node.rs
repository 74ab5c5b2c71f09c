//! Department nodes, first part: a real core and a real `vaidya node` on loopback. The node
//! follows the core's ledger into a replica that verifies with the core's key, and continues
//! after a restart; only a `node` account may read the feed. Against a fake core: a feed signed
//! by another key, and one with its entries reordered (signed with the right key), are refused
//! and nothing of them is applied, while a correct feed from the same fake core is taken. When
//! the core's process is killed the node goes into downtime mode and back online when the core
//! returns; a node killed and restarted catches up and its replica verifies.

mod common;

use common::node::{Node, host_port, proxy};
use common::{BIN, Server};
use serde_json::json;
use std::io::{Read, Write};

use std::process::Command;
use std::time::Duration;
use vaidya_ledger::{Entry, Frontier, GENESIS_PREV, LedgerKey, Op};
use vaidya_server::node::wire::{CONTENT_TYPE, Feed};

fn patient(family: &str) -> serde_json::Value {
    json!({"resourceType": "Patient", "name": [{"family": family}], "gender": "female", "birthDate": "1990-01-01"})
}

#[test]
fn a_node_follows_the_core_into_a_replica_that_verifies() {
    let core = Server::start();
    let root = core.base.trim_end_matches("/fhir").to_string();
    let node_token = core.add_user("node-cardiology", "node", &[]);
    // Only a node account may read the feed; the query is checked.
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let feed = |token: &str, query: &str| {
        let r = agent.get(&format!("{root}/node/feed?{query}")).header("Authorization", &format!("Bearer {token}")).call().unwrap();
        r.status().as_u16()
    };
    let doctor = core.add_user("dr.rao", "doctor", &["--department", "cardiology"]);
    assert_eq!(feed(&doctor, "after=0"), 403);
    assert_eq!(feed(&core.token, "after=0"), 403, "not even the administrator");
    assert_eq!(feed(&node_token, "after=x"), 400);
    assert_eq!(feed(&node_token, "after=0&limit=3"), 400);
    assert_eq!(feed(&node_token, "after=999999"), 409, "beyond the core's ledger");

    let mut ids = Vec::new();
    for i in 0..20 {
        let r = core.post("/Patient", &patient(&format!("Node{i}")));
        assert_eq!(r.status, 201, "{}", r.body);
        ids.push(r.json()["id"].as_str().unwrap().to_string());
    }
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("node");
    let core_key = core.data().join("keys/ledger.pub");
    let node = Node::start(&root, core_key.to_str().unwrap(), &node_token, &data);
    // Wait for the core to sign its last entries, then for the node to have them all.
    std::thread::sleep(Duration::from_millis(400));
    node.wait_for("vaidya_node_entries", core.ledger_size());
    assert!(node.get("/healthz").starts_with("ok node mode=online department=cardiology"), "{}", node.get("/healthz"));
    // Changes follow within the long poll.
    let mut changed = core.get(&format!("/Patient/{}", ids[0])).json();
    changed["gender"] = json!("other");
    assert_eq!(core.put(&format!("/Patient/{}", ids[0]), &changed).status, 200);
    assert_eq!(core.delete(&format!("/Patient/{}", ids[1])).status, 204);
    std::thread::sleep(Duration::from_millis(400));
    let size = core.ledger_size();
    node.wait_for("vaidya_node_entries", size);
    assert_eq!(node.metric("vaidya_node_refused_total"), 0);
    assert_eq!(node.metric("vaidya_node_behind_entries"), 0);
    // Accounts made at the core reach the node (staff will sign in there in downtime).
    // UHID issuer codes: 07 is this node's now; another node cannot claim it, nor this node a
    // second one (each refusal says why, and nothing is applied).
    let lab_token = core.add_user("node-lab", "node", &[]);
    let lab = Node::start_as(&root, core_key.to_str().unwrap(), &lab_token, &work.path().join("lab"), 7);
    lab.wait_for("vaidya_node_refused_total", 1);
    assert!(lab.get("/node/status").contains("claimed by the node account 'node-cardiology'"), "{}", lab.get("/node/status"));
    assert_eq!(lab.metric("vaidya_node_entries"), 0);
    lab.stop();
    let second = Node::start_as(&root, core_key.to_str().unwrap(), &node_token, &work.path().join("second"), 8);
    second.wait_for("vaidya_node_refused_total", 1);
    assert!(second.get("/node/status").contains("issues UHIDs with issuer 07"), "{}", second.get("/node/status"));
    second.stop();
    let updates = node.metric("vaidya_node_state_updates_total");
    assert!(updates >= 1, "the node accounts came with the first feed");
    core.add_user("nurse.lata", "nurse", &["--department", "cardiology"]);
    node.wait_for("vaidya_node_state_updates_total", updates + 1);
    node.stop();
    let replica = vaidya_store::open_read_only(&data.join("vaidya.db")).unwrap();
    let role: String = replica.query_row("SELECT role FROM api_user WHERE name = 'nurse.lata'", [], |r| r.get(0)).unwrap();
    assert_eq!(role, "nurse", "the nurse's account is in the replica");
    let claimed: String = replica.query_row("SELECT user_name FROM node_issuer WHERE issuer = 7", [], |r| r.get(0)).unwrap();
    assert_eq!(claimed, "node-cardiology", "the node sees its claim in its replica");
    drop(replica);
    // The replica is the core's ledger: it verifies with the core's key, projections and all.
    let verify = Command::new(BIN).args(["verify", "--data", data.to_str().unwrap()]).output().unwrap();
    assert!(verify.status.success(), "{}{}", String::from_utf8_lossy(&verify.stdout), String::from_utf8_lossy(&verify.stderr));
    // A restarted node continues where it was.
    let node = Node::start(&root, core_key.to_str().unwrap(), &node_token, &data);
    assert_eq!(node.metric("vaidya_node_entries"), size);
    assert_eq!(core.post("/Patient", &patient("AfterRestart")).status, 201);
    std::thread::sleep(Duration::from_millis(400));
    node.wait_for("vaidya_node_entries", size + 1);
    node.stop();
    // Pointed at another ledger's key, an existing replica refuses to start.
    let other = LedgerKey::generate("vaidya.other/ledger");
    let out = Command::new(BIN)
        .args(["node", "--core", &root, "--core-key", other.verifier_text(), "--token-file", data.with_extension("token").to_str().unwrap()])
        .args(["--issuer", "7", "--department", "cardiology", "--data", data.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("follows the ledger of"), "{out:?}");
    // A core address that is not a URL is refused before anything is written.
    let fresh = work.path().join("never");
    let out = Command::new(BIN)
        .args(["node", "--core", "his.hospital", "--core-key", other.verifier_text(), "--token-file", data.with_extension("token").to_str().unwrap()])
        .args(["--issuer", "7", "--department", "cardiology", "--data", fresh.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not a base URL"), "{out:?}");
    assert!(!fresh.exists(), "nothing written");
}

/// A TCP proxy on a fixed port to wherever `target` says (the core gets a new port when it is
/// restarted; the node keeps its one address, as in a hospital).
#[test]
fn the_node_goes_into_downtime_when_the_core_dies_and_follows_again_when_it_returns() {
    let mut core = Server::start();
    let node_token = core.add_user("node-opd", "node", &[]);
    let target = std::sync::Arc::new(std::sync::Mutex::new(host_port(&core.base)));
    let via = proxy(target.clone());
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("node");
    let core_key = core.data().join("keys/ledger.pub").to_str().unwrap().to_string();
    let node = Node::start(&via, &core_key, &node_token, &data);
    for i in 0..10 {
        assert_eq!(core.post("/Patient", &patient(&format!("Before{i}"))).status, 201);
    }
    std::thread::sleep(Duration::from_millis(400));
    node.wait_for("vaidya_node_entries", core.ledger_size());
    node.wait_health("mode=online");

    // The core's process dies (SIGKILL): the node says so within seconds, and keeps its replica.
    let before = core.ledger_size();
    core.kill9();
    node.wait_health("mode=downtime");
    assert_eq!(node.metric("vaidya_node_downtime"), 1);
    assert_eq!(node.metric("vaidya_node_entries"), before);

    // The core is back (same data, another port behind the same address): online, following.
    core.spawn();
    *target.lock().unwrap() = host_port(&core.base);
    node.wait_health("mode=online");
    for i in 0..5 {
        assert_eq!(core.post("/Patient", &patient(&format!("After{i}"))).status, 201);
    }
    std::thread::sleep(Duration::from_millis(400));
    node.wait_for("vaidya_node_entries", core.ledger_size());
    assert_eq!(node.metric("vaidya_node_downtimes_total"), 1);

    // The node's process dies in turn; restarted, it verifies its replica and catches up.
    node.kill9();
    for i in 0..5 {
        assert_eq!(core.post("/Patient", &patient(&format!("WhileNodeDown{i}"))).status, 201);
    }
    let node = Node::start(&via, &core_key, &node_token, &data);
    std::thread::sleep(Duration::from_millis(400));
    node.wait_for("vaidya_node_entries", core.ledger_size());
    assert_eq!(node.metric("vaidya_node_refused_total"), 0);
    node.stop();
    let verify = Command::new(BIN).args(["verify", "--data", data.to_str().unwrap()]).output().unwrap();
    assert!(verify.status.success(), "{}{}", String::from_utf8_lossy(&verify.stdout), String::from_utf8_lossy(&verify.stderr));
}

/// A fake core: answers a request from the start (`after=0`) with `feed`, any later one with
/// 204 (nothing new).
fn fake_core(feed: Vec<u8>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let asks_from_start = String::from_utf8_lossy(&got).contains("after=0&");
            let (status, body): (&str, &[u8]) = if asks_from_start { ("200 OK", &feed) } else { ("204 No Content", b"") };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {CONTENT_TYPE}\r\nX-Ledger-Size: 3\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(body);
        }
    });
    format!("http://{addr}")
}

/// Three entries chained from the start, and the checkpoint `key` signs over them.
fn ledger(key: &LedgerKey) -> (Vec<Vec<u8>>, String) {
    let mut prev = GENESIS_PREV;
    let mut entries = Vec::new();
    let mut f = Frontier::default();
    for seq in 1..=3u64 {
        let content = format!(r#"{{"resourceType":"Basic","id":"b{seq}","meta":{{"versionId":"1","lastUpdated":"2026-11-27T10:00:00.000Z"}}}}"#);
        let e = Entry {
            seq,
            time_ms: 1_795_000_000_000 + seq as i64,
            author: "fake".into(),
            op: Op::Put,
            resource_type: "Basic".into(),
            resource_id: format!("b{seq}"),
            version: 1,
            content: content.into_bytes(),
            prev_hash: prev,
        }
        .encode();
        prev = vaidya_ledger::hash_encoded(&e);
        f.append(seq - 1, prev).unwrap();
        entries.push(e);
    }
    let cp = vaidya_ledger::sign_checkpoint(key, 3, f.root(3).unwrap(), 1_795_000_000_010);
    (entries, cp)
}

#[test]
fn a_node_refuses_a_forged_or_reordered_feed_and_applies_nothing_of_it() {
    let work = tempfile::tempdir().unwrap();
    let key = LedgerKey::generate("vaidya.core/ledger");
    let (entries, checkpoint) = ledger(&key);

    // Signed by an intruder's key, not the core's.
    let intruder = LedgerKey::generate("vaidya.core/ledger");
    let (_, forged_cp) = ledger(&intruder);
    let forged = fake_core(Feed { checkpoint: forged_cp, entries: entries.clone(), state: None }.encode());
    let node = Node::start(&forged, key.verifier_text(), "t", &work.path().join("forged"));
    node.wait_for("vaidya_node_refused_total", 1);
    assert_eq!(node.metric("vaidya_node_entries"), 0);
    assert!(node.get("/node/status").contains("the checkpoint"), "{}", node.get("/node/status"));
    node.stop();

    // Signed with the core's key, entries reordered.
    let mut reordered = entries.clone();
    reordered.swap(0, 1);
    let swapped = fake_core(Feed { checkpoint: checkpoint.clone(), entries: reordered, state: None }.encode());
    let node = Node::start(&swapped, key.verifier_text(), "t", &work.path().join("reordered"));
    node.wait_for("vaidya_node_refused_total", 1);
    assert_eq!(node.metric("vaidya_node_entries"), 0);
    assert!(node.get("/node/status").contains("does not follow"), "{}", node.get("/node/status"));
    node.stop();

    // One entry's content changed (the chain recomputed around it): the signed root differs.
    let mut altered = entries.clone();
    let mut e = Entry::decode(&altered[2]).unwrap();
    e.content = e.content.iter().map(|b| if *b == b'3' { b'4' } else { *b }).collect();
    altered[2] = e.encode();
    let changed = fake_core(Feed { checkpoint: checkpoint.clone(), entries: altered, state: None }.encode());
    let node = Node::start(&changed, key.verifier_text(), "t", &work.path().join("altered"));
    node.wait_for("vaidya_node_refused_total", 1);
    assert_eq!(node.metric("vaidya_node_entries"), 0);
    assert!(node.get("/node/status").contains("root its checkpoint signs"), "{}", node.get("/node/status"));
    node.stop();

    // The same fake core with the true feed: taken (so the refusals above were the checks').
    let honest = fake_core(Feed { checkpoint, entries, state: None }.encode());
    let node = Node::start(&honest, key.verifier_text(), "t", &work.path().join("honest"));
    node.wait_for("vaidya_node_entries", 3);
    assert_eq!(node.metric("vaidya_node_refused_total"), 0);
    node.stop();
}
