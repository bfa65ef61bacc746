//! The walker and the TLB model on hand-built tables (values computed from the ARM ARM, not
//! from any encoder).

use std::collections::HashMap;

use reference_model::armv7::{AccessKind, Fault, FaultKind, Privilege, Registers, Tlb, walk};

const R: AccessKind = AccessKind::Read;
const W: AccessKind = AccessKind::Write;
const X: AccessKind = AccessKind::Execute;
const PL0: Privilege = Privilege::Pl0;
const PL1: Privilege = Privilege::Pl1;

/// Memory as words, with TTBR0 at 0x4000_0000 (4 KiB, N = 2) and TTBR1 at 0x4000_4000.
struct Mem(HashMap<u32, u32>);

impl Mem {
    fn new() -> Self {
        Self(HashMap::new())
    }
    fn set(&mut self, addr: u32, word: u32) {
        self.0.insert(addr, word);
    }
    fn read(&self) -> impl FnMut(u32) -> Option<u32> + '_ {
        |a| {
            (0x4000_0000..0x5000_0000)
                .contains(&a)
                .then(|| self.0.get(&a).copied().unwrap_or(0))
        }
    }
}

fn regs() -> Registers {
    Registers {
        ttbr0: 0x4000_0000 | 0x4A,
        ttbr1: 0x4000_4000,
        ttbcr_n: 2,
        dacr: 0b01,
    }
}

fn fault(kind: FaultKind, level: u8) -> Fault {
    Fault { kind, level }
}

#[test]
fn ttbcr_n_splits_between_ttbr0_and_ttbr1() {
    let mut m = Mem::new();
    // TTBR0 entry for VA 0x1230_0000 (index 0x123), TTBR1 entry for 0x8000_0000 (index 0x800).
    m.set(0x4000_0000 + 0x123 * 4, 0x5000_0000 | (0b011 << 10) | 0b10);
    m.set(0x4000_4000 + 0x800 * 4, 0x6000_0000 | (0b001 << 10) | 0b10);
    let t = walk(m.read(), regs(), 0x1234_5678, R, PL0).unwrap();
    assert_eq!((t.pa, t.block_size), (0x5004_5678, 0x10_0000));
    let t = walk(m.read(), regs(), 0x8000_0010, W, PL1).unwrap();
    assert_eq!(t.pa, 0x6000_0010);
    // VA >= 1 GiB never reads TTBR0's table.
    assert_eq!(
        walk(m.read(), regs(), 0x4000_0000, R, PL1),
        Err(fault(FaultKind::Translation, 1))
    );
    // With N = 0 everything goes through TTBR0 (a 16 KiB table).
    let n0 = Registers {
        ttbcr_n: 0,
        ..regs()
    };
    assert_eq!(
        walk(m.read(), n0, 0x1230_0000, R, PL1).unwrap().pa,
        0x5000_0000
    );
}

#[test]
fn small_and_large_pages_through_a_page_table() {
    let mut m = Mem::new();
    let table = 0x4000_1C00; // a 1 KiB aligned L2 table
    m.set(0x4000_0000 + 0x010 * 4, table | 0b01);
    // Small page at VA 0x0100_3000: AP=011, nG, XN.
    m.set(table + 3 * 4, 0x4800_5000 | (1 << 11) | (0b11 << 4) | 0b11);
    // Large page covering VA 0x0101_0000..0x0102_0000 (16 replicated entries): AP=111.
    for i in 16..32 {
        m.set(table + i * 4, 0x4810_0000 | (1 << 9) | (0b11 << 4) | 0b01);
    }
    let t = walk(m.read(), regs(), 0x0100_3ABC, W, PL0).unwrap();
    assert_eq!(
        (t.pa, t.block_size, t.not_global, t.xn),
        (0x4800_5ABC, 0x1000, true, true)
    );
    assert_eq!(
        walk(m.read(), regs(), 0x0100_3000, X, PL0),
        Err(fault(FaultKind::Permission, 2))
    );
    let t = walk(m.read(), regs(), 0x0101_8004, R, PL0).unwrap();
    assert_eq!(
        (t.pa, t.block_va, t.block_size),
        (0x4810_8004, 0x0101_0000, 0x1_0000)
    );
    assert_eq!(
        walk(m.read(), regs(), 0x0101_8004, W, PL1),
        Err(fault(FaultKind::Permission, 2))
    );
    assert_eq!(
        walk(m.read(), regs(), 0x0100_4000, R, PL1),
        Err(fault(FaultKind::Translation, 2))
    );
}

/// Table B3-8 (AFE = 0), every AP value at both privilege levels.
#[test]
fn access_permission_matrix() {
    let expect = [
        // AP: (PL1 R, PL1 W, PL0 R, PL0 W)
        (0b000, [false, false, false, false]),
        (0b001, [true, true, false, false]),
        (0b010, [true, true, true, false]),
        (0b011, [true, true, true, true]),
        (0b100, [false, false, false, false]),
        (0b101, [true, false, false, false]),
        (0b110, [true, false, true, false]),
        (0b111, [true, false, true, false]),
    ];
    for (ap, want) in expect {
        let mut m = Mem::new();
        let ap2 = (ap >> 2) & 1;
        m.set(
            0x4000_0000 + 0x100 * 4,
            0x5000_0000 | (ap2 << 15) | ((ap & 3) << 10) | 0b10,
        );
        let got: Vec<bool> = [(PL1, R), (PL1, W), (PL0, R), (PL0, W)]
            .iter()
            .map(|&(p, a)| walk(m.read(), regs(), 0x1000_0000, a, p).is_ok())
            .collect();
        assert_eq!(got, want, "AP {ap:03b}");
    }
}

