//! The configuration file (TOML). Every field has a default, so the file is optional; command
//! line flags override it. Secrets are never values here: only paths to files that hold them.
//!
//! ```toml
//! # vaidya.toml
//! listen = "127.0.0.1:8080"      # address for HTTP (web UI, FHIR API, metrics)
//! data = "./vaidya-data"         # data directory: database, keys
//! # The database: absent, a SQLite file in the data directory (one machine). Or PostgreSQL
//! # 15+ (several servers, failover with Patroni; docs/OPERATIONS.md, "PostgreSQL"):
//! # database = "postgres://vaidya@db1:5432,db2:5432,db3:5432/vaidya?target_session_attrs=read-write"
//! # database_password_file = "/etc/vaidya/db-password"   # never the password itself
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
//! secure_cookies = true          # web UI cookies only over HTTPS (and http://localhost)
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
//! # Exfiltration guard (per account, in memory; a restart starts afresh):
//! reads_per_minute = 600                 # sustained reads an account may make (0: no limit)
//! read_burst = 120                       # ... and at once; over it: 429 with Retry-After
//! machine_reads_per_minute = 0           # the same for role `machine` (0: no limit)
//! machine_read_burst = 0
//! distinct_patients_per_hour = 200       # more in a sliding hour suspends the account
//!                                        # (not machines; 0: no rule)
//!
//! # Single sign-on for staff with OpenID Connect (docs/OPERATIONS.md); absent: off.
//! # [oidc]
//! # issuer = "https://login.hospital.example/realms/staff"   # https (http only on loopback)
//! # client_id = "vaidya"
//! # client_secret_file = "/etc/vaidya/oidc-secret"          # or client_secret_env = "VAIDYA_OIDC_SECRET"
//! # redirect_url = "https://his.hospital.example/auth/oidc/callback"
//! # username_claim = "preferred_username"                   # names the local account
//! # scopes = ["profile"]                                    # asked for besides "openid"
//!
//! [alerts]
//! # webhook_url = "https://sms-gateway.hospital.internal/vaidya"  # alerts POSTed as JSON; absent: log only
//! # webhook_token_file = "/etc/vaidya/alert-token"   # sent as `Authorization: Bearer ...`
//! webhook_timeout_seconds = 5
//!
//! [export]
//! max_jobs = 8                   # bulk export jobs waiting for approval or running, at most
//! max_running = 2                # export jobs running at once (more wait their turn)
//! max_resources_per_file = 100000  # NDJSON files are split after this many resources
//! expire_seconds = 86400         # unapproved jobs lapse, finished jobs and files are removed
//!
//! # Backups (docs/OPERATIONS.md, "Backups"); absent: none (`vaidya serve` warns).
//! # [backup]
//! # recipients = ["age1...", "age1..."]  # public keys the backups are encrypted to; the
//! #                                      # private keys are kept OFF this server (two copies)
//! # mode = "async"                       # or "sync": a write is answered once every target has it
//! # sync_timeout_seconds = 30            # sync: answer 503 if the targets take longer
//! # lag_alert_seconds = 60               # alert when a target falls this far behind
//! # scan_seconds = 600                   # list each target for delete markers and unknown objects
//! # snapshot_every_entries = 500000      # a database snapshot after this many new entries,
//! # snapshot_every_hours = 24            # or this long (0 for either: never on that count);
//! #                                      # a restore replays only what follows the last one
//! # [[backup.target]]
//! # name = "bucket"
//! # kind = "s3"                          # S3-compatible, with Object Lock (COMPLIANCE)
//! # endpoint = "https://s3.ap-south-1.amazonaws.com"
//! # bucket = "hospital-vaidya-backup"
//! # region = "ap-south-1"
//! # prefix = "vaidya/"
//! # retention_days = 365                 # each object locked this long
//! # access_key_id_env = "VAIDYA_S3_ACCESS_KEY_ID"         # or access_key_id_file
//! # secret_access_key_file = "/etc/vaidya/s3-secret"      # or secret_access_key_env
//! # [[backup.target]]
//! # name = "second-disk"
//! # kind = "dir"                         # a directory: a second copy, never the only one
//! # path = "/mnt/backup-disk/vaidya"
//! ```

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub listen: SocketAddr,
    pub data: PathBuf,
    /// A PostgreSQL URL; `None`: the SQLite file in the data directory.
    pub database: Option<String>,
    /// The PostgreSQL password, in a file of its own.
    pub database_password_file: Option<PathBuf>,
    pub hospital_name: String,
    pub timezone: String,
    pub limits: Limits,
    pub auth: Auth,
    pub keys: Keys,
    pub access: Access,
    /// Single sign-on with OpenID Connect; `None` (no `[oidc]` section): off.
    pub oidc: Option<Oidc>,
    pub export: Export,
    pub alerts: Alerts,
    /// Backups; `None` (no `[backup]` section): none.
    pub backup: Option<Backup>,
}

