//! `ArchMmu` op sequences against a small map model, with failure injection: the one driver
//! behind the `mmu` fuzz target (`checker::mmu`) and vmm's `arch_mmu_model` proptest (which
//! includes this file with `#[path]`, so it uses nothing but `std` and `vmm`).
//!
//! After every op: the result equals the model's prediction; the raw table bytes, decoded by the
//! independent walker below (not by the crate's descriptor code), equal the model's map; the MMU's
//! own `check` and `mappings` agree; the frame pool holds exactly the predicted table pages; the
//! machine log shows break-before-make and a TLB invalidate for every removed or changed page.
//! An op that fails changes no byte, no frame and no count, and writes nothing.

// `ensure!` and `ensure_eq!`; included, not a module, because vmm's tests also include this
// file by path.
include!("ensure_macros.rs");

use std::collections::{BTreeMap, BTreeSet};

use vmm::addr::{PageRange, PhysAddr, PhysFrame, VirtAddr, VirtPage};
use vmm::arch::armv7::{
    ArchMmu, AsidAllocator, BlockSize, MapError, MappingAttrs, MappingFlags, MemoryType, TlbReach,
};
use vmm::machine::{AllocationFailure, HostMachine, MachineEvent};
use vmm::phys::FrameAllocator;

/// The op area: 8 MiB (two L2 groups) starting at 0x1F80_0000, so sections, splits and shared
/// L2 pages all happen, plus a few pages past the user window to reach its edge.
pub const AREA_BASE: u32 = 0x1F80_0000 >> 12;
pub const AREA_PAGES: u32 = 2048;
/// Mapped physical addresses come from a device-like window outside the pool.
pub const PHYS_BASE: u32 = 0x6000_0000 >> 12;
pub const POOL_FRAMES: u32 = 512;
pub const USER_WINDOW_PAGES: u32 = 0x4_0000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    frame: u32,
    attrs: MappingAttrs,
    section: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Model {
    pages: BTreeMap<u32, Entry>,
}

impl Model {
    /// L2 groups (4 MiB) holding at least one small page.
    fn groups(&self) -> BTreeSet<u32> {
        self.pages
            .iter()
            .filter(|(_, e)| !e.section)
            .map(|(p, _)| p >> 10)
            .collect()
    }

    /// The spec's chunking: a section where both starts are 1 MiB aligned and 256 pages remain
    /// (and `sections` allows it).
    fn map(&mut self, va: u32, frame: u32, count: u32, attrs: MappingAttrs, sections: bool) {
        let attrs = attrs.normalized();
        let mut done = 0;
        while done < count {
            let (v, f, left) = (va + done, frame + done, count - done);
            if sections && v % 256 == 0 && f % 256 == 0 && left >= 256 {
                for i in 0..256 {
                    self.pages.insert(
                        v + i,
                        Entry {
                            frame: f + i,
                            attrs,
                            section: true,
                        },
                    );
                }
                done += 256;
            } else {
                let n = left.min(256 - v % 256);
                for i in 0..n {
                    self.pages.insert(
                        v + i,
                        Entry {
                            frame: f + i,
                            attrs,
                            section: false,
                        },
                    );
                }
                done += n;
            }
        }
    }

    /// Sections partly inside `[va, va+count)` become small pages, except those that already
    /// have the attributes `keep` (a protect that changes nothing there).
    fn split_partial(&mut self, va: u32, count: u32, keep: Option<MappingAttrs>) {
        let (first, last) = (va / 256, (va + count - 1) / 256);
        for l1 in [first, last] {
            let covered = va <= l1 * 256 && va + count >= (l1 + 1) * 256;
            if !covered {
                for p in l1 * 256..(l1 + 1) * 256 {
                    if let Some(e) = self.pages.get_mut(&p)
                        && Some(e.attrs) != keep
                    {
                        e.section = false;
                    }
                }
            }
        }
    }

    fn unmap(&mut self, va: u32, count: u32) -> u32 {
        self.split_partial(va, count, None);
        (va..va + count)
            .filter(|p| self.pages.remove(p).is_some())
            .count() as u32
    }

    fn protect(&mut self, va: u32, count: u32, attrs: MappingAttrs) {
        self.split_partial(va, count, Some(attrs.normalized()));
        for p in va..va + count {
            if let Some(e) = self.pages.get_mut(&p) {
                e.attrs = attrs.normalized();
            }
        }
    }

