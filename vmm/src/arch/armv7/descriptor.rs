//! ARMv7 short-descriptor translation table entries, field by field (ARM ARM B3.5.1).
//!
//! Decoding is total: any 32-bit word decodes to some descriptor. Encoding writes every field
//! and nothing else, so `decode(encode(d)) == d` for every descriptor whose addresses are aligned
//! to their block size. Bits the architecture leaves implementation defined or SBZ are dropped.

use core::fmt;

use crate::addr::PhysAddr;

const fn bit(raw: u32, n: u32) -> bool {
    raw & (1 << n) != 0
}
const fn set(flag: bool, n: u32) -> u32 {
    (flag as u32) << n
}

/// The three access-permission bits AP[2:0] (AP[2] is also called APX), with SCTLR.AFE = 0.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccessPermissions(u8);

impl AccessPermissions {
    /// `000`: no access at PL1 or PL0.
    pub const NO_ACCESS: Self = Self(0b000);
    /// `001`: read/write at PL1, none at PL0.
    pub const PRIV_RW: Self = Self(0b001);
    /// `010`: read/write at PL1, read-only at PL0.
    pub const PRIV_RW_USER_RO: Self = Self(0b010);
    /// `011`: read/write at PL1 and PL0.
    pub const FULL: Self = Self(0b011);
    /// `100`: reserved.
    pub const RESERVED: Self = Self(0b100);
    /// `101`: read-only at PL1, none at PL0.
    pub const PRIV_RO: Self = Self(0b101);
    /// `110`: read-only at PL1 and PL0 (deprecated encoding).
    pub const READ_ONLY_DEPRECATED: Self = Self(0b110);
    /// `111`: read-only at PL1 and PL0.
    pub const READ_ONLY: Self = Self(0b111);

    /// The permissions with these three bits, or `None` above `0b111`.
    #[must_use]
    pub const fn new(bits: u8) -> Option<Self> {
        if bits < 8 { Some(Self(bits)) } else { None }
    }
    /// AP[2:0] as a number.
    #[must_use]
    pub const fn bits(self) -> u8 {
        self.0
    }
    const fn ap2(self) -> bool {
        self.0 & 0b100 != 0
    }
    const fn ap10(self) -> u32 {
        (self.0 & 0b11) as u32
    }
    const fn from_parts(ap2: bool, ap10: u32) -> Self {
        Self(((ap2 as u8) << 2) | (ap10 & 0b11) as u8)
    }
}

impl fmt::Debug for AccessPermissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AP({:03b})", self.0)
    }
}

/// The memory-region attribute bits TEX[2:0].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tex(u8);

impl Tex {
    /// TEX with these bits, or `None` above `0b111`.
    #[must_use]
    pub const fn new(bits: u8) -> Option<Self> {
        if bits < 8 { Some(Self(bits)) } else { None }
    }
    /// TEX from the low three bits of `bits` (higher bits are ignored).
    #[must_use]
    pub const fn from_low_bits(bits: u8) -> Self {
        Self(bits & 0b111)
    }
    /// TEX[2:0] as a number.
    #[must_use]
    pub const fn bits(self) -> u8 {
        self.0
    }
}

/// A domain number, 0..=15.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(u8);

impl Domain {
    /// Domain 0: the only domain this crate uses (DACR sets it to client).
    pub const ZERO: Self = Self(0);
    /// The domain with this number, or `None` above 15.
    #[must_use]
    pub const fn new(n: u8) -> Option<Self> {
        if n < 16 { Some(Self(n)) } else { None }
    }
    /// The domain number.
    #[must_use]
    pub const fn number(self) -> u8 {
        self.0
    }
}

/// Attributes common to sections, large pages and small pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PageAttributes {
    /// AP[2:0].
    pub ap: AccessPermissions,
    /// TEX[2:0].
    pub tex: Tex,
    /// C (cacheable).
    pub c: bool,
    /// B (bufferable).
    pub b: bool,
    /// S (shareable).
    pub s: bool,
    /// nG (not global: the entry is tagged with the current ASID).
    pub ng: bool,
    /// XN (execute never).
    pub xn: bool,
}

