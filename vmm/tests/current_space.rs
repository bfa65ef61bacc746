//! The space current on the CPU (semantics.md sections 2 and 14): `Vm::switch_to` tells the
//! machine (TTBR0 and CONTEXTIDR) only when the space changes, and `exit` leaves a current
//! space before its ASID is invalidated and its L1 table freed.

use vmm::addr::PhysFrame;
use vmm::machine::{HostMachine, MachineEvent};
use vmm::space::SpaceId;
use vmm::{Errno, Layout, Vm};

fn switches(vm: &Vm<HostMachine>) -> Vec<MachineEvent> {
    vm.machine()
        .log()
        .iter()
        .copied()
        .filter(|e| matches!(e, MachineEvent::SwitchSpace(_)))
        .collect()
}

#[test]
fn switching_tells_the_machine_once_per_change() {
    let mut vm = Vm::new(HostMachine::default(), Layout::with_pool_frames(64)).unwrap();
    let (a, b) = (vm.spawn().unwrap(), vm.spawn().unwrap());
    let target = |vm: &Vm<HostMachine>, id: SpaceId| {
        let s = vm.space(id).unwrap();
        Some((PhysFrame::containing(s.mmu().l1_table()), s.asid()))
    };
    vm.machine_mut().set_recording(true);
    assert_eq!(vm.current(), None, "the kernel-only state after boot");
    assert_eq!(vm.switch_to(Some(a)), Ok(()));
    assert_eq!(
        vm.switch_to(Some(a)),
        Ok(()),
        "already current: nothing to do"
    );
    assert_eq!(vm.current(), Some(a));
    assert_eq!(vm.switch_to(Some(b)), Ok(()));
    assert_eq!(vm.switch_to(None), Ok(()));
    assert_eq!(
        switches(&vm),
        [
            MachineEvent::SwitchSpace(target(&vm, a)),
            MachineEvent::SwitchSpace(target(&vm, b)),
            MachineEvent::SwitchSpace(None),
        ]
    );
    assert_eq!(vm.switch_to(Some(SpaceId(99))), Err(Errno::EINVAL));
    assert_eq!(vm.current(), None, "a refused switch changes nothing");
}

#[test]
fn exit_leaves_the_current_space_before_freeing_its_table() {
    let mut vm = Vm::new(HostMachine::default(), Layout::with_pool_frames(64)).unwrap();
    let (a, b) = (vm.spawn().unwrap(), vm.spawn().unwrap());
    let l1 = PhysFrame::containing(vm.space(a).unwrap().mmu().l1_table());
    let asid = vm.space(a).unwrap().asid();
    vm.switch_to(Some(a)).unwrap();
    vm.machine_mut().set_recording(true);
    vm.exit(a).unwrap();
    assert_eq!(vm.current(), None);
    let log = vm.machine_mut().take_log();
    let at = |event: MachineEvent| log.iter().position(|e| *e == event);
    let (left, invalidated, freed) = (
        at(MachineEvent::SwitchSpace(None)).expect("the CPU left the space"),
        at(MachineEvent::TlbInvalidateAsid(asid)).expect("its ASID was invalidated"),
        at(MachineEvent::FramesFreed {
            first: l1,
            count: 1,
        })
        .expect("its L1 table went back"),
    );
    assert!(left < invalidated && invalidated < freed, "{log:?}");
    // A space that is not current exits without a switch.
    vm.exit(b).unwrap();
    assert_eq!(switches(&vm), []);
}