    /// Runs of present source pages with consecutive frames and equal attributes; a section
    /// wholly inside the range is a run of its own, flagged so that it may stay a section.
    fn runs(&self, from: u32, count: u32) -> Vec<(u32, u32, u32, MappingAttrs, bool)> {
        let mut runs: Vec<(u32, u32, u32, MappingAttrs, bool)> = Vec::new();
        for off in 0..count {
            let p = from + off;
            let Some(e) = self.pages.get(&p) else {
                continue;
            };
            let first = p & !0xFF;
            let whole = e.section && first >= from && first + 256 <= from + count;
            if let Some(r) = runs.last_mut()
                && r.0 + r.2 == off
                && r.1 + r.2 == e.frame
                && r.3 == e.attrs
                && r.4 == whole
                && !(whole && p == first)
            {
                r.2 += 1;
                continue;
            }
            runs.push((off, e.frame, 1, e.attrs, whole));
        }
        runs
    }
}

/// One `ArchMmu` call on the user space: `va`, `from`, `to` and `pages` count pages, `frame` is a
/// physical frame number, `flags` are `MappingFlags` bits (`USER` = 8) and `memory` picks the
/// memory type (modulo 4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Map {
        va: u32,
        pages: u32,
        frame: u32,
        flags: u8,
        memory: u8,
    },
    Unmap {
        va: u32,
        pages: u32,
    },
    Protect {
        va: u32,
        pages: u32,
        flags: u8,
    },
    /// `protect_many` over `[va, va + pages)`: its partial sections split whatever happens, then
    /// the first half takes `flags` and the second half `flags` with `WRITE` toggled, as one
    /// operation (an mprotect over two regions).
    ProtectMany {
        va: u32,
        pages: u32,
        flags: u8,
    },
    Move {
        from: u32,
        pages: u32,
        to: u32,
    },
    Query {
        va: u32,
    },
    /// `move_replacing` with the target as the one range to clear (mremap `MREMAP_FIXED`):
    /// whatever the target held goes, then the pages move (the result counts them).
    MoveReplacing {
        from: u32,
        pages: u32,
        to: u32,
    },
    /// `replace_range`: the pages map `frame..frame + pages` as small pages, whatever was
    /// there before going (the result counts what went).
    Replace {
        va: u32,
        pages: u32,
        frame: u32,
        flags: u8,
        memory: u8,
    },
}

/// The two changes of [`Op::ProtectMany`]: `(va, pages, attrs)` of each non-empty half.
type Change = Option<(u32, u32, MappingAttrs)>;

fn halves(va: u32, pages: u32, flags: u8) -> (Change, Change) {
    let h = pages / 2;
    let half = |v: u32, n: u32, f: u8| (n > 0).then(|| (v, n, MappingAttrs::new(flags_of(f))));
    (
        half(va, h, flags),
        half(va.saturating_add(h), pages - h, flags ^ 2),
    )
}

fn flags_of(bits: u8) -> MappingFlags {
    MappingFlags::from_bits_truncate(bits)
}

fn memory_of(sel: u8) -> MemoryType {
    [
        MemoryType::Cached,
        MemoryType::Uncached,
        MemoryType::Device,
        MemoryType::StronglyOrdered,
    ][sel as usize % 4]
}

struct World {
    m: HostMachine,
    frames: FrameAllocator,
    asids: AsidAllocator,
    mmu: ArchMmu,
    model: Model,
}

#[inline]
fn world(reach: TlbReach) -> World {
    let mut m = HostMachine::default();
    let mut frames = FrameAllocator::new(
        PhysFrame::from_start(PhysAddr::new(0x4000_0000)).unwrap(),
        POOL_FRAMES,
    );
    let mut asids = AsidAllocator::new().with_reach(reach);
    let mmu = ArchMmu::new_user(&mut m, &mut frames, &mut asids).unwrap();
    World {
        m,
        frames,
        asids,
        mmu,
        model: Model::default(),
    }
}

fn range(va: u32, pages: u32) -> Option<PageRange> {
    PageRange::new(VirtPage::from_number(va)?, pages)
}

