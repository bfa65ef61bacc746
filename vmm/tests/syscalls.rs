//! The user memory syscalls, faults, fork/exit and shm, error path by error path
//! (semantics.md sections 3-11), plus the LiteOS-A test cases that still apply.

use vmm::addr::VirtAddr;
use vmm::fault::{Access, FaultError, Mode, Resolution};
use vmm::machine::{AllocationFailure, HostMachine, Machine};
use vmm::shm::{
    IPC_CREAT, IPC_EXCL, IPC_PRIVATE, IPC_RMID, IPC_STAT, SHM_RDONLY, SHM_REMAP, SHM_RND, ShmStat,
};
use vmm::space::{Prot, RegionKind, SpaceId};
use vmm::syscalls::{MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_PRIVATE, MAP_SHARED};
use vmm::{Errno, Layout, Vm};

const RW: u32 = 3;
const ANON: u32 = MAP_ANONYMOUS | MAP_PRIVATE;
const PAGE: u32 = 4096;
const MMAP_BASE: u32 = 0x1F80_0000;

fn vm() -> (Vm<HostMachine>, SpaceId, u32) {
    let mut vm = Vm::new(HostMachine::default(), Layout::with_pool_frames(2048)).unwrap();
    let start = vm.frames().free_count();
    let s = vm.spawn().unwrap();
    (vm, s, start)
}

fn regions(vm: &Vm<HostMachine>, s: SpaceId) -> Vec<(u32, u32, u32)> {
    vm.space(s)
        .unwrap()
        .regions()
        .iter()
        .map(|r| {
            (
                r.range.start_addr().as_u32(),
                r.range.count(),
                r.prot.bits(),
            )
        })
        .collect()
}

fn user_read(vm: &mut Vm<HostMachine>, s: SpaceId, va: u32) -> Result<u32, FaultError> {
    vm.read_word(s, VirtAddr::new(va), Mode::User)
}
fn user_write(vm: &mut Vm<HostMachine>, s: SpaceId, va: u32, v: u32) -> Result<(), FaultError> {
    vm.write_word(s, VirtAddr::new(va), v, Mode::User)
}

#[test]
fn boot_and_exit_restore_the_free_count() {
    let (mut vm, s, start) = vm();
    assert_eq!(vm.frames().free_count(), start - 1);
    let a = vm.mmap(s, 0, 3 * PAGE, RW, ANON).unwrap();
    user_write(&mut vm, s, a.as_u32(), 7).unwrap();
    vm.exit(s).unwrap();
    assert_eq!(vm.frames().free_count(), start);
    assert_eq!(vm.exit(s), Err(Errno::EINVAL));
}

#[test]
fn mmap_argument_errors_in_order() {
    let (mut vm, s, _) = vm();
    assert_eq!(vm.mmap(s, 0, PAGE, 8, ANON), Err(Errno::EINVAL), "bad prot");
    assert_eq!(
        vm.mmap(s, 0, PAGE, RW, MAP_ANONYMOUS),
        Err(Errno::EINVAL),
        "neither shared nor private"
    );
    assert_eq!(
        vm.mmap(s, 0, PAGE, RW, MAP_ANONYMOUS | MAP_SHARED | MAP_PRIVATE),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        vm.mmap(s, 0, PAGE, RW, MAP_PRIVATE),
        Err(Errno::EINVAL),
        "file mappings unsupported"
    );
    assert_eq!(vm.mmap(s, 0, 0, RW, ANON), Err(Errno::EINVAL), "len 0");
    assert_eq!(
        vm.mmap(s, 0, 0x3E00_1000, RW, ANON),
        Err(Errno::EINVAL),
        "larger than the window"
    );
    assert_eq!(
        vm.mmap(s, 0, u32::MAX, RW, ANON),
        Err(Errno::EINVAL),
        "length overflows"
    );
    assert_eq!(
        vm.mmap(s, 0, 0x0800_0000, RW, ANON),
        Err(Errno::ENOMEM),
        "larger than the mmap area"
    );
    assert!(regions(&vm, s).is_empty());
}

/// LiteOS-A IT_MEM_MMAP_001 and _006.
#[test]
fn mmap_fixed_address_checks() {
    let (mut vm, s, _) = vm();
    assert_eq!(vm.mmap(s, 0, PAGE, 7, ANON).unwrap().as_u32(), MMAP_BASE);
    assert_eq!(
        vm.mmap(s, u32::MAX, PAGE, 7, ANON).unwrap().as_u32(),
        MMAP_BASE + PAGE,
        "wrapping hint = no hint"
    );
    assert_eq!(
        vm.mmap(s, 0x0100_0000, PAGE, 7, ANON | MAP_FIXED)
            .unwrap()
            .as_u32(),
        0x0100_0000
    );
    for bad in [
        1,
        PAGE - 1,
        PAGE,
        0u32.wrapping_sub(PAGE),
        0u32.wrapping_sub(1 + PAGE),
        0x1200_0123,
        0xAFFF_FFFF,
    ] {
        assert_eq!(
            vm.mmap(s, bad, PAGE, 7, ANON | MAP_FIXED),
            Err(Errno::EINVAL),
            "{bad:#x}"
        );
    }
    // The same misaligned address as a hint is fine (rounded up).
    assert_eq!(
        vm.mmap(s, 0x1200_0123, PAGE, RW, MAP_ANONYMOUS | MAP_SHARED)
            .unwrap()
            .as_u32(),
        0x1200_1000
    );
    assert_eq!(vm.mmap(s, 0, 0x4000_0000, RW, ANON), Err(Errno::EINVAL));
    assert_eq!(
        vm.mmap(s, 0x3EFF_F000, 2 * PAGE, RW, ANON | MAP_FIXED),
        Err(Errno::EINVAL),
        "past the top"
    );
}

/// LiteOS-A IT_MEM_MMAP_007 and _008.
#[test]
fn mmap_fixed_replaces_and_noreplace_refuses() {
    let (mut vm, s, _) = vm();
    let base = 0x0120_0000;
    assert_eq!(
        vm.mmap(s, base, 0x20_0000, RW, ANON | MAP_FIXED)
            .unwrap()
            .as_u32(),
        base
    );
    user_write(&mut vm, s, base + 0x10_0000, 5).unwrap();
    assert_eq!(
        vm.mmap(s, base - 0x10_0000, 0x20_0000, RW, ANON | MAP_FIXED)
            .unwrap()
            .as_u32(),
        base - 0x10_0000
    );
    assert_eq!(
        vm.mmap(s, base + 0x10_0000, 0x20_0000, 1, ANON | MAP_FIXED)
            .unwrap()
            .as_u32(),
        base + 0x10_0000
    );
    assert_eq!(
        user_read(&mut vm, s, base + 0x10_0000),
        Ok(0),
        "replaced: fresh zero page"
    );
    assert_eq!(
        regions(&vm, s),
        [(base - 0x10_0000, 0x200, 3), (base + 0x10_0000, 0x200, 1)]
    );
    for (addr, len) in [
        (base + 0x10_0000, PAGE),
        (base, 0x20_0000),
        (base - 0x20_0000, 0x20_0000),
        (0x0100_0000, 0x100_0000),
    ] {
        assert_eq!(
            vm.mmap(s, addr, len, RW, ANON | MAP_FIXED_NOREPLACE),
            Err(Errno::EEXIST),
            "{addr:#x}"
        );
    }
    assert_eq!(
        vm.mmap(
            s,
            0x0200_0000,
            PAGE,
            RW,
            ANON | MAP_FIXED | MAP_FIXED_NOREPLACE
        )
        .unwrap()
        .as_u32(),
        0x0200_0000
    );
    assert_eq!(
        vm.mmap(
            s,
            0x0200_0000,
            PAGE,
            RW,
            ANON | MAP_FIXED | MAP_FIXED_NOREPLACE
        ),
        Err(Errno::EEXIST)
    );
}

