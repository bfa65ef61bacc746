//! The user memory syscalls: `mmap`, `munmap`, `mprotect`, `brk`, `mremap` (semantics.md
//! sections 4-8).
//! Checks run in the order semantics.md lists them; the first failing one decides the error.

mod mremap;

pub use mremap::{MREMAP_FIXED, MREMAP_MAYMOVE};

use alloc::vec::Vec;

use crate::addr::{PAGE_SIZE, PageRange, VirtAddr, VirtPage};
use crate::arch::armv7::MapError;
use crate::errno::Errno;
use crate::machine::Machine;
use crate::space::{Prot, Region, RegionKind, SpaceId};
use crate::vm::Vm;

/// `MAP_SHARED`.
pub const MAP_SHARED: u32 = 0x01;
/// `MAP_PRIVATE`.
pub const MAP_PRIVATE: u32 = 0x02;
/// `MAP_FIXED`.
pub const MAP_FIXED: u32 = 0x10;
/// `MAP_ANONYMOUS`.
pub const MAP_ANONYMOUS: u32 = 0x20;
/// `MAP_FIXED_NOREPLACE`.
pub const MAP_FIXED_NOREPLACE: u32 = 0x10_0000;

impl<M: Machine> Vm<M> {
    pub(crate) fn space_exists(&self, id: SpaceId) -> Result<(), Errno> {
        if self.spaces.contains_key(&id) {
            Ok(())
        } else {
            Err(Errno::EINVAL)
        }
    }

    /// `mmap(addr, len, prot, flags)` for anonymous memory; returns the mapping's address. Maps
    /// no page: anonymous memory is demand-zeroed on first touch.
    pub fn mmap(
        &mut self,
        id: SpaceId,
        addr: u32,
        len: u32,
        prot: u32,
        flags: u32,
    ) -> Result<VirtAddr, Errno> {
        self.space_exists(id)?;
        let prot = Prot::from_bits(prot).ok_or(Errno::EINVAL)?;
        let sharing = flags & (MAP_SHARED | MAP_PRIVATE);
        if sharing != MAP_SHARED && sharing != MAP_PRIVATE {
            return Err(Errno::EINVAL);
        }
        if flags & MAP_ANONYMOUS == 0 {
            return Err(Errno::EINVAL);
        }
        let window_bytes = self.layout.user_top - self.layout.user_base;
        let pages = match len.checked_add(PAGE_SIZE - 1) {
            Some(l) if len != 0 && l / PAGE_SIZE <= window_bytes / PAGE_SIZE => l / PAGE_SIZE,
            _ => return Err(Errno::EINVAL),
        };
        let range = if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0 {
            let range = VirtPage::from_start(VirtAddr::new(addr))
                .and_then(|p| PageRange::new(p, pages))
                .filter(|r| self.in_user_window(*r))
                .ok_or(Errno::EINVAL)?;
            if !self.spaces[&id].regions.is_free(range) {
                if flags & MAP_FIXED_NOREPLACE != 0 {
                    return Err(Errno::EEXIST);
                }
                self.unmap_range(id, range)?;
            }
            range
        } else {
            if u64::from(pages) * u64::from(PAGE_SIZE)
                > u64::from(self.layout.mmap_end - self.layout.mmap_base)
            {
                return Err(Errno::ENOMEM);
            }
            let hinted = VirtAddr::new(addr)
                .align_up(PAGE_SIZE)
                .filter(|a| a.as_u32() != 0)
                .and_then(VirtPage::from_start)
                .and_then(|p| PageRange::new(p, pages))
                .filter(|r| self.in_user_window(*r) && self.spaces[&id].regions.is_free(*r));
            match hinted {
                Some(r) => r,
                None => {
                    let (lo, hi) = (
                        self.layout.mmap_base / PAGE_SIZE,
                        self.layout.mmap_end / PAGE_SIZE,
                    );
                    let start = self.spaces[&id]
                        .regions
                        .first_fit(pages, lo, hi)
                        .ok_or(Errno::ENOMEM)?;
                    PageRange::new(start, pages).ok_or(Errno::ENOMEM)?
                }
            }
        };
        let region = Region {
            range,
            prot: prot.normalized(),
            shared: sharing == MAP_SHARED,
            kind: RegionKind::Anon,
        };
        self.spaces
            .get_mut(&id)
            .ok_or(Errno::EINVAL)?
            .regions
            .insert(region);
        Ok(range.start_addr())
    }

    /// `munmap(addr, len)`: holes are fine; regions partly inside are split.
    pub fn munmap(&mut self, id: SpaceId, addr: u32, len: u32) -> Result<(), Errno> {
        self.space_exists(id)?;
        let range = Self::page_range(addr, len)
            .filter(|r| self.in_user_window(*r))
            .ok_or(Errno::EINVAL)?;
        self.unmap_range(id, range)
    }

