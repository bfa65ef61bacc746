//! One fresh world per sequence: a new `Vm` on the real frame pool, its kernel table in TTBR1,
//! the live spaces, and the step runner that primes and probes pages around every op.

use alloc::vec::Vec;

use op_driver::guest::{
    EXEC_PL0, EXEC_PL1, GuestDefect, Probe, ProbeGroup, ProbedStep, fetchable_address,
    fetchable_frame, step_header,
};
use op_driver::{AccessOp, Accessor, ConcreteOp, Miss, POOL_FRAMES};
use vmm::addr::PhysFrame;
use vmm::arch::armv7::{TlbReach, ttbr_value};
use vmm::fault::Mode;
use vmm::space::{ShmId, SpaceId};
use vmm::{Cpu, Errno, Layout, Vm};

use crate::access::{ldr, ldrt, str, strt};
use crate::boot;
use crate::cp15;
use crate::machine::GuestMachine;
use crate::start::{FETCHED_INSTRUCTION, fetch_at};

/// A vmm and its live spaces.
pub struct World {
    vm: Vm<GuestMachine>,
    spaces: Vec<SpaceId>,
}

impl World {
    /// Boots a vmm of `cpus` CPUs (1 or 2) on a pool of `pool_frames` frames handing out
    /// ASIDs up to `asids`, and switches the MMU to its kernel table (on both cores with two).
    pub fn boot(defect: GuestDefect, pool_frames: u32, asids: u8, cpus: u8) -> Result<Self, Errno> {
        if cpus > 2 {
            return Err(Errno::EINVAL);
        }
        let layout = Layout {
            asids,
            cpus,
            ..Layout::with_pool_frames(pool_frames)
        };
        // SAFETY: the pool and the device window are RAM mapped at VA = PA by the boot table
        // and by the vmm's kernel table, and nothing else of the guest lives there.
        let machine = unsafe { GuestMachine::new(defect, cpus) };
        let vm = Vm::new(machine, layout)?;
        let reach = TlbReach::for_cpus(cpus);
        let kernel = ttbr_value(PhysFrame::containing(vm.kernel().l1_table()), reach);
        let mut use_kernel_table = || {
            // SAFETY: the vmm's kernel table maps all RAM at VA = PA for PL1 exactly as the
            // boot table does, so the guest stays mapped; it lives as long as the world.
            unsafe { cp15::write_ttbr1(kernel) };
            cp15::tlbiall(0);
            cp15::dsb();
            cp15::isb();
        };
        use_kernel_table();
        if cpus > 1 {
            // Core 1 starts the world as core 0 does: the new kernel table, nothing cached.
            crate::core1::run(&mut use_kernel_table);
        }
        Ok(Self {
            vm,
            spaces: Vec::new(),
        })
    }

    /// Zeroes the device memory `sequence` maps: the model (like the host checker's fresh
    /// RAM) starts every sequence with device memory reading 0, while real RAM keeps what
    /// earlier sequences wrote. A device range may run from the window on past it into RAM
    /// (up to the end of RAM: the checker runs such a range), so everything it maps from the
    /// window's start to the end of RAM is cleared.
    pub fn clear_device_memory(sequence: &[ProbedStep]) {
        let layout = Layout::with_pool_frames(POOL_FRAMES);
        let window =
            u64::from(layout.device_base)..u64::from(layout.ram_base) + u64::from(layout.ram_size);
        for s in sequence {
            if let ConcreteOp::MapDevice { pa, len, .. } = s.step.op {
                let start = u64::from(pa & !0xFFF).max(window.start);
                let end = (u64::from(pa) + u64::from(len)).min(window.end);
                let mut a = start;
                while a < end {
                    // SAFETY: from the device window to the end of RAM is RAM above every
                    // pool (at most 64 MiB from 0x4100_0000) and the guest image, mapped at
                    // VA = PA by the current kernel table; nothing else uses it.
                    unsafe { core::ptr::write_volatile(a as usize as *mut u32, 0) };
                    a += 4;
                }
            }
        }
    }

    /// Free frames in the pool.
    pub fn free_frames(&self) -> u32 {
        self.vm.frames().free_count()
    }

    /// Makes `space` current on `cpu` through the vmm (`Vm::switch_to`, which the machine
    /// carries out on that core's TTBR0 and CONTEXTIDR; nothing when it already is). `None`:
    /// the kernel-only state.
    fn enter(&mut self, cpu: Cpu, space: Option<SpaceId>) {
        let _ = self.vm.switch_to(cpu, space);
    }

