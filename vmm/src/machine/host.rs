//! A simulated machine for host tests: sparse RAM, a call log and allocation-failure injection.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use super::Machine;
use crate::addr::{PAGE_SHIFT, PAGE_SIZE, PhysAddr, PhysFrame, VirtPage};
use crate::arch::armv7::Asid;
use crate::cpu::Cpu;

/// One recorded [`Machine`] call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MachineEvent {
    /// A word read and the value returned.
    Read {
        /// Address read.
        pa: PhysAddr,
        /// Value returned.
        value: u32,
    },
    /// A word write: the value before and after.
    Write {
        /// Address written.
        pa: PhysAddr,
        /// Value before.
        old: u32,
        /// Value written.
        new: u32,
    },
    /// A frame zeroed.
    ZeroFrame(PhysFrame),
    /// A frame copied.
    CopyFrame {
        /// Frame overwritten.
        dst: PhysFrame,
        /// Frame copied.
        src: PhysFrame,
    },
    /// `TLBIMVA`.
    TlbInvalidatePage {
        /// ASID the invalidate names.
        asid: Asid,
        /// Page invalidated.
        page: VirtPage,
    },
    /// `TLBIMVAA`.
    TlbInvalidatePageAllAsids(VirtPage),
    /// `TLBIASID`.
    TlbInvalidateAsid(Asid),
    /// `TLBIALL`.
    TlbInvalidateAll,
    /// `TLBIMVAIS`.
    TlbInvalidatePageIs {
        /// ASID the invalidate names.
        asid: Asid,
        /// Page invalidated.
        page: VirtPage,
    },
    /// `TLBIMVAAIS`.
    TlbInvalidatePageAllAsidsIs(VirtPage),
    /// `TLBIASIDIS`.
    TlbInvalidateAsidIs(Asid),
    /// `TLBIALLIS`.
    TlbInvalidateAllIs,
    /// `DSB`.
    Dsb,
    /// `ISB`.
    Isb,
    /// A space made current on a CPU (`None`: the kernel-only state).
    SwitchSpace(Cpu, Option<(PhysFrame, Asid)>),
    /// Frames given back to the allocator (one allocation).
    FramesFreed {
        /// The first frame.
        first: PhysFrame,
        /// How many.
        count: u32,
    },
    /// A frame-allocation request and whether it was permitted.
    FrameAllocation {
        /// Whether the machine allowed it.
        permitted: bool,
    },
    /// An access outside RAM or misaligned: a vmm bug (the access did nothing, reads gave 0).
    BadAccess(PhysAddr),
}

impl MachineEvent {
    /// Whether this is a TLB invalidate, of either reach.
    #[must_use]
    pub const fn is_tlb_invalidate(&self) -> bool {
        self.is_local_tlb_invalidate() || self.is_broadcast_tlb_invalidate()
    }

    /// Whether this is a local TLB invalidate (`TLBIMVA`, `TLBIMVAA`, `TLBIASID`, `TLBIALL`):
    /// with more than one CPU, a protocol violation (semantics.md section 14).
    #[must_use]
    pub const fn is_local_tlb_invalidate(&self) -> bool {
        matches!(
            self,
            Self::TlbInvalidatePage { .. }
                | Self::TlbInvalidatePageAllAsids(_)
                | Self::TlbInvalidateAsid(_)
                | Self::TlbInvalidateAll
        )
    }

    /// Whether this is an inner-shareable (broadcast) TLB invalidate.
    #[must_use]
    pub const fn is_broadcast_tlb_invalidate(&self) -> bool {
        matches!(
            self,
            Self::TlbInvalidatePageIs { .. }
                | Self::TlbInvalidatePageAllAsidsIs(_)
                | Self::TlbInvalidateAsidIs(_)
                | Self::TlbInvalidateAllIs
        )
    }

    /// The ASID and page of a by-ASID page invalidate (`TLBIMVA` or `TLBIMVAIS`).
    #[must_use]
    pub const fn page_invalidate(&self) -> Option<(Asid, VirtPage)> {
        match *self {
            Self::TlbInvalidatePage { asid, page } | Self::TlbInvalidatePageIs { asid, page } => {
                Some((asid, page))
            }
            _ => None,
        }
    }

