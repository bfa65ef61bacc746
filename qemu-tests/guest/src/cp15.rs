//! The CP15 registers and maintenance operations the guest uses, as small functions.
//!
//! Each is one `mcr`/`mrc` (plus the barrier the architecture asks for). Reads, barriers and TLB
//! maintenance are safe to call in this guest (it runs at PL1, single-threaded). The writes
//! that steer translation (SCTLR, TTBR0, TTBR1, TTBCR, DACR, CONTEXTIDR) are `unsafe`, as
//! aarch64-paging marks activating a table: what they install decides which memory every
//! later access reaches, and a wrong value unmaps the guest's own code and data.

use core::arch::asm;

macro_rules! write_cp15 {
    ($(#[$doc:meta])* $name:ident, $crn:literal, $op1:literal, $crm:literal, $op2:literal) => {
        $(#[$doc])*
        ///
        /// # Safety
        ///
        /// The value must keep the guest's code, stacks and data mapped (VA = PA, PL1
        /// read/write) and describe tables that stay valid while installed, so that every
        /// access after the write reaches the memory it meant to.
        #[inline(always)]
        pub unsafe fn $name(value: u32) {
            // SAFETY: a CP15 write at PL1; the caller keeps the mappings valid (see above).
            unsafe {
                asm!(
                    concat!("mcr p15, ", $op1, ", {0}, ", $crn, ", ", $crm, ", ", $op2),
                    "isb",
                    in(reg) value,
                    options(nostack)
                )
            }
        }
    };
}

macro_rules! read_cp15 {
    ($(#[$doc:meta])* $name:ident, $crn:literal, $op1:literal, $crm:literal, $op2:literal) => {
        $(#[$doc])*
        #[inline(always)]
        #[must_use]
        pub fn $name() -> u32 {
            let value: u32;
            // SAFETY: a CP15 read at PL1 has no side effect.
            unsafe {
                asm!(
                    concat!("mrc p15, ", $op1, ", {0}, ", $crn, ", ", $crm, ", ", $op2),
                    out(reg) value,
                    options(nostack, nomem)
                )
            };
            value
        }
    };
}

write_cp15!(/// SCTLR.
    write_sctlr, "c1", 0, "c0", 0);
read_cp15!(/// SCTLR.
    read_sctlr, "c1", 0, "c0", 0);
write_cp15!(/// TTBR0: the current user space's L1 table.
    write_ttbr0, "c2", 0, "c0", 0);
write_cp15!(/// TTBR1: the kernel's L1 table.
    write_ttbr1, "c2", 0, "c0", 1);
read_cp15!(/// TTBR1.
    read_ttbr1, "c2", 0, "c0", 1);
write_cp15!(/// TTBCR (N = 2: TTBR0 below 1 GiB).
    write_ttbcr, "c2", 0, "c0", 2);
write_cp15!(/// DACR.
    write_dacr, "c3", 0, "c0", 0);
write_cp15!(/// CONTEXTIDR: the current ASID in bits 7:0.
    write_contextidr, "c13", 0, "c0", 1);
read_cp15!(/// DFSR.
    read_dfsr, "c5", 0, "c0", 0);
read_cp15!(/// DFAR.
    read_dfar, "c6", 0, "c0", 0);

macro_rules! tlb_op {
    ($(#[$doc:meta])* $name:ident, $crm:literal, $op2:literal) => {
        $(#[$doc])*
        #[inline(always)]
        pub fn $name(operand: u32) {
            // SAFETY: TLB maintenance only drops cached translations.
            unsafe {
                asm!(
                    concat!("mcr p15, 0, {0}, c8, ", $crm, ", ", $op2),
                    in(reg) operand,
                    options(nostack)
                )
            }
        }
    };
}

tlb_op!(/// TLBIALL (operand ignored).
    tlbiall, "c7", 0);
tlb_op!(/// TLBIMVA: operand = VA[31:12] | ASID.
    tlbimva, "c7", 1);
tlb_op!(/// TLBIASID: operand = ASID.
    tlbiasid, "c7", 2);
tlb_op!(/// TLBIMVAA: operand = VA[31:12].
    tlbimvaa, "c7", 3);
tlb_op!(/// TLBIALLIS: TLBIALL on every CPU of the inner-shareable domain.
    tlbiallis, "c3", 0);
tlb_op!(/// TLBIMVAIS: TLBIMVA on every CPU.
    tlbimvais, "c3", 1);
tlb_op!(/// TLBIASIDIS: TLBIASID on every CPU.
    tlbiasidis, "c3", 2);
tlb_op!(/// TLBIMVAAIS: TLBIMVAA on every CPU.
    tlbimvaais, "c3", 3);

/// DSB.
#[inline(always)]
pub fn dsb() {
    // SAFETY: a barrier.
    unsafe { asm!("dsb", options(nostack)) }
}

/// ISB.
#[inline(always)]
pub fn isb() {
    // SAFETY: a barrier.
    unsafe { asm!("isb", options(nostack)) }
}

/// Makes instructions just written to memory visible to instruction fetches: ICIALLU and
/// BPIALL, then DSB and ISB. (QEMU has no caches and notices code writes itself; the guest does
/// what the architecture asks all the same.)
#[inline(always)]
pub fn sync_instructions() {
    // SAFETY: cache and branch predictor maintenance only drops cached instructions.
    unsafe {
        asm!(
            "dsb",
            "mcr p15, 0, {0}, c7, c5, 0",
            "mcr p15, 0, {0}, c7, c5, 6",
            "dsb",
            "isb",
            in(reg) 0u32,
            options(nostack)
        )
    }
}

macro_rules! ats {
    ($(#[$doc:meta])* $name:ident, $op2:literal) => {
        $(#[$doc])*
        #[inline(always)]
        #[must_use]
        pub fn $name(va: u32) -> u32 {
            let par: u32;
            // SAFETY: an address translation operation writes only PAR, which is read back.
            unsafe {
                asm!(
                    concat!("mcr p15, 0, {va}, c7, c8, ", $op2),
                    "isb",
                    "mrc p15, 0, {par}, c7, c4, 0",
                    va = in(reg) va,
                    par = lateout(reg) par,
                    options(nostack)
                )
            };
            par
        }
    };
}

ats!(/// ATS1CPR: the tables' answer for a PL1 read (PAR).
    ats1cpr, 0);
ats!(/// ATS1CPW: PL1 write.
    ats1cpw, 1);
ats!(/// ATS1CUR: PL0 read.
    ats1cur, 2);
ats!(/// ATS1CUW: PL0 write.
    ats1cuw, 3);