#[test]
fn mmap_hint_and_first_fit() {
    let (mut vm, s, _) = vm();
    assert_eq!(
        vm.mmap(s, 0x0500_0000, PAGE, RW, ANON).unwrap().as_u32(),
        0x0500_0000
    );
    assert_eq!(
        vm.mmap(s, 0x0500_0000, PAGE, RW, ANON).unwrap().as_u32(),
        MMAP_BASE,
        "taken hint: first fit"
    );
    let b = vm.mmap(s, 0, 2 * PAGE, RW, ANON).unwrap().as_u32();
    assert_eq!(b, MMAP_BASE + PAGE);
    vm.munmap(s, MMAP_BASE, PAGE).unwrap();
    assert_eq!(
        vm.mmap(s, 0, PAGE, RW, ANON).unwrap().as_u32(),
        MMAP_BASE,
        "the hole is reused"
    );
    assert_eq!(
        vm.mmap(s, 0, 2 * PAGE, RW, ANON).unwrap().as_u32(),
        MMAP_BASE + 3 * PAGE
    );
    // The area is full once what is left is smaller than the request.
    let left = 0x2740_0000 - (MMAP_BASE + 5 * PAGE);
    assert_eq!(
        vm.mmap(s, 0, left, RW, ANON).unwrap().as_u32(),
        MMAP_BASE + 5 * PAGE
    );
    assert_eq!(vm.mmap(s, 0, PAGE, RW, ANON), Err(Errno::ENOMEM));
}

#[test]
fn munmap_splits_and_releases_frames() {
    let (mut vm, s, start) = vm();
    let a = vm.mmap(s, 0, 4 * PAGE, RW, ANON).unwrap().as_u32();
    for i in 0..4 {
        user_write(&mut vm, s, a + i * PAGE, i + 1).unwrap();
    }
    let used = start - 1 - vm.frames().free_count();
    assert_eq!(used, 4 + 1, "four data frames and one L2 page");
    assert_eq!(vm.munmap(s, a + PAGE, 2 * PAGE), Ok(()));
    assert_eq!(regions(&vm, s), [(a, 1, 3), (a + 3 * PAGE, 1, 3)]);
    assert_eq!(user_read(&mut vm, s, a + 3 * PAGE), Ok(4));
    assert_eq!(user_read(&mut vm, s, a + PAGE), Err(FaultError::Segv));
    assert_eq!(start - 1 - vm.frames().free_count(), 3);
    assert_eq!(vm.munmap(s, a + 1, PAGE), Err(Errno::EINVAL), "misaligned");
    assert_eq!(vm.munmap(s, a, 0), Err(Errno::EINVAL), "len 0");
    assert_eq!(
        vm.munmap(s, 0x3F00_0000, PAGE),
        Err(Errno::EINVAL),
        "outside the window"
    );
    assert_eq!(vm.munmap(s, 0x0100_0000, PAGE), Ok(()), "a hole is fine");
}

/// LiteOS-A IT_MEM_MPROTECT_001, adapted: errors, splits, PROT_NONE.
#[test]
fn mprotect_errors_and_splits() {
    let (mut vm, s, _) = vm();
    assert_eq!(vm.mprotect(s, 0x1001, PAGE, 1), Err(Errno::EINVAL));
    assert_eq!(vm.mprotect(s, 0, PAGE, 0xffff), Err(Errno::EINVAL));
    assert_eq!(
        vm.mprotect(s, 0x1000, PAGE, 1),
        Err(Errno::ENOMEM),
        "not covered"
    );
    let a = vm.mmap(s, 0, 3 * PAGE, 1, ANON).unwrap().as_u32();
    assert_eq!(
        vm.mprotect(s, a, 4 * PAGE, RW),
        Err(Errno::ENOMEM),
        "past the region"
    );
    assert_eq!(vm.mprotect(s, a, 0, RW), Ok(()));
    assert_eq!(vm.mprotect(s, a, PAGE, RW), Ok(()));
    assert_eq!(vm.mprotect(s, a + 2 * PAGE, PAGE, RW), Ok(()));
    assert_eq!(
        regions(&vm, s),
        [(a, 1, 3), (a + PAGE, 1, 1), (a + 2 * PAGE, 1, 3)]
    );
    // Adjacent regions together cover a range.
    assert_eq!(vm.mprotect(s, a, 3 * PAGE, 1), Ok(()));
    // IT_MEM_MMAP_009: PROT_NONE after RW -> R keeps the value but denies every access.
    assert_eq!(vm.mprotect(s, a, PAGE, RW), Ok(()));
    user_write(&mut vm, s, a, 9).unwrap();
    vm.mprotect(s, a, PAGE, 1).unwrap();
    assert_eq!(user_read(&mut vm, s, a), Ok(9));
    assert_eq!(user_write(&mut vm, s, a, 1), Err(FaultError::Segv));
    vm.mprotect(s, a, PAGE, 0).unwrap();
    assert_eq!(user_read(&mut vm, s, a), Err(FaultError::Segv));
    assert_eq!(
        vm.read_word(s, VirtAddr::new(a), Mode::Kernel),
        Err(FaultError::Efault)
    );
}

/// LiteOS-A IT_MEM_MMAP_010: write-only is readable and writable; exec-only reads zero.
#[test]
fn write_and_exec_imply_read() {
    let (mut vm, s, _) = vm();
    let w = vm.mmap(s, 0, PAGE, 2, ANON).unwrap().as_u32();
    user_write(&mut vm, s, w, 3).unwrap();
    assert_eq!(user_read(&mut vm, s, w), Ok(3));
    let x = vm.mmap(s, 0, PAGE, 4, ANON).unwrap().as_u32();
    assert_eq!(user_read(&mut vm, s, x), Ok(0));
    assert_eq!(
        vm.access(s, VirtAddr::new(x), Access::Execute, Mode::User)
            .map(|_| ()),
        Ok(())
    );
    assert_eq!(user_write(&mut vm, s, x, 1), Err(FaultError::Segv));
}

#[test]
fn brk_grows_shrinks_and_reports_failure_with_the_old_break() {
    let (mut vm, s, _) = vm();
    let base = 0x0FC0_0000;
    assert_eq!(vm.brk(s, 0), base);
    assert_eq!(vm.brk(s, base - 1), base);
    // The heap may grow right up to the mmap area, not into it.
    let top = vm.layout().mmap_base;
    assert_eq!(vm.brk(s, top + 1), base, "into the mmap area");
    assert_eq!(vm.brk(s, top), top);
    assert_eq!(vm.brk(s, base), base);
    assert_eq!(vm.brk(s, base + 10), base + 10);
    assert_eq!(vm.space(s).unwrap().brk(), base + 10);
    assert_eq!(regions(&vm, s), [(base, 1, 3)]);
    assert_eq!(vm.brk(s, base + 3 * PAGE), base + 3 * PAGE);
    assert_eq!(regions(&vm, s), [(base, 3, 3)], "the heap region grows");
    user_write(&mut vm, s, base + 2 * PAGE, 1).unwrap();
    assert_eq!(vm.brk(s, base + PAGE + 1), base + PAGE + 1);
    assert_eq!(regions(&vm, s), [(base, 2, 3)]);
    assert_eq!(
        user_read(&mut vm, s, base + 2 * PAGE),
        Err(FaultError::Segv)
    );
    // Growth blocked by another region, or past the mmap base.
    vm.mmap(s, base + 3 * PAGE, PAGE, RW, ANON | MAP_FIXED)
        .unwrap();
    assert_eq!(vm.brk(s, base + 4 * PAGE), base + PAGE + 1);
    assert_eq!(vm.brk(s, MMAP_BASE + 1), base + PAGE + 1);
    assert_eq!(
        vm.brk(s, base + 3 * PAGE),
        base + 3 * PAGE,
        "up to the other region is fine"
    );
    assert_eq!(vm.brk(s, base), base);
    assert_eq!(regions(&vm, s), [(base + 3 * PAGE, 1, 3)]);
}