    /// The ASID of an invalidate by ASID (`TLBIASID` or `TLBIASIDIS`).
    #[must_use]
    pub const fn asid_invalidate(&self) -> Option<Asid> {
        match *self {
            Self::TlbInvalidateAsid(asid) | Self::TlbInvalidateAsidIs(asid) => Some(asid),
            _ => None,
        }
    }
}

/// When the host machine refuses frame allocations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AllocationFailure {
    /// Every allocation is permitted.
    #[default]
    Never,
    /// Only the n-th allocation request (0-based, counted from when the plan was set) fails.
    Nth(u64),
    /// The n-th request and every later one fail.
    FromNth(u64),
}

/// RAM as bytes at a configurable physical base, with every call optionally recorded.
///
/// RAM is sparse: a frame never written reads as zero and costs nothing, so a large RAM size is
/// cheap. Nothing here panics: an access outside RAM is recorded as [`MachineEvent::BadAccess`].
#[derive(Clone, Debug)]
pub struct HostMachine {
    ram_base: PhysAddr,
    ram_size: u32,
    /// Which storage holds each RAM frame (sparse, O(1) to find).
    slots: Slots,
    /// The frames ever written.
    storage: Vec<Box<[u8; PAGE_SIZE as usize]>>,
    /// Indices into `storage` no slot uses (frames zeroed since), reused first.
    spare: Vec<u32>,
    recording: bool,
    skip_reads: bool,
    log: Vec<MachineEvent>,
    failure: AllocationFailure,
    allocation_requests: u64,
    bad_accesses: u64,
}

impl HostMachine {
    /// The default RAM base (qemu `virt`): 0x4000_0000.
    pub const DEFAULT_RAM_BASE: PhysAddr = PhysAddr::new(0x4000_0000);
    /// The default RAM size: 256 MiB.
    pub const DEFAULT_RAM_SIZE: u32 = 256 << 20;

    /// RAM of `size` bytes at `base`; both are rounded to whole frames (base down, size down).
    #[must_use]
    pub fn new(base: PhysAddr, size: u32) -> Self {
        let base = base.align_down(PAGE_SIZE);
        let max = u32::MAX - base.as_u32();
        let size = size.min(max) & !(PAGE_SIZE - 1);
        Self {
            ram_base: base,
            ram_size: size,
            slots: Slots::new((size / PAGE_SIZE) as usize),
            storage: Vec::new(),
            spare: Vec::new(),
            recording: false,
            skip_reads: false,
            log: Vec::new(),
            failure: AllocationFailure::Never,
            allocation_requests: 0,
            bad_accesses: 0,
        }
    }

    /// First byte of RAM.
    #[must_use]
    pub fn ram_base(&self) -> PhysAddr {
        self.ram_base
    }
    /// RAM size in bytes.
    #[must_use]
    pub fn ram_size(&self) -> u32 {
        self.ram_size
    }

    /// Starts or stops recording calls.
    pub fn set_recording(&mut self, on: bool) {
        self.recording = on;
    }
    /// Leaves word reads out of the log (they are most of it, and protocol checks ignore them).
    pub fn set_skip_reads(&mut self, skip: bool) {
        self.skip_reads = skip;
    }
    /// The calls recorded so far.
    #[must_use]
    pub fn log(&self) -> &[MachineEvent] {
        &self.log
    }
    /// Takes the recorded calls, leaving the log empty.
    pub fn take_log(&mut self) -> Vec<MachineEvent> {
        core::mem::take(&mut self.log)
    }
    /// Empties the log, keeping its buffer (for a caller that reads it in place through
    /// [`HostMachine::log`] after every operation).
    pub fn clear_log(&mut self) {
        self.log.clear();
    }

