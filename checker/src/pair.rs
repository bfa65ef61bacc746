//! The vmm and the model side by side, booted in a sequence's world: the state every check of
//! a run reads (the comparison in `compare.rs`, the invariants in `invariants.rs`, INV-10 in
//! `protocol.rs`), the boot, and the accessor that runs accesses on the simulated MMU.

use reference_model::armv7::{AccessKind, Privilege, Registers, Translation, walk};
use reference_model::model::{self, Model};
use vmm::addr::PhysAddr;
use vmm::fault::Mode;
use vmm::machine::Machine;
use vmm::space::{SpaceId, VmSpace};
use vmm::{Cpu, Layout, Vm};

use crate::concrete;
use crate::invariants::check_kernel_window;
use crate::machine::{Defect, SimMachine};
use crate::observed::Observed;
use crate::op::Op;
use crate::pairing::FramePairing;
use crate::protocol::{SpaceTables, check_log};
use crate::run::{CheckMode, StepHooks};
use crate::shadow::{TableShadow, user_registers};
use op_driver::{AccessOp, Accessor, Miss, Outcome};
use op_lang::Config;

/// The vmm and the model side by side, with the frame bijection.
pub(crate) struct Pair {
    pub(crate) vm: Vm<SimMachine>,
    pub(crate) model: Model,
    /// Live spaces in creation order, each side's names.
    pub(crate) model_ids: Vec<u32>,
    pub(crate) vmm_ids: Vec<SpaceId>,
    pub(crate) frames: FramePairing,
    /// In fast mode, the translations kept current from each step's changes.
    pub(crate) shadow: Option<TableShadow>,
    /// The model's and the vmm's observed state, refilled at every comparison (their
    /// buffers are reused from step to step; taken out while a comparison fills them, so
    /// that no placeholder is allocated each step). The vmm's regions, breaks and table-page
    /// counts are filled in place beforehand, by `read_vmm_spaces`.
    pub(crate) seen: Option<Box<(Observed, Observed)>>,
    /// The present pages of the space being observed (page number, translation), reused.
    pub(crate) mapped: Vec<(u32, Translation)>,
    /// Fast mode: for each space (by position), what the model's and the vmm's state in `seen`
    /// was built from. The model's side keeps the whole space (regions, break, table pages,
    /// pages) while the space there has the same stamp (not touched since); the vmm's side
    /// keeps its page list while the shadow's pages are unchanged (its regions and counts
    /// are read again at every step: the vmm is not trusted to tell what it changed).
    pub(crate) model_keys: Vec<Option<(u32, (u64, u64))>>,
    pub(crate) vmm_keys: Vec<Option<(SpaceId, u64)>>,
    /// For each space (by position), whether either side's page list was rebuilt in the
    /// current comparison. Lists neither side rebuilt are the ones the last comparison found
    /// equal, so only rebuilt ones are compared again.
    pub(crate) pages_rebuilt: Vec<bool>,
    /// Whether `seen.0.kernel_table_pages` holds the model's count for the `vmalloc` list
    /// beside it (the count is a function of that list alone).
    pub(crate) kernel_pages_known: bool,
    /// The words the last INV-6 sweep read, ascending (empty until one passes): the walker is
    /// a function of the words it reads, so while none changes its answer is the same.
    pub(crate) inv6_reads: Vec<u32>,
    /// Whether the two lists below and the vmm's regions, breaks and table-page counts in
    /// `seen` were read from the vmm since it last ran an op (`read_vmm_spaces`).
    pub(crate) vmm_spaces_read: bool,
    /// The live spaces (in `vmm_ids` order) and their L1 tables, for the shadow; `None` for a
    /// live id the vmm does not know.
    pub(crate) roster: Vec<(SpaceId, Option<u32>)>,
    /// INV-10: every live space's translations as the last comparison read them.
    pub(crate) tables_before: std::collections::BTreeMap<SpaceId, SpaceTables>,
    /// INV-10: ASIDs released so far (by the exit of their space).
    pub(crate) released_asids: [bool; 256],
    /// INV-10: ASIDs released before and handed out again in the current step.
    pub(crate) handed_out: Vec<u8>,
    /// INV-10: the first violation the current step's comparison found.
    pub(crate) protocol_error: Option<String>,
    /// The live spaces' ASIDs and registers, for the TLB check.
    pub(crate) live_asids: Vec<(u8, Registers)>,
    /// Model frames dead when the frame pairs were last pruned.
    pub(crate) frame_deaths: u64,
    /// INV-7: every L2 table the live spaces' L1 entries link, (table, space position, L1
    /// index), sorted; refilled by each check.
    pub(crate) links: Vec<(u32, usize, u32)>,
    /// INV-7: the frames holding page tables (L1 tables and pages of L2 tables), sorted: no
    /// page may map one as data.
    pub(crate) table_frames: Vec<u32>,
    /// INV-7: pages of tables per space position, a buffer.
    pub(crate) link_pages: Vec<u32>,
}

