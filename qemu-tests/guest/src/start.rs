//! Start-up and exception vectors. QEMU enters `_start` in SVC mode with the MMU off; the
//! data-abort handler either records an abort the guest asked for (a probe or a user access
//! that may fault: it sets `EXPECT_ABORT`) and skips the faulting instruction, or reports an
//! unexpected exception and exits.

use core::arch::global_asm;
use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};
use core::sync::atomic::{Ordering, compiler_fence};

global_asm!(
    r#"
    .section .text.start, "ax"
    .arm
    .global _start
_start:
    cpsid aif
    cps #0x17                 @ abort mode stack
    ldr sp, =__stack_abt_top
    cps #0x1b                 @ undefined mode stack
    ldr sp, =__stack_und_top
    cps #0x13                 @ back to SVC, where the guest runs
    ldr sp, =__stack_svc_top
    ldr r0, =__bss_start
    ldr r1, =__bss_end
    mov r2, #0
1:  cmp r0, r1
    strlo r2, [r0], #4
    blo 1b
    ldr r0, =_vectors         @ VBAR (SCTLR.V = 0)
    mcr p15, 0, r0, c12, c0, 0
    isb
    bl guest_main
2:  wfi
    b 2b
    .ltorg

    .section .text.vectors, "ax"
    .arm
    .balign 32
    .global _vectors
_vectors:
    b _start
    b _und_handler
    b _svc_handler
    b _pabt_handler
    b _dabt_handler
    b _irq_handler
    b _irq_handler
    b _irq_handler

_svc_handler:
    movs pc, lr

_und_handler:
    mov r0, #0
    sub r1, lr, #4
    b unexpected_exception

_pabt_handler:
    mov r0, #2
    sub r1, lr, #4
    b unexpected_exception

_irq_handler:
    mov r0, #3
    sub r1, lr, #4
    b unexpected_exception

_dabt_handler:
    push {{r0, r1}}
    ldr r1, =EXPECT_ABORT
    ldr r0, [r1]
    cmp r0, #0
    beq 3f
    mrc p15, 0, r0, c5, c0, 0
    ldr r1, =ABORT_DFSR
    str r0, [r1]
    mrc p15, 0, r0, c6, c0, 0
    ldr r1, =ABORT_DFAR
    str r0, [r1]
    mov r0, #1
    ldr r1, =ABORTED
    str r0, [r1]
    pop {{r0, r1}}
    subs pc, lr, #4           @ LR_abt = faulting instruction + 8: skip it
3:  pop {{r0, r1}}
    mov r0, #1
    sub r1, lr, #8
    b unexpected_exception
    .ltorg
"#
);

/// Non-zero while the guest performs an access that may abort.
#[unsafe(no_mangle)]
static mut EXPECT_ABORT: u32 = 0;
/// Set by the handler when an expected abort happened.
#[unsafe(no_mangle)]
static mut ABORTED: u32 = 0;
/// DFSR of the last expected abort.
#[unsafe(no_mangle)]
static mut ABORT_DFSR: u32 = 0;
/// DFAR of the last expected abort.
#[unsafe(no_mangle)]
static mut ABORT_DFAR: u32 = 0;

/// A data abort the guest expected: fault status and address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Abort {
    /// DFSR.
    pub status: u32,
    /// DFAR.
    pub address: u32,
}

/// Runs `access` (one load or store instruction) with aborts expected: an abort skips the
/// instruction and is returned instead of the value.
pub fn expecting_abort(access: impl FnOnce() -> u32) -> Result<u32, Abort> {
    // SAFETY: the guest is single-threaded with interrupts masked; only this function and the
    // abort handler touch these words.
    unsafe {
        write_volatile(addr_of_mut!(ABORTED), 0);
        write_volatile(addr_of_mut!(EXPECT_ABORT), 1);
    }
    compiler_fence(Ordering::SeqCst);
    let value = access();
    compiler_fence(Ordering::SeqCst);
    // SAFETY: as above.
    unsafe {
        write_volatile(addr_of_mut!(EXPECT_ABORT), 0);
        if read_volatile(addr_of!(ABORTED)) == 0 {
            Ok(value)
        } else {
            Err(Abort {
                status: read_volatile(addr_of!(ABORT_DFSR)),
                address: read_volatile(addr_of!(ABORT_DFAR)),
            })
        }
    }
}

/// Any exception the guest did not ask for: report and exit with status 3 (guest crash).
#[unsafe(no_mangle)]
extern "C" fn unexpected_exception(kind: u32, pc: u32) -> ! {
    let name = [
        "undefined instruction",
        "data abort",
        "prefetch abort",
        "interrupt",
    ]
    .get(kind as usize)
    .copied()
    .unwrap_or("?");
    let (dfsr, dfar) = (crate::cp15::read_dfsr(), crate::cp15::read_dfar());
    semihosting::eprintln!(
        "GUEST CRASH: unexpected {name} at pc {pc:#010x} (DFSR {dfsr:#x}, DFAR {dfar:#010x})"
    );
    semihosting::process::exit(3)
}
