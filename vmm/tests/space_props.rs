//! Random syscall, access, fork and shm sequences over several spaces. After every step the
//! invariants of design.md hold (regions, PTEs inside regions, reference counts, copy-on-write,
//! shm attach counts, exact frame accounting); an op that fails changed nothing; and when every
//! space has exited and every segment is removed, the free count is back to its start value.

use std::collections::BTreeMap;

use proptest::prelude::*;
use vmm::addr::{PhysFrame, VirtAddr, VirtPage};
use vmm::arch::armv7::{MappingFlags, Translation};
use vmm::fault::{Mode, permits};
use vmm::machine::{AllocationFailure, HostMachine};
use vmm::shm::{IPC_CREAT, IPC_PRIVATE, IPC_RMID, IPC_STAT, SHM_RDONLY, SHM_REMAP, ShmTable};
use vmm::space::{Region, RegionKind, ShmId, SpaceId};
use vmm::syscalls::{MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_PRIVATE, MAP_SHARED};
use vmm::{Layout, Vm};

const PAGE: u32 = 4096;
const POOL: u32 = 600;

#[derive(Clone, Debug)]
enum Addr {
    /// Page `page` of the space's region number `region` (modulo the count).
    InRegion { region: u8, page: u16 },
    /// The heap base plus pages.
    Heap(u16),
    /// The mmap base plus pages.
    Mmap(u16),
    /// A raw value.
    Wild(u32),
}

#[derive(Clone, Debug)]
enum Op {
    Spawn,
    Fork(u8),
    Exit(u8),
    Mmap {
        s: u8,
        addr: Addr,
        pages: u16,
        prot: u8,
        flags: u8,
    },
    Munmap {
        s: u8,
        addr: Addr,
        pages: u16,
    },
    Mprotect {
        s: u8,
        addr: Addr,
        pages: u16,
        prot: u8,
    },
    Brk {
        s: u8,
        addr: Addr,
    },
    Mremap {
        s: u8,
        addr: Addr,
        old_pages: u16,
        new_pages: u16,
        flags: u8,
        new_addr: Addr,
    },
    MapDevice {
        s: u8,
        addr: Addr,
        offset: u16,
        pages: u16,
    },
    Read {
        s: u8,
        addr: Addr,
        kernel: bool,
    },
    Write {
        s: u8,
        addr: Addr,
        kernel: bool,
        value: u32,
    },
    ShmGet {
        key: u8,
        pages: u8,
    },
    ShmAt {
        s: u8,
        id: u8,
        addr: Option<Addr>,
        flags: u8,
    },
    ShmDt {
        s: u8,
        addr: Addr,
    },
    ShmRm {
        id: u8,
    },
}

fn addr() -> impl Strategy<Value = Addr> {
    prop_oneof![
        6 => (any::<u8>(), 0..12u16).prop_map(|(region, page)| Addr::InRegion { region, page }),
        1 => (0..8u16).prop_map(Addr::Heap),
        2 => (0..300u16).prop_map(Addr::Mmap),
        1 => prop_oneof![any::<u32>(), Just(0u32), Just(0x3EFF_F000), Just(0x0100_0000), Just(0x4100_0000)].prop_map(Addr::Wild),
    ]
}

fn pages() -> impl Strategy<Value = u16> {
    prop_oneof![6 => 1..6u16, 1 => 250..270u16, 1 => Just(0u16)]
}

