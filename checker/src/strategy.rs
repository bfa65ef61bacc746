//! proptest strategies for op sequences: addresses near the interesting places (regions of the
//! live state, window edges, heap, mmap area, 4 MiB groups), plausible lengths and flags mostly,
//! wild values sometimes. Shrinking works on the steps themselves.

use proptest::prelude::*;

use crate::fold_accesses_onto;
use crate::op::{Addr, Op, Step};
use crate::run::{Config, Sequence};

/// A raw address near an interesting place, or a wild one.
pub fn raw_addr() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => (0..64u32).prop_map(|p| 0x1F80_0000 + p * 0x1000),
        3 => (0..16u32).prop_map(|p| 0x0FC0_0000 + p * 0x1000 + if p % 3 == 0 { 5 } else { 0 }),
        1 => (0..8u32).prop_map(|p| 0x0100_0000 - 0x2000 + p * 0x1000),
        1 => (0..8u32).prop_map(|p| 0x3F00_0000 - 0x4000 + p * 0x1000),
        1 => (0..8u32).prop_map(|p| 0x2740_0000 - 0x4000 + p * 0x1000),
        1 => (0..4u32).prop_map(|g| 0x0300_0000 + g * 0x40_0000),
        1 => any::<u32>(),
        1 => Just(0u32),
    ]
}

/// An address, mostly relative to the live regions.
pub fn addr() -> impl Strategy<Value = Addr> {
    prop_oneof![
        3 => (any::<u8>(), 0..6u8, any::<u8>()).prop_map(|(region, page, word)| Addr::InRegion { region, page, word }),
        1 => (0..16u8).prop_map(Addr::Heap),
        1 => (0..300u16).prop_map(Addr::Mmap),
        2 => raw_addr().prop_map(Addr::Raw),
        1 => (any::<u8>(), 0..4u8).prop_map(|(alloc, page)| Addr::Vmalloc { alloc, page }),
    ]
}

/// A length: a few pages mostly.
pub fn len() -> impl Strategy<Value = u32> {
    prop_oneof![
        6 => (0..6u32).prop_map(|p| p * 0x1000),
        1 => 1..0x3000u32,
        1 => Just(u32::MAX),
        1 => Just(0x07C0_0000),
        1 => any::<u32>(),
    ]
}

/// One op.
pub fn op() -> impl Strategy<Value = Op> {
    let s = 0..4u8;
    let flags = prop_oneof![
        4 => (0..4u32, any::<bool>(), any::<bool>()).prop_map(|(share, fixed, noreplace)| {
            share | 0x20 | if fixed { 0x10 } else { 0 } | if noreplace { 0x10_0000 } else { 0 }
        }),
        1 => any::<u32>(),
    ];
    let prot = prop_oneof![8 => 0..8u32, 1 => any::<u32>()];
    let shm_flags = prop_oneof![3 => Just(0u32), 1 => Just(0o10000), 1 => Just(0o40000), 1 => Just(0o60000), 1 => Just(0o100000)];
    prop_oneof![
        1 => Just(Op::Spawn),
        1 => s.clone().prop_map(|s| Op::Fork { s }),
        1 => s.clone().prop_map(|s| Op::Exit { s }),
        4 => (s.clone(), addr(), len(), prot.clone(), flags)
            .prop_map(|(s, addr, len, prot, flags)| Op::Mmap { s, addr, len, prot, flags }),
        2 => (s.clone(), addr(), len()).prop_map(|(s, addr, len)| Op::Munmap { s, addr, len }),
        2 => (s.clone(), addr(), len(), prot).prop_map(|(s, addr, len, prot)| Op::Mprotect { s, addr, len, prot }),
        2 => (s.clone(), addr()).prop_map(|(s, addr)| Op::Brk { s, addr }),
        3 => (s.clone(), addr(), len(), len(), prop_oneof![4 => 0..4u32, 1 => any::<u32>()], addr())
            .prop_map(|(s, addr, old_len, new_len, flags, new_addr)| Op::Mremap { s, addr, old_len, new_len, flags, new_addr }),
        2 => (prop_oneof![2 => Just(0i32), 1 => 1..3i32], prop_oneof![4 => 1..4u32, 1 => Just(0u32)], prop_oneof![Just(0o1000u32), Just(0o3000), Just(0)])
            .prop_map(|(key, pages, flags)| Op::ShmGet { key, size: pages * 0x1000, flags }),
        3 => (s.clone(), 0..3u32, prop::option::weighted(0.4, addr()), shm_flags)
            .prop_map(|(s, id, addr, flags)| Op::ShmAt { s, id, addr, flags }),
        2 => (s.clone(), addr()).prop_map(|(s, addr)| Op::ShmDt { s, addr }),
        2 => (0..3u32, prop_oneof![3 => Just(0u32), 1 => Just(2), 1 => Just(7)]).prop_map(|(id, cmd)| Op::ShmCtl { id, cmd }),
        1 => (s.clone(), prop_oneof![addr(), (0..4u32).prop_map(|m| Addr::Raw(0x0300_0000 + m * 0x10_0000))], prop_oneof![0..8u16, Just(256u16)], prop_oneof![3 => (1..6u32).prop_map(|p| p * 0x1000), 1 => Just(0x10_0000u32), 1 => Just(0x20_3000u32), 1 => len()], prop_oneof![Just(1u32), Just(3)])
            .prop_map(|(s, addr, page, len, prot)| Op::MapDevice { s, addr, page, len, prot }),
        1 => prop_oneof![4 => (1..5u32).prop_map(|p| p * 0x1000), 1 => len()].prop_map(|len| Op::Vmalloc { len }),
        1 => prop_oneof![3 => (any::<u8>(), Just(0u8)).prop_map(|(alloc, page)| Addr::Vmalloc { alloc, page }), 1 => addr()]
            .prop_map(|addr| Op::Vfree { addr }),
        3 => (s.clone(), addr(), any::<bool>(), cpu()).prop_map(|(s, addr, kernel, cpu)| Op::Read { s, addr, kernel, cpu }),
        4 => (s.clone(), addr(), any::<u32>(), any::<bool>(), cpu()).prop_map(|(s, addr, value, kernel, cpu)| Op::Write { s, addr, value, kernel, cpu }),
        1 => (s, addr(), any::<bool>(), cpu()).prop_map(|(s, addr, kernel, cpu)| Op::Exec { s, addr, kernel, cpu }),
    ]
}

