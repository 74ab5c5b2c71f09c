//! The configuration file (TOML). Every field has a default, so the file is optional; command
//! line flags override it. Secrets are never values here: only paths to files that hold them.
//!
//! ```toml
//! # vaidya.toml
//! listen = "127.0.0.1:8080"      # address for HTTP (web UI, FHIR API, metrics)
//! data = "./vaidya-data"         # data directory: database, keys
//! hospital_name = "Demo Hospital"
//! timezone = "Asia/Kolkata"      # shown on screens; storage is always UTC
//!
//! [limits]
//! max_body_bytes = 16777216      # largest request body accepted (16 MiB)
//! max_bundle_entries = 10000     # largest transaction/batch Bundle accepted
//! token_lifetime_hours = 720     # default lifetime of tokens made by `vaidya token`
//!
//! [auth]
//! session_max_seconds = 43200    # a login session ends 12 hours after the login
//! session_idle_seconds = 1800    # ... or after 30 minutes without a request
//! trust_forwarded_for = false    # take the client address for login records from
//!                                # X-Forwarded-For (only behind your own reverse proxy)
//! totp_issuer = "Vaidya"         # name authenticator apps show beside the code
//!
//! [keys]
//! # ledger_key_file = "/etc/vaidya/ledger.key"  # default: <data>/keys/ledger.key
//!
//! [access]
//! # policy_dir = "/etc/vaidya/policies"  # schema.cedarschema + *.cedar; default: the built-in policies
//! policy_reload_seconds = 5              # how often a policy directory is checked for changes
//! break_glass_seconds = 3600             # how long a break-the-glass grant lasts
//!
//! [export]
//! max_jobs = 8                   # bulk export jobs waiting for approval or running, at most
//! max_running = 2                # export jobs running at once (more wait their turn)
//! max_resources_per_file = 100000  # NDJSON files are split after this many resources
//! expire_seconds = 86400         # unapproved jobs lapse, finished jobs and files are removed
//! ```

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub listen: SocketAddr,
    pub data: PathBuf,
    pub hospital_name: String,
    pub timezone: String,
    pub limits: Limits,
    pub auth: Auth,
    pub keys: Keys,
    pub access: Access,
    pub export: Export,
}

/// Bulk Data `$export` (`fhir/export.rs`): how many jobs, how large a file, how long kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Export {
    pub max_jobs: usize,
    pub max_running: usize,
    pub max_resources_per_file: usize,
    /// A job awaiting approval lapses, and a finished job and its files are removed, this long
    /// after it was asked for or finished.
    pub expire_seconds: u64,
}

impl Default for Export {
    fn default() -> Self {
        Export { max_jobs: 8, max_running: 2, max_resources_per_file: 100_000, expire_seconds: 24 * 3600 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Access {
    /// A directory with `schema.cedarschema` and `*.cedar` policies; none: the built-in ones.
    pub policy_dir: Option<PathBuf>,
    /// How often the policy directory is checked for changes (a change that does not validate
    /// is refused and logged; the policies in force stay).
    pub policy_reload_seconds: u64,
    /// How long a break-the-glass grant lasts.
    pub break_glass_seconds: u64,
}

impl Default for Access {
    fn default() -> Self {
        Access { policy_dir: None, policy_reload_seconds: 5, break_glass_seconds: 3600 }
    }
}

impl Config {
    /// The policies in force at start: the directory's (which must validate) or the built-in ones.
    pub fn policies(&self) -> Result<vaidya_policy::Policies, String> {
        match &self.access.policy_dir {
            None => Ok(vaidya_policy::Policies::builtin()),
            Some(dir) => vaidya_policy::Policies::from_dir(dir).map_err(|e| format!("access policies in {}: {e}", dir.display())),
        }
    }
}

/// Staff logins (`/auth`): session lifetimes and where the client's address comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// Absolute lifetime of a login session.
    pub session_max_seconds: u64,
    /// A session unused for this long stops working.
    pub session_idle_seconds: u64,
    /// Believe the first address in `X-Forwarded-For` (set only when a reverse proxy you run
    /// sets it; otherwise a client could write any address into the login records).
    pub trust_forwarded_for: bool,
    /// The issuer shown in authenticator apps (`otpauth://` URIs).
    pub totp_issuer: String,
}

impl Default for Auth {
    fn default() -> Self {
        Auth { session_max_seconds: 12 * 3600, session_idle_seconds: 30 * 60, trust_forwarded_for: false, totp_issuer: "Vaidya".into() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_bundle_entries: usize,
    pub token_lifetime_hours: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Keys {
    /// File holding the ledger's Ed25519 signing key; default `<data>/keys/ledger.key`.
    pub ledger_key_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".parse().expect("valid literal"),
            data: PathBuf::from("./vaidya-data"),
            hospital_name: "Demo Hospital".into(),
            timezone: "Asia/Kolkata".into(),
            limits: Limits::default(),
            auth: Auth::default(),
            keys: Keys::default(),
            access: Access::default(),
            export: Export::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_body_bytes: 16 * 1024 * 1024, max_bundle_entries: 10_000, token_lifetime_hours: 24 * 30 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("config file {0} is invalid: {1}")]
    Parse(PathBuf, toml::de::Error),
}

impl Config {
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            None => Ok(Config::default()),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| ConfigError::Read(p.to_path_buf(), e))?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse(p.to_path_buf(), e))
            }
        }
    }

    pub fn ledger_key_file(&self) -> PathBuf {
        self.keys.ledger_key_file.clone().unwrap_or_else(|| self.data.join("keys").join("ledger.key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_example_parses_and_unknown_keys_are_refused() {
        let doc = include_str!("config.rs");
        let example: String = doc
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.trim_start_matches("//!").trim_start_matches(' '))
            .collect::<Vec<_>>()
            .join("\n");
        let c: Config = toml::from_str(&example).unwrap();
        assert_eq!(c.limits.max_bundle_entries, 10_000);
        assert_eq!(c.auth.session_idle_seconds, 1800);
        assert_eq!(c.export.max_resources_per_file, Export::default().max_resources_per_file);
        assert_eq!(c.auth.session_max_seconds, Auth::default().session_max_seconds);
        assert!(toml::from_str::<Config>("listne = \"x\"").is_err());
    }
}
