//! FHIR data types as people read them: names, codes, quantities, ranges, dates in the
//! hospital's zone. Plain text out; escaping is the template's job.

use serde_json::Value;
use vaidya_domain::schedule::{LocalDate, from_utc_ms};

/// The zone dates and times are shown in (storage is always UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zone {
    pub offset_minutes: i32,
    pub label: &'static str,
}

impl Zone {
    pub const IST: Zone = Zone { offset_minutes: vaidya_domain::schedule::IST_OFFSET_MINUTES, label: "IST" };
    pub const UTC: Zone = Zone { offset_minutes: 0, label: "UTC" };

    /// The zone for the config's `timezone`. Without a time zone database only fixed offsets
    /// are known: India's (no daylight saving) and UTC; anything else is shown in IST.
    pub fn from_config(name: &str) -> Zone {
        match name {
            "UTC" | "Etc/UTC" | "Z" => Zone::UTC,
            other => {
                static WARNED: std::sync::Once = std::sync::Once::new();
                if !matches!(other, "Asia/Kolkata" | "Asia/Calcutta" | "IST") {
                    WARNED.call_once(|| tracing::warn!("timezone '{other}' is not supported; printed times are in IST"));
                }
                Zone::IST
            }
        }
    }

    /// A FHIR search for the whole local day `date` on the date parameter `param`: both ends
    /// with this zone's offset, so that the hours between local and UTC midnight fall on the
    /// right day (a date without a zone is searched as a UTC day). Ready for a query string.
    pub fn day_query(&self, param: &str, date: LocalDate) -> String {
        // `%2B` is `+`: a bare `+` in a query string means a space.
        let [lo, hi] = self.day_bounds(date).map(|b| b.replace('+', "%2B"));
        format!("{param}=ge{lo}&{param}=lt{hi}")
    }

    /// The local day `date` as UTC-offset instants, its start and the next day's start (as
    /// search values after `ge` and `lt`, not yet escaped for a query string).
    pub fn day_bounds(&self, date: LocalDate) -> [String; 2] {
        let next = date.add_days(1).unwrap_or(date);
        let m = self.offset_minutes;
        let off = format!("{}{:02}:{:02}", if m < 0 { '-' } else { '+' }, m.abs() / 60, m.abs() % 60);
        [format!("{date}T00:00:00{off}"), format!("{next}T00:00:00{off}")]
    }

    /// The local calendar date of a UTC instant.
    pub fn date_of(&self, utc_ms: i64) -> Option<LocalDate> {
        from_utc_ms(utc_ms, self.offset_minutes).ok().map(|(d, _)| d)
    }

    /// The local time of day of a UTC instant.
    pub fn time_of(&self, utc_ms: i64) -> Option<vaidya_domain::schedule::LocalTime> {
        from_utc_ms(utc_ms, self.offset_minutes).ok().map(|(_, t)| t)
    }

    /// `27 Nov 2026, 13:05 IST`.
    pub fn date_time(&self, utc_ms: i64) -> String {
        match from_utc_ms(utc_ms, self.offset_minutes) {
            Ok((d, t)) => format!("{}, {t} {}", date(d), self.label),
            Err(_) => vaidya_fhir::datetime::format_instant(utc_ms),
        }
    }

    /// A FHIR date, dateTime or instant for people: with a time, converted to this zone; a
    /// bare date as it is (a date has no zone); anything else unchanged.
    pub fn fhir(&self, value: &str) -> String {
        if value.contains('T')
            && let Some((ms, _)) = vaidya_fhir::datetime::parse_date_range(value)
        {
            return self.date_time(ms);
        }
        match value.parse::<LocalDate>() {
            Ok(d) => date(d),
            Err(_) => value.to_string(),
        }
    }
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// `27 Nov 2026`: the month in letters, so that day and month are never confused.
#[cfg(test)]
mod zone_tests {
    use super::*;

    #[test]
    fn a_local_day_is_searched_with_its_offset() {
        let d = LocalDate::new(2026, 11, 28).unwrap();
        assert_eq!(Zone::IST.day_query("date", d), "date=ge2026-11-28T00:00:00%2B05:30&date=lt2026-11-29T00:00:00%2B05:30");
        assert_eq!(Zone::UTC.day_query("start", d), "start=ge2026-11-28T00:00:00%2B00:00&start=lt2026-11-29T00:00:00%2B00:00");
    }
}

pub fn date(d: LocalDate) -> String {
    format!("{} {} {}", d.day(), MONTHS[usize::from(d.month() - 1)], d.year())
}

pub fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key)?.as_str().filter(|s| !s.trim().is_empty())
}

/// A HumanName: its `text`, else prefix, given, family and suffix.
pub fn human_name(name: &Value) -> Option<String> {
    if let Some(t) = str_of(name, "text") {
        return Some(t.to_string());
    }
    let mut parts: Vec<&str> = vec![];
    for key in ["prefix", "given"] {
        parts.extend(name[key].as_array().into_iter().flatten().filter_map(Value::as_str));
    }
    parts.extend(str_of(name, "family"));
    parts.extend(name["suffix"].as_array().into_iter().flatten().filter_map(Value::as_str));
    let s = parts.join(" ");
    (!s.trim().is_empty()).then_some(s)
}

