#!/usr/bin/env bash
# Runs `wiretrace up` (eBPF capture + SQL server on ./wiretrace-data, 127.0.0.1:5433), building
# it with the light `quick` profile. Needs root for eBPF. Extra arguments go to `wiretrace up`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --run
export PATH=$HOME/.cargo/bin:$PATH
cargo build --profile quick --bin wiretrace
bin=target/quick/wiretrace
if [ "$(id -u)" -ne 0 ]; then
    exec sudo "$bin" up "$@"
fi
exec "$bin" up "$@"
