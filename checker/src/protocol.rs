//! INV-10, the hardware protocol (semantics.md sections 2 and 13), checked on each op's machine
//! log together with what the op did to every space's translations, as the reference walker
//! read them from the tables before and after the op.
//!
//! The rules, each reported with its letter:
//! - (a) a valid descriptor is never replaced by another valid one without break-before-make;
//! - (b) every TLB invalidate comes after a DSB, with no descriptor write between the two;
//! - (c) descriptor writes and invalidates are followed by DSB; ISB before the op returns;
//! - (d) every translation of a space live when the op began that the op removed, narrowed or
//!   re-pointed is invalidated by `TLBIMVA` with that space's ASID (by `TLBIASID` when the
//!   space exited in the op): the hardware may have cached any valid translation at any time,
//!   whether or not the sequence accessed the page;
//! - (e) a frame such a translation mapped goes back to the allocator only after that
//!   invalidate and a DSB;
//! - (f) a space that exits is invalidated by ASID, after the CPU left it; an ASID released
//!   before is invalidated by ASID again in the op that hands it out;
//! - (g) no L1 table goes back to the allocator while it is in TTBR0 of any CPU;
//! - (h) with more than one CPU every TLB invalidate is the broadcast (IS) form: a local one
//!   leaves the other CPUs' entries stale (semantics.md section 14).

use reference_model::armv7::{Registers, Translation, permissions};
use vmm::machine::MachineEvent;

/// A space's translations as the last comparison read them, and what invalidates them.
#[derive(Clone, Debug)]
pub struct SpaceTables {
    /// Its ASID.
    pub asid: u8,
    /// Its registers (TTBR0 = its L1 table).
    pub regs: Registers,
    /// Every valid translation, (page number, translation of that page), ascending.
    pub pages: Vec<(u32, Translation)>,
}

/// Rules (a) to (c), and (h) on a machine of `cpus` CPUs, on an op's log.
pub fn check_log(log: &[MachineEvent], cpus: usize) -> Result<(), String> {
    let mut since_dsb = false;
    for e in log {
        if cpus > 1 && e.is_local_tlb_invalidate() {
            return Err(format!(
                "(h) {e:?} is a local invalidate on a {cpus}-CPU machine: the other CPUs keep \
                 their entries (the IS form reaches them)\n"
            ));
        }
        match *e {
            MachineEvent::Write { pa, old, new } => {
                if old & 3 != 0 && new & 3 != 0 && old != new {
                    return Err(format!(
                        "(a) valid descriptor {old:#010x} at {pa:?} replaced by {new:#010x} without break-before-make\n"
                    ));
                }
                since_dsb = true;
            }
            MachineEvent::Dsb => since_dsb = false,
            _ if since_dsb && e.is_tlb_invalidate() => {
                return Err(format!(
                    "(b) {e:?} issued after a descriptor write with no DSB between them\n"
                ));
            }
            _ => {}
        }
    }
    let maintained = log
        .iter()
        .any(|e| matches!(e, MachineEvent::Write { .. }) || e.is_tlb_invalidate());
    let mut last = log.iter().rev().filter(|e| {
        !matches!(
            e,
            MachineEvent::Read { .. }
                | MachineEvent::FramesFreed { .. }
                | MachineEvent::FrameAllocation { .. }
                | MachineEvent::ZeroFrame(_)
                | MachineEvent::CopyFrame { .. }
                | MachineEvent::SwitchSpace(..)
        )
    });
    let tail = [last.next(), last.next()];
    if maintained && tail != [Some(&MachineEvent::Isb), Some(&MachineEvent::Dsb)] {
        return Err(format!(
            "(c) descriptor writes or invalidates not followed by DSB; ISB before the op returned (last events {tail:?})\n"
        ));
    }
    Ok(())
}

/// Whether `new` (or no translation) may stand where `old` was cached without an invalidate:
/// the same page, block, memory type, global bit and domain, and at least the same rights.
fn covers(regs: Registers, old: &Translation, new: Option<&Translation>) -> bool {
    let Some(new) = new else {
        return false;
    };
    if old == new {
        // The usual case: the page did not change.
        return true;
    }
    let same = (
        old.pa,
        old.block_va,
        old.block_size,
        old.not_global,
        old.domain,
        old.tex,
        old.c,
        old.b,
        old.s,
    ) == (
        new.pa,
        new.block_va,
        new.block_size,
        new.not_global,
        new.domain,
        new.tex,
        new.c,
        new.b,
        new.s,
    );
    let (was, now) = (permissions(regs, old), permissions(regs, new));
    same && was.pl0 & !now.pl0 == 0 && was.pl1 & !now.pl1 == 0
}

/// The op's invalidates and frees, indexed for rules (d) and (e).
pub struct Maintenance<'a> {
    log: &'a [MachineEvent],
    /// (ASID, page number, log index) of every `TLBIMVA` and `TLBIMVAIS`, sorted.
    pages: Vec<(u8, u32, usize)>,
    /// (frame address, log index) of every frame freed, sorted.
    freed: Vec<(u32, usize)>,
}

