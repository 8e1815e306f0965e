"""A seeded BMDB per measurement: webug's migrations and demo fleet generator build it,
then it is made to look like a long-running one (statistics current, nothing to vacuum)."""

from __future__ import annotations

import time
import uuid

import asyncpg
from pages import LONG_HISTORY
from webug_process import with_database


async def admin(server_dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def drop(server_dsn: str, name: str) -> None:
    await admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def prepare(server_dsn: str, machines: int) -> tuple[str, str, dict[str, str]]:
    """A seeded BMDB: its name, its DSN and the IDs pages.pages() needs."""
    from app.demo.seed import seed_fleet
    from app.migrate import migrate

    name = f"webug_bench_{machines}_{uuid.uuid4().hex[:6]}"
    await admin(server_dsn, f'CREATE DATABASE "{name}"')
    dsn = with_database(server_dsn, name)
    await migrate(dsn)
    started = time.perf_counter()
    await seed_fleet(dsn, machines, rng_seed=1)
    print(f"  seeded {machines} machines in {time.perf_counter() - started:.1f} s")
    conn = await asyncpg.connect(dsn)
    try:
        ids = {
            "work": str(await conn.fetchval("SELECT machine_id FROM work LIMIT 1")),
            "session": str(await conn.fetchval("SELECT session_id FROM work LIMIT 1")),
            "deep": str(
                await conn.fetchval(
                    "SELECT machine_id FROM machines ORDER BY machine_id OFFSET $1 LIMIT 1",
                    int(machines * 0.9),
                )
            ),
            "long": str(
                await conn.fetchval(
                    "SELECT machine_id FROM machine_provided ORDER BY machine_id LIMIT 1"
                )
            ),
        }
        # One machine with a long history, as a busy machine would have.
        await conn.execute(
            "INSERT INTO work_history SELECT $1::uuid, 'ShepherdAccess',"
            " (ARRAY['Started','Finished','Failed'])[1 + g % 3]::work_history_event,"
            " now() - g * interval '1 minute', CASE WHEN g % 3 = 2 THEN 'timeout' END"
            " FROM generate_series(1, $2) g",
            ids["long"],
            LONG_HISTORY,
        )
        # As a long-running BMDB is: statistics current, visibility map set (so index-only
        # scans stay index-only), no autovacuum and no checkpoint writing out the seed
        # while pages are timed.
        await conn.execute("VACUUM ANALYZE")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    return name, dsn, ids
