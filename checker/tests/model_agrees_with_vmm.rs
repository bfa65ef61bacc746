//! The reference model and the vmm agree, step by step, over random sequences of spawn, fork,
//! exit, mmap, munmap, mprotect, brk, mremap, shm and user/kernel reads, writes and fetches on
//! several spaces, in the default world or one with a small pool or few ASIDs, with frame
//! allocations refused at random steps (`checker::run` compares
//! return values and the whole observable state after every step). A failure prints the
//! numbered `.ops` listing, the diverging step and a model-vs-vmm diff.

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn model_and_vmm_agree(steps in checker::strategy::sequences(50)) {
        if let Err(d) = checker::run(&steps) {
            return Err(TestCaseError::fail(d.to_string()));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// The fast mode agrees with the full mode, and its shadow of the tables equals a full
    /// read after every step.
    #[test]
    fn fast_mode_agrees_with_full_mode(steps in checker::strategy::sequences(50)) {
        let full = checker::run(&steps).map_err(|d| d.to_string());
        let fast = checker::run::audit_fast_mode(&steps, None).map_err(|d| d.to_string());
        prop_assert_eq!(fast, full);
    }
}