/// `[backup]`: where the ledgers are shipped and to whom they are encrypted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backup {
    /// age X25519 public keys (`age1...`); every object is encrypted to all of them.
    pub recipients: Vec<String>,
    #[serde(default)]
    pub mode: BackupMode,
    #[serde(default = "default_sync_timeout")]
    pub sync_timeout_seconds: u64,
    #[serde(default = "default_lag_alert")]
    pub lag_alert_seconds: u64,
    /// How often each target's versions are listed for delete markers, overwrites and objects
    /// Vaidya never writes.
    #[serde(default = "default_scan_seconds")]
    pub scan_seconds: u64,
    /// A database snapshot into every target after this many new ledger entries (0: never on
    /// that count)...
    #[serde(default = "default_snapshot_entries")]
    pub snapshot_every_entries: u64,
    /// ...or after this many hours if anything changed (0: never on that count).
    #[serde(default = "default_snapshot_hours")]
    pub snapshot_every_hours: u64,
    #[serde(rename = "target")]
    pub targets: Vec<BackupTarget>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupMode {
    /// Writes are answered after the local commit; shipping follows within about a second.
    #[default]
    Async,
    /// Writes are answered once every target has confirmed them.
    Sync,
}

fn default_sync_timeout() -> u64 {
    30
}
fn default_lag_alert() -> u64 {
    60
}
fn default_scan_seconds() -> u64 {
    600
}
fn default_snapshot_entries() -> u64 {
    500_000
}
fn default_snapshot_hours() -> u64 {
    24
}

/// One `[[backup.target]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupTarget {
    /// A short name (letters, digits, `-`, `_`): in messages, metrics and `--from`.
    pub name: String,
    pub kind: TargetKind,
    /// `dir`: the directory.
    pub path: Option<PathBuf>,
    /// `s3`: the service's URL (`https://...`; `http://` only to a loopback address).
    pub endpoint: Option<String>,
    pub bucket: Option<String>,
    #[serde(default = "default_region")]
    pub region: String,
    /// Prepended to every object name (e.g. `vaidya/`).
    #[serde(default)]
    pub prefix: String,
    /// Object Lock retention set on every object put, in days.
    pub retention_days: Option<u32>,
    pub access_key_id_env: Option<String>,
    pub access_key_id_file: Option<PathBuf>,
    pub secret_access_key_env: Option<String>,
    pub secret_access_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    S3,
    Dir,
}

fn default_region() -> String {
    "us-east-1".into()
}

/// `[alerts]`: where the privacy officer's alerts go besides the log (`alerts.rs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Alerts {
    /// POST each alert as JSON here (the hospital's SMS/e-mail gateway); none: log only.
    pub webhook_url: Option<String>,
    /// A file holding a token sent as `Authorization: Bearer <token>`.
    pub webhook_token_file: Option<PathBuf>,
    pub webhook_timeout_seconds: u64,
}

impl Default for Alerts {
    fn default() -> Self {
        Alerts { webhook_url: None, webhook_token_file: None, webhook_timeout_seconds: 5 }
    }
}

