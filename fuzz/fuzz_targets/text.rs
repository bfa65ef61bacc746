//! The `.ops` text form: whenever the bytes parse, print -> parse gives the same steps
//! (`checker::fuzz::text_round_trip`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    checker::fuzz::text_round_trip(data);
});
