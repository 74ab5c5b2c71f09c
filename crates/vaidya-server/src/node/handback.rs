//! The core's side of a hand-back: `POST /node/handback` takes the writes a department node
//! made in downtime (its branch: entries chained after the core's entry at the fork, signed
//! with the node's own key) and applies them, a unit (one write transaction on the node) at a
//! time; `GET /node/handback?fork=N` says how far a branch has been taken.
//!
//! Checks before anything is applied: the caller is a `node` account with a registered key;
//! the checkpoint is signed by that key; the entries continue the branch exactly where the
//! last hand-back of it stopped (the first one: the core's own entry at the fork), chain for
//! chain, and give the Merkle root the node signed. A hand-back that repeats what was taken
//! (a retry after a cut connection) is refused with 409 and the size taken, so the node
//! sends the rest: nothing is applied twice.
//!
//! A unit is applied whole when every resource it writes is still at the version the node
//! wrote over (or absent, for a create); the entries keep the node user as their author.
//! Otherwise it goes whole to the reconciliation queue (`reconcile.rs`): a slot booked here and
//! on the node, a record changed on both sides. A patient registered on the node who looks like
//! one already here is registered (the UHID was given out) with a suggested merge queued.
//! The node's counters (its own UHID, receipt and specimen serials, queue tokens it gave out)
//! are raised here to at least the node's, so that none is issued again.
//!
//! The applied unit, the queue item and the progress are written in one transaction.

use super::reconcile;
use super::wire::{HandBack, HandBackMeta};
use crate::app::{AppState, Principal};
use crate::error::ApiError;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::collections::HashMap;
use vaidya_backup::restore::PreparedEntry;
use vaidya_fhir::outcome::IssueType;
use vaidya_ledger::{ChainEdge, Op};
use vaidya_store::{Body, WriteTx};

/// The body of a hand-back at most (a full one: 20,000 entries of a few kB).
pub const MAX_BODY_BYTES: usize = 256 << 20;

/// What became of one unit.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct UnitOutcome {
    /// The node's entries of the unit.
    pub first: u64,
    pub last: u64,
    /// `applied`, or `queued` (waiting in the reconciliation queue).
    pub outcome: String,
    /// Where the unit's entries are in the core's ledger, when applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core: Option<(u64, u64)>,
    /// The reconciliation item (a Task id) raised for it, if any: the unit itself when queued,
    /// a suggested merge when a patient it registered looks like one already here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The answer to a hand-back.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Answer {
    /// The node's branch has been taken up to this entry.
    pub size: u64,
    pub units: Vec<UnitOutcome>,
}

fn conflict(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, IssueType::Conflict, message)
}

fn only_nodes(who: &Principal) -> Result<(), ApiError> {
    if who.role != crate::guard::NODE_ROLE {
        return Err(ApiError::new(StatusCode::FORBIDDEN, IssueType::Forbidden, "only a department node's account (role node) hands back downtime entries"));
    }
    Ok(())
}

/// `GET /node/handback?fork=N`: `{"fork": N, "size": S}`, the branch taken up to entry S.
pub async fn status(State(app): State<AppState>, Extension(who): Extension<Principal>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    only_nodes(&who)?;
    let mut fork = None;
    for (k, v) in form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "fork" => fork = Some(v.parse::<u64>().map_err(|_| ApiError::bad_request(format!("fork '{v}' is not an entry number")))?),
            other => return Err(ApiError::bad_request(format!("unknown parameter '{other}' (fork)"))),
        }
    }
    let fork = fork.ok_or_else(|| ApiError::bad_request("fork (where the node's branch left the core's ledger) is required"))?;
    let node = who.user.clone();
    let size = app.read(move |conn| Ok(progress(conn, &node, fork)?.map_or(fork, |e| e.size))).await?;
    Ok(axum::Json(serde_json::json!({"fork": fork, "size": size})).into_response())
}

