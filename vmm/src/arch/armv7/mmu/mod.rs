//! `ArchMmu`: one address space's short-descriptor translation tables.
//!
//! Every operation is *prepare then commit*: it first reads the tables, checks the whole request
//! and counts the L2 pages it will need, allocates all of them (giving them back if one
//! allocation fails), and only then writes descriptors. So an operation that returns an error has
//! changed no descriptor, no frame and no count.
//!
//! Hardware discipline (semantics.md section 13):
//! - a valid descriptor is never overwritten by another valid one: break-before-make (write
//!   fault, DSB, invalidate, DSB, write the new value);
//! - every descriptor that is cleared or narrowed is invalidated (`TLBIMVA` with the space's
//!   ASID for user spaces, `TLBIMVAA` for the kernel) before the operation returns and before
//!   any table page it used is freed;
//! - empty L2 tables are unlinked at once, and an L2 page is freed when none of its four tables
//!   is in use.
//!
//! The code is laid out by concept: this file holds the type and the public operations, each a
//! plan followed by a commit; `plan.rs` the prepare half, `commit.rs` the commit half,
//! `journal.rs` the rollback of a commit that finds less than its plan promised,
//! `walk.rs` reading translations back, `check.rs` the self-check, `tables.rs` the layout of the
//! tables and the bookkeeping beside them, `error.rs` the errors.

mod check;
mod commit;
mod error;
mod journal;
mod plan;
mod tables;
mod walk;

// The files below share these names (each starts with `use super::*`).
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::descriptor::{Domain, L1Descriptor, L2Descriptor};
use super::tlb::{TlbBatch, TlbReach, TlbScope};
use super::{Asid, AsidAllocator, MappingAttrs, MappingFlags, PageAttributes};
use crate::addr::{PAGE_SIZE, PageRange, PhysAddr, PhysFrame, VirtAddr, VirtPage};
use crate::machine::Machine;
use crate::phys::FrameAllocator;

pub use error::MapError;
use plan::{Chunk, GroupsNeeded, Reserved, Run, chunks};
use tables::{UsedCounts, frame_plus, page, page_addr};
pub use walk::{BlockSize, Translation};

/// First virtual address translated through TTBR1 (TTBCR.N = 2).
pub const TTBR1_BASE: VirtAddr = VirtAddr::new(0x4000_0000);

const ENTRIES_PER_L2: u32 = 256;
const L2_TABLE_BYTES: u32 = 1024;
const TABLES_PER_PAGE: u32 = 4;
const USER_L1_ENTRIES: u32 = TTBR1_BASE.as_u32() >> 20;
const KERNEL_L1_ENTRIES: u32 = 4096;
const KERNEL_L1_FRAMES: u32 = 4;

/// Which half of the address space an [`ArchMmu`] translates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpaceKind {
    /// The kernel: a 16 KiB L1 table in TTBR1, VA >= 1 GiB, global (nG = 0) mappings only.
    Kernel,
    /// A user space: a 4 KiB L1 table in TTBR0, VA < 1 GiB, user (nG = 1) mappings only.
    User,
}

/// The translation tables of one address space.
///
/// The tables live in frames from the pool and are read and written only through the
/// [`Machine`]. Alongside them the MMU keeps the number of valid entries of each L2 table (so an
/// empty table is found without scanning) and the number of L2 pages; [`ArchMmu::check`] proves
/// both agree with the table bytes.
#[derive(Debug)]
pub struct ArchMmu {
    kind: SpaceKind,
    l1: PhysFrame,
    asid: Asid,
    used: UsedCounts,
    l2_pages: u32,
    /// Local invalidates on one CPU, broadcast ones on several.
    reach: TlbReach,
}

impl ArchMmu {
    /// The same bookkeeping for the same tables, for a copy of the whole [`Vm`] with its
    /// machine (whose RAM holds the copy's own tables). Not `Clone`: two `ArchMmu`s over one
    /// machine's tables would each believe it owns them.
    pub(crate) fn snapshot(&self) -> Self {
        Self {
            kind: self.kind,
            l1: self.l1,
            asid: self.asid,
            used: self.used.clone(),
            l2_pages: self.l2_pages,
            reach: self.reach,
        }
    }
}

