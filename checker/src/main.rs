//! `checker replay FILE...`: runs `.ops` files or fuzzer inputs through the model and the vmm.
//! Exit status 0 when they agree on every file, 1 with the divergence report otherwise, 2 when
//! a file cannot be read or parsed (every file is still reported).
//!
//! `checker seeds SCENARIOS OUT`: writes the fuzzers' seed corpora under `OUT/<target>/`: `ops`
//! and `text` from the `.ops` scenarios in `SCENARIOS`, `mmu` and `frames` from the checker's
//! built-in seeds (what `cargo xtask seeds` runs).
//!
//! `checker minimize FILE --out DIR`: a finding -> a short regression scenario (what `cargo
//! xtask minimize` runs after `cargo fuzz tmin`).
//!
//! `checker speed-inputs OUT`: the fixed 64-step inputs `cargo xtask fuzz-speed` times.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use checker::input::{Input, Kind, KindFlags, expand_dirs, shown};
use clap::{Args, Parser, Subcommand};

/// Prints a line on standard output. A closed pipe (`checker replay ... | head`) ends the
/// program quietly with status 141, as a process killed by SIGPIPE would.
macro_rules! say {
    ($($arg:tt)*) => {
        say_line(format_args!($($arg)*))
    };
}

fn say_line(line: fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out
        .write_fmt(line)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("checker: cannot write to standard output: {e}");
        std::process::exit(2);
    }
}

/// Colour in reports only on a terminal, and never when `NO_COLOR` is set (no-color.org).
fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The exit statuses, and the terminal manners, for `--help`.
const EXIT_STATUS: &str = "Exit status: 0 success (model and vmm agree); 1 a divergence (for \
minimize: nothing to minimize); 2 bad input (a file that cannot be read or parsed, of unknown \
kind, an unknown defect); 141 standard output was closed (a pipe into `head`). Colour only on \
a terminal; NO_COLOR turns it off.";

