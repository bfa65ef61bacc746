//! The simulated machine `run` gives the vmm: the host machine's RAM and call log, plus one
//! reference-model TLB and one current space per CPU (semantics.md section 14). A TLB fills on
//! accesses and forgets only what the vmm invalidates: a local invalidate reaches the CPU that
//! issues it, a broadcast (IS) one every CPU. The vmm's code runs on CPU 0 (its syscalls and
//! its fault handler alike, as in the QEMU guest, where only the access itself runs on the
//! second core), so a local invalidate reaches CPU 0's TLB.
//!
//! The TLBs also fill speculatively, as hardware may: right after an invalidate of a page, on
//! every CPU where that page's space is current, the walker walks that page again over the
//! memory a table walk sees and caches what it finds. A walk sees a descriptor write only once a DSB has completed it, so
//! an invalidate issued before the write that clears the page, or without a DSB between the
//! two, leaves the old translation cached, and INV-8 reports it when the op returns.

use reference_model::armv7::{Registers, Tlb, translate};
use vmm::Cpu;
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
    /// Every broadcast invalidate (`TLBIMVAIS`, `TLBIMVAAIS`, `TLBIASIDIS`, `TLBIALLIS`) is
    /// issued in its local form: a vmm that forgets the other CPUs (a missing shootdown).
    LocalInvalidates,
    /// Broadcast invalidates are issued (and logged) as such but reach only the issuing CPU's
    /// TLB: hardware whose CPUs are not in one inner-shareable domain. Only the per-CPU TLB
    /// models see it.
    BroadcastStaysLocal,
}

