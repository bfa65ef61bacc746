//! The reference model of the `vmm` crate: semantics.md as code, written to be obviously right
//! rather than fast. It never depends on `vmm`.
//!
//! Status: the hardware half is here ([`armv7`]: an independent short-descriptor walker and a
//! TLB model). The HashMap-based model of spaces, regions, frames and shm lands with the
//! checker issue.

pub mod armv7;