/// `replay --help`: the `.ops` grammar in brief, then the exit statuses.
const OPS_GRAMMAR: &str = "A .ops file: one step per line, `op key=value ...`, `#` starts a \
comment; an optional first line `pool frames=N asids=M cpus=K` sets the world.
Ops: spawn | fork s | exit s | mmap s addr len prot flags | munmap s addr len | mprotect s addr \
len prot | brk s addr | mremap s addr old_len new_len flags new_addr | shmget key size flags | \
shmat s id addr flags | shmdt s addr | shmctl id cmd | mapdev s addr page len prot | vmalloc \
len | vfree addr | read s addr mode | write s addr value mode | exec s addr mode; every op \
takes refuse=K (its K-th frame allocation fails). mode=user|kernel; read, write and exec take \
cpu=K (the CPU they run on, below the world's cpus; 0 by default).
Addresses: 0x... | rR+Pp+Ww (word W of page P of region R of space s) | heap+Pp | mmap+Pp | \
vmA+Pp (a vmalloc allocation). Hand-written files are strict: every key known and given once, \
s=, rR and vmA naming something live, no step that would not run. The full grammar: \
docs/ops-format.md.

Exit status: 0 success (model and vmm agree); 1 a divergence; 2 bad input (a file that cannot \
be read or parsed, of unknown kind, an unknown defect); 141 standard output was closed (a pipe \
into `head`). Colour only on a terminal; NO_COLOR turns it off.";

#[derive(Parser)]
#[command(
    name = "checker",
    about = "Differential checker for the vmm crate",
    after_help = EXIT_STATUS
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How to read the files: by default `.ops` (any case) is text; libFuzzer's artifact names
/// (`crash-`, `oom-`, `timeout-`, `slow-unit-`, `leak-`) and files in a corpus or artifacts
/// directory (or a directory given on the command line) are fuzzer bytes; anything else is an
/// error asking for one of these flags.
#[derive(Args, Clone, Copy)]
struct FileKindArgs {
    /// Read every file as `.ops` text.
    #[arg(long, conflicts_with = "bytes")]
    text: bool,
    /// Read every file as `ops` fuzzer bytes.
    #[arg(long)]
    bytes: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Replay `.ops` files or fuzzer inputs (a directory stands for its files) and report the
    /// first divergence of each, then a SUMMARY line.
    #[command(after_help = OPS_GRAMMAR)]
    Replay {
        /// Print every step with what the model and the vmm returned, side by side (up to the
        /// step that diverged).
        #[arg(long)]
        trace: bool,
        /// Print only divergences and the summary.
        #[arg(long)]
        quiet: bool,
        /// Run on a machine with this deliberate defect (drop-every-invalidate, ...).
        #[arg(long, value_parser = parse_defect)]
        defect: Option<checker::Defect>,
        /// Run every sequence in a world of N CPUs instead of its own (accesses keep their
        /// CPU; one on a CPU the world lacks is an error): the one-CPU corpus checked with
        /// broadcast maintenance.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=4))]
        smp: Option<u8>,
        #[command(flatten)]
        kind: FileKindArgs,
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
        #[command(flatten)]
        kind: FileKindArgs,
    },
    /// Check the fuzzing (fast) mode against the reference (full) mode on `.ops` files or
    /// fuzzer inputs (a directory stands for its files): each runs in full mode and in fast
    /// mode with the shadow audited against a full read of the tables after every step, and
    /// both must pass, or diverge with the same kind at the same step (a divergence of the
    /// tables' INV-7, which fast mode checks only at the end, may come later there). For
    /// anyone changing the fast mode.
    AuditFast {
        #[command(flatten)]
        kind: FileKindArgs,
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

impl From<FileKindArgs> for KindFlags {
    fn from(a: FileKindArgs) -> Self {
        Self {
            text: a.text,
            bytes: a.bytes,
        }
    }
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
            smp,
            kind,
            files,
        } => replay(
            Replay {
                trace,
                quiet,
                defect,
                smp,
            },
            &expand_dirs(&files, kind.into()),
        ),
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
            kind,
        } => minimize(
            &Input::given(file, kind.into()),
            tmin.map(|t| Input::given(t, kind.into())).as_ref(),
            &out,
            defect,
        ),
        Command::SpeedInputs { count, out } => speed_inputs(count, &out),
        Command::AuditFast { kind, files } => audit_fast(&expand_dirs(&files, kind.into())),
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
    say!(
        "{count} inputs of 64 steps ({} bytes on average) in {}",
        bytes / count.max(1),
        shown(out)
    );
    ExitCode::SUCCESS
}

fn minimize(
    input: &Input,
    tmin: Option<&Input>,
    out: &Path,
    defect: Option<checker::Defect>,
) -> ExitCode {
    let file = input.path.as_path();
    let fail = |e: String| {
        eprintln!("checker minimize: {e}");
        ExitCode::from(2)
    };
    let steps = match input.read() {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let Err(original) = checker::run_both_with_defect(&steps, defect) else {
        say!(
            "{}: model and vmm agree ({} steps): nothing to minimize",
            shown(file),
            steps.steps.len()
        );
        return ExitCode::FAILURE;
    };
    say!(
        "{}: {:?} at step {} of {}",
        shown(file),
        original.kind,
        original.at + 1,
        steps.steps.len()
    );
    // Start from the byte-minimized input when it still diverges the same way.
    let mut start = steps.clone();
    if let Some(t) = tmin {
        let name = shown(&t.path);
        match t
            .read()
            .map(|s| (checker::run_both_with_defect(&s, defect), s))
        {
            Ok((Err(d), s)) if d.kind == original.kind => {
                say!("{name}: the same kind in {} steps", s.steps.len());
                start = s;
            }
            _ => say!("{name}: not the same divergence; ignored"),
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
        return fail(format!("{}: {e}", shown(&path)));
    }
    say!(
        "minimized {} -> {} steps ({} runs), {:?} at step {}:\n{}",
        m.original_len,
        m.steps.len(),
        m.runs,
        m.divergence.kind,
        m.divergence.at + 1,
        text
    );
    say!("wrote {}", shown(&path));
    say!("replay: cargo xtask replay {}", shown(&path));
    ExitCode::SUCCESS
}

/// The scenarios' names (file stems), texts and sequences, sorted by name.
fn scenarios(dir: &Path) -> Result<Vec<(String, String, checker::Sequence)>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", shown(dir)))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ops"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", shown(f)))?;
            let steps = checker::parse_sequence(&text).map_err(|e| format!("{}: {e}", shown(f)))?;
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
    say!("{:>3} seeds in {}", files.len(), shown(dir));
    Ok(())
}

/// Empties `dir` (files only; made when missing) and writes `files` into it.
fn replace_files(dir: &Path, files: &[(String, Vec<u8>)]) -> Result<(), String> {
    let err = |e: std::io::Error| format!("{}: {e}", shown(dir));
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
fn audit_fast(files: &[Input]) -> ExitCode {
    let verdict = |r: &Result<usize, Box<checker::Divergence>>| match r {
        Ok(n) => format!("passes ({n} steps)"),
        Err(d) => format!("diverges: {:?} at step {}", d.kind, d.at + 1),
    };
    let (mut differ, mut unreadable) = (0, 0);
    for input in files {
        let steps = match input.read() {
            Ok(s) => s,
            Err(e) => {
                unreadable += 1;
                say!("ERROR {e}");
                continue;
            }
        };
        let full = checker::run(&steps);
        let fast = checker::run::audit_fast_mode(&steps, None);
        if !modes_agree(&full, &fast) {
            differ += 1;
            say!(
                "FAIL {}: full mode {}, fast mode (audited) {}",
                shown(&input.path),
                verdict(&full),
                verdict(&fast)
            );
            if let Err(d) = &fast {
                say!("{}", report(d));
            }
        }
    }
    say!(
        "SUMMARY: {} files, the modes differ on {differ}, {unreadable} unreadable",
        files.len()
    );
    exit_status(differ, unreadable)
}

/// 2 when a file could not be read, else 1 when one diverged, else 0.
fn exit_status(diverged: usize, unreadable: usize) -> ExitCode {
    if unreadable > 0 {
        ExitCode::from(2)
    } else if diverged > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// A divergence report, with its diff in colour when [`colour`] says so.
fn report(d: &checker::Divergence) -> String {
    if colour() {
        format!("{d:#}")
    } else {
        d.to_string()
    }
}

/// One row per step: the step, what the model returned, what the vmm returned; `>>` marks the
/// step that diverged, `!=` any other step whose results differ.
fn print_trace(
    steps: &checker::Sequence,
    rows: &[checker::StepRecord],
    diverged_at: Option<usize>,
) {
    let texts: Vec<String> = steps.steps.iter().map(ToString::to_string).collect();
    let width = texts
        .iter()
        .take(rows.len())
        .map(String::len)
        .max()
        .unwrap_or(0)
        .min(60);
    let results: Vec<(String, String)> = rows
        .iter()
        .zip(&steps.steps)
        .map(|(r, step)| {
            (
                checker::report::describe(&step.op, r.model, r.live_spaces),
                checker::report::describe(&step.op, r.vmm, r.live_spaces),
            )
        })
        .collect();
    let model_width = results
        .iter()
        .map(|(m, _)| m.len())
        .max()
        .unwrap_or(0)
        .max(5);
    say!(
        "   {:>3}  {:<width$}  {:<model_width$}  vmm",
        "#",
        "step",
        "model"
    );
    for (i, ((row, text), (model, vmm))) in rows.iter().zip(&texts).zip(&results).enumerate() {
        let mark = if Some(i) == diverged_at {
            ">>"
        } else if row.model != row.vmm {
            "!="
        } else {
            "  "
        };
        say!(
            "{mark} {:>3}  {text:<width$}  {model:<model_width$}  {vmm}",
            i + 1
        );
    }
}

/// How `replay` runs its files.
struct Replay {
    trace: bool,
    quiet: bool,
    defect: Option<checker::Defect>,
    /// The CPU count every sequence runs with (`--smp N`), instead of its own.
    smp: Option<u8>,
}

fn replay(options: Replay, files: &[Input]) -> ExitCode {
    let Replay {
        trace,
        quiet,
        defect,
        smp,
    } = options;
    let (mut diverged, mut unreadable) = (0, 0);
    for input in files {
        let file = shown(&input.path);
        let mut steps = match input.read_strict() {
            Ok(s) => s,
            Err(e) => {
                unreadable += 1;
                say!("ERROR {e}");
                continue;
            }
        };
        if let Some(cpus) = smp {
            if let Some((at, _)) = checker::first_access_beyond(&steps.steps, cpus) {
                unreadable += 1;
                say!(
                    "ERROR {file}: step {} runs on a CPU a world of {cpus} lacks (--smp {cpus})",
                    at + 1
                );
                continue;
            }
            steps.config.cpus = cpus;
        }
        if !quiet && input.kind() == Ok(Kind::Bytes) {
            say!(
                "{file}: fuzzer bytes, decoded to:\n{}",
                checker::print_sequence(&steps)
            );
        }
        let (rows, result) = checker::run_traced(&steps, defect);
        if trace {
            print_trace(&steps, &rows, result.as_ref().err().map(|d| d.at));
        }
        match result {
            Ok(n) if !quiet => say!("PASS {file} ({n} steps)"),
            Ok(_) => {}
            Err(d) => {
                diverged += 1;
                say!("FAIL {file}\n{}", report(&d));
            }
        }
    }
    say!(
        "SUMMARY: {} files, {diverged} diverged, {unreadable} unreadable",
        files.len()
    );
    exit_status(diverged, unreadable)
}
