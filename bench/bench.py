"""Benchmark: webug's pages against their physical limit, at several fleet sizes; their
statements, round trips and time with an added network latency; a load run of watchers
polling live fragments; then the targets of issue 20 as PASS/FAIL.

    .venv/bin/python bench/bench.py [--sizes 1000,10000,100000] [--requests 40]
                                    [--delays 0.5,1,2] [--no-latency]
                                    [--watchers 200] [--load-seconds 60]
                                    [--load-machines 100000] [--rss-baseline-mib 87]

Uses the PostgreSQL server of WEBUG_TEST_DSN when set, else an embedded one. For each
size it seeds a fresh database, starts webug with uvicorn (one worker) on a free loopback
port, connected straight to PostgreSQL, and the bare stack (bench/bare_stack.py: the same
uvicorn, Starlette and nothing else). It prints per page (bench/pages.py): median and p95
server latency (webug's Server-Timing header: from the request reaching the app to the
response starting), the client's median over HTTP, and, each timed right after every
request of the page (so a drift of this shared machine's speed affects all alike):

- "bare stack": the bare stack answering a body of the size webug's response had (a 304
  with no body for an unchanged poll), timed at the same kind of client;
- "1 query": one hand-written statement returning the page's rows as JSON
  (bench/one_query.py), on asyncpg: one round trip, no HTTP, no rendering;
- "repository": the statements webug sends for the page, through its own repository
  functions on asyncpg (the one place the bench imports webug's data layer:
  `repository_raw_side`; "n/a" when they cannot be imported or called).

A page's physical limit is bare stack + 1 query: the bytes it answers and the rows it
shows, with nothing in between; the ratio client / limit is what webug adds. Then the
webug process's peak RSS. Totals and facets are counted once per view and
cached, so list rows are compared with the fetch of the rows, and the counting is a line
of its own. At the largest size, the latency mode (bench/latency.py) puts
bench/latency_proxy.py between a second webug and PostgreSQL. The load run sends
traffic to 127.0.0.1 only and stops by itself. Last, the targets of issue 20: PASS,
FAIL, or SKIP when what they need was not measured.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import asyncpg
import bmdb
import httpx
import latency
import one_query
import pages
import scale_out
import webug_process
from load_run import load_run, percentile

sys.path.insert(0, str(webug_process.REPO))  # this checkout's webug: the repository raw side

Fetch = Callable[[], Awaitable[object]]
REPOSITORY, ONE_QUERY = "repository", "1 query"  # the raw sides' labels


@asynccontextmanager
async def repository_raw_side(dsn: str, ids: dict[str, str]) -> AsyncIterator[dict[str, Fetch]]:
    """Today's raw side: for each page, the statements webug sends for it (app/bmdb), on
    asyncpg, without HTTP, decoding or rendering. The only place the bench imports webug's
    data layer. Yields {} (printed as n/a) when those imports or the setup fail."""
    db = None
    try:
        from app.bmdb import machines as repo
        from app.bmdb import overview as overview_repo
        from app.bmdb import sessions as sessions_repo
        from app.bmdb.connection import Database, Reader
        from app.bmdb.filters import MachineFilters, build_where
        from app.bmdb.reflection import reflect
        from app.config import Settings
        from app.render.tag_hints import summary_fields

        db = Database(dsn, Settings(dsn=dsn))
        await db.open()
        async with db.connection() as conn:
            schema = await reflect(conn)
    except Exception as exc:  # an import, a renamed class, a changed signature
        print(f"  raw side '{REPOSITORY}': n/a ({type(exc).__name__}: {exc})")
        if db is not None:
            await db.close()
        yield {}
        return
    try:
        filtered = MachineFilters(provider="Equinix", status="Running")
        unfiltered = MachineFilters()
        summary = repo.list_layout(schema, summary_fields)
        full = repo.MachineLayout.full(schema)

        async def list_rows(f: MachineFilters = unfiltered, after: str | None = None) -> None:
            where = build_where(f, schema)
            after_id = after and uuid.UUID(after)
            await repo.machine_list(
                Reader(db), summary, where, after=after_id, limit=101, with_total=False
            )

        async def counts(f: MachineFilters = unfiltered) -> None:
            await repo.facets(Reader(db), schema, build_where(f, schema))

        async def detail(machine_id: str) -> None:
            await repo.machine(Reader(db), full, uuid.UUID(machine_id))

        async def history(machine_id: str) -> None:
            await repo.history(
                Reader(db), uuid.UUID(machine_id), process=None, offset=0, limit=51,
                timeline_events=1000,
            )  # fmt: skip

        async def overview() -> None:
            await overview_repo.fleet_counts(Reader(db), schema)

        async def sessions() -> None:  # a full page: its facets too, as /sessions reads
            await sessions_repo.session_list(
                Reader(db), sessions_repo.SessionFilters(), after=None, limit=101,
                stale_limit=200, with_facets=True,
            )  # fmt: skip

        yield {
            pages.LIST: list_rows,
            "list: filtered": lambda: list_rows(filtered),
            "list: deep keyset page": lambda: list_rows(after=ids["deep"]),
            pages.LIST_POLL: list_rows,
            "list: total + facets, once per view (raw only)": counts,
            "list: filtered total + facets (raw only)": lambda: counts(filtered),
            pages.DETAIL: lambda: detail(ids["work"]),
            pages.DETAIL_LONG: lambda: detail(ids["long"]),
            pages.LIVE: lambda: detail(ids["work"]),
            pages.LIVE_304: lambda: detail(ids["work"]),
            pages.HISTORY: lambda: history(ids["long"]),
            "overview": overview,
            pages.SESSIONS: sessions,
        }
    finally:
        await db.close()


def one_query_fetches(ids: dict[str, str]) -> dict[str, latency.OneQuery]:
    """The one-statement raw side (bench/one_query.py), per page, on a given connection."""
    work, long, deep = (uuid.UUID(ids[k]) for k in ("work", "long", "deep"))
    return {
        pages.LIST: lambda c: one_query.list_page(c),
        "list: filtered": lambda c: one_query.list_page(c, None, "Equinix", "Running"),
        "list: deep keyset page": lambda c: one_query.list_page(c, deep),
        pages.LIST_POLL: lambda c: one_query.list_page(c),
        pages.DETAIL: lambda c: one_query.machine(c, work),
        pages.DETAIL_LONG: lambda c: one_query.machine(c, long),
        pages.LIVE: lambda c: one_query.live(c, work),
        pages.LIVE_304: unchanged_poll(work),
        pages.SESSIONS: one_query.sessions,
    }


def unchanged_poll(machine_id: uuid.UUID) -> latency.OneQuery:
    """A poll echoing the tag of the poll before (the first learns it, in the warm-up)."""
    tag: str | None = None

    async def poll(conn: asyncpg.Connection) -> None:
        nonlocal tag
        _, tag = await one_query.live_poll(conn, machine_id, tag)

    return poll


class BareStack:
    """The bare stack (bench/bare_stack.py) answering what webug answered: a body of the
    same size, or a 304 with no body."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def timed(self, like: httpx.Response, headers: dict[str, str]) -> float:
        path = "/not-modified" if like.status_code == 304 else f"/bytes/{len(like.content)}"
        started = time.perf_counter()
        response = await self.client.get(path, headers=headers)
        elapsed = (time.perf_counter() - started) * 1000
        if len(response.content) != len(like.content):
            raise RuntimeError(f"bare stack: {path} answered {len(response.content)} bytes")
        return elapsed


