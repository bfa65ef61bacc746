//! The one interpreter: `run(steps)` applies every step to the `vmm` and to the reference
//! model, and after each step compares return values and the whole observable state.

use std::fmt;

use reference_model::armv7::{
    AccessKind, PageAttributes, Privilege, Registers, Translation, permissions, translate, walk,
};
use reference_model::model::{self, Model};
use vmm::addr::PhysAddr;
use vmm::fault::Mode;
use vmm::machine::{AllocationFailure, Machine};

use crate::machine::{Defect, SimMachine};
use vmm::space::{RegionKind, ShmId, SpaceId, VmSpace};
use vmm::{Layout, Vm};

use crate::concrete;
use crate::in_order::InOrder;
use crate::observed::agree;
pub use crate::observed::{Backing, Observed, Page, SpaceState, UNPAIRED};
use crate::op::{Op, Step, print_ops};
use crate::pairing::FramePairing;
use crate::protocol::{Maintenance, SpaceTables, check_asids, check_log};
use crate::shadow::{Changes, TableShadow, sweep_space};
pub use op_driver::Outcome;
use op_driver::{AccessOp, Accessor, ConcreteOp, Miss};
pub use op_lang::{Config, Sequence};

pub use crate::concrete::DEVICE_WINDOW;
pub use op_driver::POOL_FRAMES;

/// What the state comparison reports when the fast mode's shadow lacks a live space.
const NOT_SHADOWED: &str = "a live space has no table in the fast mode's shadow";

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
    fn boxed(
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

/// How much of the vmm's tables `run` reads after every step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckMode {
    /// The reference mode (replay, minimize, tests): after every step, every space's tables
    /// are read whole (every translation, INV-7 on every table).
    Full,
    /// The fuzzing mode: after every step, only the translations whose table words changed
    /// are read again ([`TableShadow`]); the whole state is still compared with the model,
    /// and INV-10 is checked as in full mode. The TLB (INV-8) and INV-6 are checked after
    /// every step that changed RAM, filled the TLB or changed the set of live spaces: after
    /// any other step the tables, the TLB, the spaces and so their answer are what they
    /// were. INV-7 and a full read of the tables run once,
    /// after the last step. A divergence is reported by re-running the steps in full mode,
    /// so both modes give the same report.
    Fast,
}

/// The vmm and the model side by side, with the frame bijection.
struct Pair {
    vm: Vm<SimMachine>,
    model: Model,
    /// Live spaces in creation order, each side's names.
    model_ids: Vec<u32>,
    vmm_ids: Vec<SpaceId>,
    frames: FramePairing,
    /// In fast mode, the translations kept current from each step's changes.
    shadow: Option<TableShadow>,
    /// The model's and the vmm's observed state, refilled at every comparison (their
    /// buffers are reused from step to step; taken out while a comparison fills them, so
    /// that no placeholder is allocated each step). The vmm's regions, breaks and table-page
    /// counts are filled in place beforehand, by `read_vmm_spaces`.
    seen: Option<Box<(Observed, Observed)>>,
    /// The present pages of the space being observed (page number, translation), reused.
    mapped: Vec<(u32, Translation)>,
    /// Fast mode: for each space (by position), what the model's and the vmm's state in `seen`
    /// was built from. The model's side keeps the whole space (regions, break, table pages,
    /// pages) while the space there has the same stamp (not touched since); the vmm's side
    /// keeps its page list while the shadow's pages are unchanged (its regions and counts
    /// are read again at every step: the vmm is not trusted to tell what it changed).
    model_keys: Vec<Option<(u32, (u64, u64))>>,
    vmm_keys: Vec<Option<(SpaceId, u64)>>,
    /// For each space (by position), whether either side's page list was rebuilt in the
    /// current comparison. Lists neither side rebuilt are the ones the last comparison found
    /// equal, so only rebuilt ones are compared again.
    pages_rebuilt: Vec<bool>,
    /// Whether `seen.0.kernel_table_pages` holds the model's count for the `vmalloc` list
    /// beside it (the count is a function of that list alone).
    kernel_pages_known: bool,
    /// The words the last INV-6 sweep read, ascending (empty until one passes): the walker is
    /// a function of the words it reads, so while none changes its answer is the same.
    inv6_reads: Vec<u32>,
    /// Whether the two lists below and the vmm's regions, breaks and table-page counts in
    /// `seen` were read from the vmm since it last ran an op (`read_vmm_spaces`).
    vmm_spaces_read: bool,
    /// The live spaces (in `vmm_ids` order) and their L1 tables, for the shadow; `None` for a
    /// live id the vmm does not know.
    roster: Vec<(SpaceId, Option<u32>)>,
    /// INV-10: every live space's translations as the last comparison read them.
    tables_before: std::collections::BTreeMap<SpaceId, SpaceTables>,
    /// INV-10: ASIDs released so far (by the exit of their space).
    released_asids: [bool; 256],
    /// INV-10: ASIDs released before and handed out again in the current step.
    handed_out: Vec<u8>,
    /// INV-10: the first violation the current step's comparison found.
    protocol_error: Option<String>,
    /// The live spaces' ASIDs and registers, for the TLB check.
    live_asids: Vec<(u8, Registers)>,
    /// Model frames dead when the frame pairs were last pruned.
    frame_deaths: u64,
}

/// Runs `steps` on a fresh vmm and model and compares after every step (full mode). Returns
/// the number of steps run, or the first divergence.
pub fn run(sequence: &Sequence) -> Result<usize, Box<Divergence>> {
    run_with_defect(sequence, None)
}

/// [`run`] in [`CheckMode::Fast`]: the same result, and on a divergence the same report
/// (found again in full mode), at a fraction of the cost of a sequence that passes.
pub fn run_fast(sequence: &Sequence) -> Result<usize, Box<Divergence>> {
    run_fast_with_defect(sequence, None)
}

/// [`run_fast`] on a machine with a deliberate defect.
pub fn run_fast_with_defect(
    sequence: &Sequence,
    defect: Option<Defect>,
) -> Result<usize, Box<Divergence>> {
    run_fast_with_hooks(sequence, defect, StepHooks::CHECKER)
}