#[test]
fn domains_and_execute_never() {
    let mut m = Mem::new();
    // Section in domain 3, AP=011, XN clear, PXN set.
    m.set(
        0x4000_0000 + 0x200 * 4,
        0x5000_0000 | (3 << 5) | (0b11 << 10) | 0b11,
    );
    let dacr = |d3: u32| Registers {
        dacr: 0b01 | (d3 << 6),
        ..regs()
    };
    assert_eq!(
        walk(m.read(), dacr(0b00), 0x2000_0000, R, PL1),
        Err(fault(FaultKind::Domain, 1))
    );
    assert!(
        walk(m.read(), dacr(0b01), 0x2000_0000, X, PL0).is_ok(),
        "XN clear: PL0 may execute"
    );
    assert_eq!(
        walk(m.read(), dacr(0b01), 0x2000_0000, X, PL1),
        Err(fault(FaultKind::Permission, 1)),
        "PXN"
    );
    // Manager: no permission checks at all.
    m.set(0x4000_0000 + 0x201 * 4, 0x5010_0000 | (3 << 5) | 0b10);
    assert!(walk(m.read(), dacr(0b11), 0x2010_0000, W, PL0).is_ok());
    assert_eq!(
        walk(m.read(), dacr(0b01), 0x2010_0000, R, PL1),
        Err(fault(FaultKind::Permission, 1))
    );
}

#[test]
fn supersections_and_missing_memory() {
    let mut m = Mem::new();
    // Supersection: 16 replicated L1 entries for VA 0x2000_0000..0x2100_0000.
    for i in 0..16 {
        m.set(
            0x4000_0000 + (0x200 + i) * 4,
            0x4500_0000 | (1 << 18) | (0b01 << 10) | 0b10,
        );
    }
    let t = walk(m.read(), regs(), 0x20AB_CDEF, W, PL1).unwrap();
    assert_eq!((t.pa, t.block_size), (0x45AB_CDEF, 0x100_0000));
    // An L2 table pointer into nothing.
    m.set(0x4000_0000 + 0x300 * 4, 0x7000_0000 | 0b01);
    assert_eq!(
        walk(m.read(), regs(), 0x3000_0000, R, PL1),
        Err(fault(FaultKind::External, 2))
    );
}

#[test]
fn the_tlb_keeps_stale_entries_until_invalidated() {
    let mut m = Mem::new();
    m.set(
        0x4000_0000 + 0x100 * 4,
        0x5000_0000 | (1 << 17) | (0b11 << 10) | 0b10,
    );
    m.set(0x4000_4000 + 0x400 * 4, 0x6000_0000 | (0b01 << 10) | 0b10); // global kernel section
    let mut tlb = Tlb::default();
    let user = walk(m.read(), regs(), 0x1000_0000, W, PL0).unwrap();
    let kernel = walk(m.read(), regs(), 0x4000_0000, R, PL1).unwrap();
    tlb.fill(user, 5);
    tlb.fill(kernel, 5);
    // The table entry goes away; the TLB still serves the old translation.
    m.set(0x4000_0000 + 0x100 * 4, 0);
    assert_eq!(
        tlb.access(regs(), 0x1000_0004, 5, W, PL0),
        Some(Ok(0x5000_0004))
    );
    assert_eq!(
        tlb.access(regs(), 0x1000_0004, 6, W, PL0),
        None,
        "other ASID misses"
    );
    assert_eq!(
        tlb.access(regs(), 0x4000_0008, 9, R, PL1),
        Some(Ok(0x6000_0008)),
        "global hits any ASID"
    );
    tlb.invalidate_mva(0x1000_0000, 6);
    assert!(
        tlb.lookup(0x1000_0000, 5).is_some(),
        "TLBIMVA with another ASID keeps it"
    );
    tlb.invalidate_mva(0x100F_F000, 5);
    assert!(
        tlb.lookup(0x1000_0000, 5).is_none(),
        "any VA in the section drops it"
    );
    tlb.fill(user, 5);
    tlb.invalidate_asid(5);
    assert!(tlb.lookup(0x1000_0000, 5).is_none());
    assert!(
        tlb.lookup(0x4000_0000, 5).is_some(),
        "TLBIASID keeps global entries"
    );
    tlb.invalidate_mva(0x4000_0000, 3);
    assert!(
        tlb.lookup(0x4000_0000, 5).is_none(),
        "TLBIMVA drops global entries under any ASID"
    );
    tlb.fill(kernel, 1);
    tlb.invalidate_mva_all_asids(0x4000_1000);
    assert!(tlb.entries().is_empty());
}