class RawSide:
    """One raw side's fetch per page; a fetch that fails is reported once, then n/a."""

    def __init__(self, label: str, fetches: dict[str, Fetch]) -> None:
        self.label = label
        self.fetches = fetches
        self.failed: set[str] = set()

    def has(self, name: str) -> bool:
        return name in self.fetches and name not in self.failed

    def missing(self, name: str) -> str:
        """How a table shows a page this side did not time."""
        return "n/a" if not self.fetches or name in self.failed else "—"

    async def timed(self, name: str) -> float | None:
        if not self.has(name):
            return None
        started = time.perf_counter()
        try:
            await self.fetches[name]()
        except Exception as exc:
            print(f"  raw side '{self.label}', {name}: n/a ({type(exc).__name__}: {exc})")
            self.failed.add(name)
            return None
        return (time.perf_counter() - started) * 1000


@dataclass
class Result:
    server: list[float] = field(default_factory=list)  # ms, from Server-Timing
    client: list[float] = field(default_factory=list)  # ms, request to response over HTTP
    bare: list[float] = field(default_factory=list)  # ms, the bare stack at the client
    raw: dict[str, list[float]] = field(default_factory=dict)  # raw side label -> ms
    status: int | None = None
    body_bytes: int | None = None  # of the last response

    def limit(self) -> float | None:
        """The physical limit: the bare stack's answer plus the one hand-written query."""
        bare, one = med(self.bare), med(self.raw.get(ONE_QUERY))
        return bare + one if bare is not None and one is not None else None


