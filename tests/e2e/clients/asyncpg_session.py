"""asyncpg (extended protocol, binary results, prepared statements) against wiretrace: no type
introspection may be needed for the span columns.

usage: asyncpg_session.py PORT; prints one `ok <check>` line per passed check."""
import asyncio
import datetime
import sys

import asyncpg


async def main(port):
    conn = await asyncpg.connect(host="127.0.0.1", port=port, user="wiretrace", database="wiretrace")
    assert conn.get_server_version().major == 16
    print("ok version")
    n = await conn.fetchval("select count(*) from l7_flow_log")
    assert n > 0
    print("ok count")
    rows = await conn.fetch(
        "select _id, start_time, response_duration, request_resource, response_code "
        "from l7_flow_log where response_duration > $1 and request_resource like $2 "
        "order by start_time limit 5",
        0,
        "/%",
    )
    assert len(rows) == 5 and isinstance(rows[0]["start_time"], datetime.datetime), rows
    assert rows[0]["start_time"].tzinfo is not None
    print("ok params")
    # Binary results for every column type of the span table.
    rows = await conn.fetch("select * from l7_flow_log limit 3")
    assert len(rows) == 3 and all(len(r) > 50 for r in rows), rows[:1]
    print("ok binary")
    stmt = await conn.prepare("select count(*) from l7_flow_log where observation_point = $1")
    assert await stmt.fetchval("c-p") >= 0
    print("ok prepared")
    try:
        await conn.execute("create table t (a int)")
        print("write accepted")
    except asyncpg.PostgresError as e:
        assert e.sqlstate == "25006", e.sqlstate
        print("ok refused")
    assert await conn.fetchval("select 40 + 2") == 42
    print("ok alive")
    await conn.close()
    # A pool resets each connection it gets back (advisory unlock, CLOSE ALL, UNLISTEN *,
    # RESET ALL in one simple query).
    pool = await asyncpg.create_pool(
        host="127.0.0.1", port=port, user="wiretrace", database="wiretrace", min_size=1, max_size=1
    )
    for _ in range(2):
        async with pool.acquire() as c:
            assert await c.fetchval("select 1") == 1
    await pool.close()
    print("ok pool")


asyncio.run(main(int(sys.argv[1])))
