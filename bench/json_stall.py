"""Does a big JSON twin hold webug's event loop? Size and time of one, and the worst
/healthz latency while it is served.

    .venv/bin/python bench/json_stall.py [--machines 5000] [--rounds 5]
                                         [--path '/?format=json&limit=5000']
                                         [--bmdb DSN] [--in-process]

Uses the PostgreSQL server of WEBUG_TEST_DSN (else --server-dsn) to seed a fresh BMDB
of `--machines` machines (dropped at the end), or an already seeded one with --bmdb.
Starts uvicorn (one worker, as bench/webug_process.py does), warms it up, then for each
round requests PATH while a thread of its own polls /healthz every 10 ms: /healthz
answers in a few milliseconds, so its worst latency during the request is how long the
request kept another one waiting for the event loop. Prints, per round and as
medians: the response's size, its time (client, and webug's own Server-Timing), the
worst and median /healthz latency during it, and the worst without it (the baseline:
on a busy machine it is not small). --in-process also serves webug from the bench's own
event loop next to a task ticking every millisecond: the longest gaps between its ticks
are the longest times a request held the loop.
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
    """uvicorn serving webug inside this process, on this event loop, with a task ticking
    every millisecond: the longest gaps between ticks are the longest times anything held
    the loop (the cycle collector's pauses among them, reported apart). Requests come from
    curl, another process, so no client work is on the loop or holds the GIL."""
    import gc

    import uvicorn

    os.environ["WEBUG_DSN"] = dsn
    sys.path.insert(0, str(webug_process.REPO))
    from app.main import create_app

    port = webug_process.free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), port=port, log_level="warning",
                                           access_log=False))  # fmt: skip
    serving = asyncio.create_task(server.serve())
    base = f"http://127.0.0.1:{port}"
    await webug_process.wait_healthy(base)
    gaps: list[tuple[float, float]] = []  # (when, gap)

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append((now, now - last))
            last = now

    ticking = asyncio.create_task(ticker())
    pauses: list[tuple[float, float]] = []  # (when, how long) of each garbage collection
    started: list[float] = [0.0]

    def collected(phase: str, _info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append((time.perf_counter(), time.perf_counter() - started[0]))

    gc.callbacks.append(collected)

    async def get() -> tuple[float, float, int]:
        # From another process: a client thread here would take the GIL from the loop.
        begin = time.perf_counter()
        curl = await asyncio.create_subprocess_exec(
            "curl", "-sf", "-o", "/dev/null", "-w", "%{size_download}", base + path,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await curl.communicate()
        if curl.returncode:
            raise RuntimeError(f"curl {path}: exit status {curl.returncode}")
        return begin, time.perf_counter(), int(out)

    try:
        await get()  # warm
        for i in range(rounds):
            begin, end, size = await get()
            during = sorted((g for at, g in gaps if begin < at <= end + 0.05), reverse=True)
            holds = ", ".join(f"{g * 1000:.0f}" for g in during[:3])
            gc_ms = max((p for at, p in pauses if begin < at <= end), default=0.0) * 1000
            print(f"in-process round {i + 1}: {size / 1e6:.1f} MB in"
                  f" {(end - begin) * 1000:.0f} ms; longest loop holds (incl. the 1 ms"
                  f" sleep): {holds} ms; longest GC pause {gc_ms:.0f} ms")  # fmt: skip
    finally:
        gc.callbacks.remove(collected)
        ticking.cancel()
        server.should_exit = True
        await serving


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
        help="also serve webug from this process and time its event loop's longest holds",
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
