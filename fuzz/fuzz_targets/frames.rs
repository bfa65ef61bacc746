//! The buddy frame allocator alone: alloc/free/retain/release against the set model
//! (`checker::frames`); a divergence panics with the op listing.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    checker::frames::run_frames_bytes(data);
});
