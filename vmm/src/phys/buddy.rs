//! The buddy allocator, with LiteOS-A's policy (`los_vm_phys.c`).
//!
//! Orders 0..=8 (1 frame to 1 MiB). A frame's natural order is the lowest set bit of its frame
//! number, capped at 8. Allocation takes the **head** of the first non-empty list at or above the
//! order it needs and splits downwards, pushing each upper half to the **tail** of its list; the
//! pages past the requested count are given back at once. Freeing merges with the buddy while
//! it is free at the same order, and puts the result at the **tail** of its list. Requests above
//! 256 frames look for consecutive free order-8 blocks.
//!
//! The free lists are intrusive doubly linked lists over per-frame `next`/`prev` indices, so every
//! list operation, including taking a buddy out of the middle of a list, is O(1).

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

/// Highest order: blocks of 2^8 frames (1 MiB).
pub const MAX_ORDER: u8 = 8;
const ORDERS: usize = MAX_ORDER as usize + 1;
const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FrameState {
    /// First frame of a free block of 2^order frames, linked in list `order`.
    FreeHead { order: u8 },
    /// Inside a free block, not its first frame.
    FreeTail,
    /// First frame of an allocation of `len` frames.
    AllocatedHead { len: u32 },
    /// Inside an allocation, not its first frame.
    AllocatedTail,
}

/// Why a buddy operation was refused. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuddyError {
    /// No run of free frames large enough.
    Exhausted,
    /// A request for zero frames or more than the pool holds.
    BadCount,
    /// The index is outside the pool.
    OutOfPool,
    /// The frame is free (a double free).
    NotAllocated,
    /// The frame is allocated but is not the first frame of its allocation.
    NotBlockHead,
}

/// A buddy allocator over `count` frames whose first frame number is `first_number`.
///
/// Indices passed in and out are pool indices (0 = first frame); the natural alignment uses the
/// absolute frame number, so a pool need not start on a 1 MiB boundary.
#[derive(Clone, Debug)]
pub struct BuddyAllocator {
    first_number: u32,
    state: Vec<FrameState>,
    next: Vec<u32>,
    prev: Vec<u32>,
    heads: [u32; ORDERS],
    tails: [u32; ORDERS],
    free: u32,
}

impl BuddyAllocator {
    /// An allocator with every frame free. The pool is clipped so that it ends at or below
    /// frame 2^20 (4 GiB).
    #[must_use]
    pub fn new(first_number: u32, count: u32) -> Self {
        let first_number = first_number.min(1 << 20);
        let count = count.min((1 << 20) - first_number);
        let n = count as usize;
        let mut buddy = Self {
            first_number,
            state: vec![FrameState::AllocatedTail; n],
            next: vec![NIL; n],
            prev: vec![NIL; n],
            heads: [NIL; ORDERS],
            tails: [NIL; ORDERS],
            free: 0,
        };
        buddy.free_run(0, count);
        buddy
    }

    /// Frames in the pool.
    #[must_use]
    pub fn total(&self) -> u32 {
        self.state.len() as u32
    }
    /// Frames currently free (exact).
    #[must_use]
    pub fn free_count(&self) -> u32 {
        self.free
    }

    /// Allocates `count` contiguous frames and returns the index of the first.
    pub fn alloc(&mut self, count: u32) -> Result<u32, BuddyError> {
        if count == 0 || count > self.total() {
            return Err(BuddyError::BadCount);
        }
        let (start, block) = if count <= 1 << MAX_ORDER {
            let order = ceil_log2(count);
            (self.take_block(order)?, 1u32 << order)
        } else {
            let blocks = count.div_ceil(1 << MAX_ORDER);
            (self.take_large(blocks)?, blocks << MAX_ORDER)
        };
        self.state[start as usize] = FrameState::AllocatedHead { len: count };
        for i in start + 1..start + count {
            self.state[i as usize] = FrameState::AllocatedTail;
        }
        self.free -= block;
        self.free_run(start + count, block - count);
        Ok(start)
    }

    /// Frees the allocation starting at `index` and returns how many frames it held.
    pub fn free(&mut self, index: u32) -> Result<u32, BuddyError> {
        let len = self.allocation_len(index)?;
        self.free_run(index, len);
        Ok(len)
    }

