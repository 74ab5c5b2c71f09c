//! The machine, and child processes with their resource usage (Linux).

use std::process::Child;
use std::time::{Duration, Instant};

/// Cores, CPU model, memory and load, for the top of a report.
pub fn machine() -> Vec<String> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|r| r.trim_start_matches([' ', '\t', ':']).trim().to_string()))
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib = |key: &str| {
        meminfo.lines().find_map(|l| l.strip_prefix(key).and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok()))
    };
    let gib = |k: Option<u64>| k.map_or("?".into(), |k| format!("{:.1} GiB", k as f64 / 1024.0 / 1024.0));
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    vec![
        format!("CPU: {cores} cores available (nproc), {model}"),
        format!("Memory: {} total, {} available", gib(mem_kib("MemTotal:")), gib(mem_kib("MemAvailable:"))),
        format!("Load average (1/5/15 min) at start: {}", load.join(" ")),
    ]
}

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// What a finished child used.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// Exit code, or None if killed by a signal.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub max_rss_kib: u64,
    pub cpu_seconds: f64,
}

/// Wait for `child` with wait4(2), which gives this child's own peak RSS and CPU time
/// (getrusage(RUSAGE_CHILDREN) would give the maximum over all children so far).
/// With `timeout`, returns None if it is still running then.
pub fn wait_with_usage(child: &mut Child, timeout: Option<Duration>) -> Result<Option<Usage>, String> {
    let pid = child.id() as libc::pid_t;
    let started = Instant::now();
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: rusage is plain data; wait4 fills it in.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let flags = if timeout.is_some() { libc::WNOHANG } else { 0 };
        // SAFETY: waiting for our own child, with valid pointers.
        let r = unsafe { libc::wait4(pid, &mut status, flags, &mut ru) };
        if r == pid {
            let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            let (code, signal) = if libc::WIFEXITED(status) {
                (Some(libc::WEXITSTATUS(status)), None)
            } else if libc::WIFSIGNALED(status) {
                (None, Some(libc::WTERMSIG(status)))
            } else {
                (None, None)
            };
            return Ok(Some(Usage { code, signal, max_rss_kib: ru.ru_maxrss as u64, cpu_seconds: tv(ru.ru_utime) + tv(ru.ru_stime) }));
        }
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("wait4({pid}): {e}"));
        }
        match timeout {
            Some(t) if started.elapsed() >= t => return Ok(None),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

pub fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: sending a signal to our own child by its pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
}

/// Peak RSS so far (VmHWM) of a running process, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Current resident memory of a running process: (anonymous, file-backed) in KiB. File-backed
/// pages (e.g. SQLite's mmap, counted once per mapping) are reclaimable page cache.
pub fn rss_split_kib(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |k: &str| s.lines().find_map(|l| l.strip_prefix(k)).and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok());
    Some((field("RssAnon:")?, field("RssFile:")? + field("RssShmem:").unwrap_or(0)))
}

/// CPU time (user + system) used so far by a running process, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, i.e. 11 and 12 after the name.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some(ticks as f64 / if hz > 0 { hz as f64 } else { 100.0 })
}

pub fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_of_a_child() {
        let mut c = std::process::Command::new("sh").arg("-c").arg("exit 3").spawn().unwrap();
        let u = wait_with_usage(&mut c, None).unwrap().unwrap();
        assert_eq!(u.code, Some(3));
        assert!(u.max_rss_kib > 0);
    }

    #[test]
    fn own_process_stats() {
        let me = std::process::id();
        assert!(peak_rss_kib(me).unwrap() > 0);
        assert!(cpu_seconds(me).is_some());
        assert!(!machine().is_empty());
    }
}