/// The vmm's layout for a sequence's world: the board's, with its pool size and ASID limit.
pub(crate) fn layout(config: Config) -> Layout {
    Layout {
        asids: config.asids,
        cpus: config.cpus,
        ..Layout::with_pool_frames(config.pool_frames)
    }
}

/// A vmm booted on `machine` in the world `config` describes. Every configuration the formats
/// accept boots (`Config::POOL_FRAMES` leaves room for the kernel's tables).
pub(crate) fn boot(machine: SimMachine, config: Config) -> Vm<SimMachine> {
    let mut vm = Vm::new(machine, layout(config)).expect("every valid configuration boots");
    vm.machine_mut().ttbr1 = vm.kernel().l1_table().as_u32();
    vm
}

/// The checked world's vmm: booted in `config`'s world on a machine with `defect` that records
/// the vmm's writes (not its reads), with the words its INV-6 walks read when they passed
/// (else none). The boot's own writes are in the log, so the first step checks them (INV-10)
/// with its own.
///
/// The sound machine in the default world is booted once per thread and copied, machine and
/// all, so its checks are made once, there: its boot log is cleared when it passes (every copy
/// would check the same log again; one that fails is kept, so the first step still reports
/// it), and the words of its INV-6 walks let the first step skip walks of unchanged words.
pub(crate) fn boot_recording(defect: Option<Defect>, config: Config) -> (Vm<SimMachine>, Vec<u32>) {
    fn fresh(defect: Option<Defect>, config: Config) -> Vm<SimMachine> {
        let mut machine = SimMachine::new(config.cpus, defect);
        machine.host.set_recording(true);
        machine.host.set_skip_reads(true);
        boot(machine, config)
    }
    fn sound() -> (Vm<SimMachine>, Vec<u32>) {
        let mut vm = fresh(None, Config::DEFAULT);
        if check_log(vm.machine().host.log(), 1).is_ok() {
            vm.machine_mut().host.clear_log();
        }
        let mut reads = Vec::new();
        // A failing walk leaves no words: the first step walks again and reports it.
        let _ = check_kernel_window(&vm, &mut reads);
        (vm, reads)
    }
    thread_local! {
        static SOUND: (Vm<SimMachine>, Vec<u32>) = sound();
    }
    match defect {
        None if config == Config::DEFAULT => SOUND.with(Clone::clone),
        _ => (fresh(defect, config), Vec::new()),
    }
}

/// The model of the same world, just booted: its start state from its own accounting.
pub fn new_model(config: Config) -> Model {
    Model::booted(model::Layout {
        pool_size: config.pool_frames * 0x1000,
        asids: config.asids,
        cpus: config.cpus,
        ..model::Layout::default()
    })
}

/// The registers with no user space current: no TTBR0, the kernel's TTBR1, N = 2, domain 0
/// client. With N = 2 every address at or above 1 GiB is walked from TTBR1, so these stand
/// for every space's context there.
pub(crate) fn kernel_registers(vm: &Vm<SimMachine>) -> Registers {
    Registers {
        ttbr1: vm.kernel().l1_table().as_u32(),
        ..user_registers(0)
    }
}

/// The registers of `space`'s context, its TTBR0 beside the `kernel` registers, and its ASID.
pub(crate) fn space_registers(space: &VmSpace, kernel: Registers) -> (Registers, u8) {
    let regs = Registers {
        ttbr0: space.mmu().l1_table().as_u32(),
        ..kernel
    };
    (regs, space.asid().value())
}

