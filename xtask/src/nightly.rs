//! `cargo xtask nightly`: every fuzz target in fork mode across the cores, the grown corpora
//! merged down (`cargo fuzz cmin`), new crashes minimized and grouped by divergence kind, and a
//! Markdown summary (printed and written to target/nightly/summary.md). Exit status 1 when
//! something new was found.
//!
//! The `ops` target also runs a second time, built with debug assertions and overflow checks
//! (`ops (debug assertions)`): the release builds compile out the vmm's `debug_assert!`s and
//! wrap on overflow, so a broken internal invariant or an overflowing computation would go
//! unseen there. It reads the grown corpus and keeps what it finds apart
//! (`fuzz/corpus/ops-checked`, `fuzz/artifacts/ops-checked`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use crate::fuzzing::{self, FuzzStats, cargo_fuzz, files_in, or_unknown};
use crate::{cargo_run, ensure_cargo_tool};

/// One target's night.
struct TargetNight {
    target: String,
    stats: FuzzStats,
    /// libFuzzer's status lines over the run: (seconds, what it said).
    samples: Vec<(f64, FuzzStats)>,
    seconds: f64,
    corpus_before_cmin: usize,
    corpus_after_cmin: Option<usize>,
    new_crashes: Vec<PathBuf>,
    /// Whether cargo fuzz itself failed (a build error, not a crash).
    failed: Option<String>,
}

/// A new crash, minimized where the target's inputs are op sequences.
struct Finding {
    crash: PathBuf,
    /// The group: a divergence kind for `ops`, the panic site for the other targets.
    kind: String,
    /// The minimized scenario (ops only) and its text.
    minimized: Option<(PathBuf, String)>,
}

/// How many random sequences the nightly QEMU run adds to the grown `ops` corpus.
const QEMU_RANDOM: &str = "250";

/// What the QEMU part of a nightly run replays: a corpus directory (relative to the root) and
/// the seed of its random sequences (`random`: a new one, printed in the summary).
pub struct QemuNight {
    /// `fuzz/corpus/ops` (the grown corpus) at night; the committed seeds in CI, where the
    /// run must repeat.
    pub corpus: &'static str,
    /// `random` at night, a fixed number in CI.
    pub seed: &'static str,
    /// Every present page of every live space probed after every step (at night), or a
    /// sample (in CI).
    pub probe_all: bool,
}