fn out_of_window(va: u32, pages: u32) -> MapError {
    MapError::OutOfWindow {
        start: VirtAddr::new(va << 12),
        pages,
    }
}

fn in_window(va: u32, pages: u32) -> bool {
    pages > 0 && u64::from(va) + u64::from(pages) <= u64::from(USER_WINDOW_PAGES)
}

/// What the model says the op returns, and the model after it. `fail_at` is the failing
/// allocation's index; `needed` new L2 pages fail when `fail_at < needed`.
fn predict(model: &Model, op: &Op, fail_at: Option<u64>) -> (Result<Option<u32>, MapError>, Model) {
    let mut after = model.clone();
    // `value`, unless the new L2 pages the op needs (for the state `mid` and the one after it)
    // reach the refused allocation.
    let unless_refused = |mid: &BTreeSet<u32>, after: &Model, value: Option<u32>| {
        let old = model.groups();
        let needed = mid
            .union(&after.groups())
            .filter(|g| !old.contains(g))
            .count() as u64;
        if fail_at.is_some_and(|k| k < needed) {
            Err(MapError::NoMemory)
        } else {
            Ok(value)
        }
    };
    let result = match *op {
        Op::Map {
            va,
            pages,
            frame,
            flags,
            memory,
        } => {
            let attrs = MappingAttrs {
                flags: flags_of(flags),
                memory: memory_of(memory),
            };
            if !in_window(va, pages) {
                Err(out_of_window(va, pages))
            } else if !attrs.flags.contains(MappingFlags::USER) {
                Err(MapError::InvalidFlags(attrs.flags))
            } else if u64::from(frame) + u64::from(pages) > 1 << 20 {
                Err(MapError::PhysOutOfRange {
                    start: PhysAddr::new(frame << 12),
                    pages,
                })
            } else if let Some(p) = (va..va + pages).find(|p| model.pages.contains_key(p)) {
                Err(MapError::AlreadyMapped(VirtAddr::new(p << 12)))
            } else {
                after.map(va, frame, pages, attrs, true);
                unless_refused(&BTreeSet::new(), &after, None)
            }
        }
        Op::Unmap { va, pages } => {
            if !in_window(va, pages) {
                Err(out_of_window(va, pages))
            } else {
                let n = after.unmap(va, pages);
                unless_refused(&BTreeSet::new(), &after, Some(n))
            }
        }
        Op::Protect { va, pages, flags } => {
            let attrs = MappingAttrs::new(flags_of(flags));
            if !in_window(va, pages) {
                Err(out_of_window(va, pages))
            } else if !attrs.flags.contains(MappingFlags::USER) {
                Err(MapError::InvalidFlags(attrs.flags))
            } else {
                after.protect(va, pages, attrs);
                unless_refused(&BTreeSet::new(), &after, None)
            }
        }
        Op::ProtectMany { va, pages, flags } => {
            let (first, second) = halves(va, pages, flags);
            if !in_window(va, pages) {
                Err(out_of_window(va, pages))
            } else if let Some((_, _, a)) = [first, second]
                .into_iter()
                .flatten()
                .find(|(_, _, a)| !a.flags.contains(MappingFlags::USER))
            {
                Err(MapError::InvalidFlags(a.flags))
            } else {
                after.split_partial(va, pages, None);
                for (v, n, a) in [first, second].into_iter().flatten() {
                    after.protect(v, n, a);
                }
                unless_refused(&BTreeSet::new(), &after, None)
            }
        }
        Op::Move { from, pages, to } => {
            if !in_window(from, pages) {
                Err(out_of_window(from, pages))
            } else if !in_window(to, pages) {
                Err(out_of_window(to, pages))
            } else if from < to + pages && to < from + pages {
                Err(MapError::Overlap)
            } else {
                let runs = model.runs(from, pages);
                let conflict = runs
                    .iter()
                    .flat_map(|r| (0..r.2).map(move |i| to + r.0 + i))
                    .find(|p| model.pages.contains_key(p));
                if let Some(p) = conflict {
                    Err(MapError::AlreadyMapped(VirtAddr::new(p << 12)))
                } else {
                    for &(off, frame, n, attrs, section) in &runs {
                        after.map(to + off, frame, n, attrs, section);
                    }
                    let mid = after.groups();
                    after.unmap(from, pages);
                    let moved = runs.iter().map(|r| r.2).sum();
                    unless_refused(&mid, &after, Some(moved))
                }
            }
        }
        Op::Query { va } => {
            if va >= USER_WINDOW_PAGES {
                Err(out_of_window(va, 1))
            } else {
                Ok(model.pages.get(&va).map(|e| e.frame))
            }
        }
        Op::MoveReplacing { from, pages, to } => {
            if !in_window(from, pages) {
                Err(out_of_window(from, pages))
            } else if !in_window(to, pages) {
                Err(out_of_window(to, pages))
            } else if from < to + pages && to < from + pages {
                Err(MapError::Overlap)
            } else {
                // The target is cleared (its tables stay linked until the end), the source's
                // runs land there, then the source goes.
                after.unmap(to, pages);
                let runs = model.runs(from, pages);
                for &(off, frame, n, attrs, section) in &runs {
                    after.map(to + off, frame, n, attrs, section);
                }
                let mid = after.groups();
                after.unmap(from, pages);
                let moved = runs.iter().map(|r| r.2).sum();
                unless_refused(&mid, &after, Some(moved))
            }
        }
        Op::Replace {
            va,
            pages,
            frame,
            flags,
            memory,
        } => {
            let attrs = MappingAttrs {
                flags: flags_of(flags),
                memory: memory_of(memory),
            };
            if !in_window(va, pages) {
                Err(out_of_window(va, pages))
            } else if !attrs.flags.contains(MappingFlags::USER) {
                Err(MapError::InvalidFlags(attrs.flags))
            } else if u64::from(frame) + u64::from(pages) > 1 << 20 {
                // The driver hands over only the frames below 4 GiB.
                Err(MapError::LengthMismatch {
                    pages,
                    frames: ((1u32 << 20).saturating_sub(frame)).min(pages) as usize,
                })
            } else {
                // Sections partly inside are split, everything inside goes, and the range is
                // mapped with small pages; no table is emptied on the way.
                let gone = after.unmap(va, pages);
                after.map(va, frame, pages, attrs, false);
                unless_refused(&BTreeSet::new(), &after, Some(gone))
            }
        }
    };
    if result.is_err() {
        after = model.clone();
    }
    (result, after)
}