impl ArchMmu {
    /// A user space: a zeroed 4 KiB L1 table and the lowest free ASID; its invalidates have the
    /// allocator's reach.
    pub fn new_user<M: Machine>(
        m: &mut M,
        frames: &mut FrameAllocator,
        asids: &mut AsidAllocator,
    ) -> Result<Self, MapError> {
        // Check the ASID first so that a refusal leaves the frame pool untouched.
        if !asids.has_free() {
            return Err(MapError::NoAsid);
        }
        let l1 = frames.alloc_zeroed(m).map_err(|_| MapError::NoMemory)?;
        let asid = asids.alloc(m).map_err(|_| MapError::NoAsid)?;
        Ok(Self {
            kind: SpaceKind::User,
            l1,
            asid,
            used: UsedCounts::new(USER_L1_ENTRIES),
            l2_pages: 0,
            reach: asids.reach(),
        })
    }

    /// The kernel space: a zeroed, 16 KiB aligned, 16 KiB L1 table; ASID 0; global mappings;
    /// invalidates in `reach`.
    pub fn new_kernel<M: Machine>(
        m: &mut M,
        frames: &mut FrameAllocator,
        reach: TlbReach,
    ) -> Result<Self, MapError> {
        let l1 = frames
            .alloc_contiguous(m, KERNEL_L1_FRAMES)
            .map_err(|_| MapError::NoMemory)?;
        for i in 0..KERNEL_L1_FRAMES {
            m.zero_frame(frame_plus(l1, i)?);
        }
        Ok(Self {
            kind: SpaceKind::Kernel,
            l1,
            asid: Asid::KERNEL,
            used: UsedCounts::new(KERNEL_L1_ENTRIES),
            l2_pages: 0,
            reach,
        })
    }

    /// Kernel or user.
    #[must_use]
    pub fn kind(&self) -> SpaceKind {
        self.kind
    }

    /// The space's ASID (0 for the kernel).
    #[must_use]
    pub fn asid(&self) -> Asid {
        self.asid
    }

    /// Physical address of the L1 table (the TTBR0 or TTBR1 base).
    #[must_use]
    pub fn l1_table(&self) -> PhysAddr {
        self.l1.start()
    }

    /// Page-table pages held: the L1 frames plus the L2 pages.
    #[must_use]
    pub fn table_pages(&self) -> u32 {
        self.l1_frames() + self.l2_pages
    }

    /// The pages this space may map.
    #[must_use]
    pub fn window(&self) -> PageRange {
        let (first, end) = self.l1_window();
        VirtPage::from_number(first * ENTRIES_PER_L2)
            .and_then(|start| PageRange::new(start, (end - first) * ENTRIES_PER_L2))
            .expect("both windows are non-empty and end at or below 4 GiB")
    }

    /// Maps `range` to the frames starting at `frame`. A 1 MiB run whose virtual and physical
    /// starts are both 1 MiB aligned becomes a section; everything else small pages.
    pub fn map<M: Machine>(
        &mut self,
        m: &mut M,
        frames: &mut FrameAllocator,
        range: PageRange,
        frame: PhysFrame,
        attrs: MappingAttrs,
    ) -> Result<(), MapError> {
        self.check_range(range)?;
        self.check_flags(attrs.flags)?;
        if u64::from(frame.number()) + u64::from(range.count()) > u64::from(PhysFrame::COUNT) {
            return Err(MapError::PhysOutOfRange {
                start: frame.start(),
                pages: range.count(),
            });
        }
        let run = Run {
            offset: 0,
            frame,
            count: range.count(),
            attrs,
            section: true,
        };
        let mut needed = GroupsNeeded::default();
        self.plan_map(m, range.start(), &run, &mut needed)?;
        let mut reserved = Reserved::allocate(m, frames, needed.0.len())?;
        let done = self.journaled(m, &mut reserved, |mmu, j, r| {
            mmu.commit_map(j, range.start(), &run, r)
        });
        reserved.release(m, frames);
        done?;
        m.dsb();
        m.isb();
        Ok(())
    }

