//! Fuzzing tasks beside `cargo xtask fuzz`: `seeds` (the committed seed corpora, regenerated
//! from the `.ops` scenarios by the checker's encoder).

use std::path::Path;
use std::process::ExitCode;

use crate::{Failure, cargo, run};

/// `cargo xtask seeds`: `corpus/<target>/` from `corpus/regressions/*.ops` (and the checker's
/// built-in seeds for the targets that do not take ops).
pub fn seeds(root: &Path) -> ExitCode {
    let mut cmd = cargo(root);
    cmd.args([
        "run",
        "--quiet",
        "--release",
        "-p",
        "checker",
        "--",
        "seeds",
    ])
    .arg(root.join("corpus/regressions"))
    .arg(root.join("corpus"));
    match run(cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(why)) => {
            eprintln!("xtask seeds: {why}");
            ExitCode::FAILURE
        }
    }
}
