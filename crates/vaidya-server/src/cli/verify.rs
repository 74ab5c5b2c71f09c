//! `vaidya verify`

use super::DataArgs;
use crate::datadir;
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(after_help = "Exit status: 0 when everything verifies, 1 when anything is wrong (the first bad entry is named).")]
pub struct VerifyArgs {
    #[command(flatten)]
    data: DataArgs,
}

pub fn run(args: VerifyArgs) -> Result<ExitCode, String> {
    let config = args.data.load()?;
    let vkey = datadir::verifier_key(&config.data).map_err(|e| e.to_string())?;
    let conn = datadir::read_conn(&config)?;
    let started = std::time::Instant::now();
    let report = vaidya_store::verify::verify(&conn, &vkey).map_err(|e| format!("verification could not run: {e}"))?;
    println!("entries:     {}", report.entries);
    println!("resources:   {}", report.resources);
    println!("checkpoints: {}", report.checkpoints);
    println!("root:        {}", report.root);
    if let Some((size, ms)) = report.last_checkpoint {
        println!("last signed checkpoint: tree size {size} at {}", vaidya_fhir::datetime::format_instant(ms));
    }
    println!("checked in {:.2}s", started.elapsed().as_secs_f64());
    if report.problems.is_empty() {
        println!("OK: the ledger, its Merkle tree, every checkpoint and every projection verify");
        Ok(ExitCode::SUCCESS)
    } else {
        if let Some(first) = report.problems.iter().find(|p| p.seq.is_some()) {
            println!("FIRST BAD ENTRY: {}", first.seq.expect("found with a seq"));
        }
        for p in &report.problems {
            println!("FAILED: {p}");
        }
        Ok(ExitCode::FAILURE)
    }
}
