//! Composite parameters and Location `near` through the store: indexing, matching within one
//! node only, great-circle distances, and verification of the new index rows.

mod common;
use common::engines::{Engine, open};
use vaidya_store::Db;

use serde_json::{Value, json};
use vaidya_store::search::{Handling, SearchError, parse_query, run};
use vaidya_store::Store;

fn put(store: &Store, resource: Value) {
    store
        .write_blocking(move |tx| {
            let index = vaidya_fhir::index::extract_all(&resource);
            let rtype = resource["resourceType"].as_str().unwrap().to_string();
            let id = resource["id"].as_str().unwrap().to_string();
            tx.put("test", &rtype, &id, &vaidya_store::Body::from_resource(&resource), &index).map(|_| ())
        })
        .unwrap();
}

/// The ids found by `rtype?name=value`, sorted.
fn search(store: &Store, rtype: &str, name: &str, value: &str) -> Result<Vec<String>, SearchError> {
    let pairs = vec![(name.to_string(), value.to_string())];
    let q = parse_query(rtype, &pairs, Handling::Strict)?;
    let found = store.read(|c| run(c, &q)).unwrap();
    let mut ids: Vec<String> = found.matches.into_iter().map(|m| m.id).collect();
    ids.sort();
    assert_eq!(found.total as usize, ids.len());
    Ok(ids)
}

fn ids(store: &Store, rtype: &str, name: &str, value: &str) -> Vec<String> {
    search(store, rtype, name, value).unwrap_or_else(|e| panic!("{rtype}?{name}={value}: {e}"))
}

const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";

fn blood_pressure(id: &str, systolic: f64, diastolic: f64) -> Value {
    let component = |code: &str, v: f64| {
        json!({"code": {"coding": [{"system": LOINC, "code": code}]},
               "valueQuantity": {"value": v, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}})
    };
    json!({"resourceType": "Observation", "id": id, "status": "final",
           "code": {"coding": [{"system": LOINC, "code": "85354-9"}], "text": "Blood pressure"},
           "component": [component("8480-6", systolic), component("8462-4", diastolic)]})
}

