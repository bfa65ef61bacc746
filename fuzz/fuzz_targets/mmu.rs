//! `ArchMmu` alone: map/unmap/protect/move/query with refused allocations against the map model
//! (`checker::mmu`); a divergence panics with the op listing.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    checker::mmu::run_mmu(data);
});
