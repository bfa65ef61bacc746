//! Injected machine defects the QEMU suite must catch, each with a short sequence and the
//! divergence kind the host checker reports for the same defect on its simulated machine.

use checker::{Defect, DivergenceKind};
use op_driver::guest::GuestDefect;

/// A defect case: the guest's defect, the host's, the sequence, the kind both must report.
pub struct DefectCase {
    /// Name for the report.
    pub name: &'static str,
    /// The guest machine's defect.
    pub guest: GuestDefect,
    /// The host machine's defect.
    pub host: Defect,
    /// The sequence (`.ops` text).
    pub ops: &'static str,
    /// The kind QEMU must report.
    pub kind: DivergenceKind,
    /// The kind the host must report, when it is not `kind` (the host sees the machine log:
    /// a local invalidate on a two-CPU machine is a protocol violation there before any entry
    /// goes stale).
    pub host_kind: Option<DivergenceKind>,
}

/// Every defect case. The pages are written (PL0 TLB entries primed writable) in the space the
/// defective op changes: a context switch would flush QEMU's whole TLB and hide the defect.
#[must_use]
pub fn cases() -> Vec<DefectCase> {
    vec![
        DefectCase {
            name: "drop every TLB invalidate (munmap of a read page)",
            guest: GuestDefect::DropEveryInvalidate,
            host: Defect::DropEveryInvalidate,
            ops: "spawn\nmmap s=0 addr=0x0 len=0x1000 prot=0x3 flags=0x22\nread s=0 addr=r0+0p+0w mode=user\nmunmap s=0 addr=mmap+0p len=0x1000\n",
            kind: DivergenceKind::StaleTlb,
            host_kind: None,
        },
        DefectCase {
            name: "drop the first TLB invalidate (the parent's write-protect at fork)",
            guest: GuestDefect::DropNthInvalidate(0),
            host: Defect::DropNthInvalidate(0),
            ops: "spawn\nmmap s=0 addr=0x0 len=0x1000 prot=0x3 flags=0x22\nwrite s=0 addr=r0+0p+0w value=0x1 mode=user\nfork s=0\n",
            kind: DivergenceKind::StaleTlb,
            host_kind: None,
        },
        DefectCase {
            name: "drop the second TLB invalidate (the copy-on-write re-point of a read page)",
            guest: GuestDefect::DropNthInvalidate(1),
            host: Defect::DropNthInvalidate(1),
            ops: "spawn\nmmap s=0 addr=0x0 len=0x1000 prot=0x3 flags=0x22\nwrite s=0 addr=r0+0p+0w value=0x1 mode=user\nfork s=0\nread s=0 addr=r0+0p+0w mode=user\nwrite s=0 addr=r0+0p+0w value=0x2 mode=user\n",
            kind: DivergenceKind::StaleTlb,
            host_kind: None,
        },
        DefectCase {
            name: "read-only user descriptors written read/write (fork)",
            guest: GuestDefect::MakeReadOnlyUserPagesWritable,
            host: Defect::MakeReadOnlyUserPagesWritable,
            ops: "spawn\nmmap s=0 addr=0x0 len=0x1000 prot=0x3 flags=0x22\nwrite s=0 addr=r0+0p+0w value=0x1 mode=user\nfork s=0\n",
            kind: DivergenceKind::State,
            host_kind: None,
        },
        DefectCase {
            name: "user descriptors written executable (an anonymous read/write page)",
            guest: GuestDefect::MakeUserPagesExecutable,
            host: Defect::MakeUserPagesExecutable,
            ops: "spawn\nmmap s=0 addr=0x0 len=0x1000 prot=0x3 flags=0x22\nwrite s=0 addr=r0+0p+0w value=0x1 mode=user\n",
            kind: DivergenceKind::State,
            host_kind: None,
        },
        DefectCase {
            name: "local invalidates on two CPUs (munmap of a page core 1 read)",
            guest: GuestDefect::LocalInvalidates,
            host: Defect::LocalInvalidates,
            ops: "pool cpus=2\nspawn\nmmap s=0 addr=0x0 len=0x1000 prot=0x3 flags=0x22\nread s=0 addr=r0+0p+0w mode=user cpu=1\nmunmap s=0 addr=mmap+0p len=0x1000\n",
            kind: DivergenceKind::StaleTlb,
            host_kind: Some(DivergenceKind::HardwareProtocol),
        },
        local_on_two_cpus(
            "mprotect down of a page core 1 wrote",
            include_str!("../../../corpus/regressions/smp_shootdown_mprotect_down.ops"),
        ),
        local_on_two_cpus(
            "copy-on-write re-point of a page core 1 read",
            include_str!("../../../corpus/regressions/smp_shootdown_cow_repoint.ops"),
        ),
        local_on_two_cpus(
            "mremap move of a page core 1 read",
            include_str!("../../../corpus/regressions/smp_shootdown_mremap_move.ops"),
        ),
    ]
}

/// A shootdown scenario (its CPU 1 holds the translation the op changes) under a vmm that
/// issues local invalidates: core 1 keeps it on QEMU; the host sees the local invalidate.
fn local_on_two_cpus(what: &'static str, ops: &'static str) -> DefectCase {
    DefectCase {
        name: what,
        guest: GuestDefect::LocalInvalidates,
        host: Defect::LocalInvalidates,
        ops,
        kind: DivergenceKind::StaleTlb,
        host_kind: Some(DivergenceKind::HardwareProtocol),
    }
}

/// A defect of the guest itself (not of its machine) that the runner must report rather than
/// drop: the sequence, and what the failure must say.
pub struct HarnessCase {
    /// Name for the report.
    pub name: &'static str,
    /// The guest's defect.
    pub guest: GuestDefect,
    /// The sequence (`.ops` text).
    pub ops: &'static str,
    /// Words the failure must contain (it names the step).
    pub says: &'static str,
}

/// Every harness case: a record that never arrives, and a guest that fails after its last
/// record.
#[must_use]
pub fn harness_cases() -> Vec<HarnessCase> {
    const OPS: &str = "spawn\nmmap s=0 addr=0x0 len=0x1000 prot=0x3 flags=0x22\nread s=0 addr=r0+0p+0w mode=user\n";
    vec![
        HarnessCase {
            name: "the guest drops the record of step 2",
            guest: GuestDefect::DropStepRecord(1),
            ops: OPS,
            says: "at step 2 of 3: the record of step 3 after a missing one (step 2 was due)",
        },
        HarnessCase {
            name: "the guest exits with status 3 after its last record",
            guest: GuestDefect::FailAfterLastRecord,
            ops: OPS,
            says: "after step 3 of 3: the guest exited with status 3 after its last record",
        },
    ]
}
