"""Shared fixtures and helpers: a real PostgreSQL for every test that touches data.

`WEBUG_TEST_DSN` (a DSN to any database on a server we may create databases on)
when set; otherwise an embedded PostgreSQL started once per run. Each test that
writes gets its own database, cloned from a migrated template in milliseconds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import importlib.util
import os
import re
import socket
import sys
import tempfile
import threading
import uuid
import warnings
from collections.abc import Coroutine, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import asyncpg
import pytest
from fastapi.testclient import TestClient

from app.bmdb.dsn import with_database

T = TypeVar("T")

BASE_URL = "http://localhost"  # what webug_client's requests go to (and their origin)


def url_module_paths() -> set[str]:
    """The route paths app/render/urls.py declares (its string constants that are paths)."""
    from app.render import urls

    return {v for k, v in vars(urls).items() if k.isupper() and isinstance(v, str)
            and v.startswith("/")}  # fmt: skip


def route_of(url: str, paths: set[str]) -> str | None:
    """The route path (of `paths`, such as "/machine/{machine_id}") that serves `url`."""
    path = url.split("?")[0].split("#")[0]
    for template in paths:
        parts = re.split(r"\{[^}]+\}", template)
        if re.fullmatch("[^/]+".join(re.escape(p) for p in parts), path):
            return template
    return None


class SkippedWarning(UserWarning):
    """Tests were skipped for a reason this machine could remedy."""


_skipped: list[str] = []


def skip_loudly(message: str, category: type[Warning] = SkippedWarning) -> None:
    """Skip this test and say why where every run shows it: a warning, and a banner in the
    summary (a skip's reason alone is shown only with -rs)."""
    if message not in _skipped:
        _skipped.append(message)
        warnings.warn(message, category, stacklevel=2)
    pytest.skip(message)


def pytest_terminal_summary(terminalreporter) -> None:
    for message in _skipped:
        terminalreporter.write_sep("!", message, red=True, bold=True)


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from sync code, on a thread of its own so no test loop is disturbed."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for a uvicorn under test)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def create_database(server_dsn: str, *, template: str | None = None) -> str:
    name = f"webug_test_{uuid.uuid4().hex[:12]}"
    clause = f' TEMPLATE "{template}"' if template else ""
    run_sync(execute(server_dsn, f'CREATE DATABASE "{name}"{clause}'))
    return name


def drop_database(server_dsn: str, name: str) -> None:
    run_sync(execute(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


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
    Without the fleet gauges' background statements (app/fleet/), unless `overrides` ask
    for them: the tests that count statements count a page's.
    """
    from app.config import Settings
    from app.main import create_app

    overrides.setdefault("fleet_stats_seconds", 0)
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


@functools.cache
def load_latency_proxy() -> ModuleType:
    """bench/latency_proxy.py as module `latency_proxy`, loaded and registered once: bench/
    is no package, and its dataclasses look their module up in sys.modules."""
    path = Path(__file__).resolve().parents[1] / "bench" / "latency_proxy.py"
    spec = importlib.util.spec_from_file_location("latency_proxy", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["latency_proxy"] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def proxied_webug(dsn: str) -> Iterator[tuple]:
    """(the proxy, a webug client whose BMDB connections all go through it)."""
    latency_proxy = load_latency_proxy()
    proxy = latency_proxy.ProxyThread(latency_proxy.dsn_target(dsn))
    try:
        with webug_client(latency_proxy.dsn_through(dsn, proxy.start())) as client:
            yield proxy, client
    finally:
        proxy.stop()


def sent(proxy, request) -> tuple[int, int, object]:
    """(statements, round trips) `request()` made webug send, and its response."""
    run_sync(proxy.settle())
    before = proxy.total
    response = request()
    run_sync(proxy.settle())
    spent = proxy.total - before
    return spent.statements, spent.round_trips, response


class TableLock:
    """Another BMDB client holding `LOCK TABLE ... IN ACCESS EXCLUSIVE MODE` in a transaction."""

    def __init__(self, dsn: str, table: str) -> None:
        self._dsn, self._table = dsn, table
        self._locked, self._release = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._hold()), daemon=True)

    async def _hold(self) -> None:
        conn = await asyncpg.connect(self._dsn)
        try:
            tx = conn.transaction()
            await tx.start()
            await conn.execute(f"LOCK TABLE {self._table} IN ACCESS EXCLUSIVE MODE")
            self._locked.set()
            await asyncio.to_thread(self._release.wait)
            await tx.rollback()
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            pass  # the server went away under the lock: that is what some tests do
        finally:
            self._locked.set()
            await conn.close(timeout=2)

    def __enter__(self) -> TableLock:
        self._thread.start()
        assert self._locked.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._thread.join(10)


RELATIVE_TIME = r'<time datetime="([^"]+)" data-relative>'


def seconds_from_now(html: str, before: str = "") -> float:
    """How far from now the first time shown relative (a `<time data-relative>`, which
    the browser writes as "in 4m" or "3m ago") that follows the pattern `before` is:
    positive in the future."""
    from datetime import UTC, datetime

    found = re.search(before + RELATIVE_TIME, html)
    assert found, f"no relative time after {before!r}"
    return (datetime.fromisoformat(found[1]) - datetime.now(UTC)).total_seconds()


def keyset_pages(client: TestClient, path: str, key: str, limit: int) -> list[dict]:
    """Every item (`key` of the JSON twin) of a keyset list, following `next_after` from
    the first page, `limit` at a time."""
    items: list[dict] = []
    after = None
    base = path + ("&" if "?" in path else "?") + f"format=json&limit={limit}"
    for _ in range(1000):
        response = client.get(base if after is None else f"{base}&after={after}")
        assert response.status_code == 200, (path, response.text[:300])
        page = response.json()
        assert len(page[key]) <= limit
        items += page[key]
        after = page["next_after"]
        if after is None:
            return items
    raise AssertionError(f"{path}: more than 1000 pages")


def csv_rows(client: TestClient, path: str) -> list[dict[str, str]]:
    """A CSV download's rows, as {column: cell}."""
    import csv
    import io

    response = client.get(path)
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text, newline="")))


@contextlib.contextmanager
def fleet_client(server_dsn: str, template: str, *statements: str) -> Iterator[TestClient]:
    """A webug client on a clone of `template` in which `statements` made a fleet."""
    with cloned_database(server_dsn, template, *statements) as dsn, webug_client(dsn) as client:
        yield client
