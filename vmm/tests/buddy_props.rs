//! Buddy allocator invariants under random alloc/free/retain/release sequences, against a set
//! model of the frames handed out. The model and the checks live in
//! `checker/src/frames_model.rs` (included here, so that `cargo test -p vmm` and cargo-mutants
//! keep them; the checker's `frames` fuzz target runs the same code).

#[path = "../../checker/src/frames_model.rs"]
mod model;

use model::{Op, run_frames};
use proptest::prelude::*;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop_oneof![4 => 1..5u32, 2 => 5..70u32, 1 => 250..600u32].prop_map(Op::Alloc),
        4 => any::<usize>().prop_map(Op::Free),
        2 => any::<usize>().prop_map(Op::Retain),
        2 => any::<usize>().prop_map(Op::Release),
        1 => any::<u32>().prop_map(Op::FreeWild),
        1 => Just(Op::FailNext),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn buddy_invariants_hold(
        // A pool that is neither a power of two nor 1 MiB aligned at its start.
        start in prop_oneof![Just(0x40000u32), Just(0x40003u32), 0x40000..0x40400u32],
        total in prop_oneof![Just(1024u32), 1..1500u32],
        ops in prop::collection::vec(op(), 1..200),
    ) {
        run_frames(start, total, &ops).map_err(TestCaseError::fail)?;
    }
}
