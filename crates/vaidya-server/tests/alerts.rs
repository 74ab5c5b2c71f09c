//! The privacy officer's alerts reach a webhook (the hospital's SMS or e-mail gateway) at once,
//! with its token; an unreachable gateway is retried, then counted and logged.

mod common;
use common::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

/// A minimal HTTP endpoint: for each request, its Authorization header and JSON body.
fn gateway() -> (String, mpsc::Receiver<(String, Value)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/vaidya-alerts", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut length, mut auth) = (0usize, String::new());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if lower.starts_with("authorization:") {
                    auth = line["authorization:".len()..].trim().to_string();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n").unwrap();
            let _ = tx.send((auth, serde_json::from_slice(&body).unwrap()));
        }
    });
    (url, rx)
}

fn config(dir: &std::path::Path, alerts: &str) -> String {
    let path = dir.join("vaidya.toml");
    std::fs::write(&path, format!("[access]\nbreak_glass_seconds = 60\n\n[alerts]\n{alerts}\n")).unwrap();
    path.to_str().unwrap().to_string()
}

fn break_glass(s: &Server) {
    assert_eq!(s.put("/Patient/p1", &json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Rao"}]})).status, 201);
    let doctor = s.add_user("dr.night", "doctor", &["--department", "casualty"]);
    let params = json!({"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": "unconscious, no relatives, allergies?"}]});
    let r = s.request_as(&doctor, "POST", "/Patient/p1/$break-glass", Some(&params));
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn a_break_the_glass_reaches_the_gateway_with_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let (url, received) = gateway();
    std::fs::write(dir.path().join("token"), "s3cret-gateway-token\n").unwrap();
    let cfg = config(dir.path(), &format!("webhook_url = \"{url}\"\nwebhook_token_file = \"{}\"", dir.path().join("token").display()));
    let s = Server::start_with(tempfile::tempdir().unwrap(), &["--config", &cfg]);
    break_glass(&s);
    let (auth, alert) = received.recv_timeout(Duration::from_secs(30)).expect("the alert arrives");
    assert_eq!(auth, "Bearer s3cret-gateway-token");
    assert_eq!(alert["kind"], "break-glass");
    assert_eq!(alert["user"], "dr.night");
    assert_eq!(alert["patient"], "p1");
    assert_eq!(alert["reason"], "unconscious, no relatives, allergies?");
    assert!(alert["until"].is_string() && alert["time"].is_string(), "{alert}");
}

#[test]
fn an_unreachable_gateway_is_counted_and_a_bad_setting_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = config(dir.path(), &format!("webhook_url = \"http://127.0.0.1:{port}/x\"\nwebhook_timeout_seconds = 2"));
    let s = Server::start_with(tempfile::tempdir().unwrap(), &["--config", &cfg]);
    break_glass(&s);
    let metrics_url = s.base.replace("/fhir", "/metrics");
    let mut counted = false;
    for _ in 0..100 {
        let m = raw_request(&ureq::Agent::new_with_defaults(), "GET", &metrics_url, None, &[]).body;
        if m.contains("vaidya_alert_delivery_failures_total 1") {
            counted = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(counted, "the failed delivery is counted after its retries");

    for bad in ["webhook_url = \"ftp://gateway/x\"", "webhook_url = \"not a url\"", "webhook_url = \"http://gw/x\"\nwebhook_token_file = \"/nonexistent/token\""] {
        let cfg = config(dir.path(), bad);
        let data = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(BIN)
            .args(["serve", "--data", data.path().to_str().unwrap(), "--listen", "127.0.0.1:0", "--config", &cfg])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("[alerts]"), "{bad}: {}", String::from_utf8_lossy(&out.stderr));
    }
}
