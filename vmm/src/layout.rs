//! The address-space layout (semantics.md section 1): qemu `arm_virt` constants by default,
//! every size configurable so tests can shrink the pool or the mmap area to reach edge cases.

use crate::addr::{PAGE_SIZE, PhysAddr, PhysFrame};

/// Where everything lives. All values are page-aligned byte addresses; ranges are half-open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// First byte of the user window.
    pub user_base: u32,
    /// One past the last byte of the user window.
    pub user_top: u32,
    /// The heap base, where the break starts.
    pub heap_base: u32,
    /// Start of the mmap area (first fit starts here).
    pub mmap_base: u32,
    /// End of the mmap area (first fit never passes it).
    pub mmap_end: u32,
    /// Start of the vmalloc window (kernel).
    pub vmalloc_base: u32,
    /// End of the vmalloc window.
    pub vmalloc_end: u32,
    /// First byte of RAM; the kernel maps RAM linearly at VA = PA.
    pub ram_base: u32,
    /// RAM size in bytes.
    pub ram_size: u32,
    /// First byte of the frame pool (inside RAM).
    pub pool_base: u32,
    /// Frame pool size in bytes.
    pub pool_size: u32,
    /// First byte of the device window (RAM outside the pool, for device mappings in tests).
    pub device_base: u32,
    /// Device window size in bytes.
    pub device_size: u32,
    /// The highest user ASID handed out (1 to 255; semantics.md section 2 says 255, tests may
    /// lower it to reach exhaustion).
    pub asids: u8,
    /// CPUs (1 to [`MAX_CPUS`](crate::cpu::MAX_CPUS)); with more than one, every TLB
    /// invalidate is the inner-shareable broadcast form (semantics.md section 14).
    pub cpus: u8,
}

impl Layout {
    /// The qemu `arm_virt` layout with 256 MiB of RAM: pool 64 MiB at 0x4100_0000 (the first
    /// 16 MiB hold the kernel image), device window 16 MiB at 0x4800_0000.
    pub const ARM_VIRT: Self = Self {
        user_base: 0x0100_0000,
        user_top: 0x3F00_0000,
        heap_base: 0x0FC0_0000,
        mmap_base: 0x1F80_0000,
        mmap_end: 0x2740_0000,
        vmalloc_base: 0xC000_0000,
        vmalloc_end: 0xC800_0000,
        ram_base: 0x4000_0000,
        ram_size: 0x1000_0000,
        pool_base: 0x4100_0000,
        pool_size: 0x0400_0000,
        device_base: 0x4800_0000,
        device_size: 0x0100_0000,
        asids: 255,
        cpus: 1,
    };

    /// The default layout with a pool of `frames` frames (for tests that reach exhaustion).
    #[must_use]
    pub const fn with_pool_frames(frames: u32) -> Self {
        let mut l = Self::ARM_VIRT;
        l.pool_size = frames.saturating_mul(PAGE_SIZE);
        l
    }

    /// First frame of the pool.
    #[must_use]
    pub const fn pool_first_frame(&self) -> PhysFrame {
        PhysFrame::containing(PhysAddr::new(self.pool_base))
    }
    /// Frames in the pool.
    #[must_use]
    pub const fn pool_frames(&self) -> u32 {
        self.pool_size / PAGE_SIZE
    }

    /// Whether the layout makes sense: everything page-aligned; a non-empty user window at or
    /// below the TTBR0 limit (1 GiB) holding the heap base and a non-empty mmap area; RAM, the
    /// pool and the vmalloc window in the kernel half; the device window outside the pool.
    #[must_use]
    pub const fn is_consistent(&self) -> bool {
        let aligned = (self.user_base
            | self.user_top
            | self.heap_base
            | self.mmap_base
            | self.mmap_end
            | self.vmalloc_base
            | self.vmalloc_end
            | self.ram_base
            | self.ram_size
            | self.pool_base
            | self.pool_size
            | self.device_base
            | self.device_size)
            % PAGE_SIZE
            == 0;
        let ttbr1 = crate::arch::armv7::TTBR1_BASE.as_u32();
        let ram_end = self.ram_base as u64 + self.ram_size as u64;
        aligned
            && self.user_base > 0
            && self.user_base < self.user_top
            && self.user_top <= ttbr1
            && self.heap_base >= self.user_base
            && self.heap_base < self.user_top
            && self.mmap_base >= self.user_base
            && self.mmap_base < self.mmap_end
            && self.mmap_end <= self.user_top
            && self.ram_base >= ttbr1
            && self.ram_size > 0
            && self.pool_base >= self.ram_base
            && self.pool_base as u64 + self.pool_size as u64 <= ram_end
            && self.vmalloc_base >= ttbr1
            && self.vmalloc_base < self.vmalloc_end
            && (self.vmalloc_end as u64 <= self.ram_base as u64
                || self.vmalloc_base as u64 >= ram_end)
            && !self.overlaps_pool(self.device_base, self.device_size as u64)
            && self.asids >= 1
            && self.cpus >= 1
            && self.cpus <= crate::cpu::MAX_CPUS
    }

