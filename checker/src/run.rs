//! The one interpreter: `run(sequence)` boots the vmm and the model in the sequence's world,
//! applies every step to both and after each checks the hardware protocol (INV-10,
//! `protocol.rs`), the tables and the TLB (`invariants.rs`), the return values and the whole
//! observable state (`compare.rs`); a divergence is reported (`report.rs`). The fast mode
//! keeps a shadow of the tables (`shadow.rs`) instead of reading them whole.

use reference_model::model::Model;
use vmm::Vm;
use vmm::machine::AllocationFailure;
use vmm::space::{ShmId, SpaceId};

use crate::concrete;
use crate::machine::{Defect, SimMachine};
pub use crate::observed::{Backing, Observed, Page, SpaceState, UNPAIRED};
use crate::op::{Op, Step};
use crate::pair::{HostAccessor, Pair, boot, new_model};
use crate::protocol::check_log;
use crate::report::panic_by_kind;
pub use crate::report::{Divergence, DivergenceKind};
use crate::shadow::Changes;
use op_driver::ConcreteOp;
pub use op_driver::Outcome;
pub use op_lang::{Config, Sequence};

pub use crate::concrete::DEVICE_WINDOW;
pub use op_driver::POOL_FRAMES;

/// How much of the vmm's tables `run` reads after every step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckMode {
    /// The reference mode (replay, minimize, tests): after every step, every space's tables
    /// are read whole (every translation, INV-7 on every table).
    Full,
    /// The fuzzing mode: after every step, only the translations whose table words changed
    /// are read again ([`crate::shadow::TableShadow`]); the whole state is still compared with
    /// the model, and INV-10 is checked as in full mode. The TLB (INV-8) is checked after
    /// every step that changed RAM, filled the TLB or changed the set of live spaces (after
    /// any other step the tables, the TLB and the spaces, and so the answer, are what they
    /// were); INV-6 is swept again, in both modes, only when a word it read changed. The vmm's
    /// own table check (INV-7) and a full read of the tables run once, after the last step.
    /// A divergence is run again in full mode, which reports it; a divergence full mode does
    /// not reproduce is reported as [`DivergenceKind::FastOnly`].
    Fast,
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
    fast_mode_agrees(sequence, defect, n)
}