    /// Maps each `(page, frame)` of `entries` (strictly ascending pages) as a small page with
    /// `attrs`: all or nothing, like [`ArchMmu::map`]. For scattered frames (shm segments, a
    /// forked child's pages).
    pub fn map_each<M: Machine>(
        &mut self,
        m: &mut M,
        frames: &mut FrameAllocator,
        entries: &[(VirtPage, PhysFrame)],
        attrs: MappingAttrs,
    ) -> Result<(), MapError> {
        self.check_flags(attrs.flags)?;
        for (i, &(p, _)) in entries.iter().enumerate() {
            let one = PageRange::new(p, 1).ok_or(MapError::OutOfWindow {
                start: p.start(),
                pages: 1,
            })?;
            self.check_range(one)?;
            if i > 0 && entries[i - 1].0 >= p {
                return Err(MapError::NotAscending(p.start()));
            }
        }
        let run = |frame| Run {
            offset: 0,
            frame,
            count: 1,
            attrs,
            section: false,
        };
        let mut needed = GroupsNeeded::default();
        for &(p, f) in entries {
            self.plan_map(m, p, &run(f), &mut needed)?;
        }
        let mut reserved = Reserved::allocate(m, frames, needed.0.len())?;
        let done = self.journaled(m, &mut reserved, |mmu, j, r| {
            for &(p, f) in entries {
                mmu.commit_map(j, p, &run(f), r)?;
            }
            Ok(())
        });
        reserved.release(m, frames);
        done?;
        m.dsb();
        m.isb();
        Ok(())
    }

    /// Maps `range` to `targets` (one frame per page) as small pages with `attrs`, replacing
    /// whatever is mapped there (reported through `on_removed` after its TLB entries were
    /// invalidated), as one operation: all or nothing. No table is emptied on the way, so no
    /// table page is freed and allocated again (MAP_FIXED-style replacement, `SHM_REMAP`).
    pub fn replace_range<M: Machine, F: FnMut(VirtPage, PhysFrame)>(
        &mut self,
        m: &mut M,
        frames: &mut FrameAllocator,
        range: PageRange,
        targets: &[PhysFrame],
        attrs: MappingAttrs,
        mut on_removed: F,
    ) -> Result<(), MapError> {
        self.check_range(range)?;
        self.check_flags(attrs.flags)?;
        if targets.len() != range.count() as usize {
            return Err(MapError::LengthMismatch {
                pages: range.count(),
                frames: targets.len(),
            });
        }
        let mut needed = GroupsNeeded::default();
        self.plan_splits(m, range, None, &mut needed)?;
        for l1 in self.l1_span(range) {
            let (lo, hi) = Self::clip(range, l1);
            let becomes_table = match self.read_l1(m, l1) {
                L1Descriptor::Fault => true,
                L1Descriptor::Section { .. } => hi - lo == ENTRIES_PER_L2,
                L1Descriptor::PageTable { .. } | L1Descriptor::Supersection(_) => false,
            };
            if becomes_table && self.group_page(m, l1).is_none() {
                needed.add(l1 / TABLES_PER_PAGE);
            }
        }
        let mut reserved = Reserved::allocate(m, frames, needed.0.len())?;
        // Clear what is there (splitting sections only partly inside), invalidate, fill in.
        let pattrs = attrs.to_page_attributes();
        let done = self.journaled(m, &mut reserved, |mmu, j, reserved| {
            let mut batch = TlbBatch::new(mmu.scope());
            let mut gone = Vec::new();
            mmu.commit_clear(j, range, reserved, &mut batch, &mut |p, f| {
                gone.push((p, f))
            })?;
            batch.flush(j);
            for l1 in mmu.l1_span(range) {
                let (lo, hi) = Self::clip(range, l1);
                let (table, fresh) = mmu.table_for_insert(j, l1, reserved)?;
                for p in lo..hi {
                    let target = targets[(p - range.start().number()) as usize];
                    let desc = L2Descriptor::Small {
                        base: target.start(),
                        attrs: pattrs,
                    };
                    let pa = Self::l2_entry(table, p);
                    if fresh {
                        j.replace_word(pa, 0, desc.encode());
                    } else {
                        j.write_word(pa, desc.encode());
                    }
                }
                *mmu.used.get_mut(l1) += (hi - lo) as u16;
            }
            Ok(gone)
        });
        reserved.release(m, frames);
        let gone = done?;
        m.dsb();
        m.isb();
        for (p, f) in gone {
            on_removed(p, f);
        }
        Ok(())
    }

