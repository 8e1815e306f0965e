"""Fleet-wide reads of work_history, computed at most once per interval and shared.

work_history has no index on its timestamp and can hold millions of rows, so a read of
"the last 24 hours" (failure groups, the activity chart) scans the whole table. Each
such read is:

- **shared**: its result is kept for WEBUG_HISTORY_CACHE_SECONDS and served to every
  page, tab and poll that asks within that time; concurrent requests for the same read
  wait for the one running (single flight), whichever request started it;
- **budgeted**: it runs on the connection kept for history reads, whose statement
  timeout is WEBUG_HISTORY_TIMEOUT_MS (app/bmdb/connection.py), one at a time. A read
  cut by its budget is remembered as such for the interval too, so reloading a page
  does not start the scan again; the page says what happened and when webug retries.

Pages never start these reads from a poll: the overview's chart is a fragment loaded
once, and the machine list resolves a failure group from the last read (`latest`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from app.bmdb.connection import HistoryReadBusy
from app.bmdb.counts import CountCache


@dataclass(frozen=True)
class HistoryRead:
    """One attempt at a read: its value, or why there is none."""

    computed_at: datetime
    ms: float  # how long it took (or ran until cut)
    value: Any = None
    error: str | None = None  # budget exceeded, or the history connection stayed busy

    @property
    def ok(self) -> bool:
        return self.error is None


class HistoryReads:
    def __init__(self, ttl: float, budget_ms: int, max_entries: int = 32) -> None:
        self.ttl = ttl
        self.budget_ms = budget_ms
        # key -> the last attempt, answered while fresh
        self._attempts = CountCache(ttl, max_entries)
        # key -> the last successful read, whatever its age (`latest`)
        self._values = CountCache(math.inf, max_entries)
        self._running: dict[Hashable, asyncio.Task[HistoryRead]] = {}
        self.reads = 0  # reads started (tests and the bench watch it)

    def clear(self) -> None:
        self._attempts.clear()
        self._values.clear()

    def fresh(self, key: Hashable) -> HistoryRead | None:
        kept = self._attempts.fresh(key)
        return None if kept is None else kept[0]

    def latest(self, key: Hashable) -> HistoryRead | None:
        """The last successful read of `key`, however old: what a link made from it meant."""
        kept = self._values.fresh(key)
        return None if kept is None else kept[0]

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[Any]]) -> HistoryRead:
        """The fresh read of `key`, or one computed now (or joined, if one is running)."""
        kept = self.fresh(key)
        if kept is not None:
            return kept
        task = self._running.get(key)
        if task is None or task.get_loop() is not asyncio.get_running_loop():
            # A task of its own: a request that gives up does not cancel the read the
            # others wait for.
            task = asyncio.get_running_loop().create_task(self._read(key, compute))
            self._running[key] = task
            task.add_done_callback(lambda _, k=key, t=task: self._forget(k, t))
        return await asyncio.shield(task)

    def _forget(self, key: Hashable, task: asyncio.Task) -> None:
        if self._running.get(key) is task:
            del self._running[key]

    async def _read(self, key: Hashable, compute: Callable[[], Awaitable[Any]]) -> HistoryRead:
        self.reads += 1
        started, at = time.perf_counter(), datetime.now(UTC)
        budget = f"{self.budget_ms / 1000:g} s"
        try:
            value = await compute()
        except asyncpg.QueryCanceledError:
            ms = (time.perf_counter() - started) * 1000
            read = HistoryRead(at, ms, error=f"the read took longer than its budget of {budget}")
            self._attempts.store(key, read)
            return read
        except HistoryReadBusy:  # not kept: the next request may find the connection free
            ms = (time.perf_counter() - started) * 1000
            return HistoryRead(
                at, ms, error=f"another history read kept the connection busy for {budget}"
            )
        read = HistoryRead(at, (time.perf_counter() - started) * 1000, value=value)
        self._attempts.store(key, read)
        self._values.store(key, read)
        return read
