//! Typed 32-bit addresses, page and frame numbers, and page ranges.
//!
//! Every constructor that can fail returns `Option`, and every arithmetic helper is checked:
//! nothing here wraps at 4 GiB. A [`VirtPage`] or [`PhysFrame`] is page-aligned by construction.

use core::fmt;

/// Size of a small page and of a frame: 4 KiB.
pub const PAGE_SIZE: u32 = 0x1000;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;
/// Size of a short-descriptor section: 1 MiB.
pub const SECTION_SIZE: u32 = 0x10_0000;
/// log2 of [`SECTION_SIZE`].
pub const SECTION_SHIFT: u32 = 20;
/// Small pages per section.
pub const PAGES_PER_SECTION: u32 = SECTION_SIZE / PAGE_SIZE;

macro_rules! address_type {
    ($(#[$doc:meta])* $name:ident, $short:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(u32);

        impl $name {
            /// The address with the given raw value.
            #[must_use]
            pub const fn new(raw: u32) -> Self {
                Self(raw)
            }
            /// The raw 32-bit value.
            #[must_use]
            pub const fn as_u32(self) -> u32 {
                self.0
            }
            /// `self + offset`, or `None` past 4 GiB.
            #[must_use]
            pub const fn checked_add(self, offset: u32) -> Option<Self> {
                match self.0.checked_add(offset) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }
            /// `self - offset`, or `None` below 0.
            #[must_use]
            pub const fn checked_sub(self, offset: u32) -> Option<Self> {
                match self.0.checked_sub(offset) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }
            /// Whether the address is a multiple of `align` (a power of two).
            #[must_use]
            pub const fn is_aligned(self, align: u32) -> bool {
                self.0 & align.wrapping_sub(1) == 0
            }
            /// Rounds down to a multiple of `align` (a power of two).
            #[must_use]
            pub const fn align_down(self, align: u32) -> Self {
                Self(self.0 & !align.wrapping_sub(1))
            }
            /// Rounds up to a multiple of `align` (a power of two), or `None` past 4 GiB.
            #[must_use]
            pub const fn align_up(self, align: u32) -> Option<Self> {
                let mask = align.wrapping_sub(1);
                match self.0.checked_add(mask) {
                    Some(v) => Some(Self(v & !mask)),
                    None => None,
                }
            }
            /// Offset inside its 4 KiB page.
            #[must_use]
            pub const fn page_offset(self) -> u32 {
                self.0 & (PAGE_SIZE - 1)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($short, "({:#010x})"), self.0)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#010x}", self.0)
            }
        }
        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}

address_type!(
    /// A 32-bit virtual address.
    VirtAddr, "VA"
);
address_type!(
    /// A 32-bit physical address (no LPAE: the short-descriptor format's 32-bit PA space).
    PhysAddr, "PA"
);

macro_rules! page_type {
    ($(#[$doc:meta])* $name:ident, $addr:ident, $short:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(u32);

        impl $name {
            /// Number of 4 KiB pages in the 32-bit space (2^20).
            pub const COUNT: u32 = 1 << (32 - PAGE_SHIFT);

            /// The page with this number, or `None` when it is not below 2^20.
            #[must_use]
            pub const fn from_number(number: u32) -> Option<Self> {
                if number < Self::COUNT { Some(Self(number)) } else { None }
            }
            /// The page starting at `addr`, or `None` when `addr` is not page-aligned.
            #[must_use]
            pub const fn from_start(addr: $addr) -> Option<Self> {
                if addr.is_aligned(PAGE_SIZE) { Some(Self(addr.as_u32() >> PAGE_SHIFT)) } else { None }
            }
            /// The page containing `addr`.
            #[must_use]
            pub const fn containing(addr: $addr) -> Self {
                Self(addr.as_u32() >> PAGE_SHIFT)
            }
            /// The page number (address >> 12).
            #[must_use]
            pub const fn number(self) -> u32 {
                self.0
            }
            /// The first address of the page.
            #[must_use]
            pub const fn start(self) -> $addr {
                $addr::new(self.0 << PAGE_SHIFT)
            }
            /// The page `n` pages further on, or `None` past 4 GiB.
            #[must_use]
            pub const fn checked_add(self, n: u32) -> Option<Self> {
                match self.0.checked_add(n) {
                    Some(v) if v < Self::COUNT => Some(Self(v)),
                    _ => None,
                }
            }
            /// The page `n` pages before, or `None` below 0.
            #[must_use]
            pub const fn checked_sub(self, n: u32) -> Option<Self> {
                match self.0.checked_sub(n) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }
            /// Whether the page starts on a 1 MiB section boundary.
            #[must_use]
            pub const fn is_section_aligned(self) -> bool {
                self.0 % PAGES_PER_SECTION == 0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($short, "({:#010x})"), self.0 << PAGE_SHIFT)
            }
        }
    };
}

page_type!(
    /// A 4 KiB virtual page, aligned by construction.
    VirtPage, VirtAddr, "Page"
);
page_type!(
    /// A 4 KiB physical frame, aligned by construction.
    PhysFrame, PhysAddr, "Frame"
);

/// A non-empty, half-open run of virtual pages `[start, start + count)` that ends at or below 4 GiB.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageRange {
    start: VirtPage,
    count: u32,
}

