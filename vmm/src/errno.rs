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
    /// Not a Linux errno: the vmm found its own state inconsistent (a bug of this crate, never
    /// a condition a caller caused, and never to be mistaken for exhaustion). 4095 is the
    /// largest value Linux reserves for errnos and names none.
    Internal = 4095,
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

#[cfg(test)]
mod tests {
    use super::Errno;

    /// The numbers are Linux's (user space sees them), and the message names both.
    #[test]
    fn numbers_are_linux_errnos() {
        let linux = [
            (Errno::EPERM, 1),
            (Errno::ENOENT, 2),
            (Errno::ENOMEM, 12),
            (Errno::EACCES, 13),
            (Errno::EFAULT, 14),
            (Errno::EBUSY, 16),
            (Errno::EEXIST, 17),
            (Errno::EINVAL, 22),
            (Errno::ENOSPC, 28),
            (Errno::EIDRM, 43),
        ];
        for (e, n) in linux {
            assert_eq!(e.number(), n, "{e:?}");
        }
        assert_eq!(alloc::format!("{}", Errno::EINVAL), "EINVAL (22)");
        assert!(
            linux.iter().all(|&(_, n)| n != Errno::Internal.number()),
            "the internal error is none of them"
        );
    }
}