    /// Unmaps every mapped page of `range` (holes are fine) and returns how many were mapped.
    /// Part of a section is split into small pages first (which may need an L2 page).
    pub fn unmap<M: Machine>(
        &mut self,
        m: &mut M,
        frames: &mut FrameAllocator,
        range: PageRange,
    ) -> Result<u32, MapError> {
        let mut removed = 0;
        self.unmap_with(m, frames, range, |_, _| removed += 1)?;
        Ok(removed)
    }

    /// Like [`ArchMmu::unmap`], calling `on_removed(page, frame)` for each page unmapped, after
    /// its TLB entry has been invalidated.
    pub fn unmap_with<M: Machine, F: FnMut(VirtPage, PhysFrame)>(
        &mut self,
        m: &mut M,
        frames: &mut FrameAllocator,
        range: PageRange,
        mut on_removed: F,
    ) -> Result<(), MapError> {
        self.check_range(range)?;
        let mut needed = GroupsNeeded::default();
        self.plan_splits(m, range, None, &mut needed)?;
        let mut reserved = Reserved::allocate(m, frames, needed.0.len())?;
        let done = self.journaled(m, &mut reserved, |mmu, j, reserved| {
            let mut batch = TlbBatch::new(mmu.scope());
            let mut emptied = Vec::new();
            let mut gone = Vec::new();
            mmu.commit_unmap(j, range, reserved, &mut batch, &mut emptied, &mut |p, f| {
                gone.push((p, f))
            })?;
            batch.flush(j);
            Ok((gone, emptied))
        });
        let gone = self.settle(m, frames, reserved, done)?;
        for (p, f) in gone {
            on_removed(p, f);
        }
        Ok(())
    }

    /// Gives every mapped page of `range` the attributes `attrs` (holes are skipped). Part of a
    /// section is split first, when its attributes change. Changed entries go through
    /// break-before-make.
    pub fn protect<M: Machine>(
        &mut self,
        m: &mut M,
        frames: &mut FrameAllocator,
        range: PageRange,
        attrs: MappingAttrs,
    ) -> Result<(), MapError> {
        self.protect_runs(m, frames, None, &[(range, attrs)])
    }

    /// Does [`ArchMmu::protect`] for each `(range, attrs)` of `changes` (ascending, disjoint)
    /// as one operation: all or nothing. With `within` (mprotect's range, which holds every
    /// change) the sections only partly inside it are split first, whether or not their
    /// attributes change; a fork's copy-on-write downgrade of the parent passes `None`.
    pub fn protect_many<M: Machine>(
        &mut self,
        m: &mut M,
        frames: &mut FrameAllocator,
        within: Option<PageRange>,
        changes: &[(PageRange, MappingAttrs)],
    ) -> Result<(), MapError> {
        if let Some(within) = within {
            self.check_range(within)?;
            if let Some(&(outside, _)) = changes
                .iter()
                .find(|(r, _)| r.start() < within.start() || r.end_number() > within.end_number())
            {
                return Err(MapError::OutOfWindow {
                    start: outside.start_addr(),
                    pages: outside.count(),
                });
            }
        }
        self.protect_runs(m, frames, within, changes)
    }

    fn protect_runs<M: Machine>(
        &mut self,
        m: &mut M,
        frames: &mut FrameAllocator,
        within: Option<PageRange>,
        changes: &[(PageRange, MappingAttrs)],
    ) -> Result<(), MapError> {
        for (i, &(range, attrs)) in changes.iter().enumerate() {
            self.check_range(range)?;
            self.check_flags(attrs.flags)?;
            if i > 0 && changes[i - 1].0.end_number() > range.start().number() {
                return Err(MapError::NotAscending(range.start_addr()));
            }
        }
        let mut needed = GroupsNeeded::default();
        if let Some(within) = within {
            self.plan_splits(m, within, None, &mut needed)?;
        }
        for &(range, attrs) in changes {
            self.plan_splits(m, range, Some(attrs.to_page_attributes()), &mut needed)?;
        }
        let mut reserved = Reserved::allocate(m, frames, needed.0.len())?;
        let done = self.journaled(m, &mut reserved, |mmu, j, reserved| {
            if let Some(within) = within {
                mmu.commit_partial_splits(j, within, reserved)?;
            }
            for &(range, attrs) in changes {
                mmu.commit_protect(j, range, attrs.to_page_attributes(), reserved)?;
            }
            Ok(())
        });
        reserved.release(m, frames);
        done?;
        m.dsb();
        m.isb();
        Ok(())
    }

