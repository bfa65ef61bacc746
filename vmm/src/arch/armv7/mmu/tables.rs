//! Where things are in the tables: L1 entries and their window, the packing of four L2 tables
//! per page, the valid-entry counts kept per L1 entry, and the argument checks every operation
//! starts with.

use super::*;

/// The number of valid entries of the L2 table under each L1 entry of the window, zero where
/// none is linked. The array is allocated at the first count: a space that never maps a small
/// page (a fresh spawn, a space of sections only) costs no 2 KiB of zeroes.
#[derive(Clone, Debug)]
pub(super) struct UsedCounts {
    /// One count per L1 entry, or empty while every count is zero.
    pub(super) counts: Vec<u16>,
    /// L1 entries of the window.
    pub(super) entries: u32,
}

impl UsedCounts {
    /// All zero, for a window of `entries` L1 entries.
    pub(super) fn new(entries: u32) -> Self {
        Self {
            counts: Vec::new(),
            entries,
        }
    }

    /// The count of L1 entry `l1`.
    pub(super) fn get(&self, l1: u32) -> u16 {
        debug_assert!(l1 < self.entries, "L1 entry {l1} outside the window");
        self.counts.get(l1 as usize).copied().unwrap_or(0)
    }

    /// The count of L1 entry `l1`, to change (the array allocated if it was not).
    pub(super) fn get_mut(&mut self, l1: u32) -> &mut u16 {
        if self.counts.is_empty() {
            self.counts = vec![0; self.entries as usize];
        }
        &mut self.counts[l1 as usize]
    }

    /// The L1 entries of `range` whose count is not zero, ascending.
    pub(super) fn nonzero_in(&self, range: core::ops::Range<u32>) -> Vec<u32> {
        if self.counts.is_empty() {
            return Vec::new();
        }
        nonzero(&self.counts[range.start as usize..range.end as usize])
            .into_iter()
            .map(|i| range.start + i as u32)
            .collect()
    }
}

/// The indices of the non-zero elements of `words`, ascending. Zero runs are skipped 16
/// elements at a time (the OR of a chunk, which vectorizes): most of a window is faults.
pub(super) fn nonzero<T>(words: &[T]) -> Vec<usize>
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

/// The page with this number. Callers compute numbers inside a checked window, so one past
/// 2^20 is an inconsistency of the vmm's own, never a page to act on in its place.
pub(super) fn page(number: u32) -> Result<VirtPage, MapError> {
    VirtPage::from_number(number).ok_or(MapError::Internal {
        what: "a page number past 4 GiB",
        va: page_addr(number),
    })
}

/// The first address of page `number`, for an error report (wrapping past 4 GiB).
pub(super) fn page_addr(number: u32) -> VirtAddr {
    VirtAddr::new(number.wrapping_shl(12))
}

/// The frame `n` frames after `frame`, which a section or run of the tables maps, so it exists;
/// one past 4 GiB is an inconsistency, never a frame to map in its place.
pub(super) fn frame_plus(frame: PhysFrame, n: u32) -> Result<PhysFrame, MapError> {
    frame.checked_add(n).ok_or(MapError::Internal {
        what: "a frame past 4 GiB",
        va: VirtAddr::new(0),
    })
}

impl ArchMmu {
    pub(super) fn check_range(&self, range: PageRange) -> Result<(), MapError> {
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

    pub(super) fn check_flags(&self, flags: MappingFlags) -> Result<(), MapError> {
        let user = flags.contains(MappingFlags::USER);
        match (self.kind, user) {
            (SpaceKind::User, true) | (SpaceKind::Kernel, false) => Ok(()),
            _ => Err(MapError::InvalidFlags(flags)),
        }
    }

    pub(super) fn scope(&self) -> TlbScope {
        let asid = match self.kind {
            SpaceKind::User => Some(self.asid),
            SpaceKind::Kernel => None,
        };
        TlbScope {
            asid,
            reach: self.reach,
        }
    }

    pub(super) fn l1_frames(&self) -> u32 {
        match self.kind {
            SpaceKind::User => 1,
            SpaceKind::Kernel => KERNEL_L1_FRAMES,
        }
    }

    pub(super) fn l1_entries(&self) -> u32 {
        self.used.entries
    }

    /// L1 indices this space may use: `[first, end)`.
    pub(super) fn l1_window(&self) -> (u32, u32) {
        match self.kind {
            SpaceKind::User => (0, USER_L1_ENTRIES),
            SpaceKind::Kernel => (USER_L1_ENTRIES, KERNEL_L1_ENTRIES),
        }
    }

    pub(super) fn l1_span(&self, range: PageRange) -> core::ops::Range<u32> {
        range.start().number() / ENTRIES_PER_L2..(range.end_number() - 1) / ENTRIES_PER_L2 + 1
    }

    /// The part of `range` inside L1 entry `l1`, as page numbers `[lo, hi)`.
    pub(super) fn clip(range: PageRange, l1: u32) -> (u32, u32) {
        let lo = range.start().number().max(l1 * ENTRIES_PER_L2);
        let hi = range.end_number().min((l1 + 1) * ENTRIES_PER_L2);
        (lo, hi)
    }

    pub(super) fn l1_entry_pa(&self, l1: u32) -> PhysAddr {
        PhysAddr::new(self.l1.start().as_u32().wrapping_add(l1 * 4))
    }

    pub(super) fn read_l1<M: Machine>(&self, m: &mut M, l1: u32) -> L1Descriptor {
        L1Descriptor::decode(m.read_word(self.l1_entry_pa(l1)))
    }

    /// The non-zero raw L1 entries among `l1s` with their index, ascending, read in one
    /// [`Machine::read_nonzero_words`] (most of a window is faults).
    pub(super) fn nonzero_l1_words<M: Machine>(
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
    pub(super) fn valid_l1s<M: Machine>(
        &self,
        m: &mut M,
        range: PageRange,
    ) -> Vec<(u32, L1Descriptor)> {
        self.nonzero_l1_words(m, self.l1_span(range))
            .into_iter()
            .map(|(l1, raw)| (l1, L1Descriptor::decode(raw)))
            .collect()
    }

    /// Every L2 page of the window: the page of each group of [`TABLES_PER_PAGE`] L1 entries
    /// that holds a page table (the window's L1 entries read once, and looked at only until
    /// the counted L2 pages are found).
    pub(super) fn group_pages<M: Machine>(&self, m: &mut M) -> Vec<PhysFrame> {
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

    pub(super) fn write_l1<M: Machine>(&self, m: &mut M, l1: u32, d: L1Descriptor) {
        m.write_word(self.l1_entry_pa(l1), d.encode());
    }

    /// The L2 page serving the group of `l1`, if any of its four entries is a page table.
    pub(super) fn group_page<M: Machine>(&self, m: &mut M, l1: u32) -> Option<PhysFrame> {
        let first = l1 - l1 % TABLES_PER_PAGE;
        (first..first + TABLES_PER_PAGE).find_map(|i| match self.read_l1(m, i) {
            L1Descriptor::PageTable { table, .. } => Some(PhysFrame::containing(table)),
            _ => None,
        })
    }

    /// Where the table of L1 entry `l1` lives inside its group's page.
    pub(super) fn slot(group: PhysFrame, l1: u32) -> PhysAddr {
        PhysAddr::new(group.start().as_u32() + (l1 % TABLES_PER_PAGE) * L2_TABLE_BYTES)
    }

    pub(super) fn l2_entry(table: PhysAddr, page_number: u32) -> PhysAddr {
        PhysAddr::new(table.as_u32() + (page_number % ENTRIES_PER_L2) * 4)
    }
}
