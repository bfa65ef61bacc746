//! The HashMap-and-Vec model of semantics.md: user spaces with their regions and breaks.
//!
//! Status: the region-level semantics of `mmap`, `munmap`, `mprotect` and `brk` (return values
//! and region lists). Pages, frames, faults, fork, shm and the frame accounting follow.
//! Written from semantics.md alone: simple loops over sorted vectors, no cleverness.

mod errno;
mod layout;
mod regions;

pub use errno::Errno;
pub use layout::Layout;
pub use regions::{Kind, Region, Space};

/// `MAP_SHARED`.
pub const MAP_SHARED: u32 = 0x01;
/// `MAP_PRIVATE`.
pub const MAP_PRIVATE: u32 = 0x02;
/// `MAP_FIXED`.
pub const MAP_FIXED: u32 = 0x10;
/// `MAP_ANONYMOUS`.
pub const MAP_ANONYMOUS: u32 = 0x20;
/// `MAP_FIXED_NOREPLACE`.
pub const MAP_FIXED_NOREPLACE: u32 = 0x10_0000;

const PAGE: u64 = 4096;

/// One user space's region-level state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    /// The layout.
    pub layout: Layout,
    /// The space.
    pub space: Space,
}

impl Model {
    /// A fresh space: no regions, the break at the heap base.
    #[must_use]
    pub fn new(layout: Layout) -> Self {
        Self {
            space: Space {
                regions: Vec::new(),
                brk: layout.heap_base,
            },
            layout,
        }
    }

    fn in_window(&self, start: u64, len: u64) -> bool {
        start >= u64::from(self.layout.user_base) && start + len <= u64::from(self.layout.user_top)
    }

    /// semantics.md section 4.
    pub fn mmap(&mut self, addr: u32, len: u32, prot: u32, flags: u32) -> Result<u32, Errno> {
        if prot & !7 != 0 {
            return Err(Errno::EINVAL);
        }
        let sharing = flags & (MAP_SHARED | MAP_PRIVATE);
        if sharing != MAP_SHARED && sharing != MAP_PRIVATE {
            return Err(Errno::EINVAL);
        }
        if flags & MAP_ANONYMOUS == 0 {
            return Err(Errno::EINVAL);
        }
        let len = u64::from(len).div_ceil(PAGE) * PAGE;
        let window = u64::from(self.layout.user_top - self.layout.user_base);
        if len == 0 || len > window || len > u64::from(u32::MAX) {
            return Err(Errno::EINVAL);
        }
        let addr = u64::from(addr);
        let start = if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0 {
            if addr % PAGE != 0 || !self.in_window(addr, len) {
                return Err(Errno::EINVAL);
            }
            if self.space.overlaps(addr, len) {
                if flags & MAP_FIXED_NOREPLACE != 0 {
                    return Err(Errno::EEXIST);
                }
                self.unmap(addr, len)?;
            }
            addr
        } else {
            let area = u64::from(self.layout.mmap_end - self.layout.mmap_base);
            if len > area {
                return Err(Errno::ENOMEM);
            }
            let hint = addr.div_ceil(PAGE) * PAGE;
            let usable = hint != 0
                && hint <= u64::from(u32::MAX)
                && self.in_window(hint, len)
                && !self.space.overlaps(hint, len);
            if usable {
                hint
            } else {
                self.first_fit(len).ok_or(Errno::ENOMEM)?
            }
        };
        let prot = normalize(prot);
        self.space.insert(Region {
            start,
            len,
            prot,
            shared: sharing == MAP_SHARED,
            kind: Kind::Anon,
        });
        Ok(start as u32)
    }

    /// semantics.md section 5.
    pub fn munmap(&mut self, addr: u32, len: u32) -> Result<(), Errno> {
        let (addr, len) = (u64::from(addr), u64::from(len).div_ceil(PAGE) * PAGE);
        if addr % PAGE != 0 || len == 0 || !self.in_window(addr, len) {
            return Err(Errno::EINVAL);
        }
        self.unmap(addr, len)
    }

    /// semantics.md section 6 (region level: the split and the new protection).
    pub fn mprotect(&mut self, addr: u32, len: u32, prot: u32) -> Result<(), Errno> {
        if addr % 4096 != 0 || prot & !7 != 0 {
            return Err(Errno::EINVAL);
        }
        if len == 0 {
            return Ok(());
        }
        let (addr, len) = (u64::from(addr), u64::from(len).div_ceil(PAGE) * PAGE);
        // A length that rounds past 32 bits, or a range past 4 GiB, overflows: EINVAL.
        if len > u64::from(u32::MAX) || addr + len > 1 << 32 {
            return Err(Errno::EINVAL);
        }
        if !self.space.covers(addr, len) {
            return Err(Errno::ENOMEM);
        }
        self.space.split_at(addr);
        self.space.split_at(addr + len);
        let prot = normalize(prot);
        for r in &mut self.space.regions {
            if r.start >= addr && r.start + r.len <= addr + len {
                r.prot = prot;
            }
        }
        Ok(())
    }

    /// semantics.md section 7: the new break, or the old one on failure.
    pub fn brk(&mut self, addr: u32) -> u32 {
        let old = self.space.brk;
        let (Some(new_end), Some(old_end)) = (round_up(addr), round_up(old)) else {
            return old;
        };
        if addr < self.layout.heap_base {
            return old;
        }
        if new_end > old_end {
            let grow = new_end - old_end;
            if self.space.overlaps(old_end, grow) || new_end > u64::from(self.layout.mmap_base) {
                return old;
            }
            match self
                .space
                .regions
                .iter_mut()
                .find(|r| r.kind == Kind::Heap && r.start + r.len == old_end)
            {
                Some(heap) => heap.len += grow,
                None => self.space.insert(Region {
                    start: old_end,
                    len: grow,
                    prot: 3,
                    shared: false,
                    kind: Kind::Heap,
                }),
            }
        } else if new_end < old_end && self.unmap(new_end, old_end - new_end).is_err() {
            return old;
        }
        self.space.brk = addr;
        addr
    }

    fn unmap(&mut self, start: u64, len: u64) -> Result<(), Errno> {
        self.space.split_at(start);
        self.space.split_at(start + len);
        self.space
            .regions
            .retain(|r| !(r.start >= start && r.start + r.len <= start + len));
        Ok(())
    }

    fn first_fit(&self, len: u64) -> Option<u64> {
        let (lo, hi) = (
            u64::from(self.layout.mmap_base),
            u64::from(self.layout.mmap_end),
        );
        let mut candidate = lo;
        for r in &self.space.regions {
            if r.start + r.len <= candidate {
                continue;
            }
            if r.start >= candidate + len {
                break;
            }
            candidate = r.start + r.len;
        }
        (candidate + len <= hi).then_some(candidate)
    }
}

/// `WRITE` and `EXEC` imply `READ`.
fn normalize(prot: u32) -> u32 {
    if prot & 6 != 0 { prot | 1 } else { prot }
}

fn round_up(addr: u32) -> Option<u64> {
    let r = u64::from(addr).div_ceil(PAGE) * PAGE;
    (r <= u64::from(u32::MAX)).then_some(r)
}