    /// The length of the allocation that starts at `index`.
    pub fn allocation_len(&self, index: u32) -> Result<u32, BuddyError> {
        match self.state.get(index as usize) {
            None => Err(BuddyError::OutOfPool),
            Some(FrameState::AllocatedHead { len }) => Ok(*len),
            Some(FrameState::AllocatedTail) => Err(BuddyError::NotBlockHead),
            Some(FrameState::FreeHead { .. } | FrameState::FreeTail) => {
                Err(BuddyError::NotAllocated)
            }
        }
    }

    /// Whether the frame at `index` is part of an allocation.
    #[must_use]
    pub fn is_allocated(&self, index: u32) -> bool {
        matches!(
            self.state.get(index as usize),
            Some(FrameState::AllocatedHead { .. } | FrameState::AllocatedTail)
        )
    }

    /// The free blocks of each order as (index, order), list order (head first).
    #[must_use]
    pub fn free_blocks(&self) -> Vec<(u32, u8)> {
        let mut out = Vec::new();
        for order in 0..ORDERS {
            let mut i = self.heads[order];
            while i != NIL && out.len() <= self.state.len() {
                out.push((i, order as u8));
                i = self.next[i as usize];
            }
        }
        out
    }

    /// Checks every structural invariant: free blocks aligned, inside the pool, disjoint, linked
    /// exactly once in the list of their order and fully coalesced; allocations well formed; the
    /// free count exact. Returns a description of the first violation.
    pub fn check(&self) -> Result<(), String> {
        let n = self.total();
        let mut listed = vec![false; n as usize];
        let mut free = 0u32;
        for order in 0..ORDERS {
            let mut prev = NIL;
            let mut i = self.heads[order];
            while i != NIL {
                let Some(slot) = listed.get_mut(i as usize) else {
                    return Err(format!("list {order} links index {i} outside the pool"));
                };
                if core::mem::replace(slot, true) {
                    return Err(format!("index {i} is linked twice"));
                }
                if self.prev[i as usize] != prev {
                    return Err(format!("index {i}: prev link broken"));
                }
                if self.state[i as usize] != (FrameState::FreeHead { order: order as u8 }) {
                    return Err(format!(
                        "index {i} in list {order} is {:?}",
                        self.state[i as usize]
                    ));
                }
                prev = i;
                i = self.next[i as usize];
            }
            if self.tails[order] != prev {
                return Err(format!("list {order}: tail pointer broken"));
            }
        }
        let mut i = 0u32;
        while i < n {
            match self.state[i as usize] {
                FrameState::FreeHead { order } => {
                    let size = 1u32 << order;
                    if (self.first_number + i) % size != 0 {
                        return Err(format!("free block at {i} of order {order} is misaligned"));
                    }
                    if i + size > n {
                        return Err(format!(
                            "free block at {i} of order {order} passes the pool end"
                        ));
                    }
                    if !listed[i as usize] {
                        return Err(format!("free block at {i} is in no list"));
                    }
                    for t in i + 1..i + size {
                        if self.state[t as usize] != FrameState::FreeTail {
                            return Err(format!("free block at {i}: frame {t} is not a free tail"));
                        }
                    }
                    if order < MAX_ORDER
                        && let Some(b) = self.buddy_of(i, order)
                        && self.state[b as usize] == (FrameState::FreeHead { order })
                    {
                        return Err(format!(
                            "free blocks at {i} and {b} of order {order} not merged"
                        ));
                    }
                    free += size;
                    i += size;
                }
                FrameState::AllocatedHead { len } => {
                    if len == 0 || i + len > n {
                        return Err(format!("allocation at {i} has bad length {len}"));
                    }
                    for t in i + 1..i + len {
                        if self.state[t as usize] != FrameState::AllocatedTail {
                            return Err(format!(
                                "allocation at {i}: frame {t} is not an allocated tail"
                            ));
                        }
                    }
                    i += len;
                }
                other => return Err(format!("frame {i} is {other:?} outside any block")),
            }
        }
        if free != self.free {
            return Err(format!(
                "free count {} but free blocks hold {free}",
                self.free
            ));
        }
        Ok(())
    }

    fn natural_order(&self, index: u32) -> u8 {
        let number = self.first_number + index;
        if number == 0 {
            MAX_ORDER
        } else {
            (number.trailing_zeros() as u8).min(MAX_ORDER)
        }
    }

    fn buddy_of(&self, index: u32, order: u8) -> Option<u32> {
        let number = (self.first_number + index) ^ (1 << order);
        let b = number.checked_sub(self.first_number)?;
        (b.checked_add(1 << order)? <= self.total()).then_some(b)
    }

