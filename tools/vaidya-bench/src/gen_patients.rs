//! `gen-patients`: realistic Indian patients as NDJSON FHIR Patients, deterministic per seed.
//!
//! Patient `i` (0-based) is a pure function of `(seed, i)`: the search benchmark recomputes any
//! patient's UHID, mobile and name from the seed instead of reading the files back. Each has:
//! - a UHID of the central issuer, serial `i + 1` (`vaidya_domain::Uhid::new(0, i + 1)`);
//! - a name in Latin script (`use: official`, `given`/`family`) and the same name in Devanagari
//!   (`use: usual`, `given`/`family`/`text`), drawn from community lists with a frequency skew
//!   (see `names.rs`), so some prefixes match very many patients;
//! - sex, birth date (children to the very old), a mobile (E.164 `+91XXXXXXXXXX`, first digit
//!   6-9) and an address (a real city, district, state and PIN code; a plausible line).
//!
//! About 2% belong to the household of a patient registered shortly before them: same mobile
//! (families share a phone), family name and address.

use crate::names::{self, Name, Place};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use vaidya_domain::schedule::LocalDate;
use vaidya_domain::{Mobile, Uhid};

pub const UHID_SYSTEM: &str = "https://vaidya.dev/fhir/sid/uhid";
/// Written last into an output directory: its settings; a directory without it is incomplete.
/// (No `.json` extension: `vaidya import` reads every `.json` file of a directory as a Bundle.)
pub const MANIFEST: &str = "manifest";

#[derive(clap::Args, Clone, Debug)]
pub struct GenPatientsArgs {
    /// Number of patients.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub count: u64,
    /// Output directory (created; must be empty unless --overwrite).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Seed: the same seed and count give the same files, byte for byte.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Patients per NDJSON file (files are imported in parallel).
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub per_file: u64,
    /// Worker threads (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Write into a directory that already holds files.
    #[arg(long)]
    pub overwrite: bool,
}

/// What a generated directory holds (its manifest).
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub seed: u64,
    pub count: u64,
    pub per_file: u64,
}

impl Manifest {
    pub fn read(dir: &Path) -> Result<Manifest, String> {
        let p = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e} (not a complete gen-patients directory)", p.display()))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?;
        let n = |k: &str| v.get(k).and_then(Value::as_u64).ok_or_else(|| format!("{}: no '{k}'", p.display()));
        Ok(Manifest { seed: n("seed")?, count: n("count")?, per_file: n("perFile")? })
    }
}

pub struct GenPatientsSummary {
    pub files: u64,
    pub patients: u64,
    pub bytes: u64,
    pub seconds: f64,
}

// ---------------------------------------------------------------------------------------------
// Randomness: splitmix64, one independent stream per (seed, patient, purpose).

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, index: u64, stream: u64) -> Rng {
        let mut r = Rng(seed ^ 0x9e37_79b9_7f4a_7c15);
        r.0 = r.next_u64() ^ index.wrapping_mul(0xd1b5_4a32_d192_ed03);
        r.0 = r.next_u64() ^ stream.wrapping_mul(0x8cb9_2ba7_2f3d_8dd7);
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// Items with weights, drawn in O(log n).
pub struct Weighted<T> {
    items: Vec<T>,
    cumulative: Vec<u64>,
}

impl<T> Weighted<T> {
    fn new(items: Vec<(T, u32)>) -> Weighted<T> {
        let mut total = 0u64;
        let mut cumulative = Vec::with_capacity(items.len());
        let mut out = Vec::with_capacity(items.len());
        for (item, w) in items {
            total += u64::from(w.max(1));
            cumulative.push(total);
            out.push(item);
        }
        assert!(!out.is_empty(), "an empty list");
        Weighted { items: out, cumulative }
    }

    pub fn pick(&self, rng: &mut Rng) -> &T {
        let x = rng.below(*self.cumulative.last().expect("non-empty"));
        let i = self.cumulative.partition_point(|&c| c <= x);
        &self.items[i]
    }
}

struct GroupTables {
    male: Weighted<Name>,
    female: Weighted<Name>,
    /// Family names for men / women (sex-restricted entries included where they apply).
    family_male: Weighted<Name>,
    family_female: Weighted<Name>,
    /// Family names a household carries (no sex-restricted ones).
    lineage: Weighted<Name>,
    places: Weighted<Place>,
    hindi_middle: bool,
}

struct Tables {
    groups: Weighted<usize>,
    tables: Vec<GroupTables>,
    ages: Weighted<(u64, u64)>,
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| {
        let tables = names::GROUPS
            .iter()
            .map(|g| {
                let family = names::parse(g.family);
                let w = |list: Vec<Name>| Weighted::new(list.into_iter().map(|n| (n, n.weight)).collect());
                GroupTables {
                    male: w(names::parse(g.male)),
                    female: w(names::parse(g.female)),
                    family_male: w(family.iter().copied().filter(|n| n.sex != Some('f')).collect()),
                    family_female: w(family.iter().copied().filter(|n| n.sex != Some('m')).collect()),
                    lineage: w(family.iter().copied().filter(|n| n.sex.is_none()).collect()),
                    places: Weighted::new(names::parse_places(g.places).into_iter().map(|p| (p, p.weight)).collect()),
                    hindi_middle: g.key == "hindi",
                }
            })
            .collect();
        let groups = Weighted::new(names::GROUPS.iter().enumerate().map(|(i, g)| (i, g.weight)).collect());
        let ages = Weighted::new(AGE_BANDS.iter().map(|&(lo, hi, w)| ((lo, hi), w)).collect());
        Tables { groups, tables, ages }
    })
}

