#!/usr/bin/env bash
# Rebuilds the eBPF object from ingest-ebpf/programs and refreshes the committed, stripped copy
# in ingest-ebpf/prebuilt/ (what `cargo build` uses on a machine without the BPF toolchain).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
WIRETRACE_EBPF=source cargo build -p wiretrace-ingest --message-format=json-render-diagnostics |
    grep -o '"out_dir":"[^"]*wiretrace-ingest[^"]*"' | tail -1 | cut -d'"' -f4 > target/.ebpf-out-dir
out=$(cat target/.ebpf-out-dir)
/usr/lib/llvm-22/bin/llvm-strip --strip-debug -o ingest-ebpf/prebuilt/wiretrace.bpf.o "$out/wiretrace.bpf.o"
ls -l ingest-ebpf/prebuilt/wiretrace.bpf.o
