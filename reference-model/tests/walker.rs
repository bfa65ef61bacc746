//! The walker and the TLB model on hand-built tables (values computed from the ARM ARM, not
//! from any encoder).

use std::collections::HashMap;

use reference_model::armv7::{
    AccessKind, Cacheability, EXECUTE, Fault, FaultKind, MemoryType, Permissions, Privilege, READ,
    Registers, Tlb, Translation, WRITE, permissions, translate, translations, walk,
};

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

/// Table B3-10 (TRE = 0): the memory type of each TEX, C, B, read from where each descriptor
/// type keeps them (TEX at 14:12 in sections and large pages, 8:6 in small pages).
#[test]
fn memory_types_from_tex_c_b_and_s() {
    use Cacheability::*;
    let normal = |inner, outer, shareable| MemoryType::Normal {
        inner,
        outer,
        shareable,
    };
    let cases = [
        ((0b000, 0, 0, 0), MemoryType::StronglyOrdered),
        ((0b000, 0, 1, 0), MemoryType::Device { shareable: true }),
        ((0b000, 1, 0, 1), normal(WriteThrough, WriteThrough, true)),
        (
            (0b000, 1, 1, 0),
            normal(WriteBackNoWriteAllocate, WriteBackNoWriteAllocate, false),
        ),
        ((0b001, 0, 0, 1), normal(NonCacheable, NonCacheable, true)),
        ((0b001, 1, 1, 1), MemoryType::NORMAL_WBWA_SHAREABLE),
        ((0b010, 0, 0, 1), MemoryType::Device { shareable: false }),
        ((0b001, 0, 1, 0), MemoryType::Reserved(0b001, false, true)),
        ((0b011, 1, 1, 0), MemoryType::Reserved(0b011, true, true)),
        // TEX[2] = 1: outer policy TEX[1:0], inner policy C,B.
        (
            (0b110, 0, 1, 1),
            normal(WriteBackWriteAllocate, WriteThrough, true),
        ),
        (
            (0b101, 1, 1, 0),
            normal(WriteBackNoWriteAllocate, WriteBackWriteAllocate, false),
        ),
    ];
    for ((tex, c, b, s), want) in cases {
        let (tex, c, b, s) = (tex as u32, c as u32, b as u32, s as u32);
        let mut m = Mem::new();
        let table = 0x4000_1C00;
        // Section at 0x0200_0000, small page at 0x0100_0000, large page at 0x0101_0000.
        let cb = (c << 3) | (b << 2);
        m.set(
            0x4000_0000 + 0x020 * 4,
            0x5000_0000 | (s << 16) | (tex << 12) | (0b11 << 10) | cb | 0b10,
        );
        m.set(0x4000_0000 + 0x010 * 4, table | 0b01);
        m.set(
            table,
            0x4800_0000 | (s << 10) | (tex << 6) | (0b11 << 4) | cb | 0b10,
        );
        for i in 16..32 {
            m.set(
                table + i * 4,
                0x4810_0000 | (tex << 12) | (s << 10) | (0b11 << 4) | cb | 0b01,
            );
        }
        for va in [0x0200_0000, 0x0100_0000, 0x0101_0000] {
            let t = translate(&mut m.read(), regs(), va).unwrap();
            assert_eq!(
                t.memory_type(),
                want,
                "TEX {tex:03b} C {c} B {b} S {s} at {va:#x}"
            );
        }
    }
}

/// The sweep gives exactly what a walk of each page gives, one entry per valid 4 KiB page.
#[test]
fn translations_agree_with_a_walk_of_every_page() {
    let mut m = Mem::new();
    let table = 0x4000_1C00;
    m.set(0x4000_0000 + 0x010 * 4, table | 0b01);
    m.set(table + 3 * 4, 0x4800_5000 | (1 << 11) | (0b11 << 4) | 0b11);
    m.set(table + 255 * 4, 0x4800_6000 | (0b10 << 4) | 0b10);
    for i in 16..32 {
        m.set(table + i * 4, 0x4810_0000 | (1 << 9) | (0b11 << 4) | 0b01);
    }
    m.set(0x4000_0000 + 0x011 * 4, 0x5000_0000 | (0b11 << 10) | 0b10);
    let (first, pages) = (0x00FF_0000u32, 0x300u32);
    let mut swept: Vec<(u32, Translation)> = Vec::new();
    translations(&mut m.read(), regs(), first, pages, |va, t| {
        swept.push((va, t))
    });
    let walked: Vec<(u32, Translation)> = (0..pages)
        .map(|i| first + i * 0x1000)
        .filter_map(|va| translate(&mut m.read(), regs(), va).ok().map(|t| (va, t)))
        .collect();
    assert_eq!(swept, walked);
    assert_eq!(
        swept.len(),
        1 + 1 + 16 + 256,
        "two small pages, a large page, a section"
    );
    // A range ending inside the top MiB stops at 4 GiB.
    let mut n = 0;
    translations(&mut m.read(), regs(), 0xFFFF_F000, 16, |_, _| n += 1);
    assert_eq!(n, 0);
}

/// Permissions summarise the checks of every access kind at both privilege levels.
#[test]
fn permissions_summarise_every_access() {
    let mut m = Mem::new();
    let table = 0x4000_1C00;
    m.set(0x4000_0000 + 0x010 * 4, table | 0b01);
    // AP=011 executable; AP=111 (read-only) XN; AP=001 (kernel only) executable.
    m.set(table, 0x4800_0000 | (0b11 << 4) | 0b10);
    m.set(table + 4, 0x4800_1000 | (1 << 9) | (0b11 << 4) | 0b11);
    m.set(table + 8, 0x4800_2000 | (0b01 << 4) | 0b10);
    let rights = |va| {
        let t = translate(&mut m.read(), regs(), va).unwrap();
        permissions(regs(), &t)
    };
    let all = READ | WRITE | EXECUTE;
    assert_eq!(rights(0x0100_0000), Permissions { pl0: all, pl1: all });
    assert_eq!(
        rights(0x0100_1000),
        Permissions {
            pl0: READ,
            pl1: READ
        }
    );
    assert_eq!(rights(0x0100_2000), Permissions { pl0: 0, pl1: all });
    // Every right agrees with a walk.
    for va in [0x0100_0000, 0x0100_1000, 0x0100_2000] {
        let p = rights(va);
        for (privilege, have) in [(PL0, p.pl0), (PL1, p.pl1)] {
            for (kind, bit) in [(R, READ), (W, WRITE), (X, EXECUTE)] {
                assert_eq!(
                    walk(m.read(), regs(), va, kind, privilege).is_ok(),
                    have & bit != 0
                );
            }
        }
    }
}
