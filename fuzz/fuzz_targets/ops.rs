//! The whole VM: op sequences (several spaces) through `checker::run`, model vs vmm on the
//! simulated MMU. Any divergence panics from its kind's own site, so crashes group by kind.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    checker::run_or_panic(&checker::fuzz::decode(data));
});
