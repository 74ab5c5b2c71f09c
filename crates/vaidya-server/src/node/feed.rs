//! `GET /node/feed?after=N&wait=SECONDS`: the data ledger's entries after entry N, up to a
//! signed checkpoint, for a department node to follow. With `wait`, an answer with nothing new
//! waits up to that many seconds (at most [`MAX_WAIT`]) for the next checkpoint: a long poll,
//! so that a node hears of a commit within about the checkpoint interval (200 ms).
//!
//! - 200 with a [`super::wire::Feed`] when there are entries after N, or when the state beside
//!   the ledger (accounts, grants, counters) differs from the one the node says it has
//!   (`tables=` the SHA-256 of each state table, hex, comma-separated in
//!   `vaidya_store::state::table_names` order; absent: none), so that staff can sign in at the
//!   node. Only the tables that differ are sent, and a table is read again only when it has
//!   changed (`state::versions`): many accounts cost nothing while they stay the same.
//! - 204 when there is nothing new; `X-Ledger-Size` says how far the core's signed ledger is.
//! - 409 when N is beyond the core's ledger (a node that followed another core, or a core
//!   restored from an older backup): a person must look.
//! - 403 for any account but a `node` one (the feed is every record of the hospital, VIPs too).
//! - `issuer=NN` (01-99): the UHID issuer code the node will register patients with in
//!   downtime. The first request claims it for the node's account (`node_issuer`, carried in
//!   backups and to nodes with the state); a code claimed by another node, or a second code for
//!   the same node, is refused with 409, so that no two nodes can issue the same UHID.

use super::wire::{CONTENT_TYPE, Feed};
use crate::app::{AppState, Principal};
use crate::error::ApiError;
use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// Longest long poll.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
pub const SIZE_HEADER: &str = "x-ledger-size";

pub async fn feed(State(app): State<AppState>, Extension(who): Extension<Principal>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    if who.role != crate::guard::NODE_ROLE {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            vaidya_fhir::outcome::IssueType::Forbidden,
            "only a department node's account (role node) may follow the ledger",
        ));
    }
    let Query { after, wait, tables: node_tables, issuer, key } = parse(query.as_deref().unwrap_or(""))?;
    if let Some(code) = issuer {
        claim_issuer(&app, &who.user, code).await?;
    }
    if let Some(key) = key {
        register_key(&app, &who.user, key).await?;
    }
    let deadline = tokio::time::Instant::now() + wait;
    let mut signed = app.store.checkpoints();
    loop {
        let size = *signed.borrow_and_update();
        if after > size {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                vaidya_fhir::outcome::IssueType::Conflict,
                format!("the node is at entry {after}, beyond this ledger's {size} signed entries: it followed another ledger"),
            ));
        }
        let timed_out = after == size && tokio::time::timeout_at(deadline, signed.changed()).await.is_err();
        if after == size && !timed_out {
            continue; // a new checkpoint: read it
        }
        let node_tables = node_tables.clone();
        let path = app.store.location().clone();
        let feed = app
            .read(move |conn| {
                let range = vaidya_backup::source::read_data_range(conn, after, false).map_err(|e| ApiError::internal(e.to_string()))?;
                let state = state_for(conn, &path, node_tables.as_deref())?;
                let (checkpoint, entries) = range.map(|r| (r.checkpoint, r.entries)).unwrap_or_default();
                Ok(Feed { checkpoint, entries, state })
            })
            .await?;
        let size_header = (header::HeaderName::from_static(SIZE_HEADER), size.to_string());
        if feed.entries.is_empty() && feed.state.is_none() {
            return Ok((StatusCode::NO_CONTENT, [size_header]).into_response());
        }
        return Ok(([(header::CONTENT_TYPE, CONTENT_TYPE.to_string()), size_header], feed.encode()).into_response());
    }
}

