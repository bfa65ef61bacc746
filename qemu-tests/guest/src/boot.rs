//! The guest's own tables, used before a world boots and between worlds: TTBR1 maps RAM at
//! VA = PA in sections (PL1 read/write, domain [`GUEST_DOMAIN`]), TTBR0 is an empty table. The
//! vmm's kernel table maps the same RAM the same way (in domain 0), so switching TTBR1
//! between them never unmaps the guest.

use core::ptr::addr_of;

use op_driver::guest::GUEST_DOMAIN;

use crate::cp15;

/// DACR outside matrix cases: domain 0 (the vmm's) and the guest's domain client.
pub const DACR: u32 = 0b01 | (0b01 << (2 * GUEST_DOMAIN));

/// RAM on `-M virt` with `-m 256M`.
const RAM_BASE: u32 = 0x4000_0000;
const RAM_MIB: u32 = 256;

#[repr(C, align(16384))]
struct KernelL1([u32; 4096]);
#[repr(C, align(4096))]
struct UserL1([u32; 1024]);

static mut BOOT_L1: KernelL1 = KernelL1([0; 4096]);
static EMPTY_USER_L1: UserL1 = UserL1([0; 1024]);

/// The empty TTBR0 table's address.
pub fn empty_user_table() -> u32 {
    addr_of!(EMPTY_USER_L1) as u32
}

/// Fills the boot table, sets TTBCR.N = 2, [`DACR`], and turns the MMU on.
pub fn enable_mmu() {
    for mib in 0..RAM_MIB {
        let pa = RAM_BASE + (mib << 20);
        // Section, AP = 01 (PL1 read/write), the guest's domain, TEX 001 C B (normal
        // write-back).
        let section = pa
            | (1 << 12)
            | (0b01 << 10)
            | (u32::from(GUEST_DOMAIN) << 5)
            | (1 << 3)
            | (1 << 2)
            | 0b10;
        // SAFETY: the table is only written here, before the MMU uses it.
        unsafe { (*core::ptr::addr_of_mut!(BOOT_L1)).0[(pa >> 20) as usize] = section };
    }
    cp15::dsb();
    // SAFETY: the MMU is still off: these only decide how the walks below go. N = 2 puts the
    // guest (at 0x4000_0000) under TTBR1; its domain client applies the boot table's AP bits.
    unsafe {
        cp15::write_ttbcr(2);
        cp15::write_dacr(DACR);
        cp15::write_contextidr(0);
    }
    use_boot_tables();
    // SAFETY: the boot table maps all RAM (the guest included) at VA = PA for PL1, so every
    // access after the MMU goes on reaches the same memory as before.
    unsafe { cp15::write_sctlr(cp15::read_sctlr() | 1) };
}

/// TTBR1 = the boot table, TTBR0 = the empty table, whole TLB invalidated.
pub fn use_boot_tables() {
    // SAFETY: the empty table maps nothing below 1 GiB, where the guest has nothing; the boot
    // table maps all RAM at VA = PA and is never changed after `enable_mmu` filled it.
    unsafe {
        cp15::write_ttbr0(empty_user_table());
        cp15::write_ttbr1(addr_of!(BOOT_L1) as u32);
    }
    cp15::tlbiall(0);
    cp15::dsb();
    cp15::isb();
}
