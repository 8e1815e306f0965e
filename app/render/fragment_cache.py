"""Rendered HTML reused while the data it shows is unchanged.

Polls re-render the same rows every few seconds, and several operators watch the same
views; rendering (not the queries) dominated page time (bench/bench.py). Callers key an
entry by everything the HTML depends on; relative times inside it are markers filled in
per response (app/render/relative_times.py), so a reused fragment is never stale.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sized
from typing import Generic, TypeVar

from cachetools import LRUCache

Html = TypeVar("Html", bound=Sized)  # Markup, or relative_times.Unfilled


class FragmentCache(Generic[Html]):
    """A least-recently-used cache of HTML bounded by total characters."""

    def __init__(self, max_chars: int) -> None:
        self._entries: LRUCache[Hashable, Html] = LRUCache(maxsize=max_chars, getsizeof=len)
        self._largest = max_chars // 16  # one huge value must not evict everything else

    def get(self, key: Hashable, render: Callable[[], Html]) -> Html:
        html = self._entries.get(key)
        if html is not None:
            return html
        html = render()
        if len(html) <= self._largest:
            self._entries[key] = html
        return html