    /// Runs one step: enter the step's space, prime the primed pages (core 0's, and core 1's
    /// in its own TLB), apply the op, then probe every group's pages (entering each group's
    /// space on its core), handing the record's words to `out` as they come: the header, then
    /// one probe at a time.
    pub fn step(&mut self, index: u32, s: &ProbedStep, out: &mut impl FnMut(&[u32])) {
        let space_of = |spaces: &[SpaceId], g: Option<&ProbeGroup>| {
            g.and_then(|g| g.space)
                .and_then(|i| spaces.get(i as usize).copied())
        };
        let own = space_of(&self.spaces, s.groups.first());
        // The first group and core 1's are the step's own space: entered before it on core 0,
        // and on core 1 when a group of core 1's is planned (the runner plans one only while
        // that space is current there).
        let in_own_space = |k: usize, g: &ProbeGroup| k == 0 || g.cpu == 1;
        let mut primed: Vec<Vec<Probe>> = Vec::with_capacity(s.groups.len());
        for (k, g) in s.groups.iter().enumerate() {
            if in_own_space(k, g) {
                self.enter(cpu_of(g), own);
            }
            let mut probes: Vec<Probe> = g
                .primed
                .iter()
                .map(|&va| Probe {
                    va,
                    ..Probe::default()
                })
                .collect();
            on_core(g.cpu, &mut || {
                for p in &mut probes {
                    prime(p, 0);
                }
            });
            primed.push(probes);
        }
        self.vm.machine_mut().refuse_allocation(s.step.refuse);
        let outcome = op_driver::apply(
            &mut self.vm,
            &mut self.spaces,
            &s.step.op,
            &mut RealAccesses,
        );
        self.vm.machine_mut().refuse_allocation(None);
        let count = s.groups.iter().map(ProbeGroup::count).sum();
        out(&step_header(index, outcome, self.free_frames(), count));
        for (k, g) in s.groups.iter().enumerate() {
            // The step's own space is the one entered before it (it may have exited since:
            // then the pages are probed in no space); the others are indices after it.
            let space = if in_own_space(k, g) {
                own.filter(|id| self.spaces.contains(id))
            } else {
                space_of(&self.spaces, Some(g))
            };
            self.enter(cpu_of(g), space);
            for va in g.pages() {
                let mut p = match primed[k].iter().position(|p| p.va == va) {
                    Some(i) => primed[k].swap_remove(i),
                    None => Probe {
                        va,
                        ..Probe::default()
                    },
                };
                on_core(g.cpu, &mut || probe(&mut p));
                out(&p.words());
            }
        }
    }

    /// Every space exits, every segment is removed, every vmalloc allocation is freed; then
    /// the MMU goes back to the boot tables. Returns the free frames at the end.
    pub fn teardown(mut self) -> u32 {
        for cpu in 0..self.vm.cpus() {
            self.enter(Cpu::new(cpu), None);
        }
        for id in core::mem::take(&mut self.spaces) {
            let _ = self.vm.exit(id);
        }
        for i in 0..192 {
            let _ = self.vm.shmctl(ShmId(i), 0);
        }
        let allocations: Vec<u32> = self
            .vm
            .vmalloc_allocations()
            .map(|(a, _)| a.as_u32())
            .collect();
        for a in allocations {
            let _ = self.vm.vfree(a);
        }
        let free = self.free_frames();
        boot::use_boot_tables();
        if self.vm.cpus() > 1 {
            // Powered off until the next world of two CPUs: an idle core would spin (QEMU's
            // WFE only yields) and take a host core from the one doing the work.
            crate::core1::run(&mut boot::use_boot_tables);
            crate::core1::stop();
        }
        free
    }
}

/// The core a group is primed and probed on.
fn cpu_of(g: &ProbeGroup) -> Cpu {
    Cpu::new(u8::try_from(g.cpu).unwrap_or(u8::MAX))
}

/// Runs `call` on core `cpu` (0: here; 1: the second core).
fn on_core(cpu: u32, call: &mut dyn FnMut()) {
    if cpu == 0 {
        call();
    } else {
        crate::core1::run(call);
    }
}

/// After the step: ATS at both levels, the word the tables point to, the real accesses again,
/// and instruction fetches from the page. The word is read before the real accesses: QEMU
/// walks the tables again for an access its TLB entry does not allow, so the write-back of a
/// value read through a stale read-only entry lands in the frame the tables give now, and the
/// word read after it would hide the stale read.
fn probe(p: &mut Probe) {
    p.ats = [
        cp15::ats1cur(p.va),
        cp15::ats1cuw(p.va),
        cp15::ats1cpr(p.va),
        cp15::ats1cpw(p.va),
    ];
    let pa = (p.ats[2] & 1 == 0).then(|| p.ats[2] & !0xFFF);
    if let Some(pa) = pa {
        p.content = ldr(pa).unwrap_or(0);
    }
    prime(p, 4);
    let fetched = pa
        .and_then(|pa| with_fetchable(p.va, pa, || [fetch_at(p.va, true), fetch_at(p.va, false)]));
    if let Some([pl0, pl1]) = fetched {
        p.set_access(EXEC_PL0, pl0);
        p.set_access(EXEC_PL1, pl1);
    }
}

