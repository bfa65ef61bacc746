//! `cargo xtask detect`: time to detection. Every defect of the catalogue
//! ([`catalogue::CATALOGUE`]: broken machines of the checker, and small patches to a scratch
//! copy of the vmm) is fuzzed with the `ops` target from the committed seeds, once per fuzzing
//! seed; for each: found or not, the median and worst time to the first divergence, its kind,
//! and the length the checker minimizes it to. A Markdown table goes to
//! `target/detect/report.md`, and a SUMMARY line ends the run.
//!
//! `--quick` (CI) runs the defects marked quick with a fixed number of executions and one
//! fixed seed, so that whether each is found is the same on every run, and skips minimizing.

pub mod catalogue;
pub mod scratch;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::Failure;
use catalogue::{CATALOGUE, Defect, How};
use scratch::Scratch;

/// What a run of `cargo xtask detect` does (its command line).
#[derive(clap::Args)]
pub struct Options {
    /// The CI subset: a fixed number of executions and one fixed seed (deterministic), no
    /// minimizing.
    #[arg(long)]
    pub quick: bool,
    /// libFuzzer seeds, one fuzzing run per defect each (default: 1,2,3; 1 with --quick).
    #[arg(long, value_delimiter = ',')]
    pub seeds: Vec<u64>,
    /// Budget of one fuzzing run in seconds (full runs).
    #[arg(long, default_value_t = 120)]
    pub seconds: u64,
    /// Executions of one fuzzing run (--quick).
    #[arg(long, default_value_t = 20000)]
    pub runs: u64,
    /// Only these defects (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Skip minimizing the finds (it rebuilds the checker for every patch).
    #[arg(long)]
    pub no_minimize: bool,
    /// Fuzz from an empty corpus instead of the committed seeds (the generator alone).
    #[arg(long)]
    pub from_empty: bool,
}

impl Options {
    /// The CI subset (`--quick` with its defaults).
    #[must_use]
    pub fn quick() -> Self {
        Self {
            quick: true,
            seeds: Vec::new(),
            seconds: 120,
            runs: 20_000,
            only: Vec::new(),
            no_minimize: true,
            from_empty: false,
        }
    }
}

/// One fuzzing run against one defect.
struct Attempt {
    /// Seconds to the first divergence (or the whole run when nothing was found).
    seconds: f64,
    /// The crash file, if the run found the defect.
    crash: Option<PathBuf>,
    /// The divergence kind (`panic` for a panic of the vmm itself).
    kind: Option<String>,
    /// Whether a committed seed itself diverged (before libFuzzer's first mutation).
    in_seeds: bool,
}

/// A defect's results over every seed.
struct Outcome {
    defect: &'static Defect,
    attempts: Vec<Attempt>,
    /// Steps of the minimized scenario (full runs).
    minimized: Option<usize>,
    /// Why the defect could not be measured at all (a patch that no longer applies or builds).
    error: Option<String>,
}

impl Outcome {
    fn found(&self) -> usize {
        self.attempts.iter().filter(|a| a.crash.is_some()).count()
    }
    fn times(&self) -> Vec<f64> {
        let mut t: Vec<f64> = self
            .attempts
            .iter()
            .filter(|a| a.crash.is_some())
            .map(|a| a.seconds)
            .collect();
        t.sort_by(f64::total_cmp);
        t
    }
    /// How many of the finds were a committed seed diverging.
    fn in_seeds(&self) -> usize {
        self.attempts.iter().filter(|a| a.in_seeds).count()
    }
    fn kind(&self) -> String {
        let mut kinds: Vec<&str> = self
            .attempts
            .iter()
            .filter_map(|a| a.kind.as_deref())
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        if kinds.is_empty() {
            "-".into()
        } else {
            kinds.join(", ")
        }
    }
}

fn median(sorted: &[f64]) -> Option<f64> {
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[n / 2]),
        n => Some(f64::midpoint(sorted[n / 2 - 1], sorted[n / 2])),
    }
}

