//! Everything the hardware does, behind one trait.
//!
//! The vmm never touches memory or CP15 directly: page-table words, frame zeroing and copying,
//! TLB maintenance and barriers all go through a [`Machine`]. On the host the checker supplies
//! [`HostMachine`] (RAM as bytes, every call recorded); in the QEMU guest an implementation
//! issues real loads, stores and CP15 operations. One code path serves both.

mod host;

pub use host::{AllocationFailure, HostMachine, MachineEvent};

use crate::addr::{PhysAddr, PhysFrame, VirtPage};
use crate::arch::armv7::Asid;

/// The hardware operations the vmm needs.
///
/// Word accesses are to 4-byte aligned physical addresses inside RAM; the vmm only reads and
/// writes its own page-table pages this way.
pub trait Machine {
    /// Reads the 32-bit word at `pa`.
    fn read_word(&mut self, pa: PhysAddr) -> u32;
    /// Reads `out.len()` consecutive words starting at `pa` (a whole table, or the part of one
    /// a sweep needs). The same as [`read_word`](Self::read_word) on each address in turn;
    /// machines whose RAM is an array override it with one copy.
    fn read_words(&mut self, pa: PhysAddr, out: &mut [u32]) {
        let mut at = pa.as_u32();
        for word in out {
            *word = self.read_word(PhysAddr::new(at));
            at = at.wrapping_add(4);
        }
    }
    /// Writes the 32-bit word at `pa`.
    fn write_word(&mut self, pa: PhysAddr, value: u32);
    /// Fills the frame with zeroes.
    fn zero_frame(&mut self, frame: PhysFrame);
    /// Copies the 4 KiB of `src` over `dst`.
    fn copy_frame(&mut self, dst: PhysFrame, src: PhysFrame);

    /// `TLBIMVA`: invalidates the entries for `page` tagged with `asid` (and global ones).
    fn tlb_invalidate_page(&mut self, asid: Asid, page: VirtPage);
    /// `TLBIMVAA`: invalidates the entries for `page` under every ASID.
    fn tlb_invalidate_page_all_asids(&mut self, page: VirtPage);
    /// `TLBIASID`: invalidates every non-global entry tagged with `asid`.
    fn tlb_invalidate_asid(&mut self, asid: Asid);
    /// `TLBIALL`: invalidates the whole TLB.
    fn tlb_invalidate_all(&mut self);

    /// Data synchronization barrier.
    fn dsb(&mut self);
    /// Instruction synchronization barrier.
    fn isb(&mut self);

    /// Asked before every frame allocation; `false` makes that allocation fail as if the pool
    /// were empty. Real machines always allow it; test machines inject failures here.
    fn frame_allocation_permitted(&mut self) -> bool {
        true
    }
}
