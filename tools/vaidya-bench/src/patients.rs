//! `patients`: patient search load against a server holding a `gen-patients` set.
//!
//! Every client picks random patients of the set (recomputed from its seed, see
//! `gen_patients::person`) and searches for them in turn, as a registration counter does:
//! - `uhid`: `Patient?identifier=https://vaidya.dev/fhir/sid/uhid|NNNN-NNNN-NNNN` (exactly one match);
//! - `mobile`: `Patient?phone=+91XXXXXXXXXX` (the patient and anyone sharing the phone);
//! - `name`: `Patient?name=<3-5 letters>` of the given or family name in Latin script;
//! - `name-devanagari`: the same in Devanagari (3-5 characters);
//!
//! each with `&_count=20`. A search that does not find the patient it was made from counts as
//! failed.

use crate::gen_patients::{self, Manifest, Rng, UHID_SYSTEM};
use crate::http::{self, Base};
use crate::load::LoadOpts;
use crate::steps::{Recorder, bundle_total, page_matches, urlencode};
use hyper::{Method, StatusCode, Uri};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone, Debug)]
pub struct PatientsArgs {
    #[command(flatten)]
    pub opts: LoadOpts,
    /// A `gen-patients` directory (its manifest gives seed and count) that the server imported.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["seed", "count"])]
    pub patients: Option<PathBuf>,
    /// Seed of the imported set (instead of --patients).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Patients in the imported set (instead of --patients).
    #[arg(long)]
    pub count: Option<u64>,
    /// Page size of every search (`_count`).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub page: u32,
    /// Ask for no total (`_total=none`), as a registration screen that shows one page would.
    #[arg(long)]
    pub no_total: bool,
}

pub const KINDS: [&str; 4] = ["uhid", "mobile", "name", "name-devanagari"];

pub struct SearchReport {
    pub rec: Recorder,
    pub seconds: f64,
    pub clients: u32,
}

impl SearchReport {
    /// Worst p99 over the kinds, in ms.
    pub fn worst_p99(&self) -> Option<f64> {
        self.rec.steps.values().filter_map(|s| s.percentile_ms(99.0)).fold(None, |a, b| Some(a.map_or(b, |a: f64| a.max(b))))
    }

    /// p50/p95/p99 over all searches together.
    pub fn overall(&self) -> crate::steps::Step {
        let mut all = crate::steps::Step::default();
        for s in self.rec.steps.values() {
            all.ok += s.ok;
            all.failed += s.failed;
            all.latencies_us.extend(&s.latencies_us);
        }
        all.latencies_us.sort_unstable();
        all
    }

    pub fn markdown(&self) -> String {
        let mut t = self.rec.markdown(self.seconds, &KINDS);
        let all = self.overall();
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        t.push_str(&format!(
            "| **all searches** | {} | {} | {:.1} | {} | {} | {} | {} |\n",
            all.ok,
            all.failed,
            all.ok as f64 / self.seconds.max(1e-9),
            ms(all.percentile_ms(50.0)),
            ms(all.percentile_ms(95.0)),
            ms(all.percentile_ms(99.0)),
            ms(all.max_ms())
        ));
        t
    }

