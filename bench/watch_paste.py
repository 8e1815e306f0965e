"""Watch lists and pasted texts at fleet size: webug's own time (Server-Timing) per request.

    .venv/bin/python bench/watch_paste.py [--dsn postgresql://...] [--machines 100000]

Seeds a BMDB of `--machines` (bench/bmdb.py), runs webug on it and prints the median and
the worst of `--requests` requests of each (and of a page of the machine list of as many
rows, for reference: the figures move with the machine's load):

- /watch of 100 full IDs, of 100 ID prefixes (8 hex digits); its poll, changed and
  unchanged (304): each one statement resolving the IDs and reading the machines;
- /search of a 16 KiB log excerpt naming 20 machines by ID, 10 by provider ID and 10 by
  IP among ~2000 other words, and of a 6-line alert: one statement, which reads
  machine_provided once for the words (no index serves a case-insensitive match).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
from urllib.parse import quote

import asyncpg
import httpx
from bmdb import drop, prepare
from webug_process import running, server_ms

HTMX = {"HX-Request": "true"}


def log_excerpt(ids: list[str], provider_ids: list[str], ips: list[str], size: int) -> str:
    """`size` bytes of log lines, the given values scattered among them, in upper case."""
    rng = random.Random(1)
    named = [f"machine {i.upper()} lost" for i in ids]
    named += [f'provider_id="{p.upper()}" unreachable' for p in provider_ids]
    named += [f"ssh {ip}:22 refused" for ip in ips]
    lines = []
    while sum(len(line) + 1 for line in lines) < size:
        lines.append(
            f"2024-05-01T12:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z INFO"
            f" shepherd-{rng.randrange(9)} tick={rng.randrange(10**6)} queue={rng.randrange(99)}"
            f" build 1.2.{rng.randrange(9)}.{rng.randrange(9)} latency={rng.randrange(999)}ms"
        )
    for value in named:
        lines.insert(rng.randrange(len(lines)), f"2024-05-01T12:00:00Z ERROR {value}")
    text = "\n".join(lines)
    while len(text.encode()) > size:  # drop noise, never a named value
        lines.pop(next(i for i, line in enumerate(lines) if " INFO " in line))
        text = "\n".join(lines)
    return text


async def timed(client: httpx.AsyncClient, url: str, n: int, headers: dict | None = None,
                expect: int = 200) -> tuple[float, float]:  # fmt: skip
    """(median, worst) server milliseconds of `n` requests after one warm-up."""
    headers = dict(headers or {})
    await client.get(url, headers=headers)
    times = []
    for _ in range(n):
        response = await client.get(url, headers=headers)
        if "HX-PTag" in headers:
            # As htmx does: a poll echoes the last tag. A backoff or session of the fleet
            # may expire meanwhile (the document changes): that poll answers 200, not 304.
            headers["HX-PTag"] = response.headers["HX-PTag"]
            assert response.status_code in (200, 304), response.status_code
        else:
            assert response.status_code == expect, (url[:80], response.status_code)
        times.append(server_ms(response))
    return statistics.median(times), max(times)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("WEBUG_TEST_DSN"), required=False)
    parser.add_argument("--machines", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    if not args.dsn:
        parser.error("--dsn (or WEBUG_TEST_DSN): a PostgreSQL server to create the BMDB on")
    name, dsn, _ = await prepare(args.dsn, args.machines)
    try:
        conn = await asyncpg.connect(dsn)
        try:
            ids = [str(r[0]) for r in await conn.fetch(
                "SELECT machine_id FROM machines ORDER BY md5(machine_id::text) LIMIT 100")]
            provided = await conn.fetch(
                "SELECT provider_id, provider_ip_address FROM machine_provided"
                " WHERE provider <> 'Equinix' AND provider_ip_address IS NOT NULL"
                " ORDER BY md5(machine_id::text) LIMIT 10")
        finally:
            await conn.close()  # fmt: skip
        log = log_excerpt(
            ids[:20], [r[0] for r in provided], [r[1] for r in provided], 16 * 1024
        )
        alert = log_excerpt(ids[:3], [provided[0][0]], [provided[1][1]], 400)
        watch_ids = "/watch?ids=" + ",".join(ids)
        watch_prefixes = "/watch?ids=" + ",".join(i[:8] for i in ids)
        async with running(dsn) as (base, _), httpx.AsyncClient(base_url=base) as client:
            ptag = (await client.get(watch_ids, headers=HTMX)).headers["HX-PTag"]
            cases = [
                ("reference: machine list, 100 rows", "/?limit=100", None, 200),
                ("watch: 100 IDs, page", watch_ids, None, 200),
                ("watch: 100 prefixes, page", watch_prefixes, None, 200),
                ("watch: 100 IDs, poll (changed)", watch_ids, HTMX, 200),
                ("watch: 100 IDs, poll (unchanged, 304)", watch_ids, {**HTMX, "HX-PTag": ptag},
                 304),
                (f"search: 16 KiB log ({len(log.split())} words)", "/search?q=" + quote(log),
                 None, 303),
                ("search: 6-line alert", "/search?q=" + quote(alert), None, 303),
            ]  # fmt: skip
            print(f"{args.machines} machines, {args.requests} requests each (webug's own ms)")
            for label, url, headers, status in cases:
                median, worst = await timed(client, url, args.requests, headers, status)
                print(f"  {label:<48} median {median:7.1f} ms   worst {worst:7.1f} ms")
    finally:
        await drop(args.dsn, name)


if __name__ == "__main__":
    asyncio.run(main())
