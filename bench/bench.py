"""Benchmark: webug page latency next to the raw queries it needs, at several fleet sizes,
then a bounded load run of watchers polling live fragments.

    .venv/bin/python bench/bench.py [--sizes 1000,10000,100000] [--requests 40]
                                    [--watchers 200] [--load-seconds 60]

Uses the PostgreSQL server of WEBUG_TEST_DSN when set, else an embedded one. For each
size it seeds a fresh database, starts uvicorn (one worker) on a free loopback port and
prints, per page: median and p95 latency over HTTP, the median time of the same
repository queries run directly on asyncpg (no HTTP, no rendering), and their ratio;
then the server's peak RSS. The load run sends traffic to 127.0.0.1 only and stops by
itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
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

from app.config import Settings  # noqa: E402
from app.db import Database  # noqa: E402
from app.dsn import with_database  # noqa: E402
from app.machine_filters import MachineFilters, build_where  # noqa: E402
from app.reflection import reflect  # noqa: E402
from app.repository import machines as repo  # noqa: E402

LONG_HISTORY = 500


@dataclass
class Case:
    name: str
    path: str
    raw: Callable[[Database], Awaitable[object]] | None
    headers: dict[str, str] | None = None


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
    from app.demo.seed import seed_fleet
    from app.migrate import migrate

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
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return name, dsn, ids


def cases(ids: dict[str, str], schema) -> list[Case]:
    """Each page, and the same repository calls without HTTP or rendering."""
    filters = MachineFilters(provider="Equinix", status="Running")
    unfiltered = MachineFilters()

    async def list_raw(
        db: Database, f: MachineFilters = unfiltered, after=None, facets: bool = True
    ) -> None:
        async with db.snapshot() as snap:
            where = build_where(f, schema)
            page = await repo.machine_page(snap, where, after=after and uuid.UUID(after), limit=101)
            await repo.fill_details(snap, schema, page[:100])
            await repo.count_machines(snap, where)
            if facets:
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

    htmx = {"HX-Request": "true"}
    return [
        Case("list: first page", "/", list_raw),
        Case(
            "list: filtered", "/?provider=Equinix&status=Running", lambda db: list_raw(db, filters)
        ),
        Case(
            "list: deep keyset page",
            f"/?after={ids['deep']}",
            lambda db: list_raw(db, after=ids["deep"]),
        ),
        Case("list: poll fragment", "/", lambda db: list_raw(db, facets=False), htmx),
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
        Case("overview", "/overview", None),
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


async def measure_size(server_dsn: str, machines: int, requests: int) -> tuple[str, dict, int]:
    print(f"\n== {machines} machines")
    name, dsn, ids = await prepare(server_dsn, machines)
    port = free_port()
    proc = start_server(dsn, port)
    base = f"http://127.0.0.1:{port}"
    db = Database(dsn, Settings(dsn=dsn))
    await db.open()
    results = {}
    try:
        await wait_healthy(base)
        async with db.connection() as conn:
            schema = await reflect(conn)
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            for case in cases(ids, schema):
                headers = dict(case.headers or {})
                if headers.get("HX-PTag") == "__current__":
                    headers["HX-PTag"] = (
                        await client.get(case.path, headers={"HX-Request": "true"})
                    ).headers["HX-PTag"]
                probe = await client.get(case.path, headers=headers)
                if probe.status_code >= 400:
                    print(f"  {case.name}: HTTP {probe.status_code}, skipped")
                    continue
                page = await timed(
                    lambda c=case, h=headers: client.get(c.path, headers=h), requests
                )
                raw = await timed(lambda c=case: c.raw(db), requests) if case.raw else None
                results[case.name] = (page, raw, probe.status_code)
        _, peak_kib = proc_stat(proc.pid)
    finally:
        await db.close()
        proc.terminate()
        proc.wait(10)
    print_table(machines, results, peak_kib)
    return name, results, peak_kib


def print_table(machines: int, results: dict, peak_kib: int) -> None:
    print(f"| {machines} machines | median ms | p95 ms | raw queries ms | ratio | status |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (page, raw, status) in results.items():
        med = statistics.median(page)
        raw_med = statistics.median(raw) if raw else None
        ratio = f"{med / raw_med:.2f}" if raw_med else "—"
        raw_text = f"{raw_med:.2f}" if raw_med else "—"
        print(
            f"| {name} | {med:.2f} | {percentile(page, 95):.2f} | {raw_text} | {ratio} | {status} |"
        )
    print(f"peak RSS of the webug process: {peak_kib / 1024:.0f} MiB")


async def load_run(server_dsn: str, machines: int, watchers: int, seconds: float) -> None:
    """`watchers` clients, each polling one machine's live fragment every 2 s, like htmx."""
    print(
        f"\n== load: {watchers} watchers x live fragment every 2 s for {seconds:.0f} s "
        f"({machines} machines)"
    )
    name, dsn, _ = await prepare(server_dsn, machines)
    conn = await asyncpg.connect(dsn)
    ids = [
        str(r[0])
        for r in await conn.fetch(
            "SELECT machine_id FROM machines ORDER BY random() LIMIT $1", watchers
        )
    ]
    await conn.close()
    port = free_port()
    proc = start_server(dsn, port)
    base = f"http://127.0.0.1:{port}"
    latencies: list[float] = []
    errors = 0
    try:
        await wait_healthy(base)
        cpu_before, _ = proc_stat(proc.pid)
        deadline = time.monotonic() + seconds
        limits = httpx.Limits(max_connections=watchers + 10, max_keepalive_connections=watchers)

        async def watcher(client: httpx.AsyncClient, machine_id: str, offset: float) -> None:
            nonlocal errors
            ptag = None
            await asyncio.sleep(offset)  # spread the watchers over the interval
            while time.monotonic() < deadline:
                headers = {"HX-Request": "true", **({"HX-PTag": ptag} if ptag else {})}
                started = time.perf_counter()
                try:
                    r = await client.get(f"/machine/{machine_id}/live", headers=headers)
                    latencies.append((time.perf_counter() - started) * 1000)
                    if r.status_code not in (200, 304):
                        errors += 1
                    ptag = r.headers.get("HX-PTag", ptag)
                except httpx.HTTPError:
                    errors += 1
                await asyncio.sleep(max(0.0, 2.0 - (time.perf_counter() - started)))

        started = time.monotonic()
        async with httpx.AsyncClient(base_url=base, timeout=10, limits=limits) as client:
            await asyncio.gather(
                *(watcher(client, mid, 2.0 * i / watchers) for i, mid in enumerate(ids))
            )
        wall = time.monotonic() - started
        cpu_after, peak_kib = proc_stat(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)
        await admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(
        f"requests {len(latencies)}  errors {errors}  p50 {percentile(latencies, 50):.1f} ms"
        f"  p99 {percentile(latencies, 99):.1f} ms  max {max(latencies):.1f} ms"
    )
    print(
        f"webug CPU {100 * (cpu_after - cpu_before) / wall:.0f}% of one core;"
        f" peak RSS {peak_kib / 1024:.0f} MiB"
    )


async def main() -> None:
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
        from app.embedded import start_server as start_embedded

        server_dsn = start_embedded(
            Path(tempfile.mkdtemp(prefix="webug-bench-")) / "pg", cleanup="delete"
        )
    print(
        f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
        f"PostgreSQL: {'WEBUG_TEST_DSN' if 'WEBUG_TEST_DSN' in os.environ else 'embedded'}"
    )
    for size in (int(s) for s in args.sizes.split(",") if s):
        name, _, _ = await measure_size(server_dsn, size, args.requests)
        await admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if args.watchers and args.load_seconds > 0:
        await load_run(server_dsn, args.load_machines, args.watchers, args.load_seconds)


if __name__ == "__main__":
    asyncio.run(main())
