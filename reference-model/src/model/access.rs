//! Accesses (semantics.md section 9): a word read, written or fetched in user or kernel mode,
//! with demand paging and copy-on-write on a fault.

use super::*;

impl Model {
    /// An access to the word at `va` (rounded down to 4 bytes) in `user` or kernel mode, with
    /// the fault handling of semantics.md section 9. Reads return the word, writes 0.
    pub fn access(
        &mut self,
        id: u32,
        va: u32,
        access: Access,
        user: bool,
    ) -> Result<u32, AccessError> {
        let unresolved = if user {
            AccessError::Segv
        } else {
            AccessError::Efault
        };
        let va = u64::from(va & !3);
        let page = va & !(PAGE - 1);
        let need = match access {
            Access::Read => 1,
            Access::Write(_) => 2,
            Access::Execute => 4,
        };
        if !self.spaces.contains_key(&id) {
            return Err(unresolved);
        }
        if va >= 0x4000_0000 {
            // The kernel half: only the vmalloc window is modelled; kernel read/write, never
            // user, never execute (XN); nothing faults in.
            let frame = self
                .vmalloc
                .range(..=page)
                .next_back()
                .filter(|(start, f)| page < *start + f.len() as u64 * PAGE)
                .map(|(start, f)| f[((page - start) / PAGE) as usize])
                .filter(|_| !user && need != 4)
                .ok_or(unresolved)?;
            return Ok(self.word(frame, (va - page) as u32, access));
        }
        let s = self.spaces.get(&id).ok_or(unresolved)?;
        let pte = s.ptes.get(&page).copied();
        if !pte.is_some_and(|p| p.perms & need != 0 && p.perms & 1 != 0) {
            self.fault(id, page, need).ok_or(unresolved)?;
        }
        let s = self.spaces.get(&id).ok_or(unresolved)?;
        let pte = s
            .ptes
            .get(&page)
            .copied()
            .filter(|p| p.perms & need != 0)
            .ok_or(unresolved)?;
        Ok(self.word(pte.frame, (va - page) as u32, access))
    }

    /// Reads or writes the word at `offset` of `frame` (writes return 0).
    fn word(&mut self, frame: FrameId, offset: u32, access: Access) -> u32 {
        let frame = self.frames.entry(frame).or_default();
        match access {
            Access::Write(0) => {
                frame.words.remove(&offset);
                0
            }
            Access::Write(v) => {
                frame.words.insert(offset, v);
                0
            }
            Access::Read | Access::Execute => frame.words.get(&offset).copied().unwrap_or(0),
        }
    }

    /// The fault handler: `None` when unresolved (nothing changes).
    fn fault(&mut self, id: u32, page: u64, need: u32) -> Option<()> {
        if !self.in_window(page, PAGE) {
            return None;
        }
        let s = self.spaces.get(&id)?;
        let region = *s
            .regions
            .iter()
            .find(|r| r.start <= page && page < r.start + r.len)?;
        if region.prot & 1 == 0 || region.prot & need != need {
            return None;
        }
        match s.ptes.get(&page).copied() {
            None => {
                let cost = 1 + u32::from(!s.has_small_group(page / GROUP));
                if !self.can_allocate(cost) {
                    return None;
                }
                self.free -= cost;
                let frame = self.new_frame(BTreeMap::new());
                self.spaces.get_mut(&id)?.ptes.insert(
                    page,
                    Pte {
                        frame,
                        perms: region.prot,
                    },
                );
            }
            Some(pte) if pte.perms & need != 0 => {}
            Some(pte) if need == 2 && matches!(region.kind, Kind::Anon | Kind::Heap) => {
                let refs = self.frames.get(&pte.frame).map_or(0, |f| f.refs);
                if refs > 1 {
                    if !self.can_allocate(1) {
                        return None;
                    }
                    self.free -= 1;
                    let words = self
                        .frames
                        .get(&pte.frame)
                        .map(|f| f.words.clone())
                        .unwrap_or_default();
                    let copy = self.new_frame(words);
                    self.drop_ref(pte.frame);
                    self.spaces.get_mut(&id)?.ptes.insert(
                        page,
                        Pte {
                            frame: copy,
                            perms: region.prot,
                        },
                    );
                } else {
                    self.spaces.get_mut(&id)?.ptes.insert(
                        page,
                        Pte {
                            frame: pte.frame,
                            perms: region.prot,
                        },
                    );
                }
            }
            Some(_) => return None,
        }
        Some(())
    }
}
