//! Real word accesses that may abort: `LDRT`/`STRT` check PL0 permissions from PL1, `LDR`/`STR`
//! check PL1's. They go through QEMU's TLB (unlike ATS), which is what makes a missing
//! invalidate visible.

use core::arch::asm;

use crate::start::{Abort, expecting_abort};

/// `LDRT`: a PL0 read.
pub fn ldrt(va: u32) -> Result<u32, Abort> {
    expecting_abort(|| {
        let (mut a, mut v) = (va, 0u32);
        // SAFETY: an unprivileged load; an abort is caught by the handler and skips it.
        unsafe {
            asm!("ldrt {v}, [{a}], #0", a = inout(reg) a, v = inout(reg) v, options(nostack))
        };
        let _ = a;
        v
    })
}

/// `STRT`: a PL0 write.
pub fn strt(va: u32, value: u32) -> Result<(), Abort> {
    expecting_abort(|| {
        let mut a = va;
        // SAFETY: an unprivileged store of a word the caller chose; an abort skips it.
        unsafe {
            asm!("strt {v}, [{a}], #0", a = inout(reg) a, v = in(reg) value, options(nostack))
        };
        let _ = a;
        0
    })
    .map(|_| ())
}

/// `LDR`: a PL1 read.
pub fn ldr(va: u32) -> Result<u32, Abort> {
    expecting_abort(|| {
        let mut v = 0u32;
        // SAFETY: a privileged load; an abort is caught by the handler and skips it.
        unsafe { asm!("ldr {v}, [{a}]", a = in(reg) va, v = inout(reg) v, options(nostack)) };
        v
    })
}

/// `STR`: a PL1 write.
pub fn str(va: u32, value: u32) -> Result<(), Abort> {
    expecting_abort(|| {
        // SAFETY: a privileged store of a word the caller chose (the probes write back the
        // value just read, and user writes go only where the vmm mapped user memory).
        unsafe { asm!("str {v}, [{a}]", a = in(reg) va, v = in(reg) value, options(nostack)) };
        0
    })
    .map(|_| ())
}
