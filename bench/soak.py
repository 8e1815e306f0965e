"""Soak: watchers polling live fragments while the BMDB restarts under them.

    .venv/bin/python bench/soak.py [--duration 60] [--watchers 200] [--down-at 25]
                                   [--down-for 5] [--every 2] [--machines 400]

Starts a PostgreSQL of its own (embedded, in a temp dir) with a seeded BMDB, webug in a
uvicorn subprocess on a free loopback port, and `watchers` clients that each poll one
machine's live fragment (/machine/{id}/live, as htmx does: HX-Request and HX-PTag, so
an unchanged poll is a 304) every `every` seconds, for `duration` seconds. At `down-at`
seconds the BMDB is shut down (`pg_ctl stop -m fast`, which also ends webug's sessions)
and started again `down-for` seconds later.

Checks and prints: every 200 is the right machine's fragment (its own ID and provider
ID, no other watched machine's ID); errors only while the BMDB is down; the recovery
time (from the BMDB being up again to every watcher's first good answer); latency and
status counts. Traffic goes to 127.0.0.1 only; it stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.outage import RestartablePostgres, serve_webug  # noqa: E402

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass
class Poll:
    watcher: int
    started: float
    ended: float
    status: int  # 0: no HTTP answer
    ok: bool  # 200 (right data) or 304
    wrong: str | None = None


@dataclass
class SoakResult:
    duration: float
    watchers: int
    every: float
    polls: list[Poll] = field(default_factory=list)
    stop_called: float = 0.0  # seconds since the start
    up_again: float = 0.0
    recovery_s: float | None = None  # up_again -> every watcher had a good answer again
    first_ok_s: float | None = None  # up_again -> the first good answer of any watcher
    wrong_examples: list[str] = field(default_factory=list)
    error_examples: list[str] = field(default_factory=list)

    @property
    def wrong(self) -> int:
        return sum(p.wrong is not None for p in self.polls)

    def _outside(self) -> list[Poll]:
        """Polls that ended before the stop, or after the watcher's recovery."""
        recovered: dict[int, float] = {}
        for p in sorted(self.polls, key=lambda p: p.ended):
            if p.ok and p.started >= self.up_again and p.watcher not in recovered:
                recovered[p.watcher] = p.ended
        return [
            p
            for p in self.polls
            if p.ended < self.stop_called
            or (p.watcher in recovered and p.started > recovered[p.watcher])
        ]

    @property
    def errors_outside_outage(self) -> int:
        return sum(not p.ok for p in self._outside())

    @property
    def server_errors(self) -> int:
        """500s: a bug whenever they happen, outage or not."""
        return sum(p.status == 500 for p in self.polls)

    @property
    def errors_after_up(self) -> int:
        """Failed polls sent after the BMDB was up again."""
        return sum(not p.ok for p in self.polls if p.started >= self.up_again)

    @property
    def ok_before(self) -> int:
        return sum(p.ok for p in self.polls if p.ended < self.stop_called)

    @property
    def ok_after(self) -> int:
        return sum(p.ok for p in self.polls if p.started >= self.up_again)

    def summary(self) -> str:
        statuses = Counter(p.status for p in self.polls)
        outside = [p for p in self._outside() if p.ok]
        latencies = sorted((p.ended - p.started) * 1000 for p in outside)
        during = [p for p in self.polls if not (p.ended < self.stop_called) and not p.ok]

        def pct(q: float) -> float:
            return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else 0

        recovery = f"{self.recovery_s:.2f} s" if self.recovery_s is not None else "NEVER"
        first = f"{self.first_ok_s:.2f} s" if self.first_ok_s is not None else "NEVER"
        lines = [
            f"soak: {self.watchers} watchers polling every {self.every:g} s for "
            f"{self.duration:g} s; BMDB stopped at {self.stop_called:.1f} s, up again at "
            f"{self.up_again:.1f} s",
            f"  polls {len(self.polls)} ({len(self.polls) / self.duration:.0f}/s); statuses "
            + ", ".join(f"{s or 'no answer'}: {n}" for s, n in sorted(statuses.items())),
            f"  wrong data: {self.wrong}; errors outside the outage: "
            f"{self.errors_outside_outage}; errors during it: {len(during)}; 500s:"
            f" {self.server_errors}",
            f"  recovery: first good answer {first} after the BMDB was up again, every watcher"
            f" had one after {recovery} (at most one poll interval); failed polls sent after"
            f" it was up: {self.errors_after_up}",
            f"  latency outside the outage: p50 {pct(0.5):.1f} ms, p95 {pct(0.95):.1f} ms,"
            f" max {pct(1.0):.1f} ms",
        ]
        return "\n".join(lines)


async def _machines(dsn: str, n: int) -> list[tuple[uuid.UUID, str]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT machine_id, provider_id FROM machine_provided ORDER BY provider_id LIMIT $1", n
        )
    finally:
        await conn.close()
    if len(rows) < n:
        raise SystemExit(f"only {len(rows)} provided machines for {n} watchers: seed more")
    return [(r["machine_id"], r["provider_id"]) for r in rows]


