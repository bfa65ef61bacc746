//! A region: a page-aligned, non-empty run of a space's addresses with one set of attributes.

use bitflags::bitflags;

use crate::addr::{PageRange, PhysFrame, VirtPage};
use crate::arch::armv7::{MappingAttrs, MappingFlags, MemoryType};

bitflags! {
    /// Region protection (the `PROT_*` values). `WRITE` and `EXEC` each imply `READ`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
    pub struct Prot: u32 {
        /// `PROT_READ`.
        const READ = 1;
        /// `PROT_WRITE`.
        const WRITE = 2;
        /// `PROT_EXEC`.
        const EXEC = 4;
    }
}

impl Prot {
    /// The protection with the implied `READ` added.
    #[must_use]
    pub const fn normalized(self) -> Self {
        if self.intersects(Self::WRITE.union(Self::EXEC)) {
            self.union(Self::READ)
        } else {
            self
        }
    }
}

/// A shared-memory segment identifier (the slot index, 0..192).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShmId(pub u32);

/// What backs a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegionKind {
    /// Anonymous memory (private anon frames, demand-zeroed, copy-on-write across fork).
    Anon,
    /// The heap grown by `brk` (private anon frames too).
    Heap,
    /// An attachment of a SysV shm segment: the region's first page is segment page `first_page`;
    /// `max` is what the attachment allows (`mprotect` may not ask for more).
    Shm {
        /// The segment.
        id: ShmId,
        /// Segment page mapped at the region's first page.
        first_page: u32,
        /// The attachment's protection.
        max: Prot,
    },
    /// Device memory: the region's first page maps `first_frame`, the rest follow.
    Device {
        /// Frame mapped at the region's first page.
        first_frame: PhysFrame,
    },
}

/// A region of a user space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Region {
    /// The pages it covers.
    pub range: PageRange,
    /// Its protection (normalized).
    pub prot: Prot,
    /// Created with `MAP_SHARED` (anon shared memory still behaves as private across fork).
    pub shared: bool,
    /// What backs it.
    pub kind: RegionKind,
}

impl Region {
    /// Whether its frames are private anon frames (reference counted, copy-on-write).
    #[must_use]
    pub const fn is_private_anon(&self) -> bool {
        matches!(self.kind, RegionKind::Anon | RegionKind::Heap)
    }

    /// The hardware attributes of its pages: user, the protection, device memory for devices.
    #[must_use]
    pub fn attrs(&self) -> MappingAttrs {
        let mut flags = MappingFlags::USER;
        let p = self.prot.normalized();
        flags.set(MappingFlags::READ, p.contains(Prot::READ));
        flags.set(MappingFlags::WRITE, p.contains(Prot::WRITE));
        flags.set(MappingFlags::EXECUTE, p.contains(Prot::EXEC));
        let memory = match self.kind {
            RegionKind::Device { .. } => MemoryType::Device,
            _ => MemoryType::Cached,
        };
        MappingAttrs { flags, memory }
    }

    /// The part from `page` on, with the backing offset advanced, or `None` when `page` is not
    /// strictly inside.
    #[must_use]
    pub fn tail_from(&self, page: VirtPage) -> Option<Region> {
        let start = self.range.start().number();
        let skip = page
            .number()
            .checked_sub(start)
            .filter(|&s| s > 0 && s < self.range.count())?;
        let kind = match self.kind {
            RegionKind::Shm {
                id,
                first_page,
                max,
            } => RegionKind::Shm {
                id,
                first_page: first_page + skip,
                max,
            },
            RegionKind::Device { first_frame } => RegionKind::Device {
                first_frame: first_frame.checked_add(skip)?,
            },
            k => k,
        };
        Some(Region {
            range: PageRange::new(page, self.range.count() - skip)?,
            kind,
            ..*self
        })
    }

    /// The part before `page`, or `None` when `page` is not strictly inside.
    #[must_use]
    pub fn head_before(&self, page: VirtPage) -> Option<Region> {
        let start = self.range.start().number();
        let keep = page
            .number()
            .checked_sub(start)
            .filter(|&s| s > 0 && s < self.range.count())?;
        Some(Region {
            range: PageRange::new(self.range.start(), keep)?,
            ..*self
        })
    }

    /// The frame backing `page` for shm (segment page index) and device regions.
    #[must_use]
    pub fn backing_offset(&self, page: VirtPage) -> u32 {
        page.number() - self.range.start().number()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::{PhysAddr, VirtAddr};

    fn region(kind: RegionKind) -> Region {
        let start = VirtPage::from_start(VirtAddr::new(0x1000_0000)).unwrap();
        Region {
            range: PageRange::new(start, 4).unwrap(),
            prot: Prot::READ,
            shared: true,
            kind,
        }
    }

    fn page(n: u32) -> VirtPage {
        VirtPage::from_number(0x10000 + n).unwrap()
    }

    /// A page's backing offset is its distance from the region's first page.
    #[test]
    fn backing_offset_counts_from_the_first_page() {
        let dev = region(RegionKind::Device {
            first_frame: crate::addr::PhysFrame::from_start(PhysAddr::new(0x4800_0000)).unwrap(),
        });
        for n in 0..4 {
            assert_eq!(dev.backing_offset(page(n)), n);
        }
    }

    #[test]
    fn splits_happen_strictly_inside_and_advance_the_backing() {
        let shm = region(RegionKind::Shm {
            id: ShmId(3),
            first_page: 2,
            max: Prot::READ,
        });
        for outside in [0, 4, 5] {
            assert_eq!(shm.tail_from(page(outside)), None, "page {outside}");
            assert_eq!(shm.head_before(page(outside)), None, "page {outside}");
        }
        let tail = shm.tail_from(page(1)).unwrap();
        assert_eq!((tail.range.start(), tail.range.count()), (page(1), 3));
        assert_eq!(
            tail.kind,
            RegionKind::Shm {
                id: ShmId(3),
                first_page: 3,
                max: Prot::READ
            }
        );
        let tail = shm.tail_from(page(3)).unwrap();
        assert_eq!(
            tail.kind,
            RegionKind::Shm {
                id: ShmId(3),
                first_page: 5,
                max: Prot::READ
            }
        );
        assert_eq!(shm.head_before(page(3)).unwrap().range.count(), 3);
        let dev = region(RegionKind::Device {
            first_frame: PhysFrame::containing(PhysAddr::new(0x4800_0000)),
        });
        let tail = dev.tail_from(page(2)).unwrap();
        assert_eq!(
            tail.kind,
            RegionKind::Device {
                first_frame: PhysFrame::containing(PhysAddr::new(0x4800_2000))
            }
        );
    }

    #[test]
    fn device_regions_use_device_memory() {
        let dev = region(RegionKind::Device {
            first_frame: PhysFrame::containing(PhysAddr::new(0x4800_0000)),
        });
        assert_eq!(dev.attrs().memory, MemoryType::Device);
        assert_eq!(region(RegionKind::Anon).attrs().memory, MemoryType::Cached);
        assert_eq!(
            region(RegionKind::Anon).attrs().flags,
            MappingFlags::USER | MappingFlags::READ
        );
    }
}
