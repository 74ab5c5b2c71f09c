//! Department nodes for end-to-end tests: a real `vaidya node` process, and a TCP proxy that
//! keeps one address for a core restarted on another port.

use super::BIN;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Node {
    pub child: Child,
    pub base: String,
}

impl Node {
    pub fn start(core: &str, core_key: &str, token: &str, data: &Path) -> Node {
        Node::start_as(core, core_key, token, data, 7)
    }

    pub fn start_as(core: &str, core_key: &str, token: &str, data: &Path, issuer: u8) -> Node {
        Node::start_with(core, core_key, token, data, issuer, &[])
    }

    /// A node with more arguments (`--handback-batch 50`).
    pub fn start_with(core: &str, core_key: &str, token: &str, data: &Path, issuer: u8, extra: &[&str]) -> Node {
        let token_file = data.with_extension("token");
        std::fs::write(&token_file, token).unwrap();
        let mut child = Command::new(BIN)
            .args(["node", "--core", core, "--core-key", core_key, "--token-file", token_file.to_str().unwrap()])
            .args(["--issuer", &issuer.to_string(), "--department", "cardiology", "--data", data.to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("VAIDYA_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("vaidya node runs");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines.next().expect("the node printed its address").unwrap();
        let base = line.strip_prefix("Vaidya node listening on ").unwrap_or_else(|| panic!("{line}")).trim().to_string();
        std::thread::spawn(move || for _ in lines {});
        Node { child, base }
    }

    /// Sign in at the node.
    pub fn login(&self, user: &str, password: &str) -> String {
        super::login(&ureq::Agent::config_builder().http_status_as_error(false).build().into(), &self.base, user, password)
    }

    /// A FHIR request at the node as the holder of `token`.
    pub fn fhir(&self, token: &str, method: &str, path: &str, body: Option<&serde_json::Value>) -> super::Resp {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let auth = format!("Bearer {token}");
        let text = body.map(|b| b.to_string());
        super::raw_request(&agent, method, &format!("{}/fhir{path}", self.base), text.as_deref(), &[("Authorization", auth.as_str()), ("Content-Type", "application/fhir+json")])
    }

    pub fn get(&self, path: &str) -> String {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        agent.get(&format!("{}{path}", self.base)).call().unwrap().into_body().read_to_string().unwrap()
    }

    pub fn metric(&self, name: &str) -> u64 {
        let text = self.get("/metrics");
        let line = text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("no {name}: {text}"));
        line.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() as u64
    }

    /// Wait until `metric` reaches `want`.
    pub fn wait_for(&self, name: &str, want: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.metric(name) < want {
            assert!(Instant::now() < deadline, "{name} stayed below {want}: {}", self.get("/metrics"));
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }


    /// Wait until `/healthz` says `text`.
    pub fn wait_health(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.get("/healthz").contains(text) {
            assert!(Instant::now() < deadline, "the node never said {text}: {}", self.get("/healthz"));
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn stop(mut self) {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the node did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Node {
    /// A failed test must not leave a node running (it would hold the test's output open).
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn proxy(target: std::sync::Arc<std::sync::Mutex<String>>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let to = target.lock().unwrap().clone();
            let Ok(server) = std::net::TcpStream::connect(&to) else { continue };
            let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut s_read, mut c_write) = (server, client);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_read, &mut s_write);
                let _ = s_write.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s_read, &mut c_write);
                let _ = c_write.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    format!("http://{addr}")
}

pub fn host_port(base: &str) -> String {
    base.trim_start_matches("http://").trim_end_matches("/fhir").to_string()
}

