//! `qemu-runner`: runs `.ops` files and seeded random sequences in the bare-metal guest under
//! qemu-system-arm and compares what the real MMU shows with the reference model. Usually run
//! through `cargo xtask qemu`, which builds the guest first.
//!
//! Prints PASS/FAIL per file, FAIL per random sequence (saved as `.ops` for replay), and a
//! SUMMARY line with throughput. Exit status: 0 when everything agrees, 1 on any divergence,
//! guest crash or timeout, 2 when the inputs or QEMU are unusable.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use checker::input::{KindFlags, expand_dirs, shown};
use checker::{DivergenceKind, Sequence, parse_sequence, print_sequence};
use clap::Parser;
use op_driver::guest::{
    EXEC_PL0, GuestDefect, MatrixDefect, Record, decode_matrix_report, encode_blob, encode_matrix,
};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use qemu_runner::matrix::{self, Finding, Kind};
use qemu_runner::plan::{Plan, Probing, plan_with};
use qemu_runner::qemu::run_guest;
use qemu_runner::verdict::{Verdict, judge};
use qemu_runner::{defects, qemu};

#[derive(Parser)]
#[command(about = "The QEMU differential suite: op sequences on a real ARMv7 MMU vs the model")]
struct Args {
    /// The guest image (built by `cargo xtask qemu`).
    #[arg(long)]
    guest: PathBuf,
    /// Random sequences to run after the files.
    #[arg(long, default_value_t = 2000)]
    random: usize,
    /// Seed of the random sequences: a number, or `random` (from the clock; printed in the
    /// header and the SUMMARY so that a failing run can be repeated).
    #[arg(long, default_value = "1", value_parser = parse_seed)]
    seed: u64,
    /// Ops per random sequence.
    #[arg(long, default_value_t = 50)]
    length: usize,
    /// Probe every present page of every live space after every step (nightly), instead of a
    /// sample: at most 128 pages of the step's own space.
    #[arg(long)]
    probe_all: bool,
    /// Run every sequence in a world of N CPUs: the random ones with accesses on both, the
    /// files with their own accesses (QEMU's second core runs CPU 1's accesses and probes its
    /// TLB). Without it each file runs in its own world and the random ones on one CPU.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=2))]
    smp: Option<u8>,
    /// Sequences per boot of the guest.
    #[arg(long, default_value_t = 250)]
    batch: usize,
    /// Seconds one boot may take before it counts as hung.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Instead of the suite: show that injected defects are caught, as on the host.
    #[arg(long)]
    prove_defects: bool,
    /// Instead of the suite: the descriptor matrix (every descriptor kind x AP x XN x PXN x
    /// nG x domain mode, ATS and fetches on QEMU vs the reference walker).
    #[arg(long, conflicts_with = "prove_defects")]
    matrix: bool,
    /// Read every file as `.ops` text.
    #[arg(long, conflicts_with = "bytes")]
    text: bool,
    /// Read every file as `ops` fuzzer bytes.
    #[arg(long)]
    bytes: bool,
    /// `.ops` files, fuzzer inputs (artifact names such as `crash-...`, or any file in a corpus
    /// or artifacts directory) or directories of them (default: corpus/regressions/*.ops).
    files: Vec<PathBuf>,
}

/// A seed, or `random`: one from the clock.
fn parse_seed(text: &str) -> Result<u64, String> {
    if text == "random" {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        // Kept to nine decimal digits: easy to read back from the summary.
        return Ok((nanos % 1_000_000_000) as u64);
    }
    text.parse()
        .map_err(|_| format!("`{text}`: a number or `random`"))
}

/// A sequence to run, named for the report.
struct Item {
    name: String,
    plan: Plan,
}

#[derive(Default)]
struct Stats {
    ops: usize,
    probes: usize,
    /// Probes with instruction fetches, and fetch steps not run (`Plan::fetches_removed`).
    fetch_probes: usize,
    fetches_removed: usize,
    /// Probes made on the second core (through CPU 1's TLB), and accesses run there.
    core1_probes: usize,
    core1_accesses: usize,
    /// Steps with more pages than `plan::MAX_PROBES`, and the pages left unprobed.
    capped_steps: usize,
    unprobed: usize,
    boots: usize,
    qemu_time: Duration,
}

