//! The reference model of the `vmm` crate: semantics.md as code, written to be obviously right
//! rather than fast. It never depends on `vmm`.
//!
//! Status: the hardware half ([`armv7`]: an independent short-descriptor walker and a TLB
//! model) and the region level of one user space ([`model`]: mmap, munmap, mprotect, brk).
//! Pages, frames, faults, fork and shm follow with the checker issue.

pub mod armv7;
pub mod model;
