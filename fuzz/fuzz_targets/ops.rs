//! The whole VM: op sequences (several spaces) through `checker::run`, model vs vmm on the
//! simulated MMU. Any divergence panics from its kind's own site, so crashes group by kind.
//!
//! Mutation is structure-aware half of the time: the input is decoded into its steps, one
//! step-level edit is made (insert a fresh step, delete, duplicate or move one, swap two; as
//! likely to shorten as to lengthen), and the steps are encoded back; the other half is libFuzzer's byte-level mutation. A bug that
//! needs a certain order of ops (write, fork, write, read) is then a few edits away instead of
//! a lucky byte pattern. `VMM_FUZZ_MUTATOR=bytes` turns the step edits off (to measure them).
//!
//! `VMM_FUZZ_SMP=N` (`cargo xtask fuzz --smp N`) moves every mutant to a world of N CPUs: its
//! header says so (format version 2), fresh accesses run on any of the N, and byte mutations
//! of the CPU bytes move accesses between CPUs.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use checker::{Sequence, Step, StepHooks};
use libfuzzer_sys::{fuzz_mutator, fuzz_target, fuzzer_mutate};

/// The step's calls into the code under test, compiled here: this crate carries coverage
/// counters and the checker does not, so resolving each op and the vmm code it reaches are
/// what libFuzzer sees (`checker::StepHooks` says why).
const HOOKS: StepHooks = StepHooks {
    resolve: |model, ids, op| checker::concrete::resolve(model, ids, op),
    apply: |vm, ids, op| checker::run::apply_vmm(vm, ids, op),
};

fuzz_target!(|data: &[u8]| {
    // A sound machine unless VMM_FUZZ_DEFECT names a defect (`cargo xtask fuzz-proof`).
    checker::run_or_panic_with_hooks(
        &checker::fuzz::decode(data),
        checker::fuzz::defect_from_env(),
        HOOKS,
    );
});

/// xorshift64*, seeded by libFuzzer (so `-seed=N` runs repeat exactly).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// A number below `n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Whether the step edits are on (`VMM_FUZZ_MUTATOR=bytes` turns them off).
fn step_edits() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("VMM_FUZZ_MUTATOR").as_deref() != Ok("bytes"))
}

/// A fresh step decoded from pseudo-random bytes; an access runs on one of the `cpus`.
fn fresh_step(rng: &mut Rng, cpus: u8) -> Option<Step> {
    let bytes: Vec<u8> = (0..32).map(|_| rng.next() as u8).collect();
    let mut step = Step::arbitrary(&mut Unstructured::new(&bytes)).ok()?;
    if let Some(cpu) = step.op.cpu_mut() {
        *cpu = rng.below(usize::from(cpus)) as u8;
    }
    Some(step)
}

/// One step-level edit of `sequence` (its first step, the implicit `spawn`, stays): as likely
/// to shorten it as to lengthen it, so the corpus does not drift to ever longer inputs.
/// `false` when the edit does not fit the sequence.
fn edit(sequence: &mut Sequence, rng: &mut Rng) -> bool {
    let steps = &mut sequence.steps;
    let n = steps.len();
    let full = n >= checker::fuzz::MAX_STEPS;
    // A position after the leading spawn, below `n`.
    let at = |rng: &mut Rng, n: usize| 1 + rng.below(n - 1);
    match rng.below(6) {
        0 if !full => match fresh_step(rng, sequence.config.cpus) {
            Some(step) => steps.insert(1 + rng.below(n), step),
            None => return false,
        },
        1 if n > 2 && !full => {
            let step = steps[at(rng, n)].clone();
            steps.insert(1 + rng.below(n), step);
        }
        2 | 3 if n > 1 => {
            steps.remove(at(rng, n));
        }
        4 if n > 2 => {
            let (i, j) = (at(rng, n), at(rng, n));
            steps.swap(i, j);
        }
        5 if n > 2 => {
            let step = steps.remove(at(rng, n));
            steps.insert(at(rng, n), step);
        }
        _ => return false,
    }
    true
}

/// The mutant in `data[..size]` moved to a world of `cpus` CPUs (re-encoded; its size). When
/// the encoding does not fit `max_size`, its last steps are dropped until it does: every input
/// the fuzzer runs and keeps is in that world.
fn in_world_of(data: &mut [u8], size: usize, max_size: usize, cpus: u8) -> usize {
    let mut sequence = checker::fuzz::decode(&data[..size]);
    if sequence.config.cpus == cpus {
        return size;
    }
    sequence.set_cpus(cpus);
    let room = max_size.min(data.len());
    let mut bytes = checker::fuzz::encode(&sequence);
    while bytes.len() > room && sequence.steps.len() > 1 {
        sequence.steps.pop();
        bytes = checker::fuzz::encode(&sequence);
    }
    if bytes.len() > room {
        // Not even the header fits: the smallest input of that world (its header alone).
        bytes.truncate(room);
    }
    data[..bytes.len()].copy_from_slice(&bytes);
    bytes.len()
}

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    let mut rng = Rng(u64::from(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let smp = checker::fuzz::smp_from_env();
    let in_world = |data: &mut [u8], size: usize| match smp {
        Some(cpus) => in_world_of(data, size, max_size, cpus),
        None => size,
    };
    if !step_edits() || rng.below(2) == 0 {
        let size = fuzzer_mutate(data, size, max_size);
        return in_world(data, size);
    }
    let mut sequence = checker::fuzz::decode(&data[..size]);
    if let Some(cpus) = smp {
        sequence.set_cpus(cpus);
    }
    if !edit(&mut sequence, &mut rng) {
        let size = fuzzer_mutate(data, size, max_size);
        return in_world(data, size);
    }
    let bytes = checker::fuzz::encode(&sequence);
    if bytes.len() > max_size {
        let size = fuzzer_mutate(data, size, max_size);
        return in_world(data, size);
    }
    data[..bytes.len()].copy_from_slice(&bytes);
    bytes.len()
});
