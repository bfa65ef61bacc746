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

/// A value plus a stamp that changes with every mutable access and is never shared by two
/// values, so a reader can tell cheaply that nothing changed since it last looked (the
/// checker's fast mode rebuilds a space's observed state only when its stamp moved). Reads go
/// through `Deref`; every `DerefMut` counts as a change. Equality and `Debug` are the value's.
pub struct Stamped<T> {
    value: T,
    /// This value's number, unique within the process (a new one for every value and clone).
    instance: u64,
    /// Mutable accesses so far.
    version: u64,
}

/// A space's present pages by page address, stamped.
pub type Ptes = Stamped<std::collections::BTreeMap<u64, super::Pte>>;

/// A value number never handed out before in this process.
fn fresh_instance() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl<T> Stamped<T> {
    /// `value` with a stamp of its own.
    pub fn new(value: T) -> Self {
        Self {
            value,
            instance: fresh_instance(),
            version: 0,
        }
    }

    /// Changes whenever the value may have (any mutable access); equal stamps mean the same
    /// value, unchanged.
    #[must_use]
    pub fn stamp(&self) -> (u64, u64) {
        (self.instance, self.version)
    }
}

impl<T: Default> Default for Stamped<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T: Clone> Clone for Stamped<T> {
    fn clone(&self) -> Self {
        Self::new(self.value.clone())
    }
}

impl<T: PartialEq> PartialEq for Stamped<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<T: Eq> Eq for Stamped<T> {}

impl<T: std::fmt::Debug> std::fmt::Debug for Stamped<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.value.fmt(f)
    }
}

impl<T> std::ops::Deref for Stamped<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> std::ops::DerefMut for Stamped<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.version += 1;
        &mut self.value
    }
}

/// A space's regions (sorted by start, disjoint), its break and its present pages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Space {
    /// The regions.
    pub regions: Vec<Region>,
    /// The break.
    pub brk: u32,
    /// Present pages by page address.
    pub ptes: Ptes,
    /// First addresses of the MiBs mapped by 1 MiB sections (device memory only).
    pub sections: std::collections::BTreeSet<u64>,
    /// Its ASID (semantics.md section 2).
    pub asid: u8,
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

    /// Whether 4 MiB group `group` is one of [`Self::small_groups`] (one lookup per section in
    /// it and one for its first small page).
    #[must_use]
    pub fn has_small_group(&self, group: u64) -> bool {
        let (mut from, end) = (group << 22, (group + 1) << 22);
        while let Some(&page) = self.ptes.range(from..end).next().map(|(p, _)| p) {
            let mib = page & !0xF_FFFF;
            if !self.sections.contains(&mib) {
                return true;
            }
            from = mib + 0x10_0000;
        }
        false
    }

    /// How many [`Self::small_groups`] there are: one lookup per group and per section
    /// (pages ascend, so the next group's pages start at the next 4 MiB boundary).
    #[must_use]
    pub fn small_group_count(&self) -> u32 {
        let mut count = 0;
        let mut from = 0;
        while let Some(&page) = self.ptes.range(from..).next().map(|(p, _)| p) {
            let mib = page & !0xF_FFFF;
            if self.sections.contains(&mib) {
                from = mib + 0x10_0000;
            } else {
                count += 1;
                from = ((page >> 22) + 1) << 22;
            }
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::{Ptes, Space};
    use crate::model::Pte;

    /// Reads keep the stamp; any mutable access and any clone take a new one; equality is
    /// the pages'.
    #[test]
    fn ptes_stamp_changes_with_every_mutable_access() {
        let mut ptes = Ptes::default();
        let first = ptes.stamp();
        assert_ne!(Ptes::default().stamp(), first);
        assert!(ptes.get(&0x1000).is_none() && ptes.is_empty());
        assert_eq!(ptes.stamp(), first);
        ptes.insert(0x1000, Pte { frame: 1, perms: 1 });
        let inserted = ptes.stamp();
        assert_ne!(inserted, first);
        for pte in ptes.values_mut() {
            pte.perms = 3;
        }
        assert_ne!(ptes.stamp(), inserted);
        let copy = ptes.clone();
        assert_ne!(copy.stamp(), ptes.stamp());
        assert_eq!(copy, ptes);
        assert_eq!(copy.get(&0x1000), Some(&Pte { frame: 1, perms: 3 }));
    }

    /// The counting and membership shortcuts agree with the set: pages in and out of sections,
    /// several per group, groups holding both a section and small pages.
    #[test]
    fn small_group_shortcuts_agree_with_the_set() {
        let pte = Pte { frame: 1, perms: 1 };
        let layouts: [(&[u64], &[u64]); 5] = [
            (&[], &[]),
            (&[0x1000], &[]),
            (
                &[0x10_0000, 0x10_1000, 0x20_0000, 0x3F_F000, 0x40_0000],
                &[0x10_0000],
            ),
            (
                &[0x50_0000, 0x60_0000, 0x70_0000, 0x80_0000],
                &[0x50_0000, 0x60_0000],
            ),
            (
                &[0x100_0000, 0x1FF_F000, 0x200_0000, 0xFFF_F000],
                &[0x200_0000],
            ),
        ];
        for (pages, sections) in layouts {
            let mut space = Space::default();
            space.ptes.extend(pages.iter().map(|&p| (p, pte)));
            space.sections.extend(sections);
            assert_eq!(
                space.small_group_count() as usize,
                space.small_groups().len(),
                "{pages:x?} {sections:x?}"
            );
            for group in 0..0x10 {
                assert_eq!(
                    space.has_small_group(group),
                    space.small_groups().contains(&group),
                    "group {group}: {pages:x?} {sections:x?}"
                );
            }
        }
    }
}
