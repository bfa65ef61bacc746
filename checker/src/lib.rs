//! The differential checker: op language, the one interpreter `run(ops)`, comparison of the
//! `vmm` against the reference model, invariants and divergence reports.
//!
//! Status: not written yet (the checker issue). Until then the `vmm` crate's own tests compare
//! `ArchMmu` and the frame allocator with small models (`vmm/tests/`).
