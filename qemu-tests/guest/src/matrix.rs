//! The descriptor matrix: for every case the host sends, the guest installs the case's table
//! words in the matrix tables (TTBR0), its DACR, invalidates the whole TLB, and records what
//! QEMU's MMU says about the case's address: ATS at PL0 and PL1, read and write, and an
//! instruction fetch at each level. The host compares with the reference walker.

use alloc::vec::Vec;
use core::ptr::write_volatile;

use op_driver::guest::{
    EXEC_PL0, EXEC_PL1, GUEST_DOMAIN, MATRIX_L1, MATRIX_L2, MATRIX_TARGETS, MatrixCase,
    MatrixDefect, MatrixResult, Probe,
};

use crate::boot;
use crate::cp15;
use crate::start::{FETCHED_INSTRUCTION, fetch_at};

/// Runs every case; returns the report's words.
pub fn run(defect: MatrixDefect, cases: &[MatrixCase]) -> Vec<u32> {
    // Whatever a case maps lies in MATRIX_TARGETS: filled with SVC, so every fetch that
    // reaches it ends at once, wherever in the range the MMU puts it.
    let mut a = MATRIX_TARGETS.start;
    while a < MATRIX_TARGETS.end {
        // SAFETY: RAM above the guest image, mapped at VA = PA for PL1 by the boot table; no
        // world runs in matrix mode, so nothing else uses it.
        unsafe { write_volatile(a as usize as *mut u32, FETCHED_INSTRUCTION) };
        a += 4;
    }
    cp15::sync_instructions();
    let mut out = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        install(case);
        let dacr = match defect {
            MatrixDefect::None => case.dacr,
            MatrixDefect::AllDomainsClient => 0x5555_5555,
        };
        // SAFETY: the guest's own domain stays client, so its code and data (TTBR1, the boot
        // table) stay mapped; TTBR0 covers only the case's address below 1 GiB.
        unsafe {
            cp15::write_dacr((dacr & !(0b11 << (2 * GUEST_DOMAIN))) | (0b01 << (2 * GUEST_DOMAIN)));
            cp15::write_ttbr0(MATRIX_L1);
        }
        cp15::tlbiall(0);
        cp15::dsb();
        cp15::isb();
        let ats = [
            cp15::ats1cur(case.va),
            cp15::ats1cuw(case.va),
            cp15::ats1cpr(case.va),
            cp15::ats1cpw(case.va),
        ];
        let mut fetches = Probe::default();
        fetches.set_access(EXEC_PL0, fetch_at(case.va, true));
        fetches.set_access(EXEC_PL1, fetch_at(case.va, false));
        // SAFETY: back to the boot state.
        unsafe { cp15::write_dacr(boot::DACR) };
        boot::use_boot_tables();
        MatrixResult {
            case: i as u32,
            ats,
            fetches: fetches.accesses,
        }
        .encode(&mut out);
    }
    out
}

/// Zeroes both matrix tables and writes the case's words (checked by `decode_matrix` to lie
/// in them).
fn install(case: &MatrixCase) {
    let zero = |base: u32, words: u32| {
        for i in 0..words {
            // SAFETY: the matrix tables, RAM above the guest image mapped at VA = PA for PL1
            // and used by nothing else in matrix mode.
            unsafe { write_volatile((base + 4 * i) as usize as *mut u32, 0) };
        }
    };
    zero(MATRIX_L1, 1024);
    zero(MATRIX_L2, 256);
    for &(pa, word) in &case.writes {
        // SAFETY: as above (`decode_matrix` refuses any other address).
        unsafe { write_volatile(pa as usize as *mut u32, word) };
    }
    cp15::dsb();
}
