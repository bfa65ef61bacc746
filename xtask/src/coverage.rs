//! `cargo xtask coverage`: an HTML line-coverage report of the `vmm` crate from the fuzz
//! corpora, made by replaying every `ops` input (committed seeds, the grown corpus and the
//! regression scenarios) through `checker replay` under cargo-llvm-cov.

use std::path::Path;
use std::process::ExitCode;

use crate::{Failure, cargo, ensure_cargo_tool, run};

/// Everything but the vmm crate is left out of the report.
const IGNORE: &str =
    r"(checker|reference-model|op-driver|xtask|qemu-tests|fuzz)/|\.cargo/registry|rustc/";

pub fn coverage(root: &Path) -> ExitCode {
    match report(root) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(why)) => {
            eprintln!("xtask coverage: {why}");
            ExitCode::FAILURE
        }
    }
}

fn report(root: &Path) -> Result<(), Failure> {
    let mut tools = std::process::Command::new("rustup");
    tools
        .current_dir(root)
        .args(["component", "add", "llvm-tools-preview"]);
    run(tools)?;
    ensure_cargo_tool(root, "llvm-cov", "cargo-llvm-cov")?;
    let inputs: Vec<_> = [
        root.join("corpus/ops"),
        root.join("fuzz/corpus/ops"),
        root.join("corpus/regressions"),
    ]
    .into_iter()
    .filter(|d| d.is_dir())
    .collect();
    let out = root.join("target/coverage");
    let mut clean = cargo(root);
    clean.args(["llvm-cov", "clean", "--workspace"]);
    run(clean)?;
    // The replay exits 1 if an input diverges: the coverage is still worth having, so the
    // report is made from whatever ran.
    let mut replay = cargo(root);
    replay
        .args([
            "llvm-cov",
            "run",
            "--no-report",
            "--release",
            "-p",
            "checker",
            "--bin",
            "checker",
            "--",
        ])
        .args(["replay", "--quiet"])
        .args(&inputs);
    let replay_result = run(replay);
    let mut html = cargo(root);
    html.args([
        "llvm-cov",
        "report",
        "--release",
        "--html",
        "--ignore-filename-regex",
        IGNORE,
    ])
    .arg("--output-dir")
    .arg(&out);
    run(html)?;
    let mut summary = cargo(root);
    summary.args([
        "llvm-cov",
        "report",
        "--release",
        "--summary-only",
        "--ignore-filename-regex",
        IGNORE,
    ]);
    run(summary)?;
    println!(
        "coverage of vmm from {} input directories: {}",
        inputs.len(),
        crate::shown(&out.join("html/index.html"))
    );
    replay_result.map_err(|Failure(why)| {
        Failure(format!(
            "some inputs diverged ({why}); the report covers them anyway"
        ))
    })
}
