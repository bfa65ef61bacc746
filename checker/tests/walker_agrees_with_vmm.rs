//! The vmm's page tables, walked by the reference model's independent ARMv7 walker, grant
//! exactly what the vmm's own mapping attributes promise, page by page, for PL0 and PL1 reads,
//! writes and fetches: the first differential check between the two crates.

use proptest::prelude::*;
use reference_model::armv7::{AccessKind, Privilege, Registers, walk};
use vmm::addr::{PageRange, PhysAddr, PhysFrame, VirtAddr, VirtPage};
use vmm::arch::armv7::{ArchMmu, AsidAllocator, MappingAttrs, MappingFlags, MemoryType};
use vmm::machine::HostMachine;
use vmm::phys::FrameAllocator;

#[derive(Clone, Debug)]
enum Op {
    Map {
        page: u32,
        count: u32,
        frame: u32,
        flags: u8,
        kernel: bool,
    },
    Unmap {
        page: u32,
        count: u32,
        kernel: bool,
    },
    Protect {
        page: u32,
        count: u32,
        flags: u8,
        kernel: bool,
    },
}

const USER_AREA: u32 = 0x1F800; // page numbers
const KERNEL_AREA: u32 = 0xC0000;

fn op() -> impl Strategy<Value = Op> {
    let page = (0..2048u32, any::<bool>());
    let count = prop_oneof![1..8u32, 250..300u32];
    prop_oneof![
        (
            page.clone(),
            count.clone(),
            prop_oneof![0..4096u32, (0..8u32).prop_map(|s| s * 256)],
            0..16u8
        )
            .prop_map(|((p, k), count, frame, flags)| Op::Map {
                page: p,
                count,
                frame: 0x60000 + frame,
                flags,
                kernel: k
            }),
        (page.clone(), count.clone()).prop_map(|((p, k), count)| Op::Unmap {
            page: p,
            count,
            kernel: k
        }),
        (page, count, 0..16u8).prop_map(|((p, k), count, flags)| Op::Protect {
            page: p,
            count,
            flags,
            kernel: k
        }),
    ]
}

/// What the vmm's attributes promise for one access, in ARM terms.
fn promised(attrs: MappingAttrs, access: AccessKind, privilege: Privilege) -> bool {
    let f = attrs.flags.normalized();
    let user_ok = privilege == Privilege::Pl1 || f.contains(MappingFlags::USER);
    user_ok
        && match access {
            AccessKind::Read => f.contains(MappingFlags::READ),
            AccessKind::Write => f.contains(MappingFlags::WRITE),
            AccessKind::Execute => f.contains(MappingFlags::EXECUTE),
        }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn reference_walker_agrees_with_vmm_tables(ops in prop::collection::vec(op(), 1..30)) {
        let mut m = HostMachine::default();
        let mut frames = FrameAllocator::new(PhysFrame::from_start(PhysAddr::new(0x4000_0000)).unwrap(), 256);
        let mut asids = AsidAllocator::new();
        let mut kernel = ArchMmu::new_kernel(&mut m, &mut frames, vmm::arch::armv7::TlbReach::Local).unwrap();
        let mut user = ArchMmu::new_user(&mut m, &mut frames, &mut asids).unwrap();
        let mut touched: Vec<(bool, u32)> = Vec::new();
        for op in &ops {
            let (kernel_op, page, count) = match *op {
                Op::Map { page, count, kernel, .. } | Op::Unmap { page, count, kernel } | Op::Protect { page, count, kernel, .. } => (kernel, page, count),
            };
            let base = if kernel_op { KERNEL_AREA } else { USER_AREA };
            let range = PageRange::new(VirtPage::from_number(base + page).unwrap(), count).unwrap();
            let mmu = if kernel_op { &mut kernel } else { &mut user };
            let attrs = |flags: u8| {
                let mut f = MappingFlags::from_bits_truncate(flags);
                f.set(MappingFlags::USER, !kernel_op);
                MappingAttrs { flags: f, memory: if flags & 8 != 0 { MemoryType::Device } else { MemoryType::Cached } }
            };
            let _ = match *op {
                Op::Map { frame, flags, .. } => mmu.map(&mut m, &mut frames, range, PhysFrame::from_number(frame).unwrap(), attrs(flags)).map(|_| 0),
                Op::Unmap { .. } => mmu.unmap(&mut m, &mut frames, range),
                Op::Protect { flags, .. } => mmu.protect(&mut m, &mut frames, range, attrs(flags)).map(|_| 0),
            };
            touched.extend(range.pages().map(|p| (kernel_op, p.number())));
        }
        let regs = Registers {
            ttbr0: user.l1_table().as_u32(),
            ttbr1: kernel.l1_table().as_u32(),
            ttbcr_n: 2,
            dacr: 0b01,
        };
        touched.sort_unstable();
        touched.dedup();
        for &(kernel_op, page) in &touched {
            let va = VirtPage::from_number(page).unwrap().start();
            let mmu = if kernel_op { &kernel } else { &user };
            let t = mmu.query(&mut m, VirtAddr::new(va.as_u32() + 0x7F0)).unwrap();
            for privilege in [Privilege::Pl0, Privilege::Pl1] {
                for access in [AccessKind::Read, AccessKind::Write, AccessKind::Execute] {
                    let walked = walk(|a| m.peek_word(PhysAddr::new(a)), regs, va.as_u32() + 0x7F0, access, privilege);
                    let want = t.map(|t| promised(t.attrs, access, privilege)).unwrap_or(false);
                    prop_assert_eq!(walked.is_ok(), want, "{:?} {:?} at {:#x}: walker {:?}, vmm {:?}", privilege, access, va.as_u32(), walked, t);
                    if let (Ok(w), Some(t)) = (walked, t) {
                        prop_assert_eq!(w.pa, t.frame.start().as_u32() + 0x7F0);
                        prop_assert_eq!(w.not_global, !kernel_op, "nG at {:#x}", va.as_u32());
                        prop_assert_eq!(w.domain, 0);
                    }
                }
            }
        }
    }
}
