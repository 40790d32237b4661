"""Bytes per span on disk and write speed: wiretrace's Parquet files against the same rows
stored by DuckDB (native table) and by chDB (ClickHouse MergeTree, ordered by start_time), side
by side in one run. The rows are read from wiretrace's Parquet into memory first (not timed);
then each engine stores them from memory, timed in wall seconds and in process CPU seconds
(both engines use every core, wiretrace's write path one). wiretrace's own write speed for the
same generated rows comes from `cargo bench -p wiretrace-benches --bench storage`.

usage: benches/storage_size.py DATA_DIR   (a data dir written by `wiretrace generate` or `up`)
needs: pyarrow, duckdb and chdb in the venv (pip install pyarrow duckdb chdb)
"""
import glob
import os
import sys
import tempfile
import time

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

data = sys.argv[1]
files = sorted(glob.glob(os.path.join(data, "l7_flow_log", "**", "*.parquet"), recursive=True))
ours = sum(os.path.getsize(f) for f in files)
spans = pa.concat_tables([pq.read_table(f) for f in files])
rows = spans.num_rows
print(f"rows: {rows}")
print(f"wiretrace Parquet: {ours} bytes in {len(files)} files = {ours / rows:.1f} B/span")


def timed(store):
    wall, cpu = time.perf_counter(), time.process_time()
    store()
    return time.perf_counter() - wall, time.process_time() - cpu


def report(name, size, wall, cpu):
    print(f"{name}: {size} bytes = {size / rows:.1f} B/span (x{size / ours:.2f} of wiretrace); "
          f"write {rows / wall / 1e6:.2f} M spans/s wall, {rows / cpu / 1e6:.2f} M per CPU-second")


with tempfile.TemporaryDirectory() as tmp:
    # Another Parquet writer on the same rows: Arrow C++ (pyarrow), zstd 3, 64k-row groups,
    # its default encodings.
    out = os.path.join(tmp, "spans.parquet")
    wall, cpu = timed(lambda: pq.write_table(spans, out, compression="zstd",
                                             compression_level=3, row_group_size=65536))
    report(f"pyarrow {pa.__version__} Parquet", os.path.getsize(out), wall, cpu)

with tempfile.TemporaryDirectory() as tmp:
    db = os.path.join(tmp, "spans.duckdb")
    con = duckdb.connect(db)

    def duck():
        con.execute("create table spans as select * from spans_arrow")
        con.execute("checkpoint")

    con.register("spans_arrow", spans)
    wall, cpu = timed(duck)
    con.close()
    report(f"DuckDB {duckdb.__version__}", os.path.getsize(db), wall, cpu)

try:
    import chdb
    from chdb import session
except ImportError:
    print("chDB: not installed (pip install chdb)")
    sys.exit(0)

with tempfile.TemporaryDirectory() as tmp:
    s = session.Session(tmp)
    s.query("create database if not exists b")

    def ch():
        s.query("create table b.spans engine = MergeTree order by start_time "
                "as select * from Python(spans)")
        s.query("optimize table b.spans final")

    wall, cpu = timed(ch)
    size = int(
        s.query(
            "select sum(bytes_on_disk) from system.parts where database = 'b' and active",
            "CSV",
        ).bytes().decode().strip()
    )
    report(f"chDB {chdb.__version__}", size, wall, cpu)
    s.close()
