//! The S3 target against a real SeaweedFS (started per test by `vaidya_backup::seaweed`):
//! what it writes, lists and reads, what Object Lock refuses, and what `check` finds.

use std::net::TcpListener;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use vaidya_backup::s3::{S3Config, S3Target};
use vaidya_backup::seaweed::{DEFAULT_RETENTION_DAYS, LOCKED_BUCKET, Seaweed};
use vaidya_backup::target::{ObjectVersion, Target, TargetError};

const SEGMENT: &str = "data/00000000000000000001-00000000000000000100-1764230000000.seg";

fn target(config: S3Config) -> S3Target {
    S3Target::new(config).expect("valid configuration")
}

/// Bytes that differ from one call to the next and compress badly (as encrypted segments do).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

#[test]
fn put_get_round_trip_with_compliance_retention() {
    let seaweed = Seaweed::start();
    let mut config = seaweed.config(LOCKED_BUCKET, &seaweed.server, "hospital/");
    config.retention_days = Some(3);
    let bucket = target(config);
    let body = noise(1 << 20, 1);
    let before = now_ms();
    bucket.put(SEGMENT, &body).unwrap();
    // A key that needs percent-encoding, to prove the signature covers the encoded path.
    let odd_key = "data/odd name+plus=é~.seg";
    bucket.put(odd_key, b"odd").unwrap();

    assert_eq!(bucket.get(SEGMENT, None).unwrap(), body);
    assert_eq!(bucket.get(odd_key, None).unwrap(), b"odd");

    let versions = bucket.list_versions("data/").unwrap();
    assert_eq!(versions.len(), 2, "{versions:?}");
    let seg = versions.iter().find(|v| v.key == SEGMENT).expect("segment listed without the prefix");
    assert_eq!(seg.size, body.len() as u64);
    assert!(!seg.delete_marker);
    // S3 keeps LastModified in whole seconds.
    assert!(seg.last_modified_ms >= before - 1000 && seg.last_modified_ms <= now_ms() + 1000, "{seg:?}");
    let version = seg.version_id.clone().expect("a versioned bucket gives version ids");
    assert_eq!(bucket.get(SEGMENT, Some(&version)).unwrap(), body);

    // The retention Vaidya asked for (3 days), not the bucket's default (1 day).
    let (mode, until) = seaweed.retention(LOCKED_BUCKET, &format!("hospital/{SEGMENT}"), &version);
    assert_eq!(mode, "COMPLIANCE");
    let until = OffsetDateTime::parse(&until, &Rfc3339).unwrap();
    let ahead = until - OffsetDateTime::now_utc();
    assert!(ahead > time::Duration::days(3) - time::Duration::minutes(5), "{ahead}");
    assert!(ahead <= time::Duration::days(3), "{ahead}");
}

#[test]
fn a_64_mib_segment_round_trips() {
    let seaweed = Seaweed::start();
    let bucket = target(seaweed.config(LOCKED_BUCKET, &seaweed.server, ""));
    let body = noise(64 << 20, 2);
    bucket.put(SEGMENT, &body).unwrap();
    let back = bucket.get(SEGMENT, None).unwrap();
    assert!(back == body, "64 MiB came back different ({} bytes)", back.len());
}

#[test]
fn overwrite_keeps_both_versions_readable() {
    let seaweed = Seaweed::start();
    let bucket = target(seaweed.config(LOCKED_BUCKET, &seaweed.server, "hospital/"));
    bucket.put(SEGMENT, b"first").unwrap();
    bucket.put(SEGMENT, b"second, longer").unwrap();

    let versions = bucket.list_versions("data/").unwrap();
    assert_eq!(versions.len(), 2, "{versions:?}");
    // Newest first.
    assert_eq!(versions[0].size, 14);
    assert_eq!(versions[1].size, 5);
    assert!(versions[0].last_modified_ms >= versions[1].last_modified_ms);
    let newest = versions[0].version_id.as_deref().unwrap();
    let oldest = versions[1].version_id.as_deref().unwrap();
    assert_ne!(newest, oldest);
    assert_eq!(bucket.get(SEGMENT, Some(oldest)).unwrap(), b"first");
    assert_eq!(bucket.get(SEGMENT, Some(newest)).unwrap(), b"second, longer");
    assert_eq!(bucket.get(SEGMENT, None).unwrap(), b"second, longer");
}