#[test]
fn demand_zero_then_copy_on_write_after_fork() {
    let (mut vm, s, start) = vm();
    let a = vm.mmap(s, 0, 2 * PAGE, RW, ANON).unwrap().as_u32();
    assert_eq!(
        vm.handle_fault(s, VirtAddr::new(a), Access::Read, Mode::User),
        Ok(Resolution::Mapped)
    );
    user_write(&mut vm, s, a, 11).unwrap();
    let c = vm.fork(s).unwrap();
    assert_eq!(user_read(&mut vm, c, a), Ok(11));
    assert_eq!(
        user_read(&mut vm, c, a + PAGE),
        Ok(0),
        "absent in both: each faults its own page"
    );
    // Both sides read-only now: the first writer copies, the second reuses.
    assert_eq!(
        vm.handle_fault(c, VirtAddr::new(a), Access::Write, Mode::User),
        Ok(Resolution::Copied)
    );
    user_write(&mut vm, c, a, 22).unwrap();
    assert_eq!(
        vm.handle_fault(s, VirtAddr::new(a), Access::Write, Mode::User),
        Ok(Resolution::Reused)
    );
    user_write(&mut vm, s, a, 33).unwrap();
    assert_eq!(user_read(&mut vm, c, a), Ok(22));
    assert_eq!(user_read(&mut vm, s, a), Ok(33));
    vm.exit(c).unwrap();
    vm.exit(s).unwrap();
    assert_eq!(vm.frames().free_count(), start);
}

#[test]
fn faults_outside_regions_or_permissions_are_unresolved() {
    let (mut vm, s, _) = vm();
    assert_eq!(user_read(&mut vm, s, 0x0100_0000), Err(FaultError::Segv));
    assert_eq!(
        vm.read_word(s, VirtAddr::new(0x0100_0000), Mode::Kernel),
        Err(FaultError::Efault)
    );
    assert_eq!(
        user_read(&mut vm, s, 0x4000_0000),
        Err(FaultError::Segv),
        "kernel memory from user mode"
    );
    assert_eq!(
        vm.read_word(s, VirtAddr::new(0x4100_0000), Mode::Kernel)
            .map(|_| ()),
        Ok(()),
        "linear map"
    );
    assert!(vm.space(s).unwrap().regions().is_empty());
    let r = vm.mmap(s, 0, PAGE, 1, ANON).unwrap().as_u32();
    assert_eq!(vm.space(s).unwrap().regions().len(), 1);
    assert!(!vm.space(s).unwrap().regions().is_empty());
    let free = vm.frames().free_count();
    assert_eq!(
        vm.handle_fault(s, VirtAddr::new(r), Access::Execute, Mode::User),
        Err(FaultError::Segv),
        "a fetch from a region without PROT_EXEC"
    );
    assert_eq!(
        vm.frames().free_count(),
        free,
        "the refused fault mapped nothing"
    );
    assert_eq!(vm.mappings(s), Some(Vec::new()));
    assert_eq!(user_write(&mut vm, s, r, 1), Err(FaultError::Segv));
    assert_eq!(
        vm.access(s, VirtAddr::new(r), Access::Execute, Mode::User),
        Err(FaultError::Segv)
    );
}

#[test]
fn out_of_memory_faults_change_nothing() {
    let (mut vm, s, _) = vm();
    let a = vm.mmap(s, 0, PAGE, RW, ANON).unwrap().as_u32();
    let free = vm.frames().free_count();
    for k in 0..2 {
        vm.machine_mut()
            .set_allocation_failure(AllocationFailure::Nth(k));
        assert_eq!(
            user_write(&mut vm, s, a, 1),
            Err(FaultError::Segv),
            "allocation {k} fails"
        );
        assert_eq!(vm.frames().free_count(), free);
    }
    vm.machine_mut()
        .set_allocation_failure(AllocationFailure::Never);
    user_write(&mut vm, s, a, 1).unwrap();
    let c = vm.fork(s).unwrap();
    let free = vm.frames().free_count();
    vm.machine_mut()
        .set_allocation_failure(AllocationFailure::FromNth(0));
    assert_eq!(
        user_write(&mut vm, s, a, 2),
        Err(FaultError::Segv),
        "no frame for the copy"
    );
    assert_eq!(vm.frames().free_count(), free);
    assert_eq!(user_read(&mut vm, c, a), Ok(1));
}

#[test]
fn fork_failure_leaves_the_parent_unchanged() {
    let (mut vm, s, _) = vm();
    let a = vm.mmap(s, 0, 3 * PAGE, RW, ANON).unwrap().as_u32();
    user_write(&mut vm, s, a, 5).unwrap();
    vm.mmap(s, 0x0100_0000, PAGE, RW, ANON | MAP_FIXED).unwrap();
    user_write(&mut vm, s, 0x0100_0000, 6).unwrap();
    let free = vm.frames().free_count();
    let tables = vm.space(s).unwrap().mmu().table_pages();
    for k in 0..3 {
        vm.machine_mut()
            .set_allocation_failure(AllocationFailure::Nth(k));
        assert_eq!(vm.fork(s), Err(Errno::ENOMEM), "allocation {k}");
        assert_eq!(vm.frames().free_count(), free);
        assert_eq!(vm.space(s).unwrap().mmu().table_pages(), tables);
    }
    vm.machine_mut()
        .set_allocation_failure(AllocationFailure::Never);
    // The parent's pages are still writable without a fault (no copy-on-write happened).
    let pa = vm
        .access(s, VirtAddr::new(a), Access::Write, Mode::User)
        .unwrap();
    assert_eq!(
        vm.frames().ref_count(vmm::addr::PhysFrame::containing(pa)),
        Ok(1)
    );
    let c = vm.fork(s).unwrap();
    assert_eq!(vm.spaces().count(), 2);
    assert_eq!(
        vm.space(c).unwrap().regions(),
        vm.space(s).unwrap().regions()
    );
}

