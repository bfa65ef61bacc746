//! `cargo xtask qemu`: installs qemu-system-arm when missing, builds the bare-metal guest, and
//! runs the QEMU differential suite (`qemu-runner`) on it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Failure, StepResult, cargo, cargo_run, run};

/// The guest image, relative to the workspace root.
const GUEST_IMAGE: &str = "qemu-tests/guest/target/armv7a-none-eabi/release/vmm-guest";

fn qemu_installed() -> bool {
    Command::new("qemu-system-arm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Installs qemu-system-arm with apt-get (as root, or through sudo) unless it is there.
pub fn ensure_qemu() -> StepResult {
    if qemu_installed() {
        return Ok(());
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let apt = |args: &[&str]| {
        let mut cmd = if root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.arg("apt-get");
            c
        };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    println!("==> qemu-system-arm is missing: installing it with apt-get");
    run(apt(&["update", "-qq"]))
        .and_then(|()| run(apt(&["install", "-y", "-qq", "qemu-system-arm"])))
        .map_err(|Failure(why)| {
            Failure(format!(
                "{why}\nqemu-system-arm is needed: install it with `apt-get install qemu-system-arm` (Debian/Ubuntu)"
            ))
        })?;
    if qemu_installed() {
        Ok(())
    } else {
        Err(Failure(
            "qemu-system-arm still not found after installing it".into(),
        ))
    }
}

/// Checks (fmt, clippy) and builds the guest; returns the image path.
pub fn build_guest(root: &Path) -> Result<PathBuf, Failure> {
    let dir = root.join("qemu-tests/guest");
    // The guest's .cargo/config.toml (target, linker script) applies from its own directory.
    for args in [
        &["fmt", "--", "--check"][..],
        &["clippy", "--release", "--", "-D", "warnings"][..],
        &["build", "--release"][..],
    ] {
        let mut cmd = cargo(root);
        cmd.current_dir(&dir).args(args);
        run(cmd)?;
    }
    Ok(root.join(GUEST_IMAGE))
}

/// Builds the guest and runs `qemu-runner` with `args`.
pub fn suite(root: &Path, args: &[OsString]) -> StepResult {
    ensure_qemu()?;
    let guest = build_guest(root)?;
    let mut cmd = cargo_run(root, "qemu-runner");
    cmd.arg("--guest").arg(guest).args(args);
    run(cmd)
}

/// [`suite`], its output shown as it comes and kept: whether everything passed, and the
/// runner's SUMMARY line (for the nightly summary).
pub fn suite_summarized(root: &Path, args: &[OsString]) -> Result<(bool, String), Failure> {
    use std::io::BufRead;
    ensure_qemu()?;
    let guest = build_guest(root)?;
    let mut cmd = cargo_run(root, "qemu-runner");
    cmd.arg("--guest").arg(guest).args(args);
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Failure(format!("cannot run qemu-runner: {e}")))?;
    let mut summary = String::new();
    if let Some(out) = child.stdout.take() {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            println!("{line}");
            if line.starts_with("SUMMARY:") {
                summary = line;
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| Failure(format!("qemu-runner: {e}")))?;
    if summary.is_empty() {
        return Err(Failure(format!(
            "qemu-runner printed no SUMMARY ({status})"
        )));
    }
    Ok((status.success(), summary))
}
