//! The simulated machine `run` gives the vmm: the host machine's RAM and call log, plus the
//! reference model's TLB, which fills on accesses and forgets only what the vmm invalidates.
//!
//! The TLB also fills speculatively, as hardware may: right after an invalidate of a page of
//! the current space, the walker walks that page again over the memory a table walk sees and
//! caches what it finds. A walk sees a descriptor write only once a DSB has completed it, so
//! an invalidate issued before the write that clears the page, or without a DSB between the
//! two, leaves the old translation cached, and INV-8 reports it when the op returns.

use reference_model::armv7::{Registers, Tlb, translate};
use vmm::addr::{PhysAddr, PhysFrame, VirtPage};
use vmm::arch::armv7::Asid;
use vmm::machine::{HostMachine, Machine};

/// A deliberate defect, to prove the checker sees it: hardware that loses or corrupts what it
/// is asked, or (the `Skip`, `ClearAfter` and `InvalidateAfter` kinds) a vmm that asks for the
/// wrong thing: the call never reaches the machine or reaches it late, as a vmm with that bug
/// would make it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Defect {
    /// Every TLB invalidate is lost.
    DropEveryInvalidate,
    /// The k-th TLB page invalidate (`TLBIMVA` or `TLBIMVAA`, 0-based) is lost.
    DropNthInvalidate(u64),
    /// Read-only user small-page descriptors are written read/write (AP[2] cleared).
    MakeReadOnlyUserPagesWritable,
    /// User small-page descriptors are written executable (XN cleared).
    MakeUserPagesExecutable,
    /// User small-page descriptors are written global (nG cleared).
    ClearNotGlobal,
    /// Frame copies leave the first word of the destination unchanged.
    CorruptFrameCopy,
    /// Frame zeroing does nothing.
    SkipFrameZeroing,
    /// DSB and ISB do nothing (and leave no trace in the log).
    DropBarriers,
    /// Execute-never device small-page descriptors land in RAM as Normal write-back cacheable
    /// memory, while the vmm
    /// reads back what it wrote: its encoder and its decoder agree on a wrong table, so only
    /// a walk of the raw words sees it.
    DisguisedCacheableDevice,
    /// User small-page descriptors land in RAM global (nG = 0), while the vmm reads back
    /// what it wrote (nG = 1).
    DisguisedGlobalUserPages,
    /// The k-th page invalidate the vmm asks for (`TLBIMVA` or `TLBIMVAA`, 0-based) is never
    /// issued: a vmm that forgets one.
    SkipNthPageInvalidate(u64),
    /// No `TLBIASID` is ever issued: a vmm that neither invalidates an ASID at exit nor when it
    /// hands it out again.
    SkipAsidInvalidates,
    /// A `TLBIASID` of an ASID invalidated before is not issued: a vmm that invalidates an ASID
    /// at exit but not again when it hands it out.
    SkipAsidReinvalidate,
    /// A write that clears a valid descriptor lands only after the next TLB invalidate, just
    /// before the DSB that follows it: a vmm that invalidates, then clears, then barriers.
    ClearAfterInvalidate,
    /// Page invalidates are held back until the next frame is freed, then issued with DSB;
    /// ISB: a vmm that frees a frame before invalidating the page that mapped it.
    InvalidateAfterFree,
}

impl Defect {
    /// Every defect with its command-line name (`--defect NAME`, `VMM_FUZZ_DEFECT=NAME`).
    pub const NAMED: [(&'static str, Defect); 15] = [
        ("drop-every-invalidate", Defect::DropEveryInvalidate),
        ("drop-first-invalidate", Defect::DropNthInvalidate(0)),
        (
            "ro-user-pages-writable",
            Defect::MakeReadOnlyUserPagesWritable,
        ),
        ("user-pages-executable", Defect::MakeUserPagesExecutable),
        ("clear-not-global", Defect::ClearNotGlobal),
        ("corrupt-frame-copy", Defect::CorruptFrameCopy),
        ("skip-frame-zeroing", Defect::SkipFrameZeroing),
        ("drop-barriers", Defect::DropBarriers),
        (
            "disguised-cacheable-device",
            Defect::DisguisedCacheableDevice,
        ),
        (
            "disguised-global-user-pages",
            Defect::DisguisedGlobalUserPages,
        ),
        (
            "skip-third-page-invalidate",
            Defect::SkipNthPageInvalidate(2),
        ),
        ("skip-asid-invalidates", Defect::SkipAsidInvalidates),
        ("skip-asid-reinvalidate", Defect::SkipAsidReinvalidate),
        ("clear-after-invalidate", Defect::ClearAfterInvalidate),
        ("invalidate-after-free", Defect::InvalidateAfterFree),
    ];

    /// The defect named `name` (see [`Defect::NAMED`]).
    pub fn from_name(name: &str) -> Result<Self, String> {
        Self::NAMED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, d)| d)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::NAMED.iter().map(|(n, _)| *n).collect();
                format!("unknown defect `{name}` (one of: {})", names.join(", "))
            })
    }
}

