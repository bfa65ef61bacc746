//! Linux errno values (semantics.md section 0).

/// A Linux errno value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Errno {
    /// 1.
    EPERM = 1,
    /// 2.
    ENOENT = 2,
    /// 12.
    ENOMEM = 12,
    /// 13.
    EACCES = 13,
    /// 14.
    EFAULT = 14,
    /// 16.
    EBUSY = 16,
    /// 17.
    EEXIST = 17,
    /// 22.
    EINVAL = 22,
    /// 28.
    ENOSPC = 28,
    /// 43.
    EIDRM = 43,
}
