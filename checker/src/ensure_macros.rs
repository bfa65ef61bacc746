// `assert!`/`assert_eq!` that return the message as an error instead of panicking: the model
// checks report divergences as values. Included by `mmu_model.rs` and `frames_model.rs` with
// `include!` (vmm's tests include those files by path, so this cannot be a module).

/// `assert!` that returns the message as an error.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// `assert_eq!` that returns both sides as an error.
macro_rules! ensure_eq {
    ($a:expr, $b:expr) => {
        ensure_eq!($a, $b, "values differ")
    };
    ($a:expr, $b:expr, $($fmt:tt)+) => {{
        let (a, b) = (&$a, &$b);
        if a != b {
            return Err(format!("{}\n  vmm:   {:?}\n  model: {:?}", format!($($fmt)+), a, b));
        }
    }};
}
