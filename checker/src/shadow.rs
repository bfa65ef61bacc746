//! The fast mode's copy of the vmm's translations: every present page of every live space,
//! kept current from what changed RAM during a step instead of re-read after every step.
//!
//! Why it equals a full read of the tables: RAM changes only by the vmm's word writes, frame
//! zeroings and frame copies (all in the machine log) and by the data writes of accesses
//! (recorded by the accessor). For each changed word the shadow finds what it can affect: a
//! changed entry of a live space's L1 table re-reads that MiB, except that an L2 table zeroed
//! in the same step holds only the words written into it; a word of an L2 table linked from a
//! live L1 entry re-reads that page; a linked table zeroed or copied over re-reads its MiB.
//! Writes to frames that are neither affect no translation. L1 changes are applied before L2
//! writes are placed, so writes to a table filled and then linked in the same step count, and
//! writes to a table unlinked in the step are ignored (its MiB is re-read from the new entry).
//! The checker's tests (`regressions.rs`, `model_agrees_with_vmm.rs`) audit this claim after
//! every step of the regression corpus and of random sequences (`run::audit_fast_mode`).

use std::collections::BTreeMap;

use vmm::Vm;
use vmm::addr::{PageRange, PhysAddr, VirtPage};
use vmm::arch::armv7::Translation;
use vmm::machine::MachineEvent;
use vmm::space::SpaceId;

use crate::machine::SimMachine;

/// Pages one L1 entry covers (1 MiB).
const PAGES_PER_L1: u32 = 256;
/// Bytes of one L2 table.
const L2_TABLE_BYTES: u32 = 1024;
/// Bytes of a frame.
const FRAME_BYTES: u32 = 4096;
/// L1 entries in one frame of an L1 table.
const L1_PER_FRAME: u32 = FRAME_BYTES / 4;

/// What changed RAM during a step, as the shadow needs it.
#[derive(Clone, Debug, Default)]
pub struct Changes {
    /// Words written (descriptor writes, data writes).
    words: Vec<u32>,
    /// Frames zeroed (first address).
    zeroed: Vec<u32>,
    /// Frames overwritten by a copy (first address).
    copied: Vec<u32>,
}

/// What a step did to one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FrameChange {
    /// At most some words written.
    Words,
    /// Zeroed: every word is 0 except those written (before or after: their value in RAM now
    /// is the truth either way).
    Zeroed,
    /// Overwritten by a copy: any word may have changed.
    Unknown,
}

impl Changes {
    /// The changes in a machine log plus the accessor's data writes, into `self` (its buffers
    /// reused from step to step).
    pub fn refill(&mut self, log: &[MachineEvent], data_writes: &[PhysAddr]) {
        self.words.clear();
        self.zeroed.clear();
        self.copied.clear();
        for e in log {
            match *e {
                MachineEvent::Write { pa, .. } => self.words.push(pa.as_u32()),
                MachineEvent::ZeroFrame(f) => self.zeroed.push(f.start().as_u32()),
                MachineEvent::CopyFrame { dst, .. } => self.copied.push(dst.start().as_u32()),
                _ => {}
            }
        }
        self.words.extend(data_writes.iter().map(|pa| pa.as_u32()));
    }

    /// Whether RAM did not change at all.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty() && self.zeroed.is_empty() && self.copied.is_empty()
    }

    /// What happened to the frame holding `pa`.
    fn frame(&self, pa: u32) -> FrameChange {
        let frame = pa & !(FRAME_BYTES - 1);
        if self.copied.contains(&frame) {
            FrameChange::Unknown
        } else if self.zeroed.contains(&frame) {
            FrameChange::Zeroed
        } else {
            FrameChange::Words
        }
    }

    /// The words written inside `[base, base + len)`.
    fn written(&self, base: u32, len: u32) -> impl Iterator<Item = u32> + '_ {
        self.words
            .iter()
            .copied()
            .filter(move |&a| a >= base && a - base < len)
    }
}

