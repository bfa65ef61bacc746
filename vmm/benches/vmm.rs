//! Host benchmarks of the vmm's hot paths, on a [`HostMachine`] with recording off.
//!
//! `cargo xtask bench` (or `cargo bench -p vmm --bench vmm`). The figures measure the algorithms
//! plus the simulated machine (every descriptor access is a sparse-RAM lookup), not real hardware.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use vmm::addr::{PageRange, PhysAddr, PhysFrame, VirtAddr, VirtPage};
use vmm::arch::armv7::{ArchMmu, AsidAllocator, BlockSize, MappingAttrs, MappingFlags};
use vmm::machine::HostMachine;
use vmm::phys::FrameAllocator;

/// 64 MiB of frames at the start of the host machine's RAM.
const POOL_FRAMES: u32 = (64 << 20) / 4096;
/// Pages in a 1 MiB section.
const SECTION_PAGES: u32 = 256;
/// User VA of the small-page benchmarks. It is 1 MiB aligned, but its pages are mapped one per
/// call, so they are always small pages (all 256 in one L2 table).
const SMALL_VA: u32 = 0x1000_0000;
/// User VA of the section benchmarks (1 MiB aligned).
const SECTION_VA: u32 = 0x2000_0000;

fn rw() -> MappingAttrs {
    MappingAttrs::new(MappingFlags::USER | MappingFlags::READ | MappingFlags::WRITE)
}

fn ro() -> MappingAttrs {
    MappingAttrs::new(MappingFlags::USER | MappingFlags::READ)
}

fn page(va: u32) -> VirtPage {
    VirtPage::from_start(VirtAddr::new(va)).expect("page aligned")
}

fn range(va: u32, pages: u32) -> PageRange {
    PageRange::new(page(va), pages).expect("range below 4 GiB")
}

/// A machine, a frame pool, and one user space holding nothing yet.
struct Env {
    m: HostMachine,
    frames: FrameAllocator,
    space: ArchMmu,
    /// 256 contiguous, 1 MiB aligned data frames (allocated from the pool, never mapped twice).
    data: PhysFrame,
}

impl Env {
    fn new() -> Self {
        let mut m = HostMachine::default();
        let first = PhysFrame::from_start(PhysAddr::new(0x4000_0000)).expect("frame aligned");
        let mut frames = FrameAllocator::new(first, POOL_FRAMES);
        let mut asids = AsidAllocator::new();
        let space = ArchMmu::new_user(&mut m, &mut frames, &mut asids).expect("user space");
        let data = frames
            .alloc_contiguous(&mut m, SECTION_PAGES)
            .expect("1 MiB of data frames");
        assert!(data.is_section_aligned());
        Self {
            m,
            frames,
            space,
            data,
        }
    }

    fn map(&mut self, r: PageRange, frame: PhysFrame, attrs: MappingAttrs) {
        self.space
            .map(&mut self.m, &mut self.frames, r, frame, attrs)
            .expect("map");
    }

    fn unmap(&mut self, r: PageRange) -> u32 {
        self.space
            .unmap(&mut self.m, &mut self.frames, r)
            .expect("unmap")
    }

    fn frame(&self, i: u32) -> PhysFrame {
        self.data.checked_add(i).expect("inside the data block")
    }

    /// The space and the pool are back where they started.
    fn assert_empty(&mut self, free_before: u32) {
        assert_eq!(self.space.table_pages(), 1, "only the L1 table is left");
        assert_eq!(self.frames.free_count(), free_before, "no frame leaked");
        self.space.check(&mut self.m).expect("tables consistent");
    }
}

fn arch_mmu(c: &mut Criterion) {
    let mut g = c.benchmark_group("arch_mmu");

    g.throughput(Throughput::Elements(SECTION_PAGES.into()));
    g.bench_function("map_unmap_256_small_pages_one_per_call", |b| {
        let mut env = Env::new();
        let free = env.frames.free_count();
        b.iter(|| {
            for i in 0..SECTION_PAGES {
                let f = env.frame(i);
                env.map(range(SMALL_VA + i * 4096, 1), f, rw());
            }
            for i in 0..SECTION_PAGES {
                black_box(env.unmap(range(SMALL_VA + i * 4096, 1)));
            }
        });
        env.assert_empty(free);
    });

    g.bench_function("map_unmap_1mib_section", |b| {
        let mut env = Env::new();
        let free = env.frames.free_count();
        let r = range(SECTION_VA, SECTION_PAGES);
        b.iter(|| {
            let data = env.data;
            env.map(r, data, rw());
            black_box(env.unmap(r));
        });
        env.assert_empty(free);
    });

    g.bench_function("protect_256_small_pages_rw_ro", |b| {
        let mut env = Env::new();
        for i in 0..SECTION_PAGES {
            let f = env.frame(i);
            env.map(range(SMALL_VA + i * 4096, 1), f, rw());
        }
        let r = range(SMALL_VA, SECTION_PAGES);
        let t = env.space.query(&mut env.m, VirtAddr::new(SMALL_VA));
        assert_eq!(
            t.expect("query").expect("mapped").block,
            BlockSize::SmallPage
        );
        let mut read_only = false;
        b.iter(|| {
            read_only = !read_only;
            let attrs = if read_only { ro() } else { rw() };
            env.space
                .protect(&mut env.m, &mut env.frames, r, attrs)
                .expect("protect");
        });
    });

    g.throughput(Throughput::Elements(1));
    let mut env = Env::new();
    let data = env.data;
    env.map(range(SMALL_VA, 1), data, rw());
    env.map(range(SECTION_VA, SECTION_PAGES), data, rw());
    for (name, va, block) in [
        ("small_page", SMALL_VA + 0x123, BlockSize::SmallPage),
        ("section", SECTION_VA + 0x4_5678, BlockSize::Section),
    ] {
        let t = env.space.query(&mut env.m, VirtAddr::new(va));
        assert_eq!(t.expect("query").expect("mapped").block, block);
        g.bench_with_input(BenchmarkId::new("query", name), &va, |b, &va| {
            b.iter(|| {
                env.space
                    .query(&mut env.m, black_box(VirtAddr::new(va)))
                    .expect("query")
            });
        });
    }

    g.finish();
}

