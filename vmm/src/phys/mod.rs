//! Physical frames: the buddy allocator and per-frame reference counts.
//!
//! The pool is a run of frames handed to [`FrameAllocator::new`]. A frame allocated here starts
//! with reference count 0. Data frames count the page-table entries that map them
//! ([`FrameAllocator::retain`] / [`FrameAllocator::release`]; the last release frees a one-frame
//! allocation); page-table pages stay at 0 and are given back with [`FrameAllocator::free`].
//! Every refused call is a typed [`FrameError`] and changes nothing.

mod buddy;

pub use buddy::{BuddyAllocator, BuddyError, MAX_ORDER};

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::addr::{PhysAddr, PhysFrame};
use crate::machine::Machine;

/// Why a frame operation was refused. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// No free run large enough (or the machine refused the allocation).
    OutOfFrames,
    /// A request for zero frames or more than the pool holds.
    BadCount(u32),
    /// The frame is not in the pool.
    OutsidePool(PhysAddr),
    /// The frame is free: a double free, or a reference to a free frame.
    NotAllocated(PhysAddr),
    /// The frame is allocated but is not the first frame of its allocation.
    NotBlockHead(PhysAddr),
    /// Freeing a frame that page tables still reference.
    StillReferenced {
        /// The referenced frame.
        frame: PhysAddr,
        /// Its reference count.
        count: u32,
    },
    /// Releasing a frame whose reference count is already 0.
    NotReferenced(PhysAddr),
    /// The reference count would pass `u32::MAX`.
    CountOverflow(PhysAddr),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfFrames => write!(f, "out of physical frames"),
            Self::BadCount(n) => write!(f, "cannot allocate {n} frames"),
            Self::OutsidePool(pa) => write!(f, "{pa} is not in the frame pool"),
            Self::NotAllocated(pa) => write!(f, "frame {pa} is free"),
            Self::NotBlockHead(pa) => {
                write!(f, "frame {pa} is not the first frame of its allocation")
            }
            Self::StillReferenced { frame, count } => {
                write!(f, "frame {frame} is still referenced {count} times")
            }
            Self::NotReferenced(pa) => write!(f, "frame {pa} has reference count 0"),
            Self::CountOverflow(pa) => write!(f, "reference count of {pa} overflows"),
        }
    }
}

/// What [`FrameAllocator::release`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Released {
    /// The count reached 0 and the frame went back to the pool.
    Freed,
    /// The frame is still referenced this many times (or is part of a larger allocation).
    Remaining(u32),
}

/// The frame pool: a [`BuddyAllocator`] plus a reference count per frame.
#[derive(Clone, Debug)]
pub struct FrameAllocator {
    first: PhysFrame,
    buddy: BuddyAllocator,
    counts: Vec<u32>,
}

impl FrameAllocator {
    /// A pool of `count` frames starting at `first`, all free. The pool is clipped at 4 GiB.
    #[must_use]
    pub fn new(first: PhysFrame, count: u32) -> Self {
        let count = count.min(PhysFrame::COUNT - first.number());
        Self {
            first,
            buddy: BuddyAllocator::new(first.number(), count),
            counts: vec![0; count as usize],
        }
    }

    /// First frame of the pool.
    #[must_use]
    pub fn first_frame(&self) -> PhysFrame {
        self.first
    }
    /// Frames in the pool.
    #[must_use]
    pub fn total(&self) -> u32 {
        self.buddy.total()
    }
    /// Free frames (exact).
    #[must_use]
    pub fn free_count(&self) -> u32 {
        self.buddy.free_count()
    }
    /// Allocated frames: `total() - free_count()`.
    #[must_use]
    pub fn used_count(&self) -> u32 {
        self.total() - self.free_count()
    }
    /// Whether the frame lies in the pool.
    #[must_use]
    pub fn contains(&self, frame: PhysFrame) -> bool {
        self.index(frame).is_ok()
    }
    /// Whether the frame lies in the pool and is allocated.
    #[must_use]
    pub fn is_allocated(&self, frame: PhysFrame) -> bool {
        self.index(frame).is_ok_and(|i| self.buddy.is_allocated(i))
    }

    /// Allocates one frame (contents undefined, count 0).
    pub fn alloc<M: Machine>(&mut self, machine: &mut M) -> Result<PhysFrame, FrameError> {
        self.alloc_contiguous(machine, 1)
    }

