//! The space current on each CPU (semantics.md sections 2 and 14): `Vm::switch_to` tells the
//! machine (TTBR0 and CONTEXTIDR of that CPU) only when the space changes, and `exit` leaves a
//! current space on every CPU before its ASID is invalidated and its L1 table freed. With more
//! than one CPU every invalidate is the broadcast form.

use vmm::addr::{PhysFrame, VirtAddr};
use vmm::machine::{HostMachine, MachineEvent};
use vmm::space::SpaceId;
use vmm::{Cpu, Errno, Layout, Vm};

fn switches(vm: &Vm<HostMachine>) -> Vec<MachineEvent> {
    vm.machine()
        .log()
        .iter()
        .copied()
        .filter(|e| matches!(e, MachineEvent::SwitchSpace(..)))
        .collect()
}

/// Asserts that `log` holds, in this order: `left` (a CPU leaving the space), `invalidated`
/// (its ASID invalidate) and the free of its L1 table `l1`.
fn assert_left_then_invalidated_then_freed(
    log: &[MachineEvent],
    left: MachineEvent,
    invalidated: MachineEvent,
    l1: PhysFrame,
) {
    let at = |event: MachineEvent, what: &str| {
        log.iter()
            .position(|e| *e == event)
            .unwrap_or_else(|| panic!("{what}: {log:?}"))
    };
    let freed = MachineEvent::FramesFreed {
        first: l1,
        count: 1,
    };
    let (left, invalidated, freed) = (
        at(left, "the CPU left the space"),
        at(invalidated, "its ASID was invalidated"),
        at(freed, "its L1 table went back"),
    );
    assert!(left < invalidated && invalidated < freed, "{log:?}");
}

fn layout(cpus: u8) -> Layout {
    Layout {
        cpus,
        ..Layout::with_pool_frames(64)
    }
}

#[test]
fn switching_tells_the_machine_once_per_change() {
    let mut vm = Vm::new(HostMachine::default(), layout(1)).unwrap();
    let (a, b) = (vm.spawn().unwrap(), vm.spawn().unwrap());
    let target = |vm: &Vm<HostMachine>, id: SpaceId| {
        let s = vm.space(id).unwrap();
        Some((PhysFrame::containing(s.mmu().l1_table()), s.asid()))
    };
    let boot = Cpu::BOOT;
    vm.machine_mut().set_recording(true);
    assert_eq!(vm.current(boot), None, "the kernel-only state after boot");
    assert_eq!(vm.switch_to(boot, Some(a)), Ok(()));
    assert_eq!(
        vm.switch_to(boot, Some(a)),
        Ok(()),
        "already current: nothing to do"
    );
    assert_eq!(vm.current(boot), Some(a));
    assert_eq!(vm.switch_to(boot, Some(b)), Ok(()));
    assert_eq!(vm.switch_to(boot, None), Ok(()));
    assert_eq!(
        switches(&vm),
        [
            MachineEvent::SwitchSpace(boot, target(&vm, a)),
            MachineEvent::SwitchSpace(boot, target(&vm, b)),
            MachineEvent::SwitchSpace(boot, None),
        ]
    );
    assert_eq!(vm.switch_to(boot, Some(SpaceId(99))), Err(Errno::EINVAL));
    assert_eq!(vm.current(boot), None, "a refused switch changes nothing");
    assert_eq!(
        vm.switch_to(Cpu::new(1), Some(a)),
        Err(Errno::EINVAL),
        "one CPU: there is no CPU 1"
    );
    assert_eq!(vm.current(Cpu::new(1)), None);
    assert_eq!(switches(&vm).len(), 3, "refused switches reach no machine");
}

