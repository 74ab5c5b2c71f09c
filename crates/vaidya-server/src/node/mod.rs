//! Department nodes (docs/OPERATIONS.md, "Department nodes"): a node follows the core's data
//! ledger over HTTP and keeps a verified replica, so that a department still has the hospital's
//! records when the core is down.
//!
//! - `wire.rs`: the feed's format (a signed checkpoint and the entries it covers).
//! - `feed.rs`: the core's side, `GET /node/feed?after=N&wait=S` (a long poll), for `node`
//!   accounts only, recorded in the audit ledger like any read.
//! - `follow.rs`: the node's side: fetch, check (checkpoint signature with the core's public
//!   key, sequence, hash chain, Merkle root) and only then apply to the replica.
//! - `handback.rs`: the core's side of a hand-back (`POST /node/handback`): a node's downtime
//!   branch, checked against the node's key and the core's own ledger, applied unit by unit.
//! - `reconcile.rs`: what a hand-back could not apply, queued as Tasks for a person to settle.
//! - `link.rs`: the node serving its department (reads here, writes to the core or, in
//!   downtime, to the node's branch), its banner, health and metrics.
//! - `sendback.rs`: the node's side of a hand-back; `outage.rs`: the outage report.
//! - `sheets.rs`: printable downtime sheets (HTML and PDF) kept current on the node's disk.
//!
//! **Architecture invariants:** a node never applies an entry from the core it has not checked
//! against a checkpoint signed by the core's key; what it writes itself (in downtime) is only
//! ever on its branch, signed with its own key apart from the core's checkpoints, and leaves
//! the replica (cut) once the core has taken it. The core applies a hand-back only when it
//! continues the core's own ledger exactly where the branch left it, signed by the node's
//! registered key, and never the same entries twice.

pub mod feed;
pub mod follow;
pub mod handback;
pub mod link;
pub mod outage;
pub mod reconcile;
pub mod sendback;
pub mod sheets;
pub mod wire;

use crate::app::AppState;
use axum::routing::{get, post};

/// A node's own routes (`/node/...` on a node): its status and outage report.
pub fn node_side_router(state: AppState) -> axum::Router<AppState> {
    let staff = axum::Router::new()
        .route("/outage", get(outage::report))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), crate::audit::record))
        .route_layer(axum::middleware::from_fn_with_state(state, crate::app::authenticate));
    axum::Router::new().route("/status", get(link::status_json)).merge(staff)
}

/// The core's routes for nodes (`/node/...`): the feed, hand-backs and the reconciliation
/// queue; all authenticated and recorded in the audit ledger.
pub fn router(state: AppState) -> axum::Router<AppState> {
    axum::Router::new()
        .route("/feed", get(feed::feed))
        .route("/handback", get(handback::status).post(handback::hand_back))
        .route("/reconciliation", get(reconcile::list))
        .route("/reconciliation/{id}", post(reconcile::settle))
        .layer(axum::extract::DefaultBodyLimit::max(handback::MAX_BODY_BYTES))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), crate::audit::record))
        .route_layer(axum::middleware::from_fn_with_state(state, crate::app::authenticate))
}
