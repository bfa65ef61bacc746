//! CPUs (semantics.md section 14): each has its own TLB and its own current space; the vmm's
//! bookkeeping stays single-threaded, one operation at a time.

/// The most CPUs a [`Layout`](crate::Layout) may name.
pub const MAX_CPUS: u8 = 4;

/// A CPU by index: 0 is the boot CPU. Whether it exists is the [`Vm`](crate::Vm)'s to say
/// (its layout's CPU count); an index out of range is an error there, never a panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cpu(u8);

impl Cpu {
    /// The boot CPU, where every operation not run by an access on another CPU runs.
    pub const BOOT: Self = Self(0);

    /// CPU number `index`.
    #[must_use]
    pub const fn new(index: u8) -> Self {
        Self(index)
    }

    /// Its index.
    #[must_use]
    pub const fn index(self) -> u8 {
        self.0
    }
}