/// A first-level (L1) descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum L1Descriptor {
    /// `0b00`: translation fault (also the reserved `0b11` when PXN is not implemented is
    /// decoded as a section with PXN set, as on LPAE-capable cores such as the Cortex-A7).
    Fault,
    /// `0b01`: points at a 1 KiB second-level table.
    PageTable {
        /// Physical address of the L2 table (bits 31:10).
        table: PhysAddr,
        /// Domain of the whole MiB.
        domain: Domain,
        /// Non-secure.
        ns: bool,
        /// Privileged execute never (bit 2).
        pxn: bool,
    },
    /// `0b1x`, bit 18 clear: a 1 MiB section.
    Section {
        /// Physical base (bits 31:20).
        base: PhysAddr,
        /// Permissions and memory type.
        attrs: PageAttributes,
        /// Domain.
        domain: Domain,
        /// Non-secure.
        ns: bool,
        /// Privileged execute never (bit 0).
        pxn: bool,
    },
    /// `0b1x`, bit 18 set: a 16 MiB supersection, kept raw (this crate never writes one).
    Supersection(u32),
}

impl L1Descriptor {
    /// Decodes a raw L1 word.
    #[must_use]
    pub const fn decode(raw: u32) -> Self {
        match raw & 0b11 {
            0b00 => Self::Fault,
            0b01 => Self::PageTable {
                table: PhysAddr::new(raw & 0xFFFF_FC00),
                domain: Domain(((raw >> 5) & 0xF) as u8),
                ns: bit(raw, 3),
                pxn: bit(raw, 2),
            },
            _ if bit(raw, 18) => Self::Supersection(raw),
            _ => Self::Section {
                base: PhysAddr::new(raw & 0xFFF0_0000),
                attrs: PageAttributes {
                    ap: AccessPermissions::from_parts(bit(raw, 15), raw >> 10),
                    tex: Tex(((raw >> 12) & 0b111) as u8),
                    c: bit(raw, 3),
                    b: bit(raw, 2),
                    s: bit(raw, 16),
                    ng: bit(raw, 17),
                    xn: bit(raw, 4),
                },
                domain: Domain(((raw >> 5) & 0xF) as u8),
                ns: bit(raw, 19),
                pxn: bit(raw, 0),
            },
        }
    }

    /// Encodes to a raw L1 word. Address bits below the block size are dropped.
    #[must_use]
    pub const fn encode(self) -> u32 {
        match self {
            Self::Fault => 0,
            Self::PageTable {
                table,
                domain,
                ns,
                pxn,
            } => {
                (table.as_u32() & 0xFFFF_FC00)
                    | ((domain.0 as u32) << 5)
                    | set(ns, 3)
                    | set(pxn, 2)
                    | 0b01
            }
            Self::Section {
                base,
                attrs,
                domain,
                ns,
                pxn,
            } => {
                (base.as_u32() & 0xFFF0_0000)
                    | set(ns, 19)
                    | set(attrs.ng, 17)
                    | set(attrs.s, 16)
                    | set(attrs.ap.ap2(), 15)
                    | ((attrs.tex.0 as u32) << 12)
                    | (attrs.ap.ap10() << 10)
                    | ((domain.0 as u32) << 5)
                    | set(attrs.xn, 4)
                    | set(attrs.c, 3)
                    | set(attrs.b, 2)
                    | 0b10
                    | set(pxn, 0)
            }
            Self::Supersection(raw) => raw,
        }
    }

    /// Whether the entry translates (anything but a fault).
    #[must_use]
    pub const fn is_valid(self) -> bool {
        !matches!(self, Self::Fault)
    }
}

/// A second-level (L2) descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum L2Descriptor {
    /// `0b00`: translation fault.
    Fault,
    /// `0b01`: a 64 KiB large page (this crate never writes one; it is decoded for walkers).
    Large {
        /// Physical base (bits 31:16).
        base: PhysAddr,
        /// Permissions and memory type.
        attrs: PageAttributes,
    },
    /// `0b1x`: a 4 KiB small page (bit 0 is XN).
    Small {
        /// Physical base (bits 31:12).
        base: PhysAddr,
        /// Permissions and memory type.
        attrs: PageAttributes,
    },
}

impl L2Descriptor {
    /// Decodes a raw L2 word.
    #[must_use]
    pub const fn decode(raw: u32) -> Self {
        match raw & 0b11 {
            0b00 => Self::Fault,
            0b01 => Self::Large {
                base: PhysAddr::new(raw & 0xFFFF_0000),
                attrs: PageAttributes {
                    ap: AccessPermissions::from_parts(bit(raw, 9), raw >> 4),
                    tex: Tex(((raw >> 12) & 0b111) as u8),
                    c: bit(raw, 3),
                    b: bit(raw, 2),
                    s: bit(raw, 10),
                    ng: bit(raw, 11),
                    xn: bit(raw, 15),
                },
            },
            _ => Self::Small {
                base: PhysAddr::new(raw & 0xFFFF_F000),
                attrs: PageAttributes {
                    ap: AccessPermissions::from_parts(bit(raw, 9), raw >> 4),
                    tex: Tex(((raw >> 6) & 0b111) as u8),
                    c: bit(raw, 3),
                    b: bit(raw, 2),
                    s: bit(raw, 10),
                    ng: bit(raw, 11),
                    xn: bit(raw, 0),
                },
            },
        }
    }