/// One live space as the shadow keeps it.
#[derive(Clone, Debug)]
struct ShadowSpace {
    /// Physical address of its L1 table.
    l1_table: u32,
    /// L1 entries in its user window.
    entries: u32,
    /// The raw L1 entries of the window that are not zero, by index.
    l1: BTreeMap<u32, u32>,
    /// Present pages by page number.
    pages: BTreeMap<u32, Translation>,
    /// Changes whenever `pages` may have (see [`TableShadow::stamp`]).
    stamp: u64,
}

/// A stamp never handed out before in this process.
fn fresh_stamp() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl ShadowSpace {
    /// Drops the pages `[first, first + count)` (page numbers).
    fn forget(&mut self, first: u32, count: u32) {
        self.stamp = fresh_stamp();
        // One lookup per page dropped and no buffer: forks refresh thousands of small runs.
        while let Some((&n, _)) = self.pages.range(first..first + count).next() {
            self.pages.remove(&n);
        }
    }
}

/// The translations of every live space, updated step by step.
#[derive(Clone, Debug, Default)]
pub struct TableShadow {
    spaces: BTreeMap<SpaceId, ShadowSpace>,
    /// L2 table (physical address / 1 KiB) -> the space and L1 index linking it.
    owners: BTreeMap<u32, (SpaceId, u32)>,
}

/// The L2 table a raw L1 entry links, if it is a page-table descriptor.
fn linked_table(raw: u32) -> Option<u32> {
    (raw & 0b11 == 0b01).then_some(raw & !(L2_TABLE_BYTES - 1))
}

/// The physical address of space `id`'s L1 table, if it is live.
fn l1_table_of(vm: &Vm<SimMachine>, id: SpaceId) -> Option<u32> {
    Some(vm.space(id)?.mmu().l1_table().as_u32())
}

fn read(vm: &Vm<SimMachine>, pa: u32) -> u32 {
    vm.machine().host.peek_word(PhysAddr::new(pa)).unwrap_or(0)
}

/// The vmm's translations of `range` in space `id` (page number, translation), or `None` when
/// its decoder refuses a descriptor.
fn mappings(
    vm: &mut Vm<SimMachine>,
    id: SpaceId,
    range: PageRange,
) -> Option<impl Iterator<Item = (u32, Translation)>> {
    Some(
        vm.mappings_in(id, range)?
            .into_iter()
            .map(|(p, t)| (p.number(), t)),
    )
}

/// Sorted, distinct page numbers of one space as runs of consecutive pages `(first, count)`,
/// so that a step that rewrote many entries of a table (a fork, a large mprotect) re-reads
/// them with one walk per run instead of one per page.
fn runs(numbers: impl Iterator<Item = u32>) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for n in numbers {
        match out.last_mut() {
            Some((first, count)) if *first + *count == n => *count += 1,
            _ => out.push((n, 1)),
        }
    }
    out
}

