//! SysV shared memory (semantics.md section 11): `shmget`, `shmat`, `shmdt`, `shmctl`.
//!
//! A segment owns its frames from creation until it is destroyed (removed and no longer
//! attached); attachments map them without reference counts and never copy-on-write.

use alloc::vec::Vec;

use crate::addr::{PAGE_SIZE, PageRange, PhysFrame, VirtAddr, VirtPage};
use crate::arch::armv7::MapError;
use crate::errno::Errno;
use crate::machine::Machine;
use crate::phys::FrameAllocator;
use crate::space::{Prot, Region, RegionKind, ShmId, SpaceId};
use crate::vm::Vm;

/// `IPC_PRIVATE`: always creates a new segment.
pub const IPC_PRIVATE: i32 = 0;
/// `IPC_CREAT`.
pub const IPC_CREAT: u32 = 0o1000;
/// `IPC_EXCL`.
pub const IPC_EXCL: u32 = 0o2000;
/// `IPC_RMID`.
pub const IPC_RMID: u32 = 0;
/// `IPC_STAT`.
pub const IPC_STAT: u32 = 2;
/// `SHM_RDONLY`.
pub const SHM_RDONLY: u32 = 0o10000;
/// `SHM_RND`.
pub const SHM_RND: u32 = 0o20000;
/// `SHM_REMAP`.
pub const SHM_REMAP: u32 = 0o40000;
/// `SHM_EXEC`.
pub const SHM_EXEC: u32 = 0o100000;
/// Largest segment: 16 MiB.
pub const SHMMAX: u32 = 0x100_0000;
/// Segment slots.
pub const SHMMNI: usize = 192;
/// Pages in all segments together.
pub const SHMALL_PAGES: u32 = 4096;

/// One segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// The key it was created with (`IPC_PRIVATE` for private ones).
    pub key: i32,
    /// Requested size in bytes.
    pub size: u32,
    /// Its frames, one per page, zeroed at creation.
    pub frames: Vec<PhysFrame>,
    /// Live attachments.
    pub attached: u32,
    /// Marked by `IPC_RMID`; destroyed when `attached` reaches 0.
    pub removed: bool,
}

/// What `IPC_STAT` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShmStat {
    /// Size in bytes.
    pub size: u32,
    /// Live attachments.
    pub attached: u32,
    /// Marked removed.
    pub removed: bool,
}

/// The segment slots: up to [`SHMMNI`], made as they are first used (so looking for a
/// segment costs the slots ever used, not all of them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShmTable {
    slots: Vec<Option<Segment>>,
}

impl ShmTable {
    /// The segment `id`, if it exists.
    #[must_use]
    pub fn get(&self, id: ShmId) -> Option<&Segment> {
        self.slots.get(id.0 as usize).and_then(Option::as_ref)
    }

    /// Every live segment.
    pub fn iter(&self) -> impl Iterator<Item = (ShmId, &Segment)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((ShmId(i as u32), s.as_ref()?)))
    }

    /// The lowest free slot, unless all [`SHMMNI`] are in use.
    fn free_slot(&self) -> Option<usize> {
        let slot = self
            .slots
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.slots.len());
        (slot < SHMMNI).then_some(slot)
    }

    /// Puts `segment` in `slot` (a [`Self::free_slot`]).
    fn insert(&mut self, slot: usize, segment: Segment) {
        if slot == self.slots.len() {
            self.slots.push(Some(segment));
        } else {
            self.slots[slot] = Some(segment);
        }
    }

    fn pages_in_use(&self) -> u32 {
        self.iter().map(|(_, s)| s.frames.len() as u32).sum()
    }

    pub(crate) fn attach(&mut self, id: ShmId) {
        if let Some(Some(s)) = self.slots.get_mut(id.0 as usize) {
            s.attached += 1;
        }
    }

    /// Drops one attachment; a removed segment with none left is destroyed.
    pub(crate) fn detach<M: Machine>(
        &mut self,
        machine: &mut M,
        id: ShmId,
        frames: &mut FrameAllocator,
    ) {
        let Some(slot) = self.slots.get_mut(id.0 as usize) else {
            return;
        };
        let Some(s) = slot.as_mut() else { return };
        s.attached = s.attached.saturating_sub(1);
        if s.removed && s.attached == 0 {
            Self::destroy(machine, slot, frames);
        }
    }

    fn destroy<M: Machine>(
        machine: &mut M,
        slot: &mut Option<Segment>,
        frames: &mut FrameAllocator,
    ) {
        if let Some(s) = slot.take() {
            for f in s.frames {
                // Owned by the segment with count 0: freeing cannot fail.
                let _ = frames.free(machine, f);
            }
        }
    }
}