/// `POST /node/handback`.
pub async fn hand_back(State(app): State<AppState>, Extension(who): Extension<Principal>, body: Bytes) -> Result<Response, ApiError> {
    only_nodes(&who)?;
    let HandBack { meta, checkpoint, entries } = HandBack::decode(&body).map_err(|e| ApiError::bad_request(format!("not a hand-back: {e}")))?;
    let node = who.user.clone();
    let (issuer, verifier) = app.read(move |conn| registration(conn, &node)).await?;
    let cp = vaidya_ledger::verify_checkpoint(&checkpoint, &verifier)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, IssueType::Security, format!("the hand-back's checkpoint is not signed by this node's key: {e}")))?;
    let first = meta.units.first().map_or(0, |u| u.0);
    check_units(&meta, first, entries.len() as u64)?;
    check_counters(&meta, issuer)?;
    if cp.tree_size != first + entries.len() as u64 - 1 {
        return Err(ApiError::bad_request(format!("the checkpoint signs {} entries, the hand-back ends at entry {}", cp.tree_size, first + entries.len() as u64 - 1)));
    }
    // Decoding, checking and indexing happen here, off the single writer.
    let prepared = tokio::task::spawn_blocking(move || -> Result<Vec<PreparedEntry>, ApiError> {
        entries
            .into_iter()
            .enumerate()
            .map(|(i, bytes)| {
                let p = PreparedEntry::new(bytes, first + i as u64, true).map_err(ApiError::bad_request)?;
                check_entry(&p.entry)?;
                Ok(p)
            })
            .collect()
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    // Each unit was authorised on the node, under the same policies, as it was written.
    let node = who.user.clone();
    let answer = app
        .store
        .write(move |tx| {
            let mut edge = match progress(tx.conn(), &node, meta.fork)? {
                Some(edge) => edge,
                None => edge_at_fork(tx, meta.fork)?,
            };
            if first != edge.size + 1 {
                return Err(conflict(format!("this node's branch from entry {} has been taken up to entry {}: send from entry {}", meta.fork, edge.size, edge.size + 1)));
            }
            for p in &prepared {
                edge.append(&p.entry, p.leaf).map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, IssueType::Security, format!("the hand-back's {e}")))?;
            }
            edge.check_root(&cp).map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, IssueType::Security, format!("the hand-back: {e}")))?;
            let mut units = Vec::with_capacity(meta.units.len());
            for &(a, b) in &meta.units {
                let unit = &prepared[(a - first) as usize..=(b - first) as usize];
                units.push(apply_unit(tx, &node, unit)?);
            }
            for (name, value) in &meta.counters {
                if tx.sequence(name)?.unwrap_or(0) < *value {
                    tx.set_sequence(name, *value)?;
                }
            }
            save_progress(tx, &node, meta.fork, &edge)?;
            Ok(Answer { size: edge.size, units })
        })
        .await?;
    let queued = answer.units.iter().filter(|u| u.outcome == "queued").count();
    tracing::info!(node = %who.user, fork = meta.fork, up_to = answer.size, units = answer.units.len(), queued, "hand-back taken");
    Ok((StatusCode::OK, axum::Json(answer)).into_response())
}

/// An entry must name a resource type and id the core knows how to hold, and what it puts must
/// be that resource, valid: a node's key vouches for who wrote it, not for what it is.
fn check_entry(e: &vaidya_ledger::Entry) -> Result<(), ApiError> {
    let refuse = |m: String| ApiError::bad_request(format!("entry {}: {m}", e.seq));
    crate::fhir::check_type(&e.resource_type).map_err(|_| refuse(format!("'{}' is not a resource type", e.resource_type)))?;
    crate::fhir::check_id(&e.resource_id).map_err(|_| refuse(format!("'{}' is not a resource id", e.resource_id)))?;
    if e.op == Op::Delete {
        return Ok(());
    }
    let value: serde_json::Value = serde_json::from_slice(&e.content).map_err(|err| refuse(format!("its content is not JSON: {err}")))?;
    if value["resourceType"] != e.resource_type.as_str() || value["id"] != e.resource_id.as_str() {
        return Err(refuse(format!("its content is not {}/{}", e.resource_type, e.resource_id)));
    }
    vaidya_fhir::validate::validate_resource(&value).map_err(|issues| {
        refuse(format!("{}/{} is not valid: {}", e.resource_type, e.resource_id, issues.iter().map(|i| i.diagnostics.as_str()).collect::<Vec<_>>().join("; ")))
    })
}

/// The node's UHID issuer code and registered key.
fn registration(conn: &impl vaidya_store::Db, node: &str) -> Result<(u8, String), ApiError> {
    let issuer: Option<i64> = conn.query_value("SELECT issuer FROM node_issuer WHERE user_name = ?1", &vaidya_store::sql_params![node])?;
    match (issuer, super::feed::registered_key(conn, node)?) {
        (Some(i), Some(k)) => Ok((i as u8, k)),
        _ => Err(conflict(format!("the node account '{node}' has no issuer code and key registered here (a node registers both when it first follows the ledger)"))),
    }
}

