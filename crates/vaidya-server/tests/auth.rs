//! End-to-end tests of staff identity (`/auth`): sessions, their expiry, lockout, the TOTP
//! second factor, scoped and disabled tokens, against the real binary.

mod common;
use common::*;
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

fn root(s: &Server) -> String {
    s.base.trim_end_matches("/fhir").to_string()
}

/// POST JSON to `/auth/...`, with a bearer token if given.
fn auth_post(s: &Server, path: &str, token: Option<&str>, body: &Value) -> Resp {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json"), ("User-Agent", "auth-test/1")];
    if let Some(b) = &bearer {
        headers.push(("Authorization", b.as_str()));
    }
    raw_request(&agent(), "POST", &format!("{}/auth{path}", root(s)), Some(&body.to_string()), &headers)
}

fn login(s: &Server, user: &str, password: &str, totp: Option<&str>) -> Resp {
    let mut body = json!({"user": user, "password": password});
    if let Some(code) = totp {
        body["totp"] = json!(code);
    }
    auth_post(s, "/login", None, &body)
}

fn fhir_status(s: &Server, token: &str, method: &str, path: &str, body: Option<&Value>) -> u16 {
    s.request_as(token, method, path, body).status
}

/// `vaidya user add`, returning the one-time password.
fn add_user(s: &Server, name: &str, role: &str) -> String {
    let out = s.vaidya(&["user", "add", "--data", s.data().to_str().unwrap(), "--name", name, "--role", role]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines().find_map(|l| l.strip_prefix("One-time password: ")).expect("password printed").trim().to_string()
}

fn cli(s: &Server, args: &[&str]) -> String {
    let mut all = vec![args[0], args[1], "--data", s.data().to_str().unwrap()];
    all.extend_from_slice(&args[2..]);
    let out = s.vaidya(&all);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// The code an authenticator app shows at `unix` for a base32 secret.
fn code_at(secret: &str, unix: u64) -> String {
    let secret = totp_rs::Secret::try_from_base32(secret).unwrap();
    totp_rs::Builder::new().with_secret(secret).build().unwrap().generate(unix).to_string()
}

/// Log in with the one-time password and choose a real one; the session then works.
fn first_login(s: &Server, user: &str, one_time: &str, new: &str) -> String {
    let r = login(s, user, one_time, None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["must_change_password"], true);
    let token = r.json()["token"].as_str().unwrap().to_string();
    let r = auth_post(s, "/password", Some(&token), &json!({"old": one_time, "new": new}));
    assert_eq!(r.status, 200, "{}", r.body);
    token
}

fn with_config(toml: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vaidya.toml");
    std::fs::write(&path, toml).unwrap();
    let path = path.to_str().unwrap().to_string();
    Server::start_with(dir, &["--config", &path])
}

#[test]
fn login_password_change_and_logout() {
    let s = Server::start();
    let one_time = add_user(&s, "ravi.opd", "doctor");
    let r = login(&s, "ravi.opd", &one_time, None);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let session = v["token"].as_str().unwrap().to_string();
    assert!(session.starts_with("vdy_"));
    assert!(v["expires"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["must_change_password"], true);
    // Until the one-time password is changed, the session does nothing else.
    assert_eq!(fhir_status(&s, &session, "GET", "/Patient", None), 403);
    let r = auth_post(&s, "/password", Some(&session), &json!({"old": one_time, "new": "too short"}));
    assert_eq!(r.status, 400, "{}", r.body);
    let r = auth_post(&s, "/password", Some(&session), &json!({"old": "not it at all", "new": "a long passphrase"}));
    assert_eq!(r.status, 401, "{}", r.body);
    let r = auth_post(&s, "/password", Some(&session), &json!({"old": one_time, "new": "a long passphrase"}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(fhir_status(&s, &session, "GET", "/Patient", None), 200);
    // The old password no longer works, the new one does, without a change demanded.
    assert_eq!(login(&s, "ravi.opd", &one_time, None).status, 401);
    let r = login(&s, "ravi.opd", "a long passphrase", None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["must_change_password"], false);
    let second = r.json()["token"].as_str().unwrap().to_string();
    // Logout ends that session only.
    let r = auth_post(&s, "/logout", Some(&second), &json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(fhir_status(&s, &second, "GET", "/Patient", None), 401);
    assert_eq!(auth_post(&s, "/logout", Some(&second), &json!({})).status, 401);
    assert_eq!(fhir_status(&s, &session, "GET", "/Patient", None), 200);
    // Wrong password and unknown user look the same.
    let a = login(&s, "ravi.opd", "wrong password", None);
    let b = login(&s, "nobody.here", "wrong password", None);
    assert_eq!((a.status, b.status), (401, 401));
    assert_eq!(a.json()["error"], b.json()["error"]);
    // Malformed requests.
    assert_eq!(auth_post(&s, "/login", None, &json!({"user": "ravi.opd"})).status, 400);
    assert_eq!(auth_post(&s, "/logout", None, &json!({})).status, 401);
    // The operator's API token cannot change passwords (that needs a login).
    assert_eq!(auth_post(&s, "/password", Some(&s.token), &json!({"old": "x", "new": "y"})).status, 403);
    // Sessions are listed with their kind.
    let list = cli(&s, &["token", "--list"]);
    assert!(list.lines().any(|l| l.contains("ravi.opd") && l.contains("session")), "{list}");
}

#[test]
fn sessions_end_when_idle_and_at_their_lifetime() {
    let s = with_config("[auth]\nsession_idle_seconds = 2\nsession_max_seconds = 6\n");
    let one_time = add_user(&s, "meena.nurse", "nurse");
    let session = first_login(&s, "meena.nurse", &one_time, "correct horse battery");
    assert_eq!(fhir_status(&s, &session, "GET", "/Patient", None), 200);
    std::thread::sleep(Duration::from_millis(2600));
    assert_eq!(fhir_status(&s, &session, "GET", "/Patient", None), 401, "idle session still works");
    // Kept busy, a session still ends at its absolute lifetime.
    let r = login(&s, "meena.nurse", "correct horse battery", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let busy = r.json()["token"].as_str().unwrap().to_string();
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(4500) {
        assert_eq!(fhir_status(&s, &busy, "GET", "/Patient", None), 200, "busy session ended early");
        std::thread::sleep(Duration::from_millis(700));
    }
    while started.elapsed() < Duration::from_millis(6500) {
        std::thread::sleep(Duration::from_millis(500));
        let _ = fhir_status(&s, &busy, "GET", "/Patient", None);
    }
    assert_eq!(fhir_status(&s, &busy, "GET", "/Patient", None), 401, "session outlived its lifetime");
    // The operator's API token is not a session: it is not subject to the idle limit.
    assert_eq!(s.get("/Patient").status, 200);
}

#[test]
fn repeated_wrong_passwords_lock_the_account_until_unlocked() {
    let s = Server::start();
    let one_time = add_user(&s, "guess.me", "billing");
    for i in 0..5 {
        let r = login(&s, "guess.me", &format!("wrong {i}"), None);
        assert_eq!(r.status, 401, "attempt {i}: {}", r.body);
    }
    // Locked: even the right password is refused, without being checked.
    let r = login(&s, "guess.me", &one_time, None);
    assert_eq!(r.status, 423, "{}", r.body);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((50..=60).contains(&retry), "{retry}");
    assert!(r.json()["retry_after_seconds"].as_u64().is_some());
    assert_eq!(login(&s, "guess.me", "wrong again", None).status, 423);
    cli(&s, &["user", "unlock", "--name", "guess.me"]);
    let r = login(&s, "guess.me", &one_time, None);
    assert_eq!(r.status, 200, "{}", r.body);
    // A success resets the count: four more failures do not lock.
    for i in 0..4 {
        assert_eq!(login(&s, "guess.me", &format!("wrong {i}"), None).status, 401);
    }
    assert_eq!(login(&s, "guess.me", &one_time, None).status, 200);
}

#[test]
fn admin_roles_need_totp_and_a_code_is_used_once() {
    let s = Server::start();
    let admin_pw = s.admin_password.clone().expect("first start printed it");
    // No second factor yet: the admin cannot log in, and is told how to enrol.
    let r = login(&s, "admin", &admin_pw, None);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.json()["error"].as_str().unwrap().contains("vaidya user totp"));
    // The CLI-made API token keeps working without TOTP (an operator's action).
    assert_eq!(s.get("/Patient").status, 200);
    let out = cli(&s, &["user", "totp", "--name", "admin"]);
    let secret = out.lines().find_map(|l| l.strip_prefix("Secret: ")).unwrap().trim().to_string();
    assert!(out.contains("otpauth://totp/"), "{out}");
    // Password without code, or with a wrong one: the same 401.
    assert_eq!(login(&s, "admin", &admin_pw, None).status, 401);
    let stale = code_at(&secret, now_secs() - 3600);
    assert_eq!(login(&s, "admin", &admin_pw, Some(&stale)).status, 401);
    let code = code_at(&secret, now_secs());
    let r = login(&s, "admin", &admin_pw, Some(&code));
    assert_eq!(r.status, 200, "{}", r.body);
    // The same code again is a replay.
    let r = login(&s, "admin", &admin_pw, Some(&code));
    assert_eq!(r.status, 401, "{}", r.body);
    // The next step's code (within the one-step skew) is fresh.
    let next = code_at(&secret, now_secs() + 30);
    let r = login(&s, "admin", &admin_pw, Some(&next));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["must_change_password"], true);
}

#[test]
fn staff_enrol_totp_themselves_and_must_then_use_it() {
    let s = Server::start();
    let one_time = add_user(&s, "dr.iyer", "doctor");
    let session = first_login(&s, "dr.iyer", &one_time, "twelve chars plus");
    let r = auth_post(&s, "/totp/enrol", Some(&session), &json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
    let secret = r.json()["secret"].as_str().unwrap().to_string();
    assert!(r.json()["otpauth_uri"].as_str().unwrap().contains(&format!("secret={secret}")));
    // Pending until confirmed: a login needs no code yet.
    assert_eq!(login(&s, "dr.iyer", "twelve chars plus", None).status, 200);
    let wrong = code_at(&secret, now_secs() - 3600);
    assert_eq!(auth_post(&s, "/totp/confirm", Some(&session), &json!({"code": wrong})).status, 400);
    let code = code_at(&secret, now_secs());
    let r = auth_post(&s, "/totp/confirm", Some(&session), &json!({"code": code}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(auth_post(&s, "/totp/enrol", Some(&session), &json!({})).status, 409);
    // Now a code is needed, and the one used to confirm cannot be used again.
    assert_eq!(login(&s, "dr.iyer", "twelve chars plus", None).status, 401);
    assert_eq!(login(&s, "dr.iyer", "twelve chars plus", Some(&code)).status, 401);
    let next = code_at(&secret, now_secs() + 30);
    assert_eq!(login(&s, "dr.iyer", "twelve chars plus", Some(&next)).status, 200);
}

#[test]
fn scoped_tokens_are_stored_and_narrow_what_a_client_may_do() {
    let s = Server::start();
    let data = s.data().to_str().unwrap().to_string();
    add_user(&s, "analyser.1", "lab");
    let out = s.vaidya(&["token", "--data", &data, "--user", "analyser.1", "--scope", "system/Observation.write system/Patient.read"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let id = token.split('_').nth(1).unwrap().to_string();
    let list = cli(&s, &["token", "--list"]);
    let line = list.lines().find(|l| l.starts_with(&id)).unwrap_or_else(|| panic!("{list}"));
    assert!(line.contains("system/Observation.write system/Patient.read") && line.contains(" api "), "{line}");
    assert_eq!(fhir_status(&s, &token, "GET", "/Patient", None), 200);
    assert_eq!(fhir_status(&s, &token, "POST", "/Patient", Some(&json!({"resourceType": "Patient"}))), 403);
    assert_eq!(fhir_status(&s, &token, "GET", "/Encounter", None), 403);
    assert_eq!(fhir_status(&s, &token, "GET", "/Observation", None), 403);
    let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "glucose"}});
    assert_eq!(fhir_status(&s, &token, "POST", "/Observation", Some(&obs)), 201);
    assert_eq!(fhir_status(&s, &token, "POST", "", Some(&json!({"resourceType": "Bundle", "type": "batch", "entry": []}))), 403);
    // Scopes are checked when the token is made.
    for bad in ["system/Observation.delete", "system/Nonsense.read", ""] {
        let out = s.vaidya(&["token", "--data", &data, "--user", "analyser.1", "--scope", bad]);
        assert!(!out.status.success(), "{bad:?} accepted");
    }
}

#[test]
fn a_disabled_account_cannot_log_in_and_its_tokens_stop_working() {
    let s = Server::start();
    let one_time = add_user(&s, "sus.pect", "registration");
    let token = s.make_token("sus.pect");
    let session = first_login(&s, "sus.pect", &one_time, "my own password");
    assert_eq!(fhir_status(&s, &token, "GET", "/Patient", None), 200);
    assert_eq!(fhir_status(&s, &session, "GET", "/Patient", None), 200);
    cli(&s, &["user", "disable", "--name", "sus.pect"]);
    assert_eq!(fhir_status(&s, &token, "GET", "/Patient", None), 401);
    assert_eq!(fhir_status(&s, &session, "GET", "/Patient", None), 401);
    let r = login(&s, "sus.pect", "my own password", None);
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(login(&s, "sus.pect", "not my password", None).status, 401);
    cli(&s, &["user", "enable", "--name", "sus.pect"]);
    assert_eq!(fhir_status(&s, &token, "GET", "/Patient", None), 200);
    assert_eq!(login(&s, "sus.pect", "my own password", None).status, 200);
    // Unknown names are reported.
    let out = s.vaidya(&["user", "disable", "--data", s.data().to_str().unwrap(), "--name", "no.such"]);
    assert!(!out.status.success());
}

/// The path-based scope gate on its own (no server needed).
#[test]
fn scope_gate_by_path() {
    use axum::http::Method;
    use vaidya_server::app::Principal;
    use vaidya_server::auth::scopes::check;
    let who = |scopes: Option<&str>| Principal {
        user: "analyser".into(),
        role: "lab".into(),
        token_id: "t".into(),
        patient: None,
        department: None,
        practitioner: None,
        scopes: scopes.map(|s| vaidya_access::scope::ScopeSet::parse(s).unwrap()),
    };
    let lab = who(Some("system/Observation.write system/Patient.read"));
    let ok = |p: &Principal, m: Method, u: &str| check(p, &m, &u.parse().unwrap()).is_ok();
    assert!(ok(&lab, Method::POST, "/Observation"));
    assert!(ok(&lab, Method::PUT, "/Observation/o1"));
    assert!(ok(&lab, Method::POST, "/Observation/o1/$meta-add"));
    assert!(!ok(&lab, Method::GET, "/Observation/o1"));
    assert!(ok(&lab, Method::GET, "/Patient?identifier=x"));
    assert!(ok(&lab, Method::HEAD, "/Patient/p1"));
    assert!(ok(&lab, Method::POST, "/Patient/_search"));
    assert!(!ok(&lab, Method::GET, "/Patient?_revinclude=Observation:subject"), "includes pull in other types");
    assert!(!ok(&lab, Method::POST, "/Patient"));
    assert!(!ok(&lab, Method::DELETE, "/Patient/p1"));
    assert!(!ok(&lab, Method::GET, "/Encounter"));
    assert!(!ok(&lab, Method::POST, "/"), "a Bundle may touch any type");
    assert!(!ok(&lab, Method::GET, "/_history"));
    assert!(ok(&who(None), Method::POST, "/"));
    assert!(ok(&who(Some("system/*.*")), Method::POST, "/"));
    assert!(!ok(&who(Some("system/*.read")), Method::POST, "/"));
    assert!(ok(&who(Some("system/*.read")), Method::GET, "/_history"));
    assert!(ok(&who(Some("system/*.read")), Method::GET, "/Patient?_include=Patient:organization"));
}

/// Run the server with its log in a file; returns (child, root URL, log path).
fn serve_logging(dir: &std::path::Path, config: &str) -> (std::process::Child, String, std::path::PathBuf) {
    use std::io::BufRead;
    let cfg = dir.join("vaidya.toml");
    std::fs::write(&cfg, config).unwrap();
    let log = dir.join("server.log");
    let mut child = std::process::Command::new(BIN)
        .args(["serve", "--data"])
        .arg(dir.join("data"))
        .arg("--config")
        .arg(&cfg)
        .args(["--listen", "127.0.0.1:0"])
        .env("VAIDYA_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let root = loop {
        let line = lines.next().expect("server printed its address").unwrap();
        if let Some(rest) = line.strip_prefix("Vaidya is listening on ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, root, log)
}

#[test]
fn logins_failures_and_logouts_are_recorded_without_secrets() {
    for trust in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (mut child, root, log) = serve_logging(dir.path(), &format!("[auth]\ntrust_forwarded_for = {trust}\n"));
        let data = dir.path().join("data");
        let out = std::process::Command::new(BIN)
            .args(["user", "add", "--data", data.to_str().unwrap(), "--name", "log.me", "--role", "nurse"])
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let password = text.lines().find_map(|l| l.strip_prefix("One-time password: ")).unwrap().trim().to_string();
        let post = |path: &str, token: Option<&str>, body: Value| {
            let bearer = token.map(|t| format!("Bearer {t}"));
            let mut headers = vec![("Content-Type", "application/json"), ("User-Agent", "ward-pc/7"), ("X-Forwarded-For", "10.9.8.7, 10.0.0.1")];
            if let Some(b) = &bearer {
                headers.push(("Authorization", b.as_str()));
            }
            raw_request(&agent(), "POST", &format!("{root}/auth{path}"), Some(&body.to_string()), &headers)
        };
        assert_eq!(post("/login", None, json!({"user": "log.me", "password": "Secret-Guess-123"})).status, 401);
        assert_eq!(post("/login", None, json!({"user": "ghost", "password": "Secret-Guess-456"})).status, 401);
        let r = post("/login", None, json!({"user": "log.me", "password": password}));
        assert_eq!(r.status, 200);
        let token = r.json()["token"].as_str().unwrap().to_string();
        assert_eq!(post("/logout", Some(&token), json!({})).status, 200);
        std::thread::sleep(Duration::from_millis(300));
        child.kill().unwrap();
        child.wait().unwrap();
        let log = std::fs::read_to_string(log).unwrap();
        let events: Vec<&str> = log.lines().filter(|l| l.contains("vaidya::auth")).collect();
        let has = |needles: &[&str]| events.iter().any(|l| needles.iter().all(|n| l.contains(n)));
        assert!(has(&["action=\"login\"", "user=\"log.me\"", "outcome=\"failure\"", "reason=\"bad-password\"", "user_agent=\"ward-pc/7\""]), "{log}");
        assert!(has(&["action=\"login\"", "user=\"ghost\"", "reason=\"unknown-user\""]), "{log}");
        assert!(has(&["action=\"login\"", "user=\"log.me\"", "outcome=\"success\""]), "{log}");
        assert!(has(&["action=\"logout\"", "user=\"log.me\"", "outcome=\"success\""]), "{log}");
        let ip = if trust { "source_ip=\"10.9.8.7\"" } else { "source_ip=\"127.0.0.1\"" };
        assert!(events.iter().all(|l| l.contains(ip)), "trust_forwarded_for={trust}: {log}");
        for secret in ["Secret-Guess-123", "Secret-Guess-456", password.as_str(), token.splitn(3, '_').nth(2).unwrap()] {
            // The secret is base64url and may itself contain '_': take all of it, never a fragment
            // (an empty fragment would be "found" in any log).
            assert!(!log.contains(secret), "a secret reached the log: {log}");
        }
    }
}
