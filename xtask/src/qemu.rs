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

/// Checks (fmt, clippy) and builds the bare-metal crate in `dir` (its own workspace: its
/// .cargo/config.toml, with the target and the linker script, applies from its directory).
fn check_and_build(root: &Path, dir: &Path) -> StepResult {
    for args in [
        &["fmt", "--", "--check"][..],
        &["clippy", "--release", "--", "-D", "warnings"][..],
        &["build", "--release"][..],
    ] {
        let mut cmd = cargo(root);
        cmd.current_dir(dir).args(args);
        run(cmd)?;
    }
    Ok(())
}

/// Checks (fmt, clippy) and builds the guest; returns the image path.
pub fn build_guest(root: &Path) -> Result<PathBuf, Failure> {
    check_and_build(root, &root.join("qemu-tests/guest"))?;
    Ok(root.join(GUEST_IMAGE))
}

/// Builds the guest and runs `qemu-runner` with `args`.
pub fn suite(root: &Path, args: &[OsString]) -> StepResult {
    run(runner(root, args)?)
}

/// `qemu-runner` with `args`, once QEMU is there and the guest is built.
fn runner(root: &Path, args: &[OsString]) -> Result<Command, Failure> {
    ensure_qemu()?;
    let guest = build_guest(root)?;
    let mut cmd = cargo_run(root, "qemu-runner");
    cmd.arg("--guest").arg(guest).args(args);
    Ok(cmd)
}

/// [`suite`], its output shown as it comes and kept: whether everything passed, and the
/// runner's SUMMARY line (for the nightly summary).
pub fn suite_summarized(root: &Path, args: &[OsString]) -> Result<(bool, String), Failure> {
    use std::io::BufRead;
    let mut child = runner(root, args)?
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

/// The platform probe, relative to the workspace root (its own workspace).
const PLATFORM_PROBE: &str = "qemu-tests/smp-probe";

/// `cargo xtask qemu-platform`: builds the two-core platform probe (fmt, clippy, build) and
/// runs it on `qemu-system-arm -M virt -smp 2`; its checks must all pass (exit status 0, a
/// SUMMARY with no failure).
pub fn platform(root: &Path) -> StepResult {
    ensure_qemu()?;
    let dir = root.join(PLATFORM_PROBE);
    check_and_build(root, &dir)?;
    let image = dir.join("target/armv7a-none-eabi/release/smp-probe");
    let mut qemu = Command::new("qemu-system-arm");
    qemu.args([
        "-M",
        "virt",
        "-cpu",
        "cortex-a7",
        "-smp",
        "2",
        "-m",
        "256M",
        "-nographic",
    ])
    .args(["-semihosting-config", "enable=on,target=native", "-kernel"])
    .arg(&image)
    .stdin(std::process::Stdio::null());
    println!(
        "$ qemu-system-arm -M virt -cpu cortex-a7 -smp 2 ... -kernel {PLATFORM_PROBE}/target/armv7a-none-eabi/release/smp-probe"
    );
    let mut child = qemu
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Failure(format!("cannot run qemu-system-arm: {e}")))?;
    // The probe's own waits time out after 2 s each; a hung QEMU is killed after a minute.
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| Failure(format!("qemu-system-arm: {e}")))?
        {
            break Some(status);
        }
        if started.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut output = String::new();
    if let Some(mut out) = child.stdout.take() {
        use std::io::Read;
        let _ = out.read_to_string(&mut output);
    }
    for line in output.lines().filter(|l| {
        let l = l.trim_start();
        l.starts_with("PASS") || l.starts_with("FAIL") || l.starts_with("SUMMARY")
    }) {
        println!("{line}");
    }
    let summary_clean = output
        .lines()
        .any(|l| l.starts_with("SUMMARY") && l.ends_with(" 0 fail"));
    match status {
        Some(s) if s.success() && summary_clean => Ok(()),
        Some(s) => Err(Failure(format!(
            "the platform probe failed ({s}); its output:\n{output}"
        ))),
        None => Err(Failure(format!(
            "the platform probe hung (killed after 60 s); its output:\n{output}"
        ))),
    }
}
