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

use reference_model::armv7::{Registers, Translation, translations};
use vmm::Vm;
use vmm::addr::{PhysAddr, PhysFrame};
use vmm::machine::{HostMachine, MachineEvent};
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
/// L1 entries of a user space's table: with TTBCR.N = 2, TTBR0 translates the lowest GiB.
pub const TTBR0_ENTRIES: u32 = 1024;

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

    /// Whether any word of `sorted` (ascending word addresses) may have changed: written,
    /// or in a frame zeroed or copied over.
    pub fn touch_any(&self, sorted: &[u32]) -> bool {
        let frame_touched = |f: &u32| {
            let from = sorted.partition_point(|&a| a < *f);
            sorted.get(from).is_some_and(|&a| a - f < FRAME_BYTES)
        };
        self.words.iter().any(|w| sorted.binary_search(w).is_ok())
            || self.zeroed.iter().any(frame_touched)
            || self.copied.iter().any(frame_touched)
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
}

/// One live space as the shadow keeps it.
#[derive(Clone, Debug)]
struct ShadowSpace {
    /// The vmm's name for it.
    id: SpaceId,
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
    /// A space with nothing read yet.
    fn empty(id: SpaceId, l1_table: u32, entries: u32) -> Self {
        Self {
            id,
            l1_table,
            entries,
            l1: BTreeMap::new(),
            pages: BTreeMap::new(),
            stamp: fresh_stamp(),
        }
    }

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
    tables: Tables,
    /// Buffers of `update`, reused from step to step.
    scratch: Scratch,
}

/// What the shadow knows of the tables.
#[derive(Clone, Debug, Default)]
struct Tables {
    /// The live spaces with a table, in the order of the list last given to `update`
    /// (so that a caller walking that list finds each one at its position, without a search).
    spaces: Vec<ShadowSpace>,
    /// L2 table (physical address / 1 KiB) -> the space and L1 index linking it.
    owners: BTreeMap<u32, (SpaceId, u32)>,
}

/// The working lists of one [`TableShadow::update`] (positions are indexes into `spaces`).
#[derive(Clone, Debug, Default)]
struct Scratch {
    /// The words written in the step, sorted.
    words: Vec<u32>,
    /// Positions of the spaces new in this step whose L1 table was zeroed in it.
    born_empty: Vec<usize>,
    /// L1 entries of one space to read again.
    candidates: Vec<u32>,
    /// (position, L1 index) whose whole MiB is read again.
    whole_mibs: Vec<(usize, u32)>,
    /// (position, L1 index, table): tables linked in this step and zeroed in it.
    fresh_tables: Vec<(usize, u32, u32)>,
    /// (position, page number) whose L2 entry was written.
    pages: Vec<(usize, u32)>,
    /// Every range to read again: (position, first page, pages).
    ranges: Vec<(usize, u32, u32)>,
    /// The translations read by one `refresh`.
    fresh: Vec<(u32, Translation)>,
    /// The spaces `follow_roster` dropped.
    gone: Vec<SpaceId>,
}

/// The L2 table a raw L1 entry links, if it is a page-table descriptor.
fn linked_table(raw: u32) -> Option<u32> {
    (raw & 0b11 == 0b01).then_some(raw & !(L2_TABLE_BYTES - 1))
}

fn read(vm: &Vm<SimMachine>, pa: u32) -> u32 {
    vm.machine().host.peek_word(PhysAddr::new(pa)).unwrap_or(0)
}

/// The registers of a walk through the user table at `l1_table`: TTBR0 with TTBCR.N = 2 (the
/// lowest GiB), domain 0 client, no TTBR1 (callers that walk the kernel half set it).
pub fn user_registers(l1_table: u32) -> Registers {
    Registers {
        ttbr0: l1_table,
        ttbr1: 0,
        ttbcr_n: 2,
        dacr: 0b01,
    }
}

/// Every valid translation of the pages `[first, first + count)` (page numbers) under the user
/// table at `l1_table`, as (page number, translation of that page), appended to `out`: the
/// reference walker over the raw table words in RAM (never the vmm's decoder).
pub fn sweep(
    host: &HostMachine,
    l1_table: u32,
    first: u32,
    count: u32,
    out: &mut Vec<(u32, Translation)>,
) {
    translations(
        &mut |a| host.peek_word(PhysAddr::new(a)),
        user_registers(l1_table),
        first << 12,
        count,
        |va, t| out.push((va >> 12, t)),
    );
}

