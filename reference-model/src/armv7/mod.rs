//! The ARMv7-A hardware as the ARM ARM specifies it (short-descriptor format, no LPAE), written
//! independently of `vmm`'s encoder: a translation-table walker over raw table words
//! (`TranslationTableWalkSD`) and a TLB model that only forgets what an invalidate removes.

mod tlb;
mod walker;

pub use tlb::{Tlb, TlbEntry};
pub use walker::{
    AccessKind, Fault, FaultKind, Privilege, Registers, Translation, translate, walk,
};