/// LiteOS-A shm tests 001-011, adapted.
#[test]
fn shm_lifecycle() {
    let (mut vm, s, start) = vm();
    assert_eq!(vm.shmget(5, PAGE, 0), Err(Errno::ENOENT));
    assert_eq!(vm.shmget(5, 0, IPC_CREAT), Err(Errno::EINVAL));
    assert_eq!(vm.shmget(5, 0x100_0001, IPC_CREAT), Err(Errno::EINVAL));
    let id = vm.shmget(5, 2 * PAGE, IPC_CREAT).unwrap();
    assert_eq!(vm.shmget(5, PAGE, 0), Ok(id));
    assert_eq!(
        vm.shmget(5, 2 * PAGE, 0),
        Ok(id),
        "exactly the segment's size"
    );
    assert_eq!(
        vm.shmget(5, 3 * PAGE, 0),
        Err(Errno::EINVAL),
        "larger than the segment"
    );
    assert_eq!(vm.shmget(5, PAGE, IPC_CREAT | IPC_EXCL), Err(Errno::EEXIST));
    let other = vm.shmget(IPC_PRIVATE, PAGE, 0).unwrap();
    assert_ne!(other, id);
    let a = vm.shmat(s, id, 0, 0).unwrap().as_u32();
    assert_eq!(a, MMAP_BASE);
    user_write(&mut vm, s, a + PAGE, 42).unwrap();
    let c = vm.fork(s).unwrap();
    assert_eq!(
        vm.shmctl(id, IPC_STAT),
        Ok(Some(ShmStat {
            size: 2 * PAGE,
            attached: 2,
            removed: false
        }))
    );
    // Shared, not copy-on-write, across fork.
    user_write(&mut vm, c, a + PAGE, 43).unwrap();
    assert_eq!(user_read(&mut vm, s, a + PAGE), Ok(43));
    assert_eq!(
        vm.munmap(s, a, PAGE),
        Err(Errno::EINVAL),
        "part of an attachment"
    );
    assert_eq!(
        vm.mprotect(s, a, 2 * PAGE, 7),
        Err(Errno::EACCES),
        "more than the attachment allows"
    );
    assert_eq!(vm.shmdt(s, a + PAGE), Err(Errno::EINVAL));
    assert_eq!(vm.shmctl(id, 99), Err(Errno::EINVAL));
    assert_eq!(vm.shmctl(id, IPC_RMID), Ok(None));
    assert_eq!(vm.shmctl(id, IPC_RMID), Err(Errno::EIDRM));
    assert_eq!(vm.shmat(s, id, 0, 0), Err(Errno::EIDRM));
    assert_eq!(
        vm.shmget(5, PAGE, 0),
        Err(Errno::ENOENT),
        "a removed key is gone"
    );
    vm.shmdt(s, a).unwrap();
    assert_eq!(user_read(&mut vm, c, a + PAGE), Ok(43));
    vm.exit(c).unwrap();
    assert_eq!(
        vm.shmctl(id, IPC_STAT),
        Err(Errno::EINVAL),
        "destroyed with the last detach"
    );
    // Read-only, fixed, rounded and remapping attaches.
    let ro = vm
        .shmat(s, other, 0x0200_0000, SHM_RDONLY)
        .unwrap()
        .as_u32();
    assert_eq!(user_write(&mut vm, s, ro, 1), Err(FaultError::Segv));
    assert_eq!(
        vm.shmat(s, other, 0x0200_0123, 0),
        Err(Errno::EINVAL),
        "misaligned"
    );
    assert_eq!(
        vm.shmat(s, other, 0x0200_0123, SHM_RND),
        Err(Errno::EINVAL),
        "overlap without SHM_REMAP"
    );
    assert_eq!(
        vm.shmat(s, other, 0x0200_0123, SHM_RND | SHM_REMAP)
            .unwrap()
            .as_u32(),
        0x0200_0000
    );
    assert_eq!(
        vm.shmctl(other, IPC_STAT).unwrap().unwrap().attached,
        1,
        "the replaced attachment detached"
    );
    vm.shmctl(other, IPC_RMID).unwrap();
    vm.exit(s).unwrap();
    assert_eq!(vm.frames().free_count(), start);
}

/// A segment may be as large as SHMMAX; SHM_EXEC attaches it executable.
#[test]
fn shm_size_limit_and_exec_attachments() {
    let mut vm = Vm::new(HostMachine::default(), Layout::ARM_VIRT).unwrap();
    let s = vm.spawn().unwrap();
    let big = vm.shmget(IPC_PRIVATE, vmm::shm::SHMMAX, 0).unwrap();
    assert_eq!(
        vm.shmget(IPC_PRIVATE, vmm::shm::SHMMAX + 1, 0),
        Err(Errno::EINVAL)
    );
    vm.shmctl(big, IPC_RMID).unwrap();
    let id = vm.shmget(IPC_PRIVATE, PAGE, 0).unwrap();
    let a = vm.shmat(s, id, 0, vmm::shm::SHM_EXEC).unwrap().as_u32();
    assert_eq!(regions(&vm, s), [(a, 1, 7)]);
    let b = vm.shmat(s, id, 0, SHM_RDONLY).unwrap().as_u32();
    assert_eq!(regions(&vm, s), [(a, 1, 7), (b, 1, 1)]);
}

/// Each page of an attachment reaches its own frame of the segment (shmat maps them all, in
/// order), whatever order they are touched in.
#[test]
fn shm_pages_reach_their_own_frames() {
    let (mut vm, s, _) = vm();
    let id = vm.shmget(IPC_PRIVATE, 4 * PAGE, 0).unwrap();
    let a = vm.shmat(s, id, 0, 0).unwrap().as_u32();
    let frames = vm.shm().get(id).unwrap().frames.clone();
    for k in [3, 0, 2, 1] {
        let pa = vm
            .access(s, VirtAddr::new(a + k * PAGE + 8), Access::Read, Mode::User)
            .unwrap();
        assert_eq!(
            pa.as_u32(),
            frames[k as usize].start().as_u32() + 8,
            "page {k}"
        );
    }
}

#[test]
fn shm_limits() {
    let mut vm = Vm::new(HostMachine::default(), Layout::ARM_VIRT).unwrap();
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(vm.shmget(IPC_PRIVATE, 0x100_0000 / 4, 0).unwrap());
    }
    assert_eq!(
        vm.shmget(IPC_PRIVATE, PAGE, 0),
        Err(Errno::ENOSPC),
        "4096 pages in use"
    );
    for id in ids {
        vm.shmctl(id, IPC_RMID).unwrap();
    }
    let full: Vec<_> = (0..192)
        .map(|_| vm.shmget(IPC_PRIVATE, PAGE, 0).unwrap())
        .collect();
    assert_eq!(
        vm.shmget(IPC_PRIVATE, PAGE, 0),
        Err(Errno::ENOSPC),
        "192 segments"
    );
    // A freed slot is the next one used, even with higher ones free too.
    for id in [full[191], full[100], full[7]] {
        vm.shmctl(id, IPC_RMID).unwrap();
    }
    assert_eq!(vm.shmget(IPC_PRIVATE, PAGE, 0), Ok(full[7]));
    assert_eq!(vm.shmget(IPC_PRIVATE, PAGE, 0), Ok(full[100]));
}

#[test]
fn regions_keep_their_kind_when_split() {
    let (mut vm, s, _) = vm();
    let a = vm
        .mmap(s, 0, 3 * PAGE, RW, MAP_ANONYMOUS | MAP_SHARED)
        .unwrap()
        .as_u32();
    vm.mprotect(s, a + PAGE, PAGE, 1).unwrap();
    let rs: Vec<_> = vm.space(s).unwrap().regions().iter().copied().collect();
    assert_eq!(rs.len(), 3);
    assert!(rs.iter().all(|r| r.shared && r.kind == RegionKind::Anon));
    assert_eq!(rs[1].prot, Prot::READ);
}

