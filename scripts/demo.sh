#!/usr/bin/env bash
# Runs `wiretrace demo bookinfo`: builds the two-node Bookinfo lab (Python, Ruby, Java and
# Node.js apps behind nginx sidecars), captures one request and prints its 38-span trace, then
# serves SQL on 127.0.0.1:5433 until Ctrl-C and removes the lab. Installs the lab's runtimes
# when missing and builds the dev profile (as scripts/run.sh). Needs root (uses sudo otherwise).
# Extra arguments go to `wiretrace demo bookinfo` (--keep, --down, --listen, …).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --lab
export PATH=$HOME/.cargo/bin:$PATH
cargo build --bin wiretrace
if [ "$(id -u)" -ne 0 ]; then
    exec sudo target/debug/wiretrace demo bookinfo "$@"
fi
exec target/debug/wiretrace demo bookinfo "$@"
