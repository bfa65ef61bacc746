//! The reference model and the vmm agree, op by op, over random sequences of spawn, fork,
//! exit, mmap, munmap, mprotect, brk and user/kernel reads, writes and fetches on several
//! spaces: return values, region lists, breaks, every present page (permissions, and frames up
//! to a consistent bijection between model frames and physical frames), values read back, the
//! free-frame count and every space's page-table page count.

use std::collections::BTreeMap;

use proptest::prelude::*;
use reference_model::model::{self, Model};
use vmm::addr::{PhysFrame, VirtAddr};
use vmm::arch::armv7::MappingFlags;
use vmm::fault::{Access, FaultError, Mode};
use vmm::machine::HostMachine;
use vmm::space::{RegionKind, SpaceId};
use vmm::{Layout, Vm};

const POOL: u32 = 160;

#[derive(Clone, Debug)]
enum Addr {
    InRegion { region: u8, page: u8, word: u8 },
    Raw(u32),
}

#[derive(Clone, Debug)]
enum Op {
    Spawn,
    Fork(u8),
    Exit(u8),
    Mmap {
        s: u8,
        addr: Addr,
        len: u32,
        prot: u32,
        flags: u32,
    },
    Munmap {
        s: u8,
        addr: Addr,
        len: u32,
    },
    Mprotect {
        s: u8,
        addr: Addr,
        len: u32,
        prot: u32,
    },
    Brk {
        s: u8,
        addr: Addr,
    },
    ShmGet {
        key: i32,
        pages: u32,
        flags: u32,
    },
    ShmAt {
        s: u8,
        id: u32,
        addr: Option<Addr>,
        flags: u32,
    },
    ShmDt {
        s: u8,
        addr: Addr,
    },
    ShmCtl {
        id: u32,
        cmd: u32,
    },
    Mremap {
        s: u8,
        addr: Addr,
        old_len: u32,
        new_len: u32,
        flags: u32,
        new_addr: Addr,
    },
    Access {
        s: u8,
        addr: Addr,
        kind: u8,
        value: u32,
        kernel: bool,
    },
}

/// Addresses near the interesting places (window edges, heap, mmap area), plus wild ones.
fn raw_addr() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => (0..64u32).prop_map(|p| 0x1F80_0000 + p * 0x1000),
        3 => (0..16u32).prop_map(|p| 0x0FC0_0000 + p * 0x1000 + if p % 3 == 0 { 5 } else { 0 }),
        1 => (0..8u32).prop_map(|p| 0x0100_0000 - 0x2000 + p * 0x1000),
        1 => (0..8u32).prop_map(|p| 0x3F00_0000 - 0x4000 + p * 0x1000),
        1 => (0..8u32).prop_map(|p| 0x2740_0000 - 0x4000 + p * 0x1000),
        1 => (0..4u32).prop_map(|g| 0x0300_0000 + g * 0x40_0000),
        1 => any::<u32>(),
        1 => Just(0u32),
    ]
}

fn addr() -> impl Strategy<Value = Addr> {
    prop_oneof![
        3 => (any::<u8>(), 0..6u8, any::<u8>()).prop_map(|(region, page, word)| Addr::InRegion { region, page, word }),
        2 => raw_addr().prop_map(Addr::Raw),
    ]
}

