//! User address spaces: regions, the break, and the `Vm` that owns every space.

mod region;
mod regions;

pub use region::{Prot, Region, RegionKind, ShmId};
pub use regions::RegionMap;

use crate::arch::armv7::{ArchMmu, Asid};

/// Identifies a user space inside a [`Vm`](crate::Vm).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpaceId(pub u32);

/// One user address space.
#[derive(Debug)]
pub struct VmSpace {
    pub(crate) mmu: ArchMmu,
    pub(crate) regions: RegionMap,
    pub(crate) brk: u32,
}

impl VmSpace {
    /// See [`ArchMmu::snapshot`].
    pub(crate) fn snapshot(&self) -> Self {
        Self {
            mmu: self.mmu.snapshot(),
            regions: self.regions.clone(),
            brk: self.brk,
        }
    }
}

impl VmSpace {
    /// The regions, ascending.
    #[must_use]
    pub fn regions(&self) -> &RegionMap {
        &self.regions
    }
    /// The current break (as last set, not rounded).
    #[must_use]
    pub fn brk(&self) -> u32 {
        self.brk
    }
    /// The space's ASID.
    #[must_use]
    pub fn asid(&self) -> Asid {
        self.mmu.asid()
    }
    /// The space's translation tables.
    #[must_use]
    pub fn mmu(&self) -> &ArchMmu {
        &self.mmu
    }
}
