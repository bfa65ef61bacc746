//! The ordered region map of one space.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::region::Region;
use crate::addr::{PageRange, VirtPage};

/// Regions keyed by first page. Invariant: disjoint and non-empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegionMap {
    by_start: BTreeMap<u32, Region>,
}

impl RegionMap {
    /// Every region in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = &Region> {
        self.by_start.values()
    }

    /// How many regions there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_start.len()
    }

    /// Whether there is none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_start.is_empty()
    }

    /// The region containing `page`.
    #[must_use]
    pub fn find(&self, page: VirtPage) -> Option<&Region> {
        self.by_start
            .range(..=page.number())
            .next_back()
            .map(|(_, r)| r)
            .filter(|r| r.range.contains(page))
    }

    /// The regions sharing a page with `range`, ascending.
    pub fn overlapping(&self, range: PageRange) -> impl Iterator<Item = &Region> {
        let first = self
            .find(range.start())
            .map_or(range.start().number(), |r| r.range.start().number());
        self.by_start
            .range(first..range.end_number())
            .map(|(_, r)| r)
            .filter(move |r| r.range.overlaps(range))
    }

    /// Whether no region shares a page with `range`.
    #[must_use]
    pub fn is_free(&self, range: PageRange) -> bool {
        self.overlapping(range).next().is_none()
    }

    /// Whether regions cover every page of `range` (adjacent regions may share the work).
    #[must_use]
    pub fn covers(&self, range: PageRange) -> bool {
        let mut next = range.start().number();
        for r in self.overlapping(range) {
            if r.range.start().number() > next {
                return false;
            }
            next = r.range.end_number();
        }
        next >= range.end_number()
    }

    /// Adds a region. The caller has checked that its range is free.
    pub fn insert(&mut self, region: Region) {
        self.by_start.insert(region.range.start().number(), region);
    }

    /// Removes the region starting at `start`.
    pub fn remove(&mut self, start: VirtPage) -> Option<Region> {
        self.by_start.remove(&start.number())
    }

    /// Splits the region strictly containing `page` (if any) so that a region starts at `page`.
    pub fn split_at(&mut self, page: VirtPage) {
        let Some(r) = self.find(page).copied() else {
            return;
        };
        if let (Some(head), Some(tail)) = (r.head_before(page), r.tail_from(page)) {
            self.insert(head);
            self.insert(tail);
        }
    }

    /// Splits at both ends of `range` and returns the regions inside it, ascending.
    pub fn isolate(&mut self, range: PageRange) -> Vec<Region> {
        self.split_at(range.start());
        if let Some(end) = VirtPage::from_number(range.end_number()) {
            self.split_at(end);
        }
        self.overlapping(range).copied().collect()
    }

    /// The lowest start `>= lo` of a free run of `pages` pages ending at or below `hi` (page
    /// numbers), or `None`.
    #[must_use]
    pub fn first_fit(&self, pages: u32, lo: u32, hi: u32) -> Option<VirtPage> {
        let mut candidate = lo;
        let first = self
            .find(VirtPage::from_number(lo)?)
            .map_or(lo, |r| r.range.start().number());
        for r in self.by_start.range(first..).map(|(_, r)| r) {
            let (s, e) = (r.range.start().number(), r.range.end_number());
            if e <= candidate {
                continue;
            }
            if u64::from(s) >= u64::from(candidate) + u64::from(pages) {
                break;
            }
            candidate = e;
            if candidate >= hi {
                return None;
            }
        }
        (u64::from(candidate) + u64::from(pages) <= u64::from(hi))
            .then_some(VirtPage::from_number(candidate)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::region::{Prot, RegionKind};

    fn page(n: u32) -> VirtPage {
        VirtPage::from_number(n).unwrap()
    }

    fn anon(start: u32, count: u32) -> Region {
        Region {
            range: PageRange::new(page(start), count).unwrap(),
            prot: Prot::READ,
            shared: false,
            kind: RegionKind::Anon,
        }
    }

    /// Regions at [10, 12) and [20, 25).
    fn two() -> RegionMap {
        let mut m = RegionMap::default();
        m.insert(anon(20, 5));
        m.insert(anon(10, 2));
        m
    }

    #[test]
    fn len_find_and_cover() {
        let m = two();
        assert_eq!(m.len(), 2);
        assert!(!m.is_empty());
        assert_eq!(RegionMap::default().len(), 0);
        assert_eq!(m.find(page(11)).map(|r| r.range.start()), Some(page(10)));
        assert_eq!(m.find(page(12)), None);
        assert_eq!(m.find(page(24)).map(|r| r.range.start()), Some(page(20)));
        assert!(m.covers(PageRange::new(page(20), 5).unwrap()));
        assert!(!m.covers(PageRange::new(page(11), 10).unwrap()));
        assert!(m.is_free(PageRange::new(page(12), 8).unwrap()));
        assert!(!m.is_free(PageRange::new(page(12), 9).unwrap()));
        let starts: Vec<_> = m
            .overlapping(PageRange::new(page(11), 10).unwrap())
            .map(|r| r.range.start())
            .collect();
        assert_eq!(starts, [page(10), page(20)]);
    }

    /// First fit takes the lowest gap that is large enough and never passes `hi`, wherever
    /// the last region ends.
    #[test]
    fn first_fit_edges() {
        let m = two();
        assert_eq!(m.first_fit(2, 8, 40), Some(page(8)));
        assert_eq!(m.first_fit(3, 8, 40), Some(page(12)));
        assert_eq!(m.first_fit(8, 10, 40), Some(page(12)));
        assert_eq!(m.first_fit(9, 10, 40), Some(page(25)));
        assert_eq!(m.first_fit(15, 10, 40), Some(page(25)));
        assert_eq!(
            m.first_fit(16, 10, 40),
            None,
            "one page past hi after the last region"
        );
        assert_eq!(m.first_fit(1, 21, 25), None, "hi inside the last region");
        assert_eq!(m.first_fit(1, 21, 26), Some(page(25)));
        assert_eq!(RegionMap::default().first_fit(30, 10, 40), Some(page(10)));
        assert_eq!(RegionMap::default().first_fit(31, 10, 40), None);
    }

    /// Splitting and isolating cut regions at the range's edges and keep them otherwise.
    #[test]
    fn split_and_isolate() {
        let mut m = two();
        m.split_at(page(20));
        m.split_at(page(15));
        assert_eq!(m, two(), "no split at a region's start or in a gap");
        let inside = m.isolate(PageRange::new(page(11), 11).unwrap());
        let ranges: Vec<_> = inside
            .iter()
            .map(|r| (r.range.start(), r.range.count()))
            .collect();
        assert_eq!(ranges, [(page(11), 1), (page(20), 2)]);
        let all: Vec<_> = m
            .iter()
            .map(|r| (r.range.start(), r.range.count()))
            .collect();
        assert_eq!(
            all,
            [(page(10), 1), (page(11), 1), (page(20), 2), (page(22), 3)]
        );
        assert_eq!(m.remove(page(22)).map(|r| r.range.count()), Some(3));
        assert_eq!(m.len(), 3);
    }
}