WARM_UP = 3  # requests and raw fetches not timed: caches, prepared statements


async def measure_page(
    client: httpx.AsyncClient, bare: BareStack, page: pages.Page, raws: list[RawSide], n: int
) -> Result:
    """n requests of the page, each followed by the bare stack's answer of the same size
    and every raw side's fetch of the page."""
    result = Result()
    headers = await pages.request_headers(client, page) if page.path else {}
    for i in range(WARM_UP + n):
        if page.path is not None:
            started = time.perf_counter()
            response = await pages.get(client, page, headers)
            elapsed = (time.perf_counter() - started) * 1000
            bare_ms = await bare.timed(response, headers)
            if i >= WARM_UP:
                result.server.append(webug_process.server_ms(response))
                result.client.append(elapsed)
                result.bare.append(bare_ms)
            result.status = response.status_code
            result.body_bytes = len(response.content)
        for raw in raws:
            ms = await raw.timed(page.name)
            if ms is not None and i >= WARM_UP:
                result.raw.setdefault(raw.label, []).append(ms)
    return result


@dataclass
class SizeResult:
    machines: int
    pages: dict[str, Result]
    raws: list[RawSide]
    peak_kib: int
    latency: latency.LatencyResult | None = None


async def measure_size(
    server_dsn: str, machines: int, requests: int, delays: list[float] | None
) -> SizeResult:
    """The loopback table at this size, then (when `delays` is given) the latency mode."""
    print(f"\n== {machines:,} machines")
    name, dsn, ids = await bmdb.prepare(server_dsn, machines)
    results: dict[str, Result] = {}
    try:
        conn = await asyncpg.connect(dsn)
        fetches = one_query_fetches(ids)
        one = RawSide(ONE_QUERY, {k: (lambda f=f: f(conn)) for k, f in fetches.items()})
        try:
            async with (
                repository_raw_side(dsn, ids) as repository_fetches,
                webug_process.running(dsn) as (base, proc),
                webug_process.bare_stack() as (bare_base, _),
                httpx.AsyncClient(base_url=base, timeout=30) as client,
                httpx.AsyncClient(base_url=bare_base, timeout=30) as bare_client,
            ):
                raws = [RawSide(REPOSITORY, repository_fetches), one]
                bare = BareStack(bare_client)
                for page in pages.pages(ids):
                    result = await measure_page(client, bare, page, raws, requests)
                    if result.status is not None and result.status >= 400:
                        print(f"  {page.name}: HTTP {result.status}, skipped")
                        continue
                    results[page.name] = result
                _, peak_kib = webug_process.proc_stat(proc.pid)
        finally:
            await conn.close()
        size = SizeResult(machines, results, raws, peak_kib)
        print_table(size)
        if delays is not None:
            size.latency = await latency.measure(dsn, pages.pages(ids), fetches, delays, requests)
            latency.print_table(size.latency, machines)
    finally:
        await bmdb.drop(server_dsn, name)
    return size