/// The name to print for a person: the `official` one, else the first; and another name
/// written differently (e.g. in Devanagari), if there is one.
pub fn person_names(resource: &Value) -> (Option<String>, Option<String>) {
    let names: &[Value] = resource["name"].as_array().map_or(&[], Vec::as_slice);
    let main = names.iter().position(|n| n["use"] == "official").unwrap_or(0);
    let main_text = names.get(main).and_then(human_name);
    let other = names
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != main)
        .filter_map(|(_, n)| human_name(n))
        .find(|t| Some(t) != main_text.as_ref());
    (main_text, other)
}

/// A CodeableConcept: its text, else the first coding's display, else its code.
pub fn concept(c: &Value) -> Option<String> {
    if let Some(t) = str_of(c, "text") {
        return Some(t.to_string());
    }
    let codings = c["coding"].as_array()?;
    codings
        .iter()
        .find_map(|cd| str_of(cd, "display"))
        .or_else(|| codings.iter().find_map(|cd| str_of(cd, "code")))
        .map(str::to_string)
}

/// A decimal exactly as written (`10.80` stays `10.80`; the JSON keeps the literal).
pub fn number(v: &Value) -> Option<String> {
    v.is_number().then(|| v.to_string())
}

/// A Quantity: comparator, value and unit (`< 0.5 mg/dL`).
pub fn quantity(q: &Value) -> Option<String> {
    let value = number(&q["value"])?;
    let unit = str_of(q, "unit").or_else(|| str_of(q, "code"));
    let comparator = str_of(q, "comparator").map(|c| format!("{c} ")).unwrap_or_default();
    Some(match unit {
        Some(u) => format!("{comparator}{value} {u}"),
        None => format!("{comparator}{value}"),
    })
}

/// The `value[x]` of an Observation or one of its components.
pub fn observation_value(o: &Value) -> Option<String> {
    if let Some(q) = o.get("valueQuantity") {
        return quantity(q);
    }
    if let Some(s) = str_of(o, "valueString") {
        return Some(s.to_string());
    }
    if let Some(c) = o.get("valueCodeableConcept") {
        return concept(c);
    }
    if let Some(n) = o.get("valueInteger") {
        return number(n);
    }
    if let Some(b) = o.get("valueBoolean").and_then(Value::as_bool) {
        return Some(if b { "Yes" } else { "No" }.to_string());
    }
    if let Some(r) = o.get("valueRange") {
        return range_bounds(r);
    }
    if let Some(r) = o.get("valueRatio") {
        return Some(format!("{} : {}", quantity(&r["numerator"])?, quantity(&r["denominator"])?));
    }
    for key in ["valueDateTime", "valueTime", "valuePeriod"] {
        if let Some(s) = o.get(key).and_then(Value::as_str) {
            return Some(s.to_string());
        }
    }
    o.get("dataAbsentReason").and_then(concept).map(|r| format!("({r})"))
}

/// `low–high unit`, `≥ low unit` or `≤ high unit`, with the unit written once if shared.
fn range_bounds(r: &Value) -> Option<String> {
    let low = r.get("low").filter(|q| q["value"].is_number());
    let high = r.get("high").filter(|q| q["value"].is_number());
    let unit = |q: &Value| str_of(q, "unit").or_else(|| str_of(q, "code")).map(str::to_string);
    match (low, high) {
        (Some(l), Some(h)) => {
            let (lu, hu) = (unit(l), unit(h));
            let (lv, hv) = (number(&l["value"])?, number(&h["value"])?);
            Some(match (lu, hu) {
                (lu, hu) if lu == hu => match lu {
                    Some(u) => format!("{lv}–{hv} {u}"),
                    None => format!("{lv}–{hv}"),
                },
                _ => format!("{}–{}", quantity(l)?, quantity(h)?),
            })
        }
        (Some(l), None) => Some(format!("≥ {}", quantity(l)?)),
        (None, Some(h)) => Some(format!("≤ {}", quantity(h)?)),
        (None, None) => None,
    }
}

/// Every `referenceRange`: bounds and text (`12.0–15.5 g/dL (adult female)`), one per line.
pub fn reference_ranges(o: &Value) -> Vec<String> {
    o["referenceRange"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let bounds = range_bounds(r);
            let text = str_of(r, "text").map(str::to_string).or_else(|| {
                let applies: Vec<String> = r["appliesTo"].as_array().into_iter().flatten().filter_map(concept).collect();
                let age = r.get("age").and_then(range_bounds).map(|a| format!("age {a}"));
                let words: Vec<String> = applies.into_iter().chain(age).collect();
                (!words.is_empty()).then(|| words.join(", "))
            });
            match (bounds, text) {
                (Some(b), Some(t)) => Some(format!("{b} ({t})")),
                (Some(b), None) => Some(b),
                (None, t) => t,
            }
        })
        .collect()
}

