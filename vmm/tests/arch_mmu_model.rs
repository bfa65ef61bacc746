//! `ArchMmu` op sequences against a small map model, with failure injection. The model and the
//! checks live in `checker/src/mmu_model.rs` (included here, so that `cargo test -p vmm` and
//! cargo-mutants keep them; the checker's `mmu` fuzz target runs the same code): after every op
//! the result equals the model's prediction; the raw table bytes, decoded by an independent
//! walker, equal the model's map; the MMU's own `check` and `mappings` agree; the frame pool
//! holds exactly the predicted table pages; the machine log shows break-before-make and a TLB
//! invalidate for every removed or changed page. A failed op changes nothing and writes nothing.

#[path = "../../checker/src/mmu_model.rs"]
#[allow(dead_code)]
mod model;

use model::{AREA_BASE, AREA_PAGES, Op, PHYS_BASE, USER_WINDOW_PAGES};
use proptest::prelude::*;
use vmm::arch::armv7::TlbReach;

fn run_sequence(ops: &[(Op, Option<u8>)]) -> Result<(), TestCaseError> {
    model::run_sequence(ops).map_err(TestCaseError::fail)
}

/// The same on a space of a machine of several CPUs: every invalidate the broadcast form.
fn run_sequence_broadcast(ops: &[(Op, Option<u8>)]) -> Result<(), TestCaseError> {
    model::run_sequence_in(ops, TlbReach::InnerShareable).map_err(TestCaseError::fail)
}

/// Page numbers biased towards section and group boundaries, with some wild values.
fn va_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![
        6 => (0..AREA_PAGES).prop_map(|p| AREA_BASE + p),
        3 => (0..AREA_PAGES / 256, 0..3u32).prop_map(|(s, d)| AREA_BASE + s * 256 + d * 255 / 2),
        1 => prop_oneof![Just(0u32), Just(USER_WINDOW_PAGES - 1), Just(USER_WINDOW_PAGES), Just(0xF_FFFF)],
    ]
}

fn pages_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 1..16u32, 2 => 240..=300u32, 1 => 500..=1100u32, 1 => Just(0u32)]
}

fn frame_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![
        (0..4096u32).prop_map(|f| PHYS_BASE + f),
        (0..16u32).prop_map(|s| PHYS_BASE + s * 256),
        Just(0xF_FF00u32),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    // USER is set in most flag values; the rest exercise InvalidFlags.
    let flags = prop_oneof![9 => (0..8u8).prop_map(|b| b | 8), 1 => 0..8u8];
    prop_oneof![
        4 => (va_strategy(), pages_strategy(), frame_strategy(), flags.clone(), 0..4u8)
            .prop_map(|(va, pages, frame, flags, memory)| Op::Map { va, pages, frame, flags, memory }),
        2 => (va_strategy(), pages_strategy()).prop_map(|(va, pages)| Op::Unmap { va, pages }),
        2 => (va_strategy(), pages_strategy(), flags.clone()).prop_map(|(va, pages, flags)| Op::Protect { va, pages, flags }),
        1 => (va_strategy(), pages_strategy(), flags.clone()).prop_map(|(va, pages, flags)| Op::ProtectMany { va, pages, flags }),
        1 => (va_strategy(), pages_strategy(), va_strategy()).prop_map(|(from, pages, to)| Op::Move { from, pages, to }),
        1 => (va_strategy(), pages_strategy(), va_strategy()).prop_map(|(from, pages, to)| Op::MoveReplacing { from, pages, to }),
        1 => va_strategy().prop_map(|va| Op::Query { va }),
        2 => (va_strategy(), pages_strategy(), frame_strategy(), flags.clone(), 0..4u8)
            .prop_map(|(va, pages, frame, flags, memory)| Op::Replace { va, pages, frame, flags, memory }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arch_mmu_matches_the_map_model(
        ops in prop::collection::vec((op_strategy(), prop::option::weighted(0.3, 0..3u8)), 1..40)
    ) {
        run_sequence(&ops)?;
    }

    #[test]
    fn arch_mmu_matches_the_map_model_with_broadcast_maintenance(
        ops in prop::collection::vec((op_strategy(), prop::option::weighted(0.3, 0..3u8)), 1..40)
    ) {
        run_sequence_broadcast(&ops)?;
    }
}

/// Failure injection at every allocation of a fixed sequence that needs several L2 pages in
/// each op (exhaustive, not sampled).
#[test]
fn every_allocation_of_a_sequence_can_fail_cleanly() {
    let u = 8 | 1 | 2;
    let ops = [
        Op::Map {
            va: AREA_BASE + 250,
            pages: 1100,
            frame: PHYS_BASE + 6,
            flags: u,
            memory: 0,
        },
        Op::Map {
            va: AREA_BASE + 1536,
            pages: 512,
            frame: PHYS_BASE + 1024,
            flags: u,
            memory: 0,
        },
        Op::Protect {
            va: AREA_BASE + 1600,
            pages: 3,
            flags: 8 | 1,
        },
        Op::Unmap {
            va: AREA_BASE + 1800,
            pages: 1,
        },
        Op::Move {
            from: AREA_BASE + 1536,
            pages: 512,
            to: AREA_BASE + 4096 + 7,
        },
    ];
    for (i, op) in ops.iter().enumerate() {
        for k in 0..4u8 {
            let mut seq: Vec<(Op, Option<u8>)> =
                ops[..i].iter().map(|o| (o.clone(), None)).collect();
            seq.push((op.clone(), Some(k)));
            run_sequence(&seq).unwrap_or_else(|e| panic!("op {i} failing at allocation {k}: {e}"));
        }
    }
}
