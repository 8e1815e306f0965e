"""Scale-out soak: webug as replicas of several uvicorn workers behind a load balancer,
polled by many browsers.

    .venv/bin/python bench/scale_out.py [--replicas 2] [--workers 3] [--watchers 200]
                                        [--seconds 60] [--machines 2000] [--idle 10]
                                        [--compare]
    make bench BENCH_ARGS="--scale-out"   # the same, with its defaults

Seeds a BMDB (`python -m app migrate|seed`, bench/bmdb.py) on the PostgreSQL server of
WEBUG_TEST_DSN, else an embedded one. Starts `replicas` webug processes, each
`uvicorn app.main:app --workers N` and nothing else set (no PROMETHEUS_MULTIPROC_DIR),
and in front of them a round-robin TCP proxy of its own (asyncio, a process of its
own): each new connection goes to the next replica, and within a replica the kernel
hands it to any worker. Then `watchers` clients poll the live fragments as htmx does
(HX-Request, the HX-PTag of the last answer), each at its view's interval and each
poll on a new connection, as browsers behind a load balancer without sticky sessions:
the list (unfiltered and filtered), a machine, a watch list of ten machines, the
sessions list, a session and the overview, a sixth of the watchers each. Nothing writes
to the BMDB during the soak; what changes is what time changes (a backoff ends, a
session expires, a heartbeat grows old), most in the first minutes after the seed.

Prints, per fragment: polls, 304s, 200s whose data changed (the md5 in the new tag
differs from the one held) and 200s whose data did not (a process that failed to
answer another's tag), errors, and p50/p99 at the client (through the proxy) and in
webug (its Server-Timing). Then the BMDB statements webug ran, per second and per
request (webug's own /metrics, one scrape per replica: the sum over its workers),
beside the transactions the BMDB counted
(pg_stat_database: those statements, plus each new connection's set-up and statement
preparation); and webug's connections to the BMDB (pg_stat_activity) at peak and at
rest (`idle` + 3 s after the soak: WEBUG_POOL_IDLE_SECONDS is set to `idle`).
`--compare` first runs the same soak against one process (one replica, one worker).
Traffic goes to 127.0.0.1 only; everything stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import sys
import time
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

import asyncpg
import bmdb
import httpx
import webug_process
from load_run import percentile

TARGET_304_SHARE = 0.98
REST_MARGIN = 3.0  # seconds past WEBUG_POOL_IDLE_SECONDS before connections are counted
WATCHED_PER_LIST = 10


# --- the load balancer -------------------------------------------------------------------


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with suppress(ConnectionError, OSError):
            writer.close()


async def _balance(port: int, backends: list[int]) -> None:
    turn = 0

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal turn
        backend = backends[turn % len(backends)]
        turn += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", backend)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(connected, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def run_balancer(port: int, backends: list[int]) -> None:
    """A round-robin TCP proxy on 127.0.0.1:port in front of 127.0.0.1:backends."""
    try:
        import uvloop

        uvloop.run(_balance(port, backends))
    except ImportError:
        asyncio.run(_balance(port, backends))


# --- webug, scaled -----------------------------------------------------------------------


@asynccontextmanager
async def scaled_webug(dsn: str, replicas: int, workers: int, idle: float):
    """`replicas` × `--workers workers` webug behind the balancer: (its URL, the replicas')."""
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(WEBUG_DSN=dsn, WEBUG_POOL_IDLE_SECONDS=str(idle))
    ports = [webug_process.free_port() for _ in range(replicas)]
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port),
            "--workers", str(workers), "--log-level", "warning", "--no-access-log",
            cwd=webug_process.REPO, env=env, stdin=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        for port in ports
    ]
    balancer_port = webug_process.free_port()
    balancer = multiprocessing.get_context("spawn").Process(
        target=run_balancer, args=(balancer_port, ports), daemon=True
    )
    balancer.start()
    replica_urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for url in replica_urls:
            await webug_process.wait_healthy(url)
        await asyncio.sleep(2 + workers)  # every worker up and reflected, not only the first
        yield f"http://127.0.0.1:{balancer_port}", replica_urls
    finally:
        balancer.terminate()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            await proc.wait()
        balancer.join(5)


# --- the watchers ------------------------------------------------------------------------


@dataclass
class FragmentStats:
    watchers: int = 0
    requests: int = 0  # every one, each watcher's first (no tag held yet) too
    polls: int = 0  # with a tag held: what a 304 can answer
    not_modified: int = 0
    changed: int = 0  # 200, data changed (another md5)
    missed: int = 0  # 200, data unchanged: a 304 that was not
    errors: int = 0
    ms: list[float] = field(default_factory=list)  # at the client, through the balancer
    server_ms: list[float] = field(default_factory=list)  # webug's own (Server-Timing)

    @property
    def share(self) -> float:
        """304s among the polls whose data was unchanged."""
        unchanged = self.not_modified + self.missed
        return self.not_modified / unchanged if unchanged else 1.0


def data_part(ptag: str) -> str:
    """The view and the md5 of the data: a tag without the count stamp it may carry."""
    return ".".join(ptag.split(".")[:2])