fn len() -> impl Strategy<Value = u32> {
    prop_oneof![
        6 => (0..6u32).prop_map(|p| p * 0x1000),
        1 => 1..0x3000u32,
        1 => Just(u32::MAX),
        1 => Just(0x07C0_0000),
        1 => any::<u32>(),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let s = 0..4u8;
    let flags = prop_oneof![
        4 => (0..4u32, any::<bool>(), any::<bool>()).prop_map(|(share, fixed, noreplace)| {
            share | 0x20 | if fixed { 0x10 } else { 0 } | if noreplace { 0x10_0000 } else { 0 }
        }),
        1 => any::<u32>(),
    ];
    let prot = prop_oneof![8 => 0..8u32, 1 => any::<u32>()];
    prop_oneof![
        1 => Just(Op::Spawn),
        1 => s.clone().prop_map(Op::Fork),
        1 => s.clone().prop_map(Op::Exit),
        4 => (s.clone(), addr(), len(), prot.clone(), flags)
            .prop_map(|(s, addr, len, prot, flags)| Op::Mmap { s, addr, len, prot, flags }),
        2 => (s.clone(), addr(), len()).prop_map(|(s, addr, len)| Op::Munmap { s, addr, len }),
        2 => (s.clone(), addr(), len(), prot).prop_map(|(s, addr, len, prot)| Op::Mprotect { s, addr, len, prot }),
        2 => (s.clone(), addr()).prop_map(|(s, addr)| Op::Brk { s, addr }),
        2 => (prop_oneof![2 => Just(0i32), 1 => 1..3i32], prop_oneof![4 => 1..4u32, 1 => Just(0u32)], prop_oneof![Just(0o1000u32), Just(0o3000), Just(0)])
            .prop_map(|(key, pages, flags)| Op::ShmGet { key, pages, flags }),
        3 => (s.clone(), 0..3u32, prop::option::weighted(0.4, addr()), prop_oneof![3 => Just(0u32), 1 => Just(0o10000), 1 => Just(0o40000), 1 => Just(0o60000), 1 => Just(0o100000)])
            .prop_map(|(s, id, addr, flags)| Op::ShmAt { s, id, addr, flags }),
        2 => (s.clone(), addr()).prop_map(|(s, addr)| Op::ShmDt { s, addr }),
        2 => (0..3u32, prop_oneof![3 => Just(0u32), 1 => Just(2), 1 => Just(7)]).prop_map(|(id, cmd)| Op::ShmCtl { id, cmd }),
        3 => (s.clone(), addr(), len(), len(), prop_oneof![4 => 0..4u32, 1 => any::<u32>()], addr())
            .prop_map(|(s, addr, old_len, new_len, flags, new_addr)| Op::Mremap { s, addr, old_len, new_len, flags, new_addr }),
        8 => (s, addr(), 0..3u8, any::<u32>(), any::<bool>())
            .prop_map(|(s, addr, kind, value, kernel)| Op::Access { s, addr, kind, value, kernel }),
    ]
}

struct Pair {
    vm: Vm<HostMachine>,
    model: Model,
    /// Model space id -> vmm space id, in creation order.
    ids: Vec<(u32, SpaceId)>,
    /// Model frame -> physical frame, and back.
    frames: BTreeMap<u64, PhysFrame>,
    phys: BTreeMap<PhysFrame, u64>,
}

impl Pair {
    fn pick(&self, s: u8) -> Option<(u32, SpaceId)> {
        (!self.ids.is_empty()).then(|| self.ids[s as usize % self.ids.len()])
    }

    fn resolve(&self, m: u32, a: &Addr) -> u32 {
        match *a {
            Addr::InRegion { region, page, word } => {
                let regions = &self.model.spaces[&m].regions;
                match regions.get(region as usize % regions.len().max(1)) {
                    Some(r) => (r.start as u32)
                        .wrapping_add(u32::from(page) * 0x1000 + u32::from(word) * 4),
                    None => 0x1F80_0000,
                }
            }
            Addr::Raw(v) => v,
        }
    }

    /// Everything observable, compared in full after every op.
    fn compare(&mut self) -> Result<(), TestCaseError> {
        prop_assert_eq!(
            self.vm.frames().free_count(),
            self.model.free,
            "free frames"
        );
        for &(m, v) in &self.ids.clone() {
            let ms = &self.model.spaces[&m];
            let vs = self.vm.space(v).unwrap();
            let vregions: Vec<(u64, u64, u32, bool, bool)> = vs
                .regions()
                .iter()
                .map(|r| {
                    let start = u64::from(r.range.start_addr().as_u32());
                    (
                        start,
                        u64::from(r.range.count()) * 4096,
                        r.prot.bits(),
                        r.shared,
                        r.kind == RegionKind::Heap,
                    )
                })
                .collect();
            let mregions: Vec<(u64, u64, u32, bool, bool)> = ms
                .regions
                .iter()
                .map(|r| {
                    (
                        r.start,
                        r.len,
                        r.prot,
                        r.shared,
                        r.kind == model::Kind::Heap,
                    )
                })
                .collect();
            prop_assert_eq!(vregions, mregions, "regions of space {}", m);
            prop_assert_eq!(vs.brk(), ms.brk, "break of space {}", m);
            prop_assert_eq!(
                vs.mmu().table_pages(),
                self.model.table_pages(m).unwrap(),
                "table pages of {}",
                m
            );
            let vpages = self.vm.mappings(v).unwrap();
            let mpages: Vec<(u64, model::Pte)> = ms.ptes.iter().map(|(&p, &e)| (p, e)).collect();
            prop_assert_eq!(vpages.len(), mpages.len(), "present pages of space {}", m);
            for ((vp, t), (mp, pte)) in vpages.iter().zip(&mpages) {
                prop_assert_eq!(
                    u64::from(vp.start().as_u32()),
                    *mp,
                    "page set of space {}",
                    m
                );
                let f = t.attrs.flags;
                let perms = u32::from(f.contains(MappingFlags::READ))
                    | u32::from(f.contains(MappingFlags::WRITE)) << 1
                    | u32::from(f.contains(MappingFlags::EXECUTE)) << 2;
                prop_assert_eq!(perms, pte.perms, "permissions of {:#x} in space {}", mp, m);
                // The bijection: a model frame is always the same physical frame and back.
                let known = self.frames.get(&pte.frame).copied();
                match known {
                    Some(pf) => prop_assert_eq!(pf, t.frame, "model frame {} moved", pte.frame),
                    None => {
                        prop_assert!(
                            !self.phys.contains_key(&t.frame),
                            "two model frames on {:?}",
                            t.frame
                        );
                        self.frames.insert(pte.frame, t.frame);
                        self.phys.insert(t.frame, pte.frame);
                    }
                }
            }
        }
        let vsegs: Vec<(u32, i32, u32, usize, u32, bool)> = self
            .vm
            .shm()
            .iter()
            .map(|(id, s)| (id.0, s.key, s.size, s.frames.len(), s.attached, s.removed))
            .collect();
        let msegs: Vec<(u32, i32, u32, usize, u32, bool)> = self
            .model
            .segments
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.as_ref().map(|s| {
                    (
                        i as u32,
                        s.key,
                        s.size,
                        s.frames.len(),
                        s.attached,
                        s.removed,
                    )
                })
            })
            .collect();
        prop_assert_eq!(vsegs, msegs, "shm segments");
        // Forget frames the model freed, so the vmm may reuse the physical frame.
        let live = &self.model.frames;
        self.frames.retain(|id, _| live.contains_key(id));
        let frames = &self.frames;
        self.phys.retain(|_, id| frames.contains_key(id));
        Ok(())
    }
}