    /// Moves every mapped page of `from` to the same offset from `to`, keeping frames,
    /// attributes and block size (a section wholly inside `from` stays a section when its target
    /// is 1 MiB aligned; small pages stay small), and returns how many pages moved. The two ranges must not overlap, and the
    /// target pages of mapped source pages must be unmapped.
    pub fn move_pages<M: Machine>(
        &mut self,
        m: &mut M,
        frames: &mut FrameAllocator,
        from: PageRange,
        to: VirtPage,
    ) -> Result<u32, MapError> {
        self.check_range(from)?;
        let target = PageRange::new(to, from.count()).ok_or(MapError::OutOfWindow {
            start: to.start(),
            pages: from.count(),
        })?;
        self.check_range(target)?;
        if from.overlaps(target) {
            return Err(MapError::Overlap);
        }
        let runs = self.runs_of(m, from)?;
        let mut needed = GroupsNeeded::default();
        for r in &runs {
            let target = page(to.number() + r.offset)?;
            self.plan_map(m, target, r, &mut needed)?;
        }
        self.plan_splits(m, from, None, &mut needed)?;
        let mut reserved = Reserved::allocate(m, frames, needed.0.len())?;
        let done = self.journaled(m, &mut reserved, |mmu, j, reserved| {
            // Map the targets first so no L2 page is freed and then needed again.
            for r in &runs {
                let target = page(to.number() + r.offset)?;
                mmu.commit_map(j, target, r, reserved)?;
            }
            let mut batch = TlbBatch::new(mmu.scope());
            let mut emptied = Vec::new();
            mmu.commit_unmap(j, from, reserved, &mut batch, &mut emptied, &mut |_, _| {})?;
            batch.flush(j);
            Ok(((), emptied))
        });
        self.settle(m, frames, reserved, done)?;
        Ok(runs.iter().map(|r| r.count).sum())
    }

    /// Points a mapped page at another frame with new attributes (copy-on-write), by
    /// break-before-make. A page inside a section splits the section first.
    pub fn remap_page<M: Machine>(
        &mut self,
        m: &mut M,
        frames: &mut FrameAllocator,
        page_to_remap: VirtPage,
        frame: PhysFrame,
        attrs: MappingAttrs,
    ) -> Result<(), MapError> {
        let range = PageRange::new(page_to_remap, 1).ok_or(MapError::OutOfWindow {
            start: page_to_remap.start(),
            pages: 1,
        })?;
        self.check_range(range)?;
        self.check_flags(attrs.flags)?;
        if self.translate(m, page_to_remap)?.is_none() {
            return Err(MapError::NotMapped(page_to_remap.start()));
        }
        let mut needed = GroupsNeeded::default();
        self.plan_splits(m, range, None, &mut needed)?;
        let mut reserved = Reserved::allocate(m, frames, needed.0.len())?;
        let done = self.journaled(m, &mut reserved, |mmu, j, reserved| {
            let l1 = page_to_remap.number() / ENTRIES_PER_L2;
            let table = mmu.table_for_update(j, l1, reserved)?;
            let pa = Self::l2_entry(table, page_to_remap.number());
            let new = L2Descriptor::Small {
                base: frame.start(),
                attrs: attrs.to_page_attributes(),
            };
            j.write_word(pa, 0);
            let mut batch = TlbBatch::new(mmu.scope());
            batch.push(page_to_remap);
            batch.flush(j);
            j.rewrite_word(pa, new.encode());
            Ok(())
        });
        reserved.release(m, frames);
        done?;
        m.dsb();
        m.isb();
        Ok(())
    }

    /// Splits the sections that are only partly inside `range` (at most the first and the last),
    /// so that later changes inside `range` need no allocation. All or nothing.
    pub fn split_partial_sections<M: Machine>(
        &mut self,
        m: &mut M,
        frames: &mut FrameAllocator,
        range: PageRange,
    ) -> Result<(), MapError> {
        self.check_range(range)?;
        let mut needed = GroupsNeeded::default();
        self.plan_splits(m, range, None, &mut needed)?;
        let mut reserved = Reserved::allocate(m, frames, needed.0.len())?;
        let done = self.journaled(m, &mut reserved, |mmu, j, reserved| {
            mmu.commit_partial_splits(j, range, reserved)
        });
        reserved.release(m, frames);
        done?;
        m.dsb();
        m.isb();
        Ok(())
    }