/// "Kumar" as a middle name, common in North India.
const KUMAR: Name = Name { latin: "Kumar", devanagari: "कुमार", weight: 1, sex: None };

// ---------------------------------------------------------------------------------------------
// Patients.

/// What patients of one household share.
struct Household {
    group: usize,
    lineage: Name,
    place: Place,
    line: String,
    mobile: Mobile,
}

fn household(seed: u64, i: u64) -> Household {
    let t = tables();
    let mut r = Rng::new(seed, i, 1);
    let group = *t.groups.pick(&mut r);
    let g = &t.tables[group];
    let lineage = *g.lineage.pick(&mut r);
    let place = *g.places.pick(&mut r);
    let locality = names::LOCALITIES[r.below(names::LOCALITIES.len() as u64) as usize];
    let locality = locality.replace('#', &(1 + r.below(40)).to_string());
    let range = if r.chance(300) { 40 } else { 999 };
    let house = 1 + r.below(range);
    let line = if r.chance(200) { format!("H.No. {house}, {locality}") } else { format!("{house}, {locality}") };
    // First digits of Indian mobiles: 9 and 7/8 series are the most common, 6 the newest.
    let first = [9, 9, 9, 9, 8, 8, 7, 7, 6, 9][r.below(10) as usize];
    let national = first * 1_000_000_000 + r.below(1_000_000_000);
    let mobile: Mobile = format!("{national:010}").parse().expect("ten digits starting 6-9");
    Household { group, lineage, place, line, mobile }
}

/// Whose household patient `i` belongs to: its own, or (about 2%) that of a patient registered
/// shortly before, followed back to the first member.
fn household_root(seed: u64, mut i: u64) -> u64 {
    loop {
        let mut r = Rng::new(seed, i, 2);
        if i == 0 || !r.chance(20) {
            return i;
        }
        i -= 1 + r.below(i.min(5));
    }
}

/// One generated patient.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    pub index: u64,
    pub uhid: String,
    /// E.164, `+91XXXXXXXXXX`.
    pub mobile: String,
    pub gender: &'static str,
    pub birth_date: String,
    pub given: Vec<Name>,
    pub family: Name,
    pub place: Place,
    pub line: String,
}

impl Person {
    pub fn devanagari_name(&self) -> String {
        let mut parts: Vec<&str> = self.given.iter().map(|n| n.devanagari).collect();
        parts.push(self.family.devanagari);
        parts.join(" ")
    }

    /// The FHIR Patient; without the UHID when `with_uhid` is false (the server issues one).
    pub fn to_fhir(&self, with_uhid: bool) -> Value {
        let mut p = json!({
            "resourceType": "Patient",
            "active": true,
            "name": [
                {"use": "official", "family": self.family.latin, "given": self.given.iter().map(|n| n.latin).collect::<Vec<_>>()},
                {"use": "usual", "text": self.devanagari_name(), "family": self.family.devanagari,
                 "given": self.given.iter().map(|n| n.devanagari).collect::<Vec<_>>()}
            ],
            "telecom": [{"system": "phone", "value": self.mobile, "use": "mobile"}],
            "gender": self.gender,
            "birthDate": self.birth_date,
            "address": [{"use": "home", "type": "physical", "line": [self.line], "city": self.place.city,
                         "district": self.place.district, "state": self.place.state, "postalCode": self.place.pin, "country": "IN"}]
        });
        if with_uhid {
            p["identifier"] = json!([{"use": "official", "type": {"text": "UHID"}, "system": UHID_SYSTEM, "value": self.uhid}]);
        }
        p
    }
}

