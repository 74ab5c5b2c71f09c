//! The `vaidya` command line.

mod audit;
mod backup;
mod migrate;
mod operator;
mod node;
mod restore;
mod serve;
mod token;
mod user;
mod verify;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "vaidya",
    version,
    about = "Vaidya hospital information system",
    long_about = "Vaidya hospital information system.\n\n\
        Start the server with `vaidya serve` (data in ./vaidya-data, web and FHIR API on\n\
        http://127.0.0.1:8080). The first start creates the data directory and prints the\n\
        admin account's one-time password. Get an API token with `vaidya token --user admin`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: web UI, FHIR R4 API at /fhir, /healthz and /metrics.
    Serve(serve::ServeArgs),
    /// Make, list or revoke bearer tokens for API clients.
    Token(token::TokenArgs),
    /// Check a data directory: hash chain, Merkle tree, signed checkpoints, and projections.
    Verify(verify::VerifyArgs),
    /// Load FHIR transaction Bundles (.json) or NDJSON files (.ndjson) into a data directory.
    Import(crate::import::ImportArgs),
    /// Manage staff accounts.
    User(user::UserArgs),
    /// The audit ledger of every access: verify it, report who accessed a patient's record,
    /// export events (CERT-In).
    Audit(audit::AuditArgs),
    /// Backups: check the targets, show what is shipped, make a key pair.
    Backup(backup::BackupArgs),
    /// Rebuild a data directory from a backup target alone, verified.
    Restore(restore::RestoreArgs),
    /// Restore the latest backup into a scratch directory and compare it with the live server.
    Drill(restore::DrillArgs),
    /// Move the database from SQLite to PostgreSQL or back, ledger and signatures unchanged.
    Migrate(migrate::MigrateArgs),
    /// Run a department node: serve a department from a verified replica of the core, keep working in downtime, hand back.
    Node(node::NodeArgs),
}

/// Options shared by commands that work on a data directory.
#[derive(clap::Args, Clone)]
pub struct DataArgs {
    /// Data directory (database, keys) [default: ./vaidya-data]. Overrides `data` in the
    /// config file.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Configuration file (TOML); see docs/OPERATIONS.md for every setting.
    #[arg(long, value_name = "FILE", env = "VAIDYA_CONFIG")]
    pub config: Option<PathBuf>,
    /// PostgreSQL database instead of the SQLite file in the data directory
    /// (postgres://user@host:5432/dbname; the password goes in database_password_file).
    /// Overrides `database` in the config file.
    #[arg(long, value_name = "URL", env = "VAIDYA_DATABASE")]
    pub database: Option<String>,
}

impl DataArgs {
    pub fn load(&self) -> Result<crate::config::Config, String> {
        let mut config = crate::config::Config::load(self.config.as_deref()).map_err(|e| e.to_string())?;
        if let Some(d) = &self.data {
            config.data = d.clone();
        }
        if let Some(url) = &self.database {
            config.database = Some(url.clone());
        }
        Ok(config)
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VAIDYA_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Serve(a) => serve::run(a),
        Command::Token(a) => token::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Import(a) => crate::import::run(a),
        Command::User(a) => user::run(a),
        Command::Audit(a) => audit::run(a),
        Command::Backup(a) => backup::run(a),
        Command::Restore(a) => restore::run(a),
        Command::Drill(a) => restore::drill(a),
        Command::Node(a) => node::run(a),
        Command::Migrate(a) => migrate::run(a),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
