//! The prepare half of every operation: what it will write, read from the tables first, and
//! the L2 pages it will need, all allocated before anything is written (or none, and nothing
//! changed).

use super::*;

/// L2 pages allocated by the prepare step and handed out by the commit step.
pub(super) struct Reserved {
    /// `pages[..top]` are available (taken from the top down), `pages[top..]` were taken, so a
    /// rollback can give them back without allocating anything.
    pages: Vec<PhysFrame>,
    top: usize,
    /// Pages a commit gave to the reservation from a table it unlinked (they belong to the
    /// tables again after a rollback, never to the allocator).
    recycled: Vec<PhysFrame>,
}

impl Reserved {
    /// All `n` pages or none: a refused request leaves the allocator exactly as it was (even
    /// the order of its free lists). The pages are zeroed and the zeroes made visible to the
    /// table walker (DSB) before any descriptor can point at them.
    pub(super) fn allocate<M: Machine>(
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
        Ok(Self {
            top: got.len(),
            pages: got,
            recycled: Vec::new(),
        })
    }

    /// The next page, and whether it is fresh: zeroed when it was allocated and not handed out
    /// before (a recycled page is not fresh: its zeroes are the tables' invariant, not a fact).
    pub(super) fn take(&mut self) -> Option<(PhysFrame, bool)> {
        self.top = self.top.checked_sub(1)?;
        let page = self.pages[self.top];
        Some((page, !self.recycled.contains(&page)))
    }

    /// Adds the (zeroed) page of a table the commit unlinked, to be taken next.
    pub(super) fn recycle(&mut self, page: PhysFrame) {
        self.recycled.push(page);
        self.pages.insert(self.top, page);
        self.top += 1;
    }

    /// After a rollback: the pages taken are available again, and the recycled ones, linked
    /// again by the restored tables, leave the reservation.
    pub(super) fn undo_takes(&mut self) {
        let recycled = core::mem::take(&mut self.recycled);
        self.pages.retain(|p| !recycled.contains(p));
        self.top = self.pages.len();
    }

    /// Gives back what the commit did not use (nothing, when the plan was exact).
    pub(super) fn release<M: Machine>(&mut self, m: &mut M, frames: &mut FrameAllocator) {
        for &f in &self.pages[..self.top] {
            let _ = frames.free(m, f);
        }
        self.pages.drain(..self.top);
        self.top = 0;
    }
}

/// The groups of four L1 entries that need a new L2 page, without duplicates.
#[derive(Default)]
pub(super) struct GroupsNeeded(pub(super) Vec<u32>);

impl GroupsNeeded {
    pub(super) fn add(&mut self, group: u32) {
        if let Err(at) = self.0.binary_search(&group) {
            self.0.insert(at, group);
        }
    }
}

/// Pages mapped together: `count` pages (at `offset` in a move's source) mapping consecutive
/// frames from `frame` with the same attributes; `section` allows 1 MiB sections where aligned.
#[derive(Clone, Copy)]
pub(super) struct Run {
    pub(super) offset: u32,
    pub(super) frame: PhysFrame,
    pub(super) count: u32,
    pub(super) attrs: MappingAttrs,
    pub(super) section: bool,
}

/// One step of a mapping: a whole section, or a run of small pages inside one MiB.
pub(super) enum Chunk {
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

pub(super) fn chunks(
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

impl ArchMmu {
    /// Runs of consecutive present pages of `from` with consecutive frames and equal
    /// attributes. A section wholly inside `from` is a run of its own and may stay a section
    /// when moved to a 1 MiB aligned target; every other page stays a small page.
    pub(super) fn runs_of<M: Machine>(
        &self,
        m: &mut M,
        from: PageRange,
    ) -> Result<Vec<Run>, MapError> {
        let mut runs: Vec<Run> = Vec::new();
        for (offset, p) in from.pages().enumerate() {
            let Some(t) = self.translate(m, p)? else {
                continue;
            };
            let offset = offset as u32;
            let first_of_section = p.number() - p.number() % ENTRIES_PER_L2;
            let whole_section = t.block == BlockSize::Section
                && from.contains(page(first_of_section)?)
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

    pub(super) fn plan_map<M: Machine>(
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
                        return Err(MapError::AlreadyMapped(page_addr(first)));
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
                                return Err(MapError::AlreadyMapped(page_addr(p)));
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
    pub(super) fn plan_splits<M: Machine>(
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
                        va: page_addr(lo),
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
}
