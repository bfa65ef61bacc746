//! A commit that fails changes nothing. An inconsistency the vmm cannot cause through its API is
//! injected by a machine that lies once: the n-th read of one L1 entry returns a fault while the
//! table holds a section or a table. For every n, each operation either succeeds, fails before
//! writing, or fails in its commit (`MapError::Internal`); in the last case the RAM of the whole
//! pool, the free blocks of the allocator, the tables' own bookkeeping and the translations are
//! exactly as they were before the operation. Each scenario must reach a commit that had written
//! descriptors before it failed, so the rollback itself is exercised.

use vmm::addr::{PageRange, PhysAddr, PhysFrame, VirtAddr, VirtPage};
use vmm::arch::armv7::{
    ArchMmu, Asid, AsidAllocator, MapError, MappingAttrs, MappingFlags, Translation,
};
use vmm::fault::{Access, Mode};
use vmm::machine::{HostMachine, Machine};
use vmm::phys::FrameAllocator;
use vmm::space::SpaceId;
use vmm::syscalls::{MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE};
use vmm::{Errno, Layout, Vm};

const POOL_BASE: u32 = 0x4000_0000;
const POOL: u32 = 512;

/// A host machine whose `lie_after`-th read (0-based) of `target` returns 0, once.
#[derive(Default)]
struct Liar {
    ram: HostMachine,
    target: u32,
    lie_after: Option<u32>,
    /// The last call was a lie and nothing else happened since.
    just_lied: bool,
    lied: bool,
    /// The lie was the journal's read of the old value (followed at once by the write).
    lie_read_by_journal: bool,
    writes: u32,
}

impl Liar {
    fn arm(&mut self, target: u32, after: u32) {
        self.target = target;
        self.lie_after = Some(after);
        self.writes = 0;
    }
    fn other_call(&mut self) {
        self.just_lied = false;
    }
}

impl Machine for Liar {
    fn read_word(&mut self, pa: PhysAddr) -> u32 {
        self.just_lied = false;
        let value = self.ram.read_word(pa);
        if pa.as_u32() == self.target
            && let Some(n) = self.lie_after
        {
            if n == 0 {
                self.lie_after = None;
                self.lied = true;
                self.just_lied = true;
                return 0;
            }
            self.lie_after = Some(n - 1);
        }
        value
    }
    fn write_word(&mut self, pa: PhysAddr, value: u32) {
        if self.just_lied && pa.as_u32() == self.target {
            self.lie_read_by_journal = true;
        }
        self.other_call();
        self.writes += 1;
        self.ram.write_word(pa, value);
    }
    fn zero_frame(&mut self, frame: PhysFrame) {
        self.other_call();
        self.ram.zero_frame(frame);
    }
    fn copy_frame(&mut self, dst: PhysFrame, src: PhysFrame) {
        self.other_call();
        self.ram.copy_frame(dst, src);
    }
    fn tlb_invalidate_page(&mut self, asid: Asid, page: VirtPage) {
        self.other_call();
        self.ram.tlb_invalidate_page(asid, page);
    }
    fn tlb_invalidate_page_all_asids(&mut self, page: VirtPage) {
        self.other_call();
        self.ram.tlb_invalidate_page_all_asids(page);
    }
    fn tlb_invalidate_asid(&mut self, asid: Asid) {
        self.other_call();
        self.ram.tlb_invalidate_asid(asid);
    }
    fn tlb_invalidate_all(&mut self) {
        self.other_call();
        self.ram.tlb_invalidate_all();
    }
    fn dsb(&mut self) {
        self.other_call();
        self.ram.dsb();
    }
    fn isb(&mut self) {
        self.other_call();
        self.ram.isb();
    }
    fn tlb_invalidate_page_is(&mut self, asid: Asid, page: VirtPage) {
        self.other_call();
        self.ram.tlb_invalidate_page_is(asid, page);
    }
    fn tlb_invalidate_page_all_asids_is(&mut self, page: VirtPage) {
        self.other_call();
        self.ram.tlb_invalidate_page_all_asids_is(page);
    }
    fn tlb_invalidate_asid_is(&mut self, asid: Asid) {
        self.other_call();
        self.ram.tlb_invalidate_asid_is(asid);
    }
    fn tlb_invalidate_all_is(&mut self) {
        self.other_call();
        self.ram.tlb_invalidate_all_is();
    }
    fn switch_space(&mut self, cpu: vmm::Cpu, space: Option<(PhysFrame, Asid)>) {
        self.other_call();
        self.ram.switch_space(cpu, space);
    }
}