fn random_sequences(n: usize, seed: u64, length: usize, cpus: u8) -> Vec<Sequence> {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    );
    let sequence = checker::strategy::sequence_on(length.saturating_sub(1), cpus);
    (0..n)
        .map(|_| {
            sequence
                .new_tree(&mut runner)
                .map(|t| Sequence {
                    config: checker::Config {
                        cpus,
                        ..checker::Config::DEFAULT
                    },
                    steps: t.current(),
                })
                .unwrap_or_default()
        })
        .collect()
}

/// Runs `items` in boots of at most `batch` sequences; a sequence the guest did not finish is
/// a crash, and the boot resumes after it.
fn run_items(
    guest: &Path,
    items: &[Item],
    defect: GuestDefect,
    batch: usize,
    timeout: Duration,
    stats: &mut Stats,
) -> Result<Vec<Verdict>, String> {
    let mut verdicts = Vec::new();
    let mut next = 0;
    while next < items.len() {
        let chunk = &items[next..(next + batch.max(1)).min(items.len())];
        let blob = encode_blob(
            defect,
            &chunk
                .iter()
                .map(|i| i.plan.guest_sequence())
                .collect::<Vec<_>>(),
        );
        let run = run_guest(guest, &blob, timeout, stats.boots).map_err(|e| e.to_string())?;
        if run.sequences.is_empty() && run.output.contains("qemu-system-arm:") {
            return Err(format!("QEMU did not run the guest: {}", run.output.trim()));
        }
        stats.boots += 1;
        stats.qemu_time += run.elapsed;
        let plans: Vec<&Plan> = chunk.iter().map(|i| &i.plan).collect();
        let settled = judge(&plans, &run, timeout);
        for (item, report) in chunk.iter().zip(&run.sequences).take(settled.len()) {
            stats.ops += item.plan.steps.len();
            stats.fetches_removed += item.plan.fetches_removed;
            for e in &item.plan.expected {
                stats.capped_steps += usize::from(e.unprobed > 0);
                stats.unprobed += e.unprobed;
            }
            for (p, _) in item.plan.probed.iter().zip(&report.steps) {
                let core1 = p.groups.iter().filter(|g| g.cpu == 1);
                stats.core1_probes += core1.map(|g| g.count() as usize).sum::<usize>();
                stats.core1_accesses += usize::from(matches!(
                    p.step.op,
                    op_driver::ConcreteOp::Access { cpu: 1, .. }
                ));
            }
            for r in &report.steps {
                if let Record::Step { probes, .. } = r {
                    stats.probes += probes.len();
                    stats.fetch_probes += probes
                        .iter()
                        .filter(|p| p.access(EXEC_PL0).is_some())
                        .count();
                }
            }
        }
        next += settled.len();
        verdicts.extend(settled);
    }
    Ok(verdicts)
}

/// The sequences of `files` (directories stand for their files), read as `checker replay`
/// reads them: `.ops` text held to the strict rules, fuzzer bytes decoded as the target does;
/// each named for the report.
fn load_files(files: &[PathBuf], flags: KindFlags) -> Result<Vec<(String, Sequence)>, String> {
    let mut out = Vec::new();
    for input in expand_dirs(files, flags) {
        out.push((shown(&input.path), input.read_strict()?));
    }
    Ok(out)
}

/// The workspace root.
fn root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    here.canonicalize().unwrap_or(here)
}

fn default_files() -> Result<Vec<PathBuf>, String> {
    let dir = root().join("corpus/regressions");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ops"))
        .collect();
    files.sort();
    Ok(files
        .into_iter()
        .map(|p| p.strip_prefix(root()).map(Path::to_path_buf).unwrap_or(p))
        .collect())
}