impl Defect {
    /// Every defect with its command-line name (`--defect NAME`, `VMM_FUZZ_DEFECT=NAME`).
    pub const NAMED: [(&'static str, Defect); 17] = [
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
        ("local-invalidates", Defect::LocalInvalidates),
        ("broadcast-stays-local", Defect::BroadcastStaysLocal),
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

/// RAM and the TLB models, optionally with a defect.
#[derive(Clone, Debug)]
pub struct SimMachine {
    /// RAM, the call log and failure injection.
    pub host: HostMachine,
    /// Each CPU's TLB as the hardware would have it.
    pub tlbs: Vec<Tlb>,
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
    /// The space current on each CPU as the vmm last set it (TTBR0's table, ASID); `None`: the
    /// kernel-only state. Accesses walk with these registers, as the hardware would.
    pub current: Vec<Option<(u32, u8)>>,
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
    /// Page invalidates held back (`InvalidateAfterFree`): (ASID or `None` for all, page,
    /// broadcast).
    held: Vec<(Option<Asid>, VirtPage, bool)>,
    /// Clearing writes held back (`ClearAfterInvalidate`), and whether an invalidate has been
    /// issued since (they land at the next DSB then).
    delayed_clears: Vec<(PhysAddr, u32)>,
    invalidated_since_delay: bool,
    /// Disguised defects: physical word -> the value the vmm wrote there (RAM holds the
    /// disguised value; the vmm's reads see this one while RAM still holds what was stored).
    shown: std::collections::BTreeMap<u32, u32>,
}

impl Default for SimMachine {
    fn default() -> Self {
        Self::new(1, None)
    }
}

impl SimMachine {
    /// A machine of `cpus` CPUs (at least one) with RAM at the default place and the given
    /// defect.
    #[must_use]
    pub fn new(cpus: u8, defect: Option<Defect>) -> Self {
        let cpus = usize::from(cpus.max(1));
        Self {
            host: HostMachine::default(),
            tlbs: vec![Tlb::default(); cpus],
            defect,
            data_writes: Vec::new(),
            tlb_fills: 0,
            invalidates: 0,
            current: vec![None; cpus],
            ttbr1: 0,
            pending: Vec::new(),
            violations: Vec::new(),
            page_invalidates_asked: 0,
            asids_invalidated: [0; 4],
            held: Vec::new(),
            delayed_clears: Vec::new(),
            invalidated_since_delay: false,
            shown: std::collections::BTreeMap::new(),
        }
    }

    /// The CPUs.
    #[must_use]
    pub fn cpus(&self) -> usize {
        self.tlbs.len()
    }

    /// The TLBs an invalidate reaches: every CPU's when `broadcast` (unless a defect keeps it
    /// local), else CPU 0's, where the vmm runs.
    fn reached(&mut self, broadcast: bool) -> &mut [Tlb] {
        if broadcast && self.defect != Some(Defect::BroadcastStaysLocal) {
            &mut self.tlbs
        } else {
            &mut self.tlbs[..1]
        }
    }

    /// Whether the defect makes this broadcast invalidate a local one (then logged as such).
    fn broadcast_kept(&self) -> bool {
        self.defect != Some(Defect::LocalInvalidates)
    }

    /// A speculative walk of `va` on every CPU where the space with `asid` is current (every
    /// CPU for `None`: kernel addresses), as hardware may make at any time: over the memory a
    /// walk sees (descriptor writes not yet completed by a DSB read as their old value), and
    /// what it finds is cached in that CPU's TLB.
    fn speculate_everywhere(&mut self, asid: Option<u8>, va: u32) {
        for cpu in 0..self.cpus() {
            let here = self.current[cpu].map(|(_, a)| a);
            if asid.is_none_or(|a| here == Some(a)) {
                self.speculate(cpu, va);
            }
        }
    }

    /// A speculative walk of `va` in the space current on `cpu`.
    fn speculate(&mut self, cpu: usize, va: u32) {
        let (ttbr0, asid) = self.current[cpu].unwrap_or((0, 0));
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
            self.tlbs[cpu].fill(t, asid);
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

    /// `TLBIMVA` (with an ASID) or `TLBIMVAA` (without), or their IS forms when `broadcast`,
    /// as the hardware carries it out: logged, applied to the TLBs it reaches unless a hardware
    /// defect loses it, then a speculative walk on every CPU where the page's space is current.
    fn issue_page_invalidate(&mut self, asid: Option<Asid>, page: VirtPage, broadcast: bool) {
        let va = page.start().as_u32();
        match (asid, broadcast) {
            (Some(asid), false) => self.host.tlb_invalidate_page(asid, page),
            (None, false) => self.host.tlb_invalidate_page_all_asids(page),
            (Some(asid), true) => self.host.tlb_invalidate_page_is(asid, page),
            (None, true) => self.host.tlb_invalidate_page_all_asids_is(page),
        }
        if !self.lose_invalidate() {
            for tlb in self.reached(broadcast) {
                match asid {
                    Some(asid) => tlb.invalidate_mva(va, asid.value()),
                    None => tlb.invalidate_mva_all_asids(va),
                }
            }
        }
        self.speculate_everywhere(asid.map(Asid::value), va);
        self.invalidated_since_delay = !self.delayed_clears.is_empty();
    }

    /// A page invalidate the vmm asks for, `broadcast` or not: issued now, or held back or
    /// skipped by a defect.
    fn ask_page_invalidate(&mut self, asid: Option<Asid>, page: VirtPage, broadcast: bool) {
        let broadcast = broadcast && self.broadcast_kept();
        if self.asked_page_invalidate() {
            self.issue_page_invalidate(asid, page, broadcast);
        } else if self.defect == Some(Defect::InvalidateAfterFree) {
            self.held.push((asid, page, broadcast));
        }
    }

    /// `TLBIASID` or `TLBIASIDIS` as the vmm asks for it.
    fn ask_asid_invalidate(&mut self, asid: Asid, broadcast: bool) {
        let broadcast = broadcast && self.broadcast_kept();
        let (word, bit) = (usize::from(asid.value() / 64), 1u64 << (asid.value() % 64));
        let seen = self.asids_invalidated[word] & bit != 0;
        self.asids_invalidated[word] |= bit;
        match self.defect {
            Some(Defect::SkipAsidInvalidates) => return,
            Some(Defect::SkipAsidReinvalidate) if seen => return,
            _ => {}
        }
        if broadcast {
            self.host.tlb_invalidate_asid_is(asid);
        } else {
            self.host.tlb_invalidate_asid(asid);
        }
        // Only page invalidates are counted for `DropNthInvalidate`.
        if self.defect != Some(Defect::DropEveryInvalidate) {
            for tlb in self.reached(broadcast) {
                tlb.invalidate_asid(asid.value());
            }
        }
        self.invalidated_since_delay = !self.delayed_clears.is_empty();
    }

    /// `TLBIALL` or `TLBIALLIS` as the vmm asks for it.
    fn ask_invalidate_all(&mut self, broadcast: bool) {
        let broadcast = broadcast && self.broadcast_kept();
        if broadcast {
            self.host.tlb_invalidate_all_is();
        } else {
            self.host.tlb_invalidate_all();
        }
        for tlb in self.reached(broadcast) {
            tlb.invalidate_all();
        }
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
        self.ask_page_invalidate(Some(asid), page, false);
    }
    fn tlb_invalidate_page_all_asids(&mut self, page: VirtPage) {
        self.ask_page_invalidate(None, page, false);
    }
    fn tlb_invalidate_asid(&mut self, asid: Asid) {
        self.ask_asid_invalidate(asid, false);
    }
    fn tlb_invalidate_all(&mut self) {
        self.ask_invalidate_all(false);
    }
    fn tlb_invalidate_page_is(&mut self, asid: Asid, page: VirtPage) {
        self.ask_page_invalidate(Some(asid), page, true);
    }
    fn tlb_invalidate_page_all_asids_is(&mut self, page: VirtPage) {
        self.ask_page_invalidate(None, page, true);
    }
    fn tlb_invalidate_asid_is(&mut self, asid: Asid) {
        self.ask_asid_invalidate(asid, true);
    }
    fn tlb_invalidate_all_is(&mut self) {
        self.ask_invalidate_all(true);
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
    fn switch_space(&mut self, cpu: Cpu, space: Option<(PhysFrame, Asid)>) {
        self.host.switch_space(cpu, space);
        match self.current.get_mut(usize::from(cpu.index())) {
            Some(current) => {
                *current = space.map(|(l1, asid)| (l1.start().as_u32(), asid.value()));
            }
            None => self.violations.push(format!(
                "(g) the vmm switched CPU {} of a {}-CPU machine\n",
                cpu.index(),
                self.cpus()
            )),
        }
    }
    fn frames_freed(&mut self, first: PhysFrame, count: u32) {
        self.host.frames_freed(first, count);
        if !self.held.is_empty() {
            for (asid, page, broadcast) in std::mem::take(&mut self.held) {
                self.issue_page_invalidate(asid, page, broadcast);
            }
            self.dsb();
            self.isb();
        }
        for (cpu, current) in self.current.iter().enumerate() {
            if let Some((l1, asid)) = *current
                && l1.wrapping_sub(first.start().as_u32()) < count.saturating_mul(4096)
            {
                self.violations.push(format!(
                    "(g) the L1 table at {l1:#010x} (ASID {asid}) was freed while in TTBR0 of CPU {cpu}\n"
                ));
            }
        }
    }
    fn frame_allocation_permitted(&mut self) -> bool {
        self.host.frame_allocation_permitted()
    }
}