fn op() -> impl Strategy<Value = Op> {
    let s = 0..4u8;
    prop_oneof![
        1 => Just(Op::Spawn),
        1 => s.clone().prop_map(Op::Fork),
        1 => s.clone().prop_map(Op::Exit),
        5 => (s.clone(), addr(), pages(), 0..8u8, 0..16u8)
            .prop_map(|(s, addr, pages, prot, flags)| Op::Mmap { s, addr, pages, prot, flags }),
        3 => (s.clone(), addr(), pages()).prop_map(|(s, addr, pages)| Op::Munmap { s, addr, pages }),
        3 => (s.clone(), addr(), pages(), 0..9u8).prop_map(|(s, addr, pages, prot)| Op::Mprotect { s, addr, pages, prot }),
        2 => (s.clone(), addr()).prop_map(|(s, addr)| Op::Brk { s, addr }),
        3 => (s.clone(), addr(), pages(), pages(), 0..4u8, addr()).prop_map(|(s, addr, old_pages, new_pages, flags, new_addr)| {
            Op::Mremap { s, addr, old_pages, new_pages, flags, new_addr }
        }),
        1 => (s.clone(), addr(), prop_oneof![0..8u16, Just(256u16)], pages())
            .prop_map(|(s, addr, offset, pages)| Op::MapDevice { s, addr, offset, pages }),
        5 => (s.clone(), addr(), any::<bool>()).prop_map(|(s, addr, kernel)| Op::Read { s, addr, kernel }),
        6 => (s.clone(), addr(), any::<bool>(), any::<u32>())
            .prop_map(|(s, addr, kernel, value)| Op::Write { s, addr, kernel, value }),
        1 => (0..3u8, 1..4u8).prop_map(|(key, pages)| Op::ShmGet { key, pages }),
        2 => (s.clone(), 0..4u8, prop::option::of(addr()), 0..4u8)
            .prop_map(|(s, id, addr, flags)| Op::ShmAt { s, id, addr, flags }),
        1 => (s.clone(), addr()).prop_map(|(s, addr)| Op::ShmDt { s, addr }),
        1 => (0..4u8).prop_map(|id| Op::ShmRm { id }),
    ]
}

struct World {
    vm: Vm<HostMachine>,
    live: Vec<SpaceId>,
    start_free: u32,
}

impl World {
    fn space(&self, s: u8) -> Option<SpaceId> {
        (!self.live.is_empty()).then(|| self.live[s as usize % self.live.len()])
    }

    fn resolve(&self, s: SpaceId, a: &Addr) -> u32 {
        match *a {
            Addr::InRegion { region, page } => {
                let rs: Vec<&Region> = self
                    .vm
                    .space(s)
                    .map(|sp| sp.regions().iter().collect())
                    .unwrap_or_default();
                match rs.get(region as usize % rs.len().max(1)) {
                    Some(r) => r
                        .range
                        .start_addr()
                        .as_u32()
                        .wrapping_add(u32::from(page) * PAGE),
                    None => 0x1F80_0000,
                }
            }
            Addr::Heap(p) => 0x0FC0_0000 + u32::from(p) * PAGE,
            Addr::Mmap(p) => 0x1F80_0000 + u32::from(p) * PAGE,
            Addr::Wild(v) => v,
        }
    }
}

/// One space: id, regions, break, table pages, present pages.
type SpaceSnapshot = (SpaceId, Vec<Region>, u32, u32, Vec<(VirtPage, Translation)>);

/// Everything observable, for "a failed op changed nothing".
#[derive(Debug, PartialEq)]
struct Snapshot {
    spaces: Vec<SpaceSnapshot>,
    free: u32,
    shm: ShmTable,
}

fn snapshot(w: &mut World) -> Snapshot {
    let ids: Vec<SpaceId> = w.vm.spaces().map(|(id, _)| id).collect();
    let mut spaces = Vec::new();
    for id in ids {
        let sp = w.vm.space(id).unwrap();
        let regions = sp.regions().iter().copied().collect();
        let (brk, tables) = (sp.brk(), sp.mmu().table_pages());
        let mappings = w.vm.mappings(id).unwrap();
        spaces.push((id, regions, brk, tables, mappings));
    }
    Snapshot {
        spaces,
        free: w.vm.frames().free_count(),
        shm: w.vm.shm().clone(),
    }
}