def med(values: list[float] | None) -> float | None:
    return statistics.median(values) if values else None


def ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "—"


def print_table(size: SizeResult) -> None:
    print(
        f"| {size.machines:,} machines | server median ms | server p95 ms | client median ms"
        " | bare stack ms | 1 query ms | limit ms | client / limit"
        " | repository ms | server / repository | bytes | status |"
    )
    print("|---|" + "---:|" * 11)
    repository, one = size.raws
    for name, r in size.pages.items():
        server, client = med(r.server), med(r.client)
        raw_repo, raw_one = med(r.raw.get(repository.label)), med(r.raw.get(one.label))
        p95 = percentile(r.server, 95) if r.server else None
        print(
            f"| {name} | {ms(server)} | {ms(p95)} | {ms(client)} | {ms(med(r.bare))}"
            f" | {ms(raw_one) if raw_one else one.missing(name)} | {ms(r.limit())}"
            f" | {ratio(client, r.limit())}"
            f" | {ms(raw_repo) if raw_repo else repository.missing(name)}"
            f" | {ratio(server, raw_repo)} | {r.body_bytes if r.client else '—'}"
            f" | {r.status or '—'} |"
        )
    print(f"peak RSS of the webug process: {size.peak_kib / 1024:.0f} MiB")


Check = tuple[str, str, bool | None]  # what, the figure, met (None: not measured)

# Issue 20 keeps one statement per page or fragment (counts, when due, come on top)...
STATEMENT_PAGES = (
    pages.LIST, pages.LIST_POLL, pages.DETAIL, pages.LIVE, pages.LIVE_304,
    pages.HISTORY, pages.HISTORY_304, pages.SESSIONS, pages.SESSION, pages.SESSION_LIVE,
)  # fmt: skip
# ...and wants these within 2x of their physical limit (its goal: 1.5x).
LIMIT_PAGES = (pages.LIST, pages.DETAIL, pages.LIVE_304, pages.SESSIONS)
LIMIT_RATIO = 2.0


def statement_targets(lat: latency.LatencyResult | None) -> list[Check]:
    if lat is None:
        return [("statements per request, unchanged poll", "latency mode not run", None)]
    checks: list[Check] = []
    for name in STATEMENT_PAGES:
        cost = lat.pages.get(name)
        checks.append((
            f"statements per request <= 1 (steady state): {name}",
            f"{cost.statements:.1f} (counts due: {cost.statements_counts_due:.1f})"
            if cost else "not measured",
            round(cost.statements, 1) <= 1 if cost else None,
        ))  # fmt: skip
    cost = lat.pages.get(pages.LIVE_304)
    checks.append((
        "unchanged poll: 1 statement, 304, no body",
        f"{cost.statements:.1f} statements, {cost.status}, {cost.body_bytes} bytes"
        if cost else "not measured",
        round(cost.statements, 1) <= 1 and cost.status == 304 and cost.body_bytes == 0
        if cost else None,
    ))  # fmt: skip
    return checks


def limit_target(big: SizeResult, name: str) -> Check:
    r = big.pages.get(name)
    client, limit = (med(r.client), r.limit()) if r else (None, None)
    figure = "—"
    if client and limit:
        bare, one = med(r.bare), med(r.raw[ONE_QUERY])
        figure = f"{client / limit:.2f}x ({client:.2f} / ({bare:.2f} stack + {one:.2f} query) ms)"
    return (
        f"{name} at the client <= {LIMIT_RATIO:g}x its limit (goal 1.5x)",
        figure,
        client <= LIMIT_RATIO * limit if client and limit else None,
    )


