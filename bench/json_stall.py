"""Does a big JSON twin hold webug's event loop? Size and time of one, and the worst
/healthz latency while it is served.

    .venv/bin/python bench/json_stall.py [--machines 5000] [--rounds 5]
                                         [--path '/?format=json&limit=5000']
                                         [--bmdb DSN] [--in-process]

Uses the PostgreSQL server of WEBUG_TEST_DSN (else --server-dsn) to seed a fresh BMDB
of `--machines` machines (dropped at the end), or an already seeded one with --bmdb.
Starts uvicorn (one worker, as bench/webug_process.py does), warms it up, then for each
round requests PATH while a thread of its own polls /healthz every 10 ms: /healthz
answers in about a millisecond, so its worst latency during the request is the longest
time the request kept the event loop from anything else. Prints, per round and as
medians: the response's size, its time (client, and webug's own Server-Timing), the
worst and median /healthz latency during it, and the worst without it (the baseline:
on a busy machine it is not small). --in-process also runs the app inside the bench with
a task ticking every millisecond, whose longest gaps are the event loop's longest holds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bmdb  # noqa: E402
import webug_process  # noqa: E402

POLL_EVERY = 0.010  # seconds between /healthz requests
BASELINE = 1.0  # seconds of /healthz polling with nothing else going on


class HealthPoller(threading.Thread):
    """Polls /healthz on its own connection and thread (so the client's own work on the
    big response cannot delay it), recording (start, latency) of every answer."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=60) as client:
            while not self.stop.is_set():
                started = time.perf_counter()
                client.get(self.base + "/healthz").raise_for_status()
                self.samples.append((started, time.perf_counter() - started))
                time.sleep(POLL_EVERY)

    def worst(self, begin: float, end: float) -> tuple[float, float]:
        """(worst, median) latency of the polls that overlapped [begin, end], in ms."""
        during = [lat for at, lat in self.samples if at < end and at + lat > begin]
        if not during:
            return float("nan"), float("nan")
        return max(during) * 1000, statistics.median(during) * 1000


def one_round(client: httpx.Client, poller: HealthPoller, url: str) -> dict[str, float]:
    begin = time.perf_counter()
    response = client.get(url)
    end = time.perf_counter()
    response.raise_for_status()
    is_json = response.headers["content-type"].startswith("application/json")
    time.sleep(5 * POLL_EVERY)  # the poll in flight when it ended answers
    worst, median = poller.worst(begin, end)
    return {
        "bytes": len(response.content),
        "client_ms": (end - begin) * 1000,
        "server_ms": webug_process.server_ms(response),
        "stall_ms": worst,
        "healthz_median_ms": median,
        "items": len(response.json().get("machines", ())) if is_json else float("nan"),
    }


def measure(base: str, path: str, rounds: int) -> None:
    poller = HealthPoller(base)
    with httpx.Client(timeout=300) as client:
        client.get(base + path).raise_for_status()  # warm: schema, counts, statement cache
        poller.start()
        time.sleep(BASELINE)
        baseline, baseline_median = poller.worst(0, time.perf_counter())
        print(f"/healthz alone: worst {baseline:.1f} ms, median {baseline_median:.2f} ms"
              f" ({len(poller.samples)} polls)")  # fmt: skip
        results = []
        for i in range(rounds):
            r = one_round(client, poller, base + path)
            results.append(r)
            print(
                f"round {i + 1}: {r['bytes'] / 1e6:.1f} MB, {r['items']:.0f} machines,"
                f" {r['client_ms']:.0f} ms (server {r['server_ms']:.0f} ms),"
                f" worst /healthz {r['stall_ms']:.0f} ms (median {r['healthz_median_ms']:.1f})"
            )
            time.sleep(0.3)
        poller.stop.set()
        poller.join()
    med = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print(json.dumps({"path": path, "baseline_worst_ms": round(baseline, 1),
                      **{k: round(v, 1) for k, v in med.items()}}))  # fmt: skip


async def in_process(dsn: str, path: str, rounds: int) -> None:
    """The app in this process (lifespan included) with a task ticking every millisecond:
    the longest gaps between ticks are the longest times anything held the event loop."""
    os.environ["WEBUG_DSN"] = dsn
    sys.path.insert(0, str(webug_process.REPO))
    from app.main import create_app

    app = create_app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            (await client.get(path)).raise_for_status()  # warm
            for i in range(rounds):
                gaps: list[float] = []
                done = asyncio.Event()

                async def ticker(gaps: list[float] = gaps, done: asyncio.Event = done) -> None:
                    last = time.perf_counter()
                    while not done.is_set():
                        await asyncio.sleep(0.001)
                        now = time.perf_counter()
                        gaps.append(now - last)
                        last = now

                task = asyncio.create_task(ticker())
                begin = time.perf_counter()
                response = await client.get(path)
                elapsed = time.perf_counter() - begin
                done.set()
                await task
                longest = sorted(gaps, reverse=True)[:3]
                print(f"in-process round {i + 1}: {len(response.content) / 1e6:.1f} MB in"
                      f" {elapsed * 1000:.0f} ms; longest loop holds (incl. the 1 ms sleep):"
                      f" {', '.join(f'{g * 1000:.0f}' for g in longest)} ms")  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--machines", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--path", default="/?format=json&limit=5000")
    parser.add_argument("--bmdb", help="an already seeded BMDB (not dropped)")
    parser.add_argument("--server-dsn", default=os.environ.get("WEBUG_TEST_DSN"))
    parser.add_argument(
        "--in-process", action="store_true",
        help="also run the app in this process and time the event loop's longest holds"
        " (the client's own work on the response is on that loop too)",
    )  # fmt: skip
    args = parser.parse_args()
    name = None
    dsn = args.bmdb
    if dsn is None:
        if not args.server_dsn:
            parser.error("WEBUG_TEST_DSN or --server-dsn (or --bmdb) is needed")
        print(f"seeding {args.machines} machines...")
        name, dsn, _ = await bmdb.prepare(args.server_dsn, args.machines)
    try:
        async with webug_process.running(dsn) as (base, _proc):
            await asyncio.to_thread(measure, base, args.path, args.rounds)
        if args.in_process:
            await in_process(dsn, args.path, args.rounds)
    finally:
        if name is not None:
            await bmdb.drop(args.server_dsn, name)


if __name__ == "__main__":
    asyncio.run(main())
