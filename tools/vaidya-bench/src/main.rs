//! `vaidya-bench`: data and load generator for Vaidya's performance targets.
//!
//! - `gen-synthea`: multiply the Synthea sample into N distinct copies (fresh UUIDs per copy);
//! - `tx`: clients POSTing small transaction Bundles (Patient + Observation);
//! - `read`: clients GETting resources by id;
//! - `all`: the whole suite end to end against a fresh data directory (`scripts/bench`);
//! - `gen-patients`: realistic Indian patients (English and Devanagari names) as NDJSON;
//! - `patients`: patient search load (UHID, mobile, name prefix) against a running server;
//! - `opd`: the OPD morning rush (register, book, check in) against a running server, then an
//!   independent count of every slot's bookings (fails if any slot is overbooked);
//! - `run-patients`, `run-opd`: those two end to end on fresh data directories
//!   (`scripts/bench patients`, `scripts/bench opd`);
//! - `run-export`: Bulk Data `$export` to NDJSON end to end (import, serve, kick off, approve, time).
//!
//! Load is only ever sent to a loopback address (127.0.0.0/8, ::1, localhost).

mod all;
mod export;
mod gen_patients;
mod gen_synthea;
mod http;
mod load;
mod names;
mod opd;
mod patients;
mod steps;
mod suite;
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
    /// Write N realistic Indian patients (FHIR Patient NDJSON, deterministic per seed).
    GenPatients(gen_patients::GenPatientsArgs),
    /// Clients search Patients by UHID, mobile and name prefix (Latin and Devanagari).
    Patients(patients::PatientsArgs),
    /// The OPD morning rush: set up departments and slots, then register + book + check in.
    Opd(opd::OpdArgs),
    /// End to end: gen-patients (reused), vaidya import, vaidya serve, then `patients`.
    RunPatients(suite::RunPatientsArgs),
    /// End to end: vaidya serve on a fresh data directory, then `opd`.
    RunOpd(suite::RunOpdArgs),
    /// End to end: vaidya import of Synthea, vaidya serve, then a timed, approved `$export`.
    RunExport(export::RunExportArgs),
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
        Command::GenPatients(a) => gen_patients::run(&a).map(|s| {
            println!(
                "wrote {} patients in {} files ({:.1} MiB) to {} in {:.2}s",
                s.patients,
                s.files,
                s.bytes as f64 / 1048576.0,
                a.out.display(),
                s.seconds
            );
            true
        }),
        Command::Patients(a) => patients::run_command(&a),
        Command::Opd(a) => opd::run_command(&a),
        Command::RunPatients(a) => suite::run_patients(&a),
        Command::RunOpd(a) => suite::run_opd(&a),
        Command::RunExport(a) => export::run(&a),
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
