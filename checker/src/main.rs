//! `checker replay FILE...`: runs `.ops` files through the model and the vmm. Exit status 0
//! when they agree on every file, 1 with the divergence report otherwise, 2 on unreadable input.
//!
//! `checker seeds SCENARIOS OUT`: writes the fuzzers' seed corpora under `OUT/<target>/`: `ops`
//! and `text` from the `.ops` scenarios in `SCENARIOS`, `mmu` and `frames` from the checker's
//! built-in seeds (what `cargo xtask seeds` runs).
//!
//! `checker minimize FILE --out DIR`: a finding -> a short regression scenario (what `cargo
//! xtask minimize` runs after `cargo fuzz tmin`).
//!
//! `checker speed-inputs OUT`: the fixed 64-step inputs `cargo xtask fuzz-speed` times.

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
    /// Replay `.ops` files (or fuzzer inputs: any other extension; a directory stands for
    /// its files) and report the first divergence of each.
    Replay {
        /// Print every step with what it returned.
        #[arg(long)]
        trace: bool,
        /// Print only divergences and the summary.
        #[arg(long)]
        quiet: bool,
        /// Run on a machine with this deliberate defect (drop-every-invalidate, ...).
        #[arg(long, value_parser = parse_defect)]
        defect: Option<checker::Defect>,
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
    /// Minimize a diverging `.ops` file or `ops` fuzzer input at the op level and write it as a
    /// regression scenario `OUT/<kind>_<date>_<hash>.ops`.
    Minimize {
        /// The finding (`.ops` text, or fuzzer bytes: any other extension).
        file: PathBuf,
        /// A byte-minimized version of it (`cargo fuzz tmin`), used instead when it diverges
        /// with the same kind.
        #[arg(long)]
        tmin: Option<PathBuf>,
        /// Where to write the scenario (corpus/regressions).
        #[arg(long)]
        out: PathBuf,
        /// Minimize against a machine with this deliberate defect.
        #[arg(long, value_parser = parse_defect)]
        defect: Option<checker::Defect>,
    },
    /// Check the fuzzing (fast) mode against the reference (full) mode on `.ops` files or
    /// fuzzer inputs (a directory stands for its files): each runs in full mode and in fast
    /// mode with the shadow audited against a full read of the tables after every step, and
    /// both must pass, or diverge with the same kind at the same step (a divergence of the
    /// tables' INV-7, which fast mode checks only at the end, may come later there). For
    /// anyone changing the fast mode.
    AuditFast {
        /// The files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Write the inputs `cargo xtask fuzz-speed` times: `OUT/input-NNNNN`, each the shortest
    /// encoding of a pseudo-random 64-step sequence (the same set on every run; `OUT` is
    /// emptied first).
    SpeedInputs {
        /// How many inputs.
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        /// The directory to write them into.
        out: PathBuf,
    },
}

fn parse_defect(name: &str) -> Result<checker::Defect, String> {
    checker::Defect::from_name(name)
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Replay {
            trace,
            quiet,
            defect,
            files,
        } => replay(trace, quiet, defect, &expand_dirs(&files)),
        Command::Seeds { scenarios, out } => match seeds(&scenarios, &out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("checker seeds: {e}");
                ExitCode::from(2)
            }
        },
        Command::Minimize {
            file,
            tmin,
            out,
            defect,
        } => minimize(&file, tmin.as_deref(), &out, defect),
        Command::SpeedInputs { count, out } => speed_inputs(count, &out),
        Command::AuditFast { files } => audit_fast(&expand_dirs(&files)),
    }
}

fn speed_inputs(count: usize, out: &Path) -> ExitCode {
    let inputs = match checker::fuzz::speed_inputs(count) {
        Ok(inputs) => inputs,
        Err(i) => {
            eprintln!("checker speed-inputs: input {i} does not decode to 64 steps");
            return ExitCode::from(2);
        }
    };
    let files: Vec<(String, Vec<u8>)> = inputs
        .into_iter()
        .enumerate()
        .map(|(i, bytes)| (format!("input-{i:05}"), bytes))
        .collect();
    let bytes: usize = files.iter().map(|(_, b)| b.len()).sum();
    if let Err(e) = replace_files(out, &files) {
        eprintln!("checker speed-inputs: {e}");
        return ExitCode::from(2);
    }
    println!(
        "{count} inputs of 64 steps ({} bytes on average) in {}",
        bytes / count.max(1),
        out.display()
    );
    ExitCode::SUCCESS
}

/// Reads `.ops` text, or fuzzer bytes (any other extension) decoded as the `ops` target does.
fn read_steps(file: &Path) -> Result<checker::Sequence, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    if file.extension().is_some_and(|x| x == "ops") {
        std::str::from_utf8(&bytes)
            .map_err(|e| e.to_string())
            .and_then(checker::parse_sequence)
            .map_err(|e| format!("{}: {e}", file.display()))
    } else {
        Ok(checker::fuzz::decode(&bytes))
    }
}