/// The CPU of an access: 0 or 1 ([`sequence`] and [`sequences`] keep it below their world's
/// CPU count).
fn cpu() -> impl Strategy<Value = u8> {
    0..2u8
}

/// A sequence starting with `spawn`, some steps refusing one of their frame allocations.
pub fn steps(max: usize) -> impl Strategy<Value = Vec<Step>> {
    sequence(1..max)
}

/// A sequence of `spawn` and then `len` more steps, some refusing one of their frame
/// allocations, for a one-CPU world (every access on CPU 0).
pub fn sequence(len: impl Into<prop::collection::SizeRange>) -> impl Strategy<Value = Vec<Step>> {
    sequence_on(len, 1)
}

/// [`sequence`] for a world of `cpus` CPUs: accesses on CPU 0 and, with more than one, on
/// CPU 1.
pub fn sequence_on(
    len: impl Into<prop::collection::SizeRange>,
    cpus: u8,
) -> impl Strategy<Value = Vec<Step>> {
    sequence_on_cpus(len).prop_map(move |mut steps| {
        fold_accesses_onto(&mut steps, cpus);
        steps
    })
}

/// [`sequence`] with accesses on CPUs 0 and 1.
fn sequence_on_cpus(
    len: impl Into<prop::collection::SizeRange>,
) -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec((op(), prop::option::weighted(0.15, 0..3u8)), len).prop_map(|v| {
        let mut steps = vec![Step {
            op: Op::Spawn,
            refuse: None,
        }];
        steps.extend(v.into_iter().map(|(op, refuse)| Step { op, refuse }));
        steps
    })
}

/// The world of a generated sequence: mostly the default one, sometimes a small pool or few
/// ASIDs, so that exhaustion of either is reached, sometimes two CPUs.
pub fn config() -> impl Strategy<Value = Config> {
    prop_oneof![
        3 => Just(Config::DEFAULT),
        1 => (16..200u32, 1..5u8).prop_map(|(pool_frames, asids)| Config { pool_frames, asids, cpus: 1 }),
        1 => Just(Config { cpus: 2, ..Config::DEFAULT }),
    ]
}

/// A sequence of at most `max` steps (starting with `spawn`) in a generated world; accesses
/// run on CPUs the world has.
pub fn sequences(max: usize) -> impl Strategy<Value = Sequence> {
    (config(), sequence_on_cpus(1..max)).prop_map(|(config, steps)| {
        let mut sequence = Sequence { config, steps };
        sequence.set_cpus(config.cpus);
        sequence
    })
}
