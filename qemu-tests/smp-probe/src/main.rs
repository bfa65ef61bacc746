//! A test of the platform the SMP work stands on (`cargo xtask qemu-platform`): on
//! qemu-system-arm -M virt -smp 2, PSCI CPU_ON through HVC starts core 1, and the cross-core
//! reach of local vs inner-shareable TLB maintenance (short-descriptor MMU, ARMv7-A): a local
//! TLBIMVA on core 0 leaves core 1 stale, the IS forms reach it. Prints PASS/FAIL per check and a
//! SUMMARY; the exit status is the number of failed checks.
#![no_std]
#![no_main]
#![allow(static_mut_refs)]

use core::arch::{asm, global_asm};
use core::ptr::{addr_of_mut, read_volatile, write_volatile};
use semihosting::println;

// ---------------------------------------------------------------- start-up + vectors
global_asm!(
    r#"
    .section .text.start, "ax"
    .arm
    .global _start
_start:
    mrc p15, 0, r8, c0, c0, 5 @ MPIDR: anything but core 0 parks (secondaries start powered off anyway)
    ands r8, r8, #0xff
    bne 9f
    mrs r4, cpsr
    mov r5, r0
    mov r6, r1
    mov r7, r2
    cpsid aif
    cps #0x17                 @ ABT mode stack
    ldr sp, =__stack_abt_top
    cps #0x1b                 @ UND mode stack
    ldr sp, =__stack_und_top
    cps #0x13                 @ back to SVC
    ldr sp, =__stack_svc_top
    ldr r0, =__bss_start      @ zero .bss (page tables + mailbox live there)
    ldr r1, =__bss_end
    mov r2, #0
1:  cmp r0, r1
    strlo r2, [r0], #4
    blo 1b
    ldr r0, =_vectors
    mcr p15, 0, r0, c12, c0, 0  @ VBAR
    isb
    mov r0, r4
    mov r1, r5
    mov r2, r6
    mov r3, r7
    bl rust_main
2:  wfi
    b 2b
9:  wfe
    b 9b

    @ ---- secondary entry (PSCI CPU_ON entry point, physical address, MMU off, r0 = context id)
    .global _secondary_entry
_secondary_entry:
    mrs r1, cpsr              @ r1 = CPSR at entry (for the report)
    cpsid aif
    cps #0x17
    ldr sp, =__stack_abt1_top
    cps #0x1b
    ldr sp, =__stack_und1_top
    cps #0x13
    ldr sp, =__stack_svc1_top @ own SVC stack
    ldr r2, =_vectors
    mcr p15, 0, r2, c12, c0, 0 @ VBAR is per core
    isb
    bl rust_secondary         @ (r0 = context id, r1 = entry CPSR)
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
    b .
    b .                       @ IRQ (unused)
    b .                       @ FIQ (unused)

_und_handler:                 @ LR_und = insn + 4 (ARM) -> resume at next insn
    push {{r0, r1}}
    movw r1, #:lower16:UND_COUNT
    movt r1, #:upper16:UND_COUNT
    ldr r0, [r1]
    add r0, r0, #1
    str r0, [r1]
    movw r1, #:lower16:UND_ADDR
    movt r1, #:upper16:UND_ADDR
    sub r0, lr, #4
    str r0, [r1]
    pop {{r0, r1}}
    movs pc, lr

_svc_handler:
    movs pc, lr

_dabt_handler:                @ record DFSR/DFAR/PC, skip the faulting insn
    push {{r0, r1}}
    mrc p15, 0, r0, c5, c0, 0
    movw r1, #:lower16:DABT_DFSR
    movt r1, #:upper16:DABT_DFSR
    str r0, [r1]
    mrc p15, 0, r0, c6, c0, 0
    movw r1, #:lower16:DABT_DFAR
    movt r1, #:upper16:DABT_DFAR
    str r0, [r1]
    movw r1, #:lower16:DABT_COUNT
    movt r1, #:upper16:DABT_COUNT
    ldr r0, [r1]
    add r0, r0, #1
    str r0, [r1]
    pop {{r0, r1}}
    subs pc, lr, #4

_pabt_handler:
    b .
"#
);

