//! ARMv7-A short-descriptor translation: descriptors, attribute encoding, ASIDs, TLB
//! maintenance and the per-space [`ArchMmu`].
//!
//! Layout (TTBCR.N = 2): TTBR0 holds a 4 KiB L1 table per user space covering VA < 1 GiB;
//! TTBR1 holds the kernel's 16 KiB L1 table, used for VA >= 1 GiB. L2 tables are 1 KiB, packed
//! four to a 4 KiB page that serves the four L1 entries `4k..4k+3`.

mod asid;
mod attributes;
pub mod descriptor;
mod mmu;
mod tlb;

pub use asid::{Asid, AsidAllocator, AsidError};
pub use attributes::{MappingAttrs, MappingFlags, MemoryType};
pub use descriptor::{AccessPermissions, Domain, L1Descriptor, L2Descriptor, PageAttributes, Tex};
pub use mmu::{ArchMmu, BlockSize, MapError, SpaceKind, TTBR1_BASE, Translation};
pub use tlb::{TlbReach, ttbr_value};
