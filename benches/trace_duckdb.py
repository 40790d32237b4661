#!/usr/bin/env python3
"""The key expansion of wiretrace's trace() run by DuckDB over the same Parquet.

Reads DATA_DIR/lookups.tsv (written by `cargo bench --bench trace_lookup`): for each seed span,
the filters of every lookup round wiretrace made. Runs the same rounds, in order, as
`SELECT * FROM read_parquet(...) WHERE <filter>` and reports p50/p99 per trace, so the two
engines do identical work over identical files (DuckDB does no assembly: that is extra work
wiretrace does on top).

    benches/trace_duckdb.py DATA_DIR [SEEDS]

SEEDS limits how many seed spans are timed (all by default; DuckDB takes seconds per trace on
large stores).
"""

import statistics
import sys
import time
from collections import OrderedDict
from pathlib import Path

import duckdb


def main() -> None:
    data = Path(sys.argv[1])
    rounds: "OrderedDict[str, list[str]]" = OrderedDict()
    for line in (data / "lookups.tsv").read_text().splitlines():
        seed, sql = line.split("\t", 1)
        rounds.setdefault(seed, []).append(sql)
    con = duckdb.connect()
    glob = str(data / "l7_flow_log" / "**" / "*.parquet")
    con.execute(
        f"CREATE VIEW l7_flow_log AS SELECT * FROM read_parquet('{glob}', hive_partitioning = false)"
    )
    seeds = list(rounds.items())
    if len(sys.argv) > 2:
        seeds = seeds[: int(sys.argv[2])]
    for _, filters in seeds[:10]:  # warm up like the Rust side
        for f in filters:
            con.sql(f"SELECT * FROM l7_flow_log WHERE {f}").to_arrow_table()
    ms = []
    for _, filters in seeds:
        t = time.perf_counter()
        for f in filters:
            con.sql(f"SELECT * FROM l7_flow_log WHERE {f}").to_arrow_table()
        ms.append((time.perf_counter() - t) * 1e3)
    ms.sort()
    p99 = ms[round((len(ms) - 1) * 0.99)]
    print(
        f"duckdb {duckdb.__version__}: {len(ms)} traces, p50 {statistics.median(ms):.1f} ms, "
        f"p99 {p99:.1f} ms, {sum(len(f) for _, f in seeds) / len(seeds):.1f} lookups per trace"
    )


if __name__ == "__main__":
    main()