/// After full mode passed `n` steps: fast mode passes them too, or its divergence is
/// [`DivergenceKind::FastOnly`].
fn fast_mode_agrees(
    sequence: &Sequence,
    defect: Option<Defect>,
    n: usize,
) -> Result<usize, Box<Divergence>> {
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

/// Where a hand-written sequence relies on what only the fuzzer's decoding may: an `s=`, region
/// (`rN`) or vmalloc (`vmN`) index past the live ones (which the decoding reduces modulo the
/// count), or a step that would not run (`Skipped`). Returns the step (0-based) and why.
/// Resolution reads the model alone, so the model alone answers.
pub fn strictness(sequence: &Sequence) -> Result<(), (usize, String)> {
    resolve_steps(sequence).1.map_or(Ok(()), Err)
}

/// The sequence as its runs resolve it: space, region and vmalloc indices reduced modulo the
/// live counts, addresses that name no region as the address they resolve to, and the steps
/// that do not run left out. It runs exactly as the original does, and passes [`strictness`]:
/// what the minimizer writes.
#[must_use]
pub fn canonical(sequence: &Sequence) -> Sequence {
    resolve_steps(sequence).0
}

/// One walk of the model over `sequence`, as a run resolves it: the canonical form, and the
/// first step that breaks the strict rules of a hand-written file, with why.
fn resolve_steps(sequence: &Sequence) -> (Sequence, Option<(usize, String)>) {
    let mut model = new_model(sequence.config);
    let mut ids = Vec::new();
    let mut steps = Vec::with_capacity(sequence.steps.len());
    let mut first_problem = None;
    for (at, step) in sequence.steps.iter().enumerate() {
        if let Err(why) = concrete::canonical_op(&model, &ids, &step.op, true) {
            first_problem.get_or_insert((at, why));
        }
        // A step naming no live space resolves to a skip: it changes nothing.
        let Ok(op) = concrete::canonical_op(&model, &ids, &step.op, false) else {
            continue;
        };
        model.refuse_allocation = step.refuse.map(u64::from);
        let resolved = concrete::resolve(&model, &ids, &op);
        let outcome = concrete::apply_model(&mut model, &mut ids, &resolved);
        model.refuse_allocation = None;
        if outcome == Outcome::Skipped {
            first_problem.get_or_insert((at, skipped_why(&resolved)));
        } else {
            steps.push(Step {
                op,
                refuse: step.refuse,
            });
        }
    }
    let canonical = Sequence {
        config: sequence.config,
        steps,
    };
    (canonical, first_problem)
}

/// Why a resolved step does not run.
fn skipped_why(op: &op_driver::ConcreteOp) -> String {
    match op {
        op_driver::ConcreteOp::Skip => "the step would not run (Skipped): it names no live \
            space, a kernel address outside the vmalloc window in kernel mode, or a device \
            range past RAM"
            .into(),
        _ => "the step would not run (Skipped)".into(),
    }
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

/// What one step returned on each side, and how many spaces were live after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepRecord {
    /// The model's result.
    pub model: Outcome,
    /// The vmm's result.
    pub vmm: Outcome,
    /// Live spaces after the step (a successful spawn or fork made the last one).
    pub live_spaces: usize,
}

/// [`run_both_with_defect`] with every step's results: the rows come from the run that made
/// the verdict (the reference mode's, which reports any divergence it finds), up to and
/// including the step that diverged.
pub fn run_traced(
    sequence: &Sequence,
    defect: Option<Defect>,
) -> (Vec<StepRecord>, Result<usize, Box<Divergence>>) {
    let mut rows = Vec::new();
    let full = run_observed(
        sequence,
        defect,
        CheckMode::Full,
        false,
        StepHooks::CHECKER,
        &mut |_, r| rows.push(*r),
    );
    let result = full.and_then(|n| fast_mode_agrees(sequence, defect, n));
    (rows, result)
}

/// The interpreter behind every `run_*` function; `hooks` makes the step's calls into the code
/// under test (see [`StepHooks`]).
fn run_observed(
    sequence: &Sequence,
    defect: Option<Defect>,
    mode: CheckMode,
    audit: bool,
    hooks: StepHooks,
    on_step: &mut dyn FnMut(usize, &StepRecord),
) -> Result<usize, Box<Divergence>> {
    let steps = &sequence.steps;
    let mut p = Pair::new(defect, mode, sequence.config);
    let free = p.vm.frames().free_count();
    let diverge = |kind, at, model, vmm| Divergence::boxed(kind, sequence, at, model, vmm);
    let mut changes = Changes::default();
    let mut spaces_before: Vec<SpaceId> = Vec::new();
    let mut current_before: Vec<Option<u8>> = Vec::new();
    for (at, step) in steps.iter().enumerate() {
        p.model.refuse_allocation = step.refuse.map(u64::from);
        p.vm.machine_mut()
            .host
            .set_allocation_failure(refusal(step.refuse.map(u64::from)));
        spaces_before.clear();
        spaces_before.extend_from_slice(&p.vmm_ids);
        current_before.clear();
        current_before.extend(
            p.vm.machine()
                .current
                .iter()
                .map(|c| c.map(|(_, asid)| asid)),
        );
        let (model_out, vmm_out) = p.apply(&step.op, hooks);
        on_step(
            at,
            &StepRecord {
                model: model_out,
                vmm: vmm_out,
                live_spaces: p.vmm_ids.len(),
            },
        );
        p.model.refuse_allocation = None;
        // The step's machine log and data writes are read in place and cleared after the
        // comparison (their buffers serve every step).
        let m = p.vm.machine_mut();
        m.host.set_allocation_failure(AllocationFailure::Never);
        let tlb_filled = std::mem::take(&mut m.tlb_fills) > 0;
        let machine_saw = m.violations.drain(..).next();
        let cpus = m.cpus();
        if let Some(why) = machine_saw.map_or_else(|| check_log(m.host.log(), cpus).err(), Some) {
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
        if !unchanged && let Err(why) = p.check_table_links() {
            return Err(diverge(
                DivergenceKind::Tables,
                at,
                "the tables are well formed\n".into(),
                why,
            ));
        }
        p.compare_state(at, sequence)?;
        if let Err(why) = p.check_maintenance(&current_before) {
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
        panic_by_kind(&d);
    }
}

#[cfg(test)]
mod tests {
    use super::{CheckMode, Config, DivergenceKind, Pair, Sequence, StepHooks};
    use crate::op::parse_ops;
    use crate::shadow::Changes;
    use vmm::addr::PhysAddr;

    fn sequence(text: &str) -> Sequence {
        Sequence::new(parse_ops(text).expect("the scenario parses"))
    }

    /// Hand-written files may not lean on the fuzzer's modulo resolution or on skipped steps;
    /// each case names its step.
    #[test]
    fn strictness_names_the_step_that_only_wraps_or_does_not_run() {
        let strict = |text: &str| super::strictness(&sequence(text));
        assert_eq!(strict("spawn\nfork s=0\nexit s=1\n"), Ok(()));
        let (at, why) = strict("spawn\nfork s=3\n").expect_err("one live space");
        assert_eq!(at, 1);
        assert!(why.contains("`s=3` names no live space (1 live"), "{why}");
        let (at, why) = strict("fork s=0\n").expect_err("no space yet");
        assert_eq!((at, why.contains("no space is live")), (0, true), "{why}");
        let mmap = "spawn\nmmap s=0 addr=0x0 len=0x1000 prot=0x3 flags=0x22\n";
        assert_eq!(
            strict(&format!("{mmap}read s=0 addr=r0+0p+0w mode=user\n")),
            Ok(())
        );
        let (at, why) =
            strict(&format!("{mmap}read s=0 addr=r1+0p+0w mode=user\n")).expect_err("one region");
        assert!(
            at == 2 && why.contains("names no region (1 in the space"),
            "{why}"
        );
        // A kernel-mode access outside the vmalloc window, and a device range past RAM, are
        // not run.
        let (at, why) = strict("spawn\nread s=0 addr=0x40000000 mode=kernel\n").expect_err("skip");
        assert!(at == 1 && why.contains("would not run"), "{why}");
        let (_, why) =
            strict("spawn\nmapdev s=0 addr=0x10000000 page=4095 len=0x8000000 prot=0x3\n")
                .expect_err("past RAM");
        assert!(why.contains("would not run"), "{why}");
        // `page=` is modular by design: window page 65535 is page 4095.
        assert_eq!(
            strict("spawn\nmapdev s=0 addr=0x3000000 page=65535 len=0x1000 prot=0x3\n"),
            Ok(())
        );
    }

    /// The canonical form resolves indices and drops skipped steps, runs the same, and is
    /// strict.
    #[test]
    fn the_canonical_form_runs_the_same_and_is_strict() {
        let lenient = sequence(
            "fork s=4\nspawn\nmmap s=7 addr=0x0 len=0x2000 prot=0x3 flags=0x22\n\
             write s=9 addr=r5+1p+0w value=0x12 mode=user\nspawn\nexit s=3\n\
             read s=0 addr=0x40000000 mode=kernel\nread s=2 addr=r0+0p+0w mode=user\n",
        );
        assert!(super::strictness(&lenient).is_err());
        let canonical = super::canonical(&lenient);
        assert_eq!(
            crate::print_sequence(&canonical),
            "spawn\nmmap s=0 addr=0x0 len=0x2000 prot=0x3 flags=0x22\n\
             write s=0 addr=r0+1p+0w value=0x12 mode=user\nspawn\nexit s=1\n\
             read s=0 addr=r0+0p+0w mode=user\n"
        );
        assert_eq!(super::strictness(&canonical), Ok(()));
        let outcomes = |s: &Sequence| {
            let (rows, result) = super::run_traced(s, None);
            assert!(result.is_ok());
            rows.into_iter()
                .filter(|r| r.model != op_driver::Outcome::Skipped)
                .collect::<Vec<_>>()
        };
        assert_eq!(outcomes(&lenient), outcomes(&canonical));
    }

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

    /// INV-7 from the raw L1 words: an L2 table linked twice, a table away from its slot and a
    /// page-table page mapped as data are each reported, whatever the vmm's bookkeeping says.
    #[test]
    fn table_links_read_from_the_raw_words_break_inv7() {
        let steps = Sequence::new(
            parse_ops(
                "spawn\nspawn\nmmap s=0 addr=0x0 len=0x1000 prot=0x3 flags=0x22\nwrite s=0 addr=r0+0p+0w value=0x1 mode=user\n",
            )
            .expect("the scenario parses"),
        );
        let booted = || {
            let mut p = Pair::new(None, CheckMode::Full, Config::DEFAULT);
            for step in &steps.steps {
                p.apply(&step.op, StepHooks::CHECKER);
            }
            assert_eq!(p.check_table_links(), Ok(()), "the sound vmm's links");
            assert!(p.compare_state(3, &steps).is_ok(), "and its pages");
            p
        };
        let l1 = |p: &Pair, at: usize| {
            p.vm.space(p.vmm_ids[at])
                .expect("live")
                .mmu()
                .l1_table()
                .as_u32()
        };
        // The mmap area's first MiB, 0x1F8: its L1 entry in space 0 links the table.
        let entry = |p: &Pair, at: usize| PhysAddr::new(l1(p, at) + 4 * 0x1F8);
        let linked = |p: &Pair| p.vm.machine().host.peek_word(entry(p, 0)).expect("in RAM");
        let write = |p: &mut Pair, pa: PhysAddr, word: u32| {
            assert!(p.vm.machine_mut().host.write_bytes(pa, &word.to_le_bytes()));
            p.vmm_spaces_read = false;
        };
        // Space 1 links space 0's table too.
        let mut p = booted();
        let (word, at) = (linked(&p), entry(&p, 1));
        write(&mut p, at, word);
        let why = p.check_table_links().expect_err("a table linked twice");
        assert!(
            why.contains("is linked by space 1 entry 0x1f8 and by space 2"),
            "{why}"
        );
        // The entry points at the next slot of the same page.
        let mut p = booted();
        let (word, at) = (linked(&p), entry(&p, 0));
        write(&mut p, at, word + 0x400);
        let why = p.check_table_links().expect_err("a table off its slot");
        assert!(why.contains("is not at its slot 0"), "{why}");
        // The data page's descriptor points at the page of tables.
        let mut p = booted();
        let table = linked(&p) & !0x3FF;
        // 0x1F80_0000 is the first page of its MiB: entry 0 of the table.
        let pte = PhysAddr::new(table);
        let old = p.vm.machine().host.peek_word(pte).expect("in RAM");
        write(&mut p, pte, (table & !0xFFF) | (old & 0xFFF));
        assert_eq!(p.check_table_links(), Ok(()));
        let d = p
            .compare_state(3, &steps)
            .expect_err("a table page as data");
        assert_eq!(d.kind, DivergenceKind::Tables, "{d}");
        assert!(d.vmm.contains("maps the page-table page"), "{d}");
    }
}
