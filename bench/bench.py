"""Benchmark: webug page latency next to the raw queries it needs, at several fleet sizes,
then a bounded load run of watchers polling live fragments, then the issue's targets.

    .venv/bin/python bench/bench.py [--sizes 1000,10000,100000] [--requests 40]
                                    [--watchers 200] [--load-seconds 60]

Uses the PostgreSQL server of WEBUG_TEST_DSN when set, else an embedded one. For each
size it seeds a fresh database, starts uvicorn (one worker) on a free loopback port and
prints, per page: median and p95 server latency (webug's Server-Timing header: from the
request reaching the app to the response starting, no client overhead), the client's
median over HTTP, the median time of the same repository queries run directly on asyncpg
(no HTTP, no rendering), and the ratio server/raw; then the server's peak RSS. Totals and
facets are computed once per view and cached 30 s, so list rows are compared with the
fetch of the rows, and the counting is printed as a line of its own. The load run sends
traffic to 127.0.0.1 only and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.bmdb import machines as repo  # noqa: E402
from app.bmdb import overview as overview_repo  # noqa: E402
from app.bmdb.connection import Database  # noqa: E402
from app.bmdb.dsn import with_database  # noqa: E402
from app.bmdb.filters import MachineFilters, build_where  # noqa: E402
from app.bmdb.reflection import reflect  # noqa: E402
from app.config import Settings  # noqa: E402

LONG_HISTORY = 500


@dataclass
class Case:
    name: str
    path: str | None  # None: the raw queries only (work a page view does once, then caches)
    raw: Callable[[Database], Awaitable[object]] | None
    headers: dict[str, str] | None = None


@dataclass
class Result:
    server: list[float]  # ms, from Server-Timing
    client: list[float]  # ms, request to response over HTTP
    raw: list[float] | None  # ms, the same queries on asyncpg
    status: int | None


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def admin(server_dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def prepare(server_dsn: str, machines: int) -> tuple[str, str, dict[str, str]]:
    """A seeded BMDB; returns its name, DSN and the IDs the cases need."""
    from app.bmdb.migrate import migrate
    from app.demo.seed import seed_fleet

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


def cases(ids: dict[str, str], schema) -> list[Case]:
    """Each page, and the same repository calls without HTTP or rendering."""
    filters = MachineFilters(provider="Equinix", status="Running")
    unfiltered = MachineFilters()

    async def list_rows_raw(db: Database, f: MachineFilters = unfiltered, after=None) -> None:
        async with db.snapshot() as snap:
            where = build_where(f, schema)
            page = await repo.machine_page(snap, where, after=after and uuid.UUID(after), limit=101)
            await repo.fill_details(snap, schema, page[:100], summary=True)

    async def counts_raw(db: Database, f: MachineFilters = unfiltered) -> None:
        async with db.snapshot() as snap:
            where = build_where(f, schema)
            await repo.count_machines(snap, where)
            await repo.facets(snap, schema, where)

    async def detail_raw(db: Database, machine_id: str) -> None:
        async with db.snapshot() as snap:
            m = await repo.machine_by_id(snap, uuid.UUID(machine_id))
            await repo.fill_details(snap, schema, [m])

    async def history_raw(db: Database, machine_id: str) -> None:
        mid = uuid.UUID(machine_id)
        async with db.snapshot() as snap:
            await repo.history_page(snap, mid, process=None, offset=0, limit=51)
            await repo.history_summary(snap, mid)
            await repo.machine_by_id(snap, mid)
            await repo.work_for(snap, [mid])
            await repo.backoffs_for(snap, [mid])
            await repo.recent_history(snap, mid, 1000)

    async def overview_raw(db: Database) -> None:
        async with db.snapshot() as snap:
            await overview_repo.fleet_counts(snap, schema)

    htmx = {"HX-Request": "true"}
    return [
        Case("list: first page", "/", list_rows_raw),
        Case(
            "list: filtered",
            "/?provider=Equinix&status=Running",
            lambda db: list_rows_raw(db, filters),
        ),
        Case(
            "list: deep keyset page",
            f"/?after={ids['deep']}",
            lambda db: list_rows_raw(db, after=ids["deep"]),
        ),
        Case("list: poll fragment", "/", list_rows_raw, htmx),
        Case("list: total + facets, once per view (raw only)", None, counts_raw),
        Case("list: filtered total + facets (raw only)", None, lambda db: counts_raw(db, filters)),
        Case("detail", f"/machine/{ids['work']}", lambda db: detail_raw(db, ids["work"])),
        Case(
            f"detail ({LONG_HISTORY} history rows)",
            f"/machine/{ids['long']}",
            lambda db: detail_raw(db, ids["long"]),
        ),
        Case(
            "live fragment (changed)",
            f"/machine/{ids['work']}/live",
            lambda db: detail_raw(db, ids["work"]),
            htmx,
        ),
        Case(
            "live fragment (unchanged, 304)",
            f"/machine/{ids['work']}/live",
            lambda db: detail_raw(db, ids["work"]),
            {**htmx, "HX-PTag": "__current__"},
        ),
        Case(
            "history fragment",
            f"/machine/{ids['long']}/history",
            lambda db: history_raw(db, ids["long"]),
            htmx,
        ),
        Case("overview", "/overview", overview_raw),
    ]


async def timed(fn: Callable[[], Awaitable[object]], n: int) -> list[float]:
    for _ in range(3):  # warm caches and prepared statements
        await fn()
    times = []
    for _ in range(n):
        started = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - started) * 1000)
    return times


def server_ms(response: httpx.Response) -> float:
    """webug's own latency for this response, from its Server-Timing header."""
    match = re.search(r"app;dur=([0-9.]+)", response.headers.get("server-timing", ""))
    if match is None:
        raise RuntimeError("no Server-Timing header: is this webug?")
    return float(match[1])


