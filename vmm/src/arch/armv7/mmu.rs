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

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use super::descriptor::{Domain, L1Descriptor, L2Descriptor};
use super::tlb::{TlbBatch, TlbScope};
use super::{Asid, AsidAllocator, MappingAttrs, MappingFlags, PageAttributes};
use crate::addr::{PAGE_SIZE, PageRange, PhysAddr, PhysFrame, VirtAddr, VirtPage};
use crate::errno::Errno;
use crate::machine::Machine;
use crate::phys::FrameAllocator;

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

/// Why an [`ArchMmu`] operation was refused. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// The virtual range is not inside this space's half of the address space.
    OutOfWindow {
        /// First page of the request.
        start: VirtAddr,
        /// Pages requested.
        pages: u32,
    },
    /// The physical range passes 4 GiB.
    PhysOutOfRange {
        /// First frame of the request.
        start: PhysAddr,
        /// Pages requested.
        pages: u32,
    },
    /// User spaces take only `USER` mappings and the kernel only non-`USER` ones.
    InvalidFlags(MappingFlags),
    /// A page of the target range is already mapped (mapping never replaces silently).
    AlreadyMapped(VirtAddr),
    /// The source and target of a move overlap.
    Overlap,
    /// The pages given one by one are not strictly ascending (this page repeats or goes back).
    NotAscending(VirtAddr),
    /// A replacement names another number of frames than the range has pages.
    LengthMismatch {
        /// Pages in the range.
        pages: u32,
        /// Frames given.
        frames: usize,
    },
    /// The page to remap is not mapped.
    NotMapped(VirtAddr),
    /// A page-table page (or the ASID for a new space) could not be allocated.
    NoMemory,
    /// All user ASIDs are in use.
    NoAsid,
    /// The tables hold a descriptor this crate never writes (supersection, large page or an
    /// attribute combination it does not produce).
    UnsupportedDescriptor {
        /// Address translated by it.
        va: VirtAddr,
        /// The raw descriptor.
        raw: u32,
    },
    /// The space's own state contradicts itself (a bug of this crate): a commit found less
    /// than its plan promised. Never a condition a caller can cause or recover from.
    Internal {
        /// What was found wrong.
        what: &'static str,
        /// The first address of the L1 entry concerned.
        va: VirtAddr,
    },
}

impl MapError {
    /// The errno a user-visible operation reports for this error: `ENOMEM` for a missing frame
    /// or ASID, [`Errno::Internal`] for anything else, which at that point is an
    /// inconsistency of the vmm's own (the operation checked its arguments before).
    #[must_use]
    pub const fn errno(self) -> Errno {
        match self {
            Self::NoMemory | Self::NoAsid => Errno::ENOMEM,
            _ => Errno::Internal,
        }
    }
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfWindow { start, pages } => {
                write!(
                    f,
                    "{pages} pages at {start} are outside this space's window"
                )
            }
            Self::PhysOutOfRange { start, pages } => {
                write!(
                    f,
                    "{pages} frames at {start} pass the end of the physical space"
                )
            }
            Self::InvalidFlags(flags) => write!(f, "flags {flags:?} do not fit this space"),
            Self::AlreadyMapped(va) => write!(f, "{va} is already mapped"),
            Self::Overlap => write!(f, "move source and target overlap"),
            Self::NotAscending(va) => write!(f, "page {va} does not ascend from the one before"),
            Self::LengthMismatch { pages, frames } => {
                write!(f, "{frames} frames given for {pages} pages")
            }
            Self::NotMapped(va) => write!(f, "{va} is not mapped"),
            Self::NoMemory => write!(f, "no frame for a page table"),
            Self::NoAsid => write!(f, "no free ASID"),
            Self::UnsupportedDescriptor { va, raw } => {
                write!(f, "unsupported descriptor {raw:#010x} translating {va}")
            }
            Self::Internal { what, va } => write!(f, "internal inconsistency at {va}: {what}"),
        }
    }
}

/// The size of the block a translation comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockSize {
    /// A 1 MiB section.
    Section,
    /// A 4 KiB small page.
    SmallPage,
}

/// What one page translates to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Translation {
    /// The frame the page maps.
    pub frame: PhysFrame,
    /// Permissions and memory type.
    pub attrs: MappingAttrs,
    /// Whether it comes from a section or a small page.
    pub block: BlockSize,
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
}

/// The number of valid entries of the L2 table under each L1 entry of the window, zero where
/// none is linked. The array is allocated at the first count: a space that never maps a small
/// page (a fresh spawn, a space of sections only) costs no 2 KiB of zeroes.
#[derive(Clone, Debug)]
struct UsedCounts {
    /// One count per L1 entry, or empty while every count is zero.
    counts: Vec<u16>,
    /// L1 entries of the window.
    entries: u32,
}

impl UsedCounts {
    /// All zero, for a window of `entries` L1 entries.
    fn new(entries: u32) -> Self {
        Self {
            counts: Vec::new(),
            entries,
        }
    }

    /// The count of L1 entry `l1`.
    fn get(&self, l1: u32) -> u16 {
        debug_assert!(l1 < self.entries, "L1 entry {l1} outside the window");
        self.counts.get(l1 as usize).copied().unwrap_or(0)
    }

    /// The count of L1 entry `l1`, to change (the array allocated if it was not).
    fn get_mut(&mut self, l1: u32) -> &mut u16 {
        if self.counts.is_empty() {
            self.counts = vec![0; self.entries as usize];
        }
        &mut self.counts[l1 as usize]
    }

    /// The L1 entries of `range` whose count is not zero, ascending.
    fn nonzero_in(&self, range: core::ops::Range<u32>) -> Vec<u32> {
        if self.counts.is_empty() {
            return Vec::new();
        }
        nonzero(&self.counts[range.start as usize..range.end as usize])
            .into_iter()
            .map(|i| range.start + i as u32)
            .collect()
    }
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
        }
    }
}