/// RAM and the TLB model, optionally with a defect.
#[derive(Clone, Debug, Default)]
pub struct SimMachine {
    /// RAM, the call log and failure injection.
    pub host: HostMachine,
    /// The TLB as the hardware would have it.
    pub tlb: Tlb,
    /// The defect, if any.
    pub defect: Option<Defect>,
    /// Words written by accesses (data writes bypass the log, which holds the vmm's own
    /// writes): the fast mode needs every change to RAM.
    pub data_writes: Vec<PhysAddr>,
    /// TLB entries filled by accesses or speculative walks since the checker last looked (the
    /// fast mode checks the TLB after any step that filled it: a fill from unchanged tables can
    /// still break INV-8, e.g. a global entry for a user page).
    pub tlb_fills: u32,
    invalidates: u64,
    /// The space current on the CPU as the vmm last set it (TTBR0's table, ASID); `None`: the
    /// kernel-only state. Accesses walk with these registers, as the hardware would.
    pub current: Option<(u32, u8)>,
    /// The kernel's L1 table (TTBR1), for walks of kernel addresses; set once booted.
    pub ttbr1: u32,
    /// Descriptor writes since the last DSB, (address, value before it), in order: table walks
    /// do not see them yet (a word's first entry holds what they see).
    pending: Vec<(u32, u32)>,
    /// Protocol violations only the machine sees (an L1 table freed while in TTBR0), for the
    /// checker to report.
    pub violations: Vec<String>,
    /// Page invalidates the vmm asked for so far (`SkipNthPageInvalidate`).
    page_invalidates_asked: u64,
    /// ASIDs invalidated so far, one bit each (`SkipAsidReinvalidate`).
    asids_invalidated: [u64; 4],
    /// Page invalidates held back (`InvalidateAfterFree`): (ASID or `None` for all, page).
    held: Vec<(Option<Asid>, VirtPage)>,
    /// Clearing writes held back (`ClearAfterInvalidate`), and whether an invalidate has been
    /// issued since (they land at the next DSB then).
    delayed_clears: Vec<(PhysAddr, u32)>,
    invalidated_since_delay: bool,
    /// Disguised defects: physical word -> the value the vmm wrote there (RAM holds the
    /// disguised value; the vmm's reads see this one while RAM still holds what was stored).
    shown: std::collections::BTreeMap<u32, u32>,
}

impl SimMachine {
    /// A machine with RAM at the default place and the given defect.
    #[must_use]
    pub fn with_defect(defect: Option<Defect>) -> Self {
        Self {
            defect,
            ..Self::default()
        }
    }

    /// A speculative walk of `va` in the current space, as hardware may make at any time: over
    /// the memory a walk sees (descriptor writes not yet completed by a DSB read as their old
    /// value), and what it finds is cached.
    fn speculate(&mut self, va: u32) {
        let (ttbr0, asid) = self.current.unwrap_or((0, 0));
        if ttbr0 == 0 && va < 0x4000_0000 {
            return;
        }
        let regs = Registers {
            ttbr1: self.ttbr1,
            ..crate::shadow::user_registers(ttbr0)
        };
        let (host, pending) = (&self.host, &self.pending);
        let mut visible = |a: u32| match pending.iter().find(|&&(p, _)| p == a) {
            Some(&(_, before)) => Some(before),
            None => host.peek_word(PhysAddr::new(a)),
        };
        if let Ok(t) = translate(&mut visible, regs, va) {
            self.tlb.fill(t, asid);
            self.tlb_fills += 1;
        }
    }

    /// A descriptor write as it reaches RAM (walks see it once a DSB completes it).
    fn write_now(&mut self, pa: PhysAddr, value: u32) {
        // Every write is noted (a search here would make a fork's thousands of writes
        // quadratic); a walk reads the first note of a word, the value before the first write.
        let before = self.host.peek_word(pa).unwrap_or(0);
        self.pending.push((pa.as_u32(), before));
        let stored = self.corrupt_descriptor(value);
        if self.disguised() {
            if stored == value {
                self.shown.remove(&pa.as_u32());
            } else {
                self.shown.insert(pa.as_u32(), value);
            }
        }
        self.host.write_word(pa, stored);
    }

