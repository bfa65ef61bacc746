//! 8-bit address-space identifiers: lowest free first, no rollover, invalidated before reuse.

use core::fmt;

use super::TlbReach;
use crate::machine::Machine;

/// An ARMv7 ASID (CONTEXTIDR.ASID, 8 bits).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Asid(u8);

impl Asid {
    /// The kernel's ASID. Kernel mappings are global, so it tags nothing.
    pub const KERNEL: Self = Self(0);
    /// The ASID with this value.
    #[must_use]
    pub const fn new(value: u8) -> Self {
        Self(value)
    }
    /// The 8-bit value.
    #[must_use]
    pub const fn value(self) -> u8 {
        self.0
    }
}

impl fmt::Debug for Asid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ASID({})", self.0)
    }
}

/// Why an ASID operation was refused. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsidError {
    /// All of 1..=255 are in use.
    Exhausted,
    /// Releasing an ASID that is not allocated (or the kernel's).
    NotAllocated(Asid),
}

/// Hands out user ASIDs 1..=limit (255 by default), lowest free first. 0 is the kernel's and is
/// never handed out.
#[derive(Clone, Debug)]
pub struct AsidAllocator {
    /// The highest ASID handed out.
    limit: u8,
    in_use: [u64; 4],
    /// ASIDs released at least once: only those can have TLB entries when handed out again.
    released: [u64; 4],
    /// Local invalidates on one CPU, broadcast ones on several.
    reach: TlbReach,
}

impl Default for AsidAllocator {
    fn default() -> Self {
        Self::new()
    }
}

impl AsidAllocator {
    /// An allocator with every user ASID free.
    #[must_use]
    pub const fn new() -> Self {
        Self::with_limit(255)
    }

    /// An allocator of the ASIDs 1..=`limit` (a `limit` of 0 hands out none).
    #[must_use]
    pub const fn with_limit(limit: u8) -> Self {
        Self {
            limit,
            in_use: [0; 4],
            released: [0; 4],
            reach: TlbReach::Local,
        }
    }

    /// The same allocator invalidating in `reach` (broadcast with more than one CPU).
    #[must_use]
    pub const fn with_reach(mut self, reach: TlbReach) -> Self {
        self.reach = reach;
        self
    }

    /// The reach of its invalidates, which the spaces it serves share.
    #[must_use]
    pub const fn reach(&self) -> TlbReach {
        self.reach
    }

    /// The lowest free ASID. One that was released before is invalidated again (TLBIASID, DSB,
    /// ISB) as it is handed out: between its release and now, a CPU that still had it current
    /// may have walked and cached entries for it (semantics.md section 2). One never handed
    /// out has never tagged an entry, so it is not (an invalidate by ASID would also flush
    /// QEMU's whole TLB, hiding a missing invalidate from the QEMU suite).
    pub fn alloc<M: Machine>(&mut self, machine: &mut M) -> Result<Asid, AsidError> {
        let value = (1..=self.limit)
            .find(|&a| !self.is_allocated(Asid(a)))
            .ok_or(AsidError::Exhausted)?;
        let (word, bit) = (usize::from(value / 64), 1 << (value % 64));
        self.in_use[word] |= bit;
        if self.released[word] & bit != 0 {
            self.reach.invalidate_asid(machine, Asid(value));
            machine.dsb();
            machine.isb();
        }
        Ok(Asid(value))
    }

    /// Invalidates every TLB entry tagged with `asid` (TLBIASID, DSB, ISB), then frees it: an
    /// ASID is never handed out again while stale entries could carry it.
    pub fn release<M: Machine>(&mut self, machine: &mut M, asid: Asid) -> Result<(), AsidError> {
        if asid == Asid::KERNEL || !self.is_allocated(asid) {
            return Err(AsidError::NotAllocated(asid));
        }
        self.reach.invalidate_asid(machine, asid);
        machine.dsb();
        machine.isb();
        self.in_use[usize::from(asid.0 / 64)] &= !(1 << (asid.0 % 64));
        self.released[usize::from(asid.0 / 64)] |= 1 << (asid.0 % 64);
        Ok(())
    }

    /// Whether a user ASID is free.
    #[must_use]
    pub fn has_free(&self) -> bool {
        self.allocated_count() < u32::from(self.limit)
    }

    /// Whether the ASID is handed out.
    #[must_use]
    pub fn is_allocated(&self, asid: Asid) -> bool {
        self.in_use[usize::from(asid.0 / 64)] & (1 << (asid.0 % 64)) != 0
    }

    /// How many ASIDs are handed out.
    #[must_use]
    pub fn allocated_count(&self) -> u32 {
        self.in_use.iter().map(|w| w.count_ones()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::{HostMachine, MachineEvent};

    /// The value round-trips and prints as CONTEXTIDR would hold it.
    #[test]
    fn value_and_debug_form() {
        assert_eq!(Asid::new(42).value(), 42);
        assert_eq!(Asid::KERNEL.value(), 0);
        assert_eq!(alloc::format!("{:?}", Asid::new(7)), "ASID(7)");
    }

    /// A lower limit is reached as soon; the lowest free comes back after a release.
    #[test]
    fn a_limit_bounds_the_asids_handed_out() {
        let mut a = AsidAllocator::with_limit(2);
        let mut m = HostMachine::default();
        assert_eq!(a.alloc(&mut m), Ok(Asid(1)));
        assert_eq!(a.alloc(&mut m), Ok(Asid(2)));
        assert!(!a.has_free());
        assert_eq!(a.alloc(&mut m), Err(AsidError::Exhausted));
        a.release(&mut m, Asid(1)).unwrap();
        assert_eq!(a.alloc(&mut m), Ok(Asid(1)));
    }

    #[test]
    fn lowest_first_until_exhausted() {
        let mut a = AsidAllocator::new();
        let mut m = HostMachine::default();
        for expect in 1..=255u8 {
            assert_eq!(a.alloc(&mut m), Ok(Asid(expect)));
        }
        assert_eq!(a.alloc(&mut m), Err(AsidError::Exhausted));
        assert_eq!(a.allocated_count(), 255);
    }

    #[test]
    fn release_invalidates_before_reuse() {
        let mut a = AsidAllocator::new();
        let mut m = HostMachine::default();
        m.set_recording(true);
        let x = a.alloc(&mut m).unwrap();
        let invalidated = |asid| {
            [
                MachineEvent::TlbInvalidateAsid(asid),
                MachineEvent::Dsb,
                MachineEvent::Isb,
            ]
        };
        assert_eq!(m.take_log(), [], "never used: nothing to invalidate");
        let y = a.alloc(&mut m).unwrap();
        m.clear_log();
        a.release(&mut m, x).unwrap();
        assert_eq!(m.take_log(), invalidated(x), "and as it is released");
        assert_eq!(a.alloc(&mut m), Ok(x));
        assert_eq!(m.take_log(), invalidated(x), "and again as it is reused");
        assert_eq!(
            a.release(&mut m, Asid::KERNEL),
            Err(AsidError::NotAllocated(Asid::KERNEL))
        );
        a.release(&mut m, y).unwrap();
        assert_eq!(a.release(&mut m, y), Err(AsidError::NotAllocated(y)));
        assert_eq!(a.allocated_count(), 1);
    }
}