    /// Sets the failure plan and restarts the request count at 0.
    pub fn set_allocation_failure(&mut self, plan: AllocationFailure) {
        self.failure = plan;
        self.allocation_requests = 0;
    }
    /// Allocation requests seen since the failure plan was last set.
    #[must_use]
    pub fn allocation_requests(&self) -> u64 {
        self.allocation_requests
    }
    /// Accesses outside RAM or misaligned seen so far (always 0 for a correct vmm).
    #[must_use]
    pub fn bad_accesses(&self) -> u64 {
        self.bad_accesses
    }

    /// Reads `buf.len()` bytes at `pa`; `false` (and nothing read) when the range is not in RAM.
    pub fn read_bytes(&self, pa: PhysAddr, buf: &mut [u8]) -> bool {
        if !self.in_ram(pa, buf.len() as u64) {
            return false;
        }
        for (i, b) in buf.iter_mut().enumerate() {
            let a = pa.as_u32() + i as u32;
            *b = self
                .frame(a >> PAGE_SHIFT)
                .map_or(0, |f| f[(a & (PAGE_SIZE - 1)) as usize]);
        }
        true
    }

    /// Writes `bytes` at `pa`; `false` (and nothing written) when the range is not in RAM.
    pub fn write_bytes(&mut self, pa: PhysAddr, bytes: &[u8]) -> bool {
        if !self.in_ram(pa, bytes.len() as u64) {
            return false;
        }
        // One copy per frame touched.
        let mut done = 0;
        while done < bytes.len() {
            let at = pa.as_u32() + done as u32;
            let offset = (at & (PAGE_SIZE - 1)) as usize;
            let n = (PAGE_SIZE as usize - offset).min(bytes.len() - done);
            self.frame_mut(at >> PAGE_SHIFT)[offset..offset + n]
                .copy_from_slice(&bytes[done..done + n]);
            done += n;
        }
        true
    }

    /// The word at `pa` without recording anything (for walkers and dumps).
    #[must_use]
    pub fn peek_word(&self, pa: PhysAddr) -> Option<u32> {
        if !pa.is_aligned(4) || !self.in_ram(pa, 4) {
            return None;
        }
        // An aligned word never crosses a frame.
        let offset = pa.page_offset() as usize;
        Some(self.frame(pa.as_u32() >> PAGE_SHIFT).map_or(0, |f| {
            u32::from_le_bytes([f[offset], f[offset + 1], f[offset + 2], f[offset + 3]])
        }))
    }

    /// The bytes of a RAM frame without recording (for checkers): `None` for a frame outside
    /// RAM, `Some(None)` for one never written (all zeros).
    #[must_use]
    pub fn peek_frame(&self, frame: PhysFrame) -> Option<Option<&[u8; PAGE_SIZE as usize]>> {
        self.in_ram(frame.start(), u64::from(PAGE_SIZE))
            .then(|| self.frame(frame.number()))
    }

    /// Whether a frame holds any non-zero byte.
    #[must_use]
    pub fn frame_is_zero(&self, frame: PhysFrame) -> bool {
        self.frame(frame.number())
            .is_none_or(|f| f.iter().all(|&b| b == 0))
    }

    fn in_ram(&self, pa: PhysAddr, len: u64) -> bool {
        let start = u64::from(pa.as_u32());
        let base = u64::from(self.ram_base.as_u32());
        start >= base && start + len <= base + u64::from(self.ram_size)
    }

    fn frame_in_ram(&self, frame: PhysFrame) -> bool {
        self.in_ram(frame.start(), u64::from(PAGE_SIZE))
    }

    /// The slot of a frame number inside RAM (callers checked `in_ram`).
    fn slot(&self, number: u32) -> usize {
        (number - (self.ram_base.as_u32() >> PAGE_SHIFT)) as usize
    }

    fn frame(&self, number: u32) -> Option<&[u8; PAGE_SIZE as usize]> {
        match self.slots.get(self.slot(number)) {
            0 => None,
            n => self.storage.get(n as usize - 1).map(|f| &**f),
        }
    }