#[test]
fn device_mappings_use_sections_and_check_their_arguments() {
    let (mut vm, s, _) = vm();
    let dev = 0x4800_0000;
    assert_eq!(
        vm.map_device(s, 0x0200_0000, dev + 1, PAGE, RW),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        vm.map_device(s, 0x0200_0000, dev, 0, RW),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        vm.map_device(s, 0x0200_0000, 0x4100_0000, PAGE, RW),
        Err(Errno::EINVAL),
        "inside the pool"
    );
    for (va, pa, len, why) in [
        (0x0200_0800, dev, PAGE, "unaligned address"),
        (0x0200_0000, dev, PAGE + 4, "unaligned length"),
        (0x0200_0000, 0xFFFF_F000, 2 * PAGE, "past 4 GiB"),
    ] {
        assert_eq!(
            vm.map_device(s, va, pa, len, RW),
            Err(Errno::EINVAL),
            "{why}"
        );
    }
    assert_eq!(vm.mappings(s), Some(Vec::new()));
    // A range that ends exactly at 4 GiB is fine.
    let top = vm
        .map_device(s, 0x0300_0000, 0xFFFF_F000, PAGE, RW)
        .unwrap();
    assert_eq!(vm.paddr(s, top).unwrap().as_u32(), 0xFFFF_F000);
    vm.munmap(s, top.as_u32(), PAGE).unwrap();
    assert_eq!(
        vm.map_device(s, 0x0200_0000, dev, 0x20_0000, RW)
            .unwrap()
            .as_u32(),
        0x0200_0000
    );
    assert_eq!(
        vm.space(s).unwrap().mmu().table_pages(),
        1,
        "two sections, no L2 page"
    );
    assert_eq!(
        vm.map_device(s, 0x0210_0000, dev, PAGE, RW),
        Err(Errno::EEXIST)
    );
    assert_eq!(
        vm.paddr(s, VirtAddr::new(0x0210_0123)).unwrap().as_u32(),
        dev + 0x10_0123
    );
    vm.machine_mut()
        .write_word(vmm::addr::PhysAddr::new(dev + 0x10_0000), 77);
    assert_eq!(user_read(&mut vm, s, 0x0210_0000), Ok(77));
    // Splitting a device section needs a frame.
    vm.machine_mut()
        .set_allocation_failure(AllocationFailure::FromNth(0));
    assert_eq!(vm.munmap(s, 0x0200_0000, PAGE), Err(Errno::ENOMEM));
    assert_eq!(vm.mprotect(s, 0x0200_0000, PAGE, 1), Err(Errno::ENOMEM));
    vm.machine_mut()
        .set_allocation_failure(AllocationFailure::Never);
    vm.mprotect(s, 0x0200_0000, PAGE, 1).unwrap();
    assert_eq!(
        user_write(&mut vm, s, 0x0200_0000, 1),
        Err(FaultError::Segv)
    );
    assert_eq!(
        vm.paddr(s, VirtAddr::new(0x0200_1000)).unwrap().as_u32(),
        dev + PAGE,
        "split keeps PAs"
    );
    let c = vm.fork(s).unwrap();
    assert_eq!(
        user_read(&mut vm, c, 0x0210_0000),
        Ok(77),
        "the child maps the same device"
    );
}

#[test]
fn vmalloc_and_vfree() {
    let (mut vm, s, start) = vm();
    let a = vm.vmalloc(3 * PAGE).unwrap().as_u32();
    assert_eq!(a, 0xC000_0000);
    let b = vm.vmalloc(1).unwrap().as_u32();
    assert_eq!(b, 0xC000_3000);
    vm.write_word(s, VirtAddr::new(a + 8), 5, Mode::Kernel)
        .unwrap();
    assert_eq!(vm.read_word(s, VirtAddr::new(a + 8), Mode::Kernel), Ok(5));
    assert_eq!(user_read(&mut vm, s, a), Err(FaultError::Segv));
    assert_eq!(vm.vfree(a + PAGE), Err(Errno::EINVAL));
    vm.vfree(a).unwrap();
    assert_eq!(vm.paddr(s, VirtAddr::new(a)), None);
    assert_eq!(
        vm.vmalloc(2 * PAGE).unwrap().as_u32(),
        a,
        "first fit reuses the hole"
    );
    assert_eq!(vm.vmalloc(0), Err(Errno::EINVAL));
    assert_eq!(vm.vmalloc(0x0800_0000), Err(Errno::ENOMEM));
    vm.vfree(a).unwrap();
    vm.vfree(b).unwrap();
    vm.exit(s).unwrap();
    assert_eq!(vm.frames().free_count(), start);
}

/// The vmalloc window's end is a hard limit: a request that fits exactly succeeds, one page
/// more fails and changes nothing.
#[test]
fn vmalloc_fills_its_window_exactly() {
    let mut layout = Layout::with_pool_frames(2048);
    layout.vmalloc_end = layout.vmalloc_base + 4 * PAGE;
    let mut vm = Vm::new(HostMachine::default(), layout).unwrap();
    let free = vm.frames().free_count();
    assert_eq!(vm.vmalloc(5 * PAGE), Err(Errno::ENOMEM));
    assert_eq!(vm.frames().free_count(), free);
    let a = vm.vmalloc(4 * PAGE).unwrap().as_u32();
    assert_eq!(a, layout.vmalloc_base);
    assert_eq!(vm.vmalloc(1), Err(Errno::ENOMEM));
    vm.vfree(a).unwrap();
    assert_eq!(vm.frames().free_count(), free);
}

#[test]
fn shm_remap_out_of_memory_keeps_what_was_there() {
    let (mut vm, s, _) = vm();
    let id = vm.shmget(IPC_PRIVATE, PAGE, 0).unwrap();
    // An untouched mapping in a 4 MiB group with no L2 page: replacing it needs one.
    vm.mmap(s, 0x0300_0000, PAGE, RW, ANON | MAP_FIXED).unwrap();
    let before = regions(&vm, s);
    vm.machine_mut()
        .set_allocation_failure(AllocationFailure::FromNth(0));
    assert_eq!(vm.shmat(s, id, 0x0300_0000, SHM_REMAP), Err(Errno::ENOMEM));
    vm.machine_mut()
        .set_allocation_failure(AllocationFailure::Never);
    assert_eq!(regions(&vm, s), before);
    assert_eq!(vm.shmctl(id, IPC_STAT).unwrap().unwrap().attached, 0);
    // With a touched page in the way the L2 page exists and the replacement needs nothing.
    user_write(&mut vm, s, 0x0300_0000, 1).unwrap();
    let free = vm.frames().free_count();
    vm.machine_mut()
        .set_allocation_failure(AllocationFailure::FromNth(0));
    assert_eq!(
        vm.shmat(s, id, 0x0300_0000, SHM_REMAP).unwrap().as_u32(),
        0x0300_0000
    );
    vm.machine_mut()
        .set_allocation_failure(AllocationFailure::Never);
    assert_eq!(
        vm.frames().free_count(),
        free + 1,
        "the anon frame went back"
    );
    assert_eq!(
        user_read(&mut vm, s, 0x0300_0000),
        Ok(0),
        "the segment's zeroed page"
    );
    assert_eq!(
        vm.shmat(s, id, 0, SHM_REMAP),
        Err(Errno::EINVAL),
        "SHM_REMAP needs an address"
    );
}

