//! The differential checker: the op language and its `.ops` text form ([`op`], from the
//! `op-lang` crate), concrete ops resolved against the reference model ([`concrete`], applied
//! to the vmm by the `op-driver` crate that the QEMU guest shares), and [`run`], the one
//! interpreter: model and vmm side by side, compared after every step, with a readable
//! divergence report. The vmm runs on a simulated machine whose accesses go through the
//! reference walker over the real table bytes and the reference TLB model, with faults handed
//! to the vmm's handler as on hardware.

pub mod compare;
pub mod concrete;
pub mod frames;
pub mod fuzz;
pub mod in_order;
pub mod input;
pub mod invariants;
pub mod machine;
pub mod minimize;
pub mod mmu;
pub mod observed;
pub mod pair;
pub mod pairing;
pub mod protocol;
pub mod quick;
pub mod report;
pub mod run;
pub mod shadow;
pub mod strategy;

pub use machine::Defect;
pub use op::{Addr, Op, Step, parse_ops, print_ops};
/// The op language (symbolic ops, `.ops` text), from the `op-lang` crate.
pub use op_lang::op;
pub use op_lang::{
    Config, Sequence, first_access_beyond, fold_accesses_onto, parse_sequence, print_sequence,
};
pub use run::{
    CheckMode, Divergence, DivergenceKind, Outcome, StepHooks, StepRecord, run,
    run_both_with_defect, run_fast, run_fast_with_defect, run_fast_with_hooks, run_or_panic,
    run_or_panic_with_defect, run_or_panic_with_hooks, run_traced, run_with_defect,
};