async def fragments(dsn: str, rng: random.Random) -> dict[str, tuple[int, list[str]]]:
    """Fragment -> (its view's poll interval, the URLs its watchers poll)."""
    conn = await asyncpg.connect(dsn)
    try:
        machines = [str(r[0]) for r in await conn.fetch("SELECT machine_id FROM machines")]
        sessions = [str(r[0]) for r in await conn.fetch("SELECT session_id FROM sessions")]
    finally:
        await conn.close()
    watch = [
        "/watch?ids=" + ",".join(rng.sample(machines, WATCHED_PER_LIST)) for _ in range(20)
    ]
    return {
        "list": (5, ["/", "/?limit=50", "/?provider=Equinix", "/?has=AgentStarted&limit=50"]),
        "machine": (2, [f"/machine/{m}/live" for m in rng.sample(machines, 50)]),
        "watch": (5, watch),
        "sessions": (5, ["/sessions", "/sessions?state=alive", "/sessions?state=expired"]),
        "session": (2, [f"/session/{s}/live" for s in sessions[:50]]),
        "overview": (10, ["/overview"]),
    }


async def watch(
    base: str, path: str, every: float, offset: float, deadline: float, stats: FragmentStats
) -> None:
    """One browser's poll of one fragment, each poll on a new connection."""
    ptag = None
    await asyncio.sleep(offset)
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, timeout=15, limits=limits) as client:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            headers = {"HX-Request": "true", **({"HX-PTag": ptag} if ptag else {})}
            try:
                r = await client.get(path, headers=headers)
            except httpx.HTTPError:
                r = None
            stats.requests += 1
            if ptag is not None:
                stats.polls += 1
                stats.ms.append((time.perf_counter() - started) * 1000)
                if r is not None and "server-timing" in r.headers:
                    stats.server_ms.append(webug_process.server_ms(r))
                if r is None or r.status_code not in (200, 304):
                    stats.errors += 1
                elif r.status_code == 304:
                    stats.not_modified += 1
                elif data_part(r.headers.get("HX-PTag", "")) == data_part(ptag):
                    stats.missed += 1
                else:
                    stats.changed += 1
            if r is not None and r.status_code in (200, 304):
                ptag = r.headers.get("HX-PTag", ptag)
            await asyncio.sleep(max(0.0, every - (time.perf_counter() - started)))


# --- the BMDB's side ---------------------------------------------------------------------


async def transactions(server_dsn: str, database: str) -> int:
    conn = await asyncpg.connect(server_dsn)
    try:
        return await conn.fetchval(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1",
            database,
        )
    finally:
        await conn.close()


class ConnectionWatch:
    """webug's sessions on the BMDB (pg_stat_activity), sampled 4 times a second."""

    def __init__(self, server_dsn: str, database: str) -> None:
        self.server_dsn, self.database = server_dsn, database
        self.peak = 0

    async def count(self, conn: asyncpg.Connection) -> int:
        return await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = $1 AND application_name = 'webug'",
            self.database,
        )

    async def sample_until(self, deadline: float) -> None:
        conn = await asyncpg.connect(self.server_dsn)
        try:
            while time.monotonic() < deadline:
                self.peak = max(self.peak, await self.count(conn))
                await asyncio.sleep(0.25)
        finally:
            await conn.close()

    async def now(self) -> int:
        conn = await asyncpg.connect(self.server_dsn)
        try:
            return await self.count(conn)
        finally:
            await conn.close()


async def metrics_statements(replicas: list[str]) -> float:
    """webug_db_query_duration_seconds_count summed over replicas: one scrape each, which
    reports the sum over its workers."""
    total = 0.0
    async with httpx.AsyncClient(timeout=10) as client:
        for url in replicas:
            text = (await client.get(url + "/metrics")).text
            for line in text.splitlines():
                if line.startswith("webug_db_query_duration_seconds_count"):
                    total += float(line.split()[-1])
    return total


# --- one soak ----------------------------------------------------------------------------


@dataclass
class Soak:
    replicas: int
    workers: int
    seconds: float
    by_fragment: dict[str, FragmentStats]
    statements: int
    metrics_statements: float
    peak_connections: int
    rest_connections: int

    @property
    def requests(self) -> int:
        return sum(s.requests for s in self.by_fragment.values())

    @property
    def total(self) -> FragmentStats:
        total = FragmentStats()
        for s in self.by_fragment.values():
            for name in (
                "watchers", "requests", "polls", "not_modified", "changed", "missed", "errors"
            ):  # fmt: skip
                setattr(total, name, getattr(total, name) + getattr(s, name))
            total.ms += s.ms
            total.server_ms += s.server_ms
        return total