/// [`run_fast_with_defect`] with the step's calls into the code under test made through
/// `hooks` (see [`StepHooks`]). The report of a divergence comes from a full-mode run with the
/// checker's own calls: the same code, compiled once more.
pub fn run_fast_with_hooks(
    sequence: &Sequence,
    defect: Option<Defect>,
    hooks: StepHooks,
) -> Result<usize, Box<Divergence>> {
    match run_observed(
        sequence,
        defect,
        CheckMode::Fast,
        false,
        hooks,
        &mut |_, _| {},
    ) {
        Ok(n) => Ok(n),
        Err(fast) => Err(run_with_defect(sequence, defect)
            .err()
            .unwrap_or_else(|| fast_only(fast))),
    }
}

/// Both modes, as replay and minimize judge a sequence: the reference (full) mode's result,
/// and when it passes, the fast mode's as well, so that a divergence only the fuzzing mode
/// sees is reported ([`DivergenceKind::FastOnly`]) instead of passing.
pub fn run_both_with_defect(
    sequence: &Sequence,
    defect: Option<Defect>,
) -> Result<usize, Box<Divergence>> {
    let n = run_with_defect(sequence, defect)?;
    run_observed(
        sequence,
        defect,
        CheckMode::Fast,
        false,
        StepHooks::CHECKER,
        &mut |_, _| {},
    )
    .map_err(fast_only)?;
    Ok(n)
}

/// A fast-mode divergence that full mode does not reproduce, as a divergence of its own.
fn fast_only(mut fast: Box<Divergence>) -> Box<Divergence> {
    *fast = Divergence {
        kind: DivergenceKind::FastOnly,
        model: format!(
            "full mode: model and vmm agree\n(fast mode: {:?} at step {})\n{}",
            fast.kind,
            fast.at + 1,
            fast.model
        ),
        steps: std::mem::take(&mut fast.steps),
        vmm: std::mem::take(&mut fast.vmm),
        ..*fast
    };
    fast
}

/// [`run`] on a machine with a deliberate defect (to show the checker catches it).
pub fn run_with_defect(
    sequence: &Sequence,
    defect: Option<Defect>,
) -> Result<usize, Box<Divergence>> {
    run_observed(
        sequence,
        defect,
        CheckMode::Full,
        false,
        StepHooks::CHECKER,
        &mut |_, _| {},
    )
}

/// A step's two calls into the code a fuzz target wants covered: resolving the symbolic op
/// against the model (which branch an input takes, an address inside a region or not, a live
/// space or not, is worth telling libFuzzer) and applying it to the vmm.
///
/// Why function pointers: the fuzz crate builds this crate without coverage counters
/// (`fuzz/sancov-scope.sh`: the comparisons, the shadow and the INV checks are the oracle, and
/// collecting their edges costs a large share of each execution) but instruments its own
/// code. The vmm's code is generic over the machine and compiled where it is instantiated, so
/// the `ops` target passes hooks defined in its own crate that call [`concrete::resolve`] and
/// [`apply_vmm`] (both `#[inline]`): those, `op_driver::apply` and the vmm code it reaches are
/// compiled, with counters, in the fuzz crate, while the interpreter stays here without them.
/// The smoke step of `cargo xtask test` checks that replaying `corpus/ops` still covers the
/// vmm's edges.
#[derive(Clone, Copy)]
pub struct StepHooks {
    /// Resolves a symbolic op against the model's state ([`concrete::resolve`]).
    pub resolve: fn(&Model, &[u32], &Op) -> ConcreteOp,
    /// Applies a concrete op to the vmm ([`apply_vmm`]).
    pub apply: fn(&mut Vm<SimMachine>, &mut Vec<SpaceId>, &ConcreteOp) -> Outcome,
}

impl StepHooks {
    /// The checker's own calls, compiled in this crate.
    pub const CHECKER: Self = Self {
        resolve: concrete::resolve,
        apply: apply_vmm,
    };
}

/// The vmm side of a step: `op_driver::apply` with the checker's accessor (accesses walked by
/// the reference walker over the real tables, through the TLB model).
#[inline]
pub fn apply_vmm(vm: &mut Vm<SimMachine>, ids: &mut Vec<SpaceId>, op: &ConcreteOp) -> Outcome {
    op_driver::apply(vm, ids, op, &mut HostAccessor)
}

/// Fast mode with its claim checked: after every step the shadow's translations must equal a
/// full read of the tables. `Err` names the first step where they differ (or a divergence).
/// No fallback to full mode: a divergence here was found by the fast mode itself.
#[doc(hidden)]
pub fn audit_fast_mode(
    sequence: &Sequence,
    defect: Option<Defect>,
) -> Result<usize, Box<Divergence>> {
    run_observed(
        sequence,
        defect,
        CheckMode::Fast,
        true,
        StepHooks::CHECKER,
        &mut |_, _| {},
    )
}

/// The vmm's layout for a sequence's world: the board's, with its pool size and ASID limit.
fn layout(config: Config) -> Layout {
    Layout {
        asids: config.asids,
        ..Layout::with_pool_frames(config.pool_frames)
    }
}

/// A vmm booted on `machine` in the world `config` describes. Every configuration the formats
/// accept boots (`Config::POOL_FRAMES` leaves room for the kernel's tables).
fn boot(machine: SimMachine, config: Config) -> Vm<SimMachine> {
    let mut vm = Vm::new(machine, layout(config)).expect("every valid configuration boots");
    vm.machine_mut().ttbr1 = vm.kernel().l1_table().as_u32();
    vm
}

/// The checked world's vmm: booted in `config`'s world on a machine with `defect` that records
/// the vmm's writes (not its reads), with the words its INV-6 walks read when they passed
/// (else none). The boot's own writes are in the log, so the first step checks them (INV-10)
/// with its own.
///
/// The sound machine in the default world is booted once per thread and copied, machine and
/// all, so its checks are made once, there: its boot log is cleared when it passes (every copy
/// would check the same log again; one that fails is kept, so the first step still reports
/// it), and the words of its INV-6 walks let the first step skip walks of unchanged words.
fn boot_recording(defect: Option<Defect>, config: Config) -> (Vm<SimMachine>, Vec<u32>) {
    fn fresh(defect: Option<Defect>, config: Config) -> Vm<SimMachine> {
        let mut machine = SimMachine::with_defect(defect);
        machine.host.set_recording(true);
        machine.host.set_skip_reads(true);
        boot(machine, config)
    }
    fn sound() -> (Vm<SimMachine>, Vec<u32>) {
        let mut vm = fresh(None, Config::DEFAULT);
        if check_log(vm.machine().host.log()).is_ok() {
            vm.machine_mut().host.clear_log();
        }
        let mut reads = Vec::new();
        // A failing walk leaves no words: the first step walks again and reports it.
        let _ = check_kernel_window(&vm, &mut reads);
        (vm, reads)
    }
    thread_local! {
        static SOUND: (Vm<SimMachine>, Vec<u32>) = sound();
    }
    match defect {
        None if config == Config::DEFAULT => SOUND.with(Clone::clone),
        _ => (fresh(defect, config), Vec::new()),
    }
}

