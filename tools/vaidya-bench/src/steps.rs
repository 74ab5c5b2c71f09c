//! Per-step measurements for workloads whose clients do several kinds of request (OPD: register,
//! book, check in; search: by UHID, mobile, name): each client keeps a [`Recorder`], merged at
//! the end.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

#[derive(Default, Debug, Clone)]
pub struct Step {
    pub ok: u64,
    pub failed: u64,
    /// Latencies of successful requests in microseconds (sorted by [`Recorder::finish`]).
    pub latencies_us: Vec<u32>,
    /// Distinct failure descriptions with counts.
    pub failures: HashMap<String, u64>,
    /// A sum the step wants to report an average of (e.g. matches per search).
    pub sum: u64,
}

impl Step {
    /// Percentile in milliseconds (nearest rank) of the successful requests.
    pub fn percentile_ms(&self, p: f64) -> Option<f64> {
        crate::load::nearest_rank_ms(&self.latencies_us, p)
    }

    pub fn max_ms(&self) -> Option<f64> {
        self.latencies_us.last().map(|&u| u as f64 / 1000.0)
    }
}

const MAX_DISTINCT_FAILURES: usize = 16;

/// What one client (or, merged, all clients) measured, by step name; plus plain counters.
#[derive(Default, Debug, Clone)]
pub struct Recorder {
    pub steps: BTreeMap<&'static str, Step>,
    pub counters: BTreeMap<&'static str, u64>,
}

impl Recorder {
    pub fn ok(&mut self, step: &'static str, started: Instant) {
        let s = self.steps.entry(step).or_default();
        s.ok += 1;
        s.latencies_us.push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
    }

    pub fn ok_with(&mut self, step: &'static str, started: Instant, value: u64) {
        self.ok(step, started);
        self.steps.get_mut(step).expect("just added").sum += value;
    }

    pub fn fail(&mut self, step: &'static str, what: String) {
        let s = self.steps.entry(step).or_default();
        s.failed += 1;
        let key = if s.failures.len() < MAX_DISTINCT_FAILURES || s.failures.contains_key(&what) { what } else { "(other failures)".into() };
        *s.failures.entry(key).or_default() += 1;
    }

    pub fn count(&mut self, counter: &'static str, n: u64) {
        *self.counters.entry(counter).or_default() += n;
    }

    pub fn merge(&mut self, other: Recorder) {
        for (k, s) in other.steps {
            let t = self.steps.entry(k).or_default();
            t.ok += s.ok;
            t.failed += s.failed;
            t.sum += s.sum;
            t.latencies_us.extend(s.latencies_us);
            for (f, n) in s.failures {
                *t.failures.entry(f).or_default() += n;
            }
        }
        for (k, n) in other.counters {
            *self.counters.entry(k).or_default() += n;
        }
    }

    pub fn finish(&mut self) {
        for s in self.steps.values_mut() {
            s.latencies_us.sort_unstable();
        }
    }

    #[cfg(test)]
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    pub fn failed(&self) -> u64 {
        self.steps.values().map(|s| s.failed).sum()
    }

    /// Failure descriptions of all steps, most frequent first.
    pub fn failure_lines(&self) -> Vec<String> {
        let mut all: Vec<(u64, String)> =
            self.steps.iter().flat_map(|(k, s)| s.failures.iter().map(move |(f, n)| (*n, format!("{k}: {n} failed: {f}")))).collect();
        all.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        all.into_iter().map(|(_, l)| l).collect()
    }

    /// A Markdown table: one row per step.
    pub fn markdown(&self, seconds: f64, order: &[&'static str]) -> String {
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        let mut out = String::from("| step | ok | failed | per second | p50 ms | p95 ms | p99 ms | max ms |\n|---|--:|--:|--:|--:|--:|--:|--:|\n");
        let mut names: Vec<&'static str> = order.iter().copied().filter(|k| self.steps.contains_key(k)).collect();
        names.extend(self.steps.keys().copied().filter(|k| !order.contains(k)));
        for k in names {
            let s = &self.steps[k];
            out.push_str(&format!(
                "| {k} | {} | {} | {:.1} | {} | {} | {} | {} |\n",
                s.ok,
                s.failed,
                s.ok as f64 / seconds.max(1e-9),
                ms(s.percentile_ms(50.0)),
                ms(s.percentile_ms(95.0)),
                ms(s.percentile_ms(99.0)),
                ms(s.max_ms())
            ));
        }
        out
    }
}

/// The number of matches on a searchset page (entries with `"mode":"match"`).
pub fn page_matches(body: &[u8]) -> usize {
    let needle = br#""mode":"match""#;
    body.windows(needle.len()).filter(|w| *w == needle).count()
}

/// Percent-encode a query value (RFC 3986 unreserved characters stay as they are).
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `total` of a searchset Bundle, read without parsing the whole body.
pub fn bundle_total(body: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(body).ok()?;
    let at = text.find("\"total\":")? + "\"total\":".len();
    let digits: String = text[at..].trim_start().chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_merges() {
        let t0 = Instant::now();
        let mut a = Recorder::default();
        a.ok("book", t0);
        a.fail("book", "HTTP 500".into());
        a.count("409", 2);
        let mut b = Recorder::default();
        b.ok_with("search", t0, 7);
        b.count("409", 1);
        a.merge(b);
        a.finish();
        assert_eq!((a.steps["book"].ok, a.steps["book"].failed, a.steps["search"].sum), (1, 1, 7));
        assert_eq!(a.counter("409"), 3);
        assert_eq!(a.failed(), 1);
        assert!(a.markdown(1.0, &["search", "book"]).lines().nth(2).unwrap().starts_with("| search |"));
    }

    #[test]
    fn encodes_and_reads_totals() {
        assert_eq!(urlencode("https://x/y|0000-0000-0013"), "https%3A%2F%2Fx%2Fy%7C0000-0000-0013");
        assert_eq!(urlencode("+919812345678"), "%2B919812345678");
        assert_eq!(urlencode("राम"), "%E0%A4%B0%E0%A4%BE%E0%A4%AE");
        assert_eq!(bundle_total(br#"{"resourceType":"Bundle","type":"searchset","total": 42,"entry":[]}"#), Some(42));
        assert_eq!(bundle_total(b"{}"), None);
        assert_eq!(page_matches(br#"{"entry":[{"search":{"mode":"match"}},{"search":{"mode":"include"}},{"search":{"mode":"match"}}]}"#), 2);
    }
}
