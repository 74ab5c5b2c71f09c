//! Restore from a database snapshot, against a real store and a directory target: the snapshot
//! made from a live database plus the segments after it give the same ledger as the original;
//! a segment that disagrees with the snapshot's ledger is refused by name, even when it is
//! signed with the right key; a damaged part makes the snapshot passed over.

use std::path::Path;
use std::sync::Arc;
use vaidya_backup::dir::DirTarget;
use vaidya_backup::restore::{Plan, RestoreError, Until};
use vaidya_backup::seal::{Identity, Recipients, seal};
use vaidya_backup::segment::{self, Ledger, Segment};
use vaidya_backup::target::Target;
use vaidya_ledger::{Entry, Frontier, GENESIS_PREV, LedgerKey};
use vaidya_store::Store;

fn key_copy(key: &LedgerKey) -> LedgerKey {
    LedgerKey::from_private(key.private_text()).unwrap()
}

fn write_patients(store: &Store, from: usize, to: usize) {
    for i in from..to {
        let resource = serde_json::json!({"resourceType": "Basic", "code": {"text": format!("n{i}")}});
        let index = vaidya_fhir::index::extract_all(&resource);
        let body = vaidya_store::Body::from_resource(&resource);
        store.write_blocking(move |tx| tx.put("test", "Basic", &format!("b{i}"), &body, &index).map(|_| ())).unwrap();
    }
}

fn ledger_bytes(db: &Path) -> Vec<Vec<u8>> {
    let conn = vaidya_store::open_read_only(db).unwrap();
    let mut stmt = conn.prepare("SELECT entry FROM ledger ORDER BY seq").unwrap();
    stmt.query_map([], |r| r.get::<_, Vec<u8>>(0)).unwrap().map(Result::unwrap).collect()
}

fn root_of(entries: &[Vec<u8>]) -> vaidya_ledger::Hash {
    let mut f = Frontier::default();
    for (i, e) in entries.iter().enumerate() {
        f.append(i as u64, vaidya_ledger::hash_encoded(e)).unwrap();
    }
    f.root(entries.len() as u64).unwrap()
}

/// Put entries `first..=last` of `all` as one segment signed with `key`.
fn put_segment(target: &dyn Target, key: &LedgerKey, to: &Recipients, all: &[Vec<u8>], first: u64, last: u64, made: i64) -> String {
    let cp = vaidya_ledger::sign_checkpoint(key, last, root_of(&all[..last as usize]), made);
    let seg = Segment {
        ledger: Ledger::Data,
        first,
        entries: all[(first - 1) as usize..last as usize].to_vec(),
        checkpoint: cp,
        state: None,
        made_ms: made,
    };
    let name = segment::object_key("", Ledger::Data, first, last, made);
    target.put(&name, &seal(&seg.encode(key), to).unwrap()).unwrap();
    name
}

struct Setup {
    work: tempfile::TempDir,
    key: LedgerKey,
    identity: String,
    to: Recipients,
    /// The original ledger: 30 entries, the snapshot taken at 20.
    all: Vec<Vec<u8>>,
    target: Arc<DirTarget>,
}

fn setup() -> Setup {
    let work = tempfile::tempdir().unwrap();
    let key = LedgerKey::generate("vaidya.test/ledger");
    let (identity, recipient) = Identity::generate();
    let to = Recipients::parse(&[recipient]).unwrap();
    let db = work.path().join("live.db");
    let store = Store::open(&db, key_copy(&key)).unwrap();
    write_patients(&store, 0, 20);
    let target = Arc::new(DirTarget::new("t", &work.path().join("target")));
    target.put(&vaidya_backup::ship::key_object(key.verifier_text()), &seal(key.private_text().as_bytes(), &to).unwrap()).unwrap();
    let made = vaidya_backup::snapshot::make(&db, &work.path().join("snap-work"), &key, &to, &|| false).unwrap();
    assert_eq!(made.manifest.entries, 20);
    made.upload(&*target, &|| false).unwrap();
    made.discard();
    write_patients(&store, 20, 30);
    store.shutdown();
    let all = ledger_bytes(&db);
    assert_eq!(all.len(), 30);
    Setup { work, key, identity, to, all, target }
}

impl Setup {
    fn restore(&self, target: Arc<DirTarget>, into: &str) -> Result<(vaidya_backup::restore::Report, bool), RestoreError> {
        let plan = Plan::prepare(target, Identity::parse(&self.identity).unwrap(), None)?;
        let dir = self.work.path().join(into);
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("vaidya.db");
        let (from, skipped) = plan.restore_snapshot(&db, Until::Latest)?;
        assert!(skipped.is_empty(), "{skipped:?}");
        let used = from.is_some();
        let store = Store::open(&db, key_copy(plan.key())).unwrap();
        let report = plan.run(&store, &dir.join("audit"), Until::Latest, from.as_ref(), &|_, _| {});
        store.shutdown();
        report.map(|r| (r, used))
    }
}

