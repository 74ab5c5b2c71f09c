//! A private PostgreSQL server for tests: `initdb` into a temporary directory, `postgres`
//! listening only on a Unix socket there, trust authentication, killed and removed on drop.
//! Real PostgreSQL (Debian's `postgresql` package, which `scripts/test` installs), not a mock.
//! As root (CI), the server runs as the `postgres` user: PostgreSQL refuses to run as root.

#![allow(dead_code)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub struct TestPg {
    dir: tempfile::TempDir,
    child: Child,
    databases: AtomicU32,
}

/// PostgreSQL's programs: `PG_BIN`, else the newest version under /usr/lib/postgresql.
fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|l| l.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    versions.sort_unstable();
    match versions.last() {
        Some(v) => PathBuf::from(format!("/usr/lib/postgresql/{v}/bin")),
        None => panic!("PostgreSQL is not installed (apt-get install postgresql; scripts/test does), or set PG_BIN"),
    }
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

fn as_server_user(program: &Path) -> Command {
    if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl TestPg {
    pub fn start() -> TestPg {
        let bin = bin_dir();
        let dir = tempfile::tempdir().unwrap();
        if running_as_root() {
            let ok = Command::new("chown").args(["-R", "postgres:"]).arg(dir.path()).status().unwrap();
            assert!(ok.success(), "chown of the test cluster's directory failed");
        }
        let data = dir.path().join("data");
        let out = as_server_user(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["--auth=trust", "--username=vaidya", "--encoding=UTF8", "--locale=C", "--no-sync"])
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let child = as_server_user(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(dir.path())
            .args(["-c", "listen_addresses=", "-c", "port=5432", "-c", "max_connections=50"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pg = TestPg { dir, child, databases: AtomicU32::new(0) };
        let started = Instant::now();
        loop {
            match postgres::Client::connect(&pg.url("postgres"), postgres::NoTls) {
                Ok(_) => break,
                Err(e) if started.elapsed() > Duration::from_secs(30) => panic!("the test PostgreSQL did not start: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        pg
    }

    /// A connection string for database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("host={} port=5432 user=vaidya dbname={db}", self.dir.path().display())
    }

    /// A new, empty database; its connection string.
    pub fn fresh_database(&self) -> String {
        let name = format!("t{}", self.databases.fetch_add(1, Ordering::Relaxed));
        let mut admin = postgres::Client::connect(&self.url("postgres"), postgres::NoTls).unwrap();
        admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        self.url(&name)
    }
}

impl Drop for TestPg {
    fn drop(&mut self) {
        // The server itself, by the pid in its lock file (the child may be runuser): SIGINT is
        // PostgreSQL's fast shutdown.
        let pid = std::fs::read_to_string(self.dir.path().join("data/postmaster.pid")).ok().and_then(|s| s.lines().next().map(str::to_string));
        match pid {
            Some(pid) => {
                let _ = Command::new("kill").args(["-INT", &pid]).status();
            }
            None => {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
    }
}
