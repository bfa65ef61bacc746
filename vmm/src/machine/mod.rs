//! Everything the hardware does, behind one trait.
//!
//! The vmm never touches memory or CP15 directly: page-table words, frame zeroing and copying,
//! TLB maintenance and barriers all go through a [`Machine`]. On the host the checker supplies
//! [`HostMachine`] (RAM as bytes, every call recorded); in the QEMU guest an implementation
//! issues real loads, stores and CP15 operations. One code path serves both.

mod host;

pub use host::{AllocationFailure, HostMachine, MachineEvent};

use alloc::vec::Vec;

use crate::addr::{PhysAddr, PhysFrame, VirtPage};
use crate::arch::armv7::Asid;
use crate::cpu::Cpu;

/// `out.len()` words from `pa` by [`Machine::read_word`] in turn: the default
/// [`Machine::read_words`], and what an override falls back to for addresses it cannot copy.
pub fn read_each_word<M: Machine + ?Sized>(m: &mut M, pa: PhysAddr, out: &mut [u32]) {
    let mut at = pa.as_u32();
    for word in out {
        *word = m.read_word(PhysAddr::new(at));
        at = at.wrapping_add(4);
    }
}

/// The non-zero words among the `count` words from `pa`, as `(index from pa, word)` in
/// ascending order, appended to `out` and read by [`Machine::read_words`] in chunks: the
/// default [`Machine::read_nonzero_words`].
pub fn read_nonzero_in_chunks<M: Machine + ?Sized>(
    m: &mut M,
    pa: PhysAddr,
    count: usize,
    out: &mut Vec<(usize, u32)>,
) {
    let mut chunk = [0u32; 64];
    let mut done = 0;
    while done < count {
        let n = (count - done).min(chunk.len());
        let at = pa.as_u32().wrapping_add((done as u32).wrapping_mul(4));
        m.read_words(PhysAddr::new(at), &mut chunk[..n]);
        for (j, &word) in chunk[..n].iter().enumerate() {
            if word != 0 {
                out.push((done + j, word));
            }
        }
        done += n;
    }
}

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
        read_each_word(self, pa, out);
    }
    /// Reads the `count` words from `pa` as [`read_words`](Self::read_words) does and appends
    /// the non-zero ones to `out` as `(index from pa, word)`, ascending. Table sweeps use it:
    /// most of a table is fault entries (zero), and a machine that knows where its zeros are
    /// need not copy them.
    fn read_nonzero_words(&mut self, pa: PhysAddr, count: usize, out: &mut Vec<(usize, u32)>) {
        read_nonzero_in_chunks(self, pa, count, out);
    }
    /// Writes the 32-bit word at `pa`.
    fn write_word(&mut self, pa: PhysAddr, value: u32);
    /// Writes `value` over the word at `pa`, which the caller knows holds `old` (it just read it,
    /// or wrote it). The same as [`Machine::write_word`] on a machine; a wrapper that journals
    /// old values (the MMU's commit journal) records `old` without reading the word again.
    fn replace_word(&mut self, pa: PhysAddr, old: u32, value: u32) {
        let _ = old;
        self.write_word(pa, value);
    }
    /// Writes `value` over a word the caller has already written in the same operation (the
    /// new value after a break-before-make's fault). The same as [`Machine::write_word`] on a
    /// machine; the MMU's commit journal keeps the old value it recorded at the first write.
    fn rewrite_word(&mut self, pa: PhysAddr, value: u32) {
        self.write_word(pa, value);
    }
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

    /// `TLBIMVAIS`: [`tlb_invalidate_page`](Self::tlb_invalidate_page) on every CPU of the
    /// inner-shareable domain.
    fn tlb_invalidate_page_is(&mut self, asid: Asid, page: VirtPage);
    /// `TLBIMVAAIS`: [`tlb_invalidate_page_all_asids`](Self::tlb_invalidate_page_all_asids) on
    /// every CPU.
    fn tlb_invalidate_page_all_asids_is(&mut self, page: VirtPage);
    /// `TLBIASIDIS`: [`tlb_invalidate_asid`](Self::tlb_invalidate_asid) on every CPU.
    fn tlb_invalidate_asid_is(&mut self, asid: Asid);
    /// `TLBIALLIS`: [`tlb_invalidate_all`](Self::tlb_invalidate_all) on every CPU.
    fn tlb_invalidate_all_is(&mut self);

    /// Data synchronization barrier.
    fn dsb(&mut self);
    /// Instruction synchronization barrier.
    fn isb(&mut self);

    /// Makes a user space current on `cpu`: TTBR0 = its L1 table (with the attributes of
    /// [`ttbr_value`](crate::arch::armv7::ttbr_value)), CONTEXTIDR = its ASID. `None` is the
    /// kernel-only state (no user table, ASID 0). A switch invalidates no TLB entry: entries
    /// are tagged with their ASID. For a CPU other than the one running the vmm, the machine
    /// has that CPU make the switch (an IPI on real hardware) and returns once it has.
    fn switch_space(&mut self, cpu: Cpu, space: Option<(PhysFrame, Asid)>);

    /// Told when `count` frames from `first` (one allocation) go back to the allocator, after
    /// the vmm is done with them (and after the TLB invalidates that must come first). Real
    /// hardware has nothing to do; a test machine records it, so the order of frees and
    /// invalidates can be checked.
    fn frames_freed(&mut self, first: PhysFrame, count: u32) {
        let _ = (first, count);
    }

    /// Asked before every frame allocation; `false` makes that allocation fail as if the pool
    /// were empty. Real machines always allow it; test machines inject failures here.
    fn frame_allocation_permitted(&mut self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::{HostMachine, Machine};
    use crate::addr::{PhysAddr, PhysFrame, VirtPage};
    use crate::arch::armv7::Asid;
    use crate::cpu::Cpu;
    use alloc::vec;
    use alloc::vec::Vec;

    /// A machine with only the required methods (RAM from a host machine), so `read_words`
    /// is the trait's own default, as on the QEMU guest.
    struct Plain(HostMachine);

    impl Machine for Plain {
        fn read_word(&mut self, pa: PhysAddr) -> u32 {
            self.0.read_word(pa)
        }
        fn write_word(&mut self, pa: PhysAddr, value: u32) {
            self.0.write_word(pa, value);
        }
        fn zero_frame(&mut self, frame: PhysFrame) {
            self.0.zero_frame(frame);
        }
        fn copy_frame(&mut self, dst: PhysFrame, src: PhysFrame) {
            self.0.copy_frame(dst, src);
        }
        fn tlb_invalidate_page(&mut self, asid: Asid, page: VirtPage) {
            self.0.tlb_invalidate_page(asid, page);
        }
        fn tlb_invalidate_page_all_asids(&mut self, page: VirtPage) {
            self.0.tlb_invalidate_page_all_asids(page);
        }
        fn tlb_invalidate_asid(&mut self, asid: Asid) {
            self.0.tlb_invalidate_asid(asid);
        }
        fn tlb_invalidate_all(&mut self) {
            self.0.tlb_invalidate_all();
        }
        fn tlb_invalidate_page_is(&mut self, asid: Asid, page: VirtPage) {
            self.0.tlb_invalidate_page_is(asid, page);
        }
        fn tlb_invalidate_page_all_asids_is(&mut self, page: VirtPage) {
            self.0.tlb_invalidate_page_all_asids_is(page);
        }
        fn tlb_invalidate_asid_is(&mut self, asid: Asid) {
            self.0.tlb_invalidate_asid_is(asid);
        }
        fn tlb_invalidate_all_is(&mut self) {
            self.0.tlb_invalidate_all_is();
        }
        fn dsb(&mut self) {
            self.0.dsb();
        }
        fn isb(&mut self) {
            self.0.isb();
        }
        fn switch_space(&mut self, cpu: Cpu, space: Option<(PhysFrame, Asid)>) {
            self.0.switch_space(cpu, space);
        }
    }

    #[test]
    fn default_read_words_reads_each_word_in_turn() {
        let mut m = Plain(HostMachine::default());
        let base = 0x4000_0FF8;
        for i in 0..4u32 {
            m.write_word(PhysAddr::new(base + 4 * i), 0x10 + i);
        }
        let mut got = vec![u32::MAX; 5];
        m.read_words(PhysAddr::new(base - 4), &mut got);
        let want: Vec<u32> = vec![0, 0x10, 0x11, 0x12, 0x13];
        assert_eq!(got, want);
    }

    /// A machine that does not say otherwise (real hardware) never refuses an allocation.
    #[test]
    fn machines_permit_allocations_by_default() {
        let mut m = Plain(HostMachine::default());
        assert!(m.frame_allocation_permitted());
        assert!(m.frame_allocation_permitted());
    }

    /// The default non-zero read keeps the order and the indices across its chunks, and
    /// appends to what `out` already holds.
    /// On a machine the journal's hints are plain writes.
    #[test]
    fn replace_and_rewrite_are_writes_by_default() {
        let mut m = Plain(HostMachine::default());
        let pa = PhysAddr::new(0x4000_0010);
        m.write_word(pa, 1);
        m.replace_word(pa, 1, 2);
        assert_eq!(m.read_word(pa), 2);
        m.rewrite_word(pa, 3);
        assert_eq!(m.read_word(pa), 3);
    }

    #[test]
    fn default_read_nonzero_words_finds_each_nonzero_word() {
        let mut m = Plain(HostMachine::default());
        let base = 0x4000_0F00;
        let hot = [0usize, 1, 63, 64, 65, 127, 128, 200, 257];
        for &i in &hot {
            m.write_word(PhysAddr::new(base + 4 * i as u32), 0x100 + i as u32);
        }
        let mut out = vec![(9999, 1)];
        m.read_nonzero_words(PhysAddr::new(base), 258, &mut out);
        let want: Vec<(usize, u32)> = core::iter::once((9999, 1))
            .chain(hot.iter().map(|&i| (i, 0x100 + i as u32)))
            .collect();
        assert_eq!(out, want);
        let mut short = Vec::new();
        m.read_nonzero_words(PhysAddr::new(base), 200, &mut short);
        assert_eq!(short, want[1..8]);
    }
}
