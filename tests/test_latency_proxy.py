"""bench/latency_proxy.py, the instrument of `make bench`'s latency mode: between asyncpg
and the test PostgreSQL it counts statements and round trips as the bench reads them, and
its delay per direction is paid twice per round trip."""

from __future__ import annotations

import statistics
import time

import asyncpg
import pytest

from tests.support import load_latency_proxy

latency_proxy = load_latency_proxy()


@pytest.fixture
def proxied(pg_server_dsn: str):
    """(the proxy on its thread, a DSN to the test server through it)."""
    proxy = latency_proxy.ProxyThread(latency_proxy.dsn_target(pg_server_dsn))
    yield proxy, latency_proxy.dsn_through(pg_server_dsn, proxy.start())
    proxy.stop()


async def test_counts_asyncpg_statements_and_round_trips(proxied) -> None:
    proxy, dsn = proxied
    conn = await asyncpg.connect(dsn)
    try:
        await proxy.settle()

        async def cost(call) -> tuple[int, int]:
            before = proxy.total
            await call()
            await proxy.settle()
            spent = proxy.total - before
            return spent.statements, spent.round_trips

        # A new statement: Parse/Describe/Flush, then Bind/Execute/Sync.
        assert await cost(lambda: conn.fetch("SELECT 1")) == (1, 2)
        # Prepared and cached: Bind/Execute/Sync.
        assert await cost(lambda: conn.fetch("SELECT 1")) == (1, 1)
        # No arguments: a simple Query.
        assert await cost(lambda: conn.execute("BEGIN")) == (1, 1)
        assert await cost(lambda: conn.fetchval("SELECT $1::int", 7)) == (1, 2)
        assert await cost(lambda: conn.fetchval("SELECT $1::int", 8)) == (1, 1)
        assert await cost(lambda: conn.execute("ROLLBACK")) == (1, 1)
        # One simple Query of two statements is one message: counted as one.
        assert await cost(lambda: conn.execute("SELECT 1; SELECT 2")) == (1, 1)
    finally:
        await conn.close()
    # The seven calls above, on a connection of their own.
    mine = [c for c in proxy.proxy.connections if c.counters.statements]
    assert len(mine) == 1 and mine[0].counters.statements == 7 and not mine[0].opaque


async def test_delay_is_paid_in_each_direction(proxied) -> None:
    proxy, dsn = proxied
    conn = await asyncpg.connect(dsn)
    try:

        async def select_1_ms() -> float:
            times = []
            for _ in range(5):
                started = time.perf_counter()
                await conn.fetchval("SELECT 1")
                times.append((time.perf_counter() - started) * 1000)
            return statistics.median(times)

        await select_1_ms()  # prepared
        loopback = await select_1_ms()
        proxy.delay = 0.020
        delayed = await select_1_ms()
    finally:
        await conn.close()
    # 20 ms each way: a round trip costs about 40 ms more (never less; no upper bound,
    # a busy machine only adds).
    assert delayed - loopback >= 38
