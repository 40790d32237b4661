#!/usr/bin/env bash
# Runs `wiretrace up` (eBPF capture + SQL server on ./wiretrace-data, 127.0.0.1:5433). Builds the
# dev profile, which `scripts/test.sh` shares (≈6 min from scratch on 2 cores; an optimised
# build of the DataFusion stack takes ≈25). Set WIRETRACE_PROFILE=release for heavy use.
# Needs root for eBPF (uses sudo otherwise). Extra arguments go to `wiretrace up`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --run
export PATH=$HOME/.cargo/bin:$PATH
profile=${WIRETRACE_PROFILE:-dev}
cargo build --profile "$profile" --bin wiretrace
dir=$profile
[ "$profile" = dev ] && dir=debug
bin=target/$dir/wiretrace
if [ "$(id -u)" -ne 0 ]; then
    exec sudo "$bin" up "$@"
fi
exec "$bin" up "$@"
