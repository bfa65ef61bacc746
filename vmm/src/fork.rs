//! `fork` (semantics.md section 10): the child gets every region, the break, and every present
//! page; private anon pages become copy-on-write in both spaces.

use alloc::vec::Vec;

use crate::addr::{PhysFrame, VirtPage};
use crate::arch::armv7::{ArchMmu, MapError, MappingFlags};
use crate::errno::Errno;
use crate::machine::Machine;
use crate::space::{RegionKind, SpaceId, VmSpace};
use crate::vm::Vm;

impl<M: Machine> Vm<M> {
    /// Clones space `parent`. The child is built completely first; only then are the parent's
    /// writable private anon pages made read-only, so an `ENOMEM` (no ASID, no frame for a table
    /// page) leaves the parent exactly as it was.
    pub fn fork(&mut self, parent: SpaceId) -> Result<SpaceId, Errno> {
        let p = self.spaces.get(&parent).ok_or(Errno::EINVAL)?;
        let regions = p.regions.clone();
        let brk = p.brk;
        // Each region's present pages (only the tables under regions are read).
        let mut present: Vec<Vec<(VirtPage, PhysFrame)>> = Vec::with_capacity(regions.len());
        for region in regions.iter() {
            let pages = p
                .mmu
                .mappings_in(&mut self.machine, region.range)
                .map_err(|_| Errno::EINVAL)?;
            present.push(pages.into_iter().map(|(page, t)| (page, t.frame)).collect());
        }
        let mut child = ArchMmu::new_user(&mut self.machine, &mut self.frames, &mut self.asids)
            .map_err(MapError::errno)?;
        let mut retained: Vec<PhysFrame> = Vec::new();
        let mut built = Ok(());
        for (region, inside) in regions.iter().zip(&present) {
            if inside.is_empty() {
                continue;
            }
            let mut attrs = region.attrs();
            let result = match region.kind {
                RegionKind::Anon | RegionKind::Heap => {
                    attrs.flags.remove(MappingFlags::WRITE);
                    child.map_each(&mut self.machine, &mut self.frames, inside, attrs)
                }
                RegionKind::Shm { .. } => {
                    child.map_each(&mut self.machine, &mut self.frames, inside, attrs)
                }
                RegionKind::Device { first_frame } => child.map(
                    &mut self.machine,
                    &mut self.frames,
                    region.range,
                    first_frame,
                    attrs,
                ),
            };
            if let Err(e) = result {
                built = Err(e.errno());
                break;
            }
            if region.is_private_anon() {
                for &(_, f) in inside {
                    if self.frames.retain(f).is_ok() {
                        retained.push(f);
                    }
                }
            }
        }
        // Copy-on-write in the parent: its private anon pages become read-only, in one table
        // operation (all or nothing). Sections never straddle a region boundary (every split of
        // a region splits its sections), so this needs no frame: an error is an inconsistency
        // of the vmm's own, reported as such (`Errno::Internal`) with the parent unchanged.
        if built.is_ok() {
            let p = self.spaces.get_mut(&parent).ok_or(Errno::EINVAL)?;
            let changes: Vec<_> = regions
                .iter()
                .filter(|r| r.is_private_anon())
                .map(|region| {
                    let mut attrs = region.attrs();
                    attrs.flags.remove(MappingFlags::WRITE);
                    (region.range, attrs)
                })
                .collect();
            if let Err(e) = p
                .mmu
                .protect_many(&mut self.machine, &mut self.frames, None, &changes)
            {
                built = Err(e.errno());
            }
        }
        if let Err(e) = built {
            // Tear the child down (after an ENOMEM nothing of the parent was touched).
            let window = self.user_window();
            let _ = child.unmap(&mut self.machine, &mut self.frames, window);
            for f in retained {
                let _ = self.frames.release(&mut self.machine, f);
            }
            child.destroy(&mut self.machine, &mut self.frames, &mut self.asids);
            return Err(e);
        }
        for region in regions.iter() {
            if let RegionKind::Shm { id, .. } = region.kind {
                self.shm.attach(id);
            }
        }
        Ok(self.insert_space(VmSpace {
            mmu: child,
            regions,
            brk,
        }))
    }
}
