//! Buddy allocator invariants under random alloc/free/retain/release sequences, against a set
//! model of the frames handed out.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use vmm::addr::PhysFrame;
use vmm::machine::{AllocationFailure, HostMachine};
use vmm::phys::{FrameAllocator, FrameError, Released};

#[derive(Clone, Debug)]
enum Op {
    Alloc(u32),
    Free(usize),
    Retain(usize),
    Release(usize),
    FreeWild(u32),
    FailNext,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop_oneof![4 => 1..5u32, 2 => 5..70u32, 1 => 250..600u32].prop_map(Op::Alloc),
        4 => any::<usize>().prop_map(Op::Free),
        2 => any::<usize>().prop_map(Op::Retain),
        2 => any::<usize>().prop_map(Op::Release),
        1 => any::<u32>().prop_map(Op::FreeWild),
        1 => Just(Op::FailNext),
    ]
}

fn frame(n: u32) -> PhysFrame {
    PhysFrame::from_number(n).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn buddy_invariants_hold(
        // A pool that is neither a power of two nor 1 MiB aligned at its start.
        start in prop_oneof![Just(0x40000u32), Just(0x40003u32), 0x40000..0x40400u32],
        total in prop_oneof![Just(1024u32), 1..1500u32],
        ops in prop::collection::vec(op(), 1..200),
    ) {
        let mut m = HostMachine::default();
        let mut fa = FrameAllocator::new(frame(start), total);
        // Model: allocations by first frame -> length; reference counts of frames.
        let mut live: BTreeMap<u32, u32> = BTreeMap::new();
        let mut counts: BTreeMap<u32, u32> = BTreeMap::new();
        let mut fail_next = false;
        for op in ops {
            let owned: BTreeSet<u32> = live.iter().flat_map(|(&s, &n)| s..s + n).collect();
            let pick = |i: usize| live.keys().nth(i % live.len().max(1)).copied();
            match op {
                Op::FailNext => fail_next = true,
                Op::Alloc(n) => {
                    if fail_next {
                        m.set_allocation_failure(AllocationFailure::Nth(0));
                    }
                    let free_before = fa.free_count();
                    let got = fa.alloc_contiguous(&mut m, n);
                    m.set_allocation_failure(AllocationFailure::Never);
                    match got {
                        Ok(f) => {
                            prop_assert!(!fail_next, "allocation succeeded while the machine refused it");
                            let s = f.number();
                            prop_assert!(s >= start && s + n <= start + total, "outside the pool");
                            for x in s..s + n {
                                prop_assert!(!owned.contains(&x), "frame {:#x} handed out twice", x);
                            }
                            let align = n.next_power_of_two().min(256);
                            prop_assert_eq!(s % align, 0, "not naturally aligned");
                            prop_assert_eq!(fa.free_count(), free_before - n);
                            live.insert(s, n);
                        }
                        Err(e) if n > total => prop_assert_eq!(e, FrameError::BadCount(n)),
                        Err(e) => {
                            prop_assert_eq!(e, FrameError::OutOfFrames);
                            prop_assert_eq!(fa.free_count(), free_before);
                            prop_assert!(fail_next || n > 256 || free_before < n
                                || fa.free_blocks().iter().all(|&(_, o)| (1u32 << o) < n.next_power_of_two()),
                                "refused {} frames with {} free in blocks {:?}", n, free_before, fa.free_blocks());
                        }
                    }
                    fail_next = false;
                }
                Op::Free(i) => {
                    let Some(s) = pick(i) else { continue };
                    let n = live[&s];
                    let referenced = (s..s + n).find(|x| counts.get(x).is_some_and(|&c| c > 0));
                    match referenced {
                        Some(x) => prop_assert_eq!(
                            fa.free(frame(s)),
                            Err(FrameError::StillReferenced { frame: frame(x).start(), count: counts[&x] })
                        ),
                        None => {
                            prop_assert_eq!(fa.free(frame(s)), Ok(n));
                            live.remove(&s);
                        }
                    }
                }
                Op::Retain(i) => {
                    let Some(s) = pick(i) else { continue };
                    let c = counts.entry(s).or_default();
                    *c += 1;
                    prop_assert_eq!(fa.retain(frame(s)), Ok(*c));
                }
                Op::Release(i) => {
                    let Some(s) = pick(i) else { continue };
                    let c = counts.entry(s).or_default();
                    if *c == 0 {
                        prop_assert_eq!(fa.release(frame(s)), Err(FrameError::NotReferenced(frame(s).start())));
                    } else {
                        *c -= 1;
                        let want = if *c == 0 && live[&s] == 1 { Released::Freed } else { Released::Remaining(*c) };
                        prop_assert_eq!(fa.release(frame(s)), Ok(want));
                        if want == Released::Freed {
                            live.remove(&s);
                        }
                    }
                }
                Op::FreeWild(raw) => {
                    let f = frame(raw % (1 << 20));
                    let before = fa.free_blocks();
                    let n = f.number();
                    let r = fa.free(f);
                    if n < start || n >= start + total {
                        prop_assert_eq!(r, Err(FrameError::OutsidePool(f.start())));
                    } else if !owned.contains(&n) {
                        prop_assert_eq!(r, Err(FrameError::NotAllocated(f.start())));
                    } else if !live.contains_key(&n) {
                        prop_assert_eq!(r, Err(FrameError::NotBlockHead(f.start())));
                    } else if r.is_ok() {
                        // A real allocation head: the model follows.
                        live.remove(&n);
                    }
                    if r.is_err() {
                        prop_assert_eq!(fa.free_blocks(), before, "a refused free changed the lists");
                    }
                }
            }
            counts.retain(|x, c| *c > 0 && live.contains_key(x));
            fa.check().map_err(TestCaseError::fail)?;
            let used: u32 = live.values().sum();
            prop_assert_eq!(fa.free_count() + used, total, "free + used != total");
        }
        // Everything back: the pool is whole again, in maximal natural blocks.
        for &s in live.keys() {
            while fa.ref_count(frame(s)).is_ok_and(|c| c > 0) {
                fa.release(frame(s)).unwrap();
            }
            if fa.is_allocated(frame(s)) {
                fa.free(frame(s)).unwrap();
            }
        }
        prop_assert_eq!(fa.free_count(), total);
        let fresh: BTreeSet<_> = FrameAllocator::new(frame(start), total).free_blocks().into_iter().collect();
        let now: BTreeSet<_> = fa.free_blocks().into_iter().collect();
        prop_assert_eq!(now, fresh);
    }
}
