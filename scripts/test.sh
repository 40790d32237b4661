#!/usr/bin/env bash
# The test command: installs what is missing, rebuilds the eBPF object from source, checks
# formatting and lints, and runs every test (the eBPF ones need root; CI=true makes skipping
# them a failure).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH=$HOME/.cargo/bin:$PATH
# Build the kernel programs from source; never fall back to the committed object here.
export WIRETRACE_EBPF=source
# A fresh CI clone gains nothing from incremental artifacts; they only take disk.
[ "${CI:-}" = true ] && export CARGO_INCREMENTAL=0
if [ "$(id -u)" -ne 0 ] && [ "${CI:-}" != true ]; then
    echo "test: not root: the eBPF and capture tests will skip (run as root to include them)" >&2
fi
cargo fmt --all --check
# Every crate, the benches and a host build of the kernel programs.
cargo clippy --workspace --all-targets -- -D warnings
mkdir -p target
cargo test --no-fail-fast -- --test-threads=2 2>&1 | tee target/test.log
# One closing line over every test binary (cargo prints one per binary, doc tests last).
awk '/^test result:/ { p += $4; f += $6 } END { printf "summary: %d passed, %d failed\n", p, f }' target/test.log