    /// Like [`ArchMmu::move_pages`], but first clears every range of `clear` (which must
    /// contain the target and not overlap `from`), reporting what was there through
    /// `on_removed`, all in one operation: all or nothing. This is `mremap(MREMAP_FIXED)`:
    /// whatever the target overlaps is removed, the pages move, a shrinking source's tail goes.
    pub fn move_replacing<M: Machine, F: FnMut(VirtPage, PhysFrame)>(
        &mut self,
        m: &mut M,
        frames: &mut FrameAllocator,
        from: PageRange,
        to: VirtPage,
        clear: &[PageRange],
        mut on_removed: F,
    ) -> Result<u32, MapError> {
        self.check_range(from)?;
        let target = PageRange::new(to, from.count()).ok_or(MapError::OutOfWindow {
            start: to.start(),
            pages: from.count(),
        })?;
        self.check_range(target)?;
        for &c in clear {
            self.check_range(c)?;
            if c.overlaps(from) {
                return Err(MapError::Overlap);
            }
        }
        let inside_clear = |r: PageRange| {
            clear
                .iter()
                .any(|c| c.start() <= r.start() && c.end_number() >= r.end_number())
        };
        if from.overlaps(target) || !inside_clear(target) {
            return Err(MapError::Overlap);
        }
        let runs = self.runs_of(m, from)?;
        // Prepare: splits at the edges of every range, then the tables the targets need once
        // the clear ranges are empty.
        let mut needed = GroupsNeeded::default();
        for &c in clear {
            self.plan_splits(m, c, None, &mut needed)?;
        }
        self.plan_splits(m, from, None, &mut needed)?;
        // Target sections land on L1 entries that may hold a (then empty) table: those tables
        // are unlinked before the map, so they give their group no page. A whole source
        // section lands as a section only at a 1 MiB aligned target (the commit unlinks on
        // the same condition); elsewhere it lands as small pages and the table stays.
        let mut unlinked: Vec<u32> = Vec::new();
        for r in runs.iter().filter(|r| r.section) {
            let l1 = (to.number() + r.offset) / ENTRIES_PER_L2;
            if (to.number() + r.offset) % ENTRIES_PER_L2 == 0
                && matches!(self.read_l1(m, l1), L1Descriptor::PageTable { .. })
            {
                unlinked.push(l1);
            }
        }
        // A group all of whose tables are unlinked keeps its page for the commit to reuse (step
        // 2 below): a target of that group that needs a table takes it instead of a new page.
        let mut l1_now: Vec<(u32, bool)> = Vec::new();
        for &l1 in &unlinked {
            let first = l1 - l1 % TABLES_PER_PAGE;
            for j in first..first + TABLES_PER_PAGE {
                let linked = matches!(self.read_l1(m, j), L1Descriptor::PageTable { .. });
                l1_now.push((j, linked));
            }
        }
        let recyclable = |group: u32| {
            let entries = group * TABLES_PER_PAGE..(group + 1) * TABLES_PER_PAGE;
            unlinked.iter().any(|l1| entries.contains(l1))
                && l1_now
                    .iter()
                    .filter(|(j, _)| entries.contains(j))
                    .all(|&(j, linked)| !linked || unlinked.contains(&j))
        };
        let mut recycled = 0;
        for r in &runs {
            for chunk in chunks(page(to.number() + r.offset)?, r.frame, r.count, r.section) {
                let Chunk::Pages { l1, .. } = chunk else {
                    continue;
                };
                let mib =
                    PageRange::new(page(l1 * ENTRIES_PER_L2)?, ENTRIES_PER_L2).unwrap_or(target);
                // After the clear: a table stays a table, a section wholly cleared is a fault,
                // a section partly cleared was split into a table.
                let has_table = match self.read_l1(m, l1) {
                    L1Descriptor::PageTable { .. } => true,
                    L1Descriptor::Section { .. } => !inside_clear(mib),
                    L1Descriptor::Fault | L1Descriptor::Supersection(_) => false,
                };
                let first = l1 - l1 % TABLES_PER_PAGE;
                let group_has_page = (first..first + TABLES_PER_PAGE).any(|j| {
                    let mib_j = page(j * ENTRIES_PER_L2)
                        .ok()
                        .and_then(|p| PageRange::new(p, ENTRIES_PER_L2))
                        .unwrap_or(target);
                    match self.read_l1(m, j) {
                        L1Descriptor::PageTable { .. } => !unlinked.contains(&j),
                        // Split by the clear or at the source's edges: a table from then on.
                        L1Descriptor::Section { .. } => {
                            let partly = |r: PageRange| {
                                r.overlaps(mib_j)
                                    && !(r.start() <= mib_j.start()
                                        && r.end_number() >= mib_j.end_number())
                            };
                            (clear.iter().any(|c| c.overlaps(mib_j)) && !inside_clear(mib_j))
                                || partly(from)
                        }
                        _ => false,
                    }
                });
                if !has_table && !group_has_page {
                    let group = l1 / TABLES_PER_PAGE;
                    if !needed.0.contains(&group) && recyclable(group) {
                        recycled += 1;
                    }
                    needed.add(group);
                }
            }
        }
        // Splits (step 1) take their pages before step 2 recycles any: a recyclable group is
        // never one a split needs a page for (its tables are linked), so this is enough.
        let mut reserved = Reserved::allocate(m, frames, needed.0.len() - recycled)?;
        let done = self.journaled(m, &mut reserved, |mmu, j, reserved| {
            let mut gone = Vec::new();
            let mut emptied = Vec::new();
            // 1. Clear, keeping emptied tables linked for the targets; invalidate before reuse.
            let mut batch = TlbBatch::new(mmu.scope());
            for &c in clear {
                mmu.commit_clear(j, c, reserved, &mut batch, &mut |p, f| gone.push((p, f)))?;
            }
            // The source's partial sections are split now too, before any table is unlinked.
            mmu.commit_partial_splits(j, from, reserved)?;
            batch.flush(j);
            // 2. A target section over an emptied table: unlink the table (break-before-make).
            for r in runs.iter().filter(|r| r.section) {
                let l1 = (to.number() + r.offset) / ENTRIES_PER_L2;
                if let L1Descriptor::PageTable { table, .. } = mmu.read_l1(j, l1)
                    && (to.number() + r.offset) % ENTRIES_PER_L2 == 0
                {
                    mmu.write_l1(j, l1, L1Descriptor::Fault);
                    let mut b = TlbBatch::new(mmu.scope());
                    b.push(page(l1 * ENTRIES_PER_L2)?);
                    b.flush(j);
                    let p = PhysFrame::containing(table);
                    if mmu.group_page(j, l1).is_none() {
                        // The group links no table any more. Its page is all zeros (each table in
                        // it was emptied before it was unlinked, and the DSB above completed it):
                        // it joins the reserved pages for a target that needs one, or goes back
                        // with the unused ones.
                        emptied.retain(|&(_, q)| q != p);
                        mmu.l2_pages -= 1;
                        reserved.recycle(p);
                    } else {
                        emptied.push((l1, p));
                    }
                }
            }
            // 3. Map the targets, 4. clear the source.
            for r in &runs {
                mmu.commit_map(j, page(to.number() + r.offset)?, r, reserved)?;
            }
            let mut batch = TlbBatch::new(mmu.scope());
            mmu.commit_unmap(j, from, reserved, &mut batch, &mut emptied, &mut |_, _| {})?;
            // 5. Unlink the cleared tables nothing refilled.
            for &c in clear {
                for l1 in mmu.l1_span(c) {
                    if let L1Descriptor::PageTable { table, .. } = mmu.read_l1(j, l1)
                        && mmu.used.get(l1) == 0
                    {
                        mmu.write_l1(j, l1, L1Descriptor::Fault);
                        batch.push(page(l1 * ENTRIES_PER_L2)?);
                        emptied.push((l1, PhysFrame::containing(table)));
                    }
                }
            }
            batch.flush(j);
            Ok((gone, emptied))
        });
        let gone = self.settle(m, frames, reserved, done)?;
        for (p, f) in gone {
            on_removed(p, f);
        }
        Ok(runs.iter().map(|r| r.count).sum())
    }