struct World {
    m: Liar,
    frames: FrameAllocator,
    mmu: ArchMmu,
}

/// Everything an operation may change, read without the liar.
#[derive(Debug, PartialEq)]
struct State {
    ram: Vec<Vec<u8>>,
    free_blocks: Vec<(PhysFrame, u8)>,
    table_pages: u32,
    translations: Vec<(VirtPage, Translation)>,
}

impl World {
    fn new() -> Self {
        let mut m = Liar::default();
        let mut frames = FrameAllocator::new(frame(POOL_BASE), POOL);
        let mut asids = AsidAllocator::new();
        let mmu = ArchMmu::new_user(&mut m, &mut frames, &mut asids).unwrap();
        Self { m, frames, mmu }
    }
    fn l1_entry(&self, va: u32) -> u32 {
        self.mmu.l1_table().as_u32() + (va >> 20) * 4
    }
    fn state(&mut self) -> State {
        let lie = self.m.lie_after.take();
        let ram = (0..POOL)
            .map(|i| {
                let f = frame(POOL_BASE + i * 4096);
                match self.m.ram.peek_frame(f) {
                    Some(Some(bytes)) => bytes.to_vec(),
                    _ => vec![0; 4096],
                }
            })
            .collect();
        let translations = self.mmu.mappings(&mut self.m).unwrap();
        self.m.lie_after = lie;
        State {
            ram,
            free_blocks: self.frames.free_blocks(),
            table_pages: self.mmu.table_pages(),
            translations,
        }
    }
}

fn frame(pa: u32) -> PhysFrame {
    PhysFrame::from_start(PhysAddr::new(pa)).unwrap()
}

fn pages(va: u32, count: u32) -> PageRange {
    PageRange::new(VirtPage::from_start(VirtAddr::new(va)).unwrap(), count).unwrap()
}

fn attrs(write: bool) -> MappingAttrs {
    let mut flags = MappingFlags::USER | MappingFlags::READ;
    if write {
        flags |= MappingFlags::WRITE;
    }
    MappingAttrs::new(flags)
}

/// Sections at 1 MiB and 2 MiB (frames outside the allocator's) and small pages at 4 MiB and
/// 5 MiB.
fn setup(w: &mut World) {
    for (va, pa) in [(0x0010_0000, 0x8000_0000), (0x0020_0000, 0x8010_0000)] {
        w.mmu
            .map(
                &mut w.m,
                &mut w.frames,
                pages(va, 256),
                frame(pa),
                attrs(true),
            )
            .unwrap();
    }
    for base in [0x0040_0000, 0x0050_0000] {
        w.mmu
            .map(
                &mut w.m,
                &mut w.frames,
                pages(base, 8),
                frame(0x8100_0000),
                attrs(true),
            )
            .unwrap();
    }
}

type Op = fn(&mut World) -> Result<(), MapError>;

/// Runs `op` with the lie at every read of the L1 entry of `va` in turn. Some run must fail in
/// its commit, and when `after_writes`, after the commit had written descriptors.
fn inject(name: &str, va: u32, after_writes: bool, op: Op) {
    let (mut internal, mut rolled_back_writes) = (0, 0);
    for n in 0..1000 {
        let mut w = World::new();
        setup(&mut w);
        let before = w.state();
        let target = w.l1_entry(va);
        w.m.arm(target, n);
        let result = op(&mut w);
        let (lied, by_journal, writes) = (w.m.lied, w.m.lie_read_by_journal, w.m.writes);
        w.m.lie_after = None;
        if !lied {
            // Fewer reads than n: no later n lies either.
            assert!(result.is_ok(), "{name}: {result:?} without a lie");
            break;
        }
        if by_journal {
            // The journal read a wrong old value: not an inconsistency of the tables.
            continue;
        }
        match result {
            Err(MapError::Internal { .. }) => {
                let after = w.state();
                assert!(
                    before == after,
                    "{name}: lie at read {n} of {target:#x}: a failed commit changed the state"
                );
                w.mmu
                    .check(&mut w.m)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                w.frames.check().unwrap();
                internal += 1;
                if writes > 0 {
                    rolled_back_writes += 1;
                }
            }
            Err(e) => {
                // Refused while planning: nothing was written.
                assert_eq!(writes, 0, "{name}: {e} after {writes} writes");
                assert!(
                    before == w.state(),
                    "{name}: a refused plan changed the state"
                );
            }
            Ok(()) => {}
        }
    }
    assert!(internal > 0, "{name}: no lie made a commit fail");
    assert!(
        !after_writes || rolled_back_writes > 0,
        "{name}: no lie made a commit fail after it had written"
    );
}

