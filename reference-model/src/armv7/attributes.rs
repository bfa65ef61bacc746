//! What a present page shows the hardware besides where it goes: the rights at each
//! privilege, the global bit, the domain and the memory type. Both sides of the checker's
//! comparison are reduced to this: the model from semantics.md section 13, the vmm from its
//! table words through the walker.

use core::fmt;

use super::{Cacheability, permissions};
use super::{EXECUTE, MemoryType, Permissions, READ, Registers, Rights, Translation, WRITE};

/// A page's hardware attributes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageAttributes {
    /// Read, write and execute at PL0 and PL1.
    pub rights: Permissions,
    /// nG: the TLB tags the entry with the ASID.
    pub not_global: bool,
    /// The domain.
    pub domain: u8,
    /// Memory type and shareability.
    pub memory: MemoryType,
}

impl PageAttributes {
    /// The attributes of translation `t` under `regs`.
    #[must_use]
    pub fn of(regs: Registers, t: &Translation) -> Self {
        Self {
            rights: permissions(regs, t),
            not_global: t.not_global,
            domain: t.domain,
            memory: t.memory_type(),
        }
    }
}

fn rights(f: &mut fmt::Formatter<'_>, r: Rights) -> fmt::Result {
    let flag = |bit, c| if r & bit != 0 { c } else { '-' };
    write!(
        f,
        "{}{}{}",
        flag(READ, 'r'),
        flag(WRITE, 'w'),
        flag(EXECUTE, 'x')
    )
}

fn policy(c: Cacheability) -> &'static str {
    match c {
        Cacheability::NonCacheable => "NC",
        Cacheability::WriteBackWriteAllocate => "WBWA",
        Cacheability::WriteThrough => "WT",
        Cacheability::WriteBackNoWriteAllocate => "WB",
    }
}

/// One line a person reads in a diff: `PL0 rw- PL1 rw- nG d0 Normal WBWA/WBWA S`.
impl fmt::Debug for PageAttributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PL0 ")?;
        rights(f, self.rights.pl0)?;
        f.write_str(" PL1 ")?;
        rights(f, self.rights.pl1)?;
        let global = if self.not_global { "nG" } else { "global" };
        write!(f, " {global} d{} ", self.domain)?;
        let shareable = |s: bool| if s { "S" } else { "NS" };
        match self.memory {
            MemoryType::StronglyOrdered => f.write_str("Strongly-ordered"),
            MemoryType::Device { shareable: s } => write!(f, "Device {}", shareable(s)),
            MemoryType::Normal {
                inner,
                outer,
                shareable: s,
            } => write!(
                f,
                "Normal {}/{} {}",
                policy(inner),
                policy(outer),
                shareable(s)
            ),
            MemoryType::Reserved(tex, c, b) => {
                write!(f, "reserved TEX={tex:03b} C={} B={}", c as u8, b as u8)
            }
        }
    }
}
