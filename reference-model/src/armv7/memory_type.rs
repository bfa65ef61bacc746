//! Memory types from TEX, C, B and S with TEX remap off (SCTLR.TRE = 0): ARM ARM B3.8.2,
//! table B3-10, and the cacheability encoding of TEX[1:0] and C,B for TEX[2] = 1.

use super::Translation;

/// A cache policy of Normal memory (inner or outer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cacheability {
    /// Non-cacheable.
    NonCacheable,
    /// Write-back, write-allocate.
    WriteBackWriteAllocate,
    /// Write-through, no write-allocate.
    WriteThrough,
    /// Write-back, no write-allocate.
    WriteBackNoWriteAllocate,
}

impl Cacheability {
    /// The policy a two-bit field gives when TEX[2] = 1 (00, 01, 10, 11 in that order).
    const fn from_bits(bits: u8) -> Self {
        match bits & 0b11 {
            0b00 => Self::NonCacheable,
            0b01 => Self::WriteBackWriteAllocate,
            0b10 => Self::WriteThrough,
            _ => Self::WriteBackNoWriteAllocate,
        }
    }
}

/// The memory type and shareability a descriptor gives its block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemoryType {
    /// Strongly-ordered (always shareable).
    StronglyOrdered,
    /// Device memory.
    Device {
        /// Shareable Device (TEX=000 C=0 B=1) or Non-shareable Device (TEX=010 C=0 B=0).
        shareable: bool,
    },
    /// Normal memory.
    Normal {
        /// Inner cache policy.
        inner: Cacheability,
        /// Outer cache policy.
        outer: Cacheability,
        /// The S bit.
        shareable: bool,
    },
    /// A reserved or implementation-defined encoding (TEX, C, B).
    Reserved(u8, bool, bool),
}

impl MemoryType {
    /// Normal memory, inner and outer write-back write-allocate, shareable: what
    /// semantics.md section 13 asks for anonymous, heap and shm pages and the kernel's RAM.
    pub const NORMAL_WBWA_SHAREABLE: Self = Self::Normal {
        inner: Cacheability::WriteBackWriteAllocate,
        outer: Cacheability::WriteBackWriteAllocate,
        shareable: true,
    };
    /// Shareable Device memory: what semantics.md section 13 asks for device mappings.
    pub const SHAREABLE_DEVICE: Self = Self::Device { shareable: true };

    /// The memory type of TEX, C, B and S.
    #[must_use]
    pub fn decode(tex: u8, c: bool, b: bool, s: bool) -> Self {
        use Cacheability::{NonCacheable, WriteBackNoWriteAllocate, WriteThrough};
        let same = |policy| Self::Normal {
            inner: policy,
            outer: policy,
            shareable: s,
        };
        match (tex & 0b111, c, b) {
            (0b000, false, false) => Self::StronglyOrdered,
            (0b000, false, true) => Self::Device { shareable: true },
            (0b000, true, false) => same(WriteThrough),
            (0b000, true, true) => same(WriteBackNoWriteAllocate),
            (0b001, false, false) => same(NonCacheable),
            (0b001, true, true) => same(Cacheability::WriteBackWriteAllocate),
            (0b010, false, false) => Self::Device { shareable: false },
            (t, c, b) if t & 0b100 != 0 => Self::Normal {
                inner: Cacheability::from_bits(((c as u8) << 1) | b as u8),
                outer: Cacheability::from_bits(t),
                shareable: s,
            },
            (t, c, b) => Self::Reserved(t, c, b),
        }
    }
}

impl Translation {
    /// The memory type of the block.
    #[must_use]
    pub fn memory_type(&self) -> MemoryType {
        MemoryType::decode(self.tex, self.c, self.b, self.s)
    }
}
