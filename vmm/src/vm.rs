//! The whole VM: the machine, the frame pool, the ASIDs, the kernel space and every user space.
//!
//! The user-visible operations live in their own files (`syscalls/`, `fault.rs`, `fork.rs`);
//! this file holds the state and the helpers they share.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::addr::{PAGE_SIZE, PageRange, PhysAddr, PhysFrame, VirtAddr, VirtPage};
use crate::arch::armv7::{ArchMmu, AsidAllocator, MapError, MappingAttrs, MappingFlags, TlbReach};
use crate::cpu::{Cpu, MAX_CPUS};
use crate::errno::Errno;
use crate::layout::Layout;
use crate::machine::Machine;
use crate::phys::FrameAllocator;
use crate::shm::ShmTable;
use crate::space::{Region, RegionKind, RegionMap, SpaceId, VmSpace};

/// The virtual memory manager.
#[derive(Debug)]
pub struct Vm<M: Machine> {
    pub(crate) machine: M,
    pub(crate) layout: Layout,
    pub(crate) frames: FrameAllocator,
    pub(crate) asids: AsidAllocator,
    pub(crate) kernel: ArchMmu,
    pub(crate) spaces: BTreeMap<SpaceId, VmSpace>,
    pub(crate) next_space: u32,
    pub(crate) shm: ShmTable,
    /// `vmalloc` allocations: first page number -> their frames.
    pub(crate) vmalloc: BTreeMap<u32, Vec<PhysFrame>>,
    /// The space current on each CPU (in its TTBR0 and CONTEXTIDR); `None`: the kernel-only
    /// state. Entries past the layout's CPU count stay `None`.
    pub(crate) current: [Option<SpaceId>; MAX_CPUS as usize],
}

/// A copy of the whole VM, machine included: the copy's RAM holds its own tables and frames,
/// so the two go their own ways (the checker boots once and copies the booted VM).
impl<M: Machine + Clone> Clone for Vm<M> {
    fn clone(&self) -> Self {
        Self {
            machine: self.machine.clone(),
            layout: self.layout,
            frames: self.frames.clone(),
            asids: self.asids.clone(),
            kernel: self.kernel.snapshot(),
            spaces: self
                .spaces
                .iter()
                .map(|(&id, space)| (id, space.snapshot()))
                .collect(),
            next_space: self.next_space,
            shm: self.shm.clone(),
            vmalloc: self.vmalloc.clone(),
            current: self.current,
        }
    }
}

impl<M: Machine> Vm<M> {
    /// Boots the VM: the frame pool, the kernel's TTBR1 table and the linear map of RAM
    /// (VA = PA, kernel read/write/execute, sections where aligned).
    pub fn new(mut machine: M, layout: Layout) -> Result<Self, Errno> {
        let ram_pages = layout.ram_size / PAGE_SIZE;
        let ram = VirtPage::from_start(VirtAddr::new(layout.ram_base))
            .and_then(|p| PageRange::new(p, ram_pages))
            .ok_or(Errno::EINVAL)?;
        let pool_inside_ram = layout.pool_base >= layout.ram_base
            && u64::from(layout.pool_base) + u64::from(layout.pool_size)
                <= u64::from(layout.ram_base) + u64::from(layout.ram_size);
        if !pool_inside_ram || !layout.is_consistent() {
            return Err(Errno::EINVAL);
        }
        let mut frames = FrameAllocator::new(layout.pool_first_frame(), layout.pool_frames());
        let reach = TlbReach::for_cpus(layout.cpus);
        let mut kernel =
            ArchMmu::new_kernel(&mut machine, &mut frames, reach).map_err(MapError::errno)?;
        let rwx =
            MappingAttrs::new(MappingFlags::READ | MappingFlags::WRITE | MappingFlags::EXECUTE);
        let ram_frame = PhysFrame::containing(PhysAddr::new(layout.ram_base));
        kernel
            .map(&mut machine, &mut frames, ram, ram_frame, rwx)
            .map_err(|e| match e {
                MapError::NoMemory => Errno::ENOMEM,
                _ => Errno::EINVAL,
            })?;
        Ok(Self {
            machine,
            layout,
            frames,
            asids: AsidAllocator::with_limit(layout.asids).with_reach(reach),
            kernel,
            spaces: BTreeMap::new(),
            next_space: 1,
            shm: ShmTable::default(),
            vmalloc: BTreeMap::new(),
            current: [None; MAX_CPUS as usize],
        })
    }

    /// The CPUs (the layout's count, 1 to [`MAX_CPUS`]).
    #[must_use]
    pub fn cpus(&self) -> u8 {
        self.layout.cpus
    }

    /// The space current on `cpu`, if any (`None`: the kernel-only state, as after boot, and
    /// for a CPU the machine does not have).
    #[must_use]
    pub fn current(&self, cpu: Cpu) -> Option<SpaceId> {
        self.current
            .get(usize::from(cpu.index()))
            .copied()
            .flatten()
    }

