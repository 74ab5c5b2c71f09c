//! Failover on loopback: etcd and a three-member Patroni cluster (Debian's `etcd-server` and
//! `patroni`, which `scripts/test` installs), synchronous replication, one `vaidya serve`
//! under a write workload. The primary (Patroni and PostgreSQL) is killed; Vaidya finds the
//! new primary by itself; every acknowledged write is there afterwards and the ledger
//! verifies. The time from the kill to the first successful write is printed (BENCHMARKS.md).

mod common;

use common::Server;
use serde_json::json;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ETCD_CLIENT: u16 = 42379;
const ETCD_PEER: u16 = 42380;
/// PostgreSQL ports of the members; their Patroni REST API ports are these minus 400.
const PG_PORTS: [u16; 3] = [42432, 42433, 42434];

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// PostgreSQL's programs (as the store's test harness finds them).
fn pg_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|l| l.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    versions.sort_unstable();
    PathBuf::from(format!("/usr/lib/postgresql/{}/bin", versions.last().expect("PostgreSQL is installed")))
}

struct Cluster {
    dir: tempfile::TempDir,
    etcd: Child,
    members: Vec<Option<Child>>,
}

impl Cluster {
    fn start() -> Cluster {
        for program in ["etcd", "patroni"] {
            let found = Command::new("sh").args(["-c", &format!("command -v {program}")]).output().unwrap();
            assert!(found.status.success(), "{program} is not installed (apt-get install patroni etcd-server; scripts/test does)");
        }
        let dir = tempfile::tempdir().unwrap();
        let etcd = Command::new("etcd")
            .args(["--name", "e1", "--data-dir"])
            .arg(dir.path().join("etcd"))
            .args(["--listen-client-urls", &format!("http://127.0.0.1:{ETCD_CLIENT}")])
            .args(["--advertise-client-urls", &format!("http://127.0.0.1:{ETCD_CLIENT}")])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{ETCD_PEER}")])
            .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{ETCD_PEER}")])
            .args(["--initial-cluster", &format!("e1=http://127.0.0.1:{ETCD_PEER}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd starts");
        let mut cluster = Cluster { dir, etcd, members: Vec::new() };
        if running_as_root() {
            // PostgreSQL refuses to run as root: the members run as `postgres`.
            let ok = Command::new("chown").args(["-R", "postgres:"]).arg(cluster.dir.path()).status().unwrap();
            assert!(ok.success());
        }
        for i in 0..PG_PORTS.len() {
            let config = cluster.write_config(i);
            let child = cluster.as_postgres("patroni").arg(&config).stdout(Stdio::null()).stderr(Stdio::from(cluster.log(i))).spawn().expect("patroni starts");
            cluster.members.push(Some(child));
        }
        cluster
    }

    fn as_postgres(&self, program: &str) -> Command {
        if running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", program]);
            c
        } else {
            Command::new(program)
        }
    }

    fn log(&self, i: usize) -> std::fs::File {
        std::fs::File::options().create(true).append(true).open(self.dir.path().join(format!("patroni{i}.log"))).unwrap()
    }

    fn member_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("pg{i}"))
    }

    /// Patroni's YAML for member `i`: short timings (the leader key lives 10 s), synchronous
    /// replication (a commit is on a standby before it is acknowledged), trust on loopback.
    fn write_config(&self, i: usize) -> PathBuf {
        let (port, rest) = (PG_PORTS[i], PG_PORTS[i] - 400);
        let d = self.member_dir(i);
        let socket = self.dir.path().join(format!("sock{i}"));
        std::fs::create_dir_all(&socket).unwrap();
        let yaml = format!(
            r#"scope: vaidya-failover
name: pg{i}
restapi:
  listen: 127.0.0.1:{rest}
  connect_address: 127.0.0.1:{rest}
etcd3:
  hosts: 127.0.0.1:{ETCD_CLIENT}
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 3
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    postgresql:
      use_pg_rewind: false
      parameters:
        max_connections: 60
        wal_level: replica
        hot_standby: 'on'
  initdb:
  - encoding: UTF8
  - locale: C
  pg_hba:
  - local all all trust
  - host replication replicator 127.0.0.1/32 trust
  - host all all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:{port}
  connect_address: 127.0.0.1:{port}
  data_dir: {data}
  bin_dir: {bin}
  pgpass: {pgpass}
  authentication:
    superuser:
      username: postgres
      password: test
    replication:
      username: replicator
      password: test
  parameters:
    unix_socket_directories: '{socket}'
"#,
            data = d.display(),
            bin = pg_bin().display(),
            pgpass = self.dir.path().join(format!("pgpass{i}")).display(),
            socket = socket.display(),
        );
        let file = self.dir.path().join(format!("patroni{i}.yml"));
        std::fs::write(&file, yaml).unwrap();
        if running_as_root() {
            Command::new("chown").args(["-R", "postgres:"]).arg(self.dir.path()).status().unwrap();
        }
        file
    }

    /// HTTP status of Patroni's REST `path` on member `i` (0 when it does not answer).
    fn rest(&self, i: usize, path: &str) -> u16 {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .into();
        agent.get(&format!("http://127.0.0.1:{}{path}", PG_PORTS[i] - 400)).call().map(|r| r.status().as_u16()).unwrap_or(0)
    }

    /// The member that is primary now, if one is.
    fn primary(&self) -> Option<usize> {
        (0..PG_PORTS.len()).filter(|&i| self.members[i].is_some()).find(|&i| self.rest(i, "/primary") == 200)
    }

    /// Wait until there is a primary and a synchronous standby.
    fn wait_ready(&self, within: Duration) -> usize {
        let started = Instant::now();
        loop {
            if let Some(p) = self.primary()
                && (0..PG_PORTS.len()).any(|i| i != p && self.rest(i, "/sync") == 200)
            {
                return p;
            }
            assert!(started.elapsed() < within, "the Patroni cluster did not come up; logs in {}:\n{}", self.dir.path().display(), self.logs());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn logs(&self) -> String {
        (0..PG_PORTS.len()).map(|i| std::fs::read_to_string(self.dir.path().join(format!("patroni{i}.log"))).unwrap_or_default()).collect::<Vec<_>>().join("\n")
    }

    /// Kill member `i` as a power cut would: its Patroni, then its PostgreSQL, with SIGKILL.
    fn kill(&mut self, i: usize) {
        let config = self.dir.path().join(format!("patroni{i}.yml"));
        let _ = Command::new("pkill").args(["-KILL", "-f"]).arg(format!("patroni {}", config.display())).stderr(Stdio::null()).status();
        let pid = std::fs::read_to_string(self.member_dir(i).join("postmaster.pid")).ok().and_then(|s| s.lines().next().map(str::to_string));
        if let Some(pid) = pid {
            let _ = Command::new("kill").args(["-KILL", &pid]).stderr(Stdio::null()).status();
        }
        if let Some(mut c) = self.members[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A URL naming every member; only the primary is taken.
    fn url(&self) -> String {
        let hosts = PG_PORTS.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
        format!("postgres://postgres@{hosts}/postgres?target_session_attrs=read-write&connect_timeout=2")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..PG_PORTS.len() {
            self.kill(i);
        }
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
    }
}

fn patient(n: usize) -> serde_json::Value {
    json!({"resourceType": "Patient", "name": [{"family": format!("Failover{n}"), "given": ["Asha"]}], "gender": "female", "birthDate": "1979-03-02"})
}

#[test]
fn vaidya_follows_a_patroni_failover_and_keeps_every_acknowledged_write() {
    let mut cluster = Cluster::start();
    let first = cluster.wait_ready(Duration::from_secs(120));
    let url = cluster.url();
    let server = Arc::new(Server::start_with_env(tempfile::tempdir().unwrap(), &[], &[("VAIDYA_DATABASE", url.as_str())]));

    // The workload: one clinic desk registering patients as fast as it is answered.
    let acked: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let (server, acked, stop) = (server.clone(), acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let r = server.post("/Patient", &patient(n));
                if r.status == 201 {
                    acked.lock().unwrap().push((r.json()["id"].as_str().unwrap().to_string(), Instant::now()));
                } else {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        })
    };
    let until = |want: usize, within: Duration| {
        let started = Instant::now();
        while acked.lock().unwrap().len() < want {
            assert!(started.elapsed() < within, "only {} writes acknowledged", acked.lock().unwrap().len());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    until(50, Duration::from_secs(60));

    cluster.kill(first);
    let killed = Instant::now();
    let before = acked.lock().unwrap().len();
    until(before + 50, Duration::from_secs(90));
    let first_after = acked.lock().unwrap()[before].1;
    let took = first_after.duration_since(killed);
    eprintln!("FAILOVER: the first write after the kill was acknowledged {:.2} s after it", took.as_secs_f64());
    stop.store(true, Ordering::Relaxed);
    worker.join().unwrap();
    let new_primary = cluster.primary().expect("a new primary");
    assert_ne!(new_primary, first);

    // Every acknowledged write is there, on the new primary.
    let acked = acked.lock().unwrap().clone();
    for (id, _) in &acked {
        let r = server.get(&format!("/Patient/{id}"));
        assert_eq!(r.status, 200, "acknowledged Patient/{id}: {}", r.body);
    }
    let mut server = Arc::into_inner(server).expect("the worker is done");
    server.stop();
    let lines = common::verified(server.data(), Some(&url));
    let entries: u64 = lines[0].trim_start_matches("entries:").trim().parse().unwrap();
    assert!(entries >= acked.len() as u64, "{lines:?} for {} acknowledged", acked.len());
    eprintln!("FAILOVER: {} writes acknowledged, {entries} entries, the ledger verifies", acked.len());
}
