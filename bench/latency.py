"""Latency mode: what each page costs in statements and round trips to the database, and
what that costs in time when each round trip is slower than loopback (as it is to a
CockroachDB cluster across a network).

webug is started against bench/latency_proxy.py, which sits in front of PostgreSQL,
delays each direction by a settable time and counts the statements and round trips
webug sends. Only HTTP and the database wire are observed: the same measurement holds
for today's data layer and a rewritten one.

Measured at delay 0 (the proxy's own overhead is in the baseline) and each given delay,
interleaved (every round of requests visits every delay, so a drift of this shared
machine's speed affects all delays alike), on one server:

- the added round-trip time, measured: the median of `SELECT 1` (prepared, on the
  bench's own connection through the proxy, run after every page request at that
  request's delay) minus the same at delay 0: about 2 x delay, plus timer slack;
- per page, after 3 warm-up requests, `requests` rounds: webug's server time (its
  Server-Timing header, median per delay), and the statements and round trips the proxy
  counted on webug's connections over all of them divided by their number (the proxy is
  let go idle before and after, so statements sent after the response, e.g. a ROLLBACK,
  count); polls echo HX-PTag as htmx does;
- the round trips implied: (server time at the delay - at 0) / added round-trip time.

The server runs with WEBUG_COUNT_CACHE_SECONDS=3600 (and no fleet statistics): totals
and facets are counted once (in the warm-up) and the figures are the steady-state cost
of a page. A second server
with WEBUG_COUNT_CACHE_SECONDS=0 then gives the statements of a view whose counts are
due (a first view, or one after the cache expired).

The one-query raw fetches (bench/one_query.py) run through the proxy too, timed at the
client: their implied round trips should read about 1, which checks the instrument.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
import httpx
import webug_process
from latency_proxy import ConnectionStats, ProxyThread, dsn_target, dsn_through
from pages import Page, get, request_headers

WARM_UP = 3
COUNTS_DUE_REQUESTS = 3
# No fleet statistics: their collection (a statement and a page of hardware reports at a
# time, once a minute, on a connection of its own) would be counted as a page's.
NO_BACKGROUND = {"WEBUG_FLEET_STATS_SECONDS": "0"}
SETTINGS_STEADY = {"WEBUG_COUNT_CACHE_SECONDS": "3600", **NO_BACKGROUND}
SETTINGS_COUNTS_DUE = {"WEBUG_COUNT_CACHE_SECONDS": "0", **NO_BACKGROUND}

OneQuery = Callable[[asyncpg.Connection], Awaitable[object]]


@dataclass
class PageCost:
    statements: float = math.nan  # per request, steady state
    round_trips: float = math.nan
    statements_counts_due: float = math.nan  # per request with WEBUG_COUNT_CACHE_SECONDS=0
    status: int | None = None  # the most frequent
    body_bytes: int | None = None  # the largest body of a response with that status
    ms: dict[float, float] = field(default_factory=dict)  # delay -> median ms


@dataclass
class LatencyResult:
    delays: list[float]  # ms per direction, 0 first
    select_1: dict[float, float] = field(default_factory=dict)  # delay -> median ms
    pages: dict[str, PageCost] = field(default_factory=dict)  # server time
    one_query: dict[str, PageCost] = field(default_factory=dict)  # client time

    def added_rtt(self, delay: float) -> float:
        return self.select_1[delay] - self.select_1[0.0]

    def implied(self, cost: PageCost, delay: float) -> float:
        """Round trips that explain the time this delay added to a page."""
        if delay not in cost.ms or 0.0 not in cost.ms:
            return math.nan
        return (cost.ms[delay] - cost.ms[0.0]) / self.added_rtt(delay)


async def measure(
    dsn: str,
    pages: list[Page],
    one_query: dict[str, OneQuery],
    delays: list[float],
    requests: int,
) -> LatencyResult:
    """The latency table of webug serving the BMDB at `dsn`."""
    result = LatencyResult([0.0, *delays])
    pages = [p for p in pages if p.path is not None]
    proxy = ProxyThread(dsn_target(dsn))
    proxied = dsn_through(dsn, proxy.start())
    conn = await asyncpg.connect(proxied)
    own = proxy.proxy.connections[-1]  # the bench's connection, the only one yet
    select_1: dict[float, list[float]] = {d: [] for d in result.delays}
    probe = Probe(_client_ms(lambda: conn.fetchval("SELECT 1")), select_1)
    try:
        await _interleaved(proxy, result.delays, probe.call, max(requests, 20))
        async with (
            webug_process.running(proxied, SETTINGS_STEADY) as (base, _),
            httpx.AsyncClient(base_url=base, timeout=60) as client,
        ):
            for page in pages:
                cost = await _measure_page(client, proxy, own, page, result.delays, requests, probe)
                if cost is not None:
                    result.pages[page.name] = cost
        result.select_1 = {d: statistics.median(v) for d, v in select_1.items()}
        for name, fetch in one_query.items():
            times = await _interleaved(
                proxy, result.delays, _client_ms(lambda f=fetch: f(conn)), requests
            )
            result.one_query[name] = PageCost(
                1, 1, ms={d: statistics.median(v) for d, v in times.items()}
            )
        async with (
            webug_process.running(proxied, SETTINGS_COUNTS_DUE) as (base, _),
            httpx.AsyncClient(base_url=base, timeout=60) as client,
        ):
            for page in pages:
                if page.name in result.pages:
                    result.pages[page.name].statements_counts_due = await _statements(
                        client, proxy, page
                    )
    finally:
        await conn.close()
        proxy.stop()
    return result


def _client_ms(call: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[float]]:
    async def timed() -> float:
        started = time.perf_counter()
        await call()
        return (time.perf_counter() - started) * 1000

    return timed


@dataclass
class Probe:
    """`SELECT 1` on the bench's own connection, after each request at the same delay:
    the added round-trip time is measured in the same conditions as the pages."""

    call: Callable[[], Awaitable[float]]
    times: dict[float, list[float]]  # delay -> ms


async def _interleaved(
    proxy: ProxyThread,
    delays: list[float],
    call: Callable[[], Awaitable[float]],
    n: int,
    probe: Probe | None = None,
) -> dict[float, list[float]]:
    """`n` rounds, each calling `call` once at every delay (after warm-up calls at 0):
    a drift of the machine's speed, shared with others, affects every delay alike."""
    proxy.delay = 0.0
    for _ in range(WARM_UP):
        await call()
    times: dict[float, list[float]] = {d: [] for d in delays}
    for _ in range(n):
        for delay in delays:
            proxy.delay = delay / 1000
            times[delay].append(await call())
            if probe is not None:
                probe.times[delay].append(await probe.call())
    proxy.delay = 0.0
    return times


