//! The whole VM: op sequences (several spaces) through `checker::run`, model vs vmm on the
//! simulated MMU. Any divergence panics from its kind's own site, so crashes group by kind.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A sound machine unless VMM_FUZZ_DEFECT names a defect (`cargo xtask fuzz-proof`).
    checker::run_or_panic_with_defect(
        &checker::fuzz::decode(data),
        checker::fuzz::defect_from_env(),
    );
});
