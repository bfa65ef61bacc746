//! What a run reports: the divergence kinds, the report a person reads (numbered `.ops`
//! listing, the step marked, a model-vs-vmm diff), and the panic sites fuzzers group by.

use std::fmt;

use crate::op::{Op, Step, print_ops};
use op_driver::{EFAULT, Outcome, SEGV};
use op_lang::{Config, Sequence};

/// What diverged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DivergenceKind {
    /// The op returned different values.
    ReturnValue,
    /// The observable state differs after the op.
    State,
    /// One model frame maps to two physical frames, or two model frames to one.
    FrameBijection,
    /// INV-8: a TLB entry no longer matches the page tables when the op returns (a missing
    /// TLB invalidate), or belongs to an ASID no live space holds.
    StaleTlb,
    /// INV-6 / INV-7: the kernel window is reachable from PL0, or a space's tables disagree with
    /// its bookkeeping (an L2 table not at its slot, an empty table, a wrong page count...).
    Tables,
    /// INV-10: the machine log breaks the hardware protocol (a valid descriptor replaced by
    /// another valid one without break-before-make, or descriptor writes not followed by
    /// DSB and ISB when the op returns).
    HardwareProtocol,
    /// The fuzzing (fast) mode diverged where the reference (full) mode passes: the two modes
    /// disagree, which is never resolved in either's favour. The report is the fast mode's.
    FastOnly,
}

/// A divergence between the vmm and the model, with everything needed to read it.
#[derive(Clone, Debug)]
pub struct Divergence {
    /// The kind.
    pub kind: DivergenceKind,
    /// The world the steps ran in.
    pub config: Config,
    /// The steps run, in `.ops` form.
    pub steps: Vec<Step>,
    /// Index of the step that diverged.
    pub at: usize,
    /// The model's side (expected).
    pub model: String,
    /// The vmm's side.
    pub vmm: String,
}

impl Divergence {
    /// A divergence of `kind` at step `at` of `steps`, model side first.
    pub(crate) fn boxed(
        kind: DivergenceKind,
        sequence: &Sequence,
        at: usize,
        model: String,
        vmm: String,
    ) -> Box<Self> {
        Box::new(Self {
            kind,
            config: sequence.config,
            steps: sequence.steps.to_vec(),
            at,
            model,
            vmm,
        })
    }
}

/// The report: `{}` plain, `{:#}` with the diff in colour (for a terminal).
impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "divergence: {:?} at step {} of {}",
            self.kind,
            self.at + 1,
            self.steps.len()
        )?;
        if self.config != Config::DEFAULT {
            writeln!(f, "         {}", self.config)?;
        }
        for (i, line) in print_ops(&self.steps).lines().enumerate() {
            let mark = if i == self.at { ">>" } else { "  " };
            writeln!(f, "{mark} {:>3}  {line}", i + 1)?;
        }
        if self.at == self.steps.len() {
            writeln!(
                f,
                ">>      (teardown: every space exits, every segment is removed)"
            )?;
        }
        writeln!(f, "model (left) vs vmm (right):")?;
        let diff = pretty_assertions::StrComparison::new(&self.model, &self.vmm).to_string();
        if f.alternate() {
            f.write_str(&diff)
        } else {
            f.write_str(&without_colour(&diff))
        }
    }
}

