//! `checker audit-fast`: the fuzzing mode, its shadow audited after every step, agrees with
//! the reference mode on the committed `ops` seeds (fuzzer bytes) and regression scenarios.

use std::path::Path;
use std::process::Command;

#[test]
fn the_modes_agree_on_the_committed_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dirs = [root.join("corpus/ops"), root.join("corpus/regressions")];
    let files: usize = dirs
        .iter()
        .map(|d| {
            std::fs::read_dir(d)
                .expect("a corpus directory")
                .filter(|e| e.as_ref().is_ok_and(|e| e.path().is_file()))
                .count()
        })
        .sum();
    let out = Command::new(env!("CARGO_BIN_EXE_checker"))
        .arg("audit-fast")
        .args(&dirs)
        .output()
        .expect("the checker runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("SUMMARY: {files} files, the modes differ on 0")),
        "{stdout}"
    );
}

#[test]
fn an_unreadable_file_is_exit_status_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_checker"))
        .args(["audit-fast", "/nonexistent/input"])
        .output()
        .expect("the checker runs");
    assert_eq!(out.status.code(), Some(2));
}
