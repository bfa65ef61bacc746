//! A LiteOS-A style virtual memory manager for 32-bit ARMv7-A (short-descriptor tables).
//!
//! Layers, bottom up:
//! - [`addr`]: typed virtual and physical addresses, pages, frames and ranges, with checked
//!   arithmetic (nothing wraps at 4 GiB);
//! - [`machine`]: the [`Machine`](machine::Machine) trait for everything the hardware does, and a
//!   recording [`HostMachine`](machine::HostMachine) for tests;
//! - [`phys`]: the buddy frame allocator with per-frame reference counts;
//! - [`arch::armv7`]: descriptors, attribute encoding, ASIDs and the per-space
//!   [`ArchMmu`](arch::armv7::ArchMmu);
//! - [`space`]: regions and user spaces; [`Vm`] owns the machine, the pool, the kernel space
//!   and every user space, and offers the user memory syscalls ([`syscalls`]: mmap, munmap,
//!   mprotect, brk), the fault handler ([`fault`]), fork and exit, SysV shm ([`shm`]), device
//!   mappings, `vmalloc`/`vfree` and physical-address queries.
//!
//! No input makes the crate panic, and an operation that returns an error has changed nothing.
//!
//! # Example
//!
//! ```
//! use vmm::addr::{PageRange, PhysAddr, PhysFrame, VirtAddr, VirtPage};
//! use vmm::arch::armv7::{ArchMmu, AsidAllocator, MappingAttrs, MappingFlags};
//! use vmm::machine::HostMachine;
//! use vmm::phys::FrameAllocator;
//!
//! let mut machine = HostMachine::default();
//! let pool_start = PhysFrame::from_start(PhysAddr::new(0x4000_0000)).unwrap();
//! let mut frames = FrameAllocator::new(pool_start, 1024);
//! let mut asids = AsidAllocator::new();
//! let mut space = ArchMmu::new_user(&mut machine, &mut frames, &mut asids)?;
//!
//! let data = frames.alloc_zeroed(&mut machine)?;
//! let va = VirtPage::from_start(VirtAddr::new(0x1F80_0000)).unwrap();
//! let rw = MappingAttrs::new(MappingFlags::USER | MappingFlags::READ | MappingFlags::WRITE);
//! space.map(&mut machine, &mut frames, PageRange::new(va, 1).unwrap(), data, rw)?;
//!
//! let t = space.query(&mut machine, VirtAddr::new(0x1F80_0123))?.unwrap();
//! assert_eq!(t.frame, data);
//! assert_eq!(space.table_pages(), 2); // the L1 table and one L2 page
//!
//! assert_eq!(space.unmap(&mut machine, &mut frames, PageRange::new(va, 1).unwrap())?, 1);
//! assert_eq!(space.table_pages(), 1); // the empty L2 page went back at once
//! frames.free(&mut machine, data)?;
//! space.destroy(&mut machine, &mut frames, &mut asids);
//! assert_eq!(frames.free_count(), 1024);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

extern crate alloc;

pub mod addr;
pub mod arch;
pub mod cpu;
pub mod errno;
pub mod fault;
mod fork;
mod kernel_api;
pub mod layout;
pub mod machine;
pub mod phys;
pub mod shm;
pub mod space;
pub mod syscalls;
mod vm;

pub use cpu::Cpu;
pub use errno::Errno;
pub use layout::Layout;
pub use vm::Vm;

impl core::error::Error for phys::FrameError {}
impl core::error::Error for arch::armv7::MapError {}
