#!/bin/sh
# rustc wrapper of the fuzz crate (fuzz/.cargo/config.toml): no coverage counters in the
# oracles. cargo-fuzz instruments every crate with SanitizerCoverage (`-Cpasses=sancov-module`
# in RUSTFLAGS); for `reference_model` and `checker` this appends `-sanitizer-coverage-level=0`,
# which turns it off again (the last value of an LLVM option wins).
#
# Why: libFuzzer collects every counter an execution touched, and the oracles' counters told
# it nothing the vmm's did not (the model's branches follow the same semantics; the checker's
# comparisons only say that the state was compared), while collecting them cost a large
# share of each execution (docs/fuzzing.md).
#
# The vmm keeps its counters: its code is generic over the `Machine` and compiled where it is
# instantiated. The `ops` target passes the checker step hooks of its own that call the
# `#[inline]` `concrete::resolve` and `run::apply_vmm` (checker/src/run.rs, `StepHooks`); the
# `mmu` and `frames` targets reach the vmm through `#[inline]` paths (mmu_model.rs,
# `run_sequence`; frames_model.rs, `run_frames`). Either way the fuzz crate compiles, and
# instruments, those functions and the vmm code under them. The op language
# (`op_lang`: decoding, the `.ops` text the `text` target tests) is a crate of its own and
# keeps its counters too. Every other crate, and every build without sancov (`cargo fuzz
# coverage`), is compiled as cargo-fuzz asks.
#
# Cargo calls it as: sancov-scope.sh <rustc> <rustc arguments...>
# Cargo does not track this script's contents: after changing which crates it exempts, clean
# those crates (`cargo clean -p NAME --release --target <host>` in fuzz/) or their old
# artifacts are reused.
rustc="$1"
shift
sancov=no
crate=
prev=
for arg in "$@"; do
    case "$arg" in
        *sancov-module*) sancov=yes ;;
    esac
    if [ "$prev" = "--crate-name" ]; then
        crate="$arg"
    fi
    prev="$arg"
done
if [ "$sancov" = yes ] && { [ "$crate" = reference_model ] || [ "$crate" = checker ]; }; then
    exec "$rustc" "$@" -Cllvm-args=-sanitizer-coverage-level=0
fi
exec "$rustc" "$@"