    /// Allocates one frame and zeroes it.
    pub fn alloc_zeroed<M: Machine>(&mut self, machine: &mut M) -> Result<PhysFrame, FrameError> {
        let frame = self.alloc(machine)?;
        machine.zero_frame(frame);
        Ok(frame)
    }

    /// Allocates `count` single frames and zeroes them, all or nothing: the pool is checked
    /// and the machine asked `count` times before anything is taken, so a refusal leaves the
    /// allocator exactly as it was (free lists in the same order).
    pub fn alloc_frames_zeroed<M: Machine>(
        &mut self,
        machine: &mut M,
        count: u32,
    ) -> Result<Vec<PhysFrame>, FrameError> {
        if count > self.free_count() {
            return Err(FrameError::OutOfFrames);
        }
        for _ in 0..count {
            if !machine.frame_allocation_permitted() {
                return Err(FrameError::OutOfFrames);
            }
        }
        let mut out = Vec::with_capacity(count as usize);
        for _ in 0..count {
            // Cannot fail: a free frame exists for each (any free block splits down to one).
            let index = self.buddy.alloc(1).map_err(|_| FrameError::OutOfFrames)?;
            let frame = self.frame_at(index);
            machine.zero_frame(frame);
            out.push(frame);
        }
        Ok(out)
    }

    /// Allocates `count` physically contiguous frames (naturally aligned to the power of two at
    /// or above `count`, up to 1 MiB) and returns the first. One machine allocation request.
    pub fn alloc_contiguous<M: Machine>(
        &mut self,
        machine: &mut M,
        count: u32,
    ) -> Result<PhysFrame, FrameError> {
        if count == 0 || count > self.total() {
            return Err(FrameError::BadCount(count));
        }
        if !machine.frame_allocation_permitted() {
            return Err(FrameError::OutOfFrames);
        }
        let index = self
            .buddy
            .alloc(count)
            .map_err(|_| FrameError::OutOfFrames)?;
        Ok(self.frame_at(index))
    }

    /// Frees the allocation that starts at `frame` and returns its length in frames. Every frame
    /// of it must have reference count 0. The machine is told of the frames freed.
    pub fn free<M: Machine>(
        &mut self,
        machine: &mut M,
        frame: PhysFrame,
    ) -> Result<u32, FrameError> {
        let index = self.index(frame)?;
        let len = self
            .buddy
            .allocation_len(index)
            .map_err(|e| self.buddy_error(e, frame))?;
        for i in index..index + len {
            let count = self.counts[i as usize];
            if count != 0 {
                return Err(FrameError::StillReferenced {
                    frame: self.frame_at(i).start(),
                    count,
                });
            }
        }
        let len = self
            .buddy
            .free(index)
            .map_err(|e| self.buddy_error(e, frame))?;
        machine.frames_freed(frame, len);
        Ok(len)
    }

    /// Adds one reference to an allocated frame and returns the new count.
    pub fn retain(&mut self, frame: PhysFrame) -> Result<u32, FrameError> {
        let index = self.allocated_index(frame)?;
        let count = &mut self.counts[index as usize];
        *count = count
            .checked_add(1)
            .ok_or(FrameError::CountOverflow(frame.start()))?;
        Ok(*count)
    }

    /// Drops one reference. When the count reaches 0 and the frame is a one-frame allocation,
    /// the frame is freed (and the machine told).
    pub fn release<M: Machine>(
        &mut self,
        machine: &mut M,
        frame: PhysFrame,
    ) -> Result<Released, FrameError> {
        let index = self.allocated_index(frame)?;
        let count = self.counts[index as usize];
        if count == 0 {
            return Err(FrameError::NotReferenced(frame.start()));
        }
        self.counts[index as usize] = count - 1;
        if count == 1 && self.buddy.allocation_len(index) == Ok(1) {
            self.buddy
                .free(index)
                .map_err(|e| self.buddy_error(e, frame))?;
            machine.frames_freed(frame, 1);
            return Ok(Released::Freed);
        }
        Ok(Released::Remaining(count - 1))
    }

    /// The reference count of an allocated frame.
    pub fn ref_count(&self, frame: PhysFrame) -> Result<u32, FrameError> {
        Ok(self.counts[self.allocated_index(frame)? as usize])
    }