/// The model of the same world, just booted: its start state from its own accounting.
fn new_model(config: Config) -> Model {
    Model::booted(model::Layout {
        pool_size: config.pool_frames * 0x1000,
        asids: config.asids,
        ..model::Layout::default()
    })
}

/// The machine's plan for a step that refuses its `refuse`-th allocation, if any.
fn refusal(refuse: Option<u64>) -> AllocationFailure {
    refuse.map_or(AllocationFailure::Never, AllocationFailure::Nth)
}

/// The model alone (for the throughput benchmark): `steps` resolved and applied to the
/// reference model only. Returns the concrete steps, which [`vmm_alone`] replays.
pub fn model_alone(steps: &[Step]) -> Vec<op_driver::Step> {
    let mut model = new_model(Config::DEFAULT);
    let mut ids = Vec::new();
    steps
        .iter()
        .map(|step| {
            model.refuse_allocation = step.refuse.map(u64::from);
            let op = concrete::resolve(&model, &ids, &step.op);
            concrete::apply_model(&mut model, &mut ids, &op);
            op_driver::Step {
                op,
                refuse: step.refuse.map(u16::from),
            }
        })
        .collect()
}

/// The vmm alone (for the throughput benchmark): concrete steps applied to a fresh vmm on the
/// simulated machine, nothing compared. Returns the number of steps that succeeded.
pub fn vmm_alone(steps: &[op_driver::Step]) -> usize {
    let mut vm = boot(SimMachine::default(), Config::DEFAULT);
    let mut ids = Vec::new();
    let mut ok = 0;
    for step in steps {
        vm.machine_mut()
            .host
            .set_allocation_failure(refusal(step.refuse.map(u64::from)));
        ok += usize::from(matches!(
            op_driver::apply(&mut vm, &mut ids, &step.op, &mut HostAccessor),
            Outcome::Ok(_)
        ));
    }
    ok
}

/// [`run`], also returning what every step returned (model and vmm agreed on it).
pub fn trace(sequence: &Sequence) -> Result<Vec<Outcome>, Box<Divergence>> {
    let mut outcomes = Vec::new();
    run_observed(
        sequence,
        None,
        CheckMode::Full,
        false,
        StepHooks::CHECKER,
        &mut |_, o| {
            outcomes.push(o);
        },
    )?;
    Ok(outcomes)
}

/// The interpreter behind every `run_*` function; `hooks` makes the step's calls into the code
/// under test (see [`StepHooks`]).
fn run_observed(
    sequence: &Sequence,
    defect: Option<Defect>,
    mode: CheckMode,
    audit: bool,
    hooks: StepHooks,
    on_step: &mut dyn FnMut(usize, Outcome),
) -> Result<usize, Box<Divergence>> {
    let steps = &sequence.steps;
    let mut p = Pair::new(defect, mode, sequence.config);
    let free = p.vm.frames().free_count();
    let diverge = |kind, at, model, vmm| Divergence::boxed(kind, sequence, at, model, vmm);
    let mut changes = Changes::default();
    let mut spaces_before: Vec<SpaceId> = Vec::new();
    for (at, step) in steps.iter().enumerate() {
        p.model.refuse_allocation = step.refuse.map(u64::from);
        p.vm.machine_mut()
            .host
            .set_allocation_failure(refusal(step.refuse.map(u64::from)));
        spaces_before.clear();
        spaces_before.extend_from_slice(&p.vmm_ids);
        let current_before = p.vm.machine().current.map(|(_, asid)| asid);
        let (model_out, vmm_out) = p.apply(&step.op, hooks);
        on_step(at, vmm_out);
        p.model.refuse_allocation = None;
        // The step's machine log and data writes are read in place and cleared after the
        // comparison (their buffers serve every step).
        let m = p.vm.machine_mut();
        m.host.set_allocation_failure(AllocationFailure::Never);
        let tlb_filled =
            std::mem::take(&mut m.tlb_fills) + std::mem::take(&mut m.speculative_fills) > 0;
        let machine_saw = m.violations.drain(..).next();
        if let Some(why) = machine_saw.map_or_else(|| check_log(m.host.log()).err(), Some) {
            return Err(diverge(
                DivergenceKind::HardwareProtocol,
                at,
                "the hardware protocol holds\n".into(),
                why,
            ));
        }
        changes.refill(m.host.log(), &m.data_writes);
        m.data_writes.clear();
        let unchanged = mode == CheckMode::Fast
            && changes.is_empty()
            && !tlb_filled
            && p.vmm_ids == spaces_before;
        if !unchanged {
            if let Err(why) = p.check_tables(mode == CheckMode::Full, &changes) {
                return Err(diverge(
                    DivergenceKind::Tables,
                    at,
                    "the tables are well formed\n".into(),
                    why,
                ));
            }
            if let Err(why) = p.check_tlb() {
                let expected = "every TLB entry matches the page tables\n".to_string();
                return Err(diverge(DivergenceKind::StaleTlb, at, expected, why));
            }
        }
        if model_out != vmm_out {
            return Err(diverge(
                DivergenceKind::ReturnValue,
                at,
                format!("{model_out:?}\n"),
                format!("{vmm_out:?}\n"),
            ));
        }
        p.read_vmm_spaces();
        if let Some(shadow) = &mut p.shadow {
            shadow.update(&mut p.vm, &p.roster, &changes);
            if audit {
                p.audit_shadow()
                    .map_err(|why| diverge(DivergenceKind::State, at, String::new(), why))?;
            }
        }
        p.compare_state(at, sequence)?;
        if let Err(why) = p.check_maintenance(current_before) {
            return Err(diverge(
                DivergenceKind::HardwareProtocol,
                at,
                "the hardware protocol holds\n".into(),
                why,
            ));
        }
        p.vm.machine_mut().host.clear_log();
        p.forget_freed_frames();
    }
    if mode == CheckMode::Fast && !steps.is_empty() {
        // The full sweep at the end: the tables read whole, INV-7 on every table. The last
        // step compared the shadow's pages with the model's; the shadow read back from the
        // tables themselves closes the loop (tables = shadow = model) without listing and
        // comparing every page a second time.
        let at = steps.len() - 1;
        p.audit_shadow()
            .map_err(|why| diverge(DivergenceKind::State, at, String::new(), why))?;
        p.shadow = None;
        if let Err(why) = p.check_tables(true, &Changes::default()) {
            return Err(diverge(
                DivergenceKind::Tables,
                at,
                "the tables are well formed\n".into(),
                why,
            ));
        }
    }
    // Teardown: every space exits and every segment is removed; then every frame is back.
    let ids = p.ids();
    p.model_ids.clear();
    p.vmm_ids.clear();
    for (m, v) in ids {
        let (a, b) = (p.model.exit(m), p.vm.exit(v));
        if a.is_err() || b.is_err() {
            return Err(diverge(
                DivergenceKind::ReturnValue,
                steps.len(),
                format!("exit: {a:?}\n"),
                format!("exit: {b:?}\n"),
            ));
        }
    }
    // The segments left (the model's; the vmm's were just compared equal to them).
    let segments: Vec<u32> = (0..p.model.segments.len() as u32)
        .filter(|&i| p.model.segments[i as usize].is_some())
        .collect();
    for i in segments {
        let _ = (p.model.shmctl(i, 0), p.vm.shmctl(ShmId(i), 0));
    }
    let allocations: Vec<u64> = p.model.vmalloc.keys().copied().collect();
    for a in allocations {
        let _ = (p.model.vfree(a as u32), p.vm.vfree(a as u32));
    }
    let (mf, vf) = (p.model.free, p.vm.frames().free_count());
    if mf != free || vf != free {
        let (mf, vf) = (
            format!("free frames after teardown: {mf} (start {free})\n"),
            format!("free frames after teardown: {vf} (start {free})\n"),
        );
        return Err(diverge(DivergenceKind::State, steps.len(), mf, vf));
    }
    Ok(steps.len())
}

