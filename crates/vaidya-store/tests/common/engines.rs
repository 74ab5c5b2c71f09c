//! The engines a store test runs on. A test written as `fn name(engine: Engine)` and listed in
//! `on_both_engines!(name)` runs twice: on a SQLite file and on a real PostgreSQL server of its
//! own (`pg.rs`): the same assertions, the storage contract.

#![allow(dead_code)]

use super::pg::TestPg;
use std::sync::Arc;
use vaidya_ledger::LedgerKey;
use vaidya_store::{Location, Store, StoreOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A store and what it lives in (dropped after it: the store stops first).
pub struct Opened {
    pub store: Arc<Store>,
    pub location: Location,
    _dir: tempfile::TempDir,
    _pg: Option<TestPg>,
}

impl std::ops::Deref for Opened {
    type Target = Arc<Store>;
    fn deref(&self) -> &Arc<Store> {
        &self.store
    }
}

/// A new, empty store on `engine`, signing with `key`.
pub fn open_with_key(engine: Engine, key: LedgerKey) -> Opened {
    let dir = tempfile::tempdir().unwrap();
    let (location, pg) = match engine {
        Engine::Sqlite => (Location::File(dir.path().join("db")), None),
        Engine::Postgres => {
            let pg = TestPg::start();
            (Location::postgres(&pg.fresh_database()), Some(pg))
        }
    };
    let store = Arc::new(Store::open_location(location.clone(), key, StoreOptions::default()).unwrap());
    Opened { store, location, _dir: dir, _pg: pg }
}

/// A new, empty store on `engine`, and its ledger's verifier key.
pub fn open(engine: Engine) -> (Opened, String) {
    let key = LedgerKey::generate("vaidya.test/ledger");
    let vkey = key.verifier_text().to_string();
    (open_with_key(engine, key), vkey)
}

/// `mod name { #[test] fn sqlite() ...; #[test] fn postgres() ... }` for each test function
/// `name(engine: Engine)`.
#[macro_export]
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn sqlite() {
                    super::$name($crate::common::engines::Engine::Sqlite)
                }
                #[test]
                fn postgres() {
                    super::$name($crate::common::engines::Engine::Postgres)
                }
            }
        )*
    };
}

impl Opened {
    /// A connection that writes around the store (a test playing an intruder with database
    /// access); stop the store first.
    pub fn intruder(&self) -> vaidya_store::Conn {
        match &self.location {
            Location::File(path) => vaidya_store::Conn::Sqlite(rusqlite::Connection::open(path).unwrap()),
            pg => pg.open_reader().unwrap(),
        }
    }
}
