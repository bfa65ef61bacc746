//! The invariants checked on the tables and the TLB after a step: INV-6 (the whole kernel
//! window closed to PL0, swept again only when a word it read changed), INV-7 (the links of
//! L2 tables read from the raw L1 words, and the vmm's own table check), INV-8 (every TLB
//! entry is what the tables give now, for a live ASID), and the fast mode's claim that its
//! shadow equals a full read of the tables.

use reference_model::armv7::{
    PageAttributes, Registers, TlbEntry, linked_table, permissions, translate,
};
use vmm::Vm;
use vmm::addr::{PhysAddr, PhysFrame};

use crate::machine::SimMachine;
use crate::pair::{Pair, block, kernel_registers};
use crate::shadow::{Changes, nonzero_entries, sweep_space};

/// INV-6 over the whole kernel window: no address at or above 1 GiB (TTBR1's half with
/// TTBCR.N = 2) answers any PL0 access, and every kernel translation there is global. One
/// walk per block (a section, a page, or a MiB with no entry). `reads` receives the address
/// of every word the walks read, ascending: the walker is a function of those words, so
/// while none of them changes (`Changes::touch_any`) the answer is the same. On a failure it
/// is left empty, so the next check walks again.
pub(crate) fn check_kernel_window(vm: &Vm<SimMachine>, reads: &mut Vec<u32>) -> Result<(), String> {
    let regs = kernel_registers(vm);
    let host = &vm.machine().host;
    reads.clear();
    let mut read = |a| {
        reads.push(a);
        host.peek_word(PhysAddr::new(a))
    };
    let mut va = 0x4000_0000u64;
    let mut result = Ok(());
    while va < 1 << 32 {
        match translate(&mut read, regs, va as u32) {
            Ok(t) => {
                let rights = permissions(regs, &t);
                if rights.pl0 != 0 || t.not_global {
                    result = Err(format!(
                        "kernel address {:#x} maps as {:?} ({} B block at {:#x})\n",
                        va as u32,
                        PageAttributes::of(regs, &t),
                        t.block_size,
                        t.block_va
                    ));
                    break;
                }
                va = u64::from(t.block_va) + u64::from(t.block_size);
            }
            Err(f) if f.level == 1 => va = (va | 0xF_FFFF) + 1,
            Err(_) => va += 0x1000,
        }
    }
    if result.is_err() {
        reads.clear();
    } else {
        reads.sort_unstable();
        reads.dedup();
    }
    result
}

impl Pair {
    /// INV-6 and (when `whole`) INV-7: no kernel address answers a PL0 access, and every
    /// space's tables agree with its bookkeeping. The INV-6 sweep runs again only when a word
    /// it last read may have changed in the step (`changes`), which gives the answer a sweep
    /// would.
    pub(crate) fn check_tables(&mut self, whole: bool, changes: &Changes) -> Result<(), String> {
        if whole {
            for (m, v) in self.ids() {
                self.vm
                    .check_tables(v)
                    .map_err(|e| format!("space {m}: {e}\n"))?;
            }
        }
        if !self.inv6_reads.is_empty() && !changes.touch_any(&self.inv6_reads) {
            return Ok(());
        }
        check_kernel_window(&self.vm, &mut self.inv6_reads)
    }

    /// INV-7 from the raw first-level words of every live space (its L1 table as the vmm's
    /// bookkeeping names it, the table its TTBR0 gets): every L2 table is linked by exactly one
    /// L1 entry of one space, at the slot of its 4 KiB page the entry's index gives (LiteOS-A
    /// packs the four tables of a 4 MiB group in one page, liteos-a-vm.md section 4); a page of
    /// tables holds tables of one group of one space and is no space's L1 table; and each
    /// space has as many pages of tables as the model counts. The table frames are kept for
    /// the comparison, where no page may map one as data.
    /// In fast mode the L1 words come from the shadow (updated from the step's writes, and
    /// audited against full reads by the tests), else from RAM.
    pub(crate) fn check_table_links(&mut self) -> Result<(), String> {
        self.read_vmm_spaces();
        let host = &self.vm.machine().host;
        let links = &mut self.links;
        links.clear();
        for (at, &(id, l1)) in self.roster.iter().enumerate() {
            let Some(l1) = l1 else { continue };
            if let Some(entries) = self.shadow.as_ref().and_then(|s| s.l1_entries(at, id)) {
                links.extend(entries.filter_map(|(i, w)| Some((linked_table(w)?, at, i))));
                continue;
            }
            let Some(Some(bytes)) = host.peek_frame(PhysFrame::containing(PhysAddr::new(l1)))
            else {
                continue;
            };
            links.extend(
                nonzero_entries(bytes).filter_map(|(i, w)| Some((linked_table(w)?, at, i))),
            );
        }
        links.sort_unstable();
        let name = |at: usize| format!("space {}", self.model_ids.get(at).copied().unwrap_or(0));
        for pair in links.windows(2) {
            let ((t, a, i), (_, b, j)) = (pair[0], pair[1]);
            if t == pair[1].0 {
                return Err(format!(
                    "INV-7: the L2 table at {t:#010x} is linked by {} entry {i:#x} and by {} entry {j:#x}\n",
                    name(a),
                    name(b)
                ));
            }
        }
        self.table_frames.clear();
        self.table_frames
            .extend(self.roster.iter().filter_map(|&(_, l1)| l1));
        let pages = &mut self.link_pages;
        pages.clear();
        pages.resize(self.roster.len(), 0);
        for run in links.chunk_by(|x, y| x.0 >> 12 == y.0 >> 12) {
            let (first, at, index) = run[0];
            for &(table, other, i) in run {
                if (table >> 10) & 3 != i & 3 {
                    return Err(format!(
                        "INV-7: the L2 table at {table:#010x} for entry {i:#x} of {} is not at its slot {} of its page\n",
                        name(other),
                        i & 3
                    ));
                }
                if (other, i / 4) != (at, index / 4) {
                    return Err(format!(
                        "INV-7: the page at {:#010x} holds tables of {} entry {index:#x} and of {} entry {i:#x}\n",
                        first & !0xFFF,
                        name(at),
                        name(other)
                    ));
                }
            }
            let page = first & !0xFFF;
            if self.table_frames.contains(&page) {
                return Err(format!(
                    "INV-7: the L2 tables at {page:#010x} lie in an L1 table\n"
                ));
            }
            pages[at] += 1;
            self.table_frames.push(page);
        }
        self.table_frames.sort_unstable();
        for (at, &m) in self.model_ids.iter().enumerate().take(self.roster.len()) {
            let expected = self.model.table_pages(m).map_or(0, |n| n - 1);
            if pages[at] != expected {
                return Err(format!(
                    "INV-7: space {m} links tables in {} pages, the model counts {expected}\n",
                    pages[at]
                ));
            }
        }
        Ok(())
    }

