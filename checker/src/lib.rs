//! The differential checker: the op language and its `.ops` text form ([`op`]), and (growing)
//! the one interpreter that runs ops on the `vmm` and the reference model and compares them.
//!
//! Status: ops, the text format and [`run`] (model and vmm side by side, compared after every
//! step, with a readable divergence report) are here. Not yet: the walker and TLB model in the
//! loop (accesses go through the vmm's own software walk), device mappings, kernel addresses.

pub mod op;
pub mod run;
pub mod strategy;

pub use op::{Addr, Op, Step, parse_ops, print_ops};
pub use run::{Divergence, DivergenceKind, run, run_or_panic};