/// The indices of the non-zero elements of `words`, ascending. Zero runs are skipped 16
/// elements at a time (the OR of a chunk, which vectorizes): most of a window is faults.
fn nonzero<T>(words: &[T]) -> Vec<usize>
where
    T: Copy + Default + PartialEq + core::ops::BitOr<Output = T>,
{
    const CHUNK: usize = 16;
    let mut out = Vec::new();
    for (c, chunk) in words.chunks(CHUNK).enumerate() {
        if chunk.iter().fold(T::default(), |a, &w| a | w) == T::default() {
            continue;
        }
        for (j, w) in chunk.iter().enumerate() {
            if *w != T::default() {
                out.push(c * CHUNK + j);
            }
        }
    }
    out
}

/// L2 pages allocated by the prepare step and handed out by the commit step.
struct Reserved(Vec<PhysFrame>);

impl Reserved {
    /// All `n` pages or none: a refused request leaves the allocator exactly as it was (even
    /// the order of its free lists). The pages are zeroed and the zeroes made visible to the
    /// table walker (DSB) before any descriptor can point at them.
    fn allocate<M: Machine>(
        m: &mut M,
        frames: &mut FrameAllocator,
        n: usize,
    ) -> Result<Self, MapError> {
        let n = u32::try_from(n).map_err(|_| MapError::NoMemory)?;
        let mut got = frames
            .alloc_frames_zeroed(m, n)
            .map_err(|_| MapError::NoMemory)?;
        if n > 0 {
            m.dsb();
        }
        got.reverse();
        Ok(Self(got))
    }

    fn take(&mut self) -> Option<PhysFrame> {
        self.0.pop()
    }

    /// Gives back what the commit did not use (nothing, when the plan was exact).
    fn release<M: Machine>(self, m: &mut M, frames: &mut FrameAllocator) {
        for f in self.0 {
            let _ = frames.free(m, f);
        }
    }
}

/// The groups of four L1 entries that need a new L2 page, without duplicates.
#[derive(Default)]
struct GroupsNeeded(Vec<u32>);

impl GroupsNeeded {
    fn add(&mut self, group: u32) {
        if let Err(at) = self.0.binary_search(&group) {
            self.0.insert(at, group);
        }
    }
}

/// Pages mapped together: `count` pages (at `offset` in a move's source) mapping consecutive
/// frames from `frame` with the same attributes; `section` allows 1 MiB sections where aligned.
#[derive(Clone, Copy)]
struct Run {
    offset: u32,
    frame: PhysFrame,
    count: u32,
    attrs: MappingAttrs,
    section: bool,
}

/// One step of a mapping: a whole section, or a run of small pages inside one MiB.
enum Chunk {
    Section {
        l1: u32,
        va: VirtPage,
        frame: PhysFrame,
    },
    Pages {
        l1: u32,
        va: VirtPage,
        frame: PhysFrame,
        count: u32,
    },
}

fn chunks(
    va: VirtPage,
    frame: PhysFrame,
    count: u32,
    sections: bool,
) -> impl Iterator<Item = Chunk> {
    let mut done = 0u32;
    core::iter::from_fn(move || {
        if done >= count {
            return None;
        }
        let v = VirtPage::from_number(va.number() + done)?;
        let f = PhysFrame::from_number(frame.number() + done)?;
        let left = count - done;
        let l1 = v.number() / ENTRIES_PER_L2;
        if sections && v.is_section_aligned() && f.is_section_aligned() && left >= ENTRIES_PER_L2 {
            done += ENTRIES_PER_L2;
            Some(Chunk::Section {
                l1,
                va: v,
                frame: f,
            })
        } else {
            let n = left.min(ENTRIES_PER_L2 - v.number() % ENTRIES_PER_L2);
            done += n;
            Some(Chunk::Pages {
                l1,
                va: v,
                frame: f,
                count: n,
            })
        }
    })
}

fn page(number: u32) -> VirtPage {
    // Callers pass numbers below 2^20 (inside a window); fall back to page 0 rather than panic.
    VirtPage::from_number(number).unwrap_or_default()
}

fn frame_plus(frame: PhysFrame, n: u32) -> PhysFrame {
    frame.checked_add(n).unwrap_or(frame)
}

