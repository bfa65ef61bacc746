//! The model of semantics.md: user spaces with regions, breaks and page tables of logical
//! frames, written from semantics.md alone (simple loops over sorted maps, no cleverness).
//!
//! It holds several spaces and predicts the free-frame and page-table page counts exactly. This
//! file has the model's state, spaces (`spawn`, `exit`, `fork`), `mmap`, `munmap`, `mprotect`,
//! `brk`, device mappings, vmalloc and the frame bookkeeping; `mremap.rs`, `shm.rs` and
//! `access.rs` (demand paging, copy-on-write, frame contents) one concept each; `regions.rs`
//! the region and page maps.

mod access;
mod errno;
mod layout;
mod mremap;
mod regions;
mod shm;

use std::collections::BTreeMap;

use crate::armv7::{MemoryType, PageAttributes, Permissions};
use std::collections::btree_map::Entry;

pub use errno::Errno;
pub use layout::Layout;
pub use regions::{Kind, Ptes, Region, Space, Stamped};

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
/// Pages served by one 4 KiB page of four 1 KiB L2 tables.
const GROUP: u64 = 4 << 20;
const MIB: u64 = 0x10_0000;
/// Device frames are named by their physical address with this bit set.
pub const DEVICE_FRAME: FrameId = 1 << 63;

/// A logical frame: the model never knows physical addresses.
pub type FrameId = u64;

/// Whether `frame` names device memory: it carries [`DEVICE_FRAME`]. A device frame is shared
/// by every mapping of its address, never counted and never freed; its entry in the frame table
/// appears with the first word written or read. (The tag answers without a search of the frame
/// table, which forks and unmaps of large device mappings would do for every page.)
#[must_use]
pub fn is_device(frame: FrameId) -> bool {
    frame & DEVICE_FRAME != 0
}

/// A present page: its frame and the permissions the hardware grants (R=1, W=2, X=4; a shared
/// frame lacks W: copy-on-write).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pte {
    /// The frame.
    pub frame: FrameId,
    /// Hardware permissions.
    pub perms: u32,
}

impl Pte {
    /// The hardware attributes semantics.md section 13 gives this user page: its rights at
    /// PL0 and PL1 are its permissions (AP grants PL1 what it grants PL0; execute is XN only,
    /// no PXN; `PROT_NONE` is AP = 000), not global, domain 0, and Shareable Device memory
    /// for a device frame, Normal write-back write-allocate shareable memory for any other.
    #[must_use]
    pub fn attributes(&self) -> PageAttributes {
        let rights = (self.perms & 7) as u8;
        PageAttributes {
            rights: Permissions {
                pl0: rights,
                pl1: rights,
            },
            not_global: true,
            domain: 0,
            memory: if is_device(self.frame) {
                MemoryType::SHAREABLE_DEVICE
            } else {
                MemoryType::NORMAL_WBWA_SHAREABLE
            },
        }
    }
}

/// A frame: how many PTEs map it (private anon frames) and its non-zero words.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frame {
    /// PTEs mapping it (always 0 for shm frames, which their segment owns).
    pub refs: u32,
    /// An shm segment's frame.
    pub shm: bool,
    /// Word offset -> value; absent words are zero.
    pub words: BTreeMap<u32, u32>,
}

/// A SysV shm segment (semantics.md section 11).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Its key (0 = `IPC_PRIVATE`).
    pub key: i32,
    /// Size in bytes.
    pub size: u32,
    /// Its frames, one per page.
    pub frames: Vec<FrameId>,
    /// Live attachments.
    pub attached: u32,
    /// Marked by `IPC_RMID`.
    pub removed: bool,
}

/// What an access does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Load.
    Read,
    /// Store of a value.
    Write(u32),
    /// Fetch.
    Execute,
}

/// An unresolved access (semantics.md section 9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessError {
    /// User mode.
    Segv,
    /// Kernel mode.
    Efault,
}

