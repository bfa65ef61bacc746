//! Fuzzing tasks beside `cargo xtask fuzz`: `seeds` (the committed seed corpora, regenerated
//! from the `.ops` scenarios by the checker's encoder) and `minimize` (a finding -> a short
//! regression scenario).

use std::path::Path;
use std::process::{Command, ExitCode};

use crate::{Failure, cargo, cargo_run, run};

/// How every fuzz target is built (`cargo fuzz run|build|tmin` flags): release, no sanitizer
/// (the targets are safe Rust; the checks are the model comparisons), and no comparison tracing:
/// the `-sanitizer-coverage-trace-compares` hooks sat in the checker's per-step sweeps and took
/// two thirds of the `ops` target's time (60 vs 285 executions/s of 64-step inputs, measured).
pub const BUILD_FLAGS: [&str; 4] = ["-O", "--sanitizer", "none", "--no-trace-compares"];

/// The fuzz targets of fuzz/, in the order tasks run them.
pub const TARGETS: [&str; 4] = ["ops", "mmu", "frames", "text"];

/// `cargo fuzz <subcommand> <BUILD_FLAGS> <target>` run from fuzz/, on stable through
/// RUSTC_BOOTSTRAP, never caching a failed toolchain probe, linked with fat LTO (these builds
/// have no sanitizer; fat LTO with ASan does not link, so fuzz/Cargo.toml leaves it out).
pub fn cargo_fuzz(root: &Path, subcommand: &str, target: &str) -> Command {
    let mut cmd = cargo(&root.join("fuzz"));
    cmd.env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_CACHE_RUSTC_INFO", "0")
        .env("CARGO_PROFILE_RELEASE_LTO", "fat")
        .args(["fuzz", subcommand])
        .args(BUILD_FLAGS)
        .arg(target);
    cmd
}

/// The fuzzer's own corpus of `target` (grown, not committed), relative to the root:
/// `fuzz/corpus/T`, or `fuzz/corpus/T-smpN` for a world of N CPUs.
pub fn grown_corpus(target: &str, smp: Option<u8>) -> String {
    match smp {
        Some(n) => format!("fuzz/corpus/{target}-smp{n}"),
        None => format!("fuzz/corpus/{target}"),
    }
}

/// `cmd` (a run of the `ops` target) in a world of `smp` CPUs when given (`VMM_FUZZ_SMP`), and
/// the words a progress line says it with.
pub fn in_world(cmd: &mut Command, smp: Option<u8>) -> String {
    match smp {
        Some(n) => {
            cmd.env("VMM_FUZZ_SMP", n.to_string());
            format!(" in a world of {n} CPUs")
        }
        None => String::new(),
    }
}

/// What a libFuzzer run reported (its stderr), in single-process or fork mode.
#[derive(Clone, Copy, Debug, Default)]
pub struct FuzzStats {
    /// Inputs executed.
    pub executions: Option<u64>,
    /// Average executions per second.
    pub exec_per_sec: Option<u64>,
    /// Coverage (edges, libFuzzer's `cov:`).
    pub coverage: Option<u64>,
}

impl FuzzStats {
    /// Reads the final statistics (`stat::` lines with `-print_final_stats=1`), else the last
    /// status line (`#N ... cov: C ... exec/s: E`, which fork mode prints).
    pub fn parse(log: &str) -> Self {
        let stat = |name: &str| {
            log.lines().rev().find_map(|l| {
                l.strip_prefix(&format!("stat::{name}:"))
                    .and_then(|v| v.trim().parse().ok())
            })
        };
        let field = |line: &str, key: &str| {
            line.split(key)
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        };
        let status = log
            .lines()
            .rev()
            .find(|l| l.starts_with('#') && l.contains("cov: "));
        Self {
            executions: stat("number_of_executed_units").or_else(|| {
                status.and_then(|l| {
                    l[1..]
                        .split(|c: char| !c.is_ascii_digit())
                        .next()
                        .and_then(|n| n.parse().ok())
                })
            }),
            exec_per_sec: stat("average_exec_per_sec")
                .or_else(|| status.and_then(|l| field(l, "exec/s: "))),
            coverage: status.and_then(|l| field(l, "cov: ")),
        }
    }
}

/// What `cargo xtask fuzz` watches while libFuzzer runs.
pub struct Progress<'a> {
    /// The time budget in seconds.
    pub budget: u64,
    /// The corpus the run grows.
    pub corpus: &'a Path,
    /// Where crashes land.
    pub artifacts: &'a Path,
    /// Crashes there before the run.
    pub crashes_before: usize,
}

/// How often a progress line is printed.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// A finished libFuzzer run as [`run_with_progress`] saw it.
pub struct Watched {
    /// cargo fuzz's exit status.
    pub status: std::process::ExitStatus,
    /// Its whole stderr.
    pub log: String,
    /// Whether Ctrl-C ended it.
    pub interrupted: bool,
    /// Every libFuzzer status line as (seconds since the start, what it said), for plots.
    pub samples: Vec<(f64, FuzzStats)>,
}

