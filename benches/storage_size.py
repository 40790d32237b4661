"""Bytes per span on disk: wiretrace's Parquet files against the same rows stored by DuckDB
(native table) and by chDB (ClickHouse MergeTree, ordered by start_time), side by side in one
run. Also prints how long DuckDB and chDB take to load the rows from wiretrace's Parquet.

usage: benches/storage_size.py DATA_DIR   (a data dir written by `wiretrace generate` or `up`)
needs: duckdb and chdb in the venv (pip install duckdb chdb)
"""
import glob
import os
import sys
import tempfile
import time

import duckdb

data = sys.argv[1]
files = glob.glob(os.path.join(data, "l7_flow_log", "**", "*.parquet"), recursive=True)
ours = sum(os.path.getsize(f) for f in files)
pattern = os.path.join(data, "l7_flow_log", "**", "*.parquet")
rows = duckdb.sql(f"select count(*) from read_parquet('{pattern}')").fetchall()[0][0]
print(f"rows: {rows}")
print(f"wiretrace Parquet: {ours} bytes in {len(files)} files = {ours / rows:.1f} B/span")

with tempfile.TemporaryDirectory() as tmp:
    db = os.path.join(tmp, "spans.duckdb")
    con = duckdb.connect(db)
    t = time.perf_counter()
    con.execute(f"create table spans as select * from read_parquet('{pattern}')")
    con.execute("checkpoint")
    secs = time.perf_counter() - t
    con.close()
    size = os.path.getsize(db)
    print(f"DuckDB {duckdb.__version__}: {size} bytes = {size / rows:.1f} B/span "
          f"(x{size / ours:.2f} of wiretrace); load {rows / secs:,.0f} rows/s")

try:
    import chdb
    from chdb import session
except ImportError:
    print("chDB: not installed (pip install chdb)")
    sys.exit(0)

with tempfile.TemporaryDirectory() as tmp:
    s = session.Session(tmp)
    s.query("create database if not exists b")
    t = time.perf_counter()
    s.query(
        f"create table b.spans engine = MergeTree order by start_time "
        f"as select * from file('{pattern}', Parquet)"
    )
    s.query("optimize table b.spans final")
    secs = time.perf_counter() - t
    size = int(
        s.query(
            "select sum(bytes_on_disk) from system.parts where database = 'b' and active",
            "CSV",
        ).bytes().decode().strip()
    )
    print(f"chDB {chdb.__version__}: {size} bytes = {size / rows:.1f} B/span "
          f"(x{size / ours:.2f} of wiretrace); load {rows / secs:,.0f} rows/s")
    s.close()
