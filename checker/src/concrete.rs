//! From ops to concrete ops: addresses resolved against the reference model's live state (the
//! model is the primary oracle, so both sides see the same numbers) and the model's side of
//! every concrete op. The vmm's side is [`op_driver::apply`], shared with the QEMU guest.

use op_driver::{AccessOp, ConcreteOp, EFAULT, Outcome, SEGV};
use reference_model::model::{self, Model};

use crate::op::{Addr, Op};

/// Where the device window starts (RAM outside the pool).
pub const DEVICE_WINDOW: u32 = 0x4800_0000;
/// Pages in the device window (16 MiB, the default layout's); `mapdev page=N` names window
/// page `N` modulo this.
pub const DEVICE_WINDOW_PAGES: u32 = 0x1000;
/// End of the RAM both machines have (the host's default, QEMU's `-m 256M`): device memory is
/// RAM here, and a device range past it would read as RAM in the model but as nothing on the
/// machines, so such a `mapdev` is not run.
pub const RAM_END: u64 = 0x5000_0000;

/// The live space with index `s` modulo the count, as an index into `ids`.
fn pick(ids: &[u32], s: u8) -> Option<usize> {
    (!ids.is_empty()).then(|| s as usize % ids.len())
}

/// The address `a` names in model space `m`.
#[must_use]
pub fn resolve_addr(model: &Model, m: u32, a: &Addr) -> u32 {
    match *a {
        Addr::InRegion { region, page, word } => {
            let regions = &model.spaces[&m].regions;
            match regions.get(region as usize % regions.len().max(1)) {
                Some(r) => {
                    (r.start as u32).wrapping_add(u32::from(page) * 0x1000 + u32::from(word) * 4)
                }
                None => model.layout.mmap_base,
            }
        }
        Addr::Heap(p) => model.layout.heap_base + u32::from(p) * 0x1000,
        Addr::Mmap(p) => model.layout.mmap_base.wrapping_add(u32::from(p) * 0x1000),
        Addr::Raw(v) => v,
        Addr::Vmalloc { alloc, page } => {
            let allocs = &model.vmalloc;
            match allocs.keys().nth(alloc as usize % allocs.len().max(1)) {
                Some(&start) => (start as u32).wrapping_add(u32::from(page) * 0x1000),
                None => 0xC000_0000,
            }
        }
    }
}

/// `op` with concrete arguments, given the model's state and its live spaces `ids` (creation
/// order). Ops naming a space when none is live, kernel-mode accesses to kernel addresses
/// outside the vmalloc window (not modelled), and device ranges leaving RAM become
/// [`ConcreteOp::Skip`].
///
/// `#[inline]` so that fuzz targets compile and instrument it: which of its branches an input
/// takes (an address inside a region or not, a live space or not) is worth telling libFuzzer
/// (see [`crate::run::StepHooks`]).
#[must_use]
#[inline]
pub fn resolve(model: &Model, ids: &[u32], op: &Op) -> ConcreteOp {
    use ConcreteOp as C;
    let space = |s: u8| pick(ids, s).map(|i| (i as u32, ids[i]));
    let r = |m: u32, a: &Addr| resolve_addr(model, m, a);
    let with_space = |s: u8, f: &dyn Fn(u32, u32) -> ConcreteOp| {
        space(s).map_or(ConcreteOp::Skip, |(i, m)| f(i, m))
    };
    match op {
        Op::Spawn => C::Spawn,
        Op::Fork { s } => with_space(*s, &|s, _| C::Fork { s }),
        Op::Exit { s } => with_space(*s, &|s, _| C::Exit { s }),
        Op::Mmap {
            s,
            addr,
            len,
            prot,
            flags,
        } => with_space(*s, &|s, m| C::Mmap {
            s,
            addr: r(m, addr),
            len: *len,
            prot: *prot,
            flags: *flags,
        }),
        Op::Munmap { s, addr, len } => with_space(*s, &|s, m| C::Munmap {
            s,
            addr: r(m, addr),
            len: *len,
        }),
        Op::Mprotect { s, addr, len, prot } => with_space(*s, &|s, m| C::Mprotect {
            s,
            addr: r(m, addr),
            len: *len,
            prot: *prot,
        }),
        Op::Brk { s, addr } => with_space(*s, &|s, m| C::Brk {
            s,
            addr: r(m, addr),
        }),
        Op::Mremap {
            s,
            addr,
            old_len,
            new_len,
            flags,
            new_addr,
        } => with_space(*s, &|s, m| C::Mremap {
            s,
            addr: r(m, addr),
            old_len: *old_len,
            new_len: *new_len,
            flags: *flags,
            new_addr: r(m, new_addr),
        }),
        Op::ShmGet { key, size, flags } => C::ShmGet {
            key: *key,
            size: *size,
            flags: *flags,
        },
        Op::ShmAt { s, id, addr, flags } => with_space(*s, &|s, m| C::ShmAt {
            s,
            id: *id,
            addr: addr.as_ref().map_or(0, |a| r(m, a)),
            flags: *flags,
        }),
        Op::ShmDt { s, addr } => with_space(*s, &|s, m| C::ShmDt {
            s,
            addr: r(m, addr),
        }),
        Op::ShmCtl { id, cmd } => C::ShmCtl { id: *id, cmd: *cmd },
        Op::MapDevice {
            s,
            addr,
            page,
            len,
            prot,
        } => {
            let pa = DEVICE_WINDOW + u32::from(*page) % DEVICE_WINDOW_PAGES * 0x1000;
            if u64::from(pa) + u64::from(*len) > RAM_END {
                return C::Skip;
            }
            with_space(*s, &|s, m| C::MapDevice {
                s,
                addr: r(m, addr),
                pa,
                len: *len,
                prot: *prot,
            })
        }
        Op::Vmalloc { len } => C::Vmalloc { len: *len },
        // Relative addresses need a space to resolve against: the first one.
        Op::Vfree { addr } => with_space(0, &|_, m| C::Vfree { addr: r(m, addr) }),
        Op::Read {
            s,
            addr,
            kernel,
            cpu,
        } => access(ids, model, (*s, *cpu), addr, AccessOp::Read, *kernel),
        Op::Write {
            s,
            addr,
            value,
            kernel,
            cpu,
        } => access(
            ids,
            model,
            (*s, *cpu),
            addr,
            AccessOp::Write(*value),
            *kernel,
        ),
        Op::Exec {
            s,
            addr,
            kernel,
            cpu,
        } => access(ids, model, (*s, *cpu), addr, AccessOp::Exec, *kernel),
    }
}