/// A fixed xorshift32: reproducible shuffles without the `rand` crate.
struct XorShift(u32);

impl XorShift {
    fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }

    /// Fisher-Yates.
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() as usize) % (i + 1);
            items.swap(i, j);
        }
    }
}

fn frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("frames");
    let mut m = HostMachine::default();
    let first = PhysFrame::from_start(PhysAddr::new(0x4000_0000)).expect("frame aligned");
    let mut pool = FrameAllocator::new(first, POOL_FRAMES);

    g.throughput(Throughput::Elements(1));
    g.bench_function("alloc_free_1_frame", |b| {
        b.iter(|| {
            let f = pool.alloc(&mut m).expect("alloc");
            pool.free(&mut m, black_box(f)).expect("free")
        });
    });

    g.bench_function("alloc_free_order4_16_frames", |b| {
        b.iter(|| {
            let f = pool.alloc_contiguous(&mut m, 16).expect("alloc");
            pool.free(&mut m, black_box(f)).expect("free")
        });
    });

    const N: usize = 1000;
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("alloc_1000_free_shuffled", |b| {
        // The free order: a fixed permutation, computed outside the measurement.
        let mut order: Vec<usize> = (0..N).collect();
        XorShift(0x9E37_79B9).shuffle(&mut order);
        let mut got = Vec::with_capacity(N);
        b.iter(|| {
            got.clear();
            for _ in 0..N {
                got.push(pool.alloc(&mut m).expect("alloc"));
            }
            for &i in &order {
                pool.free(&mut m, got[i]).expect("free");
            }
        });
    });

    g.finish();
    assert_eq!(pool.free_count(), POOL_FRAMES, "every frame came back");
    pool.check().expect("buddy invariants");
}

/// The space layer: mmap + touch + munmap, the fault paths, fork of a populated space, exit.
fn spaces(c: &mut Criterion) {
    use vmm::fault::{Access, Mode};
    use vmm::syscalls::{MAP_ANONYMOUS, MAP_PRIVATE};
    use vmm::{Layout, Vm};

    const PAGES: u32 = 64;
    let anon = MAP_ANONYMOUS | MAP_PRIVATE;
    let mut vm = Vm::new(HostMachine::default(), Layout::ARM_VIRT).expect("boot");
    let start = vm.frames().free_count();
    let mut g = c.benchmark_group("spaces");

    g.throughput(Throughput::Elements(u64::from(PAGES)));
    g.bench_function("mmap_touch_munmap_64_pages", |b| {
        let s = vm.spawn().expect("space");
        b.iter(|| {
            let a = vm.mmap(s, 0, PAGES * 4096, 3, anon).expect("mmap").as_u32();
            for i in 0..PAGES {
                vm.write_word(s, VirtAddr::new(a + i * 4096), i, Mode::User)
                    .expect("touch");
            }
            vm.munmap(s, a, PAGES * 4096).expect("munmap");
        });
        vm.exit(s).expect("exit");
    });

    g.throughput(Throughput::Elements(1));
    g.bench_function("fault_demand_zero", |b| {
        let s = vm.spawn().expect("space");
        let a = vm.mmap(s, 0, 4096, 3, anon).expect("mmap").as_u32();
        b.iter(|| {
            vm.handle_fault(s, VirtAddr::new(a), Access::Write, Mode::User)
                .expect("fault");
            vm.munmap(s, a, 4096).expect("munmap");
            vm.mmap(s, a, 4096, 3, anon | vmm::syscalls::MAP_FIXED)
                .expect("mmap");
        });
        vm.exit(s).expect("exit");
    });
    g.bench_function("fault_copy_on_write", |b| {
        let s = vm.spawn().expect("space");
        let a = vm.mmap(s, 0, 4096, 3, anon).expect("mmap").as_u32();
        vm.write_word(s, VirtAddr::new(a), 1, Mode::User)
            .expect("touch");
        b.iter(|| {
            let c = vm.fork(s).expect("fork");
            vm.handle_fault(c, VirtAddr::new(a), Access::Write, Mode::User)
                .expect("copy");
            vm.exit(c).expect("exit");
        });
        vm.exit(s).expect("exit");
    });

    g.throughput(Throughput::Elements(u64::from(PAGES)));
    g.bench_function("fork_and_exit_64_present_pages", |b| {
        let s = vm.spawn().expect("space");
        let a = vm.mmap(s, 0, PAGES * 4096, 3, anon).expect("mmap").as_u32();
        for i in 0..PAGES {
            vm.write_word(s, VirtAddr::new(a + i * 4096), i, Mode::User)
                .expect("touch");
        }
        b.iter(|| {
            let c = vm.fork(s).expect("fork");
            vm.exit(c).expect("exit");
        });
        vm.exit(s).expect("exit");
    });
    g.finish();
    assert_eq!(vm.frames().free_count(), start, "every frame came back");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    targets = arch_mmu, frames, spaces
}
criterion_main!(benches);