def targets(big: SizeResult, load: dict | None, rss_baseline_mib: float) -> list[Check]:
    """Issue 20's targets, against the largest size's figures and the load run."""
    checks = [limit_target(big, name) for name in LIMIT_PAGES]
    html, twin = (med(big.pages[n].client) if n in big.pages else None
                  for n in (pages.LIST, pages.LIST_JSON))  # fmt: skip
    checks.append((
        "list: JSON twin no slower than its HTML (client medians)",
        f"JSON {ms(twin)} / HTML {ms(html)} ms",
        twin <= html if twin and html else None,
    ))  # fmt: skip
    if load:
        watchers = load["watchers"]
        checks.append((f"{watchers} watchers: p99 < 50 ms", f"{load['p99']:.1f}", load["p99"] < 50))
        checks.append(
            (f"{watchers} watchers: errors = 0", str(load["errors"]), load["errors"] == 0)
        )
    checks.extend(statement_targets(big.latency))
    at = "" if big.machines >= 100_000 else f" (measured at {big.machines:,}: indicative only)"
    checks.append((
        f"peak RSS <= {rss_baseline_mib:g} MiB (the baseline) at 100k machines{at}",
        f"{big.peak_kib / 1024:.0f} MiB",
        big.peak_kib <= rss_baseline_mib * 1024,
    ))  # fmt: skip
    return checks


def print_targets(big: SizeResult, load: dict | None, rss_baseline_mib: float) -> None:
    print(f"\n== targets of issue 20 (largest size: {big.machines:,} machines)")
    for label, value, met in targets(big, load, rss_baseline_mib):
        verdict = "SKIP" if met is None else "PASS" if met else "FAIL"
        print(f"{verdict}  {label}: {value}")


async def main() -> None:
    try:
        from app.main import GC_THRESHOLDS

        # The raw sides run with the server's collector settings: the ratios compare
        # webug with the same fetch, not with a differently tuned interpreter.
        gc.set_threshold(*GC_THRESHOLDS)
    except ImportError:
        pass
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument(
        "--delays",
        default="0.5,1,2",
        help="latency mode: ms added per direction, comma-separated ('' for delay 0 only)",
    )
    parser.add_argument("--no-latency", action="store_true", help="skip the latency mode")
    parser.add_argument("--watchers", type=int, default=200)
    parser.add_argument("--load-seconds", type=float, default=60)
    parser.add_argument("--load-machines", type=int, default=100_000)
    parser.add_argument(
        "--rss-baseline-mib",
        type=float,
        default=87,
        help="peak RSS webug must not exceed at the largest size (docs/performance.md)",
    )
    parser.add_argument(
        "--scale-out", action="store_true",
        help="only the scale-out soak: replicas of several workers behind a load balancer"
        " (bench/scale_out.py, with its defaults)",
    )  # fmt: skip
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    delays = None if args.no_latency else [float(d) for d in args.delays.split(",") if d]

    server_dsn = os.environ.get("WEBUG_TEST_DSN") or bmdb.embedded_server()
    print(
        f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
        f"PostgreSQL: {'WEBUG_TEST_DSN' if 'WEBUG_TEST_DSN' in os.environ else 'embedded'}"
    )
    if args.scale_out:
        if not await scale_out.run(server_dsn, scale_out.arguments([])):
            sys.exit(1)
        return
    by_size = {}
    for size in sizes:
        latency_here = delays if size == max(sizes) else None
        by_size[size] = await measure_size(server_dsn, size, args.requests, latency_here)
    load = None
    if args.watchers and args.load_seconds > 0:
        load = await load_run(server_dsn, args.load_machines, args.watchers, args.load_seconds)
    if by_size:
        print_targets(by_size[max(by_size)], load, args.rss_baseline_mib)


if __name__ == "__main__":
    try:
        import uvloop  # as uvicorn runs webug: the raw queries get the same event loop
    except ImportError:
        uvloop = None
    (uvloop.run if uvloop else asyncio.run)(main())