#[test]
fn protect_across_two_tables_rolls_back() {
    inject("protect", 0x0050_0000, true, |w| {
        w.mmu.protect(
            &mut w.m,
            &mut w.frames,
            pages(0x0040_0000, 256 + 8),
            attrs(false),
        )
    });
}

#[test]
fn protect_many_rolls_back_the_ranges_already_changed() {
    // The first range (4 MiB) is changed before the lie hits the second (5 MiB).
    inject("protect_many", 0x0050_0000, true, |w| {
        w.mmu.protect_many(
            &mut w.m,
            &mut w.frames,
            Some(pages(0x0040_0000, 0x20_0000 / 4096)),
            &[
                (pages(0x0040_0000, 8), attrs(false)),
                (pages(0x0050_0000, 8), attrs(false)),
            ],
        )
    });
}

#[test]
fn remap_page_fails_before_writing() {
    // One entry: the lie is found before the only write.
    inject("remap_page", 0x0050_0000, false, |w| {
        let page = VirtPage::from_start(VirtAddr::new(0x0050_1000)).unwrap();
        w.mmu.remap_page(
            &mut w.m,
            &mut w.frames,
            page,
            frame(0x8200_0000),
            attrs(false),
        )
    });
}

#[test]
fn unmap_across_tables_and_a_section_rolls_back() {
    inject("unmap", 0x0050_0000, true, |w| {
        w.mmu
            .unmap(
                &mut w.m,
                &mut w.frames,
                pages(0x0010_0000, 0x50_0000 / 4096),
            )
            .map(|_| ())
    });
}

#[test]
fn move_pages_rolls_back() {
    inject("move_pages", 0x0050_0000, true, |w| {
        let to = VirtPage::from_start(VirtAddr::new(0x0080_0000)).unwrap();
        w.mmu
            .move_pages(
                &mut w.m,
                &mut w.frames,
                pages(0x0040_0000, 0x20_0000 / 4096),
                to,
            )
            .map(|_| ())
    });
}

#[test]
fn move_replacing_rolls_back() {
    inject("move_replacing", 0x0050_0000, true, |w| {
        let target = pages(0x0010_0000, 8);
        w.mmu
            .move_replacing(
                &mut w.m,
                &mut w.frames,
                pages(0x0050_0000, 8),
                target.start(),
                &[target],
                |_, _| {},
            )
            .map(|_| ())
    });
}

#[test]
fn replace_range_rolls_back() {
    inject("replace_range", 0x0050_0000, true, |w| {
        let targets = [frame(0x8300_0000); 256 + 8];
        w.mmu.replace_range(
            &mut w.m,
            &mut w.frames,
            pages(0x0040_0000, 256 + 8),
            &targets,
            attrs(true),
            |_, _| {},
        )
    });
}

#[test]
fn split_partial_sections_rolls_back() {
    // Half of each section: the first is split before the lie hits the second.
    inject("split_partial_sections", 0x0020_0000, true, |w| {
        w.mmu
            .split_partial_sections(&mut w.m, &mut w.frames, pages(0x0018_0000, 256))
    });
}

/// Everything of a `Vm` a syscall may change, as text (read without the liar).
fn vm_state(vm: &mut Vm<Liar>) -> String {
    use std::fmt::Write;
    let lie = vm.machine_mut().lie_after.take();
    let mut out = String::new();
    let ids: Vec<SpaceId> = vm.spaces().map(|(id, _)| id).collect();
    for id in ids {
        let s = vm.space(id).unwrap();
        let (regions, brk, asid, tables) = (
            format!("{:?}", s.regions()),
            s.brk(),
            s.asid(),
            s.mmu().table_pages(),
        );
        let mappings = vm.mappings(id).unwrap();
        writeln!(
            out,
            "{id:?} brk {brk:#x} {asid:?} tables {tables}\n  {regions}"
        )
        .unwrap();
        writeln!(out, "  {mappings:?}").unwrap();
    }
    let frames = vm.frames();
    writeln!(out, "free {:?}", frames.free_blocks()).unwrap();
    let first = frames.first_frame();
    for i in 0..frames.total() {
        let f = first.checked_add(i).unwrap();
        let refs = frames.ref_count(f).unwrap_or(0);
        let bytes = match vm.machine().ram.peek_frame(f) {
            Some(Some(b)) => b.to_vec(),
            _ => vec![0; 4096],
        };
        // FNV-1a: a frame's bytes in one number.
        let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        writeln!(out, "frame {i}: refs {refs} bytes {hash:016x}").unwrap();
    }
    writeln!(out, "{:?}", vm.shm()).unwrap();
    vm.machine_mut().lie_after = lie;
    out
}

