//! `mremap` (semantics.md section 8): resize in place, move (`MREMAP_MAYMOVE`) or move over
//! a fixed target (`MREMAP_FIXED`), with the pages, their frames and their copy-on-write state.

use super::*;

impl Model {
    /// semantics.md section 8 (`MREMAP_MAYMOVE` = 1, `MREMAP_FIXED` = 2).
    pub fn mremap(
        &mut self,
        id: u32,
        old: u32,
        old_len: u32,
        new_len: u32,
        flags: u32,
        new_addr: u32,
    ) -> Result<u32, Errno> {
        if !self.spaces.contains_key(&id) || flags & !3 != 0 {
            return Err(Errno::EINVAL);
        }
        let (may_move, fixed) = (flags & 1 != 0, flags & 2 != 0);
        if fixed && !may_move {
            return Err(Errno::EINVAL);
        }
        if old % 4096 != 0 || old_len == 0 || new_len == 0 {
            return Err(Errno::EINVAL);
        }
        let (old, src_len, new_len) = (
            u64::from(old),
            u64::from(old_len).div_ceil(PAGE) * PAGE,
            u64::from(new_len).div_ceil(PAGE) * PAGE,
        );
        if src_len > u64::from(u32::MAX) || old + src_len > 1 << 32 || new_len > u64::from(u32::MAX)
        {
            return Err(Errno::EINVAL);
        }
        let region = *self.spaces[&id]
            .regions
            .iter()
            .find(|r| r.start <= old && old < r.start + r.len && old + src_len <= r.start + r.len)
            .ok_or(Errno::EFAULT)?;
        if matches!(region.kind, Kind::Shm { .. } | Kind::Device { .. }) {
            return Err(Errno::EINVAL);
        }
        let kept = src_len.min(new_len);
        if fixed {
            let target = u64::from(new_addr);
            if target % PAGE != 0
                || !self.in_window(target, new_len)
                || (target < old + src_len && old < target + new_len)
            {
                return Err(Errno::EINVAL);
            }
            self.check_unmappable(id, target, new_len)?;
            if !self.can_allocate(self.move_cost(id, old, kept, target, Some((target, new_len)))) {
                return Err(Errno::ENOMEM);
            }
            self.unmap(id, target, new_len);
            self.move_pages(id, old, kept, target);
            self.unmap(id, old + kept, src_len - kept);
            self.relocate(id, region, old, src_len, target, new_len);
            return Ok(new_addr);
        }
        if new_len == src_len {
            return Ok(old as u32);
        }
        if new_len < src_len {
            self.unmap(id, old + new_len, src_len - new_len);
            return Ok(old as u32);
        }
        let extra = new_len - src_len;
        let s = &self.spaces[&id];
        if old + src_len == region.start + region.len
            && self.in_window(old + src_len, extra)
            && !s.overlaps(old + src_len, extra)
        {
            if let Some(r) = self
                .spaces
                .get_mut(&id)
                .and_then(|s| s.regions.iter_mut().find(|r| r.start == region.start))
            {
                r.len += extra;
            }
            return Ok(old as u32);
        }
        if !may_move {
            return Err(Errno::ENOMEM);
        }
        let target = self.first_fit(id, new_len).ok_or(Errno::ENOMEM)?;
        if !self.can_allocate(self.move_cost(id, old, kept, target, None)) {
            return Err(Errno::ENOMEM);
        }
        self.move_pages(id, old, kept, target);
        self.relocate(id, region, old, src_len, target, new_len);
        Ok(target as u32)
    }

    /// L2 pages a move needs: the groups its target pages land in, and those of sections the
    /// cleared range `clear` only partly covers, that hold no small page yet.
    fn move_cost(&self, id: u32, from: u64, len: u64, to: u64, clear: Option<(u64, u64)>) -> u32 {
        let s = &self.spaces[&id];
        let mut groups: Vec<u64> = s
            .ptes
            .range(from..from + len)
            .map(|(p, _)| (to + (p - from)) / GROUP)
            .collect();
        if let Some((start, len)) = clear {
            groups.extend(s.partial_sections(start, len).iter().map(|m| m / GROUP));
        }
        groups.sort_unstable();
        groups.dedup();
        groups.iter().filter(|&&g| !s.has_small_group(g)).count() as u32
    }

    /// Moves the present pages of `[from, from + len)` to `to`, with their frames and permissions.
    fn move_pages(&mut self, id: u32, from: u64, len: u64, to: u64) {
        let before = self.table_pages(id).unwrap_or(1);
        let Some(s) = self.spaces.get_mut(&id) else {
            return;
        };
        let moving: Vec<(u64, Pte)> = s
            .ptes
            .range(from..from + len)
            .map(|(&p, &e)| (p, e))
            .collect();
        for (p, e) in moving {
            s.ptes.remove(&p);
            s.ptes.insert(to + (p - from), e);
        }
        let after = self.table_pages(id).unwrap_or(1);
        self.free = self.free + before - after;
    }

    /// The region bookkeeping of a move: `[old, old + len)` leaves, the target arrives with the
    /// attributes of the region it came from.
    fn relocate(&mut self, id: u32, region: Region, old: u64, len: u64, target: u64, new_len: u64) {
        let Some(s) = self.spaces.get_mut(&id) else {
            return;
        };
        s.split_at(old);
        s.split_at(old + len);
        s.regions.retain(|r| r.start != old);
        s.insert(Region {
            start: target,
            len: new_len,
            ..region
        });
    }
}