    fn frame_mut(&mut self, number: u32) -> &mut [u8; PAGE_SIZE as usize] {
        let slot = self.slot(number);
        let mut n = self.slots.get(slot);
        if n == 0 {
            let index = match self.spare.pop() {
                Some(i) => {
                    self.storage[i as usize].fill(0);
                    i
                }
                None => {
                    self.storage.push(Box::new([0; PAGE_SIZE as usize]));
                    self.storage.len() as u32 - 1
                }
            };
            n = index + 1;
            self.slots.set(slot, n);
        }
        &mut self.storage[n as usize - 1]
    }

    /// Makes a frame read as zeroes again (its storage is kept for reuse).
    fn clear_frame(&mut self, number: u32) {
        let slot = self.slot(number);
        let n = self.slots.set(slot, 0);
        if n != 0 {
            self.spare.push(n - 1);
        }
    }

    fn record(&mut self, event: MachineEvent) {
        if let MachineEvent::BadAccess(_) = event {
            self.bad_accesses += 1;
        }
        if self.recording {
            self.log.push(event);
        }
    }
}

/// RAM frames per block of [`Slots`] (1 MiB of RAM).
const SLOTS_PER_BLOCK: usize = 256;

/// Frame slot (frame number minus RAM's first) -> `n`: 0 reads as zeroes, `n` is
/// `storage[n - 1]`. Kept in blocks of one MiB of RAM made on the first write inside them, so
/// making and dropping a machine costs one pointer per MiB, not a word per frame.
#[derive(Clone, Debug)]
struct Slots(Vec<Option<Box<[u32; SLOTS_PER_BLOCK]>>>);

impl Slots {
    fn new(frames: usize) -> Self {
        Self(vec![None; frames.div_ceil(SLOTS_PER_BLOCK)])
    }

    /// The slot's value (0 past the end).
    fn get(&self, slot: usize) -> u32 {
        match self.0.get(slot / SLOTS_PER_BLOCK) {
            Some(Some(block)) => block[slot % SLOTS_PER_BLOCK],
            _ => 0,
        }
    }

    /// Sets the slot (ignored past the end) and returns its old value.
    fn set(&mut self, slot: usize, value: u32) -> u32 {
        match self.0.get_mut(slot / SLOTS_PER_BLOCK) {
            Some(Some(block)) => core::mem::replace(&mut block[slot % SLOTS_PER_BLOCK], value),
            Some(empty) if value != 0 => {
                let mut block = Box::new([0; SLOTS_PER_BLOCK]);
                block[slot % SLOTS_PER_BLOCK] = value;
                *empty = Some(block);
                0
            }
            _ => 0,
        }
    }
}

impl Default for HostMachine {
    fn default() -> Self {
        Self::new(Self::DEFAULT_RAM_BASE, Self::DEFAULT_RAM_SIZE)
    }
}

impl Machine for HostMachine {
    fn read_word(&mut self, pa: PhysAddr) -> u32 {
        match self.peek_word(pa) {
            Some(value) => {
                if self.recording && !self.skip_reads {
                    self.log.push(MachineEvent::Read { pa, value });
                }
                value
            }
            None => {
                self.record(MachineEvent::BadAccess(pa));
                0
            }
        }
    }

    fn read_words(&mut self, pa: PhysAddr, out: &mut [u32]) {
        let bytes = out.len() as u64 * 4;
        if !pa.is_aligned(4) || !self.in_ram(pa, bytes) {
            // Word by word, so each bad address is recorded as `read_word` records it.
            super::read_each_word(self, pa, out);
            return;
        }
        // One copy per frame touched (an aligned word never crosses a frame).
        let mut done = 0;
        while done < out.len() {
            let at = pa.as_u32() + done as u32 * 4;
            let offset = (at & (PAGE_SIZE - 1)) as usize;
            let n = ((PAGE_SIZE as usize - offset) / 4).min(out.len() - done);
            let chunk = &mut out[done..done + n];
            match self.frame(at >> PAGE_SHIFT) {
                None => chunk.fill(0),
                Some(f) => {
                    for (word, b) in chunk.iter_mut().zip(f[offset..].chunks_exact(4)) {
                        *word = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    }
                }
            }
            done += n;
        }
        if self.recording && !self.skip_reads {
            let mut at = pa.as_u32();
            for &value in out.iter() {
                self.log.push(MachineEvent::Read {
                    pa: PhysAddr::new(at),
                    value,
                });
                at += 4;
            }
        }
    }

