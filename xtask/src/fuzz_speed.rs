//! `cargo xtask fuzz-speed`: how many 64-step inputs the `ops` fuzz target executes per
//! second on one core, the figure the fuzzing issue sets a goal for (10k exec/s, no
//! sanitizer). The inputs come from `checker speed-inputs`: pseudo-random 64-step sequences
//! (a fixed xorshift seed, so every run measures the same work), each in its shortest
//! encoding; libFuzzer replays them once each (`-runs=0 DIR`, no mutation and no corpus
//! growth), in several rounds, and the best round is the figure (the others show the
//! machine's noise). Then one fuzzing session shows what a user sees: the first
//! [`SESSION_SEEDS`] inputs as seeds, [`SESSION_RUNS`] mutated executions, inputs no longer than
//! the longest seed (so at most about 64 steps), timed here and with libFuzzer's own figure.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::fuzzing::{FuzzStats, cargo_fuzz};
use crate::{cargo_run, ensure_cargo_tool};

/// The goal of the fuzzing issue, executions per second.
const GOAL: f64 = 10_000.0;
/// Seeds of the fuzzing session: the first inputs of the set.
const SESSION_SEEDS: usize = 1000;
/// Executions of the fuzzing session (seeds included).
const SESSION_RUNS: u64 = 100_000;

/// Returns the exit status: 0 when measured (whatever the figure), 1 when something failed.
pub fn fuzz_speed(root: &Path, inputs: usize, rounds: usize) -> u8 {
    if let Err(crate::Failure(why)) = ensure_cargo_tool(root, "fuzz", "cargo-fuzz") {
        eprintln!("xtask fuzz-speed: {why}");
        return 1;
    }
    let dir = root.join("target/fuzz-speed/inputs");
    let mut cmd = cargo_run(root, "checker");
    cmd.arg("speed-inputs")
        .arg("--count")
        .arg(inputs.to_string())
        .arg(&dir);
    match cmd.status() {
        Ok(s) if s.success() => {}
        other => {
            eprintln!("xtask fuzz-speed: checker speed-inputs failed: {other:?}");
            return 1;
        }
    }
    println!("$ cargo fuzz build ops (release, no sanitizer)");
    match cargo_fuzz(root, "build", "ops").status() {
        Ok(s) if s.success() => {}
        other => {
            eprintln!("xtask fuzz-speed: building the ops target failed: {other:?}");
            return 1;
        }
    }
    let Some(binary) = ops_binary(root) else {
        eprintln!("xtask fuzz-speed: cannot find the built ops binary under fuzz/target/");
        return 1;
    };
    if let Err(crate::Failure(why)) = check_coverage(root, &binary) {
        eprintln!("xtask fuzz-speed: {why}");
        return 1;
    }
    println!("{rounds} rounds of `ops -runs=0 {}`", crate::shown(&dir));
    let mut best: f64 = 0.0;
    for round in 1..=rounds.max(1) {
        let start = Instant::now();
        let out = replay(&binary, &dir);
        let seconds = start.elapsed().as_secs_f64();
        let out = match out {
            Ok(o) if o.status.success() => o,
            Ok(o) => {
                eprintln!("{}", String::from_utf8_lossy(&o.stderr));
                eprintln!("xtask fuzz-speed: the ops target failed ({})", o.status);
                return 1;
            }
            Err(e) => {
                eprintln!("xtask fuzz-speed: cannot run {}: {e}", binary.display());
                return 1;
            }
        };
        let log = String::from_utf8_lossy(&out.stderr);
        // libFuzzer counts one extra (empty) run before the corpus.
        let runs = FuzzStats::parse(&log)
            .executions
            .map_or(inputs, |n| n as usize);
        let rate = runs as f64 / seconds;
        best = best.max(rate);
        println!("round {round}: {runs} executions in {seconds:.3} s = {rate:.0} exec/s");
    }
    let session = match session(root, &binary, &dir) {
        Ok(line) => line,
        Err(crate::Failure(why)) => {
            eprintln!("xtask fuzz-speed: {why}");
            return 1;
        }
    };
    let verdict = if best >= GOAL { "met" } else { "not met" };
    println!(
        "SUMMARY: ops, 64-step inputs, one core, no sanitizer: best {best:.0} exec/s (goal {GOAL:.0}: {verdict}); {session}"
    );
    0
}