/// `text` without its ANSI escape sequences (`ESC [ ... letter`): the plain report, for files,
/// pipes, crash logs and `NO_COLOR`.
#[must_use]
pub fn without_colour(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip `[`, the parameters and the final letter.
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// What a step returned, as a person reads it: values in hex, errors by name, for accesses
/// `Segv` or `Efault` (whose numbers would read as `EPERM` and `ENOENT`), and for a spawn or
/// fork the index the new space has among the live ones (`live_spaces` after the step).
#[must_use]
pub fn describe(op: &Op, outcome: Outcome, live_spaces: usize) -> String {
    let access = matches!(op, Op::Read { .. } | Op::Write { .. } | Op::Exec { .. });
    match outcome {
        Outcome::Ok(_) if matches!(op, Op::Spawn | Op::Fork { .. }) => {
            format!("Ok(space {})", live_spaces.saturating_sub(1))
        }
        Outcome::Ok(v) => format!("Ok({v:#x})"),
        Outcome::Skipped => "Skipped".to_string(),
        Outcome::Err(SEGV) if access => "Segv".to_string(),
        Outcome::Err(EFAULT) if access => "Efault".to_string(),
        Outcome::Err(e) => {
            const NAMES: [(i32, &str); 11] = [
                (1, "EPERM"),
                (2, "ENOENT"),
                (12, "ENOMEM"),
                (13, "EACCES"),
                (14, "EFAULT"),
                (16, "EBUSY"),
                (17, "EEXIST"),
                (22, "EINVAL"),
                (28, "ENOSPC"),
                (43, "EIDRM"),
                (4095, "Internal"),
            ];
            match NAMES.iter().find(|&&(n, _)| n == e) {
                Some((_, name)) => format!("Err({name})"),
                None => format!("Err({e})"),
            }
        }
    }
}

/// Panics with the report, from a function of its own per kind so that fuzzers group crashes
/// by kind.
pub(crate) fn panic_by_kind(d: &Divergence) -> ! {
    match d.kind {
        DivergenceKind::ReturnValue => diverged_return_value(d),
        DivergenceKind::State => diverged_state(d),
        DivergenceKind::FrameBijection => diverged_frame_bijection(d),
        DivergenceKind::StaleTlb => diverged_stale_tlb(d),
        DivergenceKind::HardwareProtocol => diverged_hardware_protocol(d),
        DivergenceKind::Tables => diverged_tables(d),
        DivergenceKind::FastOnly => diverged_fast_only(d),
    }
}

#[inline(never)]
fn diverged_return_value(d: &Divergence) -> ! {
    panic!("{d}")
}
#[inline(never)]
fn diverged_state(d: &Divergence) -> ! {
    panic!("{d}")
}
#[inline(never)]
fn diverged_frame_bijection(d: &Divergence) -> ! {
    panic!("{d}")
}
#[inline(never)]
fn diverged_stale_tlb(d: &Divergence) -> ! {
    panic!("{d}")
}
#[inline(never)]
fn diverged_hardware_protocol(d: &Divergence) -> ! {
    panic!("{d}")
}
#[inline(never)]
fn diverged_tables(d: &Divergence) -> ! {
    panic!("{d}")
}
#[inline(never)]
fn diverged_fast_only(d: &Divergence) -> ! {
    panic!("{d}")
}

#[cfg(test)]
mod tests {
    use super::describe;
    use crate::op::{Addr, Op};
    use op_driver::Outcome;

    /// Escape sequences go, everything else stays.
    #[test]
    fn colour_is_stripped_to_plain_text() {
        assert_eq!(
            super::without_colour("\u{1b}[1mDiff\u{1b}[0m \u{1b}[31m< left\u{1b}[0m / ok"),
            "Diff < left / ok"
        );
        assert_eq!(super::without_colour("no colour"), "no colour");
    }

    /// Accesses read Segv and Efault, other ops their errno by name, values in hex.
    #[test]
    fn outcomes_read_as_a_person_would() {
        let read = Op::Read {
            s: 0,
            addr: Addr::Raw(0x4000_0000),
            kernel: false,
            cpu: 0,
        };
        let spawn = Op::Spawn;
        assert_eq!(describe(&read, Outcome::Err(1), 1), "Segv");
        assert_eq!(describe(&read, Outcome::Err(2), 1), "Efault");
        assert_eq!(describe(&spawn, Outcome::Err(1), 1), "Err(EPERM)");
        assert_eq!(describe(&spawn, Outcome::Err(12), 1), "Err(ENOMEM)");
        assert_eq!(describe(&spawn, Outcome::Err(99), 1), "Err(99)");
        assert_eq!(describe(&spawn, Outcome::Err(4095), 1), "Err(Internal)");
        assert_eq!(
            describe(&read, Outcome::Ok(0x1f80_0000), 1),
            "Ok(0x1f800000)"
        );
        assert_eq!(describe(&spawn, Outcome::Skipped, 1), "Skipped");
        // A spawn or fork shows the index of the space it made among the live ones.
        assert_eq!(describe(&spawn, Outcome::Ok(7), 3), "Ok(space 2)");
        assert_eq!(
            describe(&Op::Fork { s: 0 }, Outcome::Ok(0), 2),
            "Ok(space 1)"
        );
    }
}