    /// Whether a page invalidate the vmm asks for reaches the machine now (counting it).
    fn asked_page_invalidate(&mut self) -> bool {
        let n = self.page_invalidates_asked;
        self.page_invalidates_asked += 1;
        match self.defect {
            Some(Defect::SkipNthPageInvalidate(k)) => n != k,
            Some(Defect::InvalidateAfterFree) => false,
            _ => true,
        }
    }

    /// `TLBIMVA` (with an ASID) or `TLBIMVAA` (without) as the hardware carries it out: logged,
    /// applied to the TLB model unless a hardware defect loses it, then a speculative walk.
    fn issue_page_invalidate(&mut self, asid: Option<Asid>, page: VirtPage) {
        let va = page.start().as_u32();
        match asid {
            Some(asid) => self.host.tlb_invalidate_page(asid, page),
            None => self.host.tlb_invalidate_page_all_asids(page),
        }
        if !self.lose_invalidate() {
            match asid {
                Some(asid) => self.tlb.invalidate_mva(va, asid.value()),
                None => self.tlb.invalidate_mva_all_asids(va),
            }
        }
        if asid.is_none_or(|a| self.current.is_some_and(|(_, c)| c == a.value())) {
            self.speculate(va);
        }
        self.invalidated_since_delay = !self.delayed_clears.is_empty();
    }

    /// The clearing writes `ClearAfterInvalidate` held back land, once an invalidate has been
    /// issued since they were made (called before a DSB).
    fn land_delayed_clears(&mut self) {
        if std::mem::take(&mut self.invalidated_since_delay) {
            for (pa, value) in std::mem::take(&mut self.delayed_clears) {
                self.write_now(pa, value);
            }
        }
    }

    /// Whether the defect swallows this invalidate.
    fn lose_invalidate(&mut self) -> bool {
        let n = self.invalidates;
        self.invalidates += 1;
        match self.defect {
            Some(Defect::DropEveryInvalidate) => true,
            Some(Defect::DropNthInvalidate(k)) => n == k,
            _ => false,
        }
    }

    /// The word a defective table write stores instead of `value` (small user pages only:
    /// bit 1 set, nG set).
    fn corrupt_descriptor(&self, value: u32) -> u32 {
        let user_small_page = value & 0b10 != 0 && value & (1 << 11) != 0;
        match self.defect {
            Some(Defect::MakeReadOnlyUserPagesWritable)
                if user_small_page && value & (1 << 9) != 0 =>
            {
                value & !(1 << 9)
            }
            // Small pages with XN (bits 1:0 = 11).
            Some(Defect::MakeUserPagesExecutable) if user_small_page && value & 1 != 0 => {
                value & !1
            }
            Some(Defect::ClearNotGlobal | Defect::DisguisedGlobalUserPages) if user_small_page => {
                value & !(1 << 11)
            }
            // Execute-never small pages (bits 1:0 = 11, which no L1 descriptor the vmm writes
            // has) of Shareable Device memory (TEX=000 C=0 B=1) -> Normal WBWA (TEX=001 C=1
            // B=1 S=1).
            Some(Defect::DisguisedCacheableDevice)
                if value & 0b11 == 0b11 && (value >> 2) & 0b111_0011 == 0b000_0001 =>
            {
                value | (1 << 6) | (0b11 << 2) | (1 << 10)
            }
            _ => value,
        }
    }

    /// What the vmm reads at `pa` when RAM holds `stored`: under a disguised defect, the
    /// value it wrote, for as long as RAM holds the disguise of it.
    fn shown(&self, pa: u32, stored: u32) -> u32 {
        match self.shown.get(&pa) {
            Some(&wrote) if self.corrupt_descriptor(wrote) == stored => wrote,
            _ => stored,
        }
    }

    fn disguised(&self) -> bool {
        matches!(
            self.defect,
            Some(Defect::DisguisedCacheableDevice | Defect::DisguisedGlobalUserPages)
        )
    }
}

