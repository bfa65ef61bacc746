//! A TLB model: entries are filled by successful walks, tagged with the ASID unless global,
//! and dropped only by the invalidates actually issued. Lookups hit the newest matching entry,
//! so a missing invalidate shows up as a stale translation.

use super::walker::{AccessKind, Fault, Privilege, Registers, Translation, check};

/// A cached translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TlbEntry {
    /// The translation of the whole block.
    pub translation: Translation,
    /// The ASID it was filled under; `None` for global entries.
    pub asid: Option<u8>,
}

impl TlbEntry {
    fn covers(&self, va: u32) -> bool {
        let t = &self.translation;
        va.wrapping_sub(t.block_va) < t.block_size
    }
    fn matches(&self, va: u32, asid: u8) -> bool {
        self.covers(va) && self.asid.is_none_or(|a| a == asid)
    }
}

/// The TLB: an unbounded list of entries, oldest first (no eviction, so nothing stale is ever
/// hidden by capacity).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tlb {
    entries: Vec<TlbEntry>,
}

impl Tlb {
    /// Every entry, oldest first.
    #[must_use]
    pub fn entries(&self) -> &[TlbEntry] {
        &self.entries
    }

    /// Caches a translation walked under `asid`.
    pub fn fill(&mut self, translation: Translation, asid: u8) {
        let entry = TlbEntry {
            translation,
            asid: translation.not_global.then_some(asid),
        };
        if !self.entries.contains(&entry) {
            self.entries.push(entry);
        }
    }

    /// The cached translation for `va` under `asid`, if any (the newest one).
    #[must_use]
    pub fn lookup(&self, va: u32, asid: u8) -> Option<&TlbEntry> {
        self.entries.iter().rev().find(|e| e.matches(va, asid))
    }

    /// An access served from the TLB: `None` on a miss, else the permission result of the
    /// cached entry (the same checks as a walk).
    pub fn access(
        &self,
        regs: Registers,
        va: u32,
        asid: u8,
        access: AccessKind,
        privilege: Privilege,
    ) -> Option<Result<u32, Fault>> {
        let e = self.lookup(va, asid)?;
        let t = e.translation;
        Some(check(regs, &t, access, privilege).map(|()| t.block_pa | (va - t.block_va)))
    }

    /// `TLBIMVA`: entries covering `va` tagged with `asid`, and global ones.
    pub fn invalidate_mva(&mut self, va: u32, asid: u8) {
        self.entries.retain(|e| !e.matches(va, asid));
    }
    /// `TLBIMVAA`: entries covering `va` under any ASID.
    pub fn invalidate_mva_all_asids(&mut self, va: u32) {
        self.entries.retain(|e| !e.covers(va));
    }
    /// `TLBIASID`: non-global entries tagged with `asid`.
    pub fn invalidate_asid(&mut self, asid: u8) {
        self.entries.retain(|e| e.asid != Some(asid));
    }
    /// `TLBIALL`.
    pub fn invalidate_all(&mut self) {
        self.entries.clear();
    }
}