async def _measure_page(
    client: httpx.AsyncClient,
    proxy: ProxyThread,
    own: ConnectionStats,
    page: Page,
    delays: list[float],
    n: int,
    probe: Probe,
) -> PageCost | None:
    """Server time at each delay; statements and round trips counted over all requests
    (but for the probe's, on the bench's own connection `own`)."""
    headers = await request_headers(client, page)
    response = await get(client, page, headers)
    if response.status_code >= 400:
        print(f"  {page.name}: HTTP {response.status_code}, skipped")
        return None
    responses: list[tuple[int, int]] = []  # (status, body bytes)

    async def server_ms() -> float:
        response = await get(client, page, headers)
        responses.append((response.status_code, len(response.content)))
        return webug_process.server_ms(response)

    await proxy.settle()
    before, own_before = proxy.total, own.counters.copy()
    times = await _interleaved(proxy, delays, server_ms, n, probe)
    await proxy.settle()
    spent = (proxy.total - before) - (own.counters - own_before)
    status = Counter(s for s, _ in responses).most_common(1)[0][0]
    return PageCost(
        statements=spent.statements / len(responses),
        round_trips=spent.round_trips / len(responses),
        status=status,
        body_bytes=max(size for s, size in responses if s == status),
        ms={d: statistics.median(v) for d, v in times.items()},
    )


async def _statements(client: httpx.AsyncClient, proxy: ProxyThread, page: Page) -> float:
    """Statements per request of a few requests in a row (after one to prepare them)."""
    headers = await request_headers(client, page)
    await get(client, page, headers)
    await proxy.settle()
    before = proxy.total
    for _ in range(COUNTS_DUE_REQUESTS):
        await get(client, page, headers)
    await proxy.settle()
    return (proxy.total - before).statements / COUNTS_DUE_REQUESTS


def _num(value: float, digits: int = 1) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def print_table(result: LatencyResult, machines: int) -> None:
    delays = result.delays[1:]
    print(
        f"\n== latency: {machines:,} machines, webug through the latency proxy"
        " (delay per direction; server ms = Server-Timing median, 1-query rows at the client)"
    )
    added = ", ".join(f"{d:g} ms -> +{result.added_rtt(d):.2f} ms" for d in delays)
    print(f"round trip added (SELECT 1 through the proxy, vs delay 0): {added or '—'}")
    print(
        "| page | statements | round trips | statements, counts due | "
        + " | ".join(f"ms @{d:g}" for d in result.delays)
        + "".join(f" | round trips implied @{d:g}" for d in delays)
        + " |"
    )
    print("|---" + "|---:" * (3 + len(result.delays) + len(delays)) + "|")
    rows = [
        *result.pages.items(),
        *((f"raw (1 query): {n}", c) for n, c in result.one_query.items()),
    ]
    for name, cost in rows:
        cells = [
            _num(cost.statements),
            _num(cost.round_trips),
            _num(cost.statements_counts_due),
            *(_num(cost.ms.get(d, math.nan), 2) for d in result.delays),
            *(_num(result.implied(cost, d)) for d in delays),
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