impl<M: Machine> Vm<M> {
    /// `shmget(key, size, flags)`: finds or creates a segment and returns its id.
    pub fn shmget(&mut self, key: i32, size: u32, flags: u32) -> Result<ShmId, Errno> {
        if key != IPC_PRIVATE {
            let found = self
                .shm
                .iter()
                .find(|(_, s)| s.key == key && !s.removed)
                .map(|(id, s)| (id, s.size));
            match found {
                Some(_) if flags & (IPC_CREAT | IPC_EXCL) == IPC_CREAT | IPC_EXCL => {
                    return Err(Errno::EEXIST);
                }
                Some((_, seg_size)) if size > seg_size => return Err(Errno::EINVAL),
                Some((id, _)) => return Ok(id),
                None if flags & IPC_CREAT == 0 => return Err(Errno::ENOENT),
                None => {}
            }
        }
        if size == 0 || size > SHMMAX {
            return Err(Errno::EINVAL);
        }
        let pages = size.div_ceil(PAGE_SIZE);
        let slot = self.shm.free_slot().ok_or(Errno::ENOSPC)?;
        if self.shm.pages_in_use() + pages > SHMALL_PAGES {
            return Err(Errno::ENOSPC);
        }
        let frames = self
            .frames
            .alloc_frames_zeroed(&mut self.machine, pages)
            .map_err(|_| Errno::ENOMEM)?;
        self.shm.insert(
            slot,
            Segment {
                key,
                size,
                frames,
                attached: 0,
                removed: false,
            },
        );
        Ok(ShmId(slot as u32))
    }

    /// `shmat(id, addr, flags)`: maps the whole segment into space `space` and returns where.
    pub fn shmat(
        &mut self,
        space: SpaceId,
        id: ShmId,
        addr: u32,
        flags: u32,
    ) -> Result<VirtAddr, Errno> {
        if !self.spaces.contains_key(&space) {
            return Err(Errno::EINVAL);
        }
        let seg = self.shm.get(id).ok_or(Errno::EINVAL)?;
        if seg.removed {
            return Err(Errno::EIDRM);
        }
        let frames = seg.frames.clone();
        let pages = frames.len() as u32;
        let mut prot = if flags & SHM_RDONLY != 0 {
            Prot::READ
        } else {
            Prot::READ | Prot::WRITE
        };
        if flags & SHM_EXEC != 0 {
            prot |= Prot::EXEC;
        }
        let range = if addr == 0 {
            if flags & SHM_REMAP != 0 {
                return Err(Errno::EINVAL);
            }
            let (lo, hi) = (
                self.layout.mmap_base / PAGE_SIZE,
                self.layout.mmap_end / PAGE_SIZE,
            );
            let regions = &self.spaces[&space].regions;
            let start = regions.first_fit(pages, lo, hi).ok_or(Errno::ENOMEM)?;
            PageRange::new(start, pages).ok_or(Errno::ENOMEM)?
        } else {
            let addr = if flags & SHM_RND != 0 {
                addr & !(PAGE_SIZE - 1)
            } else {
                addr
            };
            let start = VirtPage::from_start(VirtAddr::new(addr)).ok_or(Errno::EINVAL)?;
            let range = PageRange::new(start, pages).ok_or(Errno::EINVAL)?;
            if !self.in_user_window(range) {
                return Err(Errno::EINVAL);
            }
            if !self.spaces[&space].regions.is_free(range) && flags & SHM_REMAP == 0 {
                return Err(Errno::EINVAL);
            }
            range
        };
        let region = Region {
            range,
            prot,
            shared: true,
            kind: RegionKind::Shm {
                id,
                first_page: 0,
                max: prot,
            },
        };
        // Whatever is in the way (with SHM_REMAP) is replaced in one table operation, so an
        // ENOMEM leaves it in place.
        let touched = self.regions_to_remove(space, range)?;
        let s = self.spaces.get_mut(&space).ok_or(Errno::EINVAL)?;
        let mut removed = Vec::new();
        s.mmu
            .replace_range(
                &mut self.machine,
                &mut self.frames,
                range,
                &frames,
                region.attrs(),
                |p, f| removed.push((p, f)),
            )
            .map_err(MapError::errno)?;
        self.forget_removed(space, range, &touched, &removed);
        let s = self.spaces.get_mut(&space).ok_or(Errno::EINVAL)?;
        s.regions.insert(region);
        self.shm.attach(id);
        Ok(range.start_addr())
    }

    /// `shmdt(addr)`: `addr` must be the first address of an attachment in space `space`.
    pub fn shmdt(&mut self, space: SpaceId, addr: u32) -> Result<(), Errno> {
        let s = self.spaces.get(&space).ok_or(Errno::EINVAL)?;
        let page = VirtPage::from_start(VirtAddr::new(addr)).ok_or(Errno::EINVAL)?;
        let region = s.regions.find(page).copied().ok_or(Errno::EINVAL)?;
        if region.range.start() != page || !matches!(region.kind, RegionKind::Shm { .. }) {
            return Err(Errno::EINVAL);
        }
        self.unmap_range(space, region.range)
    }

    /// `shmctl(id, cmd)`: `IPC_RMID` marks the segment removed (destroyed now if unattached);
    /// `IPC_STAT` reports it. Other commands are `EINVAL`.
    pub fn shmctl(&mut self, id: ShmId, cmd: u32) -> Result<Option<ShmStat>, Errno> {
        let seg = self.shm.get(id).ok_or(Errno::EINVAL)?;
        match cmd {
            IPC_STAT => Ok(Some(ShmStat {
                size: seg.size,
                attached: seg.attached,
                removed: seg.removed,
            })),
            IPC_RMID if seg.removed => Err(Errno::EIDRM),
            IPC_RMID => {
                let slot = &mut self.shm.slots[id.0 as usize];
                if let Some(s) = slot.as_mut() {
                    s.removed = true;
                    if s.attached == 0 {
                        ShmTable::destroy(&mut self.machine, slot, &mut self.frames);
                    }
                }
                Ok(None)
            }
            _ => Err(Errno::EINVAL),
        }
    }
}