#[test]
fn exit_leaves_the_current_space_before_freeing_its_table() {
    let mut vm = Vm::new(HostMachine::default(), layout(1)).unwrap();
    let (a, b) = (vm.spawn().unwrap(), vm.spawn().unwrap());
    let l1 = PhysFrame::containing(vm.space(a).unwrap().mmu().l1_table());
    let asid = vm.space(a).unwrap().asid();
    vm.switch_to(Cpu::BOOT, Some(a)).unwrap();
    vm.machine_mut().set_recording(true);
    vm.exit(a).unwrap();
    assert_eq!(vm.current(Cpu::BOOT), None);
    let log = vm.machine_mut().take_log();
    assert_left_then_invalidated_then_freed(
        &log,
        MachineEvent::SwitchSpace(Cpu::BOOT, None),
        MachineEvent::TlbInvalidateAsid(asid),
        l1,
    );
    // A space that is not current exits without a switch.
    vm.exit(b).unwrap();
    assert_eq!(switches(&vm), []);
}

/// Two CPUs: a space current on CPU 1 (and not on CPU 0) is left on CPU 1 at exit, before its
/// broadcast ASID invalidate and the free of its table; CPU 0's own space stays.
#[test]
fn exit_leaves_the_space_on_every_cpu_that_has_it() {
    let mut vm = Vm::new(HostMachine::default(), layout(2)).unwrap();
    let (a, b) = (vm.spawn().unwrap(), vm.spawn().unwrap());
    let l1 = PhysFrame::containing(vm.space(a).unwrap().mmu().l1_table());
    let asid = vm.space(a).unwrap().asid();
    let one = Cpu::new(1);
    vm.switch_to(one, Some(a)).unwrap();
    vm.switch_to(Cpu::BOOT, Some(b)).unwrap();
    assert_eq!((vm.current(Cpu::BOOT), vm.current(one)), (Some(b), Some(a)));
    vm.machine_mut().set_recording(true);
    vm.exit(a).unwrap();
    assert_eq!((vm.current(Cpu::BOOT), vm.current(one)), (Some(b), None));
    let log = vm.machine_mut().take_log();
    assert_left_then_invalidated_then_freed(
        &log,
        MachineEvent::SwitchSpace(one, None),
        MachineEvent::TlbInvalidateAsidIs(asid),
        l1,
    );
    let switched: Vec<_> = log
        .iter()
        .filter(|e| matches!(e, MachineEvent::SwitchSpace(..)))
        .collect();
    assert_eq!(switched, [&MachineEvent::SwitchSpace(one, None)]);
}

/// With more than one CPU the vmm issues only the inner-shareable forms (semantics.md section
/// 14); with one, only the local forms.
#[test]
fn the_cpu_count_chooses_the_reach_of_every_invalidate() {
    for cpus in [1, 2] {
        let mut vm = Vm::new(HostMachine::default(), layout(cpus)).unwrap();
        vm.machine_mut().set_recording(true);
        let s = vm.spawn().unwrap();
        let va = vm.mmap(s, 0, 0x3000, 3, 0x22).unwrap();
        for page in 0..3 {
            let at = VirtAddr::new(va.as_u32() + page * 0x1000);
            vm.handle_fault(s, at, vmm::fault::Access::Write, vmm::fault::Mode::User)
                .unwrap();
        }
        vm.mprotect(s, va.as_u32(), 0x1000, 1).unwrap();
        vm.munmap(s, va.as_u32(), 0x3000).unwrap();
        let k = vm.vmalloc(0x2000).unwrap();
        vm.vfree(k.as_u32()).unwrap();
        vm.exit(s).unwrap();
        let s = vm.spawn().unwrap();
        vm.exit(s).unwrap();
        let log = vm.machine().log();
        let local = log.iter().filter(|e| e.is_local_tlb_invalidate()).count();
        let broadcast = log
            .iter()
            .filter(|e| e.is_broadcast_tlb_invalidate())
            .count();
        if cpus == 1 {
            assert!(local > 0 && broadcast == 0, "{log:?}");
        } else {
            assert!(broadcast > 0 && local == 0, "{log:?}");
        }
    }
}

#[test]
fn a_layout_outside_one_to_four_cpus_does_not_boot() {
    for cpus in [0, 5] {
        assert_eq!(
            Vm::new(HostMachine::default(), layout(cpus)).err(),
            Some(Errno::EINVAL)
        );
    }
}
