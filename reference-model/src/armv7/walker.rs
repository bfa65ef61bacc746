//! `TranslationTableWalkSD` (ARM ARM B3.5 and B3.7) for SCTLR.AFE = 0 and SCTLR.TRE = 0.

/// The registers that steer a walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registers {
    /// TTBR0 (table base in bits 31:14-N; the low bits are walk attributes, ignored here).
    pub ttbr0: u32,
    /// TTBR1 (table base in bits 31:14).
    pub ttbr1: u32,
    /// TTBCR.N, 0..=7.
    pub ttbcr_n: u8,
    /// DACR: two bits per domain.
    pub dacr: u32,
}

/// What is being done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessKind {
    /// A load.
    Read,
    /// A store.
    Write,
    /// An instruction fetch.
    Execute,
}

/// At which privilege.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Privilege {
    /// User mode (or LDRT/STRT).
    Pl0,
    /// Kernel mode.
    Pl1,
}

/// A successful translation: where it goes and what the block allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Translation {
    /// The physical address of the accessed byte.
    pub pa: u32,
    /// First virtual address of the block (section, supersection, large or small page).
    pub block_va: u32,
    /// First physical address of the block.
    pub block_pa: u32,
    /// Block size in bytes.
    pub block_size: u32,
    /// Not global: the TLB tags the entry with the current ASID.
    pub not_global: bool,
    /// AP[2:0] of the block.
    pub ap: u8,
    /// Execute never.
    pub xn: bool,
    /// Privileged execute never.
    pub pxn: bool,
    /// The domain.
    pub domain: u8,
    /// TEX[2:0] of the block.
    pub tex: u8,
    /// C.
    pub c: bool,
    /// B.
    pub b: bool,
    /// S (shareable; ignored by the hardware for Device and Strongly-ordered memory).
    pub s: bool,
}

/// Why a walk or a permission check faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// No valid descriptor.
    Translation,
    /// The domain is no-access (or reserved).
    Domain,
    /// AP, XN or PXN forbid the access.
    Permission,
    /// A table word could not be read (outside memory).
    External,
}

/// A fault and the level (1 or 2) that raised it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fault {
    /// What went wrong.
    pub kind: FaultKind,
    /// 1 for the first-level descriptor, 2 for the second.
    pub level: u8,
}

const fn bits(word: u32, hi: u32, lo: u32) -> u32 {
    (word >> lo) & ((1u32 << (hi - lo + 1)) - 1)
}

const fn bit(word: u32, n: u32) -> bool {
    (word >> n) & 1 == 1
}

/// Translates `va` for `access` at `privilege`, reading table words with `read` (a physical
/// word address in, the word out; `None` when there is no memory there). The permission check
/// is applied too, so the result is what a real access would do with an empty TLB.
pub fn walk(
    mut read: impl FnMut(u32) -> Option<u32>,
    regs: Registers,
    va: u32,
    access: AccessKind,
    privilege: Privilege,
) -> Result<Translation, Fault> {
    let t = translate(&mut read, regs, va)?;
    check(regs, &t, access, privilege)?;
    Ok(t)
}

/// The walk alone, without the domain and permission checks: what a TLB entry for `va`
/// filled now would hold.
pub fn translate(
    read: &mut impl FnMut(u32) -> Option<u32>,
    regs: Registers,
    va: u32,
) -> Result<Translation, Fault> {
    let l1 = read(l1_address(regs, va)).ok_or(external(1))?;
    descend(read, l1, va)
}

/// The physical address of the first-level descriptor for `va` (B3.5.4).
fn l1_address(regs: Registers, va: u32) -> u32 {
    let n = u32::from(regs.ttbcr_n.min(7));
    // TTBR0 when N == 0 or VA[31:32-N] is zero.
    let use_ttbr0 = n == 0 || va >> (32 - n) == 0;
    if use_ttbr0 {
        (bits(regs.ttbr0, 31, 14 - n) << (14 - n)) | (bits(va, 31 - n, 20) << 2)
    } else {
        (bits(regs.ttbr1, 31, 14) << 14) | (bits(va, 31, 20) << 2)
    }
}

