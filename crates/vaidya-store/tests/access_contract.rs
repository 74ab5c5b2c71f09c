//! The storage contract for the access state (accounts and tokens, `vaidya_store::tokens`;
//! break-the-glass grants, `vaidya_store::grants`), run on both engines:
//! SQLite, and a real PostgreSQL server started for the test (`common/pg.rs`). The same
//! assertions must hold on each (issue 8: one store, two engines).

mod common;

use common::pg::TestPg;
use vaidya_store::sql::{Db, PgConn};
use vaidya_store::grants::{self, Grant};
use vaidya_store::tokens::{self, KIND_API, KIND_SESSION};

fn contract(db: &impl Db) {
    // Accounts: created once; a hostile name is data, not SQL.
    let odd = "o'brien ?1 $1 \"x\" -- डॉ. शर्मा";
    assert!(tokens::insert_user(db, "asha", "registration", Some("opd"), Some("$argon2id$hash"), true).unwrap());
    assert!(!tokens::insert_user(db, "asha", "doctor", None, None, false).unwrap(), "a taken name changes nothing");
    assert!(tokens::insert_user(db, odd, "doctor", None, None, false).unwrap());
    let users = tokens::list_users(db).unwrap();
    assert_eq!(users.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(), ["asha", odd]);
    assert_eq!((users[0].role.as_str(), users[0].department.as_deref(), users[0].must_change_password), ("registration", Some("opd"), true));
    assert_eq!(tokens::user_role(db, odd).unwrap().as_deref(), Some("doctor"));
    assert_eq!(tokens::user_role(db, "nobody").unwrap(), None);
    assert_eq!(tokens::user_patient(db, odd).unwrap(), None);
    assert!(tokens::set_user_patient(db, odd, "pt-1").unwrap());
    assert_eq!(tokens::user_patient(db, odd).unwrap().as_deref(), Some("pt-1"));
    assert!(!tokens::set_user_patient(db, "nobody", "pt-1").unwrap());

    // Tokens: stored with the hash's exact bytes, read with their account.
    let hash: Vec<u8> = (0..=255u8).collect();
    tokens::insert_token(db, "t1", &hash, "asha", Some(1_900_000_000_000)).unwrap();
    tokens::insert_token_of_kind(db, "t2", b"\x00\x01", odd, None, KIND_SESSION, Some("patient/*.read")).unwrap();
    let t1 = tokens::find_token(db, "t1").unwrap().unwrap();
    assert_eq!((t1.secret_hash.clone(), t1.user.as_str(), t1.role.as_str(), t1.kind.as_str()), (hash, "asha", "registration", KIND_API));
    assert_eq!((t1.expires_ms, t1.revoked_ms, t1.last_used_ms, t1.scopes.clone()), (Some(1_900_000_000_000), None, None, None));
    assert!(t1.must_change_password);
    let t2 = tokens::find_token(db, "t2").unwrap().unwrap();
    assert_eq!((t2.patient.as_deref(), t2.scopes.as_deref()), (Some("pt-1"), Some("patient/*.read")));
    assert!(t2.last_used_ms.is_some(), "a session starts as just used");
    assert!(tokens::find_token(db, "t3").unwrap().is_none());
    assert_eq!(tokens::list_tokens(db).unwrap().len(), 2);
    // Last use only moves forward.
    tokens::touch_token(db, "t1", 5_000).unwrap();
    tokens::touch_token(db, "t1", 4_000).unwrap();
    assert_eq!(tokens::find_token(db, "t1").unwrap().unwrap().last_used_ms, Some(5_000));
    // Revocation: once.
    assert_eq!(tokens::revoke_token(db, "t1").unwrap(), 1);
    assert_eq!(tokens::revoke_token(db, "t1").unwrap(), 0);
    assert!(tokens::find_token(db, "t1").unwrap().unwrap().revoked_ms.is_some());
    assert_eq!(tokens::revoke_user_tokens(db, odd).unwrap(), 1);

    // Failed logins count up and lock at the third; unknown accounts are not counted.
    let lock = |n: u32| (n >= 3).then_some(60_000);
    assert_eq!(tokens::record_login_failure(db, "asha", 1_000, lock).unwrap(), Some((1, None)));
    assert_eq!(tokens::record_login_failure(db, "asha", 1_000, lock).unwrap(), Some((2, None)));
    assert_eq!(tokens::record_login_failure(db, "asha", 1_000, lock).unwrap(), Some((3, Some(61_000))));
    assert_eq!(tokens::record_login_failure(db, "nobody", 1_000, lock).unwrap(), None);
    let login = tokens::find_login(db, "asha").unwrap().unwrap();
    assert_eq!((login.failed_logins, login.locked_until_ms), (3, Some(61_000)));
    tokens::record_login_success(db, "asha").unwrap();
    let login = tokens::find_login(db, "asha").unwrap().unwrap();
    assert_eq!((login.failed_logins, login.locked_until_ms), (0, None));

    // TOTP: a time step is accepted once; a pending secret becomes active only with itself.
    assert!(tokens::accept_totp_step(db, "asha", 100).unwrap());
    assert!(!tokens::accept_totp_step(db, "asha", 100).unwrap(), "a code is never accepted twice");
    assert!(!tokens::accept_totp_step(db, "asha", 99).unwrap());
    assert!(tokens::set_totp_pending(db, "asha", "NEWSECRET").unwrap());
    assert!(!tokens::confirm_totp(db, "asha", "OTHER", 101).unwrap());
    assert!(tokens::confirm_totp(db, "asha", "NEWSECRET", 101).unwrap());
    let login = tokens::find_login(db, "asha").unwrap().unwrap();
    assert_eq!((login.totp_secret.as_deref(), login.totp_pending, login.totp_last_step), (Some("NEWSECRET"), None, Some(101)));

    // A chosen password clears the must-change flag; suspension shows on the account's tokens.
    assert!(tokens::set_password(db, "asha", "$argon2id$new").unwrap());
    assert!(!tokens::find_login(db, "asha").unwrap().unwrap().must_change_password);
    assert!(tokens::set_user_disabled(db, "asha", Some(7_000)).unwrap());
    assert_eq!(tokens::find_token(db, "t1").unwrap().unwrap().user_disabled_ms, Some(7_000));
    assert!(tokens::set_user_disabled(db, "asha", None).unwrap());
    assert!(tokens::unlock_user(db, "asha").unwrap());

    // Break-the-glass grants: active until they expire, for that user and patient only.
    let g = |patient: &str, granted_ms: i64, reason: &str| Grant {
        user: odd.to_string(),
        patient: patient.to_string(),
        reason: reason.to_string(),
        granted_ms,
        expires_ms: granted_ms + 3_600_000,
    };
    grants::insert(db, &g("pt-9", 1_000, "unconscious in casualty")).unwrap();
    grants::insert(db, &g("pt-8", 2_000, "transfer")).unwrap();
    assert!(grants::active(db, odd, "pt-9", 1_000 + 3_599_999).unwrap());
    assert!(!grants::active(db, odd, "pt-9", 1_000 + 3_600_000).unwrap(), "expired");
    assert!(!grants::active(db, "asha", "pt-9", 1_500).unwrap(), "another clinician");
    assert!(!grants::active(db, odd, "pt-7", 1_500).unwrap(), "another patient");
    // The same grant again replaces its reason; the review lists newest first.
    grants::insert(db, &g("pt-9", 1_000, "cardiac arrest")).unwrap();
    let review = grants::since(db, 0).unwrap();
    assert_eq!(review.iter().map(|r| (r.patient.as_str(), r.reason.as_str())).collect::<Vec<_>>(), [("pt-8", "transfer"), ("pt-9", "cardiac arrest")]);
    assert_eq!(grants::since(db, 1_500).unwrap().len(), 1);
}

#[test]
fn access_state_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("db.sqlite")).unwrap();
    conn.execute_batch(vaidya_store::schema::SCHEMA).unwrap();
    for table in vaidya_store::schema::ADDED_TABLES {
        conn.execute_batch(table).unwrap();
    }
    contract(&conn);
}

#[test]
fn access_state_on_postgres() {
    let pg = TestPg::start();
    let db = PgConn::connect(&pg.fresh_database()).unwrap();
    vaidya_store::schema::postgres::init(&db).unwrap();
    contract(&db);
    // A value of the wrong type for a column is a clear error, not a panic or a silent cast.
    let err = db.execute("UPDATE api_user SET failed_logins = ?1 WHERE name = ?2", &vaidya_store::sql_params!["many", "asha"]).unwrap_err();
    assert!(err.to_string().contains("PostgreSQL error"), "{err}");
}