/// Every valid translation of a user space whose L1 table is at `l1_table` (its whole TTBR0
/// half), as [`sweep`] gives them: the table's words are copied once and only the MiBs whose
/// entry is not zero are walked (the walker answers a translation fault for the others).
pub fn sweep_space(host: &HostMachine, l1_table: u32, out: &mut Vec<(u32, Translation)>) {
    let frame = PhysFrame::containing(PhysAddr::new(l1_table));
    let bytes = match host.peek_frame(frame) {
        // A 4 KiB-aligned table in RAM: one frame.
        Some(bytes) if l1_table % FRAME_BYTES == 0 => bytes,
        // Elsewhere the walker has the last word (External faults outside RAM).
        _ => return sweep(host, l1_table, 0, TTBR0_ENTRIES * PAGES_PER_L1, out),
    };
    // Never written: every entry is a fault entry.
    let Some(bytes) = bytes else { return };
    for (index, _) in nonzero_entries(bytes) {
        sweep(host, l1_table, index * PAGES_PER_L1, PAGES_PER_L1, out);
    }
}

/// The non-zero words of a table frame as (index, word), ascending, sixteen entries at a time
/// (most of a table is zero).
pub fn nonzero_entries(
    bytes: &[u8; FRAME_BYTES as usize],
) -> impl Iterator<Item = (u32, u32)> + '_ {
    bytes
        .chunks_exact(64)
        .enumerate()
        .filter(|(_, chunk)| chunk.iter().fold(0u8, |acc, &b| acc | b) != 0)
        .flat_map(|(block, chunk)| {
            chunk.chunks_exact(4).enumerate().filter_map(move |(i, w)| {
                let word = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
                (word != 0).then_some(((block * 16 + i) as u32, word))
            })
        })
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

/// The words of `sorted` inside `[base, base + len)`.
fn written_in(sorted: &[u32], base: u32, len: u32) -> impl Iterator<Item = u32> + '_ {
    let from = sorted.partition_point(|&a| a < base);
    sorted[from..]
        .iter()
        .copied()
        .take_while(move |&a| a - base < len)
}