/// Each state table as last read: its change count, bytes and SHA-256 (hex), per database.
type TableCache = std::collections::HashMap<(vaidya_store::Location, &'static str), (i64, std::sync::Arc<Vec<u8>>, String)>;
static STATE_TABLES: std::sync::Mutex<Option<TableCache>> = std::sync::Mutex::new(None);

/// The state tables that differ from what the node has (`node`: its hashes in table order),
/// as a partial state snapshot; `None` when none differ. A table is read again only when its
/// change count moved since it was last read.
fn state_for(conn: &impl vaidya_store::Db, db: &vaidya_store::Location, node: Option<&[String]>) -> Result<Option<Vec<u8>>, ApiError> {
    // The counts first, then the tables: a table read is never older than the count kept with it.
    let versions: std::collections::HashMap<String, i64> = vaidya_store::state::versions(conn)?.into_iter().collect();
    let mut changed: Vec<(&'static str, std::sync::Arc<Vec<u8>>)> = Vec::new();
    for (i, table) in vaidya_store::state::table_names().enumerate() {
        let version = versions.get(table).copied().unwrap_or(-1);
        let key = (db.clone(), table);
        let cached = STATE_TABLES.lock().expect("not poisoned").as_ref().and_then(|c| c.get(&key).cloned()).filter(|(v, _, _)| *v == version);
        let (bytes, hash) = match cached {
            Some((_, bytes, hash)) => (bytes, hash),
            None => {
                let bytes = std::sync::Arc::new(vaidya_store::state::table_snapshot(conn, table)?);
                let hash = super::wire::state_table_hash(&bytes);
                STATE_TABLES.lock().expect("not poisoned").get_or_insert_with(Default::default).insert(key, (version, bytes.clone(), hash.clone()));
                (bytes, hash)
            }
        };
        if node.and_then(|n| n.get(i)).map(String::as_str) != Some(hash.as_str()) {
            changed.push((table, bytes));
        }
    }
    if changed.is_empty() {
        return Ok(None);
    }
    let parts: Vec<(&str, &[u8])> = changed.iter().map(|(t, b)| (*t, b.as_slice())).collect();
    Ok(Some(vaidya_store::state::assemble(&parts)))
}

/// Claim UHID issuer `code` for node account `user`, or find it already theirs.
async fn claim_issuer(app: &AppState, user: &str, code: u8) -> Result<(), ApiError> {
    let conflict = |m: String| ApiError::new(StatusCode::CONFLICT, vaidya_fhir::outcome::IssueType::Conflict, m);
    let lookup = move |conn: &vaidya_store::Conn, user: &str| -> Result<(Option<String>, Option<i64>), ApiError> {
        use vaidya_store::{Db, sql_params};
        let holder = conn.query_value("SELECT user_name FROM node_issuer WHERE issuer = ?1", &sql_params![u32::from(code)])?;
        let held = conn.query_value("SELECT issuer FROM node_issuer WHERE user_name = ?1", &sql_params![user])?;
        Ok((holder, held))
    };
    let judge = |holder: Option<String>, held: Option<i64>| -> Result<bool, ApiError> {
        match (holder, held) {
            (Some(h), _) if h == user => Ok(true),
            (Some(h), _) => Err(conflict(format!("UHID issuer {code:02} is claimed by the node account '{h}': give this node another code"))),
            (None, Some(other)) => Err(conflict(format!("the node account '{user}' issues UHIDs with issuer {other:02}, not {code:02}"))),
            (None, None) => Ok(false),
        }
    };
    let u = user.to_string();
    let (holder, held) = app.read(move |conn| lookup(conn, &u)).await?;
    if judge(holder, held)? {
        return Ok(());
    }
    let u = user.to_string();
    let (holder, held) = app
        .store
        .write(move |tx| -> Result<(Option<String>, Option<i64>), ApiError> {
            let found = lookup(tx.conn(), &u)?;
            if found == (None, None) {
                vaidya_store::Db::execute(
                    tx.conn(),
                    "INSERT INTO node_issuer (issuer, user_name, claimed_ms) VALUES (?1, ?2, ?3)",
                    &vaidya_store::sql_params![u32::from(code), u.as_str(), vaidya_store::now_ms()],
                )?;
                return Ok((Some(u), Some(i64::from(code))));
            }
            Ok(found)
        })
        .await?;
    judge(holder, held).map(|_| tracing::info!(node = user, issuer = code, "UHID issuer code claimed by a department node"))
}

/// The ledger key node account `user` registered, if any.
pub fn registered_key(conn: &impl vaidya_store::Db, user: &str) -> Result<Option<String>, ApiError> {
    Ok(conn.query_value("SELECT verifier FROM node_key WHERE user_name = ?1", &vaidya_store::sql_params![user])?)
}

/// Register `key` (a ledger verifier key, `name+id+base64`) as the one that signs node
/// account `user`'s downtime branches, or find it registered; a different key is refused.
async fn register_key(app: &AppState, user: &str, key: String) -> Result<(), ApiError> {
    let u = user.to_string();
    let found = match app.read(move |conn| registered_key(conn, &u)).await? {
        Some(h) => h,
        None => {
            let (u, k) = (user.to_string(), key.clone());
            app.store
                .write(move |tx| -> Result<String, ApiError> {
                    if let Some(h) = registered_key(tx.conn(), &u)? {
                        return Ok(h);
                    }
                    vaidya_store::Db::execute(
                        tx.conn(),
                        "INSERT INTO node_key (user_name, verifier, registered_ms) VALUES (?1, ?2, ?3)",
                        &vaidya_store::sql_params![u.as_str(), k.as_str(), vaidya_store::now_ms()],
                    )?;
                    tracing::info!(node = %u, key = %k, "a department node's key registered");
                    Ok(k)
                })
                .await?
        }
    };
    if found != key {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            vaidya_fhir::outcome::IssueType::Conflict,
            format!("the node account '{user}' signs with the key {found}, not {key}: a node rebuilt with a new key needs a new node account"),
        ));
    }
    Ok(())
}

