//! TLB maintenance with a token that cannot be forgotten.
//!
//! Every descriptor change that removes or narrows a translation pushes the page into a
//! [`TlbBatch`]; the batch is `#[must_use]` and only [`TlbBatch::flush`] consumes it, issuing
//! DSB (descriptor writes visible to the walker), the per-page invalidates, then DSB + ISB.

use alloc::vec::Vec;

use super::Asid;
use crate::addr::VirtPage;
use crate::machine::Machine;

/// Which invalidate a space uses: user pages are ASID-tagged, kernel pages are global.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TlbScope {
    /// `TLBIMVA` with this ASID.
    Asid(Asid),
    /// `TLBIMVAA` (kernel: global entries).
    Global,
}

impl TlbScope {
    /// Invalidates one page now (no barriers).
    pub(crate) fn invalidate<M: Machine>(self, machine: &mut M, page: VirtPage) {
        match self {
            Self::Asid(asid) => machine.tlb_invalidate_page(asid, page),
            Self::Global => machine.tlb_invalidate_page_all_asids(page),
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