async def soak(
    server_dsn: str, database: str, dsn: str, args: argparse.Namespace, replicas: int,
    workers: int,
) -> Soak:  # fmt: skip
    views = await fragments(dsn, random.Random(1))
    by_fragment = {name: FragmentStats() for name in views}
    connections = ConnectionWatch(server_dsn, database)
    async with scaled_webug(dsn, replicas, workers, args.idle) as (base, replica_urls):
        before = await transactions(server_dsn, database)
        metrics_before = await metrics_statements(replica_urls)
        deadline = time.monotonic() + args.seconds
        tasks = [connections.sample_until(deadline + 1)]
        names = list(views)
        for i in range(args.watchers):
            name = names[i % len(names)]
            every, paths = views[name]
            by_fragment[name].watchers += 1
            path = paths[(i // len(names)) % len(paths)]
            offset = every * i / args.watchers  # spread over the interval
            tasks.append(watch(base, path, every, offset, deadline, by_fragment[name]))
        await asyncio.gather(*tasks)
        metrics_after = await metrics_statements(replica_urls)
        await asyncio.sleep(args.idle + REST_MARGIN)
        rest = await connections.now()
        after = await transactions(server_dsn, database)
    return Soak(
        replicas, workers, args.seconds, by_fragment, after - before,
        metrics_after - metrics_before, connections.peak, rest,
    )  # fmt: skip


def _p50_p99(ms: list[float]) -> str:
    return f"{percentile(ms, 50):.1f} / {percentile(ms, 99):.1f}" if ms else "-"


def report(result: Soak, args: argparse.Namespace) -> bool:
    """Prints the soak; whether it met the targets."""
    print(
        f"\n== {result.replicas} replica(s) × --workers {result.workers}"
        f"{' behind a round-robin TCP proxy' if result.replicas > 1 else ''}:"
        f" {args.watchers} watchers for {args.seconds:.0f} s, each poll on a new connection"
    )
    print(
        f"{'fragment':10} {'watchers':>8} {'polls':>6} {'304':>6} {'200 chg':>7}"
        f" {'200 same':>8} {'errors':>6} {'304 share':>9}   client p50/p99 ms"
        f"   server p50/p99 ms"
    )
    rows = [*result.by_fragment.items(), ("all", result.total)]
    for name, s in rows:
        print(
            f"{name:10} {s.watchers:>8} {s.polls:>6} {s.not_modified:>6} {s.changed:>7}"
            f" {s.missed:>8} {s.errors:>6} {100 * s.share:>8.1f}%   {_p50_p99(s.ms):>17}"
            f"   {_p50_p99(s.server_ms):>17}"
        )
    requests, seconds = result.requests, result.seconds
    print(
        f"BMDB statements webug ran (its /metrics, summed over workers):"
        f" {result.metrics_statements:.0f} = {result.metrics_statements / seconds:.1f}/s,"
        f" {result.metrics_statements / requests:.3f} per request ({requests} requests)\n"
        f"BMDB transactions (pg_stat_database; also each new connection's set-up and"
        f" statement preparation): {result.statements} = {result.statements / seconds:.1f}/s"
    )
    budget = result.replicas * result.workers * (2 * args.pool_max + 1)
    print(
        f"BMDB connections: peak {result.peak_connections}, at rest {result.rest_connections}"
        f" ({args.idle + REST_MARGIN:.0f} s after the soak, WEBUG_POOL_IDLE_SECONDS={args.idle:g});"
        f" budget {result.replicas} × {result.workers} × (2 × {args.pool_max} + 1) = {budget}"
    )
    total = result.total
    met_share = total.share >= TARGET_304_SHARE
    print(
        f"{'PASS' if met_share else 'FAIL'}  unchanged polls answered 304:"
        f" {100 * total.share:.1f}% (target ≥ {100 * TARGET_304_SHARE:.0f}%)\n"
        f"{'PASS' if total.errors == 0 else 'FAIL'}  errors: {total.errors} (target 0)"
    )
    return met_share and total.errors == 0


async def run(server_dsn: str, args: argparse.Namespace) -> bool:
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f};"
        f" {args.machines:,} machines; webug's defaults, WEBUG_POOL_IDLE_SECONDS={args.idle:g}"
    )
    database, dsn, _ = await bmdb.prepare(server_dsn, args.machines)
    try:
        met = True
        if args.compare:
            single = await soak(server_dsn, database, dsn, args, 1, 1)
            met = report(single, args) and met
        scaled = await soak(server_dsn, database, dsn, args, args.replicas, args.workers)
        met = report(scaled, args) and met
        if args.compare:
            def per_request(soak: Soak) -> float:
                return soak.metrics_statements / soak.requests

            print(
                f"\nstatements per request: one process {per_request(single):.3f},"
                f" scaled {per_request(scaled):.3f}"
                f" ({per_request(scaled) / per_request(single):.2f}×)"
            )
        return met
    finally:
        await bmdb.drop(server_dsn, database)


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--watchers", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--machines", type=int, default=2000)
    parser.add_argument("--idle", type=float, default=60, help="WEBUG_POOL_IDLE_SECONDS")
    parser.add_argument("--compare", action="store_true", help="one process first")
    args = parser.parse_args(argv)
    args.pool_max = 10  # WEBUG_POOL_MAX_SIZE's default: the bench leaves it
    return args


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    server_dsn = os.environ.get("WEBUG_TEST_DSN") or bmdb.embedded_server()
    return 0 if asyncio.run(run(server_dsn, args)) else 1


if __name__ == "__main__":
    sys.exit(main())
