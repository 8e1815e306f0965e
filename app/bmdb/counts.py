"""Briefly cached counts: totals, facets and the overview scan the (filtered) fleet, so a
page view computes them once and polls (and other watchers of the same view) reuse them
for `WEBUG_COUNT_CACHE_SECONDS`; the pages say when their counts were taken."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any


class CountCache:
    """Values kept `ttl` seconds, the least recently stored dropped past `max_entries`
    (app/bmdb/history_reads.py keeps its reads in two of these)."""

    def __init__(self, ttl: float, max_entries: int = 256) -> None:
        self.ttl = ttl
        self._max = max_entries
        self._entries: OrderedDict[object, tuple[float, datetime, Any]] = OrderedDict()

    def clear(self) -> None:
        """Forget every count: the next request of each view counts again."""
        self._entries.clear()

    def fresh(self, key: object) -> tuple[Any, datetime] | None:
        """(value, when it was counted) while younger than the TTL, else None: count again."""
        entry = self._entries.get(key)
        if entry is not None and time.monotonic() - entry[0] < self.ttl:
            return entry[2], entry[1]
        return None

    def store(self, key: object, value: Any) -> tuple[Any, datetime]:
        """Keep a value just counted (by a page's own statement, or by `get`)."""
        computed_at = datetime.now(UTC)
        self._entries[key] = (time.monotonic(), computed_at, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return value, computed_at

    async def get(self, key: object, compute: Callable[[], Awaitable[Any]]) -> tuple[Any, datetime]:
        """(value, when it was counted): the kept one while fresh, else `compute`d now."""
        kept = self.fresh(key)
        if kept is not None:
            return kept
        return self.store(key, await compute())