/// [`run_fast`] (the fuzzing mode), but panics on a divergence, from a function of its own
/// per kind so that fuzzers group crashes by kind.
pub fn run_or_panic(sequence: &Sequence) {
    run_or_panic_with_defect(sequence, None);
}

/// [`run_or_panic`] on a machine with a deliberate defect (the fuzzing workflow's proof).
pub fn run_or_panic_with_defect(sequence: &Sequence, defect: Option<Defect>) {
    run_or_panic_with_hooks(sequence, defect, StepHooks::CHECKER);
}

/// [`run_or_panic_with_defect`] with the step's calls made through `hooks` (what the `ops`
/// fuzz target runs, see [`StepHooks`]).
pub fn run_or_panic_with_hooks(sequence: &Sequence, defect: Option<Defect>, hooks: StepHooks) {
    if let Err(d) = run_fast_with_hooks(sequence, defect, hooks) {
        match d.kind {
            DivergenceKind::ReturnValue => diverged_return_value(&d),
            DivergenceKind::State => diverged_state(&d),
            DivergenceKind::FrameBijection => diverged_frame_bijection(&d),
            DivergenceKind::StaleTlb => diverged_stale_tlb(&d),
            DivergenceKind::HardwareProtocol => diverged_hardware_protocol(&d),
            DivergenceKind::Tables => diverged_tables(&d),
            DivergenceKind::FastOnly => diverged_fast_only(&d),
        }
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

/// INV-6 over the whole kernel window: no address at or above 1 GiB (TTBR1's half with
/// TTBCR.N = 2) answers any PL0 access, and every kernel translation there is global. One
/// walk per block (a section, a page, or a MiB with no entry). `reads` receives the address
/// of every word the walks read, ascending: the walker is a function of those words, so
/// while none of them changes (`Changes::touch_any`) the answer is the same. On a failure it
/// is left empty, so the next check walks again.
fn check_kernel_window(vm: &Vm<SimMachine>, reads: &mut Vec<u32>) -> Result<(), String> {
    let regs = kernel_registers(vm);
    let host = &vm.machine().host;
    reads.clear();
    let mut read = |a| {
        reads.push(a);
        host.peek_word(PhysAddr::new(a))
    };
    let mut va = 0x4000_0000u64;
    let mut result = Ok(());
    while va < 1 << 32 {
        match translate(&mut read, regs, va as u32) {
            Ok(t) => {
                let rights = permissions(regs, &t);
                if rights.pl0 != 0 || t.not_global {
                    result = Err(format!(
                        "kernel address {:#x} maps as {:?} ({} B block at {:#x})\n",
                        va as u32,
                        PageAttributes::of(regs, &t),
                        t.block_size,
                        t.block_va
                    ));
                    break;
                }
                va = u64::from(t.block_va) + u64::from(t.block_size);
            }
            Err(f) if f.level == 1 => va = (va | 0xF_FFFF) + 1,
            Err(_) => va += 0x1000,
        }
    }
    if result.is_err() {
        reads.clear();
    } else {
        reads.sort_unstable();
        reads.dedup();
    }
    result
}

/// The registers with no user space current: no TTBR0, the kernel's TTBR1, N = 2, domain 0
/// client. With N = 2 every address at or above 1 GiB is walked from TTBR1, so these stand
/// for every space's context there.
fn kernel_registers(vm: &Vm<SimMachine>) -> Registers {
    Registers {
        ttbr0: 0,
        ttbr1: vm.kernel().l1_table().as_u32(),
        ttbcr_n: 2,
        dacr: 0b01,
    }
}

/// The registers of `space`'s context, its TTBR0 beside the `kernel` registers, and its ASID.
fn space_registers(space: &VmSpace, kernel: Registers) -> (Registers, u8) {
    let regs = Registers {
        ttbr0: space.mmu().l1_table().as_u32(),
        ..kernel
    };
    (regs, space.asid().value())
}

/// Accesses on the simulated machine: the TLB model, else a walk of the real table bytes
/// (filling the TLB); `op_driver::apply` hands faults to the vmm's handler and retries. The
/// walk uses the registers the vmm last set on the machine (TTBR0 and the ASID of the space
/// it made current), not its bookkeeping: a vmm that forgot to switch walks the wrong table.
struct HostAccessor;

impl Accessor<SimMachine> for HostAccessor {
    fn attempt(
        &mut self,
        vm: &mut Vm<SimMachine>,
        _space: SpaceId,
        va: u32,
        access: AccessOp,
        mode: Mode,
    ) -> Result<u32, Miss> {
        let (ttbr0, asid) = vm.machine().current.unwrap_or((0, 0));
        let regs = Registers {
            ttbr0,
            ..kernel_registers(vm)
        };
        let privilege = if mode == Mode::User {
            Privilege::Pl0
        } else {
            Privilege::Pl1
        };
        let kind = match access {
            AccessOp::Read => AccessKind::Read,
            AccessOp::Write(_) => AccessKind::Write,
            AccessOp::Exec => AccessKind::Execute,
        };
        let m = vm.machine_mut();
        let result = match m.tlb.access(regs, va, asid, kind, privilege) {
            Some(hit) => hit,
            None => {
                let walked = walk(
                    |a| m.host.peek_word(PhysAddr::new(a)),
                    regs,
                    va,
                    kind,
                    privilege,
                );
                if let Ok(t) = walked {
                    m.tlb.fill(t, asid);
                    m.tlb_fills += 1;
                }
                walked.map(|t| t.pa)
            }
        };
        let pa = PhysAddr::new(result.map_err(|_| Miss::Fault(va))?);
        Ok(match access {
            AccessOp::Write(value) => {
                // Data goes straight to RAM: the machine log then holds only the vmm's own
                // (descriptor) writes, which the protocol check reads.
                m.host.write_bytes(pa, &value.to_le_bytes());
                m.data_writes.push(pa);
                0
            }
            _ => m.read_word(pa),
        })
    }
}

/// A translation as a TLB entry caches it: the whole block, not the accessed byte.
fn block(t: &Translation) -> Translation {
    Translation {
        pa: t.block_pa,
        ..*t
    }
}

impl Pair {
    /// A freshly booted vmm (on a machine with `defect`) and model, nothing compared yet.
    fn new(defect: Option<Defect>, mode: CheckMode, config: Config) -> Self {
        let (vm, inv6_reads) = boot_recording(defect, config);
        Self {
            vm,
            model: new_model(config),
            model_ids: Vec::new(),
            vmm_ids: Vec::new(),
            frames: FramePairing::default(),
            shadow: (mode == CheckMode::Fast).then(TableShadow::default),
            seen: None,
            mapped: Vec::new(),
            model_keys: Vec::new(),
            vmm_keys: Vec::new(),
            pages_rebuilt: Vec::new(),
            kernel_pages_known: false,
            inv6_reads,
            vmm_spaces_read: false,
            roster: Vec::new(),
            tables_before: std::collections::BTreeMap::new(),
            released_asids: [false; 256],
            handed_out: Vec::new(),
            protocol_error: None,
            live_asids: Vec::new(),
            frame_deaths: 0,
        }
    }

    /// The live spaces, model and vmm names side by side.
    fn ids(&self) -> Vec<(u32, SpaceId)> {
        self.model_ids
            .iter()
            .copied()
            .zip(self.vmm_ids.iter().copied())
            .collect()
    }

    /// (model, vmm) outcomes: the op resolved against the model, then applied to each side,
    /// the resolution and the vmm's side through `hooks`.
    fn apply(&mut self, op: &Op, hooks: StepHooks) -> (Outcome, Outcome) {
        let op = (hooks.resolve)(&self.model, &self.model_ids, op);
        let m = concrete::apply_model(&mut self.model, &mut self.model_ids, &op);
        let v = (hooks.apply)(&mut self.vm, &mut self.vmm_ids, &op);
        self.vmm_spaces_read = false;
        (m, v)
    }

    /// Reads every live space's bookkeeping from the vmm in one walk of its spaces, unless
    /// done since its last op: the L1 table (the shadow's roster), the ASID and registers
    /// (the TLB check), and for the spaces both sides have, the regions, break and table-page
    /// count (the vmm's side of the state comparison). The TLB check, the shadow and the
    /// comparison start here, so a step walks the vmm's spaces once for them (the page lists,
    /// segments and frames are read where they are compared). Only `apply` runs the vmm during
    /// a run, and it marks what was read as stale.
    fn read_vmm_spaces(&mut self) {
        if self.vmm_spaces_read {
            return;
        }
        self.vmm_spaces_read = true;
        let kind = |k: RegionKind| match k {
            RegionKind::Anon => Backing::Anon,
            RegionKind::Heap => Backing::Heap,
            RegionKind::Shm { .. } => Backing::Shm,
            RegionKind::Device { .. } => Backing::Device,
        };
        let kernel = kernel_registers(&self.vm);
        let out = &mut self.seen.get_or_insert_with(Box::default).1;
        out.spaces
            .resize_with(self.vmm_ids.len(), SpaceState::default);
        let compared = self.model_ids.len().min(self.vmm_ids.len());
        self.roster.clear();
        self.live_asids.clear();
        let mut spaces = InOrder::new(self.vm.spaces(), |v| self.vm.space(v));
        for (i, &v) in self.vmm_ids.iter().enumerate() {
            let Some(sp) = spaces.get(v) else {
                self.roster.push((v, None));
                continue;
            };
            self.roster.push((v, Some(sp.mmu().l1_table().as_u32())));
            let (regs, asid) = space_registers(sp, kernel);
            self.live_asids.push((asid, regs));
            if let Some(space) = out.spaces[..compared].get_mut(i) {
                space.regions.clear();
                space.regions.extend(sp.regions().iter().map(|r| {
                    (
                        u64::from(r.range.start_addr().as_u32()),
                        u64::from(r.range.count()) * 4096,
                        r.prot.bits(),
                        r.shared,
                        kind(r.kind),
                    )
                }));
                (space.brk, space.table_pages, space.asid) =
                    (sp.brk(), sp.mmu().table_pages(), sp.asid().value());
            }
        }
    }

    /// INV-6 and (when `whole`) INV-7: no kernel address answers a PL0 access, and every
    /// space's tables agree with its bookkeeping. The INV-6 sweep runs again only when a word
    /// it last read may have changed in the step (`changes`), which gives the answer a sweep
    /// would.
    fn check_tables(&mut self, whole: bool, changes: &Changes) -> Result<(), String> {
        if whole {
            for (m, v) in self.ids() {
                self.vm
                    .check_tables(v)
                    .map_err(|e| format!("space {m}: {e}\n"))?;
            }
        }
        if !self.inv6_reads.is_empty() && !changes.touch_any(&self.inv6_reads) {
            return Ok(());
        }
        check_kernel_window(&self.vm, &mut self.inv6_reads)
    }

    /// INV-8: every TLB entry is what a walk of the current tables gives, for a live ASID.
    fn check_tlb(&mut self) -> Result<(), String> {
        self.read_vmm_spaces();
        let kernel = kernel_registers(&self.vm);
        let live = &self.live_asids;
        let m = self.vm.machine_mut();
        for e in m.tlb.entries() {
            let regs = match e.asid {
                Some(a) => live.iter().find(|(x, _)| *x == a).map(|(_, r)| *r),
                // Global (kernel) entries: the kernel's TTBR1 table translates them.
                None => Some(kernel),
            };
            let Some(regs) = regs else {
                return Err(format!("TLB entry {e:?} belongs to no live space\n"));
            };
            let now = translate(
                &mut |a| m.host.peek_word(PhysAddr::new(a)),
                regs,
                e.translation.block_va,
            );
            if now.as_ref().map(block) != Ok(block(&e.translation)) {
                return Err(format!(
                    "stale TLB entry {:#?}\nthe tables now give {:#?}\n",
                    e, now
                ));
            }
        }
        Ok(())
    }

    /// The whole observable state of both sides, compared.
    fn compare_state(&mut self, at: usize, sequence: &Sequence) -> Result<(), Box<Divergence>> {
        let diverge = |kind, model, vmm| Divergence::boxed(kind, sequence, at, model, vmm);
        self.read_vmm_spaces();
        let mut seen = self.seen.take().unwrap_or_default();
        let (model_state, vmm_state) = &mut *seen;
        self.pages_rebuilt.clear();
        self.pages_rebuilt
            .resize(self.model_ids.len().max(self.vmm_ids.len()), false);
        self.model_state(model_state);
        let filled = self.vmm_state(vmm_state);
        let result = match filled {
            Err((kind, why)) => Err(diverge(kind, String::new(), why)),
            Ok(()) if !agree(model_state, vmm_state, &self.pages_rebuilt) => Err(diverge(
                DivergenceKind::State,
                format!("{model_state:#?}\n"),
                format!("{vmm_state:#?}\n"),
            )),
            Ok(()) => Ok(()),
        };
        self.seen = Some(seen);
        result
    }

    /// The fast mode's claim: the shadow equals a full read of every space's tables (by the
    /// reference walker, as the shadow reads them).
    fn audit_shadow(&mut self) -> Result<(), String> {
        if self.shadow.is_none() {
            return Ok(());
        }
        self.read_vmm_spaces();
        let Some(shadow) = &self.shadow else {
            return Ok(());
        };
        for (at, &(v, l1)) in self.roster.iter().enumerate() {
            let read = l1.map(|l1| {
                let mut all = Vec::new();
                sweep_space(&self.vm.machine().host, l1, &mut all);
                all
            });
            let same = match (shadow.pages(at, v), &read) {
                (Some(kept), Some(read)) => kept.eq(read.iter().copied()),
                (None, None) => true,
                _ => false,
            };
            if !same {
                let kept: Option<Vec<_>> = shadow.pages(at, v).map(Iterator::collect);
                return Err(format!(
                    "fast-mode shadow of {v:?} differs from the tables:\nshadow {kept:#?}\ntables {read:#?}\n"
                ));
            }
        }
        Ok(())
    }

    /// The model's observable state, into `out` (its buffers reused; in fast mode a space's
    /// whole entry, regions, break, table pages and pages, is left as it is while the space's
    /// stamp is unchanged).
    fn model_state(&mut self, out: &mut Observed) {
        let kind = |k: model::Kind| match k {
            model::Kind::Anon => Backing::Anon,
            model::Kind::Heap => Backing::Heap,
            model::Kind::Shm { .. } => Backing::Shm,
            model::Kind::Device { .. } => Backing::Device,
        };
        out.free_frames = self.model.free;
        out.ref_counts.clear();
        out.ref_counts.extend(
            self.model
                .frames
                .iter()
                .filter(|(_, f)| f.refs > 0)
                .map(|(&id, f)| (id, f.refs)),
        );
        out.spaces
            .resize_with(self.model_ids.len(), SpaceState::default);
        self.model_keys.truncate(self.model_ids.len());
        let spaces = &self.model.spaces;
        let mut lookups = InOrder::new(spaces.iter().map(|(&m, s)| (m, s)), |m| spaces.get(&m));
        for (i, (space, &m)) in out.spaces.iter_mut().zip(&self.model_ids).enumerate() {
            let s = lookups
                .get(m)
                .expect("every live model id is a model space");
            // The space's stamp covers its regions, break, pages and sections (the table
            // page count is a function of those).
            let key = self.shadow.is_some().then_some((m, s.stamp()));
            if key.is_some() && self.model_keys.get(i) == Some(&key) {
                continue;
            }
            self.model_keys
                .resize(self.model_keys.len().max(i + 1), None);
            self.model_keys[i] = key;
            space.regions.clear();
            space.regions.extend(
                s.regions
                    .iter()
                    .map(|r| (r.start, r.len, r.prot, r.shared, kind(r.kind))),
            );
            space.brk = s.brk;
            space.asid = s.asid;
            space.table_pages = self.model.table_pages(m).unwrap_or(0);
            self.pages_rebuilt[i] = true;
            space.pages.clear();
            space.pages.extend(s.ptes.iter().map(|(&a, e)| Page {
                addr: a as u32,
                frame: e.frame,
                attributes: e.attributes(),
            }));
        }
        out.segments.clear();
        out.segments
            .extend(self.model.segments.iter().enumerate().filter_map(|(i, s)| {
                s.as_ref().map(|s| {
                    (
                        i as u32,
                        s.key,
                        s.size,
                        s.frames.len(),
                        s.attached,
                        s.removed,
                    )
                })
            }));
        let vmalloc = self
            .model
            .vmalloc
            .iter()
            .map(|(&a, f)| (a as u32, f.len() as u32));
        if !(self.kernel_pages_known && vmalloc.clone().eq(out.vmalloc.iter().copied())) {
            out.vmalloc.clear();
            out.vmalloc.extend(vmalloc);
            out.kernel_table_pages = self.model.kernel_table_pages();
            self.kernel_pages_known = true;
        }
    }

    /// INV-10 after a step's comparison: what the comparison found (rules (d) and (e) for the
    /// spaces still live), the same for the spaces that exited in the step, and the ASID
    /// lifecycle (rule (f)); `current_before` is the ASID current when the step began.
    fn check_maintenance(&mut self, current_before: Option<u8>) -> Result<(), String> {
        let handed_out = std::mem::take(&mut self.handed_out);
        if let Some(why) = self.protocol_error.take() {
            return Err(why);
        }
        let roster = &self.roster;
        let gone: Vec<SpaceId> = self
            .tables_before
            .keys()
            .filter(|&&id| !roster.iter().any(|&(r, l1)| r == id && l1.is_some()))
            .copied()
            .collect();
        let log = self.vm.machine().host.log();
        let mut exited = Vec::new();
        if !gone.is_empty() {
            let index = Maintenance::new(log);
            for id in gone {
                if let Some(before) = self.tables_before.remove(&id) {
                    index.check_space(&before, None)?;
                    exited.push(before.asid);
                }
            }
        }
        check_asids(log, &exited, &handed_out, current_before)?;
        for asid in exited {
            self.released_asids[usize::from(asid)] = true;
        }
        Ok(())
    }

    /// Frames the model freed may come back from the vmm as new ones: after a step in which
    /// a model frame died, the pairs of dead frames are dropped. (Not before the step's
    /// comparison: a physical frame still mapped after its model frame died in the step must
    /// keep that name, so that the comparison sees it.)
    fn forget_freed_frames(&mut self) {
        let deaths = self.model.frames_died();
        if deaths != self.frame_deaths {
            self.frame_deaths = deaths;
            let live = &self.model.frames;
            self.frames.forget_dead(|id| live.contains_key(&id));
        }
    }

    /// The vmm's state with physical frames named by model frame ids (learning new pairs from
    /// the model's page at the same address); an inconsistent pairing is an error. Every page
    /// is read from the raw table words by the reference walker (the fast mode's shadow is
    /// kept by the same walker), under the space's own registers.
    fn vmm_state(&mut self, out: &mut Observed) -> Result<(), (DivergenceKind, String)> {
        let state = |why: &str| (DivergenceKind::State, why.to_string());
        // The regions, breaks and table-page counts are in `out` already (read_vmm_spaces),
        // for the spaces both sides have; each of those must be one the vmm knows.
        let compared = self.model_ids.len().min(self.vmm_ids.len());
        if self.roster[..compared].iter().any(|&(_, l1)| l1.is_none()) {
            return Err(state("a live space is missing"));
        }
        let kernel = kernel_registers(&self.vm);
        let (pool_base, pool_size) = (self.model.layout.pool_base, self.model.layout.pool_size);
        let mut mapped = std::mem::take(&mut self.mapped);
        let mut maintenance: Option<Maintenance> = None;
        self.vmm_keys.truncate(self.vmm_ids.len());
        // Each space's pages, rebuilt when its translations may have changed.
        for (i, (&m, &v)) in self.model_ids.iter().zip(&self.vmm_ids).enumerate() {
            let key = match &self.shadow {
                Some(shadow) => Some((v, shadow.stamp(i, v).ok_or_else(|| state(NOT_SHADOWED))?)),
                None => None,
            };
            if key.is_some() && self.vmm_keys.get(i) == Some(&key) {
                continue;
            }
            self.vmm_keys.resize(self.vmm_keys.len().max(i + 1), None);
            self.vmm_keys[i] = key;
            self.pages_rebuilt[i] = true;
            let l1 = self.roster[i].1.unwrap_or(0);
            mapped.clear();
            match &self.shadow {
                Some(shadow) => {
                    mapped.extend(shadow.pages(i, v).ok_or_else(|| state(NOT_SHADOWED))?)
                }
                None => sweep_space(&self.vm.machine().host, l1, &mut mapped),
            }
            let regs = Registers {
                ttbr0: l1,
                ..kernel
            };
            // INV-10 (d), (e): what changed since the last comparison was invalidated, with
            // the ASID the model gave the space (the comparison checks the vmm's agrees).
            let asid = self.model.spaces[&m].asid;
            match self.tables_before.get_mut(&v) {
                Some(before) => {
                    if self.protocol_error.is_none() {
                        let log = self.vm.machine().host.log();
                        let index = maintenance.get_or_insert_with(|| Maintenance::new(log));
                        self.protocol_error = index.check_space(before, Some(&mapped)).err();
                    }
                    (before.asid, before.regs) = (asid, regs);
                    before.pages.clear();
                    before.pages.extend_from_slice(&mapped);
                }
                None => {
                    if self.released_asids[usize::from(asid)] {
                        self.handed_out.push(asid);
                    }
                    self.tables_before.insert(
                        v,
                        SpaceTables {
                            asid,
                            regs,
                            pages: mapped.clone(),
                        },
                    );
                }
            }
            let space = &mut out.spaces[i];
            space.pages.clear();
            for &(number, t) in &mapped {
                let addr = number << 12;
                let pa = t.pa;
                let frame = if pa.wrapping_sub(pool_base) >= pool_size {
                    // Memory outside the pool (device memory) is compared by its exact address.
                    model::DEVICE_FRAME | u64::from(pa)
                } else {
                    match self.frames.model_of(pa) {
                        Some(id) => id,
                        None => {
                            // Learn the pair from the model's page at this address, if it is new.
                            // A pool frame where the model maps device memory (or nothing) pairs
                            // with nothing: it stays unnamed and the lists differ.
                            let id = self.model.spaces[&m]
                                .ptes
                                .get(&u64::from(addr))
                                .map_or(UNPAIRED, |e| e.frame);
                            if id == UNPAIRED || model::is_device(id) {
                                UNPAIRED
                            } else {
                                self.frames
                                    .learn(pa, id)
                                    .map_err(|why| (DivergenceKind::FrameBijection, why))?
                            }
                        }
                    }
                };
                space.pages.push(Page {
                    addr,
                    frame,
                    attributes: PageAttributes::of(regs, &t),
                });
            }
        }
        self.mapped = mapped;
        out.free_frames = self.vm.frames().free_count();
        // INV-3: the counts of the paired frames (a frame with references is mapped, so it
        // is paired once its pages were compared).
        out.ref_counts.clear();
        let pool = self.vm.frames();
        out.ref_counts
            .extend(self.frames.pairs().filter_map(|(id, pa)| {
                let count = pool.ref_count(vmm::addr::PhysFrame::containing(PhysAddr::new(pa)));
                count.ok().filter(|&c| c > 0).map(|c| (id, c))
            }));
        out.segments.clear();
        out.segments.extend(
            self.vm
                .shm()
                .iter()
                .map(|(id, s)| (id.0, s.key, s.size, s.frames.len(), s.attached, s.removed)),
        );
        out.kernel_table_pages = self.vm.kernel().table_pages();
        out.vmalloc.clear();
        out.vmalloc
            .extend(self.vm.vmalloc_allocations().map(|(a, n)| (a.as_u32(), n)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{CheckMode, Config, DivergenceKind, Pair, Sequence, StepHooks};
    use crate::op::parse_ops;
    use crate::shadow::Changes;
    use vmm::addr::PhysAddr;

    /// A pool frame mapped where the model maps device memory is a divergence at once: the
    /// device frame is never paired with a physical one, so the page stays unnamed and the page
    /// lists differ (a learned pair would have made them agree).
    #[test]
    fn a_pool_frame_at_a_device_page_is_a_state_divergence() {
        let steps = Sequence::new(
            parse_ops("spawn\nmapdev s=0 addr=0x3005000 page=1 len=0x1000 prot=0x3\n")
                .expect("the scenario parses"),
        );
        let mut p = Pair::new(None, CheckMode::Full, Config::DEFAULT);
        for step in &steps.steps {
            p.apply(&step.op, StepHooks::CHECKER);
        }
        assert!(p.compare_state(1, &steps).is_ok(), "the sound vmm agrees");
        // Point the device page's small-page descriptor at a pool frame (the space's own L1
        // table), as a vmm bug would.
        let l1 =
            p.vm.space(p.vmm_ids[0])
                .expect("live")
                .mmu()
                .l1_table()
                .as_u32();
        let host = &mut p.vm.machine_mut().host;
        let l1_entry = host
            .peek_word(PhysAddr::new(l1 + 4 * (0x300_5000 >> 20)))
            .expect("in RAM");
        assert_eq!(l1_entry & 0b11, 0b01, "a page table maps the device page");
        let entry = PhysAddr::new((l1_entry & !0x3FF) + 4 * ((0x300_5000 >> 12) & 0xFF));
        let old = host.peek_word(entry).expect("in RAM");
        assert!(host.write_bytes(entry, &((l1 & !0xFFF) | (old & 0xFFF)).to_le_bytes()));
        let divergence = p
            .compare_state(1, &steps)
            .expect_err("a pool frame at a device page");
        assert_eq!(divergence.kind, DivergenceKind::State);
    }

    /// INV-6: the first check after boot reuses the boot's sweep, yet a kernel L1 entry
    /// rewritten to let PL0 in is caught at the next check that sees the word change; a
    /// vmalloc page open to PL0 likewise (the sweep covers every page of the window).
    #[test]
    fn a_kernel_mapping_open_to_pl0_breaks_inv6_after_the_boot_sweep() {
        let mut p = Pair::new(None, CheckMode::Fast, Config::DEFAULT);
        assert!(!p.inv6_reads.is_empty(), "the sound boot's sweep is reused");
        let none = Changes::default();
        assert_eq!(p.check_tables(false, &none), Ok(()));
        // A section at 0x7FF0_0000, the window's last MiB, with AP = 0b11 (read/write at PL0
        // and PL1).
        let entry = PhysAddr::new(p.vm.kernel().l1_table().as_u32() + 4 * (0x7FF0_0000 >> 20));
        let host = &mut p.vm.machine_mut().host;
        let section = 0x7FF0_0000u32 | (0b11 << 10) | 0b10;
        assert!(host.write_bytes(entry, &section.to_le_bytes()));
        let mut changed = Changes::default();
        changed.refill(&[], &[entry]);
        let why = p
            .check_tables(false, &changed)
            .expect_err("PL0 reaches the kernel");
        assert!(why.contains("0x7ff00000 maps as PL0 rw"), "{why}");
        // A vmalloc page with AP = 0b11.
        let mut p = Pair::new(None, CheckMode::Full, Config::DEFAULT);
        let va = p.vm.vmalloc(0x1000).expect("a page").as_u32();
        let l1 = p.vm.kernel().l1_table().as_u32() + 4 * (va >> 20);
        let host = &mut p.vm.machine_mut().host;
        let table = host.peek_word(PhysAddr::new(l1)).expect("in RAM") & !0x3FF;
        let pte = PhysAddr::new(table + 4 * ((va >> 12) & 0xFF));
        let old = host.peek_word(pte).expect("in RAM");
        assert_ne!(old, 0, "vmalloc maps the page");
        assert!(host.write_bytes(pte, &(old | (0b11 << 4)).to_le_bytes()));
        assert_eq!(
            p.check_tables(true, &none),
            Ok(()),
            "no word the sweep read changed, as far as the step's changes tell"
        );
        let mut changed = Changes::default();
        changed.refill(p.vm.machine().host.log(), &[pte]);
        let why = p
            .check_tables(true, &changed)
            .expect_err("PL0 reaches vmalloc");
        assert!(why.contains(&format!("{va:#x} maps as PL0 r")), "{why}");
    }

    /// A divergence only the fast mode sees is reported as one (before, the fuzzing path
    /// re-ran the steps in full mode and passed). Here the fast run's vmm is driven by hooks
    /// that apply every op twice, as a fuzz target's hooks compiled wrong would; the full
    /// run uses the checker's own calls and passes.
    #[test]
    fn a_fast_only_divergence_is_reported_not_passed() {
        let steps = Sequence::new(
            parse_ops("spawn\nmmap s=0 addr=0x0 len=0x1000 prot=0x3 flags=0x22\n")
                .expect("the scenario parses"),
        );
        let twice = StepHooks {
            resolve: StepHooks::CHECKER.resolve,
            apply: |vm, ids, op| {
                let _ = super::apply_vmm(vm, ids, op);
                super::apply_vmm(vm, ids, op)
            },
        };
        assert_eq!(super::run(&steps).map_err(|d| d.to_string()), Ok(2));
        let d = super::run_fast_with_hooks(&steps, None, twice).expect_err("fast mode diverges");
        assert_eq!(d.kind, DivergenceKind::FastOnly, "{d}");
        assert!(d.model.contains("full mode: model and vmm agree"), "{d}");
        assert_eq!(
            super::run_both_with_defect(&steps, None).map_err(|d| d.to_string()),
            Ok(2)
        );
    }
}
