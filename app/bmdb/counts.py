"""Briefly cached counts: totals, facets and the overview scan the (filtered) fleet, so a
page view computes them once and polls (and other watchers of the same view) reuse them
for `WEBUG_COUNT_CACHE_SECONDS`; the pages say when their counts were taken.

Each process (uvicorn worker, replica) keeps its own cache, so two of them may hold
counts taken at different times. A browser never goes back in time between them: its
poll tag carries the count it shows and when that was taken (`Counted`), and a process
whose own count is older keeps the browser's (`not_older`) instead of showing its own.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

# A count stamped later than this ahead of our clock is not believed: replicas' clocks
# agree to well within it (NTP), and a forged stamp must not freeze a browser's counts.
CLOCK_SKEW = timedelta(seconds=60)
_STAMP = re.compile(r"([0-9]{1,15})(?:-([0-9]{1,15}))?")


@dataclass(frozen=True)
class Counted:
    """What a browser shows of a count: when it was taken (to the millisecond) and, for
    a list, its total. Carried in the poll tag as `<ms since the epoch>[-<total>]`."""

    at: datetime
    total: int | None = None

    @classmethod
    def of(cls, counted_at: datetime, total: int | None = None) -> Counted:
        ms = int(counted_at.timestamp() * 1000)
        return cls(datetime.fromtimestamp(ms / 1000, UTC), total)

    @property
    def stamp(self) -> str:
        ms = round(self.at.timestamp() * 1000)
        return f"{ms}" if self.total is None else f"{ms}-{self.total}"

    @classmethod
    def parse(cls, stamp: str) -> Counted | None:
        """The count a poll tag carries; None when malformed or from the future."""
        match = _STAMP.fullmatch(stamp)
        if match is None:
            return None
        try:
            at = datetime.fromtimestamp(int(match[1]) / 1000, UTC)
        except (ValueError, OverflowError, OSError):  # past the year 9999
            return None
        if at > datetime.now(UTC) + CLOCK_SKEW:
            return None
        return cls(at, int(match[2]) if match[2] is not None else None)

    def newer_than(self, counted_at: datetime) -> bool:
        return self.at > Counted.of(counted_at).at


def not_older(
    kept: tuple[int, datetime] | None, held: Counted | None
) -> tuple[int, datetime] | None:
    """The total to show and when it was counted: `kept` (this process's, None when due),
    unless the browser holds a newer one, counted by another process. A due count is
    taken now, so it is the newest. The browser's total is shown back to it, never kept:
    what one client sends does not reach another."""
    if kept is None or held is None or held.total is None or not held.newer_than(kept[1]):
        return kept
    return held.total, held.at


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
