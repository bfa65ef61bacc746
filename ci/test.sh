#!/usr/bin/env bash
# Runs every check CI runs (see `cargo xtask test`): fmt, clippy, tests, the guest build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec cargo xtask test
