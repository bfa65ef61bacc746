//! The differential checker: the op language and its `.ops` text form ([`op`]), and (growing)
//! the one interpreter that runs ops on the `vmm` and the reference model and compares them.
//!
//! Status: ops and the text format are here; the model-vs-vmm comparison lives in
//! `tests/model_agrees_with_vmm.rs` until `run(ops)` and its reports move into this crate.

pub mod op;

pub use op::{Addr, Op, Step, parse_ops, print_ops};
