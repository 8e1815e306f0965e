"""Time webug's fleet-wide history reads (failure groups, activity) on a BMDB.

    .venv/bin/python bench/history_reads.py --dsn DSN [--runs 3]

Runs each read's statement as webug does (app/bmdb, on the connection kept for history
reads, with follower reads on CockroachDB), without webug's sharing, and prints the
median and fastest of `--runs` runs in a Markdown table, with the sizes it read. For the
figures of docs/using.md: seed a test database with `python -m app seed --dsn DSN --machines
100000`, then add history rows with `psql "$DSN" -f bench/history_rows.sql`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # webug's app/, run from anywhere

from app.bmdb import activity, failures  # noqa: E402
from app.bmdb import machines as machine_list  # noqa: E402
from app.bmdb.connection import Database, Reader  # noqa: E402
from app.bmdb.filters import MachineFilters, build_where  # noqa: E402
from app.bmdb.reflection import reflect  # noqa: E402
from app.config import Settings  # noqa: E402


async def timed(runs: int, read: Callable[[], Awaitable[object]]) -> tuple[list[float], object]:
    times, value = [], None
    for _ in range(runs):
        started = time.perf_counter()
        value = await read()
        times.append((time.perf_counter() - started) * 1000)
    return times, value


async def main(dsn: str, runs: int) -> None:
    db = Database(dsn, Settings(dsn=dsn, history_timeout_ms=600_000, statement_timeout_ms=600_000))
    await db.open()
    try:
        async with db.connection() as conn:
            schema = await reflect(conn)
            machines = await conn.fetchval("SELECT count(*) FROM machines")
            rows = await conn.fetchval("SELECT count(*) FROM work_history")
        print(f"{machines} machines, {rows} work_history rows, {runs} runs each\n")
        print("| read | rows it groups | groups | median ms | fastest ms |")
        print("|---|---|---:|---:|---:|")
        largest = None
        for label, read in [
            ("failure groups, active backoffs", lambda: failures.backoff_groups(Reader(db))),
            ("failure groups, history 24 h", lambda: failures.history_groups(
                Reader(db), timedelta(hours=24))),
            ("failure groups, history 7 d", lambda: failures.history_groups(
                Reader(db), timedelta(days=7))),
            ("failure groups, history 30 d", lambda: failures.history_groups(
                Reader(db), timedelta(days=30))),
            ("activity (hourly buckets, 7 d)", lambda: activity.activity(Reader(db))),
        ]:  # fmt: skip
            times, value = await timed(runs, read)
            if isinstance(value, failures.FailureGroups):
                size = f"{value.events} failures on {value.machines} machines"
                groups = str(value.total_groups)
                if "24 h" in label and value.groups:
                    largest = value.groups[0]
            else:
                size = f"{sum(b.n for b in value.daily)} events"
                groups = f"{len(value.hourly)} + {len(value.daily)} buckets"
            print(
                f"| {label} | {size} | {groups} | {statistics.median(times):.0f}"
                f" | {min(times):.0f} |"
            )
        if largest is not None:  # the list of the largest group's machines (failure=)
            where = build_where(
                MachineFilters(failure=f"history-24h-{largest.digest}"), schema,
                largest.machine_ids,
            )  # fmt: skip
            layout = machine_list.MachineLayout.full(schema)
            times, _ = await timed(runs, lambda: machine_list.machine_list(
                Reader(db), layout, where, after=None, limit=101, with_total=True))  # fmt: skip
            print(
                f"| list page of the largest 24 h group (`failure=`) | {largest.machines}"
                f" machine IDs | – | {statistics.median(times):.0f} | {min(times):.0f} |"
            )
    finally:
        await db.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.dsn, args.runs))
