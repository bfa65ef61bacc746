//! Running the guest: a blob in a fresh directory, `qemu-system-arm` under a timeout, the
//! report read back and split per sequence.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use op_driver::guest::{Record, decode_report_prefix};

use crate::compare::SequenceReport;

/// The cores of the machine: worlds of more CPUs cannot run on it.
pub const GUEST_CPUS: u8 = 2;

/// The machine every run uses (platform-notes.md). It has two cores: the second stays
/// powered off until a sequence of a two-CPU world starts it (PSCI `CPU_ON`).
pub const QEMU_ARGS: [&str; 12] = [
    "-M",
    "virt",
    "-cpu",
    "cortex-a7",
    "-smp",
    "2",
    "-m",
    "256M",
    "-nographic",
    "-semihosting-config",
    "enable=on,target=native",
    "-no-reboot",
];

/// One boot of the guest.
#[derive(Debug)]
pub struct GuestRun {
    /// The reports of the sequences the guest got through (the last may be partial).
    pub sequences: Vec<SequenceReport>,
    /// The first record out of its place (a missing, extra or out-of-order record); the
    /// records from it on are not used.
    pub record_error: Option<RecordError>,
    /// The guest's exit status (`None`: killed at the timeout).
    pub status: Option<i32>,
    /// What the guest printed.
    pub output: String,
    /// Wall time of the boot.
    pub elapsed: Duration,
    /// Why the report could not be read completely, if so.
    pub report_error: Option<String>,
}

/// A scratch directory for one boot (QEMU's working directory: semihosting paths are
/// relative to it).
fn scratch_dir(batch: usize) -> io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("vmm-qemu-{}-{batch}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// What one boot of the guest left: its report's words, exit status and output.
#[derive(Debug)]
pub struct RawRun {
    /// `report.bin` as little-endian words.
    pub words: Vec<u32>,
    /// The guest's exit status (`None`: killed at the timeout).
    pub status: Option<i32>,
    /// What the guest printed.
    pub output: String,
    /// Wall time of the boot.
    pub elapsed: Duration,
}

/// Boots `guest` on `blob` (its `ops.bin`) and reads what it wrote.
pub fn boot(guest: &Path, blob: &[u8], timeout: Duration, batch: usize) -> io::Result<RawRun> {
    let dir = scratch_dir(batch)?;
    std::fs::write(dir.join("ops.bin"), blob)?;
    let start = Instant::now();
    let mut child = Command::new("qemu-system-arm")
        .args(QEMU_ARGS)
        .arg("-kernel")
        .arg(guest)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::fs::File::create(dir.join("stdout"))?))
        .stderr(Stdio::from(std::fs::File::create(dir.join("stderr"))?))
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("starting qemu-system-arm: {e}")))?;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s.code();
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = start.elapsed();
    let output = std::fs::read_to_string(dir.join("stdout")).unwrap_or_default()
        + &std::fs::read_to_string(dir.join("stderr")).unwrap_or_default();
    let bytes = std::fs::read(dir.join("report.bin")).unwrap_or_default();
    let words: Vec<u32> = bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(RawRun {
        words,
        status,
        output,
        elapsed,
    })
}

/// Boots `guest` on `blob` and collects its report.
pub fn run_guest(
    guest: &Path,
    blob: &[u8],
    timeout: Duration,
    batch: usize,
) -> io::Result<GuestRun> {
    let raw = boot(guest, blob, timeout, batch)?;
    let (records, error) = decode_report_prefix(&raw.words);
    let report_error = error.map(|e| format!("report.bin: {e:?}"));
    let (sequences, record_error) = split(records);
    Ok(GuestRun {
        sequences,
        record_error,
        status: raw.status,
        output: raw.output,
        elapsed: raw.elapsed,
        report_error,
    })
}

/// A record the guest wrote out of its place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordError {
    /// The sequence of the batch (0-based) it belongs to, or would.
    pub sequence: usize,
    /// The step (0-based) the sequence had reached.
    pub step: usize,
    /// What was wrong.
    pub why: String,
}

/// The records split per sequence, each checked against its place: a sequence `k` (0-based in
/// the batch) is `Sequence{k}`, its steps `Step{0}`, `Step{1}`, ... in order, then `End{k}`.
/// The first record out of place stops the split (what follows it cannot be trusted), and the
/// sequence it fell in has no end, so it counts as unfinished.
pub fn split(records: Vec<Record>) -> (Vec<SequenceReport>, Option<RecordError>) {
    let mut out: Vec<SequenceReport> = Vec::new();
    let mut open = false;
    for r in records {
        let (sequence, step) = match out.last() {
            Some(s) if open => (out.len() - 1, s.steps.len()),
            _ => (out.len(), 0),
        };
        let error = |why: String| RecordError {
            sequence,
            step,
            why,
        };
        match r {
            Record::Sequence { seq, free } => {
                if open {
                    return (
                        out,
                        Some(error(format!("sequence {seq} began before this one ended"))),
                    );
                }
                if seq as usize != out.len() {
                    return (
                        out,
                        Some(error(format!(
                            "a record of sequence {seq} where sequence {sequence} was due"
                        ))),
                    );
                }
                out.push(SequenceReport {
                    start_free: free,
                    ..SequenceReport::default()
                });
                open = true;
            }
            Record::End { seq, free } => {
                if !open || seq as usize != sequence {
                    return (
                        out,
                        Some(error(format!("the end of sequence {seq} out of place"))),
                    );
                }
                if let Some(s) = out.last_mut() {
                    s.end_free = Some(free);
                }
                open = false;
            }
            Record::Step { step: n, .. } => {
                if !open {
                    return (
                        out,
                        Some(error(format!(
                            "the record of step {} outside any sequence",
                            n + 1
                        ))),
                    );
                }
                if n as usize != step {
                    let what = if (n as usize) < step {
                        "again or out of order"
                    } else {
                        "after a missing one"
                    };
                    return (
                        out,
                        Some(error(format!(
                            "the record of step {} {what} (step {} was due)",
                            n + 1,
                            step + 1
                        ))),
                    );
                }
                if let Some(s) = out.last_mut() {
                    s.steps.push(r);
                }
            }
        }
    }
    (out, None)
}
