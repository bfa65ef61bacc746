//! The reference model and the vmm agree on every return value, region list and break over
//! random mmap/munmap/mprotect/brk sequences (the region level of the differential check).

use proptest::prelude::*;
use reference_model::model::{self, Model};
use vmm::machine::HostMachine;
use vmm::space::{RegionKind, SpaceId};
use vmm::{Layout, Vm};

#[derive(Clone, Debug)]
enum Op {
    Mmap {
        addr: u32,
        len: u32,
        prot: u32,
        flags: u32,
    },
    Munmap {
        addr: u32,
        len: u32,
    },
    Mprotect {
        addr: u32,
        len: u32,
        prot: u32,
    },
    Brk {
        addr: u32,
    },
}

/// Addresses near the interesting places (window edges, heap, mmap area), plus wild ones.
fn addr() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => (0..64u32).prop_map(|p| 0x1F80_0000 + p * 0x1000),
        3 => (0..16u32).prop_map(|p| 0x0FC0_0000 + p * 0x1000 + if p % 3 == 0 { 5 } else { 0 }),
        1 => (0..8u32).prop_map(|p| 0x0100_0000 - 0x2000 + p * 0x1000),
        1 => (0..8u32).prop_map(|p| 0x3F00_0000 - 0x4000 + p * 0x1000),
        1 => (0..8u32).prop_map(|p| 0x2740_0000 - 0x4000 + p * 0x1000),
        1 => any::<u32>(),
        1 => Just(0u32),
    ]
}

fn len() -> impl Strategy<Value = u32> {
    prop_oneof![
        (0..6u32).prop_map(|p| p * 0x1000),
        1..0x3000u32,
        Just(u32::MAX),
        Just(0x07C0_0000),
        any::<u32>()
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let flags = prop_oneof![
        4 => (0..4u32, any::<bool>(), any::<bool>()).prop_map(|(share, fixed, noreplace)| {
            share | 0x20 | if fixed { 0x10 } else { 0 } | if noreplace { 0x10_0000 } else { 0 }
        }),
        1 => any::<u32>(),
    ];
    let prot = prop_oneof![8 => 0..8u32, 1 => any::<u32>()];
    prop_oneof![
        4 => (addr(), len(), prot.clone(), flags).prop_map(|(addr, len, prot, flags)| Op::Mmap { addr, len, prot, flags }),
        2 => (addr(), len()).prop_map(|(addr, len)| Op::Munmap { addr, len }),
        2 => (addr(), len(), prot).prop_map(|(addr, len, prot)| Op::Mprotect { addr, len, prot }),
        2 => addr().prop_map(|addr| Op::Brk { addr }),
    ]
}

fn vmm_regions(vm: &Vm<HostMachine>, s: SpaceId) -> Vec<(u64, u64, u32, bool, bool)> {
    vm.space(s)
        .unwrap()
        .regions()
        .iter()
        .map(|r| {
            let start = u64::from(r.range.start_addr().as_u32());
            (
                start,
                u64::from(r.range.count()) * 4096,
                r.prot.bits(),
                r.shared,
                r.kind == RegionKind::Heap,
            )
        })
        .collect()
}

fn model_regions(m: &Model) -> Vec<(u64, u64, u32, bool, bool)> {
    m.space
        .regions
        .iter()
        .map(|r| {
            (
                r.start,
                r.len,
                r.prot,
                r.shared,
                r.kind == model::Kind::Heap,
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn model_and_vmm_agree_on_regions(ops in prop::collection::vec(op(), 1..40)) {
        let mut vm = Vm::new(HostMachine::default(), Layout::with_pool_frames(256)).unwrap();
        let s = vm.spawn().unwrap();
        let mut model = Model::new(model::Layout::default());
        for (i, op) in ops.iter().enumerate() {
            let errno = |e: vmm::Errno| e.number();
            let merr = |e: model::Errno| e as i32;
            let (got, want): (Result<u32, i32>, Result<u32, i32>) = match *op {
                Op::Mmap { addr, len, prot, flags } => (
                    vm.mmap(s, addr, len, prot, flags).map(|a| a.as_u32()).map_err(errno),
                    model.mmap(addr, len, prot, flags).map_err(merr),
                ),
                Op::Munmap { addr, len } => (
                    vm.munmap(s, addr, len).map(|()| 0).map_err(errno),
                    model.munmap(addr, len).map(|()| 0).map_err(merr),
                ),
                Op::Mprotect { addr, len, prot } => (
                    vm.mprotect(s, addr, len, prot).map(|()| 0).map_err(errno),
                    model.mprotect(addr, len, prot).map(|()| 0).map_err(merr),
                ),
                Op::Brk { addr } => (Ok(vm.brk(s, addr)), Ok(model.brk(addr))),
            };
            prop_assert_eq!(got, want, "op {} {:?}", i, op);
            prop_assert_eq!(vmm_regions(&vm, s), model_regions(&model), "regions after op {} {:?}", i, op);
            prop_assert_eq!(vm.space(s).unwrap().brk(), model.space.brk);
        }
    }
}
