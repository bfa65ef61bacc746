//! Kernel-side API (semantics.md section 12): device mappings into a user space
//! (`LOS_VaddrToPaddrMmap`), `vmalloc`/`vfree` in the vmalloc window, and physical-address
//! queries for any space.

use alloc::vec::Vec;

use crate::addr::{PAGE_SIZE, PageRange, PhysAddr, PhysFrame, VirtAddr, VirtPage};
use crate::arch::armv7::{MapError, MappingAttrs, MappingFlags};
use crate::errno::Errno;
use crate::machine::Machine;
use crate::space::{Prot, Region, RegionKind, SpaceId};
use crate::vm::Vm;

impl<M: Machine> Vm<M> {
    /// Maps the device range `[pa, pa + len)` at `va` in space `id` with `prot`, all pages at
    /// once (1 MiB sections where `va` and `pa` are both aligned). `va`, `pa` and `len` must be
    /// page-aligned and `len` non-zero, the range in the user window and the physical range
    /// outside the frame pool (`EINVAL`); any overlap with a region is `EEXIST`.
    pub fn map_device(
        &mut self,
        id: SpaceId,
        va: u32,
        pa: u32,
        len: u32,
        prot: u32,
    ) -> Result<VirtAddr, Errno> {
        let prot = Prot::from_bits(prot).ok_or(Errno::EINVAL)?.normalized();
        if va % PAGE_SIZE != 0 || pa % PAGE_SIZE != 0 || len % PAGE_SIZE != 0 || len == 0 {
            return Err(Errno::EINVAL);
        }
        let range = Self::page_range(va, len)
            .filter(|r| self.in_user_window(*r))
            .ok_or(Errno::EINVAL)?;
        let frame = PhysFrame::from_start(PhysAddr::new(pa)).ok_or(Errno::EINVAL)?;
        if u64::from(pa) + u64::from(len) > 1 << 32 || self.layout.overlaps_pool(pa, u64::from(len))
        {
            return Err(Errno::EINVAL);
        }
        let space = self.spaces.get_mut(&id).ok_or(Errno::EINVAL)?;
        if !space.regions.is_free(range) {
            return Err(Errno::EEXIST);
        }
        let region = Region {
            range,
            prot,
            shared: true,
            kind: RegionKind::Device { first_frame: frame },
        };
        space
            .mmu
            .map(
                &mut self.machine,
                &mut self.frames,
                range,
                frame,
                region.attrs(),
            )
            .map_err(MapError::errno)?;
        space.regions.insert(region);
        Ok(range.start_addr())
    }

    /// Allocates `len` bytes (rounded up to pages) of kernel memory in the vmalloc window:
    /// zeroed frames, one at a time, mapped read/write at the first fitting address.
    pub fn vmalloc(&mut self, len: u32) -> Result<VirtAddr, Errno> {
        let pages = len.checked_add(PAGE_SIZE - 1).ok_or(Errno::EINVAL)? / PAGE_SIZE;
        if pages == 0 {
            return Err(Errno::EINVAL);
        }
        let (lo, hi) = (
            self.layout.vmalloc_base / PAGE_SIZE,
            self.layout.vmalloc_end / PAGE_SIZE,
        );
        let mut candidate = lo;
        for (&start, frames) in &self.vmalloc {
            if u64::from(start) >= u64::from(candidate) + u64::from(pages) {
                break;
            }
            candidate = candidate.max(start + frames.len() as u32);
        }
        if u64::from(candidate) + u64::from(pages) > u64::from(hi) {
            return Err(Errno::ENOMEM);
        }
        let start = VirtPage::from_number(candidate).ok_or(Errno::ENOMEM)?;
        let range = PageRange::new(start, pages).ok_or(Errno::ENOMEM)?;
        let frames = self
            .frames
            .alloc_frames_zeroed(&mut self.machine, pages)
            .map_err(|_| Errno::ENOMEM)?;
        let entries: Vec<(VirtPage, PhysFrame)> =
            range.pages().zip(frames.iter().copied()).collect();
        let rw = MappingAttrs::new(MappingFlags::READ | MappingFlags::WRITE);
        if self
            .kernel
            .map_each(&mut self.machine, &mut self.frames, &entries, rw)
            .is_err()
        {
            for f in frames {
                let _ = self.frames.free(&mut self.machine, f);
            }
            return Err(Errno::ENOMEM);
        }
        self.vmalloc.insert(candidate, frames);
        Ok(range.start_addr())
    }

    /// Frees a `vmalloc` allocation; `va` must be its first address (`EINVAL` otherwise).
    pub fn vfree(&mut self, va: u32) -> Result<(), Errno> {
        let page = VirtPage::from_start(VirtAddr::new(va)).ok_or(Errno::EINVAL)?;
        let pages = self.vmalloc.get(&page.number()).ok_or(Errno::EINVAL)?.len() as u32;
        let range = PageRange::new(page, pages).ok_or(Errno::EINVAL)?;
        // Only small pages were mapped here: unmapping splits nothing and cannot fail.
        self.kernel
            .unmap(&mut self.machine, &mut self.frames, range)
            .map_err(MapError::errno)?;
        for f in self.vmalloc.remove(&page.number()).unwrap_or_default() {
            let _ = self.frames.free(&mut self.machine, f);
        }
        Ok(())
    }

    /// The physical address `va` translates to: through the kernel's tables for kernel
    /// addresses (TTBR1), through space `id`'s otherwise. `None` when unmapped.
    pub fn paddr(&mut self, id: SpaceId, va: VirtAddr) -> Option<PhysAddr> {
        let t = if va >= crate::arch::armv7::TTBR1_BASE {
            self.kernel.query(&mut self.machine, va)
        } else {
            self.spaces.get(&id)?.mmu.query(&mut self.machine, va)
        };
        let t = t.ok()??;
        Some(PhysAddr::new(t.frame.start().as_u32() | va.page_offset()))
    }
}
