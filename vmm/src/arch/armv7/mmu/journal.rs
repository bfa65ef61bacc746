//! Rollback of a commit that fails: every commit runs through [`ArchMmu::journaled`], which
//! records the old value of each descriptor word before it is written. A commit fails only on
//! an inconsistency of the vmm's own ([`MapError::Internal`]: the tables hold less than the
//! plan read from them); when it does, every word goes back to its old value by
//! break-before-make, the valid-entry counts are recounted from the restored tables, the L2 page
//! count is restored and the pages the commit took from its reservation go back to it. The
//! operation then returns its error having changed nothing.

use alloc::collections::BTreeMap;

use super::*;
use crate::cpu::Cpu;

/// Entries kept on the stack: the writes of a fault, a one-page map or unmap. Larger commits
/// spill to the heap, once per operation.
const INLINE: usize = 16;

/// `(address, value before the write)` of every journaled write, in write order.
struct Entries {
    inline: [(u32, u32); INLINE],
    len: usize,
    spill: Vec<(u32, u32)>,
}

impl Entries {
    fn new() -> Self {
        Self {
            inline: [(0, 0); INLINE],
            len: 0,
            spill: Vec::new(),
        }
    }

    #[inline]
    fn push(&mut self, pa: PhysAddr, old: u32) {
        if self.len < INLINE {
            self.inline[self.len] = (pa.as_u32(), old);
            self.len += 1;
        } else {
            if self.spill.capacity() == 0 {
                // A commit past the inline entries writes a table's worth or more.
                self.spill.reserve(ENTRIES_PER_L2 as usize);
            }
            self.spill.push((pa.as_u32(), old));
        }
    }

    #[inline]
    fn last_address(&self) -> Option<u32> {
        match self.spill.last() {
            Some(&(pa, _)) => Some(pa),
            None => self.len.checked_sub(1).map(|i| self.inline[i].0),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &(u32, u32)> {
        self.inline[..self.len].iter().chain(self.spill.iter())
    }
}

/// A [`Machine`] that forwards everything to `inner` and journals each word written.
pub(super) struct Journaled<'a, M: Machine> {
    inner: &'a mut M,
    old: Entries,
}

impl<M: Machine> Machine for Journaled<'_, M> {
    fn read_word(&mut self, pa: PhysAddr) -> u32 {
        self.inner.read_word(pa)
    }
    fn read_words(&mut self, pa: PhysAddr, out: &mut [u32]) {
        self.inner.read_words(pa, out);
    }
    fn read_nonzero_words(&mut self, pa: PhysAddr, count: usize, out: &mut Vec<(usize, u32)>) {
        self.inner.read_nonzero_words(pa, count, out);
    }
    #[inline]
    fn write_word(&mut self, pa: PhysAddr, value: u32) {
        // A word written again at once (fault, then the new value) keeps its first old value.
        if self.old.last_address() != Some(pa.as_u32()) {
            let before = self.inner.read_word(pa);
            self.old.push(pa, before);
        }
        self.inner.write_word(pa, value);
    }
    #[inline]
    fn replace_word(&mut self, pa: PhysAddr, old: u32, value: u32) {
        self.old.push(pa, old);
        self.inner.write_word(pa, value);
    }
    #[inline]
    fn rewrite_word(&mut self, pa: PhysAddr, value: u32) {
        self.inner.write_word(pa, value);
    }
    fn zero_frame(&mut self, frame: PhysFrame) {
        // Commits never zero frames (reserved pages are zeroed when allocated); a zeroing here
        // could not be undone, so it is a plain forward only for completeness.
        self.inner.zero_frame(frame);
    }
    fn copy_frame(&mut self, dst: PhysFrame, src: PhysFrame) {
        self.inner.copy_frame(dst, src);
    }
    fn tlb_invalidate_page(&mut self, asid: Asid, page: VirtPage) {
        self.inner.tlb_invalidate_page(asid, page);
    }
    fn tlb_invalidate_page_all_asids(&mut self, page: VirtPage) {
        self.inner.tlb_invalidate_page_all_asids(page);
    }
    fn tlb_invalidate_asid(&mut self, asid: Asid) {
        self.inner.tlb_invalidate_asid(asid);
    }
    fn tlb_invalidate_all(&mut self) {
        self.inner.tlb_invalidate_all();
    }
    fn dsb(&mut self) {
        self.inner.dsb();
    }
    fn isb(&mut self) {
        self.inner.isb();
    }
    fn tlb_invalidate_page_is(&mut self, asid: Asid, page: VirtPage) {
        self.inner.tlb_invalidate_page_is(asid, page);
    }
    fn tlb_invalidate_page_all_asids_is(&mut self, page: VirtPage) {
        self.inner.tlb_invalidate_page_all_asids_is(page);
    }
    fn tlb_invalidate_asid_is(&mut self, asid: Asid) {
        self.inner.tlb_invalidate_asid_is(asid);
    }
    fn tlb_invalidate_all_is(&mut self) {
        self.inner.tlb_invalidate_all_is();
    }
    fn switch_space(&mut self, cpu: Cpu, space: Option<(PhysFrame, Asid)>) {
        self.inner.switch_space(cpu, space);
    }
    fn frames_freed(&mut self, first: PhysFrame, count: u32) {
        self.inner.frames_freed(first, count);
    }
    fn frame_allocation_permitted(&mut self) -> bool {
        self.inner.frame_allocation_permitted()
    }
}

