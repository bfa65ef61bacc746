//! `mremap` (semantics.md section 8).

use alloc::vec::Vec;

use crate::addr::{PAGE_SIZE, PageRange, VirtAddr, VirtPage};
use crate::arch::armv7::MapError;
use crate::errno::Errno;
use crate::machine::Machine;
use crate::space::{Region, SpaceId};
use crate::vm::Vm;

/// `MREMAP_MAYMOVE`.
pub const MREMAP_MAYMOVE: u32 = 1;
/// `MREMAP_FIXED`.
pub const MREMAP_FIXED: u32 = 2;

impl<M: Machine> Vm<M> {
    /// `mremap(old, old_len, new_len, flags, new_addr)`: resizes or moves the part
    /// `[old, old + old_len)` of one anonymous region. A move keeps every page's frame and
    /// copy-on-write state.
    pub fn mremap(
        &mut self,
        id: SpaceId,
        old: u32,
        old_len: u32,
        new_len: u32,
        flags: u32,
        new_addr: u32,
    ) -> Result<VirtAddr, Errno> {
        let space = self.spaces.get(&id).ok_or(Errno::EINVAL)?;
        if flags & !(MREMAP_MAYMOVE | MREMAP_FIXED) != 0 {
            return Err(Errno::EINVAL);
        }
        let fixed = flags & MREMAP_FIXED != 0;
        let may_move = flags & MREMAP_MAYMOVE != 0;
        if fixed && !may_move {
            return Err(Errno::EINVAL);
        }
        if old % PAGE_SIZE != 0 || old_len == 0 || new_len == 0 {
            return Err(Errno::EINVAL);
        }
        let src = Self::page_range(old, old_len).ok_or(Errno::EINVAL)?;
        let new_pages = new_len.checked_add(PAGE_SIZE - 1).ok_or(Errno::EINVAL)? / PAGE_SIZE;
        let region = space
            .regions
            .find(src.start())
            .copied()
            .filter(|r| src.end_number() <= r.range.end_number())
            .ok_or(Errno::EFAULT)?;
        if !region.is_private_anon() {
            return Err(Errno::EINVAL);
        }
        let kept = src.count().min(new_pages);
        if fixed {
            let target = VirtPage::from_start(VirtAddr::new(new_addr))
                .and_then(|p| PageRange::new(p, new_pages))
                .filter(|t| self.in_user_window(*t) && !t.overlaps(src))
                .ok_or(Errno::EINVAL)?;
            return self.move_fixed(id, region, src, kept, target);
        }
        if new_pages == src.count() {
            return Ok(src.start_addr());
        }
        if new_pages < src.count() {
            let tail = PageRange::new(page_at(src.start().number() + kept), src.count() - kept)
                .ok_or(Errno::EINVAL)?;
            self.unmap_range(id, tail)?;
            return Ok(src.start_addr());
        }
        // Grow in place when the range ends the region and the pages after it are free.
        let extra = PageRange::new(page_at(src.end_number()), new_pages - src.count());
        let in_place = src.end_number() == region.range.end_number()
            && extra.is_some_and(|e| self.in_user_window(e) && self.spaces[&id].regions.is_free(e));
        if in_place {
            let grown = PageRange::new(
                region.range.start(),
                region.range.count() + (new_pages - src.count()),
            )
            .ok_or(Errno::ENOMEM)?;
            let s = self.spaces.get_mut(&id).ok_or(Errno::EINVAL)?;
            s.regions.remove(region.range.start());
            s.regions.insert(Region {
                range: grown,
                ..region
            });
            return Ok(src.start_addr());
        }
        if !may_move {
            return Err(Errno::ENOMEM);
        }
        let (lo, hi) = (
            self.layout.mmap_base / PAGE_SIZE,
            self.layout.mmap_end / PAGE_SIZE,
        );
        let start = self.spaces[&id]
            .regions
            .first_fit(new_pages, lo, hi)
            .ok_or(Errno::ENOMEM)?;
        let target = PageRange::new(start, new_pages).ok_or(Errno::ENOMEM)?;
        let s = self.spaces.get_mut(&id).ok_or(Errno::EINVAL)?;
        s.mmu
            .move_pages(&mut self.machine, &mut self.frames, src, start)
            .map_err(MapError::errno)?;
        self.relocate_region(id, region, src, target)
    }

    /// `MREMAP_FIXED`: whatever `target` overlaps is removed (as munmap would), the first
    /// `kept` pages of `src` move to it and the rest of `src` goes, in one table operation.
    fn move_fixed(
        &mut self,
        id: SpaceId,
        region: Region,
        src: PageRange,
        kept: u32,
        target: PageRange,
    ) -> Result<VirtAddr, Errno> {
        let touched = self.regions_to_remove(id, target)?;
        let moved = PageRange::new(src.start(), kept).ok_or(Errno::EINVAL)?;
        let mut clear = Vec::from([target]);
        if let Some(tail) = PageRange::new(page_at(src.start().number() + kept), src.count() - kept)
        {
            clear.push(tail);
        }
        let s = self.spaces.get_mut(&id).ok_or(Errno::EINVAL)?;
        let mut removed = Vec::new();
        s.mmu
            .move_replacing(
                &mut self.machine,
                &mut self.frames,
                moved,
                target.start(),
                &clear,
                |p, f| removed.push((p, f)),
            )
            .map_err(MapError::errno)?;
        let (in_target, in_tail): (Vec<_>, Vec<_>) =
            removed.into_iter().partition(|(p, _)| target.contains(*p));
        self.forget_removed(id, target, &touched, &in_target);
        for (_, frame) in in_tail {
            // A page of the private anon source: it held a reference.
            let _ = self.frames.release(&mut self.machine, frame);
        }
        self.relocate_region(id, region, src, target)
    }

    /// The region bookkeeping of a move: `src` (part of `region`) leaves, `target` arrives
    /// with the same attributes.
    fn relocate_region(
        &mut self,
        id: SpaceId,
        region: Region,
        src: PageRange,
        target: PageRange,
    ) -> Result<VirtAddr, Errno> {
        let s = self.spaces.get_mut(&id).ok_or(Errno::EINVAL)?;
        s.regions.isolate(src);
        s.regions.remove(src.start());
        s.regions.insert(Region {
            range: target,
            ..region
        });
        Ok(target.start_addr())
    }
}

fn page_at(number: u32) -> VirtPage {
    VirtPage::from_number(number).unwrap_or_default()
}