fn minimize(
    file: &Path,
    tmin: Option<&Path>,
    out: &Path,
    defect: Option<checker::Defect>,
) -> ExitCode {
    let fail = |e: String| {
        eprintln!("checker minimize: {e}");
        ExitCode::from(2)
    };
    let steps = match read_steps(file) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let Err(original) = checker::run_both_with_defect(&steps, defect) else {
        println!(
            "{}: model and vmm agree ({} steps): nothing to minimize",
            file.display(),
            steps.steps.len()
        );
        return ExitCode::FAILURE;
    };
    println!(
        "{}: {:?} at step {} of {}",
        file.display(),
        original.kind,
        original.at + 1,
        steps.steps.len()
    );
    // Start from the byte-minimized input when it still diverges the same way.
    let mut start = steps.clone();
    if let Some(t) = tmin {
        match read_steps(t).map(|s| (checker::run_both_with_defect(&s, defect), s)) {
            Ok((Err(d), s)) if d.kind == original.kind => {
                println!("{}: the same kind in {} steps", t.display(), s.steps.len());
                start = s;
            }
            _ => println!("{}: not the same divergence; ignored", t.display()),
        }
    }
    let Some(mut m) = checker::minimize::minimize(&start, defect) else {
        return fail("the divergence did not reproduce".into());
    };
    m.original_len = steps.steps.len();
    // Found: when the fuzzer wrote the file (its modification time), else today.
    let secs = std::fs::metadata(file)
        .and_then(|md| md.modified())
        .unwrap_or_else(|_| std::time::SystemTime::now())
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let source = file
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let (name, text) =
        checker::minimize::regression_file(&m, &source, checker::minimize::civil_date(days));
    let path = out.join(name);
    if let Err(e) = std::fs::create_dir_all(out).and_then(|()| std::fs::write(&path, &text)) {
        return fail(format!("{}: {e}", path.display()));
    }
    println!(
        "minimized {} -> {} steps ({} runs), {:?} at step {}:\n{}",
        m.original_len,
        m.steps.len(),
        m.runs,
        m.divergence.kind,
        m.divergence.at + 1,
        text
    );
    println!("wrote {}", path.display());
    println!("replay: cargo xtask replay {}", path.display());
    ExitCode::SUCCESS
}

/// The scenarios' names (file stems), texts and sequences, sorted by name.
fn scenarios(dir: &Path) -> Result<Vec<(String, String, checker::Sequence)>, String> {
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
            let steps =
                checker::parse_sequence(&text).map_err(|e| format!("{}: {e}", f.display()))?;
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
    replace_files(dir, files)?;
    println!("{:>3} seeds in {}", files.len(), dir.display());
    Ok(())
}

/// Empties `dir` (files only; made when missing) and writes `files` into it.
fn replace_files(dir: &Path, files: &[(String, Vec<u8>)]) -> Result<(), String> {
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

/// Files as given, directories replaced by their files (sorted).
fn expand_dirs(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(p)
                .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            inside.retain(|f| f.is_file());
            inside.sort();
            out.extend(inside);
        } else {
            out.push(p.clone());
        }
    }
    out
}

/// Whether fast mode (audited) found what full mode found: both pass the same steps, or both
/// diverge with the same kind at the same step; except that fast mode checks INV-7 only after
/// the last step, so for a `Tables` divergence in full mode it may diverge later, as any kind.
fn modes_agree(
    full: &Result<usize, Box<checker::Divergence>>,
    fast: &Result<usize, Box<checker::Divergence>>,
) -> bool {
    match (full, fast) {
        (Ok(a), Ok(b)) => a == b,
        (Err(a), Err(b)) if a.kind == checker::DivergenceKind::Tables => b.at >= a.at,
        (Err(a), Err(b)) => (a.kind, a.at) == (b.kind, b.at),
        _ => false,
    }
}

/// `checker audit-fast`: exit status 0 when the modes agree on every file, 1 when not, 2 when
/// a file cannot be read or parsed.
fn audit_fast(files: &[PathBuf]) -> ExitCode {
    let verdict = |r: &Result<usize, Box<checker::Divergence>>| match r {
        Ok(n) => format!("passes ({n} steps)"),
        Err(d) => format!("diverges: {:?} at step {}", d.kind, d.at + 1),
    };
    let mut differ = 0;
    for file in files {
        let steps = match read_steps(file) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        };
        let full = checker::run(&steps);
        let fast = checker::run::audit_fast_mode(&steps, None);
        if !modes_agree(&full, &fast) {
            differ += 1;
            println!(
                "FAIL {}: full mode {}, fast mode (audited) {}",
                file.display(),
                verdict(&full),
                verdict(&fast)
            );
            if let Err(d) = &fast {
                println!("{d}");
            }
        }
    }
    println!(
        "SUMMARY: {} files, the modes differ on {differ}",
        files.len()
    );
    if differ == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn replay(
    trace: bool,
    quiet: bool,
    defect: Option<checker::Defect>,
    files: &[PathBuf],
) -> ExitCode {
    let mut diverged = 0;
    for file in files {
        let steps = match read_steps(file) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        };
        // `.ops` files are text; anything else is a fuzzer input, decoded as the target does.
        if !quiet && file.extension().is_none_or(|x| x != "ops") {
            println!(
                "{}: fuzzer bytes, decoded to:\n{}",
                file.display(),
                checker::print_sequence(&steps)
            );
        }
        if trace && let Ok(outcomes) = checker::trace(&steps) {
            for (i, (step, outcome)) in steps.steps.iter().zip(outcomes).enumerate() {
                println!(
                    "{:>4}  {:<72} -> {}",
                    i + 1,
                    step.to_string(),
                    checker::report::describe(&step.op, outcome)
                );
            }
        }
        match checker::run_both_with_defect(&steps, defect) {
            Ok(n) if !quiet => println!("PASS {} ({n} steps)", file.display()),
            Ok(_) => {}
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