/// Returns the exit status: 0 clean, 1 new crashes (or a QEMU failure), 2 a target could not
/// run. With `ops` among the targets, `qemu.corpus` then runs on QEMU's MMU with random
/// sequences of `qemu.seed`.
///
/// With `smp` = N the `ops` target fuzzes a world of N CPUs (`cargo xtask fuzz --smp N`), in
/// its own corpus `fuzz/corpus/ops-smpN`.
pub fn nightly(
    root: &Path,
    seconds: u64,
    jobs: u32,
    targets: &[String],
    qemu: &QemuNight,
    smp: Option<u8>,
) -> u8 {
    if let Err(crate::Failure(why)) = ensure_cargo_tool(root, "fuzz", "cargo-fuzz") {
        eprintln!("xtask nightly: {why}");
        return 2;
    }
    for t in targets {
        if !fuzzing::TARGETS.contains(&t.as_str()) {
            eprintln!(
                "xtask nightly: unknown target `{t}` (one of {})",
                fuzzing::TARGETS.join(", ")
            );
            return 2;
        }
    }
    let out = root.join("target/nightly");
    let findings_dir = out.join("findings");
    let _ = std::fs::create_dir_all(&findings_dir);
    let started = Instant::now();
    let mut nights = Vec::new();
    let mut findings: Vec<(String, Finding)> = Vec::new();
    for target in targets {
        let night = fuzz_one(root, target, seconds, jobs, smp.filter(|_| target == "ops"));
        for crash in &night.new_crashes {
            findings.push((target.clone(), triage(root, target, crash, &findings_dir)));
        }
        nights.push(night);
    }
    if targets.iter().any(|t| t == "ops") {
        let night = fuzz_checked(root, seconds, jobs);
        for crash in &night.new_crashes {
            findings.push((night.target.clone(), checked_triage(root, crash)));
        }
        nights.push(night);
    }
    // In a world of N CPUs the grown corpus is that world's, run on both of QEMU's cores.
    let corpus = if qemu.corpus == fuzzing::grown_corpus("ops", None) {
        fuzzing::grown_corpus("ops", smp)
    } else {
        qemu.corpus.to_string()
    };
    let qemu_probe_all = qemu.probe_all;
    let qemu = targets.iter().any(|t| t == "ops").then(|| {
        println!("==> nightly: `{corpus}` on QEMU's ARMv7 MMU");
        let mut args: Vec<std::ffi::OsString> = vec![
            "--random".into(),
            QEMU_RANDOM.into(),
            "--seed".into(),
            qemu.seed.into(),
            root.join(&corpus).into_os_string(),
        ];
        if qemu.probe_all {
            args.insert(0, "--probe-all".into());
        }
        if let Some(n) = smp {
            args.insert(0, n.to_string().into());
            args.insert(0, "--smp".into());
        }
        crate::qemu::suite_summarized(root, &args).map_err(|crate::Failure(why)| why)
    });
    let mut plots = Vec::new();
    for n in &nights {
        let file = format!("{}.svg", plot_name(&n.target));
        let svg = crate::plot::coverage_and_speed(&n.target, &n.samples);
        if std::fs::write(out.join(&file), svg).is_ok() {
            plots.push((n.target.clone(), file));
        }
    }
    let mut report = summary(
        &nights,
        &findings,
        jobs,
        started.elapsed().as_secs_f64(),
        &plots,
    );
    let qemu_failed = match &qemu {
        None => false,
        Some(Ok((ok, line))) => {
            let verdict = if *ok {
                "passed"
            } else {
                "**FAILED** (exit status 1; see the FAIL lines of the run)"
            };
            let _ = writeln!(
                report,
                "\n## QEMU\n\n`{corpus}` and {QEMU_RANDOM} random sequences on QEMU's ARMv7 MMU ({}): {verdict}.\n\n```\n{line}\n```",
                if qemu_probe_all {
                    "every present page of every live space probed after every step"
                } else {
                    "a sample of pages probed"
                }
            );
            !ok
        }
        Some(Err(why)) => {
            let _ = writeln!(
                report,
                "\n## QEMU\n\n**did not run** (exit status 2): {why}"
            );
            true
        }
    };
    let path = out.join("summary.md");
    match std::fs::write(&path, &report) {
        Ok(()) => println!("{report}\n(written to {})", crate::shown(&path)),
        Err(e) => println!("{report}\n(could not write {}: {e})", crate::shown(&path)),
    }
    if nights.iter().any(|n| n.failed.is_some()) || matches!(qemu, Some(Err(_))) {
        2
    } else {
        u8::from(!findings.is_empty() || qemu_failed)
    }
}

/// Runs a `cargo fuzz run` command with progress lines and reads its statistics and their
/// course; the error is the log's tail when it never fuzzed (a crash makes cargo fuzz exit
/// non-zero too: that is not an error here).
fn fuzz_and_read(
    cmd: std::process::Command,
    watch: &fuzzing::Progress<'_>,
) -> (FuzzStats, Vec<(f64, FuzzStats)>, Option<String>) {
    match fuzzing::run_with_progress(cmd, watch) {
        Ok(run) => {
            let stats = FuzzStats::parse(&run.log);
            let failed = (stats.executions.is_none() && !run.status.success())
                .then(|| fuzzing::last_lines(&run.log, 15, "\n"));
            (stats, run.samples, failed)
        }
        Err(e) => (
            FuzzStats::default(),
            Vec::new(),
            Some(format!("cannot run cargo fuzz: {e}")),
        ),
    }
}

