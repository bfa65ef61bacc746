//! Fuzzing tasks beside `cargo xtask fuzz`: `seeds` (the committed seed corpora, regenerated
//! from the `.ops` scenarios by the checker's encoder).

use std::path::Path;
use std::process::ExitCode;

use crate::{Failure, cargo, run};

/// How every fuzz target is built (`cargo fuzz run|build|tmin` flags): release, no sanitizer
/// (the targets are safe Rust; the checks are the model comparisons), and no comparison tracing:
/// the `-sanitizer-coverage-trace-compares` hooks sat in the checker's per-step sweeps and took
/// two thirds of the `ops` target's time (60 vs 285 executions/s of 64-step inputs, measured).
pub const BUILD_FLAGS: [&str; 4] = ["-O", "--sanitizer", "none", "--no-trace-compares"];

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