    fn read_nonzero_words(&mut self, pa: PhysAddr, count: usize, out: &mut Vec<(usize, u32)>) {
        if !pa.is_aligned(4) || !self.in_ram(pa, count as u64 * 4) {
            super::read_nonzero_in_chunks(self, pa, count, out);
            return;
        }
        // Frame by frame: a frame never written is all zeros and is skipped whole.
        let mut done = 0;
        while done < count {
            let at = pa.as_u32() + done as u32 * 4;
            let offset = (at & (PAGE_SIZE - 1)) as usize;
            let n = ((PAGE_SIZE as usize - offset) / 4).min(count - done);
            if let Some(f) = self.frame(at >> PAGE_SHIFT) {
                for (j, b) in f[offset..offset + n * 4].chunks_exact(4).enumerate() {
                    let word = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    if word != 0 {
                        out.push((done + j, word));
                    }
                }
            }
            done += n;
        }
        if self.recording && !self.skip_reads {
            // Logged as `read_words` logs: every word, zeros included.
            let mut at = pa.as_u32();
            for _ in 0..count {
                let value = self.peek_word(PhysAddr::new(at)).unwrap_or(0);
                self.log.push(MachineEvent::Read {
                    pa: PhysAddr::new(at),
                    value,
                });
                at += 4;
            }
        }
    }

    fn write_word(&mut self, pa: PhysAddr, value: u32) {
        let Some(old) = self.peek_word(pa) else {
            self.record(MachineEvent::BadAccess(pa));
            return;
        };
        // `peek_word` checked it: aligned and in RAM, so inside one frame.
        let offset = pa.page_offset() as usize;
        self.frame_mut(pa.as_u32() >> PAGE_SHIFT)[offset..offset + 4]
            .copy_from_slice(&value.to_le_bytes());
        if self.recording {
            self.log.push(MachineEvent::Write {
                pa,
                old,
                new: value,
            });
        }
    }

    fn zero_frame(&mut self, frame: PhysFrame) {
        if !self.frame_in_ram(frame) {
            self.record(MachineEvent::BadAccess(frame.start()));
            return;
        }
        self.clear_frame(frame.number());
        self.record(MachineEvent::ZeroFrame(frame));
    }

    fn copy_frame(&mut self, dst: PhysFrame, src: PhysFrame) {
        if !self.frame_in_ram(dst) || !self.frame_in_ram(src) {
            let bad = if self.frame_in_ram(dst) { src } else { dst };
            self.record(MachineEvent::BadAccess(bad.start()));
            return;
        }
        match self.frame(src.number()).map(|f| Box::new(*f)) {
            None => self.clear_frame(dst.number()),
            Some(data) => *self.frame_mut(dst.number()) = *data,
        }
        self.record(MachineEvent::CopyFrame { dst, src });
    }

    fn tlb_invalidate_page(&mut self, asid: Asid, page: VirtPage) {
        self.record(MachineEvent::TlbInvalidatePage { asid, page });
    }
    fn tlb_invalidate_page_all_asids(&mut self, page: VirtPage) {
        self.record(MachineEvent::TlbInvalidatePageAllAsids(page));
    }
    fn tlb_invalidate_asid(&mut self, asid: Asid) {
        self.record(MachineEvent::TlbInvalidateAsid(asid));
    }
    fn tlb_invalidate_all(&mut self) {
        self.record(MachineEvent::TlbInvalidateAll);
    }
    fn tlb_invalidate_page_is(&mut self, asid: Asid, page: VirtPage) {
        self.record(MachineEvent::TlbInvalidatePageIs { asid, page });
    }
    fn tlb_invalidate_page_all_asids_is(&mut self, page: VirtPage) {
        self.record(MachineEvent::TlbInvalidatePageAllAsidsIs(page));
    }
    fn tlb_invalidate_asid_is(&mut self, asid: Asid) {
        self.record(MachineEvent::TlbInvalidateAsidIs(asid));
    }
    fn tlb_invalidate_all_is(&mut self) {
        self.record(MachineEvent::TlbInvalidateAllIs);
    }
    fn dsb(&mut self) {
        self.record(MachineEvent::Dsb);
    }
    fn isb(&mut self) {
        self.record(MachineEvent::Isb);
    }
    fn switch_space(&mut self, cpu: Cpu, space: Option<(PhysFrame, Asid)>) {
        self.record(MachineEvent::SwitchSpace(cpu, space));
    }
    fn frames_freed(&mut self, first: PhysFrame, count: u32) {
        if self.recording {
            self.log.push(MachineEvent::FramesFreed { first, count });
        }
    }

