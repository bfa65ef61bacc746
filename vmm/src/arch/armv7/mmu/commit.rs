//! The commit half of every operation: descriptor writes from a plan, with break-before-make,
//! table splits from reserved pages, and emptied tables unlinked. A commit never fails on a
//! condition a caller can cause; finding less than its plan promised is
//! [`MapError::Internal`], which `journal.rs` undoes.

use super::*;

impl ArchMmu {
    pub(super) fn commit_map<M: Machine>(
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
                    let (table, fresh) = self.table_for_insert(m, l1, reserved)?;
                    for i in 0..count {
                        let desc = L2Descriptor::Small {
                            base: frame_plus(frame, i)?.start(),
                            attrs: pattrs,
                        };
                        let pa = Self::l2_entry(table, va.number() + i);
                        if fresh {
                            m.replace_word(pa, 0, desc.encode());
                        } else {
                            m.write_word(pa, desc.encode());
                        }
                    }
                    *self.used.get_mut(l1) += count as u16;
                }
            }
        }
        Ok(())
    }

    pub(super) fn commit_unmap<M: Machine>(
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
    pub(super) fn clear_entries<M: Machine>(
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
                    batch.push(page(lo)?);
                    let first = PhysFrame::containing(base);
                    for i in 0..ENTRIES_PER_L2 {
                        on_removed(page(lo + i)?, frame_plus(first, i)?);
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
                                frame_plus(PhysFrame::containing(base), p % 16)?
                            }
                        };
                        m.replace_word(pa, raw, 0);
                        batch.push(page(p)?);
                        let count = self.used.get_mut(l1);
                        *count = count.saturating_sub(1);
                        on_removed(page(p)?, frame);
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
    pub(super) fn commit_clear<M: Machine>(
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
    pub(super) fn commit_partial_splits<M: Machine>(
        &mut self,
        m: &mut M,
        range: PageRange,
        reserved: &mut Reserved,
    ) -> Result<(), MapError> {
        // Only the first and the last L1 entry of the range can be partly inside it.
        let span = self.l1_span(range);
        let mut ends = [span.start, span.end - 1];
        let ends = if ends[0] == ends[1] {
            &mut ends[..1]
        } else {
            &mut ends[..]
        };
        for &mut l1 in ends {
            let (lo, hi) = Self::clip(range, l1);
            if hi - lo < ENTRIES_PER_L2
                && matches!(self.read_l1(m, l1), L1Descriptor::Section { .. })
            {
                self.table_for_update(m, l1, reserved)?;
            }
        }
        Ok(())
    }

    /// The end of an operation whose journaled commit may have emptied tables: on success the
    /// pages of the emptied tables are freed (the commit's flush invalidated their entries) and
    /// the reservation's unused pages go back; on error (the journal undid the commit) only
    /// the reservation goes back.
    pub(super) fn settle<M: Machine, T>(
        &mut self,
        m: &mut M,
        frames: &mut FrameAllocator,
        mut reserved: Reserved,
        done: Result<(T, Vec<(u32, PhysFrame)>), MapError>,
    ) -> Result<T, MapError> {
        let (value, emptied) = done.inspect_err(|_| reserved.release(m, frames))?;
        self.free_emptied(m, frames, emptied);
        reserved.release(m, frames);
        Ok(value)
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
            // Free the page once no entry of its group links a table in it: the group may have
            // no page left, or (a move landing sections over its tables, then small pages
            // beside them) a new one.
            if self.group_page(m, l1) != Some(p) && frames.free(m, p).is_ok() {
                self.l2_pages -= 1;
            }
        }
    }

    /// The L2 table for a fault L1 entry about to receive pages: the group's page if it has one,
    /// else a reserved page; and whether the table is in a fresh reserved page (all zeros).
    pub(super) fn table_for_insert<M: Machine>(
        &mut self,
        m: &mut M,
        l1: u32,
        reserved: &mut Reserved,
    ) -> Result<(PhysAddr, bool), MapError> {
        if let L1Descriptor::PageTable { table, .. } = self.read_l1(m, l1) {
            return Ok((table, false));
        }
        let (group, fresh) = match self.group_page(m, l1) {
            Some(p) => (p, false),
            None => {
                let taken = reserved.take().ok_or(MapError::Internal {
                    what: "the plan reserved no L2 page for this entry",
                    va: page_addr(l1 * ENTRIES_PER_L2),
                })?;
                self.l2_pages += 1;
                taken
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
        Ok((table, fresh))
    }

    /// The L2 table of an L1 entry that is a page table or a section (split first).
    pub(super) fn table_for_update<M: Machine>(
        &mut self,
        m: &mut M,
        l1: u32,
        reserved: &mut Reserved,
    ) -> Result<PhysAddr, MapError> {
        let internal = |what| MapError::Internal {
            what,
            va: page_addr(l1 * ENTRIES_PER_L2),
        };
        match self.read_l1(m, l1) {
            L1Descriptor::PageTable { table, .. } => Ok(table),
            L1Descriptor::Section { base, attrs, .. } => {
                let (group, fresh) = match self.group_page(m, l1) {
                    Some(p) => (p, false),
                    None => match reserved.take() {
                        Some(taken) => {
                            self.l2_pages += 1;
                            taken
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
                        base: frame_plus(first, i)?.start(),
                        attrs,
                    };
                    let pa = Self::l2_entry(table, l1 * ENTRIES_PER_L2 + i);
                    if fresh {
                        m.replace_word(pa, 0, desc.encode());
                    } else {
                        m.write_word(pa, desc.encode());
                    }
                }
                *self.used.get_mut(l1) = ENTRIES_PER_L2 as u16;
                let desc = L1Descriptor::PageTable {
                    table,
                    domain: Domain::ZERO,
                    ns: false,
                    pxn: false,
                };
                self.break_before_make_l1(m, l1, desc)?;
                Ok(table)
            }
            L1Descriptor::Fault | L1Descriptor::Supersection(_) => Err(internal(
                "a page expected here has neither a table nor a section",
            )),
        }
    }

    /// Replaces a valid L1 entry: fault, DSB, invalidate, DSB, new value.
    pub(super) fn break_before_make_l1<M: Machine>(
        &mut self,
        m: &mut M,
        l1: u32,
        new: L1Descriptor,
    ) -> Result<(), MapError> {
        let first = page(l1 * ENTRIES_PER_L2)?;
        self.write_l1(m, l1, L1Descriptor::Fault);
        let mut batch = TlbBatch::new(self.scope());
        batch.push(first);
        batch.flush(m);
        self.write_l1(m, l1, new);
        Ok(())
    }

    /// Gives every mapped page of `range` the attributes `new`, splitting a section partly
    /// inside (its page was reserved) and replacing changed entries by break-before-make.
    pub(super) fn commit_protect<M: Machine>(
        &mut self,
        m: &mut M,
        range: PageRange,
        new: PageAttributes,
        reserved: &mut Reserved,
    ) -> Result<(), MapError> {
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
                    self.break_before_make_l1(m, l1, desc)?;
                }
                L1Descriptor::Section { .. } | L1Descriptor::PageTable { .. } => {
                    let table = self.table_for_update(m, l1, reserved)?;
                    let mut changed = Vec::new();
                    // Read once: each entry is written only after it was read.
                    let words = &mut l2[..(hi - lo) as usize];
                    m.read_words(Self::l2_entry(table, lo), words);
                    for (p, &raw) in (lo..hi).zip(words.iter()) {
                        let pa = Self::l2_entry(table, p);
                        if let L2Descriptor::Small { base, attrs: old } = L2Descriptor::decode(raw)
                            && old != new
                        {
                            m.replace_word(pa, raw, 0);
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
                            batch.push(page(p)?);
                        }
                        batch.flush(m);
                        for (pa, raw, _) in changed {
                            m.rewrite_word(pa, raw);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
