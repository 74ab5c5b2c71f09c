//! Where backups go: a place that keeps objects by name, ideally in versions that nobody can
//! delete or overwrite (S3 Object Lock), at least a directory (development, a second copy).

use std::fmt;

/// One stored version of an object (or a delete marker) as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    pub key: String,
    /// The store's version id; `None` where the target has no versions (a directory).
    pub version_id: Option<String>,
    /// A delete marker hides an object from plain listings but removes no version.
    pub delete_marker: bool,
    pub size: u64,
    /// When this version was written, milliseconds since the Unix epoch (UTC).
    pub last_modified_ms: i64,
}

/// What `vaidya backup check` found about a target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Safety {
    /// Facts found, one line each ("versioning: Enabled", ...).
    pub facts: Vec<String>,
    /// Why the target is not safe against an attacker holding the server's credentials; empty
    /// means safe.
    pub problems: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{target}: object {key} not found")]
    NotFound { target: String, key: String },
    #[error("{target}: object {key} already exists and is not overwritten")]
    Exists { target: String, key: String },
    #[error("{target}: {message}")]
    Refused { target: String, message: String },
    #[error("{target}: {message}")]
    Unreachable { target: String, message: String },
    #[error("{target}: {0}", target = .1)]
    Io(std::io::Error, String),
}

/// A backup target. Blocking: the shipper and restore run on their own threads.
pub trait Target: Send + Sync + fmt::Debug {
    /// A short name for messages and metrics (`bucket`, `second-copy`).
    fn name(&self) -> &str;
    /// Store `body` under `key`, with the target's retention (Object Lock) when it has one.
    fn put(&self, key: &str, body: &[u8]) -> Result<(), TargetError>;
    /// Every version of every object whose key starts with `prefix` (delete markers
    /// included), grouped by key, newest first within a key (the S3 ListObjectVersions order).
    fn list_versions(&self, prefix: &str) -> Result<Vec<ObjectVersion>, TargetError>;
    /// The bytes of one version (`None`: the current one).
    fn get(&self, key: &str, version_id: Option<&str>) -> Result<Vec<u8>, TargetError>;
    /// Inspect the target for what would let an attacker with the server's credentials destroy
    /// backups. Leaves at most a small probe object behind.
    fn check(&self) -> Result<Safety, TargetError>;
}
