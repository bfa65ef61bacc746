//! TLB maintenance with a token that cannot be forgotten, in the reach the CPU count asks for.
//!
//! Every descriptor change that removes or narrows a translation pushes the page into a
//! [`TlbBatch`]; the batch is `#[must_use]` and only [`TlbBatch::flush`] consumes it, issuing
//! DSB (descriptor writes visible to the walker), the per-page invalidates, then DSB + ISB.
//! With more than one CPU every invalidate is the inner-shareable form ([`TlbReach`]): a local
//! one would leave the other CPUs' entries stale (semantics.md section 14).

use alloc::vec::Vec;

use super::Asid;
use crate::addr::{PhysFrame, VirtPage};
use crate::machine::Machine;

/// Which CPUs' TLBs an invalidate reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TlbReach {
    /// The issuing CPU's only (`TLBIMVA`, `TLBIMVAA`, `TLBIASID`, `TLBIALL`): one CPU.
    #[default]
    Local,
    /// Every CPU of the inner-shareable domain (`TLBIMVAIS`, `TLBIMVAAIS`, `TLBIASIDIS`,
    /// `TLBIALLIS`): more than one CPU.
    InnerShareable,
}

impl TlbReach {
    /// The reach a machine of `cpus` CPUs needs.
    #[must_use]
    pub const fn for_cpus(cpus: u8) -> Self {
        if cpus > 1 {
            Self::InnerShareable
        } else {
            Self::Local
        }
    }

    /// `TLBIMVA` or `TLBIMVAIS`.
    pub(crate) fn invalidate_page<M: Machine>(self, m: &mut M, asid: Asid, page: VirtPage) {
        match self {
            Self::Local => m.tlb_invalidate_page(asid, page),
            Self::InnerShareable => m.tlb_invalidate_page_is(asid, page),
        }
    }
    /// `TLBIMVAA` or `TLBIMVAAIS`.
    pub(crate) fn invalidate_page_all_asids<M: Machine>(self, m: &mut M, page: VirtPage) {
        match self {
            Self::Local => m.tlb_invalidate_page_all_asids(page),
            Self::InnerShareable => m.tlb_invalidate_page_all_asids_is(page),
        }
    }
    /// `TLBIASID` or `TLBIASIDIS`.
    pub(crate) fn invalidate_asid<M: Machine>(self, m: &mut M, asid: Asid) {
        match self {
            Self::Local => m.tlb_invalidate_asid(asid),
            Self::InnerShareable => m.tlb_invalidate_asid_is(asid),
        }
    }
    /// `TLBIALL` or `TLBIALLIS`.
    pub(crate) fn invalidate_all<M: Machine>(self, m: &mut M) {
        match self {
            Self::Local => m.tlb_invalidate_all(),
            Self::InnerShareable => m.tlb_invalidate_all_is(),
        }
    }
}

/// The value of TTBR0 or TTBR1 for the L1 table at `table` (LiteOS-A `MMU_TTBRx_FLAGS`): table
/// walks are inner and outer write-back write-allocate (IRGN = 01, as IRGN[0] = bit 6 and
/// IRGN[1] = bit 0; RGN = 01), and with more than one CPU inner shareable too (S = 1,
/// NOS = 1), so every CPU's walker sees the descriptors the others write.
#[must_use]
pub const fn ttbr_value(table: PhysFrame, reach: TlbReach) -> u32 {
    const IRGN0: u32 = 1 << 6;
    const RGN_WB_WA: u32 = 0b01 << 3;
    const SHAREABLE: u32 = 1 << 1;
    const NOT_OUTER_SHAREABLE: u32 = 1 << 5;
    let walks = IRGN0 | RGN_WB_WA;
    let sharing = match reach {
        TlbReach::Local => 0,
        TlbReach::InnerShareable => SHAREABLE | NOT_OUTER_SHAREABLE,
    };
    table.start().as_u32() | walks | sharing
}

/// Which invalidate a space uses: user pages are ASID-tagged, kernel pages are global; and in
/// which reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TlbScope {
    /// `Some`: a user space's ASID (`TLBIMVA`); `None`: the kernel (`TLBIMVAA`).
    pub(crate) asid: Option<Asid>,
    /// Local or broadcast.
    pub(crate) reach: TlbReach,
}

impl TlbScope {
    /// Invalidates one page now (no barriers).
    pub(crate) fn invalidate<M: Machine>(self, machine: &mut M, page: VirtPage) {
        match self.asid {
            Some(asid) => self.reach.invalidate_page(machine, asid, page),
            None => self.reach.invalidate_page_all_asids(machine, page),
        }
    }

    /// Invalidates every entry the space may have cached (no barriers): by ASID for a user
    /// space, everything for the kernel.
    pub(crate) fn invalidate_space<M: Machine>(self, machine: &mut M) {
        match self.asid {
            Some(asid) => self.reach.invalidate_asid(machine, asid),
            None => self.reach.invalidate_all(machine),
        }
    }
}

/// Pages whose TLB entries must be invalidated before the operation returns.
#[must_use = "stale TLB entries stay live until the batch is flushed"]
#[derive(Debug)]
pub(crate) struct TlbBatch {
    scope: TlbScope,
    pages: Vec<VirtPage>,
}

impl TlbBatch {
    pub(crate) fn new(scope: TlbScope) -> Self {
        Self {
            scope,
            pages: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, page: VirtPage) {
        self.pages.push(page);
    }

    /// DSB; invalidate every page; DSB; ISB. Barriers are issued even when nothing was
    /// invalidated, so descriptor writes made by the operation are visible when it returns.
    pub(crate) fn flush<M: Machine>(self, machine: &mut M) {
        machine.dsb();
        for page in self.pages {
            self.scope.invalidate(machine, page);
        }
        machine.dsb();
        machine.isb();
    }
}

#[cfg(test)]
mod tests {
    use super::{TlbReach, ttbr_value};
    use crate::addr::{PhysAddr, PhysFrame};

    /// LiteOS-A's values: 0x48 on one CPU (IRGN[0] | RGN = 01), 0x6A on SMP (+ S, NOS).
    #[test]
    fn ttbr_carries_the_walk_attributes_of_the_cpu_count() {
        let table = PhysFrame::containing(PhysAddr::new(0x4123_4000));
        assert_eq!(ttbr_value(table, TlbReach::for_cpus(1)), 0x4123_4048);
        assert_eq!(ttbr_value(table, TlbReach::for_cpus(2)), 0x4123_406A);
        assert_eq!(TlbReach::for_cpus(4), TlbReach::InnerShareable);
    }
}