/// An abnormal flag as printed: the v3 ObservationInterpretation code and its word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    pub code: String,
    pub word: String,
    /// `HH`, `LL`, `AA`: to be acted on at once.
    pub critical: bool,
}

/// The word for an abnormal v3 ObservationInterpretation code, and whether it is critical;
/// `None` for codes that are not printed as a flag (normal, negative, not detected).
fn flag_word(code: &str) -> Option<(&'static str, bool)> {
    Some(match code {
        "H" => ("High", false),
        "L" => ("Low", false),
        "HH" | "HU" => ("Critically high", true),
        "LL" | "LU" => ("Critically low", true),
        "A" => ("Abnormal", false),
        "AA" => ("Critically abnormal", true),
        "POS" => ("Positive", false),
        "DET" => ("Detected", false),
        "R" => ("Resistant", false),
        "I" => ("Intermediate", false),
        _ => return None,
    })
}

/// The abnormal flags of an Observation (normal, `N`, prints nothing).
pub fn flags(o: &Value) -> Vec<Flag> {
    let mut out = vec![];
    for interp in o["interpretation"].as_array().into_iter().flatten() {
        let code = interp["coding"].as_array().into_iter().flatten().find_map(|c| str_of(c, "code"));
        if matches!(code, Some("N" | "S" | "NEG" | "ND")) {
            continue;
        }
        if let Some((word, critical)) = code.and_then(flag_word) {
            out.push(Flag { code: code.unwrap_or_default().to_string(), word: word.to_string(), critical });
        } else if let Some(word) = concept(interp) {
            out.push(Flag { code: code.unwrap_or_default().to_string(), word, critical: false });
        }
    }
    out
}

/// Status codes in words (`entered-in-error` → `Entered in error`).
pub fn status_word(code: &str) -> String {
    let mut s = code.replace('-', " ");
    if let Some(first) = s.get(..1) {
        let upper = first.to_ascii_uppercase();
        s.replace_range(..1, &upper);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_prefer_official_and_keep_the_other_script() {
        let p = json!({"name": [{"use": "usual", "text": "सीता देवी"}, {"use": "official", "family": "Devi", "given": ["Sita"], "prefix": ["Smt."]}]});
        assert_eq!(person_names(&p), (Some("Smt. Sita Devi".into()), Some("सीता देवी".into())));
        assert_eq!(person_names(&json!({})), (None, None));
    }

    #[test]
    fn values_and_ranges() {
        let o: Value = serde_json::from_str(
            r#"{"valueQuantity": {"value": 10.80, "unit": "g/dL"},
                "referenceRange": [{"low": {"value": 12.0, "unit": "g/dL"}, "high": {"value": 15.5, "unit": "g/dL"}},
                                   {"high": {"value": 200, "unit": "mg/dL"}, "text": "desirable"},
                                   {"text": "Negative"}]}"#,
        )
        .unwrap();
        assert_eq!(observation_value(&o).unwrap(), "10.80 g/dL");
        assert_eq!(reference_ranges(&o), vec!["12.0–15.5 g/dL", "≤ 200 mg/dL (desirable)", "Negative"]);
        assert_eq!(observation_value(&json!({"valueCodeableConcept": {"coding": [{"code": "x", "display": "Reactive"}]}})).unwrap(), "Reactive");
        assert_eq!(observation_value(&json!({"valueQuantity": {"value": 0.5, "comparator": "<", "code": "mg/dL"}})).unwrap(), "< 0.5 mg/dL");
    }

    #[test]
    fn flags_in_words() {
        let f = |code: &str| flags(&json!({"interpretation": [{"coding": [{"code": code}]}]}));
        assert_eq!(f("H")[0].word, "High");
        assert_eq!(f("L")[0].word, "Low");
        assert!(f("HH")[0].critical);
        assert_eq!(f("A")[0].word, "Abnormal");
        assert!(f("N").is_empty());
        assert_eq!(flags(&json!({"interpretation": [{"text": "Borderline"}]}))[0].word, "Borderline");
    }

    #[test]
    fn times_in_the_hospital_zone() {
        assert_eq!(Zone::IST.fhir("2026-11-20T06:30:00Z"), "20 Nov 2026, 12:00 IST");
        assert_eq!(Zone::IST.fhir("2026-11-20T12:00:00+05:30"), "20 Nov 2026, 12:00 IST");
        assert_eq!(Zone::IST.fhir("2026-11-20T20:00:00Z"), "21 Nov 2026, 01:30 IST");
        assert_eq!(Zone::IST.fhir("2026-11-20"), "20 Nov 2026");
        assert_eq!(Zone::IST.fhir("2026"), "2026");
        assert_eq!(status_word("entered-in-error"), "Entered in error");
    }
}