/// An access by space `s` on CPU `cpu`; one on a CPU the world does not have is skipped.
fn access(
    ids: &[u32],
    model: &Model,
    (s, cpu): (u8, u8),
    a: &Addr,
    access: AccessOp,
    kernel: bool,
) -> ConcreteOp {
    let Some(i) = pick(ids, s) else {
        return ConcreteOp::Skip;
    };
    if cpu >= model.layout.cpus {
        return ConcreteOp::Skip;
    }
    let addr = resolve_addr(model, ids[i], a);
    if kernel && addr >= 0x4000_0000 && !(0xC000_0000..0xC800_0000).contains(&addr) {
        // Of the kernel half only the vmalloc window is modelled for kernel-mode accesses (a
        // kernel-mode store elsewhere would write the kernel's own RAM). A user-mode access
        // anywhere is modelled: outside the user window it is a Segv.
        return ConcreteOp::Skip;
    }
    ConcreteOp::Access {
        s: i as u32,
        addr: addr & !3,
        access,
        kernel,
        cpu,
    }
}

/// The model's side of a concrete op: what it returns. `ids` is the model's list of live
/// spaces, kept exactly as [`op_driver::apply`] keeps the vmm's.
pub fn apply_model(model: &mut Model, ids: &mut Vec<u32>, op: &ConcreteOp) -> Outcome {
    use ConcreteOp as C;
    fn out<T>(r: Result<T, model::Errno>, value: impl FnOnce(T) -> u32) -> Outcome {
        r.map_or_else(|e| Outcome::Err(e as i32), |x| Outcome::Ok(value(x)))
    }
    let unit = |(): ()| 0;
    let id = |x: u32| x;
    let m = match op.space().map(|s| ids.get(s as usize).copied()) {
        Some(Some(m)) => m,
        Some(None) => return Outcome::Skipped,
        None => 0,
    };
    match *op {
        C::Skip => Outcome::Skipped,
        C::Spawn => {
            let r = model.spawn();
            if let Ok(x) = r {
                ids.push(x);
            }
            out(r, |_| 0)
        }
        C::Fork { .. } => {
            let r = model.fork(m);
            if let Ok(x) = r {
                ids.push(x);
            }
            out(r, |_| 0)
        }
        C::Exit { .. } => {
            ids.retain(|&x| x != m);
            out(model.exit(m), unit)
        }
        C::Mmap {
            addr,
            len,
            prot,
            flags,
            ..
        } => out(model.mmap(m, addr, len, prot, flags), id),
        C::Munmap { addr, len, .. } => out(model.munmap(m, addr, len), unit),
        C::Mprotect {
            addr, len, prot, ..
        } => out(model.mprotect(m, addr, len, prot), unit),
        C::Brk { addr, .. } => Outcome::Ok(model.brk(m, addr)),
        C::Mremap {
            addr,
            old_len,
            new_len,
            flags,
            new_addr,
            ..
        } => out(model.mremap(m, addr, old_len, new_len, flags, new_addr), id),
        C::ShmGet { key, size, flags } => out(model.shmget(key, size, flags), id),
        C::ShmAt {
            id: seg,
            addr,
            flags,
            ..
        } => out(model.shmat(m, seg, addr, flags), id),
        C::ShmDt { addr, .. } => out(model.shmdt(m, addr), unit),
        C::ShmCtl { id: seg, cmd } => out(model.shmctl(seg, cmd), |s| {
            s.map_or(0, |(size, att, rm)| {
                size ^ (att << 24) ^ (u32::from(rm) << 31)
            })
        }),
        C::MapDevice {
            addr,
            pa,
            len,
            prot,
            ..
        } => out(model.map_device(m, addr, pa, len, prot), id),
        C::Vmalloc { len } => out(model.vmalloc(len), id),
        C::Vfree { addr } => out(model.vfree(addr), unit),
        C::Access {
            addr,
            access,
            kernel,
            ..
        } => {
            let a = match access {
                AccessOp::Read => model::Access::Read,
                AccessOp::Write(v) => model::Access::Write(v),
                AccessOp::Exec => model::Access::Execute,
            };
            model.access(m, addr, a, !kernel).map_or_else(
                |e| {
                    Outcome::Err(if e == model::AccessError::Segv {
                        SEGV
                    } else {
                        EFAULT
                    })
                },
                Outcome::Ok,
            )
        }
    }
}

