//! The observable state both sides are reduced to after every step, and its comparison.
//!
//! The model's side comes from the model's own bookkeeping and semantics.md section 13 (what
//! attributes a page must have); the vmm's side from its bookkeeping for regions, counts and
//! segments, and from its raw table words through the reference walker for every page: the
//! vmm's own decoder never speaks for it.

use std::fmt;

use reference_model::armv7::PageAttributes;
use reference_model::model::{DEVICE_FRAME, is_device};

/// Everything the comparison sees, in a form both sides produce.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Free frames in the pool.
    pub free_frames: u32,
    /// Per space, in creation order.
    pub spaces: Vec<SpaceState>,
    /// Live shm segments: (slot, key, size, pages, attached, removed).
    pub segments: Vec<(u32, i32, u32, usize, u32, bool)>,
    /// The kernel's page-table pages.
    pub kernel_table_pages: u32,
    /// `vmalloc` allocations: (first address, pages).
    pub vmalloc: Vec<(u32, u32)>,
    /// INV-3: (model frame id, reference count) of every frame with references, by id (the
    /// vmm's counts named through the frame pairing).
    pub ref_counts: Vec<(u64, u32)>,
}

/// What backs a region, as compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// Private or shared anonymous memory.
    Anon,
    /// The heap (`brk`).
    Heap,
    /// An shm segment.
    Shm,
    /// Device memory.
    Device,
}

/// One space as compared.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SpaceState {
    /// Regions: (start, length, prot, shared, backing).
    pub regions: Vec<(u64, u64, u32, bool, Backing)>,
    /// The break.
    pub brk: u32,
    /// Page-table pages.
    pub table_pages: u32,
    /// Its ASID.
    pub asid: u8,
    /// Present pages, ascending.
    pub pages: Vec<Page>,
}

/// A frame no model frame is paired with (a pool frame where the model has none).
pub const UNPAIRED: u64 = u64::MAX;

/// One present 4 KiB page: where, which frame and what the hardware allows.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// The page's virtual address.
    pub addr: u32,
    /// The model's frame id: a pool frame by its pairing, device memory by its physical
    /// address ([`DEVICE_FRAME`] set), [`UNPAIRED`] for a pool frame with no model frame.
    pub frame: u64,
    /// Rights at PL0 and PL1, global bit, domain and memory type.
    pub attributes: PageAttributes,
}

/// Addresses in hex, counts in decimal, one line per region and per page in a diff.
impl fmt::Debug for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// `0xc0000000 2 pages`.
        struct Allocation(u32, u32);
        impl fmt::Debug for Allocation {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#010x} {} pages", self.0, self.1)
            }
        }
        let vmalloc: Vec<Allocation> = self
            .vmalloc
            .iter()
            .map(|&(a, n)| Allocation(a, n))
            .collect();
        f.debug_struct("Observed")
            .field("free_frames", &self.free_frames)
            .field("spaces", &self.spaces)
            .field("segments", &self.segments)
            .field("kernel_table_pages", &self.kernel_table_pages)
            .field("vmalloc", &vmalloc)
            .field("ref_counts", &self.ref_counts)
            .finish()
    }
}

impl fmt::Debug for SpaceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// `0x1f7fe000..0x1f800000 prot 0x3 private Anon`.
        struct Region((u64, u64, u32, bool, Backing));
        impl fmt::Debug for Region {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let (start, len, prot, shared, backing) = self.0;
                let sharing = if shared { "shared" } else { "private" };
                write!(
                    f,
                    "{start:#010x}..{:#010x} prot {prot:#x} {sharing} {backing:?}",
                    start + len
                )
            }
        }
        let regions: Vec<Region> = self.regions.iter().map(|&r| Region(r)).collect();
        f.debug_struct("SpaceState")
            .field("regions", &regions)
            .field("brk", &format_args!("{:#010x}", self.brk))
            .field("table_pages", &self.table_pages)
            .field("asid", &self.asid)
            .field("pages", &self.pages)
            .finish()
    }
}

/// `0x01000000 frame 3 PL0 rw- PL1 rw- nG d0 Normal WBWA/WBWA S`: one line per page in a diff.
impl fmt::Debug for Page {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x} ", self.addr)?;
        if self.frame == UNPAIRED {
            f.write_str("unpaired pool frame")?;
        } else if is_device(self.frame) {
            write!(f, "device {:#010x}", self.frame & !DEVICE_FRAME)?;
        } else {
            write!(f, "frame {}", self.frame)?;
        }
        write!(f, " {:?}", self.attributes)
    }
}