/// `[oidc]`: staff single sign-on through an OpenID Connect provider (authorization code flow
/// with PKCE). Checked at start by `auth::oidc::Settings::from_config`; the rules of who may
/// sign on are in `auth/oidc.rs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Oidc {
    /// The provider's issuer URL (discovery at `<issuer>/.well-known/openid-configuration`).
    /// `https`; plain `http` only to a loopback address (tests, a provider on the same machine).
    pub issuer: String,
    pub client_id: String,
    /// A file holding the client secret (surrounding whitespace ignored). Exactly one of this
    /// and `client_secret_env`.
    pub client_secret_file: Option<PathBuf>,
    /// An environment variable holding the client secret.
    pub client_secret_env: Option<String>,
    /// Vaidya's own public URL of the callback, `<public base URL>/auth/oidc/callback`, exactly
    /// as registered with the provider.
    pub redirect_url: String,
    /// The ID token claim whose value is the name of the local account.
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    /// Scopes asked for besides `openid`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
}

fn default_username_claim() -> String {
    "preferred_username".into()
}

fn default_scopes() -> Vec<String> {
    vec!["profile".into()]
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
    /// Exfiltration guard (`guard.rs`): reads an account may make a minute, sustained
    /// (a token bucket); `0`: no limit.
    pub reads_per_minute: u32,
    /// ... and in a burst (the bucket's size); over it a request gets 429 with Retry-After.
    pub read_burst: u32,
    /// The same for accounts with role `machine`; `0`: no limit (the default: machines are
    /// bounded by their tokens' scopes).
    pub machine_reads_per_minute: u32,
    pub machine_read_burst: u32,
    /// An account (other than a machine) sent the records of more distinct patients than this
    /// within a sliding hour is suspended and the privacy officer alerted; `0`: no such rule.
    pub distinct_patients_per_hour: u32,
}

impl Default for Access {
    fn default() -> Self {
        Access {
            policy_dir: None,
            policy_reload_seconds: 5,
            break_glass_seconds: 3600,
            reads_per_minute: 600,
            read_burst: 120,
            machine_reads_per_minute: 0,
            machine_read_burst: 0,
            distinct_patients_per_hour: 200,
        }
    }
}

impl Access {
    /// Limits that cannot work: a rate without a bucket to spend it from.
    pub fn check(&self) -> Result<(), String> {
        if self.reads_per_minute > 0 && self.read_burst == 0 {
            return Err("[access] read_burst must be at least 1 when reads_per_minute is set".into());
        }
        if self.machine_reads_per_minute > 0 && self.machine_read_burst == 0 {
            return Err("[access] machine_read_burst must be at least 1 when machine_reads_per_minute is set".into());
        }
        Ok(())
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
    /// Mark the web UI's cookies `Secure` (sent over HTTPS only; browsers count
    /// http://localhost as secure too). Turn off only for a plain-HTTP test setup.
    pub secure_cookies: bool,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            session_max_seconds: 12 * 3600,
            session_idle_seconds: 30 * 60,
            trust_forwarded_for: false,
            totp_issuer: "Vaidya".into(),
            secure_cookies: true,
        }
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
            database: None,
            database_password_file: None,
            hospital_name: "Demo Hospital".into(),
            timezone: "Asia/Kolkata".into(),
            limits: Limits::default(),
            auth: Auth::default(),
            keys: Keys::default(),
            access: Access::default(),
            oidc: None,
            export: Export::default(),
            alerts: Alerts::default(),
            backup: None,
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

