//! Department nodes (docs/OPERATIONS.md, "Department nodes"): a node follows the core's data
//! ledger over HTTP and keeps a verified replica, so that a department still has the hospital's
//! records when the core is down.
//!
//! - `wire.rs`: the feed's format (a signed checkpoint and the entries it covers).
//! - `feed.rs`: the core's side, `GET /node/feed?after=N&wait=S` (a long poll), for `node`
//!   accounts only, recorded in the audit ledger like any read.
//! - `follow.rs`: the node's side: fetch, check (checkpoint signature with the core's public
//!   key, sequence, hash chain, Merkle root) and only then apply to the replica.
//!
//! **Architecture invariant:** a node never applies an entry it has not checked against a
//! checkpoint signed by the core's key, and its replica never signs checkpoints of its own.

pub mod feed;
pub mod follow;
pub mod wire;