impl TableShadow {
    /// Brings the shadow up to date after a step that made `changes`, for the live spaces of
    /// `roster`: each one's id and the physical address of its L1 table as the vmm's
    /// bookkeeping gives it now (`None` for a live id the vmm does not know), in the order
    /// of the live list. Every translation is read by the reference walker.
    pub fn update(
        &mut self,
        vm: &mut Vm<SimMachine>,
        roster: &[(SpaceId, Option<u32>)],
        changes: &Changes,
    ) {
        let Self { tables, scratch: s } = self;
        let same_spaces = tables.spaces.len() == roster.len()
            && tables
                .spaces
                .iter()
                .zip(roster)
                .all(|(kept, &(id, l1))| kept.id == id && Some(kept.l1_table) == l1);
        // Nothing in RAM changed and the same spaces live on the same tables: nothing to do.
        if same_spaces && changes.is_empty() {
            return;
        }
        s.born_empty.clear();
        if !same_spaces {
            tables.follow_roster(vm, changes, roster, &mut s.born_empty, &mut s.gone);
        }
        // L1 entries first: links and unlinks decide which L2 writes matter.
        s.words.clear();
        s.words.extend_from_slice(&changes.words);
        s.words.sort_unstable();
        s.whole_mibs.clear();
        s.fresh_tables.clear();
        for (at, space) in tables.spaces.iter_mut().enumerate() {
            // The entries each frame of the table may have changed, by what happened to it.
            s.candidates.clear();
            for lo in (0..space.entries).step_by(L1_PER_FRAME as usize) {
                let hi = space.entries.min(lo + L1_PER_FRAME);
                let base = space.l1_table + 4 * lo;
                let written =
                    written_in(&s.words, base, 4 * (hi - lo)).map(|pa| lo + (pa - base) / 4);
                match changes.frame(base) {
                    FrameChange::Unknown => s.candidates.extend(lo..hi),
                    // A space born empty in this step holds no entry the zeroing could clear.
                    FrameChange::Zeroed if !s.born_empty.contains(&at) => {
                        s.candidates.extend(written);
                        s.candidates.extend(space.l1.range(lo..hi).map(|(&i, _)| i));
                    }
                    FrameChange::Words | FrameChange::Zeroed => s.candidates.extend(written),
                }
            }
            for &index in &s.candidates {
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
                // The table this entry linked is no longer linked from here (unless another
                // entry has linked it meanwhile: candidates come in index order, not write
                // order).
                if let Some(t) = linked_table(old)
                    && tables.owners.get(&(t / L2_TABLE_BYTES)) == Some(&(space.id, index))
                {
                    tables.owners.remove(&(t / L2_TABLE_BYTES));
                }
                match linked_table(new) {
                    // A table zeroed in this step holds only the words written to it.
                    Some(t) if changes.frame(t) == FrameChange::Zeroed => {
                        tables.owners.insert(t / L2_TABLE_BYTES, (space.id, index));
                        s.fresh_tables.push((at, index, t));
                    }
                    Some(t) => {
                        tables.owners.insert(t / L2_TABLE_BYTES, (space.id, index));
                        s.whole_mibs.push((at, index));
                    }
                    None => s.whole_mibs.push((at, index)),
                }
            }
        }
        for &(at, index, _) in &s.fresh_tables {
            tables.spaces[at].forget(index * PAGES_PER_L1, PAGES_PER_L1);
        }
        // The L2 entries written, by the table holding them. Writes come in runs within one
        // table (a fork, an mprotect), so the last table's owner is remembered.
        s.pages.clear();
        let mut last: Option<(u32, Option<(usize, u32)>)> = None;
        for &pa in &changes.words {
            let table = pa / L2_TABLE_BYTES;
            let owner = match last {
                Some((t, owner)) if t == table => owner,
                _ => {
                    let owner = tables.owner(table);
                    last = Some((table, owner));
                    owner
                }
            };
            if let Some((at, index)) = owner {
                s.pages
                    .push((at, index * PAGES_PER_L1 + (pa % L2_TABLE_BYTES) / 4));
            }
        }
        // Linked tables zeroed or overwritten in this step (other than fresh ones) are re-read.
        for &f in changes.zeroed.iter().chain(&changes.copied) {
            for t in (f..f + FRAME_BYTES).step_by(L2_TABLE_BYTES as usize) {
                if let Some((at, index)) = tables.owner(t / L2_TABLE_BYTES)
                    && !s.fresh_tables.contains(&(at, index, t))
                {
                    s.whole_mibs.push((at, index));
                }
            }
        }
        s.whole_mibs.sort_unstable();
        s.whole_mibs.dedup();
        s.pages.sort_unstable();
        s.pages.dedup();
        let whole_mibs = &s.whole_mibs;
        s.pages.retain(|&(at, number)| {
            whole_mibs
                .binary_search(&(at, number / PAGES_PER_L1))
                .is_err()
        });
        // Every range to re-read, (position, first page, pages), ascending and disjoint.
        s.ranges.clear();
        s.ranges.extend(
            s.whole_mibs
                .iter()
                .map(|&(at, index)| (at, index * PAGES_PER_L1, PAGES_PER_L1)),
        );
        for run in s.pages.chunk_by(|a, b| a.0 == b.0) {
            let at = run[0].0;
            s.ranges.extend(
                runs(run.iter().map(|&(_, n)| n))
                    .into_iter()
                    .map(|(first, count)| (at, first, count)),
            );
        }
        s.ranges.sort_unstable();
        for space_ranges in s.ranges.chunk_by(|a, b| a.0 == b.0) {
            tables.refresh(vm, space_ranges[0].0, space_ranges, &mut s.fresh);
        }
    }

    /// A number that changes whenever the pages of space `id` (at position `at` of the live
    /// list) may have (unique within the process): equal stamps mean the same pages.
    pub fn stamp(&self, at: usize, id: SpaceId) -> Option<u64> {
        Some(self.tables.space(at, id)?.stamp)
    }

    /// The non-zero L1 entries of space `id` (at position `at` of the live list; index, raw
    /// word), ascending: its table's words as the last update read them.
    pub fn l1_entries(
        &self,
        at: usize,
        id: SpaceId,
    ) -> Option<impl Iterator<Item = (u32, u32)> + '_> {
        Some(self.tables.space(at, id)?.l1.iter().map(|(&i, &w)| (i, w)))
    }

    /// The present pages of space `id` (at position `at` of the live list; page number,
    /// translation), ascending.
    pub fn pages(
        &self,
        at: usize,
        id: SpaceId,
    ) -> Option<impl Iterator<Item = (u32, Translation)> + '_> {
        Some(
            self.tables
                .space(at, id)?
                .pages
                .iter()
                .map(|(&n, &t)| (n, t)),
        )
    }
}

