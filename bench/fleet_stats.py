"""What the fleet gauges and the forecast cost: their statements, the hardware decode and a
scrape, timed on a BMDB.

    python bench/fleet_stats.py --dsn postgresql://.../bmdb [--runs 5]

Seed one first (`python -m app seed --dsn ... --machines 100000`). Prints, median (and
fastest) of the runs, wall time as webug sees it (the statement on the wire, the rows
decoded by asyncpg):
- the collection's statements (app/bmdb/fleet_stats.py: the counts, then the hardware
  reports page by page) and the hardware decode (app/fleet/hardware.py), with the
  longest the event loop waited meanwhile, and as long a paced loop of plain arithmetic
  for comparison (on a shared machine, preemption alone makes waits that long);
- a scrape of the fleet gauges: from the collector's own memory, and from the host's
  snapshot file (the other workers);
- the forecast's statement (app/bmdb/forecast.py) at 24 and 168 hours.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402

from app.bmdb import fleet_stats  # noqa: E402
from app.bmdb.connection import Database  # noqa: E402
from app.bmdb.fleet_stats import decode, fleet_stats_statement  # noqa: E402
from app.bmdb.forecast import forecast_sql  # noqa: E402
from app.bmdb.reflection import reflect  # noqa: E402
from app.bmdb.workflows import BUILTIN, compiled  # noqa: E402
from app.config import Settings  # noqa: E402
from app.fleet.collector import FleetMetrics, FleetStats, read_hardware  # noqa: E402
from app.fleet.gauges import families  # noqa: E402
from app.fleet.host_share import HostShare  # noqa: E402
from app.slices import Pacer  # noqa: E402


def figure(seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return f"{statistics.median(ms):8.1f} ms ({min(ms):.1f})"


async def timed(runs: int, work) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = await work()
        times.append(time.perf_counter() - started)
    return times, result


async def longest_loop_wait(work) -> tuple[float, object]:
    """The longest the event loop kept a ticking task waiting while `work()` ran."""
    longest, running = 0.0, True

    async def tick() -> None:
        nonlocal longest
        last = time.perf_counter()
        while running:
            await asyncio.sleep(0)
            now = time.perf_counter()
            longest, last = max(longest, now - last), now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    result = await work()
    running = False
    await ticker
    return longest, result


async def paced_arithmetic(seconds: float) -> None:
    pacer, until, x = Pacer(), time.perf_counter() + seconds, 0
    while time.perf_counter() < until:
        x += sum(range(50))
        await pacer.turn()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    settings = Settings(dsn=args.dsn, statement_timeout_ms=60_000)
    database = Database(args.dsn, settings)
    await database.open()
    try:
        async with database.connection() as conn:
            schema = await reflect(conn)
            machines = await conn.fetchval("SELECT count(*) FROM machines")
            statement = fleet_stats_statement(schema, BUILTIN)
            counts_s, doc = await timed(
                args.runs, lambda: conn.fetchval(statement.sql, *statement.params)
            )
            read_s, decode_s, waits = [], [], []
            for _ in range(args.runs):
                steps = dict.fromkeys(("hardware_statements", "hardware_decode"), 0.0)
                wait, hardware = await longest_loop_wait(
                    lambda s=steps: read_hardware(conn, database.dialect, schema, s)
                )
                read_s.append(steps["hardware_statements"])
                decode_s.append(steps["hardware_decode"])
                waits.append(wait)
            reports, pages = hardware.reports, hardware.reports // fleet_stats.HARDWARE_PAGE + 1
            forecasts = {}
            for hours in (24, 168):
                sql, params = forecast_sql(
                    schema, compiled(schema), timedelta(hours=hours), timedelta(seconds=120)
                )
                forecasts[hours], _ = await timed(
                    args.runs, lambda s=sql, p=params: conn.fetchval(s, *p)
                )
    finally:
        await database.close()

    # The same for plain arithmetic paced alike as long: on a shared machine, preemption
    # alone makes waits this long.
    decode_time = statistics.median(read_s) + statistics.median(decode_s)
    noise = [(await longest_loop_wait(lambda: paced_arithmetic(decode_time)))[0]
             for _ in range(args.runs)]  # fmt: skip
    stats = decode(statement, schema, json.loads(doc))
    snapshot = {
        "families": [f.to_json() for f in families(stats, hardware)],
        "collected_at": time.time(), "duration": 1.0, "steps": {}, "failures": 0,
        "interval": 60.0,
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as directory:
        holder, other = (FleetStats(settings, BUILTIN, args.dsn) for _ in range(2))
        holder.share = HostShare(Path(directory), "bench")
        holder.share.try_hold()  # the collector answers from memory, the others from the file
        holder.latest = snapshot
        holder.share.publish(snapshot)
        app = SimpleNamespace(state=SimpleNamespace(settings=settings, fleet_stats=holder))
        registry = CollectorRegistry(auto_describe=False)
        registry.register(FleetMetrics(app))
        scrape_s, body = await timed(
            args.runs, lambda: asyncio.to_thread(generate_latest, registry)
        )

        def from_file() -> bytes:
            # A process that has not read this snapshot yet: it parses the file.
            other.share = HostShare(Path(directory), "bench")
            app.state.fleet_stats = other
            return generate_latest(registry)

        file_scrape_s, _ = await timed(args.runs, lambda: asyncio.to_thread(from_file))
        holder.share.release()

    print(f"fleet gauges and forecast on a BMDB of {machines} machines, {args.runs} runs:"
          " median (fastest)")  # fmt: skip
    print(f"  counts statement        {figure(counts_s)}   ({len(doc)} bytes of JSON)")
    print(f"  hardware statements     {figure(read_s)}   ({reports} reports in {pages} pages)")
    print(f"  hardware decode         {figure(decode_s)}")
    print(f"  longest event-loop wait {figure(waits)}   (reading and decoding the reports;"
          f" paced arithmetic as long: {figure(noise).strip()})")  # fmt: skip
    samples = sum(1 for line in body.splitlines() if not line.startswith(b"#"))
    print(f"  scrape, collector       {figure(scrape_s)}   ({len(body)} bytes, {samples} samples)")
    print(f"  scrape, other workers   {figure(file_scrape_s)}   (the snapshot file parsed)")
    for hours, seconds in forecasts.items():
        print(f"  forecast, {hours:>3} h        {figure(seconds)}")


if __name__ == "__main__":
    asyncio.run(main())
