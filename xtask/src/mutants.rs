//! `cargo xtask mutants`: cargo-mutants over the `vmm` crate, and a full run spread over
//! several sittings.
//!
//! A full run takes hours on 2 cores. With `--resume`, the results so far (committed in
//! `mutants/progress/`) are put where cargo-mutants' `--iterate` reads them, so the mutants
//! already caught or unviable are skipped, and when the run ends the new results are merged
//! back (outcomes of mutants an edit has since moved or removed are dropped, so the score is
//! the current code's) and the score so far is printed. `--save` does only the merge, for a run that was
//! interrupted (cargo-mutants keeps its lists in `mutants.out/` current as it goes).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::Path;

use crate::{Failure, StepResult, cargo, ensure_cargo_tool, run};

/// Where cargo-mutants writes its results.
const OUT: &str = "mutants.out";
/// Where the results of a run spread over sittings are kept (committed).
const PROGRESS: &str = "mutants/progress";

/// The outcome lists, as cargo-mutants names them.
const CAUGHT: &str = "caught.txt";
const PREVIOUSLY_CAUGHT: &str = "previously_caught.txt";
const MISSED: &str = "missed.txt";
const TIMEOUT: &str = "timeout.txt";
const UNVIABLE: &str = "unviable.txt";

/// Runs cargo-mutants over vmm with `args`; with `resume`, continues the run kept in
/// `mutants/progress/` and merges the results back. Returns why it failed, if it did.
pub fn mutants(root: &Path, args: &[OsString], resume: bool) -> StepResult {
    ensure_cargo_tool(root, "mutants", "cargo-mutants")?;
    if resume {
        restore(root)?;
    }
    let mut cmd = cargo(root);
    cmd.args(["mutants", "--package", "vmm", "--timeout-multiplier", "3"]);
    if resume {
        cmd.arg("--iterate");
    }
    cmd.args(args);
    let result = run(cmd);
    if resume {
        save(root)?;
    }
    result.map_err(|Failure(why)| {
        Failure(format!(
            "{why} (missed mutants are listed in {OUT}/{MISSED})"
        ))
    })
}

/// Puts the kept results where `cargo mutants --iterate` reads them: what was caught or
/// unviable is not tested again; what was missed or timed out is.
fn restore(root: &Path) -> StepResult {
    let kept = Lists::read(&root.join(PROGRESS));
    let out = root.join(OUT);
    std::fs::create_dir_all(&out).map_err(|e| Failure(format!("{}: {e}", out.display())))?;
    write_list(&out.join(CAUGHT), &kept.caught)?;
    write_list(&out.join(PREVIOUSLY_CAUGHT), &BTreeSet::new())?;
    write_list(&out.join(UNVIABLE), &kept.unviable)?;
    println!(
        "resuming: {} caught and {} unviable mutants from {PROGRESS}/ are skipped",
        kept.caught.len(),
        kept.unviable.len()
    );
    Ok(())
}

/// `cargo xtask mutants --save`: merges `mutants.out/` into `mutants/progress/` and prints
/// the score so far.
pub fn save(root: &Path) -> StepResult {
    let progress = root.join(PROGRESS);
    let mut kept = Lists::read(&progress);
    let new = Lists::read(&root.join(OUT));
    kept.merge(new);
    // Outcomes of mutants the code no longer has (an edit moved or removed them) are dropped,
    // so the score is the current code's.
    if let Some(current) = current_mutants(root) {
        let before = kept.len();
        kept.retain(&current);
        let untested = current.len() - kept.len();
        println!(
            "{} outcomes of mutants no longer in the code dropped; {untested} of the {} current \
             mutants not tested yet",
            before - kept.len(),
            current.len()
        );
    }
    std::fs::create_dir_all(&progress)
        .map_err(|e| Failure(format!("{}: {e}", progress.display())))?;
    write_list(&progress.join(CAUGHT), &kept.caught)?;
    write_list(&progress.join(MISSED), &kept.missed)?;
    write_list(&progress.join(TIMEOUT), &kept.timeout)?;
    write_list(&progress.join(UNVIABLE), &kept.unviable)?;
    let viable = kept.caught.len() + kept.missed.len() + kept.timeout.len();
    let detected = kept.caught.len() + kept.timeout.len();
    println!(
        "mutants so far ({PROGRESS}/): {} caught, {} timeouts, {} missed, {} unviable; \
         {detected} of {viable} viable detected ({:.1} %)",
        kept.caught.len(),
        kept.timeout.len(),
        kept.missed.len(),
        kept.unviable.len(),
        100.0 * detected as f64 / viable.max(1) as f64
    );
    Ok(())
}