    /// Encodes to a raw L2 word. Address bits below the page size are dropped.
    #[must_use]
    pub const fn encode(self) -> u32 {
        match self {
            Self::Fault => 0,
            Self::Large { base, attrs } => {
                (base.as_u32() & 0xFFFF_0000)
                    | set(attrs.xn, 15)
                    | ((attrs.tex.0 as u32) << 12)
                    | set(attrs.ng, 11)
                    | set(attrs.s, 10)
                    | set(attrs.ap.ap2(), 9)
                    | (attrs.ap.ap10() << 4)
                    | set(attrs.c, 3)
                    | set(attrs.b, 2)
                    | 0b01
            }
            Self::Small { base, attrs } => {
                (base.as_u32() & 0xFFFF_F000)
                    | set(attrs.ng, 11)
                    | set(attrs.s, 10)
                    | set(attrs.ap.ap2(), 9)
                    | ((attrs.tex.0 as u32) << 6)
                    | (attrs.ap.ap10() << 4)
                    | set(attrs.c, 3)
                    | set(attrs.b, 2)
                    | 0b10
                    | set(attrs.xn, 0)
            }
        }
    }

    /// Whether the entry translates (anything but a fault).
    #[must_use]
    pub const fn is_valid(self) -> bool {
        !matches!(self, Self::Fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The small value types hand back what they were made from, print their bits, and a
    /// page-table entry is valid where a fault is not.
    #[test]
    fn value_types_and_validity() {
        for bits in 0..8 {
            assert_eq!(AccessPermissions::new(bits).unwrap().bits(), bits);
        }
        assert_eq!(AccessPermissions::new(8), None);
        assert_eq!(
            alloc::format!("{:?}", AccessPermissions::new(0b101).unwrap()),
            "AP(101)"
        );
        assert_eq!(Domain::new(15).unwrap().number(), 15);
        assert_eq!(Domain::new(16), None);
        assert!(!L1Descriptor::decode(0).is_valid());
        assert!(
            L1Descriptor::decode(0x4000_0001).is_valid(),
            "a page-table entry"
        );
    }

    #[test]
    fn liteos_worked_values_decode_as_expected() {
        // liteos-a-vm.md 5.2: anon RW user page (SMP) = 0xC7F in the low 12 bits.
        let d = L2Descriptor::decode(0x4123_4C7F);
        let L2Descriptor::Small { base, attrs } = d else {
            panic!("{d:?}")
        };
        assert_eq!(base, PhysAddr::new(0x4123_4000));
        assert_eq!(attrs.ap, AccessPermissions::FULL);
        assert_eq!(
            (attrs.tex.bits(), attrs.c, attrs.b, attrs.s),
            (1, true, true, true)
        );
        assert!(attrs.ng && attrs.xn);
        assert_eq!(d.encode(), 0x4123_4C7F);
        // Kernel RW data section (SMP) = 0x1143E.
        let s = L1Descriptor::decode(0x4010_0000 | 0x1143E);
        let L1Descriptor::Section {
            base,
            attrs,
            domain,
            ns,
            pxn,
        } = s
        else {
            panic!("{s:?}")
        };
        assert_eq!(base, PhysAddr::new(0x4010_0000));
        assert_eq!(attrs.ap, AccessPermissions::PRIV_RW);
        assert_eq!(domain, Domain::new(1).unwrap());
        assert!(!attrs.ng && attrs.xn && attrs.s && !ns && !pxn);
        assert_eq!(s.encode(), 0x4010_0000 | 0x1143E);
    }

    #[test]
    fn page_table_and_supersection_words() {
        let d = L1Descriptor::decode(0x4000_1C21);
        assert_eq!(
            d,
            L1Descriptor::PageTable {
                table: PhysAddr::new(0x4000_1C00),
                domain: Domain::new(1).unwrap(),
                ns: false,
                pxn: false
            }
        );
        assert_eq!(d.encode(), 0x4000_1C21);
        assert_eq!(
            L1Descriptor::decode(0x0004_0002),
            L1Descriptor::Supersection(0x0004_0002)
        );
        assert_eq!(L1Descriptor::decode(0xFFFF_FFFC), L1Descriptor::Fault);
        assert!(!L2Descriptor::decode(0xFFFF_FFFC).is_valid());
        assert!(matches!(
            L2Descriptor::decode(0x0001_0001),
            L2Descriptor::Large { .. }
        ));
    }
}