fn errno(e: vmm::Errno) -> i32 {
    e.number()
}
fn merr(e: model::Errno) -> i32 {
    e as i32
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn model_and_vmm_agree(ops in prop::collection::vec((op(), prop::option::weighted(0.15, 0..3u64)), 1..50)) {
        let vm = Vm::new(HostMachine::default(), Layout::with_pool_frames(POOL)).unwrap();
        let free = vm.frames().free_count();
        let mut p = Pair { vm, model: Model::new(model::Layout::default(), free), ids: Vec::new(), frames: BTreeMap::new(), phys: BTreeMap::new() };
        let mut ops = ops;
        ops.insert(0, (Op::Spawn, None));
        for (i, (op, refuse)) in ops.iter().enumerate() {
            // The k-th frame allocation of this op is refused, in both.
            p.model.refuse_allocation = *refuse;
            let plan = refuse.map_or(vmm::machine::AllocationFailure::Never, vmm::machine::AllocationFailure::Nth);
            p.vm.machine_mut().set_allocation_failure(plan);
            let (got, want): (Result<u32, i32>, Result<u32, i32>) = match op {
                Op::Spawn => {
                    let (g, w) = (p.vm.spawn(), p.model.spawn());
                    if let (Ok(v), Ok(m)) = (g, w) {
                        p.ids.push((m, v));
                    }
                    (g.map(|_| 0).map_err(errno), w.map(|_| 0).map_err(merr))
                }
                Op::Fork(s) => {
                    let Some((m, v)) = p.pick(*s) else { continue };
                    let (g, w) = (p.vm.fork(v), p.model.fork(m));
                    if let (Ok(cv), Ok(cm)) = (g, w) {
                        p.ids.push((cm, cv));
                    }
                    (g.map(|_| 0).map_err(errno), w.map(|_| 0).map_err(merr))
                }
                Op::Exit(s) => {
                    let Some((m, v)) = p.pick(*s) else { continue };
                    p.ids.retain(|&(x, _)| x != m);
                    (p.vm.exit(v).map(|()| 0).map_err(errno), p.model.exit(m).map(|()| 0).map_err(merr))
                }
                Op::Mmap { s, addr, len, prot, flags } => {
                    let Some((m, v)) = p.pick(*s) else { continue };
                    let a = p.resolve(m, addr);
                    (
                        p.vm.mmap(v, a, *len, *prot, *flags).map(|a| a.as_u32()).map_err(errno),
                        p.model.mmap(m, a, *len, *prot, *flags).map_err(merr),
                    )
                }
                Op::Munmap { s, addr, len } => {
                    let Some((m, v)) = p.pick(*s) else { continue };
                    let a = p.resolve(m, addr);
                    (p.vm.munmap(v, a, *len).map(|()| 0).map_err(errno), p.model.munmap(m, a, *len).map(|()| 0).map_err(merr))
                }
                Op::Mprotect { s, addr, len, prot } => {
                    let Some((m, v)) = p.pick(*s) else { continue };
                    let a = p.resolve(m, addr);
                    (
                        p.vm.mprotect(v, a, *len, *prot).map(|()| 0).map_err(errno),
                        p.model.mprotect(m, a, *len, *prot).map(|()| 0).map_err(merr),
                    )
                }
                Op::Brk { s, addr } => {
                    let Some((m, v)) = p.pick(*s) else { continue };
                    let a = p.resolve(m, addr);
                    (Ok(p.vm.brk(v, a)), Ok(p.model.brk(m, a)))
                }
                Op::ShmGet { key, pages, flags } => (
                    p.vm.shmget(*key, pages * 4096, *flags).map(|i| i.0).map_err(errno),
                    p.model.shmget(*key, pages * 4096, *flags).map_err(merr),
                ),
                Op::ShmAt { s, id, addr, flags } => {
                    let Some((m, v)) = p.pick(*s) else { continue };
                    let a = addr.as_ref().map_or(0, |a| p.resolve(m, a));
                    (
                        p.vm.shmat(v, vmm::space::ShmId(*id), a, *flags).map(|a| a.as_u32()).map_err(errno),
                        p.model.shmat(m, *id, a, *flags).map_err(merr),
                    )
                }
                Op::ShmDt { s, addr } => {
                    let Some((m, v)) = p.pick(*s) else { continue };
                    let a = p.resolve(m, addr);
                    (p.vm.shmdt(v, a).map(|()| 0).map_err(errno), p.model.shmdt(m, a).map(|()| 0).map_err(merr))
                }
                Op::ShmCtl { id, cmd } => {
                    let stat = |s: Option<vmm::shm::ShmStat>| s.map_or(0, |s| s.size ^ (s.attached << 24) ^ u32::from(s.removed) << 31);
                    let mstat = |s: Option<(u32, u32, bool)>| s.map_or(0, |(size, att, rm)| size ^ (att << 24) ^ u32::from(rm) << 31);
                    (
                        p.vm.shmctl(vmm::space::ShmId(*id), *cmd).map(stat).map_err(errno),
                        p.model.shmctl(*id, *cmd).map(mstat).map_err(merr),
                    )
                }
                Op::Mremap { s, addr, old_len, new_len, flags, new_addr } => {
                    let Some((m, v)) = p.pick(*s) else { continue };
                    let (a, n) = (p.resolve(m, addr), p.resolve(m, new_addr));
                    (
                        p.vm.mremap(v, a, *old_len, *new_len, *flags, n).map(|a| a.as_u32()).map_err(errno),
                        p.model.mremap(m, a, *old_len, *new_len, *flags, n).map_err(merr),
                    )
                }
                Op::Access { s, addr, kind, value, kernel } => {
                    let Some((m, v)) = p.pick(*s) else { continue };
                    let a = p.resolve(m, addr);
                    if a >= 0x4000_0000 {
                        continue; // kernel addresses are not in the model yet
                    }
                    let mode = if *kernel { Mode::Kernel } else { Mode::User };
                    let fault = |e: FaultError| match e {
                        FaultError::Segv => 1,
                        FaultError::Efault => 2,
                    };
                    let ferr = |e: model::AccessError| match e {
                        model::AccessError::Segv => 1,
                        model::AccessError::Efault => 2,
                    };
                    let va = VirtAddr::new(a);
                    let (g, w) = match kind {
                        0 => (p.vm.read_word(v, va, mode), p.model.access(m, a, model::Access::Read, !kernel)),
                        1 => (
                            p.vm.write_word(v, va, *value, mode).map(|()| 0),
                            p.model.access(m, a, model::Access::Write(*value), !kernel),
                        ),
                        _ => (
                            p.vm.access(v, va.align_down(4), Access::Execute, mode).map(|pa| {
                                vmm::machine::Machine::read_word(p.vm.machine_mut(), pa)
                            }),
                            p.model.access(m, a, model::Access::Execute, !kernel),
                        ),
                    };
                    (g.map_err(fault), w.map_err(ferr))
                }
            };
            p.model.refuse_allocation = None;
            p.vm.machine_mut().set_allocation_failure(vmm::machine::AllocationFailure::Never);
            prop_assert_eq!(got, want, "op {} {:?} (refusing allocation {:?})", i, op, refuse);
            p.compare().map_err(|e| TestCaseError::fail(format!("after op {i} {op:?}: {e}")))?;
        }
        // Everything back once every space has exited and every segment is removed.
        for (m, v) in std::mem::take(&mut p.ids) {
            p.vm.exit(v).unwrap();
            p.model.exit(m).unwrap();
        }
        for i in 0..192 {
            let _ = p.vm.shmctl(vmm::space::ShmId(i), 0);
            let _ = p.model.shmctl(i, 0);
        }
        prop_assert_eq!(p.vm.frames().free_count(), free);
        prop_assert_eq!(p.model.free, free);
    }
}
