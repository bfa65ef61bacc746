#!/bin/bash
# ClusterFuzzLite build script: builds the four cargo-fuzz targets of fuzz/ (ops, mmu, frames,
# text), copies each binary to $OUT/<target> and zips the committed seeds corpus/<target>/* into
# $OUT/<target>_seed_corpus.zip.
#
# In ClusterFuzzLite the Dockerfile copies the repository to $SRC/vmm and this script to
# $SRC/build.sh, and the image's `compile` runs it with SANITIZER, RUSTFLAGS, OUT etc. set.
# Locally (no Docker needed; see ci/README.md), from a copy of the repository at $SRC/vmm:
#
#   SRC=/tmp/cfl-src OUT=/tmp/cfl-out bash /tmp/cfl-src/vmm/.clusterfuzzlite/build.sh
#
# VMM_DIR overrides where the repository is (default: $SRC/vmm).
set -euo pipefail

: "${SRC:?SRC must be set (the directory holding the repository copy vmm/)}"
: "${OUT:?OUT must be set (where the fuzzer binaries and seed zips go)}"
repo="${VMM_DIR:-$SRC/vmm}"
if [ ! -f "$repo/fuzz/Cargo.toml" ]; then
    echo "build.sh: no fuzz/Cargo.toml under $repo (set VMM_DIR or SRC)" >&2
    exit 1
fi

# The project builds the fuzz crate on stable with RUSTC_BOOTSTRAP=1 (cargo-fuzz needs -Z
# flags); CARGO_CACHE_RUSTC_INFO=0 keeps cargo from reusing a cached failed probe of a stable
# rustc that once ran without it (shared/docs/platform-notes.md). In the ClusterFuzzLite image
# the toolchain is a pinned nightly (RUSTUP_TOOLCHAIN overrides rust-toolchain.toml), where
# both are harmless.
export RUSTC_BOOTSTRAP=1
export CARGO_CACHE_RUSTC_INFO=0

# The project's flags (xtask/src/fuzzing.rs, BUILD_FLAGS): -O (release), no comparison tracing
# (the -sanitizer-coverage-trace-compares hooks sat in the checker's per-step sweeps and cost the
# `ops` target 4.7x), and `--sanitizer none` (the targets are safe Rust; the checks are the
# model comparisons, which panic).
#
# The sanitizer is the exception. Under ClusterFuzzLite it comes from $SANITIZER, and the
# image's `compile` already puts `-Zsanitizer=$SANITIZER` into RUSTFLAGS (except for
# `undefined` and `coverage`), which cargo-fuzz appends its own flags to. `--sanitizer none`
# would therefore not remove ASan there, only make cargo-fuzz's flags disagree with the build
# ClusterFuzzLite asked for (and whose runtime its bad-build check expects), so cargo-fuzz is
# given the same sanitizer. `--sanitizer none` is used only when SANITIZER is unset or `none`
# (a local run, the project's normal build), and for `undefined` (Rust has no UBSan: `compile`
# adds no -Zsanitizer flag for it) and `coverage` (the image's cargo wrapper turns
# `cargo fuzz build` into a plain instrumented `cargo build --bins` and ignores these flags).
# ClusterFuzzLite supports only `address` for Rust, which is what the workflows use.
case "${SANITIZER:-none}" in
    none | undefined | coverage) cargo_sanitizer=none ;;
    address | memory | thread | leak) cargo_sanitizer="$SANITIZER" ;;
    *)
        echo "build.sh: unknown SANITIZER '${SANITIZER}'" >&2
        exit 1
        ;;
esac
flags=(-O --sanitizer "$cargo_sanitizer" --no-trace-compares)
mkdir -p "$OUT"

# The targets are the files of fuzz/fuzz_targets/ (each [[bin]] of fuzz/Cargo.toml is named
# after its file). Not `cargo fuzz list`: under SANITIZER=coverage the image's cargo wrapper
# turns every `cargo fuzz` command into a build.
targets=()
for f in "$repo"/fuzz/fuzz_targets/*.rs; do
    targets+=("$(basename "$f" .rs)")
done
if [ "${#targets[@]}" -eq 0 ]; then
    echo "build.sh: no fuzz targets in $repo/fuzz/fuzz_targets" >&2
    exit 1
fi

# Without a sanitizer (a local run) the targets link with fat LTO as `cargo xtask` builds them;
# with ASan that does not link (fuzz/Cargo.toml says why), so ClusterFuzzLite builds go without.
if [ "${SANITIZER:-none}" = none ]; then
    export CARGO_PROFILE_RELEASE_LTO=fat
fi

cd "$repo/fuzz"
echo "==> SANITIZER=${SANITIZER:-<unset>}: cargo fuzz build ${flags[*]} (${targets[*]})"
cargo fuzz build "${flags[@]}"

# cargo-fuzz puts the binaries in <target dir>/<host triple>/release/ (the image's coverage
# wrapper copies its debug build there too). The target directory is asked from cargo, so
# CARGO_TARGET_DIR or a cargo config is honoured; default fuzz/target.
target_dir=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
target_dir="${target_dir:-$repo/fuzz/target}"
triple=$(rustc -vV | sed -n 's/^host: //p')
bin_dir="$target_dir/$triple/release"

shopt -s nullglob
for t in "${targets[@]}"; do
    if [ ! -x "$bin_dir/$t" ]; then
        echo "build.sh: $bin_dir/$t was not built" >&2
        exit 1
    fi
    cp "$bin_dir/$t" "$OUT/$t"

    seeds=("$repo/corpus/$t"/*)
    zipfile="$OUT/${t}_seed_corpus.zip"
    rm -f "$zipfile"
    if [ "${#seeds[@]}" -eq 0 ]; then
        echo "==> $t: $OUT/$t (no seeds in corpus/$t)"
        continue
    fi
    # `zip` is in the OSS-Fuzz base image; python3's zipfile is the fallback for machines
    # without it. Either way the entries are flat (file names only), as libFuzzer reads them.
    if command -v zip >/dev/null 2>&1; then
        zip -q -j -X "$zipfile" "${seeds[@]}"
    else
        python3 - "$zipfile" "${seeds[@]}" <<'PY'
import os
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    for path in sys.argv[2:]:
        z.write(path, os.path.basename(path))
PY
    fi
    echo "==> $t: $OUT/$t, ${#seeds[@]} seeds in $zipfile"
done
