"""/work, /backoffs and the tag tables on a seeded BMDB: the time of each page's one
statement, with its counts (a first view, or once per WEBUG_COUNT_CACHE_SECONDS) and
without (every other view and poll), and the whole request.

    python -m app seed --dsn DSN --machines 100000
    python bench/entity_lists.py --dsn DSN [--runs 5]

Starts webug (uvicorn, one worker, a free loopback port) twice on DSN: with a count cache
of 0 s (every page counts) and of an hour (pages after the first share the counts).
Printed per page: the median over `--runs` of the statement's time in the BMDB (the JSON
twin's `queries`) and of the request as the client saw it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support import free_port  # noqa: E402

PAGES = [
    "/work", "/work?sort=machine_id", "/work?state=stale",
    "/backoffs", "/backoffs?state=all", "/backoffs?state=all&sort=-interval",
    "/backoffs?state=all&text=refused",
    "/tags", "/tags/Provided", "/tags/Provided?sort=-provider_location",
    "/tags/Provided?provider_status=Running&sort=provider_ip_address",
    "/tags/HardwareReport", "/tags/AgentHeartbeat?sort=agent_heartbeat_at",
]  # fmt: skip


def measure(dsn: str, ttl: str, runs: int) -> dict[str, tuple[float, float]]:
    port = free_port()
    env = {**os.environ, "WEBUG_DSN": dsn, "WEBUG_COUNT_CACHE_SECONDS": ttl}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        for _ in range(100):
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        results = {}
        for path in PAGES:
            url = path + ("&" if "?" in path else "?") + "format=json"
            client.get(url)  # prepares the statement; the first view counts
            bmdb, wall = [], []
            for _ in range(runs):
                started = time.perf_counter()
                response = client.get(url)
                wall.append((time.perf_counter() - started) * 1000)
                bmdb.append(sum(q["ms"] for q in response.json()["queries"]))
            results[path] = (statistics.median(bmdb), statistics.median(wall))
        return results
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    counted = measure(args.dsn, "0", args.runs)
    shared = measure(args.dsn, "3600", args.runs)
    print(f"{'page':64} {'counted: BMDB':>14} {'request':>8} {'shared: BMDB':>13} {'request':>8}")
    for path in PAGES:
        (cb, cw), (sb, sw) = counted[path], shared[path]
        print(f"{path:64} {cb:11.1f} ms {cw:5.0f} ms {sb:10.1f} ms {sw:5.0f} ms")


if __name__ == "__main__":
    main()
