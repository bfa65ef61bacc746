//! The vmm's `Machine` on real hardware: physical words through the kernel's linear map
//! (VA = PA for RAM), real CP15 TLB maintenance and barriers, and the injected defects of the
//! QEMU suite's broken-machine runs.

use core::ptr::{read_volatile, write_volatile};

use op_driver::guest::GuestDefect;
use vmm::Cpu;
use vmm::addr::{PhysAddr, PhysFrame, VirtPage};
use vmm::arch::armv7::{Asid, TlbReach, ttbr_value};
use vmm::machine::Machine;

use crate::cp15;

/// The guest's machine.
pub struct GuestMachine {
    defect: GuestDefect,
    /// Local TLB maintenance with one CPU, broadcast with two (the reach of TTBR0's walks
    /// follows it).
    reach: TlbReach,
    /// TLB invalidates asked for since the world booted.
    invalidates: u32,
    /// The allocation (0-based, within the current step) to refuse.
    refuse: Option<u16>,
    allocations: u32,
}

impl GuestMachine {
    /// A machine of `cpus` CPUs (1 or 2: core 1 is the second) with `defect`.
    ///
    /// # Safety
    ///
    /// The machine reads, writes, zeroes and copies any physical address the vmm hands it
    /// through the linear map: every such address (the frame pool and the device window of the
    /// layout the vmm boots with) must be RAM mapped at VA = PA for PL1, used by nothing else
    /// while the machine lives.
    pub const unsafe fn new(defect: GuestDefect, cpus: u8) -> Self {
        Self {
            defect,
            reach: TlbReach::for_cpus(cpus),
            invalidates: 0,
            refuse: None,
            allocations: 0,
        }
    }

    /// Refuse allocation `k` of the next step (and count from 0 again).
    pub fn refuse_allocation(&mut self, k: Option<u16>) {
        self.refuse = k;
        self.allocations = 0;
    }

    /// Whether this invalidate is lost (the defect).
    fn lose_invalidate(&mut self) -> bool {
        let n = self.invalidates;
        self.invalidates += 1;
        match self.defect {
            GuestDefect::DropEveryInvalidate => true,
            GuestDefect::DropNthInvalidate(k) => n == k,
            _ => false,
        }
    }
}

fn word_ptr(pa: PhysAddr) -> *mut u32 {
    pa.as_u32() as usize as *mut u32
}

impl Machine for GuestMachine {
    fn read_word(&mut self, pa: PhysAddr) -> u32 {
        // SAFETY: the vmm reads only its table pages and frames of its pool, RAM mapped at
        // VA = PA and used by nothing else, as `GuestMachine::new`'s caller promised.
        unsafe { read_volatile(word_ptr(pa)) }
    }

    fn write_word(&mut self, pa: PhysAddr, value: u32) {
        // Same predicate as the host checker's broken machine, so both see the same defect.
        let user_small_page = value & 0b10 != 0 && value & (1 << 11) != 0;
        let value = match self.defect {
            GuestDefect::MakeReadOnlyUserPagesWritable
                if user_small_page && value & (1 << 9) != 0 =>
            {
                value & !(1 << 9)
            }
            // Small pages with XN (bits 1:0 = 11).
            GuestDefect::MakeUserPagesExecutable if user_small_page && value & 1 != 0 => value & !1,
            _ => value,
        };
        // SAFETY: the vmm writes only its own table pages, in the pool (`GuestMachine::new`).
        unsafe { write_volatile(word_ptr(pa), value) }
    }

    fn zero_frame(&mut self, frame: PhysFrame) {
        let p = word_ptr(frame.start());
        for i in 0..1024 {
            // SAFETY: a whole pool frame the vmm owns, mapped at VA = PA (`GuestMachine::new`).
            unsafe { write_volatile(p.add(i), 0) }
        }
    }