/// Accesses 0-3 (or 4-7 with `base` 4): PL0 read and write-back, PL1 read and write-back, of
/// word 0 of the page. Writing back the value just read changes no memory.
fn prime(p: &mut Probe, base: usize) {
    let values = if base == 0 {
        &mut p.pre_values
    } else {
        &mut p.post_values
    };
    let mut results = [None; 4];
    if let Ok(v) = ldrt(p.va) {
        values[0] = v;
        results[0] = Some(true);
        results[1] = Some(strt(p.va, v).is_ok());
    } else {
        results[0] = Some(false);
    }
    if let Ok(v) = ldr(p.va) {
        values[1] = v;
        results[2] = Some(true);
        results[3] = Some(str(p.va, v).is_ok());
    } else {
        results[2] = Some(false);
    }
    for (i, r) in results.iter().enumerate() {
        if let Some(ok) = r {
            p.set_access(base + i, *ok);
        }
    }
}

/// Places [`FETCHED_INSTRUCTION`] at `pa` (the word `va` translates to for a PL1 read), runs
/// `fetch` when `va` reads it back (so the fetch cannot run another frame's word through a
/// stale translation), and restores the word. `None` when the word cannot be placed or does
/// not read back.
fn with_fetchable<T>(va: u32, pa: u32, fetch: impl FnOnce() -> T) -> Option<T> {
    if !fetchable_frame(pa) {
        return None;
    }
    let word = pa as usize as *mut u32;
    // SAFETY: `pa` is pool or device-window RAM (`fetchable_frame`), mapped at VA = PA for PL1 by
    // the current kernel table; the word is restored below before anything else reads it.
    let saved = unsafe { core::ptr::read_volatile(word) };
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(word, FETCHED_INSTRUCTION) };
    cp15::sync_instructions();
    let result = (ldr(va) == Ok(FETCHED_INSTRUCTION)).then(fetch);
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(word, saved) };
    cp15::sync_instructions();
    result
}

/// User and kernel accesses as real loads and stores; an abort is reported with its DFAR, and
/// `op_driver::apply` hands it to the vmm's fault handler and retries.
struct RealAccesses;

impl Accessor<GuestMachine> for RealAccesses {
    fn attempt(
        &mut self,
        _vm: &mut Vm<GuestMachine>,
        cpu: Cpu,
        _space: SpaceId,
        va: u32,
        access: AccessOp,
        mode: Mode,
    ) -> Result<u32, Miss> {
        let mut result = Err(Miss::Unsupported);
        on_core(u32::from(cpu.index()), &mut || {
            result = attempt_here(va, access, mode);
        });
        result
    }
}

/// One attempt at an access on the core that runs it.
fn attempt_here(va: u32, access: AccessOp, mode: Mode) -> Result<u32, Miss> {
    let result = match (access, mode) {
        (AccessOp::Exec, mode) => return fetch(va, mode == Mode::User),
        (AccessOp::Write(v), Mode::User) => strt(va, v).map(|()| 0),
        (AccessOp::Write(v), Mode::Kernel) => str(va, v).map(|()| 0),
        (AccessOp::Read, Mode::User) => ldrt(va),
        (AccessOp::Read, Mode::Kernel) => ldr(va),
    };
    result.map_err(|abort| Miss::Fault(abort.address))
}

/// An instruction fetch at `va`: the word there is replaced by an `SVC` for the fetch and
/// restored, and the fetch returns the word (as a read does). With no PL1 read translation the
/// fetch faults at every level (instruction fetches need read permission), so it is not run.
/// An address or frame the guest may not write (MMIO, its own image) is `Unsupported`: the
/// runner plans no fetch there.
fn fetch(va: u32, user: bool) -> Result<u32, Miss> {
    if !fetchable_address(va) {
        return Err(Miss::Unsupported);
    }
    let par = cp15::ats1cpr(va);
    if par & 1 != 0 {
        return Err(Miss::Fault(va));
    }
    let pa = (par & !0xFFF) | (va & 0xFFC);
    if !fetchable_frame(pa) {
        return Err(Miss::Unsupported);
    }
    // SAFETY: pool or device-window RAM mapped at VA = PA for PL1 (`fetchable_frame`).
    let word = unsafe { core::ptr::read_volatile(pa as usize as *const u32) };
    match with_fetchable(va, pa, || fetch_at(va, user)) {
        Some(true) => Ok(word),
        Some(false) => Err(Miss::Fault(va)),
        None => Err(Miss::Unsupported),
    }
}