const fn external(level: u8) -> Fault {
    Fault {
        kind: FaultKind::External,
        level,
    }
}

/// The rest of the walk of `va` from its first-level descriptor `l1`.
fn descend(
    read: &mut impl FnMut(u32) -> Option<u32>,
    l1: u32,
    va: u32,
) -> Result<Translation, Fault> {
    match l1 & 0b11 {
        0b00 => Err(Fault {
            kind: FaultKind::Translation,
            level: 1,
        }),
        0b01 => {
            let domain = bits(l1, 8, 5) as u8;
            let pxn = bit(l1, 2);
            let l2_addr = (bits(l1, 31, 10) << 10) | (bits(va, 19, 12) << 2);
            let l2 = read(l2_addr).ok_or(external(2))?;
            match l2 & 0b11 {
                0b00 => Err(Fault {
                    kind: FaultKind::Translation,
                    level: 2,
                }),
                0b01 => {
                    // Large page, 64 KiB.
                    let block_pa = bits(l2, 31, 16) << 16;
                    Ok(Translation {
                        pa: block_pa | bits(va, 15, 0),
                        block_va: va & !0xFFFF,
                        block_pa,
                        block_size: 0x1_0000,
                        not_global: bit(l2, 11),
                        ap: ((bit(l2, 9) as u8) << 2) | bits(l2, 5, 4) as u8,
                        xn: bit(l2, 15),
                        pxn,
                        domain,
                        tex: bits(l2, 14, 12) as u8,
                        c: bit(l2, 3),
                        b: bit(l2, 2),
                        s: bit(l2, 10),
                    })
                }
                _ => {
                    // Small page, 4 KiB; bit 0 is XN.
                    let block_pa = bits(l2, 31, 12) << 12;
                    Ok(Translation {
                        pa: block_pa | bits(va, 11, 0),
                        block_va: va & !0xFFF,
                        block_pa,
                        block_size: 0x1000,
                        not_global: bit(l2, 11),
                        ap: ((bit(l2, 9) as u8) << 2) | bits(l2, 5, 4) as u8,
                        xn: bit(l2, 0),
                        pxn,
                        domain,
                        tex: bits(l2, 8, 6) as u8,
                        c: bit(l2, 3),
                        b: bit(l2, 2),
                        s: bit(l2, 10),
                    })
                }
            }
        }
        _ => {
            // Bit 1 set: section or supersection; bit 0 is PXN (LPAE-capable cores).
            let supersection = bit(l1, 18);
            let (block_pa, size, domain) = if supersection {
                // Bits 23:20 (and 8:5) extend the PA beyond 32 bits; this model has 32-bit PAs.
                (bits(l1, 31, 24) << 24, 0x100_0000, 0)
            } else {
                (bits(l1, 31, 20) << 20, 0x10_0000, bits(l1, 8, 5) as u8)
            };
            Ok(Translation {
                pa: block_pa | (va & (size - 1)),
                block_va: va & !(size - 1),
                block_pa,
                block_size: size,
                not_global: bit(l1, 17),
                ap: ((bit(l1, 15) as u8) << 2) | bits(l1, 11, 10) as u8,
                xn: bit(l1, 4),
                pxn: bit(l1, 0),
                domain,
                tex: bits(l1, 14, 12) as u8,
                c: bit(l1, 3),
                b: bit(l1, 2),
                s: bit(l1, 16),
            })
        }
    }
}

/// The L2 table a first-level descriptor links (bits 1:0 = 01: its 1 KiB-aligned base), if
/// it is a page-table descriptor.
#[must_use]
pub const fn linked_table(l1: u32) -> Option<u32> {
    if l1 & 0b11 == 0b01 {
        Some(l1 & !0x3FF)
    } else {
        None
    }
}

