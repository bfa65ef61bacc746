//! Memory accesses and the page-fault handler (semantics.md section 9).
//!
//! On hardware an access that the page tables refuse raises an abort, and the abort handler
//! calls [`Vm::handle_fault`]. [`Vm::access`] does the same in software (a query of the tables,
//! then the handler), for host tests and benchmarks; the checker drives the handler from its own
//! MMU model instead.

use crate::addr::{PhysAddr, VirtAddr, VirtPage};
use crate::arch::armv7::{MapError, MappingAttrs, MappingFlags, Translation};
use crate::machine::Machine;
use crate::space::{Prot, RegionKind, SpaceId};
use crate::vm::Vm;

/// What an access does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// A load.
    Read,
    /// A store.
    Write,
    /// An instruction fetch.
    Execute,
}

/// The privilege of an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// PL0.
    User,
    /// PL1 (the kernel touching user memory, as `copy_from_user` does, or its own).
    Kernel,
}

impl Mode {
    /// What an unresolved fault in this mode reports.
    #[must_use]
    pub const fn unresolved(self) -> FaultError {
        match self {
            Mode::User => FaultError::Segv,
            Mode::Kernel => FaultError::Efault,
        }
    }
}

/// An access the handler could not resolve. The space lives on and nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultError {
    /// A user-mode access: the process gets SIGSEGV.
    Segv,
    /// A kernel-mode access: the copy returns `EFAULT`.
    Efault,
    /// The tables held less than the handler read from them: an inconsistency of the vmm's
    /// own ([`MapError::Internal`](crate::arch::armv7::MapError::Internal)), never a fault a
    /// program caused. Nothing changed.
    Internal,
}

impl Mode {
    /// What a table operation's error means to the faulting access: an inconsistency of the
    /// vmm's own stays one; anything else (no frame for a table) leaves the fault unresolved.
    fn table_error(self, e: MapError) -> FaultError {
        match e {
            MapError::Internal { .. } => FaultError::Internal,
            _ => self.unresolved(),
        }
    }
}

/// How the handler resolved a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resolution {
    /// The tables already allow the access (a stale TLB entry faulted): nothing to do.
    AlreadyAllowed,
    /// A zeroed frame was mapped (demand paging), or an shm/device page mapped again.
    Mapped,
    /// A shared private anon frame was copied for the writer.
    Copied,
    /// The writer held the only reference: the frame was made writable in place.
    Reused,
}

/// Whether attributes let `mode` do `access` (the hardware rules: AP for PL0/PL1, XN only for
/// execute; no PXN).
#[must_use]
pub fn permits(attrs: MappingAttrs, access: Access, mode: Mode) -> bool {
    let f = attrs.flags.normalized();
    if mode == Mode::User && !f.contains(MappingFlags::USER) {
        return false;
    }
    match access {
        Access::Read => f.contains(MappingFlags::READ),
        Access::Write => f.contains(MappingFlags::WRITE),
        Access::Execute => f.contains(MappingFlags::READ) && f.contains(MappingFlags::EXECUTE),
    }
}

impl<M: Machine> Vm<M> {
    /// Handles a fault of `access` in `mode` at `va` in space `id`.
    pub fn handle_fault(
        &mut self,
        id: SpaceId,
        va: VirtAddr,
        access: Access,
        mode: Mode,
    ) -> Result<Resolution, FaultError> {
        let unresolved = mode.unresolved();
        if !self.layout.in_user_window(va.as_u32(), 1) {
            return Err(unresolved);
        }
        let space = self.spaces.get_mut(&id).ok_or(unresolved)?;
        let page = VirtPage::containing(va);
        let region = space.regions.find(page).copied().ok_or(unresolved)?;
        let needed = match access {
            Access::Read => Prot::READ,
            Access::Write => Prot::READ | Prot::WRITE,
            Access::Execute => Prot::READ | Prot::EXEC,
        };
        if !region.prot.normalized().contains(needed) {
            return Err(unresolved);
        }
        let attrs = region.attrs();
        let current = space
            .mmu
            .query(&mut self.machine, va)
            .map_err(|_| unresolved)?;
        let Some(Translation {
            frame: old,
            attrs: now,
            ..
        }) = current
        else {
            // Not present: demand-zero for private anon memory; shm and device pages again.
            let (frame, fresh) = match region.kind {
                RegionKind::Anon | RegionKind::Heap => (
                    self.frames
                        .alloc_zeroed(&mut self.machine)
                        .map_err(|_| unresolved)?,
                    true,
                ),
                RegionKind::Shm {
                    id: shm,
                    first_page,
                    ..
                } => {
                    let index = (first_page + region.backing_offset(page)) as usize;
                    let seg = self.shm.get(shm).ok_or(unresolved)?;
                    (*seg.frames.get(index).ok_or(unresolved)?, false)
                }
                RegionKind::Device { first_frame } => (
                    first_frame
                        .checked_add(region.backing_offset(page))
                        .ok_or(unresolved)?,
                    false,
                ),
            };
            let one = crate::addr::PageRange::new(page, 1).ok_or(unresolved)?;
            if let Err(e) = space
                .mmu
                .map(&mut self.machine, &mut self.frames, one, frame, attrs)
            {
                if fresh {
                    let _ = self.frames.free(&mut self.machine, frame);
                }
                return Err(mode.table_error(e));
            }
            if fresh {
                let _ = self.frames.retain(frame);
            }
            return Ok(Resolution::Mapped);
        };
        if permits(now, access, mode) {
            return Ok(Resolution::AlreadyAllowed);
        }
        if access != Access::Write || !region.is_private_anon() {
            return Err(unresolved);
        }
        // Copy-on-write: the page is present, read-only, private anon, in a writable region.
        let count = self.frames.ref_count(old).map_err(|_| unresolved)?;
        if count <= 1 {
            space
                .mmu
                .remap_page(&mut self.machine, &mut self.frames, page, old, attrs)
                .map_err(|e| mode.table_error(e))?;
            return Ok(Resolution::Reused);
        }
        let new = self
            .frames
            .alloc(&mut self.machine)
            .map_err(|_| unresolved)?;
        self.machine.copy_frame(new, old);
        if let Err(e) = space
            .mmu
            .remap_page(&mut self.machine, &mut self.frames, page, new, attrs)
        {
            let _ = self.frames.free(&mut self.machine, new);
            return Err(mode.table_error(e));
        }
        let _ = self.frames.retain(new);
        let _ = self.frames.release(&mut self.machine, old);
        Ok(Resolution::Copied)
    }