/// The panic site a re-run of a crash prints (`cmd` runs the crash), as its group.
fn panic_site(cmd: &mut std::process::Command) -> String {
    let log = cmd
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .unwrap_or_default();
    log.lines()
        .find(|l| l.contains("panicked at"))
        .and_then(|l| l.split("panicked at ").nth(1))
        .map_or_else(
            || "no panic on re-run".to_string(),
            |s| s.trim_end_matches(':').to_string(),
        )
}

/// Fuzzes `target` for `seconds` with `jobs` workers (in a world of `smp` CPUs when given),
/// then merges its corpus down.
fn fuzz_one(root: &Path, target: &str, seconds: u64, jobs: u32, smp: Option<u8>) -> TargetNight {
    let corpus = root.join(fuzzing::grown_corpus(target, smp));
    let seeds = root.join("corpus").join(target);
    let artifacts = root.join("fuzz/artifacts").join(target);
    let _ = std::fs::create_dir_all(&corpus);
    let _ = std::fs::create_dir_all(&artifacts);
    let before = files_in(&artifacts);
    let mut cmd = cargo_fuzz(root, "run", target);
    let world = fuzzing::in_world(&mut cmd, smp);
    cmd.arg(&corpus);
    if seeds.is_dir() {
        cmd.arg(&seeds);
    }
    cmd.arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg("-print_final_stats=1");
    if jobs > 1 {
        // Fork mode keeps going after a crash: every crash of the night is kept.
        cmd.arg(format!("-fork={jobs}")).arg("-ignore_crashes=1");
    }
    println!("==> nightly: building `{target}`");
    if let Err(e) = cargo_fuzz(root, "build", target).status() {
        eprintln!("xtask nightly: cannot run cargo fuzz build: {e}");
    }
    println!("==> nightly: fuzzing `{target}`{world} for {seconds} s with {jobs} job(s)");
    let t0 = Instant::now();
    let watch = fuzzing::Progress {
        budget: seconds,
        corpus: &corpus,
        artifacts: &artifacts,
        crashes_before: before.len(),
    };
    let (stats, samples, mut failed) = fuzz_and_read(cmd, &watch);
    let seconds = t0.elapsed().as_secs_f64();
    let new_crashes: Vec<PathBuf> = files_in(&artifacts)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    let corpus_before_cmin = files_in(&corpus).len();
    let mut corpus_after_cmin = None;
    if failed.is_none() {
        println!("==> nightly: merging the `{target}` corpus (cargo fuzz cmin)");
        let mut cmin = cargo_fuzz(root, "cmin", target);
        cmin.arg(&corpus);
        match cmin.stdout(Stdio::null()).stderr(Stdio::piped()).output() {
            Ok(o) if o.status.success() => corpus_after_cmin = Some(files_in(&corpus).len()),
            Ok(o) => {
                let log = String::from_utf8_lossy(&o.stderr);
                failed = Some(format!(
                    "cargo fuzz cmin failed: {}",
                    log.lines().last().unwrap_or("")
                ));
            }
            Err(e) => failed = Some(format!("cannot run cargo fuzz cmin: {e}")),
        }
    }
    TargetNight {
        target: target.to_string(),
        stats,
        samples,
        seconds,
        corpus_before_cmin,
        corpus_after_cmin,
        new_crashes,
        failed,
    }
}

/// The name of the checked `ops` run in the summary.
const CHECKED: &str = "ops (debug assertions)";
/// Where the checked build goes (apart from the release build, which it would replace).
const CHECKED_TARGET_DIR: &str = "fuzz/target-checked";