/// Returns the exit status: 0 when every defect run was found with every seed, 1 when one was
/// missed (or could not be measured), 2 when the tools could not run.
pub fn detect(root: &Path, options: &Options) -> u8 {
    match run(root, options) {
        Ok(all_found) => u8::from(!all_found),
        Err(Failure(why)) => {
            eprintln!("xtask detect: {why}");
            2
        }
    }
}

fn run(root: &Path, options: &Options) -> Result<bool, Failure> {
    let default_seeds = if options.quick {
        vec![1]
    } else {
        vec![1, 2, 3]
    };
    let options = &Options {
        seeds: if options.seeds.is_empty() {
            default_seeds
        } else {
            options.seeds.clone()
        },
        only: options.only.clone(),
        ..*options
    };
    let defects: Vec<&'static Defect> = CATALOGUE
        .iter()
        .filter(|d| !options.quick || d.quick)
        .filter(|d| options.only.is_empty() || options.only.iter().any(|n| n == d.name))
        .collect();
    if let Some(unknown) = options
        .only
        .iter()
        .find(|n| !CATALOGUE.iter().any(|d| d.name == n.as_str()))
    {
        return Err(Failure(format!(
            "`{unknown}` is no defect of the catalogue"
        )));
    }
    if defects.is_empty() {
        let names: Vec<&str> = CATALOGUE.iter().map(|d| d.name).collect();
        return Err(Failure(format!(
            "no defect of the catalogue matches (one of: {})",
            names.join(", ")
        )));
    }
    crate::ensure_cargo_tool(root, "fuzz", "cargo-fuzz")?;
    let started = Instant::now();
    let budget = if options.quick {
        format!("{} executions", options.runs)
    } else {
        format!("up to {} s", options.seconds)
    };
    println!(
        "==> detect: {} defects x {} seeds ({}), `ops` from {}, {budget} each",
        defects.len(),
        options.seeds.len(),
        options
            .seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        if options.from_empty {
            "an empty corpus"
        } else {
            "the committed seeds"
        },
    );
    let scratch = Scratch::create(root)?;
    println!("==> detect: building the sound `ops` target in the scratch copy");
    // Kept apart: every patched build overwrites the binary cargo leaves in the target dir.
    let sound = root.join("target/detect/ops-sound");
    std::fs::copy(scratch.build_fuzz_target()?, &sound)
        .map_err(|e| Failure(format!("{}: {e}", crate::shown(&sound))))?;
    let work = root.join("target/detect/runs");
    sound_baseline(root, &sound)?;
    let mut outcomes = Vec::new();
    for defect in defects {
        let outcome = measure(root, &scratch, &sound, &work, defect, options);
        print_outcome(&outcome, options.seeds.len());
        outcomes.push(outcome);
    }
    let report = table(&outcomes, options);
    let path = root.join("target/detect/report.md");
    let _ = std::fs::write(&path, &report);
    println!("\n{report}");
    let all = outcomes
        .iter()
        .all(|o| o.error.is_none() && o.found() == options.seeds.len());
    let found = outcomes.iter().filter(|o| o.found() > 0).count();
    let firsts: Vec<f64> = {
        let mut t: Vec<f64> = outcomes.iter().flat_map(Outcome::times).collect();
        t.sort_by(f64::total_cmp);
        t
    };
    let show = |t: Option<f64>| t.map_or("-".to_string(), |t| format!("{t:.1} s"));
    println!(
        "SUMMARY: detect: {found} of {} defects found ({} with every seed); time to detection median {}, worst {}; {:.0} s in all (table: {})",
        outcomes.len(),
        outcomes
            .iter()
            .filter(|o| o.found() == options.seeds.len())
            .count(),
        show(median(&firsts)),
        show(firsts.last().copied()),
        started.elapsed().as_secs_f64(),
        crate::shown(&path)
    );
    Ok(all)
}

