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
if [ "$(id -u)" -ne 0 ] && [ "${CI:-}" != true ]; then
    echo "test: not root: the eBPF and capture tests will skip (run as root to include them)" >&2
fi
cargo fmt --all --check
cargo clippy --all-targets -- -D warnings
cargo clippy -p wiretrace-benches --all-targets -- -D warnings
cargo test --no-fail-fast -- --test-threads=2
