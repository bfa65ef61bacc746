//! The reference model of the `vmm` crate (semantics.md as code).
//!
//! Status: not written yet. The model of spaces, regions, frames and shm, the ARMv7
//! short-descriptor walker and the TLB model land with the checker issue. This crate must never
//! depend on `vmm`.