#[inline]
fn apply(w: &mut World, op: &Op) -> Result<Option<u32>, MapError> {
    let (m, frames, mmu) = (&mut w.m, &mut w.frames, &mut w.mmu);
    match *op {
        Op::Map {
            va,
            pages,
            frame,
            flags,
            memory,
        } => {
            let r = range(va, pages).ok_or(out_of_window(va, pages))?;
            let f = PhysFrame::from_number(frame).ok_or(out_of_window(va, pages))?;
            let attrs = MappingAttrs {
                flags: flags_of(flags),
                memory: memory_of(memory),
            };
            mmu.map(m, frames, r, f, attrs).map(|()| None)
        }
        Op::Unmap { va, pages } => mmu
            .unmap(m, frames, range(va, pages).ok_or(out_of_window(va, pages))?)
            .map(Some),
        Op::Protect { va, pages, flags } => {
            let r = range(va, pages).ok_or(out_of_window(va, pages))?;
            mmu.protect(m, frames, r, MappingAttrs::new(flags_of(flags)))
                .map(|()| None)
        }
        Op::ProtectMany { va, pages, flags } => {
            let r = range(va, pages).ok_or(out_of_window(va, pages))?;
            let (first, second) = halves(va, pages, flags);
            let changes: Vec<(PageRange, MappingAttrs)> = [first, second]
                .into_iter()
                .flatten()
                .filter_map(|(v, n, a)| Some((range(v, n)?, a)))
                .collect();
            mmu.protect_many(m, frames, Some(r), &changes)
                .map(|()| None)
        }
        Op::Move { from, pages, to } => {
            let r = range(from, pages).ok_or(out_of_window(from, pages))?;
            let t = VirtPage::from_number(to).ok_or(out_of_window(to, pages))?;
            mmu.move_pages(m, frames, r, t).map(Some)
        }
        Op::MoveReplacing { from, pages, to } => {
            let r = range(from, pages).ok_or(out_of_window(from, pages))?;
            let t = VirtPage::from_number(to).ok_or(out_of_window(to, pages))?;
            // The target as the range to clear; one past 4 GiB is left out (the vmm refuses
            // the target first).
            let clear: Vec<PageRange> = range(to, pages).into_iter().collect();
            mmu.move_replacing(m, frames, r, t, &clear, |_, _| {})
                .map(Some)
        }
        Op::Replace {
            va,
            pages,
            frame,
            flags,
            memory,
        } => {
            let r = range(va, pages).ok_or(out_of_window(va, pages))?;
            // The frames from `frame` that exist (below 4 GiB): fewer than the pages when the run
            // would pass 4 GiB, which the vmm refuses as a length mismatch.
            let targets: Vec<PhysFrame> = (0..pages)
                .map_while(|i| PhysFrame::from_number(frame.checked_add(i)?))
                .collect();
            let attrs = MappingAttrs {
                flags: flags_of(flags),
                memory: memory_of(memory),
            };
            let mut gone = 0;
            mmu.replace_range(m, frames, r, &targets, attrs, |_, _| gone += 1)
                .map(|()| Some(gone))
        }
        Op::Query { va } => {
            let t = mmu.query(
                m,
                VirtAddr::new(va << 12)
                    .checked_add(0x123)
                    .unwrap_or(VirtAddr::new(va << 12)),
            )?;
            Ok(t.map(|t| t.frame.number()))
        }
    }
}