    /// Tears the space down: invalidates its TLB entries (TLBIASID and frees the ASID for a user
    /// space, TLBIALL for the kernel), then frees every table page. It does not release the data
    /// frames still mapped: the owner of the mappings unmaps them first.
    pub fn destroy<M: Machine>(
        self,
        m: &mut M,
        frames: &mut FrameAllocator,
        asids: &mut AsidAllocator,
    ) {
        match self.kind {
            SpaceKind::User => {
                // Allocated by `new_user` and released only here: cannot fail.
                let _ = asids.release(m, self.asid);
            }
            SpaceKind::Kernel => {
                self.scope().invalidate_space(m);
                m.dsb();
                m.isb();
            }
        }
        for p in self.group_pages(m) {
            let _ = frames.free(m, p);
        }
        let _ = frames.free(m, self.l1);
    }

    /// The frames holding this space's tables: L1 frames first, then each L2 page.
    pub fn table_frames<M: Machine>(&self, m: &mut M) -> Vec<PhysFrame> {
        let mut out: Vec<PhysFrame> = (0..self.l1_frames())
            .filter_map(|i| frame_plus(self.l1, i).ok())
            .collect();
        out.extend(self.group_pages(m));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::MapError;
    use super::tables::{UsedCounts, nonzero};
    use alloc::vec;
    use alloc::vec::Vec;

    /// What a user-visible operation reports for each error: only a missing frame or ASID is
    /// exhaustion; anything else at that point is the vmm's own inconsistency.
    #[test]
    fn map_errors_become_enomem_or_the_internal_error() {
        use crate::errno::Errno;
        let va = crate::addr::VirtAddr::new(0x1000_0000);
        assert_eq!(MapError::NoMemory.errno(), Errno::ENOMEM);
        assert_eq!(MapError::NoAsid.errno(), Errno::ENOMEM);
        for e in [
            MapError::AlreadyMapped(va),
            MapError::NotMapped(va),
            MapError::Overlap,
            MapError::UnsupportedDescriptor {
                va,
                raw: 0x4000_0002,
            },
            MapError::Internal { what: "test", va },
        ] {
            assert_eq!(e.errno(), Errno::Internal, "{e}");
        }
        assert_eq!(
            alloc::format!(
                "{}",
                MapError::Internal {
                    what: "no table",
                    va
                }
            ),
            "internal inconsistency at 0x10000000: no table"
        );
    }

    /// Map errors say what went wrong (reports and the guest's FAIL lines quote them).
    #[test]
    fn map_errors_explain_themselves() {
        assert_eq!(
            alloc::format!("{}", MapError::NoMemory),
            "no frame for a page table"
        );
        assert_eq!(alloc::format!("{}", MapError::NoAsid), "no free ASID");
        assert_eq!(
            alloc::format!("{}", MapError::Overlap),
            "move source and target overlap"
        );
    }

    #[test]
    fn nonzero_finds_every_non_zero_element() {
        for len in [0usize, 1, 15, 16, 17, 40, 1024] {
            for hot in [
                vec![],
                vec![0],
                vec![15, 16],
                vec![3, 31, 32, 33],
                vec![len / 2],
            ] {
                let hot: Vec<usize> = hot.into_iter().filter(|&i| i < len).collect();
                let mut words = vec![0u32; len];
                for &i in &hot {
                    words[i] = 1 << (i % 32);
                }
                assert_eq!(nonzero(&words), hot, "len {len}");
                let counts: Vec<u16> = words.iter().map(|&w| u16::from(w != 0)).collect();
                assert_eq!(nonzero(&counts), hot, "len {len} (u16)");
            }
        }
    }

    /// The counts read as zeroes until the first is set, and only then take memory; after
    /// that they behave as an array.
    #[test]
    fn used_counts_are_zero_and_unallocated_until_the_first_count() {
        let mut used = UsedCounts::new(1024);
        assert_eq!((used.get(0), used.get(1023)), (0, 0));
        assert_eq!(used.nonzero_in(0..1024), Vec::<u32>::new());
        assert!(used.counts.is_empty(), "nothing allocated by reads");
        *used.get_mut(700) += 3;
        assert_eq!(used.counts.len(), 1024);
        assert_eq!((used.get(699), used.get(700)), (0, 3));
        assert_eq!(used.nonzero_in(0..1024), vec![700]);
        assert_eq!(used.nonzero_in(0..700), Vec::<u32>::new());
        assert_eq!(used.nonzero_in(700..701), vec![700]);
        *used.get_mut(700) -= 3;
        assert_eq!(used.nonzero_in(0..1024), Vec::<u32>::new());
    }
}