/// `cargo fuzz run ops` built with debug assertions and overflow checks (no fat LTO: this
/// build is for finding, not for speed), over the grown corpus and the seeds, for `seconds`.
fn fuzz_checked(root: &Path, seconds: u64, jobs: u32) -> TargetNight {
    let found = root.join("fuzz/corpus/ops-checked");
    let artifacts = root.join("fuzz/artifacts/ops-checked");
    let _ = std::fs::create_dir_all(&found);
    let _ = std::fs::create_dir_all(&artifacts);
    let before = files_in(&artifacts);
    let mut cmd = cargo_fuzz(root, "run", "ops");
    cmd.env("CARGO_PROFILE_RELEASE_LTO", "false")
        .arg("--debug-assertions")
        .arg("--target-dir")
        .arg(root.join(CHECKED_TARGET_DIR))
        .arg(&found);
    for read in [root.join("fuzz/corpus/ops"), root.join("corpus/ops")] {
        if read.is_dir() {
            cmd.arg(read);
        }
    }
    cmd.arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()));
    if jobs > 1 {
        cmd.arg(format!("-fork={jobs}")).arg("-ignore_crashes=1");
    }
    println!(
        "==> nightly: fuzzing `ops` with debug assertions and overflow checks for {seconds} s"
    );
    let t0 = Instant::now();
    let watch = fuzzing::Progress {
        budget: seconds,
        corpus: &found,
        artifacts: &artifacts,
        crashes_before: before.len(),
    };
    let (stats, samples, failed) = fuzz_and_read(cmd, &watch);
    let elapsed = t0.elapsed().as_secs_f64();
    let new_crashes: Vec<PathBuf> = files_in(&artifacts)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    TargetNight {
        target: CHECKED.to_string(),
        stats,
        samples,
        seconds: elapsed,
        corpus_before_cmin: files_in(&found).len(),
        corpus_after_cmin: None,
        new_crashes,
        failed,
    }
}

/// A crash of the checked `ops` build, grouped by the panic site of a re-run of that build (a
/// failed debug assertion or an overflow need not reproduce in the release checker).
fn checked_triage(root: &Path, crash: &Path) -> Finding {
    let mut cmd = cargo_fuzz(root, "run", "ops");
    cmd.env("CARGO_PROFILE_RELEASE_LTO", "false")
        .arg("--debug-assertions")
        .arg("--target-dir")
        .arg(root.join(CHECKED_TARGET_DIR))
        .arg(crash);
    let kind = panic_site(&mut cmd);
    Finding {
        crash: crash.to_path_buf(),
        kind,
        minimized: None,
    }
}

/// Minimizes an `ops` crash through the checker (op level) into `out`; for the other targets
/// the panic site of a re-run names the group.
fn triage(root: &Path, target: &str, crash: &Path, out: &Path) -> Finding {
    if target == "ops" {
        let mut cmd = cargo_run(root, "checker");
        cmd.arg("minimize").arg(crash).arg("--out").arg(out);
        // The target injected this defect too (a demonstration run): minimize against it.
        if let Ok(defect) = std::env::var("VMM_FUZZ_DEFECT") {
            cmd.arg("--defect").arg(defect);
        }
        let text = cmd
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        // "minimized 18 -> 4 steps (77 runs), ReturnValue at step 4:" and "wrote PATH".
        let kind = text
            .lines()
            .find_map(|l| l.strip_prefix("minimized "))
            .and_then(|l| l.split("), ").nth(1))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or("did not reproduce")
            .to_string();
        let minimized = text
            .lines()
            .find_map(|l| l.strip_prefix("wrote "))
            .map(PathBuf::from)
            .and_then(|p| Some((p.clone(), std::fs::read_to_string(&p).ok()?)));
        return Finding {
            crash: crash.to_path_buf(),
            kind,
            minimized,
        };
    }
    let mut cmd = cargo_fuzz(root, "run", target);
    cmd.arg(crash);
    let kind = panic_site(&mut cmd);
    Finding {
        crash: crash.to_path_buf(),
        kind,
        minimized: None,
    }
}

