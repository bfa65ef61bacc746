//! The fuzz targets' entry points into the checker: the op language's byte encoding (from
//! `op-lang`, re-exported so targets and tools name one place) and the defect a proof run
//! injects.

pub use op_lang::bytes::{
    CONFIG_TAG, MAX_STEPS, SMP_CONFIG_TAG, decode, encode, round_trips, speed_inputs,
    text_round_trip,
};

use op_lang::Config;

/// The CPU count `VMM_FUZZ_SMP` asks generated sequences to have (`cargo xtask fuzz --smp N`;
/// read once; unset means the inputs' own). A value outside 1..=4 panics at the first input,
/// so a typo cannot pass as a run of the wrong world.
pub fn smp_from_env() -> Option<u8> {
    static SMP: std::sync::OnceLock<Option<u8>> = std::sync::OnceLock::new();
    *SMP.get_or_init(|| {
        let value = std::env::var("VMM_FUZZ_SMP").ok()?;
        match value.parse::<u8>() {
            Ok(n) if (1..=Config::MAX_CPUS).contains(&n) => Some(n),
            _ => panic!(
                "VMM_FUZZ_SMP={value}: a CPU count from 1 to {}",
                Config::MAX_CPUS
            ),
        }
    })
}

/// The defect the `ops` fuzz target injects, named by the `VMM_FUZZ_DEFECT` environment
/// variable (read once; unset means a sound machine). Only the end-to-end proof that fuzzing
/// finds bugs sets it. An unknown name panics at the first input, so a typo cannot pass as a
/// clean run.
pub fn defect_from_env() -> Option<crate::Defect> {
    static DEFECT: std::sync::OnceLock<Option<crate::Defect>> = std::sync::OnceLock::new();
    *DEFECT.get_or_init(|| {
        let name = std::env::var("VMM_FUZZ_DEFECT").ok()?;
        Some(crate::Defect::from_name(&name).unwrap_or_else(|e| panic!("VMM_FUZZ_DEFECT: {e}")))
    })
}