/// Whether the two sides' states are equal, given that the page lists of the spaces not marked
/// in `rebuilt` are the ones an earlier comparison found equal (so they are not compared again).
/// Every field is named, so a field added to the state cannot be left out of the comparison.
pub fn agree(model: &Observed, vmm: &Observed, rebuilt: &[bool]) -> bool {
    let Observed {
        free_frames,
        spaces,
        segments,
        kernel_table_pages,
        vmalloc,
        ref_counts,
    } = model;
    *free_frames == vmm.free_frames
        && *ref_counts == vmm.ref_counts
        && *segments == vmm.segments
        && *kernel_table_pages == vmm.kernel_table_pages
        && *vmalloc == vmm.vmalloc
        && spaces.len() == vmm.spaces.len()
        && spaces
            .iter()
            .zip(&vmm.spaces)
            .zip(rebuilt)
            .all(|((m, v), &rebuilt)| {
                let SpaceState {
                    regions,
                    brk,
                    table_pages,
                    asid,
                    pages,
                } = m;
                *regions == v.regions
                    && *brk == v.brk
                    && *table_pages == v.table_pages
                    && *asid == v.asid
                    && (!rebuilt || *pages == v.pages)
            })
}

#[cfg(test)]
mod tests {
    use super::{Backing, Observed, Page, SpaceState, agree};
    use reference_model::model::Pte;

    fn page(addr: u32, perms: u32, frame: u64) -> Page {
        Page {
            addr,
            frame,
            attributes: Pte { frame, perms }.attributes(),
        }
    }

    fn state(pages: &[Page]) -> Observed {
        Observed {
            free_frames: 10,
            spaces: vec![SpaceState {
                regions: vec![(0x1000, 0x2000, 3, false, Backing::Anon)],
                brk: 0x8000,
                table_pages: 2,
                asid: 1,
                pages: pages.to_vec(),
            }],
            segments: vec![(0, 7, 4096, 1, 0, false)],
            kernel_table_pages: 4,
            vmalloc: vec![(0xC000_0000, 1)],
            ref_counts: vec![(1, 1)],
        }
    }

    /// Rebuilt page lists are compared; lists neither side rebuilt are taken as still equal;
    /// every other field is always compared.
    #[test]
    fn agree_compares_rebuilt_page_lists_and_every_other_field() {
        let a = state(&[page(0x1000, 3, 1)]);
        assert!(agree(&a, &a.clone(), &[true]));
        let b = state(&[page(0x1000, 1, 1)]);
        assert!(!agree(&a, &b, &[true]));
        assert!(agree(&a, &b, &[false]));
        let mut global = a.clone();
        global.spaces[0].pages[0].attributes.not_global = false;
        assert!(!agree(&a, &global, &[true]), "the global bit is compared");
        let changes: [fn(&mut Observed); 10] = [
            |o| o.free_frames += 1,
            |o| o.ref_counts[0].1 = 2,
            |o| o.segments[0].4 = 1,
            |o| o.kernel_table_pages += 1,
            |o| o.vmalloc[0].1 = 2,
            |o| o.spaces[0].regions[0].2 = 1,
            |o| o.spaces[0].brk += 0x1000,
            |o| o.spaces[0].table_pages += 1,
            |o| o.spaces[0].asid += 1,
            |o| o.spaces.push(SpaceState::default()),
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut c = a.clone();
            change(&mut c);
            assert!(!agree(&a, &c, &[false]), "change {i} went unnoticed");
            assert!(
                !agree(&c, &a, &[false]),
                "change {i} went unnoticed (swapped)"
            );
        }
    }

    /// A page reads as one line: address and frame in hex where they are addresses.
    #[test]
    fn a_page_prints_on_one_line() {
        let p = page(0x0100_0000, 3, 7);
        assert_eq!(
            format!("{p:?}"),
            "0x01000000 frame 7 PL0 rw- PL1 rw- nG d0 Normal WBWA/WBWA S"
        );
        let d = page(
            0x0200_0000,
            1,
            reference_model::model::DEVICE_FRAME | 0x5000_0000,
        );
        assert_eq!(
            format!("{d:?}"),
            "0x02000000 device 0x50000000 PL0 r-- PL1 r-- nG d0 Device S"
        );
    }
}