/// INV-1..INV-5 and exact frame accounting.
fn check_invariants(w: &mut World) -> Result<(), TestCaseError> {
    let snap = snapshot(w);
    let layout = *w.vm.layout();
    let mut pte_count: BTreeMap<PhysFrame, u32> = BTreeMap::new();
    let mut anon_frames: BTreeMap<PhysFrame, Vec<bool>> = BTreeMap::new();
    let mut attachments: BTreeMap<u32, u32> = BTreeMap::new();
    let mut table_pages = 0;
    for (id, regions, _, tables, mappings) in &snap.spaces {
        table_pages += tables;
        // INV-1.
        for (i, r) in regions.iter().enumerate() {
            prop_assert!(r.range.count() > 0);
            prop_assert!(
                layout.in_user_window(r.range.start_addr().as_u32(), r.range.count() as u64 * 4096),
                "{:?} outside",
                r
            );
            if i > 0 {
                prop_assert!(
                    regions[i - 1].range.end_number() <= r.range.start().number(),
                    "overlap {:?}",
                    r
                );
            }
            if let RegionKind::Shm { id, .. } = r.kind {
                *attachments.entry(id.0).or_default() += 1;
            }
        }
        for (page, t) in mappings {
            // INV-2: inside a region that allows it, user and non-global.
            let r = regions.iter().find(|r| r.range.contains(*page));
            let Some(r) = r else {
                return Err(TestCaseError::fail(format!(
                    "{id:?}: PTE at {page:?} outside every region"
                )));
            };
            let allowed = r.attrs().flags.normalized();
            prop_assert!(
                allowed.contains(t.attrs.flags),
                "{:?}: {:?} grants {:?} beyond {:?}",
                id,
                page,
                t.attrs.flags,
                allowed
            );
            prop_assert!(t.attrs.flags.contains(MappingFlags::USER));
            match r.kind {
                RegionKind::Anon | RegionKind::Heap => {
                    *pte_count.entry(t.frame).or_default() += 1;
                    anon_frames
                        .entry(t.frame)
                        .or_default()
                        .push(t.attrs.flags.contains(MappingFlags::WRITE));
                }
                RegionKind::Shm {
                    id: shm,
                    first_page,
                    ..
                } => {
                    // INV-5: shm frames mapped only by attachments of their segment.
                    let seg = snap.shm.get(shm).expect("attached segment exists");
                    let idx = (first_page + page.number() - r.range.start().number()) as usize;
                    prop_assert_eq!(seg.frames.get(idx), Some(&t.frame));
                }
                RegionKind::Device { .. } => {}
            }
        }
    }
    // INV-3 and INV-4.
    for (frame, writable) in &anon_frames {
        let count = w.vm.frames().ref_count(*frame);
        prop_assert_eq!(count, Ok(pte_count[frame]), "refcount of {:?}", frame);
        if writable.len() > 1 {
            prop_assert!(
                writable.iter().all(|w| !w),
                "shared frame {:?} writable",
                frame
            );
        }
    }
    // INV-5: attach counts.
    let mut shm_frames = 0;
    for (id, seg) in snap.shm.iter() {
        prop_assert_eq!(
            seg.attached,
            attachments.get(&id.0).copied().unwrap_or(0),
            "attach count of {:?}",
            id
        );
        prop_assert!(
            !(seg.removed && seg.attached == 0),
            "removed unattached segment lives on"
        );
        shm_frames += seg.frames.len() as u32;
    }
    // Exact accounting: every used frame is a table page, a private anon frame or an shm frame.
    let used = table_pages + anon_frames.len() as u32 + shm_frames;
    prop_assert_eq!(snap.free, w.start_free - used, "free count");
    w.vm.frames().check().map_err(TestCaseError::fail)?;
    Ok(())
}