#[test]
fn a_snapshot_and_the_segments_after_it_give_the_original_ledger() {
    let s = setup();
    put_segment(&*s.target, &s.key, &s.to, &s.all, 1, 10, 1);
    put_segment(&*s.target, &s.key, &s.to, &s.all, 11, 20, 2);
    put_segment(&*s.target, &s.key, &s.to, &s.all, 21, 30, 3);
    let (report, used) = s.restore(s.target.clone(), "restored").unwrap();
    assert!(used, "the snapshot was used");
    assert_eq!(report.data.entries, 30);
    assert_eq!(report.duplicates, 2, "the two segments the snapshot covers were checked, not replayed");
    assert!(report.missing_under_snapshot.is_empty());
    assert_eq!(report.data.checkpoint_root, hex::encode(root_of(&s.all).0));
    let restored = ledger_bytes(&s.work.path().join("restored/vaidya.db"));
    assert_eq!(restored, s.all, "byte for byte the original ledger");
    let conn = vaidya_store::open_read_only(&s.work.path().join("restored/vaidya.db")).unwrap();
    let full = vaidya_store::verify::verify(&conn, s.key.verifier_text()).unwrap();
    assert!(full.problems.is_empty(), "{:?}", full.problems);
}

#[test]
fn a_segment_that_disagrees_with_the_snapshot_is_refused_by_name_even_if_signed() {
    let s = setup();
    // Entries 11..=20 rewritten (a changed record), chained and signed with the ledger key:
    // what only a holder of the key could make; it still contradicts the snapshot.
    let mut forged = s.all.clone();
    let mut prev = vaidya_ledger::hash_encoded(&forged[9]);
    for e in forged.iter_mut().take(20).skip(10) {
        let mut entry = Entry::decode(e).unwrap();
        entry.content = String::from_utf8(entry.content).unwrap().replace("\"n1", "\"x1").into_bytes();
        entry.prev_hash = prev;
        *e = entry.encode();
        prev = vaidya_ledger::hash_encoded(e);
    }
    assert_ne!(forged[10], s.all[10]);
    assert_ne!(GENESIS_PREV, prev);
    put_segment(&*s.target, &s.key, &s.to, &s.all, 1, 10, 1);
    let name = put_segment(&*s.target, &s.key, &s.to, &forged, 11, 20, 2);
    put_segment(&*s.target, &s.key, &s.to, &s.all, 21, 30, 3);
    match s.restore(s.target.clone(), "forged") {
        Err(RestoreError::Bad { object, reason }) => {
            assert_eq!(object, name);
            assert!(reason.contains("disagrees"), "{reason}");
        }
        Err(other) => panic!("{other}"),
        Ok((r, _)) => panic!("restored {} entries", r.data.entries),
    }
}

#[test]
fn a_damaged_snapshot_part_is_passed_over_and_everything_replayed() {
    let s = setup();
    put_segment(&*s.target, &s.key, &s.to, &s.all, 1, 10, 1);
    put_segment(&*s.target, &s.key, &s.to, &s.all, 11, 20, 2);
    put_segment(&*s.target, &s.key, &s.to, &s.all, 21, 30, 3);
    let snapshot_dir = std::fs::read_dir(s.work.path().join("target/snapshot")).unwrap().next().unwrap().unwrap().path();
    let part = snapshot_dir.join("part-00000");
    let mut bytes = std::fs::read(&part).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&part, bytes).unwrap();
    let plan = Plan::prepare(s.target.clone(), Identity::parse(&s.identity).unwrap(), None).unwrap();
    let dir = s.work.path().join("damaged");
    std::fs::create_dir_all(&dir).unwrap();
    let (from, skipped) = plan.restore_snapshot(&dir.join("vaidya.db"), Until::Latest).unwrap();
    assert!(from.is_none());
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].contains("part-00000") && skipped[0].contains("altered"), "{skipped:?}");
    assert!(!dir.join("vaidya.db").exists(), "what was written of it is removed");
    let store = Store::open(&dir.join("vaidya.db"), key_copy(plan.key())).unwrap();
    let report = plan.run(&store, &dir.join("audit"), Until::Latest, None, &|_, _| {}).unwrap();
    store.shutdown();
    assert_eq!(report.data.entries, 30);
    assert_eq!(ledger_bytes(&dir.join("vaidya.db")), s.all);
}

#[test]
fn a_segment_missing_under_the_snapshot_is_reported_and_the_restore_completes() {
    let s = setup();
    put_segment(&*s.target, &s.key, &s.to, &s.all, 1, 10, 1);
    // Entries 11..=20 were never put (or were removed): the snapshot holds them.
    put_segment(&*s.target, &s.key, &s.to, &s.all, 21, 30, 3);
    let (report, used) = s.restore(s.target.clone(), "missing").unwrap();
    assert!(used);
    assert_eq!(report.data.entries, 30);
    assert_eq!(report.missing_under_snapshot, vec![(11, 20)]);
    assert_eq!(ledger_bytes(&s.work.path().join("missing/vaidya.db")), s.all);
}