    /// Whether `[start, start + len)` lies in the user window (`len` may be 0; no wrap).
    #[must_use]
    pub const fn in_user_window(&self, start: u32, len: u64) -> bool {
        start >= self.user_base && start as u64 + len <= self.user_top as u64
    }

    /// Whether the physical range `[start, start + len)` overlaps the frame pool.
    #[must_use]
    pub const fn overlaps_pool(&self, start: u32, len: u64) -> bool {
        let (s, e) = (start as u64, start as u64 + len);
        let (ps, pe) = (
            self.pool_base as u64,
            self.pool_base as u64 + self.pool_size as u64,
        );
        s < pe && ps < e
    }
}

impl Default for Layout {
    fn default() -> Self {
        Self::ARM_VIRT
    }
}

#[cfg(test)]
mod tests {
    use super::Layout;

    /// The user window is `[user_base, user_top)`: ranges touching either edge from inside
    /// are in, one byte past either edge is out, and a long range never wraps in.
    #[test]
    fn user_window_edges() {
        let l = Layout::ARM_VIRT;
        let (base, top) = (l.user_base, l.user_top);
        assert!(l.in_user_window(base, 0x1000));
        assert!(l.in_user_window(top - 0x1000, 0x1000));
        assert!(l.in_user_window(base, u64::from(top - base)));
        assert!(!l.in_user_window(base - 0x1000, 0x1000));
        assert!(!l.in_user_window(top - 0x1000, 0x1001));
        assert!(l.in_user_window(top, 0), "an empty range at the top edge");
        assert!(l.in_user_window(top - 1, 1));
        assert!(!l.in_user_window(base, u64::MAX - u64::from(base)));
    }

    /// The pool is `[pool_base, pool_base + pool_size)`: ranges ending at its start or
    /// starting at its end do not overlap it; one byte over either edge does.
    #[test]
    fn pool_overlap_edges() {
        let l = Layout::ARM_VIRT;
        let (start, end) = (l.pool_base, l.pool_base + l.pool_size);
        assert!(!l.overlaps_pool(start - 0x1000, 0x1000));
        assert!(l.overlaps_pool(start - 0x1000, 0x1001));
        assert!(!l.overlaps_pool(end, 0x1000));
        assert!(l.overlaps_pool(end - 1, 0x1000));
        assert!(l.overlaps_pool(start + 0x1000, 0x1000));
        assert!(!l.overlaps_pool(end, 0));
        assert!(l.overlaps_pool(start - 0x1000, u64::from(l.pool_size) + 0x2000));
    }

    /// Every field of a layout, in declaration order.
    const FIELDS: [fn(&mut Layout) -> &mut u32; 13] = [
        |l| &mut l.user_base,
        |l| &mut l.user_top,
        |l| &mut l.heap_base,
        |l| &mut l.mmap_base,
        |l| &mut l.mmap_end,
        |l| &mut l.vmalloc_base,
        |l| &mut l.vmalloc_end,
        |l| &mut l.ram_base,
        |l| &mut l.ram_size,
        |l| &mut l.pool_base,
        |l| &mut l.pool_size,
        |l| &mut l.device_base,
        |l| &mut l.device_size,
    ];

    /// Every address and size must be page-aligned: one field off by a word at a time; and
    /// the user window may not start at address 0.
    #[test]
    fn every_field_is_page_aligned_and_the_user_window_starts_above_0() {
        assert!(Layout::ARM_VIRT.is_consistent());
        for (i, field) in FIELDS.iter().enumerate() {
            let mut l = Layout::ARM_VIRT;
            *field(&mut l) += 4;
            assert!(!l.is_consistent(), "field {i} unaligned");
        }
        let mut l = Layout::ARM_VIRT;
        l.user_base = 0;
        assert!(!l.is_consistent(), "a user window from address 0");
    }