/// Runs one op; returns whether it failed (error, unresolved fault, brk refusal).
fn apply(w: &mut World, op: &Op) -> bool {
    let vm = &mut w.vm;
    let mode = |k: bool| if k { Mode::Kernel } else { Mode::User };
    match op {
        Op::Spawn => match vm.spawn() {
            Ok(id) => {
                w.live.push(id);
                false
            }
            Err(_) => true,
        },
        Op::Fork(s) => {
            let Some(p) = w.space(*s) else { return true };
            match w.vm.fork(p) {
                Ok(c) => {
                    w.live.push(c);
                    false
                }
                Err(_) => true,
            }
        }
        Op::Exit(s) => {
            let Some(id) = w.space(*s) else { return true };
            w.vm.exit(id).unwrap();
            w.live.retain(|x| *x != id);
            false
        }
        Op::Mmap {
            s,
            addr,
            pages,
            prot,
            flags,
        } => {
            let Some(id) = w.space(*s) else { return true };
            let a = w.resolve(id, addr);
            let f = [MAP_PRIVATE, MAP_SHARED, 0, MAP_PRIVATE | MAP_SHARED][(*flags & 3) as usize]
                | if flags & 4 != 0 { MAP_FIXED } else { 0 }
                | if flags & 8 != 0 {
                    MAP_FIXED_NOREPLACE
                } else {
                    0
                }
                | MAP_ANONYMOUS;
            w.vm.mmap(id, a, u32::from(*pages) * PAGE, u32::from(*prot), f)
                .is_err()
        }
        Op::Munmap { s, addr, pages } => {
            let Some(id) = w.space(*s) else { return true };
            let a = w.resolve(id, addr);
            w.vm.munmap(id, a, u32::from(*pages) * PAGE).is_err()
        }
        Op::Mprotect {
            s,
            addr,
            pages,
            prot,
        } => {
            let Some(id) = w.space(*s) else { return true };
            let a = w.resolve(id, addr);
            w.vm.mprotect(id, a, u32::from(*pages) * PAGE, u32::from(*prot))
                .is_err()
        }
        Op::Brk { s, addr } => {
            let Some(id) = w.space(*s) else { return true };
            let a = w.resolve(id, addr);
            let old = w.vm.space(id).unwrap().brk();
            let got = w.vm.brk(id, a);
            got != a || (got == old && a != old)
        }
        Op::Mremap {
            s,
            addr,
            old_pages,
            new_pages,
            flags,
            new_addr,
        } => {
            let Some(id) = w.space(*s) else { return true };
            let (a, n) = (w.resolve(id, addr), w.resolve(id, new_addr));
            let (o, l) = (u32::from(*old_pages) * PAGE, u32::from(*new_pages) * PAGE);
            w.vm.mremap(id, a, o, l, u32::from(*flags), n).is_err()
        }
        Op::MapDevice {
            s,
            addr,
            offset,
            pages,
        } => {
            let Some(id) = w.space(*s) else { return true };
            let a = w.resolve(id, addr);
            let pa = 0x4800_0000 + u32::from(*offset) * PAGE;
            w.vm.map_device(id, a, pa, u32::from(*pages) * PAGE, 3)
                .is_err()
        }
        Op::Read { s, addr, kernel } => {
            let Some(id) = w.space(*s) else { return true };
            let a = w.resolve(id, addr);
            w.vm.read_word(id, VirtAddr::new(a), mode(*kernel)).is_err()
        }
        Op::Write {
            s,
            addr,
            kernel,
            value,
        } => {
            let Some(id) = w.space(*s) else { return true };
            let a = w.resolve(id, addr);
            if a >= 0x4000_0000 {
                return true; // never scribble over the kernel's linear map (page tables live there)
            }
            w.vm.write_word(id, VirtAddr::new(a), *value, mode(*kernel))
                .is_err()
        }
        Op::ShmGet { key, pages } => {
            let key = if *key == 0 {
                IPC_PRIVATE
            } else {
                i32::from(*key)
            };
            vm.shmget(key, u32::from(*pages) * PAGE, IPC_CREAT).is_err()
        }
        Op::ShmAt {
            s,
            id: shm,
            addr,
            flags,
        } => {
            let Some(id) = w.space(*s) else { return true };
            let a = addr.as_ref().map_or(0, |a| w.resolve(id, a));
            let f = if flags & 1 != 0 { SHM_RDONLY } else { 0 }
                | if flags & 2 != 0 { SHM_REMAP } else { 0 };
            w.vm.shmat(id, ShmId(u32::from(*shm)), a, f).is_err()
        }
        Op::ShmDt { s, addr } => {
            let Some(id) = w.space(*s) else { return true };
            let a = w.resolve(id, addr);
            w.vm.shmdt(id, a).is_err()
        }
        Op::ShmRm { id } => vm.shmctl(ShmId(u32::from(*id)), IPC_RMID).is_err(),
    }
}