impl<'a> Maintenance<'a> {
    /// The index of `log`.
    pub fn new(log: &'a [MachineEvent]) -> Self {
        let mut pages = Vec::new();
        let mut freed = Vec::new();
        for (i, e) in log.iter().enumerate() {
            if let Some((asid, page)) = e.page_invalidate() {
                pages.push((asid.value(), page.number(), i));
            }
            if let MachineEvent::FramesFreed { first, count } = *e {
                let base = first.start().as_u32();
                freed.extend((0..count).map(|k| (base.wrapping_add(k * 4096), i)));
            }
        }
        pages.sort_unstable();
        freed.sort_unstable();
        Self { log, pages, freed }
    }

    /// The first `TLBIMVA` with `asid` of a page of `t`'s block.
    fn first_invalidate(&self, asid: u8, t: &Translation) -> Option<usize> {
        let first = t.block_va >> 12;
        let last = first + (t.block_size >> 12).max(1) - 1;
        let from = self
            .pages
            .partition_point(|&(a, p, _)| (a, p) < (asid, first));
        self.pages[from..]
            .iter()
            .take_while(|&&(a, p, _)| a == asid && p <= last)
            .map(|&(_, _, i)| i)
            .min()
    }

    /// The first `TLBIASID` (or `TLBIASIDIS`) of `asid`.
    fn first_asid_invalidate(&self, asid: u8) -> Option<usize> {
        self.log
            .iter()
            .position(|e| e.asid_invalidate().is_some_and(|a| a.value() == asid))
    }

    /// Rules (d) and (e) for one space: its translations `before` the op and `after` it
    /// (`None`: the space exited in the op). Returns the first violation.
    pub fn check_space(
        &self,
        before: &SpaceTables,
        after: Option<&[(u32, Translation)]>,
    ) -> Result<(), String> {
        let mut after_iter = after.unwrap_or(&[]).iter().peekable();
        for &(number, old) in &before.pages {
            while after_iter.next_if(|&&(n, _)| n < number).is_some() {}
            let new = after_iter
                .peek()
                .filter(|&&&(n, _)| n == number)
                .map(|(_, t)| t);
            if covers(before.regs, &old, new) {
                continue;
            }
            let va = number << 12;
            // The first invalidate that covers it: a frame freed after it and a DSB was freed
            // after one (whether a refill could follow an invalidate issued too early is the
            // speculative TLB's to see).
            let by_page = self.first_invalidate(before.asid, &old);
            let by_asid = after
                .is_none()
                .then(|| self.first_asid_invalidate(before.asid))
                .flatten();
            let at = match (by_page, by_asid) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let Some(at) = at else {
                let what = if new.is_some() {
                    "narrowed or re-pointed"
                } else {
                    "removed"
                };
                return Err(format!(
                    "(d) the translation of {va:#010x} (ASID {}) was {what} without a TLBIMVA of it with that ASID\n  before: {old:?}\n  after:  {new:?}\n",
                    before.asid
                ));
            };
            let frame = old.pa & !0xFFF;
            let from = self.freed.partition_point(|&(f, _)| f < frame);
            for &(_, freed_at) in self.freed[from..].iter().take_while(|&&(f, _)| f == frame) {
                let completed =
                    freed_at > at && self.log[at..freed_at].contains(&MachineEvent::Dsb);
                if !completed {
                    return Err(format!(
                        "(e) frame {frame:#010x}, mapped at {va:#010x} (ASID {}), was freed before its invalidate and a DSB completed\n",
                        before.asid
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Rule (f) for an op: `exited` are the ASIDs of the spaces that exited in it, `handed_out`
/// those of the spaces it created that were released before; `current_before` the ASID current
/// on each CPU when the op began (`None`: the kernel-only state).
pub fn check_asids(
    log: &[MachineEvent],
    exited: &[u8],
    handed_out: &[u8],
    current_before: &[Option<u8>],
) -> Result<(), String> {
    let invalidated_at = |asid: u8| {
        log.iter()
            .rposition(|e| e.asid_invalidate().is_some_and(|a| a.value() == asid))
    };
    for &asid in exited {
        let Some(at) = invalidated_at(asid) else {
            return Err(format!(
                "(f) ASID {asid} was released at exit without a TLBIASID\n"
            ));
        };
        for (cpu, &before) in current_before.iter().enumerate() {
            let current_then = log[..at]
                .iter()
                .rev()
                .find_map(|e| match *e {
                    MachineEvent::SwitchSpace(c, s) if usize::from(c.index()) == cpu => {
                        Some(s.map(|(_, a)| a.value()))
                    }
                    _ => None,
                })
                .unwrap_or(before);
            if current_then == Some(asid) {
                return Err(format!(
                    "(f) ASID {asid} was invalidated at exit while still current on CPU {cpu} (walks could refill it)\n"
                ));
            }
        }
    }
    for &asid in handed_out {
        if invalidated_at(asid).is_none() {
            return Err(format!(
                "(f) ASID {asid}, released before, was handed out again without a TLBIASID\n"
            ));
        }
    }
    Ok(())
}
