//! Start-up and exception vectors. QEMU enters `_start` in SVC mode with the MMU off; the
//! data-abort handler either records an abort the guest asked for (a probe or a user access
//! that may fault: it sets `EXPECT_ABORT`) and skips the faulting instruction, or reports an
//! unexpected exception and exits.
//!
//! Instruction fetches ([`fetch_at`]) branch to a page holding an `SVC #0` at PL1, or enter
//! PL0 and branch there in one exception return. The SVC handler (the fetch executed) and the
//! prefetch-abort handler (it did not) both end the fetch at `fetch_resume`, in SVC mode on the
//! stack `fetch_at` saved: a PL0 fetch can never return by itself, since PL0 may not execute
//! the guest's own code.

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

    @ Core 1, started by PSCI CPU_ON (MMU off, SVC mode): its own stacks, the same vectors.
    .global _secondary_entry
_secondary_entry:
    cpsid aif
    cps #0x17
    ldr sp, =__stack_abt1_top
    cps #0x1b
    ldr sp, =__stack_und1_top
    cps #0x13
    ldr sp, =__stack_svc1_top
    ldr r0, =_vectors         @ VBAR is per core
    mcr p15, 0, r0, c12, c0, 0
    isb
    bl core1_main
3:  wfi
    b 3b
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
    push {{r0, r1}}
    ldr r1, =EXPECT_FETCH
    ldr r0, [r1]
    cmp r0, #0
    pop {{r0, r1}}
    movseq pc, lr             @ not a fetch probe: return as an SVC does
    mov r0, #1                @ the placed SVC ran: the fetch executed
    b fetch_resume

_und_handler:
    mov r0, #0
    sub r1, lr, #4
    b unexpected_exception

_pabt_handler:
    push {{r0, r1}}
    ldr r1, =EXPECT_FETCH
    ldr r0, [r1]
    cmp r0, #0
    pop {{r0, r1}}
    beq 4f
    cps #0x13                 @ the fetch faulted: back to SVC mode
    mov r0, #0
    b fetch_resume
4:  mov r0, #2
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

    .section .text.fetch, "ax"
    .arm
    .global fetch_at
@ fetch_at(va: r0, user: r1) -> r0: 1 when the instruction at va ran (it must be SVC #0),
@ 0 after a prefetch abort.
fetch_at:
    push {{r4-r11, lr}}
    ldr r2, =FETCH_SP
    str sp, [r2]
    ldr r2, =EXPECT_FETCH
    mov r3, #1
    str r3, [r2]
    cmp r1, #0
    beq 5f
    mrs r2, cpsr              @ PL0: user mode (interrupts stay masked) and the branch in one
    bic r2, r2, #0x1f         @ exception return, so no guest code runs at PL0
    orr r2, r2, #0x10
    msr spsr_cxsf, r2
    mov lr, r0
    movs pc, lr
5:  bx r0
fetch_resume:                 @ SVC mode, r0 = the result
    ldr r2, =EXPECT_FETCH
    mov r3, #0
    str r3, [r2]
    ldr r2, =FETCH_SP
    ldr sp, [r2]
    pop {{r4-r11, pc}}
    .ltorg
"#
);

/// Non-zero while the guest performs an access that may abort.
#[unsafe(no_mangle)]
static mut EXPECT_ABORT: u32 = 0;
/// Set by the handler when an expected abort happened.
#[unsafe(no_mangle)]
static mut ABORTED: u32 = 0;
/// Non-zero while [`fetch_at`] runs.
#[unsafe(no_mangle)]
static mut EXPECT_FETCH: u32 = 0;
/// The SVC-mode stack pointer [`fetch_at`] resumes on.
#[unsafe(no_mangle)]
static mut FETCH_SP: u32 = 0;
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

/// The instruction [`fetch_at`] expects at the address it branches to: `SVC #0`.
pub const FETCHED_INSTRUCTION: u32 = 0xEF00_0000;

unsafe extern "C" {
    #[link_name = "fetch_at"]
    fn fetch_at_asm(va: u32, user: u32) -> u32;
}

/// Fetches and executes the instruction at `va` at PL0 (`user`) or PL1: whether it ran. The
/// word at `va` must read as [`FETCHED_INSTRUCTION`] through the current tables.
pub fn fetch_at(va: u32, user: bool) -> bool {
    compiler_fence(Ordering::SeqCst);
    // SAFETY: the routine saves and restores every callee-saved register and the stack
    // pointer; what runs at `va` is the SVC the caller placed (it read it back through the
    // same translation), which ends the routine at once, as a prefetch abort does.
    let ran = unsafe { fetch_at_asm(va, u32::from(user)) };
    compiler_fence(Ordering::SeqCst);
    ran == 1
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