    fn frame_allocation_permitted(&mut self) -> bool {
        let n = self.allocation_requests;
        self.allocation_requests += 1;
        let permitted = match self.failure {
            AllocationFailure::Never => true,
            AllocationFailure::Nth(k) => n != k,
            AllocationFailure::FromNth(k) => n < k,
        };
        self.record(MachineEvent::FrameAllocation { permitted });
        permitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(pa: u32) -> PhysFrame {
        PhysFrame::from_start(PhysAddr::new(pa)).unwrap()
    }

    /// A checker's view of a frame: its bytes once written, none before, nothing outside RAM.
    #[test]
    fn peek_frame_shows_a_frame_without_recording() {
        let mut m = HostMachine::default();
        m.set_recording(true);
        let f = frame(0x4000_3000);
        assert_eq!(m.peek_frame(f), Some(None), "never written: all zeros");
        m.write_word(PhysAddr::new(0x4000_3008), 0xABCD_0123);
        m.clear_log();
        let bytes = m.peek_frame(f).expect("in RAM").expect("written");
        assert_eq!(&bytes[8..12], &0xABCD_0123u32.to_le_bytes());
        assert!(bytes[..8].iter().chain(&bytes[12..]).all(|&b| b == 0));
        assert!(m.log().is_empty(), "peeking records nothing");
        assert_eq!(m.peek_frame(frame(0x3FFF_F000)), None, "below RAM");
    }

    #[test]
    fn words_round_trip_and_record() {
        let mut m = HostMachine::default();
        m.set_recording(true);
        let pa = PhysAddr::new(0x4000_1004);
        assert_eq!(m.read_word(pa), 0);
        m.write_word(pa, 0xDEAD_BEEF);
        assert_eq!(m.read_word(pa), 0xDEAD_BEEF);
        assert_eq!(
            m.take_log(),
            [
                MachineEvent::Read { pa, value: 0 },
                MachineEvent::Write {
                    pa,
                    old: 0,
                    new: 0xDEAD_BEEF
                },
                MachineEvent::Read {
                    pa,
                    value: 0xDEAD_BEEF
                },
            ]
        );
        assert!(m.log().is_empty());
    }

    /// The bulk read is word-by-word reads: across a frame boundary, over frames never
    /// written, recorded the same way, and at the edge of RAM (bad words read as zero and
    /// are counted).
    #[test]
    fn read_words_is_read_word_in_turn() {
        let mut bulk = HostMachine::new(PhysAddr::new(0x4000_0000), 0x3000);
        bulk.set_recording(true);
        for (pa, v) in [
            (0x4000_0FF8, 1),
            (0x4000_0FFC, 2),
            (0x4000_1000, 3),
            (0x4000_2FFC, 4),
        ] {
            bulk.write_word(PhysAddr::new(pa), v);
        }
        let mut single = bulk.clone();
        let _ = (bulk.take_log(), single.take_log());
        for (start, len) in [(0x4000_0FF0u32, 8usize), (0x4000_1FF8, 4), (0x4000_2FF8, 4)] {
            let mut got = vec![u32::MAX; len];
            bulk.read_words(PhysAddr::new(start), &mut got);
            let want: Vec<u32> = (0..len as u32)
                .map(|i| single.read_word(PhysAddr::new(start + 4 * i)))
                .collect();
            assert_eq!(got, want, "{start:#x}+{len}");
        }
        assert_eq!(bulk.take_log(), single.take_log());
        assert_eq!(bulk.bad_accesses(), 2);
        assert_eq!(single.bad_accesses(), 2);
    }

    /// The accessors report the RAM asked for; the log is readable in place, and reads can
    /// be left out of it.
    #[test]
    fn accessors_and_read_skipping() {
        let mut m = HostMachine::new(PhysAddr::new(0x4000_0000), 0x3000);
        assert_eq!(
            (m.ram_base(), m.ram_size()),
            (PhysAddr::new(0x4000_0000), 0x3000)
        );
        m.set_recording(true);
        m.write_word(PhysAddr::new(0x4000_0010), 7);
        assert_eq!(m.read_word(PhysAddr::new(0x4000_0010)), 7);
        assert_eq!(m.log().len(), 2);
        m.set_skip_reads(true);
        assert_eq!(m.read_word(PhysAddr::new(0x4000_0010)), 7);
        assert_eq!(m.log().len(), 2, "reads left out");
        assert_eq!(m.take_log().len(), 2);
        assert!(m.log().is_empty());
        m.tlb_invalidate_all();
        assert_eq!(m.take_log(), [MachineEvent::TlbInvalidateAll]);
        m.tlb_invalidate_all();
        m.clear_log();
        assert!(m.log().is_empty());
        m.dsb();
        assert_eq!(
            m.log(),
            [MachineEvent::Dsb],
            "still recording after a clear"
        );
    }

    /// A frame is zero when never written or when every byte written is back to 0; one
    /// non-zero byte makes it non-zero.
    #[test]
    fn frame_is_zero_looks_at_every_byte() {
        let mut m = HostMachine::default();
        let f = frame(0x4000_1000);
        assert!(m.frame_is_zero(f));
        m.write_word(PhysAddr::new(0x4000_1FFC), 0x100);
        assert!(!m.frame_is_zero(f));
        m.write_word(PhysAddr::new(0x4000_1FFC), 0);
        assert!(m.frame_is_zero(f), "written back to zero");
    }

    /// The non-zero read is the bulk read minus its zeros: across frames, over frames never
    /// written, logged the same way (every word), and at the edge of RAM.
    #[test]
    fn read_nonzero_words_is_read_words_without_zeros() {
        let mut fast = HostMachine::new(PhysAddr::new(0x4000_0000), 0x4000);
        fast.set_recording(true);
        for (pa, v) in [
            (0x4000_0000, 9),
            (0x4000_0FF8, 1),
            (0x4000_0FFC, 2),
            (0x4000_1000, 3),
            (0x4000_1004, 5),
            (0x4000_3FFC, 4),
        ] {
            fast.write_word(PhysAddr::new(pa), v);
        }
        let mut bulk = fast.clone();
        for (start, len) in [
            (0x4000_0000u32, 0x1000usize),
            (0x4000_0FF0, 8),
            (0x4000_0FFC, 2),
            (0x4000_1FF8, 0x400),
            (0x4000_3FF8, 4),
            (0x4000_0002, 2),
        ] {
            let mut words = vec![u32::MAX; len];
            bulk.read_words(PhysAddr::new(start), &mut words);
            let want: Vec<(usize, u32)> = words
                .iter()
                .enumerate()
                .filter(|&(_, &w)| w != 0)
                .map(|(i, &w)| (i, w))
                .collect();
            let mut got = Vec::new();
            fast.read_nonzero_words(PhysAddr::new(start), len, &mut got);
            assert_eq!(got, want, "{start:#x}+{len}");
            assert_eq!(fast.take_log(), bulk.take_log(), "{start:#x}+{len}");
        }
        assert_eq!(fast.bad_accesses(), bulk.bad_accesses());
        assert_eq!(fast.bad_accesses(), 4);
    }

    /// Bytes written across frames read back the same, and leave their neighbours alone.
    #[test]
    fn bytes_cross_frames() {
        let mut m = HostMachine::new(PhysAddr::new(0x4000_0000), 0x3000);
        let data: Vec<u8> = (1..=0x1010u32).map(|i| i as u8 | 1).collect();
        assert!(m.write_bytes(PhysAddr::new(0x4000_0FF8), &data));
        let mut back = vec![0; data.len() + 16];
        assert!(m.read_bytes(PhysAddr::new(0x4000_0FF0), &mut back));
        assert_eq!(&back[..8], &[0; 8]);
        assert_eq!(&back[8..8 + data.len()], &data[..]);
        assert_eq!(&back[8 + data.len()..], &[0; 8]);
        assert!(!m.write_bytes(PhysAddr::new(0x4000_2FFE), &[1, 2, 3]));
        assert_eq!(m.peek_word(PhysAddr::new(0x4000_2FFC)), Some(0));
    }

    #[test]
    fn accesses_outside_ram_do_nothing_and_are_counted() {
        let mut m = HostMachine::new(PhysAddr::new(0x4000_0000), 0x10_0000);
        m.write_word(PhysAddr::new(0x3FFF_FFFC), 1);
        m.write_word(PhysAddr::new(0x4010_0000), 1);
        m.write_word(PhysAddr::new(0x4000_0002), 1);
        assert_eq!(m.read_word(PhysAddr::new(0x4010_0000)), 0);
        m.zero_frame(frame(0x4010_0000));
        m.copy_frame(frame(0x4000_0000), frame(0x5000_0000));
        assert_eq!(m.bad_accesses(), 6);
        assert!(m.frame_is_zero(frame(0x4000_0000)));
    }

    #[test]
    fn zero_and_copy_frames() {
        let mut m = HostMachine::default();
        let (a, b) = (frame(0x4000_0000), frame(0x4000_1000));
        m.write_word(PhysAddr::new(0x4000_0010), 7);
        m.copy_frame(b, a);
        assert_eq!(m.read_word(PhysAddr::new(0x4000_1010)), 7);
        m.zero_frame(a);
        assert!(m.frame_is_zero(a));
        assert!(!m.frame_is_zero(b));
        m.copy_frame(b, a);
        assert!(m.frame_is_zero(b));
    }

    /// A zeroed frame's storage is reused by the next frame written: it must come back zeroed
    /// and leave the zeroed frame reading zeroes.
    #[test]
    fn storage_of_zeroed_frames_is_reused_clean() {
        let mut m = HostMachine::default();
        let (a, b, c) = (frame(0x4000_0000), frame(0x4000_1000), frame(0x4000_2000));
        m.write_word(PhysAddr::new(0x4000_0010), 7);
        m.write_word(PhysAddr::new(0x4000_1020), 8);
        m.zero_frame(a);
        m.write_word(PhysAddr::new(0x4000_2030), 9);
        assert!(m.frame_is_zero(a));
        assert_eq!(m.peek_word(PhysAddr::new(0x4000_2010)), Some(0));
        assert_eq!(m.peek_word(PhysAddr::new(0x4000_2030)), Some(9));
        assert_eq!(m.peek_word(PhysAddr::new(0x4000_1020)), Some(8));
        // A copy onto a zero frame reuses spare storage too; a copy onto itself keeps it.
        m.zero_frame(b);
        m.copy_frame(a, c);
        assert_eq!(m.peek_word(PhysAddr::new(0x4000_0030)), Some(9));
        assert!(m.frame_is_zero(b));
        m.copy_frame(c, c);
        assert_eq!(m.peek_word(PhysAddr::new(0x4000_2030)), Some(9));
    }

    #[test]
    fn nth_allocation_fails_only_once() {
        let mut m = HostMachine::default();
        m.set_allocation_failure(AllocationFailure::Nth(2));
        let got: Vec<bool> = (0..5).map(|_| m.frame_allocation_permitted()).collect();
        assert_eq!(got, [true, true, false, true, true]);
        m.set_allocation_failure(AllocationFailure::FromNth(1));
        let got: Vec<bool> = (0..3).map(|_| m.frame_allocation_permitted()).collect();
        assert_eq!(got, [true, false, false]);
        assert_eq!(m.allocation_requests(), 3);
    }
}