/// An independent walker over the raw table bytes (ARM ARM short descriptors, TTBCR.N = 2),
/// returning (frame, PL0 read, PL0 write, PL1 read, PL1 write, execute, nG, is section).
fn walk(m: &HostMachine, l1_table: PhysAddr, page: u32) -> Option<(u32, [bool; 5], bool, bool)> {
    let l1 = m.peek_word(PhysAddr::new(l1_table.as_u32() + (page >> 8) * 4))?;
    let (frame, ap, xn, ng, section) = match l1 & 3 {
        0 => return None,
        1 => {
            let l2 = m.peek_word(PhysAddr::new((l1 & 0xFFFF_FC00) + (page & 0xFF) * 4))?;
            match l2 & 3 {
                0 => return None,
                1 => panic!("large page at {page:#x}"),
                _ => (
                    l2 >> 12,
                    ((l2 >> 7) & 4) | ((l2 >> 4) & 3),
                    l2 & 1 != 0,
                    l2 & (1 << 11) != 0,
                    false,
                ),
            }
        }
        _ => {
            assert_eq!(l1 & (1 << 18), 0, "supersection");
            (
                (l1 >> 20 << 8) + (page & 0xFF),
                ((l1 >> 13) & 4) | ((l1 >> 10) & 3),
                l1 & 16 != 0,
                l1 & (1 << 17) != 0,
                true,
            )
        }
    };
    // AP[2:0] -> (PL0 read, PL0 write, PL1 read, PL1 write), ARM ARM table B3-8 (AFE = 0).
    let (ur, uw, pr, pw) = match ap {
        0b000 => (false, false, false, false),
        0b001 => (false, false, true, true),
        0b010 => (true, false, true, true),
        0b011 => (true, true, true, true),
        0b101 => (false, false, true, false),
        0b110 | 0b111 => (true, false, true, false),
        _ => panic!("reserved AP at {page:#x}"),
    };
    Some((frame, [ur, uw, pr, pw, !xn], ng, section))
}

/// What the model's attributes allow, in the walker's terms.
fn expected_perms(attrs: MappingAttrs) -> [bool; 5] {
    let f = attrs.flags;
    let r = f.contains(MappingFlags::READ);
    let w = f.contains(MappingFlags::WRITE);
    let u = f.contains(MappingFlags::USER);
    [u && r, u && w, r, w, f.contains(MappingFlags::EXECUTE)]
}

type Snapshot = (
    Vec<(VirtPage, vmm::arch::armv7::Translation)>,
    u32,
    Vec<(PhysFrame, u8)>,
);

fn snapshot(w: &mut World) -> Snapshot {
    (
        w.mmu.mappings(&mut w.m).unwrap(),
        w.mmu.table_pages(),
        w.frames.free_blocks(),
    )
}