#[test]
fn a_delete_marker_hides_nothing_from_a_version_listing() {
    let seaweed = Seaweed::start();
    let bucket = target(seaweed.config(LOCKED_BUCKET, &seaweed.server, ""));
    bucket.put(SEGMENT, b"kept").unwrap();
    // An attacker with the admin credentials deletes the object (no version id).
    let (status, body) = seaweed.delete_as(&seaweed.admin, LOCKED_BUCKET, SEGMENT, None);
    assert_eq!(status, 204, "{body}");

    let versions = bucket.list_versions("data/").unwrap();
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert!(versions[0].delete_marker, "the newest entry is the marker: {versions:?}");
    assert_eq!(versions[0].key, SEGMENT);
    assert!(!versions[1].delete_marker);
    assert!(matches!(bucket.get(SEGMENT, None), Err(TargetError::NotFound { .. })));
    let kept = versions[1].version_id.as_deref().unwrap();
    assert_eq!(bucket.get(SEGMENT, Some(kept)).unwrap(), b"kept");
}

#[test]
fn a_locked_version_cannot_be_destroyed() {
    let seaweed = Seaweed::start();
    let bucket = target(seaweed.config(LOCKED_BUCKET, &seaweed.server, ""));
    bucket.put(SEGMENT, b"precious").unwrap();
    let versions = bucket.list_versions("").unwrap();
    let version = versions[0].version_id.clone().unwrap();

    // The server's credentials cannot even add a delete marker (the bucket policy denies it)…
    let (status, body) = seaweed.delete_as(&seaweed.server, LOCKED_BUCKET, SEGMENT, None);
    assert_eq!(status, 403, "{body}");
    // …nor delete the version; and Object Lock refuses it to the admin too.
    for who in [&seaweed.server, &seaweed.admin] {
        let (status, body) = seaweed.delete_as(who, LOCKED_BUCKET, SEGMENT, Some(&version));
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("AccessDenied"), "{body}");
    }
    assert_eq!(bucket.get(SEGMENT, Some(&version)).unwrap(), b"precious");
    assert_eq!(bucket.list_versions("").unwrap(), versions);
}

#[test]
fn listing_follows_pages_and_keeps_s3_order() {
    let seaweed = Seaweed::start();
    let config = seaweed.config(LOCKED_BUCKET, &seaweed.server, "p/");
    for i in 0..10 {
        let bucket = target(config.clone());
        let key = format!("data/{i:02}.seg");
        bucket.put(&key, format!("{i} old").as_bytes()).unwrap();
        bucket.put(&key, format!("{i} new!").as_bytes()).unwrap();
        if i % 4 == 0 {
            let (status, body) = seaweed.delete_as(&seaweed.admin, LOCKED_BUCKET, &format!("p/{key}"), None);
            assert_eq!(status, 204, "{body}");
        }
    }
    let whole = target(config.clone()).list_versions("data/").unwrap();
    // Pages of 7 cut through keys and through one key's versions.
    let paged = target(config).with_page_size(7).list_versions("data/").unwrap();
    assert_eq!(whole.len(), 10 * 2 + 3, "{whole:?}");
    assert_eq!(paged, whole);

    for (i, group) in whole.chunk_by(|a, b| a.key == b.key).enumerate() {
        let key = format!("data/{i:02}.seg");
        let shape: Vec<(bool, u64)> = group.iter().map(|v| (v.delete_marker, v.size)).collect();
        let expected = if i % 4 == 0 { vec![(true, 0), (false, 6), (false, 5)] } else { vec![(false, 6), (false, 5)] };
        assert!(group.iter().all(|v| v.key == key), "{group:?}");
        assert_eq!(shape, expected, "{key}: {group:?}");
        assert!(group.windows(2).all(|w| w[0].last_modified_ms >= w[1].last_modified_ms));
    }
    let keys: Vec<&ObjectVersion> = whole.iter().filter(|v| v.version_id.is_none()).collect();
    assert!(keys.is_empty(), "every entry has a version id: {keys:?}");
}

#[test]
fn check_passes_on_the_locked_bucket_with_the_server_credentials() {
    let seaweed = Seaweed::start();
    let bucket = target(seaweed.config(LOCKED_BUCKET, &seaweed.server, "hospital/"));
    let safety = bucket.check().unwrap();
    assert!(safety.problems.is_empty(), "{safety:#?}");
    let facts = safety.facts.join("\n");
    assert!(facts.contains("versioning: Enabled"), "{facts}");
    assert_eq!(DEFAULT_RETENTION_DAYS, 1);
    assert!(facts.contains("default retention: COMPLIANCE 1 day"), "{facts}");
    assert!(facts.contains("delete without a version id: refused (AccessDenied)"), "{facts}");
    assert!(facts.contains("delete of a locked version: refused (AccessDenied)"), "{facts}");
    // The probe stays behind, locked, under the prefix.
    let probes = bucket.list_versions("probe/").unwrap();
    assert_eq!(probes.len(), 1, "{probes:?}");
}