#[test]
fn mprotect_check_order_and_overflow() {
    let (mut vm, s, _) = vm();
    let a = vm.shmget(IPC_PRIVATE, PAGE, 0).unwrap();
    let b = vm.shmget(IPC_PRIVATE, 2 * PAGE, 0).unwrap();
    vm.shmat(s, a, 0x0200_0000, SHM_RDONLY).unwrap();
    vm.shmat(s, b, 0x0200_1000, 0).unwrap();
    assert_eq!(
        vm.mprotect(s, 0x0200_0000, 2 * PAGE, RW),
        Err(Errno::EINVAL),
        "partial attachment first"
    );
    assert_eq!(
        vm.mprotect(s, 0x0200_0000, 3 * PAGE, RW),
        Err(Errno::EACCES)
    );
    assert_eq!(vm.mprotect(s, 0x0200_0000, 3 * PAGE, 1), Ok(()));
    assert_eq!(
        vm.mprotect(s, 0x0100_0000, 0xFFFF_FFFF, 1),
        Err(Errno::EINVAL)
    );
    assert_eq!(vm.mprotect(s, 0xFFFF_F000, 0x2000, 1), Err(Errno::EINVAL));
}

#[test]
fn inconsistent_layouts_are_refused() {
    let mut l = Layout::ARM_VIRT;
    l.user_top = l.user_base;
    assert_eq!(
        Vm::new(HostMachine::default(), l).err(),
        Some(Errno::EINVAL)
    );
    let mut l = Layout::ARM_VIRT;
    l.user_top = 0x4000_1000;
    assert_eq!(
        Vm::new(HostMachine::default(), l).err(),
        Some(Errno::EINVAL)
    );
    let mut l = Layout::ARM_VIRT;
    l.mmap_end = 0x3F00_1000;
    assert_eq!(
        Vm::new(HostMachine::default(), l).err(),
        Some(Errno::EINVAL)
    );
    let mut l = Layout::ARM_VIRT;
    l.device_base = l.pool_base;
    assert_eq!(
        Vm::new(HostMachine::default(), l).err(),
        Some(Errno::EINVAL)
    );
    // Each field's alignment and the other bounds: layout.rs's unit tests.
}

#[test]
fn a_non_fixed_mapping_larger_than_the_mmap_area_fails_even_with_a_free_hint() {
    let (mut vm, s, _) = vm();
    assert_eq!(
        vm.mmap(s, 0x0100_0000, 0x07C0_1000, RW, ANON),
        Err(Errno::ENOMEM)
    );
    assert_eq!(
        vm.mmap(s, 0x0100_0000, 0x07C0_1000, RW, ANON | MAP_FIXED)
            .unwrap()
            .as_u32(),
        0x0100_0000
    );
    // Exactly the area's size fits (in a space where it is empty).
    let t = vm.spawn().unwrap();
    let area = vm.layout().mmap_end - vm.layout().mmap_base;
    assert_eq!(area, 0x07C0_0000);
    assert_eq!(
        vm.mmap(t, 0, area, RW, ANON).unwrap().as_u32(),
        vm.layout().mmap_base
    );
    // A space that is gone refuses everything.
    vm.exit(t).unwrap();
    assert_eq!(vm.mmap(t, 0, PAGE, RW, ANON), Err(Errno::EINVAL));
}

/// The kernel-side views of a VM: the mappings of a range, the tables checked against
/// their bookkeeping (and a corruption found), vmalloc's allocations with their sizes.
#[test]
fn vm_views_and_table_checks() {
    let (mut vm, s, _) = vm();
    let a = vm.mmap(s, 0, 4 * PAGE, RW, ANON).unwrap().as_u32();
    user_write(&mut vm, s, a + PAGE, 1).unwrap();
    user_write(&mut vm, s, a + 3 * PAGE, 1).unwrap();
    let range =
        vmm::addr::PageRange::new(vmm::addr::VirtPage::containing(VirtAddr::new(a)), 2).unwrap();
    let some: Vec<u32> = vm
        .mappings_in(s, range)
        .unwrap()
        .iter()
        .map(|(p, _)| p.start().as_u32())
        .collect();
    assert_eq!(some, [a + PAGE]);
    assert_eq!(vm.check_tables(s), Ok(()));
    let v = vm.vmalloc(3 * PAGE).unwrap();
    assert_eq!(vm.vmalloc_allocations().collect::<Vec<_>>(), [(v, 3)]);
    // A descriptor written behind the VM's back breaks its bookkeeping.
    let pa = vm.paddr(s, VirtAddr::new(a + PAGE)).unwrap();
    let l1 = vm.space(s).unwrap().mmu().l1_table();
    let entry = vmm::addr::PhysAddr::new(l1.as_u32() + (a >> 20) * 4);
    let table = vm.machine_mut().read_word(entry) & !0x3FF;
    let slot = vmm::addr::PhysAddr::new(table + ((a >> 12) & 0xFF) * 4);
    vm.machine_mut()
        .write_word(slot, pa.as_u32() & !0xFFF | 0x32);
    assert!(vm.check_tables(s).is_err());
}

/// mprotect gives each present page the region's new attributes, except private pages
/// still shared copy-on-write after a fork, which stay read-only until written.
#[test]
fn mprotect_keeps_shared_cow_pages_read_only() {
    use vmm::arch::armv7::MappingFlags;
    let (mut vm, s, _) = vm();
    let a = vm.mmap(s, 0, 3 * PAGE, RW, ANON).unwrap().as_u32();
    for k in 0..3 {
        user_write(&mut vm, s, a + k * PAGE, k).unwrap();
    }
    let _child = vm.fork(s).unwrap();
    user_write(&mut vm, s, a + PAGE, 9).unwrap();
    vm.mprotect(s, a, 3 * PAGE, 1).unwrap();
    vm.mprotect(s, a, 3 * PAGE, RW).unwrap();
    let writable: Vec<bool> = vm
        .mappings(s)
        .unwrap()
        .iter()
        .map(|(_, t)| t.attrs.flags.contains(MappingFlags::WRITE))
        .collect();
    assert_eq!(writable, [false, true, false]);
    assert_eq!(user_read(&mut vm, s, a + PAGE), Ok(9));
}

/// mremap's edges: a zero new length is refused; shrinking part of a region unmaps only the
/// cut-off pages; growing in place takes exactly the pages asked for even when a region
/// sits just past them; a fixed move that shrinks leaves the old range empty and its
/// neighbour alone.
#[test]
fn mremap_edges() {
    use vmm::syscalls::{MREMAP_FIXED, MREMAP_MAYMOVE};
    let (mut vm, s, _) = vm();
    let a = vm.mmap(s, 0, 4 * PAGE, RW, ANON).unwrap().as_u32();
    for k in 0..4 {
        user_write(&mut vm, s, a + k * PAGE, 10 + k).unwrap();
    }
    assert_eq!(vm.mremap(s, a, PAGE, 0, 0, 0), Err(Errno::EINVAL));
    assert_eq!(regions(&vm, s), [(a, 4, 3)]);
    // Shrink the first two pages to one: only page 1 goes.
    assert_eq!(vm.mremap(s, a, 2 * PAGE, PAGE, 0, 0).unwrap().as_u32(), a);
    assert_eq!(regions(&vm, s), [(a, 1, 3), (a + 2 * PAGE, 2, 3)]);
    assert_eq!(user_read(&mut vm, s, a + 2 * PAGE), Ok(12));
    // Grow the first page back to two in place: the region after it is not in the way.
    assert_eq!(
        vm.mremap(s, a, PAGE, 2 * PAGE, MREMAP_MAYMOVE, 0)
            .unwrap()
            .as_u32(),
        a
    );
    assert_eq!(regions(&vm, s), [(a, 2, 3), (a + 2 * PAGE, 2, 3)]);
    // Move the last two pages, shrunk to one, elsewhere: the old range is left empty.
    let target = 0x0300_0000;
    let b = vm
        .mremap(
            s,
            a + 2 * PAGE,
            2 * PAGE,
            PAGE,
            MREMAP_MAYMOVE | MREMAP_FIXED,
            target,
        )
        .unwrap()
        .as_u32();
    assert_eq!(b, target);
    assert_eq!(regions(&vm, s), [(target, 1, 3), (a, 2, 3)]);
    assert_eq!(user_read(&mut vm, s, target), Ok(12));
    assert_eq!(user_read(&mut vm, s, a), Ok(10));
}

