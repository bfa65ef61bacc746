//! The whole VM: op sequences (several spaces) through `checker::run`, model vs vmm on the
//! simulated MMU. Any divergence panics from its kind's own site, so crashes group by kind.
#![no_main]

use checker::StepHooks;
use libfuzzer_sys::fuzz_target;

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