def _check(body: str, machine: uuid.UUID, provider_id: str, others: set[str]) -> str | None:
    """Why a 200 fragment is not this machine's, or None."""
    if f"/machine/{machine}/live" not in body:
        return f"{machine}: fragment without its own URL"
    if provider_id not in body:
        return f"{machine}: fragment without its provider ID {provider_id}"
    foreign = (set(UUID_RE.findall(body)) & others) - {str(machine)}
    if foreign:
        return f"{machine}: fragment names other machines {sorted(foreign)[:3]}"
    return None


async def _soak(
    pg: RestartablePostgres,
    base_url: str,
    machines: list[tuple[uuid.UUID, str]],
    *,
    duration: float,
    every: float,
    down_at: float,
    down_for: float,
) -> SoakResult:
    result = SoakResult(duration, len(machines), every)
    others = {str(m) for m, _ in machines}
    t0 = time.monotonic()
    end = t0 + duration
    # Idle connections are dropped before uvicorn's 5 s keep-alive timeout closes them: a
    # request sent on a connection the server is closing fails (browsers retry those).
    limits = httpx.Limits(
        max_connections=len(machines),
        max_keepalive_connections=len(machines),
        keepalive_expiry=3.0,
    )

    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:

        async def watch(i: int, machine: uuid.UUID, provider_id: str) -> None:
            ptag: str | None = None
            await asyncio.sleep(random.uniform(0, every))  # browsers do not poll in step
            while time.monotonic() < end:
                headers = {"HX-Request": "true"}
                if ptag:
                    headers["HX-PTag"] = ptag
                started = time.monotonic()
                status, ok, wrong = 0, False, None
                try:
                    response = await client.get(f"/machine/{machine}/live", headers=headers)
                    status = response.status_code
                    if status == 200:
                        wrong = _check(response.text, machine, provider_id, others)
                        ok = wrong is None
                        ptag = response.headers.get("HX-PTag") or ptag
                    elif status == 304:
                        ok = True
                    elif len(result.error_examples) < 5 or status == 500:
                        result.error_examples.append(
                            f"at {started - t0:.1f} s: {status} {response.text[:200]!r}"
                        )
                except httpx.HTTPError as exc:
                    if len(result.error_examples) < 5:
                        result.error_examples.append(
                            f"at {started - t0:.1f} s: {type(exc).__name__}: {exc}"
                        )
                ended = time.monotonic()
                if wrong and len(result.wrong_examples) < 5:
                    result.wrong_examples.append(wrong)
                result.polls.append(Poll(i, started - t0, ended - t0, status, ok, wrong))
                await asyncio.sleep(max(0.0, every - (ended - started)))

        async def outage() -> None:
            await asyncio.sleep(down_at)
            result.stop_called = time.monotonic() - t0
            await asyncio.to_thread(pg.stop, "fast")
            await asyncio.sleep(down_for)
            await asyncio.to_thread(pg.start)
            result.up_again = time.monotonic() - t0

        await asyncio.gather(outage(), *(watch(i, m, p) for i, (m, p) in enumerate(machines)))

    firsts: dict[int, float] = {}
    for p in sorted(result.polls, key=lambda p: p.ended):
        if p.ok and p.started >= result.up_again:
            firsts.setdefault(p.watcher, p.ended)
    if firsts:
        result.first_ok_s = min(firsts.values()) - result.up_again
    if len(firsts) == len(machines):
        result.recovery_s = max(firsts.values()) - result.up_again
    return result


def run_soak(
    pg: RestartablePostgres,
    dsn: str,
    *,
    duration: float = 60.0,
    watchers: int = 200,
    down_at: float = 25.0,
    down_for: float = 5.0,
    every: float = 2.0,
    log_path: Path | None = None,
) -> SoakResult:
    """Serve webug on `dsn` (a BMDB on `pg`), soak it, restart `pg` in the middle."""
    if not down_at + down_for + 2 * every < duration:
        raise ValueError("the BMDB must be back well before the end of the soak")
    machines = asyncio.run(_machines(dsn, watchers))
    log_path = log_path or Path(tempfile.mkdtemp(prefix="webug-soak-")) / "webug.log"
    with serve_webug(dsn, log_path) as base_url:
        return asyncio.run(
            _soak(
                pg,
                base_url,
                machines,
                duration=duration,
                every=every,
                down_at=down_at,
                down_for=down_for,
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--watchers", type=int, default=200)
    parser.add_argument("--down-at", type=float, default=25.0)
    parser.add_argument("--down-for", type=float, default=5.0)
    parser.add_argument("--every", type=float, default=2.0)
    parser.add_argument("--machines", type=int, default=400)
    args = parser.parse_args()
    pg = RestartablePostgres()
    try:
        dsn = pg.create_bmdb(max(args.machines, args.watchers * 2))
        log_path = REPO / "artifacts" / "soak-webug.log"
        result = run_soak(
            pg,
            dsn,
            duration=args.duration,
            watchers=args.watchers,
            down_at=args.down_at,
            down_for=args.down_for,
            every=args.every,
            log_path=log_path,
        )
    finally:
        pg.close()
    print(result.summary())
    print(f"  webug's log: {log_path}")
    for example in result.wrong_examples + result.error_examples[:3]:
        print(f"  e.g. {example}")
    if result.wrong or result.errors_outside_outage or result.server_errors:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