fn check_units(meta: &HandBackMeta, first: u64, count: u64) -> Result<(), ApiError> {
    let mut next = first;
    for &(a, b) in &meta.units {
        if a != next || b < a {
            return Err(ApiError::bad_request(format!("the units must cover the entries in order, one after another (at entry {next} the next unit is {a}-{b})")));
        }
        next = b + 1;
    }
    if meta.units.is_empty() || next != first + count || first <= meta.fork {
        return Err(ApiError::bad_request("the units must cover exactly the entries sent, all after the fork"));
    }
    Ok(())
}

/// The counters a node may raise: its own (`node-NN:`) and the day's queue tokens.
fn check_counters(meta: &HandBackMeta, issuer: u8) -> Result<(), ApiError> {
    let own = crate::numbering::node_prefix(issuer);
    match meta.counters.keys().find(|k| !(k.starts_with(&own) || k.starts_with("opd-token:")) || k.len() > 200) {
        Some(k) => Err(ApiError::bad_request(format!("counter '{k}' is not one this node may raise (its own {own}..., or opd-token:...)"))),
        None => Ok(()),
    }
}

/// The chain edge of the core's own ledger at `fork`: where a branch must continue.
fn edge_at_fork(tx: &WriteTx<'_>, fork: u64) -> Result<ChainEdge, ApiError> {
    if fork > tx.ledger_size() {
        return Err(conflict(format!(
            "the node's branch leaves this ledger at entry {fork}, but it has only {} entries (restored from an older backup?): a person must look",
            tx.ledger_size()
        )));
    }
    let head = if fork == 0 { None } else { vaidya_store::leaf_at(tx.conn(), fork)? };
    Ok(ChainEdge { size: fork, head, frontier: vaidya_store::frontier_at(tx.conn(), fork)? })
}