    /// Average matches (Bundle.total) per search of each kind.
    pub fn matches_line(&self) -> String {
        KINDS
            .iter()
            .filter_map(|k| self.rec.steps.get(k).filter(|s| s.ok > 0).map(|s| format!("{k} {:.1}", s.sum as f64 / s.ok as f64)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One search: the URL and the least number of matches it must have (the patient it was made from).
pub fn search_for(base: &str, seed: u64, count: u64, rng: &mut Rng, kind: usize, page: u32, no_total: bool) -> String {
    let p = gen_patients::person(seed, rng.below(count));
    let query = match kind {
        0 => format!("identifier={}", urlencode(&format!("{UHID_SYSTEM}|{}", p.uhid))),
        1 => format!("phone={}", urlencode(&p.mobile)),
        _ => {
            let name = if rng.chance(500) { p.family } else { p.given[0] };
            let text = if kind == 2 { name.latin } else { name.devanagari };
            let n = 3 + rng.below(3) as usize;
            format!("name={}", urlencode(&gen_patients::prefix(text, n)))
        }
    };
    format!("{base}/Patient?{query}&_count={page}{}", if no_total { "&_total=none" } else { "" })
}

pub async fn search_load(opts: &LoadOpts, seed: u64, count: u64, page: u32, no_total: bool) -> Result<SearchReport, String> {
    let base = Base::parse(&opts.base)?;
    let auth = http::bearer(&opts.token)?;
    let client = http::client(opts.clients as usize);
    // One probe first, so that a wrong set or token is one clear error rather than N failures.
    let probe = search_for(&base.url, seed, count, &mut Rng::new(seed, 0, 99), 0, page, false);
    let (status, body) = http::send(&client, Method::GET, probe.parse().map_err(|e| format!("{e}"))?, &auth, None).await?;
    if status != StatusCode::OK || bundle_total(&body) != Some(1) {
        return Err(format!(
            "GET {probe}: {} (is the gen-patients set with seed {seed} and count {count} imported?)",
            if status == StatusCode::OK { format!("total {:?}, not 1", bundle_total(&body)) } else { http::describe_failure(status, &body) }
        ));
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(opts.seconds);
    let timeout = Duration::from_secs(opts.timeout.max(1));
    let mut tasks = vec![];
    for c in 0..opts.clients {
        let (client, auth, url) = (client.clone(), auth.clone(), base.url.clone());
        let max = opts.max_requests.map(|m| m.div_ceil(opts.clients as u64));
        tasks.push(tokio::spawn(async move {
            let mut rec = Recorder::default();
            let mut rng = Rng::new(seed ^ 0x5eac_4c11, c as u64, 7);
            let mut seq = 0u64;
            while Instant::now() < deadline && max.is_none_or(|m| seq < m) {
                let kind = ((c as u64 + seq) % KINDS.len() as u64) as usize;
                seq += 1;
                let url = search_for(&url, seed, count, &mut rng, kind, page, no_total);
                let uri: Uri = match url.parse() {
                    Ok(u) => u,
                    Err(e) => {
                        rec.fail(KINDS[kind], format!("bad URL {url}: {e}"));
                        continue;
                    }
                };
                let t0 = Instant::now();
                let r = tokio::time::timeout(timeout, http::send(&client, Method::GET, uri, &auth, None)).await;
                match r {
                    Err(_) => rec.fail(KINDS[kind], format!("no response within {}s", timeout.as_secs())),
                    Ok(Err(e)) => {
                        rec.fail(KINDS[kind], e);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Ok(Ok((status, body))) if status != StatusCode::OK => rec.fail(KINDS[kind], http::describe_failure(status, &body)),
                    Ok(Ok((_, body))) => {
                        // Without a total (`_total=none`), the matches on the page.
                        let total = if no_total { Some(page_matches(&body) as u64) } else { bundle_total(&body) };
                        match total {
                            Some(0) | None => rec.fail(KINDS[kind], "the patient searched for was not found".into()),
                            Some(n) if kind == 0 && n != 1 => rec.fail(KINDS[kind], format!("a UHID matched {n} patients")),
                            Some(n) => rec.ok_with(KINDS[kind], t0, n),
                        }
                    }
                }
            }
            rec
        }));
    }
    let mut rec = Recorder::default();
    for t in tasks {
        match t.await {
            Ok(r) => rec.merge(r),
            Err(e) => rec.fail("client", format!("client task failed: {e}")),
        }
    }
    rec.finish();
    Ok(SearchReport { rec, seconds: started.elapsed().as_secs_f64(), clients: opts.clients })
}

pub fn set_of(args: &PatientsArgs) -> Result<(u64, u64), String> {
    match (&args.patients, args.seed, args.count) {
        (Some(dir), _, _) => Manifest::read(dir).map(|m| (m.seed, m.count)),
        (None, Some(s), Some(c)) if c > 0 => Ok((s, c)),
        _ => Err("give --patients DIR (a gen-patients directory) or both --seed and --count".into()),
    }
}

pub fn run_command(args: &PatientsArgs) -> Result<bool, String> {
    let (seed, count) = set_of(args)?;
    let rt = crate::load::runtime(args.opts.threads)?;
    let r = rt.block_on(search_load(&args.opts, seed, count, args.page, args.no_total))?;
    println!("patient search, {} clients for {:.1} s, set: seed {seed}, {count} patients\n", r.clients, r.seconds);
    print!("{}", r.markdown());
    println!("\nmatches per search (average{}): {}", if args.no_total { " on the first page" } else { " Bundle.total" }, r.matches_line());
    for l in r.rec.failure_lines().iter().take(10) {
        println!("{l}");
    }
    Ok(r.rec.failed() == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searches_name_what_they_look_for() {
        let mut rng = Rng::new(1, 2, 3);
        let u = search_for("http://127.0.0.1:1/fhir", 5, 1000, &mut rng, 0, 20, false);
        assert!(u.starts_with("http://127.0.0.1:1/fhir/Patient?identifier=https%3A%2F%2Fvaidya.dev%2Ffhir%2Fsid%2Fuhid%7C0000-"), "{u}");
        assert!(u.ends_with("&_count=20"));
        let m = search_for("b", 5, 1000, &mut rng, 1, 20, false);
        assert!(m.starts_with("b/Patient?phone=%2B91"), "{m}");
        let d = search_for("b", 5, 1000, &mut rng, 3, 20, true);
        assert!(d.starts_with("b/Patient?name=%E0%A") && d.ends_with("&_count=20&_total=none"), "{d}");
    }
}
