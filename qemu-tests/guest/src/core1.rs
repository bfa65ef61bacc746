//! The second core. It is started when a world of two CPUs needs it (PSCI `CPU_ON` through
//! HVC, as `cargo xtask qemu-platform` checks), turns its MMU on with core 0's registers, and
//! then runs what core 0 hands it ([`run`]), one call at a time, while core 0 waits: CPU 1's
//! accesses, its space switches, and the priming and probing of pages through its own TLB.
//! At the end of the world it powers itself off ([`stop`], PSCI `CPU_OFF`).
//!
//! The two cores never run guest code at the same time, so the state the exception handlers
//! share (`EXPECT_ABORT`, ...) and the heap need no more than the hand-over's barriers.

use core::arch::asm;
use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use crate::cp15;

/// PSCI `CPU_OFF`, `CPU_ON` and `AFFINITY_INFO` (SMC32).
const PSCI_CPU_OFF: u32 = 0x8400_0002;
const PSCI_CPU_ON: u32 = 0x8400_0003;
const PSCI_AFFINITY_INFO: u32 = 0x8400_0004;
/// `AFFINITY_INFO`'s answer for a core that is off.
const AFFINITY_OFF: i32 = 1;
/// Core 1's MPIDR affinity.
const CORE1: u32 = 1;

/// Whether core 1 is up: 0 no, 1 started and waiting for work.
static ALIVE: AtomicU32 = AtomicU32::new(0);
/// The number of the last call core 0 posted.
static POSTED: AtomicU32 = AtomicU32::new(0);
/// The number of the last call core 1 finished.
static FINISHED: AtomicU32 = AtomicU32::new(0);
/// The posted request: the address of a `&mut dyn FnMut()` on core 0's stack, or 0 to power
/// off ([`stop`]).
static CALL: AtomicUsize = AtomicUsize::new(0);
/// The translation registers core 1 starts with: TTBCR, DACR, TTBR0, TTBR1, SCTLR.
static mut START_REGISTERS: [u32; 5] = [0; 5];

unsafe extern "C" {
    fn _secondary_entry();
}

/// Sends an event to the other core (it may be waiting in WFE).
fn signal() {
    // SAFETY: barriers and an event; no memory is touched.
    unsafe { asm!("dsb", "sev", options(nostack)) }
}

/// Waits for an event (or returns at once: WFE may wake for any reason).
fn wait() {
    // SAFETY: waits for an event; no memory is touched.
    unsafe { asm!("wfe", options(nostack)) }
}

/// An SMCCC call through HVC #0 (QEMU's PSCI firmware): its result.
fn psci(function: u32, a1: u32, a2: u32, a3: u32) -> i32 {
    let result: i32;
    // SAFETY: QEMU's PSCI firmware answers the call and returns; r0-r3 and r12 may change.
    // `CPU_ON` starts core 1 at a physical address with its MMU off (the guest runs at
    // VA = PA); `CPU_OFF`, made by core 1 itself, does not return.
    unsafe {
        asm!(".arch_extension virt", "hvc #0",
             inout("r0") function => result, inout("r1") a1 => _,
             inout("r2") a2 => _, inout("r3") a3 => _, out("r12") _, options(nostack));
    }
    result
}

/// Starts core 1 when it is not up yet. The guest exits with status 2 when PSCI refuses.
fn ensure_started() {
    if ALIVE.load(Ordering::Acquire) == 1 {
        return;
    }
    // SAFETY: core 1 is not running: nothing else reads these registers' copy yet.
    unsafe {
        write_volatile(
            addr_of_mut!(START_REGISTERS),
            [
                2,
                crate::boot::DACR,
                crate::boot::empty_user_table(),
                cp15::read_ttbr1(),
                cp15::read_sctlr(),
            ],
        );
    }
    // Core 1 reads them with its MMU and caches off: clean them to the point of coherency.
    let at = addr_of!(START_REGISTERS) as u32;
    for line in [at, at + 19] {
        // SAFETY: DCCMVAC writes a cache line back to memory; nothing changes for the guest.
        unsafe { asm!("mcr p15, 0, {0}, c7, c10, 1", in(reg) line, options(nostack)) };
    }
    cp15::dsb();
    set_smp_bit();
    let entry = _secondary_entry as *const () as usize as u32;
    let result = psci(PSCI_CPU_ON, CORE1, entry, 0);
    if result != 0 {
        semihosting::eprintln!("GUEST ERROR: PSCI CPU_ON of core 1 returned {result}");
        semihosting::process::exit(2);
    }
    while ALIVE.load(Ordering::Acquire) != 1 {
        wait();
    }
}

