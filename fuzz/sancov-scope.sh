#!/bin/sh
# rustc wrapper of the fuzz crate (fuzz/.cargo/config.toml): no coverage counters in the
# reference model. cargo-fuzz instruments every crate with SanitizerCoverage
# (`-Cpasses=sancov-module` in RUSTFLAGS); for `reference_model` this appends
# `-sanitizer-coverage-level=0`, which turns it off again (the last value of an LLVM option
# wins). The model is the oracle: its branches follow the same semantics as vmm's, so its edges
# told libFuzzer almost nothing new (on 200 inputs it kept 123 instead of 124), while collecting
# them cost about a tenth of each `ops` execution.
#
# The checker stays instrumented although it is an oracle too: vmm's code is generic over the
# `Machine`, so it is compiled (and instrumented, or not) where the checker instantiates it.
# Every other crate, and every build without sancov (`cargo fuzz coverage`), is compiled as
# cargo-fuzz asks.
#
# Cargo calls it as: sancov-scope.sh <rustc> <rustc arguments...>
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
if [ "$sancov" = yes ] && [ "$crate" = reference_model ]; then
    exec "$rustc" "$@" -Cllvm-args=-sanitizer-coverage-level=0
fi
exec "$rustc" "$@"
