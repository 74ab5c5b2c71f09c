//! End-to-end tests of single sign-on (`/auth/oidc`) against a real OpenID Connect provider:
//! npm's `oidc-provider`, run by node from `tests/oidc/provider.js` (installed by
//! `scripts/test` with `npm ci --prefix tests/oidc`), and the real `vaidya serve` with an
//! `[oidc]` section. The tests walk the flow as a browser does: redirects followed by hand,
//! cookies kept, the provider's sign-in and consent forms submitted.

mod common;
use common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::io::BufRead;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const CLIENT_ID: &str = "vaidya-test";
const CLIENT_SECRET: &str = "test-only-client-secret-7f3a91";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/oidc")
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run node's `oidc-provider` on `port` with one client whose redirect URI is `redirect`.
fn start_provider(port: u16, redirect: &str) -> Proc {
    let dir = provider_dir();
    assert!(
        dir.join("node_modules/oidc-provider").is_dir(),
        "the test OpenID Connect provider is not installed: run `npm ci --prefix tests/oidc` (scripts/test does)"
    );
    let mut child = Command::new("node")
        .arg(dir.join("provider.js"))
        .args([&port.to_string(), redirect, CLIENT_ID, CLIENT_SECRET])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node runs (Node.js 20 or later is needed for these tests)");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("the provider printed that it listens").unwrap();
        if line.starts_with("oidc-provider listening on") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Proc(child)
}

/// Vaidya with `[oidc]`, on a port chosen beforehand (the provider must know the callback URL).
struct Sso {
    dir: tempfile::TempDir,
    root: String,
    log: PathBuf,
    vaidya: Option<Proc>,
    _provider: Proc,
}

impl Sso {
    fn start() -> Sso {
        let dir = tempfile::tempdir().unwrap();
        let (pport, vport) = (free_port(), free_port());
        let root = format!("http://127.0.0.1:{vport}");
        let redirect = format!("{root}/auth/oidc/callback");
        let provider = start_provider(pport, &redirect);
        let secret = dir.path().join("oidc-secret");
        std::fs::write(&secret, format!("{CLIENT_SECRET}\n")).unwrap();
        let config = format!(
            "[oidc]\nissuer = \"http://127.0.0.1:{pport}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret_file = \"{}\"\nredirect_url = \"{redirect}\"\n",
            secret.display()
        );
        let cfg = dir.path().join("vaidya.toml");
        std::fs::write(&cfg, config).unwrap();
        let log = dir.path().join("server.log");
        let mut child = Command::new(BIN)
            .args(["serve", "--data"])
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&cfg)
            .args(["--listen", &format!("127.0.0.1:{vport}")])
            .env("VAIDYA_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        loop {
            let line = lines.next().expect("vaidya printed its address").unwrap();
            if line.starts_with("Vaidya is listening on ") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Sso { dir, root, log, vaidya: Some(Proc(child)), _provider: provider }
    }

    fn data(&self) -> String {
        self.dir.path().join("data").to_str().unwrap().to_string()
    }

    fn vaidya(&self, args: &[&str]) -> String {
        let out = Command::new(BIN).args(args).env("VAIDYA_LOG", "warn").output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn add_user(&self, name: &str, role: &str) {
        self.vaidya(&["user", "add", "--data", &self.data(), "--name", name, "--role", role]);
    }

    /// Stop the server and return its log.
    fn stop_and_read_log(&mut self) -> String {
        std::thread::sleep(Duration::from_millis(200));
        self.vaidya.take();
        std::fs::read_to_string(&self.log).unwrap()
    }
}

/// A browser: follows no redirect by itself, keeps cookies (by name; paths are ignored, which
/// only ever sends a cookie to more places than a browser would).
struct Browser {
    agent: ureq::Agent,
    cookies: HashMap<String, String>,
}

impl Browser {
    fn new() -> Browser {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Browser { agent, cookies: HashMap::new() }
    }

    fn send(&mut self, method: &str, url: &str, form: Option<&str>) -> Resp {
        let cookie = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let mut headers = vec![("User-Agent", "sso-test-browser/1")];
        if !cookie.is_empty() {
            headers.push(("Cookie", cookie.as_str()));
        }
        if form.is_some() {
            headers.push(("Content-Type", "application/x-www-form-urlencoded"));
        }
        let r = raw_request(&self.agent, method, url, form, &headers);
        for (k, v) in &r.headers {
            if k.eq_ignore_ascii_case("set-cookie") {
                let pair = v.split(';').next().unwrap();
                let (name, value) = pair.split_once('=').unwrap();
                if value.is_empty() || v.to_ascii_lowercase().contains("expires=thu, 01 jan 1970") {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_string(), value.to_string());
                }
            }
        }
        r
    }