    fn copy_frame(&mut self, dst: PhysFrame, src: PhysFrame) {
        let (d, s) = (word_ptr(dst.start()), word_ptr(src.start()));
        for i in 0..1024 {
            // SAFETY: two distinct pool frames the vmm owns, mapped at VA = PA
            // (`GuestMachine::new`).
            unsafe { write_volatile(d.add(i), read_volatile(s.add(i))) }
        }
    }

    fn tlb_invalidate_page(&mut self, asid: Asid, page: VirtPage) {
        if !self.lose_invalidate() {
            cp15::tlbimva(page.start().as_u32() | u32::from(asid.value()));
        }
    }

    fn tlb_invalidate_page_all_asids(&mut self, page: VirtPage) {
        if !self.lose_invalidate() {
            cp15::tlbimvaa(page.start().as_u32());
        }
    }

    fn tlb_invalidate_asid(&mut self, asid: Asid) {
        // Only page invalidates are counted for `DropNthInvalidate`.
        if self.defect != GuestDefect::DropEveryInvalidate {
            cp15::tlbiasid(u32::from(asid.value()));
        }
    }

    fn tlb_invalidate_all(&mut self) {
        cp15::tlbiall(0);
    }

    fn tlb_invalidate_page_is(&mut self, asid: Asid, page: VirtPage) {
        if self.defect == GuestDefect::LocalInvalidates {
            return self.tlb_invalidate_page(asid, page);
        }
        if !self.lose_invalidate() {
            cp15::tlbimvais(page.start().as_u32() | u32::from(asid.value()));
        }
    }

    fn tlb_invalidate_page_all_asids_is(&mut self, page: VirtPage) {
        if self.defect == GuestDefect::LocalInvalidates {
            return self.tlb_invalidate_page_all_asids(page);
        }
        if !self.lose_invalidate() {
            cp15::tlbimvaais(page.start().as_u32());
        }
    }

    fn tlb_invalidate_asid_is(&mut self, asid: Asid) {
        if self.defect == GuestDefect::LocalInvalidates {
            return self.tlb_invalidate_asid(asid);
        }
        if self.defect != GuestDefect::DropEveryInvalidate {
            cp15::tlbiasidis(u32::from(asid.value()));
        }
    }

    fn tlb_invalidate_all_is(&mut self) {
        if self.defect == GuestDefect::LocalInvalidates {
            return self.tlb_invalidate_all();
        }
        cp15::tlbiallis(0);
    }

    fn dsb(&mut self) {
        cp15::dsb();
    }

    fn isb(&mut self) {
        cp15::isb();
    }

    /// Through the empty table, so no walk mixes the old ASID with the new table: TTBR0 =
    /// empty, CONTEXTIDR = the new ASID, TTBR0 = the new table (the empty table and ASID 0
    /// for the kernel-only state). CPU 1's switch is made by core 1.
    fn switch_space(&mut self, cpu: Cpu, space: Option<(PhysFrame, Asid)>) {
        let empty = crate::boot::empty_user_table();
        let reach = self.reach;
        let (table, asid) = space.map_or((empty, 0), |(l1, asid)| {
            (ttbr_value(l1, reach), u32::from(asid.value()))
        });
        let mut switch = || {
            // SAFETY: TTBR0 covers only the user half, where the guest has nothing of its
            // own; the tables are the empty one or a live space's L1 table, which the vmm
            // frees only after every CPU switched away from it.
            unsafe {
                cp15::write_ttbr0(empty);
                cp15::write_contextidr(asid);
                cp15::write_ttbr0(table);
            }
        };
        if cpu == Cpu::BOOT {
            switch();
        } else {
            // The vmm refuses CPUs its world lacks, and the guest's worlds have two at most.
            crate::core1::run(&mut switch);
        }
    }

    fn frame_allocation_permitted(&mut self) -> bool {
        let k = self.allocations;
        self.allocations += 1;
        self.refuse.is_none_or(|r| u32::from(r) != k)
    }
}
