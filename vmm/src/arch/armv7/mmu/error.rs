//! What an [`ArchMmu`](super::ArchMmu) operation can refuse, and the errno a syscall reports
//! for it.

use core::fmt;

use super::super::MappingFlags;
use crate::addr::{PhysAddr, VirtAddr};
use crate::errno::Errno;

/// Why an [`ArchMmu`] operation was refused. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// The virtual range is not inside this space's half of the address space.
    OutOfWindow {
        /// First page of the request.
        start: VirtAddr,
        /// Pages requested.
        pages: u32,
    },
    /// The physical range passes 4 GiB.
    PhysOutOfRange {
        /// First frame of the request.
        start: PhysAddr,
        /// Pages requested.
        pages: u32,
    },
    /// User spaces take only `USER` mappings and the kernel only non-`USER` ones.
    InvalidFlags(MappingFlags),
    /// A page of the target range is already mapped (mapping never replaces silently).
    AlreadyMapped(VirtAddr),
    /// The source and target of a move overlap.
    Overlap,
    /// The pages given one by one are not strictly ascending (this page repeats or goes back).
    NotAscending(VirtAddr),
    /// A replacement names another number of frames than the range has pages.
    LengthMismatch {
        /// Pages in the range.
        pages: u32,
        /// Frames given.
        frames: usize,
    },
    /// The page to remap is not mapped.
    NotMapped(VirtAddr),
    /// A page-table page (or the ASID for a new space) could not be allocated.
    NoMemory,
    /// All user ASIDs are in use.
    NoAsid,
    /// The tables hold a descriptor this crate never writes (supersection, large page or an
    /// attribute combination it does not produce).
    UnsupportedDescriptor {
        /// Address translated by it.
        va: VirtAddr,
        /// The raw descriptor.
        raw: u32,
    },
    /// The space's own state contradicts itself (a bug of this crate): a commit found less
    /// than its plan promised. Never a condition a caller can cause or recover from.
    Internal {
        /// What was found wrong.
        what: &'static str,
        /// The first address of the L1 entry concerned.
        va: VirtAddr,
    },
}

impl MapError {
    /// The errno a user-visible operation reports for this error: `ENOMEM` for a missing frame
    /// or ASID, [`Errno::Internal`] for anything else, which at that point is an
    /// inconsistency of the vmm's own (the operation checked its arguments before).
    #[must_use]
    pub const fn errno(self) -> Errno {
        match self {
            Self::NoMemory | Self::NoAsid => Errno::ENOMEM,
            _ => Errno::Internal,
        }
    }
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfWindow { start, pages } => {
                write!(
                    f,
                    "{pages} pages at {start} are outside this space's window"
                )
            }
            Self::PhysOutOfRange { start, pages } => {
                write!(
                    f,
                    "{pages} frames at {start} pass the end of the physical space"
                )
            }
            Self::InvalidFlags(flags) => write!(f, "flags {flags:?} do not fit this space"),
            Self::AlreadyMapped(va) => write!(f, "{va} is already mapped"),
            Self::Overlap => write!(f, "move source and target overlap"),
            Self::NotAscending(va) => write!(f, "page {va} does not ascend from the one before"),
            Self::LengthMismatch { pages, frames } => {
                write!(f, "{frames} frames given for {pages} pages")
            }
            Self::NotMapped(va) => write!(f, "{va} is not mapped"),
            Self::NoMemory => write!(f, "no frame for a page table"),
            Self::NoAsid => write!(f, "no free ASID"),
            Self::UnsupportedDescriptor { va, raw } => {
                write!(f, "unsupported descriptor {raw:#010x} translating {va}")
            }
            Self::Internal { what, va } => write!(f, "internal inconsistency at {va}: {what}"),
        }
    }
}
