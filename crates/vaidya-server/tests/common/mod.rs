//! Harness for end-to-end tests: runs the real `vaidya` binary on a fresh data directory and
//! talks HTTP to it.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod node;

pub const BIN: &str = env!("CARGO_BIN_EXE_vaidya");

pub fn shared_data() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    assert!(p.is_dir(), "shared test data missing at {}", p.display());
    p
}

/// A Parameters resource with these parameters.
pub fn params(list: Value) -> Value {
    serde_json::json!({"resourceType": "Parameters", "parameter": list})
}

/// A tariff entry (ChargeItemDefinition) pricing `system|code` at whole rupees.
pub fn tariff(id: &str, system: &str, code: &str, rupees: f64) -> Value {
    serde_json::json!({"resourceType": "ChargeItemDefinition", "id": id, "status": "active", "url": format!("https://h.example/tariff/{id}"),
        "code": {"text": id},
        "useContext": [{"code": {"system": "http://terminology.hl7.org/CodeSystem/usage-context-type", "code": "focus"},
            "valueCodeableConcept": {"coding": [{"system": system, "code": code}]}}],
        "propertyGroup": [{"priceComponent": [{"type": "base", "amount": {"value": rupees, "currency": "INR"}}]}]})
}

pub struct Server {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub base: String,
    pub token: String,
    pub admin_password: Option<String>,
    /// Extra arguments to `vaidya serve` (e.g. `--demo`).
    pub serve_args: Vec<String>,
    /// Where the server's log goes (level info), if not to the test's stderr (level warn).
    pub log: Option<PathBuf>,
    /// Environment of the server and of every `vaidya` command run for it (e.g.
    /// `VAIDYA_DATABASE`).
    pub env: Vec<(String, String)>,
    agent: ureq::Agent,
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    /// Assert the body is an OperationOutcome with an error issue.
    pub fn assert_outcome(&self) -> Value {
        let v = self.json();
        assert_eq!(v["resourceType"], "OperationOutcome", "{}", self.body);
        assert!(v["issue"].as_array().is_some_and(|a| !a.is_empty()));
        v
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

impl Server {
    pub fn start() -> Server {
        Server::start_in(tempfile::tempdir().expect("tempdir"))
    }

    /// Start on an existing (or empty) data directory.
    pub fn start_in(dir: tempfile::TempDir) -> Server {
        Server::start_with(dir, &[])
    }

    /// Start with extra `vaidya serve` arguments.
    pub fn start_with(dir: tempfile::TempDir, serve_args: &[&str]) -> Server {
        Server::launch(dir, serve_args, None)
    }

    /// [`Server::start_with`], with the server's log (level info) in `log`, appended across restarts.
    pub fn start_logging(dir: tempfile::TempDir, serve_args: &[&str], log: PathBuf) -> Server {
        Server::launch(dir, serve_args, Some(log))
    }

    /// [`Server::start_with`] with environment variables for the server and its commands.
    pub fn start_with_env(dir: tempfile::TempDir, serve_args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::launch_with_env(dir, serve_args, None, env)
    }

    fn launch(dir: tempfile::TempDir, serve_args: &[&str], log: Option<PathBuf>) -> Server {
        Server::launch_with_env(dir, serve_args, log, &[])
    }

    fn launch_with_env(dir: tempfile::TempDir, serve_args: &[&str], log: Option<PathBuf>, env: &[(&str, &str)]) -> Server {
        let mut s = Server {
            dir,
            child: None,
            base: String::new(),
            token: String::new(),
            admin_password: None,
            serve_args: serve_args.iter().map(|a| a.to_string()).collect(),
            log,
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            agent: agent(),
        };
        s.spawn();
        s.token = s.integration_token();
        s
    }

    /// The server's log so far (with [`Server::start_logging`]).
    pub fn log_text(&self) -> String {
        self.log.as_ref().map(|p| std::fs::read_to_string(p).unwrap_or_default()).unwrap_or_default()
    }

    /// A token of the tests' integration account (role `machine`: it may read and write any
    /// patient data, as an integration engine may; the administrator may not). The account is
    /// made on the first start of a data directory.
    pub fn integration_token(&self) -> String {
        let data = self.dir.path().to_str().unwrap();
        let out = self.vaidya(&["user", "add", "--data", data, "--name", "integration", "--role", "machine"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() || err.contains("already exists"), "user add failed: {err}");
        self.make_token("integration")
    }

    pub fn data(&self) -> &Path {
        self.dir.path()
    }

    /// Start (or restart) the server process on the same data directory.
    pub fn spawn(&mut self) {
        let mut child = Command::new(BIN)
            .args(["serve", "--data"])
            .arg(self.dir.path())
            .args(["--listen", "127.0.0.1:0"])
            .args(&self.serve_args)
            .env("VAIDYA_LOG", if self.log.is_some() { "info" } else { "warn" })
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(match &self.log {
                Some(p) => Stdio::from(std::fs::File::options().create(true).append(true).open(p).expect("log file")),
                None => Stdio::inherit(),
            })
            .spawn()
            .expect("vaidya runs");
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "server did not start");
            let line = lines.next().expect("server printed its address").expect("utf-8");
            if let Some(p) = line.strip_prefix("One-time password:") {
                self.admin_password = Some(p.trim().to_string());
            }
            if let Some(rest) = line.strip_prefix("Vaidya is listening on ") {
                let url = rest.split_whitespace().next().expect("url");
                self.base = format!("{url}/fhir");
                break;
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.child = Some(child);
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL");
            c.wait().expect("reaped");
        }
    }

    /// Stop gracefully (SIGTERM) and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = c.id().to_string();
            Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if c.try_wait().expect("wait").is_some() {
                    break;
                }
                assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    pub fn vaidya(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .args(args)
            .env("VAIDYA_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("vaidya runs")
    }

    pub fn make_token(&self, user: &str) -> String {
        let out = self.vaidya(&["token", "--data", self.dir.path().to_str().unwrap(), "--user", user]);
        assert!(out.status.success(), "token failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Create an account (`vaidya user add` with `extra` arguments such as `--department lab`)
    /// and return a token for it.
    pub fn add_user(&self, name: &str, role: &str, extra: &[&str]) -> String {
        let data = self.dir.path().to_str().unwrap();
        let mut args = vec!["user", "add", "--data", data, "--name", name, "--role", role];
        args.extend_from_slice(extra);
        let out = self.vaidya(&args);
        assert!(out.status.success(), "user add failed: {}", String::from_utf8_lossy(&out.stderr));
        self.make_token(name)
    }

    /// Create a staff account with a password of its own (the one-time password changed
    /// through `/auth`, as a person does at first sign-in); returns the password.
    pub fn staff_with_password(&self, name: &str, role: &str, extra: &[&str]) -> String {
        let data = self.dir.path().to_str().unwrap();
        let mut args = vec!["user", "add", "--data", data, "--name", name, "--role", role];
        args.extend_from_slice(extra);
        let out = self.vaidya(&args);
        assert!(out.status.success(), "user add failed: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        let once = text.lines().find_map(|l| l.strip_prefix("One-time password:")).expect("a one-time password").trim().to_string();
        let root = self.base.trim_end_matches("/fhir").to_string();
        let token = login(&self.agent, &root, name, &once);
        let password = format!("Pw-{name}-2026-long-enough");
        let auth = format!("Bearer {token}");
        let body = serde_json::json!({"old": once, "new": password}).to_string();
        let r = raw_request(&self.agent, "POST", &format!("{root}/auth/password"), Some(&body), &[("Authorization", auth.as_str()), ("Content-Type", "application/json")]);
        assert!(r.status < 300, "password change: {} {}", r.status, r.body);
        password
    }

    /// A request with another account's token (JSON body if any).
    pub fn request_as(&self, token: &str, method: &str, path: &str, body: Option<&Value>) -> Resp {
        let url = if path.starts_with("http") { path.to_string() } else { format!("{}{}", self.base, path) };
        let auth = format!("Bearer {token}");
        let text = body.map(|b| b.to_string());
        raw_request(&self.agent, method, &url, text.as_deref(), &[("Authorization", auth.as_str()), ("Content-Type", "application/fhir+json")])
    }

    pub fn request(&self, method: &str, path: &str, body: Option<&str>, headers: &[(&str, &str)]) -> Resp {
        let url = if path.starts_with("http") { path.to_string() } else { format!("{}{}", self.base, path) };
        let auth = format!("Bearer {}", self.token);
        let mut all: Vec<(&str, &str)> = vec![("Authorization", auth.as_str())];
        all.extend_from_slice(headers);
        raw_request(&self.agent, method, &url, body, &all)
    }

    pub fn get(&self, path: &str) -> Resp {
        self.request("GET", path, None, &[])
    }
    pub fn post(&self, path: &str, body: &Value) -> Resp {
        self.request("POST", path, Some(&body.to_string()), &[("Content-Type", "application/fhir+json")])
    }
    pub fn put(&self, path: &str, body: &Value) -> Resp {
        self.request("PUT", path, Some(&body.to_string()), &[("Content-Type", "application/fhir+json")])
    }
    pub fn delete(&self, path: &str) -> Resp {
        self.request("DELETE", path, None, &[])
    }

    pub fn ledger_size(&self) -> u64 {
        let r = raw_request(&self.agent, "GET", &self.base.replace("/fhir", "/healthz"), None, &[]);
        r.body.trim().strip_prefix("ok ledger_entries=").expect("healthz format").parse().unwrap()
    }
}

/// `vaidya verify`'s lines that name a ledger (entries, root, last signed checkpoint), of the
/// data directory `data` or of PostgreSQL `database` with `data`'s keys; it must verify.
pub fn verified(data: &Path, database: Option<&str>) -> Vec<String> {
    let mut args = vec!["verify", "--data", data.to_str().unwrap()];
    if let Some(url) = database {
        args.extend(["--database", url]);
    }
    let out = Command::new(BIN).args(&args).env("VAIDYA_LOG", "warn").output().expect("vaidya runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    text.lines().filter(|l| l.starts_with("entries:") || l.starts_with("root:") || l.starts_with("last signed checkpoint")).map(str::to_string).collect()
}

/// Sign in at `root` (a core's or a node's address): the session token.
pub fn login(agent: &ureq::Agent, root: &str, user: &str, password: &str) -> String {
    let body = serde_json::json!({"user": user, "password": password}).to_string();
    let r = raw_request(agent, "POST", &format!("{root}/auth/login"), Some(&body), &[("Content-Type", "application/json")]);
    assert_eq!(r.status, 200, "login of {user} at {root}: {}", r.body);
    r.json()["token"].as_str().expect("a token").to_string()
}

pub fn raw_request(agent: &ureq::Agent, method: &str, url: &str, body: Option<&str>, headers: &[(&str, &str)]) -> Resp {
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let req = builder.body(body.unwrap_or("").to_string()).expect("request builds");
    let mut resp = agent.run(req).expect("HTTP exchange");
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = resp.body_mut().with_config().limit(256 * 1024 * 1024).read_to_string().unwrap_or_default();
    Resp { status, headers, body }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}