#[test]
fn check_finds_credentials_that_can_delete() {
    let seaweed = Seaweed::start();
    // The admin credentials can add delete markers; Object Lock still keeps the version.
    let bucket = target(seaweed.config(LOCKED_BUCKET, &seaweed.admin, ""));
    let safety = bucket.check().unwrap();
    assert_eq!(safety.problems.len(), 1, "{safety:#?}");
    assert!(safety.problems[0].contains("can delete backups"), "{safety:#?}");
    assert!(safety.facts.join("\n").contains("delete of a locked version: refused"), "{safety:#?}");
}

#[test]
fn check_names_every_problem_of_an_unlocked_bucket() {
    let seaweed = Seaweed::start();
    seaweed.create_unlocked_bucket("plain");
    let bucket = target(seaweed.config("plain", &seaweed.server, "hospital/"));
    let safety = bucket.check().unwrap();
    let problems = safety.problems.join("\n");
    assert_eq!(safety.problems.len(), 3, "{safety:#?}");
    assert!(problems.contains("Versioning is not enabled on bucket plain"), "{problems}");
    assert!(problems.contains("Object Lock is not enabled on bucket plain"), "{problems}");
    assert!(problems.contains("can delete backups"), "{problems}");
    assert!(safety.facts.iter().any(|f| f == "versioning: never enabled"), "{safety:#?}");
}

#[test]
fn a_wrong_secret_key_is_refused_clearly() {
    let seaweed = Seaweed::start();
    let mut config = seaweed.config(LOCKED_BUCKET, &seaweed.server, "");
    config.secret_access_key = "not-the-secret-0123456789".into();
    let bucket = target(config);
    for result in [bucket.put(SEGMENT, b"x").map(|_| ()), bucket.list_versions("").map(|_| ())] {
        match result {
            Err(TargetError::Refused { message, .. }) => {
                assert!(message.contains("HTTP 403"), "{message}");
                assert!(message.contains("SignatureDoesNotMatch"), "{message}");
                assert!(!message.contains("not-the-secret"), "{message}");
            }
            other => panic!("expected Refused, got {other:?}"),
        }
    }
    // An unknown access key, likewise.
    let mut config = seaweed.config(LOCKED_BUCKET, &seaweed.server, "");
    config.access_key_id = "NOSUCHKEY".into();
    match target(config).get(SEGMENT, None) {
        Err(TargetError::Refused { message, .. }) => assert!(message.contains("HTTP 403"), "{message}"),
        other => panic!("expected Refused, got {other:?}"),
    }
}

#[test]
fn missing_objects_and_versions_are_not_found() {
    let seaweed = Seaweed::start();
    let bucket = target(seaweed.config(LOCKED_BUCKET, &seaweed.server, ""));
    assert!(matches!(bucket.get("data/none.seg", None), Err(TargetError::NotFound { .. })));
    bucket.put(SEGMENT, b"x").unwrap();
    let wrong_version = "0000000000000000000000000000000a";
    match bucket.get(SEGMENT, Some(wrong_version)) {
        Err(TargetError::NotFound { key, .. }) => assert_eq!(key, SEGMENT),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(bucket.list_versions("nothing/").unwrap().is_empty());
}

#[test]
fn an_unreachable_endpoint_is_unreachable() {
    // A port that was free a moment ago: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let bucket = target(S3Config {
        endpoint: format!("http://127.0.0.1:{port}"),
        bucket: "b".into(),
        region: "us-east-1".into(),
        prefix: String::new(),
        access_key_id: "AKID".into(),
        secret_access_key: "secret".into(),
        retention_days: None,
        name: "nowhere".into(),
    });
    assert!(matches!(bucket.put(SEGMENT, b"x"), Err(TargetError::Unreachable { .. })));
    assert!(matches!(bucket.list_versions(""), Err(TargetError::Unreachable { .. })));
    assert!(matches!(bucket.get(SEGMENT, None), Err(TargetError::Unreachable { .. })));
    match bucket.check() {
        Err(TargetError::Unreachable { message, target }) => {
            assert_eq!(target, "nowhere");
            assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
}
