//! Linux errno values, the error type of every user-visible operation (semantics.md section 0).

use core::fmt;

/// A Linux errno value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(i32)]
pub enum Errno {
    /// Operation not permitted.
    EPERM = 1,
    /// No such entry (shm key).
    ENOENT = 2,
    /// Out of memory, or no room in the address window.
    ENOMEM = 12,
    /// Permission denied.
    EACCES = 13,
    /// Bad address.
    EFAULT = 14,
    /// Busy.
    EBUSY = 16,
    /// Exists.
    EEXIST = 17,
    /// Invalid argument.
    EINVAL = 22,
    /// No space (shm slots or pages).
    ENOSPC = 28,
    /// Identifier removed (shm).
    EIDRM = 43,
}

impl Errno {
    /// The positive errno number.
    #[must_use]
    pub const fn number(self) -> i32 {
        self as i32
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?} ({})", self.number())
    }
}

impl core::error::Error for Errno {}