#[unsafe(no_mangle)]
static mut DABT_COUNT: u32 = 0;
#[unsafe(no_mangle)]
static mut DABT_DFSR: u32 = 0;
#[unsafe(no_mangle)]
static mut DABT_DFAR: u32 = 0;
#[unsafe(no_mangle)]
static mut UND_COUNT: u32 = 0;
#[unsafe(no_mangle)]
static mut UND_ADDR: u32 = 0;

unsafe extern "C" {
    fn _secondary_entry();
}

// ---------------------------------------------------------------- page tables (shared by both cores)
#[repr(C, align(16384))]
struct L1Full([u32; 4096]);
#[repr(C, align(4096))]
struct L1Half([u32; 1024]);
#[repr(C, align(1024))]
struct L2([u32; 256]);

static mut TT1: L1Full = L1Full([0; 4096]);
static mut TT0: L1Half = L1Half([0; 1024]);
static mut L2T: L2 = L2([0; 256]);

const AP_KRW: u32 = 0b001;
const AP_RW: u32 = 0b011;

// Normal memory WBWA (TEX=001 C=1 B=1), shareable (S=1) so the same attributes as an SMP kernel
fn section(pa: u32, ap: u32) -> u32 {
    (pa & 0xFFF0_0000)
        | (1 << 16)
        | ((ap >> 2) & 1) << 15
        | (1 << 12)
        | (ap & 3) << 10
        | (1 << 3)
        | (1 << 2)
        | 0b10
}
fn coarse(l2_pa: u32) -> u32 {
    (l2_pa & 0xFFFF_FC00) | 0b01
}
fn small(pa: u32, ap: u32) -> u32 {
    (pa & 0xFFFF_F000)
        | (1 << 10)
        | ((ap >> 2) & 1) << 9
        | (1 << 6)
        | (ap & 3) << 4
        | (1 << 3)
        | (1 << 2)
        | 0b10
}

const FRAME_A: u32 = 0x4040_5000;
const FRAME_B: u32 = 0x4040_6000;
const VA_X: u32 = 0x0010_5000; // L2 small page, l2[5]
const ASID: u32 = 5;
const TTBCR_V: u32 = 2; // N=2, short descriptors
const DACR_V: u32 = 0b01; // domain 0 client
const VAL_A: u32 = 0xAAAA_0000 | (FRAME_A >> 12);
const VAL_B: u32 = 0xBBBB_0000 | (FRAME_B >> 12);

// ---------------------------------------------------------------- cp15 helpers
#[inline(always)]
fn dsb() {
    unsafe { asm!("dsb") }
}
#[inline(always)]
fn isb() {
    unsafe { asm!("isb") }
}
/// A CP15 register read: one `mrc`.
macro_rules! read_cp15 {
    ($($name:ident: $op1:literal, $crn:literal, $crm:literal, $op2:literal;)*) => {$(
        #[inline(always)]
        fn $name() -> u32 {
            let v;
            unsafe { asm!(concat!("mrc p15, ", $op1, ", {0}, ", $crn, ", ", $crm, ", ", $op2), out(reg) v) };
            v
        }
    )*};
}
read_cp15! {
    read_sctlr: "0", "c1", "c0", "0";
    read_actlr: "0", "c1", "c0", "1";
    read_ttbr0: "0", "c2", "c0", "0";
    read_ttbcr: "0", "c2", "c0", "2";
    read_dacr: "0", "c3", "c0", "0";
    read_contextidr: "0", "c13", "c0", "1";
    mpidr: "0", "c0", "c0", "5";
    midr: "0", "c0", "c0", "0";
    cntfrq: "0", "c14", "c0", "0";
}
#[inline(always)]
fn write_actlr(v: u32) {
    unsafe { asm!("mcr p15, 0, {0}, c1, c0, 1", "isb", in(reg) v) }
}
#[inline(always)]
fn cntvct() -> u64 {
    let (lo, hi): (u32, u32);
    unsafe { asm!("isb", "mrrc p15, 1, {0}, {1}, c14", out(reg) lo, out(reg) hi) };
    ((hi as u64) << 32) | lo as u64
}
/// A TLB maintenance operation with its operand (MVA[31:12] | ASID[7:0] for the by-MVA forms,
/// the ASID for the by-ASID ones), then DSB and ISB.
macro_rules! tlb_op {
    ($($name:ident: $crm:literal, $op2:literal;)*) => {$(
        fn $name(v: u32) {
            unsafe { asm!(concat!("mcr p15, 0, {0}, c8, ", $crm, ", ", $op2), "dsb", "isb", in(reg) v) }
        }
    )*};
}
tlb_op! {
    tlbimva: "c7", "1";
    tlbimvais: "c3", "1";
    tlbimvaa: "c7", "3";
    tlbimvaais: "c3", "3";
    tlbiasid: "c7", "2";
    tlbiasidis: "c3", "2";
}
fn tlbiall() {
    unsafe { asm!("mcr p15, 0, {0}, c8, c7, 0", "dsb", "isb", in(reg) 0u32) }
}
fn tlbiallis() {
    unsafe { asm!("mcr p15, 0, {0}, c8, c3, 0", "dsb", "isb", in(reg) 0u32) }
}