    /// Makes space `id` current on `cpu` (TTBR0 = its L1 table, CONTEXTIDR = its ASID), or
    /// the kernel-only state for `None`, as a context switch does; nothing happens when it
    /// already is. No TLB entry is invalidated: entries carry their ASID. `EINVAL` when the
    /// space does not exist or the machine has no such CPU (nothing changes).
    pub fn switch_to(&mut self, cpu: Cpu, id: Option<SpaceId>) -> Result<(), Errno> {
        if cpu.index() >= self.layout.cpus {
            return Err(Errno::EINVAL);
        }
        let slot = usize::from(cpu.index());
        if id == self.current[slot] {
            return Ok(());
        }
        let target = match id {
            Some(id) => {
                let space = self.spaces.get(&id).ok_or(Errno::EINVAL)?;
                Some((
                    PhysFrame::containing(space.mmu.l1_table()),
                    space.mmu.asid(),
                ))
            }
            None => None,
        };
        self.machine.switch_space(cpu, target);
        self.current[slot] = id;
        Ok(())
    }

    /// The layout.
    #[must_use]
    pub fn layout(&self) -> &Layout {
        &self.layout
    }
    /// The machine.
    #[must_use]
    pub fn machine(&self) -> &M {
        &self.machine
    }
    /// The machine, mutably (tests inject failures and read RAM through it).
    pub fn machine_mut(&mut self) -> &mut M {
        &mut self.machine
    }
    /// The frame pool.
    #[must_use]
    pub fn frames(&self) -> &FrameAllocator {
        &self.frames
    }
    /// The kernel's translation tables (TTBR1).
    #[must_use]
    pub fn kernel(&self) -> &ArchMmu {
        &self.kernel
    }
    /// The user space `id`.
    #[must_use]
    pub fn space(&self, id: SpaceId) -> Option<&VmSpace> {
        self.spaces.get(&id)
    }
    /// Every live user space, by id.
    pub fn spaces(&self) -> impl Iterator<Item = (SpaceId, &VmSpace)> {
        self.spaces.iter().map(|(&id, s)| (id, s))
    }
    /// Every present page of user space `id`, ascending, read from its tables.
    pub fn mappings(
        &mut self,
        id: SpaceId,
    ) -> Option<Vec<(VirtPage, crate::arch::armv7::Translation)>> {
        let space = self.spaces.get(&id)?;
        space.mmu.mappings(&mut self.machine).ok()
    }

    /// The mapped pages of `range` in space `id` (see
    /// [`ArchMmu::mappings_in`](crate::arch::armv7::ArchMmu::mappings_in)); `None` for no such
    /// space or a descriptor the vmm's decoder refuses.
    pub fn mappings_in(
        &mut self,
        id: SpaceId,
        range: PageRange,
    ) -> Option<Vec<(VirtPage, crate::arch::armv7::Translation)>> {
        let space = self.spaces.get(&id)?;
        space.mmu.mappings_in(&mut self.machine, range).ok()
    }

    /// Checks the tables of user space `id` against its bookkeeping (see
    /// [`ArchMmu::check`](crate::arch::armv7::ArchMmu::check)).
    pub fn check_tables(&mut self, id: SpaceId) -> Result<(), alloc::string::String> {
        let space = self
            .spaces
            .get(&id)
            .ok_or_else(|| alloc::string::String::from("no such space"))?;
        space.mmu.check(&mut self.machine)
    }