/// Every space, every frame, and the free-frame count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    /// The layout.
    pub layout: Layout,
    /// Live spaces by id (ids as the vmm hands them out: 1, 2, ...), each stamped (every
    /// mutable access to a space renews its stamp).
    pub spaces: BTreeMap<u32, Stamped<Space>>,
    /// Private anon frames.
    pub frames: BTreeMap<FrameId, Frame>,
    /// Free frames in the pool.
    pub free: u32,
    /// shm segment slots: at most 192, made as they are first used.
    pub segments: Vec<Option<Segment>>,
    /// `vmalloc` allocations: first address -> one frame per page.
    pub vmalloc: BTreeMap<u64, Vec<FrameId>>,
    /// Failure injection: when `Some(k)`, the k-th frame allocation of the next op (0-based) is
    /// refused, so an op needing more than `k` frames fails (and changes nothing).
    pub refuse_allocation: Option<u64>,
    next_space: u32,
    /// The next frame id: ids only grow, none is reused.
    next_frame: FrameId,
    /// Frames dead so far (see [`Model::frames_died`]).
    frames_died: u64,
}

impl Model {
    /// The world just booted: no user space, and every frame of the pool free but the
    /// kernel's page-table pages (its 16 KiB L1 table; RAM is mapped with sections).
    #[must_use]
    pub fn booted(layout: Layout) -> Self {
        let mut model = Self::new(layout, 0);
        model.free = (layout.pool_size / 4096).saturating_sub(model.kernel_table_pages());
        model
    }

    /// No spaces yet; `free` frames in the pool.
    #[must_use]
    pub fn new(layout: Layout, free: u32) -> Self {
        Self {
            layout,
            spaces: BTreeMap::new(),
            frames: BTreeMap::new(),
            free,
            segments: Vec::new(),
            vmalloc: BTreeMap::new(),
            refuse_allocation: None,
            next_space: 1,
            next_frame: 1,
            frames_died: 0,
        }
    }

    /// Page-table pages of space `id`: its L1 table plus one page per 4 MiB group holding a
    /// present page (anonymous memory is always mapped with small pages).
    #[must_use]
    pub fn table_pages(&self, id: u32) -> Option<u32> {
        Some(1 + self.spaces.get(&id)?.small_group_count())
    }

    /// The kernel's page-table pages: its 16 KiB L1 table plus one L2 page per 4 MiB group of
    /// the vmalloc window in use (the linear map of RAM is made of sections).
    #[must_use]
    pub fn kernel_table_pages(&self) -> u32 {
        4 + self.vmalloc_groups().len() as u32
    }

    fn vmalloc_groups(&self) -> std::collections::BTreeSet<u64> {
        self.vmalloc
            .iter()
            .flat_map(|(&start, f)| (0..f.len() as u64).map(move |i| (start + i * PAGE) / GROUP))
            .collect()
    }

    /// `vmalloc(len)`: zeroed frames mapped read/write for the kernel at the first fit in the
    /// vmalloc window.
    pub fn vmalloc(&mut self, len: u32) -> Result<u32, Errno> {
        let pages = u64::from(len).div_ceil(PAGE);
        if pages == 0 || u64::from(len) + PAGE - 1 > u64::from(u32::MAX) {
            return Err(Errno::EINVAL);
        }
        let (lo, hi) = (0xC000_0000u64, 0xC800_0000u64);
        let mut candidate = lo;
        for (&start, frames) in &self.vmalloc {
            if start >= candidate + pages * PAGE {
                break;
            }
            candidate = candidate.max(start + frames.len() as u64 * PAGE);
        }
        // Not even the pages fit: ENOMEM without counting table pages (a large request
        // would count tens of thousands of pages for nothing).
        if candidate + pages * PAGE > hi || !self.can_allocate(pages as u32) {
            return Err(Errno::ENOMEM);
        }
        let have = self.vmalloc_groups();
        let mut groups: Vec<u64> = (0..pages)
            .map(|i| (candidate + i * PAGE) / GROUP)
            .filter(|g| !have.contains(g))
            .collect();
        groups.dedup();
        let cost = pages as u32 + groups.len() as u32;
        if !self.can_allocate(cost) {
            return Err(Errno::ENOMEM);
        }
        self.free -= cost;
        let frames = self.owned_frames(pages as u32, false);
        self.vmalloc.insert(candidate, frames);
        Ok(candidate as u32)
    }

