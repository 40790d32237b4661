"""psycopg2 (libpq, text results, client-side parameter interpolation) against wiretrace.

usage: psycopg2_session.py PORT; prints one `ok <check>` line per passed check."""
import datetime
import sys

import psycopg2

conn = psycopg2.connect(host="127.0.0.1", port=int(sys.argv[1]), user="wiretrace", dbname="wiretrace")
conn.autocommit = True
cur = conn.cursor()
cur.execute("select version()")
assert cur.fetchone()[0].startswith("PostgreSQL 16"), "version"
print("ok version")
cur.execute("select count(*) from l7_flow_log")
assert cur.fetchone()[0] > 0
print("ok count")
cur.execute(
    "select _id, start_time, response_duration, request_resource from l7_flow_log "
    "where response_duration > %s and request_resource like %s order by start_time limit 5",
    (0, "/%"),
)
rows = cur.fetchall()
assert len(rows) == 5 and isinstance(rows[0][1], datetime.datetime) and rows[0][1].tzinfo, rows
print("ok params")
try:
    cur.execute("drop table l7_flow_log")
    print("write accepted")
except psycopg2.Error as e:
    assert e.pgcode == "25006", e.pgcode
    print("ok refused")
cur.execute("select 1")
assert cur.fetchone() == (1,)
print("ok alive")