/// A file name for a target's plot (`ops (debug assertions)` -> `ops-debug-assertions`).
fn plot_name(target: &str) -> String {
    let mut name = String::new();
    for c in target.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c);
        } else if !name.ends_with('-') {
            name.push('-');
        }
    }
    name.trim_end_matches('-').to_string()
}

fn summary(
    nights: &[TargetNight],
    findings: &[(String, Finding)],
    jobs: u32,
    total: f64,
    plots: &[(String, String)],
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Nightly fuzzing summary\n");
    let verdict = if nights.iter().any(|n| n.failed.is_some()) {
        "**ERROR**: a target did not run (see below)"
    } else if findings.is_empty() {
        "**clean**: no new crash"
    } else {
        "**NEW CRASHES** (exit status 1)"
    };
    let _ = writeln!(
        md,
        "{verdict}. {} target(s), {jobs} job(s) each, {total:.0} s in all.\n",
        nights.len()
    );
    let _ = writeln!(
        md,
        "| target | time | executions | exec/s | coverage | corpus (before -> after cmin) | new crashes |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for n in nights {
        let after = match n.corpus_after_cmin {
            Some(a) => a.to_string(),
            // The checked run keeps its finds apart and does not merge them.
            None if n.target == CHECKED => "(kept apart)".to_string(),
            None => "?".to_string(),
        };
        let _ = writeln!(
            md,
            "| `{}` | {:.0} s | {} | {} | {} | {} -> {} | {} |",
            n.target,
            n.seconds,
            or_unknown(n.stats.executions),
            or_unknown(n.stats.exec_per_sec),
            or_unknown(n.stats.coverage),
            n.corpus_before_cmin,
            after,
            n.new_crashes.len()
        );
    }
    if !plots.is_empty() {
        let _ = writeln!(md, "\nCoverage and exec/s over each run:\n");
        for (target, file) in plots {
            let _ = writeln!(md, "![`{target}`: coverage and exec/s over time]({file})");
        }
    }
    for n in nights {
        if let Some(why) = &n.failed {
            let _ = writeln!(md, "\n## `{}` did not run\n\n```\n{why}\n```", n.target);
        }
    }
    if findings.is_empty() {
        return md;
    }
    let mut groups: BTreeMap<(String, String), Vec<&Finding>> = BTreeMap::new();
    for (target, f) in findings {
        groups
            .entry((target.clone(), f.kind.clone()))
            .or_default()
            .push(f);
    }
    let _ = writeln!(md, "\n## New crashes by kind\n");
    for ((target, kind), group) in &groups {
        let _ = writeln!(md, "### `{target}`: {kind} ({} crash(es))\n", group.len());
        for f in group {
            let _ = writeln!(md, "- `{}`", crate::shown(&f.crash));
            if target == "ops" {
                let _ = writeln!(
                    md,
                    "  - replay: `cargo xtask replay {}`",
                    crate::shown(&f.crash)
                );
            } else if target == CHECKED {
                let _ = writeln!(
                    md,
                    "  - replay: `(cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run {} --debug-assertions --target-dir target-checked ops {})`",
                    fuzzing::BUILD_FLAGS.join(" "),
                    crate::shown_from(&crate::workspace_root().join("fuzz"), &f.crash)
                );
            } else {
                let _ = writeln!(
                    md,
                    "  - replay: `(cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run {} {target} {})`",
                    fuzzing::BUILD_FLAGS.join(" "),
                    crate::shown_from(&crate::workspace_root().join("fuzz"), &f.crash)
                );
            }
            if let Some((path, text)) = &f.minimized {
                let _ = writeln!(
                    md,
                    "  - minimized: `{}` (copy it into corpus/regressions/ to keep it)\n\n```\n{}```\n",
                    crate::shown(path),
                    text
                );
            }
        }
    }
    md
}
