//! The crate's mapping flags and their descriptor encoding (LiteOS-A `los_arch_mmu.c`, tables of
//! liteos-a-vm.md section 5.2), with one deliberate difference: a user mapping without read
//! (PROT_NONE) is encoded as AP=000 with nG=1, so it stays ASID-tagged and inaccessible at PL0
//! and PL1, and decodes back to `USER` (LiteOS-A encodes it as privileged read-only and loses
//! the user bit).

use bitflags::bitflags;

use super::descriptor::{AccessPermissions, PageAttributes, Tex};

bitflags! {
    /// Permissions of a mapping. `WRITE` and `EXECUTE` each imply `READ` (see
    /// [`MappingFlags::normalized`]); `USER` makes the page reachable from PL0 and ASID-tagged.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
    pub struct MappingFlags: u8 {
        /// Readable.
        const READ = 1 << 0;
        /// Writable (implies readable).
        const WRITE = 1 << 1;
        /// Executable (implies readable).
        const EXECUTE = 1 << 2;
        /// Accessible from user mode (PL0); the entry is non-global (nG = 1).
        const USER = 1 << 3;
    }
}

impl MappingFlags {
    /// The flags with the implied `READ` added: what the descriptor can express.
    #[must_use]
    pub const fn normalized(self) -> Self {
        if self.intersects(Self::WRITE.union(Self::EXECUTE)) {
            self.union(Self::READ)
        } else {
            self
        }
    }
}

/// The memory type of a mapping (TEX/C/B/S).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum MemoryType {
    /// Normal memory, write-back write-allocate, shareable (TEX=001 C=1 B=1 S=1).
    #[default]
    Cached,
    /// Normal memory, non-cacheable, shareable (TEX=001 C=0 B=0 S=1).
    Uncached,
    /// Shareable device memory (TEX=000 C=0 B=1).
    Device,
    /// Strongly ordered (TEX=000 C=0 B=0).
    StronglyOrdered,
}

/// Everything a mapping asks of the hardware: permissions and memory type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MappingAttrs {
    /// Permissions.
    pub flags: MappingFlags,
    /// Memory type.
    pub memory: MemoryType,
}

impl MappingAttrs {
    /// Normal cached memory with these permissions.
    #[must_use]
    pub const fn new(flags: MappingFlags) -> Self {
        Self {
            flags,
            memory: MemoryType::Cached,
        }
    }

    /// The attributes with normalized flags (what a round trip through a descriptor gives).
    #[must_use]
    pub const fn normalized(self) -> Self {
        Self {
            flags: self.flags.normalized(),
            memory: self.memory,
        }
    }

    /// The descriptor fields for these attributes.
    #[must_use]
    pub const fn to_page_attributes(self) -> PageAttributes {
        let f = self.flags.normalized();
        let user = f.contains(MappingFlags::USER);
        let ap = if f.contains(MappingFlags::WRITE) {
            if user {
                AccessPermissions::FULL
            } else {
                AccessPermissions::PRIV_RW
            }
        } else if f.contains(MappingFlags::READ) {
            if user {
                AccessPermissions::READ_ONLY
            } else {
                AccessPermissions::PRIV_RO
            }
        } else {
            AccessPermissions::NO_ACCESS
        };
        let (tex, c, b, s) = match self.memory {
            MemoryType::Cached => (1, true, true, true),
            MemoryType::Uncached => (1, false, false, true),
            MemoryType::Device => (0, false, true, false),
            MemoryType::StronglyOrdered => (0, false, false, false),
        };
        PageAttributes {
            ap,
            tex: Tex::from_low_bits(tex),
            c,
            b,
            s,
            ng: user,
            xn: !f.contains(MappingFlags::EXECUTE),
        }
    }

    /// The attributes a descriptor expresses, or `None` for field combinations this crate never
    /// writes (so `from_page_attributes(a)` is `Some(x)` exactly when `x.to_page_attributes() == a`).
    #[must_use]
    pub fn from_page_attributes(a: PageAttributes) -> Option<Self> {
        let mut flags = match a.ap {
            AccessPermissions::NO_ACCESS if a.ng => MappingFlags::USER,
            AccessPermissions::NO_ACCESS => MappingFlags::empty(),
            AccessPermissions::PRIV_RW => MappingFlags::READ | MappingFlags::WRITE,
            AccessPermissions::FULL => {
                MappingFlags::USER | MappingFlags::READ | MappingFlags::WRITE
            }
            AccessPermissions::PRIV_RO => MappingFlags::READ,
            AccessPermissions::READ_ONLY => MappingFlags::USER | MappingFlags::READ,
            _ => return None,
        };
        if !a.xn {
            flags |= MappingFlags::EXECUTE | MappingFlags::READ;
        }
        let memory = match (a.tex.bits(), a.c, a.b) {
            (1, true, true) => MemoryType::Cached,
            (1, false, false) => MemoryType::Uncached,
            (0, false, true) => MemoryType::Device,
            (0, false, false) => MemoryType::StronglyOrdered,
            _ => return None,
        };
        let attrs = Self { flags, memory };
        (attrs.to_page_attributes() == a).then_some(attrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::PhysAddr;
    use crate::arch::armv7::descriptor::L2Descriptor;

    fn low12(flags: MappingFlags, memory: MemoryType) -> u32 {
        let attrs = MappingAttrs { flags, memory }.to_page_attributes();
        L2Descriptor::Small {
            base: PhysAddr::new(0),
            attrs,
        }
        .encode()
    }

    #[test]
    fn matches_liteos_smp_worked_values() {
        use MappingFlags as F;
        let c = MemoryType::Cached;
        assert_eq!(low12(F::USER | F::READ | F::WRITE, c), 0xC7F);
        assert_eq!(low12(F::USER | F::READ, c), 0xE7F);
        assert_eq!(low12(F::USER | F::READ | F::EXECUTE, c), 0xE7E);
        assert_eq!(
            low12(F::USER | F::READ | F::WRITE, MemoryType::StronglyOrdered),
            0x833
        );
    }

    #[test]
    fn prot_none_keeps_user_and_ng() {
        let a = MappingAttrs::new(MappingFlags::USER).to_page_attributes();
        assert_eq!(a.ap, AccessPermissions::NO_ACCESS);
        assert!(a.ng && a.xn);
        assert_eq!(
            MappingAttrs::from_page_attributes(a),
            Some(MappingAttrs::new(MappingFlags::USER))
        );
    }

    #[test]
    fn kernel_mappings_are_global() {
        let a = MappingAttrs::new(MappingFlags::READ | MappingFlags::WRITE).to_page_attributes();
        assert!(!a.ng);
        assert_eq!(a.ap, AccessPermissions::PRIV_RW);
    }

    #[test]
    fn every_flag_combination_round_trips_normalized() {
        for bits in 0..16u8 {
            for memory in [
                MemoryType::Cached,
                MemoryType::Uncached,
                MemoryType::Device,
                MemoryType::StronglyOrdered,
            ] {
                let attrs = MappingAttrs {
                    flags: MappingFlags::from_bits_truncate(bits),
                    memory,
                };
                let back = MappingAttrs::from_page_attributes(attrs.to_page_attributes());
                assert_eq!(back, Some(attrs.normalized()), "{attrs:?}");
            }
        }
    }
}