    /// Gives back `count` frames from `start` in naturally aligned chunks (LiteOS's
    /// `OsVmPhysPagesFreeContiguous`): the largest chunk the alignment and the rest allow.
    fn free_run(&mut self, mut start: u32, mut count: u32) {
        while count > 0 {
            let mut order = self.natural_order(start);
            while 1u32 << order > count {
                order -= 1;
            }
            self.free_block(start, order);
            start += 1 << order;
            count -= 1 << order;
        }
    }

    fn free_block(&mut self, mut index: u32, mut order: u8) {
        for t in index..index + (1 << order) {
            self.state[t as usize] = FrameState::FreeTail;
        }
        self.free += 1 << order;
        while order < MAX_ORDER {
            let Some(b) = self.buddy_of(index, order) else {
                break;
            };
            if self.state[b as usize] != (FrameState::FreeHead { order }) {
                break;
            }
            self.unlink(order, b);
            self.state[b as usize] = FrameState::FreeTail;
            index = index.min(b);
            order += 1;
        }
        self.state[index as usize] = FrameState::FreeHead { order };
        self.push_tail(order, index);
    }

    fn take_block(&mut self, order: u8) -> Result<u32, BuddyError> {
        let from = (order..=MAX_ORDER)
            .find(|&o| self.heads[o as usize] != NIL)
            .ok_or(BuddyError::Exhausted)?;
        let index = self.heads[from as usize];
        self.unlink(from, index);
        let mut o = from;
        while o > order {
            o -= 1;
            let upper = index + (1 << o);
            self.state[upper as usize] = FrameState::FreeHead { order: o };
            self.push_tail(o, upper);
        }
        // The caller marks the frames allocated; until then they read as free tails.
        self.state[index as usize] = FrameState::FreeTail;
        Ok(index)
    }

    fn take_large(&mut self, blocks: u32) -> Result<u32, BuddyError> {
        let top = MAX_ORDER as usize;
        let size = 1u32 << MAX_ORDER;
        let mut candidate = self.heads[top];
        while candidate != NIL {
            let fits = (1..blocks).all(|k| {
                let i = candidate as u64 + u64::from(k) * u64::from(size);
                i < u64::from(self.total())
                    && self.state[i as usize] == (FrameState::FreeHead { order: MAX_ORDER })
            });
            if fits {
                for k in 0..blocks {
                    let i = candidate + k * size;
                    self.unlink(MAX_ORDER, i);
                    self.state[i as usize] = FrameState::FreeTail;
                }
                return Ok(candidate);
            }
            candidate = self.next[candidate as usize];
        }
        Err(BuddyError::Exhausted)
    }

    fn push_tail(&mut self, order: u8, index: u32) {
        let o = order as usize;
        self.next[index as usize] = NIL;
        self.prev[index as usize] = self.tails[o];
        match self.tails[o] {
            NIL => self.heads[o] = index,
            t => self.next[t as usize] = index,
        }
        self.tails[o] = index;
    }

    fn unlink(&mut self, order: u8, index: u32) {
        let o = order as usize;
        let (p, n) = (self.prev[index as usize], self.next[index as usize]);
        match p {
            NIL => self.heads[o] = n,
            p => self.next[p as usize] = n,
        }
        match n {
            NIL => self.tails[o] = p,
            n => self.prev[n as usize] = p,
        }
        self.next[index as usize] = NIL;
        self.prev[index as usize] = NIL;
    }
}