fn progress(conn: &impl vaidya_store::Db, node: &str, fork: u64) -> Result<Option<ChainEdge>, ApiError> {
    let row: Option<(i64, Option<Vec<u8>>, Vec<u8>)> = conn.query_opt(
        "SELECT size, head, frontier FROM handback WHERE node = ?1 AND fork = ?2",
        &vaidya_store::sql_params![node, fork as i64],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let Some((size, head, frontier)) = row else { return Ok(None) };
    let head = head.map(|h| <[u8; 32]>::try_from(h.as_slice()).map(vaidya_ledger::EntryHash)).transpose().map_err(|_| ApiError::internal("a stored hand-back head is not a hash"))?;
    let frontier = vaidya_ledger::Frontier::decode(&frontier).ok_or_else(|| ApiError::internal("a stored hand-back frontier is unreadable"))?;
    Ok(Some(ChainEdge { size: size as u64, head, frontier }))
}

fn save_progress(tx: &WriteTx<'_>, node: &str, fork: u64, edge: &ChainEdge) -> Result<(), ApiError> {
    let (head, frontier) = (edge.head.map(|h| h.0.to_vec()), edge.frontier.encode());
    vaidya_store::Db::execute(
        tx.conn(),
        "INSERT INTO handback (node, fork, size, head, frontier, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (node, fork) DO UPDATE SET size = ?3, head = ?4, frontier = ?5, updated_ms = ?6",
        &vaidya_store::sql_params![node, fork as i64, edge.size as i64, head.as_ref(), &frontier, vaidya_store::now_ms()],
    )?;
    Ok(())
}

/// Apply one unit whole, or queue it whole.
fn apply_unit(tx: &mut WriteTx<'_>, node: &str, unit: &[PreparedEntry]) -> Result<UnitOutcome, ApiError> {
    let (first, last) = (unit[0].entry.seq, unit[unit.len() - 1].entry.seq);
    if let Some(reason) = stale(tx, unit)? {
        let task = reconcile::raise(tx, node, reconcile::Kind::Conflict, &reason, unit, None)?;
        return Ok(UnitOutcome { first, last, outcome: "queued".into(), core: None, task: Some(task), reason: Some(reason) });
    }
    let before = tx.ledger_size();
    let mut registered = Vec::new();
    for p in unit {
        let e = &p.entry;
        match e.op {
            Op::Put => {
                let value: serde_json::Value = serde_json::from_slice(&e.content).map_err(|err| ApiError::bad_request(format!("entry {}: content is not JSON: {err}", e.seq)))?;
                tx.put(&e.author, &e.resource_type, &e.resource_id, &Body::from_resource(&value), &p.index)?;
                if e.resource_type == "Patient" && e.version == 1 {
                    registered.push(value);
                }
            }
            Op::Delete => {
                tx.delete(&e.author, &e.resource_type, &e.resource_id)?;
            }
        }
    }
    let core = Some((before + 1, tx.ledger_size()));
    // A patient registered in downtime who looks like one already here: the merge is suggested.
    let mut task = None;
    let mut reason = None;
    for patient in registered {
        let id = patient["id"].as_str().unwrap_or_default().to_string();
        let others: Vec<String> = crate::fhir::duplicates::likely_duplicates(tx.conn(), &patient)?
            .into_iter()
            .filter_map(|(p, why)| p["id"].as_str().filter(|o| *o != id).map(|o| format!("Patient/{o} ({why})")))
            .collect();
        if let Some(first_match) = others.first() {
            let why = format!("Patient/{id}, registered at the node in downtime, may be {}: merge if they are the same person", others.join(", "));
            let target = first_match.split(' ').next().map(str::to_string);
            task = Some(reconcile::raise(tx, node, reconcile::Kind::DuplicatePatient, &why, unit, target)?);
            reason = Some(why);
        }
    }
    Ok(UnitOutcome { first, last, outcome: "applied".into(), core, task, reason })
}

/// Why the unit cannot be applied as it is: a resource it writes is no longer at the version
/// the node wrote over.
fn stale(tx: &WriteTx<'_>, unit: &[PreparedEntry]) -> Result<Option<String>, ApiError> {
    let mut seen: HashMap<(&str, &str), u64> = HashMap::new();
    for p in unit {
        let e = &p.entry;
        let key = (e.resource_type.as_str(), e.resource_id.as_str());
        let here = match seen.get(&key) {
            Some(v) => *v,
            None => tx.current(key.0, key.1)?.map_or(0, |c| c.version),
        };
        if here + 1 != e.version {
            let what = format!("{}/{}", key.0, key.1);
            return Ok(Some(if e.version == 1 {
                format!("{what} was created at the node, but the core already has a record with that id")
            } else if e.resource_type == "Slot" {
                format!("{what} changed at the core while the node booked it (version {here} here, the node booked over version {}): the slot may be double-booked", e.version - 1)
            } else {
                format!("{what} was changed at the core and at the node during the downtime (version {here} here, the node changed version {})", e.version - 1)
            }));
        }
        seen.insert(key, e.version);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(op: Op, rtype: &str, id: &str, content: &str) -> vaidya_ledger::Entry {
        vaidya_ledger::Entry {
            seq: 9,
            time_ms: 1,
            author: "reg.asha".into(),
            op,
            resource_type: rtype.into(),
            resource_id: id.into(),
            version: 1,
            content: content.as_bytes().to_vec(),
            prev_hash: vaidya_ledger::GENESIS_PREV,
        }
    }

    #[test]
    fn a_handed_back_entry_must_be_a_valid_resource_of_its_type_and_id() {
        let good = r#"{"resourceType":"Patient","id":"p1","meta":{"versionId":"1","lastUpdated":"2026-11-28T00:00:00Z"},"gender":"female"}"#;
        assert!(check_entry(&entry(Op::Put, "Patient", "p1", good)).is_ok());
        assert!(check_entry(&entry(Op::Delete, "Patient", "p1", "")).is_ok());
        for (rtype, id, content, says) in [
            ("Bogus", "p1", good, "not a resource type"),
            ("Patient", "a/b", good, "not a resource id"),
            ("Patient", "p2", good, "not Patient/p2"),
            ("Observation", "p1", good, "not Observation/p1"),
            ("Patient", "p1", "{not json", "not JSON"),
            ("Patient", "p1", r#"{"resourceType":"Patient","id":"p1","gender":"sometimes"}"#, "not valid"),
        ] {
            let e = check_entry(&entry(Op::Put, rtype, id, content)).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.message().contains(says), "{says}: {}", e.message());
        }
    }
}