fn ats1cpr(va: u32) -> u32 {
    let par: u32;
    unsafe {
        asm!("mcr p15, 0, {va}, c7, c8, 0", "isb", "mrc p15, 0, {par}, c7, c4, 0", va = in(reg) va, par = lateout(reg) par)
    };
    par
}
fn par_pa(p: u32) -> u32 {
    if p & 1 == 1 {
        0xFFFF_FFFF
    } else {
        p & 0xFFFF_F000
    }
}
fn rd(va: u32) -> u32 {
    unsafe { read_volatile(va as *const u32) }
}
fn und_count() -> u32 {
    unsafe { read_volatile(addr_of_mut!(UND_COUNT)) }
}

// ---------------------------------------------------------------- PSCI
const PSCI_VERSION: u32 = 0x8400_0000;
const PSCI_CPU_ON: u32 = 0x8400_0003;
const PSCI_AFFINITY_INFO: u32 = 0x8400_0004;

/// SMCCC call via HVC #0; Err(()) if it took the undefined-instruction exception.
fn psci_hvc(fid: u32, a1: u32, a2: u32, a3: u32) -> Result<i32, ()> {
    let c = und_count();
    let r0: u32;
    unsafe {
        asm!(".arch_extension virt", "hvc #0",
             inout("r0") fid => r0, inout("r1") a1 => _, inout("r2") a2 => _, inout("r3") a3 => _,
             out("r12") _, options(nostack))
    };
    if und_count() != c {
        Err(())
    } else {
        Ok(r0 as i32)
    }
}
/// Same via SMC #0.
fn psci_smc(fid: u32, a1: u32, a2: u32, a3: u32) -> Result<i32, ()> {
    let c = und_count();
    let r0: u32;
    unsafe {
        asm!(".arch_extension sec", "smc #0",
             inout("r0") fid => r0, inout("r1") a1 => _, inout("r2") a2 => _, inout("r3") a3 => _,
             out("r12") _, options(nostack))
    };
    if und_count() != c {
        Err(())
    } else {
        Ok(r0 as i32)
    }
}

// ---------------------------------------------------------------- per-core MMU enable (same regs on each core)
static mut SET_SMP_BIT: u32 = 1;