    /// An access as the hardware would do it: allowed by the tables, or a fault handed to
    /// [`Vm::handle_fault`] and then allowed. Returns the physical address reached.
    pub fn access(
        &mut self,
        id: SpaceId,
        va: VirtAddr,
        access: Access,
        mode: Mode,
    ) -> Result<PhysAddr, FaultError> {
        let unresolved = mode.unresolved();
        for _ in 0..2 {
            let t = if va.as_u32() >= crate::arch::armv7::TTBR1_BASE.as_u32() {
                self.kernel.query(&mut self.machine, va)
            } else {
                let space = self.spaces.get(&id).ok_or(unresolved)?;
                space.mmu.query(&mut self.machine, va)
            };
            if let Ok(Some(t)) = t
                && permits(t.attrs, access, mode)
            {
                return Ok(PhysAddr::new(t.frame.start().as_u32() | va.page_offset()));
            }
            self.handle_fault(id, va, access, mode)?;
        }
        Err(unresolved)
    }

    /// Reads the word at `va` (4-byte aligned) as `mode` would, faulting pages in as needed.
    pub fn read_word(&mut self, id: SpaceId, va: VirtAddr, mode: Mode) -> Result<u32, FaultError> {
        let pa = self.access(id, va.align_down(4), Access::Read, mode)?;
        Ok(self.machine.read_word(pa))
    }

    /// Writes the word at `va` (4-byte aligned) as `mode` would, faulting pages in as needed.
    pub fn write_word(
        &mut self,
        id: SpaceId,
        va: VirtAddr,
        value: u32,
        mode: Mode,
    ) -> Result<(), FaultError> {
        let pa = self.access(id, va.align_down(4), Access::Write, mode)?;
        self.machine.write_word(pa, value);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{Access, Mode, permits};
    use crate::arch::armv7::{MappingAttrs, MappingFlags, MemoryType};

    fn attrs(flags: MappingFlags) -> MappingAttrs {
        MappingAttrs {
            flags,
            memory: MemoryType::Cached,
        }
    }

    /// The hardware's rules, case by case: PL0 needs USER; a read needs READ (implied by
    /// WRITE and EXECUTE), a write WRITE, a fetch EXECUTE; PL1 ignores USER.
    #[test]
    fn permits_follows_the_access_permission_rules() {
        use Access::{Execute, Read, Write};
        use MappingFlags as F;
        let cases = [
            (F::empty(), [false, false, false]),
            (F::READ, [true, false, false]),
            (F::READ | F::WRITE, [true, true, false]),
            (F::READ | F::EXECUTE, [true, false, true]),
            (F::WRITE, [true, true, false]),
            (F::EXECUTE, [true, false, true]),
            (F::READ | F::WRITE | F::EXECUTE, [true, true, true]),
        ];
        for (flags, want) in cases {
            for (access, allowed) in [Read, Write, Execute].into_iter().zip(want) {
                let user = attrs(flags | F::USER);
                assert_eq!(
                    permits(user, access, Mode::User),
                    allowed,
                    "{flags:?} {access:?}"
                );
                assert_eq!(
                    permits(user, access, Mode::Kernel),
                    allowed,
                    "{flags:?} {access:?}"
                );
                assert_eq!(permits(attrs(flags), access, Mode::Kernel), allowed);
                assert!(
                    !permits(attrs(flags), access, Mode::User),
                    "{flags:?} {access:?}"
                );
            }
        }
    }
}
