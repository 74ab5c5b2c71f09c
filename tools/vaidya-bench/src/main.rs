//! `vaidya-bench`: data and load generator for Vaidya's performance targets.
//!
//! - `gen-synthea`: multiply the Synthea sample into N distinct copies (fresh UUIDs per copy);
//! - `tx`: clients POSTing small transaction Bundles (Patient + Observation);
//! - `read`: clients GETting resources by id;
//! - `all`: the whole suite end to end against a fresh data directory (`scripts/bench`).
//!
//! Load is only ever sent to a loopback address (127.0.0.0/8, ::1, localhost).

mod all;
mod gen_synthea;
mod http;
mod load;
mod sys;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "vaidya-bench", version, about = "Data and load generator for Vaidya's performance targets")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write N copies of the Synthea transaction Bundles with fresh UUIDs per copy.
    GenSynthea(gen_synthea::GenArgs),
    /// Clients POST transaction Bundles (one Patient + one Observation) in a loop.
    Tx(load::TxArgs),
    /// Clients GET resources by id, round-robin over ids found by a search.
    Read(load::ReadArgs),
    /// The whole suite: imports (1x and Nx), then tx and read against `vaidya serve`.
    All(all::AllArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::GenSynthea(a) => gen_synthea::run(&a).map(|s| {
            println!("{}", s.describe());
            true
        }),
        Command::Tx(a) => load::run_tx_command(&a),
        Command::Read(a) => load::run_read_command(&a),
        Command::All(a) => all::run(&a),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