fn check_world(w: &mut World, pages_of_interest: &BTreeSet<u32>) -> Result<(), String> {
    w.mmu.check(&mut w.m)?;
    w.frames.check()?;
    let groups = w.model.groups().len() as u32;
    ensure_eq!(w.mmu.table_pages(), 1 + groups, "table pages");
    ensure_eq!(
        w.frames.free_count(),
        POOL_FRAMES - 1 - groups,
        "free frames"
    );
    let l1 = w.mmu.l1_table();
    for &p in pages_of_interest {
        let got = walk(&w.m, l1, p);
        let want = w
            .model
            .pages
            .get(&p)
            .map(|e| (e.frame, expected_perms(e.attrs), true, e.section));
        ensure_eq!(got, want, "page {:#x}", p << 12);
    }
    let dump: Vec<(u32, u32, MappingAttrs, bool)> = w
        .mmu
        .mappings(&mut w.m)
        .unwrap()
        .into_iter()
        .map(|(p, t)| {
            (
                p.number(),
                t.frame.number(),
                t.attrs,
                t.block == BlockSize::Section,
            )
        })
        .collect();
    let want: Vec<(u32, u32, MappingAttrs, bool)> = w
        .model
        .pages
        .iter()
        .map(|(&p, e)| (p, e.frame, e.attrs, e.section))
        .collect();
    ensure_eq!(dump, want);
    Ok(())
}

/// Break-before-make and TLB maintenance, read off the machine log of one op.
fn check_log(
    log: &[MachineEvent],
    before: &Model,
    after: &Model,
    (asid, reach): (vmm::arch::armv7::Asid, TlbReach),
) -> Result<(), String> {
    for e in log {
        let wrong_reach = match reach {
            TlbReach::Local => e.is_broadcast_tlb_invalidate(),
            TlbReach::InnerShareable => e.is_local_tlb_invalidate(),
        };
        ensure!(!wrong_reach, "{:?} from a space of reach {:?}", e, reach);
        if let MachineEvent::Write { pa, old, new } = *e {
            ensure!(
                old & 3 == 0 || new & 3 == 0 || old == new,
                "valid descriptor {:#x} replaced by {:#x} at {:?} without break-before-make",
                old,
                new,
                pa
            );
        }
        if let Some((a, _)) = e.page_invalidate() {
            ensure_eq!(a, asid);
        }
        ensure!(
            !matches!(
                e,
                MachineEvent::TlbInvalidateAll
                    | MachineEvent::TlbInvalidatePageAllAsids(_)
                    | MachineEvent::TlbInvalidateAllIs
                    | MachineEvent::TlbInvalidatePageAllAsidsIs(_)
            ),
            "user pages must be invalidated by ASID: {:?}",
            e
        );
    }
    let first_write = log
        .iter()
        .position(|e| matches!(e, MachineEvent::Write { .. }));
    let Some(first_write) = first_write else {
        return Ok(());
    };
    let invalidated: BTreeSet<u32> = log[first_write..]
        .iter()
        .filter_map(|e| e.page_invalidate().map(|(_, page)| page.number()))
        .collect();
    for (&p, old) in &before.pages {
        let changed = after.pages.get(&p).is_none_or(|new| {
            new.frame != old.frame || new.attrs != old.attrs || new.section != old.section
        });
        if changed {
            let covered = invalidated.contains(&p)
                || (old.section
                    && invalidated
                        .range(p & !0xFF..(p | 0xFF) + 1)
                        .next()
                        .is_some());
            ensure!(
                covered,
                "page {:#x} changed without a TLB invalidate",
                p << 12
            );
        }
    }
    // A table page goes back to the allocator only after every invalidate of the op and the
    // barrier after it: until then a walk may still read it.
    let last_invalidate = log.iter().rposition(|e| e.page_invalidate().is_some());
    let first_free = log
        .iter()
        .position(|e| matches!(e, MachineEvent::FramesFreed { .. }));
    if let (Some(i), Some(f)) = (last_invalidate, first_free) {
        ensure!(
            f > i && log[i..f].contains(&MachineEvent::Dsb),
            "{:?} freed before the op's last TLB invalidate and its DSB",
            log[f]
        );
    }
    let tail: Vec<&MachineEvent> = log
        .iter()
        .rev()
        .filter(|e| {
            !matches!(
                e,
                MachineEvent::Read { .. } | MachineEvent::FramesFreed { .. }
            )
        })
        .take(2)
        .collect();
    ensure_eq!(
        tail,
        vec![&MachineEvent::Isb, &MachineEvent::Dsb],
        "op must end with DSB; ISB"
    );
    Ok(())
}

