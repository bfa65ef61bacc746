//! The project's front door.
//!
//! - `cargo xtask fuzz [--target T] [--seconds N] [--jobs J]`: the main job, cargo-fuzz with a
//!   summary (executions, exec/s, coverage, corpus, crashes with their replay commands);
//! - `cargo xtask seeds`: the committed seed corpora `corpus/<target>/`, from the scenarios;
//! - `cargo xtask minimize FILE`: a finding -> a short regression scenario;
//! - `cargo xtask nightly [--seconds N] [--jobs J] [--targets T,..]`: every target in fork mode,
//!   corpora merged, new crashes minimized and grouped by kind, a Markdown summary;
//! - `cargo xtask fuzz-proof [--defect D]`: an injected defect found by fuzzing, minimized to at
//!   most 10 steps and replayed (the workflow proven end to end);
//! - `cargo xtask detect [--quick] [--seeds S,..] [--only D,..]`: time to detection over the
//!   defect catalogue (broken machines and patches to a scratch copy of the vmm);
//! - `cargo xtask coverage`: an HTML coverage report of `vmm` from the fuzz corpora;
//! - `cargo xtask fuzz-speed [--inputs N] [--rounds R]`: the `ops` target's exec/s on 64-step
//!   inputs (one core, no sanitizer, best of R rounds);
//! - `cargo xtask test`: the checks CI runs, in order, stopping at the first failure;
//! - `cargo xtask replay [FILES]`: `.ops` files through the model and the vmm (default: the
//!   regression corpus); exit 1 on a divergence, with the report;
//! - `cargo xtask qemu [ARGS] [FILES]`: the QEMU differential suite (installs qemu-system-arm,
//!   builds the bare-metal guest, runs the regression corpus and seeded random sequences on a
//!   real ARMv7 MMU; `--prove-defects` shows injected machine defects are caught; `--matrix`
//!   checks every descriptor combination against the reference walker);
//! - `cargo xtask mutants [--resume | --save] [-- ARGS]`: cargo-mutants over `vmm` (installs it
//!   when missing; a full run is spread over sittings with `--resume`, see `mutants/README.md`);
//! - `cargo xtask bench [-- ARGS]`: the vmm benchmarks (`cargo bench -p vmm --bench vmm`), with
//!   `ARGS` handed to the criterion harness (a name filter, `--save-baseline main`, ...).

use std::ffi::OsString;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use clap::{Parser, Subcommand};

mod coverage;
mod detect;
mod fuzz_proof;
mod fuzz_speed;
mod fuzzing;
mod mutants;
mod nightly;
mod plot;
mod qemu;

/// The bare-metal target the vmm must keep building for.
const GUEST_TARGET: &str = "armv7a-none-eabi";