    /// The `vmalloc` allocations: first address and pages, ascending.
    pub fn vmalloc_allocations(&self) -> impl Iterator<Item = (VirtAddr, u32)> + '_ {
        self.vmalloc.iter().map(|(&page, frames)| {
            (
                VirtAddr::new(page << crate::addr::PAGE_SHIFT),
                frames.len() as u32,
            )
        })
    }

    /// The shm segments.
    #[must_use]
    pub fn shm(&self) -> &ShmTable {
        &self.shm
    }

    /// Creates an empty user space (`spawn`): a 4 KiB L1 table and the lowest free ASID.
    pub fn spawn(&mut self) -> Result<SpaceId, Errno> {
        let mmu = ArchMmu::new_user(&mut self.machine, &mut self.frames, &mut self.asids)
            .map_err(MapError::errno)?;
        Ok(self.insert_space(VmSpace {
            mmu,
            regions: RegionMap::default(),
            brk: self.layout.heap_base,
        }))
    }

    pub(crate) fn insert_space(&mut self, space: VmSpace) -> SpaceId {
        // Ids are not reused while the counter lasts; after 2^32 spaces it wraps to the lowest
        // free id (at most 255 spaces live at once, one per ASID).
        let mut id = SpaceId(self.next_space);
        while self.spaces.contains_key(&id) {
            id = SpaceId(id.0.wrapping_add(1));
        }
        self.next_space = id.0.wrapping_add(1);
        self.spaces.insert(id, space);
        id
    }

    /// Ends a user space: every region is unmapped in one table operation (frame references
    /// dropped, shm attach counts decremented; an error changes nothing), every CPU leaves the
    /// space where it is current (the kernel-only state, so no walk uses its tables again), every
    /// table page is freed and the ASID is released after `TLBIASID`.
    pub fn exit(&mut self, id: SpaceId) -> Result<(), Errno> {
        let space = self.spaces.get(&id).ok_or(Errno::EINVAL)?;
        // From the first region to the end of the last: whole regions are unmapped, so no
        // section is split and this needs no frame (pages outside regions are never mapped).
        let span = match (space.regions.iter().next(), space.regions.iter().last()) {
            (Some(first), Some(last)) => PageRange::new(
                first.range.start(),
                last.range.end_number() - first.range.start().number(),
            ),
            _ => None,
        };
        if let Some(span) = span {
            self.unmap_range(id, span)?;
        }
        // Every CPU leaves it before its tables go: any of them may walk them while current.
        for (index, current) in (0..MAX_CPUS).zip(self.current.iter_mut()) {
            if *current == Some(id) {
                self.machine.switch_space(Cpu::new(index), None);
                *current = None;
            }
        }
        let space = self.spaces.remove(&id).ok_or(Errno::EINVAL)?;
        space
            .mmu
            .destroy(&mut self.machine, &mut self.frames, &mut self.asids);
        Ok(())
    }

    /// The user window as a page range.
    pub(crate) fn user_window(&self) -> PageRange {
        let start = VirtPage::containing(VirtAddr::new(self.layout.user_base));
        let pages = self.layout.user_top.saturating_sub(self.layout.user_base) / PAGE_SIZE;
        // `Vm::new` checked the layout: the window is non-empty and ends at or below 1 GiB.
        PageRange::new(start, pages.max(1))
            .unwrap_or_else(|| PageRange::new(start, 1).expect("one page fits"))
    }

    /// Turns a byte range into pages: `addr` must be page-aligned, `len` rounds up, and a zero
    /// or overflowing length gives `None`.
    pub(crate) fn page_range(addr: u32, len: u32) -> Option<PageRange> {
        let start = VirtPage::from_start(VirtAddr::new(addr))?;
        let pages = len.checked_add(PAGE_SIZE - 1)? / PAGE_SIZE;
        PageRange::new(start, pages)
    }

    /// Whether `range` lies in the user window.
    pub(crate) fn in_user_window(&self, range: PageRange) -> bool {
        let w = self.user_window();
        range.start() >= w.start() && range.end_number() <= w.end_number()
    }

    /// Removes everything in `range` of space `id` exactly as munmap does: regions partly
    /// inside are split, pages unmapped and invalidated, private anon frames released, shm
    /// attachments detached. A range covering part of an shm attachment is `EINVAL`; a device
    /// section that must be split without a free frame is `ENOMEM`. Nothing changes on error.
    pub(crate) fn unmap_range(&mut self, id: SpaceId, range: PageRange) -> Result<(), Errno> {
        let touched = self.regions_to_remove(id, range)?;
        let space = self.spaces.get_mut(&id).ok_or(Errno::EINVAL)?;
        let mut removed = Vec::new();
        space
            .mmu
            .unmap_with(&mut self.machine, &mut self.frames, range, |p, f| {
                removed.push((p, f))
            })
            .map_err(MapError::errno)?;
        self.forget_removed(id, range, &touched, &removed);
        Ok(())
    }

    /// The regions `range` touches in space `id`, after checking that none is an shm
    /// attachment only partly inside it (`EINVAL`).
    pub(crate) fn regions_to_remove(
        &self,
        id: SpaceId,
        range: PageRange,
    ) -> Result<Vec<Region>, Errno> {
        let space = self.spaces.get(&id).ok_or(Errno::EINVAL)?;
        let touched: Vec<Region> = space.regions.overlapping(range).copied().collect();
        for r in &touched {
            let inside =
                r.range.start() >= range.start() && r.range.end_number() <= range.end_number();
            if matches!(r.kind, RegionKind::Shm { .. }) && !inside {
                return Err(Errno::EINVAL);
            }
        }
        Ok(touched)
    }

    /// The bookkeeping after the pages of `range` left the tables: private anon frames
    /// released, regions split and removed, shm attachments detached. Cannot fail.
    pub(crate) fn forget_removed(
        &mut self,
        id: SpaceId,
        range: PageRange,
        touched: &[Region],
        removed: &[(VirtPage, PhysFrame)],
    ) {
        for &(page, frame) in removed {
            let owner = touched.iter().find(|r| r.range.contains(page));
            if owner.is_some_and(|r| r.is_private_anon()) {
                // Mapped by a PTE of this space, so it holds a reference: cannot fail.
                let _ = self.frames.release(&mut self.machine, frame);
            }
        }
        let Some(space) = self.spaces.get_mut(&id) else {
            return;
        };
        for r in space.regions.isolate(range) {
            space.regions.remove(r.range.start());
            if let RegionKind::Shm { id: shm_id, .. } = r.kind {
                self.shm.detach(&mut self.machine, shm_id, &mut self.frames);
            }
        }
    }
}