    /// GET, then follow redirects (absolute or relative to the last URL) until a page or until
    /// the next hop would leave for `stop_at` (returned unvisited).
    fn follow(&mut self, mut url: String, stop_at: Option<&str>) -> (String, Resp) {
        for _ in 0..20 {
            if stop_at.is_some_and(|p| url.starts_with(p)) {
                return (url, Resp { status: 0, headers: vec![], body: String::new() });
            }
            let r = self.send("GET", &url, None);
            if !(300..400).contains(&r.status) {
                return (url, r);
            }
            url = absolute(&url, r.header("location").expect("a redirect names where"));
        }
        panic!("too many redirects");
    }
}

fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let origin_end = base.find("://").map(|i| i + 3).and_then(|i| base[i..].find('/').map(|j| i + j)).unwrap_or(base.len());
    format!("{}{location}", &base[..origin_end])
}

/// The `action` of the page's (first) form.
fn form_action(page_url: &str, html: &str) -> String {
    let doc = scraper::Html::parse_document(html);
    let sel = scraper::Selector::parse("form").unwrap();
    let action = doc.select(&sel).next().unwrap_or_else(|| panic!("no form on {page_url}: {html}")).value().attr("action").unwrap().to_string();
    absolute(page_url, &action)
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

/// The browser's way from `/auth/oidc/login` through the provider's sign-in (as `login`, with
/// authentication methods `amr`) and consent to Vaidya's callback URL (returned, not visited).
fn through_provider(s: &Sso, b: &mut Browser, login: &str, amr: &str) -> String {
    let callback = format!("{}/auth/oidc/callback", s.root);
    let start = b.send("GET", &format!("{}/auth/oidc/login", s.root), None);
    assert_eq!(start.status, 302, "{}", start.body);
    assert_eq!(start.header("cache-control"), Some("no-store"));
    let to = start.header("location").unwrap().to_string();
    for needle in ["code_challenge_method=S256", "code_challenge=", "state=", "nonce=", "response_type=code", &format!("client_id={CLIENT_ID}")] {
        assert!(to.contains(needle), "{needle} missing from {to}");
    }
    let (url, page) = b.follow(to, Some(&callback));
    assert_eq!(page.status, 200, "{url}: {}", page.body);
    assert!(page.body.contains("Sign-in"), "{}", page.body);
    let r = b.send("POST", &form_action(&url, &page.body), Some(&form_encode(&[("login", login), ("amr", amr)])));
    assert!((300..400).contains(&r.status), "{}", r.body);
    let next = absolute(&url, r.header("location").unwrap());
    let (url, page) = b.follow(next, Some(&callback));
    if url.starts_with(&callback) {
        return url; // consent remembered from an earlier sign-in
    }
    assert!(page.body.contains("Authorize"), "{}", page.body);
    let r = b.send("POST", &form_action(&url, &page.body), Some(""));
    assert!((300..400).contains(&r.status), "{}", r.body);
    let next = absolute(&url, r.header("location").unwrap());
    let (url, _) = b.follow(next, Some(&callback));
    assert!(url.starts_with(&callback), "the provider sent the browser to {url}");
    url
}

/// The whole sign-on: the callback's answer.
fn sign_on(s: &Sso, login: &str, amr: &str) -> Resp {
    let mut b = Browser::new();
    let callback = through_provider(s, &mut b, login, amr);
    b.send("GET", &callback, None)
}

fn fhir(s: &Sso, token: &str, path: &str) -> Resp {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let auth = format!("Bearer {token}");
    raw_request(&agent, "GET", &format!("{}/fhir{path}", s.root), None, &[("Authorization", auth.as_str())])
}

fn audit_report(s: &Sso, user: &str) -> String {
    s.vaidya(&["audit", "report", "--data", &s.data(), "--user", user])
}

#[test]
fn staff_sign_on_through_a_real_provider() {
    let mut s = Sso::start();
    s.add_user("dr.rao", "doctor");
    // The whole flow, as a browser: Vaidya -> provider sign-in -> consent -> Vaidya's callback.
    let r = sign_on(&s, "dr.rao", "pwd");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let v: Value = r.json();
    let token = v["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("vdy_"), "{v}");
    assert_eq!((v["user"].as_str(), v["role"].as_str()), (Some("dr.rao"), Some("doctor")), "the role is Vaidya's own");
    assert!(v["expires"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["idle_timeout_seconds"], 1800);
    // The session works on the FHIR API (the one-time local password does not hold it back).
    let r = fhir(&s, &token, "/HealthcareService?_count=1");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["resourceType"], "Bundle");
    // It is a session like any other: logout ends it.
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let auth = format!("Bearer {token}");
    let out = raw_request(&agent, "POST", &format!("{}/auth/logout", s.root), Some("{}"), &[("Authorization", auth.as_str()), ("Content-Type", "application/json")]);
    assert_eq!(out.status, 200, "{}", out.body);
    assert_eq!(fhir(&s, &token, "/HealthcareService?_count=1").status, 401);
    // `vaidya token --list` shows the kind.
    let list = s.vaidya(&["token", "--data", &s.data(), "--list"]);
    assert!(list.contains("sso-session"), "{list}");

    // The audit ledger has the login, naming the provider and subject.
    let report = audit_report(&s, "dr.rao");
    assert!(report.contains("login") && report.contains("single sign-on via http://127.0.0.1:"), "{report}");
    let log = s.stop_and_read_log();
    let events: Vec<&str> = log.lines().filter(|l| l.contains("vaidya::auth")).collect();
    assert!(
        events.iter().any(|l| l.contains("action=\"oidc-login\"") && l.contains("user=\"dr.rao\"") && l.contains("outcome=\"success\"")),
        "{log}"
    );
    for secret in [CLIENT_SECRET, token.splitn(3, '_').nth(2).unwrap()] {
        assert!(!log.contains(secret), "a secret reached the log: {log}");
    }
}

#[test]
fn refusals_unknown_account_bad_state_replay_and_missing_second_factor() {
    let mut s = Sso::start();
    s.add_user("nurse.kaur", "nurse");
    s.add_user("priv.officer", "privacy-officer");
    s.add_user("gone.away", "doctor");
    s.add_user("lab.analyser", "machine");
    s.vaidya(&["user", "disable", "--data", &s.data(), "--name", "gone.away"]);

    // An account the provider knows and Vaidya does not: refused, never created.
    let r = sign_on(&s, "stranger", "pwd otp");
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.json()["error"].as_str().unwrap().contains("no Vaidya account"), "{}", r.body);
    let out = Command::new(BIN).args(["token", "--data", &s.data(), "--user", "stranger"]).env("VAIDYA_LOG", "warn").output().unwrap();
    assert!(!out.status.success(), "no account was made for the stranger");

    // Not a staff account (an integration's): refused.
    let r = sign_on(&s, "lab.analyser", "pwd otp");
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.json()["error"].as_str().unwrap().contains("for staff"), "{}", r.body);

    // A disabled account: refused.
    let r = sign_on(&s, "gone.away", "pwd");
    assert_eq!(r.status, 403, "{}", r.body);

    // A role that needs a second factor, signed on with a password only: refused ...
    let r = sign_on(&s, "priv.officer", "pwd");
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.json()["error"].as_str().unwrap().contains("second factor"), "{}", r.body);
    // ... and with the provider's second factor: let in, with Vaidya's role.
    let r = sign_on(&s, "priv.officer", "pwd otp");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["role"], "privacy-officer");

    // A tampered state is refused, and so is a replay of a callback that worked.
    let mut b = Browser::new();
    let callback = through_provider(&s, &mut b, "nurse.kaur", "pwd");
    let tampered = callback.replace("state=", "state=x");
    assert_ne!(tampered, callback);
    let r = b.send("GET", &tampered, None);
    assert_eq!(r.status, 400, "{}", r.body);
    // The tampered try did not use the real state up.
    let r = b.send("GET", &callback, None);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = b.send("GET", &callback, None);
    assert_eq!(r.status, 400, "a replayed callback: {}", r.body);
    // A callback nobody started, and one without any state.
    assert_eq!(b.send("GET", &format!("{}/auth/oidc/callback?code=abc&state=made-up", s.root), None).status, 400);
    assert_eq!(b.send("GET", &format!("{}/auth/oidc/callback?code=abc", s.root), None).status, 400);

    // A code from one sign-in presented with another sign-in's state (code injection): the
    // provider refuses the exchange, as the PKCE verifier is not the one the code was made for.
    let (mut b1, mut b2) = (Browser::new(), Browser::new());
    let first = through_provider(&s, &mut b1, "nurse.kaur", "pwd");
    let second = through_provider(&s, &mut b2, "nurse.kaur", "pwd");
    let param = |url: &str, name: &str| url.split(['?', '&']).find_map(|kv| kv.strip_prefix(&format!("{name}="))).unwrap().to_string();
    let injected = format!("{}/auth/oidc/callback?code={}&state={}", s.root, param(&first, "code"), param(&second, "state"));
    let r = b2.send("GET", &injected, None);
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.json()["error"].as_str().unwrap().contains("refused the code exchange: invalid_grant"), "{}", r.body);

    // The person refuses at the provider: the callback says so, with the provider's error.
    let mut b = Browser::new();
    let callback = format!("{}/auth/oidc/callback", s.root);
    let start = b.send("GET", &format!("{}/auth/oidc/login", s.root), None);
    let (page_url, page) = b.follow(start.header("location").unwrap().to_string(), Some(&callback));
    assert!(page.body.contains("Sign-in"), "{}", page.body);
    let (back, _) = b.follow(format!("{page_url}/abort"), Some(&callback));
    assert!(back.contains("error=access_denied"), "{back}");
    let r = b.send("GET", &back, None);
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.json()["error"].as_str().unwrap().contains("access_denied"), "{}", r.body);

    // Every refusal is in the audit ledger under the name the provider gave ...
    let stranger = audit_report(&s, "stranger");
    assert!(stranger.contains("login-failed") && stranger.contains("oidc-unknown-account"), "{stranger}");
    let officer = audit_report(&s, "priv.officer");
    assert!(officer.contains("oidc-no-second-factor"), "{officer}");
    assert!(officer.lines().any(|l| l.contains("login") && !l.contains("login-failed")), "the later success too: {officer}");
    assert!(audit_report(&s, "lab.analyser").contains("oidc-not-staff"));
    let gone = audit_report(&s, "gone.away");
    assert!(gone.contains("disabled"), "{gone}");
    // ... or as anonymous when nobody is known yet (a bad state).
    let anonymous = audit_report(&s, "anonymous");
    assert!(anonymous.matches("oidc-bad-state").count() >= 4, "{anonymous}");

    // And in the log.
    let log = s.stop_and_read_log();
    let has = |needles: &[&str]| log.lines().filter(|l| l.contains("vaidya::auth")).any(|l| needles.iter().all(|n| l.contains(n)));
    assert!(has(&["action=\"oidc-login\"", "user=\"stranger\"", "outcome=\"failure\"", "reason=\"oidc-unknown-account\""]), "{log}");
    assert!(has(&["action=\"oidc-login\"", "user=\"priv.officer\"", "reason=\"oidc-no-second-factor\""]), "{log}");
    assert!(has(&["action=\"oidc-login\"", "reason=\"oidc-bad-state\""]), "{log}");
    assert!(has(&["action=\"oidc-login\"", "reason=\"oidc-denied\""]), "{log}");
    assert!(has(&["action=\"oidc-login\"", "user=\"gone.away\"", "reason=\"disabled\""]), "{log}");
    assert!(!log.contains(CLIENT_SECRET), "the client secret reached the log");
}

