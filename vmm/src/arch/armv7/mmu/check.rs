//! The self-check: the tables' bytes agree with the bookkeeping kept beside them (valid-entry
//! counts, L2 pages) and hold only descriptors this crate writes.

use super::*;

impl ArchMmu {
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
                let va = page_addr(l1 * ENTRIES_PER_L2);
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
                                    self.check_attrs(page_addr(p), attrs, Domain::ZERO)?;
                                    valid += 1;
                                }
                                L2Descriptor::Large { .. } => {
                                    return Err(format!("large page at {:?}", page_addr(p)));
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

    pub(super) fn check_attrs(
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
}