/// Accesses on the simulated machine: the access's CPU's TLB model, else a walk of the real
/// table bytes (filling that TLB); `op_driver::apply` hands faults to the vmm's handler (on
/// CPU 0, where the vmm runs) and retries. The walk uses the registers the vmm last set on that CPU
/// (TTBR0 and the ASID of the space it made current), not its bookkeeping: a vmm that forgot
/// to switch walks the wrong table.
pub(crate) struct HostAccessor;

impl Accessor<SimMachine> for HostAccessor {
    fn attempt(
        &mut self,
        vm: &mut Vm<SimMachine>,
        cpu: Cpu,
        _space: SpaceId,
        va: u32,
        access: AccessOp,
        mode: Mode,
    ) -> Result<u32, Miss> {
        let cpu = usize::from(cpu.index());
        let Some(&current) = vm.machine().current.get(cpu) else {
            return Err(Miss::Unsupported);
        };
        let (ttbr0, asid) = current.unwrap_or((0, 0));
        let regs = Registers {
            ttbr0,
            ..kernel_registers(vm)
        };
        let privilege = if mode == Mode::User {
            Privilege::Pl0
        } else {
            Privilege::Pl1
        };
        let kind = match access {
            AccessOp::Read => AccessKind::Read,
            AccessOp::Write(_) => AccessKind::Write,
            AccessOp::Exec => AccessKind::Execute,
        };
        let m = vm.machine_mut();
        let result = match m.tlbs[cpu].access(regs, va, asid, kind, privilege) {
            Some(hit) => hit,
            None => {
                let walked = walk(
                    |a| m.host.peek_word(PhysAddr::new(a)),
                    regs,
                    va,
                    kind,
                    privilege,
                );
                if let Ok(t) = walked {
                    m.tlbs[cpu].fill(t, asid);
                    m.tlb_fills += 1;
                }
                walked.map(|t| t.pa)
            }
        };
        let pa = PhysAddr::new(result.map_err(|_| Miss::Fault(va))?);
        Ok(match access {
            AccessOp::Write(value) => {
                // Data goes straight to RAM: the machine log then holds only the vmm's own
                // (descriptor) writes, which the protocol check reads.
                m.host.write_bytes(pa, &value.to_le_bytes());
                m.data_writes.push(pa);
                0
            }
            _ => m.read_word(pa),
        })
    }
}

/// A translation as a TLB entry caches it: the whole block, not the accessed byte.
pub(crate) fn block(t: &Translation) -> Translation {
    Translation {
        pa: t.block_pa,
        ..*t
    }
}

impl Pair {
    /// A freshly booted vmm (on a machine with `defect`) and model, nothing compared yet.
    pub(crate) fn new(defect: Option<Defect>, mode: CheckMode, config: Config) -> Self {
        let (vm, inv6_reads) = boot_recording(defect, config);
        Self {
            vm,
            model: new_model(config),
            model_ids: Vec::new(),
            vmm_ids: Vec::new(),
            frames: FramePairing::default(),
            shadow: (mode == CheckMode::Fast).then(TableShadow::default),
            seen: None,
            mapped: Vec::new(),
            model_keys: Vec::new(),
            vmm_keys: Vec::new(),
            pages_rebuilt: Vec::new(),
            kernel_pages_known: false,
            inv6_reads,
            vmm_spaces_read: false,
            roster: Vec::new(),
            tables_before: std::collections::BTreeMap::new(),
            released_asids: [false; 256],
            handed_out: Vec::new(),
            protocol_error: None,
            live_asids: Vec::new(),
            frame_deaths: 0,
            links: Vec::new(),
            table_frames: Vec::new(),
            link_pages: Vec::new(),
        }
    }

    /// The live spaces, model and vmm names side by side.
    pub(crate) fn ids(&self) -> Vec<(u32, SpaceId)> {
        self.model_ids
            .iter()
            .copied()
            .zip(self.vmm_ids.iter().copied())
            .collect()
    }

    /// (model, vmm) outcomes: the op resolved against the model, then applied to each side,
    /// the resolution and the vmm's side through `hooks`.
    pub(crate) fn apply(&mut self, op: &Op, hooks: StepHooks) -> (Outcome, Outcome) {
        let op = (hooks.resolve)(&self.model, &self.model_ids, op);
        let m = concrete::apply_model(&mut self.model, &mut self.model_ids, &op);
        let v = (hooks.apply)(&mut self.vm, &mut self.vmm_ids, &op);
        self.vmm_spaces_read = false;
        (m, v)
    }
}
