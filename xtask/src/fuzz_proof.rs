//! `cargo xtask fuzz-proof`: the fuzzing workflow, end to end, on a machine with an injected
//! defect. The `ops` target runs from an empty corpus with `VMM_FUZZ_DEFECT` set; it must
//! crash; the crash is minimized by the checker (against the same defect) to at most
//! [`MAX_STEPS`] steps; the minimized scenario must replay as a divergence of the expected
//! kind on the broken machine and pass on the sound one. Prints PASS/FAIL lines and a SUMMARY;
//! exit status 0 when every stage passed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use crate::fuzzing::{cargo_fuzz, files_in};
use crate::{cargo_run, ensure_cargo_tool};

/// The longest minimized scenario the proof accepts.
const MAX_STEPS: usize = 10;

/// The defects the proof knows the expected divergence kind of.
const EXPECTED: [(&str, &str); 3] = [
    ("drop-every-invalidate", "StaleTlb"),
    ("ro-user-pages-writable", "State"),
    ("skip-frame-zeroing", "ReturnValue"),
];

/// Returns the exit status: 0 when every stage passed, 1 when one failed, 2 on bad usage.
pub fn fuzz_proof(root: &Path, defect: &str, seconds: u64) -> u8 {
    let Some(&(_, kind)) = EXPECTED.iter().find(|(d, _)| *d == defect) else {
        let names: Vec<&str> = EXPECTED.iter().map(|(d, _)| *d).collect();
        eprintln!(
            "xtask fuzz-proof: no expected kind for `{defect}` (one of {})",
            names.join(", ")
        );
        return 2;
    };
    if let Err(crate::Failure(why)) = ensure_cargo_tool(root, "fuzz", "cargo-fuzz") {
        eprintln!("xtask fuzz-proof: {why}");
        return 2;
    }
    let work = root.join("target/fuzz-proof");
    let _ = std::fs::remove_dir_all(&work);
    let (corpus, artifacts, findings) = (
        work.join("corpus"),
        work.join("artifacts"),
        work.join("findings"),
    );
    for d in [&corpus, &artifacts, &findings] {
        if let Err(e) = std::fs::create_dir_all(d) {
            eprintln!("xtask fuzz-proof: {}: {e}", d.display());
            return 2;
        }
    }
    let mut passed = 0;
    let mut stage = |ok: bool, what: String| {
        println!("{} {what}", if ok { "PASS" } else { "FAIL" });
        passed += usize::from(ok);
        ok
    };

    // 1. A short fuzz run from nothing finds the defect.
    println!(
        "==> fuzz-proof: `ops` with VMM_FUZZ_DEFECT={defect}, empty corpus, up to {seconds} s"
    );
    let t0 = Instant::now();
    let mut cmd = cargo_fuzz(root, "run", "ops");
    cmd.env("VMM_FUZZ_DEFECT", defect)
        .arg(&corpus)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg("-seed=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()));
    let ran = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).output();
    let crash: Option<PathBuf> = files_in(&artifacts).into_iter().next();
    let found = stage(
        crash.is_some(),
        format!(
            "fuzzing found the defect in {:.1} s{}",
            t0.elapsed().as_secs_f64(),
            match (&crash, &ran) {
                (Some(c), _) => format!(" ({})", crate::shown(c)),
                (None, Ok(o)) => format!(
                    ": no crash; cargo fuzz said:\n{}",
                    String::from_utf8_lossy(&o.stderr)
                        .lines()
                        .rev()
                        .take(10)
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
                (None, Err(e)) => format!(": cannot run cargo fuzz: {e}"),
            }
        ),
    );

    // 2. The checker minimizes it (against the same defect) to a short scenario.
    let mut scenario = None;
    if let (true, Some(crash)) = (found, &crash) {
        let mut cmd = cargo_run(root, "checker");
        cmd.arg("minimize")
            .arg(crash)
            .arg("--defect")
            .arg(defect)
            .arg("--out")
            .arg(&findings);
        let out = cmd.output();
        let written = files_in(&findings).into_iter().next();
        let steps = written.as_ref().and_then(|p| {
            let text = std::fs::read_to_string(p).ok()?;
            Some(
                text.lines()
                    .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                    .count(),
            )
        });
        let ok = steps.is_some_and(|n| n <= MAX_STEPS);
        stage(
            ok,
            match (&written, steps) {
                (Some(p), Some(n)) => {
                    format!(
                        "minimized to {n} steps (at most {MAX_STEPS}): {}",
                        crate::shown(p)
                    )
                }
                _ => format!(
                    "minimize wrote nothing: {}",
                    out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                        .unwrap_or_default()
                ),
            },
        );
        if ok {
            if let Some(text) = written
                .as_ref()
                .and_then(|p| std::fs::read_to_string(p).ok())
            {
                for line in text.lines() {
                    println!("    | {line}");
                }
            }
            scenario = written;
        }
    }

    // 3. Replay shows it on the broken machine, and the sound machine passes it.
    if let Some(file) = &scenario {
        let mut broken = cargo_run(root, "checker");
        broken.arg("replay").arg("--defect").arg(defect).arg(file);
        let report = broken.output();
        let (code, text) = match &report {
            Ok(o) => (
                o.status.code(),
                String::from_utf8_lossy(&o.stdout).into_owned(),
            ),
            Err(e) => (None, e.to_string()),
        };
        let shown = text.contains(&format!("divergence: {kind} at step"));
        stage(
            code == Some(1) && shown,
            format!("replay on the broken machine reports {kind} (exit {code:?}); its report:"),
        );
        // Indented: the report's own FAIL/SUMMARY lines are not this proof's.
        for line in text.lines() {
            println!("    | {line}");
        }
        let mut sound = cargo_run(root, "checker");
        sound.arg("replay").arg(file);
        let code = sound.output().ok().and_then(|o| o.status.code());
        stage(
            code == Some(0),
            format!("replay on the sound machine passes (exit {code:?})"),
        );
    }
    println!("SUMMARY: fuzz-proof ({defect}): {passed} of 4 stages passed");
    u8::from(passed != 4)
}