/// Runs `cmd` (a libFuzzer run) with its stderr read as it comes, printing a progress line
/// every few seconds: elapsed/budget, executions, exec/s and coverage from libFuzzer's latest
/// status line, corpus size and new crashes from the directories. Ctrl-C (which libFuzzer gets
/// too) ends the run, and the caller still prints its summary.
pub fn run_with_progress(mut cmd: Command, watch: &Progress<'_>) -> std::io::Result<Watched> {
    use std::io::BufRead;
    use std::sync::atomic::{AtomicBool, Ordering};
    static INTERRUPTED: AtomicBool = AtomicBool::new(false);
    // The handler only notes the interrupt: libFuzzer, in the same process group, stops on it.
    let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
    let mut child = cmd.stderr(std::process::Stdio::piped()).spawn()?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let started = std::time::Instant::now();
    let mut log = String::new();
    let mut latest = FuzzStats::default();
    let mut samples = Vec::new();
    let mut next = started + PROGRESS_EVERY;
    loop {
        match rx.recv_timeout(std::time::Duration::from_millis(250)) {
            Ok(line) => {
                if line.starts_with('#') && line.contains("cov: ") {
                    latest = FuzzStats::parse(&line);
                    samples.push((started.elapsed().as_secs_f64(), FuzzStats::parse(&line)));
                }
                log.push_str(&line);
                log.push('\n');
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if std::time::Instant::now() >= next {
            next += PROGRESS_EVERY;
            let crashes = files_in(watch.artifacts)
                .len()
                .saturating_sub(watch.crashes_before);
            let clock = format!("[{:>4}/{} s]", started.elapsed().as_secs(), watch.budget);
            let corpus = files_in(watch.corpus).len();
            if latest.executions.is_none() {
                // Nothing from libFuzzer yet: it is building, or reading the corpus.
                println!("  {clock} starting (building, loading {corpus} corpus inputs)");
            } else {
                println!(
                    "  {clock} {} executions, {} exec/s, coverage {}, corpus {corpus}, new crashes {crashes}",
                    or_unknown(latest.executions),
                    or_unknown(latest.exec_per_sec),
                    or_unknown(latest.coverage),
                );
            }
        }
    }
    let _ = reader.join();
    let status = child.wait()?;
    Ok(Watched {
        status,
        log,
        interrupted: INTERRUPTED.load(Ordering::SeqCst),
        samples,
    })
}

/// A number or `?`.
pub fn or_unknown(v: Option<u64>) -> String {
    v.map_or_else(|| "?".into(), |v| v.to_string())
}

/// The last `n` lines of a tool's output, in their order, joined by `separator` (what a
/// failure shows of a long log).
pub fn last_lines(text: &str, n: usize, separator: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(separator)
}

/// The files in `dir`, sorted (none when it does not exist).
pub fn files_in(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.is_file());
    files.sort();
    files
}

/// `cargo xtask seeds`: `corpus/<target>/` from `corpus/regressions/*.ops` (and the checker's
/// built-in seeds for the targets that do not take ops).
pub fn seeds(root: &Path) -> ExitCode {
    let mut cmd = cargo_run(root, "checker");
    cmd.arg("seeds")
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

/// `cargo xtask minimize FILE`: a finding of the `ops` target (fuzzer bytes) or an `.ops` file
/// that diverges -> `cargo fuzz tmin` on the bytes (when cargo-fuzz is there) -> the checker's
/// op-level minimizer -> a regression scenario in corpus/regressions/.
pub fn minimize(root: &Path, file: &Path) -> ExitCode {
    let is_text = file.extension().is_some_and(|x| x == "ops");
    let mut tmin_out = None;
    let has_cargo_fuzz = cargo(root)
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !is_text && has_cargo_fuzz {
        let name = file
            .file_name()
            .map_or_else(|| "input".into(), |n| n.to_string_lossy().into_owned());
        // Beside the crashes, not among them (`cargo xtask fuzz` counts those).
        let dir = root.join("fuzz/artifacts/ops-tmin");
        let out = dir.join(format!("tmin-{name}"));
        let _ = std::fs::create_dir_all(&dir);
        let mut cmd = cargo_fuzz(root, "tmin", "ops");
        cmd.arg(file)
            .arg("--")
            .arg(format!("-exact_artifact_path={}", out.display()));
        println!(
            "==> byte-level: cargo fuzz tmin (output {})",
            crate::shown(&out)
        );
        match cmd.output() {
            Ok(o) if o.status.success() && out.is_file() => tmin_out = Some(out),
            Ok(o) => {
                let log = String::from_utf8_lossy(&o.stderr);
                println!(
                    "cargo fuzz tmin did not minimize ({}); going on with the input as it is:\n  {}",
                    o.status,
                    last_lines(&log, 5, "\n  ")
                );
            }
            Err(e) => println!("cannot run cargo fuzz tmin ({e}); going on without it"),
        }
    } else if !is_text {
        println!("cargo-fuzz is not installed: skipping the byte-level pass (cargo fuzz tmin)");
    }
    println!("==> op-level: checker minimize");
    let mut cmd = cargo_run(root, "checker");
    cmd.arg("minimize")
        .arg(file)
        .arg("--out")
        .arg(root.join("corpus/regressions"));
    if let Some(t) = &tmin_out {
        cmd.arg("--tmin").arg(t);
    }
    match cmd.status() {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("xtask minimize: checker minimize exited with {s}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("xtask minimize: cannot run cargo: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::last_lines;

    #[test]
    fn last_lines_keep_their_order() {
        assert_eq!(last_lines("a\nb\nc\nd", 2, "\n"), "c\nd");
        assert_eq!(last_lines("a\nb", 5, " | "), "a | b");
        assert_eq!(last_lines("", 3, "\n"), "");
    }
}