    /// INV-8: every TLB entry of every CPU is what a walk of the current tables gives, for a
    /// live ASID. A report names the CPU when there are several.
    pub(crate) fn check_tlb(&mut self) -> Result<(), String> {
        self.read_vmm_spaces();
        let kernel = kernel_registers(&self.vm);
        let m = self.vm.machine();
        let several = m.cpus() > 1;
        for (cpu, tlb) in m.tlbs.iter().enumerate() {
            for e in tlb.entries() {
                check_tlb_entry(&m.host, &self.live_asids, kernel, e).map_err(|(what, rest)| {
                    let on = if several {
                        format!(" on CPU {cpu}")
                    } else {
                        String::new()
                    };
                    format!("{what}{on}{rest}")
                })?;
            }
        }
        Ok(())
    }

    /// The fast mode's claim: the shadow equals a full read of every space's tables (by the
    /// reference walker, as the shadow reads them).
    pub(crate) fn audit_shadow(&mut self) -> Result<(), String> {
        if self.shadow.is_none() {
            return Ok(());
        }
        self.read_vmm_spaces();
        let Some(shadow) = &self.shadow else {
            return Ok(());
        };
        for (at, &(v, l1)) in self.roster.iter().enumerate() {
            let read = l1.map(|l1| {
                let mut all = Vec::new();
                sweep_space(&self.vm.machine().host, l1, &mut all);
                all
            });
            let same = match (shadow.pages(at, v), &read) {
                (Some(kept), Some(read)) => kept.eq(read.iter().copied()),
                (None, None) => true,
                _ => false,
            };
            if !same {
                let kept: Option<Vec<_>> = shadow.pages(at, v).map(Iterator::collect);
                return Err(format!(
                    "fast-mode shadow of {v:#x?} differs from the tables:\nshadow {kept:#x?}\ntables {read:#x?}\n"
                ));
            }
        }
        Ok(())
    }
}

/// INV-8 for one TLB entry: the walk of the tables it was filled from (the live space of its
/// ASID, the kernel's for a global entry) gives the same block now. The error is the report
/// in two parts, the place to name the CPU between them.
fn check_tlb_entry(
    host: &vmm::machine::HostMachine,
    live: &[(u8, Registers)],
    kernel: Registers,
    e: &TlbEntry,
) -> Result<(), (&'static str, String)> {
    let t = &e.translation;
    let regs = match e.asid {
        Some(a) => live.iter().find(|(x, _)| *x == a).map(|(_, r)| *r),
        // Global (kernel) entries: the kernel's TTBR1 table translates them.
        None => Some(kernel),
    };
    let Some(regs) = regs else {
        return Err((
            "TLB entry",
            format!(
                " {:#010x} -> {:#010x} ({} KiB block, ASID {}, AP {:#05b}{}) belongs to no live \
                 space\n",
                t.block_va,
                t.block_pa,
                t.block_size / 1024,
                e.asid.unwrap_or(0),
                t.ap,
                if t.xn { ", XN" } else { "" }
            ),
        ));
    };
    let now = translate(&mut |a| host.peek_word(PhysAddr::new(a)), regs, t.block_va);
    if now.as_ref().map(block) == Ok(block(t)) {
        return Ok(());
    }
    let asid = e
        .asid
        .map_or_else(|| "global".to_string(), |a| format!("ASID {a}"));
    let entry = format!(
        "{:#010x} -> {:#010x} ({} KiB block, {asid}) {:?}",
        t.block_va,
        t.block_pa,
        t.block_size / 1024,
        PageAttributes::of(regs, t)
    );
    let tables = match &now {
        Ok(n) => format!(
            "{:#010x} -> {:#010x} ({} KiB block) {:?}",
            n.block_va,
            n.block_pa,
            n.block_size / 1024,
            PageAttributes::of(regs, n)
        ),
        Err(fault) => format!("{fault:?}"),
    };
    Err((
        "stale TLB entry",
        format!(": {entry}\nthe tables now give: {tables}\n"),
    ))
}
