//! Regions as a sorted vector of byte ranges.

/// What backs a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Anonymous memory.
    Anon,
    /// The heap.
    Heap,
    /// Device memory: the region's first page maps physical address `pa`.
    Device {
        /// Physical address of the first page.
        pa: u64,
    },
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
    /// First addresses of the MiBs mapped by 1 MiB sections (device memory only).
    pub sections: std::collections::BTreeSet<u64>,
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

    /// Splits the region strictly containing `addr` in two; the tail's backing offset
    /// advances.
    pub fn split_at(&mut self, addr: u64) {
        let Some(i) = self
            .regions
            .iter()
            .position(|r| r.start < addr && addr < r.start + r.len)
        else {
            return;
        };
        let r = self.regions[i];
        let kind = match r.kind {
            Kind::Shm { id, first, max } => Kind::Shm {
                id,
                first: first + (addr - r.start) / 4096,
                max,
            },
            Kind::Device { pa } => Kind::Device {
                pa: pa + (addr - r.start),
            },
            k => k,
        };
        self.regions[i].len = addr - r.start;
        self.regions.insert(
            i + 1,
            Region {
                start: addr,
                len: r.start + r.len - addr,
                kind,
                ..r
            },
        );
    }

    /// The sections only partly inside `[start, start + len)` (at most the first and the last
    /// MiB), as their first addresses.
    #[must_use]
    pub fn partial_sections(&self, start: u64, len: u64) -> Vec<u64> {
        let mut out = Vec::new();
        for mib in [start & !0xF_FFFF, (start + len - 1) & !0xF_FFFF] {
            let whole = start <= mib && mib + 0x10_0000 <= start + len;
            if !whole && self.sections.contains(&mib) && !out.contains(&mib) {
                out.push(mib);
            }
        }
        out
    }

    /// 4 MiB groups holding a small page (those have an L2 page).
    #[must_use]
    pub fn small_groups(&self) -> std::collections::BTreeSet<u64> {
        self.ptes
            .keys()
            .filter(|p| !self.sections.contains(&(*p & !0xF_FFFF)))
            .map(|p| p >> 22)
            .collect()
    }

    /// How many [`Self::small_groups`] there are (pages ascend, so each new group is a
    /// change of group).
    #[must_use]
    pub fn small_group_count(&self) -> u32 {
        let mut groups = self
            .ptes
            .keys()
            .filter(|p| !self.sections.contains(&(*p & !0xF_FFFF)))
            .map(|p| p >> 22);
        let Some(mut last) = groups.next() else {
            return 0;
        };
        let mut count = 1;
        for g in groups {
            if g != last {
                count += 1;
                last = g;
            }
        }
        count
    }
}