impl PageRange {
    /// The range, or `None` when `count` is 0 or the range would pass 4 GiB.
    #[must_use]
    pub const fn new(start: VirtPage, count: u32) -> Option<Self> {
        if count == 0 {
            return None;
        }
        match start.0.checked_add(count) {
            Some(end) if end <= VirtPage::COUNT => Some(Self { start, count }),
            _ => None,
        }
    }
    /// First page.
    #[must_use]
    pub const fn start(self) -> VirtPage {
        self.start
    }
    /// Number of pages (never 0).
    #[must_use]
    pub const fn count(self) -> u32 {
        self.count
    }
    /// One past the last page number (may equal 2^20).
    #[must_use]
    pub const fn end_number(self) -> u32 {
        self.start.0 + self.count
    }
    /// First address.
    #[must_use]
    pub const fn start_addr(self) -> VirtAddr {
        self.start.start()
    }
    /// One past the last byte, as a 64-bit value (it may be exactly 4 GiB).
    #[must_use]
    pub const fn end_addr_u64(self) -> u64 {
        (self.end_number() as u64) << PAGE_SHIFT
    }
    /// Whether `page` lies inside.
    #[must_use]
    pub const fn contains(self, page: VirtPage) -> bool {
        page.0 >= self.start.0 && page.0 < self.end_number()
    }
    /// Whether the two ranges share a page.
    #[must_use]
    pub const fn overlaps(self, other: PageRange) -> bool {
        self.start.0 < other.end_number() && other.start.0 < self.end_number()
    }
    /// Every page, in ascending order.
    pub fn pages(self) -> impl DoubleEndedIterator<Item = VirtPage> + ExactSizeIterator {
        (self.start.0..self.end_number()).map(VirtPage)
    }
}

impl fmt::Debug for PageRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:#010x}, {:#011x})",
            self.start.0 << PAGE_SHIFT,
            self.end_addr_u64()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_helpers_never_wrap() {
        assert_eq!(VirtAddr::new(0xFFFF_F001).align_up(PAGE_SIZE), None);
        assert_eq!(
            VirtAddr::new(0xFFFF_E001).align_up(PAGE_SIZE),
            Some(VirtAddr::new(0xFFFF_F000))
        );
        assert_eq!(
            VirtAddr::new(0x1234).align_down(PAGE_SIZE),
            VirtAddr::new(0x1000)
        );
        assert!(VirtAddr::new(0x10_0000).is_aligned(SECTION_SIZE));
        assert!(!VirtAddr::new(0x10_1000).is_aligned(SECTION_SIZE));
        assert_eq!(VirtAddr::new(u32::MAX).checked_add(1), None);
        assert_eq!(PhysAddr::new(0).checked_sub(1), None);
    }

    #[test]
    fn pages_are_aligned_by_construction() {
        assert_eq!(VirtPage::from_start(VirtAddr::new(0x1001)), None);
        let p = VirtPage::from_start(VirtAddr::new(0x4000_0000)).unwrap();
        assert_eq!(p.number(), 0x40000);
        assert_eq!(p.start(), VirtAddr::new(0x4000_0000));
        assert_eq!(VirtPage::containing(VirtAddr::new(0x4000_0FFF)), p);
        assert_eq!(VirtPage::from_number(VirtPage::COUNT), None);
        let last = VirtPage::from_number(VirtPage::COUNT - 1).unwrap();
        assert_eq!(last.checked_add(1), None);
        assert!(p.is_section_aligned());
        assert!(!p.checked_add(1).unwrap().is_section_aligned());
    }

    #[test]
    fn ranges_stop_at_4_gib() {
        let last = VirtPage::from_number(VirtPage::COUNT - 1).unwrap();
        assert!(PageRange::new(last, 1).is_some());
        assert!(PageRange::new(last, 2).is_none());
        assert!(PageRange::new(last, 0).is_none());
        let r = PageRange::new(last, 1).unwrap();
        assert_eq!(r.end_addr_u64(), 1 << 32);
        let a = PageRange::new(VirtPage::from_number(10).unwrap(), 5).unwrap();
        let b = PageRange::new(VirtPage::from_number(14).unwrap(), 1).unwrap();
        let c = PageRange::new(VirtPage::from_number(15).unwrap(), 1).unwrap();
        assert!(a.overlaps(b) && b.overlaps(a));
        assert!(!a.overlaps(c));
        assert_eq!(a.pages().count(), 5);
        assert!(a.contains(VirtPage::from_number(14).unwrap()));
        assert!(!a.contains(VirtPage::from_number(15).unwrap()));
    }

    /// Ranges print as half-open byte intervals (divergence reports show them), the end wide
    /// enough for 4 GiB.
    #[test]
    fn ranges_print_as_byte_intervals() {
        let a = PageRange::new(VirtPage::from_number(0x10).unwrap(), 2).unwrap();
        assert_eq!(alloc::format!("{a:?}"), "[0x00010000, 0x000012000)");
        let last = VirtPage::from_number(VirtPage::COUNT - 1).unwrap();
        let r = PageRange::new(last, 1).unwrap();
        assert_eq!(alloc::format!("{r:?}"), "[0xfffff000, 0x100000000)");
    }
}