#[test]
fn bad_oidc_config_stops_the_start_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("issuer = \"http://idp.example\"\nclient_id = \"v\"\nclient_secret_env = \"VAIDYA_TEST_OIDC_SECRET\"\nredirect_url = \"https://his.example/auth/oidc/callback\"", "must be https"),
        ("issuer = \"https://idp.example\"\nclient_id = \"v\"\nredirect_url = \"https://his.example/auth/oidc/callback\"", "client secret is missing"),
        ("issuer = \"https://idp.example\"\nclient_id = \"v\"\nclient_secret_env = \"VAIDYA_TEST_OIDC_SECRET\"\nredirect_url = \"https://his.example/callback\"", "/auth/oidc/callback"),
        ("issuer = \"https://idp.example\"\nclient_id = \"v\"\nclient_secret_env = \"VAIDYA_TEST_OIDC_SECRET\"\nredirect_url = \"https://his.example/auth/oidc/callback\"\nclaim = \"email\"", "unknown field"),
    ];
    for (i, (section, expected)) in cases.iter().enumerate() {
        let cfg = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&cfg, format!("[oidc]\n{section}\n")).unwrap();
        let errors = dir.path().join(format!("err{i}.txt"));
        let mut child = Command::new(BIN)
            .args(["serve", "--data"])
            .arg(dir.path().join(format!("data{i}")))
            .arg("--config")
            .arg(&cfg)
            .args(["--listen", "127.0.0.1:0"])
            .env("VAIDYA_LOG", "warn")
            .env("VAIDYA_TEST_OIDC_SECRET", "s3cret-value")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&errors).unwrap())
            .spawn()
            .unwrap();
        // A server that started anyway would run for ever: give it a while, then fail.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("case {i}: the server started with a bad [oidc] section");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let err = std::fs::read_to_string(&errors).unwrap();
        assert!(!status.success(), "case {i} started");
        assert!(err.contains(expected), "case {i}: expected {expected:?} in: {err}");
        assert!(!err.contains("s3cret-value"));
    }
}
