//! What a run reports: the divergence kinds, the report a person reads (numbered `.ops`
//! listing, the step marked, a model-vs-vmm diff), and the panic sites fuzzers group by.

use std::fmt;

use crate::op::{Step, print_ops};
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
        write!(
            f,
            "{}",
            pretty_assertions::StrComparison::new(&self.model, &self.vmm)
        )
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