    /// `vfree(va)`: `va` must start a `vmalloc` allocation.
    pub fn vfree(&mut self, va: u32) -> Result<(), Errno> {
        let before = self.kernel_table_pages();
        let frames = self.vmalloc.remove(&u64::from(va)).ok_or(Errno::EINVAL)?;
        for f in &frames {
            self.frames.remove(f);
            self.frames_died += 1;
        }
        self.free += frames.len() as u32 + before - self.kernel_table_pages();
        Ok(())
    }

    /// Whether an op may take `cost` frames: enough are free and none of them is refused.
    fn can_allocate(&self, cost: u32) -> bool {
        self.free >= cost && self.refuse_allocation.is_none_or(|k| k >= u64::from(cost))
    }

    /// L2 pages needed to split the sections only partly inside `[start, start + len)`.
    fn split_cost(s: &Space, start: u64, len: u64) -> u32 {
        let mut groups: Vec<u64> = s
            .partial_sections(start, len)
            .iter()
            .map(|m| m / GROUP)
            .collect();
        groups.dedup();
        groups.iter().filter(|&&g| !s.has_small_group(g)).count() as u32
    }

    /// The lowest ASID no live space holds, in `1..=layout.asids`.
    fn free_asid(&self) -> Option<u8> {
        (1..=self.layout.asids).find(|&a| self.spaces.values().all(|s| s.asid != a))
    }

    /// `spawn`: an empty space (one frame for its L1 table, the lowest free ASID).
    pub fn spawn(&mut self) -> Result<u32, Errno> {
        let asid = self.free_asid().ok_or(Errno::ENOMEM)?;
        if !self.can_allocate(1) {
            return Err(Errno::ENOMEM);
        }
        self.free -= 1;
        Ok(self.insert(Space {
            regions: Vec::new(),
            brk: self.layout.heap_base,
            ptes: regions::Ptes::default(),
            sections: std::collections::BTreeSet::new(),
            asid,
        }))
    }

    fn insert(&mut self, space: Space) -> u32 {
        let id = self.next_space;
        self.next_space += 1;
        self.spaces.insert(id, Stamped::new(space));
        id
    }

    /// `exit`: every page, attachment, table page and the L1 table go back.
    pub fn exit(&mut self, id: u32) -> Result<(), Errno> {
        let s = self.spaces.get(&id).ok_or(Errno::EINVAL)?;
        let regions: Vec<(u64, u64)> = s.regions.iter().map(|r| (r.start, r.len)).collect();
        for (start, len) in regions {
            self.unmap(id, start, len);
        }
        self.free += 1;
        self.spaces.remove(&id);
        Ok(())
    }

    /// `fork`: the child gets the regions, the break and every page, copy-on-write.
    pub fn fork(&mut self, parent: u32) -> Result<u32, Errno> {
        let p = self.spaces.get(&parent).ok_or(Errno::EINVAL)?;
        // The child maps device regions afresh: a section wherever a whole MiB of the region has
        // a 1 MiB aligned physical address, whatever the parent split.
        let mut child: Space = (**p).clone();
        child.sections.clear();
        for r in &p.regions {
            if let Kind::Device { pa } = r.kind {
                let mut mib = r.start.next_multiple_of(MIB);
                while mib + MIB <= r.start + r.len {
                    if (pa + (mib - r.start)) % MIB == 0 {
                        child.sections.insert(mib);
                    }
                    mib += MIB;
                }
            }
        }
        let need = 1 + child.small_group_count();
        child.asid = self.free_asid().ok_or(Errno::ENOMEM)?;
        if !self.can_allocate(need) {
            return Err(Errno::ENOMEM);
        }
        self.free -= need;
        // Private pages become copy-on-write in both (write permission dropped, one more
        // reference to the frame); shm and device pages stay shared as they are. The child's
        // pages are the parent's, in the same order.
        let p = self.spaces.get_mut(&parent).ok_or(Errno::EINVAL)?;
        for (pte, child_pte) in p.ptes.values_mut().zip(child.ptes.values_mut()) {
            let private = !is_device(pte.frame)
                && match self.frames.get_mut(&pte.frame) {
                    Some(f) if f.shm => false,
                    Some(f) => {
                        f.refs += 1;
                        true
                    }
                    None => true,
                };
            if private {
                pte.perms &= !2;
                child_pte.perms &= !2;
            }
        }
        let attachments: Vec<u32> = child
            .regions
            .iter()
            .filter_map(|r| match r.kind {
                Kind::Shm { id, .. } => Some(id),
                _ => None,
            })
            .collect();
        for id in attachments {
            if let Some(Some(seg)) = self.segments.get_mut(id as usize) {
                seg.attached += 1;
            }
        }
        Ok(self.insert(child))
    }