#[derive(Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = "Project tasks: tests and benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Run every check CI runs: target, fmt, clippy, tests, guest build.
    Test,
    /// Fuzz a target with cargo-fuzz (installed when missing) for a time budget, then summarize.
    Fuzz {
        /// The fuzz target.
        #[arg(long, default_value = "ops")]
        target: String,
        /// Time budget in seconds.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Parallel jobs (libFuzzer fork mode when above 1).
        #[arg(long, default_value_t = 1)]
        jobs: u32,
        /// Fuzz `ops` in a world of N CPUs (every mutant's header says so; its own corpus
        /// fuzz/corpus/ops-smpN).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=4))]
        smp: Option<u8>,
    },
    /// Regenerate the committed seed corpora corpus/<target>/ from corpus/regressions/*.ops.
    Seeds,
    /// Every fuzz target in fork mode across the cores, corpora merged (cargo fuzz cmin), new
    /// crashes minimized and grouped by kind, a Markdown summary (target/nightly/summary.md).
    /// Exit status 1 when something new was found.
    Nightly {
        /// Time budget per target, in seconds.
        #[arg(long, default_value_t = 900)]
        seconds: u64,
        /// Parallel jobs per target (default: the number of cores).
        #[arg(long)]
        jobs: Option<u32>,
        /// The targets (default: all).
        #[arg(long, value_delimiter = ',', default_values_t = fuzzing::TARGETS.map(String::from))]
        targets: Vec<String>,
        /// Fuzz `ops` in a world of N CPUs (as `cargo xtask fuzz --smp N`), and run its grown
        /// corpus and the random sequences on both of QEMU's cores (`cargo xtask qemu --smp
        /// N`; QEMU's guest has two, hence N is 1 or 2).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=2))]
        smp: Option<u8>,
    },
    /// The fuzzing workflow proven end to end: with a defect injected into the simulated
    /// machine, a fuzz run from an empty corpus must find it, the checker must minimize it to
    /// at most 10 steps, and replay must show it (and pass on the sound machine).
    FuzzProof {
        /// The injected defect.
        #[arg(long, default_value = "drop-every-invalidate")]
        defect: String,
        /// The fuzzing budget in seconds.
        #[arg(long, default_value_t = 120)]
        seconds: u64,
    },
    /// Time to detection: every defect of the catalogue (broken machines and patches to a
    /// scratch copy of the vmm) fuzzed with the `ops` target from the committed seeds, once
    /// per seed; a table (target/detect/report.md) and a SUMMARY. Exit 1 when a defect was
    /// missed with some seed.
    Detect(detect::Options),
    /// An HTML coverage report of the vmm crate from the fuzz corpora and the regression
    /// scenarios (cargo-llvm-cov, installed when missing), in target/coverage/html/.
    Coverage,
    /// The `ops` target's executions per second on 64-step inputs, one core, no sanitizer
    /// (fixed pseudo-random inputs replayed with `-runs=0`; the best of several rounds), then
    /// a fuzzing session seeded with 1000 of them (100000 executions, inputs no longer than
    /// the seeds).
    FuzzSpeed {
        /// Inputs per round.
        #[arg(long, default_value_t = 10_000)]
        inputs: usize,
        /// Rounds.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
    /// Minimize a diverging `ops` fuzzer input or `.ops` file (cargo fuzz tmin, then op by op)
    /// into a regression scenario in corpus/regressions/.
    Minimize {
        /// The finding, e.g. fuzz/artifacts/ops/crash-...
        file: PathBuf,
    },
    /// Replay `.ops` files or fuzzer inputs through the model and the vmm (default: every file
    /// in corpus/regressions/). Arguments go to `checker replay`: `--trace` (model and vmm side
    /// by side), `--quiet`, `--defect D`, `--smp N` (a world of N CPUs), `--text`, `--bytes`,
    /// FILES (`cargo xtask replay -- --help`). Exit status 0 agree, 1 a divergence, 2 a file that cannot be read or parsed.
    Replay {
        /// Passed to `checker replay`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// The QEMU differential suite: builds the bare-metal guest and runs the regression corpus
    /// plus seeded random sequences on a real ARMv7 MMU (qemu-system-arm, installed when
    /// missing). Arguments go to qemu-runner: `--random N`, `--seed S`, `--smp 2` (a second
    /// core runs CPU 1's accesses), `--probe-all`, `--prove-defects`, `--matrix`, FILES.
    Qemu {
        /// Passed to qemu-runner (`cargo xtask qemu -- --help` lists them).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// A test of the platform the SMP work needs: a two-core bare-metal probe on
    /// `qemu-system-arm -M virt -smp 2` (PSCI CPU_ON through HVC starts core 1; a local TLB
    /// invalidate on core 0 leaves core 1 stale, the inner-shareable forms reach it).
    QemuPlatform,
    /// Mutation testing of the vmm crate with cargo-mutants (installed when missing). Takes
    /// hours on 2 cores: pass `-- --shard k/n` or `-- --in-diff FILE` to do a part, or spread
    /// a full run over sittings with `--resume`.
    Mutants {
        /// Continue the run kept in mutants/progress/ (skip what was caught or unviable) and
        /// merge the results back into it.
        #[arg(long)]
        resume: bool,
        /// Only merge mutants.out/ into mutants/progress/ (after an interrupted run) and
        /// print the score so far.
        #[arg(long, conflicts_with = "resume")]
        save: bool,
        /// Passed to `cargo mutants`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Run the vmm benchmarks (`cargo bench -p vmm --bench vmm`).
    Bench {
        /// Passed to the criterion harness, e.g. `-- arch_mmu --save-baseline main`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

/// Why a step failed.
struct Failure(String);

type StepResult = Result<(), Failure>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.task {
        Task::Test => test(&root),
        Task::Fuzz {
            target,
            seconds,
            jobs,
            smp,
        } => fuzz(&root, &target, seconds, jobs, smp),
        Task::Seeds => fuzzing::seeds(&root),
        Task::Nightly {
            seconds,
            jobs,
            targets,
            smp,
        } => {
            let jobs = jobs.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
            });
            ExitCode::from(nightly::nightly(
                &root,
                seconds,
                jobs,
                &targets,
                &nightly::QemuNight {
                    corpus: "fuzz/corpus/ops",
                    seed: "random",
                    probe_all: true,
                },
                smp,
            ))
        }
        Task::FuzzProof { defect, seconds } => {
            ExitCode::from(fuzz_proof::fuzz_proof(&root, &defect, seconds))
        }
        Task::Detect(options) => ExitCode::from(detect::detect(&root, &options)),
        Task::Coverage => coverage::coverage(&root),
        Task::FuzzSpeed { inputs, rounds } => {
            ExitCode::from(fuzz_speed::fuzz_speed(&root, inputs, rounds))
        }
        Task::Minimize { file } => fuzzing::minimize(&root, &invocation_dir().join(file)),
        Task::Replay { args } => {
            // Files named relative to where the user ran cargo xtask (the checker runs from
            // the repository root and prints paths relative to it).
            let mut files = 0;
            let mut args: Vec<OsString> = args
                .into_iter()
                .map(|a| {
                    let p = invocation_dir().join(&a);
                    if !a.to_string_lossy().starts_with('-') && p.exists() {
                        files += 1;
                        p.into_os_string()
                    } else {
                        a
                    }
                })
                .collect();
            if files == 0 && !args.iter().any(|a| a == "--help" || a == "-h") {
                let mut found = fuzzing::files_in(&root.join("corpus/regressions"));
                found.retain(|p| p.extension().is_some_and(|x| x == "ops"));
                args.extend(found.into_iter().map(PathBuf::into_os_string));
            }
            let mut cmd = cargo_run(&root, "checker");
            cmd.arg("replay").args(&args);
            match cmd.status() {
                Ok(status) => ExitCode::from(status.code().unwrap_or(2).clamp(0, 255) as u8),
                Err(e) => {
                    eprintln!("xtask replay: cannot run cargo: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Task::QemuPlatform => match qemu::platform(&root) {
            Ok(()) => ExitCode::SUCCESS,
            Err(Failure(why)) => {
                eprintln!("xtask qemu-platform: {why}");
                ExitCode::FAILURE
            }
        },
        Task::Qemu { args } => {
            let args: Vec<OsString> = args
                .into_iter()
                .map(|a| {
                    // Files named relative to where the user ran cargo xtask.
                    let p = invocation_dir().join(&a);
                    if !a.to_string_lossy().starts_with('-') && p.exists() {
                        p.into_os_string()
                    } else {
                        a
                    }
                })
                .collect();
            match qemu::suite(&root, &args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(Failure(why)) => {
                    eprintln!("xtask qemu: {why}");
                    ExitCode::FAILURE
                }
            }
        }
        Task::Mutants { resume, save, args } => {
            let result = if save {
                mutants::save(&root)
            } else {
                mutants::mutants(&root, &args, resume)
            };
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(Failure(why)) => {
                    eprintln!("xtask mutants: {why}");
                    ExitCode::FAILURE
                }
            }
        }
        Task::Bench { args } => {
            let mut cmd = cargo(&root);
            cmd.args(["bench", "-p", "vmm", "--bench", "vmm"]);
            if !args.is_empty() {
                cmd.arg("--").args(args);
            }
            match run(cmd) {
                Ok(()) => ExitCode::SUCCESS,
                Err(Failure(why)) => {
                    eprintln!("xtask bench: {why}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Installs `krate` with `cargo install --locked` unless `cargo <subcommand> --version` works.
fn ensure_cargo_tool(root: &Path, subcommand: &str, krate: &str) -> StepResult {
    let installed = cargo(root)
        .args([subcommand, "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if installed {
        return Ok(());
    }
    println!("==> cargo install {krate} --locked");
    let mut install = cargo(root);
    install.args(["install", krate, "--locked"]);
    run(install)
}

/// `cargo xtask fuzz`: build and run a cargo-fuzz target, then print a summary.
fn fuzz(root: &Path, target: &str, seconds: u64, jobs: u32, smp: Option<u8>) -> ExitCode {
    if smp.is_some() && target != "ops" {
        eprintln!("xtask fuzz: --smp is for the `ops` target (the others have no CPUs)");
        return ExitCode::from(2);
    }
    if let Err(Failure(why)) = ensure_cargo_tool(root, "fuzz", "cargo-fuzz") {
        eprintln!("xtask fuzz: {why}");
        return ExitCode::FAILURE;
    }
    // New inputs go to the first directory (fuzz/corpus/T, not committed; an SMP world's own
    // fuzz/corpus/T-smpN); the committed seeds in corpus/T are only read.
    let corpus = root.join(fuzzing::grown_corpus(target, smp));
    let seeds = root.join("corpus").join(target);
    let artifacts = root.join("fuzz/artifacts").join(target);
    let _ = std::fs::create_dir_all(&corpus);
    let before = fuzzing::files_in(&artifacts).len();
    let mut cmd = fuzzing::cargo_fuzz(root, "run", target);
    let world = fuzzing::in_world(&mut cmd, smp);
    cmd.arg(&corpus);
    if seeds.is_dir() {
        cmd.arg(&seeds);
    }
    cmd.arg("--");
    cmd.arg(format!("-max_total_time={seconds}"))
        .arg("-print_final_stats=1");
    if jobs > 1 {
        cmd.arg(format!("-fork={jobs}")).arg("-ignore_crashes=1");
    }
    // The build first, with cargo's own progress (a first build takes minutes).
    println!(
        "==> building `{target}` (cargo fuzz build {})",
        fuzzing::BUILD_FLAGS.join(" ")
    );
    let mut build = fuzzing::cargo_fuzz(root, "build", target);
    match build.status() {
        Ok(status) if status.success() => {}
        Ok(status) => {
            eprintln!("xtask fuzz: the build of `{target}` failed ({status})");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("xtask fuzz: cannot run cargo fuzz: {e}");
            return ExitCode::FAILURE;
        }
    }
    println!(
        "==> fuzzing `{target}` for {seconds} s with {jobs} job(s){}; corpus {} (seeds {}); \
         Ctrl-C stops it with a summary",
        world,
        shown(&corpus),
        shown(&seeds)
    );
    let started = Instant::now();
    let watch = fuzzing::Progress {
        budget: seconds,
        corpus: &corpus,
        artifacts: &artifacts,
        crashes_before: before,
    };
    let fuzzing::Watched {
        status,
        log,
        interrupted,
        ..
    } = match fuzzing::run_with_progress(cmd, &watch) {
        Ok(done) => done,
        Err(e) => {
            eprintln!("xtask fuzz: cannot run cargo fuzz: {e}");
            return ExitCode::FAILURE;
        }
    };
    let output_ok = status.success() || interrupted;
    let stats = fuzzing::FuzzStats::parse(&log);
    let corpus_size = fuzzing::files_in(&corpus).len();
    let crashes = fuzzing::files_in(&artifacts);
    println!(
        "xtask fuzz summary ({:.0} s{}):",
        started.elapsed().as_secs_f64(),
        if interrupted { ", interrupted" } else { "" }
    );
    println!("  executions: {}", fuzzing::or_unknown(stats.executions));
    println!("  exec/s:     {}", fuzzing::or_unknown(stats.exec_per_sec));
    println!(
        "  coverage:   {} edges",
        fuzzing::or_unknown(stats.coverage)
    );
    println!("  corpus:     {corpus_size} inputs in {}", shown(&corpus));
    println!(
        "  crashes:    {} new ({} in {})",
        crashes.len().saturating_sub(before),
        crashes.len(),
        shown(&artifacts)
    );
    for c in &crashes {
        if target == "ops" {
            println!("    replay:   cargo xtask replay {}", shown(c));
            println!("    minimize: cargo xtask minimize {}", shown(c));
        } else {
            println!(
                "    replay:   (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run {} {target} {})",
                fuzzing::BUILD_FLAGS.join(" "),
                shown_from(&root.join("fuzz"), c)
            );
        }
    }
    if crashes.len() > before {
        ExitCode::FAILURE
    } else if !output_ok {
        eprintln!("{log}");
        eprintln!("xtask fuzz: cargo fuzz failed (see above)");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// One step of `cargo xtask test`.
struct Step {
    name: &'static str,
    action: Action,
    /// What to try when the step fails.
    hint: &'static str,
}

enum Action {
    EnsureTarget,
    Cargo(&'static [&'static str]),
    Qemu(&'static [&'static str]),
    /// `cargo xtask qemu-platform`.
    QemuPlatform,
    /// `cargo xtask nightly` with this many seconds per target, one job.
    FuzzSmoke(u64),
    /// `cargo xtask fuzz-proof` with the default defect and budget.
    FuzzProof,
    /// `cargo xtask detect --quick`.
    DetectQuick,
}

const STEPS: [Step; 13] = [
    Step {
        name: "rustup target",
        action: Action::EnsureTarget,
        hint: "run `rustup target add armv7a-none-eabi` by hand",
    },
    Step {
        name: "cargo fmt",
        action: Action::Cargo(&["fmt", "--all", "--", "--check"]),
        hint: "run `cargo fmt --all` (or `rustup component add rustfmt` if it is missing)",
    },
    Step {
        name: "cargo clippy",
        action: Action::Cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
        hint: "fix the warnings above (or `rustup component add clippy` if it is missing)",
    },
    Step {
        name: "cargo test",
        action: Action::Cargo(&["test", "--workspace"]),
        hint: "see the failing tests above",
    },
    Step {
        name: "no_std build",
        action: Action::Cargo(&[
            "build",
            "-p",
            "vmm",
            "-p",
            "op-driver",
            "--target",
            GUEST_TARGET,
        ]),
        hint: "the vmm and op-driver must stay no_std and build for armv7a-none-eabi",
    },
    Step {
        name: "qemu suite",
        action: Action::Qemu(&[]),
        hint: "see the FAIL lines above; replay one with `cargo xtask qemu FILE`",
    },
    Step {
        name: "qemu suite, 2 CPUs",
        action: Action::Qemu(&["--smp", "2"]),
        hint: "see the FAIL lines above (core 1's probes are marked cpu=1); replay one with `cargo xtask qemu --smp 2 FILE`",
    },
    Step {
        name: "qemu matrix",
        action: Action::Qemu(&["--matrix"]),
        hint: "the reference walker and QEMU's MMU disagree on a descriptor (see the FAIL lines above): a finding about one of them",
    },
    Step {
        name: "qemu defects",
        action: Action::Qemu(&["--prove-defects"]),
        hint: "an injected machine defect went unnoticed (see above)",
    },
    Step {
        name: "qemu platform",
        action: Action::QemuPlatform,
        hint: "QEMU no longer behaves as the SMP work assumes (PSCI, TLB broadcast): see the FAIL lines above",
    },
    Step {
        name: "fuzz smoke",
        action: Action::FuzzSmoke(10),
        hint: "a fuzz target crashed or did not build, or the ops target's vmm code lost its coverage counters: see the summary above and replay the crash",
    },
    Step {
        name: "fuzz proof",
        action: Action::FuzzProof,
        hint: "the fuzzing workflow missed an injected defect (see the FAIL line above)",
    },
    Step {
        name: "detect quick",
        action: Action::DetectQuick,
        hint: "a defect of the quick catalogue subset went unfound, or its patch no longer applies (see the MISSED or ERROR line above)",
    },
];

fn test(root: &Path) -> ExitCode {
    let started = Instant::now();
    let total = STEPS.len();
    for (i, step) in STEPS.iter().enumerate() {
        println!("==> [{}/{total}] {}", i + 1, step.name);
        let result = match step.action {
            Action::EnsureTarget => ensure_target(root),
            Action::Cargo(args) => {
                let mut cmd = cargo(root);
                cmd.args(args);
                run(cmd)
            }
            Action::Qemu(args) => {
                let args: Vec<OsString> = args.iter().map(OsString::from).collect();
                qemu::suite(root, &args)
            }
            Action::QemuPlatform => qemu::platform(root),
            Action::FuzzSmoke(seconds) => {
                let targets = fuzzing::TARGETS.map(String::from);
                // CI runs the committed seeds and a fixed seed on QEMU, probing a sample, so
                // that a failure there repeats and the step stays short; nightly runs the
                // grown corpus and a new seed, probing every page.
                let qemu = nightly::QemuNight {
                    corpus: "corpus/ops",
                    seed: "1",
                    probe_all: false,
                };
                match nightly::nightly(root, seconds, 1, &targets, &qemu, None) {
                    0 => fuzz_speed::check_instrumentation(root),
                    code => Err(Failure(format!("cargo xtask nightly exited with {code}"))),
                }
            }
            Action::DetectQuick => {
                let options = detect::Options::quick();
                match detect::detect(root, &options) {
                    0 => Ok(()),
                    code => Err(Failure(format!(
                        "cargo xtask detect --quick exited with {code}"
                    ))),
                }
            }
            Action::FuzzProof => match fuzz_proof::fuzz_proof(root, "drop-every-invalidate", 120) {
                0 => Ok(()),
                code => Err(Failure(format!(
                    "cargo xtask fuzz-proof exited with {code}"
                ))),
            },
        };
        if let Err(Failure(why)) = result {
            eprintln!("error: {why}\nhint: {}", step.hint);
            println!(
                "xtask test: step {}/{total} ({}) failed after {:.1} s",
                i + 1,
                step.name,
                started.elapsed().as_secs_f64()
            );
            return ExitCode::FAILURE;
        }
    }
    println!(
        "xtask test: {total} steps passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}

/// Installs the guest target with rustup unless it is already there.
fn ensure_target(root: &Path) -> StepResult {
    let mut list = Command::new("rustup");
    list.current_dir(root)
        .args(["target", "list", "--installed"]);
    let out = list.output().map_err(|e| spawn_error("rustup", &e))?;
    if !out.status.success() {
        return Err(Failure(format!(
            "`rustup target list --installed` exited with {}",
            out.status
        )));
    }
    if String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == GUEST_TARGET)
    {
        println!("{GUEST_TARGET} is installed");
        return Ok(());
    }
    let mut add = Command::new("rustup");
    add.current_dir(root).args(["target", "add", GUEST_TARGET]);
    run(add)
}

/// Where the user ran `cargo xtask` (relative file arguments are relative to it).
fn invocation_dir() -> PathBuf {
    std::env::current_dir().unwrap_or_default()
}

/// `cargo` as invoked by `cargo xtask` (the `CARGO` variable), run from the workspace root.
fn cargo(root: &Path) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root);
    cmd
}

/// `cargo run --quiet --release -p PACKAGE --`: a workspace binary, arguments to follow.
fn cargo_run(root: &Path, package: &str) -> Command {
    let mut cmd = cargo(root);
    cmd.args(["run", "--quiet", "--release", "-p", package, "--"]);
    cmd
}

/// Runs a command with inherited stdio and turns a missing tool or a failure into a message.
fn run(mut cmd: Command) -> StepResult {
    let shown = show(&cmd);
    println!("$ {shown}");
    let program = cmd.get_program().to_string_lossy().into_owned();
    let status = cmd.status().map_err(|e| spawn_error(&program, &e))?;
    if status.success() {
        Ok(())
    } else {
        Err(Failure(format!("`{shown}` exited with {status}")))
    }
}

fn spawn_error(program: &str, e: &std::io::Error) -> Failure {
    if e.kind() == ErrorKind::NotFound {
        let hint = if program.ends_with("rustup") {
            "install rustup from https://rustup.rs"
        } else {
            "is the Rust toolchain installed and on PATH?"
        };
        Failure(format!("`{program}` not found ({hint})"))
    } else {
        Failure(format!("could not start `{program}`: {e}"))
    }
}

fn show(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program())
        .file_name()
        .unwrap_or(cmd.get_program())
        .to_string_lossy()
        .into_owned();
    std::iter::once(program)
        .chain(cmd.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `path` as a user sees it: relative to the repository when inside it (never a path of one
/// machine in what the tools print or write).
pub(crate) fn shown(path: &Path) -> String {
    shown_from(&workspace_root(), path)
}

/// `path` relative to `base` when inside it (for commands that start with `cd base`).
pub(crate) fn shown_from(base: &Path, path: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The workspace root: the parent of this crate's directory.
pub(crate) fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}