/// ACTLR.SMP: this core takes part in coherency and broadcast maintenance (a real Cortex-A7
/// needs it before its MMU and caches are on; QEMU ignores it).
fn set_smp_bit() {
    // SAFETY: ACTLR.SMP only joins the core to the coherency domain.
    unsafe {
        asm!(
            "mrc p15, 0, {v}, c1, c0, 1",
            "orr {v}, {v}, #0x40",
            "mcr p15, 0, {v}, c1, c0, 1",
            "isb",
            v = out(reg) _,
            options(nostack)
        );
    }
}

/// Runs `call` on core 1 (started first if need be) and returns when it has returned.
pub fn run(call: &mut dyn FnMut()) {
    ensure_started();
    let mut call: &mut dyn FnMut() = call;
    CALL.store(addr_of_mut!(call) as usize, Ordering::Release);
    post_and_wait();
}

/// Posts the next request to core 1 and waits until it is done.
fn post_and_wait() {
    let n = POSTED.load(Ordering::Relaxed).wrapping_add(1);
    POSTED.store(n, Ordering::Release);
    signal();
    while FINISHED.load(Ordering::Acquire) != n {
        wait();
    }
}

/// Powers core 1 off (PSCI `CPU_OFF`, made by core 1) and waits until PSCI reports it off;
/// the next [`run`] starts it again. Nothing happens when it is not up.
pub fn stop() {
    if ALIVE.load(Ordering::Acquire) != 1 {
        return;
    }
    CALL.store(0, Ordering::Release);
    post_and_wait();
    while psci(PSCI_AFFINITY_INFO, CORE1, 0, 0) != AFFINITY_OFF {
        core::hint::spin_loop();
    }
}

/// Core 1's Rust entry (from `_secondary_entry`, on its own stacks, vectors set).
#[unsafe(no_mangle)]
extern "C" fn core1_main() -> ! {
    set_smp_bit();
    // SAFETY: core 0 wrote these before starting this core, and waits for `ALIVE`.
    let [ttbcr, dacr, ttbr0, ttbr1, sctlr] = unsafe { read_volatile(addr_of!(START_REGISTERS)) };
    // SAFETY: the same translation regime as core 0's (the guest's tables map the guest at
    // VA = PA), so turning the MMU on changes no address this core uses.
    unsafe {
        cp15::write_ttbcr(ttbcr);
        cp15::write_dacr(dacr);
        cp15::write_contextidr(0);
        cp15::write_ttbr0(ttbr0);
        cp15::write_ttbr1(ttbr1);
    }
    cp15::tlbiall(0);
    cp15::dsb();
    cp15::isb();
    // SAFETY: as above.
    unsafe { cp15::write_sctlr(sctlr) };
    cp15::isb();
    // Requests before this start were answered by an earlier one (or there were none).
    let mut done = POSTED.load(Ordering::Acquire);
    ALIVE.store(1, Ordering::Release);
    signal();
    loop {
        let n = POSTED.load(Ordering::Acquire);
        if n == done {
            wait();
            continue;
        }
        let at = CALL.load(Ordering::Acquire) as *mut &mut dyn FnMut();
        if at.is_null() {
            ALIVE.store(0, Ordering::Release);
            FINISHED.store(n, Ordering::Release);
            signal();
            let result = psci(PSCI_CPU_OFF, 0, 0, 0);
            semihosting::eprintln!("GUEST ERROR: PSCI CPU_OFF of core 1 returned {result}");
            semihosting::process::exit(2);
        }
        // SAFETY: core 0 posted the address of a live `&mut dyn FnMut()` on its stack and
        // waits, touching nothing, until `FINISHED` says the call returned.
        unsafe { (*at)() };
        done = n;
        FINISHED.store(n, Ordering::Release);
        signal();
    }
}
