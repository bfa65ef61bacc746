//! `checker replay` as a user meets it: the side-by-side trace (a golden file), plain output
//! when piped, a closed pipe, file kinds and a SUMMARY that counts unreadable files.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn checker() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_checker"));
    cmd.env_remove("NO_COLOR");
    cmd
}

/// The trace of a failing run: one row per step up to the one that diverged, model and vmm side
/// by side, from the same run as the report that follows it. Regenerate with
/// `checker replay --trace --defect drop-every-invalidate stale_tlb.ops > stale_tlb.trace`
/// from `checker/tests/golden/`.
#[test]
fn a_failing_trace_matches_its_golden_file() {
    let out = checker()
        .current_dir(golden_dir())
        .args(["replay", "--trace", "--defect", "drop-every-invalidate"])
        .arg("stale_tlb.ops")
        .output()
        .expect("the checker runs");
    assert_eq!(out.status.code(), Some(1), "a divergence is exit status 1");
    let expected =
        std::fs::read_to_string(golden_dir().join("stale_tlb.trace")).expect("the golden file");
    pretty_assertions::assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
}

#[test]
fn piped_output_has_no_colour() {
    let out = checker()
        .current_dir(golden_dir())
        .args([
            "replay",
            "--defect",
            "drop-every-invalidate",
            "stale_tlb.ops",
        ])
        .output()
        .expect("the checker runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("StaleTlb"), "{stdout}");
    assert!(
        !stdout.contains('\u{1b}'),
        "escape sequences in a pipe:\n{stdout}"
    );
}

/// `checker replay ... | head`: the reader goes away; the checker ends quietly (status 141, as
/// a process killed by SIGPIPE), without a panic.
#[test]
fn a_closed_pipe_ends_quietly() {
    let regressions = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/regressions");
    // Far more than a pipe's buffer, so the checker is still writing when the reader leaves.
    let mut child = checker()
        .arg("replay")
        .arg("--trace")
        .args(std::iter::repeat_n(&regressions, 40))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the checker runs");
    let mut first = [0u8; 64];
    child
        .stdout
        .as_mut()
        .expect("piped")
        .read_exact(&mut first)
        .expect("some output");
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr)
        .expect("stderr");
    let status = child.wait().expect("the checker ends");
    assert_eq!(status.code(), Some(141), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `.ops` in any case is text; a libFuzzer artifact name is fuzzer bytes; any other name is an
/// error until `--text` or `--bytes` says which, and every file is still reported.
#[test]
fn file_kinds_come_from_names_or_flags() {
    let dir = std::env::temp_dir().join(format!("checker-kinds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = std::fs::read(golden_dir().join("stale_tlb.ops")).unwrap();
    std::fs::write(dir.join("UPPER.OPS"), &scenario).unwrap();
    std::fs::write(dir.join("notes.txt"), &scenario).unwrap();
    std::fs::write(dir.join("crash-0123"), [0u8, 1, 2, 3]).unwrap();
    let run = |args: &[&str]| {
        let out = checker()
            .current_dir(&dir)
            .arg("replay")
            .args(args)
            .output()
            .expect("the checker runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };

    let (code, stdout) = run(&["UPPER.OPS", "notes.txt", "crash-0123"]);
    assert_eq!(code, Some(2), "{stdout}");
    assert!(stdout.contains("PASS UPPER.OPS (4 steps)"), "{stdout}");
    assert!(
        stdout.contains("ERROR notes.txt: neither a `.ops` file"),
        "{stdout}"
    );
    assert!(
        stdout.contains("crash-0123: fuzzer bytes, decoded to:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("SUMMARY: 3 files, 0 diverged, 1 unreadable"),
        "{stdout}"
    );

    let (code, stdout) = run(&["--text", "notes.txt"]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("PASS notes.txt (4 steps)"), "{stdout}");

    let (code, stdout) = run(&["--bytes", "notes.txt"]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("notes.txt: fuzzer bytes, decoded to:"),
        "{stdout}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