/// One fuzzing session seeded with the first [`SESSION_SEEDS`] inputs of `inputs` (mutations
/// capped at the longest seed's length, libFuzzer's length control off, a fixed seed), printed
/// and summed up in one line for the summary. libFuzzer's own exec/s, shown beside the timed
/// one, divides by whole seconds. A crash (a divergence the session found) is an error, its
/// input kept in target/fuzz-speed/.
fn session(root: &Path, binary: &Path, inputs: &Path) -> Result<String, crate::Failure> {
    let fail = |why: String| crate::Failure(format!("fuzzing session: {why}"));
    let base = root.join("target/fuzz-speed");
    let (seeds, out) = (base.join("session-seeds"), base.join("session-corpus"));
    for dir in [&seeds, &out] {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
    }
    let (mut longest, mut count) = (0, 0);
    for file in crate::fuzzing::files_in(inputs).iter().take(SESSION_SEEDS) {
        let to = seeds.join(file.file_name().unwrap_or_default());
        let len = std::fs::copy(file, &to).map_err(|e| fail(format!("{}: {e}", to.display())))?;
        longest = longest.max(len);
        count += 1;
    }
    if longest == 0 {
        return Ok("no fuzzing session (no inputs)".into());
    }
    println!(
        "fuzzing session: `ops -seed=1 -runs={SESSION_RUNS} -len_control=0 -max_len={longest}` \
         seeded with {count} of the inputs"
    );
    let start = Instant::now();
    let output = Command::new(binary)
        .arg("-seed=1")
        .arg(format!("-runs={SESSION_RUNS}"))
        .arg("-len_control=0")
        .arg(format!("-max_len={longest}"))
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", base.display()))
        .arg(&out)
        .arg(&seeds)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| fail(format!("cannot run {}: {e}", binary.display())))?;
    let seconds = start.elapsed().as_secs_f64();
    let log = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        eprintln!("{log}");
        return Err(fail(format!(
            "the ops target failed ({}); a crash input is in {}",
            output.status,
            base.display()
        )));
    }
    let stats = FuzzStats::parse(&log);
    let runs = stats.executions.unwrap_or(SESSION_RUNS);
    let rate = runs as f64 / seconds;
    let corpus = crate::fuzzing::files_in(&out).len();
    println!(
        "session: {runs} executions in {seconds:.3} s = {rate:.0} exec/s (libFuzzer: {} exec/s), \
         {corpus} inputs kept",
        stats
            .exec_per_sec
            .map_or_else(|| "?".to_string(), |e| e.to_string())
    );
    Ok(format!(
        "a fuzzing session of such inputs {rate:.0} exec/s (its corpus drifts to heavier inputs)"
    ))
}

/// The least coverage (libFuzzer's `cov:`, edges) replaying `corpus/ops` must show. The fuzz
/// crate builds the checker without coverage counters and relies on the `ops` target's step
/// hooks (`checker::StepHooks`, calling the `#[inline]` `concrete::resolve` and
/// `run::apply_vmm`) for the vmm's code to be compiled, and instrumented, in the fuzz crate
/// (`fuzz/sancov-scope.sh`); if that stopped working the vmm's edges would vanish silently.
/// Measured: 914-939 edges with the vmm instrumented (as the vmm changed), 337 with `#[inline]`
/// taken off `apply_vmm` (983 and 336 before the fuzz profile dropped unwinding and its cleanup
/// edges).
const MIN_SEED_COVERAGE: u64 = 800;

/// Replays the committed `ops` seeds with the built target and checks that the vmm's code
/// carries coverage counters ([`MIN_SEED_COVERAGE`]).
pub fn check_instrumentation(root: &Path) -> Result<(), crate::Failure> {
    let binary = ops_binary(root).ok_or_else(|| {
        crate::Failure("ops instrumentation check: no built ops binary under fuzz/target/".into())
    })?;
    check_coverage(root, &binary)
}

/// [`check_instrumentation`] with the `ops` binary at hand.
fn check_coverage(root: &Path, binary: &Path) -> Result<(), crate::Failure> {
    let fail = |why: String| crate::Failure(format!("ops instrumentation check: {why}"));
    let out = replay(binary, &root.join("corpus/ops"))
        .map_err(|e| fail(format!("cannot run {}: {e}", binary.display())))?;
    let log = String::from_utf8_lossy(&out.stderr);
    let coverage = FuzzStats::parse(&log)
        .coverage
        .ok_or_else(|| fail(format!("no coverage in the replay's output:\n{log}")))?;
    println!("ops: replaying corpus/ops covers {coverage} edges (at least {MIN_SEED_COVERAGE})");
    if coverage < MIN_SEED_COVERAGE {
        return Err(fail(format!(
            "{coverage} edges, expected at least {MIN_SEED_COVERAGE}: the vmm's code lost its \
             coverage counters (see fuzz/sancov-scope.sh and `StepHooks` in checker/src/run.rs)"
        )));
    }
    Ok(())
}

/// One replay of the inputs in `dir` by `binary` (`-runs=0`), libFuzzer's log kept.
fn replay(binary: &Path, dir: &Path) -> std::io::Result<std::process::Output> {
    Command::new(binary)
        .arg("-runs=0")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
}

/// fuzz/target/<host triple>/release/ops, where `cargo fuzz build -O` leaves it.
fn ops_binary(root: &Path) -> Option<std::path::PathBuf> {
    let out = Command::new("rustc").arg("-vV").output().ok()?;
    let host = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))?;
    let path = root.join("fuzz/target").join(host).join("release/ops");
    path.is_file().then_some(path)
}
