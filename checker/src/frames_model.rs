//! The buddy allocator (`vmm::phys::FrameAllocator`) under alloc/free/retain/release sequences
//! against a set model of the frames handed out: the one driver behind the `frames` fuzz target
//! (`checker::frames`) and vmm's `buddy_props` proptest (which includes this file with `#[path]`,
//! so it uses nothing but `std` and `vmm`).
//!
//! After every op: no frame handed out twice, natural alignment, refusals only when no block is
//! big enough (or the machine refused), refused calls change nothing, the allocator's own
//! `check`, free + used = total. At the end everything is given back and the pool is in maximal
//! blocks again.

use std::collections::{BTreeMap, BTreeSet};

use vmm::addr::PhysFrame;
use vmm::machine::{AllocationFailure, HostMachine};
use vmm::phys::{FrameAllocator, FrameError, Released};

// `ensure!` and `ensure_eq!`; included, not a module, because vmm's tests also include this
// file by path.
include!("ensure_macros.rs");

/// One call. Indices pick a live allocation (modulo their count; nothing happens when there is
/// none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `alloc_contiguous` of this many frames.
    Alloc(u32),
    /// `free` of a live allocation.
    Free(usize),
    /// `retain` of a live allocation's first frame.
    Retain(usize),
    /// `release` of a live allocation's first frame.
    Release(usize),
    /// `free` of any frame number (modulo 2^20): outside the pool, not allocated, not a head.
    FreeWild(u32),
    /// The machine refuses the next allocation.
    FailNext,
}

fn frame(n: u32) -> PhysFrame {
    PhysFrame::from_number(n).expect("frame numbers are below 2^20")
}

/// Runs `ops` on a pool of `total` frames starting at frame `start` (`total` >= 1, the pool
/// below 4 GiB), checking the allocator against the model after every op.
/// The error names the op (1-based; past the last one: the final give-back) and what differed.
///
/// `#[inline]` (with `run`) so that the `frames` fuzz target compiles, and instruments, the
/// allocator calls inlined here; the checker itself is built without coverage counters there
/// (see `run::StepHooks` in the checker).
#[inline]
pub fn run_frames(start: u32, total: u32, ops: &[Op]) -> Result<(), String> {
    let mut at = 0;
    run(start, total, ops, &mut at).map_err(|e| match ops.get(at) {
        Some(op) => format!("op {} of {} ({op:?}): {e}", at + 1, ops.len()),
        None => format!("giving everything back after {} ops: {e}", ops.len()),
    })
}

#[inline]
fn run(start: u32, total: u32, ops: &[Op], at: &mut usize) -> Result<(), String> {
    let mut m = HostMachine::default();
    let mut fa = FrameAllocator::new(frame(start), total);
    // Model: allocations by first frame -> length; reference counts of frames.
    let mut live: BTreeMap<u32, u32> = BTreeMap::new();
    let mut counts: BTreeMap<u32, u32> = BTreeMap::new();
    let mut fail_next = false;
    for (i, op) in ops.iter().enumerate() {
        *at = i;
        let owned: BTreeSet<u32> = live.iter().flat_map(|(&s, &n)| s..s + n).collect();
        let pick = |i: usize| live.keys().nth(i % live.len().max(1)).copied();
        match *op {
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
                        ensure!(
                            !fail_next,
                            "allocation succeeded while the machine refused it"
                        );
                        let s = f.number();
                        ensure!(s >= start && s + n <= start + total, "outside the pool");
                        for x in s..s + n {
                            ensure!(!owned.contains(&x), "frame {:#x} handed out twice", x);
                        }
                        let align = n.next_power_of_two().min(256);
                        ensure_eq!(s % align, 0, "not naturally aligned");
                        ensure_eq!(fa.free_count(), free_before - n);
                        live.insert(s, n);
                    }
                    Err(e) if n > total => ensure_eq!(e, FrameError::BadCount(n)),
                    Err(e) => {
                        ensure_eq!(e, FrameError::OutOfFrames);
                        ensure_eq!(fa.free_count(), free_before);
                        ensure!(
                            fail_next
                                || n > 256
                                || free_before < n
                                || fa
                                    .free_blocks()
                                    .iter()
                                    .all(|&(_, o)| (1u32 << o) < n.next_power_of_two()),
                            "refused {} frames with {} free in blocks {:?}",
                            n,
                            free_before,
                            fa.free_blocks()
                        );
                    }
                }
                fail_next = false;
            }
            Op::Free(i) => {
                let Some(s) = pick(i) else { continue };
                let n = live[&s];
                let referenced = (s..s + n).find(|x| counts.get(x).is_some_and(|&c| c > 0));
                match referenced {
                    Some(x) => ensure_eq!(
                        fa.free(&mut m, frame(s)),
                        Err(FrameError::StillReferenced {
                            frame: frame(x).start(),
                            count: counts[&x]
                        })
                    ),
                    None => {
                        ensure_eq!(fa.free(&mut m, frame(s)), Ok(n));
                        live.remove(&s);
                    }
                }
            }
            Op::Retain(i) => {
                let Some(s) = pick(i) else { continue };
                let c = counts.entry(s).or_default();
                *c += 1;
                ensure_eq!(fa.retain(frame(s)), Ok(*c));
            }
            Op::Release(i) => {
                let Some(s) = pick(i) else { continue };
                let c = counts.entry(s).or_default();
                if *c == 0 {
                    ensure_eq!(
                        fa.release(&mut m, frame(s)),
                        Err(FrameError::NotReferenced(frame(s).start()))
                    );
                } else {
                    *c -= 1;
                    let want = if *c == 0 && live[&s] == 1 {
                        Released::Freed
                    } else {
                        Released::Remaining(*c)
                    };
                    ensure_eq!(fa.release(&mut m, frame(s)), Ok(want));
                    if want == Released::Freed {
                        live.remove(&s);
                    }
                }
            }
            Op::FreeWild(raw) => {
                let f = frame(raw % (1 << 20));
                let before = fa.free_blocks();
                let n = f.number();
                let r = fa.free(&mut m, f);
                if n < start || n >= start + total {
                    ensure_eq!(r, Err(FrameError::OutsidePool(f.start())));
                } else if !owned.contains(&n) {
                    ensure_eq!(r, Err(FrameError::NotAllocated(f.start())));
                } else if !live.contains_key(&n) {
                    ensure_eq!(r, Err(FrameError::NotBlockHead(f.start())));
                } else if r.is_ok() {
                    // A real allocation head: the model follows.
                    live.remove(&n);
                }
                if r.is_err() {
                    ensure_eq!(fa.free_blocks(), before, "a refused free changed the lists");
                }
            }
        }
        counts.retain(|x, c| *c > 0 && live.contains_key(x));
        fa.check()?;
        let used: u32 = live.values().sum();
        ensure_eq!(fa.free_count() + used, total, "free + used != total");
    }
    *at = ops.len();
    // Everything back: the pool is whole again, in maximal natural blocks.
    for &s in live.keys() {
        while fa.ref_count(frame(s)).is_ok_and(|c| c > 0) {
            fa.release(&mut m, frame(s)).unwrap();
        }
        if fa.is_allocated(frame(s)) {
            fa.free(&mut m, frame(s)).unwrap();
        }
    }
    ensure_eq!(fa.free_count(), total);
    let fresh: BTreeSet<_> = FrameAllocator::new(frame(start), total)
        .free_blocks()
        .into_iter()
        .collect();
    let now: BTreeSet<_> = fa.free_blocks().into_iter().collect();
    ensure_eq!(now, fresh);
    Ok(())
}