/// LiteOS-A IT_MEM_MREMAP_001, adapted, and the rest of semantics.md section 8.
#[test]
fn mremap_cases() {
    use vmm::syscalls::{MREMAP_FIXED, MREMAP_MAYMOVE};
    let (mut vm, s, start) = vm();
    assert_eq!(vm.mremap(s, 0, 0, 0, 0, 0), Err(Errno::EINVAL));
    assert_eq!(
        vm.mremap(s, 0, PAGE, PAGE, 4, 0),
        Err(Errno::EINVAL),
        "unknown flag"
    );
    assert_eq!(
        vm.mremap(s, 0, PAGE, PAGE, MREMAP_FIXED, 0),
        Err(Errno::EINVAL),
        "FIXED without MAYMOVE"
    );
    let p = vm.mmap(s, 0, 2 * PAGE, RW, ANON).unwrap().as_u32();
    user_write(&mut vm, s, p, 1).unwrap();
    user_write(&mut vm, s, p + PAGE, 2).unwrap();
    assert_eq!(
        vm.mremap(s, p + 1, PAGE, PAGE, 0, 0),
        Err(Errno::EINVAL),
        "misaligned"
    );
    assert_eq!(
        vm.mremap(s, p, 3 * PAGE, PAGE, 0, 0),
        Err(Errno::EFAULT),
        "past the region"
    );
    assert_eq!(
        vm.mremap(s, 0x0100_0000, PAGE, PAGE, 0, 0),
        Err(Errno::EFAULT),
        "no region"
    );
    assert_eq!(
        vm.mremap(s, p, 2 * PAGE, 2 * PAGE, 0, 0).unwrap().as_u32(),
        p,
        "same size"
    );
    assert_eq!(
        vm.mremap(s, p, 2 * PAGE, PAGE, 0, 0).unwrap().as_u32(),
        p,
        "shrink"
    );
    assert_eq!(user_read(&mut vm, s, p + PAGE), Err(FaultError::Segv));
    assert_eq!(
        vm.mremap(s, p, PAGE, 2 * PAGE, 0, 0).unwrap().as_u32(),
        p,
        "grow in place"
    );
    assert_eq!(user_read(&mut vm, s, p + PAGE), Ok(0));
    // Fixed targets overlapping the old range are refused; beside it they work, and back.
    assert_eq!(
        vm.mremap(
            s,
            p,
            2 * PAGE,
            2 * PAGE,
            MREMAP_MAYMOVE | MREMAP_FIXED,
            p + PAGE
        ),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        vm.mremap(s, p, 2 * PAGE, 2 * PAGE, 3, p + 0x10_0000)
            .unwrap()
            .as_u32(),
        p + 0x10_0000
    );
    assert_eq!(
        user_read(&mut vm, s, p + 0x10_0000),
        Ok(1),
        "the frame moved"
    );
    assert_eq!(
        vm.mremap(s, p + 0x10_0000, 2 * PAGE, 2 * PAGE, 3, p)
            .unwrap()
            .as_u32(),
        p
    );
    assert_eq!(user_read(&mut vm, s, p), Ok(1));
    // Grow blocked by a neighbour: without MAYMOVE ENOMEM, with it a move to first fit.
    vm.mmap(s, p + 2 * PAGE, PAGE, RW, ANON | MAP_FIXED)
        .unwrap();
    assert_eq!(
        vm.mremap(s, p, 2 * PAGE, 3 * PAGE, 0, 0),
        Err(Errno::ENOMEM)
    );
    let q = vm
        .mremap(s, p, 2 * PAGE, 3 * PAGE, MREMAP_MAYMOVE, 0)
        .unwrap()
        .as_u32();
    assert_ne!(q, p);
    assert_eq!(user_read(&mut vm, s, q), Ok(1));
    assert_eq!(user_read(&mut vm, s, p), Err(FaultError::Segv));
    // A fixed move removes what the target overlaps; copy-on-write state moves with the page.
    let c = vm.fork(s).unwrap();
    let victim = vm
        .mmap(s, 0x0300_0000, 4 * PAGE, RW, ANON | MAP_FIXED)
        .unwrap()
        .as_u32();
    user_write(&mut vm, s, victim, 9).unwrap();
    assert_eq!(
        vm.mremap(s, q, PAGE, PAGE, 3, victim + PAGE)
            .unwrap()
            .as_u32(),
        victim + PAGE
    );
    assert_eq!(
        regions(&vm, s)
            .iter()
            .filter(|r| r.0 >= victim && r.0 < victim + 4 * PAGE)
            .count(),
        3
    );
    user_write(&mut vm, s, victim + PAGE, 5).unwrap();
    assert_eq!(
        user_read(&mut vm, c, q),
        Ok(1),
        "the child still sees the old value"
    );
    // shm and device regions cannot be remapped.
    let id = vm.shmget(IPC_PRIVATE, PAGE, 0).unwrap();
    let a = vm.shmat(s, id, 0, 0).unwrap().as_u32();
    assert_eq!(
        vm.mremap(s, a, PAGE, 2 * PAGE, MREMAP_MAYMOVE, 0),
        Err(Errno::EINVAL)
    );
    vm.shmctl(id, IPC_RMID).unwrap();
    vm.exit(c).unwrap();
    vm.exit(s).unwrap();
    assert_eq!(vm.frames().free_count(), start);
}

#[test]
fn mremap_fixed_out_of_memory_changes_nothing() {
    use vmm::syscalls::{MREMAP_FIXED, MREMAP_MAYMOVE};
    let (mut vm, s, _) = vm();
    let p = vm.mmap(s, 0, 2 * PAGE, RW, ANON).unwrap().as_u32();
    user_write(&mut vm, s, p, 1).unwrap();
    // The target's group has no L2 page: the move needs one.
    vm.mmap(s, 0x0300_0000, PAGE, RW, ANON | MAP_FIXED).unwrap();
    let before = regions(&vm, s);
    let free = vm.frames().free_count();
    vm.machine_mut()
        .set_allocation_failure(AllocationFailure::FromNth(0));
    assert_eq!(
        vm.mremap(
            s,
            p,
            2 * PAGE,
            PAGE,
            MREMAP_MAYMOVE | MREMAP_FIXED,
            0x0300_0000
        ),
        Err(Errno::ENOMEM)
    );
    vm.machine_mut()
        .set_allocation_failure(AllocationFailure::Never);
    assert_eq!(regions(&vm, s), before);
    assert_eq!(vm.frames().free_count(), free);
    assert_eq!(user_read(&mut vm, s, p), Ok(1));
    assert_eq!(
        vm.mremap(s, p, 2 * PAGE, PAGE, 3, 0x0300_0000)
            .unwrap()
            .as_u32(),
        0x0300_0000
    );
    assert_eq!(user_read(&mut vm, s, 0x0300_0000), Ok(1));
    assert_eq!(regions(&vm, s), [(0x0300_0000, 1, 3)]);
}