impl ArchMmu {
    /// A user space: a zeroed 4 KiB L1 table and the lowest free ASID.
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
        })
    }

    /// The kernel space: a zeroed, 16 KiB aligned, 16 KiB L1 table; ASID 0; global mappings.
    pub fn new_kernel<M: Machine>(
        m: &mut M,
        frames: &mut FrameAllocator,
    ) -> Result<Self, MapError> {
        let l1 = frames
            .alloc_contiguous(m, KERNEL_L1_FRAMES)
            .map_err(|_| MapError::NoMemory)?;
        for i in 0..KERNEL_L1_FRAMES {
            m.zero_frame(frame_plus(l1, i));
        }
        Ok(Self {
            kind: SpaceKind::Kernel,
            l1,
            asid: Asid::KERNEL,
            used: UsedCounts::new(KERNEL_L1_ENTRIES),
            l2_pages: 0,
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
        PageRange::new(page(first * ENTRIES_PER_L2), (end - first) * ENTRIES_PER_L2)
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
        self.commit_map(m, range.start(), &run, &mut reserved)?;
        reserved.release(m, frames);
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
        for &(p, f) in entries {
            self.commit_map(m, p, &run(f), &mut reserved)?;
        }
        reserved.release(m, frames);
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
        // Clear what is there (splitting sections only partly inside), then invalidate.
        let mut batch = TlbBatch::new(self.scope());
        let mut gone = Vec::new();
        self.commit_clear(m, range, &mut reserved, &mut batch, &mut |p, f| {
            gone.push((p, f))
        })?;
        batch.flush(m);
        // Fill in the new pages.
        let pattrs = attrs.to_page_attributes();
        for l1 in self.l1_span(range) {
            let (lo, hi) = Self::clip(range, l1);
            let table = self.table_for_insert(m, l1, &mut reserved)?;
            for p in lo..hi {
                let target = targets[(p - range.start().number()) as usize];
                let desc = L2Descriptor::Small {
                    base: target.start(),
                    attrs: pattrs,
                };
                m.write_word(Self::l2_entry(table, p), desc.encode());
            }
            *self.used.get_mut(l1) += (hi - lo) as u16;
        }
        reserved.release(m, frames);
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
        let mut batch = TlbBatch::new(self.scope());
        let mut emptied = Vec::new();
        let mut gone = Vec::new();
        self.commit_unmap(
            m,
            range,
            &mut reserved,
            &mut batch,
            &mut emptied,
            &mut |p, f| gone.push((p, f)),
        )?;
        batch.flush(m);
        self.free_emptied(m, frames, emptied);
        reserved.release(m, frames);
        for (p, f) in gone {
            on_removed(p, f);
        }
        Ok(())
    }

    /// Gives every mapped page of `range` the attributes `attrs` (holes are skipped). Part of a
    /// section is split first. Changed entries go through break-before-make.
    pub fn protect<M: Machine>(
        &mut self,
        m: &mut M,
        frames: &mut FrameAllocator,
        range: PageRange,
        attrs: MappingAttrs,
    ) -> Result<(), MapError> {
        self.check_range(range)?;
        self.check_flags(attrs.flags)?;
        let mut needed = GroupsNeeded::default();
        let new = attrs.to_page_attributes();
        self.plan_splits(m, range, Some(new), &mut needed)?;
        let mut reserved = Reserved::allocate(m, frames, needed.0.len())?;
        // Each pass changes only its own L1 entry, so the entries can be read up front.
        let mut l2 = [0u32; ENTRIES_PER_L2 as usize];
        for (l1, descriptor) in self.valid_l1s(m, range) {
            let (lo, hi) = Self::clip(range, l1);
            match descriptor {
                L1Descriptor::Fault | L1Descriptor::Supersection(_) => {}
                // Already as asked: no change, so no split either (the plan reserved none).
                L1Descriptor::Section { attrs: old, .. } if old == new => {}
                L1Descriptor::Section {
                    base,
                    domain,
                    ns,
                    pxn,
                    ..
                } if hi - lo == ENTRIES_PER_L2 => {
                    let desc = L1Descriptor::Section {
                        base,
                        attrs: new,
                        domain,
                        ns,
                        pxn,
                    };
                    self.break_before_make_l1(m, l1, desc);
                }
                L1Descriptor::Section { .. } | L1Descriptor::PageTable { .. } => {
                    let table = self.table_for_update(m, l1, &mut reserved)?;
                    let mut changed = Vec::new();
                    // Read once: each entry is written only after it was read.
                    let words = &mut l2[..(hi - lo) as usize];
                    m.read_words(Self::l2_entry(table, lo), words);
                    for (p, &raw) in (lo..hi).zip(words.iter()) {
                        let pa = Self::l2_entry(table, p);
                        if let L2Descriptor::Small { base, attrs: old } = L2Descriptor::decode(raw)
                            && old != new
                        {
                            m.write_word(pa, 0);
                            changed.push((
                                pa,
                                L2Descriptor::Small { base, attrs: new }.encode(),
                                p,
                            ));
                        }
                    }
                    if !changed.is_empty() {
                        let mut batch = TlbBatch::new(self.scope());
                        for &(_, _, p) in &changed {
                            batch.push(page(p));
                        }
                        batch.flush(m);
                        for (pa, raw, _) in changed {
                            m.write_word(pa, raw);
                        }
                    }
                }
            }
        }
        reserved.release(m, frames);
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
            let target = page(to.number() + r.offset);
            self.plan_map(m, target, r, &mut needed)?;
        }
        self.plan_splits(m, from, None, &mut needed)?;
        let mut reserved = Reserved::allocate(m, frames, needed.0.len())?;
        // Map the targets first so no L2 page is freed and then needed again.
        for r in &runs {
            let target = page(to.number() + r.offset);
            self.commit_map(m, target, r, &mut reserved)?;
        }
        let mut batch = TlbBatch::new(self.scope());
        let mut emptied = Vec::new();
        self.commit_unmap(
            m,
            from,
            &mut reserved,
            &mut batch,
            &mut emptied,
            &mut |_, _| {},
        )?;
        batch.flush(m);
        self.free_emptied(m, frames, emptied);
        reserved.release(m, frames);
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
        let l1 = page_to_remap.number() / ENTRIES_PER_L2;
        let table = self.table_for_update(m, l1, &mut reserved)?;
        let pa = Self::l2_entry(table, page_to_remap.number());
        let new = L2Descriptor::Small {
            base: frame.start(),
            attrs: attrs.to_page_attributes(),
        };
        m.write_word(pa, 0);
        let mut batch = TlbBatch::new(self.scope());
        batch.push(page_to_remap);
        batch.flush(m);
        m.write_word(pa, new.encode());
        reserved.release(m, frames);
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
        self.commit_partial_splits(m, range, &mut reserved)?;
        reserved.release(m, frames);
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
        // are unlinked before the map, so they give their group no page.
        let mut unlinked: Vec<u32> = Vec::new();
        for r in runs.iter().filter(|r| r.section) {
            let l1 = (to.number() + r.offset) / ENTRIES_PER_L2;
            if matches!(self.read_l1(m, l1), L1Descriptor::PageTable { .. }) {
                unlinked.push(l1);
            }
        }
        for r in &runs {
            for chunk in chunks(page(to.number() + r.offset), r.frame, r.count, r.section) {
                let Chunk::Pages { l1, .. } = chunk else {
                    continue;
                };
                let mib =
                    PageRange::new(page(l1 * ENTRIES_PER_L2), ENTRIES_PER_L2).unwrap_or(target);
                // After the clear: a table stays a table, a section wholly cleared is a fault,
                // a section partly cleared was split into a table.
                let has_table = match self.read_l1(m, l1) {
                    L1Descriptor::PageTable { .. } => true,
                    L1Descriptor::Section { .. } => !inside_clear(mib),
                    L1Descriptor::Fault | L1Descriptor::Supersection(_) => false,
                };
                let first = l1 - l1 % TABLES_PER_PAGE;
                let group_has_page = (first..first + TABLES_PER_PAGE).any(|j| {
                    let mib_j =
                        PageRange::new(page(j * ENTRIES_PER_L2), ENTRIES_PER_L2).unwrap_or(target);
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
                    needed.add(l1 / TABLES_PER_PAGE);
                }
            }
        }
        let mut reserved = Reserved::allocate(m, frames, needed.0.len())?;
        let mut gone = Vec::new();
        let mut emptied = Vec::new();
        // 1. Clear, keeping emptied tables linked for the targets; invalidate before reuse.
        let mut batch = TlbBatch::new(self.scope());
        for &c in clear {
            self.commit_clear(m, c, &mut reserved, &mut batch, &mut |p, f| {
                gone.push((p, f))
            })?;
        }
        // The source's partial sections are split now too, before any table is unlinked.
        self.commit_partial_splits(m, from, &mut reserved)?;
        batch.flush(m);
        // 2. A target section over an emptied table: unlink the table (break-before-make).
        for r in runs.iter().filter(|r| r.section) {
            let l1 = (to.number() + r.offset) / ENTRIES_PER_L2;
            if let L1Descriptor::PageTable { table, .. } = self.read_l1(m, l1)
                && (to.number() + r.offset) % ENTRIES_PER_L2 == 0
            {
                self.write_l1(m, l1, L1Descriptor::Fault);
                let mut b = TlbBatch::new(self.scope());
                b.push(page(l1 * ENTRIES_PER_L2));
                b.flush(m);
                emptied.push((l1, PhysFrame::containing(table)));
            }
        }
        // 3. Map the targets, 4. clear the source.
        for r in &runs {
            self.commit_map(m, page(to.number() + r.offset), r, &mut reserved)?;
        }
        let mut batch = TlbBatch::new(self.scope());
        self.commit_unmap(
            m,
            from,
            &mut reserved,
            &mut batch,
            &mut emptied,
            &mut |_, _| {},
        )?;
        // 5. Unlink the cleared tables nothing refilled.
        for &c in clear {
            for l1 in self.l1_span(c) {
                if let L1Descriptor::PageTable { table, .. } = self.read_l1(m, l1)
                    && self.used.get(l1) == 0
                {
                    self.write_l1(m, l1, L1Descriptor::Fault);
                    batch.push(page(l1 * ENTRIES_PER_L2));
                    emptied.push((l1, PhysFrame::containing(table)));
                }
            }
        }
        batch.flush(m);
        self.free_emptied(m, frames, emptied);
        reserved.release(m, frames);
        for (p, f) in gone {
            on_removed(p, f);
        }
        Ok(runs.iter().map(|r| r.count).sum())
    }

    /// What `va` translates to, or `None` when it is not mapped.
    pub fn query<M: Machine>(
        &self,
        m: &mut M,
        va: VirtAddr,
    ) -> Result<Option<Translation>, MapError> {
        let p = VirtPage::containing(va);
        self.check_range(PageRange::new(p, 1).ok_or(MapError::OutOfWindow {
            start: va,
            pages: 1,
        })?)?;
        self.translate(m, p)
    }

    /// Every mapped page in ascending order (sections expanded to their 256 pages).
    pub fn mappings<M: Machine>(
        &self,
        m: &mut M,
    ) -> Result<Vec<(VirtPage, Translation)>, MapError> {
        self.mappings_in(m, self.window())
    }

    /// The mapped pages of `range` (clipped to the window) in ascending order. The non-zero L1
    /// entries of the range are read in one [`Machine::read_nonzero_words`], then the part of
    /// each L2 table the range covers in one [`Machine::read_words`].
    pub fn mappings_in<M: Machine>(
        &self,
        m: &mut M,
        range: PageRange,
    ) -> Result<Vec<(VirtPage, Translation)>, MapError> {
        let mut out = Vec::new();
        let window = self.window();
        if !window.overlaps(range) {
            return Ok(out);
        }
        let lo = range.start().number().max(window.start().number());
        let hi = range.end_number().min(window.end_number());
        let Some(clipped) = PageRange::new(page(lo), hi - lo) else {
            return Ok(out);
        };
        let mut l2 = [0u32; ENTRIES_PER_L2 as usize];
        let mut decoded = None;
        for (l1, descriptor) in self.valid_l1s(m, clipped) {
            if descriptor == L1Descriptor::Fault {
                continue;
            }
            let (first, end) = Self::clip(clipped, l1);
            let words = &mut l2[..(end - first) as usize];
            if let L1Descriptor::PageTable { table, .. } = descriptor {
                m.read_words(Self::l2_entry(table, first), words);
            }
            for (p, &raw) in (first..end).zip(words.iter()) {
                if let Some(t) = Self::translation(descriptor, raw, page(p), &mut decoded)? {
                    out.push((page(p), t));
                }
            }
        }
        Ok(out)
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
                m.tlb_invalidate_all();
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
            .map(|i| frame_plus(self.l1, i))
            .collect();
        out.extend(self.group_pages(m));
        out
    }

    /// Checks the tables against the MMU's bookkeeping and the crate's own rules: entries outside
    /// the window are faults; every L2 table sits at its slot of its group's page and all tables
    /// of a group share one page; no L2 table is empty; the valid-entry counts and the L2 page
    /// count match; every descriptor decodes to attributes this space may hold.
    pub fn check<M: Machine>(&self, m: &mut M) -> Result<(), String> {
        let (first, end) = self.l1_window();
        // Each L1 entry is read once: those outside the window here, the others below.
        for outside in [0..first, end..self.l1_entries()] {
            for (l1, raw) in self.nonzero_l1_words(m, outside) {
                let d = L1Descriptor::decode(raw);
                if d.is_valid() {
                    return Err(format!("L1[{l1}] outside the window is {d:?}"));
                }
            }
        }
        let window = self.nonzero_l1_words(m, first..end);
        let raw_l1 = |l1: u32| {
            window
                .binary_search_by_key(&l1, |&(i, _)| i)
                .map_or(0, |k| window[k].1)
        };
        let mut l2 = [0u32; ENTRIES_PER_L2 as usize];
        let mut pages = 0;
        // Only groups with a non-zero entry or count need a look: four zero entries counting
        // nothing are four faults, as they should be.
        let mut groups: Vec<u32> = window
            .iter()
            .map(|&(l1, _)| l1)
            .chain(self.used.nonzero_in(first..end))
            .map(|l1| l1 / TABLES_PER_PAGE * TABLES_PER_PAGE)
            .collect();
        groups.sort_unstable();
        groups.dedup();
        for group_first in groups {
            let mut group_page = None;
            for l1 in group_first..group_first + TABLES_PER_PAGE {
                let va = page(l1 * ENTRIES_PER_L2).start();
                match L1Descriptor::decode(raw_l1(l1)) {
                    L1Descriptor::Fault => {
                        if self.used.get(l1) != 0 {
                            return Err(format!(
                                "L1[{l1}] is a fault but counts {} entries",
                                self.used.get(l1)
                            ));
                        }
                    }
                    L1Descriptor::Supersection(raw) => {
                        return Err(format!("L1[{l1}] is a supersection {raw:#x}"));
                    }
                    L1Descriptor::Section { attrs, domain, .. } => {
                        self.check_attrs(va, attrs, domain)?;
                        if self.used.get(l1) != 0 {
                            return Err(format!(
                                "section L1[{l1}] counts {} entries",
                                self.used.get(l1)
                            ));
                        }
                    }
                    L1Descriptor::PageTable {
                        table,
                        domain,
                        ns,
                        pxn,
                    } => {
                        if domain != Domain::ZERO || ns || pxn {
                            return Err(format!(
                                "L1[{l1}] page table has domain {domain:?} ns {ns} pxn {pxn}"
                            ));
                        }
                        let this_page = PhysFrame::containing(table);
                        if table.as_u32() % PAGE_SIZE != (l1 % TABLES_PER_PAGE) * L2_TABLE_BYTES {
                            return Err(format!("L1[{l1}] table {table} is not at its slot"));
                        }
                        match group_page {
                            None => group_page = Some(this_page),
                            Some(g) if g != this_page => {
                                return Err(format!(
                                    "L1[{l1}] table {table} is not in its group's page {g:?}"
                                ));
                            }
                            Some(_) => {}
                        }
                        let mut valid = 0u32;
                        m.read_words(table, &mut l2);
                        for (p, &raw) in (l1 * ENTRIES_PER_L2..).zip(l2.iter()) {
                            match L2Descriptor::decode(raw) {
                                L2Descriptor::Fault => {}
                                L2Descriptor::Small { attrs, .. } => {
                                    self.check_attrs(page(p).start(), attrs, Domain::ZERO)?;
                                    valid += 1;
                                }
                                L2Descriptor::Large { .. } => {
                                    return Err(format!("large page at {:?}", page(p)));
                                }
                            }
                        }
                        if valid == 0 {
                            return Err(format!("L1[{l1}] points at an empty L2 table"));
                        }
                        if valid != u32::from(self.used.get(l1)) {
                            return Err(format!(
                                "L1[{l1}] has {valid} valid entries but counts {}",
                                self.used.get(l1)
                            ));
                        }
                    }
                }
            }
            pages += u32::from(group_page.is_some());
        }
        if pages != self.l2_pages {
            return Err(format!(
                "{pages} L2 pages in the tables but {} counted",
                self.l2_pages
            ));
        }
        Ok(())
    }

    /// Runs of consecutive present pages of `from` with consecutive frames and equal
    /// attributes. A section wholly inside `from` is a run of its own and may stay a section
    /// when moved to a 1 MiB aligned target; every other page stays a small page.
    fn runs_of<M: Machine>(&self, m: &mut M, from: PageRange) -> Result<Vec<Run>, MapError> {
        let mut runs: Vec<Run> = Vec::new();
        for (offset, p) in from.pages().enumerate() {
            let Some(t) = self.translate(m, p)? else {
                continue;
            };
            let offset = offset as u32;
            let first_of_section = p.number() - p.number() % ENTRIES_PER_L2;
            let whole_section = t.block == BlockSize::Section
                && from.contains(page(first_of_section))
                && from.end_number() >= first_of_section + ENTRIES_PER_L2;
            if let Some(last) = runs.last_mut()
                && last.offset + last.count == offset
                && last.frame.checked_add(last.count) == Some(t.frame)
                && last.attrs == t.attrs
                && last.section == whole_section
                && !(whole_section && p.number() == first_of_section)
            {
                last.count += 1;
                continue;
            }
            runs.push(Run {
                offset,
                frame: t.frame,
                count: 1,
                attrs: t.attrs,
                section: whole_section,
            });
        }
        Ok(runs)
    }

    // ---------------------------------------------------------------- prepare

    fn plan_map<M: Machine>(
        &self,
        m: &mut M,
        target: VirtPage,
        run: &Run,
        needed: &mut GroupsNeeded,
    ) -> Result<(), MapError> {
        let Run {
            frame,
            count,
            section: sections,
            ..
        } = *run;
        let va = target;
        for chunk in chunks(va, frame, count, sections) {
            match chunk {
                Chunk::Section { l1, va, .. } => match self.read_l1(m, l1) {
                    L1Descriptor::Fault => {}
                    L1Descriptor::PageTable { table, .. } => {
                        let first = (va.number()..va.number() + ENTRIES_PER_L2)
                            .find(|&p| {
                                L2Descriptor::decode(m.read_word(Self::l2_entry(table, p)))
                                    .is_valid()
                            })
                            .unwrap_or(va.number());
                        return Err(MapError::AlreadyMapped(page(first).start()));
                    }
                    _ => return Err(MapError::AlreadyMapped(va.start())),
                },
                Chunk::Pages { l1, va, count, .. } => match self.read_l1(m, l1) {
                    L1Descriptor::Fault => {
                        if self.group_page(m, l1).is_none() {
                            needed.add(l1 / TABLES_PER_PAGE);
                        }
                    }
                    L1Descriptor::PageTable { table, .. } => {
                        for p in va.number()..va.number() + count {
                            if L2Descriptor::decode(m.read_word(Self::l2_entry(table, p)))
                                .is_valid()
                            {
                                return Err(MapError::AlreadyMapped(page(p).start()));
                            }
                        }
                    }
                    _ => return Err(MapError::AlreadyMapped(va.start())),
                },
            }
        }
        Ok(())
    }

    /// Sections only partly inside `range` must be split (unless `keep` says the section already
    /// has the attributes a protect asks for); note the groups that then need a page.
    fn plan_splits<M: Machine>(
        &self,
        m: &mut M,
        range: PageRange,
        keep: Option<PageAttributes>,
        needed: &mut GroupsNeeded,
    ) -> Result<(), MapError> {
        for (l1, descriptor) in self.valid_l1s(m, range) {
            let (lo, hi) = Self::clip(range, l1);
            match descriptor {
                L1Descriptor::Supersection(raw) => {
                    return Err(MapError::UnsupportedDescriptor {
                        va: page(lo).start(),
                        raw,
                    });
                }
                L1Descriptor::Section { attrs, .. }
                    if hi - lo < ENTRIES_PER_L2
                        && Some(attrs) != keep
                        && self.group_page(m, l1).is_none() =>
                {
                    needed.add(l1 / TABLES_PER_PAGE);
                }
                _ => {}
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------- commit

    fn commit_map<M: Machine>(
        &mut self,
        m: &mut M,
        target: VirtPage,
        run: &Run,
        reserved: &mut Reserved,
    ) -> Result<(), MapError> {
        let Run {
            frame,
            count,
            attrs,
            section: sections,
            ..
        } = *run;
        let va = target;
        let pattrs = attrs.to_page_attributes();
        for chunk in chunks(va, frame, count, sections) {
            match chunk {
                Chunk::Section { l1, frame, .. } => {
                    let desc = L1Descriptor::Section {
                        base: frame.start(),
                        attrs: pattrs,
                        domain: Domain::ZERO,
                        ns: false,
                        pxn: false,
                    };
                    self.write_l1(m, l1, desc);
                }
                Chunk::Pages {
                    l1,
                    va,
                    frame,
                    count,
                } => {
                    let table = self.table_for_insert(m, l1, reserved)?;
                    for i in 0..count {
                        let desc = L2Descriptor::Small {
                            base: frame_plus(frame, i).start(),
                            attrs: pattrs,
                        };
                        m.write_word(Self::l2_entry(table, va.number() + i), desc.encode());
                    }
                    *self.used.get_mut(l1) += count as u16;
                }
            }
        }
        Ok(())
    }

    fn commit_unmap<M: Machine>(
        &mut self,
        m: &mut M,
        range: PageRange,
        reserved: &mut Reserved,
        batch: &mut TlbBatch,
        emptied: &mut Vec<(u32, PhysFrame)>,
        on_removed: &mut dyn FnMut(VirtPage, PhysFrame),
    ) -> Result<(), MapError> {
        let first_new = emptied.len();
        self.clear_entries(m, range, reserved, batch, emptied, on_removed)?;
        // Unlink emptied tables only now: a split later in the pass may still need their page.
        // The per-page invalidates of each such MiB also drop any cached L1 entry.
        for &(l1, _) in &emptied[first_new..] {
            self.write_l1(m, l1, L1Descriptor::Fault);
        }
        Ok(())
    }

    /// Clears the mapped pages of `range`, splitting sections partly inside; notes the tables
    /// that became empty in `emptied` but leaves them linked.
    fn clear_entries<M: Machine>(
        &mut self,
        m: &mut M,
        range: PageRange,
        reserved: &mut Reserved,
        batch: &mut TlbBatch,
        emptied: &mut Vec<(u32, PhysFrame)>,
        on_removed: &mut dyn FnMut(VirtPage, PhysFrame),
    ) -> Result<(), MapError> {
        // Each pass changes only its own L1 entry, so the entries can be read up front.
        let mut l2 = [0u32; ENTRIES_PER_L2 as usize];
        for (l1, descriptor) in self.valid_l1s(m, range) {
            let (lo, hi) = Self::clip(range, l1);
            match descriptor {
                L1Descriptor::Fault | L1Descriptor::Supersection(_) => {}
                L1Descriptor::Section { base, .. } if hi - lo == ENTRIES_PER_L2 => {
                    self.write_l1(m, l1, L1Descriptor::Fault);
                    batch.push(page(lo));
                    let first = PhysFrame::containing(base);
                    for i in 0..ENTRIES_PER_L2 {
                        on_removed(page(lo + i), frame_plus(first, i));
                    }
                }
                L1Descriptor::Section { .. } | L1Descriptor::PageTable { .. } => {
                    let table = self.table_for_update(m, l1, reserved)?;
                    // Read once: each entry is written only after it was read.
                    let words = &mut l2[..(hi - lo) as usize];
                    m.read_words(Self::l2_entry(table, lo), words);
                    for (p, &raw) in (lo..hi).zip(words.iter()) {
                        let pa = Self::l2_entry(table, p);
                        let frame = match L2Descriptor::decode(raw) {
                            L2Descriptor::Fault => continue,
                            L2Descriptor::Small { base, .. } => PhysFrame::containing(base),
                            L2Descriptor::Large { base, .. } => {
                                frame_plus(PhysFrame::containing(base), p % 16)
                            }
                        };
                        m.write_word(pa, 0);
                        batch.push(page(p));
                        let count = self.used.get_mut(l1);
                        *count = count.saturating_sub(1);
                        on_removed(page(p), frame);
                    }
                    if self.used.get(l1) == 0 {
                        emptied.push((l1, PhysFrame::containing(table)));
                    }
                }
            }
        }
        Ok(())
    }

    /// Clears every mapped page of `range` (splitting sections partly inside) without unlinking
    /// tables that become empty.
    fn commit_clear<M: Machine>(
        &mut self,
        m: &mut M,
        range: PageRange,
        reserved: &mut Reserved,
        batch: &mut TlbBatch,
        on_removed: &mut dyn FnMut(VirtPage, PhysFrame),
    ) -> Result<(), MapError> {
        let mut emptied = Vec::new();
        self.clear_entries(m, range, reserved, batch, &mut emptied, on_removed)
    }

    /// Splits the sections only partly inside `range` (their pages were reserved).
    fn commit_partial_splits<M: Machine>(
        &mut self,
        m: &mut M,
        range: PageRange,
        reserved: &mut Reserved,
    ) -> Result<(), MapError> {
        for l1 in self.l1_span(range) {
            let (lo, hi) = Self::clip(range, l1);
            if hi - lo < ENTRIES_PER_L2
                && matches!(self.read_l1(m, l1), L1Descriptor::Section { .. })
            {
                self.table_for_update(m, l1, reserved)?;
            }
        }
        Ok(())
    }

    /// Frees the L2 pages of emptied tables whose group has no table left. Call after the TLB
    /// batch is flushed.
    fn free_emptied<M: Machine>(
        &mut self,
        m: &mut M,
        frames: &mut FrameAllocator,
        emptied: Vec<(u32, PhysFrame)>,
    ) {
        for (l1, p) in emptied {
            if self.group_page(m, l1).is_none() && frames.free(m, p).is_ok() {
                self.l2_pages -= 1;
            }
        }
    }

    /// The L2 table for a fault L1 entry about to receive pages: the group's page if it has one,
    /// else a reserved page.
    fn table_for_insert<M: Machine>(
        &mut self,
        m: &mut M,
        l1: u32,
        reserved: &mut Reserved,
    ) -> Result<PhysAddr, MapError> {
        if let L1Descriptor::PageTable { table, .. } = self.read_l1(m, l1) {
            return Ok(table);
        }
        let group = match self.group_page(m, l1) {
            Some(p) => p,
            None => {
                let p = reserved.take().ok_or(MapError::Internal {
                    what: "the plan reserved no L2 page for this entry",
                    va: page(l1 * ENTRIES_PER_L2).start(),
                })?;
                self.l2_pages += 1;
                p
            }
        };
        let table = Self::slot(group, l1);
        self.write_l1(
            m,
            l1,
            L1Descriptor::PageTable {
                table,
                domain: Domain::ZERO,
                ns: false,
                pxn: false,
            },
        );
        Ok(table)
    }

    /// The L2 table of an L1 entry that is a page table or a section (split first).
    fn table_for_update<M: Machine>(
        &mut self,
        m: &mut M,
        l1: u32,
        reserved: &mut Reserved,
    ) -> Result<PhysAddr, MapError> {
        let internal = |what| MapError::Internal {
            what,
            va: page(l1 * ENTRIES_PER_L2).start(),
        };
        match self.read_l1(m, l1) {
            L1Descriptor::PageTable { table, .. } => Ok(table),
            L1Descriptor::Section { base, attrs, .. } => {
                let group = match self.group_page(m, l1) {
                    Some(p) => p,
                    None => match reserved.take() {
                        Some(p) => {
                            self.l2_pages += 1;
                            p
                        }
                        None => {
                            return Err(internal(
                                "the plan reserved no L2 page to split this section",
                            ));
                        }
                    },
                };
                let table = Self::slot(group, l1);
                let first = PhysFrame::containing(base);
                for i in 0..ENTRIES_PER_L2 {
                    let desc = L2Descriptor::Small {
                        base: frame_plus(first, i).start(),
                        attrs,
                    };
                    m.write_word(
                        Self::l2_entry(table, l1 * ENTRIES_PER_L2 + i),
                        desc.encode(),
                    );
                }
                *self.used.get_mut(l1) = ENTRIES_PER_L2 as u16;
                let desc = L1Descriptor::PageTable {
                    table,
                    domain: Domain::ZERO,
                    ns: false,
                    pxn: false,
                };
                self.break_before_make_l1(m, l1, desc);
                Ok(table)
            }
            L1Descriptor::Fault | L1Descriptor::Supersection(_) => Err(internal(
                "a page expected here has neither a table nor a section",
            )),
        }
    }

    /// Replaces a valid L1 entry: fault, DSB, invalidate, DSB, new value.
    fn break_before_make_l1<M: Machine>(&mut self, m: &mut M, l1: u32, new: L1Descriptor) {
        self.write_l1(m, l1, L1Descriptor::Fault);
        let mut batch = TlbBatch::new(self.scope());
        batch.push(page(l1 * ENTRIES_PER_L2));
        batch.flush(m);
        self.write_l1(m, l1, new);
    }

    // ---------------------------------------------------------------- lookup helpers

    fn translate<M: Machine>(
        &self,
        m: &mut M,
        p: VirtPage,
    ) -> Result<Option<Translation>, MapError> {
        let l1 = p.number() / ENTRIES_PER_L2;
        let descriptor = self.read_l1(m, l1);
        self.translate_under(m, descriptor, p)
    }

    /// [`Self::translate`] with the page's L1 entry already read.
    fn translate_under<M: Machine>(
        &self,
        m: &mut M,
        descriptor: L1Descriptor,
        p: VirtPage,
    ) -> Result<Option<Translation>, MapError> {
        let l2 = match descriptor {
            L1Descriptor::PageTable { table, .. } => m.read_word(Self::l2_entry(table, p.number())),
            _ => 0,
        };
        Self::translation(descriptor, l2, p, &mut None)
    }

    /// The translation of `p` from its L1 descriptor and, under a page table, its L2 word
    /// (`l2` is ignored otherwise). `decoded` remembers the last attributes decoded: the
    /// pages of a walk mostly share them, and decoding checks the exact inverse each time.
    fn translation(
        descriptor: L1Descriptor,
        l2: u32,
        p: VirtPage,
        decoded: &mut Option<(PageAttributes, MappingAttrs)>,
    ) -> Result<Option<Translation>, MapError> {
        let va = p.start();
        let (frame, attrs, block) = match descriptor {
            L1Descriptor::Fault => return Ok(None),
            L1Descriptor::Supersection(raw) => {
                return Err(MapError::UnsupportedDescriptor { va, raw });
            }
            L1Descriptor::Section { base, attrs, .. } => (
                frame_plus(PhysFrame::containing(base), p.number() % ENTRIES_PER_L2),
                attrs,
                BlockSize::Section,
            ),
            L1Descriptor::PageTable { .. } => match L2Descriptor::decode(l2) {
                L2Descriptor::Fault => return Ok(None),
                L2Descriptor::Large { .. } => {
                    return Err(MapError::UnsupportedDescriptor { va, raw: l2 });
                }
                L2Descriptor::Small { base, attrs } => {
                    (PhysFrame::containing(base), attrs, BlockSize::SmallPage)
                }
            },
        };
        let attrs = match *decoded {
            Some((known, as_mapping)) if known == attrs => as_mapping,
            _ => {
                let raw = match descriptor {
                    L1Descriptor::PageTable { .. } => l2,
                    d => d.encode(),
                };
                let as_mapping = MappingAttrs::from_page_attributes(attrs)
                    .ok_or(MapError::UnsupportedDescriptor { va, raw })?;
                *decoded = Some((attrs, as_mapping));
                as_mapping
            }
        };
        Ok(Some(Translation {
            frame,
            attrs,
            block,
        }))
    }

    fn check_attrs(
        &self,
        va: VirtAddr,
        attrs: super::PageAttributes,
        domain: Domain,
    ) -> Result<(), String> {
        let decoded = MappingAttrs::from_page_attributes(attrs)
            .ok_or_else(|| format!("{va}: undecodable {attrs:?}"))?;
        if self.check_flags(decoded.flags).is_err() {
            return Err(format!(
                "{va}: flags {:?} in a {:?} space",
                decoded.flags, self.kind
            ));
        }
        if domain != Domain::ZERO {
            return Err(format!("{va}: domain {domain:?}"));
        }
        Ok(())
    }

    fn check_range(&self, range: PageRange) -> Result<(), MapError> {
        let window = self.window();
        if range.start() >= window.start() && range.end_number() <= window.end_number() {
            Ok(())
        } else {
            Err(MapError::OutOfWindow {
                start: range.start_addr(),
                pages: range.count(),
            })
        }
    }

    fn check_flags(&self, flags: MappingFlags) -> Result<(), MapError> {
        let user = flags.contains(MappingFlags::USER);
        match (self.kind, user) {
            (SpaceKind::User, true) | (SpaceKind::Kernel, false) => Ok(()),
            _ => Err(MapError::InvalidFlags(flags)),
        }
    }

    fn scope(&self) -> TlbScope {
        match self.kind {
            SpaceKind::User => TlbScope::Asid(self.asid),
            SpaceKind::Kernel => TlbScope::Global,
        }
    }

    fn l1_frames(&self) -> u32 {
        match self.kind {
            SpaceKind::User => 1,
            SpaceKind::Kernel => KERNEL_L1_FRAMES,
        }
    }

    fn l1_entries(&self) -> u32 {
        self.used.entries
    }

    /// L1 indices this space may use: `[first, end)`.
    fn l1_window(&self) -> (u32, u32) {
        match self.kind {
            SpaceKind::User => (0, USER_L1_ENTRIES),
            SpaceKind::Kernel => (USER_L1_ENTRIES, KERNEL_L1_ENTRIES),
        }
    }

    fn l1_span(&self, range: PageRange) -> core::ops::Range<u32> {
        range.start().number() / ENTRIES_PER_L2..(range.end_number() - 1) / ENTRIES_PER_L2 + 1
    }

    /// The part of `range` inside L1 entry `l1`, as page numbers `[lo, hi)`.
    fn clip(range: PageRange, l1: u32) -> (u32, u32) {
        let lo = range.start().number().max(l1 * ENTRIES_PER_L2);
        let hi = range.end_number().min((l1 + 1) * ENTRIES_PER_L2);
        (lo, hi)
    }

    fn l1_entry_pa(&self, l1: u32) -> PhysAddr {
        PhysAddr::new(self.l1.start().as_u32().wrapping_add(l1 * 4))
    }

    fn read_l1<M: Machine>(&self, m: &mut M, l1: u32) -> L1Descriptor {
        L1Descriptor::decode(m.read_word(self.l1_entry_pa(l1)))
    }

    /// The non-zero raw L1 entries among `l1s` with their index, ascending, read in one
    /// [`Machine::read_nonzero_words`] (most of a window is faults).
    fn nonzero_l1_words<M: Machine>(
        &self,
        m: &mut M,
        l1s: core::ops::Range<u32>,
    ) -> Vec<(u32, u32)> {
        let mut found = Vec::new();
        m.read_nonzero_words(self.l1_entry_pa(l1s.start), l1s.len(), &mut found);
        found
            .into_iter()
            .map(|(i, raw)| (l1s.start + i as u32, raw))
            .collect()
    }

    /// The L1 entries of `range` that are not zero (so not faults), with their index.
    fn valid_l1s<M: Machine>(&self, m: &mut M, range: PageRange) -> Vec<(u32, L1Descriptor)> {
        self.nonzero_l1_words(m, self.l1_span(range))
            .into_iter()
            .map(|(l1, raw)| (l1, L1Descriptor::decode(raw)))
            .collect()
    }

    /// Every L2 page of the window: the page of each group of [`TABLES_PER_PAGE`] L1 entries
    /// that holds a page table (the window's L1 entries read once, and looked at only until
    /// the counted L2 pages are found).
    fn group_pages<M: Machine>(&self, m: &mut M) -> Vec<PhysFrame> {
        if self.l2_pages == 0 {
            return Vec::new();
        }
        let mut out: Vec<PhysFrame> = Vec::new();
        let mut last_group = None;
        for (l1, descriptor) in self.valid_l1s(m, self.window()) {
            let group = l1 / TABLES_PER_PAGE;
            if last_group == Some(group) {
                continue;
            }
            if let L1Descriptor::PageTable { table, .. } = descriptor {
                out.push(PhysFrame::containing(table));
                last_group = Some(group);
                if out.len() == self.l2_pages as usize {
                    break;
                }
            }
        }
        out
    }

    fn write_l1<M: Machine>(&self, m: &mut M, l1: u32, d: L1Descriptor) {
        m.write_word(self.l1_entry_pa(l1), d.encode());
    }

    /// The L2 page serving the group of `l1`, if any of its four entries is a page table.
    fn group_page<M: Machine>(&self, m: &mut M, l1: u32) -> Option<PhysFrame> {
        let first = l1 - l1 % TABLES_PER_PAGE;
        (first..first + TABLES_PER_PAGE).find_map(|i| match self.read_l1(m, i) {
            L1Descriptor::PageTable { table, .. } => Some(PhysFrame::containing(table)),
            _ => None,
        })
    }

    /// Where the table of L1 entry `l1` lives inside its group's page.
    fn slot(group: PhysFrame, l1: u32) -> PhysAddr {
        PhysAddr::new(group.start().as_u32() + (l1 % TABLES_PER_PAGE) * L2_TABLE_BYTES)
    }

    fn l2_entry(table: PhysAddr, page_number: u32) -> PhysAddr {
        PhysAddr::new(table.as_u32() + (page_number % ENTRIES_PER_L2) * 4)
    }
}

#[cfg(test)]
mod tests {
    use super::{MapError, UsedCounts, nonzero};
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
