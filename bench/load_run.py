"""The load run: `watchers` clients each polling one machine's live fragment every 2 s,
echoing its HX-PTag as htmx does (an unchanged fragment answers 304), while the
heartbeats of some watched machines change (so some polls render anew). Traffic goes
to 127.0.0.1 only and stops by itself."""

from __future__ import annotations

import asyncio
import random
import time

import asyncpg
import bmdb
import httpx
import webug_process

CHURN_PER_SECOND = 25  # watched machines whose heartbeat changes each second


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def load_run(server_dsn: str, machines: int, watchers: int, seconds: float) -> dict:
    print(
        f"\n== load: {watchers} watchers x live fragment every 2 s for {seconds:.0f} s "
        f"({machines:,} machines; {CHURN_PER_SECOND} watched machines change per second)"
    )
    name, dsn, _ = await bmdb.prepare(server_dsn, machines)
    conn = await asyncpg.connect(dsn)
    client_ms: list[float] = []
    server: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    try:
        ids = [
            str(r[0])
            for r in await conn.fetch(
                "SELECT machine_id FROM machines ORDER BY random() LIMIT $1", watchers
            )
        ]
        async with webug_process.running(dsn) as (base, proc):
            cpu_before, _ = webug_process.proc_stat(proc.pid)
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
                        server.append(webug_process.server_ms(r))
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
                    churn(),
                    *(watcher(client, mid, 2.0 * i / watchers) for i, mid in enumerate(ids)),
                )
            wall = time.monotonic() - started
            cpu_after, peak_kib = webug_process.proc_stat(proc.pid)
    finally:
        await conn.close()
        await bmdb.drop(server_dsn, name)
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