    /// The free blocks as (first frame, order), list by list.
    #[must_use]
    pub fn free_blocks(&self) -> Vec<(PhysFrame, u8)> {
        self.buddy
            .free_blocks()
            .into_iter()
            .map(|(i, o)| (self.frame_at(i), o))
            .collect()
    }

    /// Checks the allocator's invariants (see [`BuddyAllocator::check`]) and that free frames
    /// have reference count 0.
    pub fn check(&self) -> Result<(), String> {
        self.buddy.check()?;
        for (i, &c) in self.counts.iter().enumerate() {
            if c != 0 && !self.buddy.is_allocated(i as u32) {
                return Err(alloc::format!(
                    "free frame {:?} has count {c}",
                    self.frame_at(i as u32)
                ));
            }
        }
        Ok(())
    }

    fn frame_at(&self, index: u32) -> PhysFrame {
        // In range by construction: index < total and the pool was clipped at 4 GiB.
        self.first.checked_add(index).unwrap_or(self.first)
    }

    fn index(&self, frame: PhysFrame) -> Result<u32, FrameError> {
        frame
            .number()
            .checked_sub(self.first.number())
            .filter(|&i| i < self.total())
            .ok_or(FrameError::OutsidePool(frame.start()))
    }

    fn allocated_index(&self, frame: PhysFrame) -> Result<u32, FrameError> {
        let index = self.index(frame)?;
        if self.buddy.is_allocated(index) {
            Ok(index)
        } else {
            Err(FrameError::NotAllocated(frame.start()))
        }
    }