/// Returns (ACTLR before, ACTLR after write).
unsafe fn core_mmu_on() -> (u32, u32) {
    let a0 = read_actlr();
    if unsafe { read_volatile(addr_of_mut!(SET_SMP_BIT)) } != 0 {
        write_actlr(a0 | (1 << 6)); // ACTLR.SMP: must precede caches/MMU on a real Cortex-A7
    }
    let a1 = read_actlr();
    unsafe {
        asm!(
            "mcr p15, 0, {ttbcr}, c2, c0, 2",   // TTBCR
            "mcr p15, 0, {t0}, c2, c0, 0",      // TTBR0
            "mcr p15, 0, {t1}, c2, c0, 1",      // TTBR1
            "mcr p15, 0, {dacr}, c3, c0, 0",    // DACR
            "mcr p15, 0, {asid}, c13, c0, 1",   // CONTEXTIDR (ASID)
            "isb",
            "mcr p15, 0, {z}, c8, c7, 0",       // TLBIALL (local)
            "mcr p15, 0, {z}, c7, c5, 0",       // ICIALLU
            "dsb", "isb",
            ttbcr = in(reg) TTBCR_V,
            t0 = in(reg) (addr_of_mut!(TT0) as u32) | 0b100_0010, // IRGN=WBWA(01), S=1, RGN=WBWA(01)
            t1 = in(reg) (addr_of_mut!(TT1) as u32) | 0b100_0010,
            dacr = in(reg) DACR_V,
            asid = in(reg) ASID,
            z = in(reg) 0u32,
        );
        let mut sctlr = read_sctlr();
        sctlr |= 1 | (1 << 2) | (1 << 12); // M, C, I
        sctlr &= !((1 << 1) | (1 << 13) | (1 << 28) | (1 << 29)); // A, V, TRE, AFE off
        asm!("dsb", "mcr p15, 0, {0}, c1, c0, 0", "isb", in(reg) sctlr);
    }
    (a0, a1)
}

// ---------------------------------------------------------------- mailbox (shared normal memory)
static mut MB_CMD: u32 = 0;
static mut MB_SEQ: u32 = 0;
static mut MB_ACK: u32 = 0;
static mut MB_RES: [u32; 4] = [0; 4];
static mut SEC_ALIVE: u32 = 0;
static mut SEC_INFO: [u32; 10] = [0; 10];

const CMD_PRIME: u32 = 1; // core 1: local TLBIALL, then read X (fills its TLB with X->A)
const CMD_PROBE: u32 = 2; // core 1: read X, ATS1CPR X, read X again
const CMD_LOCAL_TLBIMVA: u32 = 3; // core 1 does its own local TLBIMVA(X)

#[unsafe(no_mangle)]
extern "C" fn rust_secondary(ctx: u32, entry_cpsr: u32) -> ! {
    let sctlr_before = read_sctlr();
    let (a0, a1) = unsafe { core_mmu_on() };
    unsafe {
        let info = addr_of_mut!(SEC_INFO);
        write_volatile(&mut (*info)[0], ctx);
        write_volatile(&mut (*info)[1], entry_cpsr);
        write_volatile(&mut (*info)[2], mpidr());
        write_volatile(&mut (*info)[3], sctlr_before);
        write_volatile(&mut (*info)[4], read_sctlr());
        write_volatile(&mut (*info)[5], a0);
        write_volatile(&mut (*info)[6], a1);
        write_volatile(&mut (*info)[7], read_ttbr0());
        write_volatile(&mut (*info)[8], read_ttbcr());
        write_volatile(&mut (*info)[9], read_dacr() << 16 | read_contextidr());
        asm!("dmb");
        write_volatile(addr_of_mut!(SEC_ALIVE), 0xA11C_0001);
        asm!("dsb", "sev");
        let mut last = 0u32;
        loop {
            let s = loop {
                let s = read_volatile(addr_of_mut!(MB_SEQ));
                if s != last {
                    break s;
                }
                asm!("wfe");
            };
            asm!("dmb");
            last = s;
            let res = addr_of_mut!(MB_RES);
            match read_volatile(addr_of_mut!(MB_CMD)) {
                CMD_PRIME => {
                    tlbiall();
                    write_volatile(&mut (*res)[0], rd(VA_X));
                }
                CMD_PROBE => {
                    let v = rd(VA_X);
                    let p = ats1cpr(VA_X);
                    let v2 = rd(VA_X);
                    write_volatile(&mut (*res)[0], v);
                    write_volatile(&mut (*res)[1], p);
                    write_volatile(&mut (*res)[2], v2);
                }
                CMD_LOCAL_TLBIMVA => tlbimva(VA_X | ASID),
                _ => {}
            }
            asm!("dmb");
            write_volatile(addr_of_mut!(MB_ACK), s);
            asm!("dsb", "sev");
        }
    }
}