/// Runs `ops` (each with the index of the allocation to refuse, if any) on a fresh user space
/// and the model, checking everything after every op, then unmaps everything and destroys the
/// space. The error names the op (1-based) and what differed.
///
/// `#[inline]` (with `run_op`, `apply`, `world` and `teardown`) so that the `mmu` fuzz target
/// compiles, and instruments, the `ArchMmu` code they instantiate; the checker itself is built
/// without coverage counters there (see `run::StepHooks` in the checker).
#[inline]
pub fn run_sequence(ops: &[(Op, Option<u8>)]) -> Result<(), String> {
    run_sequence_in(ops, TlbReach::Local)
}

/// [`run_sequence`] on a space whose invalidates have `reach` (broadcast: a machine of several
/// CPUs), every invalidate of that form.
#[inline]
pub fn run_sequence_in(ops: &[(Op, Option<u8>)], reach: TlbReach) -> Result<(), String> {
    let mut w = world(reach);
    let mut interest: BTreeSet<u32> = BTreeSet::new();
    for (i, (op, fail_at)) in ops.iter().enumerate() {
        run_op(&mut w, &mut interest, op, *fail_at).map_err(|e| {
            format!(
                "op {} of {} ({op:?}, refusal {fail_at:?}): {e}",
                i + 1,
                ops.len()
            )
        })?;
    }
    teardown(w).map_err(|e| format!("teardown after {} ops: {e}", ops.len()))
}

#[inline]
fn run_op(
    w: &mut World,
    interest: &mut BTreeSet<u32>,
    op: &Op,
    fail_at: Option<u8>,
) -> Result<(), String> {
    {
        let fail_at = fail_at.map(u64::from);
        let (want, model_after) = predict(&w.model, op, fail_at);
        if let Some(k) = fail_at {
            w.m.set_allocation_failure(AllocationFailure::Nth(k));
        }
        let before = snapshot(w);
        w.m.set_recording(true);
        let got = apply(w, op);
        let log = w.m.take_log();
        w.m.set_recording(false);
        w.m.set_allocation_failure(AllocationFailure::Never);
        ensure_eq!(&got, &want, "return value");
        if got.is_err() {
            ensure!(
                !log.iter().any(|e| matches!(e, MachineEvent::Write { .. })),
                "failed op wrote a descriptor"
            );
            ensure_eq!(snapshot(w), before, "failed op changed state");
        } else {
            check_log(
                &log,
                &w.model,
                &model_after,
                (w.mmu.asid(), w.asids.reach()),
            )?;
        }
        w.model = model_after;
        match *op {
            Op::Map { va, pages, .. }
            | Op::Replace { va, pages, .. }
            | Op::Unmap { va, pages }
            | Op::Protect { va, pages, .. }
            | Op::ProtectMany { va, pages, .. } => {
                interest.extend(
                    va.saturating_sub(1)
                        ..va.saturating_add(pages)
                            .saturating_add(1)
                            .min(USER_WINDOW_PAGES),
                );
            }
            Op::Move { from, to, pages } | Op::MoveReplacing { from, to, pages } => {
                interest.extend(from..from.saturating_add(pages).min(USER_WINDOW_PAGES));
                interest.extend(to..to.saturating_add(pages).min(USER_WINDOW_PAGES));
            }
            Op::Query { va } => {
                interest.insert(va.min(USER_WINDOW_PAGES - 1));
            }
        }
        check_world(w, interest)?;
    }
    Ok(())
}

#[inline]
fn teardown(w: World) -> Result<(), String> {
    // Unmapping everything and destroying the space gives every frame back.
    let World {
        mut m,
        mut frames,
        mut asids,
        mut mmu,
        ..
    } = w;
    mmu.unmap(
        &mut m,
        &mut frames,
        PageRange::new(VirtPage::default(), USER_WINDOW_PAGES).unwrap(),
    )
    .unwrap();
    ensure_eq!(mmu.table_pages(), 1);
    mmu.destroy(&mut m, &mut frames, &mut asids);
    ensure_eq!(frames.free_count(), POOL_FRAMES);
    ensure_eq!(asids.allocated_count(), 0);
    Ok(())
}
