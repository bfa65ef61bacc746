//! Regions as a sorted vector of byte ranges.

/// What backs a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Anonymous memory.
    Anon,
    /// The heap.
    Heap,
    /// An attachment of shm segment `id`; its first page is segment page `first`; `max` is
    /// the protection the attachment allows.
    Shm {
        /// The segment.
        id: u32,
        /// Segment page at the region's first page.
        first: u64,
        /// The attachment's protection.
        max: u32,
    },
}

/// A region: `[start, start + len)` in bytes (64-bit so nothing wraps).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Region {
    /// First byte.
    pub start: u64,
    /// Length in bytes, a multiple of 4096, never 0.
    pub len: u64,
    /// Protection bits (R=1, W=2, X=4), normalized.
    pub prot: u32,
    /// Created with `MAP_SHARED`.
    pub shared: bool,
    /// What backs it.
    pub kind: Kind,
}

/// A space's regions (sorted by start, disjoint), its break and its present pages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Space {
    /// The regions.
    pub regions: Vec<Region>,
    /// The break.
    pub brk: u32,
    /// Present pages by page address.
    pub ptes: std::collections::BTreeMap<u64, super::Pte>,
}

impl Space {
    /// Whether any region shares a byte with `[start, start + len)`.
    #[must_use]
    pub fn overlaps(&self, start: u64, len: u64) -> bool {
        self.regions
            .iter()
            .any(|r| r.start < start + len && start < r.start + r.len)
    }

    /// Whether regions cover every byte of `[start, start + len)`.
    #[must_use]
    pub fn covers(&self, start: u64, len: u64) -> bool {
        (start..start + len).step_by(4096).all(|a| {
            self.regions
                .iter()
                .any(|r| r.start <= a && a < r.start + r.len)
        })
    }

    /// Adds a region, keeping the order.
    pub fn insert(&mut self, region: Region) {
        let at = self.regions.partition_point(|r| r.start < region.start);
        self.regions.insert(at, region);
    }

    /// Splits the region strictly containing `addr` in two.
    pub fn split_at(&mut self, addr: u64) {
        if let Some(i) = self
            .regions
            .iter()
            .position(|r| r.start < addr && addr < r.start + r.len)
        {
            let r = self.regions[i];
            self.regions[i].len = addr - r.start;
            self.regions.insert(
                i + 1,
                Region {
                    start: addr,
                    len: r.start + r.len - addr,
                    ..r
                },
            );
        }
    }
}
