//! Concrete ops: the checker's op language with every address resolved against the live state
//! (by the reference model, the primary oracle) and every space named by its index in the list
//! of live spaces. This crate is `no_std`: the host checker and the QEMU guest apply ops to the
//! vmm with the same [`apply`], so both run exactly the same calls.
//!
//! ```
//! use op_driver::{ConcreteOp, Step, decode_steps, encode_steps};
//! let steps = [Step { op: ConcreteOp::Spawn, refuse: None },
//!              Step { op: ConcreteOp::Munmap { s: 0, addr: 0x1f80_0000, len: 4096 }, refuse: Some(1) }];
//! let bytes = encode_steps(&steps);
//! assert_eq!(decode_steps(&bytes).unwrap(), steps);
//! ```

#![no_std]

extern crate alloc;

mod apply;
pub mod guest;
mod wire;

pub use apply::{Accessor, Miss, apply};
pub use wire::{DecodeError, decode_step_words, decode_steps, encode_step_words, encode_steps};

/// An access kind, with the value written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessOp {
    /// A word read.
    Read,
    /// A word write of the value.
    Write(u32),
    /// An instruction fetch.
    Exec,
}

/// One operation with concrete arguments. `s` is an index into the live spaces (creation
/// order) and is always in range when the op is built by the checker; [`apply`] treats an
/// out-of-range index as [`Outcome::Skipped`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConcreteOp {
    /// Nothing to do (the op named no live space, or an address the checker does not model).
    Skip,
    /// A new empty space.
    Spawn,
    /// `fork`.
    Fork { s: u32 },
    /// `exit`.
    Exit { s: u32 },
    /// `mmap`.
    Mmap {
        s: u32,
        addr: u32,
        len: u32,
        prot: u32,
        flags: u32,
    },
    /// `munmap`.
    Munmap { s: u32, addr: u32, len: u32 },
    /// `mprotect`.
    Mprotect {
        s: u32,
        addr: u32,
        len: u32,
        prot: u32,
    },
    /// `brk`.
    Brk { s: u32, addr: u32 },
    /// `mremap`.
    Mremap {
        s: u32,
        addr: u32,
        old_len: u32,
        new_len: u32,
        flags: u32,
        new_addr: u32,
    },
    /// `shmget`.
    ShmGet { key: i32, size: u32, flags: u32 },
    /// `shmat` (`addr` 0 = first fit).
    ShmAt {
        s: u32,
        id: u32,
        addr: u32,
        flags: u32,
    },
    /// `shmdt`.
    ShmDt { s: u32, addr: u32 },
    /// `shmctl`.
    ShmCtl { id: u32, cmd: u32 },
    /// A device mapping of physical `pa` onwards.
    MapDevice {
        s: u32,
        addr: u32,
        pa: u32,
        len: u32,
        prot: u32,
    },
    /// `vmalloc`.
    Vmalloc { len: u32 },
    /// `vfree`.
    Vfree { addr: u32 },
    /// A word access at `addr` (word-aligned by the checker) in user or kernel mode, on CPU
    /// `cpu` (which makes the space current there first).
    Access {
        s: u32,
        addr: u32,
        access: AccessOp,
        kernel: bool,
        cpu: u8,
    },
}

impl ConcreteOp {
    /// The index of the space the op acts on, if any.
    #[must_use]
    pub const fn space(&self) -> Option<u32> {
        match *self {
            Self::Fork { s }
            | Self::Exit { s }
            | Self::Mmap { s, .. }
            | Self::Munmap { s, .. }
            | Self::Mprotect { s, .. }
            | Self::Brk { s, .. }
            | Self::Mremap { s, .. }
            | Self::ShmAt { s, .. }
            | Self::ShmDt { s, .. }
            | Self::MapDevice { s, .. }
            | Self::Access { s, .. } => Some(s),
            Self::Skip
            | Self::Spawn
            | Self::ShmGet { .. }
            | Self::ShmCtl { .. }
            | Self::Vmalloc { .. }
            | Self::Vfree { .. } => None,
        }
    }
}

/// A concrete op and, optionally, the index of its frame allocation that the machine refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// The op.
    pub op: ConcreteOp,
    /// Refuse this allocation (0-based) of the op.
    pub refuse: Option<u16>,
}

/// What an op returned: a value, or an error number (errno, or [`SEGV`] / [`EFAULT`] for
/// accesses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Success with a value (an address, a word read, an id, a break; 0 when there is none).
    Ok(u32),
    /// Failure with an error number.
    Err(i32),
    /// Nothing was done ([`ConcreteOp::Skip`], or no such space).
    Skipped,
}

/// Frames in the pool of every checked world (host and guest): small, so exhaustion is reached.
pub const POOL_FRAMES: u32 = 160;

/// The error number of an unresolved user-mode access.
pub const SEGV: i32 = 1;
/// The error number of an unresolved kernel-mode access (`copy_from_user`).
pub const EFAULT: i32 = 2;