    fn buddy_error(&self, e: BuddyError, frame: PhysFrame) -> FrameError {
        match e {
            BuddyError::Exhausted => FrameError::OutOfFrames,
            BuddyError::BadCount => FrameError::BadCount(0),
            BuddyError::OutOfPool => FrameError::OutsidePool(frame.start()),
            BuddyError::NotAllocated => FrameError::NotAllocated(frame.start()),
            BuddyError::NotBlockHead => FrameError::NotBlockHead(frame.start()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::{AllocationFailure, HostMachine};

    fn pool() -> (FrameAllocator, HostMachine) {
        let first = PhysFrame::from_start(PhysAddr::new(0x4000_0000)).unwrap();
        (FrameAllocator::new(first, 64), HostMachine::default())
    }

    /// The pool's accessors: its first frame, which frames it holds (edges included), and
    /// the used count following allocations and frees.
    #[test]
    fn pool_accessors() {
        let (mut fa, mut m) = pool();
        let first = PhysFrame::from_start(PhysAddr::new(0x4000_0000)).unwrap();
        assert_eq!(fa.first_frame(), first);
        assert!(fa.contains(first));
        assert!(fa.contains(first.checked_add(63).unwrap()));
        assert!(!fa.contains(first.checked_add(64).unwrap()));
        assert!(!fa.contains(PhysFrame::from_start(PhysAddr::new(0x3FFF_F000)).unwrap()));
        assert_eq!((fa.total(), fa.used_count()), (64, 0));
        let a = fa.alloc(&mut m).unwrap();
        let b = fa.alloc_frames_zeroed(&mut m, 3).unwrap();
        assert_eq!(fa.used_count(), 1 + b.len() as u32);
        assert_eq!(fa.used_count() + fa.free_count(), 64);
        fa.free(&mut m, a).unwrap();
        assert_eq!(fa.used_count(), b.len() as u32);
    }

    /// A request for exactly the free frames succeeds, one more fails and changes nothing;
    /// the free blocks show the buddy split and merge back.
    #[test]
    fn whole_pool_requests_and_free_blocks() {
        let (mut fa, mut m) = pool();
        let first = fa.first_frame();
        assert_eq!(fa.free_blocks(), vec![(first, 6)]);
        assert_eq!(
            fa.alloc_frames_zeroed(&mut m, 65),
            Err(FrameError::OutOfFrames)
        );
        assert_eq!(fa.free_count(), 64);
        let all = fa.alloc_frames_zeroed(&mut m, 64).unwrap();
        assert_eq!(all.len(), 64);
        assert_eq!(fa.free_blocks(), vec![]);
        for f in all {
            fa.free(&mut m, f).unwrap();
        }
        assert_eq!(fa.free_blocks(), vec![(first, 6)]);
        let one = fa.alloc(&mut m).unwrap();
        assert_eq!(
            fa.free_blocks().len(),
            6,
            "orders 0 to 5 left after taking one frame"
        );
        fa.free(&mut m, one).unwrap();
        fa.check().unwrap();
    }

    /// `check` sees a free frame that still counts references.
    #[test]
    fn check_finds_a_counted_free_frame() {
        let (mut fa, _) = pool();
        fa.check().unwrap();
        fa.counts[5] = 1;
        assert!(fa.check().is_err());
    }

    /// Each error says what went wrong and names the frame (reports quote these).
    #[test]
    fn errors_explain_themselves() {
        let pa = PhysAddr::new(0x4000_3000);
        let cases = [
            (
                FrameError::OutOfFrames,
                alloc::string::String::from("out of physical frames"),
            ),
            (
                FrameError::BadCount(0),
                alloc::string::String::from("cannot allocate 0 frames"),
            ),
            (
                FrameError::StillReferenced {
                    frame: pa,
                    count: 2,
                },
                alloc::format!("frame {pa} is still referenced 2 times"),
            ),
            (
                FrameError::NotReferenced(pa),
                alloc::format!("frame {pa} has reference count 0"),
            ),
        ];
        for (e, want) in cases {
            assert_eq!(alloc::format!("{e}"), want);
        }
    }

    #[test]
    fn reference_counts_free_on_last_release() {
        let (mut fa, mut m) = pool();
        let f = fa.alloc(&mut m).unwrap();
        assert_eq!(fa.ref_count(f), Ok(0));
        assert_eq!(fa.retain(f), Ok(1));
        assert_eq!(fa.retain(f), Ok(2));
        assert_eq!(
            fa.free(&mut m, f),
            Err(FrameError::StillReferenced {
                frame: f.start(),
                count: 2
            })
        );
        assert_eq!(fa.release(&mut m, f), Ok(Released::Remaining(1)));
        assert_eq!(fa.release(&mut m, f), Ok(Released::Freed));
        assert_eq!(
            fa.release(&mut m, f),
            Err(FrameError::NotAllocated(f.start()))
        );
        assert_eq!(fa.retain(f), Err(FrameError::NotAllocated(f.start())));
        assert_eq!(fa.free_count(), 64);
        fa.check().unwrap();
    }

    #[test]
    fn bad_addresses_are_typed_errors() {
        let (mut fa, mut m) = pool();
        let outside = PhysFrame::from_start(PhysAddr::new(0x3000_0000)).unwrap();
        assert_eq!(
            fa.free(&mut m, outside),
            Err(FrameError::OutsidePool(outside.start()))
        );
        assert_eq!(
            fa.retain(outside),
            Err(FrameError::OutsidePool(outside.start()))
        );
        let f = fa.alloc_contiguous(&mut m, 3).unwrap();
        let tail = f.checked_add(1).unwrap();
        assert_eq!(
            fa.free(&mut m, tail),
            Err(FrameError::NotBlockHead(tail.start()))
        );
        assert_eq!(
            fa.release(&mut m, f),
            Err(FrameError::NotReferenced(f.start()))
        );
        assert_eq!(fa.alloc_contiguous(&mut m, 0), Err(FrameError::BadCount(0)));
        assert_eq!(fa.free(&mut m, f), Ok(3));
        assert_eq!(fa.free(&mut m, f), Err(FrameError::NotAllocated(f.start())));
        fa.check().unwrap();
    }

    #[test]
    fn machine_can_refuse_an_allocation() {
        let (mut fa, mut m) = pool();
        m.set_allocation_failure(AllocationFailure::Nth(1));
        assert!(fa.alloc(&mut m).is_ok());
        assert_eq!(fa.alloc(&mut m), Err(FrameError::OutOfFrames));
        assert_eq!(fa.free_count(), 63);
    }

    #[test]
    fn alloc_zeroed_clears_old_contents() {
        let (mut fa, mut m) = pool();
        let f = fa.alloc(&mut m).unwrap();
        m.write_word(f.start(), 5);
        fa.free(&mut m, f).unwrap();
        let g = fa.alloc_zeroed(&mut m).unwrap();
        assert_eq!(
            g, f,
            "the freed frame merged back and is handed out first again"
        );
        assert!(m.frame_is_zero(g));
    }
}