/// A space with two private anon regions: 1 MiB read-write at 32 MiB, then 8 pages
/// read-write-execute; the first 8 pages of each written (so two L1 entries hold tables).
fn vm_world() -> (Vm<Liar>, SpaceId) {
    let mut vm = Vm::new(Liar::default(), Layout::with_pool_frames(128)).unwrap();
    let id = vm.spawn().unwrap();
    let flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
    vm.mmap(id, 0x0200_0000, 0x0010_0000, 3, flags).unwrap();
    vm.mmap(id, 0x0210_0000, 0x8000, 7, flags).unwrap();
    for base in [0x0200_0000, 0x0210_0000] {
        for page in 0..8 {
            vm.access(
                id,
                VirtAddr::new(base + page * 4096),
                Access::Write,
                Mode::User,
            )
            .unwrap();
        }
    }
    (vm, id)
}

type VmOp = fn(&mut Vm<Liar>, SpaceId) -> Result<(), Errno>;

/// [`inject`] for a syscall: a lie at each read of the L1 entry of the region's second MiB;
/// an `Errno::Internal` must leave the whole `Vm` as it was.
fn inject_vm(name: &str, op: VmOp) {
    let (mut internal, mut rolled_back_writes) = (0, 0);
    for n in 0..1000 {
        let (mut vm, id) = vm_world();
        let before = vm_state(&mut vm);
        let target = vm.space(id).unwrap().mmu().l1_table().as_u32() + (0x0210_0000 >> 20) * 4;
        vm.machine_mut().arm(target, n);
        let result = op(&mut vm, id);
        let m = vm.machine_mut();
        let (lied, by_journal, writes) = (m.lied, m.lie_read_by_journal, m.writes);
        m.lie_after = None;
        if !lied {
            assert!(result.is_ok(), "{name}: {result:?} without a lie");
            break;
        }
        if by_journal || result != Err(Errno::Internal) {
            continue;
        }
        let after = vm_state(&mut vm);
        pretty_assertions::assert_eq!(before, after, "{name}: lie at read {n}");
        vm.check_tables(id).unwrap();
        internal += 1;
        if writes > 0 {
            rolled_back_writes += 1;
        }
    }
    assert!(internal > 0, "{name}: no lie made the syscall fail inside");
    assert!(rolled_back_writes > 0, "{name}: no failure after a write");
}

#[test]
fn mprotect_over_two_tables_changes_nothing_when_it_fails() {
    inject_vm("mprotect", |vm, id| {
        vm.mprotect(id, 0x0200_0000, 0x0010_8000, 1)
    });
}

#[test]
fn fork_leaves_the_parent_writable_when_its_downgrade_fails() {
    inject_vm("fork", |vm, id| vm.fork(id).map(|_| ()));
}

#[test]
fn exit_keeps_the_space_when_its_unmap_fails() {
    inject_vm("exit", |vm, id| vm.exit(id));
}

/// A copy-on-write fault whose remap finds less than its plan read is `FaultError::Internal`
/// (never Segv, which a program could cause), and the copy it made is freed: nothing changed.
#[test]
fn a_fault_reports_an_inconsistency_as_internal() {
    let mut internal = 0;
    for n in 0..1000 {
        let (mut vm, id) = vm_world();
        let _child = vm.fork(id).unwrap();
        let before = vm_state(&mut vm);
        let target = vm.space(id).unwrap().mmu().l1_table().as_u32() + (0x0200_0000 >> 20) * 4;
        vm.machine_mut().arm(target, n);
        let result = vm.access(id, VirtAddr::new(0x0200_0000), Access::Write, Mode::User);
        let m = vm.machine_mut();
        let (lied, by_journal) = (m.lied, m.lie_read_by_journal);
        m.lie_after = None;
        if !lied {
            assert!(result.is_ok(), "{result:?} without a lie");
            break;
        }
        if by_journal || result != Err(vmm::fault::FaultError::Internal) {
            continue;
        }
        pretty_assertions::assert_eq!(before, vm_state(&mut vm), "lie at read {n}");
        internal += 1;
    }
    assert!(internal > 0, "no lie made the fault's remap fail");
}
