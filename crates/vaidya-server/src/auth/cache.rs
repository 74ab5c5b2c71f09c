//! Bearer tokens already looked up, kept until anything is committed to the database.
//!
//! Why: every request presents a token, and looking it up (a join of the token and its account)
//! was a fifth of the CPU of a read. Why this is safe: an entry is used only while the
//! database's `PRAGMA data_version`, read on a connection of the cache's own, is the one it was
//! read under; that number changes when any other connection or process commits (the server's
//! writer, or an operator's `vaidya token --revoke` / `vaidya user disable` on the command
//! line), and the whole cache is then dropped. A revocation therefore takes effect on the next
//! request, as without the cache. On a busy day, with many writes, it simply hits less often.

use vaidya_store::Connection;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use vaidya_store::tokens::TokenRow;

/// Tokens kept at most (the cache is emptied when full: a hospital has a few thousand staff).
pub const MAX_CACHED_TOKENS: usize = 20_000;

pub struct TokenCache {
    /// Used only to ask for `data_version`; `None` on PostgreSQL, where another server's
    /// commits are not announced: there what is kept lives at most the current second, so a
    /// revocation or a suspension takes effect within a second on every server.
    version: Option<Mutex<Connection>>,
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    version: i64,
    rows: HashMap<String, TokenRow>,
}

impl TokenCache {
    /// A cache for the database at `db` (opened read-only here).
    pub fn open(db: &Path) -> Result<TokenCache, vaidya_store::StoreError> {
        let conn = vaidya_store::open_read_only(db)?;
        Ok(TokenCache { version: Some(Mutex::new(conn)), entries: Mutex::new(Entries::default()) })
    }

    /// The cache for a store wherever it is: none on PostgreSQL (see `version`).
    pub fn for_location(location: &vaidya_store::Location) -> Result<TokenCache, vaidya_store::StoreError> {
        match location {
            vaidya_store::Location::File(path) => TokenCache::open(path),
            vaidya_store::Location::Postgres(_) => Ok(TokenCache { version: None, entries: Mutex::new(Entries::default()) }),
        }
    }

    /// The number the kept rows are valid under: SQLite's `data_version`, or on PostgreSQL
    /// the current second.
    fn data_version(&self) -> Result<i64, vaidya_store::StoreError> {
        match &self.version {
            Some(conn) => {
                let conn = conn.lock().expect("not poisoned");
                Ok(conn.prepare_cached("PRAGMA data_version")?.query_row([], |r| r.get(0))?)
            }
            None => Ok(vaidya_store::now_ms() / 1000),
        }
    }

    /// The row of token `id`: from the cache if nothing was committed since it was read,
    /// otherwise from `look_up` (and kept).
    pub fn find<E: From<vaidya_store::StoreError>>(
        &self,
        id: &str,
        look_up: impl FnOnce() -> Result<Option<TokenRow>, E>,
    ) -> Result<Option<TokenRow>, E> {
        let version = self.data_version()?;
        {
            let mut e = self.entries.lock().expect("not poisoned");
            if e.version != version {
                e.rows.clear();
                e.version = version;
            }
            if let Some(row) = e.rows.get(id) {
                return Ok(Some(row.clone()));
            }
        }
        // Read after `version`: a commit in between changes the version, so what is kept
        // below is never used past a change it did not see.
        let row = look_up()?;
        if let Some(row) = &row {
            let mut e = self.entries.lock().expect("not poisoned");
            if e.version == version {
                if e.rows.len() >= MAX_CACHED_TOKENS {
                    e.rows.clear();
                }
                e.rows.insert(id.to_string(), row.clone());
            }
        }
        Ok(row)
    }

}
