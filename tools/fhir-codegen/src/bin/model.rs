//! Generates `crates/vaidya-fhir/data/r4-model.json`, the compact FHIR R4 model that
//! `vaidya-fhir` embeds for validation, from the official R4 definitions.
//!
//! Usage: `cargo run -p fhir-codegen --bin model -- [SOURCE_DIR [OUTPUT_FILE]]`
//! SOURCE_DIR defaults to `../shared/data/fhir-r4-core` beside the workspace, OUTPUT_FILE to
//! the committed model in `crates/vaidya-fhir/data/`.

#[path = "../model_gen.rs"]
mod model_gen;

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut args = std::env::args_os().skip(1);
    let source = args.next().map_or_else(
        || workspace.join("../shared/data/fhir-r4-core"),
        PathBuf::from,
    );
    let output = args.next().map_or_else(
        || workspace.join("crates/vaidya-fhir/data/r4-model.json"),
        PathBuf::from,
    );

    let text = match model_gen::generate(&source) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("model: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(error) = std::fs::write(&output, &text) {
        eprintln!("model: cannot write {}: {error}", output.display());
        return ExitCode::FAILURE;
    }
    eprintln!("model: wrote {} ({} bytes)", output.display(), text.len());
    ExitCode::SUCCESS
}