#[derive(Debug, PartialEq)]
struct Query {
    after: u64,
    wait: Duration,
    /// The SHA-256 (hex) of each state table the node has, in table order.
    tables: Option<Vec<String>>,
    issuer: Option<u8>,
    key: Option<String>,
}

fn parse(query: &str) -> Result<Query, ApiError> {
    let (mut after, mut wait, mut tables, mut issuer, mut key) = (None, Duration::ZERO, None, None, None);
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "after" => after = Some(v.parse::<u64>().map_err(|_| ApiError::bad_request(format!("after '{v}' is not an entry number")))?),
            "wait" => {
                let secs = v.parse::<u64>().map_err(|_| ApiError::bad_request(format!("wait '{v}' is not a number of seconds")))?;
                wait = Duration::from_secs(secs).min(MAX_WAIT);
            }
            "tables" => {
                let hashes: Vec<String> = v.split(',').map(str::to_ascii_lowercase).collect();
                if hashes.len() > 32 || !hashes.iter().all(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())) {
                    return Err(ApiError::bad_request("tables is the SHA-256 (hex) of each state table the node has, comma-separated"));
                }
                tables = Some(hashes);
            }
            "issuer" => {
                let code = v.parse::<u8>().ok().filter(|c| (1..=99).contains(c));
                issuer = Some(code.ok_or_else(|| ApiError::bad_request(format!("issuer '{v}' is not a node's UHID issuer code (01-99)")))?);
            }
            "key" if is_verifier(&v) => key = Some(v.into_owned()),
            "key" => return Err(ApiError::bad_request("key is the node's ledger public key (name+id+base64, its keys/node.pub)")),
            other => return Err(ApiError::bad_request(format!("unknown parameter '{other}' (after, wait, tables, issuer, key)"))),
        }
    }
    let after = after.ok_or_else(|| ApiError::bad_request("after (the last entry the node has, 0 for none) is required"))?;
    Ok(Query { after, wait, tables, issuer, key })
}

/// A ledger verifier key's shape (`name+hexid+base64`), checked properly when it signs.
fn is_verifier(v: &str) -> bool {
    let parts: Vec<&str> = v.splitn(3, '+').collect();
    v.len() <= 300 && parts.len() == 3 && parts.iter().all(|p| !p.is_empty()) && v.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_checked() {
        assert_eq!(parse("after=5&wait=10").unwrap(), Query { after: 5, wait: Duration::from_secs(10), tables: None, issuer: None, key: None });
        assert_eq!(parse("after=5&issuer=07").unwrap().issuer, Some(7));
        assert_eq!(parse("after=0&wait=999").unwrap().wait, MAX_WAIT);
        let h = "ab".repeat(32);
        assert_eq!(parse(&format!("after=1&tables={h},{h}")).unwrap().tables, Some(vec![h.clone(), h.clone()]));
        assert_eq!(parse("after=1&key=node%2B1a2b%2BAbC%2F%3D").unwrap().key.as_deref(), Some("node+1a2b+AbC/="));
        for bad in ["", "wait=1", "after=1&key=nokey", "after=1&key=a%2Bb", "after=1&key=a%2Bb%2Bc%20d", "after=x", "after=-1", "after=1&wait=soon", "after=1&limit=5", "after=1&tables=abc", "after=1&state=x", "after=1&issuer=0", "after=1&issuer=100", "after=1&issuer=x"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