/// A cloned VM is a separate machine: what the copy does leaves the original's memory,
/// tables and frames alone, and both stay well formed.
#[test]
fn a_cloned_vm_goes_its_own_way() {
    let (mut vm, s, _) = vm();
    let a = vm.mmap(s, 0, 2 * PAGE, RW, ANON).unwrap().as_u32();
    user_write(&mut vm, s, a, 7).unwrap();
    let (free, mapped) = (vm.frames().free_count(), vm.mappings(s));
    let mut copy = vm.clone();
    assert_eq!(copy.mappings(s), mapped);
    user_write(&mut copy, s, a, 8).unwrap();
    user_write(&mut copy, s, a + PAGE, 9).unwrap();
    let t = copy.spawn().unwrap();
    copy.mmap(t, 0, PAGE, RW, ANON).unwrap();
    assert_eq!(user_read(&mut vm, s, a), Ok(7));
    assert_eq!(vm.frames().free_count(), free);
    assert_eq!(vm.mappings(s), mapped);
    assert!(vm.space(t).is_none());
    assert_eq!(user_read(&mut copy, s, a), Ok(8));
    copy.munmap(s, a, 2 * PAGE).unwrap();
    assert_eq!(user_read(&mut vm, s, a + 4), Ok(0));
    vm.check_tables(s).unwrap();
    copy.check_tables(s).unwrap();
    copy.check_tables(t).unwrap();
}

/// A break moved within its last page changes the break and nothing else; a heap that
/// starts right after another region is a region of its own (it never extends the other).
#[test]
fn brk_within_a_page_and_next_to_another_region() {
    let (mut vm, s, _) = vm();
    let base = vm.layout().heap_base;
    assert_eq!(vm.brk(s, base + 0x10), base + 0x10);
    assert_eq!(vm.brk(s, base + 0x20), base + 0x20, "same last page, up");
    assert_eq!(vm.brk(s, base + 0x8), base + 0x8, "same last page, down");
    assert_eq!(vm.space(s).unwrap().brk(), base + 0x8);
    assert_eq!(regions(&vm, s), [(base, 1, RW)]);
    assert_eq!(vm.brk(s, base), base);
    assert_eq!(regions(&vm, s), []);

    let (mut vm, s, _) = self::vm();
    vm.mmap(s, base - PAGE, PAGE, 1, ANON | MAP_FIXED).unwrap();
    assert_eq!(vm.brk(s, base + PAGE), base + PAGE);
    assert_eq!(
        regions(&vm, s),
        [(base - PAGE, 1, 1), (base, 1, RW)],
        "the anon page below stays read-only and one page"
    );
    let kinds: Vec<RegionKind> = vm
        .space(s)
        .unwrap()
        .regions()
        .iter()
        .map(|r| r.kind)
        .collect();
    assert_eq!(kinds, [RegionKind::Anon, RegionKind::Heap]);
    assert_eq!(vm.brk(s, base), base);
    assert_eq!(regions(&vm, s), [(base - PAGE, 1, 1)]);
}

/// mprotect over whole device sections changes them in place: they stay sections (no L2
/// page is allocated, even with no frame free), and the new protection holds.
#[test]
fn mprotect_keeps_whole_sections_whole() {
    let (mut vm, s, _) = vm();
    let dev = vm.layout().device_base;
    vm.map_device(s, 0x0200_0000, dev, 0x20_0000, RW).unwrap();
    let tables = vm.space(s).unwrap().mmu().table_pages();
    vm.machine_mut()
        .set_allocation_failure(AllocationFailure::FromNth(0));
    assert_eq!(vm.mprotect(s, 0x0200_0000, 0x20_0000, 1), Ok(()));
    vm.machine_mut()
        .set_allocation_failure(AllocationFailure::Never);
    assert_eq!(vm.space(s).unwrap().mmu().table_pages(), tables);
    assert_eq!(user_read(&mut vm, s, 0x021F_F000), Ok(0));
    assert_eq!(
        user_write(&mut vm, s, 0x0200_0000, 1),
        Err(FaultError::Segv)
    );
    vm.check_tables(s).unwrap();
}

/// mremap(MREMAP_FIXED) removes exactly the source's tail and the target: the regions right
/// before and after the source keep their pages and contents, and the tail's frames go back.
#[test]
fn mremap_fixed_leaves_the_neighbours_alone() {
    use vmm::syscalls::{MREMAP_FIXED, MREMAP_MAYMOVE};
    let move_fixed = MREMAP_MAYMOVE | MREMAP_FIXED;
    for (old_pages, new_pages) in [(4, 4), (4, 2), (2, 4)] {
        let (mut vm, s, _) = vm();
        let before = 0x0200_0000;
        let src = before + PAGE;
        let after = src + old_pages * PAGE;
        // Three regions: distinct protections keep them apart.
        vm.mmap(s, before, PAGE, RW, ANON | MAP_FIXED).unwrap();
        vm.mmap(s, src, old_pages * PAGE, RW | 4, ANON | MAP_FIXED)
            .unwrap();
        vm.mmap(s, after, PAGE, RW, ANON | MAP_FIXED).unwrap();
        user_write(&mut vm, s, before, 11).unwrap();
        user_write(&mut vm, s, after, 22).unwrap();
        for k in 0..old_pages {
            user_write(&mut vm, s, src + k * PAGE, 100 + k).unwrap();
        }
        let free = vm.frames().free_count();
        // In the same MiB: the move needs no new L2 page.
        let target = 0x0208_0000;
        assert_eq!(
            vm.mremap(
                s,
                src,
                old_pages * PAGE,
                new_pages * PAGE,
                move_fixed,
                target
            )
            .map(|a| a.as_u32()),
            Ok(target),
            "{old_pages} -> {new_pages}"
        );
        assert_eq!(user_read(&mut vm, s, before), Ok(11));
        assert_eq!(user_read(&mut vm, s, after), Ok(22));
        let kept = old_pages.min(new_pages);
        for k in 0..kept {
            assert_eq!(user_read(&mut vm, s, target + k * PAGE), Ok(100 + k));
        }
        assert_eq!(
            vm.frames().free_count(),
            free + (old_pages - kept),
            "the tail's frames went back"
        );
        assert_eq!(
            regions(&vm, s),
            [(before, 1, RW), (after, 1, RW), (target, new_pages, RW | 4)]
        );
        vm.check_tables(s).unwrap();
    }
}

/// SHM_RND rounds an unaligned address down to its page, and only SHM_RND does: the same
/// address in free space without it is EINVAL.
#[test]
fn shm_rnd_alone_rounds_and_nothing_else_does() {
    let (mut vm, s, _) = vm();
    let id = vm.shmget(IPC_PRIVATE, PAGE, IPC_CREAT).unwrap();
    assert_eq!(vm.shmat(s, id, 0x0300_0123, 0), Err(Errno::EINVAL));
    assert_eq!(vm.shmat(s, id, 0x0300_0123, SHM_RDONLY), Err(Errno::EINVAL));
    assert_eq!(regions(&vm, s), []);
    assert_eq!(
        vm.shmat(s, id, 0x0300_0123, SHM_RND).map(|a| a.as_u32()),
        Ok(0x0300_0000)
    );
    assert_eq!(
        vm.shmat(s, id, 0x0310_0FFF, SHM_RND | SHM_RDONLY)
            .map(|a| a.as_u32()),
        Ok(0x0310_0000)
    );
    assert_eq!(regions(&vm, s), [(0x0300_0000, 1, RW), (0x0310_0000, 1, 1)]);
}