/// Ages in years: bands and their weights (a public hospital's outpatients, children to elderly).
const AGE_BANDS: [(u64, u64, u32); 7] = [(0, 5, 8), (5, 15, 10), (15, 30, 22), (30, 45, 22), (45, 60, 20), (60, 75, 13), (75, 96, 5)];

/// Patient `i` of the set made with `seed`.
pub fn person(seed: u64, i: u64) -> Person {
    let t = tables();
    let home = household(seed, household_root(seed, i));
    let g = &t.tables[home.group];
    let mut r = Rng::new(seed, i, 3);
    let sex = r.below(1000);
    let gender = if sex < 510 {
        "male"
    } else if sex < 995 {
        "female"
    } else {
        "other"
    };
    let male = gender == "male" || (gender == "other" && r.chance(500));
    let mut given = vec![*if male { g.male.pick(&mut r) } else { g.female.pick(&mut r) }];
    // A sex-specific family name (Kaur, Devi, Begum...) when drawn, else the household's.
    let drawn = *if male { g.family_male.pick(&mut r) } else { g.family_female.pick(&mut r) };
    let family = if drawn.sex.is_some() { drawn } else { home.lineage };
    if male && g.hindi_middle && family.latin != "Kumar" && r.chance(150) {
        given.push(KUMAR);
    }
    let (lo, hi) = *t.ages.pick(&mut r);
    let age_days = lo * 365 + r.below((hi - lo) * 365);
    let reference = LocalDate::new(2026, 1, 1).expect("a date");
    let birth = reference.add_days(-(age_days as i64)).expect("in range");
    Person {
        index: i,
        uhid: Uhid::new(0, (i % 999_999_999) + 1).expect("serial in range").to_string(),
        mobile: home.mobile.to_string(),
        gender,
        birth_date: birth.to_string(),
        given,
        family,
        place: home.place,
        line: home.line,
    }
}