impl Machine for SimMachine {
    fn read_word(&mut self, pa: PhysAddr) -> u32 {
        let stored = self.host.read_word(pa);
        self.shown(pa.as_u32(), stored)
    }
    fn read_words(&mut self, pa: PhysAddr, out: &mut [u32]) {
        self.host.read_words(pa, out);
        if !self.shown.is_empty() {
            for (i, word) in out.iter_mut().enumerate() {
                *word = self.shown(pa.as_u32().wrapping_add(4 * i as u32), *word);
            }
        }
    }
    fn read_nonzero_words(&mut self, pa: PhysAddr, count: usize, out: &mut Vec<(usize, u32)>) {
        let from = out.len();
        self.host.read_nonzero_words(pa, count, out);
        if !self.shown.is_empty() {
            for (i, word) in &mut out[from..] {
                *word = self.shown(pa.as_u32().wrapping_add(4 * *i as u32), *word);
            }
        }
    }
    fn write_word(&mut self, pa: PhysAddr, value: u32) {
        if self.defect == Some(Defect::ClearAfterInvalidate)
            && value & 0b11 == 0
            && self.host.peek_word(pa).is_some_and(|old| old & 0b11 != 0)
        {
            self.delayed_clears.push((pa, value));
            return;
        }
        self.write_now(pa, value);
    }
    fn zero_frame(&mut self, frame: PhysFrame) {
        if self.defect != Some(Defect::SkipFrameZeroing) {
            self.host.zero_frame(frame);
        }
    }
    fn copy_frame(&mut self, dst: PhysFrame, src: PhysFrame) {
        let kept = self.host.peek_word(dst.start());
        self.host.copy_frame(dst, src);
        if self.defect == Some(Defect::CorruptFrameCopy)
            && let Some(old) = kept
        {
            self.host.write_bytes(dst.start(), &old.to_le_bytes());
        }
    }
    fn tlb_invalidate_page(&mut self, asid: Asid, page: VirtPage) {
        if self.asked_page_invalidate() {
            self.issue_page_invalidate(Some(asid), page);
        } else if self.defect == Some(Defect::InvalidateAfterFree) {
            self.held.push((Some(asid), page));
        }
    }
    fn tlb_invalidate_page_all_asids(&mut self, page: VirtPage) {
        if self.asked_page_invalidate() {
            self.issue_page_invalidate(None, page);
        } else if self.defect == Some(Defect::InvalidateAfterFree) {
            self.held.push((None, page));
        }
    }
    fn tlb_invalidate_asid(&mut self, asid: Asid) {
        let (word, bit) = (usize::from(asid.value() / 64), 1u64 << (asid.value() % 64));
        let seen = self.asids_invalidated[word] & bit != 0;
        self.asids_invalidated[word] |= bit;
        match self.defect {
            Some(Defect::SkipAsidInvalidates) => return,
            Some(Defect::SkipAsidReinvalidate) if seen => return,
            _ => {}
        }
        self.host.tlb_invalidate_asid(asid);
        // Only page invalidates are counted for `DropNthInvalidate`.
        if self.defect != Some(Defect::DropEveryInvalidate) {
            self.tlb.invalidate_asid(asid.value());
        }
        self.invalidated_since_delay = !self.delayed_clears.is_empty();
    }
    fn tlb_invalidate_all(&mut self) {
        self.host.tlb_invalidate_all();
        self.tlb.invalidate_all();
    }
    fn dsb(&mut self) {
        self.land_delayed_clears();
        if self.defect != Some(Defect::DropBarriers) {
            self.host.dsb();
            self.pending.clear();
        }
    }
    fn isb(&mut self) {
        if self.defect != Some(Defect::DropBarriers) {
            self.host.isb();
        }
    }
    fn switch_space(&mut self, space: Option<(PhysFrame, Asid)>) {
        self.host.switch_space(space);
        self.current = space.map(|(l1, asid)| (l1.start().as_u32(), asid.value()));
    }
    fn frames_freed(&mut self, first: PhysFrame, count: u32) {
        self.host.frames_freed(first, count);
        if !self.held.is_empty() {
            for (asid, page) in std::mem::take(&mut self.held) {
                self.issue_page_invalidate(asid, page);
            }
            self.dsb();
            self.isb();
        }
        if let Some((l1, asid)) = self.current
            && l1.wrapping_sub(first.start().as_u32()) < count.saturating_mul(4096)
        {
            self.violations.push(format!(
                "(g) the L1 table at {l1:#010x} (ASID {asid}) was freed while in TTBR0\n"
            ));
        }
    }
    fn frame_allocation_permitted(&mut self) -> bool {
        self.host.frame_allocation_permitted()
    }
}