fn suite(args: &Args) -> Result<bool, String> {
    let files = if args.files.is_empty() {
        default_files()?
    } else {
        args.files.clone()
    };
    let flags = KindFlags {
        text: args.text,
        bytes: args.bytes,
    };
    let probing = if args.probe_all {
        Probing::Everything
    } else {
        Probing::Sample
    };
    let mut sequences = load_files(&files, flags)?;
    // The guest has two cores: a file in a world of more CPUs, or with an access on a CPU the
    // world of `--smp N` lacks, is skipped and counted (a grown corpus may hold some).
    let mut skipped = 0;
    sequences.retain_mut(|(name, sequence)| {
        let cpus = args.smp.unwrap_or(sequence.config.cpus);
        let beyond = checker::first_access_beyond(&sequence.steps, cpus).map(|(at, _)| at);
        let why = if cpus > qemu::GUEST_CPUS {
            Some(format!(
                "a world of {cpus} CPUs (the guest has {})",
                qemu::GUEST_CPUS
            ))
        } else {
            beyond.map(|at| format!("step {} runs on a CPU a world of {cpus} lacks", at + 1))
        };
        if let Some(why) = why {
            println!("SKIP {name}: {why}");
            skipped += 1;
            return false;
        }
        sequence.config.cpus = cpus;
        true
    });
    let file_count = sequences.len();
    let cpus = args.smp.unwrap_or(1);
    for (i, steps) in random_sequences(args.random, args.seed, args.length, cpus)
        .into_iter()
        .enumerate()
    {
        sequences.push((format!("random #{i} (seed {})", args.seed), steps));
    }
    println!(
        "qemu: {} files + {} random sequences of {} ops (seed {}{}), {} per boot, guest {}",
        file_count,
        args.random,
        args.length,
        args.seed,
        args.smp
            .map_or_else(String::new, |n| format!(", a world of {n} CPUs")),
        args.batch,
        args.guest.display()
    );
    let start = Instant::now();
    let mut stats = Stats::default();
    let (mut failed, mut crashed, mut random_failed) = (0, 0, 0);
    let failures = root().join("target/qemu-failures");
    // A batch is planned just before its boot and dropped once judged: with --probe-all a
    // plan holds every probed page of every step, and the inputs may be a grown corpus.
    let batch = args.batch.max(1);
    for (first, chunk) in sequences
        .chunks(batch)
        .enumerate()
        .map(|(k, c)| (k * batch, c))
    {
        let items: Vec<Item> = chunk
            .iter()
            .map(|(name, steps)| Item {
                name: name.clone(),
                plan: plan_with(steps, probing),
            })
            .collect();
        let verdicts = run_items(
            &args.guest,
            &items,
            GuestDefect::None,
            batch,
            Duration::from_secs(args.timeout),
            &mut stats,
        )?;
        for (k, (item, verdict)) in items.iter().zip(&verdicts).enumerate() {
            let i = first + k;
            let is_file = i < file_count;
            match verdict {
                Verdict::Pass if is_file => println!("PASS {}", item.name),
                Verdict::Pass => {}
                Verdict::Diverged(d) => {
                    failed += 1;
                    println!("FAIL {}\n{d}", item.name);
                }
                Verdict::Crashed(why) => {
                    crashed += 1;
                    println!(
                        "FAIL {}: {why}\n{}",
                        item.name,
                        print_sequence(&item.plan.sequence())
                    );
                }
            }
            if !is_file && !matches!(verdict, Verdict::Pass) {
                random_failed += 1;
                let _ = std::fs::create_dir_all(&failures);
                let path =
                    failures.join(format!("random-seed{}-{}.ops", args.seed, i - file_count));
                if std::fs::write(&path, print_sequence(&item.plan.sequence())).is_ok() {
                    println!(
                        "  saved as {} (cargo xtask qemu {0}; cargo xtask replay {0})",
                        path.display()
                    );
                }
            }
        }
        if sequences.len() > batch {
            eprintln!(
                "qemu: {}/{} sequences ({:.1} s in QEMU)",
                first + chunk.len(),
                sequences.len(),
                stats.qemu_time.as_secs_f64()
            );
        }
    }
    if args.random > 0 {
        println!(
            "{} random sequences: {} passed, {} failed",
            args.random,
            args.random - random_failed,
            random_failed
        );
    }
    let secs = stats.qemu_time.as_secs_f64().max(1e-9);
    println!(
        "SUMMARY: {} sequences ({file_count} from files{}, {} random of seed {}), {} failed, {} guest crashes; {} ops{}, {} probes ({} with instruction fetches){}{}; {} boots, {:.1} s in QEMU ({:.0} sequences/min, {:.0} probes/s), {:.1} s wall",
        sequences.len(),
        if skipped == 0 {
            String::new()
        } else {
            format!(", {skipped} skipped")
        },
        args.random,
        args.seed,
        failed,
        crashed,
        stats.ops,
        if stats.fetches_removed == 0 {
            String::new()
        } else {
            format!(
                " ({} instruction fetches not run: frames the guest may not write)",
                stats.fetches_removed
            )
        },
        stats.probes,
        stats.fetch_probes,
        if args.probe_all {
            ": every present page of every live space".to_string()
        } else {
            format!(
                ": a sample, the step's own space, {} steps on their {} lowest pages only, {} pages unprobed (--probe-all probes every page)",
                stats.capped_steps,
                qemu_runner::plan::MAX_PROBES,
                stats.unprobed
            )
        },
        if stats.core1_probes + stats.core1_accesses == 0 {
            String::new()
        } else {
            format!(
                "; core 1: {} accesses, {} probes through its TLB",
                stats.core1_accesses, stats.core1_probes
            )
        },
        stats.boots,
        secs,
        sequences.len() as f64 * 60.0 / secs,
        stats.probes as f64 / secs,
        start.elapsed().as_secs_f64()
    );
    Ok(failed == 0 && crashed == 0)
}

