"""Rendered HTML reused while the data it shows is unchanged.

Polls re-render the same rows every few seconds, and several operators watch the same
views; rendering (not the queries) dominated page time (bench/bench.py). Callers key an
entry by everything the HTML depends on; relative times inside it are markers filled in
per response (app/relative_times.py), so a reused fragment is never stale.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from cachetools import LRUCache
from markupsafe import Markup


class FragmentCache:
    """A least-recently-used cache of HTML bounded by total characters."""

    def __init__(self, max_chars: int) -> None:
        self._entries: LRUCache[Hashable, Markup] = LRUCache(maxsize=max_chars, getsizeof=len)
        self._largest = max_chars // 16  # one huge value must not evict everything else
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, render: Callable[[], Markup]) -> Markup:
        html = self._entries.get(key)
        if html is not None:
            self.hits += 1
            return html
        self.misses += 1
        html = render()
        if len(html) <= self._largest:
            self._entries[key] = html
        return html

    @property
    def chars(self) -> int:
        return int(self._entries.currsize)
