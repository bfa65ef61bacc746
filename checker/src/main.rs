//! `checker replay FILE...`: runs `.ops` files through the model and the vmm. Exit status 0
//! when they agree on every file, 1 with the divergence report otherwise, 2 on unreadable input.
//!
//! `checker seeds SCENARIOS OUT`: writes the fuzzers' seed corpora under `OUT/<target>/`: `ops`
//! and `text` from the `.ops` scenarios in `SCENARIOS`, `mmu` and `frames` from the checker's
//! built-in seeds (what `cargo xtask seeds` runs).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "checker", about = "Differential checker for the vmm crate")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay `.ops` files (or fuzzer inputs: any other extension) and report the first
    /// divergence of each.
    Replay {
        /// Print every step with what it returned.
        #[arg(long)]
        trace: bool,
        /// The files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Write the seed corpora `OUT/<target>/<name>` from the `.ops` scenarios (each target's
    /// directory is emptied first: it holds seeds only).
    Seeds {
        /// The directory of `.ops` scenarios (corpus/regressions).
        scenarios: PathBuf,
        /// The corpus root (corpus).
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Replay { trace, files } => replay(trace, &files),
        Command::Seeds { scenarios, out } => match seeds(&scenarios, &out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("checker seeds: {e}");
                ExitCode::from(2)
            }
        },
    }
}

/// The scenarios' names (file stems) and steps, sorted by name.
fn scenarios(dir: &Path) -> Result<Vec<(String, String, Vec<checker::Step>)>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ops"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
            let steps = checker::parse_ops(&text).map_err(|e| format!("{}: {e}", f.display()))?;
            let name = f
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            Ok((name, text, steps))
        })
        .collect()
}

/// Empties `dir` (files only) and writes `files` into it.
fn write_seeds(dir: &Path, files: &[(String, Vec<u8>)]) -> Result<(), String> {
    let err = |e: std::io::Error| format!("{}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(err)?;
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let path = entry.map_err(err)?.path();
        if path.is_file() {
            std::fs::remove_file(&path).map_err(err)?;
        }
    }
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).map_err(err)?;
    }
    println!("{:>3} seeds in {}", files.len(), dir.display());
    Ok(())
}

fn seeds(scenarios_dir: &Path, out: &Path) -> Result<(), String> {
    let scenarios = scenarios(scenarios_dir)?;
    let mut ops = Vec::new();
    for (name, _, steps) in &scenarios {
        if !checker::fuzz::round_trips(steps) {
            return Err(format!(
                "{name}: a fuzz input holds a leading `spawn` and at most {} steps",
                checker::fuzz::MAX_STEPS
            ));
        }
        ops.push((name.clone(), checker::fuzz::encode(steps)));
    }
    write_seeds(&out.join("ops"), &ops)?;
    let text: Vec<(String, Vec<u8>)> = scenarios
        .iter()
        .map(|(name, text, _)| (name.clone(), text.clone().into_bytes()))
        .collect();
    write_seeds(&out.join("text"), &text)?;
    let mmu = checker::mmu::seeds()
        .into_iter()
        .map(|(name, ops)| Ok((name.to_string(), checker::mmu::encode(&ops)?)))
        .collect::<Result<Vec<_>, String>>()?;
    write_seeds(&out.join("mmu"), &mmu)?;
    let frames = checker::frames::seeds()
        .into_iter()
        .map(|(name, (start, total, ops))| {
            Ok((
                name.to_string(),
                checker::frames::encode(start, total, &ops)?,
            ))
        })
        .collect::<Result<Vec<_>, String>>()?;
    write_seeds(&out.join("frames"), &frames)
}

fn replay(trace: bool, files: &[PathBuf]) -> ExitCode {
    let mut diverged = 0;
    for file in files {
        let bytes = match std::fs::read(file) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                return ExitCode::from(2);
            }
        };
        // `.ops` files are text; anything else is a fuzzer input, decoded as the targets do.
        let is_text = file.extension().is_some_and(|x| x == "ops");
        let steps = if is_text {
            match std::str::from_utf8(&bytes)
                .map_err(|e| e.to_string())
                .and_then(checker::parse_ops)
            {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{}: {e}", file.display());
                    return ExitCode::from(2);
                }
            }
        } else {
            let steps = checker::fuzz::decode(&bytes);
            println!(
                "{}: fuzzer bytes, decoded to:\n{}",
                file.display(),
                checker::print_ops(&steps)
            );
            steps
        };
        if trace && let Ok(outcomes) = checker::trace(&steps) {
            for (i, (step, outcome)) in steps.iter().zip(outcomes).enumerate() {
                println!("{:>4}  {:<72} -> {outcome:?}", i + 1, step.to_string());
            }
        }
        match checker::run(&steps) {
            Ok(n) => println!("PASS {} ({n} steps)", file.display()),
            Err(d) => {
                diverged += 1;
                println!("FAIL {}\n{d}", file.display());
            }
        }
    }
    println!("SUMMARY: {} files, {} diverged", files.len(), diverged);
    if diverged == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