/// The sequence `ops` (named `name`) on a sound guest and on one with `defect`: the sequence
/// and both verdicts.
fn sound_and_broken(
    args: &Args,
    name: &str,
    ops: &str,
    defect: GuestDefect,
    probing: Probing,
) -> Result<(Sequence, Verdict, Verdict), String> {
    let steps = parse_sequence(ops).map_err(|e| format!("{name}: {e}"))?;
    let item = [Item {
        name: name.into(),
        plan: plan_with(&steps, probing),
    }];
    let timeout = Duration::from_secs(args.timeout);
    let mut stats = Stats::default();
    let mut run = |defect| run_items(&args.guest, &item, defect, 1, timeout, &mut stats);
    let sound = run(GuestDefect::None)?.remove(0);
    let broken = run(defect)?.remove(0);
    Ok((steps, sound, broken))
}

fn prove_defects(args: &Args) -> Result<bool, String> {
    let mut all = true;
    for case in defects::cases() {
        let (steps, sound, broken) =
            sound_and_broken(args, case.name, case.ops, case.guest, Probing::Sample)?;
        let kind_of = |v: &Verdict| match v {
            Verdict::Pass => Ok(None),
            Verdict::Diverged(d) => Ok(Some(d.kind)),
            Verdict::Crashed(why) => Err(why.clone()),
        };
        let host_sound = checker::run(&steps).err().map(|d| d.kind);
        let host_broken = checker::run_with_defect(&steps, Some(case.host))
            .err()
            .map(|d| d.kind);
        let (qemu_sound, qemu_broken) = (kind_of(&sound)?, kind_of(&broken)?);
        let host_kind = case.host_kind.unwrap_or(case.kind);
        let ok = host_sound.is_none()
            && qemu_sound.is_none()
            && host_broken == Some(host_kind)
            && qemu_broken == Some(case.kind);
        all &= ok;
        let show = |k: Option<DivergenceKind>| k.map_or("agrees".to_string(), |k| format!("{k:?}"));
        let expected = if host_kind == case.kind {
            format!("{:?}", case.kind)
        } else {
            format!("{:?} (host {host_kind:?})", case.kind)
        };
        println!(
            "{} {}: expected {expected}; QEMU {} (sound machine: {}), host {} (sound machine: {})",
            if ok { "PASS" } else { "FAIL" },
            case.name,
            show(qemu_broken),
            show(qemu_sound),
            show(host_broken),
            show(host_sound),
        );
        if !ok && let Verdict::Diverged(d) = &broken {
            println!("{d}");
        }
    }
    for case in defects::harness_cases() {
        let (_, sound, broken) =
            sound_and_broken(args, case.name, case.ops, case.guest, Probing::Sample)?;
        let said = match &broken {
            Verdict::Crashed(why) => why.lines().next().unwrap_or("").to_string(),
            Verdict::Pass => "passed".to_string(),
            Verdict::Diverged(d) => format!("{:?} at step {}", d.kind, d.at + 1),
        };
        let ok = matches!(sound, Verdict::Pass) && said.contains(case.says);
        all &= ok;
        println!(
            "{} {}: expected a failure saying \"{}\"; the runner said \"{said}\" (sound guest: {})",
            if ok { "PASS" } else { "FAIL" },
            case.name,
            case.says,
            if matches!(sound, Verdict::Pass) {
                "passes"
            } else {
                "fails"
            },
        );
    }
    // A defect on a page past the sample: only probing every page sees it.
    let (name, ops) = (
        "a read-only page written read/write past the sample (the last page of a 2 MiB device range)",
        "spawn\nmapdev s=0 addr=0x3000000 page=0 len=0x200000 prot=0x3\nmprotect s=0 addr=0x31ff000 len=0x1000 prot=0x1\n",
    );
    let defect = GuestDefect::MakeReadOnlyUserPagesWritable;
    let (_, _, sampled) = sound_and_broken(args, name, ops, defect, Probing::Sample)?;
    let (_, sound, broken) = sound_and_broken(args, name, ops, defect, Probing::Everything)?;
    let kind = |v: &Verdict| match v {
        Verdict::Pass => "agrees".to_string(),
        Verdict::Diverged(d) => format!("{:?}", d.kind),
        Verdict::Crashed(why) => why.lines().next().unwrap_or("").to_string(),
    };
    // The sample must miss it, or the case no longer shows what only --probe-all sees.
    let ok = matches!(sound, Verdict::Pass)
        && matches!(sampled, Verdict::Pass)
        && matches!(&broken, Verdict::Diverged(d) if d.kind == DivergenceKind::State);
    all &= ok;
    println!(
        "{} {name}: expected State with --probe-all and nothing from a sample; QEMU {} (sound machine: {}; a sample: {})",
        if ok { "PASS" } else { "FAIL" },
        kind(&broken),
        kind(&sound),
        kind(&sampled),
    );
    let new = |findings: Vec<Finding>| -> Vec<Finding> {
        findings
            .into_iter()
            .filter(|f| matrix::known(f).is_none())
            .collect()
    };
    let sound = new(run_matrix(args, MatrixDefect::None)?.0);
    let broken = new(run_matrix(args, MatrixDefect::AllDomainsClient)?.0);
    let ok = sound.is_empty() && !broken.is_empty();
    all &= ok;
    println!(
        "{} the matrix guest installs every case with all domains client: expected disagreements; {} (sound guest: {})",
        if ok { "PASS" } else { "FAIL" },
        match broken.len() {
            0 => "none".to_string(),
            n => format!("{n}, the first: {}", broken[0]),
        },
        if sound.is_empty() {
            "agrees".to_string()
        } else {
            format!("{} disagreements", sound.len())
        }
    );
    println!(
        "SUMMARY: defects {}",
        if all {
            "all caught, host and QEMU agree"
        } else {
            "NOT all caught"
        }
    );
    Ok(all)
}

