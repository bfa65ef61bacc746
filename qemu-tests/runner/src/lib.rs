//! The host side of the QEMU differential suite: [`plan`] runs op sequences through the
//! reference model and decides what to probe, [`qemu`] boots the bare-metal guest (the real
//! `vmm` on a real ARMv7 MMU) on them and checks every record's place, [`compare`] reads the
//! guest's report against the model, printing the host checker's divergence report, and
//! [`verdict`] decides what a boot says about each sequence, dropping nothing the guest wrote.
//! [`defects`] shows the suite catches injected machine defects, as the host checker does.

pub mod compare;
pub mod defects;
pub mod matrix;
pub mod plan;
pub mod qemu;
pub mod verdict;