    /// Alignment is judged on all fields together: two fields off by the same half page (whose
    /// low bits would cancel if they were combined by anything but OR) still make it unaligned.
    #[test]
    fn two_unaligned_fields_never_cancel() {
        for pair in FIELDS.windows(2) {
            let mut l = Layout::ARM_VIRT;
            *pair[0](&mut l) += 0x800;
            *pair[1](&mut l) += 0x800;
            assert!(!l.is_consistent(), "{l:x?}");
            // The same move by whole pages keeps it consistent: only alignment is wrong above.
            let mut l = Layout::ARM_VIRT;
            *pair[0](&mut l) += 0x1000;
            *pair[1](&mut l) += 0x1000;
            assert!(l.is_consistent(), "{l:x?}");
        }
    }

    /// Each bound of `is_consistent` at its edge: the last consistent value and the first
    /// inconsistent one.
    #[test]
    fn consistency_edges() {
        let ok = |f: fn(&mut Layout)| {
            let mut l = Layout::ARM_VIRT;
            f(&mut l);
            l.is_consistent()
        };
        // The heap base lies in the user window.
        assert!(ok(|l| l.heap_base = l.user_top - 0x1000));
        assert!(!ok(|l| l.heap_base = l.user_top));
        assert!(ok(|l| l.heap_base = l.user_base));
        assert!(!ok(|l| l.heap_base = l.user_base - 0x1000));
        // The mmap area is not empty and lies in the user window.
        assert!(ok(|l| l.mmap_end = l.mmap_base + 0x1000));
        assert!(!ok(|l| l.mmap_end = l.mmap_base));
        assert!(ok(|l| l.mmap_end = l.user_top));
        assert!(!ok(|l| l.mmap_end = l.user_top + 0x1000));
        // The user window ends at or below the TTBR0 limit.
        assert!(ok(|l| l.user_top = 0x4000_0000));
        assert!(!ok(|l| l.user_top = 0x4000_1000));
        // RAM is not empty, even with an empty pool at its start.
        assert!(ok(|l| {
            l.pool_base = l.ram_base;
            l.pool_size = 0;
        }));
        assert!(!ok(|l| {
            l.ram_size = 0;
            l.pool_base = l.ram_base;
            l.pool_size = 0;
        }));
        // The pool ends inside RAM.
        assert!(ok(|l| {
            l.device_base = l.ram_base;
            l.pool_size = l.ram_base + l.ram_size - l.pool_base;
        }));
        assert!(!ok(|l| {
            l.device_base = l.ram_base;
            l.pool_size = l.ram_base + l.ram_size - l.pool_base + 0x1000;
        }));
        assert!(!ok(|l| l.pool_size = l.ram_size));
        assert!(!ok(|l| l.pool_base = l.ram_base - 0x1000));
        // The vmalloc window is not empty, is in the kernel half and misses RAM on either side.
        assert!(ok(|l| l.vmalloc_end = l.vmalloc_base + 0x1000));
        assert!(!ok(|l| l.vmalloc_end = l.vmalloc_base));
        assert!(!ok(|l| {
            l.user_top = 0x3000_0000;
            l.vmalloc_base = 0x3000_0000;
            l.vmalloc_end = 0x3800_0000;
        }));
        assert!(ok(|l| {
            l.user_top = 0x3000_0000;
            l.vmalloc_base = 0x4000_0000;
            l.vmalloc_end = 0x4000_0000 + 0x1000;
            l.ram_base = 0x4000_1000;
            l.ram_size = 0x0FFF_F000;
        }));
        assert!(ok(|l| l.vmalloc_base = l.ram_base + l.ram_size));
        assert!(!ok(|l| l.vmalloc_base = l.ram_base + l.ram_size - 0x1000));
        fn below_ram(l: &mut Layout) {
            l.ram_base = 0x6000_0000;
            l.pool_base = 0x6100_0000;
            l.device_base = 0x6800_0000;
            l.vmalloc_base = 0x4000_0000;
            l.vmalloc_end = 0x6000_0000;
        }
        assert!(ok(below_ram));
        assert!(!ok(|l| {
            below_ram(l);
            l.vmalloc_end = 0x6000_1000;
        }));
    }
}