    /// `mprotect(addr, len, prot)`: the range must be covered by regions (adjacent ones may
    /// share it). Present pages take the new permissions, except that a private anon frame
    /// mapped more than once stays read-only (the next write copies it).
    pub fn mprotect(&mut self, id: SpaceId, addr: u32, len: u32, prot: u32) -> Result<(), Errno> {
        self.space_exists(id)?;
        if addr % PAGE_SIZE != 0 {
            return Err(Errno::EINVAL);
        }
        let prot = Prot::from_bits(prot).ok_or(Errno::EINVAL)?.normalized();
        if len == 0 {
            return Ok(());
        }
        // A length or range that overflows 32 bits is EINVAL (semantics.md section 0).
        let range = Self::page_range(addr, len).ok_or(Errno::EINVAL)?;
        let space = &self.spaces[&id];
        if !space.regions.covers(range) {
            return Err(Errno::ENOMEM);
        }
        let attachments: Vec<&Region> = space
            .regions
            .overlapping(range)
            .filter(|r| matches!(r.kind, RegionKind::Shm { .. }))
            .collect();
        if attachments
            .iter()
            .any(|r| r.range.start() < range.start() || r.range.end_number() > range.end_number())
        {
            return Err(Errno::EINVAL);
        }
        if attachments
            .iter()
            .any(|r| matches!(r.kind, RegionKind::Shm { max, .. } if !max.contains(prot)))
        {
            return Err(Errno::EACCES);
        }
        let space = self.spaces.get_mut(&id).ok_or(Errno::EINVAL)?;
        let regions: Vec<Region> = space.regions.overlapping(range).copied().collect();
        // Runs of present pages that take the same attributes, over every region the range
        // touches, changed in one table operation: all or nothing.
        let mut runs: Vec<(VirtPage, u32, crate::arch::armv7::MappingAttrs)> = Vec::new();
        for r in &regions {
            let attrs = Region { prot, ..*r }.attrs();
            let mut cow_read_only = attrs;
            cow_read_only
                .flags
                .remove(crate::arch::armv7::MappingFlags::WRITE);
            let inside = r.range.pages().filter(|p| {
                p.number() >= range.start().number() && p.number() < range.end_number()
            });
            for page in inside {
                let Ok(Some(t)) = space.mmu.query(&mut self.machine, page.start()) else {
                    continue;
                };
                let shared_cow =
                    r.is_private_anon() && self.frames.ref_count(t.frame).is_ok_and(|c| c > 1);
                let want = if shared_cow { cow_read_only } else { attrs };
                match runs.last_mut() {
                    Some(last) if last.0.number() + last.1 == page.number() && last.2 == want => {
                        last.1 += 1
                    }
                    _ => runs.push((page, 1, want)),
                }
            }
        }
        let changes: Vec<(PageRange, crate::arch::armv7::MappingAttrs)> = runs
            .into_iter()
            .filter_map(|(start, count, want)| Some((PageRange::new(start, count)?, want)))
            .collect();
        // Sections partly inside the range are split by the same operation (ENOMEM without a
        // frame for the split); anything else it refuses is an inconsistency of the vmm's own
        // (`Errno::Internal`).
        space
            .mmu
            .protect_many(&mut self.machine, &mut self.frames, Some(range), &changes)
            .map_err(MapError::errno)?;
        for r in space.regions.isolate(range) {
            space.regions.remove(r.range.start());
            space.regions.insert(Region { prot, ..r });
        }
        Ok(())
    }

    /// `brk(addr)`: returns the new break on success and the current one on failure (so
    /// `brk(0)` reads it). Growing needs the pages up to the rounded new break free and not past
    /// the mmap area; shrinking unmaps as munmap does.
    pub fn brk(&mut self, id: SpaceId, addr: u32) -> u32 {
        let Some(space) = self.spaces.get(&id) else {
            return 0;
        };
        let old = space.brk;
        let heap_base = self.layout.heap_base;
        let (Some(new_end), Some(old_end)) = (
            VirtAddr::new(addr).align_up(PAGE_SIZE),
            VirtAddr::new(old).align_up(PAGE_SIZE),
        ) else {
            return old;
        };
        if addr < heap_base {
            return old;
        }
        let (new_end, old_end) = (new_end.as_u32(), old_end.as_u32());
        if new_end > old_end {
            let Some(grow) = Self::page_range(old_end, new_end - old_end) else {
                return old;
            };
            if !space.regions.is_free(grow) || new_end > self.layout.mmap_base {
                return old;
            }
            let heap = old_end
                .checked_sub(PAGE_SIZE)
                .and_then(|a| space.regions.find(VirtPage::containing(VirtAddr::new(a))))
                .filter(|r| {
                    r.kind == RegionKind::Heap && r.range.end_number() * PAGE_SIZE == old_end
                })
                .copied();
            let region = match heap {
                Some(h) => match PageRange::new(h.range.start(), h.range.count() + grow.count()) {
                    Some(range) => Region { range, ..h },
                    None => return old,
                },
                None => Region {
                    range: grow,
                    prot: Prot::READ | Prot::WRITE,
                    shared: false,
                    kind: RegionKind::Heap,
                },
            };
            let space = match self.spaces.get_mut(&id) {
                Some(s) => s,
                None => return old,
            };
            space.regions.remove(region.range.start());
            space.regions.insert(region);
        } else if new_end < old_end {
            let Some(shrink) = Self::page_range(new_end, old_end - new_end) else {
                return old;
            };
            if self.unmap_range(id, shrink).is_err() {
                return old;
            }
        }
        if let Some(space) = self.spaces.get_mut(&id) {
            space.brk = addr;
        }
        addr
    }
}