impl Tables {
    /// Makes `spaces` the spaces of `roster` with a table, in its order: spaces kept on the
    /// same table stay as they are; spaces that exited or whose L1 table moved (an id reused)
    /// are dropped with their tables; a new space whose L1 table was zeroed in this step
    /// starts empty (its entries come from this step's writes; its position goes into
    /// `born_empty`), and any other new space is read whole. `gone` is a buffer.
    ///
    /// A step usually drops some spaces and adds new ones after the others, so the spaces
    /// kept are those matching the roster in order, in one pass; a space the roster names out
    /// of that order (which no vmm does on its own) is dropped and read again whole.
    fn follow_roster(
        &mut self,
        vm: &mut Vm<SimMachine>,
        changes: &Changes,
        roster: &[(SpaceId, Option<u32>)],
        born_empty: &mut Vec<usize>,
        gone: &mut Vec<SpaceId>,
    ) {
        // Spaces without a table (a live id the vmm does not know) have no place here.
        let mut next = roster.iter().filter(|&&(_, l1)| l1.is_some()).peekable();
        gone.clear();
        self.spaces.retain(|k| {
            let kept = next.next_if(|&&(id, l1)| (id, l1) == (k.id, Some(k.l1_table)));
            if kept.is_none() {
                gone.push(k.id);
            }
            kept.is_some()
        });
        if !gone.is_empty() {
            self.owners.retain(|_, (owner, _)| !gone.contains(owner));
        }
        for &(id, l1) in next {
            // A live list naming a space twice (a vmm bug the comparison reports) keeps one
            // copy of it, which both positions find by id.
            let Some(l1_table) = l1.filter(|_| self.spaces.iter().all(|k| k.id != id)) else {
                continue;
            };
            let space = if changes.frame(l1_table) == FrameChange::Zeroed {
                born_empty.push(self.spaces.len());
                ShadowSpace::empty(id, l1_table, TTBR0_ENTRIES)
            } else {
                self.load(vm, id, l1_table)
            };
            self.spaces.push(space);
        }
    }

    /// The position of the space and the L1 index linking L2 table `table` (its physical
    /// address / 1 KiB), if a live space links it.
    fn owner(&self, table: u32) -> Option<(usize, u32)> {
        let &(id, index) = self.owners.get(&table)?;
        Some((self.spaces.iter().position(|k| k.id == id)?, index))
    }

    /// Space `id`, expected at position `at` of the list last given to `update`.
    fn space(&self, at: usize, id: SpaceId) -> Option<&ShadowSpace> {
        match self.spaces.get(at) {
            Some(space) if space.id == id => Some(space),
            _ => self.spaces.iter().find(|k| k.id == id),
        }
    }

    /// Reads space `id` whole: its L1 entries and every present page.
    fn load(&mut self, vm: &mut Vm<SimMachine>, id: SpaceId, l1_table: u32) -> ShadowSpace {
        let entries = TTBR0_ENTRIES;
        let l1: BTreeMap<u32, u32> = (0..entries)
            .map(|i| (i, read(vm, l1_table + 4 * i)))
            .filter(|&(_, raw)| raw != 0)
            .collect();
        for (&index, &raw) in &l1 {
            if let Some(t) = linked_table(raw) {
                self.owners.insert(t / L2_TABLE_BYTES, (id, index));
            }
        }
        let mut pages = Vec::new();
        sweep_space(&vm.machine().host, l1_table, &mut pages);
        ShadowSpace {
            l1,
            pages: pages.into_iter().collect(),
            ..ShadowSpace::empty(id, l1_table, entries)
        }
    }

    /// Re-reads the ranges `(position, first page, pages)` of the space at position `at`
    /// (ascending, disjoint), merged into its pages at once; `fresh` is a buffer.
    fn refresh(
        &mut self,
        vm: &mut Vm<SimMachine>,
        at: usize,
        ranges: &[(usize, u32, u32)],
        fresh: &mut Vec<(u32, Translation)>,
    ) {
        let space = &mut self.spaces[at];
        fresh.clear();
        for &(_, first, count) in ranges {
            sweep(&vm.machine().host, space.l1_table, first, count, fresh);
        }
        space.stamp = fresh_stamp();
        let same_pages = ranges
            .iter()
            .flat_map(|&(_, first, count)| space.pages.range(first..first + count))
            .map(|(&n, _)| n)
            .eq(fresh.iter().map(|&(n, _)| n));
        if same_pages {
            // The usual case (a fork or an mprotect rewrote entries in place): the same pages
            // with new translations, updated in one pass instead of removed and inserted.
            let mut fresh = fresh.iter();
            for &(_, first, count) in ranges {
                for ((_, kept), &(_, t)) in
                    space.pages.range_mut(first..first + count).zip(&mut fresh)
                {
                    *kept = t;
                }
            }
            return;
        }
        for &(_, first, count) in ranges {
            space.forget(first, count);
        }
        if fresh.len() * 4 > space.pages.len() {
            // Many pages (a forked child's tables, new sections): built as a map of their own
            // from the sorted list and merged in one pass, cheaper than one search per page.
            space.pages.append(&mut fresh.drain(..).collect());
        } else {
            space.pages.extend(fresh.drain(..));
        }
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