async def timed_pair(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], raw, n: int
) -> tuple[list[float], list[float], list[float] | None]:
    """(server ms, client ms, raw ms) of n requests, each followed by the raw queries:
    interleaved, so a drift of the machine's speed affects both sides alike."""
    server, wall, raw_ms = [], [], []
    for i in range(n + 3):  # the first three warm caches and prepared statements
        started = time.perf_counter()
        response = await client.get(path, headers=headers)
        elapsed = (time.perf_counter() - started) * 1000
        if raw is not None:
            raw_started = time.perf_counter()
            await raw()
            raw_elapsed = (time.perf_counter() - raw_started) * 1000
        if i >= 3:
            server.append(server_ms(response))
            wall.append(elapsed)
            if raw is not None:
                raw_ms.append(raw_elapsed)
    return server, wall, raw_ms if raw is not None else None


def start_server(dsn: str, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBUG_")}
    env["WEBUG_DSN"] = dsn
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "app.main:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
    )


async def wait_healthy(base: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            try:
                if (await client.get(base + "/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("webug did not become healthy")


def proc_stat(pid: int) -> tuple[float, int]:
    """(CPU seconds used, peak RSS in KiB) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    hwm = next(
        line
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmHWM")
    )
    return cpu, int(hwm.split()[1])


async def measure_size(
    server_dsn: str, machines: int, requests: int
) -> tuple[str, dict[str, Result], int]:
    print(f"\n== {machines} machines")
    name, dsn, ids = await prepare(server_dsn, machines)
    port = free_port()
    proc = start_server(dsn, port)
    base = f"http://127.0.0.1:{port}"
    db = Database(dsn, Settings(dsn=dsn))
    await db.open()
    results: dict[str, Result] = {}
    try:
        await wait_healthy(base)
        async with db.connection() as conn:
            schema = await reflect(conn)
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            for case in cases(ids, schema):
                if case.path is None:
                    raw = await timed(lambda c=case: c.raw(db), requests)
                    results[case.name] = Result([], [], raw, None)
                    continue
                headers = dict(case.headers or {})
                if headers.get("HX-PTag") == "__current__":
                    headers["HX-PTag"] = (
                        await client.get(case.path, headers={"HX-Request": "true"})
                    ).headers["HX-PTag"]
                probe = await client.get(case.path, headers=headers)
                if probe.status_code >= 400:
                    print(f"  {case.name}: HTTP {probe.status_code}, skipped")
                    continue
                raw_call = (lambda c=case: c.raw(db)) if case.raw else None
                server, wall, raw = await timed_pair(client, case.path, headers, raw_call, requests)
                results[case.name] = Result(server, wall, raw, probe.status_code)
        _, peak_kib = proc_stat(proc.pid)
    finally:
        await db.close()
        proc.terminate()
        proc.wait(10)
    print_table(machines, results, peak_kib)
    return name, results, peak_kib


def med(values: list[float] | None) -> float | None:
    return statistics.median(values) if values else None


def ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def print_table(machines: int, results: dict[str, Result], peak_kib: int) -> None:
    print(
        f"| {machines:,} machines | server median ms | server p95 ms | client median ms"
        " | raw queries ms | server / raw | status |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        server, raw = med(r.server), med(r.raw)
        ratio = f"{server / raw:.2f}" if server and raw else "—"
        p95 = percentile(r.server, 95) if r.server else None
        print(
            f"| {name} | {ms(server)} | {ms(p95)} | {ms(med(r.client))} | {ms(raw)} | {ratio}"
            f" | {r.status or '—'} |"
        )
    print(f"peak RSS of the webug process: {peak_kib / 1024:.0f} MiB")


def print_targets(by_size: dict[int, dict[str, Result]], load: dict | None) -> None:
    """The issue's targets, checked against this run's figures (server medians)."""
    largest, smallest = max(by_size), min(by_size)
    big = by_size[largest]

    def server(name: str, size: int = largest) -> float:
        return med(by_size[size][name].server) or float("nan")

    def ratio(name: str) -> float:
        return server(name) / (med(big[name].raw) or float("nan"))

    checks = []
    for name in ("list: first page", "list: filtered", "list: deep keyset page"):
        checks.append((f"{name}: median <= 60 ms", server(name), 60))
        checks.append((f"{name}: <= 1.5x raw fetch of its rows", ratio(name), 1.5))
    if smallest != largest:
        checks.append((
            f"list first page at {largest:,} <= 1.5x at {smallest:,}",
            server("list: first page") / server("list: first page", smallest),
            1.5,
        ))  # fmt: skip
    for name in ("detail", f"detail ({LONG_HISTORY} history rows)"):
        checks.append((f"{name} <= 2x raw", ratio(name), 2))
    live_changed = server("live fragment (changed)")
    checks.append(("live fragment (changed): median <= 10 ms", live_changed, 10))
    checks.append((
        "unchanged poll (304) cheaper than changed: ratio < 1",
        server("live fragment (unchanged, 304)") / live_changed,
        1,
    ))  # fmt: skip
    if load:
        checks.append((f"{load['watchers']} watchers: p99 < 100 ms", load["p99"], 100))
        checks.append((f"{load['watchers']} watchers: errors = 0", load["errors"], 0))
    print(f"\n== targets ({largest:,} machines)")
    for label, value, limit in checks:
        ok = value <= limit if limit else value == 0
        if limit == 1 and "cheaper" in label:
            ok = value < 1
        print(f"{'PASS' if ok else 'FAIL'}  {label}: {value:.2f}")


CHURN_PER_SECOND = 25  # watched machines whose heartbeat changes each second


async def load_run(server_dsn: str, machines: int, watchers: int, seconds: float) -> dict:
    """`watchers` clients, each polling one machine's live fragment every 2 s, like htmx,
    while the heartbeats of some watched machines change (so some polls render anew)."""
    print(
        f"\n== load: {watchers} watchers x live fragment every 2 s for {seconds:.0f} s "
        f"({machines:,} machines; {CHURN_PER_SECOND} watched machines change per second)"
    )
    name, dsn, _ = await prepare(server_dsn, machines)
    conn = await asyncpg.connect(dsn)
    ids = [
        str(r[0])
        for r in await conn.fetch(
            "SELECT machine_id FROM machines ORDER BY random() LIMIT $1", watchers
        )
    ]
    port = free_port()
    proc = start_server(dsn, port)
    base = f"http://127.0.0.1:{port}"
    client_ms: list[float] = []
    server: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    try:
        await wait_healthy(base)
        cpu_before, _ = proc_stat(proc.pid)
        deadline = time.monotonic() + seconds
        limits = httpx.Limits(max_connections=watchers + 10, max_keepalive_connections=watchers)

        async def churn() -> None:
            rng = random.Random(1)
            while time.monotonic() < deadline:
                await conn.execute(
                    "INSERT INTO machine_agent_heartbeat (machine_id, agent_heartbeat_at)"
                    " SELECT unnest($1::uuid[]), now() ON CONFLICT (machine_id)"
                    " DO UPDATE SET agent_heartbeat_at = excluded.agent_heartbeat_at",
                    rng.sample(ids, min(CHURN_PER_SECOND, len(ids))),
                )
                await asyncio.sleep(1)

        async def watcher(client: httpx.AsyncClient, machine_id: str, offset: float) -> None:
            nonlocal errors
            ptag = None
            await asyncio.sleep(offset)  # spread the watchers over the interval
            while time.monotonic() < deadline:
                headers = {"HX-Request": "true", **({"HX-PTag": ptag} if ptag else {})}
                started = time.perf_counter()
                try:
                    r = await client.get(f"/machine/{machine_id}/live", headers=headers)
                    client_ms.append((time.perf_counter() - started) * 1000)
                    server.append(server_ms(r))
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                    if r.status_code not in (200, 304):
                        errors += 1
                    ptag = r.headers.get("HX-PTag", ptag)
                except httpx.HTTPError:
                    errors += 1
                await asyncio.sleep(max(0.0, 2.0 - (time.perf_counter() - started)))

        started = time.monotonic()
        async with httpx.AsyncClient(base_url=base, timeout=10, limits=limits) as client:
            await asyncio.gather(
                churn(), *(watcher(client, mid, 2.0 * i / watchers) for i, mid in enumerate(ids))
            )
        wall = time.monotonic() - started
        cpu_after, peak_kib = proc_stat(proc.pid)
    finally:
        await conn.close()
        proc.terminate()
        proc.wait(10)
        await admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    result = {
        "watchers": watchers,
        "requests": len(client_ms),
        "errors": errors,
        "p50": percentile(client_ms, 50),
        "p99": percentile(client_ms, 99),
        "server_p50": percentile(server, 50),
        "server_p99": percentile(server, 99),
        "cpu": 100 * (cpu_after - cpu_before) / wall,
    }
    by_status = ", ".join(f"{n} x {status}" for status, n in sorted(statuses.items()))
    print(
        f"requests {result['requests']} ({by_status})"
        f"  errors {errors}\n"
        f"client latency p50 {result['p50']:.1f} ms  p99 {result['p99']:.1f} ms"
        f"  max {max(client_ms):.1f} ms\n"
        f"server latency p50 {result['server_p50']:.1f} ms  p99 {result['server_p99']:.1f} ms\n"
        f"webug CPU {result['cpu']:.0f}% of one core; peak RSS {peak_kib / 1024:.0f} MiB"
    )
    return result


async def main() -> None:
    from app.main import GC_THRESHOLDS

    # The raw queries run with the server's collector settings: the ratios compare webug
    # with the same fetch, not with a differently tuned interpreter.
    gc.set_threshold(*GC_THRESHOLDS)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--watchers", type=int, default=200)
    parser.add_argument("--load-seconds", type=float, default=60)
    parser.add_argument("--load-machines", type=int, default=100_000)
    args = parser.parse_args()

    server_dsn = os.environ.get("WEBUG_TEST_DSN")
    if not server_dsn:
        from app.demo.embedded import start_server as start_embedded

        server_dsn = start_embedded(
            Path(tempfile.mkdtemp(prefix="webug-bench-")) / "pg", cleanup="delete"
        )
    print(
        f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
        f"PostgreSQL: {'WEBUG_TEST_DSN' if 'WEBUG_TEST_DSN' in os.environ else 'embedded'}"
    )
    by_size = {}
    for size in (int(s) for s in args.sizes.split(",") if s):
        name, by_size[size], _ = await measure_size(server_dsn, size, args.requests)
        await admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    load = None
    if args.watchers and args.load_seconds > 0:
        load = await load_run(server_dsn, args.load_machines, args.watchers, args.load_seconds)
    if by_size:
        print_targets(by_size, load)


if __name__ == "__main__":
    try:
        import uvloop  # as uvicorn runs webug: the raw queries get the same event loop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