/// `n` characters of `s` (fewer if it is shorter).
pub fn prefix(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

// ---------------------------------------------------------------------------------------------
// Files.

pub fn file_name(k: u64) -> String {
    format!("patients-{k:05}.ndjson")
}

pub fn run(args: &GenPatientsArgs) -> Result<GenPatientsSummary, String> {
    let started = Instant::now();
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    if !args.overwrite && std::fs::read_dir(&args.out).map_err(|e| e.to_string())?.next().is_some() {
        return Err(format!("{} is not empty (use --overwrite to write into it anyway)", args.out.display()));
    }
    let _ = std::fs::remove_file(args.out.join(MANIFEST));
    let files = args.count.div_ceil(args.per_file);
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())).max(1);
    let next = AtomicU64::new(0);
    let bytes = AtomicU64::new(0);
    let error: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.min(files as usize) {
            s.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= files || error.lock().unwrap().is_some() {
                        break;
                    }
                    let (from, to) = (k * args.per_file, ((k + 1) * args.per_file).min(args.count));
                    match write_file(&args.out.join(file_name(k)), args.seed, from, to) {
                        Ok(b) => {
                            bytes.fetch_add(b, Ordering::Relaxed);
                        }
                        Err(e) => {
                            error.lock().unwrap().get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = error.into_inner().unwrap() {
        return Err(e);
    }
    let manifest = json!({"generator": "vaidya-bench gen-patients", "seed": args.seed, "count": args.count, "perFile": args.per_file, "files": files});
    std::fs::write(args.out.join(MANIFEST), format!("{manifest:#}\n")).map_err(|e| e.to_string())?;
    Ok(GenPatientsSummary { files, patients: args.count, bytes: bytes.into_inner(), seconds: started.elapsed().as_secs_f64() })
}

fn write_file(path: &Path, seed: u64, from: u64, to: u64) -> Result<u64, String> {
    let f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    let mut n = 0u64;
    for i in from..to {
        let mut line = serde_json::to_vec(&person(seed, i).to_fhir(true)).map_err(|e| e.to_string())?;
        line.push(b'\n');
        w.write_all(&line).map_err(|e| format!("{}: {e}", path.display()))?;
        n += line.len() as u64;
    }
    w.flush().map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    #[test]
    fn all_lists_parse_and_have_devanagari() {
        for g in names::GROUPS {
            for list in [g.male, g.female, g.family] {
                for n in names::parse(list) {
                    assert!(n.latin.chars().all(|c| c.is_ascii_alphabetic()), "{}: '{}'", g.key, n.latin);
                    assert!(n.devanagari.chars().all(|c| ('\u{0900}'..='\u{097F}').contains(&c)), "{}: '{}'", g.key, n.devanagari);
                }
            }
            for p in names::parse_places(g.places) {
                assert!(p.pin.len() == 6 && p.pin.bytes().all(|b| b.is_ascii_digit()) && !p.pin.starts_with('0'), "{p:?}");
            }
        }
        let total: usize = names::GROUPS.iter().map(|g| names::parse(g.male).len() + names::parse(g.female).len()).sum();
        assert!(total > 400, "a few hundred given names ({total})");
    }

    #[test]
    fn patients_are_valid_and_deterministic() {
        let mut mobiles: HashMap<String, u32> = HashMap::new();
        let mut uhids = HashSet::new();
        let mut genders: HashMap<&str, u32> = HashMap::new();
        let n = 20_000;
        for i in 0..n {
            let p = person(7, i);
            assert_eq!(p, person(7, i), "same seed, same patient");
            let u: Uhid = p.uhid.parse().expect("a valid UHID");
            assert_eq!((u.issuer(), u.serial()), (0, i + 1));
            assert!(uhids.insert(p.uhid.clone()));
            let m: Mobile = p.mobile.parse().expect("a valid mobile");
            assert_eq!(m.to_string(), p.mobile, "stored in E.164 form");
            assert!(matches!(p.mobile.as_bytes()[3], b'6'..=b'9'));
            *mobiles.entry(p.mobile.clone()).or_default() += 1;
            *genders.entry(p.gender).or_default() += 1;
            let born: LocalDate = p.birth_date.parse().expect("a date");
            assert!(born.year() >= 1929 && born.year() <= 2026, "{born}");
            let v = p.to_fhir(true);
            assert_eq!(v["identifier"][0]["system"], UHID_SYSTEM);
            let dev = v["name"][1]["text"].as_str().unwrap();
            assert!(dev.chars().any(|c| ('\u{0900}'..='\u{097F}').contains(&c)), "Devanagari name: {dev}");
            assert!(v["name"][0]["family"].as_str().unwrap().is_ascii());
            assert!(p.to_fhir(false).get("identifier").is_none());
        }
        // About 2% share a mobile with another patient.
        let shared: u32 = mobiles.values().filter(|&&c| c > 1).sum();
        assert!((n as u32 / 100..n as u32 / 25).contains(&shared), "{shared} of {n} share a mobile");
        assert!(genders["male"] > 9000 && genders["female"] > 9000 && genders.contains_key("other"));
        assert_ne!(person(7, 5), person(8, 5), "another seed, another patient");
    }

    #[test]
    fn names_are_skewed() {
        let mut family: HashMap<&str, u32> = HashMap::new();
        for i in 0..10_000 {
            *family.entry(person(1, i).family.latin).or_default() += 1;
        }
        let mut counts: Vec<u32> = family.values().copied().collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        assert!(counts[0] > 300, "the commonest family name is common: {counts:?}");
        assert!(family.len() > 150, "and there are many: {}", family.len());
    }

    #[test]
    fn files_are_identical_for_the_same_seed() {
        let dir = std::env::temp_dir().join(format!("vaidya-bench-gen-{}", std::process::id()));
        let args = |sub: &str| GenPatientsArgs {
            count: 250,
            out: dir.join(sub),
            seed: 3,
            per_file: 100,
            threads: Some(2),
            overwrite: false,
        };
        let a = run(&args("a")).unwrap();
        run(&args("b")).unwrap();
        assert_eq!((a.files, a.patients), (3, 250));
        for k in 0..3 {
            let x = std::fs::read(dir.join("a").join(file_name(k))).unwrap();
            assert_eq!(x, std::fs::read(dir.join("b").join(file_name(k))).unwrap());
            assert!(std::str::from_utf8(&x).unwrap().lines().all(|l| serde_json::from_str::<Value>(l).is_ok()));
        }
        assert_eq!(Manifest::read(&dir.join("a")).unwrap(), Manifest { seed: 3, count: 250, per_file: 100 });
        assert!(run(&args("a")).is_err(), "refuses a non-empty directory");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