    fn in_window(&self, start: u64, len: u64) -> bool {
        start >= u64::from(self.layout.user_base) && start + len <= u64::from(self.layout.user_top)
    }

    /// semantics.md section 4.
    pub fn mmap(
        &mut self,
        id: u32,
        addr: u32,
        len: u32,
        prot: u32,
        flags: u32,
    ) -> Result<u32, Errno> {
        if !self.spaces.contains_key(&id) || prot & !7 != 0 {
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
            if self.spaces[&id].overlaps(addr, len) {
                if flags & MAP_FIXED_NOREPLACE != 0 {
                    return Err(Errno::EEXIST);
                }
                self.unmap_checked(id, addr, len)?;
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
                && !self.spaces[&id].overlaps(hint, len);
            if usable {
                hint
            } else {
                self.first_fit(id, len).ok_or(Errno::ENOMEM)?
            }
        };
        let region = Region {
            start,
            len,
            prot: normalize(prot),
            shared: sharing == MAP_SHARED,
            kind: Kind::Anon,
        };
        if let Some(s) = self.spaces.get_mut(&id) {
            s.insert(region);
        }
        Ok(start as u32)
    }

    /// semantics.md section 5.
    pub fn munmap(&mut self, id: u32, addr: u32, len: u32) -> Result<(), Errno> {
        let (addr, len) = (u64::from(addr), u64::from(len).div_ceil(PAGE) * PAGE);
        if !self.spaces.contains_key(&id)
            || addr % PAGE != 0
            || len == 0
            || !self.in_window(addr, len)
        {
            return Err(Errno::EINVAL);
        }
        self.unmap_checked(id, addr, len)
    }

    /// semantics.md section 6.
    pub fn mprotect(&mut self, id: u32, addr: u32, len: u32, prot: u32) -> Result<(), Errno> {
        if !self.spaces.contains_key(&id) || addr % 4096 != 0 || prot & !7 != 0 {
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
        let Some(s) = self.spaces.get_mut(&id) else {
            return Err(Errno::EINVAL);
        };
        if !s.covers(addr, len) {
            return Err(Errno::ENOMEM);
        }
        let prot = normalize(prot);
        let attachments: Vec<&Region> = s
            .regions
            .iter()
            .filter(|r| {
                matches!(r.kind, Kind::Shm { .. }) && r.start < addr + len && addr < r.start + r.len
            })
            .collect();
        if attachments
            .iter()
            .any(|r| r.start < addr || r.start + r.len > addr + len)
        {
            return Err(Errno::EINVAL);
        }
        if attachments
            .iter()
            .any(|r| matches!(r.kind, Kind::Shm { max, .. } if prot & !max != 0))
        {
            return Err(Errno::EACCES);
        }
        // Sections only partly inside are split into small pages first.
        let cost = Self::split_cost(s, addr, len);
        let partial = s.partial_sections(addr, len);
        let before = s.small_group_count();
        if !self.can_allocate(cost) {
            return Err(Errno::ENOMEM);
        }
        let frames = &self.frames;
        let Some(s) = self.spaces.get_mut(&id) else {
            return Err(Errno::EINVAL);
        };
        for m in partial {
            s.sections.remove(&m);
        }
        self.free -= s.small_group_count() - before;
        s.split_at(addr);
        s.split_at(addr + len);
        for r in &mut s.regions {
            if r.start >= addr && r.start + r.len <= addr + len {
                r.prot = prot;
            }
        }
        for (_, pte) in s.ptes.range_mut(addr..addr + len) {
            let shared = frames.get(&pte.frame).is_some_and(|f| f.refs > 1);
            pte.perms = if shared { prot & !2 } else { prot };
        }
        Ok(())
    }

    /// semantics.md section 7: the new break, or the old one on failure.
    pub fn brk(&mut self, id: u32, addr: u32) -> u32 {
        let Some(s) = self.spaces.get(&id) else {
            return 0;
        };
        let old = s.brk;
        let (Some(new_end), Some(old_end)) = (round_up(addr), round_up(old)) else {
            return old;
        };
        if addr < self.layout.heap_base {
            return old;
        }
        if new_end > old_end {
            let grow = new_end - old_end;
            if s.overlaps(old_end, grow) || new_end > u64::from(self.layout.mmap_base) {
                return old;
            }
            let Some(s) = self.spaces.get_mut(&id) else {
                return old;
            };
            match s
                .regions
                .iter_mut()
                .find(|r| r.kind == Kind::Heap && r.start + r.len == old_end)
            {
                Some(heap) => heap.len += grow,
                None => s.insert(Region {
                    start: old_end,
                    len: grow,
                    prot: 3,
                    shared: false,
                    kind: Kind::Heap,
                }),
            }
        } else if new_end < old_end && self.unmap_checked(id, new_end, old_end - new_end).is_err() {
            return old;
        }
        if let Some(s) = self.spaces.get_mut(&id) {
            s.brk = addr;
        }
        addr
    }

    /// Device mapping (semantics.md section 12): `[pa, pa + len)` at `va`, every page at once,
    /// 1 MiB sections where `va` and `pa` are both aligned and a whole MiB remains.
    pub fn map_device(
        &mut self,
        id: u32,
        va: u32,
        pa: u32,
        len: u32,
        prot: u32,
    ) -> Result<u32, Errno> {
        if prot & !7 != 0 || va % 4096 != 0 || pa % 4096 != 0 || len % 4096 != 0 || len == 0 {
            return Err(Errno::EINVAL);
        }
        let (va, pa, len) = (u64::from(va), u64::from(pa), u64::from(len));
        let pool = (
            u64::from(self.layout.pool_base),
            u64::from(self.layout.pool_base) + u64::from(self.layout.pool_size),
        );
        if !self.in_window(va, len) || pa + len > 1 << 32 || (pa < pool.1 && pool.0 < pa + len) {
            return Err(Errno::EINVAL);
        }
        let s = self.spaces.get(&id).ok_or(Errno::EINVAL)?;
        if s.overlaps(va, len) {
            return Err(Errno::EEXIST);
        }
        // The chunking of ArchMmu::map: a section at each aligned pair with a MiB left.
        let mut sections = Vec::new();
        let mut small = Vec::new();
        let mut off = 0;
        while off < len {
            let (v, p) = (va + off, pa + off);
            if v % MIB == 0 && p % MIB == 0 && len - off >= MIB {
                sections.push(v);
                off += MIB;
            } else {
                small.push(v);
                off += PAGE;
            }
        }
        let mut groups: Vec<u64> = small
            .iter()
            .map(|v| v / GROUP)
            .filter(|&g| !s.has_small_group(g))
            .collect();
        groups.dedup();
        let cost = groups.len() as u32;
        if !self.can_allocate(cost) {
            return Err(Errno::ENOMEM);
        }
        self.free -= cost;
        let prot = normalize(prot);
        let s = self.spaces.get_mut(&id).ok_or(Errno::EINVAL)?;
        for i in 0..len / PAGE {
            s.ptes.insert(
                va + i * PAGE,
                Pte {
                    frame: DEVICE_FRAME | (pa + i * PAGE),
                    perms: prot,
                },
            );
        }
        s.sections.extend(sections);
        s.insert(Region {
            start: va,
            len,
            prot,
            shared: true,
            kind: Kind::Device { pa },
        });
        Ok(va as u32)
    }

    /// `count` fresh zeroed frames owned by a segment (`shm`) or a vmalloc allocation, outside
    /// reference counting.
    fn owned_frames(&mut self, count: u32, shm: bool) -> Vec<FrameId> {
        (0..count)
            .map(|_| {
                let f = self.next_frame;
                self.next_frame += 1;
                self.frames.insert(
                    f,
                    Frame {
                        refs: 0,
                        shm,
                        words: BTreeMap::new(),
                    },
                );
                f
            })
            .collect()
    }

    /// How many frames have died (left `frames`) so far: a reader that saw the same count
    /// before knows that no frame died since.
    #[must_use]
    pub fn frames_died(&self) -> u64 {
        self.frames_died
    }

    fn new_frame(&mut self, words: BTreeMap<u32, u32>) -> FrameId {
        let id = self.next_frame;
        self.next_frame += 1;
        self.frames.insert(
            id,
            Frame {
                refs: 1,
                shm: false,
                words,
            },
        );
        id
    }

    fn drop_ref(&mut self, frame: FrameId) {
        if is_device(frame) {
            return;
        }
        if let Entry::Occupied(mut f) = self.frames.entry(frame)
            && !f.get().shm
        {
            f.get_mut().refs -= 1;
            if f.get().refs == 0 {
                f.remove();
                self.frames_died += 1;
                self.free += 1;
            }
        }
    }

    /// munmap's refusal: an shm attachment only partly inside `[start, start + len)`.
    fn check_unmappable(&self, id: u32, start: u64, len: u64) -> Result<(), Errno> {
        let s = self.spaces.get(&id).ok_or(Errno::EINVAL)?;
        let partial = s.regions.iter().any(|r| {
            matches!(r.kind, Kind::Shm { .. })
                && r.start < start + len
                && start < r.start + r.len
                && !(r.start >= start && r.start + r.len <= start + len)
        });
        if partial { Err(Errno::EINVAL) } else { Ok(()) }
    }

    /// munmap as a whole: the shm check, the frames for splitting partial sections, the unmap.
    fn unmap_checked(&mut self, id: u32, start: u64, len: u64) -> Result<(), Errno> {
        self.check_unmappable(id, start, len)?;
        let cost = Self::split_cost(self.spaces.get(&id).ok_or(Errno::EINVAL)?, start, len);
        if !self.can_allocate(cost) {
            return Err(Errno::ENOMEM);
        }
        self.unmap(id, start, len);
        Ok(())
    }

    /// Removes regions and pages in `[start, start + len)` (the caller checked
    /// [`Model::check_unmappable`]); table pages of emptied groups go back; shm attachments
    /// inside are detached.
    fn unmap(&mut self, id: u32, start: u64, len: u64) {
        let before = self.table_pages(id).unwrap_or(1);
        let Some(s) = self.spaces.get_mut(&id) else {
            return;
        };
        s.split_at(start);
        s.split_at(start + len);
        // Sections touching the range: wholly inside ones go, partial ones become small pages.
        s.sections.retain(|&m| m + MIB <= start || m >= start + len);
        let inside = |r: &Region| r.start >= start && r.start + r.len <= start + len;
        let detached: Vec<u32> = s
            .regions
            .iter()
            .filter(|r| inside(r))
            .filter_map(|r| match r.kind {
                Kind::Shm { id, .. } => Some(id),
                _ => None,
            })
            .collect();
        s.regions.retain(|r| !inside(r));
        let mut gone = s.ptes.split_off(&start);
        let mut kept_above = gone.split_off(&(start + len));
        s.ptes.append(&mut kept_above);
        for pte in gone.into_values() {
            self.drop_ref(pte.frame);
        }
        // Splits may have added L2 pages, emptied groups freed theirs.
        let after = self.table_pages(id).unwrap_or(1);
        self.free = (i64::from(self.free) + i64::from(before) - i64::from(after)) as u32;
        for seg in detached {
            self.detach(seg);
        }
    }

    fn first_fit(&self, id: u32, len: u64) -> Option<u64> {
        let (lo, hi) = (
            u64::from(self.layout.mmap_base),
            u64::from(self.layout.mmap_end),
        );
        let mut candidate = lo;
        for r in &self.spaces.get(&id)?.regions {
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
