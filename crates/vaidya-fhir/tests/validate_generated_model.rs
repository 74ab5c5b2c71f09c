//! The committed model (`data/r4-model.json`) must be exactly what the generator makes from the
//! official definitions, so that nobody edits it by hand or forgets to regenerate it.
//! Regenerate with `cargo run -p fhir-codegen --bin model`.

// The generator's logic, shared with the `model` binary of `tools/fhir-codegen`.
#[path = "../../../tools/fhir-codegen/src/model_gen.rs"]
mod model_gen;

use std::path::Path;

#[test]
fn committed_model_is_fresh() {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = manifest_dir.join("../../../shared/data/fhir-r4-core");
    assert!(
        source.is_dir(),
        "FHIR definitions missing: {} (the repo must be checked out beside `shared`)",
        source.display()
    );

    let generated = model_gen::generate(&source).expect("the generator runs");
    let committed = std::fs::read_to_string(manifest_dir.join("data/r4-model.json"))
        .expect("data/r4-model.json");
    assert!(
        generated == committed,
        "data/r4-model.json is stale ({} bytes generated, {} committed): run `cargo run -p fhir-codegen --bin model`",
        generated.len(),
        committed.len()
    );
}