/// Core 0: post a command, wait (<= 2 s) for core 1's acknowledgement.
fn send(cmd: u32) -> bool {
    unsafe {
        write_volatile(addr_of_mut!(MB_CMD), cmd);
        asm!("dmb");
        let s = read_volatile(addr_of_mut!(MB_SEQ)).wrapping_add(1);
        write_volatile(addr_of_mut!(MB_SEQ), s);
        asm!("dsb", "sev");
        let t0 = cntvct();
        let lim = 2 * cntfrq() as u64;
        while read_volatile(addr_of_mut!(MB_ACK)) != s {
            if cntvct() - t0 > lim {
                return false;
            }
            asm!("wfe");
        }
        asm!("dmb");
        true
    }
}
fn res(i: usize) -> u32 {
    unsafe { read_volatile(&(*addr_of_mut!(MB_RES))[i]) }
}
fn set_pte(frame: u32) {
    unsafe { write_volatile(addr_of_mut!(L2T.0[5]), small(frame, AP_RW)) };
    dsb(); // make the descriptor write visible to table walks (no cache maintenance needed: walks are cacheable)
    isb();
}

static mut FAILS: u32 = 0;
static mut PASSES: u32 = 0;
fn check(name: &str, ok: bool) {
    println!("  {} {}", if ok { "PASS" } else { "FAIL" }, name);
    unsafe { if ok { PASSES += 1 } else { FAILS += 1 } }
}
fn ab(v: u32) -> &'static str {
    if v == VAL_A {
        "A"
    } else if v == VAL_B {
        "B"
    } else {
        "??"
    }
}

