//! SysV shared memory (semantics.md section 11): segments, attaching, detaching, removal.

use super::*;

impl Model {
    /// `shmget(key, size, flags)` (`IPC_CREAT` = 0o1000, `IPC_EXCL` = 0o2000).
    pub fn shmget(&mut self, key: i32, size: u32, flags: u32) -> Result<u32, Errno> {
        if key != 0 {
            let found = self.segments.iter().enumerate().find_map(|(i, s)| {
                s.as_ref()
                    .filter(|s| s.key == key && !s.removed)
                    .map(|s| (i as u32, s.size))
            });
            match found {
                Some(_) if flags & 0o3000 == 0o3000 => return Err(Errno::EEXIST),
                Some((_, seg_size)) if size > seg_size => return Err(Errno::EINVAL),
                Some((id, _)) => return Ok(id),
                None if flags & 0o1000 == 0 => return Err(Errno::ENOENT),
                None => {}
            }
        }
        if size == 0 || size > 0x100_0000 {
            return Err(Errno::EINVAL);
        }
        let pages = size.div_ceil(4096);
        // The lowest free slot of 192 (slots are made as they are first used).
        let slot = self
            .segments
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.segments.len());
        if slot >= 192 {
            return Err(Errno::ENOSPC);
        }
        let in_use: u32 = self
            .segments
            .iter()
            .flatten()
            .map(|s| s.frames.len() as u32)
            .sum();
        if in_use + pages > 4096 {
            return Err(Errno::ENOSPC);
        }
        if !self.can_allocate(pages) {
            return Err(Errno::ENOMEM);
        }
        self.free -= pages;
        let frames = self.owned_frames(pages, true);
        let segment = Some(Segment {
            key,
            size,
            frames,
            attached: 0,
            removed: false,
        });
        if slot == self.segments.len() {
            self.segments.push(segment);
        } else {
            self.segments[slot] = segment;
        }
        Ok(slot as u32)
    }

    /// `shmat(id, addr, flags)` (`SHM_RDONLY` = 0o10000, `SHM_RND` = 0o20000,
    /// `SHM_REMAP` = 0o40000, `SHM_EXEC` = 0o100000).
    pub fn shmat(&mut self, space: u32, seg: u32, addr: u32, flags: u32) -> Result<u32, Errno> {
        if !self.spaces.contains_key(&space) {
            return Err(Errno::EINVAL);
        }
        let s = self
            .segments
            .get(seg as usize)
            .and_then(Option::as_ref)
            .ok_or(Errno::EINVAL)?;
        if s.removed {
            return Err(Errno::EIDRM);
        }
        let frames = s.frames.clone();
        let len = frames.len() as u64 * PAGE;
        let mut prot = if flags & 0o10000 != 0 { 1 } else { 3 };
        if flags & 0o100000 != 0 {
            prot |= 4;
        }
        let start = if addr == 0 {
            if flags & 0o40000 != 0 {
                return Err(Errno::EINVAL);
            }
            self.first_fit(space, len).ok_or(Errno::ENOMEM)?
        } else {
            let addr = u64::from(if flags & 0o20000 != 0 {
                addr & !0xFFF
            } else {
                addr
            });
            if addr % PAGE != 0 || !self.in_window(addr, len) {
                return Err(Errno::EINVAL);
            }
            if self.spaces[&space].overlaps(addr, len) && flags & 0o40000 == 0 {
                return Err(Errno::EINVAL);
            }
            addr
        };
        self.check_unmappable(space, start, len)?;
        let sp = &self.spaces[&space];
        let mut groups: Vec<u64> = (0..frames.len() as u64)
            .map(|i| (start + i * PAGE) / GROUP)
            .collect();
        groups.dedup();
        let cost = groups.iter().filter(|&&g| !sp.has_small_group(g)).count() as u32;
        if !self.can_allocate(cost) {
            return Err(Errno::ENOMEM);
        }
        self.unmap(space, start, len);
        let before = self.table_pages(space).unwrap_or(1);
        let sp = self.spaces.get_mut(&space).ok_or(Errno::EINVAL)?;
        for (i, f) in frames.iter().enumerate() {
            sp.ptes.insert(
                start + i as u64 * PAGE,
                Pte {
                    frame: *f,
                    perms: prot,
                },
            );
        }
        sp.insert(Region {
            start,
            len,
            prot,
            shared: true,
            kind: Kind::Shm {
                id: seg,
                first: 0,
                max: prot,
            },
        });
        let after = self.table_pages(space).unwrap_or(1);
        self.free -= after - before;
        if let Some(Some(s)) = self.segments.get_mut(seg as usize) {
            s.attached += 1;
        }
        Ok(start as u32)
    }

    /// `shmdt(addr)`: `addr` must be the first address of an attachment.
    pub fn shmdt(&mut self, space: u32, addr: u32) -> Result<(), Errno> {
        let s = self.spaces.get(&space).ok_or(Errno::EINVAL)?;
        let r = *s
            .regions
            .iter()
            .find(|r| r.start == u64::from(addr) && matches!(r.kind, Kind::Shm { .. }))
            .ok_or(Errno::EINVAL)?;
        self.unmap(space, r.start, r.len);
        Ok(())
    }

    /// `shmctl(id, IPC_RMID = 0)`; `IPC_STAT` = 2 returns (size, attached, removed).
    pub fn shmctl(&mut self, seg: u32, cmd: u32) -> Result<Option<(u32, u32, bool)>, Errno> {
        let s = self
            .segments
            .get(seg as usize)
            .and_then(Option::as_ref)
            .ok_or(Errno::EINVAL)?;
        match cmd {
            2 => Ok(Some((s.size, s.attached, s.removed))),
            0 if s.removed => Err(Errno::EIDRM),
            0 => {
                let unattached = s.attached == 0;
                if let Some(Some(s)) = self.segments.get_mut(seg as usize) {
                    s.removed = true;
                }
                if unattached {
                    self.destroy(seg);
                }
                Ok(None)
            }
            _ => Err(Errno::EINVAL),
        }
    }

    pub(super) fn detach(&mut self, seg: u32) {
        let Some(slot) = self.segments.get_mut(seg as usize) else {
            return;
        };
        let Some(s) = slot.as_mut() else { return };
        s.attached = s.attached.saturating_sub(1);
        if s.removed && s.attached == 0 {
            self.destroy(seg);
        }
    }

    fn destroy(&mut self, seg: u32) {
        if let Some(s) = self.segments.get_mut(seg as usize).and_then(Option::take) {
            for f in s.frames {
                self.frames.remove(&f);
                self.frames_died += 1;
                self.free += 1;
            }
        }
    }
}