/// The sound build must pass every committed seed: otherwise every defect would be "found" by
/// the seed the sound vmm already fails.
fn sound_baseline(root: &Path, sound: &Path) -> Result<(), Failure> {
    let out = Command::new(sound)
        .arg(root.join("corpus/ops"))
        .arg("-runs=0")
        .env_remove("VMM_FUZZ_DEFECT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| Failure(format!("starting {}: {e}", crate::shown(sound))))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Failure(format!(
            "the sound vmm fails a committed seed (fix that first):\n{}",
            crate::fuzzing::last_lines(&String::from_utf8_lossy(&out.stderr), 20, "\n")
        )))
    }
}

/// Builds what `defect` needs and fuzzes it once per seed.
fn measure(
    root: &Path,
    scratch: &Scratch,
    sound: &Path,
    work: &Path,
    defect: &'static Defect,
    options: &Options,
) -> Outcome {
    let mut outcome = Outcome {
        defect,
        attempts: Vec::new(),
        minimized: None,
        error: None,
    };
    let result = (|| -> Result<(), Failure> {
        let (machine, patch) = match defect.how {
            How::Machine(name) => (Some(name), None),
            How::Patch(patch) => (None, Some(patch)),
        };
        let original = patch.map(|p| scratch.apply(&p)).transpose()?;
        // Whatever happens below, the copy is sound again before the next defect.
        let measured = (|| -> Result<(), Failure> {
            let binary = match patch {
                Some(_) => scratch.build_fuzz_target()?,
                None => sound.to_path_buf(),
            };
            for &seed in &options.seeds {
                outcome.attempts.push(fuzz_once(
                    root,
                    &binary,
                    machine,
                    work,
                    defect.name,
                    seed,
                    options,
                )?);
            }
            if !options.quick && !options.no_minimize {
                if let Some(crash) = outcome.attempts.iter().find_map(|a| a.crash.clone()) {
                    outcome.minimized = minimize(scratch, machine, &crash, work);
                }
            }
            Ok(())
        })();
        if let (Some(p), Some(text)) = (patch, original) {
            scratch.restore(&p, &text)?;
        }
        measured
    })();
    if let Err(Failure(why)) = result {
        outcome.error = Some(why);
    }
    outcome
}

/// One libFuzzer run of `binary` from the committed seeds with `seed`.
fn fuzz_once(
    root: &Path,
    binary: &Path,
    machine: Option<&str>,
    work: &Path,
    name: &str,
    seed: u64,
    options: &Options,
) -> Result<Attempt, Failure> {
    let dir = work.join(format!("{name}-{seed}"));
    let _ = std::fs::remove_dir_all(&dir);
    let (corpus, artifacts) = (dir.join("corpus"), dir.join("artifacts"));
    for d in [&corpus, &artifacts] {
        std::fs::create_dir_all(d).map_err(|e| Failure(format!("{}: {e}", crate::shown(d))))?;
    }
    let mut cmd = Command::new(binary);
    // New inputs go to the first directory; the committed seeds are only read.
    cmd.arg(&corpus);
    if !options.from_empty {
        cmd.arg(root.join("corpus/ops"));
    }
    cmd.arg(format!("-seed={seed}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg("-print_final_stats=1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if options.quick {
        cmd.arg(format!("-runs={}", options.runs));
    } else {
        cmd.arg(format!("-max_total_time={}", options.seconds));
    }
    match machine {
        Some(m) => cmd.env("VMM_FUZZ_DEFECT", m),
        None => cmd.env_remove("VMM_FUZZ_DEFECT"),
    };
    let start = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| Failure(format!("starting {}: {e}", crate::shown(binary))))?;
    let out = wait_at_most(child, Duration::from_secs(options.seconds.max(60) + 60))?;
    let seconds = start.elapsed().as_secs_f64();
    if out.contains("VMM_FUZZ_DEFECT: unknown defect") {
        // The target refuses a name it does not know by panicking: not a find.
        return Err(Failure(format!(
            "the checker knows no broken machine `{}`",
            machine.unwrap_or_default()
        )));
    }
    // Only a crash is a find (libFuzzer also writes slow-unit-, timeout- and oom- files).
    let crash = crate::fuzzing::files_in(&artifacts).into_iter().find(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("crash-"))
    });
    let kind = crash.as_ref().map(|_| divergence_kind(&out));
    // libFuzzer prints `#N\tINITED` once every seed has run: a crash before it is a seed's.
    let in_seeds = crash.is_some() && !options.from_empty && !out.contains("\tINITED");
    Ok(Attempt {
        seconds,
        crash,
        kind,
        in_seeds,
    })
}