#[unsafe(no_mangle)]
extern "C" fn rust_main(boot_cpsr: u32, _r0: u32, _r1: u32, _r2: u32) -> ! {
    let mut cmd = [core::mem::MaybeUninit::<u8>::uninit(); 256];
    let cmdline = semihosting::sys::arm_compat::sys_get_cmdline_uninit(&mut cmd)
        .map(|s| &*s)
        .unwrap_or(b"");
    let cmdline = core::str::from_utf8(cmdline).unwrap_or("");
    let use_smc = cmdline.contains("smc");
    if cmdline.contains("nosmpbit") {
        unsafe { SET_SMP_BIT = 0 }
    }
    println!(
        "smpprobe: MIDR={:08x} MPIDR={:08x} boot CPSR={:08x} cmdline={:?}",
        midr(),
        mpidr(),
        boot_cpsr,
        cmdline
    );

    // page tables: TTBR1 identity RAM sections; TTBR0 L2 small page X -> A
    unsafe {
        for mb in 0x400..0x500u32 {
            TT1.0[mb as usize] = section(mb << 20, AP_KRW);
        }
        TT0.0[0x001] = coarse(addr_of_mut!(L2T) as u32);
        L2T.0[5] = small(FRAME_A, AP_RW);
        write_volatile(FRAME_A as *mut u32, VAL_A);
        write_volatile(FRAME_B as *mut u32, VAL_B);
    }
    dsb();
    let (a0, a1) = unsafe { core_mmu_on() };
    println!(
        "core0 MMU on: SCTLR={:08x} TTBR0={:08x} TTBCR={:x} DACR={:x} CONTEXTIDR={:x} ACTLR {:08x}->{:08x} (SMP bit write {})",
        read_sctlr(),
        read_ttbr0(),
        read_ttbcr(),
        read_dacr(),
        read_contextidr(),
        a0,
        a1,
        if unsafe { SET_SMP_BIT } == 0 {
            "skipped"
        } else if a1 & 0x40 != 0 {
            "stuck"
        } else {
            "IGNORED (reads back 0)"
        }
    );
    println!(
        "core0 reads X={:08x}: {:08x} {}",
        VA_X,
        rd(VA_X),
        ab(rd(VA_X))
    );

    // ---------------- Q1: PSCI via HVC (and SMC)
    println!("\n--- Q1: PSCI");
    let v_hvc = psci_hvc(PSCI_VERSION, 0, 0, 0);
    println!("PSCI_VERSION via HVC: {:x?}", v_hvc.map(|v| v as u32));
    let v_smc = if use_smc || v_hvc.is_err() {
        psci_smc(PSCI_VERSION, 0, 0, 0)
    } else {
        Err(())
    };
    if use_smc || v_hvc.is_err() {
        println!(
            "PSCI_VERSION via SMC: {:x?} (Err = UNDEF taken)",
            v_smc.map(|v| v as u32)
        );
    }
    let call = |f, a, b, c| {
        if !use_smc && v_hvc.is_ok() {
            psci_hvc(f, a, b, c)
        } else {
            psci_smc(f, a, b, c)
        }
    };
    let conduit = if !use_smc && v_hvc.is_ok() {
        "HVC"
    } else {
        "SMC"
    };
    println!(
        "AFFINITY_INFO(1) before CPU_ON: {:?} (1=OFF)",
        call(PSCI_AFFINITY_INFO, 1, 0, 0)
    );
    let entry = _secondary_entry as *const () as usize as u32;
    let ctxid = 0xC0FF_EE01u32;
    let r = call(PSCI_CPU_ON, 1, entry, ctxid);
    println!(
        "CPU_ON(mpidr=1, entry={:08x}, ctx={:08x}) via {}: {:?}",
        entry, ctxid, conduit, r
    );
    let t0 = cntvct();
    let mut alive = false;
    while cntvct() - t0 < 2 * cntfrq() as u64 {
        if unsafe { read_volatile(addr_of_mut!(SEC_ALIVE)) } == 0xA11C_0001 {
            alive = true;
            break;
        }
        unsafe { asm!("wfe") };
    }
    unsafe { asm!("dmb") };
    let info = unsafe { *addr_of_mut!(SEC_INFO) };
    println!(
        "secondary alive={} after {} ticks: ctx={:08x} entryCPSR={:08x} MPIDR={:08x} SCTLR {:08x}->{:08x} ACTLR {:08x}->{:08x} TTBR0={:08x} TTBCR={:x} DACR={:x} CONTEXTIDR={:x}",
        alive,
        cntvct() - t0,
        info[0],
        info[1],
        info[2],
        info[3],
        info[4],
        info[5],
        info[6],
        info[7],
        info[8],
        info[9] >> 16,
        info[9] & 0xFFFF
    );
    println!(
        "AFFINITY_INFO(1) after CPU_ON: {:?} (0=ON)",
        call(PSCI_AFFINITY_INFO, 1, 0, 0)
    );
    println!(
        "CPU_ON again (already on): {:?} (-4=ALREADY_ON)",
        call(PSCI_CPU_ON, 1, entry, ctxid)
    );
    check("PSCI_VERSION via HVC works", v_hvc.is_ok());
    check("CPU_ON returned SUCCESS (0)", r == Ok(0));
    check(
        "secondary ran: alive flag, ctx id in r0, MPIDR aff0=1",
        alive && info[0] == ctxid && info[2] & 0xFF == 1,
    );
    check(
        "secondary MMU on with same TTBR0/TTBCR/DACR/ASID",
        info[4] & 1 == 1
            && info[7] == read_ttbr0()
            && info[8] == TTBCR_V
            && info[9] == (DACR_V << 16 | ASID),
    );
    if !alive {
        println!("SUMMARY: secondary did not start; TLB test skipped");
        semihosting::process::exit(99);
    }

    // ---------------- Q2: TLB maintenance scope
    println!(
        "\n--- Q2: TLB maintenance scope (X={:08x} -> A={:08x} [{:08x}] / B={:08x} [{:08x}], ASID {})",
        VA_X, FRAME_A, VAL_A, FRAME_B, VAL_B, ASID
    );
    let ops: &[(&str, fn())] = &[
        ("none (control: no TLBI at all)", || {
            dsb();
            isb();
        }),
        ("core0 TLBIMVA   c8,c7,1 (local)", || tlbimva(VA_X | ASID)),
        ("core0 TLBIMVAIS c8,c3,1", || tlbimvais(VA_X | ASID)),
        ("core0 TLBIMVAA  c8,c7,3 (local)", || tlbimvaa(VA_X)),
        ("core0 TLBIMVAAIS c8,c3,3", || tlbimvaais(VA_X)),
        ("core0 TLBIALL   c8,c7,0 (local)", || tlbiall()),
        ("core0 TLBIALLIS c8,c3,0", || tlbiallis()),
        ("core0 TLBIASID  c8,c7,2 (local)", || tlbiasid(ASID)),
        ("core0 TLBIASIDIS c8,c3,2", || tlbiasidis(ASID)),
        ("core1 itself TLBIMVA (local on core1)", || {
            send(CMD_LOCAL_TLBIMVA);
        }),
    ];
    let mut results = [(0u32, 0u32, 0u32, 0u32, 0u32); 10];
    for (i, (name, op)) in ops.iter().enumerate() {
        set_pte(FRAME_A);
        tlbiall();
        let ok1 = send(CMD_PRIME);
        let p1 = res(0);
        let p0 = rd(VA_X); // core 0 primes too
        set_pte(FRAME_B);
        op();
        let c0 = rd(VA_X);
        let ok2 = send(CMD_PROBE);
        let (c1, par, c1b) = (res(0), res(1), res(2));
        results[i] = (c0, c1, par, c1b, (ok1 && ok2) as u32);
        println!(
            "{:<40} prime c0={:08x} c1={:08x} | after: core0 {:08x} {:<8} core1 {:08x} {:<8} core1 ATS1CPR PA={:08x} core1 re-read {:08x}{}",
            name,
            p0,
            p1,
            c0,
            ab(c0),
            c1,
            ab(c1),
            par_pa(par),
            c1b,
            if ok1 && ok2 { "" } else { " MAILBOX TIMEOUT" }
        );
        if p0 != VAL_A || p1 != VAL_A {
            println!("   (priming did not read A!)");
        }
    }
    let stale1 = |i: usize| results[i].1 == VAL_A;
    let fresh1 = |i: usize| results[i].1 == VAL_B;
    check(
        "control: without TLBI core1 still sees A (test is sensitive)",
        stale1(0),
    );
    check(
        "QEMU: local TLBIMVA on core0 does NOT reach core1 (stale A)",
        stale1(1),
    );
    check(
        "local TLBIMVA on core0 does refresh core0 (B)",
        results[1].0 == VAL_B,
    );
    check("TLBIMVAIS on core0 reaches core1 (B)", fresh1(2));
    check(
        "QEMU: local TLBIMVAA does NOT reach core1 (stale A)",
        stale1(3),
    );
    check("TLBIMVAAIS reaches core1 (B)", fresh1(4));
    check("TLBIALLIS reaches core1 (B)", fresh1(6));
    check("TLBIASIDIS reaches core1 (B)", fresh1(8));
    check("core1's own local TLBIMVA refreshes core1 (B)", fresh1(9));
    check(
        "core1 ATS1CPR in stale case gives PA of B (fresh walk)",
        par_pa(results[1].2) == FRAME_B,
    );
    check(
        "core1 re-read after ATS still stale A (ATS neither fills nor flushes TLB)",
        results[1].3 == VAL_A,
    );

    let (p, f) = unsafe { (PASSES, FAILS) };
    println!(
        "\nSUMMARY: Q1 PSCI CPU_ON via {}: {} (version {:x?}); Q2 core1 after core0 local TLBIMVA: {} / TLBIMVAIS: {} / TLBIMVAA: {} / TLBIMVAAIS: {}; core1 ATS1CPR in stale case PA={:08x}; ACTLR.SMP {}; {} pass {} fail",
        conduit,
        if r == Ok(0) && alive { "yes" } else { "no" },
        v_hvc.map(|v| v as u32),
        ab(results[1].1),
        ab(results[2].1),
        ab(results[3].1),
        ab(results[4].1),
        par_pa(results[1].2),
        if unsafe { SET_SMP_BIT } == 0 {
            "not set"
        } else {
            "set"
        },
        p,
        f
    );
    semihosting::process::exit(f as i32)
}
