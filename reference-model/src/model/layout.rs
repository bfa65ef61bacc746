//! The layout values the model needs (semantics.md section 1).

/// Window boundaries, byte addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// First byte of the user window.
    pub user_base: u32,
    /// One past the last byte of the user window.
    pub user_top: u32,
    /// Where the break starts.
    pub heap_base: u32,
    /// Start of the mmap area.
    pub mmap_base: u32,
    /// End of the mmap area.
    pub mmap_end: u32,
    /// First byte of the frame pool (device mappings may not touch it).
    pub pool_base: u32,
    /// Size of the frame pool in bytes.
    pub pool_size: u32,
    /// The highest user ASID handed out (semantics.md section 2: 255; tests may lower it).
    pub asids: u8,
    /// CPUs (semantics.md section 14): an access names one of them.
    pub cpus: u8,
}

impl Default for Layout {
    /// The qemu `arm_virt` values of semantics.md.
    fn default() -> Self {
        Self {
            user_base: 0x0100_0000,
            user_top: 0x3F00_0000,
            heap_base: 0x0FC0_0000,
            mmap_base: 0x1F80_0000,
            mmap_end: 0x2740_0000,
            pool_base: 0x4100_0000,
            pool_size: 0x0400_0000,
            asids: 255,
            cpus: 1,
        }
    }
}
