//! `vaidya migrate`: move a hospital's database from SQLite to PostgreSQL or back.

use super::DataArgs;
use crate::datadir;
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args)]
#[command(after_help = "Stop every `vaidya serve` of the hospital first. The ledger is copied entry by entry with its\n\
signed checkpoints (the hash chain, Merkle root and signatures stay the same: `vaidya verify` shows the same\n\
root and checkpoint on both), the search indexes are rebuilt, and accounts, tokens, break-the-glass grants and\n\
counters are copied. The target must be empty. The audit ledger and keys stay in the data directory.\n\n\
Examples:\n  vaidya migrate --data /srv/vaidya --to-postgres postgres://vaidya@db1:5432/vaidya\n  \
vaidya migrate --data /srv/vaidya --from-postgres postgres://vaidya@db1:5432/vaidya   # back to SQLite")]
pub struct MigrateArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Copy the data directory's SQLite database into this (empty) PostgreSQL database.
    #[arg(long, value_name = "URL", conflicts_with = "from_postgres", required_unless_present = "from_postgres")]
    to_postgres: Option<String>,
    /// Copy this PostgreSQL database into the data directory's SQLite file (which must not exist).
    #[arg(long, value_name = "URL")]
    from_postgres: Option<String>,
}

pub fn run(args: MigrateArgs) -> Result<ExitCode, String> {
    let mut config = args.data.load()?;
    if config.data.join(datadir::NODE_KEY_FILE).exists() {
        return Err("this is a department node's data directory: a node's store stays SQLite".into());
    }
    let sqlite = vaidya_store::Location::File(datadir::db_path(&config.data));
    let postgres = {
        config.database = args.to_postgres.clone().or(args.from_postgres.clone());
        config.location()?
    };
    // No server may write to either side meanwhile: the data directory's lock, and on
    // PostgreSQL the writer's lock (taken below by opening the store there).
    let _lock = datadir::lock_or_create(&config.data).map_err(|e| e.to_string())?;
    let (from, to) = if args.to_postgres.is_some() {
        if !datadir::db_path(&config.data).exists() {
            return Err(datadir::DataDirError::NotInitialised(config.data.clone()).to_string());
        }
        (sqlite, postgres)
    } else {
        if datadir::db_path(&config.data).exists() {
            return Err(format!("{} exists: a migration from PostgreSQL writes a new SQLite file", datadir::db_path(&config.data).display()));
        }
        (postgres, sqlite)
    };
    let open = |l: &vaidya_store::Location| -> Result<vaidya_store::Store, String> {
        let store = vaidya_store::Store::open_replica_at(l.clone()).map_err(|e| format!("{}: {e}", l.describe()))?;
        if !store.is_writer() {
            return Err(format!("a Vaidya server is running on {}: stop every server first", l.describe()));
        }
        Ok(store)
    };
    let source = open(&from)?;
    let target = open(&to)?;
    println!("migrating {} -> {}", from.describe(), to.describe());
    let started = Instant::now();
    let last = std::sync::Mutex::new(Instant::now());
    let progress = |n: u64| {
        let mut last = last.lock().expect("not poisoned");
        if last.elapsed().as_secs() >= 2 {
            *last = Instant::now();
            println!("  {n} entries");
        }
    };
    let result = vaidya_store::migrate::copy(&source, &target, &progress);
    source.shutdown();
    target.shutdown();
    let done = result.map_err(|e| format!("migration FAILED: {e}\nthe target {} is incomplete: empty it before trying again", to.describe()))?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "ledger: {} entries, {} signed checkpoints, root {} ({:.0} entries/s)",
        done.entries,
        done.checkpoints,
        hex::encode(done.root.0),
        done.entries as f64 / secs.max(1e-9)
    );
    for (table, n) in &done.rows {
        println!("{table}: {n} rows");
    }
    println!("done in {secs:.1} s; check with `vaidya verify` on both (the same root and checkpoint)");
    Ok(ExitCode::SUCCESS)
}
