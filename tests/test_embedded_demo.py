"""The zero-setup demo: two webugs on one machine share one embedded PostgreSQL safely."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import asyncpg

from tests.support import run_sync

REPO = Path(__file__).resolve().parents[1]

# What each webug does at start in demo mode (app.main's lifespan), then prints its DSN.
PREPARE = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from app.demo.embedded import prepare_demo
    dsn = asyncio.run(prepare_demo(Path(sys.argv[1]), 40))
    print(dsn, flush=True)
    sys.stdin.read()  # keep this process' handle on the server until told to stop
""")


async def _counts(dsn: str) -> tuple[int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        return (
            await conn.fetchval("SELECT count(*) FROM machines"),
            await conn.fetchval("SELECT version FROM schema_migrations"),
        )
    finally:
        await conn.close()


def test_two_demo_webugs_share_one_server_seeded_once(tmp_path):
    data_dir = tmp_path / "demo-pg"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PREPARE, str(data_dir)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        dsns = [p.stdout.readline().strip() for p in procs]
        assert dsns[0] and dsns[0] == dsns[1], dsns
        assert run_sync(_counts(dsns[0])) == (40, 1698288577)  # seeded once, fully migrated
        # The first one exits; the server stays up for the second.
        procs[0].communicate("", timeout=60)
        assert run_sync(_counts(dsns[0]))[0] == 40
    finally:
        for p in procs:
            if p.poll() is None:
                p.communicate("", timeout=60)
    # Reused by the next run, with the data kept.
    again = subprocess.Popen(
        [sys.executable, "-c", PREPARE, str(data_dir)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        dsn = again.stdout.readline().strip()
        assert run_sync(_counts(dsn))[0] == 40
    finally:
        again.communicate("", timeout=60)