fn composites_match_within_one_node(engine: Engine) {
    let (store, vkey) = open(engine);
    put(&store, blood_pressure("bp1", 120.0, 80.0));
    put(&store, blood_pressure("bp2", 150.0, 95.0));
    put(&store, json!({"resourceType": "Observation", "id": "hb", "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "718-7"}, {"system": "http://acme.org", "code": "HGB"}]},
        "valueQuantity": {"value": 7.2, "unit": "g/dl", "system": UCUM, "code": "g/dL"}}));
    put(&store, json!({"resourceType": "Observation", "id": "blood-group", "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "883-9"}]},
        "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "112144000"}]}}));
    put(&store, json!({"resourceType": "Observation", "id": "note", "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "8251-1"}]}, "valueString": "Price US$ 5, paid"}));
    put(&store, json!({"resourceType": "Observation", "id": "onset", "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "11368-8"}]}, "valueDateTime": "2021-03-04"}));
    put(&store, json!({"resourceType": "DocumentReference", "id": "d2", "status": "current",
        "content": [{"attachment": {"contentType": "text/plain"}}],
        "relatesTo": [{"code": "replaces", "target": {"reference": "DocumentReference/d1"}},
                      {"code": "appends", "target": {"reference": "DocumentReference/d0"}}]}));

    let cq = "component-code-value-quantity";
    assert_eq!(ids(&store, "Observation", cq, "http://loinc.org|8480-6$gt110"), ["bp1", "bp2"]);
    assert_eq!(ids(&store, "Observation", cq, "http://loinc.org|8480-6$gt130"), ["bp2"]);
    assert!(ids(&store, "Observation", cq, "http://loinc.org|8480-6$lt90").is_empty());
    // The diastolic component is never above 110: no pairing of one component's code with the
    // other's value.
    assert!(ids(&store, "Observation", cq, "http://loinc.org|8462-4$gt110").is_empty());
    assert_eq!(ids(&store, "Observation", cq, "8462-4$80"), ["bp1"]);
    assert_eq!(ids(&store, "Observation", cq, "8462-4$80|http://unitsofmeasure.org|mm[Hg]"), ["bp1"]);
    assert_eq!(ids(&store, "Observation", cq, "8462-4$80||mmHg"), ["bp1"], "the unit as written");
    assert!(ids(&store, "Observation", cq, "8462-4$80|http://unitsofmeasure.org|kg").is_empty());
    assert!(ids(&store, "Observation", cq, "http://other|8462-4$80").is_empty());
    // Alternatives are OR-ed; repeated parameters AND-ed.
    assert_eq!(ids(&store, "Observation", cq, "8480-6$lt125,8462-4$ge95"), ["bp1", "bp2"]);
    let pairs = vec![(cq.to_string(), "8480-6$gt110".to_string()), (cq.to_string(), "8462-4$lt90".to_string())];
    let q = parse_query("Observation", &pairs, Handling::Strict).unwrap();
    let found = store.read(|c| run(c, &q)).unwrap();
    assert_eq!(found.matches.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["bp1"]);

    // combo- covers the Observation and its components; code-value- only the Observation.
    assert_eq!(ids(&store, "Observation", "combo-code-value-quantity", "8480-6$ge150"), ["bp2"]);
    assert_eq!(ids(&store, "Observation", "combo-code-value-quantity", "718-7$lt10"), ["hb"]);
    assert!(ids(&store, "Observation", "code-value-quantity", "8480-6$ge150").is_empty());
    assert_eq!(ids(&store, "Observation", "code-value-quantity", "http://acme.org|HGB$7.2"), ["hb"]);
    assert_eq!(ids(&store, "Observation", "code-value-quantity", "718-7$7.2|http://unitsofmeasure.org|g/dL"), ["hb"]);
    assert!(ids(&store, "Observation", "code-value-quantity", "718-7$8").is_empty());

    assert_eq!(ids(&store, "Observation", "code-value-concept", "883-9$http://snomed.info/sct|112144000"), ["blood-group"]);
    assert_eq!(ids(&store, "Observation", "combo-code-value-concept", "883-9$112144000"), ["blood-group"]);
    assert!(ids(&store, "Observation", "code-value-concept", "883-9$1").is_empty());
    assert!(ids(&store, "Observation", "component-code-value-concept", "883-9$112144000").is_empty());

    // String part: starts-with on the normalized value; `\$` and `\,` are literal.
    assert_eq!(ids(&store, "Observation", "code-value-string", r"8251-1$price us\$ 5\, PA"), ["note"]);
    assert!(ids(&store, "Observation", "code-value-string", "8251-1$paid").is_empty());

    assert_eq!(ids(&store, "Observation", "code-value-date", "11368-8$2021-03"), ["onset"]);
    assert_eq!(ids(&store, "Observation", "code-value-date", "11368-8$gt2021-01-01"), ["onset"]);
    assert!(ids(&store, "Observation", "code-value-date", "11368-8$lt2021-01-01").is_empty());
    assert!(ids(&store, "Observation", "code-value-date", "8251-1$2021-03").is_empty());

    let rel = "relationship";
    assert_eq!(ids(&store, "DocumentReference", rel, "replaces$DocumentReference/d1"), ["d2"]);
    assert_eq!(ids(&store, "DocumentReference", rel, "appends$DocumentReference/d0"), ["d2"]);
    assert!(ids(&store, "DocumentReference", rel, "replaces$DocumentReference/d0").is_empty());

    assert_eq!(ids(&store, "Observation", "code-value-date:missing", "false"), ["onset"]);
    assert_eq!(ids(&store, "Observation", "component-code-value-quantity:missing", "false"), ["bp1", "bp2"]);
    assert_eq!(ids(&store, "Observation", "component-code-value-quantity:missing", "true"), ["blood-group", "hb", "note", "onset"]);

    // A new version replaces the rows; a deleted resource is not found.
    put(&store, blood_pressure("bp1", 100.0, 70.0));
    assert!(ids(&store, "Observation", cq, "8480-6$120").is_empty());
    assert_eq!(ids(&store, "Observation", cq, "8480-6$100"), ["bp1"]);
    store.write_blocking(|tx| tx.delete("test", "Observation", "bp2").map(|_| ())).unwrap();
    assert!(ids(&store, "Observation", cq, "8480-6$gt110").is_empty());

    let report = store.read(|c| vaidya_store::verify::verify(c, &vkey)).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);

    // A tampered composite row is caught.
    store.shutdown();
    let conn = store.intruder();
    let n = conn.execute("UPDATE ix_composite SET v_num = 170 WHERE v_num = 100", &[]).unwrap();
    assert_eq!(n, 2, "the component- and combo- rows of bp1's systolic component");
    let report = vaidya_store::verify::verify(&conn, &vkey).unwrap();
    assert!(report.problems.iter().any(|p| p.what.contains("search index rows of Observation/bp1")), "{:?}", report.problems);
}

fn location(id: &str, lat: f64, lon: f64) -> Value {
    json!({"resourceType": "Location", "id": id, "name": id, "position": {"latitude": lat, "longitude": lon}})
}

/// Great-circle distance in km (haversine), to check the search against.
fn haversine_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1, la2, lo2) = (a.0.to_radians(), a.1.to_radians(), b.0.to_radians(), b.1.to_radians());
    let h = ((la2 - la1) / 2.0).sin().powi(2) + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * 6_371.008_8 * h.sqrt().asin()
}

fn near_finds_locations_by_great_circle_distance(engine: Engine) {
    let (store, vkey) = open(engine);
    let places = [
        ("aiims", 28.5672, 77.2100),     // AIIMS, New Delhi
        ("safdarjung", 28.5685, 77.2066), // ~0.36 km away
        ("connaught", 28.6315, 77.2167),  // ~7.2 km
        ("gurgaon", 28.4595, 77.0266),    // ~21 km
        ("mumbai", 19.0760, 72.8777),     // ~1150 km
        ("fiji-east", -17.0, 179.99),     // either side of the antimeridian
        ("fiji-west", -17.0, -179.99),
        ("pole-a", 89.99, 0.0),           // near the North Pole, opposite longitudes
        ("pole-b", 89.99, 180.0),
    ];
    for (id, lat, lon) in places {
        put(&store, location(id, lat, lon));
    }
    put(&store, json!({"resourceType": "Location", "id": "nowhere", "name": "no position"}));

    assert_eq!(ids(&store, "Location", "near", "28.5672|77.2100|1|km"), ["aiims", "safdarjung"]);
    assert_eq!(ids(&store, "Location", "near", "28.5672|77.2100|5"), ["aiims", "safdarjung"]);
    assert_eq!(ids(&store, "Location", "near", "28.5672|77.2100"), ["aiims", "connaught", "safdarjung"], "10 km by default");
    assert_eq!(ids(&store, "Location", "near", "28.5672|77.2100|25|km"), ["aiims", "connaught", "gurgaon", "safdarjung"]);
    assert_eq!(ids(&store, "Location", "near", "28.5672|77.2100|15|mi"), ["aiims", "connaught", "gurgaon", "safdarjung"]);
    assert_eq!(ids(&store, "Location", "near", "28.5672|77.2100|300|m"), ["aiims"]);
    assert_eq!(ids(&store, "Location", "near", "19.0760|72.8777|1"), ["mumbai"]);
    assert_eq!(ids(&store, "Location", "near", "28.5672|77.2100|30000").len(), 9, "the whole globe");
    // Across the antimeridian (~2.1 km apart) and over the pole (~2.2 km apart).
    assert_eq!(ids(&store, "Location", "near", "-17|179.995|5"), ["fiji-east", "fiji-west"]);
    assert_eq!(ids(&store, "Location", "near", "-17|-179.999|1.5"), ["fiji-east", "fiji-west"]);
    assert_eq!(ids(&store, "Location", "near", "89.99|90|5"), ["pole-a", "pole-b"]);
    assert_eq!(ids(&store, "Location", "near", "90|0|1.2"), ["pole-a", "pole-b"]);
    // OR of two circles.
    assert_eq!(ids(&store, "Location", "near", "19.0760|72.8777|1,-17|179.99|0.1"), ["fiji-east", "mumbai"]);
    assert_eq!(ids(&store, "Location", "near:missing", "true"), ["nowhere"]);

    // The boundary: exact distances to the search's own precision, both sides of each place.
    let centre = (28.5672, 77.2100);
    for (id, lat, lon) in places {
        let d = haversine_km(centre, (lat, lon));
        if d < 1e-9 {
            continue;
        }
        let inside = ids(&store, "Location", "near", &format!("{}|{}|{}", centre.0, centre.1, d * (1.0 + 1e-7)));
        let outside = ids(&store, "Location", "near", &format!("{}|{}|{}", centre.0, centre.1, d * (1.0 - 1e-7)));
        assert!(inside.contains(&id.to_string()), "{id} at {d} km");
        assert!(!outside.contains(&id.to_string()), "{id} at {d} km");
    }

    // Through a chain: Encounters at a location near a point.
    put(&store, json!({"resourceType": "Encounter", "id": "e1", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "location": [{"location": {"reference": "Location/safdarjung"}}]}));
    assert_eq!(ids(&store, "Encounter", "location.near", "28.5672|77.2100|1"), ["e1"]);
    assert!(ids(&store, "Encounter", "location.near", "19.0760|72.8777|1").is_empty());

    let report = store.read(|c| vaidya_store::verify::verify(c, &vkey)).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);

    // Moving a stored position's unit vector (what the distance test reads) is caught.
    store.shutdown();
    let conn = store.intruder();
    assert_eq!(conn.execute("UPDATE ix_geo SET x = x + 0.001 WHERE lat = 19.076", &[]).unwrap(), 1);
    let report = vaidya_store::verify::verify(&conn, &vkey).unwrap();
    assert!(report.problems.iter().any(|p| p.what.contains("search index rows of Location/mumbai")), "{:?}", report.problems);
}

/// SQLite stores a REAL -0.0 as the integer 0 and gives back 0.0: the rows must still verify.
fn zero_and_negative_zero_verify(engine: Engine) {
    let (store, vkey) = open(engine);
    put(&store, json!({"resourceType": "Location", "id": "null-island", "position": {"latitude": -0.0, "longitude": 0.0}}));
    put(&store, json!({"resourceType": "Observation", "id": "z", "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "x"}]}, "valueQuantity": {"value": -0.0}}));
    assert_eq!(ids(&store, "Location", "near", "0|0|1"), ["null-island"]);
    assert_eq!(ids(&store, "Observation", "code-value-quantity", "x$0"), ["z"]);
    let report = store.read(|c| vaidya_store::verify::verify(c, &vkey)).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

on_both_engines!(composites_match_within_one_node, near_finds_locations_by_great_circle_distance, zero_and_negative_zero_verify);