/// The names of the mutants cargo-mutants generates for vmm now (`--list`), if it runs.
fn current_mutants(root: &Path) -> Option<BTreeSet<String>> {
    let out = cargo(root)
        .args(["mutants", "--list", "--package", "vmm"])
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    })
}

/// The outcome of each mutant tested so far, named as cargo-mutants names them.
#[derive(Debug, Default, PartialEq)]
struct Lists {
    caught: BTreeSet<String>,
    missed: BTreeSet<String>,
    timeout: BTreeSet<String>,
    unviable: BTreeSet<String>,
}

impl Lists {
    /// The lists in `dir` (missing files are empty lists).
    fn read(dir: &Path) -> Self {
        let list = |name: &str| -> BTreeSet<String> {
            std::fs::read_to_string(dir.join(name))
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_owned)
                .collect()
        };
        // `previously_caught.txt` is only the list an `--iterate` run excluded (the caught and
        // the unviable it was given): their outcomes are the ones already kept.
        Self {
            caught: list(CAUGHT),
            missed: list(MISSED),
            timeout: list(TIMEOUT),
            unviable: list(UNVIABLE),
        }
    }

    /// How many mutants have an outcome.
    fn len(&self) -> usize {
        self.caught.len() + self.missed.len() + self.timeout.len() + self.unviable.len()
    }

    /// Keeps only the outcomes of the mutants in `current`.
    fn retain(&mut self, current: &BTreeSet<String>) {
        for list in [
            &mut self.caught,
            &mut self.missed,
            &mut self.timeout,
            &mut self.unviable,
        ] {
            list.retain(|m| current.contains(m));
        }
    }

    /// Adds a later run's outcomes: a mutant's latest outcome wins (a mutant missed before
    /// and caught now, after a new test, is caught).
    fn merge(&mut self, later: Lists) {
        for m in later
            .caught
            .iter()
            .chain(&later.missed)
            .chain(&later.timeout)
            .chain(&later.unviable)
        {
            self.caught.remove(m);
            self.missed.remove(m);
            self.timeout.remove(m);
            self.unviable.remove(m);
        }
        self.caught.extend(later.caught);
        self.missed.extend(later.missed);
        self.timeout.extend(later.timeout);
        self.unviable.extend(later.unviable);
    }
}

fn write_list(path: &Path, list: &BTreeSet<String>) -> StepResult {
    let mut text = String::new();
    for m in list {
        text.push_str(m);
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| Failure(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::Lists;

    fn set(items: &[&str]) -> std::collections::BTreeSet<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Outcomes of mutants the code no longer has are dropped.
    #[test]
    fn retain_keeps_current_mutants_only() {
        let mut kept = Lists {
            caught: set(&["a", "old"]),
            missed: set(&["b"]),
            timeout: set(&["gone"]),
            unviable: set(&["e"]),
        };
        kept.retain(&set(&["a", "b", "e", "new"]));
        assert_eq!(
            kept,
            Lists {
                caught: set(&["a"]),
                missed: set(&["b"]),
                timeout: set(&[]),
                unviable: set(&["e"]),
            }
        );
        assert_eq!(kept.len(), 3);
    }

    /// A mutant's latest outcome replaces its earlier one; the others stay.
    #[test]
    fn later_outcomes_win() {
        let mut kept = Lists {
            caught: set(&["a"]),
            missed: set(&["b", "c"]),
            timeout: set(&["d"]),
            unviable: set(&["e"]),
        };
        kept.merge(Lists {
            caught: set(&["b", "f"]),
            missed: set(&["d"]),
            timeout: set(&[]),
            unviable: set(&[]),
        });
        assert_eq!(
            kept,
            Lists {
                caught: set(&["a", "b", "f"]),
                missed: set(&["c", "d"]),
                timeout: set(&[]),
                unviable: set(&["e"]),
            }
        );
    }
}