    /// Where the store's database is: PostgreSQL when `database` is set, else the SQLite
    /// file in the data directory. A password written into the URL is refused: it belongs in
    /// `database_password_file` (the URL appears in logs, process lists and this file).
    pub fn location(&self) -> Result<vaidya_store::Location, String> {
        let Some(url) = &self.database else {
            return Ok(vaidya_store::Location::File(crate::datadir::db_path(&self.data)));
        };
        let shown = vaidya_store::sql::redact_password(url);
        if shown != *url {
            return Err(format!("the database URL holds a password ({shown}): put it in database_password_file instead"));
        }
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://") || url.contains('=')) {
            return Err(format!("database = {url:?} is not a PostgreSQL URL (postgres://user@host:5432/dbname)"));
        }
        let password = match &self.database_password_file {
            None => None,
            Some(f) => Some(
                std::fs::read_to_string(f)
                    .map_err(|e| format!("cannot read database_password_file {}: {e}", f.display()))?
                    .trim_end_matches(['\n', '\r'])
                    .to_string(),
            ),
        };
        Ok(vaidya_store::Location::Postgres(vaidya_store::sql::PgTarget::new(url).with_password(password)))
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
        assert_eq!(c.access.distinct_patients_per_hour, Access::default().distinct_patients_per_hour);
        assert_eq!(c.access.read_burst, Access::default().read_burst);
        assert!(c.access.check().is_ok());
        assert!(Access { read_burst: 0, ..Access::default() }.check().is_err());
        assert!(toml::from_str::<Config>("listne = \"x\"").is_err());
        assert!(c.oidc.is_none(), "single sign-on is off unless configured");
        assert!(c.backup.is_none(), "no backups unless configured");
    }

    #[test]
    fn backup_section_parses_with_defaults_and_refuses_unknown_keys() {
        let doc = include_str!("config.rs");
        let section: String = doc
            .lines()
            .skip_while(|l| !l.starts_with("//! # [backup]"))
            .take_while(|l| l.starts_with("//! # "))
            .map(|l| l.trim_start_matches("//! # "))
            .collect::<Vec<_>>()
            .join("\n");
        let b = toml::from_str::<Config>(&section).unwrap().backup.unwrap();
        assert_eq!(b.targets.len(), 2);
        assert_eq!((b.targets[0].kind, b.targets[1].kind), (TargetKind::S3, TargetKind::Dir));
        assert_eq!(b.targets[0].retention_days, Some(365));
        assert_eq!((b.mode, b.sync_timeout_seconds, b.lag_alert_seconds), (BackupMode::Async, 30, 60));
        let min = "[backup]\nrecipients = [\"age1x\"]\nmode = \"sync\"\n[[backup.target]]\nname = \"d\"\nkind = \"dir\"\npath = \"/b\"";
        assert_eq!(toml::from_str::<Config>(min).unwrap().backup.unwrap().mode, BackupMode::Sync);
        let e = toml::from_str::<Config>(&format!("{min}\nretention = 3")).unwrap_err().to_string();
        assert!(e.contains("retention"), "{e}");
        assert!(toml::from_str::<Config>(&min.replace("sync", "eventually")).is_err());
    }

    #[test]
    fn oidc_section_defaults_and_unknown_keys() {
        // The documented (commented) [oidc] example, uncommented, parses.
        let doc = include_str!("config.rs");
        let section: String = doc
            .lines()
            .skip_while(|l| !l.starts_with("//! # [oidc]"))
            .take_while(|l| l.starts_with("//! # "))
            .map(|l| l.trim_start_matches("//! # "))
            .collect::<Vec<_>>()
            .join("\n");
        let c: Config = toml::from_str(&section).unwrap();
        let o = c.oidc.unwrap();
        assert_eq!(o.client_id, "vaidya");
        assert_eq!(o.username_claim, "preferred_username");
        assert_eq!(o.scopes, vec!["profile".to_string()]);
        // Defaults when left out; a misspelt key is refused.
        let min = "[oidc]\nissuer = \"https://idp.example\"\nclient_id = \"v\"\nredirect_url = \"https://h.example/auth/oidc/callback\"\nclient_secret_env = \"S\"";
        let o = toml::from_str::<Config>(min).unwrap().oidc.unwrap();
        assert_eq!((o.username_claim.as_str(), o.scopes.len()), ("preferred_username", 1));
        let bad = format!("{min}\nusername_clam = \"email\"");
        let e = toml::from_str::<Config>(&bad).unwrap_err().to_string();
        assert!(e.contains("username_clam"), "{e}");
    }
}
