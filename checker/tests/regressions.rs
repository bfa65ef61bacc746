//! Every `.ops` file under `corpus/regressions/` is its own test case: it keeps the strict rules
//! of hand-written files (`checker::run::strictness`), and model and vmm must agree, in full mode
//! and in the fast mode (whose shadow is audited after every step).

use std::path::Path;

use libtest_mimic::{Arguments, Failed, Trial};

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/regressions");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus/regressions exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ops"))
        .collect();
    files.sort();
    let trials = files
        .into_iter()
        .map(|path| {
            let name = path
                .file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
            Trial::test(name, move || {
                let text =
                    std::fs::read_to_string(&path).map_err(|e| Failed::from(e.to_string()))?;
                let steps = checker::parse_sequence(&text).map_err(Failed::from)?;
                checker::run::strictness(&steps).map_err(|(at, why)| {
                    Failed::from(format!("step {} `{}`: {why}", at + 1, steps.steps[at]))
                })?;
                let full = checker::run(&steps).map_err(|d| Failed::from(d.to_string()))?;
                // Both modes agree: the fast mode, with its shadow audited against a full
                // read of the tables after every step, passes the same steps.
                let fast = checker::run::audit_fast_mode(&steps, None)
                    .map_err(|d| Failed::from(format!("fast mode: {d}")))?;
                if fast != full {
                    return Err(format!("fast mode ran {fast} steps, full mode {full}").into());
                }
                Ok(())
            })
        })
        .collect();
    libtest_mimic::run(&Arguments::from_args(), trials).exit();
}
