//! The ARMv7-A hardware as the ARM ARM specifies it (short-descriptor format, no LPAE), written
//! independently of `vmm`'s encoder: a translation-table walker over raw table words
//! (`TranslationTableWalkSD`) and a TLB model that only forgets what an invalidate removes.

mod attributes;
mod memory_type;
mod tlb;
mod walker;

pub use attributes::PageAttributes;
pub use memory_type::{Cacheability, MemoryType};
pub use tlb::{Tlb, TlbEntry};
pub use walker::{
    AccessKind, EXECUTE, Fault, FaultKind, Permissions, Privilege, READ, Registers, Rights,
    Translation, WRITE, linked_table, permissions, translate, translations, walk,
};