impl TableShadow {
    /// Brings the shadow up to date after a step that made `changes`, for the spaces `live`.
    /// `None` when the vmm's own decoder refuses one of the descriptors read.
    pub fn update(
        &mut self,
        vm: &mut Vm<SimMachine>,
        live: &[SpaceId],
        changes: &Changes,
    ) -> Option<()> {
        // Nothing in RAM changed and the same spaces live on the same tables: nothing to do.
        if changes.is_empty()
            && self.spaces.len() == live.len()
            && live
                .iter()
                .all(|&id| self.spaces.get(&id).map(|s| s.l1_table) == l1_table_of(vm, id))
        {
            return Some(());
        }
        // Spaces that exited, or whose L1 table moved (an id reused), are dropped.
        let before = self.spaces.len();
        self.spaces
            .retain(|&id, s| live.contains(&id) && l1_table_of(vm, id) == Some(s.l1_table));
        if self.spaces.len() != before {
            let spaces = &self.spaces;
            self.owners
                .retain(|_, (owner, _)| spaces.contains_key(owner));
        }
        // A new space whose L1 table was zeroed in this step starts empty (its entries come
        // from this step's writes, below); any other new space is read whole.
        let mut born_empty: Vec<SpaceId> = Vec::new();
        for &id in live {
            let Some(l1_table) = l1_table_of(vm, id) else {
                continue;
            };
            if self.spaces.contains_key(&id) {
                continue;
            }
            if changes.frame(l1_table) == FrameChange::Zeroed {
                born_empty.push(id);
                let entries = vm.space(id)?.mmu().window().end_number() / PAGES_PER_L1;
                self.spaces.insert(
                    id,
                    ShadowSpace {
                        l1_table,
                        entries,
                        l1: BTreeMap::new(),
                        pages: BTreeMap::new(),
                        stamp: fresh_stamp(),
                    },
                );
            } else {
                self.load(vm, id, l1_table)?;
            }
        }
        // L1 entries first: links and unlinks decide which L2 writes matter.
        let mut whole_mibs: Vec<(SpaceId, u32)> = Vec::new();
        let mut fresh_tables: Vec<(SpaceId, u32, u32)> = Vec::new();
        let mut candidates: Vec<u32> = Vec::new();
        for (&id, space) in &mut self.spaces {
            // The entries each frame of the table may have changed, by what happened to it.
            candidates.clear();
            for lo in (0..space.entries).step_by(L1_PER_FRAME as usize) {
                let hi = space.entries.min(lo + L1_PER_FRAME);
                let base = space.l1_table + 4 * lo;
                let written = changes
                    .written(base, 4 * (hi - lo))
                    .map(|pa| lo + (pa - base) / 4);
                match changes.frame(base) {
                    FrameChange::Unknown => candidates.extend(lo..hi),
                    // A space born empty in this step holds no entry the zeroing could clear.
                    FrameChange::Zeroed if !born_empty.contains(&id) => {
                        candidates.extend(written);
                        candidates.extend(space.l1.range(lo..hi).map(|(&i, _)| i));
                    }
                    FrameChange::Words | FrameChange::Zeroed => candidates.extend(written),
                }
            }
            for &index in &candidates {
                let new = read(vm, space.l1_table + 4 * index);
                let old = if new == 0 {
                    space.l1.remove(&index)
                } else {
                    space.l1.insert(index, new)
                }
                .unwrap_or(0);
                if old == new {
                    continue;
                }
                if let Some(t) = linked_table(old) {
                    self.owners.remove(&(t / L2_TABLE_BYTES));
                }
                match linked_table(new) {
                    // A table zeroed in this step holds only the words written to it.
                    Some(t) if changes.frame(t) == FrameChange::Zeroed => {
                        self.owners.insert(t / L2_TABLE_BYTES, (id, index));
                        fresh_tables.push((id, index, t));
                    }
                    Some(t) => {
                        self.owners.insert(t / L2_TABLE_BYTES, (id, index));
                        whole_mibs.push((id, index));
                    }
                    None => whole_mibs.push((id, index)),
                }
            }
        }
        for &(id, index, _) in &fresh_tables {
            if let Some(space) = self.spaces.get_mut(&id) {
                space.forget(index * PAGES_PER_L1, PAGES_PER_L1);
            }
        }
        let mut pages: Vec<(SpaceId, u32)> = Vec::new();
        for &pa in &changes.words {
            if let Some(&(id, index)) = self.owners.get(&(pa / L2_TABLE_BYTES)) {
                pages.push((id, index * PAGES_PER_L1 + (pa % L2_TABLE_BYTES) / 4));
            }
        }
        // Linked tables zeroed or overwritten in this step (other than fresh ones) are re-read.
        for &f in changes.zeroed.iter().chain(&changes.copied) {
            for t in (f..f + FRAME_BYTES).step_by(L2_TABLE_BYTES as usize) {
                if let Some(&(id, index)) = self.owners.get(&(t / L2_TABLE_BYTES))
                    && !fresh_tables.contains(&(id, index, t))
                {
                    whole_mibs.push((id, index));
                }
            }
        }
        whole_mibs.sort_unstable();
        whole_mibs.dedup();
        pages.sort_unstable();
        pages.dedup();
        pages.retain(|&(id, number)| {
            whole_mibs
                .binary_search(&(id, number / PAGES_PER_L1))
                .is_err()
        });
        // Every range to re-read, (space, first page, pages), ascending and disjoint.
        let mut ranges: Vec<(SpaceId, u32, u32)> = whole_mibs
            .iter()
            .map(|&(id, index)| (id, index * PAGES_PER_L1, PAGES_PER_L1))
            .collect();
        for run in pages.chunk_by(|a, b| a.0 == b.0) {
            let id = run[0].0;
            ranges.extend(
                runs(run.iter().map(|&(_, n)| n))
                    .into_iter()
                    .map(|(first, count)| (id, first, count)),
            );
        }
        ranges.sort_unstable();
        for space_ranges in ranges.chunk_by(|a, b| a.0 == b.0) {
            self.refresh(vm, space_ranges[0].0, space_ranges)?;
        }
        Some(())
    }