/// Every valid translation of the 4 KiB pages `[first_va, first_va + pages * 4 KiB)` (a
/// sweep: the walk of each page, with its first-level descriptor read once per MiB), handed to
/// `each` as (page address, translation of that page) in ascending order. Pages whose walk
/// faults are skipped; a range that would pass 4 GiB ends there.
pub fn translations(
    read: &mut impl FnMut(u32) -> Option<u32>,
    regs: Registers,
    first_va: u32,
    pages: u32,
    mut each: impl FnMut(u32, Translation),
) {
    let first = u64::from(first_va & !0xFFF);
    let end = (first + u64::from(pages) * 0x1000).min(1 << 32);
    let mut va = first;
    while va < end {
        let mib_end = ((va >> 20) + 1) << 20;
        let Some(l1) = read(l1_address(regs, va as u32)) else {
            va = mib_end;
            continue;
        };
        if l1 & 0b11 == 0 {
            va = mib_end;
            continue;
        }
        while va < end.min(mib_end) {
            if let Ok(t) = descend(read, l1, va as u32) {
                each(va as u32, t);
            }
            va += 0x1000;
        }
    }
}

/// Access rights as bits: read = 1, write = 2, execute = 4.
pub type Rights = u8;
/// Read.
pub const READ: Rights = 1;
/// Write.
pub const WRITE: Rights = 2;
/// Execute.
pub const EXECUTE: Rights = 4;

/// What an access through a translation may do, at each privilege (the domain and permission
/// checks of [`walk`] applied to every access kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Permissions {
    /// User mode.
    pub pl0: Rights,
    /// Kernel mode.
    pub pl1: Rights,
}

/// The [`Permissions`] of `t` under `regs` (its DACR decides the domain's mode).
#[must_use]
pub fn permissions(regs: Registers, t: &Translation) -> Permissions {
    let rights = |privilege| {
        [
            (AccessKind::Read, READ),
            (AccessKind::Write, WRITE),
            (AccessKind::Execute, EXECUTE),
        ]
        .into_iter()
        .filter(|&(kind, _)| check(regs, t, kind, privilege).is_ok())
        .fold(0, |acc, (_, bit)| acc | bit)
    };
    Permissions {
        pl0: rights(Privilege::Pl0),
        pl1: rights(Privilege::Pl1),
    }
}

/// The domain and permission checks for an access through `t` (B3.7). Public to the crate so
/// the TLB model applies the same rules to cached entries.
pub(crate) fn check(
    regs: Registers,
    t: &Translation,
    access: AccessKind,
    privilege: Privilege,
) -> Result<(), Fault> {
    let level = if t.block_size >= 0x10_0000 { 1 } else { 2 };
    match (regs.dacr >> (2 * u32::from(t.domain))) & 0b11 {
        0b01 => {}
        0b11 => return Ok(()),
        _ => {
            return Err(Fault {
                kind: FaultKind::Domain,
                level,
            });
        }
    }
    // Table B3-8, SCTLR.AFE = 0: (PL1 read, PL1 write, PL0 read, PL0 write).
    let (p1r, p1w, p0r, p0w) = match t.ap {
        0b000 => (false, false, false, false),
        0b001 => (true, true, false, false),
        0b010 => (true, true, true, false),
        0b011 => (true, true, true, true),
        0b101 => (true, false, false, false),
        0b110 | 0b111 => (true, false, true, false),
        _ => (false, false, false, false), // 0b100 is reserved
    };
    let allowed = match (privilege, access) {
        (Privilege::Pl1, AccessKind::Read) => p1r,
        (Privilege::Pl1, AccessKind::Write) => p1w,
        (Privilege::Pl1, AccessKind::Execute) => p1r && !t.xn && !t.pxn,
        (Privilege::Pl0, AccessKind::Read) => p0r,
        (Privilege::Pl0, AccessKind::Write) => p0w,
        (Privilege::Pl0, AccessKind::Execute) => p0r && !t.xn,
    };
    if allowed {
        Ok(())
    } else {
        Err(Fault {
            kind: FaultKind::Permission,
            level,
        })
    }
}
