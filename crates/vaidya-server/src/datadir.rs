//! The data directory: created on first start (database, ledger key, admin account) and locked
//! while a process writes to it.

use crate::config::Config;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use vaidya_ledger::LedgerKey;

pub const DB_FILE: &str = "vaidya.db";
pub const LOCK_FILE: &str = "LOCK";
pub const VERIFIER_FILE: &str = "keys/ledger.pub";
/// A department node's own key (its data directory has no `keys/ledger.key`: the ledger is
/// the core's); it signs the node's downtime branch and its audit ledger.
pub const NODE_KEY_FILE: &str = "keys/node.key";

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("ledger key in {0} is malformed")]
    BadKey(PathBuf),
    #[error("data directory {0} is in use by another Vaidya process (serve or import); stop it first")]
    Locked(PathBuf),
    #[error("{0} is not a Vaidya data directory (no {DB_FILE}); start `vaidya serve --data {0}` once to create it")]
    NotInitialised(PathBuf),
    #[error("{0} holds an unfinished restore ({RESTORE_MARKER}): delete the directory and run `vaidya restore` again")]
    RestoreIncomplete(PathBuf),
    #[error(transparent)]
    Store(#[from] vaidya_store::StoreError),
    #[error("{0}")]
    Config(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io { path: path.to_path_buf(), source }
}

pub fn db_path(data: &Path) -> PathBuf {
    data.join(DB_FILE)
}

/// Holds the data directory's exclusive lock for as long as it lives.
pub struct DirLock {
    _file: File,
}

/// Take the writer lock: only one process may append to the ledger.
pub fn lock_or_create(data: &Path) -> Result<DirLock, DataDirError> {
    fs::create_dir_all(data).map_err(io(data))?;
    let path = data.join(LOCK_FILE);
    let file = File::options().create(true).truncate(false).write(true).open(&path).map_err(io(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(DirLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(DataDirError::Locked(data.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(DataDirError::Io { path, source: e }),
    }
}

/// What a first start created, to tell the operator once.
pub struct Created {
    pub admin_password: String,
}

/// Create the directory, key and admin account if they do not exist yet; load the key.
/// Returns the key and, on a first start, the admin's one-time password.
pub fn init(config: &Config) -> Result<(LedgerKey, Option<Created>), DataDirError> {
    let data = &config.data;
    fs::create_dir_all(data).map_err(io(data))?;
    if data.join(RESTORE_MARKER).exists() {
        return Err(DataDirError::RestoreIncomplete(data.clone()));
    }
    let key_file = config.ledger_key_file();
    let key = if key_file.exists() {
        let text = fs::read_to_string(&key_file).map_err(io(&key_file))?;
        LedgerKey::from_private(&text).map_err(|_| DataDirError::BadKey(key_file.clone()))?
    } else {
        let key = LedgerKey::generate(&format!("vaidya.local/ledger/{}", &uuid::Uuid::new_v4().simple().to_string()[..12]));
        if let Some(dir) = key_file.parent() {
            fs::create_dir_all(dir).map_err(io(dir))?;
        }
        write_private(&key_file, key.private_text())?;
        key
    };
    let pub_file = data.join(VERIFIER_FILE);
    if !pub_file.exists() {
        if let Some(dir) = pub_file.parent() {
            fs::create_dir_all(dir).map_err(io(dir))?;
        }
        fs::write(&pub_file, format!("{}\n", key.verifier_text())).map_err(io(&pub_file))?;
    }
    let conn = vaidya_store::open_admin_at(&config.location().map_err(DataDirError::Config)?)?;
    let created = if vaidya_store::tokens::user_role(&conn, "admin")?.is_none() {
        let password = vaidya_access::password::generate_one_time();
        let hash = vaidya_access::password::hash(&password);
        vaidya_store::tokens::insert_user(&conn, "admin", "admin", None, Some(&hash), true)?;
        Some(Created { admin_password: password })
    } else {
        None
    };
    Ok((key, created))
}

/// A connection for account administration (users, tokens) to an initialised data
/// directory's database, wherever it is.
pub fn admin_conn(config: &Config) -> Result<vaidya_store::Conn, String> {
    let location = config.location()?;
    if let vaidya_store::Location::File(db) = &location
        && !db.exists()
    {
        return Err(DataDirError::NotInitialised(config.data.clone()).to_string());
    }
    vaidya_store::open_admin_at(&location).map_err(|e| format!("the database {}: {e}", location.describe()))
}

/// A read-only connection (offline tools: verify, reports) to the database, wherever it is.
pub fn read_conn(config: &Config) -> Result<vaidya_store::Conn, String> {
    match config.location()? {
        vaidya_store::Location::File(db) => Ok(vaidya_store::Conn::Sqlite(vaidya_store::open_read_only(&db).map_err(|e| e.to_string())?)),
        pg => pg.open_reader().map_err(|e| format!("the database {}: {e}", pg.describe())),
    }
}

/// A restore in progress (or one that failed) leaves this file in the data directory;
/// `vaidya serve` refuses to start on such a directory.
pub const RESTORE_MARKER: &str = "RESTORE-INCOMPLETE";

/// Write the key files of a restored data directory: the private key (mode 0600) where the
/// configuration expects it, and the public verifier key.
pub fn install_key(config: &Config, key: &LedgerKey) -> Result<(), DataDirError> {
    let key_file = config.ledger_key_file();
    for file in [&key_file, &config.data.join(VERIFIER_FILE)] {
        if let Some(dir) = file.parent() {
            fs::create_dir_all(dir).map_err(io(dir))?;
        }
    }
    write_private(&key_file, key.private_text())?;
    let pub_file = config.data.join(VERIFIER_FILE);
    fs::write(&pub_file, format!("{}\n", key.verifier_text())).map_err(io(&pub_file))
}

/// The ledger's signing key of an initialised data directory (for a command that appends to
/// the audit ledger when no server runs); never creates one.
pub fn ledger_key(config: &Config) -> Result<LedgerKey, DataDirError> {
    if !db_path(&config.data).exists() && !config.ledger_key_file().exists() {
        return Err(DataDirError::NotInitialised(config.data.clone()));
    }
    let mut key_file = config.ledger_key_file();
    let node_key = config.data.join(NODE_KEY_FILE);
    if !key_file.exists() && node_key.exists() {
        key_file = node_key; // a department node's directory: its audit ledger is signed with this
    }
    let text = fs::read_to_string(&key_file).map_err(io(&key_file))?;
    LedgerKey::from_private(text.trim()).map_err(|_| DataDirError::BadKey(key_file))
}

/// The ledger's public verifier key, as written at first start.
pub fn verifier_key(data: &Path) -> Result<String, DataDirError> {
    let path = data.join(VERIFIER_FILE);
    // A server on PostgreSQL has no database file here, but its keys.
    if !db_path(data).exists() && !path.exists() {
        return Err(DataDirError::NotInitialised(data.to_path_buf()));
    }
    fs::read_to_string(&path).map_err(io(&path))
}

/// Write a new file (never an existing one) readable by its owner only, and flush it.
pub fn write_private(path: &Path, text: &str) -> Result<(), DataDirError> {
    let mut opts = File::options();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io(path))?;
    f.write_all(text.as_bytes()).map_err(io(path))?;
    f.write_all(b"\n").map_err(io(path))?;
    f.sync_all().map_err(io(path))
}