/// The space index and the addresses of `op`, to check or rewrite them.
fn parts_mut(op: &mut Op) -> (Option<&mut u8>, Vec<&mut Addr>) {
    match op {
        Op::Spawn | Op::ShmGet { .. } | Op::Vmalloc { .. } | Op::ShmCtl { .. } => (None, vec![]),
        Op::Fork { s } | Op::Exit { s } => (Some(s), vec![]),
        Op::Mmap { s, addr, .. }
        | Op::Munmap { s, addr, .. }
        | Op::Mprotect { s, addr, .. }
        | Op::Brk { s, addr }
        | Op::ShmDt { s, addr }
        | Op::MapDevice { s, addr, .. }
        | Op::Read { s, addr, .. }
        | Op::Write { s, addr, .. }
        | Op::Exec { s, addr, .. } => (Some(s), vec![addr]),
        Op::Mremap {
            s, addr, new_addr, ..
        } => (Some(s), vec![addr, new_addr]),
        Op::ShmAt { s, addr, .. } => (Some(s), addr.iter_mut().collect()),
        Op::Vfree { addr } => (None, vec![addr]),
    }
}

/// What an address's index counts, for [`canonical_op`]'s errors.
struct IndexKind {
    /// When nothing is live to index.
    none: &'static str,
    /// One of them.
    thing: &'static str,
    /// How their count reads.
    counted: &'static str,
    /// The index's prefix in the address form.
    prefix: &'static str,
}

const REGIONS: IndexKind = IndexKind {
    none: "the space has no region",
    thing: "region",
    counted: "in the space",
    prefix: "r",
};

const ALLOCATIONS: IndexKind = IndexKind {
    none: "no vmalloc allocation is live",
    thing: "vmalloc allocation",
    counted: "live",
    prefix: "vm",
};

/// `op` as it runs: its space index and its region and vmalloc indices reduced modulo the live
/// counts (what the fuzzer's decoding relies on), or why it names something that does not
/// exist. `strict` refuses the reduction instead of doing it (hand-written `.ops` files). A
/// page or word offset is never reduced: an address past a region is meant.
pub fn canonical_op(model: &Model, ids: &[u32], op: &Op, strict: bool) -> Result<Op, String> {
    let mut op = op.clone();
    let (s, addrs) = parts_mut(&mut op);
    // `vfree` runs in the first live space (its address is the kernel's).
    let space = match s {
        Some(s) => {
            if ids.is_empty() {
                return Err(format!("`s={s}`: no space is live"));
            }
            if strict && *s as usize >= ids.len() {
                return Err(format!(
                    "`s={s}` names no live space ({} live: s=0..{})",
                    ids.len(),
                    ids.len() - 1
                ));
            }
            *s = (*s as usize % ids.len()) as u8;
            Some(ids[*s as usize])
        }
        None => ids.first().copied(),
    };
    for addr in addrs {
        let Some(m) = space else {
            return Err(format!("`{addr}`: no space is live"));
        };
        let shown = addr.to_string();
        let (index, count, kind) = match addr {
            Addr::InRegion { region, .. } => (region, model.spaces[&m].regions.len(), &REGIONS),
            Addr::Vmalloc { alloc, .. } => (alloc, model.vmalloc.len(), &ALLOCATIONS),
            Addr::Heap(_) | Addr::Mmap(_) | Addr::Raw(_) => continue,
        };
        if count == 0 {
            if strict {
                return Err(format!("`{shown}`: {}", kind.none));
            }
            // What it resolves to: a base address.
            *addr = Addr::Raw(resolve_addr(model, m, addr));
            continue;
        }
        if strict && *index as usize >= count {
            return Err(format!(
                "`{shown}` names no {} ({count} {}: {p}0..{p}{})",
                kind.thing,
                kind.counted,
                count - 1,
                p = kind.prefix
            ));
        }
        *index = (*index as usize % count) as u8;
    }
    Ok(op)
}