impl ArchMmu {
    /// Runs `commit` with every descriptor word it writes journaled. On success the writes
    /// stand; on failure they are undone (see the module header) and the error is returned.
    /// The caller releases `reserved` either way: after a rollback it holds every page it held
    /// before the commit.
    pub(super) fn journaled<M: Machine, T>(
        &mut self,
        m: &mut M,
        reserved: &mut Reserved,
        commit: impl FnOnce(&mut Self, &mut Journaled<'_, M>, &mut Reserved) -> Result<T, MapError>,
    ) -> Result<T, MapError> {
        let l2_pages = self.l2_pages;
        let mut journal = Journaled {
            inner: m,
            old: Entries::new(),
        };
        let result = commit(self, &mut journal, reserved);
        if result.is_err() {
            let old = journal.old;
            self.roll_back(m, &old);
            self.l2_pages = l2_pages;
            reserved.undo_takes();
        }
        result
    }

    /// Puts every journaled word back: all of them to fault first, DSB, the space's TLB entries
    /// invalidated, DSB, then the old non-zero values, DSB, ISB (so no valid descriptor is ever
    /// overwritten by another valid one); then the counts are recounted from the tables.
    fn roll_back<M: Machine>(&mut self, m: &mut M, journal: &Entries) {
        // The value before the first write of each address is the one to restore.
        let mut first: BTreeMap<u32, u32> = BTreeMap::new();
        for &(pa, value) in journal.iter() {
            first.entry(pa).or_insert(value);
        }
        for &pa in first.keys() {
            m.write_word(PhysAddr::new(pa), 0);
        }
        m.dsb();
        self.scope().invalidate_space(m);
        m.dsb();
        for (&pa, &value) in first.iter().filter(|(_, v)| **v != 0) {
            m.write_word(PhysAddr::new(pa), value);
        }
        m.dsb();
        m.isb();
        self.recount(m);
    }

    /// Sets every valid-entry count from the tables (a rollback's last step).
    fn recount<M: Machine>(&mut self, m: &mut M) {
        let (first, end) = self.l1_window();
        let mut fresh = UsedCounts::new(self.used.entries);
        let mut l2 = [0u32; ENTRIES_PER_L2 as usize];
        for (l1, raw) in self.nonzero_l1_words(m, first..end) {
            if let L1Descriptor::PageTable { table, .. } = L1Descriptor::decode(raw) {
                m.read_words(Self::l2_entry(table, 0), &mut l2);
                let valid = l2
                    .iter()
                    .filter(|&&w| !matches!(L2Descriptor::decode(w), L2Descriptor::Fault))
                    .count();
                if valid > 0 {
                    *fresh.get_mut(l1) = valid as u16;
                }
            }
        }
        self.used = fresh;
    }
}