/// Waits for `child`, killing it after `limit`; returns its stderr.
fn wait_at_most(mut child: std::process::Child, limit: Duration) -> Result<String, Failure> {
    let start = Instant::now();
    let mut stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(s) = stderr.as_mut() {
            let _ = std::io::Read::read_to_string(s, &mut text);
        }
        text
    });
    loop {
        if child
            .try_wait()
            .map_err(|e| Failure(format!("waiting for the fuzzer: {e}")))?
            .is_some()
        {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(reader.join().unwrap_or_default())
}

/// The divergence kind a crash's panic message names (`divergence: KIND at step`), or
/// `panic` when the vmm itself panicked.
fn divergence_kind(stderr: &str) -> String {
    stderr
        .split("divergence: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map_or_else(|| "panic".to_string(), str::to_string)
}

/// Minimizes `crash` with the copy's checker (against the machine defect, if any): the steps
/// of the scenario it writes.
fn minimize(scratch: &Scratch, machine: Option<&str>, crash: &Path, work: &Path) -> Option<usize> {
    let checker = scratch.build_checker().ok()?;
    let out = work.join("minimized");
    let _ = std::fs::remove_dir_all(&out);
    let mut cmd = Command::new(checker);
    cmd.arg("minimize").arg(crash).arg("--out").arg(&out);
    if let Some(m) = machine {
        cmd.arg("--defect").arg(m);
    }
    cmd.current_dir(&scratch.root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    let file = crate::fuzzing::files_in(&out).into_iter().next()?;
    let text = std::fs::read_to_string(file).ok()?;
    Some(
        text.lines()
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .count(),
    )
}

fn print_outcome(o: &Outcome, seeds: usize) {
    if let Some(why) = &o.error {
        println!("ERROR {}: {why}", o.defect.name);
        return;
    }
    let times = o.times();
    let verdict = if o.found() == seeds {
        "FOUND"
    } else {
        "MISSED"
    };
    println!(
        "{verdict} {}: {} of {seeds} seeds{}{}",
        o.defect.name,
        o.found(),
        match (median(&times), times.last()) {
            (Some(m), Some(w)) => format!(", median {m:.1} s, worst {w:.1} s, {}", o.kind()),
            _ => String::new(),
        },
        o.minimized
            .map_or(String::new(), |n| format!(", minimized to {n} steps")),
    );
    if o.in_seeds() > 0 {
        println!("      ({} of them by a committed seed)", o.in_seeds());
    }
}

fn table(outcomes: &[Outcome], options: &Options) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| defect | layer | injected as | found | by a seed | median | worst | divergence | minimized |"
    );
    let _ = writeln!(t, "|---|---|---|---|---|---|---|---|---|");
    for o in outcomes {
        let times = o.times();
        let s = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.1} s"));
        let how = match o.defect.how {
            How::Machine(_) => "broken machine".to_string(),
            How::Patch(p) => format!("patch of `{}`", p.file),
        };
        let found = match &o.error {
            Some(_) => "error".to_string(),
            None => format!("{}/{}", o.found(), options.seeds.len()),
        };
        let _ = writeln!(
            t,
            "| `{}`: {} | {} | {how} | {found} | {} | {} | {} | {} | {} |",
            o.defect.name,
            o.defect.what,
            o.defect.layer,
            o.in_seeds(),
            s(median(&times)),
            s(times.last().copied()),
            o.kind(),
            o.minimized
                .map_or("-".to_string(), |n| format!("{n} steps")),
        );
    }
    t
}
