//! The fuzz targets' entry points into the checker: the op language's byte encoding (from
//! `op-lang`, re-exported so targets and tools name one place) and the defect a proof run
//! injects.

pub use op_lang::bytes::{
    CONFIG_TAG, MAX_STEPS, decode, encode, round_trips, speed_inputs, text_round_trip,
};

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