/// Runs the sequence and returns how many frame allocations each op asked for.
fn run(ops: &[(Op, Option<u8>)]) -> Result<Vec<u64>, TestCaseError> {
    let vm = Vm::new(HostMachine::default(), Layout::with_pool_frames(POOL)).unwrap();
    let start_free = vm.frames().free_count();
    let mut w = World {
        vm,
        live: Vec::new(),
        start_free,
    };
    let mut requests = Vec::new();
    for (op, fail_at) in ops {
        let plan = match fail_at {
            Some(k) => AllocationFailure::Nth(u64::from(*k)),
            None => AllocationFailure::Never,
        };
        w.vm.machine_mut().set_allocation_failure(plan);
        let before = snapshot(&mut w);
        let failed = apply(&mut w, op);
        let asked = w.vm.machine().allocation_requests();
        w.vm.machine_mut()
            .set_allocation_failure(AllocationFailure::Never);
        requests.push(asked);
        if let Some(k) = fail_at {
            // A refused allocation is never swallowed: the op reports the failure.
            prop_assert!(
                asked <= u64::from(*k) || failed,
                "{:?} succeeded though allocation {} was refused",
                op,
                k
            );
        }
        if failed && !matches!(op, Op::Exit(_)) {
            let after = snapshot(&mut w);
            prop_assert!(after == before, "failed op {:?} changed state", op);
        }
        check_invariants(&mut w)?;
    }
    // Everything back.
    for id in std::mem::take(&mut w.live) {
        w.vm.exit(id).unwrap();
    }
    for i in 0..192 {
        let _ = w.vm.shmctl(ShmId(i), IPC_RMID);
    }
    prop_assert!(w.vm.shmctl(ShmId(0), IPC_STAT).is_err());
    prop_assert_eq!(w.vm.frames().free_count(), start_free, "frames leaked");
    Ok(requests)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn space_invariants_hold(
        ops in prop::collection::vec((op(), prop::option::weighted(0.15, 0..3u8)), 1..60)
    ) {
        let mut ops = ops;
        ops.insert(0, (Op::Spawn, None));
        run(&ops)?;
    }

    /// Failure injected at every allocation of every op of each sequence, in turn.
    #[test]
    fn every_allocation_of_a_sequence_can_fail(
        ops in prop::collection::vec(op(), 1..20)
    ) {
        let mut ops: Vec<(Op, Option<u8>)> = ops.into_iter().map(|o| (o, None)).collect();
        ops.insert(0, (Op::Spawn, None));
        let requests = run(&ops)?;
        for (i, &asked) in requests.iter().enumerate() {
            for k in 0..asked.min(8) {
                let mut failing = ops[..i].to_vec();
                failing.push((ops[i].0.clone(), Some(k as u8)));
                run(&failing)?;
            }
        }
    }
}

/// The hardware check used by the access helpers agrees with the AP table for user mode.
#[test]
fn permits_follows_the_user_bit() {
    use vmm::arch::armv7::MappingAttrs;
    use vmm::fault::Access;
    let ro_kernel = MappingAttrs::new(MappingFlags::READ);
    assert!(!permits(ro_kernel, Access::Read, Mode::User));
    assert!(permits(ro_kernel, Access::Read, Mode::Kernel));
    let none = MappingAttrs::new(MappingFlags::USER);
    assert!(!permits(none, Access::Read, Mode::Kernel));
}