    /// A number that changes whenever the pages of space `id` may have (unique within the
    /// process): equal stamps mean the same pages.
    pub fn stamp(&self, id: SpaceId) -> Option<u64> {
        Some(self.spaces.get(&id)?.stamp)
    }

    /// The present pages of space `id` (page number, translation), ascending.
    pub fn pages(&self, id: SpaceId) -> Option<impl Iterator<Item = (u32, Translation)> + '_> {
        Some(self.spaces.get(&id)?.pages.iter().map(|(&n, &t)| (n, t)))
    }

    /// Reads space `id` whole: its L1 entries and every present page.
    fn load(&mut self, vm: &mut Vm<SimMachine>, id: SpaceId, l1_table: u32) -> Option<()> {
        let window = vm.space(id)?.mmu().window();
        let entries = window.end_number() / PAGES_PER_L1;
        let l1: BTreeMap<u32, u32> = (0..entries)
            .map(|i| (i, read(vm, l1_table + 4 * i)))
            .filter(|&(_, raw)| raw != 0)
            .collect();
        for (&index, &raw) in &l1 {
            if let Some(t) = linked_table(raw) {
                self.owners.insert(t / L2_TABLE_BYTES, (id, index));
            }
        }
        let pages = mappings(vm, id, window)?.collect();
        self.spaces.insert(
            id,
            ShadowSpace {
                l1_table,
                entries,
                l1,
                pages,
                stamp: fresh_stamp(),
            },
        );
        Some(())
    }

    /// Re-reads the ranges `(space, first page, pages)` of space `id` (ascending, disjoint),
    /// merged into its pages at once.
    fn refresh(
        &mut self,
        vm: &mut Vm<SimMachine>,
        id: SpaceId,
        ranges: &[(SpaceId, u32, u32)],
    ) -> Option<()> {
        let mut fresh: Vec<(u32, Translation)> = Vec::new();
        for &(_, first, count) in ranges {
            let range = PageRange::new(VirtPage::from_number(first)?, count)?;
            fresh.extend(mappings(vm, id, range)?);
        }
        let space = self.spaces.get_mut(&id)?;
        space.stamp = fresh_stamp();
        let same_pages = ranges
            .iter()
            .flat_map(|&(_, first, count)| space.pages.range(first..first + count))
            .map(|(&n, _)| n)
            .eq(fresh.iter().map(|&(n, _)| n));
        if same_pages {
            // The usual case (a fork or an mprotect rewrote entries in place): the same pages
            // with new translations, updated in one pass instead of removed and inserted.
            let mut fresh = fresh.into_iter();
            for &(_, first, count) in ranges {
                for ((_, kept), (_, t)) in
                    space.pages.range_mut(first..first + count).zip(&mut fresh)
                {
                    *kept = t;
                }
            }
            return Some(());
        }
        for &(_, first, count) in ranges {
            space.forget(first, count);
        }
        if fresh.len() * 4 > space.pages.len() {
            // Many pages (a forked child's tables, new sections): built as a map of their own
            // from the sorted list and merged in one pass, cheaper than one search per page.
            space.pages.append(&mut fresh.into_iter().collect());
        } else {
            space.pages.extend(fresh);
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::runs;

    #[test]
    fn runs_group_consecutive_page_numbers() {
        assert_eq!(
            runs([1, 2, 3, 5, 6, 9, 255, 256].into_iter()),
            vec![(1, 3), (5, 2), (9, 1), (255, 2)]
        );
        assert_eq!(runs(std::iter::empty()), Vec::<(u32, u32)>::new());
    }
}
