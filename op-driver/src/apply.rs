//! Applying a concrete op to the vmm: the one place that turns ops into vmm calls, for the host
//! checker and the QEMU guest alike. Accesses go through an [`Accessor`]: the host simulates
//! the MMU over the real table bytes, the guest issues real loads and stores.

use alloc::vec::Vec;

use vmm::addr::VirtAddr;
use vmm::fault::{Access, FaultError, Mode};
use vmm::machine::Machine;
use vmm::space::{ShmId, SpaceId};
use vmm::{Cpu, Errno, Vm};

use crate::{AccessOp, ConcreteOp, EFAULT, Outcome, SEGV};

/// Why one hardware attempt at an access did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Miss {
    /// The MMU faulted at this address (DFAR): the fault goes to the vmm's handler.
    Fault(u32),
    /// The accessor cannot perform this kind of access at all.
    Unsupported,
}

/// How word accesses reach memory, one hardware attempt at a time: the host simulates the
/// MMU and TLB over the real table bytes, the guest issues real loads and stores. [`apply`]
/// hands each fault to [`Vm::handle_fault`] and retries, as a kernel does.
pub trait Accessor<M: Machine> {
    /// Tries `access` at `va` (word-aligned) in `space` and `mode` once, on `cpu`; returns the
    /// word read (0 for a write).
    fn attempt(
        &mut self,
        vm: &mut Vm<M>,
        cpu: Cpu,
        space: SpaceId,
        va: u32,
        access: AccessOp,
        mode: Mode,
    ) -> Result<u32, Miss>;
}

/// Attempts allowed per access: the first, one after a fault-in, one after a copy-on-write.
const ATTEMPTS: usize = 3;

/// An access as the hardware and the kernel do it together: an attempt, and on a fault the
/// vmm's handler and another attempt.
fn access<M: Machine>(
    vm: &mut Vm<M>,
    cpu: Cpu,
    space: SpaceId,
    va: u32,
    access: AccessOp,
    mode: Mode,
    accessor: &mut impl Accessor<M>,
) -> Result<u32, FaultError> {
    let kind = match access {
        AccessOp::Read => Access::Read,
        AccessOp::Write(_) => Access::Write,
        AccessOp::Exec => Access::Execute,
    };
    for _ in 0..ATTEMPTS {
        match accessor.attempt(vm, cpu, space, va, access, mode) {
            Ok(value) => return Ok(value),
            Err(Miss::Fault(at)) => {
                vm.handle_fault(space, VirtAddr::new(at), kind, mode)?;
            }
            Err(Miss::Unsupported) => break,
        }
    }
    Err(mode.unresolved())
}

fn outcome<T>(r: Result<T, Errno>, value: impl FnOnce(T) -> u32) -> Outcome {
    r.map_or_else(|e| Outcome::Err(e.number()), |x| Outcome::Ok(value(x)))
}

/// Applies `op` to `vm`. `spaces` is the list of live spaces in creation order: `spawn` and a
/// successful `fork` append, `exit` removes.
pub fn apply<M: Machine>(
    vm: &mut Vm<M>,
    spaces: &mut Vec<SpaceId>,
    op: &ConcreteOp,
    accessor: &mut impl Accessor<M>,
) -> Outcome {
    use ConcreteOp as C;
    let unit = |(): ()| 0;
    let addr = |a: VirtAddr| a.as_u32();
    let space = op.space().map(|s| spaces.get(s as usize).copied());
    let v = match space {
        Some(Some(v)) => v,
        Some(None) => return Outcome::Skipped,
        // Ops without a space: `v` is never used.
        None => SpaceId(0),
    };
    match *op {
        C::Skip => Outcome::Skipped,
        C::Spawn => {
            let r = vm.spawn();
            if let Ok(id) = r {
                spaces.push(id);
            }
            outcome(r, |_| 0)
        }
        C::Fork { .. } => {
            let r = vm.fork(v);
            if let Ok(id) = r {
                spaces.push(id);
            }
            outcome(r, |_| 0)
        }
        C::Exit { .. } => {
            spaces.retain(|&x| x != v);
            outcome(vm.exit(v), unit)
        }
        C::Mmap {
            addr: a,
            len,
            prot,
            flags,
            ..
        } => outcome(vm.mmap(v, a, len, prot, flags), addr),
        C::Munmap { addr: a, len, .. } => outcome(vm.munmap(v, a, len), unit),
        C::Mprotect {
            addr: a, len, prot, ..
        } => outcome(vm.mprotect(v, a, len, prot), unit),
        C::Brk { addr: a, .. } => Outcome::Ok(vm.brk(v, a)),
        C::Mremap {
            addr: a,
            old_len,
            new_len,
            flags,
            new_addr,
            ..
        } => outcome(vm.mremap(v, a, old_len, new_len, flags, new_addr), addr),
        C::ShmGet { key, size, flags } => outcome(vm.shmget(key, size, flags), |i| i.0),
        C::ShmAt {
            id, addr: a, flags, ..
        } => outcome(vm.shmat(v, ShmId(id), a, flags), addr),
        C::ShmDt { addr: a, .. } => outcome(vm.shmdt(v, a), unit),
        C::ShmCtl { id, cmd } => outcome(vm.shmctl(ShmId(id), cmd), |s| {
            s.map_or(0, |s| {
                s.size ^ (s.attached << 24) ^ (u32::from(s.removed) << 31)
            })
        }),
        C::MapDevice {
            addr: a,
            pa,
            len,
            prot,
            ..
        } => outcome(vm.map_device(v, a, pa, len, prot), addr),
        C::Vmalloc { len } => outcome(vm.vmalloc(len), addr),
        C::Vfree { addr: a } => outcome(vm.vfree(a), unit),
        C::Access {
            addr: a,
            access,
            kernel,
            cpu,
            ..
        } => {
            let mode = if kernel { Mode::Kernel } else { Mode::User };
            // The access runs in its space: its CPU switches to it first (semantics.md
            // section 14), and the hardware walks with what the vmm put in that TTBR0.
            let cpu = Cpu::new(cpu);
            if vm.switch_to(cpu, Some(v)).is_err() {
                return Outcome::Skipped;
            }
            match self::access(vm, cpu, v, a, access, mode, accessor) {
                Ok(x) => Outcome::Ok(x),
                Err(FaultError::Segv) => Outcome::Err(SEGV),
                Err(FaultError::Efault) => Outcome::Err(EFAULT),
                Err(FaultError::Internal) => Outcome::Err(vmm::Errno::Internal.number()),
            }
        }
    }
}
