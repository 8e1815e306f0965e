"""Shared fixtures and helpers: a real PostgreSQL for every test that touches data.

`WEBUG_TEST_DSN` (a DSN to any database on a server we may create databases on)
when set; otherwise an embedded PostgreSQL started once per run. Each test that
writes gets its own database, cloned from a migrated template in milliseconds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import socket
import tempfile
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from fastapi.testclient import TestClient

from app.bmdb.dsn import with_database

T = TypeVar("T")

BASE_URL = "http://localhost"  # what webug_client's requests go to (and their origin)


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from sync code, on a thread of its own so no test loop is disturbed."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for a uvicorn under test)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _admin(server_dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_database(server_dsn: str, *, template: str | None = None) -> str:
    name = f"webug_test_{uuid.uuid4().hex[:12]}"
    clause = f' TEMPLATE "{template}"' if template else ""
    run_sync(_admin(server_dsn, f'CREATE DATABASE "{name}"{clause}'))
    return name


def drop_database(server_dsn: str, name: str) -> None:
    run_sync(_admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def cloned_database(server_dsn: str, template: str, *statements: str) -> Iterator[str]:
    """DSN of a new database cloned from `template` (then `statements` run in it), dropped
    when done."""
    name = create_database(server_dsn, template=template)
    try:
        dsn = with_database(server_dsn, name)
        if statements:
            run_sync(execute(dsn, *statements))
        yield dsn
    finally:
        drop_database(server_dsn, name)


@pytest.fixture(scope="session")
def pg_server_dsn() -> Iterator[str]:
    """A DSN to a maintenance database on the test server."""
    if dsn := os.environ.get("WEBUG_TEST_DSN"):
        yield dsn
        return
    from app.demo.embedded import start_server

    data_dir = Path(tempfile.mkdtemp(prefix="webug-test-pg-")) / "data"
    yield start_server(data_dir, cleanup="delete")


@pytest.fixture(scope="session")
def migrated_template(pg_server_dsn: str) -> Iterator[str]:
    from app.bmdb.migrate import migrate

    name = create_database(pg_server_dsn)
    run_sync(migrate(with_database(pg_server_dsn, name)))
    yield name
    drop_database(pg_server_dsn, name)


@pytest.fixture
def empty_db_dsn(pg_server_dsn: str) -> Iterator[str]:
    """A brand-new empty database."""
    name = create_database(pg_server_dsn)
    yield with_database(pg_server_dsn, name)
    drop_database(pg_server_dsn, name)


@pytest.fixture
def migrated_db_dsn(pg_server_dsn: str, migrated_template: str) -> Iterator[str]:
    """A fresh BMDB at the latest migration, with no rows: the test may write."""
    with cloned_database(pg_server_dsn, migrated_template) as dsn:
        yield dsn


@pytest.fixture(scope="session")
def seeded_db_dsn(pg_server_dsn: str, migrated_template: str) -> Iterator[str]:
    """A seeded demo fleet shared by read-only tests: never write to it."""
    from app.demo.seed import seed_fleet

    with cloned_database(pg_server_dsn, migrated_template) as dsn:
        run_sync(seed_fleet(dsn, 300, rng_seed=7))
        yield dsn


@contextlib.contextmanager
def webug_client(dsn: str, **overrides: Any) -> Iterator[TestClient]:
    """A webug app on `dsn`, lifespan running (pool, first reflection, refresh task).

    Requests go to http://localhost, a name webug accepts by default: the tests run the
    production Host allow-list, which does not accept the client's default `testserver`.
    """
    from app.config import Settings
    from app.main import create_app

    app = create_app(Settings(dsn=dsn, **overrides))
    with TestClient(app, base_url=BASE_URL) as client:
        yield client


async def execute(dsn: str, *statements: str) -> None:
    """Write to a test BMDB as a migration or a BMDB component would (webug itself can't)."""
    conn = await asyncpg.connect(dsn)
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def small_fleet_dsn(pg_server_dsn: str, migrated_template: str) -> Iterator[str]:
    """tests/fleet.py's hand-built fleet, shared by read-only tests: never write to it."""
    from tests.fleet import load_small_fleet

    with cloned_database(pg_server_dsn, migrated_template) as dsn:
        load_small_fleet(dsn)
        yield dsn


@pytest.fixture(scope="module")
def module_fleet_dsn(pg_server_dsn: str, migrated_template: str) -> Iterator[str]:
    """tests/fleet.py's small fleet in a database of the module's own, loaded when the
    module runs (its rows are relative to now(): the shared one ages as the run goes)."""
    from tests.fleet import load_small_fleet

    with cloned_database(pg_server_dsn, migrated_template) as dsn:
        load_small_fleet(dsn)
        yield dsn