fn ceil_log2(n: u32) -> u8 {
    (u32::BITS - (n - 1).leading_zeros()) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `check` refuses each corruption of the bookkeeping it is shown.
    #[test]
    fn check_finds_corruptions() {
        let fresh = || {
            let mut b = BuddyAllocator::new(0x40000, 64);
            b.alloc(3).unwrap();
            b.check().unwrap();
            b
        };
        let mut b = fresh();
        b.free += 1;
        assert!(b.check().is_err(), "free count");
        let mut b = fresh();
        b.state[0] = FrameState::AllocatedHead { len: 1000 };
        assert!(b.check().is_err(), "allocation past the end");
        let mut b = fresh();
        b.state[1] = FrameState::FreeTail;
        assert!(b.check().is_err(), "a free tail inside an allocation");
        let mut b = fresh();
        let head = b.heads.iter().position(|&h| h != NIL).unwrap();
        let i = b.heads[head];
        b.state[i as usize] = FrameState::AllocatedHead { len: 1 << head };
        assert!(b.check().is_err(), "a listed block marked allocated");
        // Two free buddies of order 5 that should have merged into the pool's order-6 block.
        let mut b = BuddyAllocator::new(0x40000, 64);
        assert_eq!(b.free_blocks(), [(0, 6)]);
        b.unlink(6, 0);
        for i in [0, 32] {
            b.state[i as usize] = FrameState::FreeHead { order: 5 };
            b.push_tail(5, i);
        }
        assert_eq!(b.free_count(), 64);
        assert_eq!(
            b.check(),
            Err("free blocks at 0 and 32 of order 5 not merged".into())
        );
        // An allocation of length 0, and one one frame longer than the rest of the pool whose
        // frames are all its tails.
        let mut b = BuddyAllocator::new(0x40000, 64);
        assert_eq!(b.alloc(64), Ok(0));
        b.check().unwrap();
        for len in [0, 65] {
            b.state[0] = FrameState::AllocatedHead { len };
            assert_eq!(
                b.check(),
                Err(format!("allocation at 0 has bad length {len}"))
            );
        }
    }

    #[test]
    fn pool_starts_as_maximal_natural_blocks() {
        // 0x40000 is 1 MiB aligned: 3 MiB + 5 frames = three order-8 blocks, then 4 + 1.
        let b = BuddyAllocator::new(0x40000, 3 * 256 + 5);
        assert_eq!(
            b.free_blocks(),
            [(772, 0), (768, 2), (0, 8), (256, 8), (512, 8)]
        );
        b.check().unwrap();
        assert_eq!(b.free_count(), 773);
    }

    #[test]
    fn allocation_takes_the_head_and_splits_to_the_tail() {
        let mut b = BuddyAllocator::new(0x40000, 512);
        assert_eq!(b.alloc(1), Ok(0));
        // Splitting block 0 (order 8) left 1 (o0), 2 (o1), 4 (o2), ... 128 (o7) at list tails.
        assert_eq!(b.alloc(1), Ok(1));
        assert_eq!(b.alloc(2), Ok(2));
        assert_eq!(b.alloc(3), Ok(4)); // order 2 block at 4; frame 7 goes back
        assert_eq!(b.alloc(1), Ok(7));
        b.check().unwrap();
        assert_eq!(b.free_count(), 512 - 8);
    }

    #[test]
    fn freeing_merges_buddies_back() {
        let mut b = BuddyAllocator::new(0x40000, 256);
        let xs: Vec<u32> = (0..256).map(|_| b.alloc(1).unwrap()).collect();
        assert_eq!(b.free_count(), 0);
        assert_eq!(b.alloc(1), Err(BuddyError::Exhausted));
        for x in xs.iter().rev() {
            b.free(*x).unwrap();
            b.check().unwrap();
        }
        assert_eq!(b.free_blocks(), [(0, 8)]);
    }

    #[test]
    fn bad_frees_are_errors_and_change_nothing() {
        let mut b = BuddyAllocator::new(0x40000, 64);
        let a = b.alloc(4).unwrap();
        let before = b.free_blocks();
        assert_eq!(b.free(a + 1), Err(BuddyError::NotBlockHead));
        assert_eq!(b.free(a + 8), Err(BuddyError::NotAllocated));
        assert_eq!(b.free(64), Err(BuddyError::OutOfPool));
        assert_eq!(b.alloc(0), Err(BuddyError::BadCount));
        assert_eq!(b.alloc(65), Err(BuddyError::BadCount));
        assert_eq!(b.free_blocks(), before);
        assert_eq!(b.free(a), Ok(4));
        assert_eq!(b.free(a), Err(BuddyError::NotAllocated));
        b.check().unwrap();
    }

    #[test]
    fn large_allocations_use_consecutive_top_blocks() {
        let mut b = BuddyAllocator::new(0x40000, 4 * 256);
        let one = b.alloc(1).unwrap(); // breaks block 0
        let big = b.alloc(2 * 256 + 1).unwrap();
        assert_eq!(big, 256);
        b.check().unwrap();
        assert_eq!(b.alloc(256), Err(BuddyError::Exhausted));
        b.free(one).unwrap();
        assert_eq!(b.free(big), Ok(513));
        b.check().unwrap();
        assert_eq!(b.free_count(), 1024);
    }

    #[test]
    fn unaligned_pool_start_uses_absolute_alignment() {
        let mut b = BuddyAllocator::new(0x40003, 16);
        b.check().unwrap();
        let x = b.alloc(4).unwrap();
        assert_eq!((0x40003 + x) % 4, 0);
        b.check().unwrap();
    }
}