/// Boots the matrix guest on every combination: the disagreements, and the time in QEMU.
fn run_matrix(args: &Args, defect: MatrixDefect) -> Result<(Vec<Finding>, Duration), String> {
    let (combinations, _) = matrix::combinations();
    let cases: Vec<_> = combinations.iter().map(matrix::Combination::case).collect();
    let run = qemu::boot(
        &args.guest,
        &encode_matrix(defect, &cases),
        Duration::from_secs(args.timeout),
        0,
    )
    .map_err(|e| e.to_string())?;
    if run.status != Some(0) {
        return Err(format!(
            "the matrix guest {}: {}",
            run.status.map_or("timed out".to_string(), |s| format!(
                "exited with status {s}"
            )),
            run.output.trim()
        ));
    }
    let results = decode_matrix_report(&run.words).map_err(|e| format!("report.bin: {e:?}"))?;
    let findings = matrix::compare(&combinations, &results)?;
    Ok((findings, run.elapsed))
}

/// The descriptor matrix: PASS/FAIL per descriptor kind, every disagreement, a SUMMARY.
fn matrix_suite(args: &Args) -> Result<bool, String> {
    let (combinations, skipped) = matrix::combinations();
    println!(
        "matrix: {} combinations (6 descriptor kinds x AP[2:0] x XN x PXN x nG x domain mode; {skipped} reserved skipped: AP[2:0]=100, domain mode 0b10), {} accesses each",
        combinations.len(),
        matrix::ACCESSES.len()
    );
    let (findings, elapsed) = run_matrix(args, MatrixDefect::None)?;
    let new: Vec<&Finding> = findings
        .iter()
        .filter(|f| matrix::known(f).is_none())
        .collect();
    for kind in Kind::ALL {
        let of_kind = combinations.iter().filter(|c| c.kind == kind).count();
        let wrong: Vec<&&Finding> = new.iter().filter(|f| f.combination.kind == kind).collect();
        let known = findings
            .iter()
            .filter(|f| f.combination.kind == kind && matrix::known(f).is_some())
            .count();
        let name = format!("{kind:?}");
        let known = if known == 0 {
            String::new()
        } else {
            format!(" ({known} results differ as a known QEMU deviation, see below)")
        };
        if wrong.is_empty() {
            println!("PASS {name}: {of_kind} combinations, walker and QEMU agree{known}");
        } else {
            println!("FAIL {name}: {} disagreements{known}", wrong.len());
            for f in wrong.iter().take(20) {
                println!("  {f}");
            }
            if wrong.len() > 20 {
                println!("  ... and {} more", wrong.len() - 20);
            }
        }
    }
    let mut unseen = 0;
    for d in &matrix::QEMU_DEVIATIONS {
        let seen: Vec<&Finding> = findings
            .iter()
            .filter(|f| matrix::known(f).is_some_and(|k| k.name == d.name))
            .collect();
        match seen.first() {
            Some(first) => println!(
                "KNOWN QEMU deviation, {} results: {}. {}\n  e.g. {first}",
                seen.len(),
                d.name,
                d.why
            ),
            None => {
                unseen += 1;
                println!(
                    "FAIL known QEMU deviation no longer seen (QEMU changed: update matrix::QEMU_DEVIATIONS): {}",
                    d.name
                );
            }
        }
    }
    let secs = elapsed.as_secs_f64().max(1e-9);
    let results = combinations.len() * matrix::ACCESSES.len();
    println!(
        "SUMMARY: matrix: {} combinations, {results} results, {} disagreements ({} new, {} known QEMU deviations); 1 boot, {secs:.1} s in QEMU ({:.0} results/s)",
        combinations.len(),
        findings.len(),
        new.len(),
        findings.len() - new.len(),
        results as f64 / secs
    );
    Ok(new.is_empty() && unseen == 0)
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    // QEMU runs in a scratch directory: the image path must not be relative.
    match args.guest.canonicalize() {
        Ok(p) => args.guest = p,
        Err(e) => {
            eprintln!("error: no guest image at {}: {e}", args.guest.display());
            return ExitCode::from(2);
        }
    }
    let result = if args.prove_defects {
        prove_defects(&args)
    } else if args.matrix {
        matrix_suite(&args)
    } else {
        suite(&args)
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
